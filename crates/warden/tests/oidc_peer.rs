//! The OAuth test peer itself (no Warden): `oidc-provider` mints the tokens the identity tests
//! need, with every knob the harness offers actually showing up in the JWT.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use serde_json::{Value, json};
use support::oidc::{Oidc, TEST_USER, TokenReq, claims, header, jwks_kids};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

fn num(v: &Value, k: &str) -> i64 {
    v[k].as_i64()
        .unwrap_or_else(|| panic!("no numeric {k} in {v}"))
}

#[test]
fn client_credentials_tokens_carry_every_requested_claim() {
    let op = Oidc::start();
    let (status, meta) = op.get("/.well-known/oauth-authorization-server");
    assert_eq!(status, 200, "{meta}");
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["issuer"], op.issuer.as_str());
    assert!(!op.issuer.ends_with('/'));
    assert_eq!(meta["jwks_uri"], op.jwks_uri().as_str());
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    let (status, oidc_meta) = op.get("/.well-known/openid-configuration");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&oidc_meta).unwrap()["token_endpoint"],
        meta["token_endpoint"]
    );
    for s in [
        "openid",
        "offline_access",
        "mcp",
        "tools.read",
        "tools.write",
        "tools.admin",
    ] {
        assert!(
            meta["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(s)),
            "{s} in {meta}"
        );
    }

    // Plain: aud = resource, sub = client, typ at+jwt, RS256 by default, kid in the JWKS.
    let kids = op.kids();
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert_eq!(jwks_kids(&op.jwks()), kids);
    let t = op.token(&TokenReq {
        resource: Some(RESOURCE),
        scope: "mcp tools.read",
        ..TokenReq::default()
    });
    let (h, c) = (header(&t), claims(&t));
    assert_eq!(h["typ"], "at+jwt", "{h}");
    assert_eq!(h["alg"], "RS256", "{h}");
    assert!(kids.contains(&h["kid"].as_str().unwrap().to_owned()), "{h}");
    assert_eq!(c["aud"], RESOURCE, "{c}");
    assert_eq!(c["sub"], "alice", "{c}");
    assert_eq!(c["client_id"], "alice", "{c}");
    assert_eq!(c["iss"], op.issuer.as_str(), "{c}");
    assert_eq!(c["scope"], "mcp tools.read", "{c}");
    assert!(c["jti"].is_string() && c.get("nbf").is_none() && c.get("amr").is_none());
    assert_eq!(
        num(&c, "exp") - num(&c, "iat"),
        3600,
        "default lifetime: {c}"
    );

    // client_secret_post works as well as Basic; bob is bob; a urn: resource is an audience too.
    let t = op.token(&TokenReq {
        client: "bob",
        post_auth: true,
        resource: Some("urn:warden:test"),
        scope: "tools.admin",
        ..TokenReq::default()
    });
    let c = claims(&t);
    assert_eq!(
        (c["sub"].as_str(), c["aud"].as_str()),
        (Some("bob"), Some("urn:warden:test"))
    );
    assert_eq!(c["scope"], "tools.admin");

    // Every knob at once, with the ES256 key.
    let t = op.token(&TokenReq {
        resource: Some(RESOURCE),
        ttl_secs: Some(2),
        amr: Some("pwd mfa"),
        acr: Some("urn:warden:loa:2"),
        alg: Some("ES256"),
        nbf_offset: Some(120),
        ..TokenReq::default()
    });
    let (h, c) = (header(&t), claims(&t));
    assert_eq!(h["alg"], "ES256", "{h}");
    assert_eq!(h["typ"], "at+jwt", "{h}");
    assert_eq!(
        h["kid"].as_str(),
        Some(kids[1].as_str()),
        "the ES256 kid: {h}"
    );
    assert_eq!(num(&c, "exp") - num(&c, "iat"), 2, "{c}");
    assert_eq!(c["amr"], json!(["pwd", "mfa"]), "{c}");
    assert_eq!(c["acr"], "urn:warden:loa:2", "{c}");
    assert_eq!(num(&c, "nbf") - num(&c, "iat"), 120, "{c}");

    // A long lifetime and a negative nbf offset.
    let c = claims(&op.token(&TokenReq {
        resource: Some(RESOURCE),
        ttl_secs: Some(86400),
        nbf_offset: Some(-30),
        ..TokenReq::default()
    }));
    assert_eq!(num(&c, "exp") - num(&c, "iat"), 86400, "{c}");
    assert_eq!(num(&c, "nbf") - num(&c, "iat"), -30, "{c}");

    // Refusals: a wrong secret, an unknown client, a bad alg, a foreign resource.
    let (status, body) = op.token_response(&TokenReq {
        secret: Some("nope"),
        resource: Some(RESOURCE),
        ..TokenReq::default()
    });
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_client"), "{body}");
    let (status, body) = op.token_response(&TokenReq {
        client: "mallory",
        resource: Some(RESOURCE),
        ..TokenReq::default()
    });
    assert_eq!(status, 401, "{body}");
    let (status, body) = op.token_response(&TokenReq {
        resource: Some(RESOURCE),
        alg: Some("HS256"),
        ..TokenReq::default()
    });
    assert_eq!(status, 400, "{body}");
    let (status, body) = op.token_response(&TokenReq {
        resource: Some("https://example.com/mcp"),
        ..TokenReq::default()
    });
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_target"), "{body}");
    // Without a resource the token is opaque (oidc-provider mints JWTs only with an audience).
    let t = op.token(&TokenReq::default());
    assert!(!t.contains('.'), "opaque: {t}");
}

#[test]
fn rotation_replaces_the_kids_and_old_tokens_no_longer_exchange() {
    let op = Oidc::start();
    let before = op.kids();
    let old = op.token(&TokenReq {
        resource: Some(RESOURCE),
        ..TokenReq::default()
    });
    let old_kid = header(&old)["kid"].as_str().unwrap().to_owned();
    assert!(before.contains(&old_kid));

    let after = op.rotate();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.iter().all(|k| !before.contains(k)),
        "{before:?} {after:?}"
    );
    assert_eq!(op.kids(), after);
    let jwks = jwks_kids(&op.jwks());
    assert_eq!(jwks, after, "the JWKS serves the new keys only");
    assert!(!jwks.contains(&old_kid));

    // New tokens use a new kid; clients survive the rotation.
    for alg in ["RS256", "ES256"] {
        let t = op.token(&TokenReq {
            resource: Some(RESOURCE),
            alg: Some(alg),
            ..TokenReq::default()
        });
        assert!(after.contains(&header(&t)["kid"].as_str().unwrap().to_owned()));
    }
    // A token signed by a key that left the JWKS is no valid subject token any more.
    let (status, body) = op.exchange(&old, "http://127.0.0.1:9999/upstream", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_grant"), "{body}");
}

#[test]
fn token_exchange_keeps_the_subject_and_names_warden_as_actor() {
    let op = Oidc::start();
    let upstream = "http://127.0.0.1:9999/upstream";
    let subject = op.token(&TokenReq {
        client: "bob",
        resource: Some(RESOURCE),
        scope: "mcp tools.read tools.write",
        alg: Some("ES256"),
        ..TokenReq::default()
    });
    let (status, body) = op.exchange(&subject, upstream, Some("tools.read"));
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        r["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(r["token_type"], "Bearer");
    assert!(r["expires_in"].as_i64().unwrap() > 0, "{r}");
    let t = r["access_token"].as_str().unwrap();
    let (h, c) = (header(t), claims(t));
    assert_eq!(h["typ"], "at+jwt", "{h}");
    assert!(op.kids().contains(&h["kid"].as_str().unwrap().to_owned()));
    assert_eq!(c["sub"], "bob", "{c}");
    assert_eq!(c["aud"], upstream, "{c}");
    assert_eq!(c["act"], json!({"sub": "warden"}), "{c}");
    assert_eq!(c["client_id"], "warden", "{c}");
    assert_eq!(c["iss"], op.issuer.as_str(), "{c}");
    assert_eq!(c["scope"], "tools.read", "{c}");
    assert_eq!(
        num(&c, "exp") - num(&c, "iat"),
        r["expires_in"].as_i64().unwrap()
    );

    // resource= works like audience=; no scope keeps the subject's.
    let (status, body) = op.exchange_with(&subject, &[("resource", "urn:upstream:x")]);
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    let c = claims(r["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], "urn:upstream:x", "{c}");
    assert_eq!(c["scope"], "mcp tools.read tools.write", "{c}");

    // Refusals: a forged subject token, a tampered one, more scope than the subject, and a
    // client without the grant.
    let (status, body) = op.exchange("not-a-jwt", upstream, None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_grant"), "{body}");
    let mut parts: Vec<String> = subject.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    let (status, body) = op.exchange(&parts.join("."), upstream, None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_grant"), "{body}");
    let (status, body) = op.exchange(&subject, upstream, Some("tools.admin"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_scope"), "{body}");
    let (status, body) = op.post_token(
        "alice",
        None,
        false,
        &[
            ("grant_type", support::oidc::TOKEN_EXCHANGE),
            ("subject_token", &subject),
            ("subject_token_type", support::oidc::ACCESS_TOKEN_TYPE),
            ("audience", upstream),
        ],
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn authorization_code_with_pkce_logs_in_carol_without_a_human() {
    let op = Oidc::start();
    let t = op.user_token("alice", RESOURCE, "openid mcp tools.read");
    let (h, c) = (header(&t), claims(&t));
    assert_eq!(h["typ"], "at+jwt", "{h}");
    assert_eq!(c["sub"], TEST_USER, "{c}");
    assert_eq!(c["aud"], RESOURCE, "{c}");
    assert_eq!(c["client_id"], "alice", "{c}");
    assert_eq!(c["amr"], json!(["pwd", "mfa"]), "{c}");
    assert_eq!(c["scope"], "mcp tools.read", "{c}");
}
