//! # warden
//!
//! The command line: `serve` (Streamable HTTP gateway), `wrap` (stdio wrapper) and `check-config`.
//! It only parses arguments, loads configuration, sets up logging and the audit sink, and hands
//! over to `warden-gateway`. It must not contain protocol or policy logic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use warden_audit::{AuditEvent, AuditSink, Decision, JsonLinesSink};
use warden_config::{Config, LogFormat, UpstreamConfig};
use warden_gateway::Gateway;

mod sessions_cli;

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "A security gateway for the Model Context Protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Streamable HTTP gateway in front of the configured upstreams.
    Serve {
        /// Configuration file (TOML).
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Wrap a stdio MCP server: use `warden wrap -- CMD ARGS` as a desktop client's server command.
    Wrap {
        /// Configuration file (TOML); its [[upstream]] entries are ignored.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
        /// Pass this variable from Warden's environment to the server (repeatable). The server
        /// otherwise gets only PATH, HOME, LANG, LC_ALL, TMPDIR, TERM and USER.
        #[arg(long = "pass-env", value_name = "NAME")]
        pass_env: Vec<String>,
        /// The server command and its arguments.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// List or revoke the downstream sessions of a running `warden serve` (admin listener).
    Sessions {
        /// Configuration file (TOML) of the running gateway: its [admin] section is used.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: SessionsAction,
    },
    /// Check a configuration file; prints every error as FILE:LINE:COL with a hint.
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum SessionsAction {
    /// Open sessions: fingerprint, owner (`iss sub`), age and idle time.
    List,
    /// End one session, by the fingerprint `list` and audit events show.
    Revoke { fingerprint: String },
    /// End every session of a principal (`"<iss> <sub>"`, as `list` shows it).
    RevokePrincipal { principal: String },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    warden_config::load_file(path).map_err(|d| {
        eprint!("{}", d.render(&path.display().to_string()));
        ExitCode::from(2)
    })
}

/// What `warden serve` would load besides the configuration file (an https upstream's CA file
/// or the system trust store), checked the same way and placed at the upstream's line.
fn check_files(path: &std::path::Path, cfg: &Config) -> warden_config::Diagnostics {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = warden_config::serve_diagnostics(cfg, &text);
    if let Err(e) = warden_gateway::pipeline::check(cfg) {
        out.push(warden_config::Diagnostic {
            line: 0,
            column: 0,
            message: e,
            hint: "fix the [auth] or [upstream.auth] setting it names (files and secrets are read at start)".into(),
        });
    }
    for (i, up) in cfg.upstreams.iter().enumerate() {
        if let Err(e) = warden_gateway::upstream::tls::check(up) {
            let field = if up.tls.is_some() { "tls" } else { "url" };
            out.push(warden_config::upstream_diagnostic(
                &text,
                i,
                field,
                format!("upstream '{}': {e}", up.name),
                "point [upstream.tls] ca_file at a readable PEM file of CA certificates (a relative path is read from the working directory), or install the system's CA certificates",
            ));
        }
    }
    warden_config::Diagnostics(out)
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn audit_sink(cfg: &Config) -> Result<Arc<dyn AuditSink>, ExitCode> {
    JsonLinesSink::open(&cfg.audit.path)
        .map(|s| Arc::new(s) as Arc<dyn AuditSink>)
        .map_err(|e| {
            eprintln!(
                "warden: cannot open audit log {}: {e}",
                cfg.audit.path.display()
            );
            ExitCode::from(2)
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load(&file) {
            Ok(cfg) => {
                let problems = check_files(&file, &cfg);
                if !problems.0.is_empty() {
                    eprint!("{}", problems.render(&file.display().to_string()));
                    return ExitCode::from(2);
                }
                println!(
                    "{}: ok ({} upstream(s), listening on {}{})",
                    file.display(),
                    cfg.upstreams.len(),
                    cfg.server.listen,
                    cfg.server.path
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Sessions { config, action } => match load(&config) {
            Ok(cfg) => sessions_cli::run(
                &cfg,
                match action {
                    SessionsAction::List => sessions_cli::Action::List,
                    SessionsAction::Revoke { fingerprint } => {
                        sessions_cli::Action::Revoke(fingerprint)
                    }
                    SessionsAction::RevokePrincipal { principal } => {
                        sessions_cli::Action::RevokePrincipal(principal)
                    }
                },
            ),
            Err(code) => code,
        },
        Command::Serve { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if cfg.upstreams.is_empty() {
                eprintln!(
                    "{}:0:0: error: no [[upstream]] configured\n  hint: add at least one [[upstream]] with url or command",
                    config.display()
                );
                return ExitCode::from(2);
            }
            let problems = check_files(&config, &cfg);
            if !problems.0.is_empty() {
                eprint!("{}", problems.render(&config.display().to_string()));
                return ExitCode::from(2);
            }
            run("serve", cfg, serve)
        }
        Command::Wrap {
            config,
            pass_env,
            command,
        } => {
            let mut cfg = match config {
                Some(path) => match load(&path) {
                    Ok(c) => c,
                    Err(code) => return code,
                },
                None => Config::default(),
            };
            let mut up = UpstreamConfig::stdio("wrapped", command);
            up.env_passthrough.extend(pass_env);
            cfg.upstreams = vec![up];
            run("wrap", cfg, wrap)
        }
    }
}

/// One `gateway.start` / `gateway.stop` pair brackets every run in the audit log (P5.1), so a gap
/// in the record (a crash, a kill) shows as a start with no stop.
fn lifecycle(kind: &'static str, mode: &'static str) -> AuditEvent {
    let mut ev = AuditEvent::new(kind, Decision::Info);
    ev.facts.insert(
        "gateway",
        serde_json::json!({ "mode": mode, "version": env!("CARGO_PKG_VERSION"), "pid": std::process::id() }),
    );
    ev
}

fn run<F, Fut>(mode: &'static str, cfg: Config, f: F) -> ExitCode
where
    F: FnOnce(Config, Arc<dyn AuditSink>) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    init_logging(&cfg);
    let audit = match audit_sink(&cfg) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cfg.server.worker_threads {
        builder.worker_threads(n);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    audit.emit(lifecycle("gateway.start", mode));
    let code = rt.block_on(f(cfg, audit.clone()));
    rt.shutdown_timeout(Duration::from_secs(2));
    audit.emit(lifecycle("gateway.stop", mode));
    // The connection workers have stopped and the runtime is shut down, so every request is
    // answered or cut off: what the audit queue holds goes to disk before the process exits. An
    // event emitted after this (a task that outlived the grace time) is counted lost and logged,
    // never dropped silently (P5.1).
    audit.close(Duration::from_secs(5));
    code
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn serve(cfg: Config, audit: Arc<dyn AuditSink>) -> ExitCode {
    let listen = cfg.server.listen;
    let path = cfg.server.path.clone();
    let admin = cfg.admin.clone();
    let auth = cfg.auth.clone();
    let gw = match Gateway::new(cfg, audit) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("warden: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warden: cannot listen on {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if let Some(admin) = admin
        && let Err(e) = admin_listeners(&gw, &admin).await
    {
        eprintln!("warden: {e}");
        return ExitCode::from(2);
    }
    let sweeper = gw.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            sweeper.sweep_sessions().await;
        }
    });
    match auth {
        Some(a) if a.mode == warden_config::AuthMode::Oauth => eprintln!(
            "warden: OAuth 2.1 resource server: tokens of {} for {}",
            a.issuer.as_deref().unwrap_or_default(),
            a.resource.as_deref().unwrap_or_default()
        ),
        _ => {
            eprintln!(
                "warden: WARNING: no authentication ([auth] mode = \"local\"): loopback only"
            );
            tracing::warn!("serving without authentication ([auth] mode = \"local\")");
        }
    }
    eprintln!("warden: listening on http://{local}{path}");
    tracing::info!(%local, "warden serving");
    match warden_gateway::downstream::http::serve(gw, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: cannot start the connection workers: {e}");
            ExitCode::from(2)
        }
    }
}

/// The admin listener's TCP address and/or Unix socket.
async fn admin_listeners(
    gw: &Arc<Gateway>,
    admin: &warden_config::AdminConfig,
) -> Result<(), String> {
    let token = match &admin.token {
        Some(t) => Some(
            warden_gateway::identity::secret::read(t).map_err(|e| format!("admin.token: {e}"))?,
        ),
        None => None,
    };
    if let Some(addr) = admin.listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        eprintln!(
            "warden: admin on http://{}/metrics",
            l.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        tokio::spawn(warden_gateway::admin::serve(gw.clone(), l, token));
    }
    #[cfg(unix)]
    if let Some(path) = &admin.socket {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        // A socket left by an earlier run is replaced; anything else at the path is an error.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(path);
        }
        let l = tokio::net::UnixListener::bind(path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("warden: admin on unix:{}", path.display());
        tokio::spawn(warden_gateway::admin::serve_unix(gw.clone(), l));
    }
    Ok(())
}

async fn wrap(mut cfg: Config, audit: Arc<dyn AuditSink>) -> ExitCode {
    // The local client owns the process and its stdio: there is no token to ask for.
    cfg.auth = None;
    let gw = match Gateway::new(cfg, audit) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("warden: {e}");
            return ExitCode::from(2);
        }
    };
    let code = warden_gateway::downstream::stdio::wrap(gw).await;
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
