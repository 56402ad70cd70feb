//! Downstream transports: Streamable HTTP for remote clients ([`http`]) and the stdio wrapper for
//! desktop clients ([`stdio`]). Both put every message through the same [`crate::pipeline`].

pub mod body;
pub mod event_log;
pub mod http;
pub mod http_session;
pub mod respond;
pub mod stdio;
pub mod streams;
pub mod workers;
