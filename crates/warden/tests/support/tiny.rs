//! Helpers around `tests/peers/hostile/tiny_server.py` (a small stdio MCP server written for these
//! tests) and a minimal session-based client over the raw HTTP client.

use super::client::{Reply, request};
use super::repo_root;

/// argv for the tiny server with `args`.
pub fn tiny(args: &[&str]) -> Vec<String> {
    let mut v = vec![
        "python3".to_owned(),
        repo_root()
            .join("tests/peers/hostile/tiny_server.py")
            .display()
            .to_string(),
    ];
    v.extend(args.iter().map(|a| (*a).to_owned()));
    v
}

pub const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");
pub const JSON: (&str, &str) = ("content-type", "application/json");

/// initialize + initialized; returns Warden's session id.
pub fn open_session(port: u16) -> String {
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;
    let r = request(port, "POST", "/mcp", &[JSON, ACCEPT], init.as_bytes());
    assert_eq!(r.status, 200, "initialize: {}", r.text());
    let sid = r.header("mcp-session-id").expect("session id").to_owned();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let r = rpc_raw(port, &sid, note);
    assert_eq!(r.status, 202, "initialized: {}", r.text());
    sid
}

/// POST one message in a session.
pub fn rpc_raw(port: u16, sid: &str, body: &str) -> Reply {
    request(
        port,
        "POST",
        "/mcp",
        &[
            JSON,
            ACCEPT,
            ("mcp-session-id", sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        body.as_bytes(),
    )
}

/// POST a request and return its JSON-RPC response (from JSON or the SSE stream).
pub fn rpc(
    port: u16,
    sid: &str,
    id: u64,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string();
    let r = rpc_raw(port, sid, &body);
    let msgs: Vec<serde_json::Value> = if r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        r.sse_messages()
    } else {
        vec![r.json()]
    };
    msgs.into_iter().find(|m| m["id"] == id).unwrap_or_else(|| {
        panic!(
            "no response to {method} (status {}): {}",
            r.status,
            r.text()
        )
    })
}

/// Text of the first content item of a tools/call result.
pub fn text_of(resp: &serde_json::Value) -> String {
    resp["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
