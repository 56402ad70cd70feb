//! Remote Streamable HTTP upstreams over a pooled hyper client (HTTP/1.1, or HTTP/2 with prior
//! knowledge). Bodies are forwarded as the exact bytes Warden cleared; SSE responses are split into
//! blocks that keep their original bytes, ids and `retry:` fields.
//!
//! A JSON answer whose length is known (`Content-Length`) is read whole, as before: the hot path.
//! One whose length is not (chunked, or HTTP/2 without a length) is read as it arrives: when its
//! first message is the answer, or the body ends after one message, it is still one body, byte for
//! byte; when it carries more than one message, or first something else (a notification — NDJSON
//! under `application/json`, as some servers answer `subscriptions/listen`), it becomes
//! [`Reply::Lines`]: each message a frame the moment it is complete, bounded by the per-message
//! limit, through the guards like any SSE frame (#13 item 19).
//!
//! The client's own credentials never go upstream (P7.1): only the MCP headers listed in
//! [`FORWARDED`] are copied from the client's request. `Last-Event-ID` only goes with a GET, and
//! only as Warden translated it back (see `event_ids.rs`): never a client's value verbatim.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;
use tokio::sync::mpsc;
use warden_config::UpstreamConfig;
use warden_proto::jsonseq::{JsonSeqDecoder, ValueScanner};
use warden_proto::sse::SseDecoder;
use warden_proto::{Kind, Message};

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
/// `Last-Event-ID` resumes a GET stream and means nothing on any other request.
fn is_forwarded(name: &HeaderName, method: &Method) -> bool {
    let n = name.as_str();
    (FORWARDED.contains(&n) && (n != "last-event-id" || *method == Method::GET))
        || n.starts_with("mcp-param-")
}

/// A JSON media type whose body may carry several messages when its length is not known up front.
fn json_family(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|c| c.to_str().ok()) else {
        return false;
    };
    let media = ct.split(';').next().unwrap_or_default().trim();
    [
        "application/json",
        "application/x-ndjson",
        "application/jsonl",
    ]
    .iter()
    .any(|m| media.eq_ignore_ascii_case(m))
}

/// Is this value the answer to a request (so the body it opens is one message)?
fn is_answer(value: &[u8]) -> bool {
    Message::parse(value).is_ok_and(|m| matches!(m.kind(), Kind::Response | Kind::Error))
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
        let headers = req.headers_mut();
        // One pass over the client's headers: the MCP ones go on, nothing else does (P7.1).
        for (name, v) in client_headers {
            if is_forwarded(name, &method) {
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
        *req.method_mut() = method;
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
            if status != 202
                && (200..300).contains(&status)
                && body.size_hint().exact().is_none()
                && json_family(content_type.as_ref())
            {
                // Boxed: a body of unknown length is the rarer case; its reader stays out of
                // the future of every request.
                let reply = Box::pin(self.json_body(body, lease, status, content_type)).await?;
                return Ok(HttpAnswer {
                    reply,
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

    /// A JSON body of unknown length, read as it arrives: one message stays one body (its exact
    /// bytes); more than one, or a first message that is not the answer, turns into a stream of
    /// messages read on a task from then on.
    async fn json_body(
        &self,
        mut body: hyper::body::Incoming,
        lease: Lease,
        status: u16,
        content_type: Option<HeaderValue>,
    ) -> Result<Reply, UpstreamError> {
        let invalid = |e: warden_proto::jsonseq::SeqError| UpstreamError::Invalid(e.to_string());
        let mut acc = BytesMut::new();
        let mut scan = ValueScanner::default();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| UpstreamError::Invalid(e.to_string()))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            if acc.len() + chunk.len() > self.max_message {
                return Err(UpstreamError::Invalid("length limit exceeded".into()));
            }
            acc.extend_from_slice(&chunk);
            if first.is_none() {
                first = scan.next(&acc).map_err(invalid)?;
            }
            let Some(span) = first.clone() else {
                continue;
            };
            let more = scan.next(&acc).map_err(invalid)?.is_some() || scan.in_value();
            if more || (!body.is_end_stream() && !is_answer(&acc[span])) {
                let frames = self.lines(body, lease, acc.freeze());
                return Ok(Reply::Lines {
                    status,
                    content_type,
                    frames,
                });
            }
        }
        lease.release();
        Ok(Reply::Body {
            status,
            content_type,
            body: acc.freeze(),
        })
    }

    /// Split a streamed JSON body (`head` already read) into one frame per message on a task;
    /// dropping the receiver closes the upstream stream.
    fn lines(
        &self,
        mut body: hyper::body::Incoming,
        lease: Lease,
        head: Bytes,
    ) -> mpsc::Receiver<Result<Frame, UpstreamError>> {
        let (tx, rx) = mpsc::channel(64);
        let max = self.max_message;
        tokio::spawn(async move {
            let mut decoder = JsonSeqDecoder::new(max);
            let mut values = Vec::new();
            let mut chunk = head;
            loop {
                if let Err(e) = decoder.feed(&chunk, &mut values) {
                    let _ = tx.send(Err(UpstreamError::Invalid(e.to_string()))).await;
                    return;
                }
                for v in values.drain(..) {
                    if tx.send(Ok(Frame::message(v))).await.is_err() {
                        return;
                    }
                }
                let frame = tokio::select! {
                    f = body.frame() => f,
                    _ = tx.closed() => return,
                };
                chunk = match frame {
                    None => {
                        match decoder.finish() {
                            Ok(()) => lease.release(),
                            Err(e) => {
                                let _ = tx.send(Err(UpstreamError::Invalid(e.to_string()))).await;
                            }
                        }
                        return;
                    }
                    Some(Ok(f)) => f.into_data().unwrap_or_default(),
                    Some(Err(e)) => {
                        let _ = tx
                            .send(Err(UpstreamError::Unreachable(e.to_string())))
                            .await;
                        return;
                    }
                };
            }
        });
        rx
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
