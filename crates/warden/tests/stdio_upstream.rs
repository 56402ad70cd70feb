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
