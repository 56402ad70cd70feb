//! Reading a child's stdout: one bounded line at a time, each JSON-RPC message handed to the
//! request it belongs to, by the rules in the parent module's documentation (responses by id,
//! subscription messages by the listen request's id, progress by token, the rest by who can
//! have caused it). On a shared child a message that cannot be tied to one client's request is
//! dropped and audited, never given to another client.
//!
//! It must not write to the child, start or stop it: the parent module owns the process.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use warden_proto::{Kind, Message};

use super::wire::{self, bounded, put_back};
use super::{BACKLOG, EventHook, Frame, Outbox, Pending, Running};
use crate::upstream::{UpstreamError, same_id};

pub(super) struct Reader {
    pub run: Arc<Running>,
    pub outbox: Arc<Mutex<Outbox>>,
    pub max_line: usize,
    pub on_event: EventHook,
    pub name: String,
    /// A child every stateless client shares (its requests carry Warden's ids and tokens).
    pub shared: bool,
}

type PendingMap = std::collections::HashMap<String, Pending>;

impl Reader {
    pub async fn run(self, stdout: impl AsyncRead + Unpin) {
        let mut reader = BufReader::with_capacity(64 * 1024, stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_bounded_line(&mut reader, &mut line, self.max_line).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // A line over the limit (#13 item 12): it cannot be read, so every request
                    // open on this child gets an error (one of them was its answer), the event is
                    // audited, and relaying goes on with the next line.
                    let open: Vec<Pending> = {
                        let mut p = self.run.pending.lock().unwrap_or_else(|p| p.into_inner());
                        p.drain().map(|(_, p)| p).collect()
                    };
                    (self.on_event)(
                        "upstream.message_too_large",
                        format!(
                            "{}: {e}; {} open request(s) answered with an error",
                            self.name,
                            open.len()
                        ),
                    );
                    for p in open {
                        let _ = p.tx.try_send(Err(UpstreamError::Invalid(format!(
                            "the server sent a message over the {} byte limit",
                            self.max_line
                        ))));
                    }
                    if skip_line(&mut reader).await.is_err() {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    (self.on_event)("upstream.protocol_error", format!("{}: {e}", self.name));
                    break;
                }
            }
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() {
                continue;
            }
            self.route(Bytes::copy_from_slice(trimmed));
        }
        self.run.alive.store(false, Ordering::Relaxed);
    }

    fn route(&self, raw: Bytes) {
        let Ok(msg) = Message::parse(&raw) else {
            (self.on_event)(
                "upstream.invalid_message",
                format!("{}: dropped a line that is not JSON-RPC", self.name),
            );
            return;
        };
        let mut pending = self.run.pending.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(msg.kind(), Kind::Response | Kind::Error) {
            let key = msg.id_text().map(str::to_owned).unwrap_or_default();
            let Some(p) = pending.remove(&key) else {
                drop(pending);
                (self.on_event)(
                    "upstream.unmatched_response",
                    format!(
                        "{}: response to unknown id {}",
                        self.name,
                        bounded(&key, 64)
                    ),
                );
                return;
            };
            let out = match (&p.client_id, msg.id_span()) {
                (Some(cid), Some(span)) => put_back(&raw, span, cid.as_bytes()),
                _ => raw.clone(),
            };
            let _ = p.tx.try_send(Ok(Frame::message(out)));
            return;
        }
        // A notification stamped with a subscription id belongs to that `subscriptions/listen`
        // stream; the id is the listen request's (Warden's, when remapped: give back the client's).
        if let Some((sub_key, span)) = wire::subscription_id(&msg)
            && let Some(p) = pending.get(&sub_key)
        {
            let out = match &p.client_id {
                Some(cid) => put_back(&raw, span, cid.as_bytes()),
                None => raw.clone(),
            };
            let _ = p.tx.try_send(Ok(Frame::message(out)));
            return;
        }
        if self.shared {
            self.route_shared(&msg, &raw, pending);
        } else {
            self.route_own(&msg, raw.clone(), pending);
        }
    }

    /// A child of one session: progress by token, else the newest open request, else the
    /// session's standalone stream (or its backlog until one opens).
    fn route_own(
        &self,
        msg: &Message<'_>,
        raw: Bytes,
        pending: std::sync::MutexGuard<'_, PendingMap>,
    ) {
        // A `null` token is no token (the newest request takes it).
        let token = wire::progress_token(msg)
            .map(|(t, _)| t.get().to_owned())
            .filter(|t| t != "null");
        let target = pending
            .values()
            .filter(|p| token.is_none() || p.token == token)
            .max_by_key(|p| p.seq)
            .map(|p| p.tx.clone());
        drop(pending);
        if let Some(tx) = target
            && tx.try_send(Ok(Frame::message(raw.clone()))).is_ok()
        {
            return;
        }
        let mut out = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sink) = &out.sink {
            if sink.try_send(Ok(Frame::message(raw.clone()))).is_ok() {
                return;
            }
            out.sink = None;
        }
        if out.backlog.len() >= BACKLOG {
            out.backlog.pop_front();
            (self.on_event)(
                "upstream.backlog_overflow",
                format!(
                    "{}: dropped the oldest undelivered server message",
                    self.name
                ),
            );
        }
        out.backlog.push_back(raw);
    }

    /// The shared child: progress only by a token Warden issued (the client's own token put
    /// back); anything else only when every open request is one owner's (to its newest).
    fn route_shared(
        &self,
        msg: &Message<'_>,
        raw: &Bytes,
        pending: std::sync::MutexGuard<'_, PendingMap>,
    ) {
        let method = bounded(msg.method().unwrap_or_default(), 64).to_owned();
        if let Some((token, span)) = wire::progress_token(msg) {
            let hit = pending.values().find(|p| {
                p.token
                    .as_deref()
                    .is_some_and(|ours| same_id(ours, token.get()))
            });
            let Some(p) = hit else {
                drop(pending);
                return self.unattributed(&method, "its progress token is none Warden issued");
            };
            let out = match &p.client_token {
                Some(theirs) => put_back(raw, span, theirs),
                None => raw.clone(),
            };
            let tx = p.tx.clone();
            drop(pending);
            if tx.try_send(Ok(Frame::message(out))).is_err() {
                self.unattributed(&method, "its request's stream is full or closed");
            }
            return;
        }
        let mut open = pending.values();
        let Some(first) = open.next() else {
            drop(pending);
            return self.unattributed(&method, "it names no request and none is open");
        };
        if !open.all(|p| p.owner == first.owner) {
            drop(pending);
            return self.unattributed(
                &method,
                "it names no request and requests of several clients are open",
            );
        }
        let tx = pending.values().max_by_key(|p| p.seq).map(|p| p.tx.clone());
        drop(pending);
        if tx.is_none_or(|tx| tx.try_send(Ok(Frame::message(raw.clone()))).is_err()) {
            self.unattributed(&method, "its request's stream is full or closed");
        }
    }

    fn unattributed(&self, method: &str, why: &str) {
        (self.on_event)(
            "upstream.unattributed_message",
            format!(
                "{}: dropped a server message ({method}) on the shared child: {why}",
                self.name
            ),
        );
    }
}

/// Read one `\n`-terminated line of at most `max` bytes. `Ok(false)` at end of stream.
pub async fn read_bounded_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(!out.is_empty());
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > max + 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line longer than {max} bytes"),
            ));
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            return Ok(true);
        }
    }
}

/// Skip the rest of a line (after an oversize one was cut off).
pub async fn skip_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<()> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}
