//! Where a JSON string ends: the one scan inside strings that the depth limit
//! ([`crate::limits::max_depth`]) and the repeated-key rule ([`crate::unique`]) share. Inside a
//! string only `"` and `\` matter. Most strings of a message are short (keys, ids, names), where a
//! `memchr` call costs more than the string, so the first 64 bytes are read eight at a time in a
//! register; a longer string (a tool result's text) goes on with `memchr`.
//!
//! It runs on every message in both directions (the benchmarked path); it never panics and never
//! reads past the slice.

/// How far the word-at-a-time loop reads before handing the rest to `memchr`.
const SHORT: usize = 64;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in the bytes of `w` equal to `b`. Bytes above a true match may
/// be flagged too (the borrow), never bytes below one: the lowest flag is always a true match.
#[inline(always)]
fn matches(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * b as u64);
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The first `"` or `\` at or after `from`.
#[inline]
fn next_special(json: &[u8], from: usize) -> Option<usize> {
    let mut j = from;
    let short_end = json.len().min(from.saturating_add(SHORT));
    while let Some(chunk) = json.get(j..j + 8).filter(|_| j + 8 <= short_end) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let m = matches(w, b'"') | matches(w, b'\\');
        if m != 0 {
            return Some(j + (m.trailing_zeros() / 8) as usize);
        }
        j += 8;
    }
    if short_end == json.len() {
        while let Some(&b) = json.get(j) {
            if b == b'"' || b == b'\\' {
                return Some(j);
            }
            j += 1;
        }
        return None;
    }
    memchr::memchr2(b'"', b'\\', json.get(j..)?).map(|k| j + k)
}

/// The end of the string whose contents start at `start`: the index of its closing quote (or
/// `json.len()` when it is unterminated), and whether it has escapes.
#[inline]
pub(crate) fn string_end(json: &[u8], start: usize) -> (usize, bool) {
    let mut j = start;
    let mut escaped = false;
    loop {
        match next_special(json, j) {
            None => return (json.len(), escaped),
            Some(k) if json[k] == b'"' => return (k, escaped),
            Some(k) => {
                escaped = true;
                j = k + 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::string_end;

    /// The byte-at-a-time reading the fast one must agree with.
    fn reference(json: &[u8], start: usize) -> (usize, bool) {
        let (mut j, mut escaped) = (start, false);
        while j < json.len() {
            match json[j] {
                b'"' => return (j, escaped),
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                _ => j += 1,
            }
        }
        (json.len(), escaped)
    }

    #[test]
    fn finds_the_closing_quote_past_escapes_at_every_length() {
        for n in 0..200 {
            let body = "a".repeat(n);
            let s = format!("\"{body}\" tail\"");
            assert_eq!(string_end(s.as_bytes(), 1), (n + 1, false), "{n}");
            let esc = format!("\"{body}\\\"x\" tail");
            assert_eq!(string_end(esc.as_bytes(), 1), (n + 4, true), "{n}");
            let open = format!("\"{body}");
            assert_eq!(string_end(open.as_bytes(), 1), (n + 1, false), "{n}");
        }
        // A trailing backslash at the very end: unterminated, no read past the slice.
        assert_eq!(string_end(b"\"abc\\", 1), (5, true));
        assert_eq!(string_end(b"\"", 5), (1, false));
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_reference(
            bytes in proptest::collection::vec(
                proptest::sample::select(&b"\"\\aaaaaaaaaaaaaa\xff"[..]), 0..300),
            start in 0usize..12,
        ) {
            proptest::prop_assert_eq!(string_end(&bytes, start), reference(&bytes, start));
        }
    }
}
