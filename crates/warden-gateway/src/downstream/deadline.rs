//! Connection deadlines of `warden serve` (P4.4): a connection must deliver its first request
//! head within `server.first_request_timeout_ms`, whatever its protocol, and an HTTP/2 connection
//! with no stream open is closed after `server.idle_timeout_secs`.
//!
//! hyper alone covers neither: the protocol sniffing in front of it (`hyper_util`'s auto builder
//! reads up to the 24-byte HTTP/2 preface first) has no timeout, so a client that sends nothing,
//! one byte or part of the preface holds its connection (and its `max_connections` slot) for
//! ever; and hyper's HTTP/2 server has no idle timeout. HTTP/1.1 needs nothing here after the
//! first head: hyper's header-read timer (`header_timeout_ms`) restarts as soon as a response is
//! written, so a keep-alive connection idle between requests is closed by it.
//!
//! Cost: one timer per connection, not per request. The timer fires once for HTTP/1.1 (and is
//! then dropped) and once per idle period for HTTP/2. Per request the service does one relaxed
//! atomic add; an HTTP/2 request also counts its stream open and ended (an `Arc` clone carried
//! by the response body).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};

/// What one connection's requests have done so far; shared by its service and its deadline.
#[derive(Default)]
pub struct Activity {
    /// Request heads received (any protocol).
    begun: AtomicU64,
    /// The connection speaks HTTP/2 (set by its first request).
    h2: AtomicBool,
    /// HTTP/2 streams whose response has not ended.
    open: AtomicUsize,
    /// HTTP/2 streams begun plus streams ended: unchanged over a period means no activity.
    ticks: AtomicU64,
}

impl Activity {
    /// A request head arrived. For HTTP/2 the returned token is carried by the response body,
    /// so the stream counts as open until its response ends (or is dropped).
    pub fn begin(self: &Arc<Self>, version: http::Version) -> Option<OpenStream> {
        self.begun.fetch_add(1, Relaxed);
        if version != http::Version::HTTP_2 {
            return None;
        }
        self.h2.store(true, Relaxed);
        self.open.fetch_add(1, Relaxed);
        self.ticks.fetch_add(1, Relaxed);
        Some(OpenStream(self.clone()))
    }
}

/// An HTTP/2 stream whose response is still being written.
pub struct OpenStream(Arc<Activity>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
        self.0.ticks.fetch_add(1, Relaxed);
    }
}

/// A response body that keeps its stream counted as open until it is dropped.
pub struct Tracked<B> {
    inner: B,
    _open: Option<OpenStream>,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, open: Option<OpenStream>) -> Self {
        Self { inner, _open: open }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a connection's task waits for besides hyper's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Warden is draining (shutting down).
    Drain,
    /// The connection's timer fired.
    Deadline,
}

/// Warden's drain signal and the connection's timer as one future, to be polled only when one
/// of them wakes (wrapped in [`super::gate::Gated`]), not on every wake of the connection.
pub struct Watch<'a, D> {
    pub drain: D,
    pub timer: Pin<&'a mut tokio::time::Sleep>,
    /// The timer is watched (`false` once it has nothing more to watch: [`Step::Stop`]).
    pub armed: bool,
}

impl<D: Future + Unpin> Future for Watch<'_, D> {
    type Output = Event;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Event> {
        if Pin::new(&mut self.drain).poll(cx).is_ready() {
            return Poll::Ready(Event::Drain);
        }
        if self.armed && self.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Deadline);
        }
        Poll::Pending
    }
}

/// Where a connection's one timer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the first request head.
    First,
    /// HTTP/2: `ticks` as they were when the timer was last set.
    Idle { ticks: u64 },
    /// Nothing more to watch (HTTP/1.1 after its first head: hyper's timers take over).
    Off,
}

/// What to do when the timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No first request head in time: cut the connection.
    FirstRequestTimeout,
    /// HTTP/2 without a stream open or any activity for a whole period: close it.
    Idle,
    /// Set the timer again, `after` from now, in this phase.
    Rearm { after: Duration, phase: Phase },
    /// Drop the timer.
    Stop,
}

/// The decision at expiry; `idle` is `server.idle_timeout_secs`.
pub fn on_expiry(activity: &Activity, phase: Phase, idle: Duration) -> Step {
    let ticks = activity.ticks.load(Relaxed);
    match phase {
        Phase::First if activity.begun.load(Relaxed) == 0 => Step::FirstRequestTimeout,
        Phase::First if activity.h2.load(Relaxed) => Step::Rearm {
            after: idle,
            phase: Phase::Idle { ticks },
        },
        Phase::First | Phase::Off => Step::Stop,
        Phase::Idle { ticks: before } if before == ticks && activity.open.load(Relaxed) == 0 => {
            Step::Idle
        }
        Phase::Idle { .. } => Step::Rearm {
            after: idle,
            phase: Phase::Idle { ticks },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Version;

    const IDLE: Duration = Duration::from_secs(60);

    #[test]
    fn no_head_in_time_is_a_timeout_whatever_the_protocol() {
        let a = Arc::new(Activity::default());
        assert_eq!(on_expiry(&a, Phase::First, IDLE), Step::FirstRequestTimeout);
    }

    #[test]
    fn http1_is_left_to_hyper_after_its_first_head() {
        let a = Arc::new(Activity::default());
        assert!(a.begin(Version::HTTP_11).is_none());
        assert_eq!(on_expiry(&a, Phase::First, IDLE), Step::Stop);
    }

    #[test]
    fn http2_is_closed_only_after_a_whole_idle_period_with_no_stream_open() {
        let a = Arc::new(Activity::default());
        let open = a.begin(Version::HTTP_2);
        let Step::Rearm { phase, .. } = on_expiry(&a, Phase::First, IDLE) else {
            panic!("an HTTP/2 connection is watched for idleness");
        };
        // A stream open for the whole period (an SSE stream) keeps it.
        let Step::Rearm { phase, .. } = on_expiry(&a, phase, IDLE) else {
            panic!("an open stream is not idle");
        };
        // The stream ended during this period: not idle yet.
        drop(open);
        let Step::Rearm { phase, .. } = on_expiry(&a, phase, IDLE) else {
            panic!("activity in the period is not idle");
        };
        // A whole period with nothing.
        assert_eq!(on_expiry(&a, phase, IDLE), Step::Idle);
    }
}
