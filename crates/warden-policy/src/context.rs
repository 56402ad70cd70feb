//! The request context a policy sees (P2.2, P6.4, P9.1):
//!
//! | attribute | type | what |
//! |---|---|---|
//! | `context.args` | record | the call's arguments ([`crate::value`]: no entity forgery) |
//! | `context.transport` | string | `http` or `stdio` |
//! | `context.local` | bool | the client has no network address (stdio) |
//! | `context.client_ip` | `ipaddr` | the client's address (only when it has one) |
//! | `context.time` | record | `unix`, and `hour`, `minute`, `weekday` (0 = Monday) at the configured UTC offset |
//! | `context.flow` | record | `untrusted_input`, `private_data` (bools), `tainted_by` (set of tool names) |
//! | `context.calls` | record | `tool.{minute,hour,day}`: calls of this tool; `label.<label>.{minute,hour,day}` for every known label |
//!
//! Every attribute above is always present except `client_ip`, so policies need no `has` but
//! for it and for `args` members.

use std::net::IpAddr;

use cedar_policy::{Context, RestrictedExpression};
use serde_json::Value;

use crate::flow::{Counts, FlowView};
use crate::value::to_cedar;

/// The facts of one call besides who and what.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The call's arguments.
    pub args: Option<&'a Value>,
    /// `http` or `stdio`.
    pub transport: &'a str,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// Now, in unix seconds.
    pub now: u64,
    /// Minutes east of UTC for `context.time` (no daylight saving: a fixed offset).
    pub utc_offset_minutes: i32,
    /// The flow, when flow control is on (else every taint false and every count 0).
    pub flow: Option<&'a FlowView>,
}

fn counts(c: Counts) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record([
        (
            "minute".to_owned(),
            RestrictedExpression::new_long(c[0].into()),
        ),
        (
            "hour".to_owned(),
            RestrictedExpression::new_long(c[1].into()),
        ),
        (
            "day".to_owned(),
            RestrictedExpression::new_long(c[2].into()),
        ),
    ])
    .map_err(|e| e.to_string())
}

fn record(
    pairs: impl IntoIterator<Item = (String, RestrictedExpression)>,
) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record(pairs).map_err(|e| e.to_string())
}

/// `(hour, minute, weekday)` of unix time `now` at `offset` minutes east of UTC.
pub fn clock(now: u64, offset: i32) -> (i64, i64, i64) {
    let t = now as i64 + i64::from(offset) * 60;
    let mins = t.div_euclid(60);
    let days = t.div_euclid(86_400);
    // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
    (
        (mins / 60).rem_euclid(24),
        mins.rem_euclid(60),
        (days + 3).rem_euclid(7),
    )
}

/// Which parts of the context a policy set reads (the others are not built: an attribute no
/// policy reads costs nothing; one a policy reads is always there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// `context.time`.
    pub time: bool,
    /// `context.flow`.
    pub flow: bool,
    /// `context.calls`.
    pub calls: bool,
}

impl Needs {
    /// Everything.
    pub const ALL: Self = Self {
        time: true,
        flow: true,
        calls: true,
    };
    /// What policy texts `texts` may read: a conservative scan (a word that merely looks like
    /// a reference only adds attributes).
    pub fn of<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut n = Self {
            time: false,
            flow: false,
            calls: false,
        };
        for t in texts {
            n.time |= t.contains("time");
            n.flow |= t.contains("flow");
            n.calls |= t.contains("calls");
        }
        n
    }
}

/// The Cedar context for `facts`; `labels` are the known labels (zero counts without a flow).
pub fn build(facts: &Facts<'_>, labels: &[std::sync::Arc<str>]) -> Result<Context, String> {
    build_some(facts, labels, Needs::ALL)
}

/// The parts of the context `needs` names (and always `args`, `transport`, `local`,
/// `client_ip`).
pub fn build_some(
    facts: &Facts<'_>,
    labels: &[std::sync::Arc<str>],
    needs: Needs,
) -> Result<Context, String> {
    let args = match facts.args {
        Some(a) => to_cedar(a).map_err(|e| e.to_string())?,
        None => None,
    };
    let args = match args {
        Some(a) => a,
        None => record([])?,
    };
    let mut pairs = vec![
        ("args".to_owned(), args),
        (
            "transport".to_owned(),
            RestrictedExpression::new_string(facts.transport.to_owned()),
        ),
        (
            "local".to_owned(),
            RestrictedExpression::new_bool(facts.client_ip.is_none()),
        ),
    ];
    if let Some(ip) = facts.client_ip {
        pairs.push((
            "client_ip".to_owned(),
            RestrictedExpression::new_ip(ip.to_string()),
        ));
    }
    if needs.time {
        let (hour, minute, weekday) = clock(facts.now, facts.utc_offset_minutes);
        pairs.push((
            "time".to_owned(),
            record([
                (
                    "unix".to_owned(),
                    RestrictedExpression::new_long(facts.now as i64),
                ),
                ("hour".to_owned(), RestrictedExpression::new_long(hour)),
                ("minute".to_owned(), RestrictedExpression::new_long(minute)),
                (
                    "weekday".to_owned(),
                    RestrictedExpression::new_long(weekday),
                ),
            ])?,
        ));
    }
    let empty = FlowView::default();
    let f = facts.flow.unwrap_or(&empty);
    if needs.flow {
        let tainted = f.tainted_by();
        pairs.push((
            "flow".to_owned(),
            record([
                (
                    "untrusted_input".to_owned(),
                    RestrictedExpression::new_bool(!f.untrusted_by.is_empty()),
                ),
                (
                    "private_data".to_owned(),
                    RestrictedExpression::new_bool(!f.private_by.is_empty()),
                ),
                (
                    "tainted_by".to_owned(),
                    RestrictedExpression::new_set(
                        tainted
                            .iter()
                            .map(|t| RestrictedExpression::new_string(t.to_string())),
                    ),
                ),
            ])?,
        ));
    }
    if needs.calls {
        let mut per_label = Vec::with_capacity(labels.len());
        for l in labels {
            let c = f
                .labels
                .iter()
                .find(|(x, _)| x == l)
                .map_or([0; 3], |(_, c)| *c);
            per_label.push((l.to_string(), counts(c)?));
        }
        pairs.push((
            "calls".to_owned(),
            record([
                ("tool".to_owned(), counts(f.tool)?),
                ("label".to_owned(), record(per_label)?),
            ])?,
        ));
    }
    Context::from_pairs(pairs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_at_offsets() {
        // 2026-12-04 21:01:58 UTC, a Friday.
        let t = 1_796_418_118;
        assert_eq!(clock(t, 0), (21, 1, 4));
        assert_eq!(clock(t, 60), (22, 1, 4));
        assert_eq!(clock(t, 180), (0, 1, 5), "past midnight: Saturday");
        assert_eq!(clock(t, -22 * 60), (23, 1, 3));
    }
}
