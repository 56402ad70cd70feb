//! `warden serve`: the Streamable HTTP endpoint (both protocol generations) in front of the
//! upstreams. This file owns the HTTP side — listener, connection limits, slow-client timeouts,
//! body limits, generation and session lookup — and hands each cleared message to the router.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use warden_proto::error::code;
use warden_proto::limits::LimitError;
use warden_proto::{Generation, Kind, Message, ProtocolVersion, envelope};

use super::body::Response;
use super::respond;
use super::workers::{self, Accepted, Draining, Workers};
use crate::gateway::{Gateway, SessionState};
use crate::guard::{Ctx, HttpFacts, Refusal};
use crate::router;
use crate::session::{Owner, fingerprint};

/// Accept connections until `shutdown` resolves; each is served on a connection worker (see
/// [`super::workers`]). Fails only when the workers cannot be started.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(gw.cfg.server.max_connections));
    let n = workers::count(gw.cfg.server.worker_threads);
    let served = gw.clone();
    // Nearer than any per-request timer (header and body timeouts), so arming one never wakes
    // the reactor (see `Workers::start`).
    let tick = Duration::from_millis(
        (gw.cfg
            .server
            .header_timeout_ms
            .min(gw.cfg.server.body_timeout_ms)
            / 2)
        .clamp(50, 1000),
    );
    let grace = Duration::from_secs(gw.cfg.server.shutdown_grace_secs);
    let workers = Workers::start(n, tick, grace, move |c, d| {
        serve_connection(served.clone(), c, d)
    })?;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => {
                // New connections are refused from here on; those open finish their requests.
                drop(listener);
                tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining connections");
                workers.shutdown(grace + Duration::from_secs(1)).await;
                return Ok(());
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse_connection(
                &gw,
                peer,
                "too_many_connections",
                "P4.4",
                "server.max_connections are open; retry later",
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The socket leaves this runtime's reactor and joins its worker's.
        let Ok(stream) = stream.into_std() else {
            refuse_connection(
                &gw,
                peer,
                "socket_handoff_failed",
                "P4.4",
                "the accepted socket could not be handed to a worker; retry",
            );
            continue;
        };
        let accepted = Accepted {
            stream,
            peer,
            permit,
        };
        if workers.dispatch(accepted).is_err() {
            refuse_connection(
                &gw,
                peer,
                "worker_unavailable",
                "P4.4",
                "a connection worker stopped; report this and restart Warden",
            );
        }
    }
}

/// A connection closed before any request was read: audited and logged (the client sees the
/// connection close; there is no request to answer).
fn refuse_connection(
    gw: &Gateway,
    peer: std::net::SocketAddr,
    reason: &'static str,
    control: &'static str,
    hint: &'static str,
) {
    tracing::warn!(%peer, reason, "connection refused");
    gw.metrics
        .refusals
        .get_or_create(&crate::metrics::ReasonLabel { reason })
        .inc();
    let mut ev = warden_audit::AuditEvent::new("connection.refused", warden_audit::Decision::Deny);
    ev.client = Some(peer.to_string().into());
    ev.reason = Some(reason.into());
    ev.control = Some(control);
    ev.hint = Some(hint.into());
    gw.audit.emit(ev);
}

/// One downstream connection, on its worker's runtime.
async fn serve_connection(gw: Arc<Gateway>, conn: Accepted, mut draining: Draining) {
    let Accepted {
        stream,
        peer,
        permit,
    } = conn;
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        refuse_connection(
            &gw,
            peer,
            "socket_handoff_failed",
            "P4.4",
            "the accepted socket could not join its worker; retry",
        );
        return;
    };
    let header_timeout = Duration::from_millis(gw.cfg.server.header_timeout_ms);
    // Audit events name the client; format its address once per connection.
    let label: Arc<str> = peer.to_string().into();
    let svc = service_fn(move |req| {
        let gw = gw.clone();
        let ctx = Ctx::new(gw.next_request_id(), Some(peer), label.clone());
        async move { Ok::<_, Infallible>(handle(gw, ctx, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async { drop(draining.wait_for(|d| *d).await) } => {
            // Shutting down: finish the request in flight, then close (HTTP/1.1: no keep-alive;
            // HTTP/2: GOAWAY).
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    drop(permit);
}

fn bad(
    status: u16,
    rpc: i64,
    reason: &'static str,
    message: impl Into<std::borrow::Cow<'static, str>>,
    hint: &'static str,
) -> Refusal {
    Refusal::new(status, rpc, reason, "P1.1", message, hint)
}

/// The owner a session is bound to: the authenticated subject, else the client address.
pub fn owner_of(ctx: &Ctx) -> Owner {
    match (&ctx.subject, ctx.client) {
        (Some(s), _) => Owner::Subject(s.clone()),
        (None, Some(c)) => Owner::Addr(c.ip()),
        (None, None) => Owner::Local,
    }
}

async fn handle(gw: Arc<Gateway>, mut ctx: Ctx, req: Request<Incoming>) -> Response {
    if req.uri().path() != gw.cfg.server.path {
        let r = Refusal::new(
            404,
            code::INVALID_REQUEST,
            "unknown_path",
            "P1.1",
            "Not Found",
            "the MCP endpoint is at server.path",
        );
        return respond::refuse(&gw, &ctx, r, None);
    }
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let facts = HttpFacts {
        method: req.method(),
        path: req.uri().path(),
        authority: authority.as_deref(),
        headers: req.headers(),
    };
    if let Err(r) = gw.pipeline.http_request(&facts, &mut ctx) {
        return respond::refuse(&gw, &ctx, r, None);
    }
    match *req.method() {
        Method::POST => post(gw, ctx, req).await,
        Method::GET | Method::DELETE => {
            crate::downstream::http_session::get_or_delete(gw, ctx, req).await
        }
        _ => {
            let r = Refusal::new(
                405,
                code::INVALID_REQUEST,
                "method_not_allowed",
                "P1.1",
                "Method Not Allowed",
                "use POST (and GET/DELETE with a session)",
            );
            respond::refuse(&gw, &ctx, r, None)
        }
    }
}

async fn read_body(gw: &Gateway, body: Incoming) -> Result<Bytes, Refusal> {
    let max = gw.cfg.limits.max_body_bytes;
    let timeout = Duration::from_millis(gw.cfg.server.body_timeout_ms);
    let too_large = || {
        Refusal::new(
            413,
            code::INVALID_REQUEST,
            "body_too_large",
            "P1.1",
            format!("Request body over {max} bytes"),
            "send a smaller message; the limit is limits.max_body_bytes",
        )
    };
    // A declared length over the limit is refused from the head: no wait, no `100 Continue`.
    if hyper::body::Body::size_hint(&body).lower() > max as u64 {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(Refusal::new(
            408,
            code::INVALID_REQUEST,
            "body_timeout",
            "P4.4",
            "Request body not received in time",
            "send the whole body promptly",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(bad(
            400,
            code::INVALID_REQUEST,
            "body_read_failed",
            "Request body could not be read",
            "resend the request",
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn limit_refusal(e: LimitError) -> Refusal {
    match e {
        LimitError::TooLarge { .. } => Refusal::new(
            413,
            code::INVALID_REQUEST,
            "body_too_large",
            "P1.1",
            e.to_string(),
            "send a smaller message",
        ),
        LimitError::TooDeep { .. } => bad(
            400,
            code::INVALID_REQUEST,
            "json_too_deep",
            e.to_string(),
            "flatten the JSON; the limit is limits.max_json_depth",
        ),
        LimitError::InvalidUtf8 { .. } => bad(
            400,
            code::PARSE_ERROR,
            "invalid_utf8",
            e.to_string(),
            "JSON-RPC messages must be UTF-8",
        ),
    }
}

/// The session-based generation's `MCP-Protocol-Version` header rule: absent → 2025-03-26;
/// present and unknown → 400.
fn session_version(headers: &HeaderMap) -> Result<ProtocolVersion, Refusal> {
    match headers.get("mcp-protocol-version").map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| ProtocolVersion::parse(s.trim()))
    }) {
        None => Ok(ProtocolVersion::DEFAULT_WITHOUT_HEADER),
        Some(Some(v)) => Ok(v),
        Some(None) => Err(Refusal::new(
            400,
            code::INVALID_REQUEST,
            "unsupported_protocol_version",
            "P3.4",
            "Unsupported MCP-Protocol-Version",
            "send a protocol version Warden supports",
        )
        .with_data(
            "supported",
            ProtocolVersion::ALL
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .into(),
        )),
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json_media_type(ct: &str) -> bool {
    ct.split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Does this session-less request belong to the stateless generation?
fn is_stateless(headers: &HeaderMap, msg: &Message<'_>) -> bool {
    let header = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| ProtocolVersion::parse(s.trim()));
    if header.map(ProtocolVersion::generation) == Some(Generation::Stateless) {
        return true;
    }
    msg.params_view()
        .ok()
        .and_then(|p| p.meta)
        .is_some_and(|m| m.protocol_version.is_some())
}

async fn post(gw: Arc<Gateway>, mut ctx: Ctx, req: Request<Incoming>) -> Response {
    let (parts, body) = req.into_parts();
    let ct = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !is_json_media_type(ct) {
        let r = Refusal::new(
            415,
            code::INVALID_REQUEST,
            "unsupported_media_type",
            "P1.1",
            "Content-Type must be application/json",
            "send the JSON-RPC message as application/json",
        );
        return respond::refuse(&gw, &ctx, r, None);
    }
    let bytes = match read_body(&gw, body).await {
        Ok(b) => b,
        Err(r) => return respond::refuse(&gw, &ctx, r, None),
    };
    if let Err(e) = gw.limits.check(&bytes) {
        return respond::refuse(&gw, &ctx, limit_refusal(e), None);
    }
    let headers = Arc::new(parts.headers);
    if envelope::is_batch(&bytes) {
        let r = bad(
            400,
            code::INVALID_REQUEST,
            "batch_not_allowed",
            "JSON-RPC batches are not accepted",
            "send one message per POST (batches exist only in 2025-03-26, which Warden relays one message at a time)",
        );
        return respond::refuse(&gw, &ctx, r, None);
    }
    let msg = match Message::parse(&bytes) {
        Ok(m) => m,
        Err(e) => {
            return respond::refuse(
                &gw,
                &ctx,
                Refusal::invalid_message(&e, "send one valid JSON-RPC 2.0 message"),
                None,
            );
        }
    };
    ctx.method = msg.method().map(crate::metrics::method_name);
    if let Ok(p) = msg.params_view() {
        ctx.tool = p
            .name
            .as_deref()
            .or(p.uri.as_deref())
            .map(|s| crate::gateway::truncate_shared(s, 256));
    }
    ctx.headers = Some(headers.clone());
    let session_header = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    // Which generation, and which session.
    let mut session: Option<Arc<SessionState>> = None;
    let mut new_session_id: Option<String> = None;
    // An `initialize` that declares the stateless generation (header or `_meta`) is a 2026-07-28
    // request for a removed method, not the start of a session.
    let modern = session_header.is_none() && is_stateless(&headers, &msg);
    if msg.method() == Some("initialize") && !modern {
        if session_header.is_some() {
            return respond::refuse(
                &gw,
                &ctx,
                bad(
                    400,
                    code::INVALID_REQUEST,
                    "initialize_in_session",
                    "initialize must not carry Mcp-Session-Id",
                    "start a new session without the header",
                ),
                msg.id(),
            );
        }
        ctx.generation = Some(Generation::Session);
        let owner = owner_of(&ctx);
        match gw
            .sessions
            .open(&owner, |id| gw.new_session_state(fingerprint(id)))
        {
            Ok((id, state)) => {
                ctx.session = Some(state.fingerprint.clone());
                gw.metrics.sessions_open.set(gw.sessions.len() as i64);
                session = Some(state);
                new_session_id = Some(id);
            }
            Err(e) => {
                let reason = match e {
                    crate::session::OpenError::OwnerCap => "session_limit_client",
                    crate::session::OpenError::TotalCap => "session_limit_total",
                    crate::session::OpenError::Rng => "session_rng_failed",
                };
                let mut r = Refusal::new(
                    429,
                    code::GATEWAY_DENIED,
                    reason,
                    "P8.3",
                    "Too many open sessions",
                    "end unused sessions with DELETE or wait for them to expire",
                );
                r.retry_after = Some(60);
                return respond::refuse(&gw, &ctx, r, msg.id());
            }
        }
    } else if let Some(sid) = &session_header {
        ctx.generation = Some(Generation::Session);
        match session_version(&headers) {
            Ok(v) => ctx.version = Some(v),
            Err(r) => {
                ctx.session = Some(fingerprint(sid));
                return respond::refuse(&gw, &ctx, r, msg.id());
            }
        }
        match gw.sessions.get(&owner_of(&ctx), sid) {
            Ok(s) => {
                ctx.session = Some(s.fingerprint.clone());
                session = Some(s);
            }
            Err(_) => {
                // The audit trail keeps the fingerprint of the id that was tried.
                ctx.session = Some(fingerprint(sid));
                let r = respond::session_not_found();
                return respond::refuse(&gw, &ctx, r, msg.id());
            }
        }
    } else if modern {
        ctx.generation = Some(Generation::Stateless);
        ctx.version = Some(ProtocolVersion::V2026_07_28);
        if matches!(msg.kind(), Kind::Response | Kind::Error) {
            return respond::refuse(
                &gw,
                &ctx,
                bad(
                    400,
                    code::INVALID_REQUEST,
                    "response_not_allowed",
                    "2026-07-28 clients do not send responses",
                    "use MRTR inputResponses instead",
                ),
                msg.id(),
            );
        }
    } else {
        let r = bad(
            400,
            code::INVALID_REQUEST,
            "session_required",
            "Bad Request: Mcp-Session-Id header is required",
            "send initialize first, then the Mcp-Session-Id it returned; or use 2026-07-28 with _meta",
        );
        return respond::refuse(&gw, &ctx, r, msg.id());
    }

    router::dispatch(gw, ctx, headers, &bytes, &msg, session, new_session_id).await
}
