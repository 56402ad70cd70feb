//! Remote Streamable HTTP upstreams over a pooled hyper client (HTTP/1.1, or HTTP/2 with prior
//! knowledge). Bodies are forwarded as the exact bytes Warden cleared; SSE responses are split into
//! blocks that keep their original bytes, ids and `retry:` fields.
//!
//! The client's own credentials never go upstream (P7.1): only the MCP headers listed in
//! [`FORWARDED`] are copied from the client's request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::mpsc;
use warden_config::UpstreamConfig;
use warden_proto::sse::SseDecoder;

use super::pool::{Lease, Pool, PoolConfig};
use super::{Frame, Reply, UpstreamError};

/// Client request headers copied upstream; everything else (Authorization, Cookie, Origin…) stays.
/// Headers a guard sets through `upstream_request` (Warden's own credentials) are added after.
pub const FORWARDED: [&str; 6] = [
    "accept",
    "content-type",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];

/// `Mcp-Session-Id`, for both sides of the relay.
pub static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// Is this client header one that goes upstream ([`FORWARDED`] or `Mcp-Param-*`)?
fn is_forwarded(name: &HeaderName) -> bool {
    let n = name.as_str();
    FORWARDED.contains(&n) || n.starts_with("mcp-param-")
}

/// One remote upstream and its connection pool.
#[derive(Clone)]
pub struct HttpUpstream {
    pool: Arc<Pool>,
    timeout: Duration,
    max_message: usize,
}

/// An upstream's answer with the headers Warden reads.
pub struct HttpAnswer {
    pub reply: Reply,
    pub session_id: Option<String>,
    pub status: u16,
}

impl HttpUpstream {
    pub fn new(cfg: &UpstreamConfig, max_message: usize) -> Result<Self, UpstreamError> {
        let url = cfg.url.as_deref().unwrap_or_default();
        let uri: Uri = url
            .parse()
            .map_err(|e| UpstreamError::Unreachable(format!("bad url {url}: {e}")))?;
        let pool = Pool::new(
            &uri,
            PoolConfig {
                http2: cfg.http2,
                max_idle: 256,
                idle_timeout: Duration::from_secs(60),
                connect_timeout: Duration::from_secs(10),
                tls: cfg.tls.clone(),
            },
        )?;
        Ok(Self {
            pool,
            timeout: Duration::from_millis(cfg.timeout_ms),
            max_message,
        })
    }

    /// Send one request to the upstream endpoint. One deadline covers the whole exchange for a
    /// JSON answer (head and body); an SSE answer's deadline ends with its head.
    pub async fn send(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        own: Option<&HeaderMap>,
        session: Option<&str>,
        body: Bytes,
    ) -> Result<HttpAnswer, UpstreamError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        let headers = req.headers_mut();
        // One pass over the client's headers: the MCP ones go on, nothing else does (P7.1).
        for (name, v) in client_headers {
            if is_forwarded(name) {
                headers.append(name.clone(), v.clone());
            }
        }
        // Headers the guards set (Warden's own credentials): they replace any client value.
        if let Some(own) = own {
            for (name, v) in own {
                headers.insert(name.clone(), v.clone());
            }
        }
        if let Some(s) = session {
            let v = HeaderValue::from_str(s).map_err(|_| {
                UpstreamError::Invalid("upstream session id is not a header value".into())
            })?;
            headers.insert(MCP_SESSION_ID.clone(), v);
        }
        let exchange = async {
            let (resp, lease) = self.pool.send(req).await?;
            let status = resp.status().as_u16();
            let session_id = resp
                .headers()
                .get(&MCP_SESSION_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();
            let is_sse = content_type
                .as_ref()
                .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"));
            let body = resp.into_body();
            if is_sse {
                let frames = self.stream(body, lease);
                return Ok(HttpAnswer {
                    reply: Reply::Stream {
                        frames,
                        sse: true,
                        wire_id: None,
                    },
                    session_id,
                    status,
                });
            }
            // Read whole (a 202's empty body too) so the connection can be reused.
            let body = Limited::new(body, self.max_message)
                .collect()
                .await
                .map_err(|e| UpstreamError::Invalid(e.to_string()))?
                .to_bytes();
            lease.release();
            let reply = if status == 202 {
                Reply::Accepted
            } else {
                Reply::Body {
                    status,
                    content_type,
                    body,
                }
            };
            Ok(HttpAnswer {
                reply,
                session_id,
                status,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout.as_millis() as u64))?
    }

    /// Read an SSE body into frames on a task; dropping the receiver closes the upstream stream.
    /// The connection goes back to the pool when the stream ended cleanly.
    fn stream(
        &self,
        mut body: hyper::body::Incoming,
        lease: Lease,
    ) -> mpsc::Receiver<Result<Frame, UpstreamError>> {
        let (tx, rx) = mpsc::channel(64);
        let max = self.max_message;
        tokio::spawn(async move {
            let mut decoder = SseDecoder::new(max);
            let mut blocks = Vec::new();
            loop {
                let frame = tokio::select! {
                    f = body.frame() => f,
                    _ = tx.closed() => return,
                };
                let Some(frame) = frame else {
                    lease.release();
                    return;
                };
                let chunk = match frame {
                    Ok(f) => match f.into_data() {
                        Ok(d) => d,
                        Err(_) => continue,
                    },
                    Err(e) => {
                        let _ = tx
                            .send(Err(UpstreamError::Unreachable(e.to_string())))
                            .await;
                        return;
                    }
                };
                if let Err(e) = decoder.feed(&chunk, &mut blocks) {
                    let _ = tx.send(Err(UpstreamError::Invalid(e.to_string()))).await;
                    return;
                }
                for b in blocks.drain(..) {
                    let f = Frame {
                        data: b.data.map(Bytes::from),
                        id: b.id,
                        event: b.event,
                        retry: b.retry,
                        raw: Some(b.raw),
                    };
                    if tx.send(Ok(f)).await.is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }
}
