//! Hostile input against `warden serve` in front of a recording upstream: every attack gets its
//! exact refusal (HTTP status, JSON-RPC code, `error.data.reason` and a hint), a `deny` audit event
//! with the control it enforces, nothing reaches the upstream, and Warden stays healthy afterwards
//! (still running, a valid initialize works, `/metrics` counts every refusal).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::client::{Reply, request, request_from};
use support::recorder::{Canned, Recorded, Recorder};
use support::{Warden, port_in, upstream_http};

const OTHER_CLIENT: [u8; 4] = [127, 0, 0, 2];

fn init_body(tag: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"{tag}","version":"1"}}}}}}"#
    )
}

/// A well-behaved upstream: initialize opens an upstream session, requests get an empty result,
/// everything else is accepted.
fn upstream(r: &Recorded) -> Canned {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    match (&v["method"], &v["id"]) {
        (Value::String(m), id) if m == "initialize" => Canned::json(
            json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"rec","version":"0"}}})
                .to_string(),
        )
        .with_header("mcp-session-id", "upstream-session"),
        (Value::String(_), id) if !id.is_null() => {
            Canned::json(json!({"jsonrpc":"2.0","id":id,"result":{}}).to_string())
        }
        _ => Canned::accepted(),
    }
}

/// What a refusal must look like.
struct Expect {
    status: u16,
    code: i64,
    reason: &'static str,
    control: &'static str,
    /// The JSON-RPC id the error must echo (`null` when the request could not be read).
    id: Value,
}

fn expect(status: u16, code: i64, reason: &'static str, control: &'static str) -> Expect {
    Expect {
        status,
        code,
        reason,
        control,
        id: Value::Null,
    }
}

impl Expect {
    fn id(mut self, id: Value) -> Self {
        self.id = id;
        self
    }
}

/// One Warden, one recording upstream, and the refusals triggered so far.
struct Arena {
    w: Warden,
    up: Recorder,
    tally: BTreeMap<&'static str, usize>,
    /// Requests the upstream is allowed to have seen so far.
    allowed_upstream: usize,
}

const JSON_HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

impl Arena {
    fn start(extra_config: &str) -> Arena {
        let up = Recorder::start(upstream);
        let w = Warden::start(&format!(
            "{extra_config}\n{}",
            upstream_http("rec", &up.url, None)
        ));
        Arena {
            w,
            up,
            tally: BTreeMap::new(),
            allowed_upstream: 0,
        }
    }

    fn post_from(&self, src: Option<[u8; 4]>, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut all: Vec<(&str, &str)> = JSON_HEADERS.to_vec();
        all.retain(|(k, _)| !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)));
        all.extend_from_slice(headers);
        request_from(src, self.w.port, "POST", "/mcp", &all, body)
    }

    fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.post_from(None, headers, body)
    }

    /// A session the way a client opens it (initialize + initialized); the upstream sees both.
    fn open_session(&mut self, src: Option<[u8; 4]>, tag: &str) -> String {
        let r = self.post_from(src, &[], init_body(tag).as_bytes());
        assert_eq!(r.status, 200, "initialize ({tag}): {}", r.text());
        assert_security_headers(&r, tag);
        let sid = r.header("mcp-session-id").expect("session id").to_owned();
        let note = self.post_from(
            src,
            &[
                ("mcp-session-id", &sid),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!(note.status, 202, "initialized ({tag}): {}", note.text());
        assert_security_headers(&note, tag);
        self.allowed_upstream += 2;
        self.assert_upstream_count(tag);
        sid
    }

    fn assert_upstream_count(&self, label: &str) {
        assert_eq!(
            self.up.requests().len(),
            self.allowed_upstream,
            "{label}: the upstream saw an unexpected number of requests: {:?}",
            self.up.bodies()
        );
    }

    /// The reply is the expected refusal, it is audited, and nothing reached the upstream.
    /// `marker` is a string only this attack's body contains.
    fn refused(&mut self, marker: &str, reply: &Reply, e: Expect) {
        assert_eq!(
            reply.status,
            e.status,
            "{marker}: status; body {}",
            reply.text()
        );
        assert_security_headers(reply, marker);
        assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{marker}: a refusal is a JSON-RPC error: {:?}",
            reply.headers
        );
        let v: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|err| panic!("{marker}: body is not JSON ({err}): {}", reply.text()));
        assert_eq!(v["jsonrpc"], "2.0", "{marker}: {v}");
        assert_eq!(
            v["id"], e.id,
            "{marker}: the error echoes the request id: {v}"
        );
        assert_eq!(v["error"]["code"], e.code, "{marker}: JSON-RPC code: {v}");
        assert_eq!(
            v["error"]["data"]["reason"], e.reason,
            "{marker}: reason: {v}"
        );
        assert!(
            v["error"]["data"]["hint"]
                .as_str()
                .is_some_and(|h| !h.trim().is_empty()),
            "{marker}: a non-empty hint: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{marker}: a message: {v}"
        );
        let n = {
            let c = self.tally.entry(e.reason).or_default();
            *c += 1;
            *c
        };
        let events = audit_with(&self.w, e.reason, n);
        assert_eq!(
            events.len(),
            n,
            "{marker}: one audit event per '{}' refusal: {events:#?}",
            e.reason
        );
        let last = events.last().expect("an event");
        assert_eq!(last["decision"], "deny", "{marker}: {last}");
        assert_eq!(last["kind"], "mcp.refusal", "{marker}: {last}");
        assert_eq!(last["control"], e.control, "{marker}: control: {last}");
        assert_eq!(last["status"], e.status, "{marker}: {last}");
        assert_eq!(last["rpc_code"], e.code, "{marker}: {last}");
        assert!(
            last["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "{marker}: audit hint: {last}"
        );
        self.assert_upstream_count(marker);
        assert!(
            !self
                .up
                .requests()
                .iter()
                .any(|r| contains(&r.body, marker.as_bytes())),
            "{marker}: the attack's body reached the upstream"
        );
    }

    /// Warden is still up, still serves, and `/metrics` counts every refusal by reason.
    fn assert_healthy(&mut self, src: Option<[u8; 4]>) {
        assert!(
            self.w.proc.is_running(),
            "warden died: {}",
            self.w.proc.stderr_now()
        );
        let r = self.post_from(src, &[], init_body("health-check").as_bytes());
        assert_eq!(
            r.status,
            200,
            "a valid initialize still works: {}",
            r.text()
        );
        assert_eq!(r.json()["result"]["serverInfo"]["name"], "rec");
        self.allowed_upstream += 1;
        self.assert_upstream_count("health check");
        let admin = self.w.admin.as_deref().expect("admin listener");
        let m = request(port_in(admin), "GET", "/metrics", &[], b"");
        assert_eq!(m.status, 200, "/metrics answers");
        let text = m.text();
        for (reason, n) in &self.tally {
            let needle = format!("warden_refusals_total{{reason=\"{reason}\"}} ");
            let got = text
                .lines()
                .find_map(|l| l.strip_prefix(&needle))
                .and_then(|v| v.trim().parse::<f64>().ok());
            assert_eq!(
                got,
                Some(*n as f64),
                "warden_refusals_total for {reason}; metrics:\n{text}"
            );
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// P8.4: every response carries `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`.
fn assert_security_headers(r: &Reply, label: &str) {
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{label}: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("cache-control"),
        Some("no-store"),
        "{label}: {:?}",
        r.headers
    );
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "{label}: no CORS grant: {:?}",
        r.headers
    );
}

/// Audit events with `reason`, waiting (bounded) until `n` of them were written.
fn audit_with(w: &Warden, reason: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = w.audit_reason(reason);
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
    }
}

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

/// P8.4 (DNS rebinding): a foreign `Origin` with a valid Host, and a rebinding `Host`, are
/// refused with 403 before anything else happens.
#[test]
fn foreign_origins_and_rebinding_hosts_are_refused() {
    let mut a = Arena::start("");
    let port = a.w.port;
    let local = format!("127.0.0.1:{port}");
    for (marker, origin) in [
        ("origin-1", "http://evil.example.com"),
        ("origin-2", "null"),
        ("origin-3", "http://localhost.evil.example.com"),
        ("origin-4", "file://"),
    ] {
        let body = init_body(marker);
        let r = a.post(&[("host", &local), ("origin", origin)], body.as_bytes());
        a.refused(
            marker,
            &r,
            expect(403, -32600, "origin_not_allowed", "P8.4"),
        );
    }
    for (marker, host) in [
        ("host-1", "evil.example.com".to_owned()),
        ("host-2", format!("evil.example.com:{port}")),
        ("host-3", format!("localhost.evil.example.com:{port}")),
    ] {
        let body = init_body(marker);
        let r = a.post(&[("host", &host)], body.as_bytes());
        a.refused(marker, &r, expect(403, -32600, "host_not_allowed", "P8.4"));
    }
    // The rebinding defence also covers the GET stream.
    let r = request(
        port,
        "GET",
        "/mcp",
        &[
            ("host", "evil.example.com"),
            ("accept", "text/event-stream"),
        ],
        b"",
    );
    a.refused(
        "host-get",
        &r,
        expect(403, -32600, "host_not_allowed", "P8.4"),
    );
    // No Host at all (HTTP/1.0 allows that).
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = init_body("nohost-1");
    let head = format!(
        "POST /mcp HTTP/1.0\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(body.as_bytes()).expect("body");
    let r = raw_reply(read_response(&mut s, Duration::from_secs(10)).expect("an answer"));
    a.refused("nohost-1", &r, expect(403, -32600, "host_missing", "P8.4"));
    // The allowed origin of the same host is served.
    let ok = a.post(
        &[
            ("host", &format!("localhost:{port}")),
            ("origin", &format!("http://localhost:{port}")),
        ],
        init_body("allowed-origin").as_bytes(),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    a.allowed_upstream += 1;
    a.assert_healthy(None);
}

/// M2, M4, P8.2: a forged session id and a real one presented by another client are both 404 and
/// reach nothing; the owner keeps its session. P1.1: a session-era request without a session id
/// is 400. P3.4 (E9): an unsupported `MCP-Protocol-Version` in a session is 400.
#[test]
fn forged_foreign_and_missing_sessions_are_refused() {
    let mut a = Arena::start("");
    let sid = a.open_session(None, "owner");
    let v = ("mcp-protocol-version", "2025-11-25");

    let forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = a.post(
        &[("mcp-session-id", forged), v],
        br#"{"jsonrpc":"2.0","id":"forged-1","method":"tools/list"}"#,
    );
    a.refused(
        "forged-1",
        &r,
        expect(404, -32001, "session_not_found", "M2").id(json!("forged-1")),
    );
    // A prefix of the real id, and the real id with one character changed.
    let mut near = sid.clone().into_bytes();
    near[0] = if near[0] == b'A' { b'B' } else { b'A' };
    let near = String::from_utf8(near).expect("ascii");
    for (marker, id) in [("forged-2", &sid[..20]), ("forged-3", near.as_str())] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"{marker}"}}}}"#
        );
        let r = a.post(&[("mcp-session-id", id), v], body.as_bytes());
        a.refused(
            marker,
            &r,
            expect(404, -32001, "session_not_found", "M2").id(json!(9)),
        );
    }

    // The owner's real id, from another client address.
    let r = a.post_from(
        Some(OTHER_CLIENT),
        &[("mcp-session-id", &sid), v],
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"hijack-1"}}"#,
    );
    a.refused(
        "hijack-1",
        &r,
        expect(404, -32001, "session_not_found", "M2").id(json!(2)),
    );
    let r = a.post_from(
        Some(OTHER_CLIENT),
        &[("mcp-session-id", &sid), v],
        br#"{"jsonrpc":"2.0","method":"notifications/hijack-2"}"#,
    );
    a.refused(
        "hijack-2",
        &r,
        expect(404, -32001, "session_not_found", "M2"),
    );
    // Nor may the other client end it, or open its GET stream.
    let r = request_from(
        Some(OTHER_CLIENT),
        a.w.port,
        "DELETE",
        "/mcp",
        &[("mcp-session-id", &sid), v],
        b"",
    );
    a.refused(
        "hijack-delete",
        &r,
        expect(404, -32001, "session_not_found", "M2"),
    );
    let r = request_from(
        Some(OTHER_CLIENT),
        a.w.port,
        "GET",
        "/mcp",
        &[("mcp-session-id", &sid), v, ("accept", "text/event-stream")],
        b"",
    );
    a.refused(
        "hijack-get",
        &r,
        expect(404, -32001, "session_not_found", "M2"),
    );

    // The owner still uses its session.
    let r = a.post(
        &[("mcp-session-id", &sid), v],
        br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    );
    assert_eq!(r.status, 200, "the owner keeps its session: {}", r.text());
    assert_eq!(r.json()["id"], 3);
    a.allowed_upstream += 1;
    let last = a.up.requests().pop().expect("forwarded");
    assert_eq!(last.header("mcp-session-id"), Some("upstream-session"));

    // Session-era request without Mcp-Session-Id.
    let r = a.post(
        &[v],
        br#"{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"missing-1":1}}"#,
    );
    a.refused(
        "missing-1",
        &r,
        expect(400, -32600, "session_required", "P1.1").id(json!(4)),
    );
    let r = a.post(
        &[],
        br#"{"jsonrpc":"2.0","id":"m2","method":"tools/call","params":{"name":"missing-2"}}"#,
    );
    a.refused(
        "missing-2",
        &r,
        expect(400, -32600, "session_required", "P1.1").id(json!("m2")),
    );
    let r = request(
        a.w.port,
        "DELETE",
        "/mcp",
        &[v, ("x-marker", "missing-delete")],
        b"",
    );
    a.refused(
        "missing-delete",
        &r,
        expect(400, -32600, "session_required", "P1.1"),
    );

    // Unsupported MCP-Protocol-Version inside the session.
    for (marker, version) in [("version-1", "1999-01-01"), ("version-2", "2025-11-25x")] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"{marker}"}}}}"#
        );
        let r = a.post(
            &[("mcp-session-id", &sid), ("mcp-protocol-version", version)],
            body.as_bytes(),
        );
        a.refused(
            marker,
            &r,
            expect(400, -32600, "unsupported_protocol_version", "P3.4").id(json!(5)),
        );
        assert!(
            r.json()["error"]["data"]["supported"]
                .as_array()
                .is_some_and(|s| s.contains(&json!("2025-11-25"))),
            "{marker}: the supported versions are listed: {}",
            r.text()
        );
    }
    // initialize must not carry a session id.
    let r = a.post(
        &[("mcp-session-id", &sid)],
        init_body("reinit-1").as_bytes(),
    );
    a.refused(
        "reinit-1",
        &r,
        expect(400, -32600, "initialize_in_session", "P1.1").id(json!(1)),
    );

    // And the session still works after all of that.
    let r = a.post(
        &[("mcp-session-id", &sid), v],
        br#"{"jsonrpc":"2.0","id":6,"method":"tools/list"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    a.allowed_upstream += 1;
    a.assert_healthy(None);
}

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

/// P3.4, P1.1 (SEP-2243, SEP-2575): a 2026-07-28 request whose `Mcp-*` headers disagree with the
/// body is 400/-32020 and never reaches the upstream (no header-smuggled tool call); missing
/// `_meta` is 400/-32602; an unsupported version is 400/-32022 listing the supported ones.
#[test]
fn stateless_header_body_mismatches_are_refused() {
    let mut a = Arena::start("");
    let pv = ("mcp-protocol-version", "2026-07-28");
    let call = |name: &str, id: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{}},{META}}}}}"#
        )
    };
    let header_mismatch = |id: u32| expect(400, -32020, "header_mismatch", "P3.4").id(json!(id));

    // A correct stateless request is relayed: the refusals below are Warden's doing.
    let ok = a.post(
        &[pv, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
        call("echo", 1).as_bytes(),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    a.allowed_upstream += 1;
    a.assert_upstream_count("stateless control request");

    // Mcp-Name names another tool than the body (the body tool is the marker).
    let r = a.post(
        &[pv, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
        call("smuggled-1", 2).as_bytes(),
    );
    a.refused("smuggled-1", &r, header_mismatch(2));
    assert_eq!(r.json()["error"]["data"]["header"], "Mcp-Name");
    // The same through the Base64 sentinel ("echo").
    let r = a.post(
        &[
            pv,
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZWNobw==?="),
        ],
        call("smuggled-2", 3).as_bytes(),
    );
    a.refused("smuggled-2", &r, header_mismatch(3));
    // Duplicate "name" keys: the header matches the first, a lenient upstream would run the last.
    let dup = format!(
        r#"{{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{{"name":"echo","name":"dupname-1",{META}}}}}"#
    );
    let r = a.post(
        &[pv, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
        dup.as_bytes(),
    );
    a.refused(
        "dupname-1",
        &r,
        expect(400, -32602, "invalid_params", "P3.4").id(json!(13)),
    );
    // Missing Mcp-Name, missing Mcp-Method, Mcp-Method of another case.
    let r = a.post(
        &[pv, ("mcp-method", "tools/call")],
        call("noname-1", 4).as_bytes(),
    );
    a.refused("noname-1", &r, header_mismatch(4));
    assert_eq!(r.json()["error"]["data"]["header"], "Mcp-Name");
    let r = a.post(
        &[pv, ("mcp-name", "nomethod-1")],
        call("nomethod-1", 5).as_bytes(),
    );
    a.refused("nomethod-1", &r, header_mismatch(5));
    assert_eq!(r.json()["error"]["data"]["header"], "Mcp-Method");
    let r = a.post(
        &[pv, ("mcp-method", "TOOLS/CALL"), ("mcp-name", "case-1")],
        call("case-1", 6).as_bytes(),
    );
    a.refused("case-1", &r, header_mismatch(6));
    // Mcp-Method naming a harmless method while the body calls a tool.
    let r = a.post(
        &[pv, ("mcp-method", "tools/list"), ("mcp-name", "disguise-1")],
        call("disguise-1", 7).as_bytes(),
    );
    a.refused("disguise-1", &r, header_mismatch(7));
    // Header version disagrees with the body version.
    let body = br#"{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{"versionmix":1,"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let r = a.post(&[pv, ("mcp-method", "tools/list")], body);
    a.refused("versionmix", &r, header_mismatch(8));

    // Missing _meta, or _meta without clientCapabilities.
    let r = a.post(
        &[pv, ("mcp-method", "tools/list")],
        br#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"nometa-1":true}}"#,
    );
    a.refused(
        "nometa-1",
        &r,
        expect(400, -32602, "request_meta_missing", "P3.4").id(json!(9)),
    );
    let r = a.post(
        &[pv, ("mcp-method", "tools/list")],
        br#"{"jsonrpc":"2.0","id":10,"method":"tools/list","params":{"nometa-2":1,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
    );
    a.refused(
        "nometa-2",
        &r,
        expect(400, -32602, "request_meta_missing", "P3.4").id(json!(10)),
    );

    // Unsupported _meta version (header and body agree on it).
    for (marker, version) in [("oldver-1", "1900-01-01"), ("oldver-2", "2025-11-25")] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":11,"method":"tools/list","params":{{"{marker}":1,"_meta":{{"io.modelcontextprotocol/protocolVersion":"{version}","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
        );
        let r = a.post(
            &[
                ("mcp-protocol-version", version),
                ("mcp-method", "tools/list"),
            ],
            body.as_bytes(),
        );
        a.refused(
            marker,
            &r,
            expect(400, -32022, "unsupported_protocol_version", "P3.4").id(json!(11)),
        );
        let data = &r.json()["error"]["data"];
        assert!(
            data["supported"]
                .as_array()
                .is_some_and(|s| s.contains(&json!("2026-07-28"))),
            "{marker}: data.supported lists 2026-07-28: {data}"
        );
        assert_eq!(data["requested"], version, "{marker}: {data}");
    }

    // Stateless clients do not send responses.
    let r = a.post(
        &[pv],
        br#"{"jsonrpc":"2.0","id":12,"result":{"response-1":1}}"#,
    );
    a.refused(
        "response-1",
        &r,
        expect(400, -32600, "response_not_allowed", "P1.1").id(json!(12)),
    );

    // Every guard refusal names the guard that made it.
    for e in audit_with(&a.w, "header_mismatch", a.tally["header_mismatch"]) {
        assert_eq!(e["facts"]["refused_by"], "stateless_rules", "{e}");
    }
    a.assert_healthy(None);
}

/// P8.3, P4.4: one client address cannot hold more than `[sessions] max_per_client` sessions
/// (429 with Retry-After, nothing forwarded); other clients are still served.
#[test]
fn a_session_flood_from_one_client_is_capped() {
    let mut a = Arena::start("[sessions]\nmax_per_client = 3\n");
    for i in 0..3 {
        a.open_session(None, &format!("flood-ok-{i}"));
    }
    for i in 0..4 {
        let marker = format!("flood-over-{i}");
        let r = a.post(&[], init_body(&marker).as_bytes());
        let secs = r.header("retry-after").and_then(|v| v.parse::<u64>().ok());
        assert!(
            secs.is_some_and(|s| s > 0),
            "{marker}: Retry-After with seconds: {:?}",
            r.headers
        );
        assert!(
            r.header("mcp-session-id").is_none(),
            "{marker}: no session id"
        );
        a.refused(
            &marker,
            &r,
            expect(429, -32001, "session_limit_client", "P8.3").id(json!(1)),
        );
    }
    // Another client address is still served, and may open sessions of its own.
    let other = a.open_session(Some([127, 0, 0, 3]), "other-client");
    assert_eq!(other.len(), 43);
    // The flooding client's existing sessions still work.
    a.assert_healthy(Some([127, 0, 0, 4]));
}

fn raw_reply((status, head, body): (u16, String, Vec<u8>)) -> Reply {
    Reply {
        status,
        headers: head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect(),
        body,
    }
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

/// Read one HTTP response from a raw stream (bounded by `limit`); `None` if the peer closed or
/// stalled without answering.
fn read_response(s: &mut TcpStream, limit: Duration) -> Option<(u16, String, Vec<u8>)> {
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                return Some((status, head, raw[end + 4..end + 4 + len].to_vec()));
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
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
