//! The admin listener: `GET /metrics` (Prometheus text), `GET /healthz`, and session
//! management (M2, P8.3): `GET /sessions` lists open sessions (fingerprint, owner, age — never
//! an id), `DELETE /sessions/<fingerprint>` revokes one, `DELETE /sessions?principal=<id>`
//! revokes every session of a principal (`iss sub`). Each revocation is audited
//! (`session.revoked`) and ends the session as DELETE would (upstream links closed, guard state
//! dropped): its next request gets 404.
//!
//! It binds where `[admin]` says: a TCP address (loopback unless configured), where session
//! management needs `Authorization: Bearer <admin.token>`, and/or a Unix socket created mode
//! 0600 in a directory the operator controls, where local access is the credential. Without a
//! token, the TCP listener refuses session management (403) rather than leaving it open.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use warden_audit::Decision;
use warden_guard::Secret;

use crate::downstream::body::{Response, full};
use crate::downstream::respond;
use crate::gateway::Gateway;

/// How a connection reached the admin listener.
#[derive(Clone)]
enum Access {
    /// TCP: session management needs this token (`None`: refused).
    Tcp(Option<Secret>),
    /// The Unix socket: local access suffices.
    Local,
}

/// Serve the TCP admin listener; session management needs `token`.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, token: Option<Secret>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(gw.clone(), stream, Access::Tcp(token.clone())));
    }
}

/// Serve the admin listener on a Unix socket (created by the caller, mode 0600).
#[cfg(unix)]
pub async fn serve_unix(gw: Arc<Gateway>, listener: tokio::net::UnixListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(gw.clone(), stream, Access::Local));
    }
}

async fn connection<S>(gw: Arc<Gateway>, stream: S, access: Access)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let gw = gw.clone();
        let access = access.clone();
        async move { Ok::<_, Infallible>(route(&gw, &access, &req).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

fn text(status: u16, body: &'static str) -> Response {
    respond::response(status, Some("text/plain"), full(body))
}

fn json_response(status: u16, v: serde_json::Value) -> Response {
    respond::response(status, Some("application/json"), full(v.to_string()))
}

async fn route<B>(gw: &Gateway, access: &Access, req: &http::Request<B>) -> Response {
    let path = req.uri().path();
    match (req.method(), path) {
        (&http::Method::GET, "/metrics") => {
            gw.metrics.sessions_open.set(gw.sessions.len() as i64);
            return respond::response(
                200,
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                full(gw.metrics.render()),
            );
        }
        (&http::Method::GET, "/healthz") => return text(200, "ok\n"),
        _ if path == "/sessions" || path.starts_with("/sessions/") => {}
        _ => return text(404, "not found\n"),
    }
    if let Err(Denied(status, reason, hint)) = authorize(access, req.headers()) {
        let mut ev = warden_audit::AuditEvent::new("admin.refused", Decision::Deny);
        ev.client = Some("admin".into());
        ev.control = Some("M2");
        ev.reason = Some(reason.into());
        ev.hint = Some(hint.trim_end().into());
        gw.audit.emit(ev);
        let mut r = text(status, hint);
        if status == 401 {
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"warden-admin\""),
            );
        }
        return r;
    }
    match *req.method() {
        http::Method::GET if path == "/sessions" => {
            let list: Vec<_> = gw
                .sessions
                .list()
                .into_iter()
                .map(|l| {
                    json!({"session": &*l.fingerprint, "owner": l.owner,
                           "age_secs": l.age_secs, "idle_secs": l.idle_secs})
                })
                .collect();
            json_response(200, json!({ "sessions": list }))
        }
        http::Method::DELETE => {
            let principal = req.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "principal")
                    .map(|(_, v)| v.into_owned())
            });
            let one = path.strip_prefix("/sessions/").filter(|f| !f.is_empty());
            let revoked = match (one, principal) {
                (Some(fp), None) => gw.revoke_sessions(|f, _| f == fp).await,
                (None, Some(p)) => gw.revoke_sessions(|_, o| o.to_string() == p).await,
                _ => {
                    return text(
                        400,
                        "name one session (/sessions/<fingerprint>) or ?principal=<iss sub>\n",
                    );
                }
            };
            for (fp, owner) in &revoked {
                audit_revoked(gw, fp.clone(), owner.clone());
            }
            let status = if revoked.is_empty() { 404 } else { 200 };
            json_response(status, json!({ "revoked": revoked.len() }))
        }
        _ => text(
            405,
            "GET /sessions, DELETE /sessions/<fingerprint> or ?principal=\n",
        ),
    }
}

/// A refused admin request: status, stable reason, and what to do (the body and the audit hint).
struct Denied(u16, &'static str, &'static str);

/// Session management is allowed on the socket, or on TCP with the admin token.
fn authorize(access: &Access, headers: &http::HeaderMap) -> Result<(), Denied> {
    let token = match access {
        Access::Local => return Ok(()),
        Access::Tcp(None) => {
            return Err(Denied(
                403,
                "admin_token_not_configured",
                "session management needs [admin] token, or the admin socket\n",
            ));
        }
        Access::Tcp(Some(t)) => t,
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    aws_lc_rs::constant_time::verify_slices_are_equal(
        presented.as_bytes(),
        token.expose().as_bytes(),
    )
    .map_err(|_| {
        Denied(
            401,
            "admin_token_invalid",
            "send the admin token: Authorization: Bearer <[admin] token>\n",
        )
    })
}

/// A session the admin listener revoked.
fn audit_revoked(gw: &Gateway, session: Arc<str>, owner: String) {
    let mut ev = warden_audit::AuditEvent::new("session.revoked", Decision::Info);
    ev.session = Some(session);
    ev.subject = Some(owner);
    ev.client = Some("admin".into());
    ev.control = Some("P8.3");
    ev.reason = Some("session_revoked".into());
    gw.audit.emit(ev);
}
