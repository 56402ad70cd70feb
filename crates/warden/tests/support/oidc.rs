//! A real OAuth 2.1 / OpenID Connect authorization server for the tests: panva's `oidc-provider`
//! run by `tests/peers/node/oidc-provider.mjs` on 127.0.0.1 (free port), and helpers to get
//! tokens from it. Warden is the resource server; these are the tokens it is shown.
//!
//! - `token`: client_credentials for `alice`, `bob` or `warden` (secret `<id>-secret`) with the
//!   test knobs of [`TokenReq`] (resource = aud, ttl, amr, acr, alg, nbf offset). With a resource
//!   the token is an RFC 9068 JWT (`typ: at+jwt`, `sub` = the client id); without one it is opaque.
//! - `exchange`: RFC 8693 token exchange by `warden` (sub of the subject, aud of the target,
//!   `act.sub = "warden"`).
//! - `user_token`: authorization code + PKCE S256 for the test user `carol` (amr `pwd mfa`), no
//!   human: the provider's interaction route logs her in and grants what was asked.
//! - `rotate` / `kids` / `jwks`: key rotation (new kids; the old ones leave the JWKS).
//!
//! The node process is killed when [`Oidc`] is dropped, and exits by itself when the test process
//! dies (its stdin is a pipe from here).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Proc;
use super::client::{Reply, request};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The user the authorization-code flow logs in, and her `amr`.
pub const TEST_USER: &str = "carol";
pub const TEST_USER_AMR: [&str; 2] = ["pwd", "mfa"];

/// The running provider. `issuer` is `http://127.0.0.1:PORT` (no trailing slash).
pub struct Oidc {
    pub proc: Proc,
    pub issuer: String,
    pub port: u16,
}

/// A client_credentials token request. `secret: None` is the client's own (`<client>-secret`);
/// `post_auth` sends the credentials in the body (client_secret_post) instead of Basic.
#[derive(Debug, Clone)]
pub struct TokenReq<'a> {
    pub client: &'a str,
    pub secret: Option<&'a str>,
    pub post_auth: bool,
    pub resource: Option<&'a str>,
    pub scope: &'a str,
    pub ttl_secs: Option<u64>,
    pub amr: Option<&'a str>,
    pub acr: Option<&'a str>,
    pub alg: Option<&'a str>,
    pub nbf_offset: Option<i64>,
}

impl Default for TokenReq<'_> {
    fn default() -> Self {
        TokenReq {
            client: "alice",
            secret: None,
            post_auth: false,
            resource: None,
            scope: "mcp",
            ttl_secs: None,
            amr: None,
            acr: None,
            alg: None,
            nbf_offset: None,
        }
    }
}

impl Oidc {
    /// Start the provider and wait until it listens.
    pub fn start() -> Oidc {
        let mut cmd = Command::new(super::node());
        cmd.arg(super::node_dir().join("oidc-provider.mjs"))
            .env("PORT", "0")
            .current_dir(super::node_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        let mut proc = Proc::capture("oidc-provider", cmd);
        let line = proc.wait_for("oidc-provider: listening on ", Duration::from_secs(60));
        let issuer = line
            .split("listening on ")
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_owned();
        let port = super::port_in(&issuer);
        Oidc { proc, issuer, port }
    }

    /// `issuer` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    pub fn jwks_uri(&self) -> String {
        self.url("/jwks")
    }

    /// GET `path`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = request(self.port, "GET", path, &[], b"");
        (r.status, r.text())
    }

    /// POST a form to `/token` as `client` (Basic, or client_secret_post with `post_auth`).
    pub fn post_token(
        &self,
        client: &str,
        secret: Option<&str>,
        post_auth: bool,
        fields: &[(&str, &str)],
    ) -> (u16, String) {
        let own = format!("{client}-secret");
        let secret = secret.unwrap_or(&own);
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let basic;
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if post_auth {
            all.push(("client_id", client));
            all.push(("client_secret", secret));
        } else {
            basic = format!(
                "Basic {}",
                base64(format!("{client}:{secret}").as_bytes(), STD)
            );
            headers.push(("authorization", basic.as_str()));
        }
        let r = request(self.port, "POST", "/token", &headers, form(&all).as_bytes());
        (r.status, r.text())
    }

    /// client_credentials: the raw status and body.
    pub fn token_response(&self, req: &TokenReq) -> (u16, String) {
        let ttl = req.ttl_secs.map(|t| t.to_string());
        let nbf = req.nbf_offset.map(|n| n.to_string());
        let mut fields = vec![("grant_type", "client_credentials"), ("scope", req.scope)];
        let optional = [
            ("resource", req.resource),
            ("ttl", ttl.as_deref()),
            ("amr", req.amr),
            ("acr", req.acr),
            ("alg", req.alg),
            ("nbf_offset", nbf.as_deref()),
        ];
        fields.extend(optional.iter().filter_map(|(k, v)| v.map(|v| (*k, v))));
        self.post_token(req.client, req.secret, req.post_auth, &fields)
    }

    /// client_credentials: the access token (panics with the body on failure).
    pub fn token(&self, req: &TokenReq) -> String {
        let (status, body) = self.token_response(req);
        access_token(status, &body, "client_credentials token")
    }

    /// RFC 8693 token exchange by `warden`: the raw status and body.
    pub fn exchange(
        &self,
        subject_token: &str,
        audience: &str,
        scope: Option<&str>,
    ) -> (u16, String) {
        let mut fields = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("audience", audience),
        ];
        if let Some(s) = scope {
            fields.push(("scope", s));
        }
        self.post_token("warden", None, false, &fields)
    }

    /// Token exchange with any extra fields (`resource`, `alg`, `ttl`, ...): raw status and body.
    pub fn exchange_with(&self, subject_token: &str, extra: &[(&str, &str)]) -> (u16, String) {
        let mut fields = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ];
        fields.extend_from_slice(extra);
        self.post_token("warden", None, false, &fields)
    }

    /// Replace the signing keys; the new kids.
    pub fn rotate(&self) -> Vec<String> {
        let r = request(self.port, "POST", "/test/rotate", &[], b"");
        kids_of(&r, "/test/rotate")
    }

    /// The current signing kids (RS256 first, then ES256).
    pub fn kids(&self) -> Vec<String> {
        let r = request(self.port, "GET", "/test/kids", &[], b"");
        kids_of(&r, "/test/kids")
    }

    /// The JWKS document text.
    pub fn jwks(&self) -> String {
        let (status, body) = self.get("/jwks");
        assert_eq!(status, 200, "GET /jwks: {body}");
        body
    }

    /// Authorization code + PKCE (S256) for `carol` through the static confidential client
    /// `client` (alice, bob or warden), with resource `resource` and scope `scope`: the raw
    /// token-endpoint status and body. The provider's interaction route logs carol in (amr
    /// `pwd mfa`) and grants the scopes and the resource, so the token's aud is `resource`.
    pub fn user_token_response(&self, client: &str, resource: &str, scope: &str) -> (u16, String) {
        let redirect_uri = format!("http://127.0.0.1/{client}/callback");
        let verifier = random_token();
        let challenge = base64(&sha256(verifier.as_bytes()), URL);
        let state = random_token();
        let query = form(&[
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", &redirect_uri),
            ("scope", scope),
            ("resource", resource),
            ("state", &state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let mut jar: Vec<(String, String)> = Vec::new();
        let mut path = format!("/auth?{query}");
        let mut location = String::new();
        for _ in 0..10 {
            let cookie = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let mut headers = Vec::new();
            if !cookie.is_empty() {
                headers.push(("cookie", cookie.as_str()));
            }
            let r = request(self.port, "GET", &path, &headers, b"");
            remember_cookies(&r, &mut jar);
            assert!(
                (300..400).contains(&r.status),
                "GET {path}: expected a redirect, got {}: {}",
                r.status,
                r.text()
            );
            location = r.header("location").unwrap_or_default().to_owned();
            if location.starts_with(&redirect_uri) {
                break;
            }
            path = location
                .strip_prefix(&self.issuer)
                .unwrap_or(&location)
                .to_owned();
        }
        let params = query_params(&location);
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k} in the redirect {location}"))
        };
        assert_eq!(get("state"), state, "state in {location}");
        let code = get("code");
        self.post_token(
            client,
            None,
            false,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", &verifier),
                ("resource", resource),
            ],
        )
    }

    /// [`Oidc::user_token_response`]'s access token (panics with the body on failure).
    pub fn user_token(&self, client: &str, resource: &str, scope: &str) -> String {
        let (status, body) = self.user_token_response(client, resource, scope);
        access_token(status, &body, "authorization_code token")
    }
}

fn access_token(status: u16, body: &str, what: &str) -> String {
    assert_eq!(status, 200, "{what}: {body}");
    let v: serde_json::Value = serde_json::from_str(body).expect("token response is JSON");
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no access_token in {body}"))
        .to_owned()
}

fn kids_of(r: &Reply, what: &str) -> Vec<String> {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("kids JSON");
    v["kids"]
        .as_array()
        .expect("kids array")
        .iter()
        .map(|k| k.as_str().expect("kid string").to_owned())
        .collect()
}

fn remember_cookies(r: &Reply, jar: &mut Vec<(String, String)>) {
    for (k, v) in &r.headers {
        if k != "set-cookie" {
            continue;
        }
        let pair = v.split(';').next().unwrap_or_default();
        if let Some((name, value)) = pair.split_once('=') {
            jar.retain(|(n, _)| n != name.trim());
            if !value.is_empty() {
                jar.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }
}

/// The decoded payload of a JWT (no verification), for assertions.
pub fn claims(jwt: &str) -> serde_json::Value {
    jwt_part(jwt, 1)
}

/// The decoded protected header of a JWT.
pub fn header(jwt: &str) -> serde_json::Value {
    jwt_part(jwt, 0)
}

fn jwt_part(jwt: &str, i: usize) -> serde_json::Value {
    let part = jwt
        .split('.')
        .nth(i)
        .unwrap_or_else(|| panic!("not a JWT: {jwt}"));
    let bytes = base64url_decode(part).unwrap_or_else(|| panic!("bad base64url in {jwt}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT part {i} is not JSON: {e}"))
}

/// The `kid`s in a JWKS document.
pub fn jwks_kids(jwks: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(jwks).expect("JWKS JSON");
    v["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

// ---- small encoders (no extra dependencies) ---------------------------------------------------

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with `alphabet`; padded for the standard one, unpadded for base64url.
fn base64(data: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[(n >> (18 - 6 * i)) as usize & 63]));
        }
        if alphabet == STD {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim_end_matches('=').bytes() {
        let v = URL.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Some(out)
}

/// `application/x-www-form-urlencoded`.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn query_params(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (unpct(k), unpct(v)))
        .collect()
}

fn unpct(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A fresh 43-character base64url string (PKCE verifier, state): SHA-256 of the time, the pid
/// and a counter. Unpredictable enough for loopback tests.
fn random_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!(
        "{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    base64(&sha256(seed.as_bytes()), URL)
}

/// SHA-256 (FIPS 180-4), for the PKCE S256 challenge.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    let mut out = [0u8; 32];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}
