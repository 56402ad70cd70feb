//! Session and origin attacks against `warden serve`: foreign origins and rebinding hosts, forged,
//! foreign and missing session ids, 2026-07-28 header/body mismatches, session floods, and SSE
//! resumption across sessions and users. Every refusal is checked exactly (status, JSON-RPC code,
//! `error.data.reason`, hint, `deny` audit event with its control, nothing forwarded) and Warden
//! stays healthy afterwards. The shared `Arena` is in `support/attack.rs`; body attacks are in
//! `hostile_input.rs`.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use support::attack::{
    Arena, OTHER_CLIENT, audit_with, contains, expect, glimpse, init_body, raw_reply,
    read_response, sse_event_ids,
};
use support::client::{request, request_from};
use support::tiny::{open_session, rpc_raw, tiny};
use support::{Warden, upstream_stdio};

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
    // Before relaying it, Warden asked the upstream once (server/discover) whether it speaks
    // 2026-07-28, and listed its tools (no list had shown `echo`'s x-mcp-header annotations
    // yet, #13 item 5a); both are remembered, so no refusal below triggers another.
    let seen = a.up.requests();
    assert!(
        seen.len() == 3
            && contains(&seen[0].body, br#""method":"server/discover""#)
            && contains(&seen[1].body, br#""method":"tools/list""#)
            && contains(&seen[2].body, br#""name":"echo""#),
        "one probe, one list, then the request: {:?}",
        a.up.bodies()
    );
    a.allowed_upstream += 3;
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
    // Refused at the envelope, whichever field repeats (#13 item 14), with the id echoed.
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
        // Refused at the envelope for every path and generation (#13 item 14), id echoed.
        expect(400, -32600, "duplicate_key", "P1.1").id(json!(13)),
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

/// P8.2, P8.3 (spec E7, E11): Warden's resumable SSE streams (a stdio upstream in the session
/// generation) replay only to their own session and owner. Session A's `tools/call` result comes
/// back to A on GET + `Last-Event-ID`; session B from the same address presenting A's event ids
/// gets none of A's events; another client address presenting A's session id and event id is
/// refused 404 `session_not_found` (M2) and gets nothing either.
#[test]
fn sse_resumption_never_crosses_sessions_or_users() {
    let w = Warden::start(&upstream_stdio("tiny", &tiny(&["--tools", "echo"]), None));
    let secret = "A-ONLY";
    let sid_a = open_session(w.port);
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"secret":"A-ONLY"}}}"#;
    let r = rpc_raw(w.port, &sid_a, call);
    assert_eq!(r.status, 200, "A's call: {}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "Warden answers a stdio session request as SSE: {:?}",
        r.headers
    );
    let ids = sse_event_ids(&r.text());
    assert!(
        ids.len() >= 2 && ids[0].ends_with(".0") && r.text().contains("retry:"),
        "a priming event `<stream>.0` with retry:, then the result: {}",
        r.text()
    );
    assert!(contains(&r.body, secret.as_bytes()), "{}", r.text());
    let (priming, result_id) = (ids[0].clone(), ids[ids.len() - 1].clone());
    let window = Duration::from_secs(1);
    let resume = |src: Option<[u8; 4]>, sid: &str, last: &str| {
        let h = [
            ("accept", "text/event-stream"),
            ("mcp-session-id", sid),
            ("mcp-protocol-version", "2025-11-25"),
            ("last-event-id", last),
        ];
        glimpse(src, w.port, "GET", &h, window)
    };
    let resumes_of_a = |w: &Warden| -> Vec<serde_json::Value> {
        let a = w.audit();
        let fp = a
            .iter()
            .find(|e| e["kind"] == "stream.resume")
            .map(|e| e["session"].clone())
            .expect("A's resume is audited");
        a.into_iter()
            .filter(|e| e["kind"] == "stream.resume" && e["session"] == fp)
            .collect()
    };

    // (a) Positive control: A's owner resumes after the priming event and gets the result again.
    let g = resume(None, &sid_a, &priming);
    assert_eq!(g.status, Some(200), "A resumes its stream: {}", g.text());
    assert!(
        contains(&g.body, secret.as_bytes()),
        "A's result: {}",
        g.text()
    );
    assert!(
        g.event_ids().contains(&result_id) && !g.event_ids().contains(&priming),
        "replayed after {priming}: {:?}",
        g.event_ids()
    );
    let first = resumes_of_a(&w);
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(first[0]["control"], "P8.3", "{}", first[0]);

    // (b) Session B, same address: A's event ids name nothing of B's; none of A's data flows.
    let sid_b = open_session(w.port);
    assert_ne!(sid_a, sid_b);
    for last in [&priming, &result_id] {
        let g = resume(None, &sid_b, last);
        assert!(g.status.is_some(), "B with {last}: an answer: {g:?}");
        assert!(
            !contains(&g.body, secret.as_bytes()),
            "B with A's event id {last} got A's data: {}",
            g.text()
        );
    }

    // (c) Another client address with A's session id and event ids: 404, nothing of A's.
    for (n, last) in [&priming, &result_id].into_iter().enumerate() {
        let r = request_from(
            Some(OTHER_CLIENT),
            w.port,
            "GET",
            "/mcp",
            &[
                ("accept", "text/event-stream"),
                ("mcp-session-id", &sid_a),
                ("mcp-protocol-version", "2025-11-25"),
                ("last-event-id", last),
            ],
            b"",
        );
        assert_eq!(r.status, 404, "foreign client with {last}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], -32001, "{}", r.text());
        assert_eq!(r.json()["error"]["data"]["reason"], "session_not_found");
        assert!(!contains(&r.body, secret.as_bytes()), "{}", r.text());
        let denied = audit_with(&w, "session_not_found", n + 1);
        assert_eq!(denied.len(), n + 1, "{denied:#?}");
        let last_ev = &denied[n];
        assert_eq!(last_ev["decision"], "deny", "{last_ev}");
        assert_eq!(last_ev["control"], "M2", "{last_ev}");
        assert!(
            last_ev["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("127.0.0.2:")),
            "{last_ev}"
        );
    }

    // Only A ever resumed A's stream, and A still can.
    assert_eq!(resumes_of_a(&w).len(), 1, "nobody else resumed A's stream");
    let g = resume(None, &sid_a, &priming);
    assert!(contains(&g.body, secret.as_bytes()), "{}", g.text());
    let mut w = w;
    assert!(w.proc.is_running(), "{}", w.proc.stderr_now());
}
