//! A 2026-07-28 client in front of a server that speaks only session-based MCP gets a clear,
//! spec-shaped error (400, -32022, the versions that do work, a hint) instead of whatever the old
//! server makes of a request it does not understand (P3.4). Warden asks the upstream once with
//! `server/discover` and remembers the answer.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use support::client::request;
use support::tiny::{JSON, open_session, rpc, text_of, tiny};
use support::{Warden, temp_dir, toml_str, upstream_stdio};

#[test]
fn stateless_requests_to_a_session_era_server_get_a_clear_error() {
    let log = temp_dir("tiny").join("seen.jsonl");
    let table = upstream_stdio("old", &tiny(&["--tools", "echo"]), None).replacen(
        "command = ",
        &format!(
            "env = {{ TINY_LOG = {} }}\ncommand = ",
            toml_str(&log.display().to_string())
        ),
        1,
    );
    let w = Warden::start(&table);
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let headers = [
        JSON,
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    for _ in 0..2 {
        let r = request(w.port, "POST", "/mcp", &headers, body.as_bytes());
        assert_eq!(r.status, 400, "{}", r.text());
        let v = r.json();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], -32022);
        assert_eq!(
            v["error"]["data"]["reason"],
            "upstream_generation_unsupported"
        );
        assert!(
            v["error"]["data"]["supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "2025-11-25"),
            "{v}"
        );
        assert!(!v["error"]["data"]["hint"].as_str().unwrap().is_empty());
    }
    let seen = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        seen.matches("server/discover").count(),
        1,
        "asked once, then remembered: {seen}"
    );
    assert!(
        !seen.contains("tools/list"),
        "the stateless request never reached the old server: {seen}"
    );
    assert_eq!(w.audit_reason("upstream_generation_unsupported").len(), 2);

    // The same server still serves session-based clients.
    let sid = open_session(w.port);
    let call = rpc(
        w.port,
        &sid,
        1,
        "tools/call",
        serde_json::json!({"name": "echo"}),
    );
    assert_eq!(text_of(&call), "tiny:echo:{}");
}
