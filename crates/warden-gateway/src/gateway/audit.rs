//! How the end of a call is recorded: the audit event, the metrics, the guards' `done` and the
//! in-flight table (P5.1: every call gets exactly one final event — done, refused or
//! interrupted). No I/O beyond handing events to the audit sink.

use warden_audit::{AuditEvent, Decision};
use warden_guard::{Ctx, Outcome, Refusal};

use super::{Gateway, truncate};

impl Gateway {
    /// Record a refusal that ends the call: audit event, metrics, the guards' `done`.
    pub fn audit_refusal(&self, ctx: &Ctx, r: &Refusal, id: Option<&serde_json::value::RawValue>) {
        self.in_flight.end(ctx.request_id.0);
        self.metrics
            .record(ctx.method.as_deref(), Decision::Deny, None);
        self.pipeline.done(
            ctx,
            &Outcome {
                decision: Decision::Deny,
                status: Some(r.status),
                reason: Some(r.reason),
            },
        );
        self.audit_part_refusal(ctx, r, id);
    }

    /// Record the refusal of one part of a call that goes on (a server message dropped from a
    /// stream, one upstream's part of a fanned-out answer): audit event and refusal counter.
    pub fn audit_part_refusal(
        &self,
        ctx: &Ctx,
        r: &Refusal,
        id: Option<&serde_json::value::RawValue>,
    ) {
        self.metrics
            .refusals
            .get_or_create(&crate::metrics::ReasonLabel { reason: r.reason })
            .inc();
        let mut ev = ctx.event("mcp.refusal", Decision::Deny);
        ev.reason = Some(r.reason.into());
        ev.control = Some(r.control);
        ev.hint = Some(r.hint.to_string());
        ev.status = Some(r.status);
        ev.rpc_code = Some(r.rpc_code);
        ev.jsonrpc_id = id.map(|i| truncate(i.get(), 64));
        self.audit.emit(ev);
    }

    /// An audit event prefilled from the context.
    pub fn event(&self, ctx: &Ctx, kind: &'static str, decision: Decision) -> AuditEvent {
        ctx.event(kind, decision)
    }

    /// A call cut off before its final audit event (`reason`: `shutdown` or `abandoned`):
    /// `mcp.interrupted`, metrics, and the guards' `done` so they release what they hold.
    pub fn audit_interrupted(&self, ctx: &Ctx, reason: &'static str) {
        self.metrics
            .record(ctx.method.as_deref(), Decision::Error, None);
        self.pipeline.done(
            ctx,
            &Outcome {
                decision: Decision::Error,
                status: None,
                reason: Some(reason),
            },
        );
        let mut ev = ctx.event("mcp.interrupted", Decision::Error);
        ev.reason = Some(reason.into());
        ev.control = Some("P5.1");
        ev.hint = Some(match reason {
            "shutdown" => {
                "Warden stopped before the call finished (past the shutdown grace period)".into()
            }
            _ => "the call ended before its answer: the client went away or its connection was cut"
                .into(),
        });
        self.audit.emit(ev);
    }

    /// Record a completed exchange.
    pub fn audit_done(
        &self,
        ctx: &Ctx,
        decision: Decision,
        status: Option<u16>,
        reason: Option<&'static str>,
    ) {
        self.in_flight.end(ctx.request_id.0);
        self.metrics.record(
            ctx.method.as_deref(),
            decision,
            Some(ctx.started.elapsed().as_secs_f64()),
        );
        self.pipeline.done(
            ctx,
            &Outcome {
                decision,
                status,
                reason,
            },
        );
        let mut ev = ctx.event("mcp.request", decision);
        ev.status = status;
        ev.reason = reason.map(Into::into);
        self.audit.emit(ev);
    }
}
