//! 10,000 spawn/join cycles of real threads with a watcher refusing every 7th spawn:
//! per task, `fork` = `free`, and every slot value is dropped exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use watchers_core::{
    Event, EventKind, EventSet, TaskSlot, TaskState, Watcher, WatcherResult, WatcherTable,
};
use watchers_threads::Threads;

const CYCLES: u64 = 10_000;

/// A per-task value whose drop is counted by its serial.
struct Tracked(u64);

impl Drop for Tracked {
    fn drop(&mut self) {
        *lock(&DROPS).entry(self.0).or_default() += 1;
    }
}

static TRACKED: TaskSlot<Tracked> = TaskSlot::new();
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0);
static FORK_CALLS: AtomicU64 = AtomicU64::new(0);
/// Per serial: forks, exits, frees.
static SEEN: LazyLock<Mutex<HashMap<u64, [u32; 3]>>> = LazyLock::new(Default::default);
static DROPS: LazyLock<Mutex<HashMap<u64, u32>>> = LazyLock::new(Default::default);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gives each task a serial (its identity; mirror pids are reused) and counts its events.
fn track(event: &Event<'_>) -> WatcherResult {
    let task = event.task();
    let serial = match event.kind() {
        EventKind::Fork => {
            let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
            TRACKED.set(task, Tracked(serial));
            serial
        }
        _ => TRACKED
            .with(task, |tracked| tracked.0)
            .ok_or("a task without a serial")?,
    };
    let index = match event.kind() {
        EventKind::Fork => 0,
        EventKind::Exit => 1,
        _ => 2,
    };
    lock(&SEEN).entry(serial).or_default()[index] += 1;
    Ok(())
}

/// Refuses every 7th fork; runs after `track`, so `track` gets the rollback `free`.
fn refuse_every_seventh(_: &Event<'_>) -> WatcherResult {
    if FORK_CALLS.fetch_add(1, Ordering::Relaxed) % 7 == 6 {
        return Err("every seventh thread is refused".into());
    }
    Ok(())
}

#[test]
fn ten_thousand_cycles_free_every_forked_task_once() {
    let table = WatcherTable::from_watchers([
        Watcher::new(
            "cycles::track",
            EventSet::FORK | EventSet::EXIT | EventSet::FREE,
            track,
        )
        .with_priority(10),
        Watcher::new("cycles::refuse", EventSet::FORK, refuse_every_seventh),
    ])
    .unwrap()
    .leak();
    let threads: &'static Threads = Box::leak(Box::new(Threads::new(table)));

    let (mut joined, mut refused) = (0u64, 0u64);
    for _ in 0..CYCLES {
        match threads.builder().spawn(move || {
            let me = threads.current().unwrap();
            // The value the fork watcher set is there, in the thread's own task.
            TRACKED.with(&me, |tracked| tracked.0).unwrap()
        }) {
            Ok(handle) => {
                let task = handle.task().clone();
                let serial = handle.join().unwrap();
                assert_eq!(lock(&SEEN)[&serial], [1, 1, 1]);
                // `join` returns after the thread-locals are gone: the task is freed.
                assert_eq!(task.state(), TaskState::Dead);
                joined += 1;
            }
            Err(error) => {
                assert_eq!(error.watcher(), Some("cycles::refuse"));
                refused += 1;
            }
        }
    }
    assert_eq!(refused, CYCLES / 7);
    assert_eq!(joined, CYCLES - CYCLES / 7);

    let seen = lock(&SEEN);
    // The process's task and the test's own thread (adopted at its first spawn) are
    // alive; every spawned thread's task has been freed.
    assert_eq!(seen.len() as u64, CYCLES + 2);
    let serial_of = |task| TRACKED.with(task, |tracked: &Tracked| tracked.0).unwrap();
    let alive = [
        serial_of(threads.process()),
        serial_of(&threads.current().unwrap()),
    ];
    let mut exited = 0;
    for (serial, [forks, exits, frees]) in seen.iter() {
        if alive.contains(serial) {
            assert_eq!([*forks, *exits, *frees], [1, 0, 0]);
            continue;
        }
        assert_eq!((forks, frees), (&1, &1), "task {serial}");
        exited += exits;
    }
    assert_eq!(u64::from(exited), joined);
    let drops = lock(&DROPS);
    assert_eq!(drops.len() as u64, CYCLES);
    assert!(alive.iter().all(|serial| !drops.contains_key(serial)));
    assert!(drops.values().all(|&drops| drops == 1));
    let stats = threads.tasks().stats();
    assert_eq!((stats.failed_forks, stats.tasks), (refused, 3));
}
