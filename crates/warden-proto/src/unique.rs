//! Duplicate object keys anywhere in a message (#13 items 4 and 14, P1.1). JSON parsers disagree
//! on `{"name":"echo","name":"evil"}`: one keeps the first, another the last, a third errors. When
//! Warden's guards read one member and the peer the other, every check is bypassed — so a message
//! with a repeated key in any object, at any depth, is not one valid message, whichever side
//! sent it. Keys are compared after unescaping (`"a"` and `"\u0061"` are the same key).
//!
//! [`first_duplicate`] walks bytes that have already been parsed as JSON (it does not validate
//! JSON itself): one pass (string contents skipped with `memchr`), no heap allocation for
//! messages up to 16 levels deep with up to 32 keys open at once, and a set per object past 16
//! keys so a huge object stays linear. It runs on every message in both directions, so it is
//! on the benchmarked path.

use std::borrow::Cow;
use std::collections::HashSet;

use smallvec::SmallVec;

const LINEAR: usize = 16;
const NO_SET: u32 = u32::MAX;

struct Frame {
    object: bool,
    expect_key: bool,
    keys_from: u32,
    /// Index into the walk's sets once this object has more than [`LINEAR`] keys.
    set: u32,
}

/// The end of the string whose contents start at `start` (the index of its closing quote, or
/// `json.len()` when it is unterminated) and whether it has escapes.
fn string_end(json: &[u8], start: usize) -> (usize, bool) {
    let mut j = start;
    let mut escaped = false;
    while j < json.len() {
        match memchr::memchr2(b'"', b'\\', &json[j..]) {
            None => return (json.len(), escaped),
            Some(k) if json[j + k] == b'"' => return (j + k, escaped),
            Some(k) => {
                escaped = true;
                j += k + 2;
            }
        }
    }
    (json.len(), escaped)
}

/// The first key repeated within one object of `json` (unescaped, as text), if any. `json` must
/// be valid JSON (as `serde_json` accepted it); on anything else the answer is meaningless but
/// the walk still ends without panicking.
pub fn first_duplicate(json: &[u8]) -> Option<String> {
    let mut stack: SmallVec<[Frame; 16]> = SmallVec::new();
    let mut keys: SmallVec<[Cow<'_, [u8]>; 32]> = SmallVec::new();
    let mut sets: Vec<HashSet<Vec<u8>>> = Vec::new();
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i + 1;
                let (end, escaped) = string_end(json, start);
                i = end + 1;
                let Some(top) = stack.last_mut() else {
                    continue;
                };
                if !(top.object && top.expect_key) {
                    continue;
                }
                top.expect_key = false;
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
                let from = top.keys_from as usize;
                if let Some(set) = sets.get_mut(top.set as usize) {
                    if !set.insert(key.to_vec()) {
                        return Some(String::from_utf8_lossy(&key).into_owned());
                    }
                    continue;
                }
                if keys[from..].contains(&key) {
                    return Some(String::from_utf8_lossy(&key).into_owned());
                }
                keys.push(key);
                if keys.len() - from > LINEAR {
                    top.set = sets.len() as u32;
                    sets.push(keys.drain(from..).map(Cow::into_owned).collect());
                }
                continue;
            }
            b'{' | b'[' => stack.push(Frame {
                object: json[i] == b'{',
                expect_key: json[i] == b'{',
                keys_from: keys.len() as u32,
                set: NO_SET,
            }),
            b'}' | b']' => {
                if let Some(f) = stack.pop() {
                    keys.truncate(f.keys_from as usize);
                    if f.set != NO_SET {
                        sets.truncate(f.set as usize);
                    }
                }
            }
            b',' => {
                if let Some(top) = stack.last_mut() {
                    top.expect_key = top.object;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
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
