//! The connection pool of one remote upstream: plain TCP (`http://`) or verified TLS (`https://`,
//! [`super::tls`]), HTTP/1.1 keep-alive connections reused last-in first-out, or one multiplexed
//! HTTP/2 connection (prior knowledge over TCP, ALPN `h2` over TLS).
//!
//! Built on hyper's connection API rather than hyper-util's general client: Warden talks to one
//! fixed origin per upstream, so there is no pool key to hash, no per-request URI rewriting and
//! no connection-info extensions (about a tenth of the relay's CPU per request went there).
//!
//! An HTTP/1.1 connection is handed back ([`Lease::release`]) only once its response body was
//! read whole; a streamed (SSE) answer keeps its connection to itself and closes it at the end.
//! A request that a pooled connection refused before writing a byte (the server had closed it)
//! is retried on another; one that was written is never resent (MCP requests are not idempotent).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::UpstreamError;
use super::tls::Tls;
use crate::shard;

type Body = Full<Bytes>;
/// Idle HTTP/1.1 connections of one worker, with when each went idle.
type IdleShard = Mutex<Vec<(http1::SendRequest<Body>, Instant)>>;

/// How the pool is shaped.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub http2: bool,
    pub max_idle: usize,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// TLS settings of an `https://` upstream (`None`: the system trust store, TLS 1.3).
    pub tls: Option<warden_config::UpstreamTls>,
}

/// Where requests go, prepared once: the socket address, the `Host` header, and the request
/// target in the form each protocol wants.
struct Target {
    /// `host:port` to connect to.
    addr: String,
    host: HeaderValue,
    /// Origin form (`/mcp?x`) for HTTP/1.1.
    path: Uri,
    /// Absolute form for HTTP/2 (`:scheme` and `:authority` come from it).
    absolute: Uri,
    /// `https://`: every connection is TLS, verified before it carries a request.
    tls: Option<Tls>,
}

/// A connected socket, plain or TLS.
enum Io {
    Plain(TokioIo<TcpStream>),
    Tls(TokioIo<Box<tokio_rustls::client::TlsStream<TcpStream>>>),
}

/// Connections are kept per connection worker ([`shard::shard`]): a request reuses only
/// connections whose tasks run on its own thread.
pub struct Pool {
    target: Target,
    cfg: PoolConfig,
    idle: Vec<IdleShard>,
    shared: Vec<Mutex<Option<http2::SendRequest<Body>>>>,
}

/// The HTTP/1.1 connection an answer arrived on, to hand back once its body was read.
pub struct Lease {
    pool: Option<Arc<Pool>>,
    sender: Option<http1::SendRequest<Body>>,
}

impl Lease {
    /// The body was read whole: the connection can carry another request.
    pub fn release(mut self) {
        if let (Some(pool), Some(tx)) = (self.pool.take(), self.sender.take()) {
            pool.put(tx);
        }
    }
}

impl Pool {
    pub fn new(uri: &Uri, cfg: PoolConfig) -> Result<Arc<Self>, UpstreamError> {
        let bad = |why: &str| UpstreamError::Unreachable(format!("upstream url {uri}: {why}"));
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("only http:// and https:// are supported")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority.host();
        let tls = if https {
            Some(Tls::new(
                host,
                &cfg.tls.clone().unwrap_or_default(),
                cfg.http2,
            )?)
        } else {
            None
        };
        let addr = format!("{host}:{port}");
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|_| bad("bad path"))?;
        let target = Target {
            addr,
            host: HeaderValue::from_str(authority.as_str()).map_err(|_| bad("bad host"))?,
            path,
            absolute: uri.clone(),
            tls,
        };
        Ok(Arc::new(Self {
            target,
            cfg,
            idle: (0..shard::SHARDS).map(|_| Mutex::default()).collect(),
            shared: (0..shard::SHARDS).map(|_| Mutex::default()).collect(),
        }))
    }

    /// Send `req` (its URI and `Host` are set here) and wait for the response head.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        if self.cfg.http2 {
            *req.uri_mut() = self.target.absolute.clone();
            return Box::pin(self.send_h2(req)).await;
        }
        *req.uri_mut() = self.target.path.clone();
        req.headers_mut()
            .insert(http::header::HOST, self.target.host.clone());
        loop {
            let (mut tx, fresh) = match self.take_idle() {
                Some(tx) => (tx, false),
                // Boxed: connecting (TCP, TLS) is rare and its state would otherwise sit in
                // every request's future.
                None => (Box::pin(self.connect_h1()).await?, true),
            };
            // A pooled connection whose previous exchange is still being wound down by its
            // task becomes ready in a moment; one that closed meanwhile is skipped.
            if !fresh && tx.ready().await.is_err() {
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        pool: Some(self.clone()),
                        sender: Some(tx),
                    };
                    return Ok((resp, lease));
                }
                Err(mut e) => match e.take_message() {
                    // Refused before a byte was written (a pooled connection the server had
                    // closed): another connection may take it.
                    Some(r) if !fresh => req = r,
                    _ => return Err(UpstreamError::Unreachable(e.into_error().to_string())),
                },
            }
        }
    }

    async fn send_h2(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        let lease = || Lease {
            pool: None,
            sender: None,
        };
        loop {
            let (mut tx, fresh) = match self.shared_h2() {
                Some(tx) => (tx, false),
                None => (self.connect_h2().await?, true),
            };
            let ready = tx.ready().await;
            if let Err(e) = ready {
                self.forget_h2();
                if fresh {
                    return Err(UpstreamError::Unreachable(e.to_string()));
                }
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok((resp, lease())),
                Err(mut e) => match e.take_message() {
                    Some(r) if !fresh => {
                        self.forget_h2();
                        req = r;
                    }
                    _ => return Err(UpstreamError::Unreachable(e.into_error().to_string())),
                },
            }
        }
    }

    /// The warmest idle connection still open and within its idle time.
    fn take_idle(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle_shard().lock().unwrap_or_else(|p| p.into_inner());
        while let Some((tx, since)) = idle.pop() {
            if !tx.is_closed() && since.elapsed() < self.cfg.idle_timeout {
                return Some(tx);
            }
        }
        None
    }

    fn put(&self, tx: http1::SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.idle_shard().lock().unwrap_or_else(|p| p.into_inner());
        // Old entries go first when the pool is full (they are the likeliest to have expired).
        if idle.len() >= self.cfg.max_idle {
            idle.remove(0);
        }
        idle.push((tx, Instant::now()));
    }

    fn idle_shard(&self) -> &IdleShard {
        &self.idle[shard::shard() % self.idle.len()]
    }

    fn shared_shard(&self) -> &Mutex<Option<http2::SendRequest<Body>>> {
        &self.shared[shard::shard() % self.shared.len()]
    }

    fn shared_h2(&self) -> Option<http2::SendRequest<Body>> {
        let shared = self
            .shared_shard()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        shared.as_ref().filter(|tx| !tx.is_closed()).cloned()
    }

    fn forget_h2(&self) {
        *self
            .shared_shard()
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// A connected socket, its TLS handshake done for `https://`; the timeout covers both.
    async fn connect(&self) -> Result<Io, UpstreamError> {
        let addr = self.target.addr.as_str();
        let open = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| UpstreamError::Unreachable(format!("connect to {addr}: {e}")))?;
            let _ = stream.set_nodelay(true);
            Ok(match &self.target.tls {
                None => Io::Plain(TokioIo::new(stream)),
                Some(tls) => Io::Tls(TokioIo::new(Box::new(tls.handshake(stream).await?))),
            })
        };
        tokio::time::timeout(self.cfg.connect_timeout, open)
            .await
            .map_err(|_| UpstreamError::Unreachable(format!("connect to {addr} timed out")))?
    }

    async fn connect_h1(&self) -> Result<http1::SendRequest<Body>, UpstreamError> {
        match self.connect().await? {
            Io::Plain(io) => start_h1(io).await,
            Io::Tls(io) => start_h1(io).await,
        }
    }

    async fn connect_h2(&self) -> Result<http2::SendRequest<Body>, UpstreamError> {
        let tx = match self.connect().await? {
            Io::Plain(io) => start_h2(io).await?,
            Io::Tls(io) => start_h2(io).await?,
        };
        *self
            .shared_shard()
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
        Ok(tx)
    }
}

/// An HTTP/1.1 client connection over `io`, its task spawned on this worker.
async fn start_h1<I>(io: I) -> Result<http1::SendRequest<Body>, UpstreamError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (tx, conn) = http1::handshake(io)
        .await
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
    drive(conn);
    Ok(tx)
}

/// An HTTP/2 client connection over `io`, its task spawned on this worker.
async fn start_h2<I>(io: I) -> Result<http2::SendRequest<Body>, UpstreamError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (tx, conn) = http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
    drive(conn);
    Ok(tx)
}

/// Run a client connection's I/O task on this worker until the connection ends.
fn drive(conn: impl std::future::Future<Output = hyper::Result<()>> + Send + 'static) {
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
}
