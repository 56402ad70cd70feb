//! A session-less client's `notifications/cancelled` (2026-07-28): it may stop only a request of
//! its own (#13 item 3, M2). On a stdio upstream the request ran on the shared child, where every
//! client's requests meet and the child knows them by Warden's ids: the cancellation is forwarded
//! only when the sender has a request open there with that `requestId`, rewritten to Warden's id
//! for it. An HTTP upstream gets it as before (each request there is its own HTTP exchange).
//! When no upstream took it, it is refused (400, `cancel_unknown_request`) and audited: it is
//! never written raw to a shared child, where it could name another client's call.
//!
//! Session-era cancellations never come here: a session's child holds only that session's
//! requests, under the ids its client chose.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use warden_audit::Decision;
use warden_guard::{Ctx, Refusal, Route};
use warden_proto::Message;
use warden_proto::error::code;

use super::answer::{Answer, Answered, refuse};
use super::relay::upstream_refusal;
use super::{EndOnFailure, clear, owner_of};
use crate::gateway::{Gateway, Transport};

/// Does this message take the path of this module?
pub(super) fn applies(msg: &Message<'_>, has_session: bool) -> bool {
    !has_session && msg.method() == Some("notifications/cancelled")
}

pub(super) async fn cancelled(
    gw: &Arc<Gateway>,
    mut ctx: Ctx,
    raw: &Bytes,
    msg: &Message<'_>,
    headers: &Arc<HeaderMap>,
    ending: EndOnFailure<'_>,
) -> Answered {
    if gw.upstreams.len() == 1 {
        ctx.route = Some(Route::to(0, gw.upstreams[0].name.clone()));
    }
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
            Err(_) => return refuse(gw, &ctx, Refusal::internal(), None),
        }
    } else {
        msg
    };
    let owner = owner_of(&ctx);
    let mut taken = false;
    for (idx, up) in gw.upstreams.iter().enumerate() {
        let sent = match &up.transport {
            Transport::Stdio { shared } => shared.cancel_for(&owner, msg).await,
            Transport::Http(_) => gw
                .forward(idx, None, headers, msg, &cleared, &owner)
                .await
                .map(|_| true),
        };
        match sent {
            Ok(true) => taken = true,
            Ok(false) => {}
            Err(e) => {
                let mut part = ctx.clone();
                part.route = Some(Route::to(idx, up.name.clone()));
                gw.audit_refusal(&part, &upstream_refusal(&e), None);
            }
        }
    }
    if !taken {
        return refuse(gw, &ctx, unknown_request(), None);
    }
    gw.audit_done(&ctx, Decision::Allow, Some(202), None);
    Answer::Accepted.into()
}

/// A cancellation that names no open request of its sender.
fn unknown_request() -> Refusal {
    Refusal::new(
        400,
        code::INVALID_PARAMS,
        "cancel_unknown_request",
        "M2",
        "notifications/cancelled names no open request of this client",
        "cancel only your own requests still in progress, by the id you sent them with",
    )
}
