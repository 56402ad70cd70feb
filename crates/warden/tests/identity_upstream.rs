//! Identity (#14), the other half: Warden's own credentials upstream, never the client's
//! (P7.1–P7.4), and revocation of sessions through the admin listener and `warden sessions`
//! (M2, P8.3). Tokens come from a real `oidc-provider`; upstreams record every header.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::process::Command;

use serde_json::json;
use support::auth_arena::{Arena, auth_section, upstream};
use support::client::request;
use support::oidc::{Oidc, TokenReq, claims};
use support::recorder::Recorder;
use support::{Warden, free_port, temp_dir, toml_str, upstream_http, warden_bin};

const STATIC_SECRET: &str = "static-upstream-key-7f3a";

#[test]
fn each_upstream_gets_wardens_own_credential_and_never_the_clients_token() {
    let oidc = Oidc::start();
    let dir = temp_dir("upstream-creds");
    let (key_file, warden_secret) = (dir.join("static.key"), dir.join("warden.secret"));
    std::fs::write(&key_file, format!("{STATIC_SECRET}\n")).unwrap();
    std::fs::write(&warden_secret, "warden-secret\n").unwrap();
    let [plain, stat, cc, tx] = [(); 4].map(|_| Recorder::start(upstream));
    let token_endpoint = format!("{}/token", oidc.issuer);
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let secret_ref =
        |f: &std::path::Path| format!("{{ file = {} }}", toml_str(&f.display().to_string()));
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{auth}{plain}prefix = \"p\"\n\n{stat}prefix = \"s\"\n\
         [upstream.auth]\nkind = \"static\"\nvalue = {key}\n\n\
         {cc}prefix = \"c\"\n[upstream.auth]\nkind = \"client_credentials\"\ntoken_endpoint = {te}\n\
         client_id = \"warden\"\nclient_secret = {ws}\nscope = \"mcp\"\nresource = {cc_url}\n\n\
         {tx}prefix = \"x\"\n[upstream.auth]\nkind = \"token_exchange\"\ntoken_endpoint = {te}\n\
         client_id = \"warden\"\nclient_secret = {ws}\naudience = {tx_url}\nscope = \"mcp\"\n",
        auth = auth_section(&oidc, &resource, ""),
        plain = upstream_http("plain", &plain.url, None),
        stat = upstream_http("stat", &stat.url, None),
        cc = upstream_http("cc", &cc.url, None),
        tx = upstream_http("tx", &tx.url, None),
        key = secret_ref(&key_file),
        ws = secret_ref(&warden_secret),
        te = toml_str(&token_endpoint),
        cc_url = toml_str(&cc.url),
        tx_url = toml_str(&tx.url),
    );
    let w = Warden::start(&cfg);
    let a = Arena {
        w,
        up: plain,
        resource,
    };
    let alice = a.token(&oidc, TokenReq::default());
    // initialize and tools/list fan out to every upstream: each is shaped for its own.
    let sid = a.open(&alice);
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string();
    assert_eq!(a.post(Some(&alice), Some(&sid), &list).status, 200);
    for tool in ["p_echo", "s_echo", "c_echo", "x_echo", "x_echo"] {
        let r = a.call(&alice, &sid, tool);
        assert_eq!(r.status, 200, "{tool}: {}", r.text());
    }

    let auth_of = |u: &Recorder| -> Vec<String> {
        u.requests()
            .iter()
            .map(|r| r.header("authorization").unwrap_or_default().to_owned())
            .collect()
    };
    let everyone = [&a.up, &stat, &cc, &tx];
    for u in everyone {
        assert!(
            u.requests().len() >= 4,
            "initialize, initialized, list, call"
        );
        for r in u.requests() {
            for (k, v) in &r.headers {
                assert!(
                    !v.contains(&alice),
                    "the client's token reached an upstream in {k}"
                );
                assert!(!k.eq_ignore_ascii_case("cookie"));
            }
        }
    }
    // None: no credential at all.
    assert!(auth_of(&a.up).iter().all(String::is_empty));
    // Static: the secret from its file, to that upstream only, on every request.
    for r in stat.requests() {
        let want = format!("Bearer {STATIC_SECRET}");
        let what = format!("{} {}", r.method, String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("authorization"), Some(want.as_str()), "{what}");
    }
    for u in [&a.up, &cc, &tx] {
        assert!(
            u.requests()
                .iter()
                .all(|r| r.headers.iter().all(|(_, v)| !v.contains(STATIC_SECRET)))
        );
    }
    // Client credentials: Warden's own token, for that upstream, one for every request.
    let cc_auth = auth_of(&cc);
    assert!(
        cc_auth.windows(2).all(|w| w[0] == w[1]),
        "fetched once and cached"
    );
    let c = claims(cc_auth[0].strip_prefix("Bearer ").unwrap());
    assert_eq!(
        (c["sub"].as_str(), c["aud"].as_str()),
        (Some("warden"), Some(cc.url.as_str())),
        "{c}"
    );
    // Token exchange: this user, for that upstream, acting through Warden; exchanged once.
    let tx_auth = auth_of(&tx);
    assert!(
        tx_auth.windows(2).all(|w| w[0] == w[1]),
        "exchanged once and cached"
    );
    let x = claims(tx_auth[0].strip_prefix("Bearer ").unwrap());
    assert_eq!(x["sub"], claims(&alice)["sub"], "{x}");
    assert_eq!(x["aud"].as_str(), Some(tx.url.as_str()), "{x}");
    assert_eq!(x["act"]["sub"], "warden", "{x}");
    // Never logged: neither the secrets nor any token, in the audit trail or the logs.
    let mut w = a.w;
    let logs = format!(
        "{}\n{}",
        std::fs::read_to_string(w.dir.join("audit.jsonl")).unwrap(),
        w.proc.stderr_now()
    );
    for secret in [
        STATIC_SECRET,
        "warden-secret",
        &alice,
        &cc_auth[0][7..],
        &tx_auth[0][7..],
    ] {
        assert!(!logs.contains(secret), "a secret was logged");
    }
}

#[test]
fn a_token_endpoint_that_refuses_stops_the_message_before_the_upstream() {
    let oidc = Oidc::start();
    let dir = temp_dir("upstream-creds-bad");
    let wrong = dir.join("wrong.secret");
    std::fs::write(&wrong, "not-the-secret").unwrap();
    let tx = Recorder::start(upstream);
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{}{}[upstream.auth]\nkind = \"token_exchange\"\n\
         token_endpoint = {}\nclient_id = \"warden\"\nclient_secret = {{ file = {} }}\naudience = {}\n",
        auth_section(&oidc, &resource, ""),
        upstream_http("tx", &tx.url, None),
        toml_str(&format!("{}/token", oidc.issuer)),
        toml_str(&wrong.display().to_string()),
        toml_str(&tx.url),
    );
    let a = Arena {
        w: Warden::start(&cfg),
        up: tx,
        resource,
    };
    let alice = a.token(&oidc, TokenReq::default());
    let r = a.post(Some(&alice), None, support::auth_arena::INIT);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        r.json()["error"]["data"]["reason"],
        "upstream_credential_failed"
    );
    assert!(
        a.up.requests().is_empty(),
        "nothing was sent without the credential"
    );
    assert_eq!(a.w.audit_reason("upstream_credential_failed").len(), 1);
}

fn sessions_cli(w: &Warden, args: &[&str]) -> (bool, String) {
    let out = Command::new(warden_bin())
        .args(["sessions", "--config"])
        .arg(w.dir.join("warden.toml"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn sessions_are_revoked_one_by_one_or_all_of_a_principal() {
    let oidc = Oidc::start();
    let dir = temp_dir("admin-sock");
    let sock = dir.join("admin.sock");
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, "admin-token-123").unwrap();
    let admin = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nsocket = {}\ntoken = {{ file = {} }}\n\n",
        toml_str(&sock.display().to_string()),
        toml_str(&token_file.display().to_string())
    );
    let a = Arena::with(&oidc, "", &admin);
    let alice = a.token(&oidc, TokenReq::default());
    let bob = a.token(
        &oidc,
        TokenReq {
            client: "bob",
            ..TokenReq::default()
        },
    );
    let (a1, a2, b1) = (a.open(&alice), a.open(&alice), a.open(&bob));
    let (ok, listed) = sessions_cli(&a.w, &["list"]);
    assert!(ok, "{listed}");
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{listed}");
    for id in [&a1, &a2, &b1] {
        assert!(
            !listed.contains(id.as_str()),
            "the listing shows fingerprints, never ids"
        );
    }
    let alice_id = format!(
        "{} {}",
        oidc.issuer,
        claims(&alice)["sub"].as_str().unwrap()
    );
    let a1_fp = sessions
        .iter()
        .find(|s| s["owner"] == alice_id.as_str())
        .and_then(|s| s["session"].as_str())
        .unwrap()
        .to_owned();
    let (ok, out) = sessions_cli(&a.w, &["revoke", &a1_fp]);
    assert!(ok, "{out}");
    let live = |tok: &str, sid: &str| a.call(tok, sid, "echo").status;
    let still: Vec<u16> = [(&alice, &a1), (&alice, &a2), (&bob, &b1)]
        .iter()
        .map(|(t, s)| live(t, s))
        .collect();
    assert_eq!(
        still.iter().filter(|s| **s == 404).count(),
        1,
        "exactly one session ended: {still:?}"
    );
    let (ok, out) = sessions_cli(&a.w, &["revoke-principal", &alice_id]);
    assert!(ok, "{out}");
    assert_eq!(
        (live(&alice, &a1), live(&alice, &a2), live(&bob, &b1)),
        (404, 404, 200)
    );
    assert_eq!(
        a.w.audit()
            .iter()
            .filter(|e| e["kind"] == "session.revoked")
            .count(),
        2
    );

    // Over TCP, session management needs the admin token.
    let admin_port = support::port_in(a.w.admin.as_deref().unwrap());
    let r = request(admin_port, "GET", "/sessions", &[], b"");
    assert_eq!(r.status, 401);
    let r = request(
        admin_port,
        "GET",
        "/sessions",
        &[("authorization", "Bearer admin-token-123")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(request(admin_port, "GET", "/metrics", &[], b"").status, 200);
    assert!(!a.w.audit_reason("admin_token_invalid").is_empty());
}

#[test]
fn a_credential_is_fetched_once_however_many_requests_wait_for_it() {
    let oidc = Oidc::start();
    let dir = temp_dir("upstream-creds-once");
    let secret = dir.join("warden.secret");
    std::fs::write(&secret, "warden-secret").unwrap();
    // A slow token endpoint: every request that misses the cache arrives while it answers.
    let endpoint = Recorder::start(|_| {
        std::thread::sleep(std::time::Duration::from_millis(400));
        support::recorder::Canned::json(
            r#"{"access_token":"cc-token-1","token_type":"Bearer","expires_in":600}"#,
        )
    });
    let up = Recorder::start(upstream);
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{}{}[upstream.auth]\nkind = \"client_credentials\"\n\
         token_endpoint = {}\nclient_id = \"warden\"\nclient_secret = {{ file = {} }}\n",
        auth_section(&oidc, &resource, ""),
        upstream_http("up", &up.url, None),
        toml_str(&endpoint.url),
        toml_str(&secret.display().to_string()),
    );
    let a = Arena {
        w: Warden::start(&cfg),
        up,
        resource,
    };
    let alice = a.token(&oidc, TokenReq::default());
    a.initialize_concurrently(&alice, 8);
    assert_eq!(
        endpoint.requests().len(),
        1,
        "one fetch for eight waiting requests"
    );
    let form = String::from_utf8_lossy(&endpoint.requests()[0].body).into_owned();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(
        !form.contains(&alice),
        "the client's token went to the token endpoint"
    );
    assert!(
        a.up.requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer cc-token-1"))
    );
}

#[test]
fn session_management_over_tcp_without_an_admin_token_is_refused() {
    let oidc = Oidc::start();
    // The harness's admin listener: TCP, no token configured.
    let a = Arena::start(&oidc, "");
    let alice = a.token(&oidc, TokenReq::default());
    let sid = a.open(&alice);
    let admin_port = support::port_in(a.w.admin.as_deref().unwrap());
    let principal = format!(
        "{} {}",
        oidc.issuer,
        claims(&alice)["sub"].as_str().unwrap()
    );
    let revoke = format!(
        "/sessions?principal={}",
        principal
            .replace(' ', "%20")
            .replace(':', "%3A")
            .replace('/', "%2F")
    );
    for (method, path) in [("GET", "/sessions"), ("DELETE", revoke.as_str())] {
        let r = request(
            admin_port,
            method,
            path,
            &[("authorization", "Bearer guess")],
            b"",
        );
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    assert_eq!(a.w.audit_reason("admin_token_not_configured").len(), 2);
    assert!(a.w.audit().iter().all(|e| e["kind"] != "session.revoked"));
    assert_eq!(
        a.call(&alice, &sid, "echo").status,
        200,
        "the session was not revoked"
    );
    // Metrics stay readable.
    assert_eq!(request(admin_port, "GET", "/metrics", &[], b"").status, 200);
}
