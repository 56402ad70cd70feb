//! The gateway's shared state: configuration, pipeline, upstreams, sessions, guard state, audit
//! and metrics; [`Gateway::forward`], the one way a cleared message reaches an upstream; and
//! [`Gateway::end_session`], the one way a session ends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method};
use tokio::sync::mpsc;
use warden_audit::{AuditEvent, AuditSink, Decision, RequestId};
use warden_config::{Config, UpstreamConfig};
use warden_proto::limits::Limits;
use warden_proto::{Kind, Message, ProtocolVersion};

use warden_guard::{Ctx, Front, GuardEnv, MemoryStore, Outcome, Refusal, SessionKey, SessionStore};

use crate::metrics::{Metrics, UpstreamLabel};
use crate::pipeline::{Cleared, Pipeline};
use crate::session::Owner;
use crate::session::Sessions;
use crate::upstream::http::HttpUpstream;
use crate::upstream::stdio::{EventHook, StdioUpstream};
use crate::upstream::{Reply, UpstreamError};

/// How Warden reaches one upstream.
pub enum Transport {
    Http(Box<HttpUpstream>),
    /// stdio: one child per downstream session, plus one shared child for stateless requests.
    Stdio {
        shared: Arc<StdioUpstream>,
    },
}

pub struct Upstream {
    pub cfg: UpstreamConfig,
    /// `cfg.name`, shared with every context and audit event that names this upstream.
    pub name: Arc<str>,
    pub transport: Transport,
    /// Whether the upstream speaks the stateless 2026-07-28 generation, once probed.
    stateless: Mutex<Option<bool>>,
    /// The last exchange succeeded (mirrors the `upstream_up` gauge).
    healthy: AtomicBool,
}

/// A downstream session's link to one upstream.
pub enum Link {
    Http {
        session_id: Mutex<Option<String>>,
        /// The upstream's standalone (GET) stream, opened by Warden as soon as the session is
        /// initialized so no server-initiated message is lost before the client opens its own.
        standalone: Mutex<Option<mpsc::Receiver<Result<crate::upstream::Frame, UpstreamError>>>>,
    },
    Stdio(Arc<StdioUpstream>),
}

/// What Warden keeps per downstream session.
pub struct SessionState {
    pub fingerprint: Arc<str>,
    pub version: Mutex<Option<ProtocolVersion>>,
    pub links: Vec<Link>,
    /// Upstreams that answered `initialize`; others are left out of this session.
    pub live: Vec<AtomicBool>,
    /// Warden-numbered, resumable SSE streams of this session (stdio upstreams).
    pub events: Arc<crate::event_log::EventLog>,
    /// The guards' state store key for this session.
    pub key: SessionKey,
    /// Requests Warden itself sent the client (elicitation), awaiting their answers.
    pub waiters: crate::waiters::Waiters,
    /// Capabilities the client declared at `initialize` (top-level names).
    pub client_caps: Mutex<Vec<String>>,
}

pub struct Gateway {
    pub cfg: Arc<Config>,
    pub pipeline: Pipeline,
    pub upstreams: Vec<Arc<Upstream>>,
    pub sessions: Sessions<SessionState>,
    pub audit: Arc<dyn AuditSink>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Names learned from merged lists (several upstreams).
    pub catalog: Mutex<crate::catalog::Catalog>,
    /// Where guards keep per-session state.
    pub store: Arc<dyn SessionStore>,
    /// Seals the SSE event ids clients get, so that only their own session can resume with them.
    pub event_ids: crate::event_ids::EventIds,
    request_seq: AtomicU64,
    hook: EventHook,
    stdio_label: Arc<str>,
}

impl Gateway {
    /// A gateway with the default guards of [`crate::pipeline::guards`].
    pub fn new(cfg: Config, audit: Arc<dyn AuditSink>) -> Result<Arc<Self>, UpstreamError> {
        Self::with_pipeline(cfg, audit, Pipeline::new)
    }

    /// A gateway whose pipeline `build` makes (tests add guards of their own this way).
    pub fn with_pipeline(
        cfg: Config,
        audit: Arc<dyn AuditSink>,
        build: impl FnOnce(&Config, &GuardEnv) -> Pipeline,
    ) -> Result<Arc<Self>, UpstreamError> {
        let env = GuardEnv {
            audit: audit.clone(),
        };
        let metrics = Arc::new(Metrics::new());
        let hook = event_hook(audit.clone(), metrics.clone());
        let max = cfg.limits.max_upstream_message_bytes;
        let mut upstreams = Vec::new();
        for u in &cfg.upstreams {
            let transport = match &u.url {
                Some(_) => Transport::Http(Box::new(HttpUpstream::new(u, max)?)),
                None => Transport::Stdio {
                    shared: Arc::new(StdioUpstream::new(u.clone(), max, true, hook.clone())),
                },
            };
            metrics
                .upstream_up
                .get_or_create(&UpstreamLabel {
                    upstream: u.name.clone(),
                })
                .set(1);
            upstreams.push(Arc::new(Upstream {
                name: u.name.as_str().into(),
                cfg: u.clone(),
                transport,
                stateless: Mutex::new(None),
                healthy: AtomicBool::new(true),
            }));
        }
        let limits = Limits {
            max_bytes: cfg.limits.max_body_bytes,
            max_depth: cfg.limits.max_json_depth,
        };
        let event_ids = crate::event_ids::EventIds::new()
            .map_err(|e| UpstreamError::Invalid(format!("no randomness for event ids: {e}")))?;
        Ok(Arc::new(Self {
            event_ids,
            pipeline: build(&cfg, &env),
            sessions: Sessions::new(cfg.sessions.clone()),
            cfg: Arc::new(cfg),
            upstreams,
            audit,
            metrics,
            limits,
            catalog: Mutex::new(Default::default()),
            store: Arc::new(MemoryStore::default()),
            request_seq: AtomicU64::new(1),
            hook,
            stdio_label: "stdio".into(),
        }))
    }

    /// A new request id (process-unique, for audit correlation).
    pub fn next_request_id(&self) -> RequestId {
        RequestId(self.request_seq.fetch_add(1, Ordering::Relaxed))
    }

    /// A context for a message from the local stdio client.
    pub fn stdio_ctx(&self) -> Ctx {
        Ctx::new(
            self.next_request_id(),
            Front::Stdio,
            None,
            self.stdio_label.clone(),
        )
    }

    /// The links a new session gets: stdio upstreams get their own child, spawned on first use.
    pub fn new_session_state(&self, fingerprint: Arc<str>) -> SessionState {
        let links = self
            .upstreams
            .iter()
            .map(|u| match &u.transport {
                Transport::Http(_) => Link::Http {
                    session_id: Mutex::new(None),
                    standalone: Mutex::new(None),
                },
                Transport::Stdio { .. } => Link::Stdio(Arc::new(StdioUpstream::new(
                    u.cfg.clone(),
                    self.cfg.limits.max_upstream_message_bytes,
                    false,
                    self.hook.clone(),
                ))),
            })
            .collect();
        let live = self
            .upstreams
            .iter()
            .map(|_| AtomicBool::new(true))
            .collect();
        SessionState {
            key: SessionKey(fingerprint.clone()),
            fingerprint,
            version: Mutex::new(None),
            links,
            live,
            events: Default::default(),
            waiters: Default::default(),
            client_caps: Mutex::new(Vec::new()),
        }
    }

    /// End a session of `owner` (DELETE, an upstream refusing `initialize`, revocation): it
    /// leaves the table and the gauge, its stdio children stop, Warden's own pending requests to
    /// the client are cancelled, and every guard's `session_end` runs before its state is
    /// dropped. Returns the state, or `None` when no such session of that owner is open.
    pub async fn end_session(&self, owner: &Owner, id: &str) -> Option<Arc<SessionState>> {
        let s = self.sessions.remove(owner, id);
        self.metrics.sessions_open.set(self.sessions.len() as i64);
        if let Some(s) = &s {
            self.close_session(s).await;
        }
        s
    }

    /// What ending a session does beyond the table (also for sessions that expired).
    pub async fn close_session(&self, s: &SessionState) {
        for link in &s.links {
            if let Link::Stdio(child) = link {
                child.shutdown().await;
            }
        }
        s.waiters.close();
        self.pipeline.session_end(&s.key).await;
        self.store.end(&s.key).resolve().await;
    }

    /// Expire idle and old sessions (called on a timer).
    pub async fn sweep_sessions(&self) {
        for s in self.sessions.sweep() {
            self.close_session(&s).await;
        }
        self.metrics.sessions_open.set(self.sessions.len() as i64);
    }

    /// Send a cleared message to upstream `idx`, over the session's link when there is one.
    /// `msg` is the parse of the cleared bytes.
    pub async fn forward(
        &self,
        idx: usize,
        session: Option<&SessionState>,
        headers: &HeaderMap,
        msg: &Message<'_>,
        cleared: &Cleared,
    ) -> Result<(Reply, Option<String>), UpstreamError> {
        let own = cleared.upstream_headers();
        let own = (!own.is_empty()).then_some(own);
        self.send(idx, session, headers, own, msg, cleared.bytes().clone())
            .await
    }

    /// Warden's own message to an upstream (the `server/discover` probe): not a client's, so it
    /// needs no clearance.
    async fn send(
        &self,
        idx: usize,
        session: Option<&SessionState>,
        headers: &HeaderMap,
        own: Option<&HeaderMap>,
        msg: &Message<'_>,
        bytes: Bytes,
    ) -> Result<(Reply, Option<String>), UpstreamError> {
        let up = &self.upstreams[idx];
        let result = match (&up.transport, session.map(|s| &s.links[idx])) {
            (Transport::Http(h), link) => {
                let sid = match link {
                    Some(Link::Http { session_id, .. }) => {
                        session_id.lock().unwrap_or_else(|p| p.into_inner()).clone()
                    }
                    _ => None,
                };
                h.send(Method::POST, headers, own, sid.as_deref(), bytes)
                    .await
                    .map(|a| (a.reply, a.session_id))
            }
            (Transport::Stdio { shared }, link) => {
                let child = match link {
                    Some(Link::Stdio(c)) => c.clone(),
                    _ => shared.clone(),
                };
                // The handshake is remembered once sent, to be replayed to a restarted child.
                let sent = if msg.kind() == Kind::Request {
                    let sent = child.request(msg, progress_token_of(msg)).await.map(
                        |(frames, wire_id)| Reply::Stream {
                            frames,
                            sse: false,
                            wire_id: Some(wire_id),
                        },
                    );
                    if sent.is_ok() && msg.method() == Some("initialize") {
                        child.remember_init(Some(bytes.clone()), None);
                    }
                    sent
                } else {
                    let sent = child.send(&bytes).await.map(|()| Reply::Accepted);
                    if sent.is_ok() && msg.method() == Some("notifications/initialized") {
                        child.remember_init(None, Some(bytes.clone()));
                    }
                    sent
                };
                if sent.is_err() {
                    child.note_exit_if_dead().await;
                }
                sent.map(|r| (r, None))
            }
        };
        tracing::debug!(upstream = %up.cfg.name, method = ?msg.method(), kind = ?msg.kind(), ok = result.is_ok(), "forwarded");
        // The health gauge is touched only when it changes: no label lookup on the hot path.
        let ok = result.is_ok();
        if up.healthy.swap(ok, Ordering::Relaxed) != ok {
            self.metrics
                .upstream_up
                .get_or_create(&UpstreamLabel {
                    upstream: up.cfg.name.clone(),
                })
                .set(i64::from(ok));
        }
        result
    }

    /// Send a non-POST request (GET stream, DELETE) to an HTTP upstream over the session's link.
    pub async fn forward_http(
        &self,
        idx: usize,
        session: &SessionState,
        method: Method,
        headers: &HeaderMap,
    ) -> Option<Result<crate::upstream::http::HttpAnswer, UpstreamError>> {
        let Transport::Http(h) = &self.upstreams[idx].transport else {
            return None;
        };
        let Link::Http { session_id, .. } = &session.links[idx] else {
            return None;
        };
        let sid = session_id.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(
            h.send(method, headers, None, sid.as_deref(), Bytes::new())
                .await,
        )
    }

    /// Open upstream `idx`'s standalone stream for the session and keep it until the client asks
    /// for its GET stream (HTTP upstreams; others have nothing to open).
    pub async fn open_standalone(
        &self,
        idx: usize,
        session: &SessionState,
        client_headers: &HeaderMap,
    ) {
        let Link::Http { standalone, .. } = &session.links[idx] else {
            return;
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("text/event-stream"),
        );
        if let Some(v) = client_headers.get("mcp-protocol-version") {
            headers.insert("mcp-protocol-version", v.clone());
        }
        if let Some(Ok(answer)) = self.forward_http(idx, session, Method::GET, &headers).await
            && let Reply::Stream { frames, .. } = answer.reply
        {
            *standalone.lock().unwrap_or_else(|p| p.into_inner()) = Some(frames);
        }
    }

    /// Does upstream `idx` speak the stateless 2026-07-28 generation? Asked once with
    /// `server/discover` (a 2025-era server refuses it) and remembered; a transport failure is
    /// not remembered, so the next request asks again.
    pub async fn speaks_stateless(&self, idx: usize) -> bool {
        let up = &self.upstreams[idx];
        if let Some(known) = *up.stateless.lock().unwrap_or_else(|p| p.into_inner()) {
            return known;
        }
        const PROBE: &str = r#"{"jsonrpc":"2.0","id":"warden-discover","method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"warden","version":"0"}}}}"#;
        let Ok(msg) = Message::parse(PROBE.as_bytes()) else {
            return false;
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            "mcp-protocol-version",
            http::HeaderValue::from_static("2026-07-28"),
        );
        headers.insert(
            "mcp-method",
            http::HeaderValue::from_static("server/discover"),
        );
        let timeout = std::time::Duration::from_millis(up.cfg.timeout_ms.min(15_000));
        let answer = match self
            .send(
                idx,
                None,
                &headers,
                None,
                &msg,
                Bytes::from_static(PROBE.as_bytes()),
            )
            .await
        {
            Ok((reply, _)) => {
                crate::upstream::final_message(reply, "\"warden-discover\"", timeout).await
            }
            Err(e) => Err(e),
        };
        let known = match answer {
            Ok(body) => Message::parse(&body).is_ok_and(|m| m.kind() == Kind::Response),
            Err(UpstreamError::Invalid(_)) => false,
            Err(_) => return false,
        };
        *up.stateless.lock().unwrap_or_else(|p| p.into_inner()) = Some(known);
        known
    }

    /// Record a refusal: audit event and metrics.
    pub fn audit_refusal(&self, ctx: &Ctx, r: &Refusal, id: Option<&serde_json::value::RawValue>) {
        self.metrics
            .refusals
            .get_or_create(&crate::metrics::ReasonLabel { reason: r.reason })
            .inc();
        self.metrics
            .record(ctx.method.as_deref(), Decision::Deny, None);
        self.pipeline.done(
            ctx,
            &Outcome {
                decision: Decision::Deny,
                status: Some(r.status),
                reason: Some(r.reason),
            },
        );
        let mut ev = ctx.event("mcp.refusal", Decision::Deny);
        ev.reason = Some(r.reason.into());
        ev.control = Some(r.control);
        ev.hint = Some(r.hint.to_string());
        ev.status = Some(r.status);
        ev.rpc_code = Some(r.rpc_code);
        ev.jsonrpc_id = id.map(|i| truncate(i.get(), 64));
        self.audit.emit(ev);
    }

    /// An audit event prefilled from the context.
    pub fn event(&self, ctx: &Ctx, kind: &'static str, decision: Decision) -> AuditEvent {
        ctx.event(kind, decision)
    }

    /// Record a completed exchange.
    pub fn audit_done(
        &self,
        ctx: &Ctx,
        decision: Decision,
        status: Option<u16>,
        reason: Option<&'static str>,
    ) {
        self.metrics.record(
            ctx.method.as_deref(),
            decision,
            Some(ctx.started.elapsed().as_secs_f64()),
        );
        self.pipeline.done(
            ctx,
            &Outcome {
                decision,
                status,
                reason,
            },
        );
        let mut ev = ctx.event("mcp.request", decision);
        ev.status = status;
        ev.reason = reason.map(Into::into);
        self.audit.emit(ev);
    }
}

fn progress_token_of(msg: &Message<'_>) -> Option<String> {
    let p = msg.params_view().ok()?;
    p.meta
        .and_then(|m| m.progress_token)
        .map(|t| t.get().to_owned())
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// [`truncate`] into shared text (for the context and audit events).
pub fn truncate_shared(s: &str, max: usize) -> Arc<str> {
    if s.len() <= max {
        return s.into();
    }
    truncate(s, max).into()
}

fn event_hook(audit: Arc<dyn AuditSink>, metrics: Arc<Metrics>) -> EventHook {
    Arc::new(move |kind: &'static str, detail: String| {
        let decision =
            if kind == "upstream.exit" || kind.ends_with("error") || kind.ends_with("overflow") {
                Decision::Error
            } else {
                Decision::Info
            };
        if kind == "upstream.exit" {
            let name = detail.split(':').next().unwrap_or_default().to_owned();
            metrics
                .upstream_restarts
                .get_or_create(&UpstreamLabel { upstream: name })
                .inc();
        }
        tracing::info!(kind, %detail, "upstream event");
        let mut ev = AuditEvent::new(kind, decision);
        ev.hint = Some(detail);
        audit.emit(ev);
    })
}
