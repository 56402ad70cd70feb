//! Criterion micro-benchmarks of warden-proto's hot paths: the borrowed envelope parse of a ~1 KiB
//! `tools/call` (alone and with `params_view`, what the relay reads per request), the input-limit
//! check, and SSE decoding of a ~4.4 KiB stream (priming event, 20 progress notifications, the
//! final response) in one chunk and in 512-byte chunks.
//! Run: `cargo bench -p warden-bench --bench envelope`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_proto::Message;
use warden_proto::limits::Limits;
use warden_proto::sse::SseDecoder;

/// A `tools/call` of about 1 KiB with a nested arguments object.
fn tools_call_1k() -> Vec<u8> {
    let text = "lorem ipsum dolor sit amet ".repeat(30);
    format!(
        r#"{{"jsonrpc":"2.0","id":4711,"method":"tools/call","params":{{"name":"search_documents","arguments":{{"query":"quarterly report","filters":{{"year":2026,"tags":["finance","q3"]}},"note":"{text}"}},"_meta":{{"progressToken":"tok-1"}}}}}}"#
    )
    .into_bytes()
}

/// A priming event, progress notifications and a final response: about 4 KiB of SSE.
fn sse_stream() -> Vec<u8> {
    let mut s = String::from("id: 0\ndata: \nretry: 3000\n\n");
    for i in 1..=20 {
        s.push_str(&format!(
            "id: {i}\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":\"tok-1\",\"progress\":{i},\"total\":20,\"message\":\"step {i} of twenty, still working on it\"}}}}\n\n"
        ));
    }
    s.push_str(&format!(
        "id: 21\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":4711,\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}]}}}}\n\n",
        "result text ".repeat(40)
    ));
    s.into_bytes()
}

fn envelope(c: &mut Criterion) {
    let msg = tools_call_1k();
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function("Message::parse (tools/call ~1 KiB)", |b| {
        b.iter(|| Message::parse(black_box(&msg)).map(|m| m.kind()))
    });
    g.bench_function("parse + params_view", |b| {
        b.iter(|| {
            Message::parse(black_box(&msg))
                .and_then(|m| m.params_view().map(|p| p.name.map(|n| n.len())))
        })
    });
    let limits = Limits {
        max_bytes: 4 << 20,
        max_depth: 64,
    };
    g.bench_function("Limits::check", |b| {
        b.iter(|| limits.check(black_box(&msg)).is_ok())
    });
    g.finish();
}

fn sse(c: &mut Criterion) {
    let stream = sse_stream();
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for chunk in [stream.len(), 512] {
        g.bench_function(
            format!("SseDecoder::feed ({} B, {chunk}-byte chunks)", stream.len()),
            |b| {
                b.iter(|| {
                    let mut d = SseDecoder::new(1 << 20);
                    let mut out = Vec::with_capacity(16);
                    for part in black_box(&stream).chunks(chunk) {
                        d.feed(part, &mut out).ok();
                    }
                    out.len()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, envelope, sse);
criterion_main!(benches);
