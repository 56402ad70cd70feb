//! A session's standalone (GET) stream from one HTTP upstream: **one GET per upstream per
//! session, owned by Warden, joined by the client's GET**.
//!
//! Warden opens the upstream GET itself when the session is initialized, so that no
//! server-initiated message (a `roots/list`, a `sampling/createMessage`) waits for the client to
//! open its own. Opening is serialised: a client GET that arrives while Warden's is still in
//! flight waits for it and joins it, and is never forwarded as a second GET (which upstreams
//! refuse: 409 "only one SSE stream per session"). A pump task owns the upstream stream and
//! hands each frame to the client's GET that is attached, holding it (and, through the
//! channel's bound, the upstream) while none is: frames that arrive before the client's GET,
//! or between two of them, wait instead of being lost. A new client GET takes over from an
//! older one; when the upstream ends its stream, the client's ends too and the next GET opens
//! a new one. The session's end stops the pump.
//!
//! It owns that state machine only: it must not guard, tag or relay frames (the exchange core
//! does: every frame still meets the server guards in the client's relay), nor know a socket.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;

use crate::upstream::{Frame, Reply, UpstreamError, http::HttpAnswer};

type Item = Result<Frame, UpstreamError>;

/// How frames are changed before the client gets them (tagging with the upstream's name when
/// several upstreams share the stream).
pub type Map = Box<dyn Fn(Frame) -> Frame + Send + Sync>;

/// Frames waiting between the pump and the client's relay (small: a client that goes away
/// loses at most these).
const CLIENT_BUFFER: usize = 8;

/// One HTTP link's standalone stream.
#[derive(Default)]
pub struct Standalone {
    /// Held while a GET is being opened: never two in flight.
    opening: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
    /// Wakes the pump when a client attaches.
    attached: Notify,
}

#[derive(Default)]
struct Inner {
    /// The pump of the open upstream stream.
    pump: Option<AbortHandle>,
    /// Where the pump delivers: the client's GET stream.
    client: Option<mpsc::Sender<Item>>,
    /// The session ended.
    closed: bool,
}

/// What making sure the upstream GET is open gave.
pub enum Opened {
    /// Warden's GET is open.
    Ready,
    /// The upstream answered without a stream (405: it offers none; or an error status).
    NoStream(Reply),
    /// The upstream could not be reached, or the session ended.
    Failed(UpstreamError),
}

impl Standalone {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Is Warden's upstream GET open?
    pub fn is_open(&self) -> bool {
        self.lock().pump.is_some()
    }

    /// Make sure the upstream GET is open, sending it with `open` when it is not (and no other
    /// caller is opening it: then wait for that one).
    pub async fn ensure<F, Fut>(self: &Arc<Self>, open: F, map: Option<Map>) -> Opened
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<Result<HttpAnswer, UpstreamError>>>,
    {
        let _one = self.opening.lock().await;
        {
            let inner = self.lock();
            if inner.closed {
                return Opened::Failed(UpstreamError::Exited);
            }
            if inner.pump.is_some() {
                return Opened::Ready;
            }
        }
        match open().await {
            Some(Ok(HttpAnswer {
                reply: Reply::Stream { frames, .. },
                ..
            })) => {
                let mut inner = self.lock();
                if inner.closed {
                    return Opened::Failed(UpstreamError::Exited); // dropping `frames` closes it
                }
                let task = tokio::spawn(pump(self.clone(), frames, map));
                inner.pump = Some(task.abort_handle());
                Opened::Ready
            }
            Some(Ok(other)) => Opened::NoStream(other.reply),
            Some(Err(e)) => Opened::Failed(e),
            None => Opened::NoStream(Reply::Accepted),
        }
    }

    /// Join the open stream: the returned receiver gets its frames from now on (and those held
    /// for want of a client); an older client's stream ends. `None` when no stream is open.
    pub fn join(&self) -> Option<mpsc::Receiver<Item>> {
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        self.attach(tx).then_some(rx)
    }

    /// Attach `tx` as the client's stream (several upstreams share one); `false` when no
    /// stream is open.
    pub fn attach(&self, tx: mpsc::Sender<Item>) -> bool {
        let mut inner = self.lock();
        if inner.pump.is_none() || inner.closed {
            return false;
        }
        inner.client = Some(tx);
        drop(inner);
        self.attached.notify_waiters();
        true
    }

    /// The session ended: stop the pump (closing the upstream stream) and end the client's.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.client = None;
        if let Some(p) = inner.pump.take() {
            p.abort();
        }
    }

    /// The client `tx` went away: forget it (unless another took its place).
    fn detach(&self, tx: &mpsc::Sender<Item>) {
        let mut inner = self.lock();
        if inner.client.as_ref().is_some_and(|c| c.same_channel(tx)) {
            inner.client = None;
        }
    }
}

/// Hand every upstream frame to the attached client, waiting for one when none is.
async fn pump(hub: Arc<Standalone>, mut frames: mpsc::Receiver<Item>, map: Option<Map>) {
    while let Some(item) = frames.recv().await {
        let mut item = match &map {
            Some(m) => item.map(m),
            None => item,
        };
        loop {
            // Created before the check, so an attach in between still wakes it.
            let attached = hub.attached.notified();
            let client = hub.lock().client.clone();
            match client {
                Some(tx) => match tx.send(item).await {
                    Ok(()) => break,
                    Err(mpsc::error::SendError(back)) => {
                        item = back;
                        hub.detach(&tx);
                    }
                },
                None => attached.await,
            }
        }
    }
    // The upstream ended its stream: so does the client's; the next GET opens a new one.
    let mut inner = hub.lock();
    inner.pump = None;
    inner.client = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn answer(frames: mpsc::Receiver<Item>) -> Option<Result<HttpAnswer, UpstreamError>> {
        Some(Ok(HttpAnswer {
            reply: Reply::Stream {
                frames,
                sse: true,
                wire_id: None,
            },
            session_id: None,
            status: 200,
        }))
    }

    #[tokio::test]
    async fn frames_wait_for_the_client_and_one_get_serves_every_join() {
        let hub = Arc::new(Standalone::default());
        let (up, frames) = mpsc::channel(4);
        let mut opened = 0;
        assert!(matches!(
            hub.ensure(
                || {
                    opened += 1;
                    async move { answer(frames) }
                },
                None
            )
            .await,
            Opened::Ready
        ));
        up.send(Ok(Frame::message(Bytes::from_static(b"early"))))
            .await
            .unwrap();
        // A second ensure joins the open stream without opening another.
        assert!(matches!(
            hub.ensure(|| async { None }, None).await,
            Opened::Ready
        ));
        assert_eq!(opened, 1);
        let mut first = hub.join().unwrap();
        let f = first.recv().await.unwrap().unwrap();
        assert_eq!(f.data.as_deref(), Some(&b"early"[..]));
        // A later join takes over; the older stream ends.
        let mut second = hub.join().unwrap();
        up.send(Ok(Frame::message(Bytes::from_static(b"late"))))
            .await
            .unwrap();
        let f = second.recv().await.unwrap().unwrap();
        assert_eq!(f.data.as_deref(), Some(&b"late"[..]));
        assert!(first.recv().await.is_none());
        // The upstream ends: so does the client's stream, and nothing is open any more.
        drop(up);
        assert!(second.recv().await.is_none());
        assert!(!hub.is_open());
        hub.close();
        assert!(matches!(
            hub.ensure(|| async { None }, None).await,
            Opened::Failed(_)
        ));
    }

    #[tokio::test]
    async fn a_frame_the_departed_client_missed_goes_to_the_next() {
        let hub = Arc::new(Standalone::default());
        let (up, frames) = mpsc::channel(4);
        hub.ensure(|| async move { answer(frames) }, None).await;
        drop(hub.join().unwrap()); // a client that left at once
        up.send(Ok(Frame::message(Bytes::from_static(b"kept"))))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut next = hub.join().unwrap();
        let f = next.recv().await.unwrap().unwrap();
        assert_eq!(f.data.as_deref(), Some(&b"kept"[..]));
    }
}
