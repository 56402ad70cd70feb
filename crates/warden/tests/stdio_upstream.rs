//! stdio upstreams under supervision: a server that crashes is restarted with backoff and gets the
//! session's handshake replayed, so the session goes on (P10.4: exits are audited); the child runs
//! with a clean environment holding only the declared variables (P10.2).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use serde_json::json;
use support::tiny::{open_session, rpc, text_of, tiny};
use support::{Warden, temp_dir, toml_str, upstream_stdio};

fn with_env(table: &str, env_line: &str) -> String {
    table.replacen(
        "command = ",
        &format!("{env_line}\ninitial_backoff_ms = 100\nmax_backoff_ms = 400\ncommand = "),
        1,
    )
}

#[test]
fn a_crashed_stdio_server_is_restarted_and_the_session_goes_on() {
    let log = temp_dir("tiny").join("seen.jsonl");
    let table = upstream_stdio(
        "tiny",
        &tiny(&["--tools", "echo,boom", "--crash-on", "boom"]),
        None,
    );
    let w = Warden::start(&with_env(
        &table,
        &format!(
            "env = {{ TINY_LOG = {} }}",
            toml_str(&log.display().to_string())
        ),
    ));
    let sid = open_session(w.port);
    assert_eq!(
        text_of(&rpc(
            w.port,
            &sid,
            1,
            "tools/call",
            json!({"name": "echo", "arguments": {"x": 1}})
        )),
        r#"tiny:echo:{"x": 1}"#
    );

    let crashed = rpc(w.port, &sid, 2, "tools/call", json!({"name": "boom"}));
    assert_eq!(
        crashed["error"]["code"], -32003,
        "the caller learns the upstream failed: {crashed}"
    );
    assert_eq!(crashed["error"]["data"]["reason"], "upstream_exited");

    let again = rpc(
        w.port,
        &sid,
        3,
        "tools/call",
        json!({"name": "echo", "arguments": {"y": 2}}),
    );
    assert_eq!(
        text_of(&again),
        r#"tiny:echo:{"y": 2}"#,
        "the restarted server serves the same session"
    );

    let seen: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let inits = seen.iter().filter(|m| m["method"] == "initialize").count();
    let initialized = seen
        .iter()
        .filter(|m| m["method"] == "notifications/initialized")
        .count();
    assert_eq!(
        (inits, initialized),
        (2, 2),
        "the handshake was replayed once to the new process: {seen:?}"
    );
    let events = w.audit();
    assert!(
        events.iter().any(|e| e["kind"] == "upstream.exit"),
        "the exit is audited: {events:?}"
    );
    assert!(events.iter().any(|e| e["kind"] == "upstream.init_replayed"));
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "mcp.refusal" && e["reason"] == "upstream_exited")
    );
}

#[test]
fn a_stdio_server_gets_a_clean_environment() {
    // SAFETY of the assertion: Warden's own environment carries a secret the child must not see.
    let table = upstream_stdio("tiny", &tiny(&["--tools", "env"]), None);
    let w = Warden::start(&with_env(
        &table,
        "env = { DECLARED = \"yes\" }\nenv_passthrough = [\"PATH\"]",
    ));
    let sid = open_session(w.port);
    let names: Vec<String> = serde_json::from_str(&text_of(&rpc(
        w.port,
        &sid,
        1,
        "tools/call",
        json!({"name": "env"}),
    )))
    .unwrap();
    assert!(names.contains(&"DECLARED".to_owned()), "{names:?}");
    assert!(names.contains(&"PATH".to_owned()), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n == "HOME" || n == "CARGO_MANIFEST_DIR" || n.starts_with("CARGO")),
        "nothing else leaks: {names:?}"
    );
}

/// A 2026-07-28 client abandons a streaming call on the shared stdio child (the one stateless
/// requests use, where Warden renumbers ids so two clients' `1`s cannot collide): the child is
/// told to cancel the request by the id it saw, not by the client's.
#[test]
fn an_abandoned_call_on_the_shared_child_is_cancelled_by_the_id_the_child_saw() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    let log = temp_dir("tiny-cancel").join("seen.jsonl");
    let table = upstream_stdio("tiny", &tiny(&["--tools", "slow", "--stateless"]), None);
    let w = Warden::start(&with_env(
        &table,
        &format!(
            "env = {{ TINY_LOG = {} }}",
            toml_str(&log.display().to_string())
        ),
    ));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"progressToken":"p1"}}}"#;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", w.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: slow\r\ncontent-length: {}\r\n\r\n{body}",
        w.port,
        body.len()
    )
    .unwrap();
    // Read until the progress notification arrives, then walk away.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("notifications/progress") {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stream);

    let deadline = Instant::now() + Duration::from_secs(15);
    let (call, cancel) = loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let call = lines.iter().find(|m| m["method"] == "tools/call").cloned();
        let cancel = lines
            .iter()
            .find(|m| m["method"] == "notifications/cancelled")
            .cloned();
        if let (Some(call), Some(cancel)) = (&call, &cancel) {
            break (call.clone(), cancel.clone());
        }
        assert!(
            Instant::now() < deadline,
            "no notifications/cancelled reached the child: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(
        call["id"],
        json!(1),
        "the shared child sees Warden's ids: {call}"
    );
    assert_eq!(
        cancel["params"]["requestId"], call["id"],
        "the cancellation names the request as the child knows it: {cancel}"
    );
}
