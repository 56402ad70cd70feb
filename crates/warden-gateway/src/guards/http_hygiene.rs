//! Request-head hygiene (P1.1 strict input, P8.4 Host integrity; request-smuggling defence):
//! a head whose framing or target two parsers could read differently is refused with 400 before
//! any other guard reads it.
//!
//! * More than one `Host` header (`duplicate_host`): which one names the target depends on the
//!   reader; the Host/Origin allowlist below would check only the first.
//! * A `Host` header that differs from the request target's authority (`host_authority_mismatch`):
//!   HTTP/2 `:authority` vs a `host` header, or an HTTP/1.1 absolute-form target vs `Host`. The
//!   allowlist checks the authority; anything that reads `Host` would see another host.
//! * `Content-Length` together with `Transfer-Encoding` (`content_length_with_transfer_encoding`).
//!   Behind hyper 1.x this check never fires and is kept as a backstop: hyper's HTTP/1.1 parser
//!   frames such a request by `Transfer-Encoding` (chunked), drops the `Content-Length` before
//!   the head reaches Warden, and closes the connection after the response (RFC 9112 §6.3), so
//!   nothing after the body is read as another request; a `Transfer-Encoding` that does not end in
//!   `chunked`, or one in HTTP/1.0, is answered 400 by hyper itself (audited as
//!   `connection.refused`, reason `malformed_http`); and HTTP/2 refuses `Transfer-Encoding` as a
//!   connection-specific header (the stream is reset). `crates/warden/tests/hardening_http.rs`
//!   pins that behaviour.
//!
//! * An MCP header sent more than once (`header_repeated`, 400 / -32020 like every other
//!   `Mcp-*` header refusal): `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`,
//!   `Mcp-Session-Id` (every `mcp-` name) and `Last-Event-ID`. Warden checks one value, the
//!   upstream may read the last or a join of all (#13 item 6).
//!
//! Cost per request: three header-map lookups, and a walk over the header names only when some
//! header is repeated (`HeaderMap::len` counts values, `keys_len` names).

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use warden_proto::error::code;
use warden_proto::headers::HeaderMismatch;

use warden_guard::{Check, Ctx, Guard, HttpFacts, Refusal, Verdict};

pub struct HttpHygiene;

fn bad(reason: &'static str, message: &'static str, hint: &'static str) -> Verdict {
    Verdict::Deny(Refusal::new(
        400,
        code::INVALID_REQUEST,
        reason,
        "P1.1",
        message,
        hint,
    ))
}

impl Guard for HttpHygiene {
    fn name(&self) -> &'static str {
        "http_hygiene"
    }

    fn http_request<'a>(&'a self, req: &'a HttpFacts<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        Check::Ready(judge(req))
    }
}

/// The first MCP header (or `Last-Event-ID`) that has more than one value.
fn repeated(headers: &HeaderMap) -> Option<&http::HeaderName> {
    if headers.len() == headers.keys_len() {
        return None;
    }
    headers.keys().find(|k| {
        (k.as_str().starts_with("mcp-") || k.as_str() == "last-event-id")
            && headers.get_all(*k).iter().nth(1).is_some()
    })
}

fn judge(req: &HttpFacts<'_>) -> Verdict {
    let mut hosts = req.headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return bad(
            "duplicate_host",
            "More than one Host header",
            "send exactly one Host header",
        );
    }
    if let (Some(host), Some(authority)) = (host, req.authority)
        && !host.as_bytes().eq_ignore_ascii_case(authority.as_bytes())
    {
        return bad(
            "host_authority_mismatch",
            "Host header differs from the request authority",
            "send a Host header equal to the request's authority (HTTP/2 :authority, or the host of an absolute-form target), or leave it out",
        );
    }
    if let Some(name) = repeated(req.headers) {
        let mut r = Refusal::header_mismatch(&HeaderMismatch {
            header: name.as_str().to_owned(),
            detail: "sent more than once".into(),
        });
        r.reason = "header_repeated";
        r.control = "P1.1";
        r.hint = "send each MCP header once".into();
        return Verdict::Deny(r);
    }
    if req.headers.contains_key(TRANSFER_ENCODING) && req.headers.contains_key(CONTENT_LENGTH) {
        return bad(
            "content_length_with_transfer_encoding",
            "Content-Length together with Transfer-Encoding",
            "frame the body one way: Content-Length or Transfer-Encoding: chunked, not both",
        );
    }
    Verdict::Continue
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method};

    fn check(headers: &[(&'static str, &'static str)], authority: Option<&str>) -> Verdict {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, HeaderValue::from_static(v));
        }
        let facts = HttpFacts {
            method: &Method::POST,
            path: "/mcp",
            authority,
            headers: &map,
        };
        judge(&facts)
    }

    fn reason(v: Verdict) -> Option<&'static str> {
        match v {
            Verdict::Deny(r) => {
                assert_eq!((r.status, r.rpc_code, r.control), (400, -32600, "P1.1"));
                Some(r.reason)
            }
            _ => None,
        }
    }

    #[test]
    fn ordinary_heads_pass() {
        assert_eq!(reason(check(&[("host", "127.0.0.1:8080")], None)), None);
        assert_eq!(reason(check(&[], Some("127.0.0.1:8080"))), None);
        assert_eq!(
            reason(check(&[("host", "LOCALHOST:8080")], Some("localhost:8080"))),
            None
        );
        assert_eq!(
            reason(check(
                &[("host", "a"), ("transfer-encoding", "chunked")],
                None
            )),
            None
        );
        assert_eq!(
            reason(check(&[("host", "a"), ("content-length", "2")], None)),
            None
        );
    }

    /// #13 item 6: a repeated MCP header is refused, whatever its case or values.
    #[test]
    fn repeated_mcp_headers_are_refused() {
        for (a, b) in [
            ("mcp-name", "mcp-name"),
            ("mcp-method", "Mcp-Method"),
            ("mcp-protocol-version", "MCP-PROTOCOL-VERSION"),
            ("mcp-param-region", "Mcp-Param-Region"),
            ("mcp-session-id", "mcp-session-id"),
            ("last-event-id", "last-event-id"),
        ] {
            let mut map = HeaderMap::new();
            map.append("host", HeaderValue::from_static("a"));
            map.append("accept", HeaderValue::from_static("x"));
            map.append("accept", HeaderValue::from_static("y"));
            map.append(
                http::HeaderName::from_bytes(a.as_bytes()).unwrap(),
                HeaderValue::from_static("one"),
            );
            map.append(
                http::HeaderName::from_bytes(b.as_bytes()).unwrap(),
                HeaderValue::from_static("one"),
            );
            let facts = HttpFacts {
                method: &Method::POST,
                path: "/mcp",
                authority: None,
                headers: &map,
            };
            match judge(&facts) {
                Verdict::Deny(r) => {
                    assert_eq!(
                        (r.status, r.rpc_code, r.reason, r.control),
                        (400, -32020, "header_repeated", "P1.1"),
                        "{a}"
                    );
                    assert_eq!(r.data.as_ref().unwrap()["header"], a);
                }
                other => panic!("{a}: {other:?}"),
            }
        }
        // Other repeated headers are HTTP's business.
        assert_eq!(
            reason(check(
                &[
                    ("host", "a"),
                    ("accept", "x"),
                    ("accept", "y"),
                    ("mcp-name", "n")
                ],
                None
            )),
            None
        );
    }

    #[test]
    fn ambiguous_heads_are_refused() {
        assert_eq!(
            reason(check(&[("host", "a"), ("host", "b")], None)),
            Some("duplicate_host")
        );
        assert_eq!(
            reason(check(&[("host", "a"), ("host", "a")], None)),
            Some("duplicate_host")
        );
        assert_eq!(
            reason(check(&[("host", "localhost:1")], Some("127.0.0.1:1"))),
            Some("host_authority_mismatch")
        );
        assert_eq!(
            reason(check(
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                None
            )),
            Some("content_length_with_transfer_encoding")
        );
    }
}
