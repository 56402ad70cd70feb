//! Several upstreams behind one endpoint: a message for every upstream (handshakes, lists,
//! notifications) is sent to each live one, and **every part** of the answer — the final
//! response and whatever the upstream said before it — meets the server→client guards with its
//! own upstream in `ctx.route` (list items meet `list_item` with their original name) before the
//! parts are merged. A part a guard refuses leaves that upstream out of the answer, audited.
//! Streams of several upstreams (`subscriptions/listen`, the GET stream) are merged with their
//! frames tagged by upstream name. The GET stream joins each upstream's one standalone stream
//! (`standalone.rs`), and is refused rather than answered 200 when an upstream that is part of
//! the session cannot give its stream: a stream that silently lacks an upstream would lose
//! that upstream's server requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::mpsc;
use warden_audit::Decision;
use warden_guard::{Ctx, ListKind, Refusal, Route};
use warden_proto::{Generation, Kind, Message};

use super::route::tagged;
use crate::gateway::{Gateway, Link, SessionState};
use crate::pipeline::{Cleared, Walked};
use crate::standalone::Opened;
use crate::tag::untag;
use crate::upstream::{Frame, Reply, UpstreamError, collect};

/// Is upstream `idx` part of this session (it answered `initialize`)?
pub fn live(session: Option<&SessionState>, idx: usize) -> bool {
    session.is_none_or(|s| s.live[idx].load(std::sync::atomic::Ordering::Relaxed))
}

/// The guarded parts of a fanned-out answer.
#[derive(Default)]
pub struct Parts {
    /// Each answering upstream's final response.
    pub finals: Vec<(usize, Bytes)>,
    /// What upstreams said before their final responses (notifications, server requests), in
    /// arrival order per upstream, each already through the guards.
    pub others: Vec<Bytes>,
    /// An upstream that could not be asked because no stdio child may be started: the answer
    /// to give when no upstream answered (503 with `Retry-After`, not "unreachable").
    pub at_capacity: Option<UpstreamError>,
}

/// Forward to every live upstream and collect each answer, every part through the guards.
pub async fn fan_out(
    gw: &Gateway,
    ctx: &Ctx,
    headers: &HeaderMap,
    s: Option<&SessionState>,
    msg: &Message<'_>,
    cleared: &Cleared,
) -> Parts {
    let want = msg.id_text().map(str::to_owned).unwrap_or_default();
    let list = ctx.method.as_deref().and_then(ListKind::of);
    let owner = super::owner_of(ctx);
    let mut parts = Parts::default();
    for idx in (0..gw.upstreams.len()).filter(|i| live(s, *i)) {
        if ctx.generation == Some(Generation::Stateless) {
            match gw.speaks_stateless(idx).await {
                Ok(true) => {}
                // A session-era upstream has no part in a stateless answer.
                Ok(false) => continue,
                Err(e) => {
                    parts.at_capacity = Some(e);
                    continue;
                }
            }
        }
        let mut part = ctx.clone();
        part.route = Some(Route::to(idx, gw.upstreams[idx].name.clone()));
        let timeout = Duration::from_millis(gw.upstreams[idx].cfg.timeout_ms);
        let answer = match gw.forward(idx, s, headers, msg, cleared, &owner).await {
            Ok((reply, sid)) => {
                if let (Some(sess), Some(sid)) = (s, sid)
                    && let Link::Http { session_id, .. } = &sess.links[idx]
                {
                    *session_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(sid);
                }
                collect(reply, &want, timeout).await
            }
            Err(e) => Err(e),
        };
        let (last, before) = match answer {
            Ok(x) => x,
            Err(e) => {
                if matches!(e, UpstreamError::Capacity { .. }) {
                    parts.at_capacity = Some(e);
                }
                left_out(gw, &part, "upstream_failed_fan_out");
                continue;
            }
        };
        for m in before {
            if let Some(b) = guard_part(gw, &mut part, &m, None).await {
                parts.others.push(b);
            }
        }
        match guard_part(gw, &mut part, &last, list).await {
            Some(b) if Message::parse(&b).is_ok_and(|m| m.kind() == Kind::Response) => {
                parts.finals.push((idx, b))
            }
            _ => left_out(gw, &part, "upstream_part_refused"),
        }
    }
    parts
}

fn left_out(gw: &Gateway, ctx: &Ctx, reason: &'static str) {
    let mut ev = ctx.event("upstream.unavailable", Decision::Error);
    ev.reason = Some(reason.into());
    gw.audit.emit(ev);
}

/// One part through the server→client guards (a list answer's items first); `None` when it is
/// not JSON-RPC or a guard refused it (audited).
async fn guard_part(
    gw: &Gateway,
    ctx: &mut Ctx,
    raw: &Bytes,
    list: Option<ListKind>,
) -> Option<Bytes> {
    let refused = |ctx: &Ctx, r: warden_guard::Refusal| {
        gw.audit_part_refusal(ctx, &r, None);
        None
    };
    let Ok(msg) = Message::parse(raw) else {
        return refused(
            ctx,
            warden_guard::Refusal::upstream_invalid("a fanned-out part is not valid JSON-RPC"),
        );
    };
    let filtered = match list {
        Some(kind) if msg.kind() == Kind::Response => {
            match super::lists::filter(gw, ctx, &msg, kind).await {
                Ok(f) => f,
                Err(r) => return refused(ctx, r),
            }
        }
        _ => None,
    };
    let (bytes, reparsed);
    let msg = match &filtered {
        None => {
            bytes = raw.clone();
            &msg
        }
        Some(b) => {
            bytes = b.clone();
            reparsed = Message::parse(b).ok()?;
            &reparsed
        }
    };
    match gw.pipeline.server_parsed(msg, ctx).await {
        Ok(Walked::Unchanged) => Some(bytes),
        Ok(Walked::Rewritten(b)) => Some(b),
        Err(r) => refused(ctx, r),
    }
}

/// Tag a reply's frames with upstream `name` (server request ids, SSE event ids).
pub fn tag_reply(name: Arc<str>, reply: Reply) -> Reply {
    match reply {
        Reply::Stream {
            frames,
            sse,
            wire_id,
        } => {
            let (tx, rx) = mpsc::channel(64);
            tagged(name, frames, tx);
            Reply::Stream {
                frames: rx,
                sse,
                wire_id,
            }
        }
        Reply::Lines {
            status,
            content_type,
            frames,
        } => {
            let (tx, rx) = mpsc::channel(64);
            tagged(name, frames, tx);
            Reply::Lines {
                status,
                content_type,
                frames: rx,
            }
        }
        other => other,
    }
}

/// `subscriptions/listen` across upstreams: one merged stream of tagged frames.
pub async fn listen(
    gw: &Gateway,
    headers: &HeaderMap,
    s: Option<&SessionState>,
    msg: &Message<'_>,
    cleared: &Cleared,
    owner: &crate::session::Owner,
) -> mpsc::Receiver<Result<Frame, UpstreamError>> {
    let (tx, rx) = mpsc::channel(64);
    for idx in (0..gw.upstreams.len()).filter(|i| live(s, *i)) {
        if let Ok((reply, _)) = gw.forward(idx, s, headers, msg, cleared, owner).await {
            match reply {
                Reply::Stream { frames, .. } | Reply::Lines { frames, .. } => {
                    tagged(gw.upstreams[idx].name.clone(), frames, tx.clone())
                }
                Reply::Body { body, .. } => {
                    let _ = tx.try_send(Ok(Frame::message(body)));
                }
                Reply::Accepted => {}
            }
        }
    }
    rx
}

/// The standalone GET stream across upstreams: each live upstream's one stream, joined
/// (`Last-Event-ID` resumes only the upstream it names, on a GET of its own). `Err` names the
/// upstream that could not give its stream, with the refusal for the client.
pub async fn get_stream(
    gw: &Gateway,
    ctx: &Ctx,
    headers: &HeaderMap,
    session: &SessionState,
) -> Result<mpsc::Receiver<Result<Frame, UpstreamError>>, (usize, Refusal)> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(untag)
        .and_then(|(name, rest)| Some((super::route::index_of(gw, name)?, rest.to_owned())));
    let (tx, rx) = mpsc::channel(64);
    let mut joined = Vec::new();
    let mut resumed = Vec::new();
    let mut stdio = Vec::new();
    for idx in (0..gw.upstreams.len()).filter(|i| live(Some(session), *i)) {
        let name = &gw.upstreams[idx].cfg.name;
        match &session.links[idx] {
            Link::Stdio(child) => stdio.push((idx, child.clone())),
            Link::Http { .. } if last.as_ref().is_some_and(|(li, _)| *li == idx) => {
                let mut h = headers.clone();
                if let Some(v) = last
                    .as_ref()
                    .and_then(|(_, rest)| http::HeaderValue::from_str(rest).ok())
                {
                    h.insert("last-event-id", v);
                }
                match gw.forward_http(idx, session, http::Method::GET, &h).await {
                    Some(Ok(a)) => match a.reply {
                        Reply::Stream { frames, .. } => resumed.push((idx, frames)),
                        _ => return Err((idx, no_stream(name, a.status))),
                    },
                    Some(Err(e)) => return Err((idx, super::relay::upstream_refusal(&e))),
                    None => {}
                }
            }
            Link::Http { standalone, .. } => {
                match gw.open_standalone(idx, session, headers).await {
                    Opened::Ready => joined.push(standalone.clone()),
                    // 405: the upstream offers no GET stream, so it has nothing to lose on one.
                    Opened::NoStream(Reply::Body { status: 405, .. }) => {
                        let mut part = ctx.clone();
                        part.route = Some(Route::to(idx, gw.upstreams[idx].name.clone()));
                        let mut ev = part.event("stream.not_offered", Decision::Info);
                        ev.reason = Some("upstream_offers_no_stream".into());
                        gw.audit.emit(ev);
                    }
                    Opened::NoStream(Reply::Body { status, .. }) => {
                        return Err((idx, no_stream(name, status)));
                    }
                    Opened::NoStream(_) => return Err((idx, no_stream(name, 202))),
                    Opened::Failed(e) => return Err((idx, super::relay::upstream_refusal(&e))),
                }
            }
        }
    }
    for hub in joined {
        hub.attach(tx.clone());
    }
    for (idx, frames) in resumed {
        tagged(gw.upstreams[idx].name.clone(), frames, tx.clone());
    }
    for (idx, child) in stdio {
        tagged(
            gw.upstreams[idx].name.clone(),
            child.open_server_stream(),
            tx.clone(),
        );
    }
    Ok(rx)
}

/// An upstream that answered its GET stream with something else than a stream.
fn no_stream(name: &str, status: u16) -> Refusal {
    Refusal::new(
        502,
        warden_proto::error::code::UPSTREAM_UNAVAILABLE,
        "upstream_stream_failed",
        "P4.3",
        format!("Upstream '{name}' did not open its GET stream (HTTP {status})"),
        "the stream would miss this upstream's server requests; retry later or ask the operator",
    )
}
