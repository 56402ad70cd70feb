//! The child process itself: how it is started (a clean environment, P10.2), how lines reach
//! its stdin, and its supervisor, which stops it when asked, records its exit (P10.4), fails
//! the requests still open and gives back its [`Slot`].
//!
//! It must not route messages: the reader does.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::process::{Child, Command};
use warden_config::UpstreamConfig;

use super::slots::Slot;
use super::{EventHook, Pending, Running, UpstreamError};

/// The command that starts a stdio server: piped stdin/stdout, stderr passed through, killed with
/// its handle, and a clean environment — only `env_passthrough` from Warden's own, plus `env`
/// (P10.2). Returns the command and the program name; `None` for an empty command line.
pub fn server_command(cfg: &UpstreamConfig) -> Option<(Command, String)> {
    let argv = cfg.command.as_deref().unwrap_or_default();
    let (prog, args) = argv.split_first()?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for k in &cfg.env_passthrough {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(&cfg.env);
    if let Some(cwd) = &cfg.cwd {
        cmd.current_dir(cwd);
    }
    Some((cmd, prog.clone()))
}

pub(super) async fn write_line(run: &Running, line: Bytes) -> Result<(), UpstreamError> {
    if !run.alive.load(Ordering::Relaxed) {
        return Err(UpstreamError::Exited);
    }
    // Newline-delimited framing: JSON whitespace newlines become spaces (newlines inside strings
    // are always escaped in valid JSON, so meaning is unchanged).
    let line = if line.contains(&b'\n') || line.contains(&b'\r') {
        Bytes::from(
            line.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
                .collect::<Vec<u8>>(),
        )
    } else {
        line
    };
    run.stdin
        .send(line)
        .await
        .map_err(|_| UpstreamError::Exited)
}

/// Everything the supervisor of one child needs.
pub(super) struct Supervised {
    pub child: Child,
    pub run: Arc<Running>,
    pub on_event: EventHook,
    pub name: String,
    pub exits: tokio::sync::watch::Sender<Option<i32>>,
    /// Held until the child was reaped.
    pub slot: Slot,
}

pub(super) async fn supervise(s: Supervised) {
    let Supervised {
        mut child,
        run,
        on_event,
        name,
        exits,
        slot,
    } = s;
    let status = tokio::select! {
        s = child.wait() => s,
        _ = wait_closed(&run) => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    drop(slot);
    let code = status.as_ref().ok().and_then(|s| s.code()).unwrap_or(-1);
    run.close_input.notify_one(); // the stdin writer ends with the child
    let status = status
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    run.alive.store(false, Ordering::Relaxed);
    let pending: Vec<Pending> = run
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .map(|(_, p)| p)
        .collect();
    for p in pending {
        // A request its client cancelled was given up: its stream just closes (nothing is
        // refused, and the client gets no answer to a cancelled request).
        if !p.cancelled {
            let _ = p.tx.try_send(Err(UpstreamError::Exited));
        }
    }
    on_event("upstream.exit", format!("{name}: {status}"));
    // Last: whoever waits for the exit finds its audit event written.
    exits.send_replace(Some(code));
}

async fn wait_closed(run: &Running) {
    while run.alive.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
