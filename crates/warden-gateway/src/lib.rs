//! # warden-gateway
//!
//! Owns the relay: the [`pipeline`] of guards (the order is written in `pipeline.rs`), the
//! [`guard`] interface every control implements, the downstream transports (Streamable HTTP in
//! [`downstream::http`], the stdio wrapper in [`downstream::stdio`]), the upstream transports
//! ([`upstream`]), sessions ([`session`]), routing across upstreams ([`router`], [`aggregate`]),
//! the audit glue and [`metrics`].
//!
//! It must not decide policy itself: every allow/deny decision is a guard's, and each guard's
//! logic lives in its own module (or decision crate). It must not re-serialise a message it did
//! not change: the bytes a client or server sent are the bytes forwarded.

pub mod admin;
pub mod aggregate;
pub mod downstream;
pub mod gateway;
pub mod guard;
pub mod guards;
pub mod metrics;
pub mod pipeline;
pub mod router;
pub mod session;
pub mod upstream;

pub use gateway::Gateway;
