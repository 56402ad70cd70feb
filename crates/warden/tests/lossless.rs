//! Losslessness property (P1.1 "what Warden does not act on passes unchanged"; J2/J3): for every
//! message kind, in both protocol generations, the bytes the upstream receives equal the bytes the
//! client sent, and the bytes the client receives (each SSE block with its `id:`, `retry:` and
//! comment lines) equal the bytes the upstream sent. Inputs are random: extra top-level fields,
//! extra fields in params/result, `_meta` objects with reserved-looking keys, odd whitespace, key
//! order, big numbers, `\u` escapes and unicode, string and integer ids.
//!
//! The one field Warden changes: inside a session, each non-empty SSE event id reaches the client
//! bound to the session, as `<22-character MAC>.<the upstream's id>` (#13 item 18,
//! `event_ids.rs`); the property checks that every such id carries the MAC and that, the MACs
//! taken out, every byte is the upstream's. Outside a session ids pass untouched.
//!
//! One Warden and one recording upstream serve the whole property; the upstream answers with what
//! the test put in a shared slot before each exchange. The random inputs are generated in
//! `support/lossless_gen.rs`, the exchanges rendered in `support/lossless_wire.rs`.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::client::{Reply, request};
use support::lossless_gen::parts;
use support::lossless_wire::{Answer, Env, Exchange, Gen, What, blocks, build, relayed, start};
use support::recorder::Recorded;

/// The message matrix: every kind in both generations, with the upstream's kind of answer.
const MATRIX: [(Gen, What, Answer); 10] = [
    (Gen::Session, What::ToolsCall, Answer::Json),
    (Gen::Session, What::ResourcesRead, Answer::Sse),
    (Gen::Session, What::Custom, Answer::Random),
    (Gen::Session, What::Notification, Answer::Accepted),
    (Gen::Session, What::ClientResponse, Answer::Accepted),
    (Gen::Session, What::GetStream, Answer::Sse),
    (Gen::Stateless, What::ToolsCall, Answer::Sse),
    (Gen::Stateless, What::ResourcesRead, Answer::Json),
    (Gen::Stateless, What::Custom, Answer::Random),
    (Gen::Stateless, What::Notification, Answer::Accepted),
];

fn run_exchange(env: &Env, ex: &Exchange) -> Result<(), TestCaseError> {
    let label = &ex.label;
    if std::env::var_os("WARDEN_TEST_VERBOSE").is_some() {
        eprintln!(
            "--- {label}\n{:?}\n>>> {}\n<<< {}",
            ex.headers,
            String::from_utf8_lossy(&ex.body),
            String::from_utf8_lossy(&ex.answer.body)
        );
    }
    *env.slot.lock().expect("slot") = ex.answer.clone();
    // Warden's own requests (a stateless call to a tool it has not seen makes it list the
    // upstream's tools first) are not the client's bytes: they are left out of the count.
    let before = relayed(&env.up).len();
    let headers: Vec<(&str, &str)> = ex
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reply: Reply = request(env.w.port, ex.method, "/mcp", &headers, &ex.body);
    let seen = relayed(&env.up);
    prop_assert_eq!(
        seen.len(),
        before + 1,
        "{}: the upstream got exactly one request; client got {} {}",
        label,
        reply.status,
        reply.text()
    );
    let got: &Recorded = &seen[before];
    prop_assert_eq!(&got.method, ex.method, "{}", label);
    prop_assert!(
        got.body == ex.body,
        "{}: upstream bytes differ\n sent: {:?}\n got:  {:?}",
        label,
        String::from_utf8_lossy(&ex.body),
        String::from_utf8_lossy(&got.body)
    );
    for (k, v) in &ex.headers {
        let expected = match k.as_str() {
            "mcp-session-id" => "upstream-session-1",
            "mcp-method" | "mcp-name" | "mcp-protocol-version" => v.as_str(),
            _ => continue,
        };
        prop_assert_eq!(
            got.header(k),
            Some(expected),
            "{}: upstream header {}",
            label,
            k
        );
    }
    if !ex.headers.iter().any(|(k, _)| k == "mcp-session-id") {
        prop_assert_eq!(got.header("mcp-session-id"), None, "{}: stateless", label);
    }
    prop_assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{}",
        label
    );
    prop_assert_eq!(reply.header("cache-control"), Some("no-store"), "{}", label);
    prop_assert_eq!(
        reply.status,
        ex.answer.status,
        "{}: client status; body {}",
        label,
        reply.text()
    );
    let in_session = ex.headers.iter().any(|(k, _)| k == "mcp-session-id");
    let (client, bound) = unbind_ids(&reply.body);
    let ids = nonempty_ids(&ex.answer.body);
    prop_assert_eq!(
        bound,
        if in_session { ids } else { 0 },
        "{}: session-bound event ids (session: {})",
        label,
        in_session
    );
    if ex.answer.content_type == "text/event-stream" {
        prop_assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{}: {:?}",
            label,
            reply.headers
        );
        let (want, have) = (blocks(&ex.answer.body), blocks(&client));
        for (i, (w, h)) in want.iter().zip(have.iter()).enumerate() {
            prop_assert_eq!(h, w, "{}: SSE block {} differs", label, i);
        }
        prop_assert_eq!(have.len(), want.len(), "{}: number of SSE blocks", label);
    }
    prop_assert!(
        client == ex.answer.body,
        "{}: client bytes differ\n upstream sent: {:?}\n client got:    {:?}",
        label,
        String::from_utf8_lossy(&ex.answer.body),
        reply.text()
    );
    Ok(())
}

/// The starts of the lines of `b` (after `\n`, `\r` or `\r\n`).
fn line_starts(b: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, c) in b.iter().enumerate() {
        let crlf = *c == b'\r' && b.get(i + 1) == Some(&b'\n');
        if (*c == b'\n' || *c == b'\r') && !crlf {
            starts.push(i + 1);
        }
    }
    starts.retain(|s| *s < b.len());
    starts
}

/// Where the value of an `id:` line starting at `s` begins.
fn id_value(b: &[u8], s: usize) -> Option<usize> {
    let rest = b[s..].strip_prefix(b"id:")?;
    Some(s + 3 + usize::from(rest.first() == Some(&b' ')))
}

/// `b` with Warden's session MAC (`<22 base64url characters>.`) taken out of every `id:` value,
/// and how many carried one.
fn unbind_ids(b: &[u8]) -> (Vec<u8>, usize) {
    let (mut out, mut at, mut n) = (Vec::with_capacity(b.len()), 0, 0);
    for s in line_starts(b) {
        let Some(v) = id_value(b, s) else { continue };
        let mac = b.get(v..v + 23);
        if mac.is_some_and(|m| {
            m[22] == b'.'
                && m[..22]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        }) {
            out.extend_from_slice(&b[at..v]);
            at = v + 23;
            n += 1;
        }
    }
    out.extend_from_slice(&b[at..]);
    (out, n)
}

/// The `id:` lines of `b` with a value.
fn nonempty_ids(b: &[u8]) -> usize {
    line_starts(b)
        .into_iter()
        .filter_map(|s| id_value(b, s))
        .filter(|v| !matches!(b.get(*v), None | Some(b'\n' | b'\r')))
        .count()
}

/// P1.1, J2, J3: byte-for-byte relay of everything Warden does not act on, for client requests
/// (tools/call, resources/read, custom methods), notifications, client responses, server JSON
/// responses, server SSE streams (priming event, `retry:`, ids, notification and server→client
/// request before the final response) and the GET stream, in both generations.
#[test]
fn what_warden_does_not_act_on_passes_byte_for_byte() {
    let env = start();
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(parts(), MATRIX.len());
    let result = runner.run(&strategy, |case| {
        for (p, (generation, what, answer)) in case.iter().zip(MATRIX) {
            let ex = build(p, generation, what, answer, &env.sid);
            run_exchange(&env, &ex)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let mut w = env.w;
    assert!(w.proc.is_running(), "warden still running");
    let audit = w.audit();
    assert!(
        !audit.iter().any(|e| e["decision"] == "deny"),
        "nothing was refused: {:?}",
        audit
            .iter()
            .filter(|e| e["decision"] == "deny")
            .collect::<Vec<_>>()
    );
}
