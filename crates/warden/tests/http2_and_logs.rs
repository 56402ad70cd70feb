//! Pooled HTTP/2 to a Streamable HTTP upstream (issue #2, item 4): a Warden configured with
//! `http2 = true` relays through a second Warden (whose listener speaks HTTP/1.1 and HTTP/2) in
//! front of a stdio server. And structured JSON logs (item 7, P5.2): with `[log] format = "json"`
//! every log line on stderr is a JSON object.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use serde_json::json;
use support::tiny::{open_session, rpc, text_of, tiny};
use support::{Warden, toml_str, upstream_stdio};

#[test]
fn an_http2_upstream_relays_and_logs_are_json() {
    let inner = Warden::start(&upstream_stdio(
        "tiny",
        &tiny(&["--name", "inner", "--tools", "echo"]),
        None,
    ));
    let outer = Warden::start(&format!(
        "[log]\nformat = \"json\"\nlevel = \"info\"\n\n[[upstream]]\nname = \"inner\"\nurl = {}\nhttp2 = true\n",
        toml_str(&inner.url)
    ));
    let sid = open_session(outer.port);
    let call = rpc(
        outer.port,
        &sid,
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"via": "h2"}}),
    );
    assert_eq!(text_of(&call), r#"inner:echo:{"via": "h2"}"#, "{call}");
    assert!(
        inner
            .audit()
            .iter()
            .any(|e| e["method"] == "tools/call" && e["decision"] == "allow"),
        "the call went through the inner Warden"
    );

    let mut outer = outer;
    let stderr = outer.proc.stderr_now();
    let logs: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("warden: "))
        .collect();
    assert!(!logs.is_empty(), "info logs were written: {stderr}");
    for line in logs {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}
