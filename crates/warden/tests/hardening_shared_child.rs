//! Attacks across clients through a stdio upstream (#13 items 2, 3, 8, 11): stateless
//! (2026-07-28) requests of every client meet on one shared child, so what one client sends or
//! is sent must never reach another; and no client may start children without bound. Two (or
//! more) clients on their own loopback addresses talk to `warden serve` in front of
//! `tests/peers/hostile/shared_child.py`, which logs every line it receives and says things about
//! requests; each test proves what reached whom — the child's log and each client's answers —
//! and that every refusal and every dropped message is audited.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::client::{Reply, connect_from, request_from};
use support::{Warden, repo_root, temp_dir, toml_str, upstream_stdio};

const ALICE: [u8; 4] = [127, 0, 0, 11];
const BOB: [u8; 4] = [127, 0, 0, 12];

/// Warden in front of the hostile shared-child server; its log of received lines.
fn start(args: &[&str], extra: &str) -> (Warden, PathBuf) {
    let log = temp_dir("shared-child").join("seen.jsonl");
    let mut argv = vec![
        "python3".to_owned(),
        repo_root()
            .join("tests/peers/hostile/shared_child.py")
            .display()
            .to_string(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let table = upstream_stdio("shared", &argv, None).replacen(
        "command = ",
        &format!(
            "env = {{ SHARED_LOG = {} }}\ninitial_backoff_ms = 100\nmax_backoff_ms = 400\ncommand = ",
            toml_str(&log.display().to_string())
        ),
        1,
    );
    (Warden::start(&format!("{extra}\n{table}")), log)
}

/// 2026-07-28 `_meta` for `who` (and a progress token when given).
fn meta(who: &str, token: Option<&str>) -> Value {
    let mut m = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": who, "version": "1"},
    });
    if let Some(t) = token {
        m["progressToken"] = json!(t);
    }
    m
}

fn call_body(id: Value, who: &str, tool: &str, args: Value, token: Option<&str>) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": args, "_meta": meta(who, token)}})
    .to_string()
}

fn cancel_body(who: &str, request_id: Value) -> String {
    json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
           "params": {"requestId": request_id, "reason": "test", "_meta": meta(who, None)}})
    .to_string()
}

/// The headers of a 2026-07-28 POST for `method` (and `Mcp-Name`).
fn head(method: &str, name: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        ("content-type".into(), "application/json".into()),
        (
            "accept".into(),
            "application/json, text/event-stream".into(),
        ),
        ("mcp-protocol-version".into(), "2026-07-28".into()),
        ("mcp-method".into(), method.into()),
    ];
    if let Some(n) = name {
        h.push(("mcp-name".into(), n.into()));
    }
    h
}

fn post(w: &Warden, src: [u8; 4], method: &str, name: Option<&str>, body: &str) -> Reply {
    post_to(w.port, src, method, name, body)
}

fn post_to(port: u16, src: [u8; 4], method: &str, name: Option<&str>, body: &str) -> Reply {
    let h = head(method, name);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    request_from(Some(src), port, "POST", "/mcp", &h, body.as_bytes())
}

/// A POST whose answer the test does not wait for (the connection stays open until dropped).
fn post_open(w: &Warden, src: [u8; 4], method: &str, name: Option<&str>, body: &str) -> TcpStream {
    let mut s = connect_from(Some(src), w.port);
    let mut head_text = format!("POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n", w.port);
    for (k, v) in head(method, name) {
        head_text.push_str(&format!("{k}: {v}\r\n"));
    }
    head_text.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    s.write_all(head_text.as_bytes()).unwrap();
    s
}

/// Every JSON-RPC message in an answer (a JSON body or an SSE stream).
fn messages(r: &Reply) -> Vec<Value> {
    match serde_json::from_slice::<Value>(&r.body) {
        Ok(v) => vec![v],
        Err(_) => r.sse_messages(),
    }
}

/// The lines the child received so far.
fn child_saw(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Wait until the child received a line matching `pred`; returns it.
fn wait_child(log: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = child_saw(log).into_iter().find(|m| pred(m)) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "the child never received {what}: {:?}",
            child_saw(log)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn is_call(m: &Value, tool: &str, tag: &str) -> bool {
    m["method"] == "tools/call"
        && m["params"]["name"] == tool
        && m["params"]["arguments"]["tag"] == tag
}

/// A `hold` call of `who` tagged `tag`, on a thread; its answer when the child releases it.
fn hold(
    w: &Warden,
    src: [u8; 4],
    who: &str,
    tag: &str,
    token: Option<&str>,
) -> std::thread::JoinHandle<Reply> {
    let body = call_body(json!(1), who, "hold", json!({ "tag": tag }), token);
    let port = w.port;
    std::thread::spawn(move || post_to(port, src, "tools/call", Some("hold"), &body))
}

/// The `(progressToken, message)` of every progress notification in `msgs`.
fn progress(msgs: &[Value]) -> Vec<(Value, String)> {
    msgs.iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            (
                m["params"]["progressToken"].clone(),
                m["params"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn logs(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m["method"] == "notifications/message")
        .map(|m| m["params"]["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn final_text(msgs: &[Value]) -> String {
    msgs.iter()
        .find(|m| m.get("result").is_some() || m.get("error").is_some())
        .map(|m| {
            assert_eq!(m["id"], json!(1), "the client gets its own id back: {m}");
            m["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}

/// A Warden id: `"w-"` and 22 base64url characters (128 random bits), not a counter.
fn assert_unguessable(id: &Value, prefix: &str) {
    let s = id
        .as_str()
        .unwrap_or_else(|| panic!("not a string id: {id}"));
    let rest = s
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{s} lacks {prefix}"));
    assert!(
        rest.len() == 22
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "the child sees 128 random bits, not a counter: {s}"
    );
}

/// The audit events of `kind` whose hint mentions `needle`.
fn audited(w: &Warden, kind: &str, needle: &str) -> Vec<Value> {
    w.audit()
        .into_iter()
        .filter(|e| e["kind"] == kind && e["hint"].as_str().unwrap_or_default().contains(needle))
        .collect()
}

/// A refusal exactly: status, JSON-RPC code, reason, hint, and one `deny` audit event with its
/// control.
fn assert_refused(w: &Warden, r: &Reply, status: u16, code: i64, reason: &str, control: &str) {
    assert_eq!(r.status, status, "{reason}: {}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], json!(code), "{reason}: {v}");
    assert_eq!(v["error"]["data"]["reason"], json!(reason), "{v}");
    assert!(
        v["error"]["data"]["hint"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{reason} has a hint: {v}"
    );
    let ev: Vec<Value> = w
        .audit_reason(reason)
        .into_iter()
        .filter(|e| e["kind"] == "mcp.refusal")
        .collect();
    assert!(
        ev.iter()
            .any(|e| e["decision"] == "deny" && e["control"] == control),
        "{reason} is audited as a deny under {control}: {ev:?}"
    );
}

/// #13 item 2, M2: two clients both ask for progress with the token `"tok"` on the shared child.
/// Before the fix the child saw `"tok"` twice and the newest request (Bob's) got Alice's
/// progress too. Now the child sees two unguessable tokens of Warden's, each client gets exactly
/// its own progress with its own token back byte-for-byte, and its own id.
#[test]
fn progress_on_the_shared_child_reaches_only_the_request_that_asked_for_it() {
    let (w, log) = start(&["--hold", "2"], "");
    let alice = hold(&w, ALICE, "alice", "alice", Some("tok"));
    wait_child(&log, "alice's call", |m| is_call(m, "hold", "alice"));
    let bob = hold(&w, BOB, "bob", "bob", Some("tok"));
    let (alice, bob) = (alice.join().unwrap(), bob.join().unwrap());
    let (a, b) = (messages(&alice), messages(&bob));
    assert_eq!(final_text(&a), "done alice", "{}", alice.text());
    assert_eq!(final_text(&b), "done bob", "{}", bob.text());
    assert_eq!(
        progress(&a),
        vec![(json!("tok"), "progress of alice".to_owned())],
        "alice gets her progress, with her token: {a:?}"
    );
    assert_eq!(
        progress(&b),
        vec![(json!("tok"), "progress of bob".to_owned())],
        "bob gets his own progress only, never alice's: {b:?}"
    );
    let seen = child_saw(&log);
    let calls: Vec<&Value> = seen
        .iter()
        .filter(|m| m["params"]["name"] == "hold")
        .collect();
    assert_eq!(calls.len(), 2, "{seen:?}");
    let tokens: Vec<&Value> = calls
        .iter()
        .map(|m| &m["params"]["_meta"]["progressToken"])
        .collect();
    assert_ne!(
        tokens[0], tokens[1],
        "each request has its own token: {tokens:?}"
    );
    for (m, t) in calls.iter().zip(&tokens) {
        assert_unguessable(t, "wp-");
        assert_unguessable(&m["id"], "w-");
    }
}

/// #13 item 2, M2: the child says something naming no request (a log) while requests of Alice
/// and Bob are both open on the shared child. Before the fix it went to the newest request,
/// whoever's: Bob read "log of alice". Now such a message reaches a client only when every open
/// request is that client's (control: Alice alone still gets her logs); otherwise it is dropped
/// and audited (`upstream.unattributed_message`, deny, M2).
#[test]
fn messages_that_name_no_request_never_reach_another_client() {
    let (w, log) = start(&["--hold", "2"], "");
    // One owner: the logs go to her newest request.
    let first = hold(&w, ALICE, "alice", "a1", None);
    wait_child(&log, "alice's first call", |m| is_call(m, "hold", "a1"));
    let second = hold(&w, ALICE, "alice", "a2", None);
    let (first, second) = (first.join().unwrap(), second.join().unwrap());
    assert_eq!(final_text(&messages(&first)), "done a1", "{}", first.text());
    assert_eq!(
        logs(&messages(&second)),
        vec!["log of a1".to_owned(), "log of a2".to_owned()],
        "with only alice's requests open, her logs reach her: {}",
        second.text()
    );
    // Two owners: nobody gets a message that may be the other's.
    let alice = hold(&w, ALICE, "alice", "alice", None);
    wait_child(&log, "alice's call", |m| is_call(m, "hold", "alice"));
    let bob = hold(&w, BOB, "bob", "bob", None);
    let (alice, bob) = (alice.join().unwrap(), bob.join().unwrap());
    let (a, b) = (messages(&alice), messages(&bob));
    assert_eq!(final_text(&a), "done alice", "{}", alice.text());
    assert_eq!(final_text(&b), "done bob", "{}", bob.text());
    assert!(
        !logs(&b).iter().any(|l| l.contains("alice")),
        "bob never reads alice's log: {b:?}"
    );
    assert!(
        !logs(&a).iter().any(|l| l.contains("bob")),
        "alice never reads bob's log: {a:?}"
    );
    let dropped = audited(&w, "upstream.unattributed_message", "notifications/message");
    assert_eq!(
        dropped.len(),
        2,
        "each undeliverable log is audited: {dropped:?}"
    );
    assert!(
        dropped.iter().all(|e| e["decision"] == "deny"
            && e["reason"] == "unattributed_server_message"
            && e["control"] == "M2"),
        "{dropped:?}"
    );
}

/// #13 item 3, M2: Bob tries to cancel Alice's call on the shared child. Before the fix the
/// child's ids were a counter (`w1`, `w2`…) and `notifications/cancelled` went to it raw, so
/// Bob's guesses named Alice's call. Now the child's ids are 128 random bits, and a cancellation
/// is forwarded only for the sender's own open request, rewritten to the id the child saw:
/// Bob's guesses — even the exact id the child knows Alice's call by — are refused (400
/// `cancel_unknown_request`, audited) and never reach the child; his own `7` cancels his own
/// call, and Alice's `7` hers.
#[test]
fn a_client_cannot_cancel_another_client_s_call() {
    let (w, log) = start(&[], "");
    let park = |src, who: &str| {
        post_open(
            &w,
            src,
            "tools/call",
            Some("park"),
            &call_body(json!(7), who, "park", json!({ "tag": who }), None),
        )
    };
    let _alice_call = park(ALICE, "alice");
    let alice_wire =
        wait_child(&log, "alice's call", |m| is_call(m, "park", "alice"))["id"].clone();
    let _bob_call = park(BOB, "bob");
    let bob_wire = wait_child(&log, "bob's call", |m| is_call(m, "park", "bob"))["id"].clone();

    // Bob guesses: a counter's values, other ids, and even the very id the child knows alice's
    // call by (as if it had leaked).
    let mut guesses: Vec<Value> = (1..=12).map(|n| json!(format!("w{n}"))).collect();
    guesses.extend([json!(1), json!(8), json!("7"), alice_wire.clone()]);
    let replies: Vec<Reply> = guesses
        .iter()
        .map(|g| {
            post(
                &w,
                BOB,
                "notifications/cancelled",
                None,
                &cancel_body("bob", g.clone()),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let cancels = |log: &Path| -> Vec<Value> {
        child_saw(log)
            .into_iter()
            .filter(|m| m["method"] == "notifications/cancelled")
            .collect()
    };
    assert!(
        !cancels(&log)
            .iter()
            .any(|c| c["params"]["requestId"] == alice_wire),
        "no cancellation of bob's names alice's call {alice_wire} at the child: {:?}",
        cancels(&log)
    );
    assert!(
        cancels(&log).is_empty(),
        "no guess of bob's reached the child: {:?}",
        cancels(&log)
    );
    for r in &replies {
        assert_refused(&w, r, 400, -32602, "cancel_unknown_request", "M2");
    }
    assert_unguessable(&alice_wire, "w-");
    assert_unguessable(&bob_wire, "w-");

    let r = post(
        &w,
        BOB,
        "notifications/cancelled",
        None,
        &cancel_body("bob", json!(7)),
    );
    assert_eq!(r.status, 202, "bob cancels his own call: {}", r.text());
    let c = wait_child(&log, "bob's cancellation", |m| {
        m["method"] == "notifications/cancelled"
    });
    assert_eq!(
        c["params"]["requestId"], bob_wire,
        "bob's 7 is his own call, as the child knows it: {c}"
    );
    let r = post(
        &w,
        ALICE,
        "notifications/cancelled",
        None,
        &cancel_body("alice", json!(7)),
    );
    assert_eq!(r.status, 202, "alice cancels her own call: {}", r.text());
    let all = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = cancels(&log);
            if c.len() >= 2 || Instant::now() > deadline {
                break c;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    assert_eq!(
        all.iter()
            .map(|m| m["params"]["requestId"].clone())
            .collect::<Vec<_>>(),
        vec![bob_wire, alice_wire],
        "exactly the two owners' own cancellations reached the child: {all:?}"
    );
}

/// #13 item 8, P3.4: a 2026-07-28 `initialize` (and `notifications/initialized`) is a removed
/// method: 404/-32601 like the others, never forwarded. Before the fix Alice's stateless
/// `initialize` reached the shared child, was remembered, and was replayed as the handshake of
/// the restarted child that served everyone. Now the child never sees one, not even after it
/// crashed and was restarted for Bob.
#[test]
fn a_stateless_handshake_is_refused_and_never_becomes_anyone_else_s() {
    let (w, log) = start(&[], "");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2026-07-28", "capabilities": {},
                   "clientInfo": {"name": "alice-secret", "version": "1"}, "_meta": meta("alice", None)}})
    .to_string();
    let r = post(&w, ALICE, "initialize", None, &init);
    assert_refused(&w, &r, 404, -32601, "method_removed", "P3.4");
    assert_eq!(
        r.json()["id"],
        json!(1),
        "the refusal answers her id: {}",
        r.text()
    );
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized",
                      "params": {"_meta": meta("alice", None)}})
    .to_string();
    let r = post(&w, ALICE, "notifications/initialized", None, &note);
    assert_refused(&w, &r, 404, -32601, "method_removed", "P3.4");

    // The shared child crashes on Bob's call and is restarted for his next one.
    let r = post(
        &w,
        BOB,
        "tools/call",
        Some("crash"),
        &call_body(json!(2), "bob", "crash", json!({}), None),
    );
    assert!(
        r.status >= 500,
        "the crash is an upstream error: {}",
        r.text()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = post(
            &w,
            BOB,
            "tools/call",
            Some("echo"),
            &call_body(json!(3), "bob", "echo", json!({"x": 1}), None),
        );
        if r.status == 200 {
            assert_eq!(
                messages(&r)[0]["result"]["content"][0]["text"],
                json!("{\"x\": 1}"),
                "{}",
                r.text()
            );
            break;
        }
        assert!(Instant::now() < deadline, "no restart: {}", r.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = child_saw(&log);
    assert!(
        seen.iter()
            .filter(|m| m["method"] == "server/discover")
            .count()
            >= 1
            && !seen.iter().any(|m| {
                let method = m["method"].as_str().unwrap_or_default();
                method == "initialize" || method == "notifications/initialized"
            }),
        "no handshake ever reached the shared child, first or restarted: {seen:?}"
    );
}

/// #13 item 11, P4.3: every session with a stdio upstream starts a child, and the per-address
/// session cap does not bound them (other loopback addresses open more). Before the fix the
/// 33rd session from four addresses started a 33rd child; now `[limits] max_stdio_children`
/// (default 32) caps running children gateway-wide: the next session, and the stateless request
/// that would start the shared child, get 503 with `Retry-After` and an audited
/// `stdio_children_limit`; a slot frees when a session ends.
#[test]
fn stdio_children_are_capped_gateway_wide() {
    let dir = temp_dir("children-cap");
    let script = dir.join("child.sh");
    // A tiny session-era server: answers initialize (id 1) and nothing else.
    std::fs::write(
        &script,
        "while IFS= read -r line; do case \"$line\" in *'\"initialize\"'*) printf '%s\\n' '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"serverInfo\":{\"name\":\"sh\",\"version\":\"1\"}}}';; esac; done\n",
    )
    .unwrap();
    let argv = vec!["/bin/sh".to_owned(), script.display().to_string()];
    let w = Warden::start(&upstream_stdio("sh", &argv, None));
    let init = support::attack::init_body("cap");
    let open = |src: [u8; 4]| {
        request_from(
            Some(src),
            w.port,
            "POST",
            "/mcp",
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
            ],
            init.as_bytes(),
        )
    };
    let mut sessions = Vec::new();
    for i in 0..32u8 {
        let src = [127, 0, 1, 10 + i % 4];
        let r = open(src);
        assert_eq!(r.status, 200, "session {i}: {}", r.text());
        sessions.push((src, r.header("mcp-session-id").unwrap().to_owned()));
    }
    let r = open([127, 0, 1, 20]);
    assert_refused(&w, &r, 503, -32003, "stdio_children_limit", "P4.3");
    assert!(
        r.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s > 0)),
        "503 says when to retry: {:?}",
        r.headers
    );
    // The shared child is a child too.
    let r = post(
        &w,
        [127, 0, 1, 21],
        "tools/list",
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                "params": {"_meta": meta("stateless", None)}})
        .to_string(),
    );
    assert_refused(&w, &r, 503, -32003, "stdio_children_limit", "P4.3");
    // A session ends: its child exits and its slot serves the next client.
    let (src, sid) = &sessions[0];
    let r = request_from(
        Some(*src),
        w.port,
        "DELETE",
        "/mcp",
        &[
            ("mcp-session-id", sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = open([127, 0, 1, 20]);
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(Instant::now() < deadline, "the slot never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
}
