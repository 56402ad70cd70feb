//! Fuzz target `sse`: an SSE byte stream fed to `SseDecoder::new(4096)` in arbitrary chunks.
//!
//! Input framing: byte 0 = n: n % 16 is the number of split points (15 = feed byte by byte), n / 16
//! picks a second, small block limit (32 + 16 * (n / 16)) so that oversize blocks are easy to reach;
//! then the big-endian u16 split offsets (modulo the stream length + 1); the rest is the stream.
//! Every check runs with the 4096-byte limit Warden uses and with the small one.
//!
//! Invariants: chunked feeding gives exactly the blocks (and the error, if any) of a one-shot feed;
//! every emitted `raw` is one of the blocks of an independent blank-line splitter over the input
//! (minus a leading UTF-8 BOM), in order, so their concatenation is a prefix of the input whenever
//! no empty block was skipped; consumed + pending bytes account for the whole input; no block is
//! larger than the limit; no block that carries a `data` field is dropped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_proto::sse::{SseBlock, SseDecoder, SseError};

const LIMIT: usize = 4096;
const BOM: &[u8] = b"\xEF\xBB\xBF";

type Run = (Vec<SseBlock>, Result<(), SseError>, usize);

fn run(chunks: &[&[u8]], limit: usize) -> Run {
    let mut d = SseDecoder::new(limit);
    let mut out = Vec::new();
    for c in chunks {
        if let Err(e) = d.feed(c, &mut out) {
            return (out, Err(e), d.pending());
        }
    }
    let pending = d.pending();
    (out, Ok(()), pending)
}

/// Independent splitter: blocks end at an empty line (lines end with CRLF, LF or CR). A final lone
/// CR is undecided (it may be half of CRLF), as for a live stream. Returns (blocks, consumed).
fn reference_blocks(s: &[u8]) -> (Vec<&[u8]>, usize) {
    let (mut blocks, mut start, mut line_start, mut i) = (Vec::new(), 0, 0, 0);
    while i < s.len() {
        let len = match (s[i], s.get(i + 1)) {
            (b'\r', None) => break,
            (b'\r', Some(b'\n')) => 2,
            (b'\r' | b'\n', _) => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        let blank = i == line_start;
        i += len;
        line_start = i;
        if blank {
            blocks.push(&s[start..i]);
            start = i;
        }
    }
    (blocks, start)
}

fn has_data_field(block: &[u8]) -> bool {
    block
        .split(|b| *b == b'\n' || *b == b'\r')
        .any(|l| l == b"data" || l.starts_with(b"data:"))
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let small_limit = 32 + 16 * usize::from(n / 16);
    let n = usize::from(n % 16);
    let (byte_by_byte, n) = (n == 15, n.min(14));
    if rest.len() < 2 * n {
        return;
    }
    let (offsets, stream) = rest.split_at(2 * n);
    let mut cuts: Vec<usize> = offsets
        .chunks(2)
        .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    if byte_by_byte {
        cuts = (0..stream.len()).collect();
    }
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain([stream.len()]) {
        chunks.push(&stream[at..c]);
        at = c;
    }

    check(stream, &chunks, LIMIT);
    check(stream, &chunks, small_limit);
});

fn check(stream: &[u8], chunks: &[&[u8]], limit: usize) {
    let whole = run(&[stream], limit);
    let split = run(chunks, limit);
    assert_eq!(
        whole.0, split.0,
        "chunked blocks differ from one-shot blocks"
    );
    assert_eq!(
        whole.1, split.1,
        "chunked result differs from one-shot result"
    );

    let body = stream.strip_prefix(BOM).unwrap_or(stream);
    let (reference, consumed) = reference_blocks(body);
    for b in whole.0.iter().chain(&split.0) {
        assert!(
            b.raw.len() <= limit,
            "emitted a {}-byte block over the limit",
            b.raw.len()
        );
    }
    // Emitted raws are reference blocks, in order.
    let mut refs = reference.iter();
    for b in &whole.0 {
        assert!(
            refs.any(|r| *r == &b.raw[..]),
            "emitted raw {:?} is not a block of the input",
            b.raw
        );
    }
    if whole.1.is_ok() {
        assert_eq!(
            whole.2,
            body.len() - consumed,
            "pending bytes do not add up"
        );
        assert!(whole.2 <= limit, "{} pending bytes over the limit", whole.2);
        let emitted: Vec<&[u8]> = whole.0.iter().map(|b| &b.raw[..]).collect();
        for r in &reference {
            assert!(r.len() <= limit, "a {}-byte block was accepted", r.len());
            if has_data_field(r) {
                assert!(emitted.contains(r), "data block {r:?} was dropped");
            }
        }
        let joined: Vec<u8> = emitted.concat();
        if emitted.len() == reference.len() {
            assert!(
                body.starts_with(&joined),
                "emitted raws are not a prefix of the input"
            );
        }
    }
}
