//! `warden wrap -- CMD ARGS`: a drop-in for a desktop client's server command. The wrapped
//! server is the one upstream of a session the local client owns; every line the client writes
//! goes through the same [`crate::exchange`] core as `warden serve` (limits, envelope, route,
//! guards, audit), and every line the server writes comes back through the server→client
//! guards — the answers to requests, and what the server says on its own (its standalone
//! stream). This file only reads and writes lines. A refused request is answered with a JSON-RPC
//! error; a refused notification is dropped and audited. The server's stderr passes through.
//!
//! Answers to requests Warden itself sent the client (a guard's elicitation) are taken from the
//! input as it is read, so a guard awaiting one never blocks it. EOF on stdin, SIGINT or SIGTERM:
//! Warden waits (bounded) for the answers still due, closes the server's stdin, gives it two
//! seconds to exit, then stops it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use warden_guard::Refusal;
use warden_proto::Message;

use crate::exchange::answer::{Answer, Answered, Early, Wire};
use crate::exchange::{self, relay::Relay};
use crate::gateway::{Gateway, Link, SessionState};
use crate::session::fingerprint;
use crate::upstream::Reply;
use crate::upstream::stdio::{read_bounded_line, skip_line};

/// How long answers still due may take after the client closed its input.
const DRAIN: Duration = Duration::from_secs(10);

/// Run the wrapper on the process's stdin and stdout; returns the exit code.
pub async fn wrap(gw: Arc<Gateway>) -> i32 {
    wrap_io(gw, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Run the wrapper on `input` and `output` until the client or the server goes away.
pub async fn wrap_io(
    gw: Arc<Gateway>,
    input: impl AsyncRead + Unpin + Send + 'static,
    output: impl AsyncWrite + Unpin + Send + 'static,
) -> i32 {
    let session: Arc<SessionState> = Arc::new(gw.new_session_state(fingerprint("wrap")));
    let Some(Link::Stdio(child)) = session.links.first() else {
        tracing::error!("warden wrap needs exactly one stdio server");
        return 2;
    };
    let child = child.clone();
    if let Err(e) = child.start().await {
        tracing::error!(error = %e, "cannot start the server");
        return 127;
    }
    let mut exits = child.exits();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(line) = out_rx.recv().await {
            if output.write_all(&line).await.is_err()
                || output.write_all(b"\n").await.is_err()
                || output.flush().await.is_err()
            {
                break;
            }
        }
    });
    let headers = Arc::new(HeaderMap::new());
    let early = Early::lines(out_tx.clone());

    // What the server says on its own (no request of the client's open): through the guards.
    let server_stream = {
        let relay = Relay {
            wire: Wire::Lines,
            ..Relay::new(gw.clone(), gw.stdio_ctx(), Duration::from_secs(86_400))
        };
        let frames = child.open_server_stream();
        let answered = relay
            .respond(Reply::Stream {
                frames,
                sse: false,
                wire_id: None,
            })
            .await;
        tokio::spawn(pump(answered, out_tx.clone()))
    };

    // Client lines are taken in order; each exchange's answer is written as it comes.
    let (line_tx, mut line_rx) = mpsc::channel::<Bytes>(256);
    let gw_x = gw.clone();
    let sess_x = session.clone();
    let out_x = out_tx.clone();
    let exchanges = tokio::spawn(async move {
        let mut answers = tokio::task::JoinSet::new();
        while let Some(raw) = line_rx.recv().await {
            let ctx = gw_x.stdio_ctx();
            let a = exchange::line(
                gw_x.clone(),
                ctx,
                sess_x.clone(),
                headers.clone(),
                raw,
                early.clone(),
            )
            .await;
            answers.spawn(pump(a, out_x.clone()));
        }
        // Input closed: the answers still due, bounded.
        let _ = tokio::time::timeout(DRAIN, async {
            while answers.join_next().await.is_some() {}
        })
        .await;
    });
    let reader_gw = gw.clone();
    let reader_sess = session.clone();
    let reader_out = out_tx.clone();
    let reader = tokio::spawn(async move {
        let mut reader = BufReader::new(input);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_bounded_line(&mut reader, &mut line, reader_gw.limits.max_bytes).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    let r = Refusal::new(
                        413,
                        warden_proto::error::code::INVALID_REQUEST,
                        "body_too_large",
                        "P1.1",
                        "Message over the size limit",
                        "send a smaller message",
                    );
                    let ctx = reader_gw.stdio_ctx();
                    reader_gw.audit_refusal(&ctx, &r, None);
                    let _ = reader_out
                        .send(Bytes::from(r.to_rpc_error().to_bytes(None)))
                        .await;
                    // The rest of the oversize line is unreadable as a message; skip to its end.
                    if skip_line(&mut reader).await.is_err() {
                        break;
                    }
                    continue;
                }
            }
            let raw = Bytes::copy_from_slice(line.trim_ascii());
            if raw.is_empty() {
                continue;
            }
            // An answer to Warden's own request goes to the guard awaiting it, at once.
            if let Ok(m) = Message::parse(&raw)
                && matches!(
                    m.kind(),
                    warden_proto::Kind::Response | warden_proto::Kind::Error
                )
                && reader_sess.waiters.take_answer(&m)
            {
                let mut ctx = reader_gw.stdio_ctx();
                let _ = exchange::describe(&mut ctx, &m);
                reader_gw.audit_done(
                    &ctx,
                    warden_audit::Decision::Allow,
                    None,
                    Some("answer_to_warden"),
                );
                continue;
            }
            if line_tx.send(raw).await.is_err() {
                break;
            }
        }
    });

    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match sigterm.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    let exited = async {
        loop {
            if let Some(code) = *exits.borrow_and_update() {
                return code;
            }
            if exits.changed().await.is_err() {
                return 1;
            }
        }
    };
    tokio::pin!(exchanges);
    let code = tokio::select! {
        code = exited => {
            // The server went first: the calls it left open end as its exit decides (refused
            // `upstream_exited`, or quietly when their client cancelled them), not as Warden's
            // shutdown, so their relays finish before shutdown starts.
            gw.settle(Duration::from_millis(500)).await;
            code
        }
        _ = &mut exchanges => stop(&child, &mut exits).await,
        _ = tokio::signal::ctrl_c() => stop(&child, &mut exits).await,
        _ = term => stop(&child, &mut exits).await,
    };
    reader.abort();
    // What is still open after the drain is cut off: audited `interrupted`, never lost.
    gw.stopping();
    gw.stop(Duration::from_secs(2)).await;
    gw.close_session(&session).await;
    server_stream.abort();
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    code
}

/// Write one exchange's answer as lines.
async fn pump(a: Answered, out: mpsc::Sender<Bytes>) {
    match a.answer {
        Answer::Json { body, .. } => {
            let _ = out.send(body).await;
        }
        Answer::Refused { refusal, id } => {
            let _ = out
                .send(Bytes::from(refusal.to_rpc_error().to_bytes(id.as_deref())))
                .await;
        }
        Answer::Stream(mut rx) => {
            while let Some(b) = rx.recv().await {
                if out.send(b).await.is_err() {
                    return;
                }
            }
        }
        // Not made for a stdio front end (its relay writes bare lines), but written right if so.
        Answer::Lines { mut rx, .. } => {
            while let Some(b) = rx.recv().await {
                let line = b
                    .strip_suffix(b"\n")
                    .map_or(b.clone(), |m| b.slice(..m.len()));
                if out.send(line).await.is_err() {
                    return;
                }
            }
        }
        Answer::Accepted | Answer::Local(_) | Answer::Empty(_) => {}
    }
}

/// Close the server's stdin, give it two seconds to exit, then stop it. A server that exits
/// on its own after EOF gives its exit code; one that had to be stopped counts as a clean stop.
async fn stop(
    child: &crate::upstream::stdio::StdioUpstream,
    exits: &mut tokio::sync::watch::Receiver<Option<i32>>,
) -> i32 {
    child.close_input().await;
    let waited = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(code) = *exits.borrow_and_update() {
                return code;
            }
            if exits.changed().await.is_err() {
                return 0;
            }
        }
    })
    .await;
    match waited {
        Ok(code) => code,
        Err(_) => {
            child.shutdown().await;
            0
        }
    }
}
