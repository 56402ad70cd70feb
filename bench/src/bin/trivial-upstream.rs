//! trivial-upstream: a minimal, fast Streamable HTTP MCP server for Warden's relay benchmark.
//!
//! hyper 1 (HTTP/1.1 keep-alive) on 127.0.0.1. Every answer is `application/json`:
//! `initialize` → a session id and a small result; notifications and client responses → 202;
//! `tools/list` → one `echo` tool; `tools/call` → the `message` argument echoed as text; `ping` →
//! `{}`. Requests after `initialize` must carry a session id this process issued (400 without, 404
//! for an unknown one), so a relay that loses or mixes up sessions shows up as errors.
//!
//! Usage: `trivial-upstream [--port N | PORT=N] [--threads N]`; prints
//! `trivial-upstream: listening on http://127.0.0.1:PORT/mcp` on stderr and runs until killed.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "A minimal Streamable HTTP MCP server for benchmarks")]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one (printed on stderr).
    #[arg(long, env = "PORT", default_value_t = 0)]
    port: u16,
    /// Runtime worker threads; 1 runs a single-threaded runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const SESSION_PREFIX: &str = "trivial-";
const TOOLS: &str = r#"{"tools":[{"name":"echo","description":"Echo the message argument","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}}}]}"#;

struct State {
    next_session: AtomicU64,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct InitParams<'a> {
    #[serde(borrow, default, rename = "protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<EchoArgs<'a>>,
}

#[derive(Deserialize)]
struct EchoArgs<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

type Resp = Response<Full<Bytes>>;

fn reply(status: u16, json: Option<Vec<u8>>) -> Resp {
    let is_json = json.is_some();
    let mut r = Response::new(Full::new(json.map(Bytes::from).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if is_json {
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
    }
    r
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}` with the id's exact bytes.
fn result(id: &RawValue, result: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + result.len());
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(result);
    out.push(b'}');
    out
}

fn rpc_error(status: u16, id: Option<&RawValue>, code: i32, message: &str) -> Resp {
    let id = id.map_or("null", RawValue::get);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{}}}}}"#,
        serde_json::Value::from(message)
    );
    reply(status, Some(body.into_bytes()))
}

/// Is `sid` a session id this process issued?
fn known_session(state: &State, sid: &str) -> bool {
    sid.strip_prefix(SESSION_PREFIX)
        .and_then(|n| u64::from_str_radix(n, 16).ok())
        .is_some_and(|n| n >= 1 && n < state.next_session.load(Ordering::Relaxed))
}

fn call(id: &RawValue, params: Option<&RawValue>) -> Resp {
    let parsed = params.and_then(|p| serde_json::from_str::<CallParams<'_>>(p.get()).ok());
    let Some(p) = parsed else {
        return rpc_error(200, Some(id), -32602, "tools/call needs params.name");
    };
    let (text, is_error) = if p.name == "echo" {
        let msg = p.arguments.and_then(|a| a.message);
        (msg.unwrap_or(Cow::Borrowed("")), false)
    } else {
        (Cow::Owned(format!("unknown tool {}", p.name)), true)
    };
    let mut out = Vec::with_capacity(96 + text.len());
    out.extend_from_slice(br#"{"content":[{"type":"text","text":"#);
    if serde_json::to_writer(&mut out, &*text).is_err() {
        return rpc_error(500, Some(id), -32603, "encode");
    }
    out.extend_from_slice(if is_error {
        br#"}],"isError":true}"#.as_slice()
    } else {
        br#"}],"isError":false}"#.as_slice()
    });
    reply(200, Some(result(id, &out)))
}

fn initialize(state: &State, id: &RawValue, params: Option<&RawValue>) -> Resp {
    let asked = params
        .and_then(|p| serde_json::from_str::<InitParams<'_>>(p.get()).ok())
        .and_then(|p| p.protocol_version.map(Cow::into_owned));
    let version = asked
        .as_deref()
        .and_then(|v| VERSIONS.iter().find(|s| **s == v))
        .copied()
        .unwrap_or(VERSIONS[0]);
    let body = format!(
        r#"{{"protocolVersion":"{version}","capabilities":{{"tools":{{"listChanged":false}}}},"serverInfo":{{"name":"trivial-upstream","version":"0.1.0"}}}}"#
    );
    let n = state.next_session.fetch_add(1, Ordering::Relaxed);
    let mut r = reply(200, Some(result(id, body.as_bytes())));
    if let Ok(v) = HeaderValue::from_str(&format!("{SESSION_PREFIX}{n:016x}")) {
        r.headers_mut().insert("mcp-session-id", v);
    }
    r
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return Ok(reply(200, None)),
        _ => {
            let mut r = reply(405, None);
            r.headers_mut()
                .insert("allow", HeaderValue::from_static("POST, DELETE"));
            return Ok(r);
        }
    }
    let session = req
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().is_ok_and(|s| known_session(&state, s)));
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(reply(400, None));
    };
    let Ok(env) = serde_json::from_slice::<Envelope<'_>>(&body) else {
        return Ok(rpc_error(400, None, -32700, "Parse error"));
    };
    let method = env.method.as_deref();
    if let (Some(id), Some("initialize")) = (env.id, method) {
        return Ok(initialize(&state, id, env.params));
    }
    match session {
        None => return Ok(rpc_error(400, env.id, -32000, "Mcp-Session-Id required")),
        Some(false) => return Ok(rpc_error(404, env.id, -32001, "Session not found")),
        Some(true) => {}
    }
    Ok(match (env.id, method) {
        (Some(id), Some("tools/call")) => call(id, env.params),
        (Some(id), Some("tools/list")) => reply(200, Some(result(id, TOOLS.as_bytes()))),
        (Some(id), Some("ping")) => reply(200, Some(result(id, b"{}"))),
        (Some(id), Some(_)) => rpc_error(200, Some(id), -32601, "Method not found"),
        // A notification, or the client's answer to a server request.
        (None, Some(_)) | (Some(_), None) => reply(202, None),
        (None, None) => rpc_error(400, None, -32600, "Invalid Request"),
    })
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    eprintln!("trivial-upstream: listening on http://127.0.0.1:{port}/mcp");
    let state = Arc::new(State {
        next_session: AtomicU64::new(1),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(st.clone(), req));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut builder = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let result = builder
        .enable_all()
        .build()
        .and_then(|rt| rt.block_on(serve(args.port)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trivial-upstream: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
