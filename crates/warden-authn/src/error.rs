//! [`AuthError`]: why a credential was not accepted, with the stable reason code, the HTTP status
//! and the OAuth error code (RFC 6750 §3.1) the gateway answers with.

/// Why a request's credential was refused. Each variant has a stable [`AuthError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (RFC 6750 §3.1: no `error` code in the challenge).
    #[error("no access token")]
    Missing,
    /// The header is not `Bearer <token>` / `DPoP <token>`, holds several credentials, or is too long.
    #[error("malformed Authorization header: {0}")]
    MalformedHeader(&'static str),
    /// The token is not a well-formed compact JWS.
    #[error("malformed token")]
    MalformedToken,
    /// The header's `alg` is not allowed (includes `none` and every HMAC algorithm).
    #[error("algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    /// No key of the issuer's set matches the token's `kid` and algorithm.
    #[error("no verification key for this token")]
    UnknownKey,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `typ` is not `at+jwt` where that is required (RFC 9068 §2.1).
    #[error("token type is not at+jwt")]
    WrongType,
    /// A required claim is missing or has the wrong type.
    #[error("claim {0} is missing or malformed")]
    MissingClaim(&'static str),
    /// `iss` is not the configured issuer.
    #[error("token issued by another issuer")]
    WrongIssuer,
    /// `aud` does not contain Warden's resource URI (RFC 8707).
    #[error("token not issued for this resource")]
    WrongAudience,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` (or `iat`) is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp - iat` exceeds the configured maximum lifetime (P2.3).
    #[error("token lifetime {0}s exceeds the maximum")]
    LifetimeTooLong(u64),
    /// Introspection said the token is not active (revoked, expired or unknown).
    #[error("token is not active")]
    Inactive,
    /// A token bound to a DPoP key (`cnf.jkt`) was presented as a plain Bearer token, or a DPoP
    /// proof is missing or does not match (RFC 9449 §7.1).
    #[error("token is bound to a proof-of-possession key")]
    PopRequired,
    /// A DPoP proof is missing, malformed, or does not bind this request (RFC 9449 §4.3).
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(&'static str),
    /// The token is valid but lacks scopes the method or tool requires (403).
    #[error("insufficient scope")]
    InsufficientScope {
        /// Every scope the call needs, space-separated order kept.
        needed: Vec<String>,
    },
    /// The token is valid but its authentication is too weak for the tool (403, step-up).
    #[error("stronger authentication required")]
    StepUp {
        /// The scopes the call needs (repeated in the challenge).
        needed: Vec<String>,
        /// `mfa` required.
        mfa: bool,
        /// Minimum `acr` required.
        acr: Option<String>,
    },
}

impl AuthError {
    /// Stable machine-readable reason code (audit `reason`, `error.data.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::MalformedHeader(_) => "authorization_malformed",
            Self::MalformedToken => "token_malformed",
            Self::AlgorithmNotAllowed(_) => "token_algorithm_not_allowed",
            Self::UnknownKey => "token_unknown_key",
            Self::BadSignature => "token_bad_signature",
            Self::WrongType => "token_wrong_type",
            Self::MissingClaim(_) => "token_claim_missing",
            Self::WrongIssuer => "token_wrong_issuer",
            Self::WrongAudience => "token_wrong_audience",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::LifetimeTooLong(_) => "token_lifetime_too_long",
            Self::Inactive => "token_inactive",
            Self::PopRequired => "token_dpop_bound",
            Self::InvalidDpopProof(_) => "dpop_proof_invalid",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::StepUp { .. } => "step_up_required",
        }
    }

    /// HTTP status: 401 for a missing or invalid token, 400 for a malformed request, 403 for a
    /// valid token that is not enough (RFC 6750 §3.1).
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedHeader(_) => 400,
            Self::InsufficientScope { .. } | Self::StepUp { .. } => 403,
            _ => 401,
        }
    }

    /// The OAuth `error` code for the `WWW-Authenticate` challenge, if one applies.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::MalformedHeader(_) => Some("invalid_request"),
            Self::InsufficientScope { .. } | Self::StepUp { .. } => Some("insufficient_scope"),
            Self::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            _ => Some("invalid_token"),
        }
    }

    /// The REQUIREMENTS.md control the refusal enforces.
    pub fn control(&self) -> &'static str {
        match self {
            Self::Missing | Self::MalformedHeader(_) => "M2",
            Self::LifetimeTooLong(_) => "P2.3",
            Self::InsufficientScope { .. } => "P2.2",
            Self::StepUp { .. } => "P2.4",
            Self::PopRequired | Self::InvalidDpopProof(_) => "P7.4",
            _ => "M1",
        }
    }

    /// What the caller can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Missing => "send an access token for this resource in the Authorization header",
            Self::MalformedHeader(_) => "send exactly one `Authorization: Bearer <token>` header",
            Self::Expired | Self::LifetimeTooLong(_) | Self::NotYetValid => {
                "obtain a fresh access token from the authorization server"
            }
            Self::WrongAudience => {
                "request a token with `resource` set to this server's URI (RFC 8707)"
            }
            Self::InsufficientScope { .. } => "request a token with the scopes in the challenge",
            Self::StepUp { .. } => "authenticate again with multi-factor authentication",
            Self::PopRequired => {
                "present this DPoP-bound token with `Authorization: DPoP` and a DPoP proof"
            }
            Self::InvalidDpopProof(_) => {
                "send a fresh DPoP proof (htm, htu = this resource, iat now, a new jti, ath) signed by the token's key"
            }
            _ => "obtain a new access token from the authorization server this resource names",
        }
    }
}
