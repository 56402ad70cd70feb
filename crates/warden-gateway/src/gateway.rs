//! The gateway's shared state: configuration, pipeline, upstreams, sessions, guard state, audit
//! and metrics; [`Gateway::forward`], the one way a cleared message reaches an upstream; and
//! [`Gateway::end_session`], the one way a session ends. How a call's end is recorded (audit,
//! metrics, the guards' `done`) is in [`audit`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method};
use warden_audit::{AuditEvent, AuditSink, Decision, RequestId};
use warden_config::{Config, UpstreamConfig};
use warden_proto::limits::Limits;
use warden_proto::{Kind, Message};

use warden_guard::{Ctx, Front, GuardEnv, MemoryStore, SessionKey, SessionStore};

use crate::catalog::Withheld;
use crate::metrics::{Metrics, UpstreamLabel};
use crate::pipeline::{Cleared, Pipeline};
use crate::session::Owner;
use crate::session::Sessions;
use crate::standalone::Opened;
use crate::upstream::http::HttpUpstream;
use crate::upstream::stdio::slots::ChildSlots;
use crate::upstream::stdio::{EventHook, StdioUpstream};
use crate::upstream::{Reply, UpstreamError};

mod audit;
mod session_state;

pub use session_state::{Link, SessionState};

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

pub struct Gateway {
    pub cfg: Arc<Config>,
    pub pipeline: Pipeline,
    pub upstreams: Vec<Arc<Upstream>>,
    pub sessions: Sessions<SessionState>,
    pub audit: Arc<dyn AuditSink>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Names withheld for a collision, for every client until restart (several upstreams).
    pub withheld: Mutex<Withheld>,
    /// Every upstream has a prefix and none starts another's: prefixes alone route names.
    pub by_prefix: bool,
    /// Where guards keep per-session state.
    pub store: Arc<dyn SessionStore>,
    /// Calls not yet given their final audit event.
    pub in_flight: crate::in_flight::InFlight,
    /// Seals the SSE event ids clients get, so that only their own session can resume with them.
    pub event_ids: crate::event_ids::EventIds,
    request_seq: AtomicU64,
    hook: EventHook,
    stdio_label: Arc<str>,
    /// The cap on running stdio children (`limits.max_stdio_children`).
    slots: Arc<ChildSlots>,
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
        let slots = ChildSlots::new(cfg.limits.max_stdio_children);
        let mut upstreams = Vec::new();
        for u in &cfg.upstreams {
            let transport = match &u.url {
                Some(_) => Transport::Http(Box::new(HttpUpstream::new(u, max)?)),
                None => Transport::Stdio {
                    shared: Arc::new(StdioUpstream::new(
                        u.clone(),
                        max,
                        true,
                        hook.clone(),
                        slots.clone(),
                    )),
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
            by_prefix: crate::catalog::partitioned(
                cfg.upstreams.iter().map(|u| u.prefix.as_deref()),
            ),
            event_ids,
            pipeline: build(&cfg, &env),
            sessions: Sessions::new(cfg.sessions.clone()),
            cfg: Arc::new(cfg),
            upstreams,
            audit,
            metrics,
            limits,
            withheld: Mutex::new(Default::default()),
            store: Arc::new(MemoryStore::default()),
            in_flight: Default::default(),
            request_seq: AtomicU64::new(1),
            hook,
            stdio_label: "stdio".into(),
            slots,
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
                    standalone: Default::default(),
                },
                Transport::Stdio { .. } => Link::Stdio(Arc::new(StdioUpstream::new(
                    u.cfg.clone(),
                    self.cfg.limits.max_upstream_message_bytes,
                    false,
                    self.hook.clone(),
                    self.slots.clone(),
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
            catalog: Default::default(),
            principal: Mutex::new(None),
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

    /// Revoke the sessions `pick` chooses by fingerprint and owner (the admin listener): each
    /// ends as a DELETE would. Returns (fingerprint, owner) of each.
    pub async fn revoke_sessions(
        &self,
        pick: impl Fn(&str, &Owner) -> bool,
    ) -> Vec<(Arc<str>, String)> {
        let gone = self.sessions.revoke(pick);
        self.metrics.sessions_open.set(self.sessions.len() as i64);
        let mut out = Vec::with_capacity(gone.len());
        for (fp, owner, s) in gone {
            self.close_session(&s).await;
            out.push((fp, owner.to_string()));
        }
        out
    }

    /// What ending a session does beyond the table (also for sessions that expired).
    pub async fn close_session(&self, s: &SessionState) {
        for link in &s.links {
            match link {
                Link::Stdio(child) => child.shutdown().await,
                Link::Http { standalone, .. } => standalone.close(),
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

    /// Send a cleared message of `owner`'s to upstream `idx`, over the session's link when there
    /// is one. `msg` is the parse of the cleared bytes.
    pub async fn forward(
        &self,
        idx: usize,
        session: Option<&SessionState>,
        headers: &HeaderMap,
        msg: &Message<'_>,
        cleared: &Cleared,
        owner: &Owner,
    ) -> Result<(Reply, Option<String>), UpstreamError> {
        let shaped;
        let own = match cleared.upstream_headers_for(idx) {
            Some(h) => h,
            None => {
                let front = if matches!(owner, Owner::Local) {
                    warden_guard::Front::Stdio
                } else {
                    warden_guard::Front::Http
                };
                shaped = self
                    .pipeline
                    .own_request_for(cleared, idx, self.upstreams[idx].name.clone(), front)
                    .await
                    .map_err(|r| UpstreamError::Credential(r.message.to_string()))?;
                &shaped.headers
            }
        };
        let own = (!own.is_empty()).then_some(own);
        let bytes = cleared.bytes().clone();
        self.send(idx, session, headers, own, msg, bytes, Some(owner))
            .await
    }

    /// Warden's own request to upstream `idx` outside any session (a guard's own list, see
    /// `exchange::upstream_link`): not a client's, so it needs no clearance.
    pub(crate) async fn send_own(
        &self,
        idx: usize,
        headers: &HeaderMap,
        own: Option<&HeaderMap>,
        msg: &Message<'_>,
        bytes: Bytes,
    ) -> Result<(Reply, Option<String>), UpstreamError> {
        self.send(idx, None, headers, own, msg, bytes, None).await
    }

    /// A message to an upstream: a client's (cleared, `owner` set) or Warden's own (the
    /// `server/discover` probe: `owner` `None`, no clearance needed).
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        idx: usize,
        session: Option<&SessionState>,
        headers: &HeaderMap,
        own: Option<&HeaderMap>,
        msg: &Message<'_>,
        bytes: Bytes,
        owner: Option<&Owner>,
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
                let (child, own_child) = match link {
                    Some(Link::Stdio(c)) => (c.clone(), true),
                    _ => (shared.clone(), false),
                };
                // Boxed: the HTTP arm stays the size of the future every request moves.
                let sent = Box::pin(send_stdio(&child, own_child, msg, &bytes, owner)).await;
                if sent.is_err() {
                    child.note_exit_if_dead().await;
                }
                sent.map(|r| (r, None))
            }
        };
        tracing::debug!(upstream = %up.cfg.name, method = ?msg.method(), kind = ?msg.kind(), ok = result.is_ok(), "forwarded");
        // The health gauge is touched only when it changes: no label lookup on the hot path. No
        // child slot free says nothing about the upstream.
        let ok = result.is_ok();
        let about_upstream = !matches!(result, Err(UpstreamError::Capacity { .. }));
        if about_upstream && up.healthy.swap(ok, Ordering::Relaxed) != ok {
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
        // Warden's own request for the session: the upstream's credential for its principal.
        let principal = session
            .principal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let name = self.upstreams[idx].name.clone();
        let id = self.next_request_id();
        let own = match self
            .pipeline
            .own_request_as(idx, name, Front::Http, principal, id)
            .await
        {
            Ok(o) => o,
            Err(r) => return Some(Err(UpstreamError::Credential(r.message.to_string()))),
        };
        let own = (!own.headers.is_empty()).then_some(&own.headers);
        Some(
            h.send(method, headers, own, sid.as_deref(), Bytes::new())
                .await,
        )
    }

    /// Make sure upstream `idx`'s standalone stream is open for the session (HTTP upstreams;
    /// others have nothing to open): Warden's own GET, one per upstream per session, which the
    /// client's GET joins. Called when the session is initialized and by the client's GET.
    pub async fn open_standalone(
        &self,
        idx: usize,
        session: &SessionState,
        client_headers: &HeaderMap,
    ) -> Opened {
        let Link::Http { standalone, .. } = &session.links[idx] else {
            return Opened::NoStream(Reply::Accepted);
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("text/event-stream"),
        );
        if let Some(v) = client_headers.get("mcp-protocol-version") {
            headers.insert("mcp-protocol-version", v.clone());
        }
        // With several upstreams the stream's ids carry the upstream's name.
        let map: Option<crate::standalone::Map> = (self.upstreams.len() > 1).then(|| {
            let name = self.upstreams[idx].name.clone();
            Box::new(move |f| crate::tag::tag_frame(&name, f)) as _
        });
        standalone
            .ensure(
                || self.forward_http(idx, session, Method::GET, &headers),
                map,
            )
            .await
    }

    /// Does upstream `idx` speak the stateless 2026-07-28 generation? Asked once with
    /// `server/discover` (a 2025-era server refuses it) and remembered; a transport failure is
    /// not remembered, so the next request asks again. `Err` only when it could not be asked
    /// because no stdio child may be started (the caller's answer is that error, not a
    /// generation refusal).
    pub async fn speaks_stateless(&self, idx: usize) -> Result<bool, UpstreamError> {
        let up = &self.upstreams[idx];
        if let Some(known) = *up.stateless.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(known);
        }
        const PROBE: &str = r#"{"jsonrpc":"2.0","id":"warden-discover","method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"warden","version":"0"}}}}"#;
        let Ok(msg) = Message::parse(PROBE.as_bytes()) else {
            return Ok(false);
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
                None,
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
            Err(e @ UpstreamError::Capacity { .. }) => return Err(e),
            Err(_) => return Ok(false),
        };
        *up.stateless.lock().unwrap_or_else(|p| p.into_inner()) = Some(known);
        Ok(known)
    }
}

/// One message to a stdio child. A session's own child remembers its handshake once sent, to
/// replay it to a restarted child; the shared child keeps none (no client's may become
/// another's, #13 item 8).
async fn send_stdio(
    child: &StdioUpstream,
    own_child: bool,
    msg: &Message<'_>,
    bytes: &Bytes,
    owner: Option<&Owner>,
) -> Result<Reply, UpstreamError> {
    if msg.kind() == Kind::Request {
        let (frames, wire_id) = child.request(msg, owner).await?;
        if own_child && msg.method() == Some("initialize") {
            child.remember_init(Some(bytes.clone()), None);
        }
        return Ok(Reply::Stream {
            frames,
            sse: false,
            wire_id: Some(wire_id),
        });
    }
    child.send(bytes).await?;
    if own_child && msg.method() == Some("notifications/initialized") {
        child.remember_init(None, Some(bytes.clone()));
    }
    Ok(Reply::Accepted)
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
        let decision = if kind == "upstream.exit"
            || kind.ends_with("error")
            || kind.ends_with("overflow")
            || kind.ends_with("too_large")
        {
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
        if kind == "upstream.unattributed_message" {
            // A shared child's message no one client can be shown to own: dropped (#13 item 2).
            ev.decision = Decision::Deny;
            ev.reason = Some("unattributed_server_message".into());
            ev.control = Some("M2");
        }
        ev.hint = Some(detail);
        audit.emit(ev);
    })
}
