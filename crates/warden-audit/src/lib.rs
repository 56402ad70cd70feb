//! # warden-audit
//!
//! Owns the one audit event stream (P5.1): the [`AuditEvent`] every request, response summary and
//! refusal becomes, and the sinks that write it as JSON lines. Guards added later put their own
//! facts in [`AuditEvent::facts`] without changing this type.
//!
//! It must not block the async runtime (the file sink writes on its own thread), must never write
//! payloads or secrets (events carry names, codes and sizes, not message bodies; session ids are
//! fingerprinted), and must never drop an event silently: a full queue is counted and logged.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

/// What Warden decided about one message or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Relayed.
    Allow,
    /// Refused by a guard or a protocol rule.
    Deny,
    /// Failed for a reason outside the caller's control (upstream down, timeout).
    Error,
    /// Informational: a lifecycle event (session opened/closed, upstream restarted).
    Info,
}

/// Warden's id for one HTTP request or stdio message: a process-wide counter, written `r<hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{:x}", self.0)
    }
}

impl Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// RFC 3339 with milliseconds, UTC; formatted when the event is written, off the request path.
fn rfc3339_millis<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

/// One audit event. Field names are stable: SIEM queries are written against them.
///
/// Text that repeats across events (client, session fingerprint, upstream, tool) is shared
/// (`Arc<str>`) and method names are static where known, so building an event on the request
/// path copies no strings.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// RFC 3339 time with milliseconds, UTC.
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: SystemTime,
    /// Stable event kind, e.g. `mcp.request`, `mcp.refusal`, `session.open`, `upstream.exit`.
    pub kind: &'static str,
    /// Warden's id for the HTTP request or stdio message this event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// Fingerprint of the downstream session (never the session id itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<Arc<str>>,
    /// The JSON-RPC id as sent (truncated to 64 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jsonrpc_id: Option<String>,
    pub decision: Decision,
    /// Stable machine-readable reason for a refusal or error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The REQUIREMENTS.md control behind the decision, e.g. `P1.1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<&'static str>,
    /// Human explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// HTTP status answered, where there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// JSON-RPC error code answered, where there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Size in bytes of the message the event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Facts added by guards (risk, policy ids, detector hits…), keyed by guard.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<&'static str, serde_json::Value>,
}

impl AuditEvent {
    pub fn new(kind: &'static str, decision: Decision) -> Self {
        Self {
            time: SystemTime::now(),
            kind,
            request_id: None,
            session: None,
            client: None,
            subject: None,
            upstream: None,
            method: None,
            tool: None,
            jsonrpc_id: None,
            decision,
            reason: None,
            control: None,
            hint: None,
            status: None,
            rpc_code: None,
            latency_us: None,
            bytes: None,
            facts: BTreeMap::new(),
        }
    }
}

/// Where audit events go.
pub trait AuditSink: Send + Sync {
    fn emit(&self, event: AuditEvent);
    /// Events that could not be written (queue full, write failure).
    fn lost(&self) -> u64 {
        0
    }
}

/// Appends JSON lines to a file (or stderr) from a dedicated thread.
pub struct JsonLinesSink {
    tx: SyncSender<Box<AuditEvent>>,
    lost: Arc<AtomicU64>,
}

/// How often the writer thread drains the queue. Emitters never wake it: a queue drained on a
/// timer costs the request path one lock-free push instead of a futex wake per event.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(5);
/// Events the queue holds before `emit` counts them lost (boxed: 8 bytes a slot).
const QUEUE: usize = 65_536;

impl JsonLinesSink {
    /// Open `path` for appending (`-` means stderr) and start the writer thread.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stderr())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        };
        let (tx, rx) = sync_channel(QUEUE);
        let lost = Arc::new(AtomicU64::new(0));
        let lost2 = lost.clone();
        std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || write_loop(rx, out, &lost2))?;
        Ok(Self { tx, lost })
    }
}

fn write_loop(rx: Receiver<Box<AuditEvent>>, out: Box<dyn Write + Send>, lost: &AtomicU64) {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, out);
    loop {
        let mut wrote = false;
        let mut closed = false;
        loop {
            match rx.try_recv() {
                Ok(ev) => {
                    let ok = serde_json::to_writer(&mut out, &*ev).is_ok()
                        && out.write_all(b"\n").is_ok();
                    if !ok {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                    wrote = true;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if wrote && out.flush().is_err() {
            lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!("audit sink: flush failed");
        }
        if closed {
            return;
        }
        std::thread::sleep(DRAIN_EVERY);
    }
}

impl AuditSink for JsonLinesSink {
    fn emit(&self, event: AuditEvent) {
        match self.tx.try_send(Box::new(event)) {
            Ok(()) => {}
            Err(TrySendError::Full(ev)) | Err(TrySendError::Disconnected(ev)) => {
                let n = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(
                    lost = n,
                    kind = ev.kind,
                    "audit queue full: event not written"
                );
            }
        }
    }
    fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Keeps events in memory (tests and the in-process query path).
#[derive(Default)]
pub struct MemorySink(pub Mutex<Vec<AuditEvent>>);

impl AuditSink for MemorySink {
    fn emit(&self, event: AuditEvent) {
        if let Ok(mut v) = self.0.lock() {
            v.push(event);
        }
    }
}

impl MemorySink {
    pub fn events(&self) -> Vec<AuditEvent> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_json_line_per_event() {
        let dir = std::env::temp_dir().join(format!("warden-audit-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let sink = JsonLinesSink::open(&dir).unwrap();
        let mut ev = AuditEvent::new("mcp.refusal", Decision::Deny);
        ev.reason = Some("origin_not_allowed".into());
        ev.control = Some("P8.4");
        ev.facts.insert(
            "transport",
            serde_json::json!({"origin": "http://evil.example"}),
        );
        sink.emit(ev);
        let mut ev = AuditEvent::new("mcp.request", Decision::Allow);
        ev.request_id = Some(RequestId(0x2a));
        ev.method = Some("tools/call".into());
        ev.upstream = Some("files".into());
        sink.emit(ev);
        drop(sink);
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&dir).unwrap_or_default();
            if text.lines().count() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["decision"], "deny");
        assert_eq!(lines[0]["reason"], "origin_not_allowed");
        assert_eq!(
            lines[0]["facts"]["transport"]["origin"],
            "http://evil.example"
        );
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["request_id"], "r2a");
        assert_eq!(lines[1]["method"], "tools/call");
        assert_eq!(lines[1]["upstream"], "files");
        let _ = std::fs::remove_file(&dir);
    }
}
