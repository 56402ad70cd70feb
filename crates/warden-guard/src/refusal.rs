//! [`Refusal`]: everything the exchange core needs to answer and audit a denied message.

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};

use http::{HeaderName, HeaderValue};

/// Why a message or request was refused. The exchange core alone turns it into wire form: the
/// HTTP status and headers (HTTP transports), a JSON-RPC error echoing the raw request id with
/// `error.data.reason` and `error.data.hint`, and an `mcp.refusal` audit event.
///
/// The details are boxed: a refusal is rare, and every guard hook returns a `Verdict` or a
/// `Result<(), Refusal>` that the pipeline moves on each message, so it stays one pointer wide
/// (the fields are read and set through `Deref`).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal(Box<Details>);

/// What a [`Refusal`] says.
#[derive(Debug, Clone, PartialEq)]
pub struct Details {
    /// HTTP status for HTTP transports (stdio ignores it).
    pub status: u16,
    /// JSON-RPC `error.code`.
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
    /// Response headers the refusal carries (e.g. `WWW-Authenticate` on a 401).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    /// A refusal with no data, no `Retry-After` and no extra headers.
    pub fn new(
        status: u16,
        rpc_code: i64,
        reason: &'static str,
        control: &'static str,
        message: impl Into<Cow<'static, str>>,
        hint: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self(Box::new(Details {
            status,
            rpc_code,
            reason,
            control,
            message: message.into(),
            hint: hint.into(),
            data: None,
            retry_after: None,
            headers: Vec::new(),
        }))
    }

    /// Warden itself failed (a guard erred or produced bytes that do not parse): 500, fail closed.
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

    /// An upstream answered with something that is not a valid JSON-RPC answer (P1.1): 502.
    pub fn upstream_invalid(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            502,
            warden_proto::error::code::UPSTREAM_UNAVAILABLE,
            "upstream_invalid_response",
            "P1.1",
            "Upstream sent an invalid response",
            detail,
        )
    }

    /// An `Mcp-*` header that disagrees with the body, is missing, malformed or repeated
    /// (SEP-2243, P3.4): 400 with -32020 `HeaderMismatch` and the header in `error.data.header`.
    pub fn header_mismatch(e: &warden_proto::headers::HeaderMismatch) -> Self {
        Self::new(
            400,
            warden_proto::error::code::HEADER_MISMATCH,
            "header_mismatch",
            "P3.4",
            format!("Header mismatch: {e}"),
            "send Mcp-* headers equal to the body values (SEP-2243)",
        )
        .with_data("header", e.header.clone().into())
    }

    /// Add an `error.data` member.
    pub fn with_data(mut self, key: &str, value: serde_json::Value) -> Self {
        self.data
            .get_or_insert_with(Default::default)
            .insert(key.into(), value);
        self
    }

    /// Add a response header (HTTP transports).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Set `Retry-After` (seconds).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
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

impl Deref for Refusal {
    type Target = Details;
    fn deref(&self) -> &Details {
        &self.0
    }
}

impl DerefMut for Refusal {
    fn deref_mut(&mut self) -> &mut Details {
        &mut self.0
    }
}
