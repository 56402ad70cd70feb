//! The JSON line one event is written as (P5.1). The `Serialize` derive on [`AuditEvent`] is the
//! definition of that line; [`LineWriter`] writes the same bytes without serde's generic path,
//! which cost about 5,000 instructions an event (half of it escaping text that needed none):
//! - text with no `"`, `\` or control character is copied between quotes, and anything else
//!   goes through serde_json's own string escaping, so the escaping rules are never ours;
//! - the field names are literals, numbers go through `itoa` (what serde_json uses);
//! - the time is formatted once a millisecond, as many events share one;
//! - guard facts go through serde_json, bounded as the derive bounds them.
//!
//! The proptest below holds the two byte-for-byte equal on arbitrary events, so a field added to
//! the struct without being added here fails it.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bounded::{Facts, bounded};
use crate::{AuditEvent, Decision, MAX_FIELD, MAX_HINT};

/// Writes events as JSON lines into one reused buffer.
#[derive(Default)]
pub struct LineWriter {
    buf: Vec<u8>,
    /// The last time formatted: (seconds, milliseconds) since the epoch, and its text.
    stamp: Option<((u64, u32), String)>,
}

impl LineWriter {
    /// `ev` as one JSON line, newline included: the bytes `serde_json::to_writer(ev)` writes.
    pub fn line(&mut self, ev: &AuditEvent) -> Result<&[u8], serde_json::Error> {
        self.buf.clear();
        self.buf.extend_from_slice(b"{\"time\":\"");
        self.time(ev.time);
        self.buf.push(b'"');
        self.field("kind", Some(ev.kind), usize::MAX)?;
        if let Some(id) = ev.request_id {
            self.buf.extend_from_slice(b",\"request_id\":\"r");
            let mut hex = [0u8; 16];
            let mut n = id.0;
            let mut i = hex.len();
            loop {
                i -= 1;
                hex[i] = b"0123456789abcdef"[(n & 0xf) as usize];
                n >>= 4;
                if n == 0 {
                    break;
                }
            }
            self.buf.extend_from_slice(&hex[i..]);
            self.buf.push(b'"');
        }
        self.field("session", ev.session.as_deref(), MAX_FIELD)?;
        self.field("client", ev.client.as_deref(), MAX_FIELD)?;
        self.field("subject", ev.subject.as_deref(), MAX_FIELD)?;
        self.field("upstream", ev.upstream.as_deref(), MAX_FIELD)?;
        self.field("method", ev.method.as_deref(), MAX_FIELD)?;
        self.field("tool", ev.tool.as_deref(), MAX_FIELD)?;
        self.field("jsonrpc_id", ev.jsonrpc_id.as_deref(), MAX_FIELD)?;
        self.buf.extend_from_slice(match ev.decision {
            Decision::Allow => b",\"decision\":\"allow\"",
            Decision::Deny => b",\"decision\":\"deny\"",
            Decision::Error => b",\"decision\":\"error\"",
            Decision::Info => b",\"decision\":\"info\"",
        });
        self.field("reason", ev.reason.as_deref(), MAX_FIELD)?;
        self.field("control", ev.control, usize::MAX)?;
        self.field("hint", ev.hint.as_deref(), MAX_HINT)?;
        self.number("status", ev.status);
        self.number("rpc_code", ev.rpc_code);
        self.number("latency_us", ev.latency_us);
        self.number("bytes", ev.bytes);
        if !ev.facts.is_empty() {
            self.buf.extend_from_slice(b",\"facts\":");
            serde_json::to_writer(&mut self.buf, &Facts(&ev.facts))?;
        }
        self.buf.extend_from_slice(b"}\n");
        Ok(&self.buf)
    }

    fn time(&mut self, t: SystemTime) {
        let Ok(since) = t.duration_since(UNIX_EPOCH) else {
            let text = humantime::format_rfc3339_millis(t).to_string();
            self.buf.extend_from_slice(text.as_bytes());
            return;
        };
        let key = (since.as_secs(), since.subsec_millis());
        let text = match &mut self.stamp {
            Some((k, text)) if *k == key => text,
            stamp => {
                let text = humantime::format_rfc3339_millis(t).to_string();
                &stamp.insert((key, text)).1
            }
        };
        self.buf.extend_from_slice(text.as_bytes());
    }

    /// `,"name":"value"` for a present value, bounded to `max` bytes.
    fn field(&mut self, name: &str, v: Option<&str>, max: usize) -> Result<(), serde_json::Error> {
        let Some(v) = v else { return Ok(()) };
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\":");
        let v = bounded(v, max);
        if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.buf.push(b'"');
            self.buf.extend_from_slice(v.as_bytes());
            self.buf.push(b'"');
            Ok(())
        } else {
            serde_json::to_writer(&mut self.buf, &*v)
        }
    }

    fn number<I: itoa::Integer>(&mut self, name: &str, v: Option<I>) {
        let Some(v) = v else { return };
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::RequestId;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9/._:-]{0,12}",
            any::<String>(),
            "[\"\\\\\u{0}-\u{1f}é\u{7f}a]{0,8}",
            ".{250,300}",
        ]
    }

    fn fact() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            text().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(6, 64, 40, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..40).prop_map(serde_json::Value::from),
                prop::collection::btree_map(text(), inner, 0..40)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn event()(
            millis in 0u64..4_102_444_800_000, nanos in 0u32..1_000_000,
            kind in prop::sample::select(vec!["mcp.request", "mcp.refusal", "odd\"kind"]),
            request_id in proptest::option::of(any::<u64>()),
            strings in prop::collection::vec(proptest::option::of(text()), 9),
            decision in prop::sample::select(vec![
                Decision::Allow, Decision::Deny, Decision::Error, Decision::Info,
            ]),
            control in proptest::option::of(prop::sample::select(vec!["P1.1", "A-\n"])),
            status in proptest::option::of(any::<u16>()),
            rpc_code in proptest::option::of(any::<i64>()),
            latency_us in proptest::option::of(any::<u64>()),
            bytes in proptest::option::of(any::<u64>()),
            facts in prop::collection::btree_map(
                prop::sample::select(vec!["policy", "integrity", "in\"spect"]), fact(), 0..3),
        ) -> AuditEvent {
            let arc = |i: usize| strings[i].as_deref().map(Arc::<str>::from);
            let mut ev = AuditEvent::new(kind, decision);
            ev.time = UNIX_EPOCH + Duration::from_millis(millis) + Duration::from_nanos(nanos.into());
            ev.request_id = request_id.map(RequestId);
            ev.session = arc(0);
            ev.client = arc(1);
            ev.subject = strings[2].clone();
            ev.upstream = arc(3);
            ev.method = strings[4].clone().map(Into::into);
            ev.tool = arc(5);
            ev.jsonrpc_id = strings[6].clone();
            ev.reason = strings[7].clone();
            ev.hint = strings[8].clone();
            ev.control = control;
            ev.status = status;
            ev.rpc_code = rpc_code;
            ev.latency_us = latency_us;
            ev.bytes = bytes;
            ev.facts = facts;
            ev
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// The line is the derive's bytes, for every event; one writer for several events, some
        /// in the same millisecond, so the cached time is checked too.
        #[test]
        fn the_line_is_what_serde_json_writes(events in prop::collection::vec(event(), 1..6)) {
            let mut w = LineWriter::default();
            for (i, mut ev) in events.into_iter().enumerate() {
                for again in [false, true] {
                    if again {
                        // Same millisecond, other nanoseconds.
                        let since = ev.time.duration_since(UNIX_EPOCH).unwrap();
                        let ms = Duration::from_millis(since.as_millis() as u64);
                        ev.time = UNIX_EPOCH + ms + Duration::from_nanos(((i * 7919) % 1_000_000) as u64);
                    }
                    let mut want = serde_json::to_vec(&ev).unwrap();
                    want.push(b'\n');
                    let got = w.line(&ev).unwrap();
                    prop_assert_eq!(
                        String::from_utf8_lossy(got), String::from_utf8_lossy(&want)
                    );
                }
            }
        }
    }
}
