//! The admin listener: `GET /metrics` (Prometheus text) and `GET /healthz`. It binds where
//! `[admin] listen` says (loopback unless configured) and serves nothing else.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::downstream::body::full;
use crate::downstream::respond;
use crate::gateway::Gateway;

pub async fn serve(gw: Arc<Gateway>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let gw = gw.clone();
                async move {
                    let resp = match (req.method(), req.uri().path()) {
                        (&http::Method::GET, "/metrics") => {
                            gw.metrics.sessions_open.set(gw.sessions.len() as i64);
                            respond::response(
                                200,
                                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                                full(gw.metrics.render()),
                            )
                        }
                        (&http::Method::GET, "/healthz") => {
                            respond::response(200, Some("text/plain"), full("ok\n"))
                        }
                        _ => respond::response(404, Some("text/plain"), full("not found\n")),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
