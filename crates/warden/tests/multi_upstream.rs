//! Several upstreams behind one endpoint: lists merged with each upstream's prefix and calls routed
//! back under the original name; a name two upstreams share is withheld and audited, never silently
//! shadowed (P9.2); one upstream that cannot start does not take the others down.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use serde_json::json;
use support::tiny::{open_session, rpc, text_of, tiny};
use support::{Warden, temp_dir, toml_str, upstream_stdio};

fn tool_names(resp: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = resp["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn lists_merge_with_prefixes_and_calls_route_back() {
    let log = temp_dir("tiny").join("a.jsonl");
    let a = upstream_stdio(
        "alpha",
        &tiny(&["--name", "a", "--tools", "echo,add"]),
        Some("a"),
    )
    .replacen(
        "command = ",
        &format!(
            "env = {{ TINY_LOG = {} }}\ncommand = ",
            toml_str(&log.display().to_string())
        ),
        1,
    );
    let b = upstream_stdio(
        "beta",
        &tiny(&["--name", "b", "--tools", "echo"]),
        Some("b"),
    );
    let w = Warden::start(&format!("{a}\n{b}"));
    let sid = open_session(w.port);
    assert_eq!(
        tool_names(&rpc(w.port, &sid, 1, "tools/list", json!({}))),
        ["a_add", "a_echo", "b_echo"]
    );
    assert_eq!(
        text_of(&rpc(
            w.port,
            &sid,
            2,
            "tools/call",
            json!({"name": "a_echo", "arguments": {"k": "v"}})
        )),
        r#"a:echo:{"k": "v"}"#
    );
    assert_eq!(
        text_of(&rpc(
            w.port,
            &sid,
            3,
            "tools/call",
            json!({"name": "b_echo"})
        )),
        "b:echo:{}"
    );
    let unknown = rpc(w.port, &sid, 4, "tools/call", json!({"name": "c_echo"}));
    assert_eq!(
        unknown["error"]["data"]["reason"], "unknown_name",
        "{unknown}"
    );
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(
        seen.contains(r#""name":"echo""#) && !seen.contains("a_echo"),
        "the upstream got its own name back: {seen}"
    );
}

#[test]
fn colliding_names_are_withheld_and_reported() {
    let a = upstream_stdio(
        "alpha",
        &tiny(&["--name", "a", "--tools", "echo,add"]),
        None,
    );
    let b = upstream_stdio("beta", &tiny(&["--name", "b", "--tools", "echo"]), None);
    let w = Warden::start(&format!("{a}\n{b}"));
    let sid = open_session(w.port);
    assert_eq!(
        tool_names(&rpc(w.port, &sid, 1, "tools/list", json!({}))),
        ["add"],
        "neither 'echo' shadows the other"
    );
    let call = rpc(w.port, &sid, 2, "tools/call", json!({"name": "echo"}));
    assert!(
        call["error"].is_object(),
        "a withheld name cannot be called: {call}"
    );
    let collisions: Vec<_> = w
        .audit()
        .into_iter()
        .filter(|e| e["kind"] == "tool.name_collision")
        .collect();
    assert_eq!(
        collisions.len(),
        2,
        "both sides of the collision are reported: {collisions:?}"
    );
    assert!(
        collisions
            .iter()
            .all(|e| e["tool"] == "echo" && e["control"] == "P9.2" && e["decision"] == "deny")
    );
}

#[test]
fn one_failing_upstream_does_not_take_down_the_others() {
    let a = upstream_stdio(
        "alpha",
        &tiny(&["--name", "a", "--tools", "echo"]),
        Some("a"),
    );
    let broken = upstream_stdio("broken", &["/nonexistent/mcp-server".to_owned()], Some("x"));
    let w = Warden::start(&format!("{a}\n{broken}"));
    let sid = open_session(w.port);
    assert_eq!(
        tool_names(&rpc(w.port, &sid, 1, "tools/list", json!({}))),
        ["a_echo"]
    );
    assert_eq!(
        text_of(&rpc(
            w.port,
            &sid,
            2,
            "tools/call",
            json!({"name": "a_echo"})
        )),
        "a:echo:{}"
    );
    let events = w.audit();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "upstream.unavailable" && e["upstream"] == "broken"),
        "{events:?}"
    );
}
