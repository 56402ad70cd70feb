//! The report relay-bench prints: the markdown table of every load and target, and the verdict
//! against the bars of `anchor-measurements.md`.

use super::*;

pub(super) fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown date".into())
}

pub(super) fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

pub(super) fn verdict(ok: bool) -> &'static str {
    if ok { "✅ within" } else { "❌ over" }
}

pub(super) struct Report<'a> {
    pub(super) rows: &'a [Row],
    pub(super) args: &'a Args,
    pub(super) cpus: usize,
    pub(super) load_before: String,
    pub(super) load_after: String,
    pub(super) gw_hwm: Option<u64>,
    pub(super) gw_rss: Option<u64>,
    pub(super) floor_hwm: Option<u64>,
    pub(super) up_hwm: Option<u64>,
    pub(super) audit_bytes: u64,
}

/// The anchors' floor relay costs 17–18 µs per request on their machine; the 25 µs bar is this
/// many floors, which carries over to a machine of another speed.
pub(super) const BAR_IN_FLOORS: f64 = 25.0 / 17.5;
/// `--auth`: Warden with a JWT on every request, against the same run without auth (#14).
pub(super) const JWT_BAR: f64 = 1.15;

pub(super) fn print_rows(rows: &[Row]) {
    println!(
        "| load | target | req/s | p50 µs | p99 µs | gateway CPU µs/req | upstream CPU µs/req | load-gen CPU µs/req | errors | others / steal % |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for group in rows.chunk_by(|a, b| a.load == b.load) {
        for row in group {
            let gw = if row.gateway.is_some() {
                format!("**{}**", us(row.gw_us()))
            } else {
                "—".into()
            };
            let (others, steal) = row.noise_pct();
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {others:.0} / {steal:.0} |",
                row.load,
                row.target,
                grouped(row.rps()),
                us(row.p(0.5)),
                us(row.p(0.99)),
                gw,
                us(row.cpu_us(UPSTREAM)),
                us(row.cpu_us(ME)),
                row.errors
            );
        }
        let Some(d) = group.iter().find(|x| x.gateway.is_none()) else {
            continue;
        };
        for o in group.iter().filter(|x| x.gateway.is_some()) {
            println!(
                "| {} | {}/direct | {:.2}× | {:.2}× | {:.2}× | | {:.2}× | | | |",
                d.load,
                o.target,
                o.rps() / d.rps(),
                o.p(0.5) / d.p(0.5),
                o.p(0.99) / d.p(0.99),
                o.cpu_us(UPSTREAM) / d.cpu_us(UPSTREAM),
            );
            println!(
                "| {} | added by {} | | {} | {} | | | | | |",
                d.load,
                o.target,
                signed_us(o.p(0.5) - d.p(0.5)),
                signed_us(o.p(0.99) - d.p(0.99)),
            );
        }
    }
}

/// Warden's CPU over the floor's, run by run (each pair ran back to back, so a burst of noise on
/// this machine lands in one pair): median, lowest, highest and the number of pairs. `None` for
/// a single run.
fn paired(w: &Row, f: &Row) -> Option<(f64, f64, f64, usize)> {
    let mut x: Vec<f64> = w
        .gw_runs
        .iter()
        .zip(&f.gw_runs)
        .map(|(w, f)| w / f)
        .filter(|x| x.is_finite())
        .collect();
    if x.len() < 2 {
        return None;
    }
    x.sort_by(f64::total_cmp);
    let n = x.len();
    let median = if n % 2 == 1 {
        x[n / 2]
    } else {
        (x[n / 2 - 1] + x[n / 2]) / 2.0
    };
    Some((median, x[0], x[n - 1], n))
}

pub(super) fn print_bars(r: &Report<'_>) {
    println!("| bar | Warden | limit | verdict | floor proxy, same run |");
    println!("|---|---:|---:|---|---:|");
    for group in r.rows.chunk_by(|a, b| a.load == b.load) {
        let find = |name: &str| group.iter().find(|x| x.target == name);
        let (Some(d), Some(w)) = (find("direct"), find("warden")) else {
            continue;
        };
        let f = find("floor");
        if d.load.contains("paced") || d.load == "1 conn" {
            for (q, name, limit) in [(0.5, "p50", 100.0), (0.99, "p99", 1000.0)] {
                let added = w.p(q) - d.p(q);
                println!(
                    "| added {name} ({}) | {} µs | ≤ {limit} µs | {} | {} |",
                    d.load,
                    signed_us(added),
                    verdict(added <= limit),
                    f.map_or("—".into(), |f| format!(
                        "{} µs",
                        signed_us(f.p(q) - d.p(q))
                    ))
                );
            }
        } else {
            println!(
                "| gateway CPU per request ({}) | {} µs | ≤ 25 µs | {} | {} |",
                w.load,
                us(w.gw_us()),
                verdict(w.gw_us() <= 25.0),
                f.map_or("—".into(), |f| format!("{} µs", us(f.gw_us())))
            );
            if let Some(j) = find("warden+jwt") {
                let x = j.gw_us() / w.gw_us();
                println!(
                    "| gateway CPU per request with a JWT ({}) | {} µs, {x:.2}× no-auth | ≤ {JWT_BAR:.2}× | {} | — |",
                    j.load,
                    us(j.gw_us()),
                    verdict(x <= JWT_BAR)
                );
                if let Some((median, lo, hi, n)) = paired(j, w) {
                    println!(
                        "| JWT ÷ no-auth Warden CPU, median of {n} paired runs ({}) | \
                         {median:.2}× ({lo:.2}–{hi:.2}) | ≤ {JWT_BAR:.2}× | {} | — |",
                        j.load,
                        verdict(median <= JWT_BAR)
                    );
                }
            }
            if let Some(f) = f {
                let x = w.gw_us() / f.gw_us();
                println!(
                    "| Warden CPU ÷ floor CPU ({}) | {x:.2}× | ≤ {BAR_IN_FLOORS:.2}× | {} | 1× |",
                    w.load,
                    verdict(x <= BAR_IN_FLOORS)
                );
                if let Some((median, lo, hi, n)) = paired(w, f) {
                    println!(
                        "| Warden CPU ÷ floor CPU, median of {n} paired runs ({}) | \
                         {median:.2}× ({lo:.2}–{hi:.2}) | ≤ {BAR_IN_FLOORS:.2}× | {} | 1× |",
                        w.load,
                        verdict(median <= BAR_IN_FLOORS)
                    );
                }
            }
        }
    }
    let hwm_ok = r.gw_hwm.is_some_and(|k| k <= 30 * 1024);
    println!(
        "| peak RSS (VmHWM, whole run) | {} | ≤ 30 MiB | {} | {} |",
        mib(r.gw_hwm),
        verdict(hwm_ok),
        mib(r.floor_hwm)
    );
}

pub(super) fn print_report(r: &Report<'_>) {
    let a = r.args;
    println!("## Warden relay benchmark — {}\n", today());
    println!(
        "{} CPUs; load average before {} / after {}. `tools/call` (echo, ~130-byte body) over \
         HTTP/1.1 keep-alive, one MCP session per connection; each run {} s warm-up + {} s \
         measured, {} run(s) pooled; load generator {} thread(s), trivial-upstream {} \
         thread(s); Warden with its default pipeline and the audit log on; `floor` is a minimal \
         hyper reverse proxy (no JSON work). CPU = utime+stime from /proc per completed request; \
         `others / steal %`: the machine's CPU used by other processes and stolen by the \
         hypervisor while measuring (distrust rows where they are high).\n",
        r.cpus,
        r.load_before,
        r.load_after,
        a.warmup_secs,
        a.duration_secs,
        a.runs.max(1),
        a.client_threads,
        a.upstream_threads
    );
    if let Ok(n) = std::env::var("TOKIO_WORKER_THREADS") {
        println!("Warden and the floor proxy ran with TOKIO_WORKER_THREADS={n}.\n");
    }
    if let Some(p) = &a.audit_path {
        println!("Warden's audit log went to {}.\n", p.display());
    }
    print_rows(r.rows);
    println!();
    print_bars(r);
    println!();
    println!(
        "Warden RSS at the end {}; trivial-upstream peak RSS {}; audit log written: {:.1} MiB.",
        mib(r.gw_rss),
        mib(r.up_hwm),
        r.audit_bytes as f64 / 1048576.0
    );
    for row in r.rows {
        if row.late > 0 {
            println!(
                "{} {}: {} requests sent more than one interval late.",
                row.load, row.target, row.late
            );
        }
        if let Some(e) = &row.first_error {
            println!(
                "**{} {}: {} errors; first: {e}**",
                row.load, row.target, row.errors
            );
        }
    }
}
