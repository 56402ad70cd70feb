//! Calls in flight (#13 item 9, P5.1: no event missing). Every client message is registered
//! here when the exchange core takes it and leaves when its final audit event is written. The
//! exchange and the relay that finishes it each *hold* the call ([`InFlight::hold`]); when the
//! last holder lets go of a call that is still registered — its client went away, its
//! connection was cut, Warden stopped past the grace period — the caller gets it back to audit
//! as `mcp.interrupted`, and at shutdown every call still open is drained the same way.
//!
//! It owns the table only: no audit sink, no gateway, no I/O. Sharded so that requests on
//! different connection workers rarely share a lock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use warden_guard::Ctx;

const SHARDS: usize = 16;

/// Hashes a call's request id with one multiplication. The ids are Warden's own counter (never
/// chosen by a client), so the table needs no protection from crafted keys, and the default
/// SipHash would be most of the cost of the five lookups a call makes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Table = HashMap<u64, Open, BuildHasherDefault<IdHasher>>;

struct Open {
    ctx: Ctx,
    holders: u32,
}

/// The table of calls in flight.
pub struct InFlight {
    shards: Vec<Mutex<Table>>,
    stopping: AtomicBool,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            stopping: AtomicBool::new(false),
        }
    }
}

impl InFlight {
    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, Table> {
        self.shards[(id % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Register a call (its context as the interruption event will name it), held once.
    pub fn begin(&self, ctx: &Ctx) {
        let ctx = ctx.detached();
        self.shard(ctx.request_id.0)
            .insert(ctx.request_id.0, Open { ctx, holders: 1 });
    }

    /// One more holder of call `id`; `false` when it is not (or no longer) registered.
    pub fn hold(&self, id: u64) -> bool {
        match self.shard(id).get_mut(&id) {
            Some(o) => {
                o.holders += 1;
                true
            }
            None => false,
        }
    }

    /// A holder let go: the call's context when it was the last one and the call never got
    /// its final audit event (the caller audits the interruption).
    pub fn release(&self, id: u64) -> Option<Ctx> {
        let mut shard = self.shard(id);
        let open = shard.get_mut(&id)?;
        open.holders = open.holders.saturating_sub(1);
        if open.holders > 0 {
            return None;
        }
        shard.remove(&id).map(|o| o.ctx)
    }

    /// Take call `id` out whoever holds it (a relay whose stream was cut at shutdown audits it).
    pub fn take(&self, id: u64) -> Option<Ctx> {
        self.shard(id).remove(&id).map(|o| o.ctx)
    }

    /// Is Warden stopping?
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Call `id` got its final audit event.
    pub fn end(&self, id: u64) {
        self.shard(id).remove(&id);
    }

    /// Warden is stopping: interruptions from now on are `shutdown`, and every call still
    /// open is handed back to be audited.
    pub fn drain(&self) -> Vec<Ctx> {
        self.stopping.store(true, Ordering::Release);
        let mut out = Vec::new();
        for s in &self.shards {
            out.extend(
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain()
                    .map(|(_, o)| o.ctx),
            );
        }
        out.sort_by_key(|c| c.request_id.0);
        out
    }

    /// Mark the start of shutdown (before connections are cut).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Why a call let go now was interrupted.
    pub fn reason(&self) -> &'static str {
        if self.is_stopping() {
            "shutdown"
        } else {
            "abandoned"
        }
    }

    /// How many calls are open (tests, metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// No call open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_audit::RequestId;

    fn ctx(id: u64) -> Ctx {
        let mut c = Ctx::test();
        c.request_id = RequestId(id);
        c
    }

    #[test]
    fn the_last_holder_of_an_unaudited_call_gets_it_back() {
        let t = InFlight::default();
        t.begin(&ctx(7));
        assert!(t.hold(7));
        assert!(t.release(7).is_none(), "one holder left");
        assert_eq!(t.release(7).map(|c| c.request_id.0), Some(7));
        assert!(t.is_empty());
    }

    #[test]
    fn an_audited_call_is_never_interrupted() {
        let t = InFlight::default();
        t.begin(&ctx(3));
        t.end(3);
        assert!(!t.hold(3));
        assert!(t.release(3).is_none());
        assert_eq!(t.reason(), "abandoned");
    }

    #[test]
    fn drain_hands_back_every_open_call_and_marks_shutdown() {
        let t = InFlight::default();
        for i in 0..40 {
            t.begin(&ctx(i));
        }
        t.end(5);
        let d = t.drain();
        assert_eq!(d.len(), 39);
        assert_eq!(t.reason(), "shutdown");
        assert!(t.is_empty());
    }
}
