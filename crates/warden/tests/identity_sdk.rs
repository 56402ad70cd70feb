//! Identity (#14): the Python SDK's OAuth client, end to end — Warden's 401 and RFC 9728
//! metadata, discovery of the real `oidc-provider`, dynamic registration, authorization code +
//! PKCE with the resource indicator, then a tool call on server-everything through Warden.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::process::Command;

use support::auth_arena::auth_section;
use support::oidc::Oidc;
use support::{Warden, free_port, python, repo_root, start_everything_http, upstream_http};

#[test]
fn the_python_sdk_oauth_client_discovers_authorizes_and_calls_a_tool() {
    let oidc = Oidc::start();
    let (_everything, url) = start_everything_http();
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let w = Warden::start(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{}{}",
        auth_section(&oidc, &resource, ""),
        upstream_http("everything", &url, None)
    ));
    let out = Command::new(python())
        .arg(repo_root().join("tests/peers/python/oauth_client.py"))
        .arg(&w.url)
        .arg("echo")
        .arg(r#"{"message":"through warden with oauth"}"#)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["result"]
            .to_string()
            .contains("through warden with oauth"),
        "{v}"
    );
    // The token the SDK obtained names Warden as its audience (RFC 8707 resource indicator).
    assert_eq!(v["token_aud"].as_str(), Some(resource.as_str()), "{v}");
    // Warden refused the first, token-less attempt, then served the authenticated ones.
    let audit = w.audit();
    assert!(
        audit.iter().any(|e| e["reason"] == "token_missing"),
        "no 401 audited"
    );
    assert!(
        audit
            .iter()
            .any(|e| e["tool"] == "echo"
                && e["subject"].as_str().is_some_and(|s| s.ends_with(" carol"))),
        "the call was not audited under the user"
    );
}
