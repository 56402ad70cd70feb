//! relay-bench: Warden's relay benchmark (issue #2).
//!
//! Starts `trivial-upstream`, `warden serve` (temp config: the upstream over HTTP, audit to a
//! temp file, log level warn) and `floor-proxy` (a minimal hyper reverse proxy, the relay floor),
//! then runs `tools/call` directly at the upstream, through the floor and through Warden, one MCP
//! session per keep-alive connection, after a warm-up on the same connections:
//!
//! * closed loop at each `--concurrency` (default 16 and 64): requests/s, p50/p99, and CPU per
//!   request of the relaying process, the upstream and the load generator (utime+stime, /proc);
//! * moderate load without CPU queueing: 1 connection closed loop, and a paced `--rate` (default
//!   2,000 req/s) on 1 connection: added p50/p99 latency.
//!
//! Prints a markdown report (stdout) with the ratios to direct and Warden's bars (also as a
//! multiple of the floor, which carries over to a noisy or slower machine); progress goes to
//! stderr. Exits 0 when every request succeeded, 1 when any failed, 2 on a setup error. Every
//! child is killed when the run ends, on error too.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::task::JoinSet;
use warden_bench::client::{BlockingConn, Conn};
use warden_bench::procfs;
use warden_bench::stats::{grouped, ns, quantile_us, signed_us, us};
use warden_bench::supervise::{Child, TempDir, port_in};

mod jwt;
mod report;
mod row;
use report::*;
use row::Row;

const PATH: &str = "/mcp";

#[derive(Parser)]
#[command(about = "Warden relay benchmark: tools/call direct vs through Warden")]
struct Args {
    /// Seconds measured per target and load.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds of warm-up before each measurement (same connections, not recorded).
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// The warden binary [default: `warden` next to this program, e.g. target/release/warden].
    #[arg(long)]
    warden: Option<PathBuf>,
    /// The trivial-upstream binary [default: next to this program].
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// The floor-proxy binary [default: next to this program].
    #[arg(long)]
    floor_proxy: Option<PathBuf>,
    /// Skip the floor target (a minimal hyper reverse proxy measured beside Warden).
    #[arg(long)]
    no_floor: bool,
    /// Closed-loop concurrencies (one connection and one MCP session per worker).
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    concurrency: Vec<usize>,
    /// Requests/s of the paced moderate-load run on one connection; 0 skips it.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Load-generator runtime threads (1: a single-threaded runtime, the cheapest on 2 cores).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// trivial-upstream runtime threads.
    #[arg(long, default_value_t = 1)]
    upstream_threads: usize,
    /// Runs of each load and target, interleaved direct/warden and pooled (all requests, all
    /// CPU ticks, all latencies) in the report.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Warden's audit log [default: a file in the temp dir]; `/dev/null` shows what writing it costs.
    #[arg(long)]
    audit_path: Option<PathBuf>,
    /// Keep the temp dir (config, audit log) and print its path.
    #[arg(long)]
    keep_temp: bool,
    /// Copy the children's stderr to ours.
    #[arg(long)]
    verbose: bool,
    /// Also measure a second Warden with OAuth on (`[auth]`, a local JWKS file), every request
    /// carrying a bearer JWT (target `warden+jwt`), and report its CPU against `warden`'s.
    #[arg(long)]
    auth: bool,
}

/// The processes whose CPU is measured.
#[derive(Clone, Copy)]
struct Pids {
    warden: u32,
    floor: Option<u32>,
    upstream: u32,
    me: u32,
    warden_jwt: Option<u32>,
}

/// Indexes into [`Cpu`].
const WARDEN: usize = 0;
const FLOOR: usize = 1;
const UPSTREAM: usize = 2;
const ME: usize = 3;
const WARDEN_JWT: usize = 4;

/// CPU ticks of Warden, the floor proxy (0 when not running), the upstream and the load
/// generator at one moment, and the machine's busy, total and steal ticks.
#[derive(Clone, Copy)]
struct Cpu([u64; 5], [u64; 3]);

impl Pids {
    fn cpu(&self) -> Result<Cpu, String> {
        let (busy, total, steal) = procfs::machine_ticks()?;
        Ok(Cpu(
            [
                procfs::cpu_ticks(self.warden)?,
                self.floor.map(procfs::cpu_ticks).transpose()?.unwrap_or(0),
                procfs::cpu_ticks(self.upstream)?,
                procfs::cpu_ticks(self.me)?,
                self.warden_jwt
                    .map(procfs::cpu_ticks)
                    .transpose()?
                    .unwrap_or(0),
            ],
            [busy, total, steal],
        ))
    }
}

#[derive(Clone, Copy)]
struct Target {
    name: &'static str,
    port: u16,
    /// The [`Cpu`] index of the process relaying for this target (none for direct).
    gateway: Option<usize>,
    /// `Authorization` value of every request (`--auth`'s target).
    auth: Option<&'static str>,
}

/// Pool a run into the slot of its target.
fn pool(slot: &mut Option<Row>, run: Row) {
    match slot {
        Some(r) => r.merge(run),
        None => *slot = Some(run),
    }
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct WorkerOut {
    lat: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    conn: Conn,
}

/// Call `tools/call` back to back until told to stop; record what completes while measuring.
async fn worker(mut conn: Conn, phase: Arc<AtomicU8>) -> WorkerOut {
    let mut lat = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    let mut first_error = None;
    let mut id: u64 = 1;
    while phase.load(Ordering::Relaxed) != STOP {
        let t0 = Instant::now();
        let r = conn.call(id).await;
        let took = ns(t0.elapsed());
        id += 1;
        match r {
            Ok(()) => {
                if phase.load(Ordering::Relaxed) == MEASURE {
                    lat.push(took);
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
                break;
            }
        }
    }
    WorkerOut {
        lat,
        errors,
        first_error,
        conn,
    }
}

struct Plan {
    warmup: Duration,
    duration: Duration,
    pids: Pids,
    tck: u64,
}

async fn closed_loop(t: Target, conns: usize, plan: &Plan) -> Result<Row, String> {
    let mut opening = JoinSet::new();
    for _ in 0..conns {
        opening.spawn(Conn::open_with(t.port, PATH, t.auth));
    }
    let mut opened = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, opening.join_next()).await {
            Ok(Some(r)) => opened.push(r.map_err(|e| e.to_string())??),
            Ok(None) => break,
            Err(_) => return Err(format!("{}: sessions not opened in 30 s", t.name)),
        }
    }
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let mut workers = JoinSet::new();
    for c in opened {
        workers.spawn(worker(c, phase.clone()));
    }
    tokio::time::sleep(plan.warmup).await;
    let before = plan.pids.cpu()?;
    phase.store(MEASURE, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(plan.duration).await;
    let after = plan.pids.cpu()?;
    let secs = t0.elapsed().as_secs_f64();
    phase.store(STOP, Ordering::Relaxed);
    let mut outs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, workers.join_next()).await {
            Ok(Some(r)) => outs.push(r.map_err(|e| e.to_string())?),
            Ok(None) => break,
            Err(_) => {
                workers.abort_all();
                return Err(format!("{}: workers did not stop within 15 s", t.name));
            }
        }
    }
    let mut lat = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for mut o in outs {
        lat.append(&mut o.lat);
        errors += o.errors;
        first_error = first_error.or(o.first_error);
        if o.errors == 0 {
            let _ = tokio::time::timeout(Duration::from_secs(2), o.conn.close()).await;
        }
    }
    Ok(Row::new(
        format!("{conns} conn{}", if conns == 1 { "" } else { "s" }),
        t,
        lat,
        errors,
        first_error,
        secs,
        before,
        after,
        plan.tck,
    ))
}

/// Send `tools/call` on a schedule of `interval` for `len`; returns latencies and late sends.
fn pace(
    c: &mut BlockingConn,
    interval: Duration,
    len: Duration,
    id: &mut u64,
) -> Result<(Vec<u32>, u64), String> {
    let start = Instant::now();
    let mut next = start;
    let mut lat = Vec::with_capacity((len.as_secs_f64() / interval.as_secs_f64()) as usize + 16);
    let mut late = 0;
    loop {
        let now = Instant::now();
        if now >= start + len {
            return Ok((lat, late));
        }
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > interval {
            late += 1;
            if now - next > Duration::from_millis(10) {
                next = now; // fell far behind: do not burst to catch up
            }
        }
        let t0 = Instant::now();
        c.call(*id)?;
        lat.push(ns(t0.elapsed()));
        *id += 1;
        next += interval;
    }
}

fn paced(t: Target, rate: u32, plan: &Plan) -> Result<Row, String> {
    let mut c = BlockingConn::open_with(t.port, PATH, t.auth)?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut id = 1;
    pace(&mut c, interval, plan.warmup, &mut id)?;
    let before = plan.pids.cpu()?;
    let t0 = Instant::now();
    let run = pace(&mut c, interval, plan.duration, &mut id);
    let after = plan.pids.cpu()?;
    let secs = t0.elapsed().as_secs_f64();
    let load = format!("paced {rate}/s, 1 conn");
    let mut row = match run {
        Ok((lat, late)) => {
            let _ = c.close();
            let mut r = Row::new(load, t, lat, 0, None, secs, before, after, plan.tck);
            r.late = late;
            r
        }
        Err(e) => Row::new(
            load,
            t,
            Vec::new(),
            1,
            Some(e),
            secs,
            before,
            after,
            plan.tck,
        ),
    };
    row.secs = secs;
    Ok(row)
}

fn config(upstream_port: u16, audit: &Path) -> String {
    let audit = serde_json::Value::from(audit.display().to_string());
    format!(
        "# relay-bench: Warden in front of trivial-upstream.\n\
         [server]\nlisten = \"127.0.0.1:0\"\n\n\
         [auth]\nmode = \"local\"\n\n\
         # The load generator opens up to max(concurrency) sessions from one address.\n\
         [sessions]\nmax_per_client = 4096\n\n\
         [audit]\npath = {audit}\n\n\
         [log]\nlevel = \"warn\"\n\n\
         [[upstream]]\nname = \"trivial\"\nurl = \"http://127.0.0.1:{upstream_port}/mcp\"\n"
    )
}

/// `warden serve --config cfg` in `dir`, once it listens: the child and its port.
fn serve(
    bin: &Path,
    name: &'static str,
    cfg: &Path,
    dir: &Path,
    verbose: bool,
) -> Result<(Child, u16), String> {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--config")
        .arg(cfg)
        .current_dir(dir)
        .env_remove("RUST_LOG");
    let mut child = Child::spawn(name, cmd, verbose)?;
    let port = port_in(&child.wait_for("listening on", Duration::from_secs(30))?)?;
    Ok((child, port))
}

fn run(args: &Args) -> Result<bool, String> {
    let here = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let bin =
        |given: &Option<PathBuf>, name: &str| given.clone().unwrap_or_else(|| here.join(name));
    let warden_bin = bin(&args.warden, "warden");
    let upstream_bin = bin(&args.upstream, "trivial-upstream");
    let floor_bin = bin(&args.floor_proxy, "floor-proxy");
    let mut needed = vec![(&warden_bin, "--warden"), (&upstream_bin, "--upstream")];
    if !args.no_floor {
        needed.push((&floor_bin, "--floor-proxy"));
    }
    for (p, what) in needed {
        if !p.is_file() {
            return Err(format!(
                "{} not found (pass {what}; build with `cargo build --release -p warden -p warden-bench`)",
                p.display()
            ));
        }
    }
    // Absolute paths: Warden starts in the temp dir, where a relative path would not resolve.
    let abs = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
    let (warden_bin, upstream_bin, floor_bin) =
        (abs(warden_bin), abs(upstream_bin), abs(floor_bin));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = TempDir {
        path: std::env::temp_dir().join(format!("relay-bench-{}-{nanos}", std::process::id())),
        keep: args.keep_temp,
    };
    std::fs::create_dir_all(&tmp.path).map_err(|e| format!("{}: {e}", tmp.path.display()))?;

    // Children: killed when `kids` is dropped, on every return path.
    let mut kids = Vec::new();
    let mut cmd = Command::new(&upstream_bin);
    cmd.args(["--port", "0", "--threads"])
        .arg(args.upstream_threads.to_string());
    kids.push(Child::spawn("trivial-upstream", cmd, args.verbose)?);
    let up_port = port_in(&kids[0].wait_for("listening on", Duration::from_secs(10))?)?;
    let up_url = format!("http://127.0.0.1:{up_port}/mcp");

    let audit = args
        .audit_path
        .clone()
        .unwrap_or_else(|| tmp.path.join("audit.jsonl"));
    let cfg_path = tmp.path.join("gateway.toml");
    std::fs::write(&cfg_path, config(up_port, &audit)).map_err(|e| e.to_string())?;
    let (child, w_port) = serve(&warden_bin, "warden", &cfg_path, &tmp.path, args.verbose)?;
    kids.push(child);

    let mut floor_port = None;
    if !args.no_floor {
        let mut cmd = Command::new(&floor_bin);
        cmd.arg("--upstream").arg(&up_url).args(["--port", "0"]);
        kids.push(Child::spawn("floor-proxy", cmd, args.verbose)?);
        floor_port = Some(port_in(
            &kids[2].wait_for("listening on", Duration::from_secs(10))?,
        )?);
    }
    // `--auth`: a second Warden with OAuth on, its own port named in its resource URI.
    let mut jwt_target = None;
    let mut jwt_pid = None;
    if args.auth {
        let port = jwt::free_port()?;
        let (jwks, bearer) = jwt::mint(&format!("http://127.0.0.1:{port}{PATH}"))?;
        let jwks_path = tmp.path.join("jwks.json");
        std::fs::write(&jwks_path, jwks).map_err(|e| e.to_string())?;
        let cfg_path = tmp.path.join("gateway-jwt.toml");
        let cfg = config(up_port, &tmp.path.join("audit-jwt.jsonl"))
            .replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\""),
            )
            .replace(
                "[auth]\nmode = \"local\"\n",
                &jwt::auth_section(port, &jwks_path),
            );
        std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
        let (child, _) = serve(
            &warden_bin,
            "warden+jwt",
            &cfg_path,
            &tmp.path,
            args.verbose,
        )?;
        jwt_pid = Some(child.pid());
        kids.push(child);
        jwt_target = Some((port, &*Box::leak(bearer.into_boxed_str())));
    }
    let pids = Pids {
        warden: kids[1].pid(),
        floor: floor_port.map(|_| kids[2].pid()),
        upstream: kids[0].pid(),
        me: std::process::id(),
        warden_jwt: jwt_pid,
    };
    let plan = Plan {
        warmup: Duration::from_secs(args.warmup_secs),
        duration: Duration::from_secs(args.duration_secs.max(1)),
        pids,
        tck: procfs::clk_tck(),
    };
    let mut targets = vec![Target {
        name: "direct",
        port: up_port,
        gateway: None,
        auth: None,
    }];
    if let Some(port) = floor_port {
        targets.push(Target {
            name: "floor",
            port,
            gateway: Some(FLOOR),
            auth: None,
        });
    }
    targets.push(Target {
        name: "warden",
        port: w_port,
        gateway: Some(WARDEN),
        auth: None,
    });
    if let Some((port, bearer)) = jwt_target {
        targets.push(Target {
            name: "warden+jwt",
            port,
            gateway: Some(WARDEN_JWT),
            auth: Some(bearer),
        });
    }
    let rt = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())?;

    let load_before = procfs::loadavg();
    // Closed loops at each concurrency, then one connection; `None` is the paced run.
    let mut loads: Vec<Option<usize>> = args.concurrency.iter().copied().map(Some).collect();
    // Rows are matched to their direct row by load label, so each load runs once.
    let mut seen = std::collections::HashSet::new();
    loads.retain(|l| seen.insert(*l));
    if !loads.contains(&Some(1)) {
        loads.push(Some(1));
    }
    if args.rate > 0 {
        loads.push(None);
    }
    let runs = args.runs.max(1);
    let mut rows = Vec::new();
    for load in loads {
        let mut slots: Vec<Option<Row>> = targets.iter().map(|_| None).collect();
        for run in 1..=runs {
            for (slot, &t) in slots.iter_mut().zip(&targets) {
                let what = load.map_or(format!("paced {}/s", args.rate), |c| {
                    format!("{c} connection(s)")
                });
                eprintln!("relay-bench: {what}, {}, run {run}/{runs} …", t.name);
                let row = match load {
                    Some(c) => rt.block_on(closed_loop(t, c, &plan))?,
                    None => paced(t, args.rate, &plan)?,
                };
                pool(slot, row);
                for k in &mut kids {
                    k.check_alive()?;
                }
            }
        }
        rows.extend(slots.into_iter().flatten());
    }
    for r in &mut rows {
        r.sort();
    }
    let report = Report {
        rows: &rows,
        args,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        load_before,
        load_after: procfs::loadavg(),
        gw_hwm: procfs::status_kib(pids.warden, "VmHWM"),
        gw_rss: procfs::status_kib(pids.warden, "VmRSS"),
        floor_hwm: pids.floor.and_then(|p| procfs::status_kib(p, "VmHWM")),
        up_hwm: procfs::status_kib(pids.upstream, "VmHWM"),
        audit_bytes: std::fs::metadata(&audit).map_or(0, |m| m.len()),
    };
    print_report(&report);
    Ok(rows.iter().all(|r| r.errors == 0))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("relay-bench: some requests failed (see the report)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("relay-bench: {e}");
            ExitCode::from(2)
        }
    }
}
