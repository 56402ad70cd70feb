//! Shared plumbing of the attack tests (`hostile_input.rs`, `hostile_sessions.rs`): an `Arena`
//! (one Warden in front of a recording upstream) that checks each refusal exactly (status,
//! JSON-RPC code, reason, hint, security headers, one `deny` audit event with its control, nothing
//! forwarded) and Warden's health afterwards, plus raw-socket readers for answers the ordinary
//! client cannot wait for (stalled bodies, never-ending SSE streams).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{Reply, request, request_from};
use super::recorder::{Canned, Recorded, Recorder};
use super::{Warden, port_in, upstream_http};

pub const OTHER_CLIENT: [u8; 4] = [127, 0, 0, 2];

pub fn init_body(tag: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"{tag}","version":"1"}}}}}}"#
    )
}

/// A well-behaved upstream: initialize opens an upstream session, requests get an empty result,
/// everything else is accepted.
pub fn upstream(r: &Recorded) -> Canned {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    match (&v["method"], &v["id"]) {
        (Value::String(m), id) if m == "initialize" => Canned::json(
            json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"rec","version":"0"}}})
                .to_string(),
        )
        .with_header("mcp-session-id", "upstream-session"),
        (Value::String(_), id) if !id.is_null() => {
            Canned::json(json!({"jsonrpc":"2.0","id":id,"result":{}}).to_string())
        }
        _ => Canned::accepted(),
    }
}

/// What a refusal must look like.
pub struct Expect {
    pub status: u16,
    pub code: i64,
    pub reason: &'static str,
    pub control: &'static str,
    /// The JSON-RPC id the error must echo (`null` when the request could not be read).
    pub id: Value,
}

pub fn expect(status: u16, code: i64, reason: &'static str, control: &'static str) -> Expect {
    Expect {
        status,
        code,
        reason,
        control,
        id: Value::Null,
    }
}

impl Expect {
    pub fn id(mut self, id: Value) -> Self {
        self.id = id;
        self
    }
}

/// One Warden, one recording upstream, and the refusals triggered so far.
pub struct Arena {
    pub w: Warden,
    pub up: Recorder,
    pub tally: BTreeMap<&'static str, usize>,
    /// Requests the upstream is allowed to have seen so far.
    pub allowed_upstream: usize,
}

pub const JSON_HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

impl Arena {
    pub fn start(extra_config: &str) -> Arena {
        let up = Recorder::start(upstream);
        let w = Warden::start(&format!(
            "{extra_config}\n{}",
            upstream_http("rec", &up.url, None)
        ));
        Arena {
            w,
            up,
            tally: BTreeMap::new(),
            allowed_upstream: 0,
        }
    }

    pub fn post_from(&self, src: Option<[u8; 4]>, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut all: Vec<(&str, &str)> = JSON_HEADERS.to_vec();
        all.retain(|(k, _)| !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)));
        all.extend_from_slice(headers);
        request_from(src, self.w.port, "POST", "/mcp", &all, body)
    }

    pub fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.post_from(None, headers, body)
    }

    /// A session the way a client opens it (initialize + initialized); the upstream sees both,
    /// then the standalone GET stream Warden opens for the session.
    pub fn open_session(&mut self, src: Option<[u8; 4]>, tag: &str) -> String {
        let r = self.post_from(src, &[], init_body(tag).as_bytes());
        assert_eq!(r.status, 200, "initialize ({tag}): {}", r.text());
        assert_security_headers(&r, tag);
        let sid = r.header("mcp-session-id").expect("session id").to_owned();
        let note = self.post_from(
            src,
            &[
                ("mcp-session-id", &sid),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!(note.status, 202, "initialized ({tag}): {}", note.text());
        assert_security_headers(&note, tag);
        // Warden's own third request: it opens the upstream's standalone GET stream as the
        // session starts, so no server request is lost before the client's GET.
        let seen = self.up.requests();
        assert!(
            seen.last().is_some_and(|r| r.method == "GET"
                && r.body.is_empty()
                && r.header("accept") == Some("text/event-stream")
                && r.header("mcp-session-id") == Some("upstream-session")),
            "{tag}: initialized is followed by Warden's upstream GET stream: {seen:?}"
        );
        self.allowed_upstream += 3;
        self.assert_upstream_count(tag);
        sid
    }

    pub fn assert_upstream_count(&self, label: &str) {
        assert_eq!(
            self.up.requests().len(),
            self.allowed_upstream,
            "{label}: the upstream saw an unexpected number of requests: {:?}",
            self.up.bodies()
        );
    }

    /// The reply is the expected refusal, it is audited, and nothing reached the upstream.
    /// `marker` is a string only this attack's body contains.
    pub fn refused(&mut self, marker: &str, reply: &Reply, e: Expect) {
        assert_eq!(
            reply.status,
            e.status,
            "{marker}: status; body {}",
            reply.text()
        );
        assert_security_headers(reply, marker);
        assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{marker}: a refusal is a JSON-RPC error: {:?}",
            reply.headers
        );
        let v: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|err| panic!("{marker}: body is not JSON ({err}): {}", reply.text()));
        assert_eq!(v["jsonrpc"], "2.0", "{marker}: {v}");
        assert_eq!(
            v["id"], e.id,
            "{marker}: the error echoes the request id: {v}"
        );
        assert_eq!(v["error"]["code"], e.code, "{marker}: JSON-RPC code: {v}");
        assert_eq!(
            v["error"]["data"]["reason"], e.reason,
            "{marker}: reason: {v}"
        );
        assert!(
            v["error"]["data"]["hint"]
                .as_str()
                .is_some_and(|h| !h.trim().is_empty()),
            "{marker}: a non-empty hint: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{marker}: a message: {v}"
        );
        let n = {
            let c = self.tally.entry(e.reason).or_default();
            *c += 1;
            *c
        };
        let events = audit_with(&self.w, e.reason, n);
        assert_eq!(
            events.len(),
            n,
            "{marker}: one audit event per '{}' refusal: {events:#?}",
            e.reason
        );
        let last = events.last().expect("an event");
        assert_eq!(last["decision"], "deny", "{marker}: {last}");
        assert_eq!(last["kind"], "mcp.refusal", "{marker}: {last}");
        assert_eq!(last["control"], e.control, "{marker}: control: {last}");
        assert_eq!(last["status"], e.status, "{marker}: {last}");
        assert_eq!(last["rpc_code"], e.code, "{marker}: {last}");
        assert!(
            last["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "{marker}: audit hint: {last}"
        );
        self.assert_upstream_count(marker);
        assert!(
            !self
                .up
                .requests()
                .iter()
                .any(|r| contains(&r.body, marker.as_bytes())),
            "{marker}: the attack's body reached the upstream"
        );
    }

    /// Warden is still up, still serves, and `/metrics` counts every refusal by reason.
    pub fn assert_healthy(&mut self, src: Option<[u8; 4]>) {
        assert!(
            self.w.proc.is_running(),
            "warden died: {}",
            self.w.proc.stderr_now()
        );
        let r = self.post_from(src, &[], init_body("health-check").as_bytes());
        assert_eq!(
            r.status,
            200,
            "a valid initialize still works: {}",
            r.text()
        );
        assert_eq!(r.json()["result"]["serverInfo"]["name"], "rec");
        self.allowed_upstream += 1;
        self.assert_upstream_count("health check");
        let admin = self.w.admin.as_deref().expect("admin listener");
        let m = request(port_in(admin), "GET", "/metrics", &[], b"");
        assert_eq!(m.status, 200, "/metrics answers");
        let text = m.text();
        for (reason, n) in &self.tally {
            let needle = format!("warden_refusals_total{{reason=\"{reason}\"}} ");
            let got = text
                .lines()
                .find_map(|l| l.strip_prefix(&needle))
                .and_then(|v| v.trim().parse::<f64>().ok());
            assert_eq!(
                got,
                Some(*n as f64),
                "warden_refusals_total for {reason}; metrics:\n{text}"
            );
        }
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// P8.4: every response carries `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`.
pub fn assert_security_headers(r: &Reply, label: &str) {
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{label}: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("cache-control"),
        Some("no-store"),
        "{label}: {:?}",
        r.headers
    );
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "{label}: no CORS grant: {:?}",
        r.headers
    );
}

/// Audit events with `reason`, waiting (bounded) until `n` of them were written.
pub fn audit_with(w: &Warden, reason: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = w.audit_reason(reason);
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
    }
}

/// A `Reply` from what [`read_response`] read.
pub fn raw_reply((status, head, body): (u16, String, Vec<u8>)) -> Reply {
    Reply {
        status,
        headers: head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect(),
        body,
    }
}

/// Read one HTTP response from a raw stream (bounded by `limit`); `None` if the peer closed or
/// stalled without answering.
pub fn read_response(s: &mut TcpStream, limit: Duration) -> Option<(u16, String, Vec<u8>)> {
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                return Some((status, head, raw[end + 4..end + 4 + len].to_vec()));
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// What a client saw of a streaming answer within a time window (an SSE stream may never end).
#[derive(Debug)]
pub struct Glimpse {
    /// `None` when no complete HTTP head arrived within the window.
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    /// The body so far, de-chunked (a chunk cut off by the window is kept as far as it came).
    pub body: Vec<u8>,
    /// Warden ended the response before the window closed.
    pub ended: bool,
}

impl Glimpse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The SSE event ids seen, in order.
    pub fn event_ids(&self) -> Vec<String> {
        sse_event_ids(&self.text())
    }
}

/// The values of the `id:` lines of an SSE body.
pub fn sse_event_ids(sse: &str) -> Vec<String> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|v| v.strip_prefix(' ').unwrap_or(v).to_owned())
        .collect()
}

/// Send one request from `src` (None: the OS picks) and read its answer for at most `window`,
/// with short socket read timeouts, then drop the connection. For streams the ordinary client
/// (which reads to EOF) would wait on for ever.
pub fn glimpse(
    src: Option<[u8; 4]>,
    port: u16,
    method: &str,
    headers: &[(&str, &str)],
    window: Duration,
) -> Glimpse {
    let mut s: TcpStream = super::client::connect_from(src, port);
    let mut head = format!("{method} /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).expect("write head");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + window;
    let (mut raw, mut buf, mut ended) = (Vec::new(), [0u8; 4096], false);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                ended = true;
                break;
            }
        }
    }
    drop(s);
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Glimpse {
            status: None,
            headers: Vec::new(),
            body: raw,
            ended,
        };
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|v| v.parse().ok());
    let headers = raw_reply((0, head, Vec::new())).headers;
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let rest = &raw[end + 4..];
    Glimpse {
        status,
        headers,
        body: if chunked {
            dechunk_partial(rest)
        } else {
            rest.to_vec()
        },
        ended,
    }
}

/// De-chunk what arrived of a chunked body; a last chunk cut short is kept as far as it came.
fn dechunk_partial(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..nl]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        b = &b[nl + 2..];
        if size == 0 {
            break;
        }
        let take = size.min(b.len());
        out.extend_from_slice(&b[..take]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}
