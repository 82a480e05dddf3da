//! Per-event dispatch counters that threads do not fight over.
//!
//! A per-watcher atomic increment on every call would cost more than the call itself
//! and would bounce a cache line between dispatching threads. Instead each table counts
//! dispatches per event, in shards of their own cache line; a thread that owns a shard
//! bumps it with a plain load and store (no locked instruction). Per-watcher call counts
//! are derived from these (see `WatcherTable::watchers`).

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::event::EventKind;

/// How many threads at once own a shard; the others share one more, with atomic adds.
const SHARDS: usize = 32;

#[repr(align(128))]
#[derive(Default)]
struct Shard([AtomicU64; EventKind::COUNT]);

/// Dispatch counts per event.
pub(crate) struct EventCounters {
    shards: Box<[Shard]>,
}

impl Default for EventCounters {
    fn default() -> Self {
        EventCounters {
            // One shard per exclusive owner, plus one that every other thread shares.
            shards: (0..=SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl EventCounters {
    /// Counts one dispatch of `kind` by this thread.
    #[inline]
    pub(crate) fn bump(&self, kind: EventKind) {
        let (index, exclusive) = shard_of_this_thread();
        let counter = &self.shards[index].0[kind.index()];
        if exclusive {
            // Only this thread writes this shard, so no read-modify-write is needed.
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        } else {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// All dispatches of `kind` so far.
    pub(crate) fn get(&self, kind: EventKind) -> u64 {
        self.shards
            .iter()
            .map(|shard| shard.0[kind.index()].load(Ordering::Relaxed))
            .sum()
    }
}

/// Shard indices that a finished thread gave back.
static FREE_SHARDS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// The next never-used shard index.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// A thread's claim on a shard index, given back when the thread ends.
struct ShardClaim {
    index: Cell<usize>,
}

const UNCLAIMED: usize = usize::MAX;

impl Drop for ShardClaim {
    fn drop(&mut self) {
        let index = self.index.get();
        if index < SHARDS {
            FREE_SHARDS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(index);
        }
    }
}

thread_local! {
    static CLAIM: ShardClaim = const { ShardClaim { index: Cell::new(UNCLAIMED) } };
}

/// This thread's shard and whether it owns it alone.
#[inline]
fn shard_of_this_thread() -> (usize, bool) {
    CLAIM
        .try_with(|claim| {
            let mut index = claim.index.get();
            if index == UNCLAIMED {
                index = claim_shard();
                claim.index.set(index);
            }
            if index < SHARDS {
                (index, true)
            } else {
                (SHARDS, false)
            }
        })
        // During thread teardown the claim may already be gone: use the shared shard.
        .unwrap_or((SHARDS, false))
}

#[cold]
fn claim_shard() -> usize {
    if let Some(index) = FREE_SHARDS.lock().unwrap_or_else(|e| e.into_inner()).pop() {
        return index;
    }
    // Indices past SHARDS are never exclusive; they keep counting through atomic adds.
    NEXT_SHARD.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let counters = EventCounters::default();
        // More threads than shards, so both the exclusive and the shared path run.
        std::thread::scope(|scope| {
            for _ in 0..(SHARDS + 8) {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counters.bump(EventKind::Exec);
                    }
                });
            }
        });
        assert_eq!(counters.get(EventKind::Exec), (SHARDS as u64 + 8) * 1000);
        assert_eq!(counters.get(EventKind::Fork), 0);
    }
}
