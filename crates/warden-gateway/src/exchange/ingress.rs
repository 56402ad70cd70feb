//! Where messages enter the exchange: a POSTed body ([`post`]), a stdio line ([`line`]), the
//! session's GET stream ([`get`]) and its end ([`delete`]). Each applies the input limits and
//! the envelope (P1.1), decides the generation and the session (M2, M4, P3.4, P8), then hands
//! the message to [`super::exchange`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use warden_audit::Decision;
use warden_guard::{Ctx, Refusal, Route};
use warden_proto::envelope::Params;
use warden_proto::error::code;
use warden_proto::limits::LimitError;
use warden_proto::{Generation, Kind, Message, ProtocolVersion, envelope};

use super::answer::{Answer, Answered, Early, refuse};
use super::relay::{Relay, upstream_refusal};
use super::{Incoming, describe, exchange, owner_of};
use crate::gateway::{Gateway, Link, SessionState};
use crate::session::fingerprint;
use crate::standalone::Opened;
use crate::upstream::Reply;

const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

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
/// On a refusal, the message's id when it could still be read (to echo in the error).
fn envelope_of<'a>(
    gw: &Gateway,
    raw: &'a Bytes,
    hint: &'static str,
) -> Result<Message<'a>, (Refusal, Option<Box<serde_json::value::RawValue>>)> {
    let plain = |r| (r, None);
    // One walk: the depth limit and the repeated-key rule the parse applies.
    let scanned = gw
        .limits
        .check_scanned(raw)
        .map_err(limit_refusal)
        .map_err(plain)?;
    if envelope::is_batch(raw) {
        return Err(plain(bad(
            400,
            code::INVALID_REQUEST,
            "batch_not_allowed",
            "JSON-RPC batches are not accepted",
            "send one message at a time (batches exist only in 2025-03-26, which Warden relays one message at a time)",
        )));
    }
    Message::parse_scanned(scanned).map_err(|e| {
        let id = e
            .id()
            .and_then(|i| serde_json::value::RawValue::from_string(i.to_owned()).ok());
        (Refusal::invalid_message(&e, hint), id)
    })
}

/// The session-based generation's `MCP-Protocol-Version` header rule: absent → 2025-03-26;
/// present and unknown → 400.
fn session_version(header: Option<&HeaderValue>) -> Result<ProtocolVersion, Refusal> {
    match header.map(|v| {
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

/// What a message's body declares of its version: `Some(_)` when `_meta` has a protocol version
/// (`Some(None)`: one that is not a string), read once from the parse [`describe`] made.
fn declared(params: &Params<'_>) -> Option<Option<String>> {
    let meta = params.meta.as_ref()?;
    meta.protocol_version?;
    Some(meta.protocol_version_str())
}

/// Does this session-less message belong to the stateless generation?
fn is_stateless(header: Option<&HeaderValue>, declared: Option<&Option<String>>) -> bool {
    let header = header
        .and_then(|v| v.to_str().ok())
        .and_then(|s| ProtocolVersion::parse(s.trim()));
    if header.map(ProtocolVersion::generation) == Some(Generation::Stateless) {
        return true;
    }
    declared.is_some()
}

/// Does a message that carries `Mcp-Session-Id` name a version of the stateless generation (its
/// header or its `_meta`)? Then it is a stateless message (a dual-era server serves a request
/// with modern `_meta` statelessly; 2026-07-28 ignores `Mcp-Session-Id`), and meets every rule
/// of that generation (#13 item 7).
fn names_stateless_version(header: Option<&HeaderValue>, body_version: Option<&str>) -> bool {
    let stateless = |v: Option<&str>| {
        v.and_then(|v| ProtocolVersion::parse(v.trim()))
            .is_some_and(|v| v.generation() == Generation::Stateless)
    };
    stateless(header.and_then(|v| v.to_str().ok())) || stateless(body_version)
}

/// The session-based rule of a session's version (E9, #13 item 7): a request of the session
/// names the version the session negotiated, in `MCP-Protocol-Version` (absent: the negotiated
/// one is in force) and in a `_meta` version if it has one. `Ok`: the version in force.
fn in_session_version(
    header: ProtocolVersion,
    header_present: bool,
    negotiated: Option<ProtocolVersion>,
    body: Option<&str>,
) -> Result<ProtocolVersion, Refusal> {
    let Some(n) = negotiated else {
        return Ok(header);
    };
    let mismatch = |what: &str, got: &str| {
        Refusal::new(
            400,
            code::INVALID_REQUEST,
            "protocol_version_mismatch",
            "P3.4",
            format!(
                "Bad Request: {what} '{got}' is not the version this session negotiated ({})",
                n.as_str()
            ),
            "send the protocolVersion initialize returned, in MCP-Protocol-Version on every request of the session",
        )
        .with_data("negotiated", n.as_str().into())
    };
    if header_present && header != n {
        return Err(mismatch("MCP-Protocol-Version", header.as_str()));
    }
    if let Some(b) = body.filter(|b| *b != n.as_str()) {
        return Err(mismatch("_meta protocolVersion", b));
    }
    Ok(n)
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
        Err((r, id)) => return refuse(&gw, &ctx, r, id.as_deref()),
    };
    let params = match describe(&mut ctx, &msg) {
        Ok(p) => p,
        Err(r) => return refuse(&gw, &ctx, r, msg.id()),
    };
    let declared = declared(&params);
    let body_version = declared.clone().flatten();
    ctx.headers = Some(headers.clone());
    let session_header = headers.get(&MCP_SESSION_ID).and_then(|v| v.to_str().ok());
    // Read once: the generation, the session's version rule and the version check all use it.
    let version_header = headers.get(&MCP_PROTOCOL_VERSION);

    let mut session: Option<Arc<SessionState>> = None;
    let mut new_session: Option<String> = None;
    // An `initialize` that declares the stateless generation (header or `_meta`) is a 2026-07-28
    // request for a removed method, not the start of a session. With `Mcp-Session-Id`, a message
    // that names a stateless version is stateless all the same: the session id is ignored and
    // every rule of that generation applies.
    let modern = match session_header {
        None => is_stateless(version_header, declared.as_ref()),
        Some(_) => names_stateless_version(version_header, body_version.as_deref()),
    };
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
                state.seen(ctx.principal.as_ref());
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
    } else if let (Some(sid), false) = (session_header, modern) {
        ctx.generation = Some(Generation::Session);
        let header = match session_version(version_header) {
            Ok(v) => v,
            Err(r) => {
                ctx.session = Some(fingerprint(sid));
                return refuse(&gw, &ctx, r, msg.id());
            }
        };
        ctx.version = Some(header);
        let s = match gw.sessions.get(&owner_of(&ctx), sid) {
            Ok(s) => s,
            // The audit trail keeps the fingerprint of the id that was tried.
            Err(e) => {
                ctx.session = Some(fingerprint(sid));
                lookup_failed(&gw, &mut ctx, e);
                return refuse(&gw, &ctx, session_not_found(), msg.id());
            }
        };
        s.seen(ctx.principal.as_ref());
        // The session's own fingerprint: the same text, computed once when it opened.
        ctx.session = Some(s.fingerprint.clone());
        let negotiated = *s.version.lock().unwrap_or_else(|p| p.into_inner());
        let present = version_header.is_some();
        match in_session_version(header, present, negotiated, body_version.as_deref()) {
            Ok(v) => ctx.version = Some(v),
            Err(r) => return refuse(&gw, &ctx, r, msg.id()),
        }
        session = Some(s);
    } else if modern {
        ctx.generation = Some(Generation::Stateless);
        ctx.version = Some(ProtocolVersion::V2026_07_28);
        if let Some(r) = removed_handshake(&msg) {
            return refuse(&gw, &ctx, r, msg.id());
        }
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

/// 2026-07-28 has no handshake (P3.4, #13 item 8): a stateless `initialize` or
/// `notifications/initialized` is a removed method, answered 404/-32601 like the others and never
/// forwarded — on the shared stdio child one client's handshake would become everyone's.
fn removed_handshake(msg: &Message<'_>) -> Option<Refusal> {
    let method = msg.method()?;
    matches!(method, "initialize" | "notifications/initialized").then(|| {
        Refusal::new(
            404,
            code::METHOD_NOT_FOUND,
            "method_removed",
            "P3.4",
            format!("Method not found: {method} (removed in 2026-07-28)"),
            "2026-07-28 has no handshake: call server/discover, and send _meta on every request; or initialize without 2026-07-28 for a session",
        )
    })
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
        Err((r, id)) => return refuse(&gw, &ctx, r, id.as_deref()),
    };
    let declares = match describe(&mut ctx, &msg) {
        Ok(p) => declared(&p).is_some(),
        Err(r) => return refuse(&gw, &ctx, r, msg.id()),
    };
    ctx.session = Some(session.fingerprint.clone());
    ctx.generation = Some(if declares && msg.method() != Some("initialize") {
        Generation::Stateless
    } else {
        Generation::Session
    });
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

/// Another principal's session id was presented (M2, P8.1): the client gets the same 404 as for
/// an unknown id, the audit trail a `session.owner_mismatch` event and a fact on the refusal.
fn lookup_failed(gw: &Gateway, ctx: &mut Ctx, e: crate::session::Lookup) {
    if e == crate::session::Lookup::OtherOwner {
        ctx.facts
            .insert("session_owner", "another principal".into());
        let mut ev = ctx.event("session.owner_mismatch", warden_audit::Decision::Deny);
        ev.reason = Some("session_owner_mismatch".into());
        ev.control = Some("M2");
        ev.hint = Some("a session id was presented by someone it does not belong to".into());
        gw.audit.emit(ev);
    }
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
    let header = session_version(headers.get(&MCP_PROTOCOL_VERSION))?;
    let s = gw.sessions.get(&owner_of(ctx), &sid).map_err(|e| {
        lookup_failed(gw, ctx, e);
        session_not_found()
    })?;
    s.seen(ctx.principal.as_ref());
    let negotiated = *s.version.lock().unwrap_or_else(|p| p.into_inner());
    let present = headers.contains_key(&MCP_PROTOCOL_VERSION);
    ctx.version = Some(in_session_version(header, present, negotiated, None)?);
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
        let frames = match super::fanout::get_stream(&gw, &ctx, &headers, &session).await {
            Ok(f) => f,
            Err((idx, r)) => {
                ctx.route = Some(Route::to(idx, gw.upstreams[idx].name.clone()));
                return refuse(&gw, &ctx, r, None);
            }
        };
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
        // A resumption is a stream of its own; otherwise the client joins the session's one
        // standalone stream, opened by Warden (or now, if it is not open).
        Link::Http { .. } if headers.contains_key("last-event-id") => match gw
            .forward_http(0, &session, http::Method::GET, &headers)
            .await
        {
            Some(Ok(a)) => Ok(a.reply),
            Some(Err(e)) => Err(e),
            None => Ok(Reply::Accepted),
        },
        Link::Http { standalone, .. } => match gw.open_standalone(0, &session, &headers).await {
            Opened::Ready => match standalone.join() {
                Some(frames) => Ok(Reply::Stream {
                    frames,
                    sse: true,
                    wire_id: None,
                }),
                // The upstream ended the stream in between: the client reconnects.
                None => Err(crate::upstream::UpstreamError::Exited),
            },
            Opened::NoStream(reply) => Ok(reply),
            Opened::Failed(e) => Err(e),
        },
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
