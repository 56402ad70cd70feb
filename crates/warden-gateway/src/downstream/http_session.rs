//! GET (the standalone server→client SSE stream) and DELETE (end of session) of the
//! session-based generation. The 2026-07-28 generation has neither: 405.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request};
use hyper::body::Incoming;
use warden_proto::error::code;
use warden_proto::{Generation, ProtocolVersion};

use super::body::Response;
use super::http::owner_of;
use super::respond;
use super::streams::{Relay, upstream_refusal};
use crate::gateway::{Gateway, Link};
use crate::guard::{Ctx, Refusal};
use crate::session::fingerprint;
use crate::upstream::Reply;

pub async fn get_or_delete(gw: Arc<Gateway>, mut ctx: Ctx, req: Request<Incoming>) -> Response {
    let is_get = req.method() == Method::GET;
    ctx.method = Some(
        if is_get {
            "GET stream"
        } else {
            "DELETE session"
        }
        .into(),
    );
    let headers = req.headers();
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
        let r = if session_era {
            Refusal::new(
                400,
                code::INVALID_REQUEST,
                "session_required",
                "P1.1",
                "Bad Request: Mcp-Session-Id header is required",
                "GET and DELETE act on a session; send its Mcp-Session-Id",
            )
        } else {
            Refusal::new(
                405,
                code::INVALID_REQUEST,
                "method_not_allowed",
                "P1.1",
                "Method Not Allowed",
                "2026-07-28 has no GET stream or DELETE; use POST (subscriptions/listen for notifications)",
            )
        };
        return respond::refuse(&gw, &ctx, r, None);
    };
    ctx.session = Some(fingerprint(&sid));
    ctx.generation = Some(Generation::Session);
    let owner = owner_of(&ctx);
    let Ok(session) = gw.sessions.get(&owner, &sid) else {
        let r = respond::session_not_found();
        return respond::refuse(&gw, &ctx, r, None);
    };
    if is_get {
        let accepts_sse = headers.get_all(http::header::ACCEPT).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.contains("text/event-stream") || s.contains("*/*"))
        });
        if !accepts_sse {
            let r = Refusal::new(
                406,
                code::INVALID_REQUEST,
                "not_acceptable",
                "P1.1",
                "Not Acceptable: the GET stream is text/event-stream",
                "send Accept: text/event-stream",
            );
            return respond::refuse(&gw, &ctx, r, None);
        }
        if gw.upstreams.len() > 1 {
            return crate::aggregate::get_stream(gw, ctx, req.headers().clone(), session).await;
        }
        ctx.upstream = Some(gw.upstreams[0].name.clone());
        let mut log = None;
        let reply = match &session.links[0] {
            Link::Stdio(child) => {
                // Resume a Warden-numbered stream of this session, or open the standalone stream.
                let resume = req
                    .headers()
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(super::event_log::parse_event_id);
                if let Some((stream, seq)) = resume
                    && session.events.after(stream, Some(seq)).is_some()
                {
                    let mut ev = gw.event(&ctx, "stream.resume", warden_audit::Decision::Allow);
                    ev.control = Some("P8.3");
                    gw.audit.emit(ev);
                    return super::streams::follow(session.events.clone(), stream, Some(seq));
                }
                log = Some(session.events.clone());
                Ok(Reply::Stream {
                    frames: child.open_server_stream(),
                    sse: false,
                    wire_id: None,
                })
            }
            Link::Http { standalone, .. }
                if !req.headers().contains_key("last-event-id")
                    && standalone.lock().map(|s| s.is_some()).unwrap_or(false) =>
            {
                let frames = standalone.lock().ok().and_then(|mut s| s.take());
                match frames {
                    Some(frames) => Ok(Reply::Stream {
                        frames,
                        sse: true,
                        wire_id: None,
                    }),
                    None => Ok(Reply::Accepted),
                }
            }
            Link::Http { .. } => match gw
                .forward_http(0, &session, Method::GET, req.headers())
                .await
            {
                Some(Ok(a)) => Ok(a.reply),
                Some(Err(e)) => Err(e),
                None => Ok(Reply::Accepted),
            },
        };
        return match reply {
            Ok(reply) => {
                let relay = Relay {
                    log,
                    ..Relay::new(
                        gw.clone(),
                        ctx,
                        Duration::from_millis(gw.upstreams[0].cfg.timeout_ms),
                    )
                };
                relay.respond(reply).await
            }
            Err(e) => respond::refuse(&gw, &ctx, upstream_refusal(&e), None),
        };
    }
    // DELETE: end Warden's session whatever the upstreams answer; relay the single upstream's status.
    gw.sessions.remove(&owner, &sid);
    gw.metrics.sessions_open.set(gw.sessions.len() as i64);
    let mut status = 200;
    for (idx, link) in session.links.iter().enumerate() {
        match link {
            Link::Stdio(child) => child.shutdown().await,
            Link::Http { .. } => {
                if let Some(Ok(a)) = gw
                    .forward_http(idx, &session, Method::DELETE, req.headers())
                    .await
                    && gw.upstreams.len() == 1
                {
                    status = a.status;
                }
            }
        }
    }
    let mut ev = gw.event(&ctx, "session.close", warden_audit::Decision::Info);
    ev.status = Some(status);
    gw.audit.emit(ev);
    respond::response(status, None, super::body::empty())
}
