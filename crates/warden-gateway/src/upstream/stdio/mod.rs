//! stdio upstreams: a child process speaking newline-delimited JSON-RPC, supervised and restarted
//! with exponential backoff ([`process`]), each holding one of the gateway's capped child
//! [`slots`] while it runs. The child gets a clean environment: only the variables named in
//! `env_passthrough` plus `env` (P10.2).
//!
//! Two kinds of child:
//!
//! * **A session's own child** (session era, and `warden wrap`): every request on it is one
//!   client's. Responses go to the waiting request by id; server-initiated messages go to the
//!   request they relate to (progress by token, otherwise the newest open request) or to the
//!   session's standalone stream; with neither, up to [`BACKLOG`] wait for a stream to open. Its
//!   handshake is remembered and replayed to a restarted child.
//! * **The shared child** of a stdio upstream (`remap_ids`: stateless 2026-07-28 requests of
//!   every client, and Warden's own `server/discover` probe), where clients must not reach each
//!   other ([`wire`]; #13 items 2, 3, 8; M2):
//!   - every request gets Warden's own id and, when it asks for progress, Warden's own progress
//!     token, both 128 random bits; the client gets its own id and token back byte-for-byte;
//!   - a response goes to the request whose Warden id it carries; a message stamped with a
//!     `subscriptionId` to the `subscriptions/listen` request it names; a `notifications/progress`
//!     only to the request whose Warden token it carries;
//!   - **a message that names no request** (a log, a list change, a server request) goes to the
//!     newest open request only while every open request is the same owner's: the child writes
//!     what it says about a request before answering it, so while one owner alone has requests
//!     open such a message is about those requests, or about none. With requests of several
//!     owners open, or none open, it is dropped and audited (`upstream.unattributed_message`,
//!     deny), never handed to a guess. A server that reports on a request after answering it (a
//!     background job) reaches whoever alone has requests open then: such a server must tie its
//!     messages to a request (a progress token, a subscription). Nothing is kept for later: a
//!     shared child has no standalone stream;
//!   - a client's `notifications/cancelled` is forwarded only for a request of that client
//!     still open, with its `requestId` rewritten to Warden's id ([`StdioUpstream::cancel_for`]);
//!     a raw one is never written ([`StdioUpstream::send`] refuses it);
//!   - no handshake is remembered or replayed: one client's `initialize` never becomes another's.
//!
//! It must not decide what a client may send (the guards do) nor know HTTP: it moves lines
//! between requests and a process.

mod process;
mod reader;
pub mod slots;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use warden_config::UpstreamConfig;
use warden_proto::{Message, splice};

use super::{Frame, UpstreamError, same_id};
use crate::session::Owner;
pub use process::server_command;
use process::{Supervised, supervise, write_line};
pub use reader::{read_bounded_line, skip_line};
use slots::ChildSlots;

/// Server-initiated messages kept while no client stream is open.
pub const BACKLOG: usize = 64;

type FrameTx = mpsc::Sender<Result<Frame, UpstreamError>>;

struct Pending {
    tx: FrameTx,
    /// The progress token the child saw (raw JSON text; Warden's own on a shared child).
    token: Option<String>,
    /// The client's own token, put back into progress the child sends (shared child).
    client_token: Option<Bytes>,
    seq: u64,
    /// The client's own id when the child saw a Warden id (shared child).
    client_id: Option<String>,
    /// Whose request it is on a shared child (`None`: Warden's own, or a session's child).
    owner: Option<Owner>,
    /// Its client sent `notifications/cancelled` for it: should the child exit before it
    /// answers, the request ends quietly (its stream closes) instead of being refused.
    cancelled: bool,
}

/// Where server-initiated messages go.
#[derive(Default)]
struct Outbox {
    sink: Option<FrameTx>,
    backlog: VecDeque<Bytes>,
}

struct Running {
    stdin: mpsc::Sender<Bytes>,
    /// Ends the stdin writer: the child reads EOF (its signal to exit).
    close_input: tokio::sync::Notify,
    pending: Mutex<HashMap<String, Pending>>,
    alive: AtomicBool,
    started: Instant,
}

/// Called on lifecycle events: (event kind, detail).
pub type EventHook = Arc<dyn Fn(&'static str, String) + Send + Sync>;

pub struct StdioUpstream {
    cfg: UpstreamConfig,
    max_line: usize,
    remap_ids: bool,
    running: tokio::sync::Mutex<Option<Arc<Running>>>,
    outbox: Arc<Mutex<Outbox>>,
    seq: AtomicU64,
    failures: AtomicU64,
    next_spawn: Mutex<Option<Instant>>,
    init: Mutex<(Option<Bytes>, Option<Bytes>)>,
    on_event: EventHook,
    /// The exit code of the last child that exited (`-1`: killed by a signal).
    exits: tokio::sync::watch::Sender<Option<i32>>,
    /// The gateway's cap on running children.
    slots: Arc<ChildSlots>,
}

impl StdioUpstream {
    /// A child started on first use. `remap_ids`: the shared child of every stateless client
    /// (see the module documentation).
    pub fn new(
        cfg: UpstreamConfig,
        max_line: usize,
        remap_ids: bool,
        on_event: EventHook,
        slots: Arc<ChildSlots>,
    ) -> Self {
        Self {
            cfg,
            max_line,
            remap_ids,
            running: tokio::sync::Mutex::new(None),
            outbox: Arc::new(Mutex::new(Outbox::default())),
            seq: AtomicU64::new(1),
            failures: AtomicU64::new(0),
            next_spawn: Mutex::new(None),
            init: Mutex::new((None, None)),
            on_event,
            exits: tokio::sync::watch::Sender::new(None),
            slots,
        }
    }

    /// Start the child now (rather than on first use).
    pub async fn start(&self) -> Result<(), UpstreamError> {
        self.ensure_running().await.map(|_| ())
    }

    /// Is a child running now?
    pub async fn is_running(&self) -> bool {
        self.running
            .lock()
            .await
            .as_ref()
            .is_some_and(|r| r.alive.load(Ordering::Relaxed))
    }

    /// Stop the running child (Warden is exiting) and wait at most `within` for it to be gone,
    /// so its `upstream.exit` event is written.
    pub async fn stop_and_wait(&self, within: Duration) {
        let mut exits = self.exits.subscribe();
        exits.mark_unchanged();
        let running = self.is_running().await;
        self.shutdown().await;
        if running {
            let _ = tokio::time::timeout(within, exits.changed()).await;
        }
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Watch the exit codes of this upstream's children.
    pub fn exits(&self) -> tokio::sync::watch::Receiver<Option<i32>> {
        self.exits.subscribe()
    }

    /// Close the running child's stdin (its signal to exit) without killing it. Requests still
    /// open end quietly (their streams close), as at a session's end.
    pub async fn close_input(&self) {
        if let Some(run) = self.running.lock().await.as_ref() {
            run.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            run.close_input.notify_one();
        }
    }

    /// Remember the client's `initialize` / `notifications/initialized` to replay after a restart.
    /// A shared child remembers none: one client's handshake must never become another's.
    pub fn remember_init(&self, initialize: Option<Bytes>, initialized: Option<Bytes>) {
        if self.remap_ids {
            return;
        }
        let mut init = self.init.lock().unwrap_or_else(|p| p.into_inner());
        if initialize.is_some() {
            init.0 = initialize;
        }
        if initialized.is_some() {
            init.1 = initialized;
        }
    }

    /// Open the standalone stream for server-initiated messages (replacing any earlier one).
    pub fn open_server_stream(&self) -> mpsc::Receiver<Result<Frame, UpstreamError>> {
        let (tx, rx) = mpsc::channel(64);
        let mut out = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        for m in out.backlog.drain(..) {
            let _ = tx.try_send(Ok(Frame::message(m)));
        }
        out.sink = Some(tx);
        rx
    }

    /// Send a request; its response and related messages arrive on the returned stream. The
    /// string is the id the child saw (Warden's own on a shared child): [`Self::cancel`] takes it.
    /// `owner` is whose request it is (`None`: Warden's own); only a shared child keeps it.
    pub async fn request(
        &self,
        msg: &Message<'_>,
        owner: Option<&Owner>,
    ) -> Result<(mpsc::Receiver<Result<Frame, UpstreamError>>, String), UpstreamError> {
        let run = self.ensure_running().await?;
        let (tx, rx) = mpsc::channel(64);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (key, line, pending) = if self.remap_ids {
            let w = wire::rewrite_request(msg)?;
            let (token, client_token) = w.token.map_or((None, None), |(o, t)| (Some(o), Some(t)));
            let p = Pending {
                tx,
                token,
                client_token,
                seq,
                client_id: Some(w.client_id),
                owner: owner.cloned(),
                cancelled: false,
            };
            (w.wire_id, w.line, p)
        } else {
            let key = msg.id_text().map(str::to_owned).unwrap_or_default();
            let token = wire::request_token(msg).map(|(t, _)| t.get().to_owned());
            let p = Pending {
                tx,
                token,
                client_token: None,
                seq,
                client_id: None,
                owner: None,
                cancelled: false,
            };
            (key, Bytes::copy_from_slice(msg.raw()), p)
        };
        run.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), pending);
        if let Err(e) = write_line(&run, line).await {
            run.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            return Err(e);
        }
        Ok((rx, key))
    }

    /// Tell the child a request was abandoned by its client (it closed the stream). `wire_id`
    /// is the id [`Self::request`] returned: on a shared child two clients may both use `1`.
    pub async fn cancel(&self, wire_id: &str) {
        let guard = self.running.lock().await;
        if let Some(run) = guard.as_ref() {
            let removed = run
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(wire_id)
                .is_some();
            if removed && run.alive.load(Ordering::Relaxed) {
                let note = format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{wire_id},"reason":"client closed the stream"}}}}"#
                );
                let _ = run.stdin.send(Bytes::from(note)).await;
            }
        }
    }

    /// A client's own `notifications/cancelled` on a shared child: forwarded, its `requestId`
    /// rewritten to Warden's id, only when it names a request of `owner` still open here (the
    /// newest, should the client have two open with one id). `Ok(false)`: it names none (nothing
    /// was written; a child is never started for it).
    pub async fn cancel_for(
        &self,
        owner: &Owner,
        msg: &Message<'_>,
    ) -> Result<bool, UpstreamError> {
        let Some((asked, span)) = wire::cancelled_id(msg) else {
            return Ok(false);
        };
        let Some(run) = self.running.lock().await.clone() else {
            return Ok(false);
        };
        let wire_id = run
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, p)| {
                p.owner.as_ref() == Some(owner)
                    && p.client_id
                        .as_deref()
                        .is_some_and(|c| same_id(c, asked.get()))
            })
            .max_by_key(|(_, p)| p.seq)
            .map(|(k, _)| k.clone());
        let Some(wire_id) = wire_id else {
            return Ok(false);
        };
        let line = splice::replace(msg.raw(), span, wire_id.as_bytes())
            .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        write_line(&run, Bytes::from(line)).await?;
        if let Some(p) = run
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&wire_id)
        {
            p.cancelled = true;
        }
        Ok(true)
    }

    /// Send a notification or a response to a server request. On a shared child a
    /// `notifications/cancelled` goes only through [`Self::cancel_for`]: its `requestId` is a
    /// client's, which the child does not know and which may be another client's as well.
    pub async fn send(&self, raw: &[u8]) -> Result<(), UpstreamError> {
        let msg = Message::parse(raw).ok();
        let cancel = msg
            .as_ref()
            .filter(|m| m.method() == Some("notifications/cancelled"));
        if self.remap_ids && cancel.is_some() {
            return Err(UpstreamError::Invalid(
                "a cancellation for a shared child must name its client's request".into(),
            ));
        }
        let run = self.ensure_running().await?;
        write_line(&run, Bytes::copy_from_slice(raw)).await?;
        // A session's own child: a client's cancellation names the id the child saw.
        if let Some((asked, _)) = cancel.and_then(wire::cancelled_id) {
            for (key, p) in run
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter_mut()
            {
                if same_id(key, asked.get()) {
                    p.cancelled = true;
                }
            }
        }
        Ok(())
    }

    /// Stop the child (session end): open requests end quietly (their streams close; nothing was
    /// refused), then the supervisor kills the process and audits its exit.
    pub async fn shutdown(&self) {
        if let Some(run) = self.running.lock().await.take() {
            run.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            run.alive.store(false, Ordering::Relaxed);
        }
    }

    async fn ensure_running(&self) -> Result<Arc<Running>, UpstreamError> {
        let mut guard = self.running.lock().await;
        if let Some(run) = guard.as_ref() {
            if run.alive.load(Ordering::Relaxed) {
                return Ok(run.clone());
            }
            let lived = run.started.elapsed();
            if lived > Duration::from_millis(self.cfg.max_backoff_ms) {
                self.failures.store(0, Ordering::Relaxed);
            }
            *guard = None;
        }
        let wait = self
            .next_spawn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(at) = wait {
            let now = Instant::now();
            if at > now {
                let delay = at - now;
                if delay > Duration::from_millis(self.cfg.timeout_ms) {
                    return Err(UpstreamError::Restarting(delay.as_secs().max(1)));
                }
                tokio::time::sleep(delay).await;
            }
        }
        let run = self.spawn().await?;
        self.replay_init(&run).await;
        *guard = Some(run.clone());
        Ok(run)
    }

    async fn replay_init(&self, run: &Arc<Running>) {
        let (init, initialized) = self.init.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(init) = init else { return };
        let Ok(msg) = Message::parse(&init) else {
            return;
        };
        let key = msg.id_text().map(str::to_owned).unwrap_or_default();
        let (tx, mut rx) = mpsc::channel(4);
        run.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key,
                Pending {
                    tx,
                    token: None,
                    client_token: None,
                    seq: 0,
                    client_id: None,
                    owner: None,
                    cancelled: false,
                },
            );
        if write_line(run, init).await.is_ok() {
            let _ =
                tokio::time::timeout(Duration::from_millis(self.cfg.timeout_ms), rx.recv()).await;
            if let Some(n) = initialized {
                let _ = write_line(run, n).await;
            }
            (self.on_event)("upstream.init_replayed", self.cfg.name.clone());
        }
    }

    async fn spawn(&self) -> Result<Arc<Running>, UpstreamError> {
        let (mut cmd, prog) = server_command(&self.cfg)
            .ok_or_else(|| UpstreamError::Unreachable("empty command".into()))?;
        // Not the child's failure: no backoff, the next request may find a slot free.
        let slot = self.slots.take().ok_or(UpstreamError::Capacity {
            max: self.slots.max(),
        })?;
        let mut child = cmd.spawn().map_err(|e| {
            self.note_failure();
            UpstreamError::Unreachable(format!("cannot start {prog}: {e}"))
        })?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(UpstreamError::Unreachable(
                "child has no stdio pipes".into(),
            ));
        };
        let (in_tx, mut in_rx) = mpsc::channel::<Bytes>(256);
        let run = Arc::new(Running {
            stdin: in_tx,
            close_input: tokio::sync::Notify::new(),
            pending: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            started: Instant::now(),
        });
        let writer = run.clone();
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    l = in_rx.recv() => match l { Some(l) => l, None => break },
                    _ = writer.close_input.notified() => break,
                };
                if stdin.write_all(&line).await.is_err()
                    || stdin.write_all(b"\n").await.is_err()
                    || stdin.flush().await.is_err()
                {
                    break;
                }
            }
        });
        (self.on_event)(
            "upstream.start",
            format!("{} pid {}", self.cfg.name, child.id().unwrap_or(0)),
        );
        let reader = reader::Reader {
            run: run.clone(),
            outbox: self.outbox.clone(),
            max_line: self.max_line,
            on_event: self.on_event.clone(),
            name: self.cfg.name.clone(),
            shared: self.remap_ids,
        };
        // Reader and supervisor run apart: the supervisor must be able to stop a child that is
        // still writing (session end), not only reap one that closed its stdout.
        tokio::spawn(reader.run(stdout));
        tokio::spawn(supervise(Supervised {
            child,
            run: run.clone(),
            on_event: self.on_event.clone(),
            name: self.cfg.name.clone(),
            exits: self.exits.clone(),
            slot,
        }));
        Ok(run)
    }

    fn note_failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed).min(16) as u32;
        let delay = self
            .cfg
            .initial_backoff_ms
            .saturating_mul(1u64 << n)
            .min(self.cfg.max_backoff_ms);
        *self.next_spawn.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + Duration::from_millis(delay));
    }

    /// Record that the running child died, so the next use waits for the backoff.
    pub async fn note_exit_if_dead(&self) {
        let dead = self
            .running
            .lock()
            .await
            .as_ref()
            .is_some_and(|r| !r.alive.load(Ordering::Relaxed));
        if dead {
            self.note_failure();
        }
    }
}
