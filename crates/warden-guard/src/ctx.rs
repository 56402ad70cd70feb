//! [`Ctx`]: what the pipeline knows about the exchange being handled. Guards read it and add to
//! it; the core fills the transport facts, the route and the session before the guards run.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use warden_audit::{AuditEvent, Decision, RequestId};
use warden_proto::headers::ParamHeader;
use warden_proto::{Generation, ProtocolVersion};

use crate::client::ClientChannel;
use crate::principal::Principal;
use crate::session::SessionRef;
use crate::upstream::UpstreamChannel;

/// Which front end the message came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// `warden serve`: Streamable HTTP.
    Http,
    /// `warden wrap`: the local client's stdio.
    Stdio,
}

/// Where a message goes: known before the client→server guards run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The upstream's position in the configuration.
    pub index: usize,
    /// The upstream's name.
    pub upstream: Arc<str>,
    /// The tool, prompt or resource as the upstream names it, when the message names one.
    pub original: Option<Arc<str>>,
    /// The same as the client names it (with the upstream's prefix, if any).
    pub exposed: Option<Arc<str>>,
}

impl Route {
    /// A route to upstream `index` called `upstream`, naming nothing.
    pub fn to(index: usize, upstream: Arc<str>) -> Self {
        Self {
            index,
            upstream,
            original: None,
            exposed: None,
        }
    }
}

/// What the pipeline knows about the exchange being handled.
#[derive(Clone)]
pub struct Ctx {
    /// Warden's id for this HTTP request or stdio message.
    pub request_id: RequestId,
    /// When Warden received it.
    pub started: Instant,
    /// Which front end.
    pub front: Front,
    /// Client address, or `None` for stdio.
    pub client: Option<SocketAddr>,
    /// The client as audit events name it (formatted once per connection; `stdio` for stdio).
    pub client_label: Arc<str>,
    /// The authenticated caller (set by the identity guard; `None` until then, or unauthenticated).
    pub principal: Option<Arc<Principal>>,
    /// Fingerprint of the downstream session id (audit), when one was presented.
    pub session: Option<Arc<str>>,
    /// The session's guard state, when the message belongs to an open session.
    pub state: Option<SessionRef>,
    /// Protocol version in force for this message.
    pub version: Option<ProtocolVersion>,
    /// Generation of the message: session-based or stateless.
    pub generation: Option<Generation>,
    /// The HTTP request headers (HTTP front end only).
    pub headers: Option<Arc<HeaderMap>>,
    /// `x-mcp-header` annotations of the tool being called, when known (2026-07-28).
    pub param_headers: Option<Arc<Vec<ParamHeader>>>,
    /// Where the message goes (client→server) or came from (server→client).
    pub route: Option<Route>,
    /// The JSON-RPC method of the client's message (static for the methods Warden knows).
    pub method: Option<Cow<'static, str>>,
    /// Tool (or prompt/resource) the message is about, as the client named it.
    pub tool: Option<Arc<str>>,
    /// Risk score of this exchange; raised by guards that see trouble.
    pub risk: u32,
    /// Facts guards add for audit, keyed by guard name.
    pub facts: BTreeMap<&'static str, serde_json::Value>,
    /// How to send the client a request of Warden's own (elicitation), when the exchange allows.
    pub client_channel: Option<Arc<dyn ClientChannel>>,
    /// How to list the routed upstream as Warden (tool definitions a check needs), when the
    /// exchange is routed to one upstream.
    pub upstream_channel: Option<Arc<dyn UpstreamChannel>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("request_id", &self.request_id)
            .field("front", &self.front)
            .field("client", &self.client_label)
            .field(
                "principal",
                &self.principal.as_ref().map(|p| p.id().clone()),
            )
            .field("session", &self.session)
            .field("generation", &self.generation)
            .field("route", &self.route)
            .field("method", &self.method)
            .field("tool", &self.tool)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// This context without what ties it to the live exchange — the client and upstream
    /// channels, the session state handle, the HTTP headers — built field by field (no count
    /// raised and dropped again): what a record of the call kept apart from it needs (the calls
    /// in flight, audited if they are interrupted).
    pub fn detached(&self) -> Ctx {
        Ctx {
            request_id: self.request_id,
            started: self.started,
            front: self.front,
            client: self.client,
            client_label: self.client_label.clone(),
            principal: self.principal.clone(),
            session: self.session.clone(),
            state: None,
            version: self.version,
            generation: self.generation,
            headers: None,
            param_headers: self.param_headers.clone(),
            route: self.route.clone(),
            method: self.method.clone(),
            tool: self.tool.clone(),
            risk: self.risk,
            facts: self.facts.clone(),
            client_channel: None,
            upstream_channel: None,
        }
    }

    /// A context for a message that arrived now.
    pub fn new(
        request_id: RequestId,
        front: Front,
        client: Option<SocketAddr>,
        client_label: Arc<str>,
    ) -> Self {
        Self {
            request_id,
            started: Instant::now(),
            front,
            client,
            client_label,
            principal: None,
            session: None,
            state: None,
            version: None,
            generation: None,
            headers: None,
            param_headers: None,
            route: None,
            method: None,
            tool: None,
            risk: 0,
            facts: BTreeMap::new(),
            client_channel: None,
            upstream_channel: None,
        }
    }

    /// A context for guard unit tests: HTTP front end, no client, nothing known.
    pub fn test() -> Self {
        Self::new(RequestId(0), Front::Http, None, "test".into())
    }

    /// The upstream's name, once routed.
    pub fn upstream(&self) -> Option<&Arc<str>> {
        self.route.as_ref().map(|r| &r.upstream)
    }

    /// An audit event of `kind` prefilled from this context (request id, session fingerprint,
    /// client, principal, upstream, method, tool, latency so far and facts).
    pub fn event(&self, kind: &'static str, decision: Decision) -> AuditEvent {
        let mut ev = AuditEvent::new(kind, decision);
        ev.request_id = Some(self.request_id);
        ev.session = self.session.clone();
        ev.client = Some(self.client_label.clone());
        ev.subject = self.principal.as_ref().map(|p| p.id().to_string());
        ev.upstream = self.upstream().cloned();
        ev.method = self.method.clone();
        ev.tool = self.tool.clone();
        ev.latency_us = Some(self.started.elapsed().as_micros() as u64);
        ev.facts = self.facts.clone();
        ev
    }
}
