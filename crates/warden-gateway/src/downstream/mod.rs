//! The front ends: Streamable HTTP for remote clients ([`http`]) and the stdio wrapper for
//! desktop clients ([`stdio`]). They read and write their wire and hand every message to the
//! [`crate::exchange`] core; they make no routing or guard decisions of their own.

pub mod body;
pub mod deadline;
mod gate;
pub mod http;
pub mod respond;
pub mod stdio;
pub mod workers;
