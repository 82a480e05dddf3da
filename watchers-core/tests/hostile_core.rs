//! Hostile review of the task model: identity after a pid is reused, statistics that
//! must agree with the watcher table's, re-entrant and panicking watchers.

use std::panic::{AssertUnwindSafe, catch_unwind};

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, Pid, TaskTable, Watcher, WatcherResult, WatcherTable,
};

fn panic_on_fork(event: &Event<'_>) -> WatcherResult {
    if event.kind() == EventKind::Fork {
        panic!("fork watcher panics");
    }
    Ok(())
}

/// Every fork the table dispatches is counted as a fork or a failed fork
/// (`forks + failed_forks` is the number of `fork` events, an invariant the simulator
/// and the workload test rely on), also when a fork watcher panics.
#[test]
fn a_fork_whose_watcher_panics_is_counted_as_failed() {
    let table =
        WatcherTable::from_watchers([Watcher::new("panics", EventSet::FORK, panic_on_fork)])
            .unwrap();
    let tasks = TaskTable::with_table(table);
    let forked = catch_unwind(AssertUnwindSafe(|| {
        tasks.fork(Pid::INIT, CloneFlags::empty())
    }));
    assert!(forked.is_err(), "the panic continues");
    let stats = tasks.stats();
    assert_eq!(stats.tasks, 1, "the embryo is gone");
    assert_eq!(
        stats.forks + stats.failed_forks,
        tasks.watchers().dispatched(EventKind::Fork),
        "{stats:?}"
    );
}
