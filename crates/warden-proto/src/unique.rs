//! Duplicate object keys anywhere in a message (#13 items 4 and 14, P1.1). JSON parsers disagree
//! on `{"name":"echo","name":"evil"}`: one keeps the first, another the last, a third errors. When
//! Warden's guards read one member and the peer the other, every check is bypassed — so a message
//! with a repeated key in any object, at any depth, is not one valid message, whichever side
//! sent it. Keys are compared after unescaping (`"a"` and `"\u0061"` are the same key).
//!
//! [`first_duplicate`] walks bytes that have already been parsed as JSON (it does not validate
//! JSON itself): one pass, no allocation for objects of ordinary size, a set per object past 16
//! keys so a huge object stays linear.

use std::borrow::Cow;
use std::collections::HashSet;

const LINEAR: usize = 16;

struct Frame {
    object: bool,
    expect_key: bool,
    keys_from: usize,
    set: Option<HashSet<Cow<'static, [u8]>>>,
}

/// The first key repeated within one object of `json` (unescaped, as text), if any. `json` must
/// be valid JSON (as `serde_json` accepted it); on anything else the answer is meaningless but
/// the walk still ends without panicking.
pub fn first_duplicate(json: &[u8]) -> Option<String> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut keys: Vec<Cow<'_, [u8]>> = Vec::new();
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i + 1;
                let mut j = start;
                let mut escaped = false;
                while j < json.len() && json[j] != b'"' {
                    if json[j] == b'\\' {
                        escaped = true;
                        j += 1;
                    }
                    j += 1;
                }
                let end = j.min(json.len());
                i = j + 1;
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
                let seen = keys.len() - top.keys_from;
                if let Some(set) = &mut top.set {
                    if !set.insert(Cow::Owned(key.to_vec())) {
                        return Some(String::from_utf8_lossy(&key).into_owned());
                    }
                    continue;
                }
                if keys[top.keys_from..].contains(&key) {
                    return Some(String::from_utf8_lossy(&key).into_owned());
                }
                keys.push(key);
                if seen + 1 > LINEAR {
                    top.set = Some(
                        keys[top.keys_from..]
                            .iter()
                            .map(|k| Cow::Owned(k.to_vec()))
                            .collect(),
                    );
                }
                continue;
            }
            b'{' | b'[' => stack.push(Frame {
                object: json[i] == b'{',
                expect_key: json[i] == b'{',
                keys_from: keys.len(),
                set: None,
            }),
            b'}' | b']' => {
                if let Some(f) = stack.pop() {
                    keys.truncate(f.keys_from);
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
