//! The configuration model and its defaults. Every struct denies unknown fields: a misspelt
//! security setting is an error, never silently ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::auth::{AuthConfig, SecretRef};
use crate::credentials::UpstreamAuth;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub sessions: SessionConfig,
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// `[auth]`: how clients of `warden serve` authenticate. Required by `serve`.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// `[[upstream]]` tables: the MCP servers behind Warden.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
}

/// The downstream Streamable HTTP listener (`warden serve`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind. Loopback by default (D2).
    pub listen: SocketAddr,
    /// The MCP endpoint path.
    pub path: String,
    /// Accepted `Host` header names (with or without port). Default: loopback names only. Required
    /// when `listen` is not a loopback address (DNS-rebinding defence, D4).
    pub allowed_hosts: Option<Vec<String>>,
    /// Accepted `Origin` values (`scheme://host[:port]`) besides origins whose host is allowed.
    pub allowed_origins: Vec<String>,
    /// A client must send its request head within this time (slow-client defence, P4.4).
    pub header_timeout_ms: u64,
    /// A client must send its whole body within this time.
    pub body_timeout_ms: u64,
    /// A new connection must deliver its first complete request head within this time, whatever
    /// its protocol (slow-client defence, P4.4): a connection that sends nothing, a few bytes, a
    /// partial HTTP/2 preface, or an HTTP/2 preface and SETTINGS but no request is closed when it
    /// runs out, audited as `connection.timeout` (reason `first_request_timeout`) and counted in
    /// `warden_refusals_total`. `None` (the default): `header_timeout_ms`.
    pub first_request_timeout_ms: Option<u64>,
    /// An HTTP/2 connection with no stream open and none begun or ended for this long is closed
    /// (GOAWAY), between one and two times this after its last stream ended (the first check is
    /// made at the first-request deadline, so never sooner than that after connecting); audited as
    /// `connection.timeout` (reason `idle_timeout`, decision `info`). HTTP/2 connections are also
    /// pinged every 30 s and closed when a ping is not answered within 20 s. HTTP/1.1 keep-alive
    /// connections idle between requests are closed after `header_timeout_ms` (the next head's
    /// deadline starts as soon as the previous response is written).
    pub idle_timeout_secs: u64,
    /// Concurrent downstream connections.
    pub max_connections: usize,
    /// Connection worker threads (`warden serve`: each runs its own single-threaded runtime and
    /// serves whole connections; `warden wrap`: the runtime's threads). `None`: one per CPU.
    pub worker_threads: Option<usize>,
    /// On SIGTERM / Ctrl-C, how long requests in flight may take to finish before their
    /// connections are cut (`warden serve`). New connections are refused at once.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            path: "/mcp".into(),
            allowed_hosts: None,
            allowed_origins: Vec::new(),
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            first_request_timeout_ms: None,
            idle_timeout_secs: 60,
            max_connections: 1024,
            worker_threads: None,
            shutdown_grace_secs: 10,
        }
    }
}

/// Input limits (P1.1, P4.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body or single message, in bytes.
    pub max_body_bytes: usize,
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// Largest single message from an upstream (SSE event, stdio line, JSON body, or one message
    /// of a streamed JSON body: the limit applies to each message, not to the stream).
    pub max_upstream_message_bytes: usize,
    /// stdio server processes Warden runs at once, whoever they are for (P4.3): one per
    /// downstream session and stdio upstream (started on the session's first message), plus the
    /// shared child of each stdio upstream that stateless (2026-07-28) requests use. A session or
    /// request that would start one more is refused with 503, `Retry-After` and the reason
    /// `stdio_children_limit` (audited); a slot frees when a child exits (its session ended,
    /// expired or was deleted). At least 1. The per-client cap is `sessions.max_per_client`.
    pub max_stdio_children: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_json_depth: 64,
            max_upstream_message_bytes: 16 * 1024 * 1024,
            max_stdio_children: 32,
        }
    }
}

/// Downstream session rules (M4, P8.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A session unused this long ends.
    pub idle_timeout_secs: u64,
    /// A session ends this long after it began, used or not.
    pub absolute_timeout_secs: u64,
    /// Open sessions one client address may hold.
    pub max_per_client: usize,
    /// Open sessions in all.
    pub max_total: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 30 * 60,
            absolute_timeout_secs: 24 * 3600,
            max_per_client: 64,
            max_total: 10_000,
        }
    }
}

/// The admin listener: `/metrics` (Prometheus), `/healthz`, and session management
/// (`/sessions`: list, revoke one, revoke a principal's). Off unless configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// TCP address (loopback unless you mean otherwise). Session management on it needs `token`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// A Unix socket (created mode 0600): local access, no token needed.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The bearer token session management needs on `listen`.
    #[serde(default)]
    pub token: Option<SecretRef>,
}

/// The audit event stream (P5.1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// JSON-lines file the events are appended to; `-` writes them to stderr.
    pub path: PathBuf,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("warden-audit.jsonl"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Operational logs (`tracing`), written to stderr.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `warden_gateway=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// One MCP server behind Warden: a remote Streamable HTTP `url` or a stdio `command`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name, used in audit events, metrics and routing.
    pub name: String,
    /// Prefix put before this upstream's tool and prompt names when several upstreams share one
    /// endpoint (`<prefix>_<name>`). Resource URIs and templates are never prefixed: a URI or
    /// template two upstreams list is withheld like any colliding name. When every upstream has
    /// a prefix and none starts another's (`a` and `a_b` overlap), names route by prefix alone,
    /// without asking for lists. None: names pass unchanged.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Streamable HTTP endpoint, e.g. `http://127.0.0.1:3001/mcp`.
    #[serde(default)]
    pub url: Option<String>,
    /// Program and arguments of a stdio server.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Working directory of a stdio server.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Environment variables set for a stdio server.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables passed through from Warden's own environment; nothing else is (P10.2).
    #[serde(default = "default_env_passthrough")]
    pub env_passthrough: Vec<String>,
    /// Longest wait for an upstream's answer to one request.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Restart backoff of a stdio server that exited: first delay, doubled up to `max_backoff_ms`.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Speak HTTP/2: prior knowledge over `http://`, ALPN `h2` over `https://`; otherwise
    /// HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
    /// TLS to an `https://` upstream (P3.1). The certificate is always verified.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// Warden's own credential for this upstream (`[upstream.auth]`, P7). Default: none.
    #[serde(default)]
    pub auth: UpstreamAuth,
    /// Only clients presenting a DPoP-bound token with its proof (RFC 9449) reach this upstream.
    #[serde(default)]
    pub require_dpop: bool,
}

/// How Warden verifies an `https://` upstream. There is no switch to skip verification.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM file of the CA certificates trusted for this upstream, instead of the system's trust
    /// store (a private CA, or a self-signed server certificate to pin).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Oldest TLS version accepted: `"1.3"` (the default) or `"1.2"`.
    #[serde(default)]
    pub min_version: TlsVersion,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[default]
    #[serde(rename = "1.3")]
    Tls13,
}

fn default_env_passthrough() -> Vec<String> {
    ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "USER"]
        .map(String::from)
        .to_vec()
}
fn default_timeout_ms() -> u64 {
    120_000
}
fn default_initial_backoff_ms() -> u64 {
    250
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

impl UpstreamConfig {
    /// A stdio upstream from a command line (what `warden wrap -- CMD ARGS` builds).
    pub fn stdio(name: &str, command: Vec<String>) -> Self {
        Self {
            name: name.into(),
            prefix: None,
            url: None,
            command: Some(command),
            cwd: None,
            env: BTreeMap::new(),
            env_passthrough: default_env_passthrough(),
            timeout_ms: default_timeout_ms(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            http2: false,
            tls: None,
            auth: UpstreamAuth::None,
            require_dpop: false,
        }
    }
}

impl ServerConfig {
    /// The first-request deadline in force: `first_request_timeout_ms`, else `header_timeout_ms`.
    pub fn first_request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.first_request_timeout_ms
                .unwrap_or(self.header_timeout_ms),
        )
    }

    /// The Host allowlist in force: the configured one, or loopback names.
    pub fn effective_allowed_hosts(&self) -> Vec<String> {
        self.allowed_hosts.clone().unwrap_or_else(|| {
            ["localhost", "127.0.0.1", "[::1]"]
                .map(String::from)
                .to_vec()
        })
    }
}
