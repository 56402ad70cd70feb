//! `[upstream.auth]`: the credential Warden presents to one upstream — its own, never the
//! client's (P7.1–P7.4). The client's `Authorization` and cookies never go upstream whatever
//! is configured here.

use serde::Deserialize;

use crate::auth::SecretRef;

/// How Warden authenticates to an upstream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpstreamAuth {
    /// No credential.
    #[default]
    None,
    /// A fixed header from a secret reference, e.g. `Authorization: Bearer <key>`.
    Static {
        /// Header name (default `authorization`).
        #[serde(default = "default_header")]
        header: String,
        /// Text put before the secret (default `Bearer `; `""` for a bare API key).
        #[serde(default = "default_prefix")]
        prefix: String,
        /// The secret.
        value: SecretRef,
    },
    /// OAuth client credentials grant: a token for Warden itself, shared by every user.
    ClientCredentials {
        /// The authorization server's token endpoint.
        token_endpoint: String,
        /// Warden's client id there.
        client_id: String,
        /// Its secret.
        client_secret: SecretRef,
        /// Scopes asked for.
        #[serde(default)]
        scope: Option<String>,
        /// RFC 8707 resource (the upstream's URI).
        #[serde(default)]
        resource: Option<String>,
    },
    /// RFC 8693 token exchange: the client's verified token is exchanged for one whose audience
    /// is the upstream, so the upstream sees this user, not a shared key.
    TokenExchange {
        /// The authorization server's token endpoint.
        token_endpoint: String,
        /// Warden's client id there.
        client_id: String,
        /// Its secret.
        client_secret: SecretRef,
        /// The upstream's identifier (`audience`).
        audience: String,
        /// RFC 8707 resource, when the server wants one.
        #[serde(default)]
        resource: Option<String>,
        /// Scopes asked for.
        #[serde(default)]
        scope: Option<String>,
    },
}

impl UpstreamAuth {
    /// The kind, as the configuration spells it (audit, metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Static { .. } => "static",
            Self::ClientCredentials { .. } => "client_credentials",
            Self::TokenExchange { .. } => "token_exchange",
        }
    }
}

fn default_header() -> String {
    "authorization".into()
}
fn default_prefix() -> String {
    "Bearer ".into()
}
