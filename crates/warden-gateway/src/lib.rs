//! # warden-gateway
//!
//! Owns the I/O around the guards: the [`exchange`] core (the one path every message takes:
//! route, guards, forward, relay), the front ends that read and write the client's wire
//! ([`downstream::http`] for `warden serve`, [`downstream::stdio`] for `warden wrap`), the
//! upstream transports ([`upstream`]), sessions ([`session`]), the [`pipeline`] that orders the
//! guards, the guards that belong to the transport ([`guards`]), the I/O of the identity guards
//! ([`identity`]: issuer discovery, JWKS and introspection fetches, Warden's own upstream
//! credentials — their decisions are `warden-authn`'s), metrics and the admin listener
//! (session listing and revocation).
//!
//! It must not decide policy itself: every allow/deny decision is a guard's, written against the
//! I/O-free interface of `warden-guard`, with its logic in its own module or decision crate. It
//! must not re-serialise a message it did not change: the bytes a client or server sent are the
//! bytes forwarded.

pub mod admin;
pub mod catalog;
pub mod downstream;
pub mod event_ids;
pub mod event_log;
pub mod exchange;
pub mod gateway;
pub mod guards;
pub mod identity;
pub mod in_flight;
pub mod metrics;
pub mod pipeline;
pub mod session;
pub mod shard;
pub mod standalone;
pub mod stop;
pub mod tag;
pub mod upstream;
pub mod waiters;

pub use gateway::Gateway;
pub use warden_guard as guard;
