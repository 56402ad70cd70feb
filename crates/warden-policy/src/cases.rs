//! Policy test cases for `warden policy test` (#15 item 7): a request described in JSON, or a
//! file of them with the expected decisions, so teams unit-test their policies in their own CI.
//!
//! ```json
//! {"cases": [{
//!   "name": "analyst reads notes",
//!   "principal": {"iss": "https://as.example", "sub": "ann", "roles": ["analyst"], "mfa": false},
//!   "method": "tools/call", "target": "read_notes", "upstream": "notes",
//!   "labels": ["private_data"], "args": {"q": "x"},
//!   "flow": {"untrusted_input": ["fetch_page"], "private_data": []},
//!   "now": 1796418118, "client_ip": "10.0.0.7",
//!   "expect": "allow", "policies": ["analyst-read"]
//! }]}
//! ```
//! `principal: null` (or absent) is the unauthenticated local client. `expect` is `allow`,
//! `deny` or `ask`; `policies`, when given, must equal the determining ids.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use warden_guard::Principal;

use crate::call::Call;
use crate::engine::{Decision, Effect, Engine};
use crate::flow::{FlowView, WELL_KNOWN};

/// The principal of a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Who {
    iss: String,
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    mfa: bool,
    #[serde(default)]
    acr: Option<String>,
    #[serde(default)]
    claims: serde_json::Map<String, Value>,
}

/// The flow of a case: which tools tainted it, and call counts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    #[serde(default)]
    untrusted_input: Vec<String>,
    #[serde(default)]
    private_data: Vec<String>,
    /// Calls of the target tool in the last minute, hour, day.
    #[serde(default)]
    tool_calls: [u32; 3],
    /// Per label: calls in the last minute, hour, day.
    #[serde(default)]
    label_calls: std::collections::BTreeMap<String, [u32; 3]>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A name for the report.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    principal: Option<Who>,
    method: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    client_ip: Option<std::net::IpAddr>,
    #[serde(default)]
    now: u64,
    #[serde(default)]
    utc_offset_minutes: i32,
    #[serde(default)]
    flow: Option<Flow>,
    /// `allow`, `deny` or `ask`.
    #[serde(default)]
    pub expect: Option<String>,
    /// The determining ids expected.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
}

/// One case's outcome.
#[derive(Debug)]
pub struct Outcome {
    /// The case's name (or its position).
    pub name: String,
    /// The decision.
    pub decision: Decision,
    /// `None`: as expected (or nothing expected); else what differed.
    pub failure: Option<String>,
}

/// Parse a case file: `{"cases": [...]}`, a list of cases, or one case.
pub fn parse(text: &str) -> Result<Vec<Case>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = match v {
        Value::Object(mut m) if m.contains_key("cases") => m.remove("cases").unwrap_or_default(),
        Value::Array(_) => v,
        one => Value::Array(vec![one]),
    };
    serde_json::from_value(list).map_err(|e| format!("not a list of cases: {e}"))
}

fn effect_name(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::Ask => "ask",
    }
}

/// Run `case` against `engine`.
pub fn run(engine: &Engine, case: &Case, index: usize) -> Outcome {
    let principal = case.principal.as_ref().map(|w| {
        let mut p = Principal::new(w.iss.clone(), w.sub.clone());
        p.roles.clone_from(&w.roles);
        p.groups.clone_from(&w.groups);
        p.scopes.clone_from(&w.scopes);
        p.tenant.clone_from(&w.tenant);
        p.strength.acr.clone_from(&w.acr);
        if w.mfa {
            p.strength.amr = vec!["mfa".into()];
        }
        p.claims.clone_from(&w.claims);
        p
    });
    let view = case.flow.as_ref().map(|f| {
        let mut labels: Vec<(Arc<str>, [u32; 3])> =
            WELL_KNOWN.iter().map(|l| (Arc::from(*l), [0; 3])).collect();
        for (l, c) in &f.label_calls {
            match labels.iter_mut().find(|(x, _)| &**x == l) {
                Some(slot) => slot.1 = *c,
                None => labels.push((l.as_str().into(), *c)),
            }
        }
        FlowView {
            untrusted_by: f
                .untrusted_input
                .iter()
                .map(|t| Arc::from(t.as_str()))
                .collect(),
            private_by: f
                .private_data
                .iter()
                .map(|t| Arc::from(t.as_str()))
                .collect(),
            tool: f.tool_calls,
            labels,
        }
    });
    let decision = engine.decide_call(&Call {
        principal: principal.as_ref(),
        method: &case.method,
        target: case.target.as_deref(),
        upstream: case.upstream.as_deref(),
        labels: case.labels.clone(),
        args: case.args.as_ref(),
        transport: case.transport.as_deref().unwrap_or("http"),
        client_ip: case.client_ip,
        now: case.now,
        utc_offset_minutes: case.utc_offset_minutes,
        flow: view.as_ref(),
        ..Call::default()
    });
    let mut failure = None;
    if let Some(want) = &case.expect
        && want != effect_name(decision.effect)
    {
        failure = Some(format!(
            "expected {want}, got {}",
            effect_name(decision.effect)
        ));
    }
    // Decisions name their policies sorted by id; the expectation may list them in any order.
    if failure.is_none()
        && let Some(ids) = &case.policies
        && sorted(ids) != decision.policies
    {
        failure = Some(format!(
            "expected policies {ids:?}, got {:?}",
            decision.policies
        ));
    }
    Outcome {
        name: case
            .name
            .clone()
            .unwrap_or_else(|| format!("case {}", index + 1)),
        decision,
        failure,
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// The decision as one JSON line.
pub fn report(o: &Outcome) -> Value {
    serde_json::json!({
        "name": o.name,
        "decision": effect_name(o.decision.effect),
        "policies": o.decision.policies,
        "flagged": o.decision.flagged,
        "reason": o.decision.reason,
        "errors": o.decision.errors,
        "ok": o.failure.is_none(),
        "failure": o.failure,
    })
}
