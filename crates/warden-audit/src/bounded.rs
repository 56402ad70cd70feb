//! Bounds on what one audit event writes (#13 item 15): the serializers [`crate::AuditEvent`]'s
//! fields are written with. Text is cut on a character boundary and marked `…`; guard facts are
//! bounded in string length, container size and depth. They must not change a value that fits.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

/// Most bytes of a text field in a written event (method, tool, client, subject, upstream,
/// session, JSON-RPC id, reason).
pub const MAX_FIELD: usize = 256;
/// Most bytes of the hint in a written event.
pub const MAX_HINT: usize = 1024;
/// Most bytes of one string in the facts of a written event.
pub const MAX_FACT_TEXT: usize = 256;
/// Most members of one object or array in the facts of a written event (the rest is counted).
pub const MAX_FACT_ITEMS: usize = 32;
/// Deepest nesting of the facts of a written event.
pub const MAX_FACT_DEPTH: usize = 4;

/// `s` cut to at most `max` bytes on a character boundary, marked `…` when cut.
pub fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

pub(crate) fn text<S: serde::Serializer, T: AsRef<str>>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.serialize_str(&bounded(t.as_ref(), MAX_FIELD)),
        None => s.serialize_none(),
    }
}

pub(crate) fn hint_text<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.serialize_str(&bounded(t, MAX_HINT)),
        None => s.serialize_none(),
    }
}

/// A facts value as written: strings, containers and depth bounded.
struct BoundedValue<'a>(&'a serde_json::Value, usize);

impl Serialize for BoundedValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        use serde_json::Value;
        let BoundedValue(v, depth) = *self;
        match v {
            Value::String(t) => s.serialize_str(&bounded(t, MAX_FACT_TEXT)),
            Value::Array(_) | Value::Object(_) if depth >= MAX_FACT_DEPTH => s.serialize_str("…"),
            Value::Array(items) => {
                let n = items.len().min(MAX_FACT_ITEMS);
                let more = items.len() > n;
                let mut seq = s.serialize_seq(Some(n + usize::from(more)))?;
                for i in &items[..n] {
                    seq.serialize_element(&BoundedValue(i, depth + 1))?;
                }
                if more {
                    seq.serialize_element(&format!("… {} more", items.len() - n))?;
                }
                seq.end()
            }
            Value::Object(members) => {
                let n = members.len().min(MAX_FACT_ITEMS);
                let more = members.len() > n;
                let mut map = s.serialize_map(Some(n + usize::from(more)))?;
                for (k, m) in members.iter().take(n) {
                    map.serialize_entry(&bounded(k, MAX_FACT_TEXT), &BoundedValue(m, depth + 1))?;
                }
                if more {
                    map.serialize_entry("…", &(members.len() - n))?;
                }
                map.end()
            }
            other => other.serialize(s),
        }
    }
}

/// Guard facts as the derive writes them (for [`crate::line`]).
pub(crate) struct Facts<'a>(pub(crate) &'a BTreeMap<&'static str, serde_json::Value>);

impl Serialize for Facts<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        facts_bounded(self.0, s)
    }
}

pub(crate) fn facts_bounded<S: serde::Serializer>(
    facts: &BTreeMap<&'static str, serde_json::Value>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(facts.len()))?;
    for (k, v) in facts {
        map.serialize_entry(k, &BoundedValue(v, 1))?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditEvent, Decision};

    /// #13 item 15: every field of a written event is bounded, whatever the client sent.
    #[test]
    fn every_written_field_is_bounded() {
        let huge = "é".repeat(30_000);
        let mut ev = AuditEvent::new("mcp.refusal", Decision::Deny);
        ev.method = Some(huge.clone().into());
        ev.tool = Some(huge.as_str().into());
        ev.client = Some(huge.as_str().into());
        ev.session = Some(huge.as_str().into());
        ev.upstream = Some(huge.as_str().into());
        ev.subject = Some(huge.clone());
        ev.jsonrpc_id = Some(huge.clone());
        ev.reason = Some(huge.clone());
        ev.hint = Some(huge.clone());
        let deep = (0..50).fold(serde_json::json!(huge), |v, _| serde_json::json!([v, 1]));
        ev.facts.insert(
            "g",
            serde_json::json!({"s": huge, "deep": deep, "many": vec![1; 5000]}),
        );
        let line = serde_json::to_string(&ev).unwrap();
        assert!(line.len() < 16 * 1024, "audit line of {} bytes", line.len());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let m = v["method"].as_str().unwrap();
        assert!(m.len() <= MAX_FIELD + 3 && m.ends_with('…'), "{m}");
        assert!(v["hint"].as_str().unwrap().len() <= MAX_HINT + 3);
        assert!(v["facts"]["g"]["s"].as_str().unwrap().len() <= MAX_FACT_TEXT + 3);
        assert_eq!(
            v["facts"]["g"]["many"].as_array().unwrap().len(),
            MAX_FACT_ITEMS + 1
        );
        // Short values are written as they are.
        let mut ev = AuditEvent::new("mcp.request", Decision::Allow);
        ev.method = Some("tools/call".into());
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["method"], "tools/call");
    }
}
