//! One `tools/call` decision against 10, 100 and 1,000 per-tool policies (issue #15: ≤ 5 µs at
//! 1,000, index by action and resource), the list-visibility check, and the flow bookkeeping
//! of one call (≤ 1 µs).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use warden_guard::Principal;
use warden_policy::{Ask, Engine, Facts, FlowBook, Hints, Target, TargetKind};

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
    let p = Arc::new(p);
    let args = json!({"path": "/srv/data/a.txt", "limit": 10});
    let target = Arc::new(
        Target::new(
            TargetKind::Tool,
            "tool7",
            "files",
            vec!["private_data".into()],
            Hints::default(),
        )
        .unwrap(),
    );
    let book = FlowBook::new(1024, &[]);
    let view = book.view("s", 1000, "tool7");
    for n in [10, 100, 1000] {
        let engine = Engine::new(&set(n), "bench").unwrap();
        let ask = Ask {
            principal: Some(&p),
            method: "tools/call",
            target: &target,
            facts: Facts {
                args: Some(&args),
                transport: "http",
                client_ip: None,
                now: 1000,
                utc_offset_minutes: 0,
                flow: Some(&view),
            },
        };
        assert!(engine.decide(&ask).allowed());
        c.bench_function(&format!("decide, {n} policies"), |b| {
            b.iter(|| engine.decide(&ask))
        });
        if n == 1000 {
            c.bench_function("list item visible, 1000 policies", |b| {
                b.iter(|| engine.visible(Some(&p), "tools/call", &target))
            });
        }
    }
    let name: Arc<str> = "tool7".into();
    let labels = vec!["private_data".to_owned()];
    let mut now = 1000;
    c.bench_function("flow bookkeeping (view + record)", |b| {
        b.iter(|| {
            now += 1;
            let v = book.view("s", now, "tool7");
            book.record("s", now, &name, &labels, None).unwrap();
            v
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
