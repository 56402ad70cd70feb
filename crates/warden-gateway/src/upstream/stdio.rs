//! stdio upstreams: a child process speaking newline-delimited JSON-RPC, supervised and restarted
//! with exponential backoff. The child gets a clean environment: only the variables named in
//! `env_passthrough` plus `env` (P10.2).
//!
//! Responses are routed to the waiting request by id. Server-initiated messages go to the request
//! they relate to (progress by token, otherwise the latest open request) or to the session's
//! standalone stream; with neither, up to [`BACKLOG`] wait for a stream to open. A child shared by
//! several clients (`remap_ids`) sees Warden's own ids, and clients get theirs back byte-exact.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use warden_config::UpstreamConfig;
use warden_proto::{Kind, Message, splice};

use super::{Frame, UpstreamError};

/// Server-initiated messages kept while no client stream is open.
pub const BACKLOG: usize = 64;

type FrameTx = mpsc::Sender<Result<Frame, UpstreamError>>;

struct Pending {
    tx: FrameTx,
    token: Option<String>,
    seq: u64,
    /// The client's own id bytes when the child saw a Warden id.
    client_id: Option<Bytes>,
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
}

impl StdioUpstream {
    pub fn new(cfg: UpstreamConfig, max_line: usize, remap_ids: bool, on_event: EventHook) -> Self {
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
    pub fn remember_init(&self, initialize: Option<Bytes>, initialized: Option<Bytes>) {
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
    /// string is the id the child saw (Warden's own when ids are remapped): [`Self::cancel`] takes it.
    pub async fn request(
        &self,
        msg: &Message<'_>,
        progress_token: Option<String>,
    ) -> Result<(mpsc::Receiver<Result<Frame, UpstreamError>>, String), UpstreamError> {
        let run = self.ensure_running().await?;
        let client_id = msg.id().map(|i| i.get().to_owned()).unwrap_or_default();
        let (key, line, client_id) = if self.remap_ids {
            let wid = format!("\"w{}\"", self.seq.fetch_add(1, Ordering::Relaxed));
            let span = msg
                .id_span()
                .ok_or_else(|| UpstreamError::Invalid("request without id".into()))?;
            let edited = splice::replace(msg.raw(), span, wid.as_bytes())
                .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
            (wid, Bytes::from(edited), Some(Bytes::from(client_id)))
        } else {
            (client_id, Bytes::copy_from_slice(msg.raw()), None)
        };
        let (tx, rx) = mpsc::channel(64);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        run.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key.clone(),
                Pending {
                    tx,
                    token: progress_token,
                    seq,
                    client_id,
                },
            );
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
        let request_id_raw = wire_id;
        let guard = self.running.lock().await;
        if let Some(run) = guard.as_ref() {
            let removed = run
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(request_id_raw)
                .is_some();
            if removed && run.alive.load(Ordering::Relaxed) {
                let note = format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{request_id_raw},"reason":"client closed the stream"}}}}"#
                );
                let _ = run.stdin.send(Bytes::from(note)).await;
            }
        }
    }

    /// Send a notification or a response to a server request.
    pub async fn send(&self, raw: &[u8]) -> Result<(), UpstreamError> {
        let run = self.ensure_running().await?;
        write_line(&run, Bytes::copy_from_slice(raw)).await
    }

    /// Stop the child (session end).
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
        let key = msg.id().map(|i| i.get().to_owned()).unwrap_or_default();
        let (tx, mut rx) = mpsc::channel(4);
        run.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key,
                Pending {
                    tx,
                    token: None,
                    seq: 0,
                    client_id: None,
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
        let reader = Reader {
            run: run.clone(),
            outbox: self.outbox.clone(),
            max_line: self.max_line,
            on_event: self.on_event.clone(),
            name: self.cfg.name.clone(),
        };
        let watch = run.clone();
        let on_event = self.on_event.clone();
        let name = self.cfg.name.clone();
        // Reader and supervisor run apart: the supervisor must be able to stop a child that is
        // still writing (session end), not only reap one that closed its stdout.
        tokio::spawn(reader.run(stdout));
        tokio::spawn(supervise(child, watch, on_event, name, self.exits.clone()));
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

/// The command that starts a stdio server: piped stdin/stdout, stderr passed through, killed with
/// its handle, and a clean environment — only `env_passthrough` from Warden's own, plus `env`
/// (P10.2). Returns the command and the program name; `None` for an empty command line.
pub fn server_command(cfg: &UpstreamConfig) -> Option<(Command, String)> {
    let argv = cfg.command.as_deref().unwrap_or_default();
    let (prog, args) = argv.split_first()?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for k in &cfg.env_passthrough {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(&cfg.env);
    if let Some(cwd) = &cfg.cwd {
        cmd.current_dir(cwd);
    }
    Some((cmd, prog.clone()))
}

async fn write_line(run: &Running, line: Bytes) -> Result<(), UpstreamError> {
    if !run.alive.load(Ordering::Relaxed) {
        return Err(UpstreamError::Exited);
    }
    // Newline-delimited framing: JSON whitespace newlines become spaces (newlines inside strings
    // are always escaped in valid JSON, so meaning is unchanged).
    let line = if line.contains(&b'\n') || line.contains(&b'\r') {
        Bytes::from(
            line.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
                .collect::<Vec<u8>>(),
        )
    } else {
        line
    };
    run.stdin
        .send(line)
        .await
        .map_err(|_| UpstreamError::Exited)
}

async fn supervise(
    mut child: Child,
    run: Arc<Running>,
    on_event: EventHook,
    name: String,
    exits: tokio::sync::watch::Sender<Option<i32>>,
) {
    let status = tokio::select! {
        s = child.wait() => s,
        _ = wait_closed(&run) => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    let code = status.as_ref().ok().and_then(|s| s.code()).unwrap_or(-1);
    run.close_input.notify_one(); // the stdin writer ends with the child
    let status = status
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    run.alive.store(false, Ordering::Relaxed);
    let pending: Vec<Pending> = run
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .map(|(_, p)| p)
        .collect();
    for p in pending {
        let _ = p.tx.try_send(Err(UpstreamError::Exited));
    }
    on_event("upstream.exit", format!("{name}: {status}"));
    // Last: whoever waits for the exit finds its audit event written.
    exits.send_replace(Some(code));
}

async fn wait_closed(run: &Running) {
    while run.alive.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Reader {
    run: Arc<Running>,
    outbox: Arc<Mutex<Outbox>>,
    max_line: usize,
    on_event: EventHook,
    name: String,
}

impl Reader {
    async fn run(self, stdout: impl AsyncRead + Unpin) {
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
        match msg.kind() {
            Kind::Response | Kind::Error => {
                let key = msg.id().map(|i| i.get().to_owned()).unwrap_or_default();
                let Some(p) = pending.remove(&key) else {
                    (self.on_event)(
                        "upstream.unmatched_response",
                        format!("{}: response to unknown id {key}", self.name),
                    );
                    return;
                };
                let out = match (&p.client_id, msg.id_span()) {
                    (Some(cid), Some(span)) => splice::replace(&raw, span, cid)
                        .map(Bytes::from)
                        .unwrap_or(raw.clone()),
                    _ => raw.clone(),
                };
                let _ = p.tx.try_send(Ok(Frame::message(out)));
            }
            Kind::Notification | Kind::Request => {
                // A notification stamped with a subscription id belongs to that `subscriptions/listen`
                // stream; the id is the listen request's (Warden's, when remapped: give back the client's).
                if let Some((sub_key, span)) = subscription_id(&msg)
                    && let Some(p) = pending.get(&sub_key)
                {
                    let out = match &p.client_id {
                        Some(cid) => splice::replace(&raw, span, cid)
                            .map(Bytes::from)
                            .unwrap_or(raw.clone()),
                        None => raw.clone(),
                    };
                    let _ = p.tx.try_send(Ok(Frame::message(out)));
                    return;
                }
                let token = progress_token(&msg);
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
        }
    }
}

/// `params._meta["io.modelcontextprotocol/subscriptionId"]`: its raw text and span in the message.
fn subscription_id(msg: &Message<'_>) -> Option<(String, std::ops::Range<usize>)> {
    #[derive(serde::Deserialize)]
    struct M<'a> {
        #[serde(borrow, rename = "io.modelcontextprotocol/subscriptionId")]
        sub: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<M<'a>>,
    }
    let p: P<'_> = serde_json::from_str(msg.params()?.get()).ok()?;
    let sub = p.meta?.sub?;
    Some((
        sub.get().to_owned(),
        warden_proto::envelope::span_in(msg.raw(), sub)?,
    ))
}

fn progress_token(msg: &Message<'_>) -> Option<String> {
    if msg.method() != Some("notifications/progress") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(borrow, rename = "progressToken")]
        token: Option<&'a serde_json::value::RawValue>,
    }
    let p: P<'_> = serde_json::from_str(msg.params()?.get()).ok()?;
    p.token.map(|t| t.get().to_owned())
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
    use tokio::io::AsyncBufReadExt;
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
