//! Input and call sites a reviewer would try against the source: names std refuses,
//! renames past the kernel's length, lookups from other libraries' thread-end callbacks.

use std::sync::{Arc, Mutex};

use watchers_core::{Event, EventKind, EventSet, Pid, WatcherTable};
use watchers_threads::{SpawnError, Threads};

type Log = Arc<Mutex<Vec<(EventKind, Pid)>>>;

/// A source whose watcher logs every fork, exit and free.
fn source() -> (&'static Threads, Log) {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log = Log::default();
    let seen = log.clone();
    table
        .watcher(
            "test::log",
            EventSet::FORK | EventSet::EXIT | EventSet::FREE,
        )
        .register(move |event: &Event<'_>| -> watchers_core::WatcherResult {
            seen.lock()
                .unwrap()
                .push((event.kind(), event.task().pid()));
            Ok(())
        })
        .unwrap()
        .keep();
    (Box::leak(Box::new(Threads::new(table))), log)
}

/// How many `fork` and `free` events the log holds for tasks other than `skip`.
fn forks_and_frees(log: &Log, skip: &[Pid]) -> (usize, usize) {
    let log = log.lock().unwrap();
    let count = |kind| {
        log.iter()
            .filter(|(k, pid)| *k == kind && !skip.contains(pid))
            .count()
    };
    (count(EventKind::Fork), count(EventKind::Free))
}

#[test]
fn a_thread_name_with_a_nul_byte_is_an_error_and_leaves_no_task_behind() {
    let (threads, log) = source();
    let me = threads.current().unwrap();
    let tasks_before = threads.tasks().stats().tasks;
    let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        threads
            .builder()
            .name("bad\0name".into())
            .spawn(|| ())
            .map(|handle| handle.join().is_ok())
    }));
    let outcome = spawned.expect("a name std refuses must be an error, not a panic");
    assert!(
        matches!(outcome, Err(SpawnError::Nul)),
        "a thread named with a NUL byte: {outcome:?}"
    );
    let (forks, frees) = forks_and_frees(&log, &[me.pid(), threads.process().pid()]);
    assert_eq!(
        forks,
        frees,
        "every fork has its free: {:?}",
        log.lock().unwrap()
    );
    assert_eq!(threads.tasks().stats().tasks, tasks_before);
}
