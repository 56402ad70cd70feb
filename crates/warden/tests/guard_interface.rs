//! The guard interface, proven through every path (issue: one exchange core). A test-only guard,
//! `Probe`, uses every hook: it awaits, refuses a request head with a `WWW-Authenticate` header,
//! serves a path of its own, answers a call locally, filters a list item (and emits a standalone
//! audit event for it), rewrites a result, keeps per-session state, elicits from the client and
//! awaits the answer, adds a header of Warden's own to the upstream request, sees each session
//! end and every outcome. It runs in an in-process gateway in front of:
//!
//! * one stdio upstream (`serve`), session-based and stateless 2026-07-28 requests;
//! * two stdio upstreams with prefixes (`serve`, merged lists);
//! * one HTTP upstream answering JSON and SSE (`serve`);
//! * `wrap` (stdio front end).
//!
//! Each path must let no message past the probe: the hidden tool never reaches the client, the
//! secret never leaves a result, the locally answered call never reaches the server, and the
//! elicited call reaches it only after the client said yes. Controls: the pipeline itself (P1.1,
//! P5.1), and the hooks M1/P2.x/P7.x/P9.x guards will use.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::client::{Reply, request};
use support::recorder::{Canned, Recorder};
use support::tiny::{ACCEPT, JSON, tiny};
use support::{temp_dir, toml_str, upstream_http, upstream_stdio};
use warden_audit::{AuditSink, MemorySink};
use warden_guard::Guard;

#[path = "guard_interface/probe.rs"]
mod probe;

use probe::{Probe, Seen};

/// A gateway with the probe first, then the default guards, serving on a loopback port.
struct Gw {
    port: u16,
    audit: Arc<MemorySink>,
    seen: Arc<Mutex<Seen>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(body: &str) -> warden_config::Config {
    warden_config::load_str(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 0\n\n{body}"
    ))
    .unwrap_or_else(|d| panic!("{}", d.render("test")))
}

fn build(
    cfg: warden_config::Config,
    audit: Arc<MemorySink>,
    seen: Arc<Mutex<Seen>>,
) -> Arc<warden_gateway::Gateway> {
    let sink: Arc<dyn AuditSink> = audit;
    warden_gateway::Gateway::with_pipeline(cfg, sink, move |cfg, env| {
        let mut guards: Vec<Box<dyn Guard>> = vec![Box::new(Probe {
            env: env.clone(),
            seen,
        })];
        guards.extend(warden_gateway::pipeline::guards(cfg, env));
        warden_gateway::pipeline::Pipeline::from_guards(guards)
    })
    .unwrap()
}

fn serve(body: &str) -> Gw {
    let audit = Arc::new(MemorySink::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let gw = build(config(body), audit.clone(), seen.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (ptx, prx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ptx.send(l.local_addr().unwrap().port()).unwrap();
            let _ = warden_gateway::downstream::http::serve(gw, l, async {
                let _ = rx.await;
            })
            .await;
        });
        rt.shutdown_timeout(Duration::from_secs(1));
    });
    Gw {
        port: prx.recv().unwrap(),
        audit,
        seen,
        stop: Some(tx),
        thread: Some(thread),
    }
}

impl Gw {
    fn kinds(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(100));
        self.audit
            .events()
            .iter()
            .map(|e| e.kind.to_string())
            .collect()
    }
}

fn tiny_logged(name: &str, log: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec!["--tools", "echo,hidden,local,guarded", "--name", name];
    args.extend_from_slice(extra);
    let mut t = upstream_stdio(name, &tiny(&args), Some(name));
    t.push_str(&format!(
        "env = {{ TINY_LOG = {} }}\n",
        toml_str(&log.display().to_string())
    ));
    t
}

fn post(port: u16, sid: Option<&str>, extra: &[(&str, &str)], body: &str) -> Reply {
    let mut h = vec![JSON, ACCEPT, ("mcp-protocol-version", "2025-11-25")];
    if let Some(s) = sid {
        h.push(("mcp-session-id", s));
    }
    h.extend_from_slice(extra);
    request(port, "POST", "/mcp", &h, body.as_bytes())
}

fn messages(r: &Reply) -> Vec<serde_json::Value> {
    if r.header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        r.sse_messages()
    } else {
        vec![r.json()]
    }
}

fn call(port: u16, sid: &str, id: u64, name: &str, q: &str) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{"q":q}}}).to_string();
    let r = post(port, Some(sid), &[], &body);
    messages(&r)
        .into_iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no answer to {name}: {}", r.text()))
}

fn list(port: u16, sid: &str) -> Vec<String> {
    let r = post(
        port,
        Some(sid),
        &[],
        r#"{"jsonrpc":"2.0","id":90,"method":"tools/list"}"#,
    );
    let m = messages(&r).into_iter().find(|m| m["id"] == 90).unwrap();
    let text = m.to_string();
    assert!(
        text.contains("\"ECHO from") && !text.contains("\"echo from"),
        "the list answer met the server_message hook: {m}"
    );
    m["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools/list: {m}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn open(port: u16) -> String {
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"probe-test","version":"1"}}}"#;
    let r = request(port, "POST", "/mcp", &[JSON, ACCEPT], init.as_bytes());
    assert_eq!(r.status, 200, "initialize: {}", r.text());
    let sid = r.header("mcp-session-id").unwrap().to_owned();
    let r = post(
        port,
        Some(&sid),
        &[],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(r.status, 202);
    sid
}

/// Call `name` over a streamed POST; answer Warden's elicitation with `action`; return the
/// whole stream's text.
fn elicited_call(port: u16, sid: &str, name: &str, action: &str) -> String {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{{"name":"{name}","arguments":{{"q":"x"}}}}}}"#
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: {sid}\r\nMCP-Protocol-Version: 2025-11-25\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let wid = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended before the elicitation: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(i) = text.find("\"id\":\"warden-") {
            let rest = &text[i + 5..];
            break rest[..rest[1..].find('"').unwrap() + 2].to_owned();
        }
    };
    assert!(text.contains("elicitation/create"), "{text}");
    let answer = format!(r#"{{"jsonrpc":"2.0","id":{wid},"result":{{"action":"{action}"}}}}"#);
    let r = post(port, Some(sid), &[], &answer);
    assert_eq!(
        r.status,
        202,
        "the answer to Warden's own request: {}",
        r.text()
    );
    let _ = s.read_to_string(&mut text);
    text
}

fn tiny_saw(log: &std::path::Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// The session-era checks every `serve` path shares.
fn session_path(g: &Gw, prefix: &str, logs: &[&std::path::Path]) {
    // A path the probe serves; a head the probe refuses, with its header.
    let r = request(g.port, "GET", "/.well-known/probe", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"probe":true}"#));
    let r = post(
        g.port,
        None,
        &[("x-probe-deny", "1")],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"probe\""));

    let sid = open(g.port);
    let tools = list(g.port, &sid);
    assert!(tools.contains(&format!("{prefix}echo")), "{tools:?}");
    assert!(
        !tools.iter().any(|t| t.ends_with("hidden")),
        "the probe's list filter applies on this path: {tools:?}"
    );
    let echo = call(g.port, &sid, 2, &format!("{prefix}echo"), "SECRET");
    let text = echo["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("[gone]") && !text.contains("SECRET"),
        "rewritten: {echo}"
    );
    let local = call(g.port, &sid, 3, &format!("{prefix}local"), "q");
    assert_eq!(
        local["result"]["content"][0]["text"], "answered by probe",
        "{local}"
    );
    // Declined: refused, never forwarded. Accepted: forwarded.
    let declined = elicited_call(g.port, &sid, &format!("{prefix}guarded"), "decline");
    assert!(declined.contains("approval_denied"), "{declined}");
    let accepted = elicited_call(g.port, &sid, &format!("{prefix}guarded"), "accept");
    assert!(accepted.contains(":guarded:"), "{accepted}");
    let r = request(
        g.port,
        "DELETE",
        "/mcp",
        &[("mcp-session-id", sid.as_str())],
        b"",
    );
    assert_eq!(r.status, 200);

    std::thread::sleep(Duration::from_millis(300));
    let saw: String = logs.iter().map(|l| tiny_saw(l)).collect();
    assert!(
        !saw.contains("\"local\"") && !saw.contains("_local"),
        "locally answered: {saw}"
    );
    assert_eq!(
        saw.matches("\"guarded\"").count(),
        1,
        "only the approved call reached the server: {saw}"
    );
    assert!(
        !saw.contains("warden-"),
        "Warden's own ids never reach an upstream: {saw}"
    );
    let kinds = g.kinds();
    assert!(kinds.iter().any(|k| k == "probe.withheld"), "{kinds:?}");
    let events = g.audit.events();
    assert!(
        events
            .iter()
            .any(|e| e.facts.get("probe_calls") == Some(&4.into())),
        "session state counted four calls"
    );
    assert!(
        events
            .iter()
            .any(|e| e.facts.get("answered_by") == Some(&"probe".into())),
        "the local answer is audited"
    );
    let seen = g.seen.lock().unwrap();
    assert_eq!(seen.ends.len(), 1, "the session's end reached the guard");
    assert!(seen.outcomes >= 8, "every outcome: {}", seen.outcomes);
}

#[test]
fn one_stdio_upstream_session_and_stateless() {
    let dir = temp_dir("probe-stdio");
    let log = dir.join("tiny.log");
    let g = serve(&tiny_logged("a", &log, &["--stateless"]).replace("prefix = \"a\"\n", ""));
    session_path(&g, "", &[&log]);

    // The stateless generation, on the shared child.
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let h = |name: &'static str| {
        vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", name),
        ]
    };
    let stateless = |id: u64, name: &'static str, q: &str| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{"q":"{q}"}},{meta}}}}}"#
        );
        let mut hs = vec![JSON, ACCEPT];
        hs.extend(h(name));
        request(g.port, "POST", "/mcp", &hs, body.as_bytes())
    };
    let r = stateless(11, "echo", "SECRET");
    assert!(
        r.text().contains("[gone]") && !r.text().contains("SECRET"),
        "{}",
        r.text()
    );
    let r = stateless(12, "local", "q");
    assert!(r.text().contains("answered by probe"), "{}", r.text());
    let r = stateless(13, "guarded", "q");
    assert!(
        r.text().contains("approval_denied"),
        "no channel to a stateless client: {}",
        r.text()
    );
    let body = format!(r#"{{"jsonrpc":"2.0","id":14,"method":"tools/list","params":{{{meta}}}}}"#);
    let r = request(
        g.port,
        "POST",
        "/mcp",
        &[
            JSON,
            ACCEPT,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        body.as_bytes(),
    );
    assert!(
        r.text().contains("\"echo\"") && !r.text().contains("hidden"),
        "{}",
        r.text()
    );
    let saw = tiny_saw(&log);
    assert_eq!(saw.matches("\"guarded\"").count(), 1, "{saw}");
}

#[test]
fn several_stdio_upstreams() {
    let dir = temp_dir("probe-multi");
    let (la, lb) = (dir.join("a.log"), dir.join("b.log"));
    let body = format!(
        "{}\n{}",
        tiny_logged("a", &la, &[]),
        tiny_logged("b", &lb, &[])
    );
    let g = serve(&body);
    session_path(&g, "a_", &[&la, &lb]);
}

/// Warden's own list, asked when a call names a tool the session's catalog does not know yet
/// (several upstreams, `exchange/fill.rs`), meets the client guards with the client's context: a
/// guard that refuses this client's lists stops the fill, so the call is refused as an unknown
/// name and no upstream was asked for its list. Without the refusal the same call is routed.
#[test]
fn a_client_guard_refusing_lists_also_stops_the_catalog_fill() {
    let dir = temp_dir("probe-fill");
    let (la, lb) = (dir.join("a.log"), dir.join("b.log"));
    // No prefixes: names are routed by the catalog, which the lists fill.
    let unprefixed = |name: &str, tool: &str, log: &std::path::Path| {
        let mut t = upstream_stdio(name, &tiny(&["--tools", tool, "--name", name]), None);
        t.push_str(&format!(
            "env = {{ TINY_LOG = {} }}\n",
            toml_str(&log.display().to_string())
        ));
        t
    };
    let body = format!(
        "{}\n{}",
        unprefixed("a", "alpha", &la),
        unprefixed("b", "beta", &lb)
    );
    let g = serve(&body);
    let sid = open(g.port);
    let call_body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha","arguments":{"q":"x"}}}"#;
    let r = post(g.port, Some(&sid), &[("x-probe-no-lists", "1")], call_body);
    let m = messages(&r).into_iter().find(|m| m["id"] == 7).unwrap();
    assert_eq!(m["error"]["data"]["reason"], "unknown_name", "{m}");
    for log in [&la, &lb] {
        let saw = tiny_saw(log);
        assert!(
            !saw.contains("tools/list") && !saw.contains("tools/call"),
            "nothing reached the upstream: {saw}"
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let refused = g
        .audit
        .events()
        .iter()
        .filter(|e| e.reason.as_deref() == Some("probe_lists_denied"))
        .count();
    assert_eq!(refused, 1, "Warden's own list was refused, and audited");
    // The same call without the refusal: the fill asks the lists and the call is routed.
    let ok = call(g.port, &sid, 8, "alpha", "x");
    assert!(ok["result"].is_object(), "{ok}");
    assert!(tiny_saw(&la).contains("tools/list"), "{}", tiny_saw(&la));
}

#[test]
fn one_http_upstream_json_and_sse() {
    let rec = Recorder::start(|r| {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let id = v["id"].clone();
        let ok = |result: serde_json::Value| {
            serde_json::json!({"jsonrpc":"2.0","id":id,"result":result}).to_string()
        };
        match v["method"].as_str() {
            Some("initialize") => Canned::json(ok(serde_json::json!({"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"rec","version":"0"}}))).with_header("mcp-session-id", "up-1"),
            Some("tools/list") => Canned::json(ok(serde_json::json!({"tools":[{"name":"echo","description":"echo from rec","inputSchema":{"type":"object"}},{"name":"hidden","inputSchema":{"type":"object"}},{"name":"local","inputSchema":{"type":"object"}},{"name":"guarded","inputSchema":{"type":"object"}}]}))),
            Some("tools/call") => {
                let name = v["params"]["name"].as_str().unwrap_or("").to_owned();
                let q = v["params"]["arguments"]["q"].as_str().unwrap_or("").to_owned();
                let msg = ok(serde_json::json!({"content":[{"type":"text","text":format!("rec:{name}:{q}")}]}));
                if name == "echo" {
                    // An SSE answer: a notification carrying the secret, then the result.
                    let note = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"SECRET"}}"#;
                    Canned::sse(format!("id: 1\ndata: {note}\n\nid: 2\ndata: {msg}\n\n"))
                } else {
                    Canned::json(msg)
                }
            }
            _ if id.is_null() => Canned::accepted(),
            _ => Canned::json(ok(serde_json::json!({}))),
        }
    });
    let g = serve(&upstream_http("rec", &rec.url, None));
    let sid = open(g.port);
    let tools = list(g.port, &sid);
    assert!(tools.contains(&"echo".to_owned()) && !tools.contains(&"hidden".to_owned()));
    let r = post(
        g.port,
        Some(&sid),
        &[("authorization", "Bearer client-token")],
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"q":"SECRET"}}}"#,
    );
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let msgs = r.sse_messages();
    assert_eq!(msgs.len(), 2, "{}", r.text());
    assert!(
        !r.text().contains("SECRET") && r.text().matches("[gone]").count() == 2,
        "every SSE frame met the probe: {}",
        r.text()
    );
    let local = call(g.port, &sid, 6, "local", "q");
    assert_eq!(local["result"]["content"][0]["text"], "answered by probe");
    let accepted = elicited_call(g.port, &sid, "guarded", "accept");
    assert!(accepted.contains("rec:guarded:x"), "{accepted}");
    let reqs = rec.requests();
    let calls: Vec<_> = reqs
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("tools/call"))
        .collect();
    assert_eq!(calls.len(), 2, "echo and the approved call only");
    for c in &calls {
        assert_eq!(c.header("x-warden-probe"), Some("1"), "Warden's own header");
        assert_eq!(c.header("authorization"), None, "never the client's token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrap_front_end() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = temp_dir("probe-wrap");
    let log = dir.join("tiny.log");
    let mut up = warden_config::UpstreamConfig::stdio(
        "wrapped",
        tiny(&["--tools", "echo,hidden,local,guarded"]),
    );
    up.env.insert("TINY_LOG".into(), log.display().to_string());
    let cfg = warden_config::Config {
        upstreams: vec![up],
        ..Default::default()
    };
    let audit = Arc::new(MemorySink::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let gw = build(cfg, audit.clone(), seen.clone());
    let (client, server) = tokio::io::duplex(1 << 16);
    let (from_warden, to_warden) = tokio::io::split(server);
    let run = tokio::spawn(warden_gateway::downstream::stdio::wrap_io(
        gw,
        from_warden,
        to_warden,
    ));
    let (rd, mut wr) = tokio::io::split(client);
    let mut lines = BufReader::new(rd).lines();
    let mut next = async || {
        let l = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&l).unwrap()
    };
    let mut send = async |s: String| {
        wr.write_all(s.as_bytes()).await.unwrap();
        wr.write_all(b"\n").await.unwrap();
    };
    send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}"#.into()).await;
    assert_eq!(next().await["id"], 0);
    send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into()).await;
    send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.into()).await;
    let l = next().await;
    assert!(
        !l.to_string().contains("hidden") && l.to_string().contains("echo"),
        "{l}"
    );
    send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"q":"SECRET"}}}"#.into()).await;
    let l = next().await;
    assert!(
        l.to_string().contains("[gone]") && !l.to_string().contains("SECRET"),
        "{l}"
    );
    send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"local","arguments":{}}}"#.into()).await;
    assert_eq!(
        next().await["result"]["content"][0]["text"],
        "answered by probe"
    );
    send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"guarded","arguments":{"q":"x"}}}"#.into()).await;
    let ask = next().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    let wid = ask["id"].as_str().unwrap().to_owned();
    assert!(wid.starts_with("warden-"));
    send(format!(
        r#"{{"jsonrpc":"2.0","id":"{wid}","result":{{"action":"accept"}}}}"#
    ))
    .await;
    let l = next().await;
    assert_eq!(l["id"], 4);
    assert!(l.to_string().contains(":guarded:"), "{l}");
    wr.shutdown().await.unwrap(); // EOF
    let code = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
    let saw = tiny_saw(&log);
    assert!(
        !saw.contains("\"local\"") && !saw.contains("warden-"),
        "{saw}"
    );
    assert!(audit.events().iter().any(|e| e.kind == "probe.withheld"));
    assert_eq!(seen.lock().unwrap().ends.len(), 1, "wrap's session end");
}
