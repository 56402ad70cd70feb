//! The guard interface: every control is a [`Guard`] called with a borrowed view of one message
//! and the request [`Ctx`], returning a [`Verdict`]. The relay alone turns a [`Refusal`] into wire
//! form (HTTP status, JSON-RPC error with reason and hint) and an audit event.
//!
//! Guards answer synchronously when they can ([`Check::Ready`], no allocation) and with a boxed
//! future when they must wait ([`Check::Later`], e.g. a JWKS fetch). A guard that cannot decide
//! must deny: there is no "skip on error".

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use warden_audit::RequestId;
use warden_proto::headers::ParamHeader;
use warden_proto::{Generation, Message, ProtocolVersion};

/// Why a message or request was refused; everything the relay needs to answer and audit it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// HTTP status for HTTP transports (stdio ignores it).
    pub status: u16,
    /// JSON-RPC error code.
    pub rpc_code: i64,
    /// Stable machine-readable reason (`origin_not_allowed`, `header_mismatch`…).
    pub reason: &'static str,
    /// The REQUIREMENTS.md control this refusal enforces.
    pub control: &'static str,
    /// JSON-RPC `error.message`.
    pub message: Cow<'static, str>,
    /// What the caller can do about it.
    pub hint: Cow<'static, str>,
    /// Extra `error.data` members the spec requires (e.g. `supported`).
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds for a `Retry-After` header (429/503).
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(
        status: u16,
        rpc_code: i64,
        reason: &'static str,
        control: &'static str,
        message: impl Into<Cow<'static, str>>,
        hint: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            rpc_code,
            reason,
            control,
            message: message.into(),
            hint: hint.into(),
            data: None,
            retry_after: None,
        }
    }
    /// Warden itself failed (a guard's rewrite did not parse): 500, fail closed.
    pub fn internal() -> Self {
        Self::new(
            500,
            warden_proto::error::code::INTERNAL_ERROR,
            "internal_error",
            "P1.1",
            "Internal error",
            "report this",
        )
    }
    /// Bytes that are not one valid JSON-RPC message (P1.1): 400 with the parser's code and reason.
    pub fn invalid_message(e: &warden_proto::ProtoError, hint: &'static str) -> Self {
        Self::new(400, e.code(), e.reason(), "P1.1", e.to_string(), hint)
    }
    pub fn with_data(mut self, key: &str, value: serde_json::Value) -> Self {
        self.data
            .get_or_insert_with(Default::default)
            .insert(key.into(), value);
        self
    }
    /// The JSON-RPC error body for this refusal.
    pub fn to_rpc_error(&self) -> warden_proto::error::RpcError {
        let mut e = warden_proto::error::RpcError::new(
            self.rpc_code,
            self.message.clone(),
            self.reason,
            self.hint.clone(),
        );
        e.extra = self.data.clone();
        e
    }
}

/// A guard's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Continue,
    Deny(Refusal),
    /// Replace the message with these bytes (built with `warden_proto::splice`).
    Rewrite(Vec<u8>),
}

/// A verdict now, or one to await.
pub enum Check<'a> {
    Ready(Verdict),
    Later(Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>),
}

impl Check<'_> {
    pub async fn resolve(self) -> Verdict {
        match self {
            Check::Ready(v) => v,
            Check::Later(f) => f.await,
        }
    }
}

impl From<Verdict> for Check<'_> {
    fn from(v: Verdict) -> Self {
        Check::Ready(v)
    }
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// The HTTP request head, for guards that act before the body is read.
pub struct HttpFacts<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    /// The request URI's authority (HTTP/2 `:authority`), when present.
    pub authority: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// What the pipeline knows about the request being handled. Guards read it and add to it.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Warden's id for this HTTP request or stdio message.
    pub request_id: RequestId,
    pub started: Instant,
    /// Client address, or `None` for stdio.
    pub client: Option<SocketAddr>,
    /// The client as audit events name it (formatted once per connection; `stdio` for stdio).
    pub client_label: Arc<str>,
    /// Authenticated subject (set by the identity guard; `None` until then).
    pub subject: Option<String>,
    /// Fingerprint of the downstream session, when there is one.
    pub session: Option<Arc<str>>,
    /// Protocol version in force for this message.
    pub version: Option<ProtocolVersion>,
    /// Generation of the message: session-based or stateless.
    pub generation: Option<Generation>,
    /// The HTTP request headers (HTTP transports only).
    pub headers: Option<Arc<HeaderMap>>,
    /// `x-mcp-header` annotations of the tool being called, when known (2026-07-28).
    pub param_headers: Option<Arc<Vec<ParamHeader>>>,
    pub upstream: Option<Arc<str>>,
    /// The JSON-RPC method (static for the methods Warden knows).
    pub method: Option<Cow<'static, str>>,
    /// Tool (or prompt/resource) the message is about, as the client named it.
    pub tool: Option<Arc<str>>,
    /// Session risk score; raised by guards that see trouble.
    pub risk: u32,
    /// Facts guards add for audit, keyed by guard name.
    pub facts: std::collections::BTreeMap<&'static str, serde_json::Value>,
}

impl Ctx {
    pub fn new(request_id: RequestId, client: Option<SocketAddr>, client_label: Arc<str>) -> Self {
        Self {
            request_id,
            started: Instant::now(),
            client,
            client_label,
            subject: None,
            session: None,
            version: None,
            generation: None,
            headers: None,
            param_headers: None,
            upstream: None,
            method: None,
            tool: None,
            risk: 0,
            facts: Default::default(),
        }
    }
    /// A context for guard unit tests.
    pub fn test() -> Self {
        Self::new(RequestId(0), None, "test".into())
    }
}

/// One control. Every method has a default that lets the message through; a guard implements the
/// moments it cares about. Client→server messages meet guards in pipeline order, server→client
/// messages in reverse order (see `pipeline.rs`).
pub trait Guard: Send + Sync {
    fn name(&self) -> &'static str;
    /// The HTTP request head, before the body is read (Host/Origin, credentials).
    fn http_request(&self, _req: &HttpFacts<'_>, _ctx: &mut Ctx) -> Verdict {
        Verdict::Continue
    }
    /// A message from the client (request, notification or response to a server request).
    fn client_message<'a>(&'a self, _msg: &'a Message<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        Check::Ready(Verdict::Continue)
    }
    /// A message from the server (response, notification or server request).
    fn server_message<'a>(&'a self, _msg: &'a Message<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        Check::Ready(Verdict::Continue)
    }
}
