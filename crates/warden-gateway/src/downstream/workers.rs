//! Connection workers: `warden serve` hands each accepted connection to one of N threads, each
//! running its own single-threaded tokio runtime, round-robin. Everything a request does — the
//! downstream connection, the guards, the upstream exchange on a connection from this worker's
//! own pool shard — happens on that one thread, so relaying a request wakes no other thread
//! (on a 2-vCPU host the work-stealing scheduler's cross-thread wake-ups cost about a third of
//! the relay's CPU). Background work (accept loop, admin, session sweeps) stays on the main runtime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinSet;

/// An accepted connection on its way to a worker, with its connection-cap permit.
pub struct Accepted {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub permit: OwnedSemaphorePermit,
}

/// Turns `true` when Warden is shutting down: a connection finishes the request it is serving
/// and closes (hyper's graceful shutdown).
pub type Draining = watch::Receiver<bool>;

/// The workers' inboxes; dropping this ends them (their open connections are dropped).
pub struct Workers {
    inboxes: Vec<mpsc::UnboundedSender<Accepted>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: AtomicUsize,
    /// Turns `true` when the workers may end (after Warden stopped its upstreams).
    released: watch::Sender<bool>,
    /// Closes when every worker has drained its connections.
    drained: mpsc::Receiver<()>,
}

impl Workers {
    /// Start `n` worker threads; `serve` runs each accepted connection on its worker.
    ///
    /// Each worker also ticks every `tick`. Tokio wakes a runtime's reactor (an eventfd write and
    /// an extra `epoll_wait`) whenever a new timer is due before the reactor's next planned
    /// wake-up; hyper arms a header-read timer for every request, so without a nearer tick every
    /// request paid that. Set `tick` below the shortest per-request timeout.
    ///
    /// Once told to drain ([`Workers::shutdown`]), a worker waits at most `grace` for its
    /// connections to finish, then drops the rest.
    pub fn start<F, Fut>(
        n: usize,
        tick: std::time::Duration,
        grace: std::time::Duration,
        serve: F,
    ) -> std::io::Result<Self>
    where
        F: Fn(Accepted, Draining) -> Fut + Send + Clone + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut inboxes = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let (released, _) = watch::channel(false);
        let (drained_tx, drained) = mpsc::channel::<()>(1);
        for i in 1..=n {
            let mut release = released.subscribe();
            let done = drained_tx.clone();
            let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let serve = serve.clone();
            let thread = std::thread::Builder::new()
                .name(format!("warden-worker-{i}"))
                .spawn(move || {
                    crate::shard::enter(i);
                    rt.block_on(async move {
                        tokio::spawn(async move {
                            let mut every = tokio::time::interval(tick);
                            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                            loop {
                                every.tick().await;
                            }
                        });
                        // This worker's own drain signal: its connections never share a lock
                        // with another thread's.
                        let (draining, drain_rx) = watch::channel(false);
                        let mut conns = JoinSet::new();
                        loop {
                            tokio::select! {
                                conn = rx.recv() => match conn {
                                    Some(conn) => {
                                        conns.spawn(serve(conn, drain_rx.clone()));
                                    }
                                    None => break,
                                },
                                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                            }
                        }
                        // The inbox closed: Warden is shutting down. Tell the connections to
                        // finish their requests in flight, and wait for them.
                        let _ = draining.send(true);
                        let drained = async { while conns.join_next().await.is_some() {} };
                        if tokio::time::timeout(grace, drained).await.is_err() {
                            tracing::warn!(
                                worker = i,
                                open = conns.len(),
                                "shutdown grace over: cutting the connections still open"
                            );
                            conns.abort_all();
                            while conns.join_next().await.is_some() {}
                        }
                        // The runtime lives on while Warden stops its upstreams: the stdio
                        // children this worker started are supervised here, and their exits
                        // are audited before the worker ends.
                        drop(done);
                        let _ = release.wait_for(|r| *r).await;
                    });
                })?;
            inboxes.push(tx);
            threads.push(thread);
        }
        drop(drained_tx);
        Ok(Self {
            inboxes,
            threads,
            next: AtomicUsize::new(0),
            released,
            drained,
        })
    }

    /// Stop taking connections (closing the inboxes tells each worker to drain), let each open
    /// one finish its request in flight (each worker waits its `grace`, then cuts what is left),
    /// run `then` while the workers' runtimes still live (stopping the upstreams they
    /// supervise), and wait at most `within` for every worker thread to end, so nothing they do
    /// happens after the caller goes on (the audit log's `gateway.stop` is written after this).
    pub async fn shutdown(
        mut self,
        within: std::time::Duration,
        then: impl std::future::Future<Output = ()>,
    ) {
        drop(self.inboxes);
        let _ = tokio::time::timeout(within, async {
            while self.drained.recv().await.is_some() {}
        })
        .await;
        then.await;
        let _ = self.released.send(true);
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        if tokio::time::timeout(within, joined).await.is_err() {
            tracing::warn!("connection workers did not stop within {within:?}");
        }
    }

    /// Hand a connection to the next worker; gives it back if that worker has stopped.
    pub fn dispatch(&self, conn: Accepted) -> Result<(), Accepted> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.inboxes.len().max(1);
        match self.inboxes.get(i) {
            Some(tx) => tx.send(conn).map_err(|e| e.0),
            None => Err(conn),
        }
    }
}

/// How many workers: the configured number, else one per CPU.
pub fn count(configured: Option<usize>) -> usize {
    configured
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1)
}
