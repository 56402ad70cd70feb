//! The [`Guard`] trait: one control, with a hook per moment of an exchange. Every hook has a
//! default that lets everything through, so a guard implements only the moments it cares about.

use std::sync::Arc;

use http::HeaderMap;
use warden_audit::{AuditSink, Decision};
use warden_proto::Message;

use crate::Refusal;
use crate::ctx::Ctx;
use crate::list::ListItem;
use crate::session::SessionKey;
use crate::verdict::{Check, ItemVerdict, LocalResponse, Verdict};

/// The HTTP request head, for guards that act before the body is read.
pub struct HttpFacts<'a> {
    /// The HTTP method.
    pub method: &'a http::Method,
    /// The request path.
    pub path: &'a str,
    /// The request URI's authority (HTTP/2 `:authority`), when present.
    pub authority: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// What Warden adds to the request it sends upstream (its own credentials, never the client's).
/// HTTP upstreams get these headers; stdio upstreams have no headers and ignore them.
#[derive(Debug, Default)]
pub struct UpstreamRequest {
    /// Headers to set on the upstream request (e.g. `Authorization: Bearer <Warden's token>`).
    pub headers: HeaderMap,
}

/// How an exchange ended, as every guard's [`Guard::done`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Allowed, denied, or an error.
    pub decision: Decision,
    /// The HTTP status the client got (HTTP front end), if any.
    pub status: Option<u16>,
    /// The refusal's or failure's reason code.
    pub reason: Option<&'static str>,
}

/// What a guard is handed when the pipeline is built: how to emit audit events outside any
/// exchange (e.g. a rug pull noticed on `notifications/tools/list_changed`).
#[derive(Clone)]
pub struct GuardEnv {
    /// The audit sink.
    pub audit: Arc<dyn AuditSink>,
}

/// One control. Client→server messages meet the guards in pipeline order (top-down);
/// server→client messages, list items and outcomes in reverse order (bottom-up). A `Deny` stops
/// the walk. A guard that cannot decide (an error, a timeout, bytes it cannot parse) must deny:
/// there is no "skip on error".
pub trait Guard: Send + Sync {
    /// A short stable name (audit `facts.refused_by`, metrics, `check-config`).
    fn name(&self) -> &'static str;

    /// Paths outside the MCP endpoint this guard serves itself (e.g.
    /// `/.well-known/oauth-protected-resource`). Asked once when the pipeline is built.
    fn local_paths(&self) -> Vec<String> {
        Vec::new()
    }

    /// Serve a request on one of [`Guard::local_paths`]. `None`: not this guard's.
    fn serve_local<'a>(
        &'a self,
        _req: &'a HttpFacts<'a>,
        _ctx: &'a mut Ctx,
    ) -> Check<'a, Option<LocalResponse>> {
        Check::Ready(None)
    }

    /// The HTTP request head, before the body is read (Host/Origin, credentials). `Continue` or
    /// `Deny`; a refusal may carry headers (`WWW-Authenticate`).
    fn http_request<'a>(&'a self, _req: &'a HttpFacts<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        Check::Ready(Verdict::Continue)
    }

    /// A message from the client (request, notification or response to a server request),
    /// after routing: `ctx.route` names the upstream and the original name. A request may be
    /// answered locally with [`Verdict::Answer`].
    fn client_message<'a>(&'a self, _msg: &'a Message<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        Check::Ready(Verdict::Continue)
    }

    /// Shape the request Warden sends upstream for a message every guard cleared (headers,
    /// Warden's own credentials). A refusal stops the exchange.
    fn upstream_request<'a>(
        &'a self,
        _req: &'a mut UpstreamRequest,
        _ctx: &'a Ctx,
    ) -> Check<'a, Result<(), Refusal>> {
        Check::Ready(Ok(()))
    }

    /// A message from the server: the answer, a notification or a server request; every JSON
    /// body, every SSE frame, every part of a fanned-out answer.
    fn server_message<'a>(&'a self, _msg: &'a Message<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        Check::Ready(Verdict::Continue)
    }

    /// One item of a list result, with its upstream and original name. Applied by the core on
    /// every path before the result meets [`Guard::server_message`].
    fn list_item<'a>(&'a self, _item: &'a ListItem<'a>, _ctx: &'a Ctx) -> Check<'a, ItemVerdict> {
        Check::Ready(ItemVerdict::Keep)
    }

    /// A downstream session ended (DELETE, expiry, revocation); its store state goes next.
    fn session_end<'a>(&'a self, _session: &'a SessionKey) -> Check<'a, ()> {
        Check::Ready(())
    }

    /// The exchange ended: allowed, refused or failed. Called for every exchange.
    fn done(&self, _ctx: &Ctx, _outcome: &Outcome) {}
}
