//! `warden wrap -- CMD ARGS`: a drop-in stdio wrapper. Messages pass byte-for-byte, the server's
//! stderr passes through, malformed input is refused with a JSON-RPC error and never reaches the
//! server (P1.1), and EOF on stdin shuts the server down cleanly.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::tiny::tiny;
use support::{audit_kinds, temp_dir, toml_str, wait_exit, warden_bin};

#[test]
fn wrap_relays_refuses_and_shuts_down() {
    let dir = temp_dir("wrap");
    let log = dir.join("seen.jsonl");
    let cfg = dir.join("wrap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[audit]\npath = {}\n",
            toml_str(&dir.join("audit.jsonl").display().to_string())
        ),
    )
    .unwrap();
    let argv = tiny(&["--tools", "echo", "--stderr-hello"]);
    let mut child = Command::new(warden_bin())
        .arg("wrap")
        .arg("--config")
        .arg(&cfg)
        .args(["--pass-env", "TINY_LOG"])
        .arg("--")
        .args(&argv)
        .env("TINY_LOG", &log)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warden wrap");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut ask = |stdin: &mut std::process::ChildStdin, msg: &[u8]| {
        stdin.write_all(msg).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str::<serde_json::Value>(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let init = ask(&mut stdin, br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"},"x-extra":[1]}}"#);
    assert_eq!(init["result"]["serverInfo"]["name"], "tiny");
    let bad = ask(&mut stdin, b"{not json");
    assert_eq!(bad["error"]["code"], -32700, "{bad}");
    let batch = ask(&mut stdin, br#"[{"jsonrpc":"2.0","id":2,"method":"ping"}]"#);
    assert_eq!(
        batch["error"]["data"]["reason"], "batch_not_allowed",
        "{batch}"
    );
    let call = ask(&mut stdin, br#"{"jsonrpc":"2.0","id":"c-3","method":"tools/call","params":{"name":"echo","arguments":{"q":"\u00e9"}}}"#);
    assert_eq!(call["id"], "c-3");
    assert_eq!(
        call["result"]["content"][0]["text"],
        "tiny:echo:{\"q\": \"\\u00e9\"}"
    );

    drop(stdin); // EOF: the wrapper closes the server's stdin and exits
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)),
        Some(0),
        "warden wrap exits cleanly after EOF"
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("tiny-server stderr hello"),
        "the server's stderr passes through: {stderr}"
    );

    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(
        seen.contains(r#""x-extra":[1]"#),
        "unknown fields reached the server: {seen}"
    );
    assert!(
        !seen.contains("not json") && !seen.contains(r#"[{"jsonrpc""#),
        "refused input never reached the server: {seen}"
    );
    assert!(seen.contains(r#"{"jsonrpc":"2.0","id":"c-3","method":"tools/call","params":{"name":"echo","arguments":{"q":"\u00e9"}}}"#), "byte-for-byte: {seen}");
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("malformed_json") && audit.contains("batch_not_allowed"),
        "refusals are audited: {audit}"
    );
    // P5.1: the run is bracketed, and what was queued at exit reached the file before the
    // process ended (read right after exit, no waiting).
    let kinds = audit_kinds(&audit);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("gateway.start"),
        "{audit}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("gateway.stop"),
        "{audit}"
    );
    assert!(
        audit.contains(r#""method":"tools/call","tool":"echo","decision":"allow""#),
        "the last call is in the log at exit: {audit}"
    );
}
