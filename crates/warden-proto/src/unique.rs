//! Duplicate object keys anywhere in a message (#13 items 4 and 14, P1.1). JSON parsers disagree
//! on `{"name":"echo","name":"evil"}`: one keeps the first, another the last, a third errors. When
//! Warden's guards read one member and the peer the other, every check is bypassed — so a message
//! with a repeated key in any object, at any depth, is not one valid message, whichever side
//! sent it. Keys are compared after unescaping (`"a"` and `"\u0061"` are the same key).
//!
//! [`first_duplicate`] walks bytes that have already been parsed as JSON (it does not validate
//! JSON itself); [`crate::limits::Limits::check_scanned`] runs the same walk before the parse,
//! judging the depth limit in the same pass. One pass, string contents skipped by
//! [`crate::string_end`]. Nearly every message is read by `walk_small` (fixed arrays on the
//! stack, keys as spans of the message: up to 16 levels, 32 keys open at once, 16 per object, no
//! escaped key); a bigger one is read again from the start by `walk_any`, whose stacks grow and
//! which gives an object past 16 keys a set, so a huge object stays linear. It runs on every
//! message in both directions, so it is on the benchmarked path.

use std::borrow::Cow;
use std::collections::HashSet;

use smallvec::SmallVec;

use crate::string_end::string_end;

const LINEAR: usize = 16;
const NO_SET: u32 = u32::MAX;
/// Nesting and keys open at once that [`walk_small`] keeps on the stack.
const SMALL_DEPTH: usize = 16;
const SMALL_KEYS: usize = 32;

#[derive(Clone, Copy)]
struct Frame {
    object: bool,
    expect_key: bool,
    keys_from: u32,
    /// Index into the walk's sets once this object has more than [`LINEAR`] keys.
    set: u32,
}

/// Outside any array or object (strings there are not keys).
const TOP: Frame = Frame {
    object: false,
    expect_key: false,
    keys_from: 0,
    set: NO_SET,
};

/// The first key repeated within one object of `json` (unescaped, as text), if any. `json` must
/// be valid JSON (as `serde_json` accepted it); on anything else the answer is meaningless but
/// the walk still ends without panicking.
pub fn first_duplicate(json: &[u8]) -> Option<String> {
    walk(json, usize::MAX).duplicate
}

/// What one walk over a message found.
pub(crate) struct Walk {
    /// The nesting went past the walk's depth limit (the walk stopped there).
    pub too_deep: bool,
    /// The first key repeated within one object.
    pub duplicate: Option<String>,
}

/// The walk: repeated keys and, in the same pass, nesting deeper than `depth_limit` (counted
/// like [`crate::limits::max_depth`]: the open `[` and `{` outside strings). With a finite limit
/// the walk goes on past a repeated key, so that the depth limit is judged on the whole message.
pub(crate) fn walk(json: &[u8], depth_limit: usize) -> Walk {
    walk_small(json, depth_limit).unwrap_or_else(|| walk_any(json, depth_limit))
}

/// The walk for the messages nearly all are: nesting up to [`SMALL_DEPTH`], up to
/// [`SMALL_KEYS`] keys open at once and [`LINEAR`] per object, no key spelt with escapes. Fixed
/// arrays on the stack, keys kept as spans of the message. `None` as soon as the message is
/// bigger than that: [`walk_any`] then reads it from the start.
fn walk_small(json: &[u8], depth_limit: usize) -> Option<Walk> {
    if json.len() > u32::MAX as usize {
        return None;
    }
    let mut outer = [TOP; SMALL_DEPTH];
    let mut depth = 0usize;
    let mut keys = [(0u32, 0u32); SMALL_KEYS];
    let mut open = 0usize;
    let mut cur = TOP;
    let mut repeated: Option<(usize, usize)> = None;
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        i += 1;
        match b {
            b'"' => {
                let start = i;
                let (end, escaped) = string_end(json, start);
                i = end + 1;
                if !(cur.object && cur.expect_key) || repeated.is_some() {
                    continue;
                }
                cur.expect_key = false;
                if escaped {
                    return None;
                }
                let key = json.get(start..end)?;
                let from = cur.keys_from as usize;
                let seen = keys.get(from..open)?.iter().any(|&(s, l)| {
                    l as usize == key.len() && json.get(s as usize..(s + l) as usize) == Some(key)
                });
                if seen {
                    if depth_limit == usize::MAX {
                        return Some(Walk {
                            too_deep: false,
                            duplicate: Some(String::from_utf8_lossy(key).into_owned()),
                        });
                    }
                    repeated = Some((start, end));
                    continue;
                }
                if open - from >= LINEAR {
                    return None;
                }
                *keys.get_mut(open)? = (start as u32, (end - start) as u32);
                open += 1;
            }
            b'{' | b'[' => {
                if depth >= depth_limit {
                    return Some(Walk {
                        too_deep: true,
                        duplicate: None,
                    });
                }
                *outer.get_mut(depth)? = cur;
                depth += 1;
                cur = Frame {
                    object: b == b'{',
                    expect_key: b == b'{',
                    keys_from: open as u32,
                    set: NO_SET,
                };
            }
            b'}' | b']' if depth > 0 => {
                open = cur.keys_from as usize;
                depth -= 1;
                cur = outer[depth];
            }
            b',' => cur.expect_key = cur.object,
            _ => {}
        }
    }
    Some(Walk {
        too_deep: false,
        duplicate: repeated
            .and_then(|(s, e)| json.get(s..e))
            .map(|k| String::from_utf8_lossy(k).into_owned()),
    })
}

/// The walk for any message: the stacks grow past the inline sizes, an object past [`LINEAR`]
/// keys gets a set, escaped keys are compared unescaped. Kept apart from [`walk_small`] so that
/// the common walk has the registers to itself.
#[cold]
#[inline(never)]
fn walk_any(json: &[u8], depth_limit: usize) -> Walk {
    // The innermost open array or object lives in `cur` (outside any: not an object); the ones
    // around it wait on `outer`, so reading a key touches no stack at all.
    let mut cur = TOP;
    let mut outer: SmallVec<[Frame; 16]> = SmallVec::new();
    let mut keys: SmallVec<[Cow<'_, [u8]>; 32]> = SmallVec::new();
    let mut sets: Vec<HashSet<Vec<u8>>> = Vec::new();
    let mut duplicate: Option<String> = None;
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        i += 1;
        match b {
            b'"' => {
                let start = i;
                let (end, escaped) = string_end(json, start);
                i = end + 1;
                if !(cur.object && cur.expect_key) || duplicate.is_some() {
                    continue;
                }
                cur.expect_key = false;
                let key: Cow<'_, [u8]> = if escaped {
                    match serde_json::from_slice::<String>(
                        &json[start - 1..(end + 1).min(json.len())],
                    ) {
                        Ok(s) => Cow::Owned(s.into_bytes()),
                        Err(_) => Cow::Borrowed(&json[start..end]),
                    }
                } else {
                    Cow::Borrowed(&json[start..end])
                };
                let from = cur.keys_from as usize;
                let repeated = match sets.get_mut(cur.set as usize) {
                    Some(set) => !set.insert(key.to_vec()),
                    None => keys[from..].contains(&key),
                };
                if repeated {
                    duplicate = Some(String::from_utf8_lossy(&key).into_owned());
                    if depth_limit == usize::MAX {
                        break;
                    }
                    continue;
                }
                if cur.set != NO_SET {
                    continue;
                }
                keys.push(key);
                if keys.len() - from > LINEAR {
                    cur.set = sets.len() as u32;
                    sets.push(keys.drain(from..).map(Cow::into_owned).collect());
                }
            }
            b'{' | b'[' => {
                if outer.len() >= depth_limit {
                    return Walk {
                        too_deep: true,
                        duplicate,
                    };
                }
                outer.push(cur);
                cur = Frame {
                    object: b == b'{',
                    expect_key: b == b'{',
                    keys_from: keys.len() as u32,
                    set: NO_SET,
                };
            }
            b'}' | b']' => {
                if let Some(parent) = outer.pop() {
                    keys.truncate(cur.keys_from as usize);
                    if cur.set != NO_SET {
                        sets.truncate(cur.set as usize);
                    }
                    cur = parent;
                }
            }
            b',' => cur.expect_key = cur.object,
            _ => {}
        }
    }
    Walk {
        too_deep: false,
        duplicate,
    }
}

#[cfg(test)]
mod tests {
    use super::first_duplicate as dup;

    #[test]
    fn finds_a_repeated_key_at_any_depth_and_spelling() {
        assert_eq!(dup(br#"{"a":1,"a":2}"#).as_deref(), Some("a"));
        assert_eq!(
            dup(br#"{"params":{"name":"echo","name":"evil"}}"#).as_deref(),
            Some("name")
        );
        assert_eq!(
            dup(br#"{"result":{"content":[{"type":"text","x":{"k":1,"\u006b":2}}]}}"#).as_deref(),
            Some("k")
        );
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        assert_eq!(
            dup(format!("{{{many}\"k39\":0}}").as_bytes()).as_deref(),
            Some("k39")
        );
    }

    #[test]
    fn the_same_key_in_sibling_or_nested_objects_is_not_a_duplicate() {
        for ok in [
            &br#"{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}"#[..],
            br#"{"s":"a \"quoted\" \\ , { } [ ] : key","t":"{\"a\":1,\"a\":2}"}"#,
            br#"{"a":[],"b":{},"c":[{},[]],"d":null}"#,
            br#"[{"x":1},{"x":1}]"#,
            br#""just a string""#,
            br#"{"\ud800":1,"\ud801":2}"#,
        ] {
            assert_eq!(dup(ok), None, "{}", String::from_utf8_lossy(ok));
        }
        let many: String = (0..200)
            .map(|i| format!("\"k{i}\":{{\"k{i}\":1}},"))
            .collect();
        assert_eq!(dup(format!("{{{many}\"end\":0}}").as_bytes()), None);
    }

    #[test]
    fn big_and_deep_objects_past_the_inline_sizes_are_still_checked() {
        // An object past 16 keys holding another past 16 keys: each has its own set, and the
        // inner one's set is gone when the outer one goes on.
        let inner: String = (0..20).map(|i| format!("\"k{i}\":{i},")).collect();
        let outer: String = (0..20).map(|i| format!("\"k{i}\":{i},")).collect();
        let ok = format!("{{{outer}\"x\":{{{inner}\"end\":0}},\"after\":1}}");
        assert_eq!(dup(ok.as_bytes()), None);
        let bad = format!("{{{outer}\"x\":{{{inner}\"end\":0}},\"k3\":1}}");
        assert_eq!(dup(bad.as_bytes()).as_deref(), Some("k3"));
        // Deeper than the inline stack, with keys open at every level.
        let deep = |last: &str| {
            let mut s = String::new();
            for d in 0..40 {
                s.push_str(&format!("{{\"a{d}\":1,\"b\":"));
            }
            s.push('0');
            s.push_str(&"}".repeat(39));
            s.push_str(&format!(",\"{last}\":2}}"));
            s
        };
        assert_eq!(dup(deep("c").as_bytes()), None);
        assert_eq!(dup(deep("a0").as_bytes()).as_deref(), Some("a0"));
    }

    /// Does any object of `json` repeat a key? Read by serde_json itself (keys unescaped).
    fn reference(json: &str) -> Option<bool> {
        use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
        struct Any(bool);
        impl<'de> serde::Deserialize<'de> for Any {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Any;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Any, E> {
                Ok(Any(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Any, E> {
                Ok(Any(false))
            }
            fn visit_str<E>(self, _: &str) -> Result<Any, E> {
                Ok(Any(false))
            }
            fn visit_unit<E>(self) -> Result<Any, E> {
                Ok(Any(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Any, A::Error> {
                let mut dup = false;
                while let Some(Any(d)) = a.next_element()? {
                    dup |= d;
                }
                Ok(Any(dup))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Any, A::Error> {
                let (mut dup, mut seen) = (false, std::collections::HashSet::new());
                while let Some((k, Any(d))) = a.next_entry::<String, Any>()? {
                    dup |= d | !seen.insert(k);
                }
                Ok(Any(dup))
            }
        }
        serde_json::from_str::<Any>(json).ok().map(|a| a.0)
    }

    /// JSON text with objects of few, short keys (some spelt with escapes), so that repeats,
    /// nesting and objects past the inline sizes all occur.
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let key = prop_oneof![
            Just("a".to_string()),
            Just("\\u0061".to_string()),
            Just("b".to_string()),
            Just("k\\\"".to_string()),
            (0u8..40).prop_map(|n| format!("k{n}")),
        ];
        let leaf = prop_oneof![
            Just("1".to_string()),
            Just("\"s, {[\\\"\"".to_string()),
            Just("null".to_string()),
        ];
        leaf.prop_recursive(5, 200, 40, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((key.clone(), inner.clone()), 0..40).prop_map(|v| {
                    let members: Vec<String> =
                        v.iter().map(|(k, x)| format!("\"{k}\":{x}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
                // Past the inline sizes: many distinct keys, then perhaps one seen before.
                (17usize..40, proptest::option::of(0usize..45), inner).prop_map(|(n, again, x)| {
                    let mut members: Vec<String> =
                        (0..n).map(|i| format!("\"k{i}\":{x}")).collect();
                    members.extend(again.map(|r| format!("\"k{r}\":1")));
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_serde_json_on_which_messages_repeat_a_key(json in json_text()) {
            let expected = reference(&json);
            proptest::prop_assert!(expected.is_some(), "generated invalid JSON: {}", json);
            proptest::prop_assert_eq!(dup(json.as_bytes()).is_some(), expected.unwrap(), "{}", json);
        }
    }

    #[test]
    fn never_panics_on_broken_input() {
        for bad in [
            &b"\"unterminated"[..],
            b"{\"a\\",
            b"}}]]",
            b"{\"a\":1,",
            b"\\",
        ] {
            let _ = dup(bad);
        }
    }
}
