//! Running the SDK scenario peers (`tests/peers/python/sdk_scenario.py`, Python SDK client, and
//! `tests/peers/node/sdk-scenario.mjs`, TypeScript SDK client) as bounded child processes, tracking
//! every process they start (via /proc) so none outlives its run, and diffing their JSON
//! transcripts path by path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{node, node_dir, python, repo_root};

/// Which SDK client drives the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    Python,
    Ts,
}

/// How the client reaches the server.
#[derive(Debug, Clone)]
pub enum Target {
    /// Streamable HTTP endpoint.
    Url(String),
    /// Spawn this command and speak MCP over its stdio.
    Stdio(Vec<String>),
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Python => "python-sdk",
            Peer::Ts => "ts-sdk",
        }
    }

    fn command(self, target: &Target) -> Command {
        let (mut cmd, dir) = match self {
            Peer::Python => {
                let dir = repo_root().join("tests/peers/python");
                let mut c = Command::new(python());
                c.arg(dir.join("sdk_scenario.py"));
                (c, dir)
            }
            Peer::Ts => {
                let dir = node_dir();
                let mut c = Command::new(node());
                c.arg(dir.join("sdk-scenario.mjs"));
                (c, dir)
            }
        };
        match target {
            Target::Url(u) => cmd.arg("--url").arg(u),
            Target::Stdio(argv) => cmd.arg("--stdio").arg("--").args(argv),
        };
        cmd.current_dir(dir);
        cmd
    }
}

/// One process as seen in /proc: pid plus start time (guards against pid reuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId {
    pub pid: u32,
    start: u64,
}

/// (ppid, start time) of `pid` from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "(comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime priority nice num_threads itrealvalue starttime (index 19).
    if f.first() == Some(&"Z") {
        return None; // a zombie is gone as far as resources go
    }
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// Every live descendant of `root` (children, grandchildren, ...).
pub fn descendants(root: u32) -> Vec<ProcId> {
    let mut children: HashMap<u32, Vec<ProcId>> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, start)) = stat(pid) {
                children
                    .entry(ppid)
                    .or_default()
                    .push(ProcId { pid, start });
            }
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for c in children.get(&p).into_iter().flatten() {
            out.push(*c);
            todo.push(c.pid);
        }
    }
    out
}

pub fn alive(p: ProcId) -> bool {
    stat(p.pid).is_some_and(|(_, start)| start == p.start)
}

/// Command line of a process (for messages).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// Send `sig` ("TERM", "KILL") to one process, by pid.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Wait up to `grace` for `procs` to exit; SIGKILL the survivors. Returns the survivors as
/// "pid cmdline" strings (empty: all exited by themselves).
pub fn reap(procs: &BTreeSet<ProcId>, grace: Duration) -> Vec<String> {
    let deadline = Instant::now() + grace;
    loop {
        let left: Vec<ProcId> = procs.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            let names = left
                .iter()
                .map(|p| format!("{} {}", p.pid, cmdline(p.pid)))
                .collect();
            for p in &left {
                signal(p.pid, "KILL");
            }
            return names;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Outcome of one scenario run.
pub struct Run {
    pub transcript: Value,
    pub stderr: String,
}

fn read_all(mut r: impl Read + Send + 'static, tag: String) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let s = String::from_utf8_lossy(&buf).into_owned();
        if !tag.is_empty() && std::env::var_os("WARDEN_TEST_VERBOSE").is_some() {
            for l in s.lines() {
                eprintln!("[{tag}] {l}");
            }
        }
        s
    })
}

/// Run the scenario of `peer` against `target`, killed after `timeout`. Every process the run
/// started must be gone within a few seconds of its end (leftovers are killed and reported as
/// an error). Returns the parsed transcript, or a readable error with the peer's stderr.
pub fn run_scenario(
    peer: Peer,
    target: &Target,
    label: &str,
    timeout: Duration,
) -> Result<Run, String> {
    let mut cmd = peer.command(target);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{label}: cannot start {}: {e}", peer.name()))?;
    let out = read_all(child.stdout.take().expect("stdout"), String::new());
    let err = read_all(child.stderr.take().expect("stderr"), label.to_owned());
    let root = child.id();
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    let status = loop {
        seen.extend(descendants(root));
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() > timeout => {
                seen.extend(descendants(root));
                for p in &seen {
                    signal(p.pid, "KILL");
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("{label}: wait failed: {e}")),
        }
    };
    let leftovers = reap(&seen, Duration::from_secs(10));
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let tail = |s: &str| {
        s.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    };
    let Some(status) = status else {
        return Err(format!(
            "{label}: {} did not finish within {timeout:?}; stderr tail:\n{}",
            peer.name(),
            tail(&stderr)
        ));
    };
    if !leftovers.is_empty() {
        return Err(format!(
            "{label}: processes outlived the run by 10 s (killed now): {leftovers:?}"
        ));
    }
    if !status.success() {
        return Err(format!(
            "{label}: {} exited with {status}; stderr tail:\n{}",
            peer.name(),
            tail(&stderr)
        ));
    }
    let transcript = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "{label}: transcript is not JSON ({e}); first bytes: {:.300}",
            stdout
        )
    })?;
    Ok(Run { transcript, stderr })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

/// The paths where `actual` differs from `expected` ("$.a.b[3]: expected X, got Y"), at most
/// `limit` of them, in document order.
pub fn json_diff(expected: &Value, actual: &Value, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    walk("$", expected, actual, limit, &mut out);
    out
}

fn walk(path: &str, e: &Value, a: &Value, limit: usize, out: &mut Vec<String>) {
    if out.len() >= limit || e == a {
        return;
    }
    match (e, a) {
        (Value::Object(eo), Value::Object(ao)) => {
            let keys: BTreeMap<&String, ()> = eo.keys().chain(ao.keys()).map(|k| (k, ())).collect();
            for k in keys.keys() {
                let p = format!("{path}.{k}");
                match (eo.get(*k), ao.get(*k)) {
                    (Some(x), Some(y)) => walk(&p, x, y, limit, out),
                    (Some(x), None) => out.push(format!("{p}: missing (expected {})", short(x))),
                    (None, Some(y)) => out.push(format!("{p}: unexpected (got {})", short(y))),
                    (None, None) => {}
                }
                if out.len() >= limit {
                    return;
                }
            }
        }
        (Value::Array(ea), Value::Array(aa)) => {
            for (i, (x, y)) in ea.iter().zip(aa).enumerate() {
                walk(&format!("{path}[{i}]"), x, y, limit, out);
            }
            if ea.len() != aa.len() && out.len() < limit {
                out.push(format!(
                    "{path}: expected {} items, got {}",
                    ea.len(),
                    aa.len()
                ));
            }
        }
        _ => out.push(format!("{path}: expected {}, got {}", short(e), short(a))),
    }
}

/// Write a transcript next to a test's other files (for `diff` after a failure).
pub fn save(dir: &std::path::Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    let _ = std::fs::write(&p, serde_json::to_string_pretty(v).unwrap_or_default());
    p
}
