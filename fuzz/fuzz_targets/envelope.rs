//! Fuzz target `envelope`: untrusted bytes → `Limits::check` → `Message::parse` (P1.1), and the
//! fused `Limits::check_scanned` → `Message::parse_scanned` the ingress uses (the validating scan
//! and its envelope members, or the walk and serde_json), against them: same refusals, same
//! members.
//!
//! Invariants: the linear depth scan agrees with a real JSON parser on valid JSON; a message that
//! passes the limits and parses is an object whose `jsonrpc` is "2.0"; `id_span()` slices exactly
//! the id's raw text; `kind()` matches the fields present (cross-checked against serde_json's
//! `Value`); `params_view()` never panics and, when it succeeds, agrees with the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;
use warden_proto::limits::{LimitError, Limits, max_depth};
use warden_proto::{Kind, Message, ProtoError};

/// Nesting depth of arrays/objects, counted like `limits::max_depth` by a real JSON parser.
/// (A `Value` would not do: it keeps only the last of duplicate keys.)
struct Depth(usize);

impl<'de> Deserialize<'de> for Depth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DepthVisitor)
    }
}

struct DepthVisitor;

impl<'de> Visitor<'de> for DepthVisitor {
    type Value = Depth;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_str<E>(self, _: &str) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_unit<E>(self) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Depth, A::Error> {
        let mut deepest = 0;
        while let Some(Depth(d)) = a.next_element()? {
            deepest = deepest.max(d);
        }
        Ok(Depth(deepest + 1))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Depth, A::Error> {
        let mut deepest = 0;
        while let Some((IgnoredAny, Depth(d))) = a.next_entry()? {
            deepest = deepest.max(d);
        }
        Ok(Depth(deepest + 1))
    }
}

fn is_integer_or_string(raw: &str) -> bool {
    match raw.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => !raw.contains(['.', 'e', 'E']),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let checked = limits.check(data);
    // The fused walk (depth + repeated keys, the ingress path) refuses exactly what `check` does,
    // and its parse agrees with the plain one.
    let scanned = limits.check_scanned(data);
    assert_eq!(
        checked,
        scanned.as_ref().map(|_| ()).map_err(Clone::clone),
        "check_scanned disagrees with check"
    );
    if let Ok(s) = scanned {
        // The validating scan's envelope (when it read the message) is serde_json's, member by
        // member, and its refusals are the same refusals.
        let full = Message::parse_full(data);
        let plain = Message::parse(data);
        let b = Message::parse_scanned(s);
        let span = |m: &Result<Message<'_>, ProtoError>| m.as_ref().ok().and_then(Message::id_span);
        assert_eq!(span(&full), span(&b), "the id spans differ");
        assert_eq!(span(&full), span(&plain), "the id spans differ");
        assert_eq!(full, b, "parse_scanned disagrees with the full parse");
        assert_eq!(full, plain, "parse disagrees with the full parse");
    }
    // serde_json's own recursion limit (128) bounds this parse.
    let value: Option<Value> = serde_json::from_slice(data).ok();

    if let Ok(Depth(real)) = serde_json::from_slice::<Depth>(data) {
        let scanned = max_depth(data, usize::MAX);
        assert_eq!(scanned, Some(real), "depth scan disagrees with the parser");
        if data.len() > limits.max_bytes {
            assert!(matches!(checked, Err(LimitError::TooLarge { .. })));
        } else if real > limits.max_depth {
            assert_eq!(
                checked,
                Err(LimitError::TooDeep {
                    limit: limits.max_depth
                })
            );
        } else {
            assert_eq!(checked, Ok(()), "valid JSON within limits refused");
        }
    }
    if checked.is_err() {
        return;
    }
    assert!(
        std::str::from_utf8(data).is_ok(),
        "check passed non-UTF-8 bytes"
    );

    let msg = match Message::parse(data) {
        Ok(m) => m,
        Err(e) => {
            // Syntactically valid JSON is never reported as a parse (-32700) error.
            if value.is_some() {
                assert!(
                    matches!(e, ProtoError::Invalid(_) | ProtoError::DuplicateKey { .. }),
                    "valid JSON gave {e:?}"
                );
                // A repeated key is reported only when there is one (serde_json keeps the last).
                if let ProtoError::DuplicateKey { .. } = e {
                    assert!(
                        warden_proto::unique::first_duplicate(data).is_some(),
                        "DuplicateKey without a repeated key"
                    );
                }
            }
            return;
        }
    };
    assert_eq!(msg.raw(), data);

    // id and its span.
    match (msg.id(), msg.id_span()) {
        (None, None) => {}
        (Some(id), Some(span)) => assert_eq!(&data[span], id.get().as_bytes(), "id_span is off"),
        (id, span) => panic!("id {id:?} but span {span:?}"),
    }

    // kind() against the envelope fields.
    let (method, result, error, id) = (msg.method(), msg.result(), msg.error(), msg.id());
    match msg.kind() {
        Kind::Request => {
            assert!(method.is_some() && result.is_none() && error.is_none());
            assert!(is_integer_or_string(id.expect("request without id").get()));
        }
        Kind::Notification => {
            assert!(method.is_some() && id.is_none() && result.is_none() && error.is_none())
        }
        Kind::Response => {
            assert!(method.is_none() && result.is_some() && error.is_none());
            assert!(is_integer_or_string(id.expect("response without id").get()));
        }
        Kind::Error => {
            assert!(method.is_none() && result.is_none() && error.is_some());
            let id = id.expect("error without id").get();
            assert!(id == "null" || is_integer_or_string(id));
        }
    }
    if let Some(p) = msg.params() {
        assert!(p.get().starts_with(['{', '[']), "params not a structure");
    }

    // Cross-check against an independent parse (absent when e.g. a number overflows f64).
    if let Some(v) = &value {
        let obj = v
            .as_object()
            .expect("a parsed message that is not an object");
        assert_eq!(obj.get("jsonrpc"), Some(&Value::String("2.0".into())));
        assert_eq!(obj.get("method").and_then(Value::as_str), method);
        for (key, raw) in [
            ("id", id),
            ("params", msg.params()),
            ("result", result),
            ("error", error),
        ] {
            assert_eq!(
                obj.contains_key(key),
                raw.is_some(),
                "{key} presence differs"
            );
            if let (Some(raw), Some(val)) = (raw, obj.get(key)) {
                let reparsed: Value = serde_json::from_str(raw.get()).expect("raw field reparses");
                assert_eq!(&reparsed, val, "{key} differs");
            }
        }
    }

    // params_view never panics; when it succeeds it agrees with the body.
    if let Ok(p) = msg.params_view() {
        if let Some(params) = value.as_ref().and_then(|v| v.get("params")) {
            if p.name.is_some() {
                assert_eq!(
                    params.get("name").and_then(Value::as_str),
                    p.name.as_deref()
                );
            }
            if p.uri.is_some() {
                assert_eq!(params.get("uri").and_then(Value::as_str), p.uri.as_deref());
            }
        }
        if let Some(meta) = &p.meta {
            let _ = meta.protocol_version_str();
        }
    }
});
