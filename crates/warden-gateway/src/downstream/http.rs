//! `warden serve`: the Streamable HTTP front end (both protocol generations). This file owns the
//! HTTP side — listener, connection limits, slow-client timeouts, the request head guards, paths
//! guards serve, body limits — and hands each message to the [`crate::exchange`] core, writing
//! its answer back (JSON, or SSE when the answer streams or a guard talks to the client first).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use warden_audit::Decision::{Deny, Info};
use warden_guard::{Ctx, Front, HttpFacts, Refusal};
use warden_proto::error::code;

use super::body::{ChannelBody, Response};
use super::deadline::{self, Activity, Event, Phase, Step, Tracked, Watch};
use super::gate::Gated;
use super::respond;
use super::workers::{self, Accepted, Draining, Workers};
use crate::exchange::{self, answer::Answered, answer::Early};
use crate::gateway::Gateway;

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
            .min(gw.cfg.server.first_request_timeout().as_millis() as u64)
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
                gw.stopping();
                workers
                    .shutdown(grace + Duration::from_secs(1), gw.stop(Duration::from_secs(3)))
                    .await;
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
    audit_connection(gw, peer, "connection.refused", Deny, reason, control, hint);
}

/// A connection closed by Warden: a `kind` audit event with its reason. A `Deny` is also logged
/// and counted in `warden_refusals_total`; an `Info` (an idle connection's ordinary end) is not.
fn audit_connection(
    gw: &Gateway,
    peer: std::net::SocketAddr,
    kind: &'static str,
    decision: warden_audit::Decision,
    reason: &'static str,
    control: &'static str,
    hint: &'static str,
) {
    if decision == Deny {
        tracing::warn!(%peer, reason, "connection refused");
        gw.metrics
            .refusals
            .get_or_create(&crate::metrics::ReasonLabel { reason })
            .inc();
    } else {
        tracing::debug!(%peer, reason, "connection closed");
    }
    let mut ev = warden_audit::AuditEvent::new(kind, decision);
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
    let idle = Duration::from_secs(gw.cfg.server.idle_timeout_secs);
    // Audit events name the client; format its address once per connection.
    let label: Arc<str> = peer.to_string().into();
    let activity = Arc::new(Activity::default());
    let seen = activity.clone();
    let served = gw.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let gw = served.clone();
        let open = seen.begin(req.version());
        let ctx = Ctx::new(gw.next_request_id(), Front::Http, Some(peer), label.clone());
        async move {
            let r = handle(gw, ctx, req).await;
            Ok::<_, Infallible>(r.map(|b| Tracked::new(b, open)))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    // The connection's one timer (see `super::deadline`): its first request head, then (HTTP/2)
    // idleness.
    let timer = tokio::time::sleep(gw.cfg.server.first_request_timeout());
    tokio::pin!(timer);
    let mut phase = Phase::First;
    let drain = async { drop(draining.wait_for(|d| *d).await) };
    tokio::pin!(drain);
    // Polled only when the drain signal or the timer wakes, not on every wake of `conn`.
    let mut watch = Gated::new(Watch {
        drain: drain.as_mut(),
        timer: timer.as_mut(),
        armed: true,
    });
    let ended = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            event = &mut watch => match event {
                Event::Drain => {
                    // Shutting down: finish the request in flight, then close (HTTP/1.1: no
                    // keep-alive; HTTP/2: GOAWAY).
                    conn.as_mut().graceful_shutdown();
                    break conn.as_mut().await;
                }
                Event::Deadline => match deadline::on_expiry(&activity, phase, idle) {
                    Step::FirstRequestTimeout => {
                        audit_connection(
                            &gw,
                            peer,
                            "connection.timeout",
                            Deny,
                            "first_request_timeout",
                            "P4.4",
                            "send a complete request head promptly after connecting \
                             (server.first_request_timeout_ms)",
                        );
                        drop(permit);
                        return;
                    }
                    Step::Idle => {
                        audit_connection(
                            &gw,
                            peer,
                            "connection.timeout",
                            Info,
                            "idle_timeout",
                            "P4.4",
                            "the HTTP/2 connection had no open stream for server.idle_timeout_secs; \
                             reconnect when needed",
                        );
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(header_timeout, conn.as_mut()).await;
                        break Ok(());
                    }
                    Step::Rearm { after, phase: next } => {
                        phase = next;
                        let w = watch.get_mut();
                        w.timer.as_mut().reset(tokio::time::Instant::now() + after);
                        watch.repoll();
                    }
                    Step::Stop => watch.get_mut().armed = false,
                },
            },
        }
    };
    if let Err(e) = ended
        && let Some(e) = e.downcast_ref::<hyper::Error>()
    {
        // hyper's own refusals end the connection: audit them too (they are not silent).
        if e.is_timeout() {
            audit_connection(
                &gw,
                peer,
                "connection.timeout",
                Deny,
                "header_timeout",
                "P4.4",
                "send the whole request head within server.header_timeout_ms",
            );
        } else if e.is_parse() {
            // e.g. a Transfer-Encoding that does not end in chunked, or one in HTTP/1.0: hyper
            // answers 400 itself.
            audit_connection(
                &gw,
                peer,
                "connection.refused",
                Deny,
                "malformed_http",
                "P1.1",
                "send a well-formed HTTP/1.1 or HTTP/2 request",
            );
        }
    }
    drop(permit);
}

/// A refusal answered before the request body was read: on HTTP/1.x with a body, the
/// connection cannot carry another request (the unread body is in the way), so the answer says
/// `Connection: close` and no client reuses it into a reset (a 401 before a token is the usual
/// case: the client retries at once with one).
fn unread(req_has_body: bool, h1: bool, mut resp: Response) -> Response {
    if req_has_body && h1 {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    resp
}

fn has_body(req: &Request<Incoming>) -> bool {
    use hyper::body::Body as _;
    !req.body().is_end_stream()
}

async fn handle(gw: Arc<Gateway>, mut ctx: Ctx, req: Request<Incoming>) -> Response {
    let h1 = req.version() < http::Version::HTTP_2;
    let body = has_body(&req);
    let path = req.uri().path();
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let facts = HttpFacts {
        method: req.method(),
        path,
        authority: authority.as_deref(),
        headers: req.headers(),
    };
    if path != gw.cfg.server.path {
        // A path a guard serves (well-known metadata), after the head guards like any request.
        if gw.pipeline.serves(path) {
            if let Err(r) = gw.pipeline.http_request(&facts, &mut ctx).await {
                return unread(body, h1, respond::refuse(&gw, &ctx, r, None));
            }
            if let Some(l) = gw.pipeline.serve_local(&facts, &mut ctx).await {
                return respond::local(l);
            }
        }
        let r = Refusal::new(
            404,
            code::INVALID_REQUEST,
            "unknown_path",
            "P1.1",
            "Not Found",
            "the MCP endpoint is at server.path",
        );
        return unread(body, h1, respond::refuse(&gw, &ctx, r, None));
    }
    if let Err(r) = gw.pipeline.http_request(&facts, &mut ctx).await {
        return unread(body, h1, respond::refuse(&gw, &ctx, r, None));
    }
    match *req.method() {
        Method::POST => post(gw, ctx, req).await,
        // GET and DELETE are boxed: their state stays out of every POST's future, which hyper
        // moves whole (it is benchmarked).
        Method::GET => {
            respond::answered(Box::pin(exchange::get(gw, ctx, req.headers().clone())).await)
        }
        Method::DELETE => {
            respond::answered(Box::pin(exchange::delete(gw, ctx, req.headers().clone())).await)
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
            unread(body, h1, respond::refuse(&gw, &ctx, r, None))
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
        Ok(Err(_)) => Err(Refusal::new(
            400,
            code::INVALID_REQUEST,
            "body_read_failed",
            "P1.1",
            "Request body could not be read",
            "resend the request",
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json_media_type(ct: &str) -> bool {
    ct.split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

async fn post(gw: Arc<Gateway>, ctx: Ctx, req: Request<Incoming>) -> Response {
    let (h1, with_body) = (req.version() < http::Version::HTTP_2, has_body(&req));
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
        return unread(with_body, h1, respond::refuse(&gw, &ctx, r, None));
    }
    let bytes = match read_body(&gw, body).await {
        Ok(b) => b,
        // Too large, too slow or broken: the rest of the body is not read either.
        Err(r) => return unread(with_body, h1, respond::refuse(&gw, &ctx, r, None)),
    };
    let headers = Arc::new(parts.headers);
    let (early, switched) = Early::http(exchange::accepts_sse(&headers));
    // Boxed so that it can move onto a task if a guard switches the answer to a stream.
    let mut answer = Box::pin(exchange::post(gw, ctx, headers, bytes, early));
    tokio::select! {
        biased;
        a = &mut answer => respond::answered(a),
        Ok(rx) = switched => {
            // A guard is talking to the client before the exchange has its answer (an
            // elicitation): answer with a stream now; the rest of the exchange follows on it.
            let (tx, out) = mpsc::channel::<Bytes>(64);
            let early_rx = rx;
            tokio::spawn(async move {
                let mut early_rx = early_rx;
                loop {
                    tokio::select! {
                        biased;
                        Some(b) = early_rx.recv() => {
                            if tx.send(b).await.is_err() {
                                return;
                            }
                        }
                        a = &mut answer => {
                            while let Ok(b) = early_rx.try_recv() {
                                let _ = tx.send(b).await;
                            }
                            follow_on(a, &tx).await;
                            return;
                        }
                    }
                }
            });
            respond::sse(http_body_util::Either::Right(ChannelBody(out)))
        }
    }
}

/// The exchange's answer written onto a stream that is already open.
async fn follow_on(a: Answered, tx: &mpsc::Sender<Bytes>) {
    use exchange::answer::{Answer, Wire, encode};
    match a.answer {
        Answer::Json { body, .. } => {
            let _ = tx.send(encode(Wire::Sse, &body)).await;
        }
        Answer::Refused { refusal, id } => {
            let body = refusal.to_rpc_error().to_bytes(id.as_deref());
            let _ = tx.send(encode(Wire::Sse, &body)).await;
        }
        Answer::Stream(mut rx) => {
            while let Some(b) = rx.recv().await {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
        }
        // Lines of a streamed JSON body, on a stream that is already SSE: one event each.
        Answer::Lines { mut rx, .. } => {
            while let Some(b) = rx.recv().await {
                let message = b.strip_suffix(b"\n").unwrap_or(&b);
                if tx.send(encode(Wire::Sse, message)).await.is_err() {
                    return;
                }
            }
        }
        Answer::Accepted | Answer::Local(_) | Answer::Empty(_) => {}
    }
}
