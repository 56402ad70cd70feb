//! The one pass nearly every message takes on the ingress (P1.1, #13 item 14): it checks the JSON
//! grammar, the depth limit and the repeated-key rule together, and notes where the envelope
//! members (`jsonrpc`, `id`, `method`, `params`, `result`, `error`) sit, so that
//! [`crate::Message::parse_scanned`] reads them from the bytes without a second parse.
//!
//! It is a fast path, never the judge: it answers `None` for anything out of the ordinary — bytes
//! that are not valid JSON, a top level that is not an object, nesting past 16 levels or the
//! depth limit, more than 32 keys open at once or 16 in one object, a key spelt with escapes, a
//! repeated key — and the message then takes the full path ([`crate::unique`]'s walk and
//! serde_json), which decides and explains the refusal. So the only property it must have is
//! that it never accepts what serde_json refuses, and that the spans it reports are the members
//! serde_json would read: both are checked by the proptest below and by the `envelope` fuzz
//! target on every input. The grammar is RFC 8259 as serde_json reads it (whitespace is space,
//! tab, CR and LF; no control characters in strings; `\u` takes four hex digits, without judging
//! surrogates, as serde_json does for values it skips). UTF-8 was checked before the scan.
//!
//! It never panics and never reads past the slice: every index goes through `get`.

pub(crate) const JSONRPC: usize = 0;
pub(crate) const ID: usize = 1;
pub(crate) const METHOD: usize = 2;
pub(crate) const PARAMS: usize = 3;
pub(crate) const RESULT: usize = 4;
pub(crate) const ERROR: usize = 5;

const MAX_DEPTH: usize = 16;
const MAX_OPEN_KEYS: usize = 32;
const MAX_OBJECT_KEYS: usize = 16;
const ABSENT: (u32, u32) = (u32::MAX, 0);

/// Where each envelope member's value sits in the message (start, end), [`ABSENT`] when the
/// top-level object has no such member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fields([(u32, u32); 6]);

impl Fields {
    /// The value text of member `slot`, sliced from `text` (the message the scan read).
    pub(crate) fn get<'a>(&self, text: &'a str, slot: usize) -> Option<&'a str> {
        let (start, end) = *self.0.get(slot)?;
        if start == u32::MAX {
            return None;
        }
        text.get(start as usize..end as usize)
    }
}

#[derive(Clone, Copy)]
struct Frame {
    object: bool,
    keys_from: u8,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The end of a string whose contents start at `i` (the index of its closing quote), whether it
/// has escapes; `None` when it is not a valid JSON string.
#[inline(always)]
fn string(json: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        // Eight bytes at a time while none is `"`, `\` or a control character. (The lowest
        // flagged byte of each mask is always a true match.)
        while let Some(chunk) = json.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            let quote = w ^ (ONES * b'"' as u64);
            let slash = w ^ (ONES * b'\\' as u64);
            let m = (quote.wrapping_sub(ONES) & !quote)
                | (slash.wrapping_sub(ONES) & !slash)
                | (w.wrapping_sub(ONES * 0x20) & !w);
            let m = m & HIGHS;
            if m != 0 {
                i += (m.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match *json.get(i)? {
            b'"' => return Some((i, escaped)),
            b'\\' => {
                escaped = true;
                match *json.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = json.get(i + 2..i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                }
            }
            0..=0x1f => return None,
            _ => i += 1,
        }
    }
}

/// The end of a number starting at `i`.
#[inline]
fn number(json: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        while json.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    if json.get(i) == Some(&b'-') {
        i += 1;
    }
    match json.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i + 1),
        _ => return None,
    }
    if json.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(json.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(json.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

#[inline]
fn space(json: &[u8], mut i: usize) -> usize {
    while matches!(json.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// Scan `json` (known to be UTF-8). `Some` only for an ordinary message: valid JSON, an object
/// at the top, within the scan's sizes and `depth_limit`, no key repeated or spelt with escapes.
pub(crate) fn scan(json: &[u8], depth_limit: usize) -> Option<Fields> {
    if json.len() >= u32::MAX as usize {
        return None;
    }
    let depth_limit = depth_limit.min(MAX_DEPTH);
    let mut fields = Fields([ABSENT; 6]);
    let mut outer = [Frame {
        object: false,
        keys_from: 0,
    }; MAX_DEPTH];
    let mut depth = 0usize;
    let mut keys = [(0u32, 0u32); MAX_OPEN_KEYS];
    let mut open = 0usize;
    // The envelope member whose value is being read, and where that value started.
    let mut member: Option<(usize, usize)> = None;
    let mut i = space(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    // `i` is at the start of a value.
    'value: loop {
        match *json.get(i)? {
            open_byte @ (b'{' | b'[') => {
                if depth >= depth_limit {
                    return None;
                }
                let object = open_byte == b'{';
                *outer.get_mut(depth)? = Frame {
                    object,
                    keys_from: open as u8,
                };
                depth += 1;
                i = space(json, i + 1);
                match (object, *json.get(i)?) {
                    (true, b'}') | (false, b']') => {
                        depth -= 1;
                        i += 1;
                    }
                    (true, _) => {
                        i = key(json, i, &mut keys, &mut open, *outer.get(depth - 1)?)?;
                        if depth == 1 {
                            member = which(json, *keys.get(open - 1)?).map(|slot| (slot, i));
                        }
                        continue 'value;
                    }
                    (false, _) => continue 'value,
                }
            }
            b'"' => i = string(json, i + 1)?.0 + 1,
            b't' if json.get(i..i + 4) == Some(b"true") => i += 4,
            b'f' if json.get(i..i + 5) == Some(b"false") => i += 5,
            b'n' if json.get(i..i + 4) == Some(b"null") => i += 4,
            b'-' | b'0'..=b'9' => i = number(json, i)?,
            _ => return None,
        }
        // After a value: close the containers it ends, then go on to the next value.
        loop {
            if depth == 1
                && let Some((slot, start)) = member.take()
            {
                *fields.0.get_mut(slot)? = (start as u32, i as u32);
            }
            i = space(json, i);
            if depth == 0 {
                return (i == json.len()).then_some(fields);
            }
            let frame = *outer.get(depth - 1)?;
            match (frame.object, *json.get(i)?) {
                (_, b',') => {
                    i = space(json, i + 1);
                    if frame.object {
                        i = key(json, i, &mut keys, &mut open, frame)?;
                        if depth == 1 {
                            member = which(json, *keys.get(open - 1)?).map(|slot| (slot, i));
                        }
                    }
                    continue 'value;
                }
                (true, b'}') | (false, b']') => {
                    open = frame.keys_from as usize;
                    depth -= 1;
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// Read the key at `i` (and its colon) into the open keys of the innermost object; the index of
/// the value after it. `None` for an escaped, repeated or one-too-many key.
#[inline(always)]
fn key(
    json: &[u8],
    i: usize,
    keys: &mut [(u32, u32); MAX_OPEN_KEYS],
    open: &mut usize,
    frame: Frame,
) -> Option<usize> {
    if json.get(i) != Some(&b'"') {
        return None;
    }
    let (end, escaped) = string(json, i + 1)?;
    if escaped {
        return None;
    }
    let name = json.get(i + 1..end)?;
    let from = frame.keys_from as usize;
    if *open - from >= MAX_OBJECT_KEYS {
        return None;
    }
    for &(s, l) in keys.get(from..*open)? {
        if l as usize == name.len() && json.get(s as usize..(s + l) as usize) == Some(name) {
            return None; // repeated
        }
    }
    *keys.get_mut(*open)? = ((i + 1) as u32, name.len() as u32);
    *open += 1;
    let colon = space(json, end + 1);
    if json.get(colon) != Some(&b':') {
        return None;
    }
    Some(space(json, colon + 1))
}

/// The envelope slot a top-level key names.
#[inline(always)]
fn which(json: &[u8], (start, len): (u32, u32)) -> Option<usize> {
    match json.get(start as usize..(start + len) as usize)? {
        b"jsonrpc" => Some(JSONRPC),
        b"id" => Some(ID),
        b"method" => Some(METHOD),
        b"params" => Some(PARAMS),
        b"result" => Some(RESULT),
        b"error" => Some(ERROR),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envelope members in the order of [`Fields`]'s slots.
    const NAMES: [&[u8]; 6] = [b"jsonrpc", b"id", b"method", b"params", b"result", b"error"];

    fn ok(s: &str) -> bool {
        scan(s.as_bytes(), 64).is_some()
    }

    #[test]
    fn reads_the_envelope_members() {
        let s = r#" {"jsonrpc" : "2.0", "x":[1,{"a":null}], "id":7 ,"method":"tools/call","params":{"name":"a b"}} "#;
        let f = scan(s.as_bytes(), 64).unwrap();
        assert_eq!(f.get(s, JSONRPC), Some(r#""2.0""#));
        assert_eq!(f.get(s, ID), Some("7"));
        assert_eq!(f.get(s, METHOD), Some(r#""tools/call""#));
        assert_eq!(f.get(s, PARAMS), Some(r#"{"name":"a b"}"#));
        assert_eq!(f.get(s, RESULT), None);
        assert_eq!(f.get(s, ERROR), None);
        // Members of nested objects are not the envelope's.
        let s = r#"{"a":{"id":1},"result":[{"error":2}]}"#;
        let f = scan(s.as_bytes(), 64).unwrap();
        assert_eq!(f.get(s, ID), None);
        assert_eq!(f.get(s, RESULT), Some(r#"[{"error":2}]"#));
        assert_eq!(f.get(s, ERROR), None);
    }

    #[test]
    fn leaves_everything_unusual_to_the_full_path() {
        for s in [
            "",
            "[1]",
            "1",
            r#"{"a":1,"a":2}"#,
            r#"{"\u0061":1}"#,
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":trux,"b":1}"#,
            r#"{"a":nulx,"b":1}"#,
            r#"{"a":falsy,"b":1}"#,
            r#"{"a":"x\q"}"#,
            r#"{"a":"x\u12g4"}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":1}\u{c}",
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":{]}"#,
            r#"{"a":"#,
            r#"{"a":"unterminated}"#,
            &format!(
                "{}1{}",
                r#"{"a":"#.to_owned() + &"[".repeat(20),
                "]".repeat(20) + "}"
            ),
        ] {
            assert!(!ok(s), "{s:?}");
        }
        for s in [
            r#"{}"#,
            r#"{"a":[],"b":{},"c":-0.5e+3,"d":"\u00e9\n\"","e":[true,false,null]}"#,
        ] {
            assert!(ok(s), "{s:?}");
        }
    }

    /// Past the scan's sizes (left to the full path) half of the time, within them the other.
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        proptest::prop_oneof![
            generated(20, 6, 20, true).boxed(),
            generated(5, 5, 4, true).boxed()
        ]
    }

    /// Generated objects within the scan's sizes (depth, keys per object, keys open at once),
    /// no key spelt with escapes.
    fn ordinary() -> impl proptest::strategy::Strategy<Value = String> {
        generated(5, 5, 4, false)
    }

    /// Objects with envelope members among others; `depth` levels of nesting below the top,
    /// `keys` members at most in a nested object, some keys spelt with escapes when `escapes`.
    fn generated(
        depth: u32,
        items: usize,
        keys: usize,
        escapes: bool,
    ) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let escaped = if escapes { "\\u0069d" } else { "ids" };
        let key = prop_oneof![
            Just("jsonrpc".to_owned()),
            Just("id".to_owned()),
            Just("method".to_owned()),
            Just("params".to_owned()),
            Just("result".to_owned()),
            Just("error".to_owned()),
            "[a-z]{1,3}",
            // Near the envelope's names, but not them.
            prop_oneof![
                Just("i"),
                Just("err"),
                Just("jsonrp"),
                Just("methods"),
                Just("Id")
            ]
            .prop_map(str::to_owned),
            Just(escaped.to_owned()),
        ];
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("\"2.0\"".to_owned()),
            Just("\"a\\\"\\u00e9\\ud800b\"".to_owned()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,2})?([eE][+-]?[0-9]{1,3})?",
            "\"[ !#-\\[\\]-~]{0,20}\"",
        ];
        let value = leaf.prop_recursive(depth, 200, items as u32, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..items)
                    .prop_map(|v| format!("[{}]", v.join(" , "))),
                proptest::collection::vec(("[a-c]{1,2}", inner), 0..keys).prop_map(|v| {
                    let body: Vec<String> =
                        v.into_iter().map(|(k, x)| format!("\"{k}\":{x}")).collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        });
        // Most generated objects are nearly envelopes: a `jsonrpc` member first, a method
        // spelt in one of several ways.
        let jsonrpc = prop_oneof![
            3 => Just("\"jsonrpc\":\"2.0\","),
            1 => Just(""),
            1 => Just("\"jsonrpc\":\"2\\u002e0\","),
            1 => Just("\"jsonrpc\":\"2.1\","),
            1 => Just("\"jsonrpc\":null,"),
        ];
        let method = prop_oneof![
            Just(""),
            Just("\"method\":\"tools/call\","),
            Just("\"method\":\"tools\\/call\","),
            Just("\"method\":\"\\ud800\","),
            Just("\"method\":null,"),
            Just("\"method\":7,"),
        ];
        (
            jsonrpc,
            method,
            proptest::collection::vec((key, value), 0..8),
        )
            .prop_map(|(j, m, v)| {
                let body: Vec<String> = v
                    .into_iter()
                    .map(|(k, x)| format!("\n\"{k}\" :\t{x}"))
                    .collect();
                format!("{{{j}{m}\"id\":1,{}}}", body.join(","))
            })
    }

    /// One byte of the generated text changed: mostly invalid JSON, which the scan must leave to
    /// the full path.
    fn mutated() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        (json_text(), any::<proptest::sample::Index>(), any::<u8>()).prop_map(|(s, at, b)| {
            let mut v = s.into_bytes();
            let at = at.index(v.len());
            v[at] = b;
            v
        })
    }

    /// What serde_json reads as the envelope members of a valid object (keeping every member:
    /// a `Value` map would hide repeated keys).
    fn serde_members(json: &str) -> Option<Vec<(String, String)>> {
        let map: Vec<(String, String)> = serde_json::from_str::<
            std::collections::BTreeMap<String, &serde_json::value::RawValue>,
        >(json)
        .ok()?
        .into_iter()
        .filter(|(k, _)| NAMES.contains(&k.as_bytes()))
        .map(|(k, v)| (k, v.get().to_owned()))
        .collect();
        Some(map)
    }

    proptest::proptest! {
        #[test]
        fn never_accepts_what_serde_json_refuses_and_reads_the_same_members(json in json_text()) {
            if let Some(f) = scan(json.as_bytes(), 64) {
                let members = serde_members(&json);
                proptest::prop_assert!(members.is_some(), "accepted what serde_json refuses: {}", json);
                proptest::prop_assert!(crate::unique::first_duplicate(json.as_bytes()).is_none(), "{}", json);
                let ours: Vec<(String, String)> = NAMES
                    .iter()
                    .enumerate()
                    .filter_map(|(slot, n)| {
                        f.get(&json, slot)
                            .map(|v| (String::from_utf8_lossy(n).into_owned(), v.to_owned()))
                    })
                    .collect();
                let mut ours = ours;
                ours.sort();
                proptest::prop_assert_eq!(Some(ours), members, "{}", json);
            }
        }

        /// The envelope read from the scan's spans is the one serde_json reads, member by member,
        /// and so are the refusals (the spellings the fast path leaves to serde_json included).
        #[test]
        fn the_envelope_from_the_scan_is_serde_jsons(json in json_text()) {
            let full = crate::Message::parse_full(json.as_bytes());
            let fast = crate::Message::parse(json.as_bytes());
            proptest::prop_assert_eq!(
                full.as_ref().ok().and_then(crate::Message::id_span),
                fast.as_ref().ok().and_then(crate::Message::id_span)
            );
            proptest::prop_assert_eq!(full, fast, "{}", json);
        }

        /// The fast path is the common path: an ordinary object without a repeated key is read.
        #[test]
        fn ordinary_messages_take_the_fast_path(json in ordinary()) {
            if serde_json::from_str::<serde::de::IgnoredAny>(&json).is_ok()
                && crate::unique::first_duplicate(json.as_bytes()).is_none()
            {
                proptest::prop_assert!(scan(json.as_bytes(), 64).is_some(), "{}", json);
            }
        }

        #[test]
        fn broken_bytes_are_never_accepted(bytes in mutated()) {
            if let Ok(text) = std::str::from_utf8(&bytes)
                && scan(&bytes, 64).is_some()
            {
                proptest::prop_assert!(
                    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
                    "accepted what serde_json refuses: {}",
                    text
                );
            }
        }
    }
}
