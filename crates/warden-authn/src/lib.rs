//! # warden-authn
//!
//! Owns the decisions of Warden's OAuth 2.1 resource server, as pure functions over bytes and
//! the clock value they are given:
//!
//! - [`bearer`]: the `Authorization` header → a [`Credential`] (Bearer or DPoP scheme, size
//!   limit; tokens in query strings or bodies are never read — M1, P2.1);
//! - [`keys`]: a JWKS document → a [`KeySet`] of public verification keys (size and count
//!   limits; symmetric `oct` keys and encryption keys are never accepted — M1);
//! - [`verify`]: a compact JWT → a verified [`warden_guard::Principal`]: signature by an
//!   allow-listed asymmetric algorithm (never `none`, never HMAC), `iss`, `aud` equal to
//!   Warden's canonical resource URI (RFC 8707), `exp`/`nbf` with leeway, a maximum lifetime,
//!   optional `typ: at+jwt` (M1, P2.3);
//! - [`claims`]: which claims become the principal's scopes, roles, groups and tenant (Entra ID
//!   v2 `scp`/`roles`/`tid` included — P7.3);
//! - [`dpop`]: RFC 9449 proofs for DPoP-bound tokens, with replay protection (P7.4);
//! - [`introspect`]: RFC 7662 answers for opaque tokens, held to the same audience, issuer and
//!   time rules (M1);
//! - [`cache`]: verified tokens keyed by their SHA-256 until they expire, so a session's later
//!   requests skip the signature check but never the expiry check (M2);
//! - [`require`]: per-method and per-tool scope and authentication-strength requirements →
//!   `insufficient_scope` naming every scope needed (step-up, P2.4);
//! - [`challenge`]: the `WWW-Authenticate` values (RFC 6750 §3, RFC 9728 §5.1) and the
//!   protected-resource metadata document (RFC 9728 §2).
//!
//! It must not do I/O: no sockets, no files, no clock reads of its own for decisions it returns
//! (the caller passes `now`), no logging of tokens. Fetching discovery documents and JWKS,
//! introspection and upstream credentials belong to the gateway, which hands the bytes here.
//! Every error is an [`AuthError`] with a stable reason code; a caller that cannot decide
//! refuses (fail closed).

pub mod bearer;
pub mod cache;
pub mod challenge;
pub mod claims;
pub mod dpop;
pub mod error;
pub mod introspect;
pub mod keys;
pub mod require;
pub mod verify;

pub use bearer::{Credential, Scheme};
pub use cache::TokenCache;
pub use claims::ClaimMap;
pub use error::AuthError;
/// The signature algorithms, as `jsonwebtoken` names them (`"RS256".parse()`).
pub use jsonwebtoken::Algorithm;
pub use keys::KeySet;
pub use require::Requirement;
pub use verify::{Verified, Verifier, VerifierConfig};
