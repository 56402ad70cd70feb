//! Relaying what an upstream answered: a JSON body, or a stream of frames written to the client
//! as SSE (HTTP) or lines (stdio). Every server→client message walks the pipeline bottom-up (a
//! list answer's items meet `list_item` first); a message no guard changed goes out as its
//! original bytes (SSE blocks included, with their ids and `retry:`), so resumption and unknown
//! fields survive the relay — except, inside a session, the event id, which goes out bound to
//! the session (`event_ids.rs`). A streamed JSON body ([`Reply::Lines`]) is relayed the same way,
//! message by message as it arrives, one per line. An upstream answer that is not a valid
//! JSON-RPC message, or answers another id, is refused (502 `upstream_invalid_response`), never
//! relayed unguarded.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use warden_audit::Decision;
use warden_proto::error::code;
use warden_proto::sse;
use warden_proto::{Kind, Message};

use warden_guard::{Ctx, Refusal};

use super::answer::{Answer, Answered, Framing, Wire, raw_id};
use super::hold::Hold;
use crate::event_log::{self, EventLog};
use crate::gateway::Gateway;
use crate::pipeline::Walked;
use crate::upstream::stdio::StdioUpstream;
use crate::upstream::{Frame, Reply, UpstreamError, same_id};

/// Called with the final response to the client's request (e.g. to record a negotiated version).
pub type OnFinal = Box<dyn FnOnce(&Message<'_>) + Send + Sync>;

/// Everything needed to answer one client request from an upstream reply.
pub struct Relay {
    pub gw: Arc<Gateway>,
    pub ctx: Ctx,
    /// The client's raw request id; `None` for GET streams.
    pub request_id: Option<String>,
    pub on_final: Option<OnFinal>,
    /// The stdio child to tell when the client abandons the request.
    pub cancel: Option<Arc<StdioUpstream>>,
    /// The id that child saw for the request (from the reply; Warden's own on a shared child).
    pub wire_id: Option<String>,
    /// `Mcp-Session-Id` to put on the response (initialize).
    pub session_header: Option<String>,
    pub timeout: Duration,
    /// Session event log: set for session-era stdio upstreams, whose streams Warden numbers and
    /// keeps for resumption (see `event_log.rs`).
    pub log: Option<Arc<EventLog>>,
    /// How the front end writes a stream.
    pub wire: Wire,
    /// The refusal of a server message that could not be read: if the stream then ends without
    /// the final answer, that one may have been it, and the client gets this error instead.
    pub unreadable: Option<Refusal>,
    /// This relay's hold on the call it finishes (audited `mcp.interrupted` if dropped first).
    pub hold: Hold,
}

/// Error message for the client's request when the upstream failed.
pub fn upstream_refusal(e: &UpstreamError) -> Refusal {
    let (status, retry) = match e {
        UpstreamError::Timeout(_) => (504, None),
        UpstreamError::Restarting(s) => (503, Some(*s)),
        UpstreamError::Capacity { .. } => (503, Some(crate::upstream::CAPACITY_RETRY_SECS)),
        _ => (502, None),
    };
    let mut r = Refusal::new(
        status,
        code::UPSTREAM_UNAVAILABLE,
        e.reason(),
        e.control(),
        format!("Upstream error: {e}"),
        "the MCP server behind Warden failed; retry later or ask the operator",
    );
    r.retry_after = retry;
    r
}

impl Relay {
    /// A relay with nothing but its gateway, context and timeout; callers set what they need.
    pub fn new(gw: Arc<Gateway>, ctx: Ctx, timeout: Duration) -> Self {
        Self {
            hold: Hold::join(&gw, &ctx),
            unreadable: None,
            gw,
            ctx,
            timeout,
            request_id: None,
            on_final: None,
            cancel: None,
            wire_id: None,
            session_header: None,
            log: None,
            wire: Wire::Sse,
        }
    }

    fn finish(&self, decision: Decision, status: u16, reason: Option<&'static str>) {
        self.gw
            .audit_done(&self.ctx, decision, Some(status), reason);
    }

    /// Audit a relayed stream once it ended, cleanly or not. A request's stream that ends
    /// without its answer because Warden is stopping is an interruption (#13 item 9).
    fn finish_stream(&self, clean: bool, final_seen: bool) {
        if !final_seen && self.request_id.is_some() && self.gw.in_flight.is_stopping() {
            if self.gw.in_flight.take(self.ctx.request_id.0).is_some() {
                self.gw.audit_interrupted(&self.ctx, "shutdown");
            }
            return;
        }
        let decision = if clean {
            Decision::Allow
        } else {
            Decision::Error
        };
        self.finish(decision, 200, (!clean).then_some("stream_interrupted"));
    }

    /// The guarded final answer as one JSON body, audited allowed.
    fn json(&self, status: u16, body: Bytes) -> Answered {
        self.finish(Decision::Allow, status, None);
        self.with_session(Answer::Json {
            status,
            content_type: Some(JSON.clone()),
            body,
        })
    }

    fn with_session(&self, answer: Answer) -> Answered {
        Answered {
            answer,
            session: self.session_header.clone(),
        }
    }

    /// Answer the client from the upstream's reply.
    pub async fn respond(mut self, reply: Reply) -> Answered {
        match reply {
            Reply::Accepted => {
                self.finish(Decision::Allow, 202, None);
                self.with_session(Answer::Accepted)
            }
            Reply::Body { status, body, .. } => {
                let msg = match Message::parse(&body) {
                    Ok(m) => m,
                    Err(e) => {
                        // Not one JSON-RPC message (a plain HTTP error page, duplicate keys, two
                        // results…): never relayed. An upstream error status is kept.
                        let mut r = Refusal::upstream_invalid(format!(
                            "the upstream answered HTTP {status} with a body that is not one valid JSON-RPC message ({})",
                            e.reason()
                        ));
                        if status >= 400 {
                            r.status = status;
                        }
                        return self.refused(&r);
                    }
                };
                if let Some(r) = self.foreign_answer(&msg) {
                    return self.refused(&r);
                }
                match self.server_parsed(&body, &msg).await {
                    Ok(out) => self.json(status, out),
                    Err(r) => self.refused(&r),
                }
            }
            Reply::Lines {
                status,
                content_type,
                frames,
            } => {
                if self.wire == Wire::Lines {
                    return self.stream(None, frames);
                }
                // A streamed JSON body: relayed as it comes, one message per line (#13 item 19).
                let session = self.session_header.clone();
                let rx = self.pump(None, frames, Framing::Ndjson);
                Answered {
                    answer: Answer::Lines {
                        status,
                        content_type,
                        rx,
                    },
                    session,
                }
            }
            Reply::Stream {
                frames,
                sse,
                wire_id,
            } => {
                self.wire_id = wire_id;
                if let (false, Some(log)) = (sse, self.log.clone()) {
                    return self.logged(log, frames);
                }
                if self.wire == Wire::Lines {
                    // stdio: every message is a line as it comes; nothing to decide up front.
                    return self.stream(None, frames);
                }
                if !sse {
                    // Boxed: the stdio answer's state stays out of every HTTP exchange's future.
                    return Box::pin(self.first_frame(frames)).await;
                }
                self.stream(None, frames)
            }
        }
    }

    /// stdio: answer JSON when the first thing the server says is the final response, else
    /// stream from that first message on.
    async fn first_frame(
        mut self,
        mut frames: mpsc::Receiver<Result<Frame, UpstreamError>>,
    ) -> Answered {
        let first = match tokio::time::timeout(self.timeout, frames.recv()).await {
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => return self.refused(&upstream_refusal(&e)),
            Ok(None) => return self.refused(&upstream_refusal(&UpstreamError::Exited)),
            Err(_) => {
                self.cancel_upstream().await;
                return self.refused(&upstream_refusal(&UpstreamError::Timeout(
                    self.timeout.as_millis() as u64,
                )));
            }
        };
        let data = first.data.clone().unwrap_or_default();
        if let Ok(m) = Message::parse(&data)
            && self.is_final_msg(&m)
        {
            return match self.server_parsed(&data, &m).await {
                Ok(out) => self.json(self.status_for(&out), out),
                Err(r) => self.refused(&r),
            };
        }
        self.stream(Some(first), frames)
    }

    /// HTTP status for a JSON answer from an upstream without HTTP (stdio). The 2026-07-28
    /// transport gives some errors their own status: unknown method 404; header mismatch, missing
    /// capability and unsupported version 400.
    fn status_for(&self, out: &[u8]) -> u16 {
        if self.ctx.generation != Some(warden_proto::Generation::Stateless) {
            return 200;
        }
        #[derive(serde::Deserialize)]
        struct E {
            code: i64,
        }
        let code = Message::parse(out)
            .ok()
            .and_then(|m| {
                m.error_text()
                    .and_then(|e| serde_json::from_str::<E>(e).ok())
            })
            .map(|e| e.code);
        match code {
            Some(code::METHOD_NOT_FOUND) => 404,
            Some(
                code::HEADER_MISMATCH
                | code::MISSING_CLIENT_CAPABILITY
                | code::UNSUPPORTED_PROTOCOL_VERSION,
            ) => 400,
            _ => 200,
        }
    }

    fn refused(&self, r: &Refusal) -> Answered {
        let id = raw_id(self.request_id.as_deref());
        self.gw.audit_refusal(&self.ctx, r, id.as_deref());
        self.with_session(Answer::Refused {
            refusal: r.clone(),
            id,
        })
    }

    /// A response in a JSON body that answers some other request than the client's.
    fn foreign_answer(&self, m: &Message<'_>) -> Option<Refusal> {
        let want = self.request_id.as_deref()?;
        let answers = matches!(m.kind(), Kind::Response | Kind::Error);
        (answers && !m.id_text().is_some_and(|i| same_id(i, want)))
            .then(|| Refusal::upstream_invalid("the upstream answered with another request's id"))
    }

    /// Is this the response (or error) to the client's request?
    fn is_final_msg(&self, m: &Message<'_>) -> bool {
        let Some(want) = &self.request_id else {
            return false;
        };
        matches!(m.kind(), Kind::Response | Kind::Error)
            && m.id_text().is_some_and(|i| same_id(i, want))
    }

    /// Run one server message through the guards (bottom-up), parsing it once. Says whether it
    /// is the final response to the client's request (`on_final` is called for that one).
    pub async fn server_message(&mut self, data: &Bytes) -> (bool, Result<Bytes, Refusal>) {
        match Message::parse(data) {
            // A response in the stream to some other request (#13 item 13): never relayed.
            Ok(m) => match self.foreign_answer(&m) {
                Some(r) => (false, Err(r)),
                None => (self.is_final_msg(&m), self.server_parsed(data, &m).await),
            },
            Err(e) => {
                let r = Refusal::upstream_invalid(format!(
                    "the upstream sent a message that is not valid JSON-RPC ({})",
                    e.reason()
                ));
                self.unreadable = Some(r.clone());
                (false, Err(r))
            }
        }
    }

    /// The guards for a message already parsed from `raw`; a list answer's items meet the
    /// `list_item` hook first.
    async fn server_parsed(&mut self, raw: &Bytes, msg: &Message<'_>) -> Result<Bytes, Refusal> {
        if self.is_final_msg(msg)
            && let Some(kind) = self
                .ctx
                .method
                .as_deref()
                .and_then(warden_guard::ListKind::of)
            && let Some(filtered) = super::lists::filter(&self.gw, &self.ctx, msg, kind).await?
        {
            let m = Message::parse(&filtered).map_err(|_| Refusal::internal())?;
            let out = match self.gw.pipeline.server_parsed(&m, &mut self.ctx).await? {
                Walked::Unchanged => filtered.clone(),
                Walked::Rewritten(b) => b,
            };
            if let Ok(m) = Message::parse(&out) {
                self.call_on_final(&m);
            }
            return Ok(out);
        }
        let out = match self.gw.pipeline.server_parsed(msg, &mut self.ctx).await? {
            Walked::Unchanged => {
                self.call_on_final(msg);
                return Ok(raw.clone());
            }
            Walked::Rewritten(out) => out,
        };
        if self.on_final.is_some()
            && let Ok(m) = Message::parse(&out)
        {
            self.call_on_final(&m);
        }
        Ok(out)
    }

    /// Hand the final response to `on_final`, once.
    fn call_on_final(&mut self, m: &Message<'_>) {
        if self.on_final.is_some()
            && self.is_final_msg(m)
            && let Some(f) = self.on_final.take()
        {
            f(m);
        }
    }

    async fn cancel_upstream(&self) {
        if let (Some(child), Some(id)) = (&self.cancel, &self.wire_id) {
            child.cancel(id).await;
        }
    }

    /// Pump frames to the client as SSE (HTTP) or lines (stdio) on a task; returns the streaming
    /// response at once.
    fn stream(
        self,
        first: Option<Frame>,
        frames: mpsc::Receiver<Result<Frame, UpstreamError>>,
    ) -> Answered {
        let session = self.session_header.clone();
        let framing = if self.wire == Wire::Lines {
            Framing::Lines
        } else {
            Framing::Sse
        };
        Answered {
            answer: Answer::Stream(self.pump(first, frames, framing)),
            session,
        }
    }

    /// The task behind a stream: every frame through the guards, written in `framing`.
    fn pump(
        self,
        first: Option<Frame>,
        mut frames: mpsc::Receiver<Result<Frame, UpstreamError>>,
        framing: Framing,
    ) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            let mut me = self;
            let mut pending = first;
            let mut final_seen = false;
            let mut clean = true;
            loop {
                let item = match pending.take() {
                    Some(f) => Ok(f),
                    // A client that goes away while the server is quiet is noticed at once,
                    // not at the server's next message.
                    None => tokio::select! {
                        i = frames.recv() => match i {
                            Some(i) => i,
                            None => {
                                me.unanswered(&tx, final_seen).await;
                                break;
                            }
                        },
                        _ = tx.closed() => {
                            if !final_seen {
                                me.cancel_upstream().await;
                            }
                            clean = false;
                            break;
                        }
                    },
                };
                let frame = match item {
                    Ok(f) => f,
                    Err(e) => {
                        if !final_seen && me.request_id.is_some() {
                            let r = upstream_refusal(&e);
                            let id = raw_id(me.request_id.as_deref());
                            me.gw.audit_refusal(&me.ctx, &r, id.as_deref());
                            let err = r.to_rpc_error().to_bytes(id.as_deref());
                            let _ = tx.send(framing.encode(&err)).await;
                        }
                        clean = false;
                        break;
                    }
                };
                tracing::debug!(request = %me.ctx.request_id, id = ?frame.id, bytes = frame.data.as_ref().map_or(0, |d| d.len()), "relaying frame");
                let out = match me.frame_bytes(frame, &mut final_seen, framing).await {
                    Some(b) => b,
                    None => continue,
                };
                if tx.send(out).await.is_err() {
                    if !final_seen {
                        me.cancel_upstream().await;
                    }
                    clean = false;
                    break;
                }
                if final_seen && me.cancel.is_some() {
                    break; // stdio: the final response ends the stream.
                }
            }
            me.finish_stream(clean, final_seen);
        });
        rx
    }

    /// The stream ended without the final answer after a message that could not be read: that
    /// one may have been it, so the client gets an error for its request rather than silence.
    async fn unanswered(&mut self, tx: &mpsc::Sender<Bytes>, final_seen: bool) {
        if final_seen || self.request_id.is_none() {
            return;
        }
        if let Some(r) = self.unreadable.take() {
            let id = raw_id(self.request_id.as_deref());
            let err = r.to_rpc_error().to_bytes(id.as_deref());
            let _ = tx.send(super::answer::encode(self.wire, &err)).await;
        }
    }

    /// The bytes to write for one frame, after the guards; `None` to drop it.
    async fn frame_bytes(
        &mut self,
        frame: Frame,
        final_seen: &mut bool,
        framing: Framing,
    ) -> Option<Bytes> {
        if framing != Framing::Sse {
            // stdio and streamed JSON bodies have no SSE framing: messages only.
            let data = frame.data.filter(|d| !d.is_empty())?;
            let (is_final, walked) = self.server_message(&data).await;
            *final_seen |= is_final;
            return match walked {
                Ok(out) => Some(framing.message(out)),
                Err(r) => {
                    let id = raw_id(self.request_id.as_deref());
                    self.gw.audit_part_refusal(&self.ctx, &r, id.as_deref());
                    is_final.then(|| framing.encode(&r.to_rpc_error().to_bytes(id.as_deref())))
                }
            };
        }
        let frame = self.bind_id(frame);
        let Some(data) = frame.data.clone() else {
            return Some(frame.raw.unwrap_or_else(|| {
                sse::encode(
                    frame.id.as_deref(),
                    frame.event.as_deref(),
                    frame.retry,
                    None,
                )
            }));
        };
        if data.is_empty() {
            return Some(frame.raw.unwrap_or_else(|| {
                sse::encode(
                    frame.id.as_deref(),
                    frame.event.as_deref(),
                    frame.retry,
                    Some(""),
                )
            }));
        }
        let (is_final, walked) = self.server_message(&data).await;
        *final_seen |= is_final;
        match walked {
            Ok(out) if out == data && frame.raw.is_some() => frame.raw,
            Ok(out) => Some(sse::encode(
                frame.id.as_deref(),
                frame.event.as_deref().or(Some("message")),
                frame.retry,
                std::str::from_utf8(&out).ok(),
            )),
            Err(r) => {
                let id = raw_id(self.request_id.as_deref());
                self.gw.audit_part_refusal(
                    &self.ctx,
                    &r,
                    is_final.then_some(id.as_deref()).flatten(),
                );
                if !is_final {
                    return None; // a refused notification or server request is dropped (and audited)
                }
                let err = r.to_rpc_error().to_bytes(id.as_deref());
                Some(sse::encode(
                    frame.id.as_deref(),
                    Some("message"),
                    None,
                    std::str::from_utf8(&err).ok(),
                ))
            }
        }
    }
}

impl Relay {
    /// Within a session, an upstream's event id goes to the client bound to the session (and the
    /// upstream), so that only this session can resume with it (`event_ids.rs`, #13 item 18).
    fn bind_id(&self, mut frame: Frame) -> Frame {
        let (Some(session), Some(id)) = (self.ctx.session.as_deref(), frame.id.as_deref()) else {
            return frame;
        };
        if id.is_empty() {
            return frame; // an empty id resets the client's cursor: nothing to bind
        }
        let prefix = self.gw.event_ids.prefix(session, id);
        frame.raw = frame
            .raw
            .as_deref()
            .and_then(|raw| sse::prefix_id(raw, &prefix));
        frame.id = Some(format!("{prefix}{id}"));
        frame
    }

    /// Pump frames into the session's event log on a task (guards run once, here) and answer with
    /// a follower of that stream. A client that drops the connection can resume with GET +
    /// `Last-Event-ID`; the request goes on (2025-era rule: a disconnect is not a cancellation).
    fn logged(
        self,
        log: Arc<EventLog>,
        mut frames: mpsc::Receiver<Result<Frame, UpstreamError>>,
    ) -> Answered {
        let stream = log.open();
        let resp = self.with_session(Answer::Stream(event_log::follow(log.clone(), stream, None)));
        tokio::spawn(async move {
            let mut me = self;
            let mut clean = true;
            let mut final_seen = false;
            while let Some(item) = frames.recv().await {
                let frame = match item {
                    Ok(f) => f,
                    Err(e) => {
                        if me.request_id.is_some() {
                            let r = upstream_refusal(&e);
                            let id = raw_id(me.request_id.as_deref());
                            me.gw.audit_refusal(&me.ctx, &r, id.as_deref());
                            log.push(stream, &r.to_rpc_error().to_bytes(id.as_deref()));
                        }
                        clean = false;
                        break;
                    }
                };
                let Some(data) = frame.data else { continue };
                let (is_final, walked) = me.server_message(&data).await;
                match walked {
                    Ok(out) => log.push(stream, &out),
                    Err(r) => {
                        me.gw.audit_part_refusal(&me.ctx, &r, None);
                        if is_final {
                            let id = raw_id(me.request_id.as_deref());
                            log.push(stream, &r.to_rpc_error().to_bytes(id.as_deref()));
                        }
                    }
                }
                if is_final {
                    final_seen = true;
                    break;
                }
            }
            log.finish(stream);
            me.finish_stream(clean, final_seen);
        });
        resp
    }
}

static JSON: http::HeaderValue = http::HeaderValue::from_static("application/json");
