//! From a session-checked client message to the upstream that serves it: run the client→server
//! guards, pick the upstream, forward, and relay the answer back through the server→client guards.
//! With one upstream every message passes through unchanged; with several, [`crate::aggregate`]
//! merges lists and routes by name prefix.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use warden_proto::{Generation, Message, ProtocolVersion};

use crate::downstream::body::Response;
use crate::downstream::http::owner_of;
use crate::downstream::respond;
use crate::downstream::streams::{OnFinal, Relay, upstream_refusal};
use crate::gateway::{Gateway, Link, SessionState, Transport};
use crate::guard::{Ctx, Refusal};
use crate::pipeline::{Cleared, Walked};

/// Guards, routing and forwarding for one POSTed message, parsed once by the caller. The guards
/// run here for one upstream and several alike; [`crate::aggregate`] gets the cleared message.
pub async fn dispatch(
    gw: Arc<Gateway>,
    mut ctx: Ctx,
    headers: Arc<HeaderMap>,
    bytes: &Bytes,
    parsed: &Message<'_>,
    session: Option<Arc<SessionState>>,
    new_session_id: Option<String>,
) -> Response {
    let owner = owner_of(&ctx);
    let drop_new_session = |gw: &Gateway| {
        if let Some(id) = &new_session_id {
            gw.sessions.remove(&owner, id);
            gw.metrics.sessions_open.set(gw.sessions.len() as i64);
        }
    };
    let rewritten = match gw.pipeline.client_parsed(parsed, &mut ctx).await {
        Ok(Walked::Unchanged) => None,
        Ok(Walked::Rewritten(b)) => Some(b),
        Err(r) => {
            drop_new_session(&gw);
            return respond::refuse(&gw, &ctx, r, parsed.id());
        }
    };
    // A guard's rewrite is parsed again; otherwise the caller's parse stands.
    let reparsed;
    let (cleared, msg) = match &rewritten {
        None => (bytes.clone(), parsed),
        Some(b) => match Message::parse(b) {
            Ok(m) => {
                reparsed = m;
                (b.clone(), &reparsed)
            }
            Err(_) => {
                drop_new_session(&gw);
                return respond::refuse(&gw, &ctx, Refusal::internal(), parsed.id());
            }
        },
    };
    if gw.upstreams.len() > 1 {
        return crate::aggregate::dispatch(gw, ctx, headers, cleared, msg, session, new_session_id)
            .await;
    }
    let cleared = Cleared(cleared);
    let idx = 0;
    ctx.upstream = Some(gw.upstreams[idx].name.clone());
    if ctx.generation == Some(Generation::Stateless) && !gw.speaks_stateless(idx).await {
        return respond::refuse(
            &gw,
            &ctx,
            generation_refusal(&gw.upstreams[idx].cfg.name),
            msg.id(),
        );
    }
    let request_id = msg.id().map(|i| i.get().to_owned());
    let is_init = msg.method() == Some("initialize");
    let answer = gw
        .forward(idx, session.as_deref(), &headers, msg, cleared)
        .await;
    let (reply, upstream_sid) = match answer {
        Ok(x) => x,
        Err(e) => {
            drop_new_session(&gw);
            return respond::refuse(&gw, &ctx, upstream_refusal(&e), msg.id());
        }
    };
    if is_init
        && let (Some(s), Some(sid)) = (&session, upstream_sid)
        && let Link::Http { session_id, .. } = &s.links[idx]
    {
        *session_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(sid);
    }
    if let (Some(s), Some("notifications/initialized")) = (&session, msg.method()) {
        gw.open_standalone(idx, s, &headers).await;
    }
    let on_final: Option<OnFinal> = match (&session, is_init) {
        (Some(s), true) => {
            let s = s.clone();
            let gw2 = gw.clone();
            let id = new_session_id.clone();
            let owner = owner.clone();
            Some(Box::new(move |m: &Message<'_>| {
                record_negotiation(&gw2, &s, m, id.as_deref(), &owner)
            }))
        }
        _ => None,
    };
    let cancel = match (
        &gw.upstreams[idx].transport,
        session.as_deref().map(|s| &s.links[idx]),
    ) {
        (Transport::Stdio { .. }, Some(Link::Stdio(c))) => Some(c.clone()),
        (Transport::Stdio { shared }, _) => Some(shared.clone()),
        _ => None,
    };
    let log = match (&gw.upstreams[idx].transport, &session) {
        (Transport::Stdio { .. }, Some(s)) if accepts_sse(&headers) => Some(s.events.clone()),
        _ => None,
    };
    let timeout = Duration::from_millis(gw.upstreams[idx].cfg.timeout_ms);
    let relay = Relay {
        request_id,
        on_final,
        cancel,
        session_header: new_session_id,
        log,
        ..Relay::new(gw.clone(), ctx, timeout)
    };
    relay.respond(reply).await
}

/// A 2026-07-28 request for an upstream that speaks only the session-based generation.
pub fn generation_refusal(upstream: &str) -> Refusal {
    let supported: Vec<&str> = ProtocolVersion::of_generation(Generation::Session)
        .map(|v| v.as_str())
        .collect();
    Refusal::new(
        400,
        warden_proto::error::code::UNSUPPORTED_PROTOCOL_VERSION,
        "upstream_generation_unsupported",
        "P3.4",
        format!("Unsupported protocol version: upstream '{upstream}' speaks only session-based MCP"),
        "connect with initialize and a session-based version (e.g. 2025-11-25); Warden does not yet bridge 2026-07-28 to older servers",
    )
    .with_data("supported", supported.into())
    .with_data("requested", "2026-07-28".into())
}

/// Does the client take `text/event-stream` answers?
pub fn accepts_sse(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.contains("text/event-stream") || s.contains("*/*"))
    })
}

/// After `initialize`: keep the negotiated version, or end the session if the server refused.
pub fn record_negotiation(
    gw: &Gateway,
    s: &SessionState,
    m: &Message<'_>,
    session_id: Option<&str>,
    owner: &crate::session::Owner,
) {
    #[derive(serde::Deserialize)]
    struct InitResult {
        #[serde(rename = "protocolVersion")]
        protocol_version: Option<String>,
    }
    let version = m
        .result()
        .and_then(|r| serde_json::from_str::<InitResult>(r.get()).ok())
        .and_then(|r| r.protocol_version)
        .and_then(|v| ProtocolVersion::parse(&v));
    match version {
        Some(v) => *s.version.lock().unwrap_or_else(|p| p.into_inner()) = Some(v),
        None => {
            if let Some(id) = session_id {
                gw.sessions.remove(owner, id);
                gw.metrics.sessions_open.set(gw.sessions.len() as i64);
            }
        }
    }
}
