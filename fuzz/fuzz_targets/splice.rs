//! Fuzz target `splice`: byte-span edits (`splice::Edits::apply`) with random spans and replacements.
//!
//! Input framing: byte 0 = number of edits (n % 8); each edit is `start`, `end`, `len` bytes
//! (0xFF in start/end means usize::MAX) followed by `len % 16` replacement bytes; the rest is the
//! buffer being edited (seeds use MCP messages).
//!
//! Invariants: `apply` never panics; it succeeds exactly when every span is in range and no two
//! spans overlap (an insertion at the start of a replaced span may go either way: order decides);
//! on success the length is input - spans + replacements and every byte outside the spans is kept
//! in order. Replacing a parsed message's id span with a new string id gives a message with the same
//! kind and that id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::ops::Range;
use warden_proto::Message;
use warden_proto::limits::Limits;
use warden_proto::splice::{Edits, replace};

fn pos(b: u8) -> usize {
    if b == 0xFF {
        usize::MAX
    } else {
        usize::from(b)
    }
}

fn overlap(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// An empty span strictly inside a non-empty one: no order can make that valid.
fn inside(p: &Range<usize>, a: &Range<usize>) -> bool {
    p.is_empty() && !a.is_empty() && a.start < p.start && p.start < a.end
}

/// An empty span at the start of a non-empty one: valid or not depending on insertion order.
fn at_start(p: &Range<usize>, a: &Range<usize>) -> bool {
    p.is_empty() && !a.is_empty() && p.start == a.start
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, mut data)) = input.split_first() else {
        return;
    };
    let mut spec: Vec<(Range<usize>, &[u8])> = Vec::new();
    for _ in 0..n % 8 {
        let [s, e, l, rest @ ..] = data else { return };
        let len = usize::from(*l % 16).min(rest.len());
        spec.push((pos(*s)..pos(*e), &rest[..len]));
        data = &rest[len..];
    }
    let raw = data;

    let mut edits = Edits::new();
    for (span, with) in &spec {
        edits.replace(span.clone(), *with);
    }
    assert_eq!(edits.is_empty(), spec.is_empty());
    let result = edits.apply(raw);

    let bad = spec
        .iter()
        .any(|(r, _)| r.end < r.start || r.end > raw.len());
    let pairs = || {
        spec.iter().enumerate().flat_map(|(i, a)| {
            spec.iter()
                .enumerate()
                .filter(move |(j, _)| *j != i)
                .map(move |(_, b)| (&a.0, &b.0))
        })
    };
    let conflict = pairs().any(|(a, b)| overlap(a, b) || inside(a, b));
    let maybe = pairs().any(|(a, b)| at_start(a, b));
    match &result {
        Ok(out) => {
            assert!(
                !bad && !conflict,
                "accepted bad or overlapping spans {spec:?}"
            );
            let removed: usize = spec.iter().map(|(r, _)| r.len()).sum();
            let added: usize = spec.iter().map(|(_, w)| w.len()).sum();
            assert_eq!(
                out.len(),
                raw.len() - removed + added,
                "length does not add up"
            );
            // Bytes outside every span survive in order: walk both buffers span by span.
            let mut sorted: Vec<&(Range<usize>, &[u8])> = spec.iter().collect();
            sorted.sort_by_key(|(r, _)| r.start);
            let (mut at, mut o) = (0, 0);
            for (r, w) in sorted {
                let keep = &raw[at..r.start];
                assert_eq!(&out[o..o + keep.len()], keep, "unedited bytes changed");
                o += keep.len();
                assert_eq!(&out[o..o + w.len()], *w, "replacement misplaced");
                o += w.len();
                at = r.end;
            }
            assert_eq!(&out[o..], &raw[at..], "tail changed");
        }
        Err(_) => assert!(bad || conflict || maybe, "refused valid spans {spec:?}"),
    }

    // Editing a real message's id keeps it a message of the same kind, with the new id.
    if Limits::default().check(raw).is_err() {
        return;
    }
    let Ok(msg) = Message::parse(raw) else { return };
    let Some(span) = msg.id_span() else { return };
    let out = replace(raw, span.clone(), br#""w-1""#).expect("id span is in range");
    let edited = Message::parse(&out).expect("message with a replaced id parses");
    assert_eq!(edited.kind(), msg.kind());
    assert_eq!(edited.id().map(|i| i.get()), Some(r#""w-1""#));
    assert_eq!(edited.id_span(), Some(span.start..span.start + 5));
    assert_eq!(edited.method(), msg.method());
});
