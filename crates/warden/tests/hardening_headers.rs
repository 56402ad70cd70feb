//! Relay hardening of the MCP request headers and the fields guards read (issue #13 items 5, 6,
//! 7, 14, 15, 17), attacked through `warden serve` (and `warden wrap` for item 14) in front of a
//! recording dual-era upstream that proves what reached it:
//!
//! * item 5 (P1.1, C15, SEP-2243): `Mcp-Param-*` checks hold before any `tools/list`, refuse
//!   arguments some reader cannot read, and compare integers exactly;
//! * item 6 (P1.1): a repeated MCP header is refused, never "first checked, all forwarded";
//! * item 7 (P3.4): a 2026-07-28 message is checked even with an `Mcp-Session-Id`, a session's
//!   requests name the version it negotiated, stateless notifications meet the header rules;
//! * item 14 (P1.1): a duplicated `params` member a guard reads is refused (serve and wrap);
//! * item 15 (P5.1): every audit field is bounded;
//! * item 17 (P1.1, P9.2): a prefixed name renamed in the body is renamed in `Mcp-Name` too.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::attack::{Arena, expect};
use support::recorder::{Canned, Recorded, Recorder};
use support::tiny::tiny;
use support::{Warden, temp_dir, toml_str, upstream_http, wait_exit, warden_bin};

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

/// The tools the dual-era upstream lists: `weather` mirrors `region` and `n` into headers.
fn tools() -> Value {
    json!([
        {"name": "weather", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "N"},
            "q": {"type": "string"}}}},
        {"name": "echo", "inputSchema": {"type": "object"}}
    ])
}

/// A dual-era upstream: `initialize` opens a 2025-11-25 session, `server/discover` and
/// `tools/list` answer 2026-07-28, every other request gets an empty result.
fn dual(r: &Recorded) -> Canned {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let id = v["id"].clone();
    let result =
        |result: Value| Canned::json(json!({"jsonrpc":"2.0","id":id,"result":result}).to_string());
    match v["method"].as_str() {
        Some("initialize") => result(json!({"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"rec","version":"0"}}))
            .with_header("mcp-session-id", "upstream-session"),
        Some("server/discover") => result(json!({"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{}}})),
        Some("tools/list") => Canned::json(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"resultType":"complete","tools":{},"ttlMs":0,"cacheScope":"public"}}}}"#,
            tools()
        )),
        Some(_) if !id.is_null() => result(json!({"resultType":"complete","content":[]})),
        _ => Canned::accepted(),
    }
}

fn arena(script: fn(&Recorded) -> Canned) -> Arena {
    let up = Recorder::start(script);
    let w = Warden::start(&upstream_http("rec", &up.url, None));
    Arena {
        w,
        up,
        tally: BTreeMap::new(),
        allowed_upstream: 0,
    }
}

/// The SEP-2243 standard headers of a 2026-07-28 request.
fn modern<'a>(method: &'a str, name: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    h.extend(name.map(|n| ("mcp-name", n)));
    h
}

/// `modern("tools/call", Some(tool))` and `extra`.
fn calling<'a>(tool: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    [&modern("tools/call", Some(tool))[..], extra].concat()
}

fn call(id: u32, name: &str, args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{args},{META}}}}}"#
    )
}

/// The refusal of a header that disagrees with the body (SEP-2243).
fn mismatch(id: u32) -> support::attack::Expect {
    expect(400, -32020, "header_mismatch", "P3.4").id(json!(id))
}

/// Requests `up` saw whose body contains `needle`.
fn seen_in(up: &Recorder, needle: &str) -> Vec<Recorded> {
    let has = |r: &Recorded| String::from_utf8_lossy(&r.body).contains(needle);
    up.requests().into_iter().filter(has).collect()
}

fn seen_with(a: &Arena, needle: &str) -> Vec<Recorded> {
    seen_in(&a.up, needle)
}

/// A stateless `tools/list` through Warden (the guards learn the annotations from it).
fn list_tools(a: &mut Arena) {
    let body = format!(r#"{{"jsonrpc":"2.0","id":"l","method":"tools/list","params":{{{META}}}}}"#);
    let r = a.post(&modern("tools/list", None), body.as_bytes());
    assert_eq!(r.status, 200, "tools/list: {}", r.text());
    assert_eq!(
        r.json()["result"]["tools"][0]["name"],
        "weather",
        "{}",
        r.text()
    );
}

/// #13 item 5 (a), P1.1 / C15: before any `tools/list` went through Warden, a call to an
/// annotated tool is still checked: Warden lists the upstream's tools itself, then refuses a
/// spoofed or missing `Mcp-Param-*` header. Fails without the fix: the spoofed call reached the
/// upstream unchecked.
#[test]
fn annotated_tools_are_checked_before_any_list() {
    let mut a = arena(dual);
    let spoofed = call(1, "weather", r#"{"region":"eu-marker-5a"}"#);
    let h = calling("weather", &[("mcp-param-region", "us-west1")]);
    let r = a.post(&h, spoofed.as_bytes());
    // Warden's own probe and list reached the upstream; the call did not.
    let own = seen_with(&a, "warden-list-");
    assert_eq!(
        own.len(),
        1,
        "Warden listed the tools once: {:?}",
        a.up.bodies()
    );
    assert_eq!(own[0].header("mcp-method"), Some("tools/list"));
    assert_eq!(own[0].header("mcp-protocol-version"), Some("2026-07-28"));
    a.allowed_upstream = a.up.requests().len();
    a.refused("eu-marker-5a", &r, mismatch(1));
    // The value in the body without its header: refused too.
    let missing = call(2, "weather", r#"{"region":"eu-marker-5a-missing"}"#);
    let r = a.post(&modern("tools/call", Some("weather")), missing.as_bytes());
    a.refused("eu-marker-5a-missing", &r, mismatch(2));
    // A consistent call goes through with its header, and no second list was needed.
    let ok = call(3, "weather", r#"{"region":"eu-ok-5a"}"#);
    let r = a.post(
        &calling("weather", &[("mcp-param-region", "eu-ok-5a")]),
        ok.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = seen_with(&a, "eu-ok-5a");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("mcp-param-region"), Some("eu-ok-5a"));
    assert_eq!(seen_with(&a, "warden-list-").len(), 1);
}

/// An upstream whose `tools/list` fails.
fn list_fails(r: &Recorded) -> Canned {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if v["method"] == "tools/list" {
        return Canned::json(
            json!({"jsonrpc":"2.0","id":v["id"],"error":{"code":-32603,"message":"down"}})
                .to_string(),
        );
    }
    dual(r)
}

/// #13 item 5 (a): when the definitions cannot be listed, the call fails closed (502).
#[test]
fn a_call_whose_definitions_cannot_be_listed_fails_closed() {
    let mut a = arena(list_fails);
    let body = call(1, "weather", r#"{"region":"eu-marker-5a-down"}"#);
    let r = a.post(&modern("tools/call", Some("weather")), body.as_bytes());
    a.allowed_upstream = a.up.requests().len();
    a.refused(
        "eu-marker-5a-down",
        &r,
        expect(502, -32003, "tool_definitions_unavailable", "P1.1").id(json!(1)),
    );
    a.assert_healthy(None);
}

/// #13 item 5 (b, c): arguments some JSON reader cannot read (`1e400`, a lone surrogate, the
/// annotated argument twice) are refused instead of being taken for "no arguments", and an
/// integer header is compared exactly (`…992` is not `…993`). Fails without the fix: each of
/// these reached the upstream.
#[test]
fn mirrored_arguments_are_read_strictly() {
    let mut a = arena(dual);
    list_tools(&mut a);
    a.allowed_upstream = a.up.requests().len();
    let unreadable = [
        (r#"{"region":"eu-m5b1","x":1e400}"#, "eu-m5b1", None),
        (r#"{"region":"eu-m5b2","q":"\ud800"}"#, "eu-m5b2", None),
        (
            r#"{"region":"us","region":"eu-m5b3"}"#,
            "eu-m5b3",
            Some("eu-m5b3"),
        ),
    ];
    for (i, (args, marker, header)) in unreadable.into_iter().enumerate() {
        let id = 10 + i as u32;
        let mut h = modern("tools/call", Some("weather"));
        if let Some(v) = header {
            h.push(("mcp-param-region", v));
        }
        let r = a.post(&h, call(id, "weather", args).as_bytes());
        // A repeated key is refused by the envelope before any guard (#13 item 14).
        let e = if header.is_some() {
            expect(400, -32600, "duplicate_key", "P1.1")
        } else {
            expect(400, -32602, "arguments_unreadable", "P1.1")
        };
        a.refused(marker, &r, e.id(json!(id)));
    }
    let h = calling("weather", &[("mcp-param-n", "9007199254740992")]);
    let r = a.post(
        &h,
        call(20, "weather", r#"{"n":9007199254740993,"q":"m5c"}"#).as_bytes(),
    );
    a.refused("m5c", &r, mismatch(20));
    // Numerically equal integers still match (SEP-2243: `42.0` and `42`).
    let h = calling("weather", &[("mcp-param-n", "42.0")]);
    let r = a.post(
        &h,
        call(21, "weather", r#"{"n":42,"q":"m5c-ok"}"#).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen_with(&a, "m5c-ok").len(), 1);
    a.allowed_upstream += 1;
    a.assert_healthy(None);
}

/// #13 item 6, P1.1: an MCP header sent twice (any case) is refused with 400 / -32020 in both
/// generations; nothing reaches the upstream. Fails without the fix: the first value was checked
/// and both were forwarded.
#[test]
fn repeated_mcp_headers_are_refused() {
    let mut a = arena(dual);
    let sid = a.open_session(None, "repeat");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"rep-session"}}}"#;
    let r = a.post(
        &[
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-name", "echo"),
            ("Mcp-Name", "delete_everything"),
        ],
        body.as_bytes(),
    );
    a.refused(
        "rep-session",
        &r,
        expect(400, -32020, "header_repeated", "P1.1"),
    );
    let r = a.post(
        &[
            ("mcp-session-id", &sid),
            ("mcp-session-id", "another"),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        br#"{"jsonrpc":"2.0","id":2,"method":"ping","params":{"m":"rep-sid"}}"#,
    );
    a.refused(
        "rep-sid",
        &r,
        expect(400, -32020, "header_repeated", "P1.1"),
    );
    list_tools(&mut a);
    a.allowed_upstream = a.up.requests().len();
    let cases: [(&str, &str, &str); 4] = [
        ("mcp-method", "tools/list", "rep-method"),
        ("MCP-Protocol-Version", "2025-11-25", "rep-version"),
        ("mcp-name", "weather", "rep-name"),
        ("Mcp-Param-Region", "us", "rep-param"),
    ];
    for (i, (name, second, marker)) in cases.into_iter().enumerate() {
        let h = calling("weather", &[("mcp-param-region", "eu"), (name, second)]);
        let args = format!(r#"{{"region":"eu","q":"{marker}"}}"#);
        let r = a.post(&h, call(30 + i as u32, "weather", &args).as_bytes());
        a.refused(marker, &r, expect(400, -32020, "header_repeated", "P1.1"));
    }
    a.assert_healthy(None);
}

/// #13 item 7, P3.4: with an `Mcp-Session-Id`, a message that names 2026-07-28 (header or
/// `_meta`) is still held to that generation's rules: a spoofed `Mcp-Name` is refused. Fails
/// without the fix: the session id switched every check off.
#[test]
fn a_session_id_does_not_switch_the_stateless_rules_off() {
    let mut a = arena(dual);
    let sid = a.open_session(None, "mixed");
    let body = call(1, "echo", r#"{"m":"mixed-header"}"#);
    let r = a.post(
        &calling("rm_rf", &[("mcp-session-id", &sid)]),
        body.as_bytes(),
    );
    // Warden's own probe and tools/list may precede the refusal; the call never reaches it.
    a.allowed_upstream = a.up.requests().len();
    a.refused("mixed-header", &r, mismatch(1));
    // The session's version in the header, 2026-07-28 in the body: still a 2026-07-28 message.
    let body = call(2, "echo", r#"{"m":"mixed-meta"}"#);
    let r = a.post(
        &[
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "rm_rf"),
        ],
        body.as_bytes(),
    );
    a.refused("mixed-meta", &r, mismatch(2));
    a.assert_healthy(None);
}

/// #13 item 7, P3.4 (E9): a session negotiated at 2025-11-25 refuses requests (POST and GET)
/// that name another version. Fails without the fix: `2024-11-05` was accepted.
#[test]
fn a_session_holds_its_negotiated_version() {
    let mut a = arena(dual);
    let sid = a.open_session(None, "version");
    let r = a.post(
        &[
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2024-11-05"),
        ],
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"old-version"}}}"#,
    );
    a.refused(
        "old-version",
        &r,
        expect(400, -32600, "protocol_version_mismatch", "P3.4").id(json!(1)),
    );
    let get = support::client::request(
        a.w.port,
        "GET",
        "/mcp",
        &[
            ("accept", "text/event-stream"),
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2024-11-05"),
        ],
        b"",
    );
    a.refused(
        "no-body-get",
        &get,
        expect(400, -32600, "protocol_version_mismatch", "P3.4"),
    );
    // The negotiated version, or none, is fine.
    for h in [&[("mcp-protocol-version", "2025-11-25")][..], &[][..]] {
        let mut all = vec![("mcp-session-id", sid.as_str())];
        all.extend_from_slice(h);
        let r = a.post(
            &all,
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#,
        );
        assert_eq!(r.status, 200, "{h:?}: {}", r.text());
        a.allowed_upstream += 1;
    }
    a.assert_healthy(None);
}

/// #13 item 7, P3.4: a stateless notification carries `MCP-Protocol-Version` and an `Mcp-Method`
/// equal to its body. Fails without the fix: notifications skipped every check.
#[test]
fn stateless_notifications_meet_the_header_rules() {
    let mut a = arena(dual);
    let note = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"note-spoof"}}"#;
    let r = a.post(&modern("tools/call", None), note.as_bytes());
    a.allowed_upstream = a.up.requests().len();
    a.refused(
        "note-spoof",
        &r,
        expect(400, -32020, "header_mismatch", "P3.4"),
    );
    let note = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":"note-nohdr",{META}}}}}"#
    );
    let r = a.post(&[], note.as_bytes());
    a.refused(
        "note-nohdr",
        &r,
        expect(400, -32020, "header_mismatch", "P3.4"),
    );
    let ok =
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"note-ok"}}"#;
    let r = a.post(&modern("notifications/cancelled", None), ok.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(seen_with(&a, "note-ok").len(), 1);
}

/// #13 item 14, P1.1: a `params` member a guard reads, sent twice, is refused in the session
/// era (the audit named one tool, the upstream ran the other). Fails without the fix.
#[test]
fn duplicated_params_members_are_refused_in_a_session() {
    let mut a = arena(dual);
    let sid = a.open_session(None, "dups");
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let attacks = [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"evil-dup1"}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","n\u0061me":"evil-dup2"}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a","uri":"file:///evil-dup3"}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":1,"progressToken":"evil-dup4"}}}"#,
    ];
    for (i, body) in attacks.into_iter().enumerate() {
        let r = a.post(&h, body.as_bytes());
        let marker = format!("evil-dup{}", i + 1);
        a.refused(
            &marker,
            &r,
            expect(400, -32600, "duplicate_key", "P1.1").id(json!(i + 1)),
        );
    }
    a.assert_healthy(None);
}

/// #13 item 14, P1.1: the same through `warden wrap`: refused, never written to the server.
#[test]
fn duplicated_params_members_are_refused_in_wrap() {
    let dir = temp_dir("wrap-dups");
    let (log, cfg, audit) = (dir.join("seen"), dir.join("w.toml"), dir.join("audit"));
    let audit_toml = format!(
        "[audit]\npath = {}\n",
        toml_str(&audit.display().to_string())
    );
    std::fs::write(&cfg, audit_toml).unwrap();
    let mut child = Command::new(warden_bin())
        .args([
            "wrap",
            "--config",
            &cfg.display().to_string(),
            "--pass-env",
            "TINY_LOG",
            "--",
        ])
        .args(tiny(&["--tools", "echo,evil"]))
        .env("TINY_LOG", &log)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start warden wrap");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ask = |msg: &str| {
        writeln!(stdin, "{msg}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let init = ask(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "tiny");
    let bad = ask(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","name":"evil","arguments":{"m":"wrap-dup"}}}"#,
    );
    assert_eq!(bad["id"], 2, "{bad}");
    assert_eq!(bad["error"]["code"], -32600, "{bad}");
    assert_eq!(bad["error"]["data"]["reason"], "duplicate_key", "{bad}");
    let ok = ask(
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"m":"wrap-ok"}}}"#,
    );
    assert_eq!(
        ok["result"]["content"][0]["text"],
        r#"tiny:echo:{"m": "wrap-ok"}"#
    );
    drop(stdin);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(
        !seen.contains("wrap-dup"),
        "the duplicate reached the server: {seen}"
    );
    let audit = std::fs::read_to_string(&audit).unwrap();
    let refused =
        |l: &&str| l.contains(r#""reason":"duplicate_key""#) && l.contains(r#""control":"P1.1""#);
    assert!(
        audit.lines().any(|l| refused(&l)),
        "the refusal is audited: {audit}"
    );
}

/// #13 item 15, P5.1: a 60 KB method (or tool name) does not make a 60 KB audit line: every
/// field is bounded. Fails without the fix.
#[test]
fn audit_fields_are_bounded() {
    let mut a = arena(dual);
    let sid = a.open_session(None, "audit");
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let method = "m".repeat(60_000);
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#);
    let r = a.post(&h, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let tool = "t".repeat(60_000);
    let body =
        format!(r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{tool}"}}}}"#);
    let r = a.post(&h, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let events = a.w.audit();
    let text = std::fs::read_to_string(a.w.dir.join("audit.jsonl")).unwrap();
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "an audit line of {longest} bytes");
    assert!(
        events.iter().any(|e| e["method"]
            .as_str()
            .is_some_and(|m| m.starts_with("mmmm") && m.ends_with('…'))),
        "the long method is audited, cut: {events:?}"
    );
}

/// #13 item 17, P1.1 / P9.2: with prefixes, the upstream gets its own name in the body and in
/// `Mcp-Name` (2026-07-28 and session era); a client `Mcp-Name` that does not name what its body
/// calls is refused, never renamed into agreement. Fails without the fix: the header kept the
/// exposed name (a strict upstream refuses it) and the mismatched one was laundered.
#[test]
fn a_renamed_tool_is_renamed_in_mcp_name_too() {
    let ua = Recorder::start(dual);
    let ub = Recorder::start(dual);
    let w = Warden::start(&format!(
        "{}\n{}",
        upstream_http("alpha", &ua.url, Some("a")),
        upstream_http("beta", &ub.url, Some("b"))
    ));
    let post = |h: &[(&str, &str)], body: &str| {
        let all = [&support::attack::JSON_HEADERS[..], h].concat();
        support::client::request(w.port, "POST", "/mcp", &all, body.as_bytes())
    };
    let calls = |u: &Recorder, needle: &str| seen_in(u, needle);
    let r = post(
        &modern("tools/call", Some("a_echo")),
        &call(1, "a_echo", r#"{"m":"ren-modern"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = calls(&ua, "ren-modern");
    assert_eq!(got.len(), 1, "{:?}", ua.bodies());
    assert!(String::from_utf8_lossy(&got[0].body).contains(r#""name":"echo""#));
    assert_eq!(got[0].header("mcp-name"), Some("echo"));
    // Session era: renamed the same way.
    let init = post(&[], &support::attack::init_body("ren"));
    assert_eq!(init.status, 200, "{}", init.text());
    let sid = init.header("mcp-session-id").unwrap().to_owned();
    let r = post(
        &[
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-name", "b_echo"),
        ],
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b_echo","arguments":{"m":"ren-session"}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = calls(&ub, "ren-session");
    assert_eq!(got.len(), 1, "{:?}", ub.bodies());
    assert_eq!(got[0].header("mcp-name"), Some("echo"));
    // The header names the upstream's name while the body calls the prefixed one: a mismatch.
    let r = post(
        &modern("tools/call", Some("echo")),
        &call(3, "a_echo", r#"{"m":"ren-launder"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -32020, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["reason"], "header_mismatch");
    assert!(calls(&ua, "ren-launder").is_empty() && calls(&ub, "ren-launder").is_empty());
    let denied = w.audit_reason("header_mismatch");
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["decision"], "deny");
}

/// #13 item 14, P1.1: a list answer in which a tool names itself twice (two readers would see two
/// tools) is not one valid message: refused 502 `upstream_invalid_response`, audited, and neither
/// name reaches the client. Fails without the fix: the client saw `evil-twin`.
#[test]
fn list_answers_with_duplicated_members_are_refused() {
    fn twins(r: &Recorded) -> Canned {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if v["method"] != "tools/list" {
            return dual(r);
        }
        Canned::json(format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"tools":[{{"name":"twin","name":"evil-twin","inputSchema":{{"type":"object"}}}}]}}}}"#,
            v["id"]
        ))
    }
    let mut a = arena(twins);
    let sid = a.open_session(None, "twins");
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let listed = a.post(&h, br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(listed.status, 502, "{}", listed.text());
    assert!(!listed.text().contains("twin"), "{}", listed.text());
    assert_eq!(
        listed.json()["error"]["data"]["reason"],
        "upstream_invalid_response"
    );
    assert!(!a.w.audit_reason("upstream_invalid_response").is_empty());
}
