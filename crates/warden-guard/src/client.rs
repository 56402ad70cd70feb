//! [`ClientChannel`]: how a guard asks the client something (e.g. `elicitation/create` for an
//! approval) and awaits the answer, through the client's own session or stream.
//!
//! The core gives the request an id of Warden's own; the client's answer to that id is handed to
//! the waiting guard and never reaches an upstream.

use std::time::Duration;

use crate::verdict::BoxFuture;

/// Why a request to the client got no result.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// This exchange cannot carry a server→client request (a stateless 2026-07-28 request, a
    /// client that does not accept an event stream, or a client without the capability).
    Unsupported,
    /// No answer within the timeout.
    Timeout,
    /// The client answered with a JSON-RPC error (its text).
    Refused(String),
    /// The client went away.
    Closed,
}

/// A way to send a server→client request to the client of this exchange.
pub trait ClientChannel: Send + Sync {
    /// Did the client declare this capability at `initialize` (e.g. `"elicitation"`)?
    fn has_capability(&self, name: &str) -> bool;
    /// Send `method` with `params` and await the client's `result` (JSON), at most `timeout`.
    fn request<'a>(
        &'a self,
        method: &'a str,
        params: serde_json::Value,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<serde_json::Value, ClientError>>;
}
