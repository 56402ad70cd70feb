//! What a guard answers: [`Verdict`] for a message, [`ItemVerdict`] for one list item,
//! [`LocalResponse`] for a path the guard serves itself, and [`Check`]: an answer now or later.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use crate::Refusal;

/// A boxed, sendable future (what an awaiting hook returns inside [`Check::Later`]).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A guard's answer to one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Let the message through (as it is, or as an earlier guard rewrote it).
    Continue,
    /// Refuse it. A request is answered with the refusal; a notification or a server message that
    /// is not the final answer is dropped. Either way the refusal is audited.
    Deny(Refusal),
    /// Replace the message with these bytes (built with `warden_proto::splice`, so that what the
    /// guard did not change stays byte-for-byte). The next guard sees the new message; rewrites
    /// of several guards compose in pipeline order.
    Rewrite(Vec<u8>),
    /// Client→server requests only: answer the request locally with this JSON-RPC `result`
    /// (the JSON text of the result object, e.g. an `InputRequiredResult`). Nothing is forwarded.
    Answer(Vec<u8>),
}

/// A verdict now ([`Check::Ready`], no allocation), or a future to await ([`Check::Later`]).
pub enum Check<'a, T = Verdict> {
    /// The answer is known.
    Ready(T),
    /// The answer needs waiting for (a key fetch, a client's reply, a shared store).
    Later(BoxFuture<'a, T>),
}

impl<'a, T> Check<'a, T> {
    /// The answer, to await. A ready answer costs no state machine of its own (every guard
    /// answers every hook of every message, mostly at once, so this is on the benchmarked path).
    pub fn resolve(self) -> Resolve<'a, T> {
        match self {
            Check::Ready(v) => Resolve::Ready(std::future::ready(v)),
            Check::Later(f) => Resolve::Later(f),
        }
    }

    /// Wrap an async block: `Check::later(async move { … })`.
    pub fn later(f: impl Future<Output = T> + Send + 'a) -> Self {
        Check::Later(Box::pin(f))
    }
}

/// The future of [`Check::resolve`].
pub enum Resolve<'a, T> {
    /// A [`Check::Ready`] answer.
    Ready(std::future::Ready<T>),
    /// A [`Check::Later`] future.
    Later(BoxFuture<'a, T>),
}

impl<T> Future for Resolve<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        match self.get_mut() {
            Resolve::Ready(r) => Pin::new(r).poll(cx),
            Resolve::Later(f) => f.as_mut().poll(cx),
        }
    }
}

impl From<Verdict> for Check<'_, Verdict> {
    fn from(v: Verdict) -> Self {
        Check::Ready(v)
    }
}

/// A guard's answer to one item of a `tools/list`, `prompts/list`, `resources/list` or
/// `resources/templates/list` result.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemVerdict {
    /// The client sees the item.
    Keep,
    /// The item is withheld from this answer (audited with the reason and control).
    Drop {
        /// Stable reason code.
        reason: &'static str,
        /// The REQUIREMENTS.md control.
        control: &'static str,
    },
    /// The item is replaced by these bytes (one JSON object), e.g. an operator's description
    /// override. Later guards see the replacement.
    Replace(Vec<u8>),
}

/// A response a guard serves on a path it registered (e.g. RFC 9728 protected-resource
/// metadata), outside the MCP endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
    /// More response headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl LocalResponse {
    /// A 200 `application/json` response.
    pub fn json(body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: body.into(),
            headers: Vec::new(),
        }
    }
}
