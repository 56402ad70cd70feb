//! [`UpstreamChannel`]: how a guard asks the routed upstream for a list of Warden's own (e.g. the
//! tool definitions whose `x-mcp-header` annotations it must know before it can check a call).
//!
//! The core sends the request with Warden's own identity (never the client's credentials), over
//! the upstream the exchange is routed to, and hands every item of the answer to the
//! `list_item` hook of every guard, as for a list a client asked for. The answer never reaches
//! the client.

use crate::list::ListKind;
use crate::verdict::BoxFuture;

/// What an own list of the routed upstream gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// Listed: this many items met the `list_item` hook.
    Items(usize),
    /// The upstream does not speak the exchange's protocol generation; the core refuses the
    /// exchange for that reason itself.
    Unsupported,
}

/// A way to list the routed upstream's tools (prompts, resources) as Warden.
pub trait UpstreamChannel: Send + Sync {
    /// List `kind`, every page (bounded); `Err` is why it could not (unreachable, timeout, an
    /// error answer, an invalid list): the caller must fail closed.
    fn list(&self, kind: ListKind) -> BoxFuture<'_, Result<Listed, String>>;
}
