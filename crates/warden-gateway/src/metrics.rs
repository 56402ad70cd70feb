//! Prometheus metrics (P5.2) served on the admin listener: requests by method and decision,
//! latency histograms, refusals by reason, open sessions, upstream health. Label values come
//! from closed sets (known MCP methods, configured upstream names, reason codes), never from
//! client input, so cardinality stays bounded.

use std::sync::OnceLock;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use warden_audit::Decision;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<MethodLabel, Histogram>,
    pub refusals: Family<ReasonLabel, Counter>,
    pub sessions_open: Gauge<i64, AtomicI64>,
    pub upstream_up: Family<UpstreamLabel, Gauge<i64, AtomicI64>>,
    pub upstream_restarts: Family<UpstreamLabel, Counter>,
    /// `requests` and `latency` handles by (method, decision), resolved on first use: the request
    /// path records without hashing labels or taking the family lock.
    hot: Box<[HotHandles]>,
}

/// The `decision` label of each [`Decision`].
fn decision_index(d: Decision) -> (usize, &'static str) {
    match d {
        Decision::Allow => (0, "allow"),
        Decision::Deny => (1, "deny"),
        Decision::Error => (2, "error"),
        Decision::Info => (3, "info"),
    }
}

#[derive(Default)]
struct HotHandles {
    requests: [OnceLock<Counter>; 4],
    latency: OnceLock<Histogram>,
}

/// MCP methods with their own label value; anything else is `other`.
const METHODS: [&str; 24] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/result",
];

/// The method name as context and audit keep it: static for the methods Warden knows, others
/// cut to the audit's field bound (a client's 60 KB method is not copied into every event).
pub fn method_name(method: &str) -> std::borrow::Cow<'static, str> {
    match METHODS.iter().find(|k| **k == method) {
        Some(k) => std::borrow::Cow::Borrowed(k),
        None => std::borrow::Cow::Owned(
            warden_audit::bounded(method, warden_audit::MAX_FIELD).into_owned(),
        ),
    }
}

/// The label value for a method name.
pub fn method_label(method: Option<&str>) -> &'static str {
    LABELS[method_index(method)]
}

/// Every method label: the known methods, then `other`, then `response`.
const LABELS: [&str; METHODS.len() + 2] = {
    let mut all = ["other"; METHODS.len() + 2];
    let mut i = 0;
    while i < METHODS.len() {
        all[i] = METHODS[i];
        i += 1;
    }
    all[METHODS.len() + 1] = "response";
    all
};

fn method_index(method: Option<&str>) -> usize {
    match method {
        None => METHODS.len() + 1,
        Some(m) => METHODS
            .iter()
            .position(|k| *k == m)
            .unwrap_or(METHODS.len()),
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<MethodLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0, 30.0,
            ])
        });
        let refusals = Family::<ReasonLabel, Counter>::default();
        let sessions_open = Gauge::<i64, AtomicI64>::default();
        let upstream_up = Family::<UpstreamLabel, Gauge<i64, AtomicI64>>::default();
        let upstream_restarts = Family::<UpstreamLabel, Counter>::default();
        registry.register(
            "requests",
            "MCP messages handled, by method and decision",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to final answer",
            latency.clone(),
        );
        registry.register("refusals", "Refusals by reason code", refusals.clone());
        registry.register(
            "sessions_open",
            "Open downstream sessions",
            sessions_open.clone(),
        );
        registry.register(
            "upstream_up",
            "1 when the last exchange with the upstream succeeded",
            upstream_up.clone(),
        );
        registry.register(
            "upstream_exits",
            "Upstream process exits",
            upstream_restarts.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            refusals,
            sessions_open,
            upstream_up,
            upstream_restarts,
            hot: (0..LABELS.len()).map(|_| HotHandles::default()).collect(),
        }
    }

    /// Count one message by method and decision and, when `latency` is given, observe it.
    pub fn record(&self, method: Option<&str>, decision: Decision, latency: Option<f64>) {
        let i = method_index(method);
        let (decision, decision_label) = decision_index(decision);
        let Some(hot) = self.hot.get(i) else {
            return;
        };
        let method = LABELS[i];
        hot.requests[decision]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        method,
                        decision: decision_label,
                    })
                    .clone()
            })
            .inc();
        if let Some(secs) = latency {
            hot.latency
                .get_or_init(|| self.latency.get_or_create(&MethodLabel { method }).clone())
                .observe(secs);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_bounded_labels() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                method: method_label(Some("tools/call")),
                decision: "allow",
            })
            .inc();
        m.requests
            .get_or_create(&RequestLabels {
                method: method_label(Some("evil/\"injected")),
                decision: "deny",
            })
            .inc();
        m.record(Some("tools/call"), Decision::Allow, Some(0.001));
        m.record(None, Decision::Deny, None);
        let text = m.render();
        assert!(
            text.contains(r#"warden_requests_total{method="tools/call",decision="allow"} 2"#),
            "the hot handles count into the same series: {text}"
        );
        assert!(text.contains(r#"warden_requests_total{method="response",decision="deny"} 1"#));
        assert!(text.contains(r#"warden_request_duration_seconds_count{method="tools/call"} 1"#));
        assert!(
            !text.contains(r#"decision="info""#),
            "series appear on first use only"
        );
        assert!(text.contains(r#"method="other""#));
        assert!(!text.contains("injected"));
    }
}
