//! Smoke test of the relay and the test harness: an initialize goes through byte-for-byte, the
//! client gets Warden's own session id (not the upstream's), and the audit log records it.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::time::Duration;
use support::client::request;
use support::recorder::{Canned, Recorder};

use support::{Warden, audit_kinds, upstream_http};

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

/// The upstream pool reuses keep-alive connections, and every answer reaches the request it
/// belongs to: twenty calls from twenty client connections travel over one upstream connection
/// (two at most: one worker may be opening its own while another's is busy).
#[test]
fn upstream_connections_are_reused_and_answers_stay_with_their_requests() {
    let up = Recorder::start(|r| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        if body.contains("\"initialize\"") {
            Canned::json(
                r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"rec","version":"0"}}}"#,
            )
        } else if r.method == "POST" && body.contains("\"tools/call\"") {
            // Echo the call's marker so a crossed answer would show.
            let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].clone();
            Canned::json(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"for {id}"}}]}}}}"#
            ))
        } else {
            Canned::accepted()
        }
    });
    let w = Warden::start(&upstream_http("rec", &up.url, None));
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let r = request(w.port, "POST", "/mcp", &headers, INIT.as_bytes());
    let sid = r.header("mcp-session-id").expect("session id").to_owned();
    let mut in_session = headers.to_vec();
    in_session.push(("mcp-session-id", &sid));
    in_session.push(("mcp-protocol-version", "2025-11-25"));
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(
        request(w.port, "POST", "/mcp", &in_session, note.as_bytes()).status,
        202
    );
    let before = up.connections();
    for i in 100..120 {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{}}}}}}"#
        );
        let r = request(w.port, "POST", "/mcp", &in_session, call.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], i, "{}", r.text());
        assert_eq!(r.json()["result"]["content"][0]["text"], format!("for {i}"));
    }
    let opened = up.connections() - before;
    assert!(
        opened <= 2,
        "20 calls opened {opened} upstream connections: the pool does not reuse them"
    );
}

/// P5.1: on SIGTERM `warden serve` stops cleanly and its audit log, read the moment the process
/// has exited, holds the run's last request and ends with `gateway.stop`.
#[test]
fn sigterm_stops_serve_with_its_audit_log_complete() {
    let up = Recorder::start(|_| {
        Canned::json(
            r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"rec","version":"0"}}}"#,
        )
    });
    let mut w = Warden::start(&upstream_http("rec", &up.url, None));
    let r = request(
        w.port,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        INIT.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    w.proc.sigterm();
    assert_eq!(
        w.proc.wait_exit(Duration::from_secs(5)),
        Some(0),
        "clean exit on SIGTERM"
    );
    let text = std::fs::read_to_string(w.dir.join("audit.jsonl")).unwrap();
    let kinds = audit_kinds(&text);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("gateway.start"),
        "{text}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("gateway.stop"),
        "{text}"
    );
    assert!(
        text.contains(r#""method":"initialize","decision":"allow""#),
        "{text}"
    );
}

/// On SIGTERM a request in flight is answered whole before Warden exits (graceful drain), and a
/// new connection is refused at once.
#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let arrived = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let arrived2 = arrived.clone();
    let up = Recorder::start(move |r| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        if body.contains("\"tools/call\"") {
            arrived2.store(true, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1500));
            Canned::json(
                r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"finished"}]}}"#,
            )
        } else if body.contains("\"initialize\"") {
            Canned::json(
                r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"rec","version":"0"}}}"#,
            )
        } else {
            Canned::accepted()
        }
    });
    let mut w = Warden::start(&upstream_http("rec", &up.url, None));
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let r = request(w.port, "POST", "/mcp", &headers, INIT.as_bytes());
    let sid = r.header("mcp-session-id").expect("session id").to_owned();
    let port = w.port;
    let call = std::thread::spawn(move || {
        let mut h = headers.to_vec();
        h.push(("mcp-session-id", &sid));
        h.push(("mcp-protocol-version", "2025-11-25"));
        let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{}}}"#;
        request(port, "POST", "/mcp", &h, body.as_bytes())
    });
    // The call is at the upstream (which takes 1.5 s) when the signal comes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !arrived.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the call never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    w.proc.sigterm();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a new connection is refused while draining"
    );
    let reply = call.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("finished"), "{}", reply.text());
    assert_eq!(w.proc.wait_exit(Duration::from_secs(5)), Some(0));
    let text = std::fs::read_to_string(w.dir.join("audit.jsonl")).unwrap();
    assert!(
        text.contains(r#""method":"tools/call","tool":"x","decision":"allow""#),
        "{text}"
    );
    assert_eq!(
        audit_kinds(&text).last().map(String::as_str),
        Some("gateway.stop"),
        "{text}"
    );
}
