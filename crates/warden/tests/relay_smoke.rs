//! Smoke test of the relay and the test harness: an initialize goes through byte-for-byte, the
//! client gets Warden's own session id (not the upstream's), and the audit log records it.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use support::client::request;
use support::recorder::{Canned, Recorder};
use support::{Warden, upstream_http};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{},"x-unknown":{"a":[1,2]}},"clientInfo":{"name":"t","version":"1"},"_meta":{}}}"#;

#[test]
fn initialize_passes_byte_for_byte_and_gets_a_warden_session() {
    let up = Recorder::start(|r| {
        let body = String::from_utf8_lossy(&r.body);
        if body.contains("\"initialize\"") {
            Canned::json(r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"rec","version":"0"},"x-extra":true}}"#)
                .with_header("mcp-session-id", "upstream-session-1")
        } else {
            Canned::accepted()
        }
    });
    let w = Warden::start(&upstream_http("rec", &up.url, None));
    let reply = request(
        w.port,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("authorization", "Bearer client-secret"),
        ],
        INIT.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.text().contains("\"x-extra\":true"),
        "unknown result fields pass: {}",
        reply.text()
    );
    let sid = reply
        .header("mcp-session-id")
        .expect("session id")
        .to_owned();
    assert_ne!(
        sid, "upstream-session-1",
        "the upstream's session id never reaches the client"
    );
    assert_eq!(sid.len(), 43);
    let seen = up.requests();
    assert_eq!(
        seen[0].body,
        INIT.as_bytes(),
        "the upstream got the client's exact bytes"
    );
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the client's token is not passed through (P7.1)"
    );
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let r2 = request(
        w.port,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        note.as_bytes(),
    );
    assert_eq!(r2.status, 202);
    assert_eq!(
        up.requests()[1].header("mcp-session-id"),
        Some("upstream-session-1"),
        "Warden maps its session to the upstream's"
    );
    let events = w.audit();
    assert!(
        events.iter().any(|e| e["kind"] == "mcp.request"
            && e["method"] == "initialize"
            && e["decision"] == "allow"),
        "{events:?}"
    );
}
