//! Relay hardening of the exchange core (issue #13, items 4, 9, 12 and 13): an upstream answer
//! that is not one valid JSON-RPC message (two `result` members, a key repeated at any depth, an
//! HTML page) or that answers another request's id never reaches the client (502
//! `upstream_invalid_response`, audited; P1.1); calls cut off at shutdown and stdio children
//! stopped at exit each leave an audit event (P5.1); `warden wrap` answers every request written
//! before its input closes, and a server line over the size limit fails the requests it may have
//! answered and relaying goes on (P1.1, P5.1).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::attack::{init_body, upstream};
use support::client::request;
use support::recorder::{Canned, Recorded, Recorder};
use support::tiny::tiny;
use support::{Warden, temp_dir, toml_str, upstream_http, upstream_stdio, wait_exit, warden_bin};

const HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

/// The hostile upstream: `tools/call` answers as the tool's name says; everything else as a
/// well-behaved server. Every forbidden answer carries an `EVIL` marker the client must not see.
fn hostile(r: &Recorded) -> Canned {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if v["method"] != "tools/call" {
        return upstream(r);
    }
    let id = v["id"].to_string();
    let body = match v["params"]["name"].as_str().unwrap_or_default() {
        "two-results" => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[]}},"result":{{"content":[{{"type":"text","text":"EVIL two results"}}]}}}}"#
        ),
        "nested-dup" => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"fine"}}],"content":[{{"type":"text","text":"EVIL nested"}}]}}}}"#
        ),
        "escaped-dup" => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"fine","\u0074ext":"EVIL escaped"}}]}}}}"#
        ),
        "html" => "<html><body>EVIL html page</body></html>".to_owned(),
        "foreign-id" => {
            r#"{"jsonrpc":"2.0","id":"someone-else","result":{"content":[{"type":"text","text":"EVIL foreign"}]}}"#.to_owned()
        }
        "sse-dup" => {
            return Canned::sse(format!(
                "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"a\":1,\"a\":\"EVIL sse\"}}}}\n\n"
            ));
        }
        "sse-foreign" => {
            return Canned::sse(format!(
                "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":\"someone-else\",\"result\":{{\"text\":\"EVIL sse foreign\"}}}}\n\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[]}}}}\n\n"
            ));
        }
        _ => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[]}}}}"#),
    };
    Canned::json(body)
}

fn session(port: u16) -> String {
    let r = request(
        port,
        "POST",
        "/mcp",
        &HEADERS,
        init_body("relay").as_bytes(),
    );
    assert_eq!(r.status, 200, "initialize: {}", r.text());
    let sid = r.header("mcp-session-id").unwrap().to_owned();
    let r = call_raw(
        port,
        &sid,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(r.status, 202);
    sid
}

fn call_raw(port: u16, sid: &str, body: &[u8]) -> support::client::Reply {
    let mut h = HEADERS.to_vec();
    h.push(("mcp-session-id", sid));
    h.push(("mcp-protocol-version", "2025-11-25"));
    request(port, "POST", "/mcp", &h, body)
}

/// #13 items 4 and 13 (P1.1): every kind of invalid upstream answer is refused with 502
/// `upstream_invalid_response` (JSON body) or dropped from the stream (SSE), audited with the
/// tool, and its content never reaches the client. A valid answer still passes byte-for-byte.
#[test]
fn invalid_or_foreign_upstream_answers_never_reach_the_client() {
    let up = Recorder::start(hostile);
    let w = Warden::start(&upstream_http("rec", &up.url, None));
    let sid = session(w.port);

    for (n, tool) in [
        "two-results",
        "nested-dup",
        "escaped-dup",
        "html",
        "foreign-id",
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"jsonrpc":"2.0","id":100 + n,"method":"tools/call","params":{"name":tool,"arguments":{}}}).to_string();
        let r = call_raw(w.port, &sid, body.as_bytes());
        assert!(!r.text().contains("EVIL"), "{tool}: leaked {}", r.text());
        assert_eq!(r.status, 502, "{tool}: {}", r.text());
        let e = r.json();
        assert_eq!(
            e["id"],
            100 + n,
            "{tool}: the error answers the client's id: {e}"
        );
        assert_eq!(
            e["error"]["data"]["reason"], "upstream_invalid_response",
            "{tool}: {e}"
        );
    }
    for tool in ["sse-dup", "sse-foreign"] {
        let body = json!({"jsonrpc":"2.0","id":tool,"method":"tools/call","params":{"name":tool,"arguments":{}}}).to_string();
        let r = call_raw(w.port, &sid, body.as_bytes());
        assert!(!r.text().contains("EVIL"), "{tool}: leaked {}", r.text());
        assert_eq!(r.status, 200, "{tool}: {}", r.text());
    }
    // The refused final answer of sse-dup becomes an error for the client's id.
    let body = json!({"jsonrpc":"2.0","id":"again","method":"tools/call","params":{"name":"sse-dup","arguments":{}}}).to_string();
    let r = call_raw(w.port, &sid, body.as_bytes());
    let last = r.sse_messages().pop().unwrap_or(Value::Null);
    assert_eq!(last["id"], "again", "{}", r.text());
    assert_eq!(last["error"]["data"]["reason"], "upstream_invalid_response");

    // Every one is audited with its tool.
    let audit = w.audit();
    for tool in [
        "two-results",
        "nested-dup",
        "escaped-dup",
        "html",
        "foreign-id",
        "sse-dup",
        "sse-foreign",
    ] {
        assert!(
            audit
                .iter()
                .any(|e| e["tool"] == tool && e["reason"] == "upstream_invalid_response"),
            "{tool}: no upstream_invalid_response audit event: {audit:#?}"
        );
    }
    // A good answer is relayed untouched.
    let r = call_raw(
        w.port,
        &sid,
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"good","arguments":{}}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#
    );
}

/// #13 item 9 (P5.1): SIGTERM while a call waits on a stdio child that never answers and another
/// on an HTTP upstream that never answers: after the grace period each call gets an
/// `mcp.interrupted` event (reason `shutdown`, with its tool), the stdio child an
/// `upstream.stopped` event and its `upstream.exit`, and `gateway.stop` comes last.
#[test]
fn calls_cut_at_shutdown_and_children_killed_at_exit_are_audited() {
    let hanging = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = hanging.clone();
    let up = Recorder::start(move |r| {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if v["method"] == "tools/call" {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(30));
        }
        upstream(r)
    });
    let log = temp_dir("shutdown").join("seen.jsonl");
    let stdio = upstream_stdio(
        "tiny",
        &tiny(&["--tools", "slow", "--stateless"]),
        Some("s"),
    );
    let stdio = stdio.replace(
        "command = ",
        &format!(
            "env = {{ TINY_LOG = {} }}\ncommand = ",
            toml_str(&log.display().to_string())
        ),
    );
    let mut w = Warden::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 1\n\n{stdio}\n{}",
        upstream_http("rec", &up.url, None).replace("[[upstream]]", "[[upstream]]\nprefix = \"h\"")
    ));
    // In one session: a call on the session's stdio child, and one on the HTTP upstream.
    let port = w.port;
    let post = move |head: String, body: String| {
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = write!(
                s,
                "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{head}content-length: {}\r\n\r\n{body}",
                body.len()
            );
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
            String::from_utf8_lossy(&sink).into_owned()
        })
    };
    let sid = session(port);
    let head = format!("mcp-session-id: {sid}\r\nmcp-protocol-version: 2025-11-25\r\n");
    let b = post(
        head.clone(),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"h_hang","arguments":{}}}"#.into(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let a = post(
        head,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"s_slow","arguments":{},"_meta":{"progressToken":"p1"}}}"#.into(),
    );
    // Both calls are with their upstreams before the signal.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(std::fs::read_to_string(&log).is_ok_and(|t| t.contains("tools/call"))
        && hanging.load(std::sync::atomic::Ordering::SeqCst))
    {
        if Instant::now() > deadline && a.is_finished() {
            panic!("a: {:?}", a.join());
        }
        if Instant::now() > deadline && b.is_finished() {
            panic!("b: {:?}", b.join());
        }
        assert!(
            Instant::now() < deadline,
            "the calls never reached their upstreams: stdio saw {:?}, http saw {:?}; {}",
            std::fs::read_to_string(&log),
            up.bodies(),
            w.proc.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    w.proc.sigterm();
    assert!(
        w.proc.wait_exit(Duration::from_secs(15)).is_some(),
        "warden exits"
    );
    let _ = (a.join(), b.join());

    let audit = w.audit();
    let kinds: Vec<&str> = audit
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    for tool in ["s_slow", "h_hang"] {
        let ev: Vec<&Value> = audit
            .iter()
            .filter(|e| e["tool"] == tool && e["method"] == "tools/call")
            .collect();
        assert!(
            ev.iter()
                .any(|e| e["kind"] == "mcp.interrupted" && e["reason"] == "shutdown"),
            "{tool}: no mcp.interrupted/shutdown event: {ev:#?}"
        );
        assert_eq!(
            ev.iter().filter(|e| e["kind"] == "mcp.interrupted").count(),
            1,
            "{tool}: one interruption event: {ev:#?}"
        );
    }
    let stopped = audit
        .iter()
        .position(|e| e["kind"] == "upstream.stopped" && e["upstream"] == "tiny");
    assert!(
        stopped.is_some(),
        "no upstream.stopped for the child: {kinds:?}"
    );
    assert!(
        audit[stopped.unwrap()..]
            .iter()
            .any(|e| e["kind"] == "upstream.exit"),
        "the child's exit is audited after it was stopped: {kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"gateway.stop"), "{kinds:?}");
}

/// A `warden wrap` around the tiny server, with its stdout read on a thread.
struct Wrapped {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    dir: std::path::PathBuf,
}

fn wrap(extra_config: &str) -> Wrapped {
    let dir = temp_dir("wrap-relay");
    let cfg = dir.join("wrap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[audit]\npath = {}\n{extra_config}",
            toml_str(&dir.join("audit.jsonl").display().to_string())
        ),
    )
    .unwrap();
    let mut child = Command::new(warden_bin())
        .arg("wrap")
        .arg("--config")
        .arg(&cfg)
        .arg("--")
        .args(tiny(&["--tools", "echo,huge,slow"]))
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start warden wrap");
    let stdin = child.stdin.take();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    Wrapped {
        child,
        stdin,
        lines,
        dir,
    }
}

impl Wrapped {
    fn send(&mut self, msg: &str) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(msg.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        s.flush().unwrap();
    }
    /// initialize (answered) and initialized.
    fn handshake(&mut self) {
        self.send(INIT);
        let init = self
            .next(Duration::from_secs(10))
            .expect("initialize answered");
        assert!(init.get("result").is_some(), "{init}");
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    }

    fn next(&self, within: Duration) -> Option<Value> {
        self.lines
            .recv_timeout(within)
            .ok()
            .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
    }
    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Requests in the burst written right before EOF.
const BURST: u64 = 300;

const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// #13 item 12 (P5.1): requests written in one burst right before stdin closes are each
/// delivered and answered before the wrapper exits; none is audited `allow` and left unanswered.
#[test]
fn wrap_answers_every_request_written_before_its_input_closes() {
    let mut w = wrap("");
    let mut burst =
        format!("{INIT}\n{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}\n");
    // About 1 KiB each: more than a pipe buffer in all, so some are still queued at EOF.
    let pad = "p".repeat(1000);
    for i in 1..=BURST {
        burst.push_str(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"n\":{i},\"pad\":\"{pad}\"}}}}}}\n"
        ));
    }
    let mut stdin = w.stdin.take().unwrap();
    stdin.write_all(burst.as_bytes()).unwrap();
    drop(stdin); // EOF right after the burst
    let mut ids = Vec::new();
    while let Some(m) = w.next(Duration::from_secs(20)) {
        assert!(m.get("result").is_some(), "an answer, not an error: {m}");
        ids.push(m["id"].as_u64().unwrap());
    }
    assert_eq!(wait_exit(&mut w.child, Duration::from_secs(10)), Some(0));
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..=BURST).collect::<Vec<_>>(),
        "every request answered"
    );
    let interrupted = w
        .audit()
        .into_iter()
        .filter(|e| e["kind"] == "mcp.interrupted")
        .count();
    assert_eq!(interrupted, 0);
}

/// #13 item 12 (P1.1): a server line over `max_upstream_message_bytes` is never relayed; the
/// request it may have answered gets a JSON-RPC error (`upstream_invalid_response`), the line is
/// audited (`upstream.message_too_large`), and the next request is relayed as before.
#[test]
fn wrap_goes_on_after_an_oversize_server_line() {
    let mut w = wrap("[limits]\nmax_upstream_message_bytes = 20000\n");
    w.handshake();
    w.send(r#"{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"huge","arguments":{"bytes":50000}}}"#);
    let big = w
        .next(Duration::from_secs(10))
        .expect("an answer for the oversize call");
    assert_eq!(big["id"], "big", "{big}");
    assert_eq!(
        big["error"]["data"]["reason"], "upstream_invalid_response",
        "{big}"
    );
    assert!(
        !big.to_string().contains("hhhhhhhh"),
        "the oversize line was not relayed"
    );
    w.send(r#"{"jsonrpc":"2.0","id":"after","method":"tools/call","params":{"name":"echo","arguments":{}}}"#);
    let after = w.next(Duration::from_secs(10)).expect("relaying goes on");
    assert_eq!(after["id"], "after");
    assert_eq!(after["result"]["content"][0]["text"], "tiny:echo:{}");
    drop(w.stdin.take());
    assert_eq!(wait_exit(&mut w.child, Duration::from_secs(10)), Some(0));
    let audit = w.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "upstream.message_too_large"),
        "{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|e| e["tool"] == "huge" && e["reason"] == "upstream_invalid_response"),
        "{audit:#?}"
    );
}

/// A call its client cancelled ends quietly when its server exits before answering, as the SDKs'
/// cancellation step leaves it when the client goes soon after (P5.1): no refusal is audited and
/// no error is written for it, and the call is still audited. Fails when a cancelled call that
/// loses its server is refused as `upstream_exited`.
#[test]
fn a_cancelled_call_ends_quietly_when_its_server_exits() {
    let mut w = wrap("");
    w.handshake();
    w.send(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow","arguments":{},"_meta":{"progressToken":"p7"}}}"#);
    // Its progress arrives first: the call is open at the server, which never answers it.
    let progress = w.next(Duration::from_secs(10)).expect("progress");
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    w.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"user"}}"#);
    // A notification has no answer: give it time to reach the server before it goes.
    std::thread::sleep(Duration::from_millis(500));
    // The server dies with the call still open (as when a client stops a desktop server's
    // process group right after its cancellation step), then the input ends.
    let pid = w.child.id().to_string();
    let killed = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "pkill -P {pid}");
    std::thread::sleep(Duration::from_millis(500));
    drop(w.stdin.take());
    let mut after = Vec::new();
    while let Some(m) = w.next(Duration::from_secs(10)) {
        after.push(m);
    }
    assert!(
        after.is_empty(),
        "nothing answers a cancelled call: {after:?}"
    );
    wait_exit(&mut w.child, Duration::from_secs(10)).expect("wrap exits");
    let audit = w.audit();
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|e| e["kind"] == "mcp.refusal" || e["decision"] == "deny")
        .collect();
    assert!(
        refused.is_empty(),
        "a cancelled call is not refused: {refused:?}"
    );
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "mcp.request" && e["method"] == "tools/call"),
        "the call is audited: {audit:?}"
    );
}
