//! Attack tests for several upstreams behind one endpoint (#13 items 10, 20–23; P9.2, P1.1,
//! P4.3): scripted HTTP upstreams that go down and come back, list differently per session,
//! share names, resource URIs and templates, send server requests, and guard their one GET
//! stream per session. Each test proves what reached which upstream.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use support::attack::glimpse;
use support::recorder::{Canned, Recorded, Recorder};
use support::sse_upstream::{Get, SseUpstream};
use support::tiny::{open_session, rpc, rpc_raw};
use support::{Warden, upstream_http};

type Tools = Arc<dyn Fn(u64) -> Vec<Value> + Send + Sync>;

/// What a scripted upstream offers. Its sessions are numbered `<name>-s<n>` from 1, and
/// `tools` gets that number, so a list can differ per session.
struct Spec {
    name: &'static str,
    tools: Tools,
    resources: Vec<&'static str>,
    templates: Vec<&'static str>,
    /// While set, every request gets a 503 page (the upstream is down).
    down: Arc<AtomicBool>,
}

fn tools(names: &'static [&'static str]) -> Tools {
    Arc::new(move |_| names.iter().map(|n| tool(n)).collect())
}

fn tool(name: &str) -> Value {
    json!({"name": name, "inputSchema": {"type": "object"}})
}

fn spec(name: &'static str, t: Tools) -> Spec {
    Spec {
        name,
        tools: t,
        resources: vec![],
        templates: vec![],
        down: Arc::default(),
    }
}

/// A session-based MCP upstream over HTTP answering from `s` (no GET stream: 405).
fn upstream(s: Spec) -> Recorder {
    let sessions = AtomicU64::new(0);
    Recorder::start(move |r: &Recorded| {
        if s.down.load(Ordering::SeqCst) {
            return Canned {
                status: 503,
                content_type: "text/plain",
                headers: vec![],
                body: b"down".to_vec(),
            };
        }
        if r.method == "GET" {
            return Canned {
                status: 405,
                content_type: "text/plain",
                headers: vec![],
                body: vec![],
            };
        }
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let (id, p) = (&v["id"], &v["params"]);
        let result = match v["method"].as_str() {
            Some("server/discover") => {
                json!({"supportedVersions": ["2025-11-25", "2026-07-28"], "capabilities": {"tools": {}}, "serverInfo": {"name": s.name, "version": "1"}})
            }
            Some("initialize") => {
                let n = sessions.fetch_add(1, Ordering::SeqCst) + 1;
                let body = json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"resources":{}},"serverInfo":{"name":s.name,"version":"1"}}});
                return Canned::json(body.to_string())
                    .with_header("mcp-session-id", &format!("{}-s{n}", s.name));
            }
            _ if id.is_null() => return Canned::accepted(),
            Some("tools/list") => {
                let n = r
                    .header("mcp-session-id")
                    .and_then(|h| h.rsplit("-s").next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                json!({"tools": (s.tools)(n)})
            }
            Some("resources/list") => {
                json!({"resources": s.resources.iter().map(|u| json!({"uri": u, "name": u})).collect::<Vec<_>>()})
            }
            Some("resources/templates/list") => {
                json!({"resourceTemplates": s.templates.iter().map(|t| json!({"uriTemplate": t, "name": t})).collect::<Vec<_>>()})
            }
            Some("resources/read") => {
                json!({"contents": [{"uri": p["uri"], "text": format!("{}:{}", s.name, p["uri"].as_str().unwrap_or(""))}]})
            }
            Some("tools/call") if p["name"] == "ask" => {
                // A server request on the call's stream, then the answer.
                let ask = json!({"jsonrpc":"2.0","id":"srv-1","method":"roots/list"});
                let done = json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"asked"}]}});
                return Canned::sse(format!(
                    "event: message\ndata: {ask}\n\nevent: message\ndata: {done}\n\n"
                ));
            }
            Some("tools/call") => {
                json!({"content": [{"type": "text", "text": format!("{}:{}", s.name, p["name"].as_str().unwrap_or(""))}]})
            }
            _ => json!({}),
        };
        Canned::json(json!({"jsonrpc":"2.0","id":id,"result":result}).to_string())
    })
}

fn warden(ups: &[(&str, &Recorder, Option<&str>)]) -> Warden {
    let cfg: Vec<String> = ups
        .iter()
        .map(|(n, r, p)| upstream_http(n, &r.url, *p))
        .collect();
    Warden::start(&cfg.join("\n"))
}

fn names(resp: &Value, key: &str, field: &str) -> Vec<String> {
    let mut v: Vec<String> = resp["result"][key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}: {resp}"))
        .iter()
        .map(|t| t[field].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn call(w: &Warden, sid: &str, id: u64, name: &str) -> Value {
    rpc(w.port, sid, id, "tools/call", json!({"name": name}))
}

fn read(w: &Warden, sid: &str, id: u64, uri: &str) -> Value {
    rpc(w.port, sid, id, "resources/read", json!({"uri": uri}))
}

/// The answer is a refusal with `reason`, and the audit has it with `control`.
fn assert_refused(w: &Warden, resp: &Value, reason: &str, control: &str) {
    assert_eq!(resp["error"]["data"]["reason"], reason, "{resp}");
    assert!(
        resp["error"]["data"]["hint"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{resp}"
    );
    let events = w.audit_reason(reason);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "mcp.refusal" && e["control"] == control),
        "{reason} audited: {events:?}"
    );
}

/// POST bodies an upstream got that contain `needle`.
fn got(up: &Recorder, needle: &str) -> Vec<String> {
    up.bodies()
        .into_iter()
        .filter(|b| b.contains(needle))
        .collect()
}

/// #13 item 10 (P9.2): a collision, once seen, is withheld from every client for good: not
/// shown again while one side is down, not callable in a session that listed while it was
/// down, nor in a new session after the other side returns.
#[test]
fn a_collision_stays_withheld_while_a_twin_is_down_and_after_it_returns() {
    let alpha = upstream(spec("alpha", tools(&["echo", "add"])));
    let beta_spec = spec("beta", tools(&["echo"]));
    let beta_down = beta_spec.down.clone();
    let beta = upstream(beta_spec);
    let w = warden(&[("alpha", &alpha, None), ("beta", &beta, None)]);

    let s1 = open_session(w.port);
    let l1 = rpc(w.port, &s1, 1, "tools/list", json!({}));
    assert_eq!(names(&l1, "tools", "name"), ["add"], "both sides withheld");

    beta_down.store(true, Ordering::SeqCst);
    let s2 = open_session(w.port);
    let l2 = rpc(w.port, &s2, 2, "tools/list", json!({}));
    assert_eq!(
        names(&l2, "tools", "name"),
        ["add"],
        "with beta down, alpha's 'echo' must not reappear"
    );
    assert_refused(&w, &call(&w, &s2, 3, "echo"), "name_withheld", "P9.2");

    beta_down.store(false, Ordering::SeqCst);
    let s3 = open_session(w.port);
    assert_refused(&w, &call(&w, &s3, 4, "echo"), "name_withheld", "P9.2");
    assert_refused(&w, &call(&w, &s1, 5, "echo"), "name_withheld", "P9.2");
    assert!(
        got(&alpha, r#""name":"echo""#).is_empty() && got(&beta, r#""name":"echo""#).is_empty(),
        "no call to a withheld name reached an upstream"
    );
}

/// #13 item 10 (P9.2): a prefixed name that collides with another upstream's name is withheld,
/// and the prefix does not make it callable — neither before any list nor after one.
#[test]
fn a_withheld_prefixed_name_is_not_callable_through_its_prefix() {
    let alpha = upstream(spec("alpha", tools(&["echo"])));
    let beta = upstream(spec("beta", tools(&["a_echo", "other"])));
    let w = warden(&[("alpha", &alpha, Some("a")), ("beta", &beta, None)]);
    let sid = open_session(w.port);
    assert_refused(&w, &call(&w, &sid, 1, "a_echo"), "name_withheld", "P9.2");
    let list = rpc(w.port, &sid, 2, "tools/list", json!({}));
    assert_eq!(names(&list, "tools", "name"), ["other"]);
    assert_refused(&w, &call(&w, &sid, 3, "a_echo"), "name_withheld", "P9.2");
    assert!(
        got(&alpha, "tools/call").is_empty() && got(&beta, "tools/call").is_empty(),
        "nothing was called: alpha {:?} beta {:?}",
        alpha.bodies(),
        beta.bodies()
    );
    let collisions = w
        .audit()
        .into_iter()
        .filter(|e| e["kind"] == "tool.name_collision" && e["tool"] == "a_echo")
        .count();
    assert!(collisions >= 2, "both sides of the collision are audited");
}

/// #13 item 21 (P1.1): a call before any list finds its upstream (the lists are asked on the
/// client's behalf), in the caller's own session: another session's list does not decide where
/// it goes.
#[test]
fn a_call_before_any_list_is_routed_by_its_own_sessions_lists() {
    // alpha's first session lists 'only', its others do not; beta's second session lists it.
    let alpha = upstream(spec(
        "alpha",
        Arc::new(|n| if n == 1 { vec![tool("only")] } else { vec![] }),
    ));
    let beta = upstream(spec(
        "beta",
        Arc::new(move |n| {
            let mut t = vec![tool("echo")];
            if n == 2 {
                t.push(tool("only"));
            }
            t
        }),
    ));
    let w = warden(&[("alpha", &alpha, None), ("beta", &beta, None)]);

    let s1 = open_session(w.port);
    let first = call(&w, &s1, 1, "echo");
    assert_eq!(
        first["result"]["content"][0]["text"], "beta:echo",
        "{first}"
    );
    let l1 = rpc(w.port, &s1, 2, "tools/list", json!({}));
    assert_eq!(names(&l1, "tools", "name"), ["echo", "only"]);

    let s2 = open_session(w.port);
    let only = call(&w, &s2, 3, "only");
    assert_eq!(
        only["result"]["content"][0]["text"], "beta:only",
        "session 2's 'only' is beta's, whatever session 1 listed: {only}"
    );
    assert!(got(&alpha, r#""name":"only""#).is_empty());
    let fills = w
        .audit()
        .into_iter()
        .filter(|e| e["kind"] == "mcp.request" && e["reason"] == "catalog_fill")
        .count();
    assert_eq!(fills, 2, "the lists Warden asked for are audited");
}

/// A stateless (2026-07-28) call across upstreams.
fn stateless_call(w: &Warden, name: &str) -> Value {
    let body = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":name,"arguments":{},"_meta":{
        "io.modelcontextprotocol/protocolVersion":"2026-07-28",
        "io.modelcontextprotocol/clientCapabilities":{},
        "io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},
        "progressToken":"p-1"}}});
    let r = support::client::request(
        w.port,
        "POST",
        "/mcp",
        &[
            support::tiny::JSON,
            support::tiny::ACCEPT,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", name),
        ],
        body.to_string().as_bytes(),
    );
    r.json()
}

/// #13 item 21 (P1.1) in the stateless generation: the request's own lists are asked, as any
/// list would be — with its protocol `_meta`, `Mcp-Method: tools/list` and no `Mcp-Name`,
/// through the guards (a tool whose `x-mcp-header` annotation is invalid is withheld from them,
/// so it stays uncallable).
#[test]
fn a_stateless_call_asks_its_own_lists_through_the_guards() {
    let bad = json!({"name": "bad", "inputSchema": {"type": "object", "properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}});
    let alpha = upstream(spec("alpha", tools(&["add"])));
    let beta = upstream(spec(
        "beta",
        Arc::new(move |_| vec![tool("echo"), bad.clone()]),
    ));
    let w = warden(&[("alpha", &alpha, None), ("beta", &beta, None)]);
    let echo = stateless_call(&w, "echo");
    assert_eq!(echo["result"]["content"][0]["text"], "beta:echo", "{echo}");
    let lists: Vec<_> = beta
        .requests()
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("tools/list"))
        .collect();
    assert!(!lists.is_empty(), "beta was asked for its list");
    for l in &lists {
        let body = String::from_utf8_lossy(&l.body);
        assert!(
            body.contains("2026-07-28") && !body.contains("p-1"),
            "{body}"
        );
        assert_eq!(l.header("mcp-method"), Some("tools/list"));
        assert_eq!(l.header("mcp-name"), None);
    }
    let bad = stateless_call(&w, "bad");
    assert!(
        ["unknown_name", "tool_definition_invalid"]
            .contains(&bad["error"]["data"]["reason"].as_str().unwrap_or("")),
        "{bad}"
    );
    assert!(
        got(&beta, r#""name":"bad""#).is_empty(),
        "'bad' was withheld"
    );
    assert!(got(&alpha, "tools/call").is_empty());
}

/// #13 item 22 (P9.2): resources follow the collision rules: a URI two upstreams list is
/// withheld and never read from either; a URI no upstream lists or covers is refused instead
/// of going to the first upstream; a URI two upstreams' templates cover is ambiguous.
#[test]
fn resources_are_never_routed_to_a_default_or_shadowing_upstream() {
    let mut a = spec("alpha", tools(&[]));
    a.resources = vec!["file:///shared", "file:///a-only"];
    a.templates = vec!["docs://{page}"];
    let mut b = spec("beta", tools(&[]));
    b.resources = vec!["file:///shared"];
    b.templates = vec!["beta://{id}", "docs://{page}/v2"];
    let (alpha, beta) = (upstream(a), upstream(b));
    let w = warden(&[("alpha", &alpha, None), ("beta", &beta, None)]);
    let sid = open_session(w.port);

    assert_refused(
        &w,
        &read(&w, &sid, 1, "file:///shared"),
        "name_withheld",
        "P9.2",
    );
    let list = rpc(w.port, &sid, 2, "resources/list", json!({}));
    assert_eq!(names(&list, "resources", "uri"), ["file:///a-only"]);
    assert_refused(
        &w,
        &read(&w, &sid, 3, "file:///shared"),
        "name_withheld",
        "P9.2",
    );
    assert_refused(
        &w,
        &read(&w, &sid, 4, "nowhere://x"),
        "unknown_name",
        "P1.1",
    );
    assert_refused(
        &w,
        &read(&w, &sid, 5, "docs://intro"),
        "uri_ambiguous",
        "P9.2",
    );
    let ok = read(&w, &sid, 6, "beta://7");
    assert_eq!(ok["result"]["contents"][0]["text"], "beta:beta://7", "{ok}");
    let ok = read(&w, &sid, 7, "file:///a-only");
    assert_eq!(ok["result"]["contents"][0]["text"], "alpha:file:///a-only");
    for up in [&alpha, &beta] {
        let reads = got(up, "resources/read");
        assert!(
            reads
                .iter()
                .all(|b| !b.contains("shared") && !b.contains("nowhere") && !b.contains("docs://")),
            "a refused URI reached an upstream: {reads:?}"
        );
    }
}

/// #13 item 23: server→client request ids carry the upstream's name (as the README says), and
/// the client's answer goes back to that upstream with its own id.
#[test]
fn server_request_ids_are_tagged_with_the_upstream_name() {
    let alpha = upstream(spec("alpha", tools(&["add"])));
    let beta = upstream(spec("beta", tools(&["ask"])));
    let w = warden(&[("alpha", &alpha, Some("a")), ("beta", &beta, Some("b"))]);
    let sid = open_session(w.port);
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"b_ask"}});
    let r = rpc_raw(w.port, &sid, &body.to_string());
    let msgs = r.sse_messages();
    let ask = msgs
        .iter()
        .find(|m| m["method"] == "roots/list")
        .unwrap_or_else(|| panic!("the server request is relayed: {}", r.text()));
    assert_eq!(ask["id"], r#"beta~"srv-1""#, "{ask}");
    let answer = json!({"jsonrpc":"2.0","id":ask["id"],"result":{"roots":[]}});
    let back = rpc_raw(w.port, &sid, &answer.to_string());
    assert_eq!(back.status, 202, "{}", back.text());
    let answered = got(&beta, r#""roots":[]"#);
    assert!(
        answered.len() == 1 && answered[0].contains(r#""id":"srv-1""#),
        "beta got its answer with its own id: {answered:?}"
    );
    assert!(got(&alpha, "roots").is_empty());
}

const GET_HEADERS: [(&str, &str); 2] = [
    ("accept", "text/event-stream"),
    ("mcp-protocol-version", "2025-11-25"),
];

/// initialize, then `notifications/initialized` on a thread (Warden opens the upstream GET
/// streams while it answers) and the client's GET right behind it.
fn race_get(w: &Warden) -> support::attack::Glimpse {
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"race","version":"1"}}}"#;
    let r = support::client::request(
        w.port,
        "POST",
        "/mcp",
        &[support::tiny::JSON, support::tiny::ACCEPT],
        init.as_bytes(),
    );
    let sid = r.header("mcp-session-id").unwrap().to_owned();
    let (port, sid2) = (w.port, sid.clone());
    let note = thread::spawn(move || {
        rpc_raw(
            port,
            &sid2,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
    });
    thread::sleep(Duration::from_millis(100));
    let mut h = GET_HEADERS.to_vec();
    h.push(("mcp-session-id", &sid));
    let g = glimpse(None, w.port, "GET", &h, Duration::from_millis(2500));
    assert_eq!(note.join().unwrap().status, 202);
    g
}

/// #13 item 20 (P4.3): a client GET that arrives while Warden's own upstream GET is being
/// opened joins it: one GET reaches the upstream, never a second one that the upstream refuses
/// with 409, and the server's first request reaches the client.
#[test]
fn the_clients_get_joins_wardens_stream_instead_of_racing_it() {
    let up = SseUpstream::start(
        "alpha",
        Get::Stream {
            delay: Duration::from_millis(500),
        },
    );
    let w = Warden::start(&upstream_http("alpha", &up.url, None));
    let g = race_get(&w);
    assert_eq!(g.status, Some(200), "{g:?}");
    assert!(g.text().contains("roots/list"), "{}", g.text());
    assert_eq!(up.gets(), 1, "one GET per session");
    assert_eq!(up.conflicts(), 0, "no second GET");
}

/// #13 items 20 and 23 (P4.3) with several upstreams: the client's GET that races Warden's own
/// joins each upstream's one stream: one GET per upstream, both server requests arrive, their
/// ids and event ids tagged with the upstream's name.
#[test]
fn the_merged_get_joins_every_upstreams_one_stream() {
    let slow = Get::Stream {
        delay: Duration::from_millis(400),
    };
    let (a, b) = (
        SseUpstream::start("alpha", slow),
        SseUpstream::start("beta", slow),
    );
    let w = Warden::start(&format!(
        "{}\n{}",
        upstream_http("alpha", &a.url, Some("a")),
        upstream_http("beta", &b.url, Some("b"))
    ));
    let g = race_get(&w);
    assert_eq!(g.status, Some(200), "{g:?}");
    let text = g.text();
    for tag in [r#""alpha~\"roots-1\"""#, r#""beta~\"roots-1\"""#] {
        assert!(text.contains(tag), "{tag} in {text}");
    }
    assert!(
        sealed_ids(&g).contains(&"alpha~alpha-ev-1".to_owned()),
        "{text}"
    );
    assert_eq!((a.gets(), b.gets()), (1, 1), "one GET per upstream");
    assert_eq!((a.conflicts(), b.conflicts()), (0, 0));
}

/// #13 item 20 (P4.3): with several upstreams, a GET stream that would lack the stream of one
/// of the session's upstreams is refused (502, audited with that upstream), never answered 200
/// without it; an upstream that offers no stream at all (405) has nothing to lose and is fine.
#[test]
fn a_merged_get_is_refused_when_an_upstreams_stream_fails() {
    let ok = SseUpstream::start(
        "alpha",
        Get::Stream {
            delay: Duration::ZERO,
        },
    );
    let none = SseUpstream::start("beta", Get::Status(405));
    let broken = SseUpstream::start("gamma", Get::Status(500));
    let w = Warden::start(&format!(
        "{}\n{}\n{}",
        upstream_http("alpha", &ok.url, Some("a")),
        upstream_http("beta", &none.url, Some("b")),
        upstream_http("gamma", &broken.url, Some("c"))
    ));
    let sid = open_session(w.port);
    let mut h = GET_HEADERS.to_vec();
    h.push(("mcp-session-id", &sid));
    let g = glimpse(None, w.port, "GET", &h, Duration::from_millis(1500));
    assert_eq!(g.status, Some(502), "a GET without gamma's stream: {g:?}");
    let refusal: Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(
        refusal["error"]["data"]["reason"], "upstream_stream_failed",
        "{refusal}"
    );
    let events = w.audit_reason("upstream_stream_failed");
    assert!(
        events
            .iter()
            .any(|e| e["upstream"] == "gamma" && e["control"] == "P4.3"),
        "{events:?}"
    );
}

/// The event ids of a GET with the session seal (`<mac>.`, #13 item 18) taken off.
fn sealed_ids(g: &support::attack::Glimpse) -> Vec<String> {
    g.event_ids()
        .into_iter()
        .map(|id| {
            id.split_once('.')
                .map_or(id.clone(), |(_, rest)| rest.to_owned())
        })
        .collect()
}
