//! The global cap on running stdio children (`[limits] max_stdio_children`, P4.3): every child
//! Warden starts — one per session and stdio upstream, the shared stateless one of each stdio
//! upstream, the one `warden wrap` runs — holds a [`Slot`] from spawn until its process has
//! been reaped. With every slot taken a spawn is refused ([`super::UpstreamError::Capacity`]:
//! 503 with `Retry-After`, audited by the exchange that asked), whoever's session it is.
//!
//! It only counts: it must not start, stop or wait for anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The slots of one gateway.
#[derive(Debug)]
pub struct ChildSlots {
    max: usize,
    used: AtomicUsize,
}

/// One running child's place; freed when dropped (after the child was reaped).
#[derive(Debug)]
pub struct Slot(Arc<ChildSlots>);

impl ChildSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            used: AtomicUsize::new(0),
        })
    }

    /// A slot, or `None` when `max` children are running.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Children running now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::ChildSlots;

    #[test]
    fn slots_are_capped_and_come_back() {
        let s = ChildSlots::new(2);
        let a = s.take().expect("first");
        let _b = s.take().expect("second");
        assert!(s.take().is_none(), "a third is refused");
        drop(a);
        assert_eq!(s.used(), 1);
        assert!(s.take().is_some(), "a freed slot can be taken again");
    }
}
