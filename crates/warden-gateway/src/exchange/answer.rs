//! What the exchange core hands a front end: an [`Answer`] (transport-neutral: the HTTP front
//! end writes it as a response, the stdio front end as lines), and [`Early`], the way a guard's
//! request to the client reaches the client before the exchange has its answer; [`Framing`] is
//! how a relayed stream's messages are written (SSE, lines, or newline-delimited JSON).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderValue;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use warden_guard::{Ctx, LocalResponse, Refusal};

use crate::gateway::Gateway;

/// How the front end writes a stream: SSE blocks (HTTP) or one message per line (stdio).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `text/event-stream` blocks.
    Sse,
    /// Newline-delimited JSON-RPC (the front end adds the newline).
    Lines,
}

/// The exchange's answer to one client message.
pub enum Answer {
    /// Accepted with nothing to say (HTTP 202; nothing on stdio).
    Accepted,
    /// One message (JSON-RPC, after the server→client guards), with the HTTP status and
    /// content type to answer it with.
    Json {
        /// HTTP status.
        status: u16,
        /// Content type (the upstream's, or `application/json`).
        content_type: Option<HeaderValue>,
        /// The message.
        body: Bytes,
    },
    /// A refusal, already audited: the front end writes its status, headers and JSON-RPC error.
    Refused {
        /// Why.
        refusal: Refusal,
        /// The raw id of the request it answers, if any.
        id: Option<Box<RawValue>>,
    },
    /// A stream of guarded messages, already encoded for the front end's [`Wire`].
    Stream(mpsc::Receiver<Bytes>),
    /// An upstream's streamed JSON body relayed as it came: one guarded message and a newline per
    /// item (newline-delimited JSON), under the upstream's status and content type.
    Lines {
        /// HTTP status.
        status: u16,
        /// The upstream's content type (a JSON media type).
        content_type: Option<HeaderValue>,
        /// The lines.
        rx: mpsc::Receiver<Bytes>,
    },
    /// A response a guard served on its own path.
    Local(LocalResponse),
    /// An empty response with this status (DELETE).
    Empty(u16),
}

/// An [`Answer`] and the `Mcp-Session-Id` to put on it (a new session's).
pub struct Answered {
    /// The answer.
    pub answer: Answer,
    /// Set on the response when a session was opened by this exchange.
    pub session: Option<String>,
}

impl From<Answer> for Answered {
    fn from(answer: Answer) -> Self {
        Self {
            answer,
            session: None,
        }
    }
}

/// Audit a refusal and answer with it: the one way the exchange refuses.
pub fn refuse(gw: &Gateway, ctx: &Ctx, refusal: Refusal, id: Option<&RawValue>) -> Answered {
    gw.audit_refusal(ctx, &refusal, id);
    Answer::Refused {
        refusal,
        id: id.map(|i| i.to_owned()),
    }
    .into()
}

/// The raw id text as an owned `RawValue`.
pub fn raw_id(id: Option<&str>) -> Option<Box<RawValue>> {
    id.and_then(|i| RawValue::from_string(i.to_owned()).ok())
}

/// A message of Warden's own to the client, sent while the exchange is still running (a guard's
/// elicitation). On stdio it goes straight to the client's output. On HTTP the first one asks
/// the front end to switch the answer to an SSE stream and the rest of the exchange follows on it.
#[derive(Clone)]
pub struct Early {
    inner: Arc<Mutex<EarlyState>>,
    wire: Wire,
}

enum EarlyState {
    /// HTTP, before the switch: the front end waits on the other end.
    Pending(Option<oneshot::Sender<mpsc::Receiver<Bytes>>>),
    /// Switched (HTTP) or direct (stdio).
    Open(mpsc::Sender<Bytes>),
    /// The exchange cannot reach the client early (no SSE accepted, or it ended).
    Closed,
}

impl Early {
    /// HTTP: the receiver resolves when a guard first sends the client something.
    pub fn http(accepts_sse: bool) -> (Self, oneshot::Receiver<mpsc::Receiver<Bytes>>) {
        let (tx, rx) = oneshot::channel();
        let state = if accepts_sse {
            EarlyState::Pending(Some(tx))
        } else {
            EarlyState::Closed
        };
        (
            Self {
                inner: Arc::new(Mutex::new(state)),
                wire: Wire::Sse,
            },
            rx,
        )
    }

    /// stdio: messages go to the client's output at once.
    pub fn lines(out: mpsc::Sender<Bytes>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(EarlyState::Open(out))),
            wire: Wire::Lines,
        }
    }

    /// Nowhere to send (Warden-internal exchanges).
    pub fn none() -> Self {
        Self {
            inner: Arc::new(Mutex::new(EarlyState::Closed)),
            wire: Wire::Sse,
        }
    }

    /// Can this exchange reach the client before its answer?
    pub fn available(&self) -> bool {
        !matches!(
            *self.inner.lock().unwrap_or_else(|p| p.into_inner()),
            EarlyState::Closed
        )
    }

    /// The wire the stream is written in.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// The open sender, switching the HTTP answer to a stream on first use.
    fn sender(&self) -> Option<mpsc::Sender<Bytes>> {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *st {
            EarlyState::Open(tx) => Some(tx.clone()),
            EarlyState::Closed => None,
            EarlyState::Pending(switch) => {
                let (tx, rx) = mpsc::channel(64);
                let ok = switch.take().is_some_and(|s| s.send(rx).is_ok());
                if ok {
                    *st = EarlyState::Open(tx.clone());
                    Some(tx)
                } else {
                    *st = EarlyState::Closed;
                    None
                }
            }
        }
    }

    /// Has the HTTP answer switched to a stream (so the final answer must follow on it)?
    pub fn switched(&self) -> Option<mpsc::Sender<Bytes>> {
        match &*self.inner.lock().unwrap_or_else(|p| p.into_inner()) {
            EarlyState::Open(tx) if self.wire == Wire::Sse => Some(tx.clone()),
            _ => None,
        }
    }

    /// Send one message (JSON-RPC bytes) to the client now.
    pub async fn send(&self, message: &[u8]) -> bool {
        let Some(tx) = self.sender() else {
            return false;
        };
        tx.send(encode(self.wire, message)).await.is_ok()
    }
}

/// One message for `wire`.
pub fn encode(wire: Wire, message: &[u8]) -> Bytes {
    match wire {
        Wire::Lines => Bytes::copy_from_slice(message),
        Wire::Sse => warden_proto::sse::encode(
            None,
            Some("message"),
            None,
            std::str::from_utf8(message).ok(),
        ),
    }
}

/// How the relay writes a stream's messages: the front end's [`Wire`], or, for an upstream's
/// streamed JSON body on HTTP, newline-delimited JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// SSE blocks (HTTP).
    Sse,
    /// Bare messages; the stdio front end adds the newline.
    Lines,
    /// Each message and a newline, on an HTTP response (an upstream's streamed JSON body).
    Ndjson,
}

impl Framing {
    /// One message of Warden's own (an error) in this framing.
    pub fn encode(self, message: &[u8]) -> Bytes {
        match self {
            Framing::Sse => encode(Wire::Sse, message),
            Framing::Lines | Framing::Ndjson => self.message(Bytes::copy_from_slice(message)),
        }
    }

    /// A message's bytes in a line framing.
    pub fn message(self, out: Bytes) -> Bytes {
        if self != Framing::Ndjson {
            return out;
        }
        let mut line = Vec::with_capacity(out.len() + 1);
        line.extend_from_slice(&out);
        line.push(b'\n');
        Bytes::from(line)
    }
}
