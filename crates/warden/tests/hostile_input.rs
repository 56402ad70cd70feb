//! Hostile input against `warden serve` in front of a recording upstream: malformed, oversize and
//! too-deep bodies, wrong media types, batches, declared-oversize heads and slow clients. Every
//! attack gets its exact refusal (HTTP status, JSON-RPC code, `error.data.reason` and a hint), a
//! `deny` audit event with the control it enforces, nothing reaches the upstream, and Warden stays
//! healthy afterwards (still running, a valid initialize works, `/metrics` counts every refusal).
//! The shared `Arena` is in `support/attack.rs`; session attacks are in `hostile_sessions.rs`.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::attack::{Arena, expect, init_body, raw_reply, read_response};
use support::client::request;

/// P1.1, P4.3: size, depth, UTF-8, JSON, JSON-RPC envelope, batch and Content-Type checks refuse
/// before anything is forwarded; P8.4: security headers on every refusal.
#[test]
fn malformed_and_oversize_bodies_never_reach_the_upstream() {
    let mut a = Arena::start("[limits]\nmax_body_bytes = 2048\nmax_json_depth = 16\n");
    let call = |marker: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{marker}","arguments":{{}}}}}}"#
        )
    };

    // Oversize: a valid message whose body exceeds max_body_bytes.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"pad":"oversize-1{}"}}}}"#,
        "A".repeat(4000)
    );
    let r = a.post(&[], big.as_bytes());
    a.refused(
        "oversize-1",
        &r,
        expect(413, -32600, "body_too_large", "P1.1"),
    );
    // Just over the limit, by one byte.
    let head = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"oversize-2"#;
    let tail = r#""}}"#;
    let just_over = format!("{head}{}{tail}", "B".repeat(2049 - head.len() - tail.len()));
    assert_eq!(just_over.len(), 2049);
    let r = a.post(&[], just_over.as_bytes());
    a.refused(
        "oversize-2",
        &r,
        expect(413, -32600, "body_too_large", "P1.1"),
    );

    // Deep nesting: a bare `[[[[…` and a deep value inside an otherwise valid request.
    let deep = format!("{}\"deep-1\"{}", "[".repeat(400), "]".repeat(400));
    let r = a.post(&[], deep.as_bytes());
    a.refused("deep-1", &r, expect(400, -32600, "json_too_deep", "P1.1"));
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"deep-2","arguments":{}1{}}}}}"#,
        r#"{"a":"#.repeat(20),
        "}".repeat(20)
    );
    let r = a.post(&[], deep.as_bytes());
    a.refused("deep-2", &r, expect(400, -32600, "json_too_deep", "P1.1"));

    // Invalid UTF-8 inside a JSON string.
    let mut bad =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"utf8-1"#.to_vec();
    bad.extend_from_slice(b"\xff\xfe\xc3\x28");
    bad.extend_from_slice(br#""}}"#);
    let r = a.post(&[], &bad);
    a.refused("utf8-1", &r, expect(400, -32700, "invalid_utf8", "P1.1"));
    // An overlong encoding of '"' (0xC0 0xA2) must not close the string either.
    let mut overlong = br#"{"jsonrpc":"2.0","id":1,"method":"utf8-2"#.to_vec();
    overlong.extend_from_slice(b"\xc0\xa2}");
    let r = a.post(&[], &overlong);
    a.refused("utf8-2", &r, expect(400, -32700, "invalid_utf8", "P1.1"));

    // Not JSON.
    for (marker, body) in [
        (
            "malformed-1",
            r#"{"jsonrpc":"2.0","id":1,"method":"malformed-1""#.to_owned(),
        ),
        (
            "malformed-2",
            r#"{"jsonrpc":"2.0","id":1,"method":"malformed-2"} trailing"#.to_owned(),
        ),
        (
            "malformed-3",
            "{'jsonrpc':'2.0','method':'malformed-3'}".to_owned(),
        ),
        (
            "malformed-4",
            r#"{"jsonrpc":"2.0","id":1,"method":"malformed-4",}"#.to_owned(),
        ),
    ] {
        let r = a.post(&[], body.as_bytes());
        a.refused(marker, &r, expect(400, -32700, "malformed_json", "P1.1"));
    }

    // JSON, but not JSON-RPC 2.0.
    for (marker, body) in [
        ("nojsonrpc", r#"{"id":1,"method":"nojsonrpc"}"#),
        (
            "jsonrpc-1",
            r#"{"jsonrpc":"1.0","id":1,"method":"jsonrpc-1"}"#,
        ),
        ("nullid", r#"{"jsonrpc":"2.0","id":null,"method":"nullid"}"#),
        (
            "objid",
            r#"{"jsonrpc":"2.0","id":{"x":"objid"},"method":"m"}"#,
        ),
        (
            "floatid",
            r#"{"jsonrpc":"2.0","id":1.5,"method":"floatid"}"#,
        ),
        (
            "both",
            r#"{"jsonrpc":"2.0","id":1,"result":{"both":1},"error":{"code":1,"message":"x"}}"#,
        ),
        (
            "dupmethod",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"dupmethod"}"#,
        ),
        (
            "dupid",
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"dupid"}"#,
        ),
        (
            "scalarparams",
            r#"{"jsonrpc":"2.0","id":1,"method":"scalarparams","params":3}"#,
        ),
        ("nomethod", r#"{"jsonrpc":"2.0","id":1,"nomethod":true}"#),
        ("notobject", r#""notobject""#),
        (
            "escdup",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","\u006dethod":"escdup"}"#,
        ),
    ] {
        let r = a.post(&[], body.as_bytes());
        a.refused(marker, &r, expect(400, -32600, "invalid_jsonrpc", "P1.1"));
    }

    // A raw control character inside a string is not JSON.
    let r = a.post(
        &[],
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ctl-1\x00\"}",
    );
    a.refused("ctl-1", &r, expect(400, -32700, "malformed_json", "P1.1"));

    // Controls: brackets inside strings do not count as depth, and a body of exactly
    // max_body_bytes is accepted; both reach the upstream.
    let brackets = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"{}","version":"1"}}}}}}"#,
        "[{".repeat(300)
    );
    let r = a.post(&[], brackets.as_bytes());
    assert_eq!(
        r.status,
        200,
        "brackets in strings are not nesting: {}",
        r.text()
    );
    a.allowed_upstream += 1;
    let init = init_body("exact");
    let pad = 2048 - init.len() - r#","pad":"""#.len();
    let exact = init.replacen(
        r#""capabilities":{}"#,
        &format!(r#""capabilities":{{}},"pad":"{}""#, "p".repeat(pad)),
        1,
    );
    assert_eq!(exact.len(), 2048);
    let r = a.post(&[], exact.as_bytes());
    assert_eq!(
        r.status,
        200,
        "a body of exactly max_body_bytes passes: {}",
        r.text()
    );
    a.allowed_upstream += 1;
    a.assert_upstream_count("controls");

    // A JSON-RPC batch.
    let batch = format!(
        r#" [{},{{"jsonrpc":"2.0","method":"notifications/initialized"}}]"#,
        init_body("batch-1")
    );
    let r = a.post(&[], batch.as_bytes());
    a.refused(
        "batch-1",
        &r,
        expect(400, -32600, "batch_not_allowed", "P1.1"),
    );

    // Wrong or missing Content-Type.
    for (marker, ct) in [
        ("ctype-1", Some("text/plain")),
        ("ctype-2", Some("application/x-www-form-urlencoded")),
        ("ctype-3", Some("text/event-stream")),
        ("ctype-4", None),
    ] {
        let body = call(marker);
        let mut headers = vec![("accept", "application/json, text/event-stream")];
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        let r = request(a.w.port, "POST", "/mcp", &headers, body.as_bytes());
        a.refused(
            marker,
            &r,
            expect(415, -32600, "unsupported_media_type", "P1.1"),
        );
    }

    a.assert_healthy(None);
}

/// P1.1, P4.4: a body whose declared Content-Length exceeds `max_body_bytes` is refused with 413
/// at once, from the head alone: without waiting for (or inviting, with `100 Continue`) a body
/// Warden will never accept, and without holding the connection until `body_timeout_ms`.
#[test]
fn declared_oversize_bodies_are_refused_from_the_head() {
    let mut a = Arena::start(
        "[server]\nlisten = \"127.0.0.1:0\"\nbody_timeout_ms = 4000\n\n[limits]\nmax_body_bytes = 2048\n",
    );
    let port = a.w.port;
    for (marker, expect_continue) in [("declared-1", false), ("declared-2", true)] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let extra = if expect_continue {
            "expect: 100-continue\r\n"
        } else {
            ""
        };
        let head = format!(
            "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{extra}content-length: 1000000\r\n\r\n"
        );
        let started = Instant::now();
        s.write_all(head.as_bytes()).expect("head");
        if !expect_continue {
            let prefix =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{marker}","params":{{"pad":""#);
            s.write_all(prefix.as_bytes()).expect("body prefix");
        }
        let (status, head, body) =
            read_response(&mut s, Duration::from_secs(10)).expect("an answer, not silence");
        let waited = started.elapsed();
        assert!(
            status == 413 && waited < Duration::from_secs(2),
            "{marker}: Content-Length 1000000 over max_body_bytes 2048 must be refused with 413 \
             from the head; got {status} after {waited:?}"
        );
        a.refused(
            marker,
            &raw_reply((status, head, body)),
            expect(413, -32600, "body_too_large", "P1.1"),
        );
    }
    a.assert_healthy(None);
}

/// P4.4 (slow-client defence): a client that sends its head and then stalls the body is cut off
/// with 408 after `[server] body_timeout_ms`; one that stalls its head is disconnected after
/// `header_timeout_ms`. Neither reaches the upstream or slows anyone else down.
#[test]
fn slow_clients_are_cut_off() {
    let mut a = Arena::start(
        "[server]\nlisten = \"127.0.0.1:0\"\nbody_timeout_ms = 400\nheader_timeout_ms = 600\n",
    );
    let port = a.w.port;

    // Body stall: declare 300 bytes, send 40, wait.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let partial = br#"{"jsonrpc":"2.0","id":1,"method":"slowbody"#;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 300\r\n\r\n"
    );
    let started = Instant::now();
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(partial).expect("partial body");
    // Meanwhile another client is served normally.
    let r = a.post(&[], init_body("during-stall").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    a.allowed_upstream += 1;
    let (status, head, body) =
        read_response(&mut s, Duration::from_secs(10)).expect("a 408 answer, not silence");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_secs(5),
        "cut off after body_timeout_ms, took {waited:?}"
    );
    let reply = raw_reply((status, head, body));
    a.refused(
        "slowbody",
        &reply,
        expect(408, -32600, "body_timeout", "P4.4"),
    );

    // Header stall: half a request head, then nothing.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let started = Instant::now();
    s.write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: appl")
        .expect("partial head");
    let answer = read_response(&mut s, Duration::from_secs(10));
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "a stalled head is dropped after header_timeout_ms, took {waited:?}"
    );
    if let Some((status, _, _)) = answer {
        assert_eq!(
            status, 408,
            "a stalled head gets 408 or a closed connection"
        );
    }
    a.assert_upstream_count("slow head");
    a.assert_healthy(None);
}

/// P4.4: a flood of connections beyond `server.max_connections` is closed at once, before any
/// byte is read, audited with its reason and hint; the connections already open are not
/// disturbed, and a slot freed is usable again.
#[test]
fn connections_beyond_the_cap_are_closed_and_audited() {
    use std::io::Read;

    let mut a = Arena::start("[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 2\n");
    let port = a.w.port;
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200)); // both accepted and holding their slots

    let mut extra = TcpStream::connect(("127.0.0.1", port)).expect("the kernel still accepts");
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let _ = extra.write_all(init_body("over-the-cap").as_bytes());
    let mut buf = [0u8; 64];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(
        n, 0,
        "the connection over the cap gets no answer, it is closed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed at once, not after a timeout"
    );
    let events = a.w.audit_reason("too_many_connections");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["kind"], "connection.refused");
    assert_eq!(events[0]["decision"], "deny");
    assert_eq!(events[0]["control"], "P4.4");
    assert!(events[0]["hint"].as_str().is_some_and(|h| !h.is_empty()));
    a.assert_upstream_count("connection flood");

    // Freeing the slots lets clients in again (once Warden has seen them close).
    drop(held);
    let body = init_body("after-the-flood");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let _ = write!(
            s,
            "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        if let Some((status, _, _)) = read_response(&mut s, Duration::from_secs(2)) {
            assert_eq!(status, 200);
            a.allowed_upstream += 1;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slots are never reused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.assert_healthy(None);
}
