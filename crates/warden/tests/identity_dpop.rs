//! Identity (#14 item 7): DPoP-bound access tokens (RFC 9449) from a real `oidc-provider`,
//! verified by Warden on every request: the proof must be signed by the token's key and bind
//! this request (method, resource, access-token hash, a fresh `jti`); a bound token presented as
//! a bearer token, a replayed, foreign or stale proof, or no proof at all is refused (P7.4).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use serde_json::{Value, json};
use support::auth_arena::{Arena, INIT};
use support::client::{Reply, request};
use support::oidc::{Oidc, claims};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A client's DPoP key.
struct Holder {
    pair: EcdsaKeyPair,
    jwk: Value,
    n: std::cell::Cell<u32>,
}

impl Holder {
    fn new() -> Holder {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let pt = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty":"EC","crv":"P-256","x":B64.encode(&pt[1..33]),"y":B64.encode(&pt[33..65])});
        Holder {
            pair,
            jwk,
            n: 0.into(),
        }
    }

    /// A proof for `htm` `htu` (with `ath` of `token` when given), a new `jti` each time.
    fn proof(&self, htm: &str, htu: &str, token: Option<&str>) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.n.set(self.n.get() + 1);
        let mut c =
            json!({"htm":htm,"htu":htu,"iat":now,"jti":format!("jti-{}-{now}", self.n.get())});
        if let Some(t) = token {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes());
            c["ath"] = B64.encode(d.as_ref()).into();
        }
        let h = json!({"typ":"dpop+jwt","alg":"ES256","jwk":self.jwk});
        let input = format!(
            "{}.{}",
            B64.encode(h.to_string()),
            B64.encode(c.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }
}

/// A DPoP-bound token for `resource` from the provider (client credentials of `alice`).
fn bound_token(oidc: &Oidc, holder: &Holder, resource: &str) -> String {
    let proof = holder.proof("POST", &format!("{}/token", oidc.issuer), None);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alice-secret")
    );
    let body = format!(
        "grant_type=client_credentials&scope=mcp&resource={}",
        resource.replace(':', "%3A").replace('/', "%2F")
    );
    let r = request(
        oidc.port,
        "POST",
        "/token",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &basic),
            ("dpop", &proof),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["token_type"], "DPoP", "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

fn post(a: &Arena, scheme: &str, token: &str, proof: Option<&str>) -> Reply {
    let auth = format!("{scheme} {token}");
    let mut h = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("authorization", auth.as_str()),
    ];
    if let Some(p) = proof {
        h.push(("dpop", p));
    }
    request(a.w.port, "POST", "/mcp", &h, INIT.as_bytes())
}

#[test]
fn dpop_bound_tokens_need_a_fresh_proof_by_their_key_for_this_request() {
    let oidc = Oidc::start();
    let a = Arena::start(&oidc, "");
    let (holder, thief) = (Holder::new(), Holder::new());
    let token = bound_token(&oidc, &holder, &a.resource);
    assert!(
        claims(&token)["cnf"]["jkt"].is_string(),
        "{}",
        claims(&token)
    );

    // The holder with a proof for this request: in.
    let good = holder.proof("POST", &a.resource, Some(&token));
    let r = post(&a, "DPoP", &token, Some(&good));
    assert_eq!(r.status, 200, "{}", r.text());

    let reason = |r: &Reply| {
        r.json()["error"]["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let cases: Vec<(&str, &str, Option<String>, &str)> = vec![
        ("as a bearer token", "Bearer", None, "token_dpop_bound"),
        ("no proof", "DPoP", None, "dpop_proof_invalid"),
        (
            "the same proof again",
            "DPoP",
            Some(good.clone()),
            "dpop_proof_invalid",
        ),
        (
            "another key's proof",
            "DPoP",
            Some(thief.proof("POST", &a.resource, Some(&token))),
            "dpop_proof_invalid",
        ),
        (
            "a proof for another method",
            "DPoP",
            Some(holder.proof("GET", &a.resource, Some(&token))),
            "dpop_proof_invalid",
        ),
        (
            "a proof for another resource",
            "DPoP",
            Some(holder.proof("POST", "http://127.0.0.1:1/mcp", Some(&token))),
            "dpop_proof_invalid",
        ),
        (
            "a proof without ath",
            "DPoP",
            Some(holder.proof("POST", &a.resource, None)),
            "dpop_proof_invalid",
        ),
    ];
    for (what, scheme, proof, want) in &cases {
        let before = a.up.requests().len();
        let r = post(&a, scheme, &token, proof.as_deref());
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(reason(&r), *want, "{what}");
        let dpop_challenge = r.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("www-authenticate") && v.starts_with("DPoP algs=")
        });
        assert!(dpop_challenge, "{what}: {:?}", r.headers);
        assert_eq!(a.up.requests().len(), before, "{what} reached the upstream");
    }
    assert_eq!(
        a.w.audit_reason("dpop_proof_invalid").len(),
        cases.len() - 1
    );

    // A plain bearer token presented with the DPoP scheme is not DPoP-bound: refused too.
    let plain = a.token(&oidc, support::oidc::TokenReq::default());
    let r = post(
        &a,
        "DPoP",
        &plain,
        Some(&holder.proof("POST", &a.resource, Some(&plain))),
    );
    assert_eq!((r.status, reason(&r).as_str()), (401, "dpop_proof_invalid"));
}

#[test]
fn a_tool_can_require_a_dpop_bound_token() {
    let oidc = Oidc::start();
    let a = Arena::start(&oidc, "\n[[auth.require]]\ntool = \"echo\"\ndpop = true\n");
    // A bearer token: the session opens, the DPoP-only tool is refused.
    let plain = a.token(&oidc, support::oidc::TokenReq::default());
    let sid = a.open(&plain);
    let r = a.call(&plain, &sid, "echo");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["reason"], "dpop_proof_invalid");
    assert!(
        a.up.requests()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("tools/call")),
        "the call reached the upstream"
    );
}

#[test]
fn an_upstream_can_require_dpop_bound_clients() {
    let oidc = Oidc::start();
    // The arena's upstream, marked: every message to it (initialize fans out) needs DPoP.
    let up = support::recorder::Recorder::start(support::auth_arena::upstream);
    let port = support::free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let w = support::Warden::start(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{}{}require_dpop = true\n",
        support::auth_arena::auth_section(&oidc, &resource, ""),
        support::upstream_http("rec", &up.url, None)
    ));
    let a = Arena { w, up, resource };
    let plain = a.token(&oidc, support::oidc::TokenReq::default());
    let r = a.post(Some(&plain), None, INIT);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["reason"], "dpop_proof_invalid");
    assert!(a.up.requests().is_empty());
    let holder = Holder::new();
    let token = bound_token(&oidc, &holder, &a.resource);
    let r = post(
        &a,
        "DPoP",
        &token,
        Some(&holder.proof("POST", &a.resource, Some(&token))),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
