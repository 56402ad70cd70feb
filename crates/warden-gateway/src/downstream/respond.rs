//! Turning refusals and upstream replies into HTTP responses, with Warden's security headers on
//! every one (P8.4: `X-Content-Type-Options`, `Cache-Control: no-store`, no CORS grant).

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, StatusCode};
use serde_json::value::RawValue;

use warden_guard::{Ctx, LocalResponse, Refusal};

use super::body::{ChannelBody, Response, ResponseBody, empty, full};
use crate::exchange::answer::{Answer, Answered};
use crate::gateway::Gateway;

/// A response with Warden's security headers.
pub fn response(status: u16, content_type: Option<&str>, body: ResponseBody) -> Response {
    let ct = match content_type {
        Some("application/json") => Some(HeaderValue::from_static("application/json")),
        Some(c) => HeaderValue::from_str(c).ok(),
        None => None,
    };
    with_headers(status, ct, body)
}

/// [`response`] with the content type as a header value (relayed from an upstream).
pub fn response_typed(
    status: u16,
    content_type: Option<HeaderValue>,
    body: ResponseBody,
) -> Response {
    with_headers(status, content_type, body)
}

fn with_headers(status: u16, content_type: Option<HeaderValue>, body: ResponseBody) -> Response {
    let mut r = http::Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let h = r.headers_mut();
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(ct) = content_type {
        h.insert(CONTENT_TYPE, ct);
    }
    r
}

/// A refusal as HTTP: its status, a JSON-RPC error echoing the raw id, `Retry-After` when set.
pub fn refusal(r: &Refusal, id: Option<&RawValue>) -> Response {
    let body = r.to_rpc_error().to_bytes(id);
    let mut resp = response(r.status, Some("application/json"), full(body));
    if let Some(secs) = r.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert("retry-after", v);
    }
    if r.status == 405 {
        resp.headers_mut()
            .insert("allow", HeaderValue::from_static("GET, POST, DELETE"));
    }
    for (name, value) in &r.headers {
        resp.headers_mut().append(name.clone(), value.clone());
    }
    resp
}

/// The exchange's answer as an HTTP response.
pub fn answered(a: Answered) -> Response {
    let r = match a.answer {
        Answer::Accepted => accepted(),
        Answer::Json {
            status,
            content_type,
            body,
        } => response_typed(status, content_type, full(body)),
        Answer::Refused { refusal: r, id } => refusal(&r, id.as_deref()),
        Answer::Stream(rx) => sse(http_body_util::Either::Right(ChannelBody(rx))),
        Answer::Lines {
            status,
            content_type,
            rx,
        } => {
            let mut r = response_typed(
                status,
                content_type,
                http_body_util::Either::Right(ChannelBody(rx)),
            );
            r.headers_mut()
                .insert("x-accel-buffering", HeaderValue::from_static("no"));
            r
        }
        Answer::Local(l) => local(l),
        Answer::Empty(status) => response(status, None, empty()),
    };
    match &a.session {
        Some(s) => with_session(r, s),
        None => r,
    }
}

/// A guard's response on its own path.
pub fn local(l: LocalResponse) -> Response {
    let mut r = response(l.status, Some(l.content_type), full(l.body));
    for (name, value) in l.headers {
        r.headers_mut().append(name, value);
    }
    r
}

pub fn json(status: u16, body: Bytes) -> Response {
    with_headers(
        status,
        Some(HeaderValue::from_static("application/json")),
        full(body),
    )
}

pub fn accepted() -> Response {
    response(202, None, empty())
}

/// Headers of an SSE response.
pub fn sse(body: ResponseBody) -> Response {
    let mut r = response(200, Some("text/event-stream"), body);
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

pub fn with_session(mut r: Response, session_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(session_id) {
        r.headers_mut()
            .insert(crate::upstream::http::MCP_SESSION_ID.clone(), v);
    }
    r
}

/// Audit a refusal and answer it: the one way the front end refuses before the exchange.
pub fn refuse(gw: &Gateway, ctx: &Ctx, r: Refusal, id: Option<&RawValue>) -> Response {
    gw.audit_refusal(ctx, &r, id);
    refusal(&r, id)
}
