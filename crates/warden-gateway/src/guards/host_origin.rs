//! DNS-rebinding defence (P8.4, D1, D4): the `Host` (or HTTP/2 authority) must be an allowed host
//! name, and an `Origin`, when present, must be an allowed origin or an origin on an allowed host.
//! Refusals are HTTP 403.

use warden_config::ServerConfig;
use warden_proto::error::code;

use warden_guard::{Check, Ctx, Guard, HttpFacts, Refusal, Verdict};

pub struct HostOrigin {
    /// Allowed host names, lower-case, without port unless configured with one.
    hosts: Vec<String>,
    /// Allowed origins, lower-case.
    origins: Vec<String>,
}

impl HostOrigin {
    pub fn new(cfg: &ServerConfig) -> Self {
        Self {
            hosts: cfg
                .effective_allowed_hosts()
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            origins: cfg
                .allowed_origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Case-insensitive, without allocating (this runs on every request).
    fn host_allowed(&self, host_port: &str) -> bool {
        let host = strip_port(host_port);
        self.hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host_port) || h.eq_ignore_ascii_case(host))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return true;
        }
        match origin.split_once("://") {
            Some((scheme, rest))
                if (scheme.eq_ignore_ascii_case("http")
                    || scheme.eq_ignore_ascii_case("https"))
                    && !rest.contains('/')
                    && !rest.is_empty() =>
            {
                self.host_allowed(rest)
            }
            _ => false,
        }
    }
}

/// `host:port` → `host`; `[::1]:80` → `[::1]`.
fn strip_port(hp: &str) -> &str {
    if hp.starts_with('[') {
        return hp.find(']').map_or(hp, |i| &hp[..=i]);
    }
    match hp.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => hp,
    }
}

fn forbidden(reason: &'static str, message: &'static str, hint: &'static str) -> Verdict {
    Verdict::Deny(Refusal::new(
        403,
        code::INVALID_REQUEST,
        reason,
        "P8.4",
        message,
        hint,
    ))
}

impl Guard for HostOrigin {
    fn name(&self) -> &'static str {
        "host_origin"
    }

    fn http_request<'a>(&'a self, req: &'a HttpFacts<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        Check::Ready(self.check(req))
    }
}

impl HostOrigin {
    fn check(&self, req: &HttpFacts<'_>) -> Verdict {
        let host = req.authority.or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
        });
        match host {
            Some(h) if self.host_allowed(h) => {}
            Some(_) => {
                return forbidden(
                    "host_not_allowed",
                    "Host not allowed",
                    "the Host header names a host this gateway does not serve (DNS-rebinding defence); add it to server.allowed_hosts if legitimate",
                );
            }
            None => {
                return forbidden(
                    "host_missing",
                    "Host header required",
                    "send a Host header naming an allowed host",
                );
            }
        }
        match req.headers.get(http::header::ORIGIN).map(|v| v.to_str()) {
            None => Verdict::Continue,
            Some(Ok(o)) if self.origin_allowed(o) => Verdict::Continue,
            Some(_) => forbidden(
                "origin_not_allowed",
                "Origin not allowed",
                "requests from this web origin are refused (DNS-rebinding defence); add it to server.allowed_origins if legitimate",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method};

    fn check(g: &HostOrigin, host: Option<&str>, origin: Option<&str>) -> Verdict {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert("host", HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = origin {
            h.insert("origin", HeaderValue::from_str(v).unwrap());
        }
        g.check(&HttpFacts {
            method: &Method::POST,
            path: "/mcp",
            authority: None,
            headers: &h,
        })
    }

    #[test]
    fn loopback_defaults_accept_local_and_refuse_rebinding() {
        let g = HostOrigin::new(&ServerConfig::default());
        assert_eq!(
            check(&g, Some("localhost:8080"), Some("http://localhost:8080")),
            Verdict::Continue
        );
        assert_eq!(check(&g, Some("127.0.0.1:9"), None), Verdict::Continue);
        assert_eq!(
            check(&g, Some("[::1]:9"), Some("http://[::1]:9")),
            Verdict::Continue
        );
        for (host, origin, reason) in [
            (
                Some("evil.example.com"),
                Some("http://evil.example.com"),
                "host_not_allowed",
            ),
            (
                Some("localhost:8080"),
                Some("http://evil.example.com"),
                "origin_not_allowed",
            ),
            (Some("localhost:8080"), Some("null"), "origin_not_allowed"),
            (Some("localhost.evil.com"), None, "host_not_allowed"),
            (None, None, "host_missing"),
        ] {
            match check(&g, host, origin) {
                Verdict::Deny(r) => {
                    assert_eq!(r.status, 403);
                    assert_eq!(r.reason, reason);
                }
                v => panic!("{host:?} {origin:?} → {v:?}"),
            }
        }
    }

    #[test]
    fn configured_origins_are_exact() {
        let cfg = ServerConfig {
            allowed_hosts: Some(vec!["gw.example.com".into()]),
            allowed_origins: vec!["https://app.example.com".into()],
            ..Default::default()
        };
        let g = HostOrigin::new(&cfg);
        assert_eq!(
            check(&g, Some("gw.example.com"), Some("https://app.example.com")),
            Verdict::Continue
        );
        assert!(matches!(
            check(
                &g,
                Some("gw.example.com"),
                Some("https://app.example.com.evil")
            ),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            check(&g, Some("localhost"), None),
            Verdict::Deny(_)
        ));
    }
}
