//! Byte-span edits over an original message: the only way Warden changes a message it relays.
//!
//! An edit replaces one span (found with [`crate::envelope::span_in`]) and leaves every other byte
//! as it was, so unknown fields, key order and number spelling survive an edit.

use std::ops::Range;

/// Non-overlapping replacements over one buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Edits {
    edits: Vec<(Range<usize>, Vec<u8>)>,
}

/// Edits overlap or fall outside the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("edit spans overlap or fall outside the message")]
pub struct EditError;

impl Edits {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn replace(&mut self, span: Range<usize>, with: impl Into<Vec<u8>>) -> &mut Self {
        self.edits.push((span, with.into()));
        self
    }
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }
    /// Apply all edits to `raw`, producing the edited message.
    pub fn apply(mut self, raw: &[u8]) -> Result<Vec<u8>, EditError> {
        self.edits.sort_by_key(|(r, _)| r.start);
        let mut out =
            Vec::with_capacity(raw.len() + self.edits.iter().map(|(_, w)| w.len()).sum::<usize>());
        let mut at = 0;
        for (span, with) in &self.edits {
            if span.start < at || span.end < span.start || span.end > raw.len() {
                return Err(EditError);
            }
            out.extend_from_slice(&raw[at..span.start]);
            out.extend_from_slice(with);
            at = span.end;
        }
        out.extend_from_slice(&raw[at..]);
        Ok(out)
    }
}

/// Replace one span.
pub fn replace(raw: &[u8], span: Range<usize>, with: &[u8]) -> Result<Vec<u8>, EditError> {
    let mut e = Edits::new();
    e.replace(span, with);
    e.apply(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Message;

    #[test]
    fn replaces_id_and_keeps_everything_else() {
        let raw =
            br#"{"jsonrpc":"2.0", "id" : 17 ,"result":{"big":12345678901234567890,"x":"\u00e9"}}"#;
        let m = Message::parse(raw).unwrap();
        let out = replace(raw, m.id_span().unwrap(), br#""w-1""#).unwrap();
        assert_eq!(out, br#"{"jsonrpc":"2.0", "id" : "w-1" ,"result":{"big":12345678901234567890,"x":"\u00e9"}}"#);
    }

    #[test]
    fn refuses_overlap_and_out_of_range() {
        let mut e = Edits::new();
        e.replace(0..3, "a").replace(2..4, "b");
        assert_eq!(e.apply(b"abcdef"), Err(EditError));
        assert_eq!(replace(b"ab", 1..5, b"x"), Err(EditError));
    }
}
