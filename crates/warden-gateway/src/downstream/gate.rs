//! A future polled only when it asked to be: [`Gated`] hands its inner future a waker of its own
//! and, when the task is polled for another reason, answers `Pending` without polling the inner
//! one unless that waker fired.
//!
//! Why: a connection's task waits on three things at once — hyper's connection, Warden's drain
//! signal and the connection's deadline timer (`super::deadline`). `tokio::select!` polls every
//! branch each time the task wakes, and the task wakes several times per request for the
//! connection alone; polling a `watch` receiver and a timer each time was a measurable part of a
//! request's CPU. Gated, they cost a lock-free flag check per wake and are polled when their
//! own event happens.
//!
//! It owns no I/O and decides nothing: a wrapper any front end's task may use.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

struct Gate {
    /// The inner future's waker fired since it was last polled.
    woken: AtomicBool,
    /// The task to wake when it does.
    task: Mutex<Option<Waker>>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(w) = self.task.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            w.wake_by_ref();
        }
    }
}

/// `inner`, polled only on its own wake-ups (and on the first poll, and after [`Self::repoll`]).
pub struct Gated<F> {
    inner: F,
    gate: Arc<Gate>,
    waker: Waker,
}

impl<F: Future + Unpin> Gated<F> {
    pub fn new(inner: F) -> Self {
        let gate = Arc::new(Gate {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Self {
            inner,
            waker: Waker::from(gate.clone()),
            gate,
        }
    }

    /// The inner future (e.g. to reset a timer; call [`Self::repoll`] after changing it).
    pub fn get_mut(&mut self) -> &mut F {
        &mut self.inner
    }

    /// Poll the inner future on the next poll even if its waker has not fired.
    pub fn repoll(&self) {
        self.gate.woken.store(true, Ordering::Release);
    }
}

impl<F: Future + Unpin> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Keep the task's waker current before looking at the flag, so that a wake-up between
        // the two reaches the task that will look again.
        {
            let mut task = self.gate.task.lock().unwrap_or_else(|p| p.into_inner());
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if !self.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        let mut inner_cx = Context::from_waker(&this.waker);
        let out = Pin::new(&mut this.inner).poll(&mut inner_cx);
        if out.is_ready() {
            // A finished inner future may be reused (a timer reset): look at it next time too.
            this.gate.woken.store(true, Ordering::Release);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `open` is set, waking its waker when it is set.
    struct Probe {
        polls: Arc<AtomicUsize>,
        open: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_inner_future_is_polled_only_after_its_own_wake_up() {
        let (polls, open) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let inner_waker = Arc::new(Mutex::new(None::<Waker>));
        let mut g = Gated::new(Probe {
            polls: polls.clone(),
            open: open.clone(),
            waker: inner_waker.clone(),
        });
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut g).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "the first poll reaches it");
        for _ in 0..5 {
            assert!(Pin::new(&mut g).poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "other wake-ups do not reach it"
        );
        // Its event: the inner waker fires, the task is woken, the next poll reaches it.
        open.store(true, Ordering::SeqCst);
        inner_waker.lock().unwrap().take().unwrap().wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task was woken");
        assert!(Pin::new(&mut g).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        // A finished inner future is looked at again (a reset timer must be polled).
        assert!(Pin::new(&mut g).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 3);
        // `repoll` forces a look even without a wake-up.
        open.store(false, Ordering::SeqCst);
        assert!(Pin::new(&mut g).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut g).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 4);
        g.repoll();
        assert!(Pin::new(&mut g).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 5);
    }
}
