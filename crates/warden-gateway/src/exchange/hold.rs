//! A hold on a call in flight ([`crate::in_flight`]): the exchange takes one when it starts
//! and the relay that finishes the call takes another, so a call whose work is dropped before
//! its final audit event (client gone, connection cut at shutdown) is audited as
//! `mcp.interrupted` with its reason, once.

use std::sync::Arc;

use warden_guard::Ctx;

use crate::gateway::Gateway;

/// A hold on one call; letting go of the last one audits an unfinished call.
pub struct Hold {
    gw: Option<Arc<Gateway>>,
    id: u64,
}

impl Hold {
    /// Register the call of `ctx` and hold it.
    pub fn begin(gw: &Arc<Gateway>, ctx: &Ctx) -> Self {
        gw.in_flight.begin(ctx);
        Self {
            gw: Some(gw.clone()),
            id: ctx.request_id.0,
        }
    }

    /// Hold the call of `ctx` too, if it is registered (a relay finishing it).
    pub fn join(gw: &Arc<Gateway>, ctx: &Ctx) -> Self {
        let id = ctx.request_id.0;
        Self {
            gw: gw.in_flight.hold(id).then(|| gw.clone()),
            id,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(gw) = self.gw.take()
            && let Some(ctx) = gw.in_flight.release(self.id)
        {
            gw.audit_interrupted(&ctx, gw.in_flight.reason());
        }
    }
}
