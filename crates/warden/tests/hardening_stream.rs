//! Streamed answers and stream resumption through `warden serve` (issue #13, items 18 and 19),
//! against a small HTTP upstream written here: it streams newline-delimited JSON slowly, answers
//! SSE with event ids, and records every request (so every `Last-Event-ID` it was sent).
//!
//! * #13 item 19 (protocol fidelity; spec checklist F15; P4.3): a `subscriptions/listen` answered
//!   as chunked NDJSON under `application/json` reaches the client message by message as the
//!   upstream writes it; each message goes through the guards and is bounded by
//!   `limits.max_upstream_message_bytes` on its own; a chunked single JSON body stays one body,
//!   byte for byte.
//! * #13 item 18 (P8.2, M2; spec checklist E7, E11): the SSE event ids a session gets are bound to
//!   it (and to the upstream); a `Last-Event-ID` goes upstream only as the upstream's own id and
//!   only from the session it was given to. Raw upstream ids, another session's ids, forgeries and
//!   repeated headers are refused 400 `last_event_id_unknown`, audited, and never reach the
//!   upstream; a POST never carries `Last-Event-ID` upstream.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

#[path = "hardening_stream/upstream.rs"]
mod upstream;

use std::time::Duration;

use serde_json::{Value, json};
use support::attack::{assert_security_headers, audit_with, glimpse};
use support::client::{Reply, request};
use support::tiny::{ACCEPT, JSON, open_session, rpc_raw};
use support::{Warden, upstream_http};
use upstream::{ACK, CHANGED, LISTEN_PAUSE, META, Upstream, lines, padded_note, result, watch};

// ---------------------------------------------------------------------------------------------
// #13 item 19: streamed non-SSE bodies.

/// #13 item 19 (spec checklist F15; the conformance scenario `server-stateless`): a 2026-07-28
/// `subscriptions/listen` answered as chunked NDJSON under `application/json` reaches the client
/// as it arrives. The upstream writes the acknowledgement at once and its next message 3 s later;
/// directly and through Warden the acknowledgement is there well before that pause ends (it used
/// to arrive only when the upstream ended the body, and then as a 502). Both messages arrive
/// byte for byte, one per line, under the upstream's status and content type, and the stream is
/// audited as allowed.
#[test]
fn a_listen_stream_of_ndjson_reaches_the_client_as_it_comes() {
    let up = Upstream::start();
    let w = Warden::start(&upstream_http("streamer", &up.url, None));
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":"listen-1","method":"subscriptions/listen","params":{{{META},"notifications":{{"toolsListChanged":true}}}}}}"#
    );
    let headers = [
        JSON,
        ACCEPT,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "subscriptions/listen"),
    ];
    let window = LISTEN_PAUSE + Duration::from_secs(3);
    let direct_port: u16 = up
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/mcp")
        .parse()
        .unwrap();
    let direct = watch(direct_port, &headers, &body, "acknowledged", window);
    assert!(
        direct.needle_at.is_some_and(|t| t < Duration::from_secs(1)),
        "control: the upstream itself streams the acknowledgement at once: {:?}",
        direct.needle_at
    );

    let through = watch(w.port, &headers, &body, "acknowledged", window);
    assert_eq!(
        through.status,
        200,
        "{} {}",
        through.head,
        String::from_utf8_lossy(&through.body)
    );
    let ack_at = through.needle_at.expect("the acknowledgement arrived");
    assert!(
        ack_at < LISTEN_PAUSE - Duration::from_millis(1500),
        "the acknowledgement came {ack_at:?} after the request: held back until the upstream's next message"
    );
    assert!(
        through.head.contains("content-type: application/json"),
        "{}",
        through.head
    );
    assert!(
        through.head.contains("x-content-type-options: nosniff"),
        "{}",
        through.head
    );
    assert_eq!(
        through.body,
        direct.body,
        "each message byte for byte, one per line:\n{}",
        String::from_utf8_lossy(&through.body)
    );
    assert_eq!(
        String::from_utf8_lossy(&through.body),
        format!("{ACK}\n{CHANGED}\n")
    );
    let done = w
        .audit()
        .into_iter()
        .filter(|e| e["method"] == "subscriptions/listen" && e["decision"] == "allow")
        .count();
    assert!(done >= 1, "the stream is audited: {:#?}", w.audit());
}

/// #13 item 19 (P4.3, P1.1): a streamed JSON body goes through the guards message by message,
/// and `limits.max_upstream_message_bytes` bounds each message, not the body. With a 2 KB limit,
/// three 1.5 KB messages pass (the body used to be refused whole, 502); the middle one, with
/// duplicate keys, is dropped and audited (`upstream_invalid_response`), the others are relayed
/// byte for byte. A 3 KB message in the middle of a stream ends it with a JSON-RPC error for the
/// request (audited with the request id), after the message before it was relayed.
#[test]
fn a_streamed_json_body_is_guarded_and_bounded_message_by_message() {
    let up = Upstream::start();
    let w = Warden::start(&format!(
        "[limits]\nmax_upstream_message_bytes = 2048\n\n{}",
        upstream_http("streamer", &up.url, None)
    ));
    let sid = open_session(w.port);
    let call = |id: u64, name: &str| {
        rpc_raw(
            w.port,
            &sid,
            &format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
            ),
        )
    };

    let r = call(7, "many");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_security_headers(&r, "many");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.text(),
        format!(
            "{}\n{}\n",
            padded_note(1500),
            result(&json!(7), &"r".repeat(1500))
        ),
        "the valid messages byte for byte, the duplicate-key one dropped"
    );
    let dropped = audit_with(&w, "upstream_invalid_response", 1);
    assert_eq!(dropped.len(), 1, "{dropped:#?}");
    assert_eq!(dropped[0]["decision"], "deny", "{}", dropped[0]);

    let r = call(8, "huge");
    assert_eq!(r.status, 200, "the stream had begun: {}", r.text());
    let got = lines(&r.body);
    assert_eq!(got.len(), 2, "{}", r.text());
    assert_eq!(got[0]["params"]["data"], "p".repeat(10), "{}", r.text());
    assert_eq!(got[1]["id"], 8, "{}", r.text());
    assert_eq!(
        got[1]["error"]["data"]["reason"],
        "upstream_invalid_response",
        "{}",
        r.text()
    );
    assert!(
        got[1]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("2048")),
        "{}",
        r.text()
    );
    assert!(
        !r.text().contains("never"),
        "nothing after the oversize message: {}",
        r.text()
    );
    let refused = audit_with(&w, "upstream_invalid_response", 2);
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert_eq!(refused[1]["decision"], "deny", "{}", refused[1]);
}

/// #13 item 19, the other side: a JSON answer sent chunked is still one body, relayed byte for
/// byte (odd spacing, trailing newline) as `application/json` — streaming changes nothing for it.
#[test]
fn a_chunked_single_json_body_stays_one_body_byte_for_byte() {
    let up = Upstream::start();
    let w = Warden::start(&upstream_http("streamer", &up.url, None));
    let sid = open_session(w.port);
    let r = rpc_raw(
        w.port,
        &sid,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"pretty","arguments":{}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "{ \"jsonrpc\" : \"2.0\" ,\n  \"id\" : 5,  \"result\" : {\"content\":[{\"type\":\"text\",\"text\":\"pretty\"}]}\n}\n"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
}

// ---------------------------------------------------------------------------------------------
// #13 item 18: event ids bound to the session.

/// The `id:` values of an SSE body.
fn ids_of(sse: &str) -> Vec<String> {
    support::attack::sse_event_ids(sse)
}

/// A GET that resumes after `last` (each header once unless `twice`).
fn resume(w: &Warden, sid: &str, last: &str, twice: bool) -> support::attack::Glimpse {
    let mut h = vec![
        ("accept", "text/event-stream"),
        ("mcp-session-id", sid),
        ("mcp-protocol-version", "2025-11-25"),
        ("last-event-id", last),
    ];
    if twice {
        h.push(("last-event-id", last));
    }
    glimpse(None, w.port, "GET", &h, Duration::from_millis(1500))
}

/// The refusal of a foreign `Last-Event-ID`: 400, JSON-RPC -32600, reason, hint, audited.
fn assert_unknown_id(w: &Warden, g: &support::attack::Glimpse, n: usize, label: &str) {
    assert_eq!(g.status, Some(400), "{label}: {}", g.text());
    let v: Value =
        serde_json::from_slice(&g.body).unwrap_or_else(|e| panic!("{label}: {e}: {}", g.text()));
    assert_eq!(v["error"]["code"], -32600, "{label}: {v}");
    assert_eq!(
        v["error"]["data"]["reason"], "last_event_id_unknown",
        "{label}: {v}"
    );
    assert!(
        v["error"]["data"]["hint"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{label}: {v}"
    );
    let events = audit_with(w, "last_event_id_unknown", n);
    assert_eq!(
        events.len(),
        n,
        "{label}: one audit event each: {events:#?}"
    );
    let last = &events[n - 1];
    assert_eq!(last["decision"], "deny", "{label}: {last}");
    assert_eq!(last["control"], "P8.2", "{label}: {last}");
    assert_eq!(last["status"], 400, "{label}: {last}");
}

/// #13 item 18 (P8.2, M2; E7, E11), one upstream: session A's SSE event ids come bound to A
/// (`<mac>.<upstream id>`, the rest of each block byte for byte) and A resumes with them: the
/// upstream gets its own id back. Session B (same client address) presenting A's id, anyone
/// presenting the upstream's raw id, a forgery (A's MAC on another id) and a repeated header are
/// each refused 400 `last_event_id_unknown` and audited, and none reaches the upstream (it used
/// to get every one of them verbatim). A POST carrying `Last-Event-ID` does not forward it.
#[test]
fn event_ids_resume_only_the_session_they_were_given_to() {
    let up = Upstream::start();
    let w = Warden::start(&upstream_http("streamer", &up.url, None));
    let sid_a = open_session(w.port);
    let r = rpc_raw(
        w.port,
        &sid_a,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sse","arguments":{}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ids = ids_of(&r.text());
    assert_eq!(ids.len(), 2, "{}", r.text());
    for (id, raw) in ids.iter().zip(["call.1", "call.2"]) {
        assert!(
            id != raw && id.len() == 23 + raw.len() && id.ends_with(&format!(".{raw}")),
            "the client gets a session-bound id, not the upstream's {raw}: {id}"
        );
    }
    let upstream_body = format!(
        "id: call.1\nevent: message\ndata: {}\n\nid: call.2\nevent: message\ndata: {}\n\n",
        padded_note(4),
        result(&json!(2), "live")
    );
    assert_eq!(
        r.text(),
        upstream_body
            .replace("id: call.1", &format!("id: {}", ids[0]))
            .replace("id: call.2", &format!("id: {}", ids[1])),
        "only the id values changed"
    );

    // A resumes: the upstream gets its own id, the replayed event comes bound to A too.
    let g = resume(&w, &sid_a, &ids[0], false);
    assert_eq!(g.status, Some(200), "{}", g.text());
    assert!(g.text().contains("replayed"), "{}", g.text());
    let replayed = g.event_ids();
    assert!(
        replayed.len() == 1 && replayed[0] != "call.2" && replayed[0].ends_with(".call.2"),
        "{replayed:?}"
    );
    assert_eq!(up.last_event_ids(), vec!["call.1".to_owned()]);

    // Attacks: none of these reaches the upstream.
    let sid_b = open_session(w.port);
    let forged = format!("{}call.2", &ids[0][..23]);
    let attacks = [
        ("B presents A's id", sid_b.as_str(), ids[0].as_str(), false),
        (
            "B presents the upstream's raw id",
            sid_b.as_str(),
            "call.1",
            false,
        ),
        (
            "A presents the upstream's raw id",
            sid_a.as_str(),
            "call.1",
            false,
        ),
        (
            "A's MAC on another id",
            sid_a.as_str(),
            forged.as_str(),
            false,
        ),
    ];
    for (n, (label, sid, last, twice)) in attacks.into_iter().enumerate() {
        let g = resume(&w, sid, last, twice);
        assert_unknown_id(&w, &g, n + 1, label);
        assert!(!g.text().contains("replayed"), "{label}: {}", g.text());
        assert_eq!(
            up.last_event_ids(),
            vec!["call.1".to_owned()],
            "{label}: forwarded"
        );
    }

    // A repeated header is refused before any guard reads it (#13 item 6), never forwarded.
    let g = resume(&w, &sid_a, &ids[0], true);
    assert_eq!(g.status, Some(400), "{}", g.text());
    assert!(g.text().contains("header_repeated"), "{}", g.text());
    assert_eq!(up.last_event_ids(), vec!["call.1".to_owned()]);

    // A POST never carries Last-Event-ID upstream.
    let r: Reply = request(
        w.port,
        "POST",
        "/mcp",
        &[
            JSON,
            ACCEPT,
            ("mcp-session-id", &sid_a),
            ("mcp-protocol-version", "2025-11-25"),
            ("last-event-id", "call.1"),
        ],
        br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"plain","arguments":{}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.last_event_ids(),
        vec!["call.1".to_owned()],
        "POST forwarded Last-Event-ID"
    );
}

/// #13 item 18 with several upstreams: ids are bound to the session and the upstream they came
/// from. A's own id resumes at that upstream only; the tagged id without Warden's MAC (what
/// clients used to be handed) is refused and reaches neither upstream.
#[test]
fn with_several_upstreams_an_event_id_resumes_only_at_its_own_upstream() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let w = Warden::start(&format!(
        "{}\n{}",
        upstream_http("a", &a.url, Some("a")),
        upstream_http("b", &b.url, Some("b"))
    ));
    let sid = open_session(w.port);
    let r = rpc_raw(
        w.port,
        &sid,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a_sse","arguments":{}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ids = ids_of(&r.text());
    assert_eq!(ids.len(), 2, "{}", r.text());
    assert!(
        ids[0].ends_with("call.1") && ids[0].len() > 23 + 6,
        "{ids:?}"
    );

    let g = resume(&w, &sid, &ids[0], false);
    assert_eq!(g.status, Some(200), "{}", g.text());
    assert!(g.text().contains("replayed"), "{}", g.text());
    assert_eq!(a.last_event_ids(), vec!["call.1".to_owned()]);
    assert!(b.last_event_ids().is_empty(), "{:?}", b.last_event_ids());

    let unsealed = &ids[0][23..];
    let g = resume(&w, &sid, unsealed, false);
    assert_unknown_id(&w, &g, 1, "the tagged id without the MAC");
    assert_eq!(a.last_event_ids(), vec!["call.1".to_owned()]);
    assert!(b.last_event_ids().is_empty(), "{:?}", b.last_event_ids());
}
