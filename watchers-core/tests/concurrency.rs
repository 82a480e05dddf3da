//! Many threads forking and exiting at once: every successful fork is matched by exactly
//! one `free`, failed forks by none, and every `TaskSlot` value is dropped exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, Pid, TaskSlot, TaskTable, Watcher, WatcherResult,
    WatcherTable,
};

static FORKS_SEEN: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static FREE_WITHOUT_STATE: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);
static DROPS: AtomicU64 = AtomicU64::new(0);

/// Per-task state whose drops are counted.
struct Marker;

impl Drop for Marker {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

static MARK: TaskSlot<Marker> = TaskSlot::new();

/// Runs first: stores the marker.
fn setup(event: &Event<'_>) -> WatcherResult {
    match event.kind() {
        EventKind::Fork => {
            FORKS_SEEN.fetch_add(1, Ordering::Relaxed);
            MARK.set(event.task(), Marker);
        }
        EventKind::Free => {
            FREES.fetch_add(1, Ordering::Relaxed);
            if MARK.take(event.task()).is_none() {
                FREE_WITHOUT_STATE.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Runs second: refuses every fork whose child pid is a multiple of 7.
fn refuse_some(event: &Event<'_>) -> WatcherResult {
    if event.task().pid().get().is_multiple_of(7) {
        REFUSED.fetch_add(1, Ordering::Relaxed);
        return Err("pid is a multiple of 7".into());
    }
    Ok(())
}

#[test]
fn threads_forking_and_exiting_ten_thousand_tasks() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 2_500;
    let table = Arc::new(
        WatcherTable::from_watchers([
            Watcher::new("setup", EventSet::FORK | EventSet::FREE, setup).with_priority(10),
            Watcher::new("refuse", EventSet::FORK, refuse_some),
        ])
        .unwrap(),
    );
    let tasks = TaskTable::with_table(Arc::clone(&table));

    let successes: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut ok = 0u64;
                    let mut attempts = 0;
                    while attempts < PER_THREAD {
                        attempts += 1;
                        // A parent that forks a child, which execs and exits; then the
                        // parent exits too, so init reaps both.
                        let Ok(parent) = tasks.fork(Pid::INIT, CloneFlags::empty()) else {
                            continue;
                        };
                        ok += 1;
                        if let Ok(child) = tasks.fork(parent.pid(), CloneFlags::SYSVSEM) {
                            ok += 1;
                            tasks.exec(child.pid(), "/bin/true").unwrap();
                            tasks.exit(child.pid(), 0).unwrap();
                        }
                        tasks.exit(parent.pid(), 0).unwrap();
                    }
                    ok
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });

    let stats = tasks.stats();
    assert!(successes >= 10_000, "only {successes} forks succeeded");
    assert_eq!(stats.forks, successes);
    assert_eq!(stats.failed_forks, REFUSED.load(Ordering::Relaxed));
    assert!(stats.failed_forks > 0, "the failure path ran");
    // Every attempted fork reached `setup`; refused ones got their rollback `free`.
    assert_eq!(
        FORKS_SEEN.load(Ordering::Relaxed),
        stats.forks + stats.failed_forks
    );
    assert_eq!(
        FREES.load(Ordering::Relaxed),
        stats.forks + stats.failed_forks
    );
    assert_eq!(FREE_WITHOUT_STATE.load(Ordering::Relaxed), 0);
    assert_eq!(
        DROPS.load(Ordering::Relaxed),
        stats.forks + stats.failed_forks
    );
    assert_eq!(stats.frees, stats.forks, "every task was reaped");
    assert_eq!(tasks.len(), 1, "only init is left");

    let setup_stats = &table.watchers()[0];
    assert_eq!(setup_stats.name, "setup");
    assert_eq!(setup_stats.calls, 2 * (stats.forks + stats.failed_forks));
}
