//! Where messages enter the exchange: a POSTed body ([`post`]), a stdio line ([`line`]), the
//! session's GET stream ([`get`]) and its end ([`delete`]). Each applies the input limits and
//! the envelope (P1.1), decides the generation and the session (M2, M4, P3.4, P8), then hands
//! the message to [`super::exchange`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use warden_audit::Decision;
use warden_guard::{Ctx, Refusal, Route};
use warden_proto::error::code;
use warden_proto::limits::LimitError;
use warden_proto::{Generation, Kind, Message, ProtocolVersion, envelope};

use super::answer::{Answer, Answered, Early, refuse};
use super::relay::{Relay, upstream_refusal};
use super::{Incoming, describe, exchange, owner_of};
use crate::gateway::{Gateway, Link, SessionState};
use crate::session::fingerprint;
use crate::upstream::Reply;

fn bad(
    status: u16,
    rpc: i64,
    reason: &'static str,
    message: impl Into<std::borrow::Cow<'static, str>>,
    hint: &'static str,
) -> Refusal {
    Refusal::new(status, rpc, reason, "P1.1", message, hint)
}

/// The input limits' refusal (P1.1).
pub fn limit_refusal(e: LimitError) -> Refusal {
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

/// Limits, batch rule and envelope for bytes from a client.
fn envelope_of<'a>(
    gw: &Gateway,
    raw: &'a Bytes,
    hint: &'static str,
) -> Result<Message<'a>, Refusal> {
    gw.limits.check(raw).map_err(limit_refusal)?;
    if envelope::is_batch(raw) {
        return Err(bad(
            400,
            code::INVALID_REQUEST,
            "batch_not_allowed",
            "JSON-RPC batches are not accepted",
            "send one message at a time (batches exist only in 2025-03-26, which Warden relays one message at a time)",
        ));
    }
    Message::parse(raw).map_err(|e| Refusal::invalid_message(&e, hint))
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

/// Does this session-less message belong to the stateless generation?
fn is_stateless(headers: &HeaderMap, msg: &Message<'_>) -> bool {
    let header = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| ProtocolVersion::parse(s.trim()));
    if header.map(ProtocolVersion::generation) == Some(Generation::Stateless) {
        return true;
    }
    declares_stateless(msg)
}

fn declares_stateless(msg: &Message<'_>) -> bool {
    msg.params_view()
        .ok()
        .and_then(|p| p.meta)
        .is_some_and(|m| m.protocol_version.is_some())
}

/// A POSTed message (its body read within the limits by the front end).
pub async fn post(
    gw: Arc<Gateway>,
    mut ctx: Ctx,
    headers: Arc<HeaderMap>,
    bytes: Bytes,
    early: Early,
) -> Answered {
    let msg = match envelope_of(&gw, &bytes, "send one valid JSON-RPC 2.0 message") {
        Ok(m) => m,
        Err(r) => return refuse(&gw, &ctx, r, None),
    };
    describe(&mut ctx, &msg);
    ctx.headers = Some(headers.clone());
    let session_header = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let mut session: Option<Arc<SessionState>> = None;
    let mut new_session: Option<String> = None;
    // An `initialize` that declares the stateless generation (header or `_meta`) is a 2026-07-28
    // request for a removed method, not the start of a session.
    let modern = session_header.is_none() && is_stateless(&headers, &msg);
    if msg.method() == Some("initialize") && !modern {
        if session_header.is_some() {
            let r = bad(
                400,
                code::INVALID_REQUEST,
                "initialize_in_session",
                "initialize must not carry Mcp-Session-Id",
                "start a new session without the header",
            );
            return refuse(&gw, &ctx, r, msg.id());
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
                new_session = Some(id);
            }
            Err(e) => {
                let reason = match e {
                    crate::session::OpenError::OwnerCap => "session_limit_client",
                    crate::session::OpenError::TotalCap => "session_limit_total",
                    crate::session::OpenError::Rng => "session_rng_failed",
                };
                let r = Refusal::new(
                    429,
                    code::GATEWAY_DENIED,
                    reason,
                    "P8.3",
                    "Too many open sessions",
                    "end unused sessions with DELETE or wait for them to expire",
                )
                .retry_after(60);
                return refuse(&gw, &ctx, r, msg.id());
            }
        }
    } else if let Some(sid) = &session_header {
        ctx.generation = Some(Generation::Session);
        ctx.session = Some(fingerprint(sid));
        match session_version(&headers) {
            Ok(v) => ctx.version = Some(v),
            Err(r) => return refuse(&gw, &ctx, r, msg.id()),
        }
        match gw.sessions.get(&owner_of(&ctx), sid) {
            Ok(s) => session = Some(s),
            // The audit trail keeps the fingerprint of the id that was tried.
            Err(_) => return refuse(&gw, &ctx, session_not_found(), msg.id()),
        }
    } else if modern {
        ctx.generation = Some(Generation::Stateless);
        ctx.version = Some(ProtocolVersion::V2026_07_28);
        if matches!(msg.kind(), Kind::Response | Kind::Error) {
            let r = bad(
                400,
                code::INVALID_REQUEST,
                "response_not_allowed",
                "2026-07-28 clients do not send responses",
                "use MRTR inputResponses instead",
            );
            return refuse(&gw, &ctx, r, msg.id());
        }
    } else {
        let r = bad(
            400,
            code::INVALID_REQUEST,
            "session_required",
            "Bad Request: Mcp-Session-Id header is required",
            "send initialize first, then the Mcp-Session-Id it returned; or use 2026-07-28 with _meta",
        );
        return refuse(&gw, &ctx, r, msg.id());
    }
    let inc = Incoming {
        raw: &bytes,
        msg: &msg,
        headers: &headers,
        session,
        new_session,
    };
    exchange(&gw, ctx, inc, early).await
}

/// One line from the local stdio client (`warden wrap`): the wrapped server is the session's one
/// upstream, and the client owns it.
pub async fn line(
    gw: Arc<Gateway>,
    mut ctx: Ctx,
    session: Arc<SessionState>,
    headers: Arc<HeaderMap>,
    raw: Bytes,
    early: Early,
) -> Answered {
    let msg = match envelope_of(&gw, &raw, "send one valid JSON-RPC 2.0 message per line") {
        Ok(m) => m,
        Err(r) => return refuse(&gw, &ctx, r, None),
    };
    describe(&mut ctx, &msg);
    ctx.session = Some(session.fingerprint.clone());
    ctx.generation = Some(
        if declares_stateless(&msg) && msg.method() != Some("initialize") {
            Generation::Stateless
        } else {
            Generation::Session
        },
    );
    let inc = Incoming {
        raw: &raw,
        msg: &msg,
        headers: &headers,
        session: Some(session),
        new_session: None,
    };
    exchange(&gw, ctx, inc, early).await
}

/// The answer to a session id that is unknown, ended, expired or another owner's: all alike (M2).
pub fn session_not_found() -> Refusal {
    Refusal::new(
        404,
        code::GATEWAY_DENIED,
        "session_not_found",
        "M2",
        "Session not found",
        "the session ended, expired or belongs to another client; initialize a new one",
    )
}

/// The session a GET or DELETE names, or the refusal.
fn session_of(
    gw: &Gateway,
    ctx: &mut Ctx,
    headers: &HeaderMap,
) -> Result<(String, Arc<SessionState>), Refusal> {
    let Some(sid) = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        let session_era = headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| ProtocolVersion::parse(s.trim()))
            .is_some_and(|v| v.generation() == Generation::Session);
        return Err(if session_era {
            bad(
                400,
                code::INVALID_REQUEST,
                "session_required",
                "Bad Request: Mcp-Session-Id header is required",
                "GET and DELETE act on a session; send its Mcp-Session-Id",
            )
        } else {
            bad(
                405,
                code::INVALID_REQUEST,
                "method_not_allowed",
                "Method Not Allowed",
                "2026-07-28 has no GET stream or DELETE; use POST (subscriptions/listen for notifications)",
            )
        });
    };
    ctx.session = Some(fingerprint(&sid));
    ctx.generation = Some(Generation::Session);
    let s = gw
        .sessions
        .get(&owner_of(ctx), &sid)
        .map_err(|_| session_not_found())?;
    Ok((sid, s))
}

/// GET: the session's standalone server→client stream, every message through the guards.
pub async fn get(gw: Arc<Gateway>, mut ctx: Ctx, headers: HeaderMap) -> Answered {
    ctx.method = Some("GET stream".into());
    let session = match session_of(&gw, &mut ctx, &headers) {
        Ok((_, s)) => s,
        Err(r) => return refuse(&gw, &ctx, r, None),
    };
    if !super::accepts_sse(&headers) {
        let r = bad(
            406,
            code::INVALID_REQUEST,
            "not_acceptable",
            "Not Acceptable: the GET stream is text/event-stream",
            "send Accept: text/event-stream",
        );
        return refuse(&gw, &ctx, r, None);
    }
    // A resumption names one of this session's own events, or nothing reaches an upstream.
    let headers = match super::resume::translate(&gw, &session, headers) {
        Ok(h) => h,
        Err(r) => return refuse(&gw, &ctx, r, None),
    };
    let timeout = Duration::from_secs(3600);
    if gw.upstreams.len() > 1 {
        let frames = super::fanout::get_stream(&gw, &headers, &session).await;
        return Relay::new(gw.clone(), ctx, timeout)
            .respond(Reply::Stream {
                frames,
                sse: true,
                wire_id: None,
            })
            .await;
    }
    ctx.route = Some(Route::to(0, gw.upstreams[0].name.clone()));
    let mut log = None;
    let reply = match &session.links[0] {
        Link::Stdio(child) => {
            // Resume a Warden-numbered stream of this session, or open the standalone stream.
            let resume = headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::event_log::parse_event_id);
            if let Some((stream, seq)) = resume
                && session.events.after(stream, Some(seq)).is_some()
            {
                let mut ev = ctx.event("stream.resume", Decision::Allow);
                ev.control = Some("P8.3");
                gw.audit.emit(ev);
                let rx = crate::event_log::follow(session.events.clone(), stream, Some(seq));
                return Answer::Stream(rx).into();
            }
            log = Some(session.events.clone());
            Ok(Reply::Stream {
                frames: child.open_server_stream(),
                sse: false,
                wire_id: None,
            })
        }
        Link::Http { standalone, .. } => {
            let opened = if headers.contains_key("last-event-id") {
                None
            } else {
                standalone.lock().ok().and_then(|mut s| s.take())
            };
            match opened {
                Some(frames) => Ok(Reply::Stream {
                    frames,
                    sse: true,
                    wire_id: None,
                }),
                None => match gw
                    .forward_http(0, &session, http::Method::GET, &headers)
                    .await
                {
                    Some(Ok(a)) => Ok(a.reply),
                    Some(Err(e)) => Err(e),
                    None => Ok(Reply::Accepted),
                },
            }
        }
    };
    match reply {
        Ok(reply) => {
            let relay = Relay {
                log,
                ..Relay::new(gw.clone(), ctx, timeout)
            };
            relay.respond(reply).await
        }
        Err(e) => refuse(&gw, &ctx, upstream_refusal(&e), None),
    }
}

/// DELETE: end Warden's session whatever the upstreams answer; the single upstream's status is
/// relayed.
pub async fn delete(gw: Arc<Gateway>, mut ctx: Ctx, headers: HeaderMap) -> Answered {
    ctx.method = Some("DELETE session".into());
    let (sid, session) = match session_of(&gw, &mut ctx, &headers) {
        Ok(x) => x,
        Err(r) => return refuse(&gw, &ctx, r, None),
    };
    let mut status = 200;
    for (idx, link) in session.links.iter().enumerate() {
        if let Link::Http { .. } = link
            && let Some(Ok(a)) = gw
                .forward_http(idx, &session, http::Method::DELETE, &headers)
                .await
            && gw.upstreams.len() == 1
        {
            status = a.status;
        }
    }
    gw.end_session(&owner_of(&ctx), &sid).await;
    let mut ev = ctx.event("session.close", Decision::Info);
    ev.status = Some(status);
    gw.audit.emit(ev);
    Answer::Empty(status).into()
}
