//! SDK parity: the official Python SDK client (`tests/peers/python/sdk_scenario.py`, mcp 2.3.0) and
//! TypeScript SDK client (`tests/peers/node/sdk-scenario.mjs`) get, through Warden, the same
//! normalized transcript as when they talk to `@modelcontextprotocol/server-everything` directly:
//! every tool listed and called, resources, templates, prompts, completions, progress, sampling,
//! elicitation, roots, subscriptions, cancellation.
//!
//! Three Warden set-ups per client: (a) `warden serve` with server-everything as a Streamable HTTP
//! upstream, (b) `warden serve` with server-everything as a stdio upstream, (c) `warden wrap` as
//! the client's stdio command. A client on HTTP is compared with its direct HTTP run, a client on
//! stdio with its direct stdio run; the direct runs are made once per (client, transport) and
//! shared. Each server-everything HTTP instance serves exactly one run (its gzip resource map is
//! process-global). Runs are bounded (`RUN_TIMEOUT`) and every process they start is reaped.
//!
//! Removed before comparing, and only these, because the peers document them as transport-dependent:
//! - Python: the top-level `"transport"` field (tests/peers/python/README.md, "HTTP vs stdio").
//! - TypeScript: the session id that server-everything prints in the toggle tools' replies,
//!   `<uuid>` over HTTP and `undefined` over stdio (tests/peers/node/EXPECTED.md); it matters in
//!   (b), where the client is on HTTP but server-everything runs on stdio behind Warden.
//!
//! One more TypeScript value is run-dependent although the peer does not say so: the
//! `progressToken` in `tools.calls.trigger-long-running-operation.progress[*]` is the SDK's
//! JSON-RPC request id, which counts the `tasks/get` polls of the task-augmented call made just
//! before (1 s poll interval, so ±1 under load; seen 43 vs 44 on a direct run). It is replaced by
//! `"<progress-token>"` only when every notification of the call carries the same number, so a
//! gateway that mixed up tokens still fails.
//!
//! The last three tests use a raw HTTP client on a stdio upstream, for what the SDK runs showed:
//! a session's stdio child must read the client's `initialize` once, and must stop when its
//! session ends (DELETE or idle expiry).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::client::request;
use support::sdk_peers::{
    Peer, Target, cmdline, descendants, json_diff, reap, run_scenario, save, signal,
};
use support::{Warden, everything_js, node, start_everything_http, temp_dir, toml_str};
use support::{upstream_http, upstream_stdio, warden_bin};

/// One scenario run takes ~10 s alone; the peers' own limit is ~60 s.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn everything_stdio_argv() -> Vec<String> {
    vec![
        node().display().to_string(),
        everything_js().display().to_string(),
        "stdio".into(),
    ]
}

/// The direct run of `peer` (HTTP or stdio), made once and shared by the tests of this file.
fn baseline(peer: Peer, http: bool) -> &'static Value {
    static CELLS: [OnceLock<Value>; 4] = [const { OnceLock::new() }; 4];
    let cell = &CELLS[usize::from(peer == Peer::Ts) * 2 + usize::from(http)];
    cell.get_or_init(|| {
        let label = format!(
            "{}-direct-{}",
            peer.name(),
            if http { "http" } else { "stdio" }
        );
        let run = if http {
            let (_everything, url) = start_everything_http();
            run_scenario(peer, &Target::Url(url), &label, RUN_TIMEOUT)
        } else {
            run_scenario(
                peer,
                &Target::Stdio(everything_stdio_argv()),
                &label,
                RUN_TIMEOUT,
            )
        };
        let t = run
            .unwrap_or_else(|e| panic!("baseline failed: {e}"))
            .transcript;
        assert!(
            !tool_names(peer, &t).is_empty(),
            "{label}: no tools listed:\n{t:#}"
        );
        t
    })
}

/// Names of the tools listed in a transcript.
fn tool_names(peer: Peer, t: &Value) -> Vec<String> {
    let list = match peer {
        Peer::Python => &t["tools_list"],
        Peer::Ts => &t["tools"]["list"],
    };
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["name"].as_str().map(str::to_owned))
        .collect()
}

/// Remove exactly the documented transport-dependent parts, and the TypeScript progress token
/// (see the module doc).
fn without_transport_fields(peer: Peer, t: &Value) -> Value {
    fn session_ids(v: &mut Value) {
        match v {
            Value::String(s) => {
                *s = s
                    .replace("for session <uuid>", "for session <session>")
                    .replace("for session undefined", "for session <session>");
            }
            Value::Array(a) => a.iter_mut().for_each(session_ids),
            Value::Object(o) => o.values_mut().for_each(session_ids),
            _ => {}
        }
    }
    let mut t = t.clone();
    match peer {
        Peer::Python => {
            t.as_object_mut().map(|o| o.remove("transport"));
        }
        Peer::Ts => {
            session_ids(&mut t);
            let calls = t["tools"]["calls"].as_object_mut().into_iter().flatten();
            for progress in calls.filter_map(|(_, c)| c["progress"].as_array_mut()) {
                let tokens: BTreeSet<String> = progress
                    .iter()
                    .map(|p| p["progressToken"].to_string())
                    .collect();
                let one_number = progress.iter().all(|p| p["progressToken"].is_u64());
                if tokens.len() == 1 && one_number {
                    for p in progress.iter_mut() {
                        p["progressToken"] = "<progress-token>".into();
                    }
                }
            }
        }
    }
    t
}

/// Assert that `actual` equals `expected` up to the documented fields; on mismatch, save both and
/// print the first differing paths.
fn assert_same(peer: Peer, label: &str, expected: &Value, actual: &Value, dir: &Path) {
    let (e, a) = (
        without_transport_fields(peer, expected),
        without_transport_fields(peer, actual),
    );
    if e == a {
        return;
    }
    let diffs = json_diff(&e, &a, 25);
    let pe = save(dir, "expected-direct.json", expected);
    let pa = save(dir, "actual-through-warden.json", actual);
    panic!(
        "{label}: transcript through Warden differs from the direct one at {} path(s) (first {}):\n  {}\n\
         full transcripts: diff {} {}",
        json_diff(&e, &a, usize::MAX).len(),
        diffs.len(),
        diffs.join("\n  "),
        pe.display(),
        pa.display()
    );
}

/// A clean relay refuses nothing legitimate: no refusal, no deny, and every listed tool was
/// called and audited as an allowed `tools/call`. With `until_session_close`, only events before
/// the client's DELETE are checked for refusals: a request the client cancelled but left open
/// (both SDKs do so in the cancellation step) may legitimately end with its session.
fn assert_clean_audit(label: &str, events: &[Value], tools: &[String], until_session_close: bool) {
    assert!(!events.is_empty(), "{label}: the audit log is empty");
    let live = events
        .iter()
        .position(|e| until_session_close && e["kind"] == "session.close")
        .unwrap_or(events.len());
    // The one expected answer: the Python SDK (mode "auto") first probes with `server/discover`;
    // server-everything speaks only the session-based generation, so Warden answers that probe
    // with -32022 and the supported versions, and the client falls back to `initialize`.
    let negotiation = |e: &&Value| {
        e["method"] == "server/discover" && e["reason"] == "upstream_generation_unsupported"
    };
    let refused: Vec<&Value> = events[..live]
        .iter()
        .filter(|e| e["kind"] == "mcp.refusal" || e["decision"] == "deny")
        .filter(|e| !negotiation(e))
        .collect();
    assert!(
        refused.is_empty(),
        "{label}: Warden refused legitimate traffic: {refused:#?}"
    );
    let allowed: BTreeSet<&str> = events
        .iter()
        .filter(|e| {
            e["kind"] == "mcp.request" && e["method"] == "tools/call" && e["decision"] == "allow"
        })
        .filter_map(|e| e["tool"].as_str())
        .collect();
    let missing: Vec<&String> = tools
        .iter()
        .filter(|t| !allowed.contains(t.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{label}: no allowed tools/call audit event for {missing:?}; audited tools: {allowed:?}"
    );
}

fn read_audit(path: &Path) -> Vec<Value> {
    std::thread::sleep(Duration::from_millis(200));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// Stop `warden serve` with SIGTERM (SIGKILL after 10 s) and check that it left no child running.
fn stop(mut w: Warden, label: &str) {
    let pid = w.proc.child.id();
    let tree: BTreeSet<_> = descendants(pid).into_iter().collect();
    signal(pid, "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.proc.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(w);
    let left = reap(&tree, Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "{label}: Warden's children outlived it (killed now): {left:?}"
    );
}

fn run_or_panic(peer: Peer, target: &Target, label: &str) -> Value {
    run_scenario(peer, target, label, RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"))
        .transcript
}

/// (a) `warden serve`, server-everything as a Streamable HTTP upstream.
fn serve_http_upstream(peer: Peer) {
    let label = format!("{} via warden serve (HTTP upstream)", peer.name());
    let expected = baseline(peer, true);
    let (_everything, url) = start_everything_http();
    let w = Warden::start(&upstream_http("everything", &url, None));
    let actual = run_or_panic(peer, &Target::Url(w.url.clone()), &label);
    assert_same(peer, &label, expected, &actual, &w.dir);
    assert_clean_audit(&label, &w.audit(), &tool_names(peer, &actual), false);
    stop(w, &label);
}

/// (b) `warden serve`, server-everything as a stdio upstream (one child per session).
fn serve_stdio_upstream(peer: Peer) {
    let label = format!("{} via warden serve (stdio upstream)", peer.name());
    let expected = baseline(peer, true);
    let w = Warden::start(&upstream_stdio(
        "everything",
        &everything_stdio_argv(),
        None,
    ));
    let actual = run_or_panic(peer, &Target::Url(w.url.clone()), &label);
    assert_same(peer, &label, expected, &actual, &w.dir);
    assert_clean_audit(&label, &w.audit(), &tool_names(peer, &actual), true);
    stop(w, &label);
}

/// (c) `warden wrap -- node server-everything stdio` as the client's stdio command.
fn wrap(peer: Peer) {
    let label = format!("{} via warden wrap", peer.name());
    let expected = baseline(peer, false);
    let dir = temp_dir("sdk-parity-wrap");
    let audit = dir.join("audit.jsonl");
    let cfg = dir.join("warden.toml");
    std::fs::write(
        &cfg,
        format!(
            "[audit]\npath = {}\n\n[log]\nlevel = \"warn\"\n",
            toml_str(&audit.display().to_string())
        ),
    )
    .expect("write wrap config");
    let mut argv = vec![
        warden_bin().display().to_string(),
        "wrap".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--".into(),
    ];
    argv.extend(everything_stdio_argv());
    let actual = run_or_panic(peer, &Target::Stdio(argv), &label);
    assert_same(peer, &label, expected, &actual, &dir);
    assert_clean_audit(
        &label,
        &read_audit(&audit),
        &tool_names(peer, &actual),
        false,
    );
}

/// Python SDK through `warden serve` + HTTP upstream equals direct (P1.1 unknown fields and
/// errors relayed as-is, P3.4 version negotiation passes through, P5.1 every call audited).
#[test]
fn python_sdk_via_serve_http_upstream_matches_direct() {
    serve_http_upstream(Peer::Python);
}

/// TypeScript SDK through `warden serve` + HTTP upstream equals direct (P1.1, P3.4, P5.1).
#[test]
fn ts_sdk_via_serve_http_upstream_matches_direct() {
    serve_http_upstream(Peer::Ts);
}

/// Python SDK through `warden serve` + stdio upstream equals direct HTTP (P1.1, P3.4, P5.1);
/// no server child outlives Warden (P10.4).
#[test]
fn python_sdk_via_serve_stdio_upstream_matches_direct() {
    serve_stdio_upstream(Peer::Python);
}

/// TypeScript SDK through `warden serve` + stdio upstream equals direct HTTP (P1.1, P3.4, P5.1);
/// no server child outlives Warden (P10.4).
#[test]
fn ts_sdk_via_serve_stdio_upstream_matches_direct() {
    serve_stdio_upstream(Peer::Ts);
}

/// Python SDK through `warden wrap` equals direct stdio (P1.1, P3.4, P5.1); nothing outlives it.
#[test]
fn python_sdk_via_wrap_matches_direct() {
    wrap(Peer::Python);
}

/// TypeScript SDK through `warden wrap` equals direct stdio (P1.1, P3.4, P5.1); nothing outlives it.
#[test]
fn ts_sdk_via_wrap_matches_direct() {
    wrap(Peer::Ts);
}

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

/// Open a 2025-11-25 session with a raw client (initialize + notifications/initialized); returns
/// the session id.
fn open_session(w: &Warden) -> String {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"sdk-parity","version":"1"}}}"#;
    let r = request(
        w.port,
        "POST",
        "/mcp",
        &[("content-type", "application/json"), ACCEPT],
        init.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["result"]["protocolVersion"],
        "2025-11-25",
        "{}",
        r.text()
    );
    let sid = r.header("mcp-session-id").expect("session id").to_owned();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let r = request(
        w.port,
        "POST",
        "/mcp",
        &session_headers(&sid),
        note.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    sid
}

fn session_headers(sid: &str) -> [(&str, &str); 4] {
    [
        ("content-type", "application/json"),
        ACCEPT,
        ("mcp-session-id", sid),
        ("mcp-protocol-version", "2025-11-25"),
    ]
}

/// Wait up to `limit` until Warden has at most `n` descendant processes; returns them.
fn children_settle(w: &Warden, n: usize, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let kids = descendants(w.proc.child.id());
        if kids.len() <= n || Instant::now() >= deadline {
            return kids
                .iter()
                .map(|p| format!("{} {}", p.pid, cmdline(p.pid)))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new session's stdio child reads the client's `initialize` exactly once, then
/// `notifications/initialized` (P3.4: the lifecycle negotiation is the client's, relayed as-is;
/// replaying `initialize` is only for a restarted child).
#[test]
fn stdio_upstream_child_reads_one_initialize_per_session() {
    let dir = temp_dir("sdk-parity-tee");
    let log = dir.join("upstream-stdin.jsonl");
    let sq = |s: String| format!("'{}'", s.replace('\'', r"'\''"));
    let argv = everything_stdio_argv()
        .into_iter()
        .map(sq)
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!("tee {} | {argv}", sq(log.display().to_string()));
    let w = Warden::start(&upstream_stdio(
        "everything",
        &["/bin/sh".into(), "-c".into(), script],
        None,
    ));
    let sid = open_session(&w);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while !seen.contains("notifications/initialized") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        seen = std::fs::read_to_string(&log).unwrap_or_default();
    }
    let _ = request(w.port, "DELETE", "/mcp", &session_headers(&sid)[2..], b"");
    stop(w, "tee'd stdio upstream");
    let methods: Vec<String> = seen
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|m| m["method"].as_str().unwrap_or("<response>").to_owned())
        .collect();
    assert_eq!(
        methods,
        ["initialize", "notifications/initialized"],
        "what the session's stdio child read, in order (full log: {})",
        log.display()
    );
}

/// A session's stdio child stops when the client ends the session with DELETE (P8.3: DELETE
/// honoured; P4.3: an ended session holds no server process).
#[test]
fn stdio_upstream_child_stops_when_the_session_is_deleted() {
    let w = Warden::start(&upstream_stdio(
        "everything",
        &everything_stdio_argv(),
        None,
    ));
    let sid = open_session(&w);
    let running = children_settle(&w, 0, Duration::ZERO);
    assert_eq!(
        running.len(),
        1,
        "one server child for the session: {running:#?}"
    );
    let r = request(w.port, "DELETE", "/mcp", &session_headers(&sid)[2..], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        w.audit()
            .iter()
            .filter(|e| e["kind"] == "session.close")
            .count(),
        1
    );
    let left = children_settle(&w, 0, Duration::from_secs(5));
    stop(w, "stdio upstream after DELETE");
    assert!(
        left.is_empty(),
        "5 s after DELETE the session's server child still runs: {left:#?}"
    );
}

/// A session's stdio child stops when the session expires idle (P8.3: expiry; P4.3).
#[test]
fn stdio_upstream_child_stops_when_the_session_expires() {
    let body = format!(
        "[sessions]\nidle_timeout_secs = 3\n\n{}",
        upstream_stdio("everything", &everything_stdio_argv(), None)
    );
    let w = Warden::start(&body);
    let sid = open_session(&w);
    assert_eq!(
        children_settle(&w, 0, Duration::ZERO).len(),
        1,
        "one server child for the session"
    );
    // Idle for 3 s, and Warden sweeps expired sessions every 5 s.
    let left = children_settle(&w, 0, Duration::from_secs(12));
    let r = request(
        w.port,
        "POST",
        "/mcp",
        &session_headers(&sid),
        br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    );
    stop(w, "stdio upstream after idle expiry");
    assert_eq!(r.status, 404, "the session expired: {}", r.text());
    assert!(
        left.is_empty(),
        "12 s after the session went idle (3 s limit) its server child still runs: {left:#?}"
    );
}
