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

use crate::event_kind::EventKind;

/// How many threads at once own a shard; the others share one more, with atomic adds.
const SHARDS: usize = 32;

#[repr(align(128))]
#[derive(Default)]
struct Shard([AtomicU64; EventKind::COUNT]);

/// Dispatch counts per event.
pub(crate) struct EventCounters {
    /// One shard per exclusive owner, plus one (the last) that every other thread
    /// shares. A fixed-size array, so that indexing it with a clamped index needs no
    /// bounds check.
    shards: Box<[Shard; SHARDS + 1]>,
}

impl Default for EventCounters {
    fn default() -> Self {
        EventCounters {
            shards: Box::new(std::array::from_fn(|_| Shard::default())),
        }
    }
}

impl EventCounters {
    /// Counts one dispatch of `kind` by this thread.
    #[inline]
    pub(crate) fn bump(&self, kind: EventKind) {
        let index = shard_of_this_thread();
        let counter = &self.shards[index.min(SHARDS)].0[kind.index()];
        if index < SHARDS {
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

/// Dispatches a thread counts in the shared shard before it claims one of its own: a
/// short-lived thread (one that dispatches its `exit` and `free` and ends) never pays for
/// a claim and its destructor, which would lie on the path its `join` waits for.
const WARM_UP: usize = 32;

impl Drop for ShardClaim {
    fn drop(&mut self) {
        let index = self.index.get();
        if index < SHARDS {
            // From now on this thread counts in the shared shard (a watcher may still
            // be dispatched from another thread-local's destructor); only then may
            // another thread own the index.
            let _ = INDEX.try_with(|i| i.set(SHARDS));
            FREE_SHARDS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(index);
        }
    }
}

thread_local! {
    /// This thread's shard index: below [`SHARDS`] a shard of its own, [`SHARDS`] the
    /// shared one; above it, the shared one for `INDEX - SHARDS - 1` more dispatches,
    /// after which the thread claims a shard. It has no destructor, so reading it is a
    /// plain thread-local load on the dispatch path.
    static INDEX: Cell<usize> = const { Cell::new(SHARDS + 1 + WARM_UP) };
    /// The claim that gives the index back when the thread ends; touched only once.
    static CLAIM: ShardClaim = const { ShardClaim { index: Cell::new(SHARDS) } };
}

/// This thread's shard index; it owns the shard alone when the index is below
/// [`SHARDS`].
#[inline]
fn shard_of_this_thread() -> usize {
    INDEX
        .try_with(|index| match index.get() {
            settled @ 0..=SHARDS => settled,
            warming => warm(index, warming),
        })
        .unwrap_or(SHARDS)
}

#[cold]
fn warm(slot: &Cell<usize>, warming: usize) -> usize {
    if warming > SHARDS + 1 {
        slot.set(warming - 1);
        SHARDS
    } else {
        claim(slot)
    }
}

#[cold]
fn claim(slot: &Cell<usize>) -> usize {
    let index = claim_shard();
    // Register the claim so that the thread's end gives the index back; during thread
    // teardown that is no longer possible, and the thread counts in the shared shard.
    let registered = index < SHARDS && CLAIM.try_with(|claim| claim.index.set(index)).is_ok();
    let index = if registered {
        index
    } else {
        if index < SHARDS {
            FREE_SHARDS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(index);
        }
        SHARDS
    };
    slot.set(index);
    index
}

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

    /// The two tests claim shards; one at a time, so that the second finds one free.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn counts_from_many_threads_add_up() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let counters = EventCounters::default();
        // More threads than shards, all alive at once (each keeps its claim until every
        // one has counted), so some must count in the shared shard with atomic adds
        // while the others own theirs.
        let threads = SHARDS + 8;
        let all_counted = std::sync::Barrier::new(threads);
        let shared = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counters.bump(EventKind::Exec);
                    }
                    if INDEX.with(Cell::get) == SHARDS {
                        shared.fetch_add(1, Ordering::Relaxed);
                    }
                    all_counted.wait();
                });
            }
        });
        // The premise: the shards ran out, and at most SHARDS threads owned one.
        assert!(
            shared.into_inner() >= 8,
            "threads counting in the shared shard"
        );
        assert_eq!(counters.get(EventKind::Exec), threads as u64 * 1000);
        assert_eq!(counters.get(EventKind::Fork), 0);
    }

    #[test]
    fn a_thread_claims_a_shard_only_after_its_warm_up() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let counters = EventCounters::default();
        let (early, late, claimed) = std::thread::spawn(move || {
            for _ in 0..WARM_UP {
                counters.bump(EventKind::Exit);
            }
            let early = INDEX.with(Cell::get);
            counters.bump(EventKind::Exit);
            assert_eq!(counters.get(EventKind::Exit), WARM_UP as u64 + 1);
            let claimed = CLAIM.with(|claim| claim.index.get());
            (early, INDEX.with(Cell::get), claimed)
        })
        .join()
        .unwrap();
        assert!(
            early > SHARDS,
            "still warming after {WARM_UP} dispatches: {early}"
        );
        assert!(
            late < SHARDS,
            "a shard of its own from the next one: {late}"
        );
        assert_eq!(claimed, late, "the claim that gives it back is registered");
    }
}
