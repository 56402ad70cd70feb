//! The MCP conformance suite (`@modelcontextprotocol/conformance@0.2.0-alpha.12`, server mode) against
//! our fixture directly and through Warden — the fixture as a Streamable HTTP upstream and as a stdio
//! upstream — for both protocol generations (P3.4, P1.1, P8.4).
//!
//! The fixture runs with `--ignore-routing-headers`, so on its own it fails the SEP-2243 header
//! validation and (always) the DNS-rebinding scenario; Warden must pass them. Through Warden no
//! scenario may pass fewer checks than directly, and no scored check may fail. The expected counts are
//! in `tests/peers/node/EXPECTED.md`.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use support::{
    Warden, fixture_argv, node, node_dir, start_fixture_http, temp_dir, upstream_http,
    upstream_stdio,
};

/// Run the suite against `url`; returns the runner's summary.
fn suite(url: &str, requirements: &str) -> Value {
    suite_with(url, requirements, &[])
}

/// [`suite`] with more runner arguments (`--scenario NAME`).
fn suite_with(url: &str, requirements: &str, extra: &[&str]) -> Value {
    let out = temp_dir("conformance").join("summary.json");
    let status = Command::new(node())
        .arg(node_dir().join("run-conformance.mjs"))
        .args(["--url", url, "--requirements", requirements])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .current_dir(node_dir())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run the conformance suite");
    assert!(
        status.success(),
        "the conformance runner could not run against {url}"
    );
    serde_json::from_str(&std::fs::read_to_string(&out).expect("summary")).expect("summary JSON")
}

fn scenarios(v: &Value) -> BTreeMap<String, (u64, u64)> {
    v["scenarios"]
        .as_object()
        .expect("scenarios")
        .iter()
        .map(|(k, s)| {
            (
                k.clone(),
                (
                    s["passed"].as_u64().unwrap_or(0),
                    s["failed"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

fn passes(v: &Value, scenario: &str) -> bool {
    v["scenarios"][scenario]["failed"].as_u64() == Some(0)
        && v["scenarios"][scenario]["passed"].as_u64().unwrap_or(0) > 0
}

/// Checks a stdio upstream cannot pass whoever relays it, with the reason. Only these may be
/// missing through Warden, and only for the stdio upstream.
const STDIO_EXCEPTIONS: [(&str, u64, &str); 1] = [(
    "server-sse-polling",
    1,
    "server-sse-disconnect-resume needs the server to close its HTTP stream mid-call; a stdio server has no stream to close",
)];

/// Through Warden: no scenario passes fewer checks (less the documented stdio exceptions), no
/// scored check fails.
fn assert_no_regression(label: &str, direct: &Value, through: &Value, stdio: bool) {
    let (d, t) = (scenarios(direct), scenarios(through));
    let mut worse = Vec::new();
    for (name, (dp, _)) in &d {
        let (tp, tf) = t.get(name).copied().unwrap_or((0, 0));
        let allowance = if stdio {
            STDIO_EXCEPTIONS
                .iter()
                .filter(|(s, _, _)| s == name)
                .map(|(_, n, _)| *n)
                .sum()
        } else {
            0
        };
        if tp + allowance < *dp {
            worse.push(format!(
                "{name}: {tp} passed through Warden ({tf} failed) vs {dp} directly"
            ));
        }
    }
    assert!(
        worse.is_empty(),
        "{label}: scenarios that pass fewer checks through Warden:\n{}",
        worse.join("\n")
    );
    let allowance: u64 = if stdio {
        STDIO_EXCEPTIONS.iter().map(|(_, n, _)| n).sum()
    } else {
        0
    };
    assert!(
        through["passed_checks"].as_u64().unwrap_or(0) + allowance
            >= direct["passed_checks"].as_u64().unwrap_or(0),
        "{label}: {} checks passed through Warden vs {} directly",
        through["passed_checks"],
        direct["passed_checks"]
    );
    assert_eq!(
        through["scored"]["failed_checks"], 0,
        "{label}: scored failures through Warden: {}",
        through["scenarios"]
    );
}

fn compare(requirements: &str) {
    let (_fixture, fixture_url) = start_fixture_http(&["--ignore-routing-headers"]);
    let direct_url = fixture_url.replace("127.0.0.1", "localhost");
    let direct = suite(&direct_url, requirements);
    assert!(
        !passes(&direct, "dns-rebinding-protection"),
        "the fixture alone should fail DNS-rebinding protection"
    );

    let over_http = Warden::start(&upstream_http("fixture", &fixture_url, None));
    let through_http = suite(&over_http.localhost_url(), requirements);

    let mut argv = fixture_argv();
    argv.push("--stdio".into());
    let over_stdio = Warden::start(&upstream_stdio("fixture", &argv, None));
    let through_stdio = suite(&over_stdio.localhost_url(), requirements);

    for (label, through) in [
        ("HTTP upstream", &through_http),
        ("stdio upstream", &through_stdio),
    ] {
        eprintln!(
            "{requirements} {label}: {} passed / {} failed (scored {} / {}); direct {} / {} (scored {} / {})",
            through["passed_checks"],
            through["failed_checks"],
            through["scored"]["passed_checks"],
            through["scored"]["failed_checks"],
            direct["passed_checks"],
            direct["failed_checks"],
            direct["scored"]["passed_checks"],
            direct["scored"]["failed_checks"]
        );
        assert_no_regression(
            &format!("{requirements} {label}"),
            &direct,
            through,
            label.starts_with("stdio"),
        );
        assert!(
            passes(through, "dns-rebinding-protection"),
            "{label}: Warden must pass DNS-rebinding protection"
        );
        if requirements == "2026-07-28" {
            assert!(
                passes(through, "http-header-validation"),
                "{label}: Warden must validate Mcp-* headers: {}",
                through["scenarios"]["http-header-validation"]
            );
            assert!(
                passes(through, "server-stateless"),
                "{label}: {}",
                through["scenarios"]["server-stateless"]
            );
        }
    }
    if requirements == "2026-07-28" {
        assert!(
            !passes(&direct, "http-header-validation"),
            "with --ignore-routing-headers the fixture alone fails header validation"
        );
    }
    for w in [&over_http, &over_stdio] {
        assert!(
            !w.audit_reason("host_not_allowed").is_empty(),
            "the DNS-rebinding refusals are audited"
        );
    }
}

#[test]
fn conformance_2025_11_25_direct_vs_through_warden() {
    compare("2025-11-25");
}

#[test]
fn conformance_2026_07_28_direct_vs_through_warden() {
    compare("2026-07-28");
}

/// #13 item 19 (spec checklist F15): with the fixture answering `subscriptions/listen` as
/// newline-delimited JSON under `application/json` (`--ndjson-listen`, one line as each message is
/// written), the `server-stateless` scenario passes as many checks through Warden as directly, and
/// all of them. Warden used to buffer such a body until the upstream ended it: the acknowledgement
/// never arrived in the suite's window and the scenario lost its three subscription checks.
#[test]
fn conformance_server_stateless_with_an_ndjson_listen_stream() {
    let (_fixture, fixture_url) =
        start_fixture_http(&["--ignore-routing-headers", "--ndjson-listen"]);
    let scenario = ["--scenario", "server-stateless"];
    let direct = suite_with(
        &fixture_url.replace("127.0.0.1", "localhost"),
        "2026-07-28",
        &scenario,
    );
    let over_http = Warden::start(&upstream_http("fixture", &fixture_url, None));
    let through = suite_with(&over_http.localhost_url(), "2026-07-28", &scenario);
    let (d, t) = (scenarios(&direct), scenarios(&through));
    let (dp, tp) = (
        d.get("server-stateless").map_or(0, |c| c.0),
        t.get("server-stateless").map_or(0, |c| c.0),
    );
    eprintln!("server-stateless with an NDJSON listen stream: direct {d:?}, through Warden {t:?}");
    assert!(
        dp > 0 && passes(&direct, "server-stateless"),
        "control: the fixture passes directly: {}",
        direct["scenarios"]
    );
    assert!(
        tp >= dp && passes(&through, "server-stateless"),
        "through Warden {tp} passed vs {dp} directly: {}",
        through["scenarios"]["server-stateless"]
    );
}
