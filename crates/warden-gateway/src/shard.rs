//! Which connection worker this thread is: per-worker state (the upstream connection pools)
//! is kept in [`SHARDS`] shards, and a thread uses the one of its worker number. The workers
//! (`downstream::workers`) set the number when they start; every other thread is worker 0.
//!
//! It owns nothing but that number; it must not grow state of its own.

use std::cell::Cell;

/// Per-worker state is kept in this many shards (worker number modulo it).
pub const SHARDS: usize = 64;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// This thread is connection worker `n` (1..=N), from now on.
pub fn enter(n: usize) {
    WORKER.with(|w| w.set(n));
}

/// This thread's worker number: 1..=N on connection workers, 0 elsewhere.
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// The shard of per-worker state (the upstream pools) this thread uses.
pub fn shard() -> usize {
    current() % SHARDS
}
