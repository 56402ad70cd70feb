//! Server-Sent Events framing (the `text/event-stream` side of Streamable HTTP).
//!
//! [`SseDecoder`] splits an incoming byte stream into event blocks and keeps each block's original
//! bytes, so a relay that changes nothing forwards the block exactly — ids, `retry:`, comments and
//! the priming event (id with empty data) included. [`encode`] writes a block when Warden makes one.
//! Blocks are bounded by `max_block` bytes; an oversize block is an error, never an allocation spree.

use bytes::{Bytes, BytesMut};

/// One event block as received: its original bytes and the fields Warden reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseBlock {
    /// The exact bytes of the block including its terminating blank line.
    pub raw: Bytes,
    pub id: Option<String>,
    pub event: Option<String>,
    /// Joined `data:` lines; `None` when the block had no data field (e.g. a comment or id-only block).
    pub data: Option<String>,
    pub retry: Option<u64>,
    /// True when the block holds only comment lines (keep-alives).
    pub comment_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("SSE event block exceeds {0} bytes")]
    BlockTooLarge(usize),
    #[error("SSE stream is not valid UTF-8")]
    InvalidUtf8,
}

/// Incremental SSE decoder.
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    max_block: usize,
    pos: usize,
    line_start: usize,
    started: bool,
}

impl SseDecoder {
    pub fn new(max_block: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_block,
            pos: 0,
            line_start: 0,
            started: false,
        }
    }

    /// Feed a chunk; complete blocks are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseBlock>) -> Result<(), SseError> {
        self.buf.extend_from_slice(chunk);
        if !self.started {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                return Ok(()); // may still be a BOM: decide before scanning anything
            }
            self.started = true;
            if self.buf.starts_with(BOM) {
                let _ = self.buf.split_to(BOM.len());
            }
        }
        loop {
            match find_block_end(&self.buf, &mut self.pos, &mut self.line_start) {
                Some(end) => {
                    if end > self.max_block {
                        return Err(SseError::BlockTooLarge(self.max_block));
                    }
                    let raw = self.buf.split_to(end).freeze();
                    (self.pos, self.line_start) = (0, 0);
                    let block = parse_block(raw)?;
                    if block.data.is_some()
                        || block.id.is_some()
                        || block.retry.is_some()
                        || block.event.is_some()
                        || block.comment_only
                    {
                        out.push(block);
                    }
                }
                None => {
                    if self.buf.len() > self.max_block {
                        return Err(SseError::BlockTooLarge(self.max_block));
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Bytes of an unfinished block left at end of stream (dropped per the SSE rules).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Scan `buf` from `*pos` (with the current line starting at `*line_start`) for the blank line
/// that ends a block; returns the index just past it. State carries over between calls so a block
/// fed byte by byte is still scanned once.
fn find_block_end(buf: &[u8], pos: &mut usize, line_start: &mut usize) -> Option<usize> {
    while *pos < buf.len() {
        let b = buf[*pos];
        if b != b'\n' && b != b'\r' {
            *pos += 1;
            continue;
        }
        let term_len = match (b, buf.get(*pos + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r', None) => return None, // a trailing \r may be the first half of \r\n
            _ => 1,
        };
        let blank = *pos == *line_start;
        *pos += term_len;
        *line_start = *pos;
        if blank {
            return Some(*pos);
        }
    }
    None
}

fn parse_block(raw: Bytes) -> Result<SseBlock, SseError> {
    let text = std::str::from_utf8(&raw).map_err(|_| SseError::InvalidUtf8)?;
    let mut block = SseBlock::default();
    let mut data: Option<String> = None;
    let (mut fields, mut comments) = (0usize, 0usize);
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if line.starts_with(':') {
            comments += 1;
            continue;
        }
        fields += 1;
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match name {
            "data" => {
                let d = data.get_or_insert_with(String::new);
                d.push_str(value);
                d.push('\n');
            }
            "id" if !value.contains('\0') => block.id = Some(value.to_owned()),
            "event" => block.event = Some(value.to_owned()),
            "retry" => block.retry = value.parse().ok(),
            _ => {}
        }
    }
    block.comment_only = fields == 0 && comments > 0;
    if let Some(d) = data.as_mut() {
        d.pop();
    }
    block.data = data;
    block.raw = raw;
    Ok(block)
}

/// Encode one event block. `data` may hold newlines; each line becomes a `data:` field.
pub fn encode(
    id: Option<&str>,
    event: Option<&str>,
    retry: Option<u64>,
    data: Option<&str>,
) -> Bytes {
    let mut out = String::with_capacity(data.map_or(0, str::len) + 32);
    if let Some(e) = event {
        out.push_str("event: ");
        out.push_str(e);
        out.push('\n');
    }
    if let Some(i) = id {
        out.push_str("id: ");
        out.push_str(i);
        out.push('\n');
    }
    if let Some(r) = retry {
        out.push_str("retry: ");
        out.push_str(&r.to_string());
        out.push('\n');
    }
    if let Some(d) = data {
        for line in d.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    Bytes::from(out)
}

/// `raw` (one block as [`SseDecoder`] read it) with `prefix` put in front of the value of the
/// field that sets its event id (the last `id` line without a NUL), every other byte as it was.
/// `None` when no such line has a value to prefix.
pub fn prefix_id(raw: &[u8], prefix: &str) -> Option<Bytes> {
    let mut at = None;
    let mut start = 0;
    while start < raw.len() {
        let end = raw[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map_or(raw.len(), |p| start + p);
        let line = &raw[start..end];
        if let Some(rest) = line.strip_prefix(b"id")
            && !rest.contains(&0)
        {
            match rest.strip_prefix(b":") {
                Some(v) => {
                    let skip = usize::from(v.first() == Some(&b' '));
                    at = (v.len() > skip).then_some(start + 3 + skip);
                }
                None if rest.is_empty() => at = None,
                None => {}
            }
        }
        start = end + 1;
    }
    let at = at?;
    let mut out = Vec::with_capacity(raw.len() + prefix.len());
    out.extend_from_slice(&raw[..at]);
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(&raw[at..]);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_goes_in_front_of_the_effective_id_only() {
        let p = |raw: &str| {
            prefix_id(raw.as_bytes(), "M.").map(|b| String::from_utf8(b.to_vec()).unwrap())
        };
        assert_eq!(
            p("id: 7\ndata: x\n\n").as_deref(),
            Some("id: M.7\ndata: x\n\n")
        );
        assert_eq!(
            p("event: e\r\nid:7\r\n: c\r\n\r\n").as_deref(),
            Some("event: e\r\nid:M.7\r\n: c\r\n\r\n")
        );
        assert_eq!(p("id: 1\nid: 2\n\n").as_deref(), Some("id: 1\nid: M.2\n\n"));
        assert_eq!(
            p("id: 1\nid: 2\0\n\n").as_deref(),
            Some("id: M.1\nid: 2\0\n\n")
        );
        assert_eq!(
            p("id: 1\nidx: 2\n\n").as_deref(),
            Some("id: M.1\nidx: 2\n\n")
        );
        assert_eq!(p("id: 1\nid\n\n"), None, "the id was reset");
        assert_eq!(p("id: \n\n"), None);
        assert_eq!(p("data: id: 1\n\n"), None);
    }

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseBlock> {
        let mut d = SseDecoder::new(1 << 16);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn keeps_raw_bytes_ids_retry_and_priming_event() {
        let stream: &[u8] = b"id: s1-0\nretry: 500\ndata: \n\nevent: message\nid: s1-1\ndata: {\"a\":1}\n\n: keep-alive\n\n";
        let blocks = decode_all(&[stream]);
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].id.as_deref(), Some("s1-0"));
        assert_eq!(blocks[0].retry, Some(500));
        assert_eq!(blocks[0].data.as_deref(), Some(""));
        assert_eq!(blocks[1].data.as_deref(), Some("{\"a\":1}"));
        assert!(blocks[2].comment_only);
        let rejoined: Vec<u8> = blocks.iter().flat_map(|b| b.raw.to_vec()).collect();
        assert_eq!(rejoined, stream);
    }

    #[test]
    fn splits_across_chunks_and_line_endings() {
        let blocks = decode_all(&[b"data: a\r", b"\ndata: b\r\n\r", b"\ndata: c\r\r", b"\n"]);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].data.as_deref(), Some("a\nb"));
        assert_eq!(blocks[1].data.as_deref(), Some("c"));
    }

    #[test]
    fn refuses_oversize_blocks_whatever_the_chunking() {
        let mut d = SseDecoder::new(8);
        let mut out = Vec::new();
        assert_eq!(
            d.feed(b"data: 0123456789\n\n", &mut out),
            Err(SseError::BlockTooLarge(8)),
            "a whole block in one chunk"
        );
        let one_shot = decode_all(&[b"\xEF\xBB\xBFdata: a\n\n"]);
        let split = decode_all(&[b"\xEF\xBB", b"\xBFdata: a\n\n"]);
        assert_eq!(
            one_shot, split,
            "a BOM split across chunks is handled the same"
        );
        assert_eq!(one_shot[0].data.as_deref(), Some("a"));
    }

    #[test]
    fn refuses_oversize_blocks() {
        let mut d = SseDecoder::new(8);
        let mut out = Vec::new();
        assert_eq!(
            d.feed(b"data: 0123456789", &mut out),
            Err(SseError::BlockTooLarge(8))
        );
    }

    #[test]
    fn encode_round_trips() {
        let raw = encode(Some("7"), Some("message"), None, Some("x\ny"));
        let blocks = decode_all(&[&raw]);
        assert_eq!(blocks[0].id.as_deref(), Some("7"));
        assert_eq!(blocks[0].data.as_deref(), Some("x\ny"));
        assert_eq!(blocks[0].raw, raw);
    }
}
