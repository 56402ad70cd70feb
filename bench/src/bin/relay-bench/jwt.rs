//! `--auth`: an ES256 key made for this run, its JWKS file, one access token for the second
//! Warden's resource URI, and that Warden's `[auth]` section. The same token goes on every
//! request: Warden checks its signature once and then serves it from its verified-token cache
//! (checking `exp` every time), which is the steady state of a client's session.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const ISSUER: &str = "https://bench.invalid";

/// A free loopback port (bound, read and released).
pub(super) fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// The JWKS document and `Bearer <token>` for `resource`.
pub(super) fn mint(resource: &str) -> Result<(String, String), String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "cannot make a key")?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| "cannot load the key")?;
    let pt = key.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench",
        "alg": "ES256", "use": "sig", "x": B64.encode(&pt[1..33]), "y": B64.encode(&pt[33..65])}]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "bench"});
    let claims = serde_json::json!({"iss": ISSUER, "sub": "bench-user", "aud": resource,
        "iat": now, "exp": now + 3000, "scope": "mcp"});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = key
        .sign(&rng, input.as_bytes())
        .map_err(|_| "cannot sign")?;
    Ok((
        jwks.to_string(),
        format!("Bearer {input}.{}", B64.encode(sig.as_ref())),
    ))
}

/// The `[auth]` section of the Warden on `port`.
pub(super) fn auth_section(port: u16, jwks: &Path) -> String {
    format!(
        "[auth]\nissuer = \"{ISSUER}\"\nresource = \"http://127.0.0.1:{port}/mcp\"\n\
         jwks_file = {}\nalgorithms = [\"ES256\"]\nrequired_scopes = [\"mcp\"]\n",
        serde_json::Value::from(jwks.display().to_string())
    )
}
