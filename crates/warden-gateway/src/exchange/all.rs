//! Messages for every upstream behind one endpoint (several upstreams): handshakes
//! (`initialize`, `server/discover`, `logging/setLevel`), lists, notifications, `ping` (Warden
//! answers) and `subscriptions/listen` (one merged stream). The client guards run once on the
//! message (`ctx.route` is `None`: every upstream); each part of the answer meets the server
//! guards in [`super::fanout`] before [`super::merge`] joins them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use warden_audit::Decision;
use warden_guard::{Ctx, ListKind, Refusal};
use warden_proto::{Kind, Message};

use super::answer::{Answer, Answered, Early, Wire, encode, refuse};
use super::merge::{merge_init, merge_list};
use super::relay::{Relay, upstream_refusal};
use super::{EndOnFailure, accepts_sse, clear, fanout, local_result, record_negotiation};
use crate::gateway::{Gateway, SessionState};
use crate::upstream::{Reply, UpstreamError};

#[allow(clippy::too_many_arguments)]
pub(super) async fn all(
    gw: &Arc<Gateway>,
    mut ctx: Ctx,
    raw: &Bytes,
    msg: &Message<'_>,
    headers: &Arc<HeaderMap>,
    session: Option<Arc<SessionState>>,
    new_session: Option<String>,
    early: Early,
    ending: EndOnFailure<'_>,
) -> Answered {
    let cleared = match clear(gw, &mut ctx, raw, msg, &ending).await {
        Ok(c) => c,
        Err(a) => return a,
    };
    let reparsed;
    let msg = if cleared.changed() {
        match Message::parse(cleared.bytes()) {
            Ok(m) => {
                reparsed = m;
                &reparsed
            }
            Err(_) => return refuse(gw, &ctx, Refusal::internal(), msg.id()),
        }
    } else {
        msg
    };
    let s = session.as_deref();
    let id = msg.id();
    match msg.kind() {
        Kind::Notification => {
            let initialized = msg.method() == Some("notifications/initialized");
            let owner = super::owner_of(&ctx);
            for idx in (0..gw.upstreams.len()).filter(|i| fanout::live(s, *i)) {
                if let Err(e) = gw.forward(idx, s, headers, msg, &cleared, &owner).await {
                    let mut part = ctx.clone();
                    part.route = Some(warden_guard::Route::to(idx, gw.upstreams[idx].name.clone()));
                    gw.audit_part_refusal(&part, &upstream_refusal(&e), None);
                }
                if let (true, Some(sess)) = (initialized, s) {
                    gw.open_standalone(idx, sess, headers).await;
                }
            }
            gw.audit_done(&ctx, Decision::Allow, Some(202), None);
            return Answer::Accepted.into();
        }
        Kind::Request => {}
        Kind::Response | Kind::Error => return refuse(gw, &ctx, Refusal::internal(), None),
    }
    let method = msg.method().unwrap_or_default();
    if method == "ping" {
        gw.audit_done(&ctx, Decision::Allow, Some(200), None);
        return json(local_result(id, b"{}"));
    }
    if method == "subscriptions/listen" {
        let owner = super::owner_of(&ctx);
        let frames = fanout::listen(gw, headers, s, msg, &cleared, &owner).await;
        let relay = Relay {
            wire: early.wire(),
            ..Relay::new(gw.clone(), ctx, Duration::from_secs(3600))
        };
        return relay
            .respond(Reply::Stream {
                frames,
                sse: true,
                wire_id: None,
            })
            .await;
    }
    let parts = fanout::fan_out(gw, &ctx, headers, s, msg, &cleared).await;
    let merged = if let Some(kind) = ListKind::of(method) {
        // A session's lists fill its own catalog; a stateless list fills none.
        let mut own = crate::catalog::Catalog::default();
        let mut session_cat = s.map(|s| s.catalog.lock().unwrap_or_else(|p| p.into_inner()));
        let into = session_cat.as_deref_mut().unwrap_or(&mut own);
        merge_list(gw, &ctx, id, kind, &parts.finals, into)
    } else {
        if parts.finals.is_empty() {
            ending.now().await;
            let e = parts
                .at_capacity
                .unwrap_or_else(|| UpstreamError::Unreachable("no upstream answered".into()));
            return refuse(gw, &ctx, upstream_refusal(&e), id);
        }
        if let Some(sess) = s {
            for idx in 0..gw.upstreams.len() {
                sess.live[idx].store(
                    parts.finals.iter().any(|(i, _)| *i == idx),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
        let merged = if method == "logging/setLevel" {
            local_result(id, b"{}")
        } else {
            merge_init(gw, id, &parts.finals)
        };
        if let (Some(sess), true) = (&session, method == "initialize")
            && let Ok(m) = Message::parse(&merged)
        {
            record_negotiation(gw, sess, &m, new_session.as_deref(), &super::owner_of(&ctx));
        }
        merged
    };
    gw.audit_done(&ctx, Decision::Allow, Some(200), None);
    let answer = with_parts(gw, &ctx, headers, &early, parts.others, merged);
    Answered {
        answer,
        session: new_session,
    }
}

fn json(body: Bytes) -> Answered {
    Answer::Json {
        status: 200,
        content_type: Some(http::HeaderValue::from_static("application/json")),
        body,
    }
    .into()
}

/// The merged answer, after what the upstreams said before their answers (already guarded):
/// a stream when the client takes one, else the answer alone and the rest audited as dropped.
fn with_parts(
    gw: &Gateway,
    ctx: &Ctx,
    headers: &HeaderMap,
    early: &Early,
    others: Vec<Bytes>,
    merged: Bytes,
) -> Answer {
    if others.is_empty() {
        return Answer::Json {
            status: 200,
            content_type: Some(http::HeaderValue::from_static("application/json")),
            body: merged,
        };
    }
    let wire = early.wire();
    if wire == Wire::Lines || accepts_sse(headers) {
        let (tx, rx) = tokio::sync::mpsc::channel(others.len() + 1);
        for m in others.iter().chain(std::iter::once(&merged)) {
            let _ = tx.try_send(encode(wire, m));
        }
        return Answer::Stream(rx);
    }
    let mut ev = ctx.event("stream.parts_dropped", Decision::Info);
    ev.reason = Some("client_takes_no_stream".into());
    ev.hint = Some(format!(
        "{} message(s) the upstreams sent before their answers were not delivered: the client does not accept text/event-stream",
        others.len()
    ));
    gw.audit.emit(ev);
    Answer::Json {
        status: 200,
        content_type: Some(http::HeaderValue::from_static("application/json")),
        body: merged,
    }
}
