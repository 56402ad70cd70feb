//! Resumable SSE streams for upstreams that have none of their own (stdio), in the session-based
//! generation (E7, E8): Warden numbers each event `<stream>.<seq>`, sends a priming event (id, empty
//! data, `retry:`) first, and keeps each stream's events so a client that lost its connection can
//! resume with GET + `Last-Event-ID`. The log belongs to one session, which belongs to one owner:
//! an event id can only ever replay its own stream of its own session — never another stream,
//! session or user. Memory is bounded per session; the oldest finished streams go first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;
use warden_proto::sse;

/// Bytes of events one session may keep.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Streams one session may keep.
pub const MAX_STREAMS: usize = 256;
/// The reconnection delay Warden advises (ms).
pub const RETRY_MS: u64 = 1000;

#[derive(Default)]
struct StreamLog {
    events: Vec<(u64, Bytes)>,
    done: bool,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    next: u64,
    streams: HashMap<u64, StreamLog>,
    order: VecDeque<u64>,
    bytes: usize,
}

#[derive(Default)]
pub struct EventLog {
    inner: Mutex<Inner>,
    changed: Notify,
}

/// Parse `<stream>.<seq>`.
pub fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    let (s, n) = id.trim().split_once('.')?;
    Some((s.parse().ok()?, n.parse().ok()?))
}

impl EventLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a stream; its priming event is logged as seq 0.
    pub fn open(&self) -> u64 {
        let mut g = self.lock();
        g.next += 1;
        let id = g.next;
        let priming = sse::encode(Some(&format!("{id}.0")), None, Some(RETRY_MS), Some(""));
        g.bytes += priming.len();
        g.streams.insert(
            id,
            StreamLog {
                events: vec![(0, priming.clone())],
                done: false,
                bytes: priming.len(),
            },
        );
        g.order.push_back(id);
        Self::evict(&mut g);
        drop(g);
        self.changed.notify_waiters();
        id
    }

    /// Log one message on `stream`.
    pub fn push(&self, stream: u64, message: &[u8]) {
        let mut g = self.lock();
        let Some(log) = g.streams.get_mut(&stream) else {
            return;
        };
        let seq = log.events.last().map_or(1, |(s, _)| s + 1);
        let block = sse::encode(
            Some(&format!("{stream}.{seq}")),
            Some("message"),
            None,
            std::str::from_utf8(message).ok(),
        );
        log.bytes += block.len();
        let added = block.len();
        log.events.push((seq, block));
        g.bytes += added;
        Self::evict(&mut g);
        drop(g);
        self.changed.notify_waiters();
    }

    /// The stream will get no more events.
    pub fn finish(&self, stream: u64) {
        if let Some(log) = self.lock().streams.get_mut(&stream) {
            log.done = true;
        }
        self.changed.notify_waiters();
    }

    /// Events of `stream` after `seq` (all when `None`), and whether the stream is finished.
    /// `None` when the stream is unknown (never this session's, or evicted).
    pub fn after(&self, stream: u64, seq: Option<u64>) -> Option<(Vec<(u64, Bytes)>, bool)> {
        let g = self.lock();
        let log = g.streams.get(&stream)?;
        let events = log
            .events
            .iter()
            .filter(|(s, _)| seq.is_none_or(|after| *s > after))
            .cloned()
            .collect();
        Some((events, log.done))
    }

    /// A future that resolves when something is logged or a stream finishes. Create it before
    /// reading with [`Self::after`], so no change between the read and the wait is missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn evict(g: &mut Inner) {
        while (g.bytes > MAX_BYTES || g.order.len() > MAX_STREAMS) && !g.order.is_empty() {
            // The oldest finished stream goes first; failing that, the oldest of all.
            let pos = g
                .order
                .iter()
                .position(|s| g.streams.get(s).is_some_and(|l| l.done))
                .unwrap_or(0);
            let Some(victim) = g.order.remove(pos) else {
                break;
            };
            if let Some(l) = g.streams.remove(&victim) {
                g.bytes -= l.bytes;
            }
        }
    }
}

/// The events of `stream` of `log` after `after`, then the stream as it goes on, until it
/// finishes: already-encoded SSE blocks (with a keep-alive comment every 15 s of quiet).
pub fn follow(
    log: std::sync::Arc<EventLog>,
    stream: u64,
    after: Option<u64>,
) -> tokio::sync::mpsc::Receiver<Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut cursor = after;
        loop {
            let wake = log.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let Some((events, done)) = log.after(stream, cursor) else {
                return;
            };
            for (seq, block) in events {
                if tx.send(block).await.is_err() {
                    return;
                }
                cursor = Some(seq);
            }
            if done {
                return;
            }
            tokio::select! {
                _ = &mut wake => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_primes_replays_and_bounds() {
        let log = EventLog::default();
        let a = log.open();
        let b = log.open();
        log.push(a, br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#);
        log.push(b, br#"{"other":"stream"}"#);
        log.push(a, br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        log.finish(a);
        let (all, done) = log.after(a, None).unwrap();
        assert!(done);
        assert_eq!(all.len(), 3);
        assert!(
            std::str::from_utf8(&all[0].1)
                .unwrap()
                .starts_with(&format!("id: {a}.0\nretry: 1000\ndata: \n"))
        );
        let (rest, _) = log.after(a, Some(1)).unwrap();
        assert_eq!(rest.len(), 1, "resumes after the given event only");
        assert!(
            rest.iter()
                .all(|(_, b)| !String::from_utf8_lossy(b).contains("other")),
            "never another stream's events"
        );
        assert!(log.after(99, None).is_none());
        assert_eq!(parse_event_id("3.7"), Some((3, 7)));
        assert_eq!(parse_event_id("x.7"), None);
        for _ in 0..(MAX_STREAMS + 10) {
            let s = log.open();
            log.finish(s);
        }
        assert!(log.lock().order.len() <= MAX_STREAMS);
    }
}
