//! [`Call`]: a one-off request described by plain values (tests, `warden policy test`), decided
//! without the gateway's shared entities.

use std::sync::Arc;

use serde_json::Value;
use warden_guard::Principal;

use crate::context::Facts;
use crate::engine::{Ask, Decision, Engine};
use crate::entities::{Hints, Target, TargetKind};
use crate::flow::FlowView;

/// What is asked.
#[derive(Default)]
pub struct Call<'a> {
    /// Who asks (`None`: an unauthenticated local client — `User::"local"`).
    pub principal: Option<&'a Principal>,
    /// The JSON-RPC method.
    pub method: &'a str,
    /// The tool, resource URI or prompt the method is about.
    pub target: Option<&'a str>,
    /// The upstream it goes to.
    pub upstream: Option<&'a str>,
    /// The target's labels.
    pub labels: Vec<String>,
    /// The target's annotations.
    pub hints: Hints,
    /// The call's arguments.
    pub args: Option<&'a Value>,
    /// `http` or `stdio`.
    pub transport: &'a str,
    /// The client's address.
    pub client_ip: Option<std::net::IpAddr>,
    /// Unix seconds.
    pub now: u64,
    /// Minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// The flow.
    pub flow: Option<&'a FlowView>,
}

impl Engine {
    /// Decide a one-off `call`.
    pub fn decide_call(&self, call: &Call<'_>) -> Decision {
        let target = match Target::new(
            TargetKind::of_method(call.method),
            call.target.unwrap_or(""),
            call.upstream.unwrap_or(""),
            call.labels.clone(),
            call.hints,
        ) {
            Ok(t) => Arc::new(t),
            Err(e) => return Decision::deny_error(e),
        };
        let principal = call.principal.map(|p| Arc::new(p.clone()));
        self.decide_once(&Ask {
            principal: principal.as_ref(),
            method: call.method,
            target: &target,
            facts: Facts {
                args: call.args,
                transport: if call.transport.is_empty() {
                    "http"
                } else {
                    call.transport
                },
                client_ip: call.client_ip,
                now: call.now,
                utc_offset_minutes: call.utc_offset_minutes,
                flow: call.flow,
            },
        })
    }
}
