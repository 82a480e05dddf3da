//! The routing word of each table, and the process-wide state folded into it.
//!
//! Dispatch decides with one load and one test whether an event has anything to do,
//! and with a second test whether the static chain is all of it. Per-task watchers
//! belong to tasks, not tables, so whether any task has one is kept here, process-wide,
//! and written into every live table's word when it changes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Where the "more than the static chain" half of a routing word starts.
pub(crate) const SLOW: u32 = 16;

/// One table's routing word; shared with the registry, so that a table may move.
#[derive(Default)]
pub(crate) struct Routing {
    /// For the event of index `k`: bit `k`, something to do; bit `SLOW + k`, more than
    /// the static chain. `own` with every bit set while some per-task watcher exists.
    word: AtomicU32,
    /// The table's own bits (statics, runtime watchers, counts).
    own: AtomicU32,
}

struct Registry {
    /// Tasks whose events may reach a per-task watcher.
    reachable: usize,
    tables: Vec<Weak<Routing>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    reachable: 0,
    tables: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    // Every update leaves the registry whole; a panic cannot tear it.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    fn mask(&self) -> u32 {
        if self.reachable == 0 { 0 } else { u32::MAX }
    }
}

impl Routing {
    /// A routing word with the table's own bits `own`, kept up to date from now on.
    pub(crate) fn registered(own: u32) -> Arc<Routing> {
        let routing = Arc::new(Routing::default());
        let mut registry = registry();
        registry.tables.retain(|table| table.strong_count() > 0);
        registry.tables.push(Arc::downgrade(&routing));
        routing.own.store(own, Ordering::Relaxed);
        routing.word.store(own | registry.mask(), Ordering::Release);
        routing
    }

    /// Replaces the table's own bits.
    pub(crate) fn set_own(&self, own: u32) {
        let registry = registry();
        self.own.store(own, Ordering::Relaxed);
        self.word.store(own | registry.mask(), Ordering::Release);
    }

    /// The word dispatch tests.
    #[inline(always)]
    pub(crate) fn word(&self) -> u32 {
        self.word.load(Ordering::Acquire)
    }
}

/// One more (`1`) or one fewer (`-1`) task whose events may reach a per-task watcher.
/// Callers report the changes of one task in the order they happen.
pub(crate) fn reachable_changed(delta: isize) {
    let mut registry = registry();
    let before = registry.mask();
    registry.reachable = registry.reachable.wrapping_add_signed(delta);
    let mask = registry.mask();
    if mask != before {
        registry.tables.retain(|table| match table.upgrade() {
            Some(routing) => {
                let own = routing.own.load(Ordering::Relaxed);
                routing.word.store(own | mask, Ordering::Release);
                true
            }
            None => false,
        });
    }
}

/// How many tasks' events may reach a per-task watcher, for the tests that check the
/// count returns to where it was.
#[cfg(test)]
pub(crate) fn reachable() -> usize {
    registry().reachable
}
