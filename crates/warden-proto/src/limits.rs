//! Limits checked on raw bytes before any JSON parse (P1.1): size, UTF-8 validity and nesting depth.
//!
//! The depth scan is a single linear pass that tracks strings and escapes, so a hostile body such as
//! `[[[[…` is refused before a recursive parser ever sees it.

/// Bounds applied to one JSON-RPC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of arrays and objects.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// Why raw bytes were refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("message is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("message nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("message is not valid UTF-8 (at byte {at})")]
    InvalidUtf8 { at: usize },
}

impl Limits {
    /// Check size, UTF-8 and depth of one message. Linear time, no allocation.
    pub fn check(&self, bytes: &[u8]) -> Result<(), LimitError> {
        self.size_and_utf8(bytes)?;
        if max_depth(bytes, self.max_depth).is_none() {
            return Err(LimitError::TooDeep {
                limit: self.max_depth,
            });
        }
        Ok(())
    }

    /// [`Self::check`] and, in the same pass over the bytes, the repeated-key scan
    /// [`crate::Message::parse_scanned`] needs: one walk instead of two on the hot path.
    pub fn check_scanned<'a>(&self, bytes: &'a [u8]) -> Result<Scanned<'a>, LimitError> {
        let text = self.size_and_utf8(bytes)?;
        // Nearly every message: one validating pass that also finds the envelope members.
        if let Some(fields) = crate::scan::scan(bytes, self.max_depth) {
            return Ok(Scanned {
                text,
                duplicate: None,
                fields: Some(fields),
            });
        }
        let walk = crate::unique::walk(bytes, self.max_depth);
        if walk.too_deep {
            return Err(LimitError::TooDeep {
                limit: self.max_depth,
            });
        }
        Ok(Scanned {
            text,
            duplicate: walk.duplicate,
            fields: None,
        })
    }

    fn size_and_utf8<'a>(&self, bytes: &'a [u8]) -> Result<&'a str, LimitError> {
        if bytes.len() > self.max_bytes {
            return Err(LimitError::TooLarge {
                size: bytes.len(),
                limit: self.max_bytes,
            });
        }
        std::str::from_utf8(bytes).map_err(|e| LimitError::InvalidUtf8 {
            at: e.valid_up_to(),
        })
    }
}

/// Bytes that passed [`Limits::check_scanned`], with what its walk found; only
/// [`crate::Message::parse_scanned`] reads it, and only for these very bytes.
#[derive(Debug)]
pub struct Scanned<'a> {
    pub(crate) text: &'a str,
    pub(crate) duplicate: Option<String>,
    /// Where the envelope members are, when the validating scan read the message.
    pub(crate) fields: Option<crate::scan::Fields>,
}

impl<'a> Scanned<'a> {
    /// The bytes that were checked.
    pub fn raw(&self) -> &'a [u8] {
        self.text.as_bytes()
    }
}

/// Deepest nesting of `[`/`{` outside strings, or `None` as soon as it exceeds `limit`.
///
/// Inside a string only `"` and `\` matter: the scan jumps to the string's end
/// ([`crate::string_end`]; message bodies are mostly string content).
pub fn max_depth(bytes: &[u8], limit: usize) -> Option<usize> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'"' => {
                let (end, _) = crate::string_end::string_end(bytes, i);
                if end >= bytes.len() {
                    return Some(deepest); // unterminated: nothing after it nests
                }
                i = end + 1;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return None;
                }
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Some(deepest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_oversize_deep_and_invalid_utf8() {
        let l = Limits {
            max_bytes: 16,
            max_depth: 3,
        };
        assert_eq!(l.check(b"{\"a\":[[1]]}"), Ok(()));
        assert_eq!(l.check(b"[[[[1]]]]"), Err(LimitError::TooDeep { limit: 3 }));
        assert!(matches!(
            l.check(&[b'x'; 17]),
            Err(LimitError::TooLarge { .. })
        ));
        assert_eq!(l.check(b"\"\xff\""), Err(LimitError::InvalidUtf8 { at: 1 }));
        // The walk that also looks for repeated keys refuses exactly the same.
        for bytes in [
            &b"{\"a\":[[1]]}"[..],
            b"[[[[1]]]]",
            &[b'x'; 17],
            b"\"\xff\"",
            b"{\"a\":1,\"a\":[[[[2]]]]}",
        ] {
            assert_eq!(l.check(bytes), l.check_scanned(bytes).map(|_| ()));
        }
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert_eq!(max_depth(br#"{"a":"[[[[\"{{{{"}"#, 2), Some(1));
        assert_eq!(max_depth(br#"["\\",[["x"]]]"#, 8), Some(3));
        assert_eq!(max_depth(br#"["\\\"[[[[[[",[1]]"#, 8), Some(2));
        assert_eq!(max_depth(br#"{"a":"unterminated \"#, 8), Some(1));
    }

    /// The byte-at-a-time scan the fast one must agree with.
    fn reference_depth(bytes: &[u8], limit: usize) -> Option<usize> {
        let (mut depth, mut deepest) = (0usize, 0usize);
        let (mut in_string, mut escaped) = (false, false);
        for &b in bytes {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > limit {
                        return None;
                    }
                    deepest = deepest.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Some(deepest)
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_reference_scan(
            bytes in proptest::collection::vec(
                proptest::sample::select(&b"[]{}\"\\ax"[..]), 0..64),
            limit in 0usize..6,
        ) {
            proptest::prop_assert_eq!(max_depth(&bytes, limit), reference_depth(&bytes, limit));
            // The fused walk judges depth the same way.
            proptest::prop_assert_eq!(
                crate::unique::walk(&bytes, limit).too_deep,
                reference_depth(&bytes, limit).is_none()
            );
        }
    }
}
