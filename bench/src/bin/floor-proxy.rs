//! floor-proxy: the relay floor for Warden's benchmark — a minimal hyper reverse proxy with pooled
//! keep-alive upstream connections that streams bytes through and does no JSON work (what the
//! anchor measurements call "the floor", 17–18 µs per request on their machine).
//!
//! Measured beside Warden in the same run it calibrates a noisy machine: Warden's CPU per request
//! divided by the floor's says what Warden's own work costs, whatever the box.
//!
//! Usage: `floor-proxy --upstream http://127.0.0.1:PORT/mcp [--port N] [--threads N]`; prints
//! `floor-proxy: listening on http://127.0.0.1:PORT/mcp` on stderr and runs until killed.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "A minimal hyper reverse proxy: the relay floor")]
struct Args {
    /// The upstream endpoint every request goes to.
    #[arg(long)]
    upstream: Uri,
    /// Port on 127.0.0.1; 0 picks a free one (printed on stderr).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Runtime worker threads; 0 uses tokio's default (one per CPU, like Warden).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

type Body = Either<Incoming, Full<Bytes>>;

async fn proxy(
    client: Client<HttpConnector, Incoming>,
    upstream: Uri,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    parts.uri = upstream;
    parts.headers.remove(http::header::HOST);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => Ok(resp.map(Either::Left)),
        Err(e) => {
            let mut r = Response::new(Either::Right(Full::new(Bytes::from(e.to_string()))));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(r)
        }
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector);
    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    eprintln!("floor-proxy: listening on http://127.0.0.1:{port}/mcp");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), args.upstream.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| proxy(client.clone(), upstream.clone(), req));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    match builder
        .enable_all()
        .build()
        .and_then(|rt| rt.block_on(serve(args)))
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
