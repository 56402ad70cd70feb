//! Streamed JSON bodies: a non-SSE response body that carries several JSON-RPC messages one after
//! another (newline-delimited JSON under `application/json`, as some servers answer
//! `subscriptions/listen`), split into its messages as they arrive.
//!
//! [`ValueScanner`] finds where each top-level JSON value ends without parsing it (strings and
//! escapes are tracked, nesting is only counted), so a message is handed on the moment its last
//! byte arrives, whatever the chunking and whether or not the sender pretty-prints. Whitespace
//! between values is framing, not content, and is dropped; each value keeps its exact bytes.
//! [`JsonSeqDecoder`] owns the buffer and bounds each value by `max_value` bytes (the per-message
//! limit): an oversize value is an error, never an allocation spree. It must not judge whether a
//! value is a valid JSON-RPC message — [`crate::Message::parse`] does that, frame by frame.

use bytes::{Bytes, BytesMut};

/// Why a streamed JSON body cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    #[error("a streamed JSON message exceeds {0} bytes")]
    ValueTooLarge(usize),
    #[error("a streamed JSON body holds something that is not a JSON object or array")]
    NotJson,
    #[error("a streamed JSON body ended inside a message")]
    Truncated,
}

/// Incremental finder of top-level JSON value boundaries over a growing buffer. The caller owns
/// the buffer: [`Self::next`] scans what is new since the last call, [`Self::consumed`] says the
/// caller dropped a prefix.
#[derive(Debug, Default, Clone)]
pub struct ValueScanner {
    /// Next byte to look at.
    pos: usize,
    /// Where the value being scanned started.
    start: Option<usize>,
    depth: u32,
    in_string: bool,
    escape: bool,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl ValueScanner {
    /// The span of the next complete top-level value in `buf`, scanning on from where the last
    /// call stopped; `None` when more bytes are needed. Only objects and arrays may stand at the
    /// top level (a JSON-RPC message is one or the other).
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<std::ops::Range<usize>>, SeqError> {
        while self.pos < buf.len() {
            let i = self.pos;
            let b = buf[i];
            self.pos += 1;
            let Some(start) = self.start else {
                match b {
                    b'{' | b'[' => {
                        self.start = Some(i);
                        self.depth = 1;
                    }
                    _ if is_ws(b) => {}
                    _ => return Err(SeqError::NotJson),
                }
                continue;
            };
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                b'}' | b']' => {
                    self.depth -= 1; // depth >= 1 inside a value
                    if self.depth == 0 {
                        self.start = None;
                        return Ok(Some(start..i + 1));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Is a value under way (some of it scanned, its end not yet seen)?
    pub fn in_value(&self) -> bool {
        self.start.is_some()
    }

    /// Where the value under way started, if one is.
    pub fn value_start(&self) -> Option<usize> {
        self.start
    }

    /// The caller removed the first `n` bytes of its buffer (all of them scanned).
    pub fn consumed(&mut self, n: usize) {
        self.pos -= n.min(self.pos);
        self.start = self.start.map(|s| s - n.min(s));
    }
}

/// Splits a streamed JSON body into its values, each as its exact bytes.
#[derive(Debug)]
pub struct JsonSeqDecoder {
    buf: BytesMut,
    scanner: ValueScanner,
    max_value: usize,
}

impl JsonSeqDecoder {
    /// A decoder whose values may be at most `max_value` bytes each.
    pub fn new(max_value: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanner: ValueScanner::default(),
            max_value,
        }
    }

    /// Feed a chunk; complete values are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Bytes>) -> Result<(), SeqError> {
        self.buf.extend_from_slice(chunk);
        while let Some(span) = self.scanner.next(&self.buf)? {
            if span.len() > self.max_value {
                return Err(SeqError::ValueTooLarge(self.max_value));
            }
            let mut head = self.buf.split_to(span.end);
            self.scanner.consumed(span.end);
            out.push(head.split_off(span.start).freeze());
        }
        match self.scanner.value_start() {
            // Whitespace before the next value is framing: dropped, never buffered.
            None => {
                self.scanner.consumed(self.buf.len());
                self.buf.clear();
            }
            Some(s) if self.buf.len() - s > self.max_value => {
                return Err(SeqError::ValueTooLarge(self.max_value));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// The body ended: an unfinished value is an error.
    pub fn finish(&self) -> Result<(), SeqError> {
        if self.scanner.in_value() {
            return Err(SeqError::Truncated);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Result<Vec<Bytes>, SeqError> {
        let mut d = JsonSeqDecoder::new(max);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out)?;
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn splits_ndjson_and_keeps_each_value_exact() {
        let body = b"{\"a\":1}\n{ \"b\" : [1, {\"c\":\"}\\\"{\"}] }\r\n\n[1]\n";
        let whole = split(&[body], 1024).unwrap();
        assert_eq!(
            whole,
            vec![
                Bytes::from_static(b"{\"a\":1}"),
                Bytes::from_static(b"{ \"b\" : [1, {\"c\":\"}\\\"{\"}] }"),
                Bytes::from_static(b"[1]"),
            ]
        );
        // Byte by byte gives the same values.
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(split(&bytes, 1024).unwrap(), whole);
    }

    #[test]
    fn pretty_printed_values_are_one_value_each() {
        let body = b"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1\n}\n";
        assert_eq!(split(&[body], 1024).unwrap().len(), 1);
    }

    #[test]
    fn limits_apply_per_value() {
        let v = br#"{"x":"0123456789"}"#;
        let mut body = Vec::new();
        for _ in 0..10 {
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        assert_eq!(split(&[&body], v.len()).unwrap().len(), 10);
        assert_eq!(
            split(&[&body], v.len() - 1),
            Err(SeqError::ValueTooLarge(v.len() - 1))
        );
        // An unfinished oversize value is refused before its end arrives.
        let mut d = JsonSeqDecoder::new(8);
        assert!(d.feed(b"{\"xxxxxxxxxxxx", &mut Vec::new()).is_err());
    }

    #[test]
    fn refuses_what_is_not_a_json_value_and_truncation() {
        assert_eq!(split(&[b"{} x"], 64), Err(SeqError::NotJson));
        assert_eq!(split(&[b"\"str\""], 64), Err(SeqError::NotJson));
        assert_eq!(split(&[b"{\"a\":"], 64), Err(SeqError::Truncated));
        assert_eq!(split(&[b" \n "], 64).unwrap(), Vec::<Bytes>::new());
    }

    #[test]
    fn scanner_over_a_caller_buffer() {
        let mut s = ValueScanner::default();
        let mut buf = b"{\"a\":".to_vec();
        assert_eq!(s.next(&buf).unwrap(), None);
        assert!(s.in_value());
        buf.extend_from_slice(b"1} {");
        assert_eq!(s.next(&buf).unwrap(), Some(0..7));
        assert_eq!(s.next(&buf).unwrap(), None);
        assert_eq!(s.value_start(), Some(8));
    }
}
