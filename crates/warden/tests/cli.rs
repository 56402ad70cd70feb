//! The command line: `--help` on every subcommand, and `check-config` reporting every error with
//! FILE:LINE:COL and a hint, exiting non-zero (issue #2, item 1).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::process::Command;

use support::{temp_dir, warden_bin};

#[test]
fn every_subcommand_has_help() {
    for sub in [
        &[][..],
        &["serve"][..],
        &["wrap"][..],
        &["check-config"][..],
        &["sessions"][..],
    ] {
        let out = Command::new(warden_bin())
            .args(sub)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{sub:?} --help failed");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{sub:?}"
        );
    }
}

#[test]
fn check_config_reports_every_error_with_its_place() {
    let dir = temp_dir("cli");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"0.0.0.0:8080\"\nallowed_origin = [\"x\"]\n\n[[upstream]]\nname = \"a\"\nurl = \"ftp://nowhere\"\n\n[[upstream]]\nname = \"a\"\ncommand = []\n",
    )
    .unwrap();
    let out = Command::new(warden_bin())
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = bad.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:3:1: error: unknown field `allowed_origin`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:2:")) && err.contains("allowed_hosts"),
        "non-loopback bind without a Host allowlist: {err}"
    );
    assert!(
        err.contains(&format!("{file}:7:")) && err.contains("ftp://nowhere"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:10:")) && err.contains("used twice"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:11:")) && err.contains("command is empty"),
        "{err}"
    );
    assert_eq!(
        err.matches("  hint: ").count(),
        err.matches(": error: ").count(),
        "every error has a hint: {err}"
    );

    // `serve` needs [auth]: running without authentication is a decision written down.
    let no_auth = dir.join("no_auth.toml");
    std::fs::write(
        &no_auth,
        "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
    )
    .unwrap();
    let out = Command::new(warden_bin())
        .arg("check-config")
        .arg(&no_auth)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("needs an [auth] section"),
        "{err}"
    );
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[auth]\nmode = \"local\"\n\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
    )
    .unwrap();
    let out = Command::new(warden_bin())
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let example = support::repo_root().join("examples/everything.toml");
    let out = Command::new(warden_bin())
        .arg("check-config")
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the documented example config is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
