//! One `tools/call` decision against 10, 100 and 1,000 per-tool policies (issue #15 asks for
//! ≤ 5 µs at 1,000 with an index by action and resource; this is the unindexed baseline).
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use warden_guard::Principal;
use warden_policy::{Call, Engine};

fn set(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "@id(\"p{i}\")\npermit(principal, action == Action::\"tools/call\", resource == Tool::\"tool{i}\")\n\
                 when {{ principal.roles.contains(\"r{i}\") && context.args.path like \"/srv/*\" }};\n"
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut p = Principal::new("https://as.example", "alice");
    p.roles = vec!["r7".into()];
    let args = json!({"path": "/srv/data/a.txt", "limit": 10});
    for n in [10, 100, 1000] {
        let engine = Engine::new(&set(n), "bench").unwrap();
        let call = Call {
            principal: Some(&p),
            method: "tools/call",
            target: Some("tool7"),
            upstream: Some("files"),
            args: Some(&args),
            transport: "http",
        };
        assert!(engine.decide(&call).allowed);
        c.bench_function(&format!("decide, {n} policies"), |b| {
            b.iter(|| engine.decide(&call))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
