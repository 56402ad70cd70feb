//! Several upstreams behind one endpoint. Lists (`tools`, `prompts`, `resources`, templates) are
//! fetched from every upstream and merged; names get the upstream's `prefix` (`<prefix>_<name>`);
//! calls are routed back by prefix (or by the catalog for unprefixed upstreams) with the original
//! name spliced into the original bytes. Two upstreams exposing one name are a collision: both are
//! withheld and the collision is audited (tool shadowing, P9.2) — never silently shadowed. One
//! upstream failing leaves the others serving. Server→client request ids and SSE event ids are
//! tagged `<upstream>~<id>` so answers and resumptions find their way back.

mod merge;
mod route;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use warden_audit::Decision;
use warden_proto::error::code;
use warden_proto::{Generation, Kind, Message, splice};

use crate::downstream::body::Response;
use crate::downstream::http::owner_of;
use crate::downstream::respond;
use crate::downstream::streams::{Relay, upstream_refusal};
use crate::gateway::{Gateway, Link, SessionState, Transport};
use crate::guard::{Ctx, Refusal};
use crate::router::record_negotiation;
use crate::upstream::{Frame, Reply, UpstreamError};
use merge::{merge_init, merge_list};
use route::{route_by_name, route_by_uri, route_completion, tagged};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    fn of(method: &str) -> Option<Self> {
        Some(match method {
            "tools/list" => Self::Tools,
            "prompts/list" => Self::Prompts,
            "resources/list" => Self::Resources,
            "resources/templates/list" => Self::Templates,
            _ => return None,
        })
    }
    fn key(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
        }
    }
    /// The item field that names it; prefixes apply to names, not to URIs.
    fn name_field(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
            Self::Templates => "uriTemplate",
        }
    }
}

/// Exposed name → (upstream, original name), learned from merged lists.
#[derive(Default)]
pub struct Catalog {
    names: HashMap<(ListKind, String), (usize, String)>,
}

fn live(session: Option<&SessionState>, idx: usize) -> bool {
    session.is_none_or(|s| s.live[idx].load(std::sync::atomic::Ordering::Relaxed))
}

/// Route one cleared client message (the guards have run, see [`crate::router::dispatch`]).
pub async fn dispatch(
    gw: Arc<Gateway>,
    mut ctx: Ctx,
    headers: Arc<HeaderMap>,
    cleared: Bytes,
    msg: &Message<'_>,
    session: Option<Arc<SessionState>>,
    new_session_id: Option<String>,
) -> Response {
    let owner = owner_of(&ctx);
    let id = msg.id();
    let s = session.as_deref();
    let method = msg.method().unwrap_or_default().to_owned();
    match msg.kind() {
        Kind::Response | Kind::Error => return client_response(&gw, &ctx, &headers, s, msg).await,
        Kind::Notification => {
            let initialized = msg.method() == Some("notifications/initialized");
            for idx in (0..gw.upstreams.len()).filter(|i| live(s, *i)) {
                if let (true, Some(sess)) = (initialized, s) {
                    let _ = gw
                        .forward(
                            idx,
                            s,
                            &headers,
                            msg,
                            crate::pipeline::Cleared(cleared.clone()),
                        )
                        .await;
                    gw.open_standalone(idx, sess, &headers).await;
                    continue;
                }
                let _ = gw
                    .forward(
                        idx,
                        s,
                        &headers,
                        msg,
                        crate::pipeline::Cleared(cleared.clone()),
                    )
                    .await;
            }
            gw.audit_done(&ctx, Decision::Allow, Some(202), None);
            return respond::accepted();
        }
        Kind::Request => {}
    }
    if method == "ping" {
        gw.audit_done(&ctx, Decision::Allow, Some(200), None);
        return respond::json(200, local_result(id, "{}"));
    }
    if method == "initialize" || method == "server/discover" || method == "logging/setLevel" {
        let answers = fan_out(&gw, &mut ctx, &headers, s, msg, &cleared).await;
        if answers.is_empty() {
            if let Some(sid) = &new_session_id {
                gw.sessions.remove(&owner, sid);
            }
            return respond::refuse(
                &gw,
                &ctx,
                upstream_refusal(&UpstreamError::Unreachable("no upstream answered".into())),
                id,
            );
        }
        if let Some(sess) = &session {
            for idx in 0..gw.upstreams.len() {
                sess.live[idx].store(
                    answers.iter().any(|(i, _)| *i == idx),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
        let merged = if method == "logging/setLevel" {
            local_result(id, "{}")
        } else {
            merge_init(&gw, id, &answers)
        };
        // The server guards see the merged result the client gets, not its parts.
        let body = match gw.pipeline.server_message(merged, &mut ctx).await {
            Ok(b) => b,
            Err(r) => return respond::refuse(&gw, &ctx, r, id),
        };
        if let (Some(sess), true) = (&session, method == "initialize")
            && let Ok(m) = Message::parse(&body)
        {
            record_negotiation(&gw, sess, &m, new_session_id.as_deref(), &owner);
        }
        gw.audit_done(&ctx, Decision::Allow, Some(200), None);
        let r = respond::json(200, body);
        return match &new_session_id {
            Some(sid) => respond::with_session(r, sid),
            None => r,
        };
    }
    if let Some(kind) = ListKind::of(&method) {
        let answers = fan_out(&gw, &mut ctx, &headers, s, msg, &cleared).await;
        let merged = merge_list(&gw, &ctx, id, kind, &answers);
        let body = match gw.pipeline.server_message(merged, &mut ctx).await {
            Ok(b) => b,
            Err(r) => return respond::refuse(&gw, &ctx, r, id),
        };
        gw.audit_done(&ctx, Decision::Allow, Some(200), None);
        return respond::json(200, body);
    }
    let target = match method.as_str() {
        "tools/call" => route_by_name(&gw, msg, ListKind::Tools),
        "prompts/get" => route_by_name(&gw, msg, ListKind::Prompts),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            route_by_uri(&gw, msg)
        }
        "completion/complete" => route_completion(&gw, msg),
        "subscriptions/listen" => {
            return listen(gw.clone(), ctx, headers.clone(), s, msg, cleared.clone()).await;
        }
        _ => {
            let status = if ctx.generation == Some(Generation::Stateless) {
                404
            } else {
                200
            };
            let r = Refusal::new(
                status,
                code::METHOD_NOT_FOUND,
                "method_not_routable",
                "P1.1",
                format!("Method not found: {method}"),
                "this method is not routed across several upstreams",
            );
            return respond::refuse(&gw, &ctx, r, id);
        }
    };
    let Some((idx, rewritten)) = target else {
        let r = Refusal::new(
            200,
            code::INVALID_PARAMS,
            "unknown_name",
            "P1.1",
            "Unknown tool, prompt or resource",
            "list first; names carry their upstream's prefix",
        );
        return respond::refuse(&gw, &ctx, r, id);
    };
    let out = rewritten
        .map(Bytes::from)
        .unwrap_or_else(|| cleared.clone());
    let Ok(fwd) = Message::parse(&out) else {
        return respond::refuse(&gw, &ctx, Refusal::internal(), id);
    };
    ctx.upstream = Some(gw.upstreams[idx].name.clone());
    if ctx.generation == Some(Generation::Stateless) && !gw.speaks_stateless(idx).await {
        let r = crate::router::generation_refusal(&gw.upstreams[idx].cfg.name);
        return respond::refuse(&gw, &ctx, r, id);
    }
    match gw
        .forward(
            idx,
            s,
            &headers,
            &fwd,
            crate::pipeline::Cleared(out.clone()),
        )
        .await
    {
        Ok((reply, _)) => {
            relay_tagged(&gw, ctx, idx, s, id.map(|i| i.get().to_owned()), reply).await
        }
        Err(e) => respond::refuse(&gw, &ctx, upstream_refusal(&e), id),
    }
}

fn local_result(id: Option<&RawValue>, result: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#,
        id.map_or("null", |i| i.get())
    ))
}

/// Forward to every live upstream and collect each final response (after the server guards).
async fn fan_out(
    gw: &Gateway,
    ctx: &mut Ctx,
    headers: &HeaderMap,
    s: Option<&SessionState>,
    msg: &Message<'_>,
    cleared: &Bytes,
) -> Vec<(usize, Bytes)> {
    let want = msg.id().map(|i| i.get().to_owned()).unwrap_or_default();
    let mut out = Vec::new();
    for idx in (0..gw.upstreams.len()).filter(|i| live(s, *i)) {
        if ctx.generation == Some(Generation::Stateless) && !gw.speaks_stateless(idx).await {
            continue; // a session-era upstream has no part in a stateless answer
        }
        let timeout = Duration::from_millis(gw.upstreams[idx].cfg.timeout_ms);
        let answer = match gw
            .forward(
                idx,
                s,
                headers,
                msg,
                crate::pipeline::Cleared(cleared.clone()),
            )
            .await
        {
            Ok((reply, sid)) => {
                if let (Some(sess), Some(sid)) = (s, sid)
                    && let Link::Http { session_id, .. } = &sess.links[idx]
                {
                    *session_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(sid);
                }
                final_message(reply, &want, timeout).await
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(b) if Message::parse(&b).is_ok_and(|m| m.kind() == Kind::Response) => {
                out.push((idx, b))
            }
            Ok(_) | Err(_) => {
                let mut ev = gw.event(ctx, "upstream.unavailable", Decision::Error);
                ev.upstream = Some(gw.upstreams[idx].name.clone());
                ev.reason = Some("upstream_failed_fan_out".into());
                gw.audit.emit(ev);
            }
        }
    }
    out
}

/// The final response to request `want` in a reply (other frames are not needed here).
pub(crate) async fn final_message(
    reply: Reply,
    want: &str,
    timeout: Duration,
) -> Result<Bytes, UpstreamError> {
    match reply {
        Reply::Body { body, .. } => Ok(body),
        Reply::Accepted => Err(UpstreamError::Invalid("no response to a request".into())),
        Reply::Stream { mut frames, .. } => loop {
            match tokio::time::timeout(timeout, frames.recv()).await {
                Err(_) => return Err(UpstreamError::Timeout(timeout.as_millis() as u64)),
                Ok(None) => return Err(UpstreamError::Exited),
                Ok(Some(Err(e))) => return Err(e),
                Ok(Some(Ok(f))) => {
                    if let Some(d) = f.data
                        && Message::parse(&d).is_ok_and(|m| {
                            matches!(m.kind(), Kind::Response | Kind::Error)
                                && m.id().map(|i| i.get()) == Some(want)
                        })
                    {
                        return Ok(d);
                    }
                }
            }
        },
    }
}

async fn relay_tagged(
    gw: &Arc<Gateway>,
    ctx: Ctx,
    idx: usize,
    s: Option<&SessionState>,
    request_id: Option<String>,
    reply: Reply,
) -> Response {
    let reply = match reply {
        Reply::Stream {
            frames,
            sse,
            wire_id,
        } => {
            let (tx, rx) = mpsc::channel(64);
            tagged(idx, frames, tx);
            Reply::Stream {
                frames: rx,
                sse,
                wire_id,
            }
        }
        other => other,
    };
    let cancel = match (&gw.upstreams[idx].transport, s.map(|s| &s.links[idx])) {
        (Transport::Stdio { .. }, Some(Link::Stdio(c))) => Some(c.clone()),
        (Transport::Stdio { shared }, _) => Some(shared.clone()),
        _ => None,
    };
    let relay = Relay {
        request_id,
        cancel,
        ..Relay::new(
            gw.clone(),
            ctx,
            Duration::from_millis(gw.upstreams[idx].cfg.timeout_ms),
        )
    };
    relay.respond(reply).await
}

/// A client's answer to a tagged server request goes back to its upstream with the original id.
async fn client_response(
    gw: &Arc<Gateway>,
    ctx: &Ctx,
    headers: &HeaderMap,
    s: Option<&SessionState>,
    msg: &Message<'_>,
) -> Response {
    let tag: Option<String> = msg.id().and_then(|i| serde_json::from_str(i.get()).ok());
    let parsed = tag
        .as_deref()
        .and_then(|t| t.split_once('~'))
        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest.to_owned())));
    let Some((idx, orig)) = parsed.filter(|(i, _)| *i < gw.upstreams.len()) else {
        let r = Refusal::new(
            400,
            code::INVALID_REQUEST,
            "unknown_response_id",
            "P1.1",
            "Response to an unknown server request",
            "answer server requests with the id they carried",
        );
        return respond::refuse(gw, ctx, r, None);
    };
    let Some(span) = msg.id_span() else {
        return respond::accepted();
    };
    let Ok(out) = splice::replace(msg.raw(), span, orig.as_bytes()) else {
        return respond::accepted();
    };
    let Ok(fwd) = Message::parse(&out) else {
        return respond::accepted();
    };
    match gw
        .forward(
            idx,
            s,
            headers,
            &fwd,
            crate::pipeline::Cleared(Bytes::from(out.clone())),
        )
        .await
    {
        Ok(_) => {
            gw.audit_done(ctx, Decision::Allow, Some(202), None);
            respond::accepted()
        }
        Err(e) => respond::refuse(gw, ctx, upstream_refusal(&e), None),
    }
}

/// `subscriptions/listen` across upstreams: one merged stream.
async fn listen(
    gw: Arc<Gateway>,
    ctx: Ctx,
    headers: Arc<HeaderMap>,
    s: Option<&SessionState>,
    msg: &Message<'_>,
    cleared: Bytes,
) -> Response {
    let (tx, rx) = mpsc::channel(64);
    for idx in (0..gw.upstreams.len()).filter(|i| live(s, *i)) {
        if let Ok((reply, _)) = gw
            .forward(
                idx,
                s,
                &headers,
                msg,
                crate::pipeline::Cleared(cleared.clone()),
            )
            .await
        {
            match reply {
                Reply::Stream { frames, .. } => tagged(idx, frames, tx.clone()),
                Reply::Body { body, .. } => {
                    let _ = tx.try_send(Ok(Frame::message(body)));
                }
                Reply::Accepted => {}
            }
        }
    }
    drop(tx);
    let relay = Relay::new(gw.clone(), ctx, Duration::from_secs(3600));
    relay
        .respond(Reply::Stream {
            frames: rx,
            sse: true,
            wire_id: None,
        })
        .await
}

/// The standalone GET stream across upstreams; `Last-Event-ID` goes only to the upstream it names.
pub async fn get_stream(
    gw: Arc<Gateway>,
    ctx: Ctx,
    headers: HeaderMap,
    session: Arc<SessionState>,
) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('~'))
        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest.to_owned())));
    let (tx, rx) = mpsc::channel(64);
    for idx in (0..gw.upstreams.len()).filter(|i| live(Some(&session), *i)) {
        let mut h = headers.clone();
        h.remove("last-event-id");
        if let Some((li, rest)) = &last
            && *li == idx
            && let Ok(v) = http::HeaderValue::from_str(rest)
        {
            h.insert("last-event-id", v);
        }
        match &session.links[idx] {
            Link::Stdio(child) => tagged(idx, child.open_server_stream(), tx.clone()),
            Link::Http { standalone, .. } => {
                let opened = if h.contains_key("last-event-id") {
                    None
                } else {
                    standalone.lock().ok().and_then(|mut s| s.take())
                };
                if let Some(frames) = opened {
                    tagged(idx, frames, tx.clone());
                } else if let Some(Ok(a)) =
                    gw.forward_http(idx, &session, http::Method::GET, &h).await
                    && let Reply::Stream { frames, .. } = a.reply
                {
                    tagged(idx, frames, tx.clone());
                }
            }
        }
    }
    drop(tx);
    let relay = Relay::new(gw.clone(), ctx, Duration::from_secs(3600));
    relay
        .respond(Reply::Stream {
            frames: rx,
            sse: true,
            wire_id: None,
        })
        .await
}
