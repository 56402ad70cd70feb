//! # warden-audit
//!
//! Owns the one audit event stream (P5.1): the [`AuditEvent`] every request, response summary and
//! refusal becomes, and the sinks that write it as JSON lines. Guards added later put their own
//! facts in [`AuditEvent::facts`] without changing this type.
//!
//! It must not block the async runtime (the file sink writes on its own thread), must never write
//! payloads or secrets (events carry names, codes and sizes, not message bodies; session ids are
//! fingerprinted), and must never drop an event silently: a full queue is counted and logged.
//!
//! Every field is bounded when an event is written (#13 item 15): text fields to
//! [`MAX_FIELD`] bytes (the hint to [`MAX_HINT`]), cut on a character boundary and marked `…`;
//! guard facts to [`MAX_FACT_TEXT`] bytes a string, [`MAX_FACT_ITEMS`] members a container and
//! [`MAX_FACT_DEPTH`] levels. Whatever a client names (a 60 KB method), one audit line stays a
//! few kilobytes. Events are written by [`LineWriter`]: the bytes the `Serialize` derive defines,
//! more cheaply.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::Thread;
use std::time::{Duration, SystemTime};

use serde::Serialize;

mod bounded;
mod line;
pub use bounded::{MAX_FACT_DEPTH, MAX_FACT_ITEMS, MAX_FACT_TEXT, MAX_FIELD, MAX_HINT, bounded};
use bounded::{facts_bounded, hint_text, text};
pub use line::LineWriter;

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
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    pub session: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    pub client: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    pub upstream: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    pub method: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    pub tool: Option<Arc<str>>,
    /// The JSON-RPC id as sent (truncated to 64 bytes).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    pub jsonrpc_id: Option<String>,
    pub decision: Decision,
    /// Stable machine-readable reason for a refusal or error.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    pub reason: Option<String>,
    /// The REQUIREMENTS.md control behind the decision, e.g. `P1.1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<&'static str>,
    /// Human explanation.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hint_text")]
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
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "facts_bounded"
    )]
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
    /// Write out every event emitted so far and stop; waits at most `within`. Called once, at
    /// shutdown, after the last request has been answered.
    fn close(&self, _within: Duration) {}
}

/// Appends JSON lines to a file (or stderr) from a dedicated thread.
///
/// The writer drains the queue every [`DRAIN_EVERY`] while events arrive and parks when a whole
/// interval brought none, so an idle Warden's audit thread never wakes and a busy one wakes on its
/// own timer: the request path pays a lock-free push, and a futex wake only for the first event
/// after a quiet interval.
pub struct JsonLinesSink {
    /// `None` once closed: `close` takes the sender under the write lock, so no emit can slip an
    /// event into the queue after the writer's last drain.
    tx: RwLock<Option<SyncSender<Box<AuditEvent>>>>,
    shared: Arc<Shared>,
    writer: Thread,
}

/// State the emitters and the writer thread share.
#[derive(Default)]
struct Shared {
    lost: AtomicU64,
    /// The writer is parked with no timeout: the next emitter must unpark it.
    parked: AtomicBool,
    /// Set by the writer once it has written and flushed its last event.
    done: Mutex<bool>,
    done_cv: Condvar,
}

/// How often a busy writer drains the queue, and so the most an event waits in memory.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
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
        let shared = Arc::new(Shared::default());
        let shared2 = shared.clone();
        let handle = std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || write_loop(&rx, out, &shared2))?;
        Ok(Self {
            tx: RwLock::new(Some(tx)),
            shared,
            writer: handle.thread().clone(),
        })
    }

    /// Drop the only sender (waiting for emits in progress) and wake the writer, which drains
    /// the queue until it reports disconnected, flushes and stops.
    fn stop_writer(&self) {
        drop(
            self.tx
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        self.writer.unpark();
    }

    fn count_lost(&self, kind: &'static str) {
        let n = self.shared.lost.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(
            lost = n,
            kind,
            "audit queue full or closed: event not written"
        );
    }
}

fn write_loop(rx: &Receiver<Box<AuditEvent>>, out: Box<dyn Write + Send>, shared: &Shared) {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, out);
    let mut lines = LineWriter::default();
    let mut write = |out: &mut std::io::BufWriter<_>, ev: &AuditEvent| {
        let ok = lines.line(ev).is_ok_and(|line| out.write_all(line).is_ok());
        if !ok {
            shared.lost.fetch_add(1, Ordering::Relaxed);
        }
    };
    let flush = |out: &mut std::io::BufWriter<_>| {
        if out.flush().is_err() {
            shared.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!("audit sink: flush failed");
        }
    };
    loop {
        let mut wrote = 0usize;
        let mut disconnected = false;
        loop {
            match rx.try_recv() {
                Ok(ev) => {
                    write(&mut out, &ev);
                    wrote += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if wrote > 0 {
            flush(&mut out);
        }
        if disconnected {
            // The sender is gone (closed or dropped) and the queue is empty: everything
            // emitted is on disk.
            if let Ok(mut done) = shared.done.lock() {
                *done = true;
            }
            shared.done_cv.notify_all();
            return;
        }
        if wrote > 0 {
            std::thread::park_timeout(DRAIN_EVERY);
            continue;
        }
        // A quiet interval: park until an emitter or `close` unparks us. The flag is raised
        // before the queue is checked once more, and `emit` checks the flag after its push, with
        // a full fence on both sides, so an event can never be left behind a parked writer.
        shared.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        match rx.try_recv() {
            Ok(ev) => {
                shared.parked.store(false, Ordering::Relaxed);
                write(&mut out, &ev);
                flush(&mut out);
                continue;
            }
            Err(TryRecvError::Disconnected) => {
                shared.parked.store(false, Ordering::Relaxed);
                continue;
            }
            Err(TryRecvError::Empty) => {}
        }
        std::thread::park();
        shared.parked.store(false, Ordering::Relaxed);
    }
}

impl AuditSink for JsonLinesSink {
    fn emit(&self, event: AuditEvent) {
        let tx = self
            .tx
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(sender) = tx.as_ref() else {
            drop(tx);
            self.count_lost(event.kind);
            return;
        };
        match sender.try_send(Box::new(event)) {
            Ok(()) => {
                drop(tx);
                fence(Ordering::SeqCst);
                if self.shared.parked.load(Ordering::Relaxed)
                    && self.shared.parked.swap(false, Ordering::Relaxed)
                {
                    self.writer.unpark();
                }
            }
            Err(TrySendError::Full(ev)) | Err(TrySendError::Disconnected(ev)) => {
                drop(tx);
                self.count_lost(ev.kind);
            }
        }
    }
    fn lost(&self) -> u64 {
        self.shared.lost.load(Ordering::Relaxed)
    }
    fn close(&self, within: Duration) {
        self.stop_writer();
        let Ok(done) = self.shared.done.lock() else {
            return;
        };
        let waited = self
            .shared
            .done_cv
            .wait_timeout_while(done, within, |done| !*done);
        if waited.is_ok_and(|(_, t)| t.timed_out()) {
            tracing::error!("audit sink: events still queued at shutdown were not all written");
        }
    }
}

impl Drop for JsonLinesSink {
    /// A dropped sink's writer drains what is queued and stops (without waiting for it).
    fn drop(&mut self) {
        self.stop_writer();
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

    fn temp_log(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("warden-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn lines(path: &Path) -> usize {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
    }

    #[test]
    fn close_writes_every_queued_event_before_it_returns() {
        let path = temp_log("close");
        let sink = JsonLinesSink::open(&path).unwrap();
        for i in 0..5_000 {
            let mut ev = AuditEvent::new("mcp.request", Decision::Allow);
            ev.request_id = Some(RequestId(i));
            sink.emit(ev);
        }
        sink.close(Duration::from_secs(10));
        assert_eq!(lines(&path), 5_000, "events lost at shutdown");
        assert_eq!(sink.lost(), 0);
        // After close, nothing is written and nothing is lost silently: it is counted.
        sink.emit(AuditEvent::new("mcp.request", Decision::Allow));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(lines(&path), 5_000);
        assert_eq!(sink.lost(), 1);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_parked_writer_is_woken_by_the_first_event_after_a_quiet_interval() {
        let path = temp_log("wake");
        let sink = JsonLinesSink::open(&path).unwrap();
        sink.emit(AuditEvent::new("session.open", Decision::Info));
        // Several quiet intervals: the writer parks with no timeout.
        std::thread::sleep(DRAIN_EVERY * 5);
        assert_eq!(lines(&path), 1);
        assert!(
            sink.shared.parked.load(Ordering::SeqCst),
            "idle writer not parked"
        );
        sink.emit(AuditEvent::new("session.close", Decision::Info));
        let mut n = 0;
        for _ in 0..200 {
            n = lines(&path);
            if n == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(n, 2, "the event after a quiet interval was never written");
        drop(sink);
        let _ = std::fs::remove_file(&path);
    }
}
