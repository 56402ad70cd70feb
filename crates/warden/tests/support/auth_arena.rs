//! An identity arena for the #14 tests: Warden on a port chosen first (its resource URI names
//! it) with `[auth]` for a running `oidc-provider`, in front of a recording upstream.

use serde_json::{Value, json};

use super::client::{Reply, request};
use super::oidc::{Oidc, TokenReq};
use super::recorder::{Canned, Recorded, Recorder};
use super::{Warden, free_port, toml_str, upstream_http};

pub const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// A session-based upstream: `initialize` opens a session, `tools/list` lists three tools,
/// every other request gets an empty result.
pub fn upstream(r: &Recorded) -> Canned {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let id = v["id"].clone();
    let result =
        |result: Value| Canned::json(json!({"jsonrpc":"2.0","id":id,"result":result}).to_string());
    match v["method"].as_str() {
        Some("initialize") => result(json!({"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"rec","version":"0"}}))
            .with_header("mcp-session-id", "upstream-session"),
        Some("tools/list") => result(json!({"tools":[
            {"name":"echo","inputSchema":{"type":"object"}},
            {"name":"admin_rm","inputSchema":{"type":"object"}},
            {"name":"danger","inputSchema":{"type":"object"}}]})),
        Some(_) if !id.is_null() => result(json!({"content":[]})),
        _ => Canned::accepted(),
    }
}

/// Warden on a port chosen first (its resource URI names it), authenticating with `oidc`.
pub struct Arena {
    pub w: Warden,
    pub up: Recorder,
    pub resource: String,
}

pub fn auth_section(oidc: &Oidc, resource: &str, extra: &str) -> String {
    format!(
        "[auth]\nissuer = {}\nresource = {}\nleeway_secs = 0\nmax_lifetime_secs = 3600\n\
         jwks_refresh_min_secs = 1\nscopes_supported = [\"mcp\", \"tools.read\", \"tools.admin\"]\n\
         required_scopes = [\"mcp\"]\nacr_levels = [\"urn:low\", \"urn:high\"]\n{extra}\n\
         [[auth.require]]\nmethod = \"tools/call\"\ntool = \"admin_*\"\nscopes = [\"tools.admin\"]\n\n\
         [[auth.require]]\ntool = \"danger\"\nmfa = true\n\n",
        toml_str(&oidc.issuer),
        toml_str(resource)
    )
}

impl Arena {
    pub fn start(oidc: &Oidc, extra: &str) -> Arena {
        Self::with(oidc, extra, "")
    }

    /// With more configuration after the upstream (`more`: e.g. further upstreams).
    pub fn with(oidc: &Oidc, extra: &str, more: &str) -> Arena {
        let up = Recorder::start(upstream);
        let port = free_port();
        let resource = format!("http://127.0.0.1:{port}/mcp");
        let w = Warden::start(&format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{}{}\n{more}",
            auth_section(oidc, &resource, extra),
            upstream_http("rec", &up.url, None)
        ));
        Arena { w, up, resource }
    }

    pub fn post(&self, token: Option<&str>, sid: Option<&str>, body: &str) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut h = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        if let Some(a) = &auth {
            h.push(("authorization", a));
        }
        if let Some(s) = sid {
            h.push(("mcp-session-id", s));
            h.push(("mcp-protocol-version", "2025-11-25"));
        }
        request(self.w.port, "POST", "/mcp", &h, body.as_bytes())
    }

    /// `n` initialize requests with `token` at once, each expected to succeed (a race on the
    /// issuer's keys or an upstream credential must not refuse any of them).
    pub fn initialize_concurrently(&self, token: &str, n: usize) {
        let (port, auth) = (self.w.port, format!("Bearer {token}"));
        std::thread::scope(|s| {
            for _ in 0..n {
                s.spawn(|| {
                    let h = [
                        ("content-type", "application/json"),
                        ("accept", "application/json, text/event-stream"),
                        ("authorization", auth.as_str()),
                    ];
                    let r = request(port, "POST", "/mcp", &h, INIT.as_bytes());
                    assert_eq!(r.status, 200, "{}", r.text());
                });
            }
        });
    }

    /// initialize + initialized with `token`; the session id.
    pub fn open(&self, token: &str) -> String {
        let r = self.post(Some(token), None, INIT);
        assert_eq!(r.status, 200, "initialize: {}", r.text());
        let sid = r.header("mcp-session-id").unwrap().to_owned();
        let r = self.post(
            Some(token),
            Some(&sid),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!(r.status, 202, "{}", r.text());
        sid
    }

    pub fn call(&self, token: &str, sid: &str, tool: &str) -> Reply {
        let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":{}}});
        self.post(Some(token), Some(sid), &body.to_string())
    }

    pub fn token(&self, oidc: &Oidc, req: TokenReq) -> String {
        oidc.token(&TokenReq {
            resource: Some(&self.resource),
            ..req
        })
    }

    /// No request the upstream saw carries `secret` in any header or body.
    pub fn upstream_never_saw(&self, secret: &str) {
        for r in self.up.requests() {
            for (k, v) in &r.headers {
                assert!(!v.contains(secret), "the upstream got the token in {k}");
            }
            assert!(!String::from_utf8_lossy(&r.body).contains(secret));
        }
    }
}
