//! Shared harness for Warden's integration tests: real processes (Warden, Node and Python peers)
//! on loopback ports chosen at run time, stopped when the test ends (even on panic).
//!
//! Peers are installed by `.ci/setup-peers` (npm ci / pip install from the lock files). A missing
//! peer is a test failure with a clear message, never a skip.
#![allow(dead_code)]

pub mod attack;
pub mod auth_arena;
pub mod client;
pub mod lossless_gen;
pub mod lossless_wire;
pub mod oidc;
pub mod recorder;
pub mod sdk_peers;
pub mod sse_upstream;
pub mod tiny;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

pub fn node_dir() -> PathBuf {
    repo_root().join("tests/peers/node")
}

fn must_exist(p: PathBuf, what: &str) -> PathBuf {
    assert!(
        p.exists(),
        "{what} is missing at {}: run `bash .ci/setup-peers` (the CI does)",
        p.display()
    );
    p
}

/// The pinned Node 22 binary from `tests/peers/node`.
pub fn node() -> PathBuf {
    must_exist(node_dir().join("node_modules/node/bin/node"), "node@22")
}

/// The Python of the pinned venv in `tests/peers/python`.
pub fn python() -> PathBuf {
    must_exist(
        repo_root().join("tests/peers/python/.venv/bin/python"),
        "the Python SDK venv",
    )
}

/// `node --import tsx conformance-fixture.ts` argv (HTTP unless `--stdio` is appended).
pub fn fixture_argv() -> Vec<String> {
    let dir = node_dir();
    let loader = must_exist(dir.join("node_modules/tsx/dist/loader.mjs"), "tsx");
    vec![
        node().display().to_string(),
        "--import".into(),
        loader.display().to_string(),
        dir.join("conformance-fixture.ts").display().to_string(),
    ]
}

/// server-everything's entry point.
pub fn everything_js() -> PathBuf {
    must_exist(
        node_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
        "server-everything",
    )
}

/// The `warden` binary built for these tests; `WARDEN_TEST_BIN` points the tests at another
/// build (to show an attack test fails on the code before its fix).
pub fn warden_bin() -> PathBuf {
    std::env::var_os("WARDEN_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_warden")))
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    /// Lines the process wrote to stderr so far (collected on a thread).
    stderr_lines: mpsc::Receiver<String>,
    pub stderr_seen: Vec<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Spawn with stderr captured; stdout is inherited unless `stdout_piped`.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null());
        Self::capture(name, cmd)
    }

    /// Spawn with stderr captured, leaving `cmd`'s stdin as it was set.
    pub fn capture(name: &str, mut cmd: Command) -> Proc {
        cmd.stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("WARDEN_TEST_VERBOSE").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            name: name.into(),
            stderr_lines: rx,
            stderr_seen: Vec::new(),
        }
    }

    /// Wait for a stderr line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.stderr_seen.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(l) => self.stderr_seen.push(l),
                Err(_) => panic!(
                    "{} did not print '{needle}' within {timeout:?}; stderr so far:\n{}",
                    self.name,
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    /// Drain whatever stderr arrived so far.
    pub fn stderr_now(&mut self) -> String {
        while let Ok(l) = self.stderr_lines.try_recv() {
            self.stderr_seen.push(l);
        }
        self.stderr_seen.join("\n")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Send SIGTERM (what a service manager sends to stop Warden).
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
    }

    /// Wait for the process to exit; its exit code (`None`: still running after `timeout`, or
    /// killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        wait_exit(&mut self.child, timeout)
    }
}

/// Wait for `child` to exit; its exit code (`None`: still running after `timeout`, or killed by
/// a signal).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The `kind` of every event in an audit log's text, in order.
pub fn audit_kinds(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let ev: serde_json::Value = serde_json::from_str(l).expect("audit line is JSON");
            ev["kind"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// Port from a line like `... listening on http://127.0.0.1:PORT/mcp`.
pub fn port_in(line: &str) -> u16 {
    let after = line.rsplit("127.0.0.1:").next().unwrap_or_default();
    after
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no port in '{line}'"))
}

/// A free loopback port (for peers that cannot bind port 0 and report it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The conformance fixture over HTTP; returns the process and its `/mcp` URL.
pub fn start_fixture_http(extra: &[&str]) -> (Proc, String) {
    let argv = fixture_argv();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .args(extra)
        .env("PORT", "0")
        .current_dir(node_dir())
        .stdout(Stdio::null());
    let mut p = Proc::spawn("fixture", cmd);
    let line = p.wait_for("listening on", Duration::from_secs(60));
    let port = port_in(&line);
    (p, format!("http://127.0.0.1:{port}/mcp"))
}

/// server-everything in Streamable HTTP mode bound to loopback; returns the process and URL.
pub fn start_everything_http() -> (Proc, String) {
    let port = free_port();
    let mut cmd = Command::new(node());
    cmd.arg(node_dir().join("everything-loopback.mjs"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .current_dir(node_dir())
        .stdout(Stdio::null());
    let mut p = Proc::spawn("server-everything", cmd);
    wait_port(port, Duration::from_secs(60));
    let _ = p.stderr_now();
    (p, format!("http://127.0.0.1:{port}/mcp"))
}

pub fn wait_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listened on 127.0.0.1:{port} within {timeout:?}");
}

/// A running `warden serve` with its own temp dir, audit log and (optional) admin listener.
pub struct Warden {
    pub proc: Proc,
    pub url: String,
    pub port: u16,
    pub admin: Option<String>,
    pub dir: PathBuf,
}

/// A fresh temp dir under the target dir (kept for inspection after a failure).
pub fn temp_dir(tag: &str) -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = base.join(format!("{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Quote a string for TOML.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("json string is valid TOML basic string")
}

/// TOML for an upstream table.
pub fn upstream_http(name: &str, url: &str, prefix: Option<&str>) -> String {
    let p = prefix
        .map(|p| format!("prefix = {}\n", toml_str(p)))
        .unwrap_or_default();
    format!(
        "[[upstream]]\nname = {}\n{p}url = {}\n",
        toml_str(name),
        toml_str(url)
    )
}

pub fn upstream_stdio(name: &str, argv: &[String], prefix: Option<&str>) -> String {
    let p = prefix
        .map(|p| format!("prefix = {}\n", toml_str(p)))
        .unwrap_or_default();
    let cmd: Vec<String> = argv.iter().map(|a| toml_str(a)).collect();
    format!(
        "[[upstream]]\nname = {}\n{p}command = [{}]\n",
        toml_str(name),
        cmd.join(", ")
    )
}

impl Warden {
    /// Start `warden serve` with `body` (upstreams and any extra sections). `[server]`, `[audit]`
    /// and `[admin]` are written here unless `body` has its own `[server]`; `[auth] mode =
    /// "local"` unless `body` has its own `[auth]`.
    pub fn start(body: &str) -> Warden {
        let dir = temp_dir("warden");
        let audit = dir.join("audit.jsonl");
        let mut cfg = String::new();
        if !body.contains("[server]") {
            cfg.push_str("[server]\nlisten = \"127.0.0.1:0\"\n\n");
        }
        cfg.push_str(&format!(
            "[audit]\npath = {}\n\n",
            toml_str(&audit.display().to_string())
        ));
        if !body.contains("[admin]") {
            cfg.push_str("[admin]\nlisten = \"127.0.0.1:0\"\n\n");
        }
        if !body.contains("[log]") {
            cfg.push_str("[log]\nlevel = \"warn\"\n\n");
        }
        if !body.contains("[auth]") {
            // Tests of the relay run without authentication, as a loopback gateway may when
            // its configuration says so; the identity tests write their own [auth].
            cfg.push_str("[auth]\nmode = \"local\"\n\n");
        }
        cfg.push_str(body);
        let path = dir.join("warden.toml");
        std::fs::write(&path, cfg).expect("write config");
        let mut cmd = Command::new(warden_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&path)
            .current_dir(&dir)
            .stdout(Stdio::null());
        let mut proc = Proc::spawn("warden", cmd);
        let admin_line = proc.wait_for("admin on", Duration::from_secs(30));
        let line = proc.wait_for("listening on", Duration::from_secs(30));
        let port = port_in(&line);
        let admin = Some(format!("http://127.0.0.1:{}/metrics", port_in(&admin_line)));
        Warden {
            proc,
            url: format!("http://127.0.0.1:{port}/mcp"),
            port,
            admin,
            dir,
        }
    }

    /// The same endpoint named `localhost` (what the DNS-rebinding scenario needs).
    pub fn localhost_url(&self) -> String {
        format!("http://localhost:{}/mcp", self.port)
    }

    /// Audit events written so far (waits briefly for the writer thread).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::thread::sleep(Duration::from_millis(150));
        let text = std::fs::read_to_string(self.dir.join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// Audit events with `reason`.
    pub fn audit_reason(&self, reason: &str) -> Vec<serde_json::Value> {
        self.audit()
            .into_iter()
            .filter(|e| e["reason"] == reason)
            .collect()
    }
}
