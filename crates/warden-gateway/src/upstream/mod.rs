//! Upstream MCP servers: remote Streamable HTTP ([`http`]) and stdio child processes ([`stdio`]).
//! Both hand back what the server said as [`Reply`]: one JSON body, a stream of [`Frame`]s (SSE,
//! stdio), or a streamed JSON body split into its messages ([`Reply::Lines`]).

pub mod http;
pub mod pool;
pub mod stdio;
pub mod tls;

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use warden_proto::{Kind, Message};

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
    /// Every stdio child slot (`limits.max_stdio_children`) is taken: no child is started.
    #[error("no stdio server can be started: {max} are running (limits.max_stdio_children)")]
    Capacity { max: usize },
    /// Warden could not obtain its own credential for the upstream (P7.2): nothing was sent.
    #[error("Warden's credential for the upstream could not be obtained: {0}")]
    Credential(String),
}

/// `Retry-After` (seconds) when no stdio child can be started.
pub const CAPACITY_RETRY_SECS: u64 = 10;

impl UpstreamError {
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable(_) => "upstream_unreachable",
            UpstreamError::Tls(_) => "upstream_tls_failed",
            UpstreamError::Timeout(_) => "upstream_timeout",
            UpstreamError::Invalid(_) => "upstream_invalid_response",
            UpstreamError::Exited => "upstream_exited",
            UpstreamError::Restarting(_) => "upstream_restarting",
            UpstreamError::Capacity { .. } => "stdio_children_limit",
            UpstreamError::Credential(_) => "upstream_credential_failed",
        }
    }

    /// The REQUIREMENTS.md control a refusal for this error cites.
    pub fn control(&self) -> &'static str {
        match self {
            UpstreamError::Tls(_) => "P3.1",
            UpstreamError::Credential(_) => "P7.2",
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
    /// A non-SSE body that carries several messages as they come (newline-delimited JSON under
    /// `application/json`, e.g. a `subscriptions/listen` stream): each frame is one message, split
    /// as it arrives and bounded by the per-message limit. Relayed to the client the same way.
    Lines {
        status: u16,
        content_type: Option<::http::HeaderValue>,
        frames: mpsc::Receiver<Result<Frame, UpstreamError>>,
    },
}

/// The final response to request `want` in a reply, and the messages before it.
pub async fn collect(
    reply: Reply,
    want: &str,
    timeout: Duration,
) -> Result<(Bytes, Vec<Bytes>), UpstreamError> {
    match reply {
        Reply::Body { body, .. } => Ok((body, Vec::new())),
        Reply::Accepted => Err(UpstreamError::Invalid("no response to a request".into())),
        Reply::Stream { mut frames, .. } | Reply::Lines { mut frames, .. } => {
            let mut before = Vec::new();
            loop {
                match tokio::time::timeout(timeout, frames.recv()).await {
                    Err(_) => return Err(UpstreamError::Timeout(timeout.as_millis() as u64)),
                    Ok(None) => return Err(UpstreamError::Exited),
                    Ok(Some(Err(e))) => return Err(e),
                    Ok(Some(Ok(f))) => {
                        let Some(d) = f.data.filter(|d| !d.is_empty()) else {
                            continue;
                        };
                        let is_final = Message::parse(&d).is_ok_and(|m| {
                            matches!(m.kind(), Kind::Response | Kind::Error)
                                && m.id_text().is_some_and(|i| same_id(i, want))
                        });
                        if is_final {
                            return Ok((d, before));
                        }
                        if before.len() < 256 {
                            before.push(d);
                        }
                    }
                }
            }
        }
    }
}

/// The final response to request `want` in a reply (the probe's use: other frames unneeded).
pub async fn final_message(
    reply: Reply,
    want: &str,
    timeout: Duration,
) -> Result<Bytes, UpstreamError> {
    collect(reply, want, timeout).await.map(|(b, _)| b)
}

/// Are two raw JSON-RPC ids the same id? Byte-equal (the usual case), or equal once parsed: a
/// server may echo `"\u00e9"` as `"é"`.
pub fn same_id(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (
                serde_json::from_str::<serde_json::Value>(a),
                serde_json::from_str::<serde_json::Value>(b),
            ),
            (Ok(x), Ok(y)) if x == y
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_compare_by_value() {
        assert!(super::same_id(
            r#""\u006A\u0063os\/\n\"eb""#,
            r#""jcos/\n\"eb""#
        ));
        assert!(super::same_id("1", "1"));
        assert!(!super::same_id("1", "\"1\""));
    }
}
