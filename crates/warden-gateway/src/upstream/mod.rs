//! Upstream MCP servers: remote Streamable HTTP ([`http`]) and stdio child processes ([`stdio`]).
//! Both hand back what the server said as [`Reply`]: one JSON body, or a stream of [`Frame`]s.

pub mod http;
pub mod pool;
pub mod stdio;
pub mod tls;

use bytes::Bytes;
use tokio::sync::mpsc;

/// One message (or SSE block) from an upstream.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// The JSON-RPC message, when the frame carries one.
    pub data: Option<Bytes>,
    /// SSE event id as the upstream sent it.
    pub id: Option<String>,
    pub event: Option<String>,
    pub retry: Option<u64>,
    /// The original SSE block bytes (HTTP upstreams), forwarded as-is when nothing changed.
    pub raw: Option<Bytes>,
}

impl Frame {
    pub fn message(data: Bytes) -> Self {
        Self {
            data: Some(data),
            ..Default::default()
        }
    }
}

/// Why an upstream could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// The upstream's TLS identity could not be verified, or TLS failed (P3.1).
    #[error("upstream TLS failed: {0}")]
    Tls(String),
    #[error("upstream did not answer within {0} ms")]
    Timeout(u64),
    #[error("upstream sent an invalid response: {0}")]
    Invalid(String),
    #[error("upstream process exited")]
    Exited,
    #[error("upstream is restarting; retry in {0} s")]
    Restarting(u64),
}

impl UpstreamError {
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable(_) => "upstream_unreachable",
            UpstreamError::Tls(_) => "upstream_tls_failed",
            UpstreamError::Timeout(_) => "upstream_timeout",
            UpstreamError::Invalid(_) => "upstream_invalid_response",
            UpstreamError::Exited => "upstream_exited",
            UpstreamError::Restarting(_) => "upstream_restarting",
        }
    }

    /// The REQUIREMENTS.md control a refusal for this error cites.
    pub fn control(&self) -> &'static str {
        match self {
            UpstreamError::Tls(_) => "P3.1",
            _ => "P4.3",
        }
    }
}

/// What an upstream answered to one client message.
pub enum Reply {
    /// Accepted with nothing to say (202).
    Accepted,
    /// One body with its HTTP status and content type, relayed as-is.
    Body {
        status: u16,
        content_type: Option<::http::HeaderValue>,
        body: Bytes,
    },
    /// A stream of frames (SSE from HTTP upstreams, messages from stdio ones).
    Stream {
        frames: mpsc::Receiver<Result<Frame, UpstreamError>>,
        sse: bool,
        /// The id a stdio child saw for the request (Warden's own on a shared child), to cancel
        /// it by when the client goes away.
        wire_id: Option<String>,
    },
}
