//! Identity (#14): Warden as an OAuth 2.1 resource server in front of a recording upstream, with
//! tokens minted by a real authorization server (`oidc-provider`, pinned in tests/peers/node).
//! Every kind of token gets its exact status, challenge and audit event; only valid ones reach
//! the upstream, and the client's token never does (M1, M2, P2.1, P2.3, P2.4, P7.1, P8.1).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use support::auth_arena::{Arena, INIT};
use support::client::{Reply, request};
use support::oidc::{Oidc, TokenReq, claims};
use support::toml_str;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The challenge of a refusal.
fn challenge(r: &Reply) -> String {
    r.header("www-authenticate").unwrap_or_default().to_owned()
}

fn forge_alg(token: &str, header: Value, signature: &[u8]) -> String {
    let payload = token.split('.').nth(1).unwrap();
    format!(
        "{}.{payload}.{}",
        B64.encode(header.to_string()),
        B64.encode(signature)
    )
}

#[test]
fn every_kind_of_token_gets_its_exact_answer_and_only_valid_ones_reach_the_upstream() {
    let oidc = Oidc::start();
    let other = Oidc::start();
    let a = Arena::start(&oidc, "");
    let metadata = format!(
        "http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp",
        a.w.port
    );

    // No token: 401 naming the metadata and the scope, no error code (RFC 6750 §3.1).
    let r = a.post(None, None, INIT);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        challenge(&r),
        format!("Bearer resource_metadata=\"{metadata}\", scope=\"mcp\"")
    );
    assert_eq!(r.json()["error"]["data"]["reason"], "token_missing");
    // Refused before its body was read: the connection is not reused into a reset.
    assert_eq!(r.header("connection"), Some("close"));

    let valid = a.token(&oidc, TokenReq::default());
    let kid = support::oidc::header(&valid)["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let payload: Value = claims(&valid);
    let tampered = {
        let mut p = payload.clone();
        p["sub"] = "admin".into();
        let parts: Vec<&str> = valid.split('.').collect();
        format!("{}.{}.{}", parts[0], B64.encode(p.to_string()), parts[2])
    };
    let hs256 = {
        // HS256 "signed" with the issuer's public key as the secret: the classic confusion.
        let jwks = oidc.jwks();
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, jwks.as_bytes());
        let header = json!({"alg":"HS256","typ":"at+jwt","kid":kid});
        let signing = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            valid.split('.').nth(1).unwrap()
        );
        let tag = aws_lc_rs::hmac::sign(&key, signing.as_bytes());
        format!("{signing}.{}", B64.encode(tag.as_ref()))
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "wrong audience",
            oidc.token(&TokenReq {
                resource: Some("http://127.0.0.1:1/another-server"),
                ..TokenReq::default()
            }),
            401,
            "token_wrong_audience",
        ),
        (
            "not yet valid",
            a.token(
                &oidc,
                TokenReq {
                    nbf_offset: Some(600),
                    ..TokenReq::default()
                },
            ),
            401,
            "token_not_yet_valid",
        ),
        (
            "too long-lived",
            a.token(
                &oidc,
                TokenReq {
                    ttl_secs: Some(86_400),
                    ..TokenReq::default()
                },
            ),
            401,
            "token_lifetime_too_long",
        ),
        (
            "too few scopes",
            a.token(
                &oidc,
                TokenReq {
                    scope: "tools.read",
                    ..TokenReq::default()
                },
            ),
            403,
            "insufficient_scope",
        ),
        (
            "another issuer",
            other.token(&TokenReq {
                resource: Some(&a.resource),
                ..TokenReq::default()
            }),
            401,
            "token_unknown_key",
        ),
        (
            "alg none",
            forge_alg(&valid, json!({"alg":"none","typ":"at+jwt"}), b""),
            401,
            "token_algorithm_not_allowed",
        ),
        (
            "HS256 with the public key",
            hs256,
            401,
            "token_algorithm_not_allowed",
        ),
        ("tampered payload", tampered, 401, "token_bad_signature"),
        (
            "not a token",
            "opaque-garbage".into(),
            401,
            "token_malformed",
        ),
    ];
    for (what, token, status, reason) in &cases {
        let before = a.up.requests().len();
        let r = a.post(Some(token), None, INIT);
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        assert_eq!(r.json()["error"]["data"]["reason"], *reason, "{what}");
        let c = challenge(&r);
        assert!(
            c.starts_with(&format!("Bearer resource_metadata=\"{metadata}\"")),
            "{what}: {c}"
        );
        let code = if *status == 403 {
            "insufficient_scope"
        } else {
            "invalid_token"
        };
        assert!(c.contains(&format!("error=\"{code}\"")), "{what}: {c}");
        assert_eq!(a.up.requests().len(), before, "{what} reached the upstream");
        a.upstream_never_saw(token);
    }
    // Expired: minted for 1 s, presented after it ran out (leeway 0).
    let short = a.token(
        &oidc,
        TokenReq {
            ttl_secs: Some(1),
            ..TokenReq::default()
        },
    );
    std::thread::sleep(Duration::from_millis(2100));
    let r = a.post(Some(&short), None, INIT);
    assert_eq!(
        (r.status, r.json()["error"]["data"]["reason"].clone()),
        (401, "token_expired".into())
    );

    // The valid token opens a session; the upstream sees Warden, not the token.
    let sid = a.open(&valid);
    let r = a.call(&valid, &sid, "echo");
    assert_eq!(r.status, 200, "{}", r.text());
    a.upstream_never_saw(&valid);
    assert!(
        a.up.requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );

    // Each refusal was audited with its reason.
    for (what, _, _, reason) in &cases {
        assert!(
            !a.w.audit_reason(reason).is_empty(),
            "{what}: no audit event"
        );
    }
    assert!(!a.w.audit_reason("token_expired").is_empty());
    // A token in the query string is never read.
    let r = request(
        a.w.port,
        "POST",
        &format!("/mcp?access_token={valid}"),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        INIT.as_bytes(),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn protected_resource_metadata_is_served_at_both_well_known_paths() {
    let oidc = Oidc::start();
    let a = Arena::start(&oidc, "");
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let r = request(a.w.port, "GET", path, &[], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let m = r.json();
        assert_eq!(m["resource"], a.resource);
        assert_eq!(m["authorization_servers"], json!([oidc.issuer]));
        assert_eq!(
            m["scopes_supported"],
            json!(["mcp", "tools.read", "tools.admin"])
        );
    }
}

#[test]
fn scopes_and_step_up_per_tool_are_enforced_before_the_upstream() {
    let oidc = Oidc::start();
    let a = Arena::start(
        &oidc,
        "\n[[auth.require]]\ntool = \"vault\"\nmin_acr = \"urn:high\"\n",
    );
    let plain = a.token(&oidc, TokenReq::default());
    let sid = a.open(&plain);
    let calls = || {
        a.up.requests()
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("tools/call"))
            .count()
    };
    // admin_* needs tools.admin too: 403 naming every scope needed.
    let r = a.call(&plain, &sid, "admin_rm");
    assert_eq!(r.status, 403, "{}", r.text());
    let c = challenge(&r);
    assert!(
        c.contains("scope=\"mcp tools.admin\"") && c.contains("error=\"insufficient_scope\""),
        "{c}"
    );
    // danger needs mfa: the step-up error, not the call.
    let r = a.call(&plain, &sid, "danger");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["reason"], "step_up_required");
    assert!(
        challenge(&r).contains("amr_values=\"mfa\""),
        "{}",
        challenge(&r)
    );
    assert_eq!(calls(), 0, "a refused call reached the upstream");
    assert_eq!(a.w.audit_reason("step_up_required").len(), 1);
    // With the scope and with mfa, the same calls go through (in their own sessions).
    let admin = a.token(
        &oidc,
        TokenReq {
            scope: "mcp tools.admin",
            ..TokenReq::default()
        },
    );
    let sid = a.open(&admin);
    assert_eq!(a.call(&admin, &sid, "admin_rm").status, 200);
    let strong = a.token(
        &oidc,
        TokenReq {
            amr: Some("pwd mfa"),
            ..TokenReq::default()
        },
    );
    let sid = a.open(&strong);
    assert_eq!(a.call(&strong, &sid, "danger").status, 200);
    assert_eq!(calls(), 2);
    // vault needs acr urn:high: a urn:low token gets the step-up error naming the level.
    let low = a.token(
        &oidc,
        TokenReq {
            acr: Some("urn:low"),
            ..TokenReq::default()
        },
    );
    let sid = a.open(&low);
    let r = a.call(&low, &sid, "vault");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["reason"], "step_up_required");
    assert!(
        challenge(&r).contains("acr_values=\"urn:high\""),
        "{}",
        challenge(&r)
    );
    assert_eq!(calls(), 2);
    let high = a.token(
        &oidc,
        TokenReq {
            acr: Some("urn:high"),
            ..TokenReq::default()
        },
    );
    let sid = a.open(&high);
    assert_eq!(a.call(&high, &sid, "vault").status, 200);
    assert_eq!(calls(), 3);
}

#[test]
fn a_rotated_key_is_picked_up_and_the_retired_one_refused() {
    let oidc = Oidc::start();
    let a = Arena::start(&oidc, "");
    let old = a.token(&oidc, TokenReq::default());
    let sid = a.open(&old);
    let new_kids = oidc.rotate();
    // Past the unknown-kid refresh interval (1 s here).
    std::thread::sleep(Duration::from_millis(1200));
    let new = a.token(&oidc, TokenReq::default());
    let kid = support::oidc::header(&new)["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(new_kids.contains(&kid));
    // Eight requests at once with the new kid: one refetch, and none refused meanwhile.
    a.initialize_concurrently(&new, 8);
    let sid2 = a.open(&new);
    assert_eq!(a.call(&new, &sid2, "echo").status, 200);
    // The retired key's token — verified and cached before — is refused now.
    let r = a.call(&old, &sid, "echo");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["reason"], "token_unknown_key");
}

#[test]
fn a_token_that_expires_mid_session_gets_401_on_its_next_request() {
    let oidc = Oidc::start();
    let a = Arena::start(&oidc, "");
    let t = a.token(
        &oidc,
        TokenReq {
            ttl_secs: Some(2),
            ..TokenReq::default()
        },
    );
    let sid = a.open(&t);
    assert_eq!(a.call(&t, &sid, "echo").status, 200);
    std::thread::sleep(Duration::from_millis(2600));
    let r = a.call(&t, &sid, "echo");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["reason"], "token_expired");
    assert!(challenge(&r).contains("error=\"invalid_token\""));
    // A fresh token of the same principal carries the session on.
    let fresh = a.token(&oidc, TokenReq::default());
    assert_eq!(a.call(&fresh, &sid, "echo").status, 200);
}

#[test]
fn a_session_id_authorizes_nothing_for_another_principal() {
    let oidc = Oidc::start();
    let a = Arena::start(&oidc, "");
    let alice = a.token(&oidc, TokenReq::default());
    let bob = a.token(
        &oidc,
        TokenReq {
            client: "bob",
            ..TokenReq::default()
        },
    );
    let sid = a.open(&alice);
    let before = a.up.requests().len();
    // Bob's valid token with Alice's session id: 404, as for an unknown id, and audited.
    let r = a.call(&bob, &sid, "echo");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["reason"], "session_not_found");
    let ev = a.w.audit_reason("session_owner_mismatch");
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev[0]["subject"].as_str().unwrap().ends_with(" bob"),
        "{ev:?}"
    );
    // The id alone: 401.
    assert_eq!(
        a.post(
            None,
            Some(&sid),
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#
        )
        .status,
        401
    );
    assert_eq!(
        a.up.requests().len(),
        before,
        "nothing reached the upstream"
    );
    // Bob cannot end it either; Alice's session goes on.
    let del = request(
        a.w.port,
        "DELETE",
        "/mcp",
        &[
            ("authorization", &format!("Bearer {bob}")),
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        b"",
    );
    assert_eq!(del.status, 404);
    assert_eq!(a.call(&alice, &sid, "echo").status, 200);
}

#[test]
fn jwks_file_mode_verifies_without_discovery() {
    let oidc = Oidc::start();
    let dir = support::temp_dir("jwks-file");
    let file = dir.join("jwks.json");
    std::fs::write(&file, oidc.jwks()).unwrap();
    let a = Arena::start(
        &oidc,
        &format!("jwks_file = {}\n", toml_str(&file.display().to_string())),
    );
    let t = a.token(
        &oidc,
        TokenReq {
            alg: Some("ES256"),
            ..TokenReq::default()
        },
    );
    let sid = a.open(&t);
    assert_eq!(a.call(&t, &sid, "echo").status, 200);
}

#[test]
fn cached_keys_keep_serving_while_the_issuer_is_down_and_no_keys_fail_closed() {
    let mut oidc = Oidc::start();
    let a = Arena::start(&oidc, "");
    let (t1, t2) = (
        a.token(&oidc, TokenReq::default()),
        a.token(
            &oidc,
            TokenReq {
                client: "bob",
                ..TokenReq::default()
            },
        ),
    );
    let sid = a.open(&t1);
    let _ = oidc.proc.child.kill();
    let _ = oidc.proc.child.wait();
    // A token never seen before still verifies: the keys are cached, the issuer is not asked.
    let sid2 = a.open(&t2);
    assert_eq!(a.call(&t2, &sid2, "echo").status, 200);
    assert_eq!(a.call(&t1, &sid, "echo").status, 200);

    // An issuer that cannot be reached and no keys yet: 503 with Retry-After, never a pass.
    let gone = Oidc {
        issuer: format!("http://127.0.0.1:{}", support::free_port()),
        ..oidc
    };
    let b = Arena::start(&gone, "");
    let r = b.post(Some(&t1), None, INIT);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["reason"], "auth_keys_unavailable");
    assert!(r.header("retry-after").is_some());
    assert!(b.up.requests().is_empty());
}

#[test]
fn opaque_tokens_are_introspected_and_held_to_the_resource() {
    let oidc = Oidc::start();
    let dir = support::temp_dir("introspection");
    let secret = dir.join("warden.secret");
    std::fs::write(&secret, "warden-secret").unwrap();
    let intro = format!(
        "[auth.introspection]\nclient_id = \"warden\"\nclient_secret = {{ file = {} }}\n",
        toml_str(&secret.display().to_string())
    );
    let a = Arena::start(&oidc, &intro);
    // No resource asked for: the provider issues an opaque token with no audience.
    let opaque = oidc.token(&TokenReq {
        resource: None,
        ..TokenReq::default()
    });
    assert!(!opaque.contains('.'), "expected an opaque token: {opaque}");
    let r = a.post(Some(&opaque), None, INIT);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["reason"], "token_wrong_audience");
    // Introspection said who it is; the audience rule refused it all the same.
    assert!(a.up.requests().is_empty());
    // A garbage opaque token: inactive.
    let r = a.post(Some("not-a-real-token"), None, INIT);
    assert_eq!(
        r.json()["error"]["data"]["reason"],
        "token_inactive",
        "{}",
        r.text()
    );
}
