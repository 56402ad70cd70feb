//! `warden wrap -- CMD ARGS`: a drop-in for a desktop client's server command. Warden spawns the
//! server, passes its stderr through, and puts every line in either direction through the same
//! pipeline as `warden serve` (limits, envelope, guards, audit). A refused request is answered
//! with a JSON-RPC error on stdout; a refused notification is dropped and audited.
//! EOF on stdin, SIGINT or SIGTERM close the child's stdin, wait briefly, then stop it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use warden_audit::Decision;
use warden_config::UpstreamConfig;
use warden_proto::{Generation, Kind, Message, envelope};

use crate::gateway::Gateway;
use crate::guard::{Ctx, Refusal};
use crate::upstream::stdio::{read_bounded_line, server_command};

/// Run the wrapper until the client or the server goes away; returns the exit code.
pub async fn wrap(gw: Arc<Gateway>, up: UpstreamConfig) -> i32 {
    let Some((mut cmd, prog)) = server_command(&up) else {
        return 2;
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, program = %prog, "cannot start the server");
            return 127;
        }
    };
    let (Some(mut child_in), Some(child_out)) = (child.stdin.take(), child.stdout.take()) else {
        return 2;
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            if stdout.write_all(&line).await.is_err()
                || stdout.write_all(b"\n").await.is_err()
                || stdout.flush().await.is_err()
            {
                break;
            }
        }
    });
    let max = gw.cfg.limits.max_upstream_message_bytes;
    let (in_tx, mut in_rx) = mpsc::channel::<Bytes>(256);
    let child_writer = tokio::spawn(async move {
        while let Some(line) = in_rx.recv().await {
            if child_in.write_all(&line).await.is_err()
                || child_in.write_all(b"\n").await.is_err()
                || child_in.flush().await.is_err()
            {
                break;
            }
        }
        // Dropping child_in closes the server's stdin: its signal to exit.
    });

    // Server → client.
    let gw_s = gw.clone();
    let to_client = out_tx.clone();
    let server_side = tokio::spawn(async move {
        let mut reader = BufReader::new(child_out);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_bounded_line(&mut reader, &mut line, max).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, "server output refused");
                    break;
                }
            }
            let raw = Bytes::copy_from_slice(line.trim_ascii());
            if raw.is_empty() {
                continue;
            }
            let mut ctx = gw_s.stdio_ctx();
            if let Some(out) = server_message(&gw_s, &mut ctx, raw).await
                && to_client.send(out).await.is_err()
            {
                break;
            }
        }
    });

    // Client → server.
    let gw_c = gw.clone();
    let client_side = tokio::spawn(async move {
        let mut reader = BufReader::new(tokio::io::stdin());
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_bounded_line(&mut reader, &mut line, gw_c.limits.max_bytes).await {
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
                    let ctx = gw_c.stdio_ctx();
                    gw_c.audit_refusal(&ctx, &r, None);
                    let _ = out_tx
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
            match client_message(&gw_c, raw).await {
                Ok(cleared) => {
                    if in_tx.send(cleared).await.is_err() {
                        break;
                    }
                }
                Err(Some(err)) => {
                    let _ = out_tx.send(err).await;
                }
                Err(None) => {}
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
    let code = tokio::select! {
        status = child.wait() => status.ok().and_then(|s| s.code()).unwrap_or(1),
        _ = client_side => stop(&mut child, child_writer).await,
        _ = tokio::signal::ctrl_c() => stop(&mut child, tokio::spawn(async {})).await,
        _ = term => stop(&mut child, tokio::spawn(async {})).await,
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), server_side).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    code
}

async fn skip_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<()> {
    use tokio::io::AsyncBufReadExt;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

/// Close the server's stdin, give it two seconds to exit, then kill it.
async fn stop(child: &mut tokio::process::Child, writer: tokio::task::JoinHandle<()>) -> i32 {
    writer.abort();
    let _ = child.stdin.take();
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(s)) => s.code().unwrap_or(0),
        _ => {
            let _ = child.kill().await;
            0
        }
    }
}

/// Limits, envelope and guards for one client line; `Err(Some(reply))` answers a refused request.
async fn client_message(gw: &Gateway, raw: Bytes) -> Result<Bytes, Option<Bytes>> {
    let mut ctx = gw.stdio_ctx();
    let refuse = |ctx: &Ctx, r: Refusal, id: Option<&serde_json::value::RawValue>, answer: bool| {
        gw.audit_refusal(ctx, &r, None);
        answer.then(|| Bytes::from(r.to_rpc_error().to_bytes(id)))
    };
    if let Err(e) = gw.limits.check(&raw) {
        let code = if matches!(e, warden_proto::limits::LimitError::InvalidUtf8 { .. }) {
            -32700
        } else {
            -32600
        };
        return Err(refuse(
            &ctx,
            Refusal::new(
                400,
                code,
                "input_limit",
                "P1.1",
                e.to_string(),
                "send a smaller, shallower UTF-8 message",
            ),
            None,
            true,
        ));
    }
    if envelope::is_batch(&raw) {
        return Err(refuse(
            &ctx,
            Refusal::new(
                400,
                -32600,
                "batch_not_allowed",
                "P1.1",
                "JSON-RPC batches are not accepted",
                "send one message per line",
            ),
            None,
            true,
        ));
    }
    let msg = match Message::parse(&raw) {
        Ok(m) => m,
        Err(e) => {
            return Err(refuse(
                &ctx,
                Refusal::invalid_message(&e, "send one valid JSON-RPC 2.0 message per line"),
                None,
                true,
            ));
        }
    };
    ctx.method = msg.method().map(crate::metrics::method_name);
    ctx.tool = msg.params_view().ok().and_then(|p| {
        p.name
            .as_deref()
            .or(p.uri.as_deref())
            .map(|s| crate::gateway::truncate_shared(s, 256))
    });
    let stateless = msg
        .params_view()
        .ok()
        .and_then(|p| p.meta)
        .is_some_and(|m| m.protocol_version.is_some());
    ctx.generation = Some(if stateless && msg.method() != Some("initialize") {
        Generation::Stateless
    } else {
        Generation::Session
    });
    let is_request = msg.kind() == Kind::Request;
    let id = msg.id().map(|i| i.get().to_owned());
    match gw.pipeline.client_message(raw.clone(), &mut ctx).await {
        Ok(c) => {
            gw.audit_done(&ctx, Decision::Allow, None, None);
            Ok(c.0)
        }
        Err(r) => {
            let id = id.and_then(|i| serde_json::value::RawValue::from_string(i).ok());
            Err(refuse(&ctx, r, id.as_deref(), is_request))
        }
    }
}

/// Guards for one server line; a refused response becomes an error for its id.
async fn server_message(gw: &Gateway, ctx: &mut Ctx, raw: Bytes) -> Option<Bytes> {
    let (kind, id) = match Message::parse(&raw) {
        Ok(m) => (m.kind(), m.id().map(|i| i.get().to_owned())),
        Err(e) => {
            let r = Refusal::new(
                502,
                e.code(),
                "upstream_invalid_message",
                "P1.1",
                e.to_string(),
                "the server wrote a line that is not JSON-RPC; it was dropped",
            );
            gw.audit_refusal(ctx, &r, None);
            return None;
        }
    };
    match gw.pipeline.server_message(raw, ctx).await {
        Ok(out) => Some(out),
        Err(r) => {
            gw.audit_refusal(ctx, &r, None);
            matches!(kind, Kind::Response | Kind::Error).then(|| {
                let id = id.and_then(|i| serde_json::value::RawValue::from_string(i).ok());
                Bytes::from(r.to_rpc_error().to_bytes(id.as_deref()))
            })
        }
    }
}
