//! Hostile review of the task model: identity after a pid is reused, statistics that
//! must agree with the watcher table's, re-entrant and panicking watchers.

use std::panic::{AssertUnwindSafe, catch_unwind};

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, Pid, TaskState, TaskTable, Watcher, WatcherResult,
    WatcherTable,
};

fn nop(_: &Event<'_>) -> WatcherResult {
    Ok(())
}

fn tasks() -> TaskTable {
    let table = WatcherTable::from_watchers([Watcher::new("nop", EventSet::ALL, nop)]).unwrap();
    TaskTable::with_table(table)
}

/// `adopt_running` takes its parent as a `Task`, by identity. Once that task is freed
/// and its pid given to another, the adopted process must not become the newcomer's
/// child (the table's promise: `adopt` never attaches a task to a parent that has
/// finished exiting, nor to whichever task has its pid now).
#[test]
fn adopt_running_under_a_freed_parent_does_not_attach_to_the_pids_new_owner() {
    let tasks = tasks();
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.exit(parent.pid(), 0).unwrap();
    assert_eq!(parent.state(), TaskState::Dead, "init reaped it");
    let newcomer = tasks
        .fork_with_pid(Pid::INIT, parent.pid(), CloneFlags::empty())
        .unwrap();

    let (child, outcome) = tasks
        .adopt_running(&parent, CloneFlags::empty(), "late")
        .unwrap();
    outcome.unwrap();
    assert_eq!(child.parent(), Pid::INIT, "its creator is gone: init's");
    assert!(
        tasks.children(newcomer.pid()).is_empty(),
        "the pid's new owner got a child it never forked"
    );
}

/// The same for a thread: a thread of a freed process must not join the thread group
/// of the process that took its pid (sharing its session, and holding its exit back
/// as a zombie leader).
#[test]
fn adopt_running_a_thread_of_a_freed_process_does_not_join_the_pids_new_owner() {
    let tasks = tasks();
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.exit(parent.pid(), 0).unwrap();
    let newcomer = tasks
        .fork_with_pid(Pid::INIT, parent.pid(), CloneFlags::empty())
        .unwrap();

    let (thread, outcome) = tasks
        .adopt_running(&parent, CloneFlags::THREAD, "late")
        .unwrap();
    outcome.unwrap();
    tasks.setsid(newcomer.pid()).unwrap();
    assert_ne!(
        thread.sid(),
        newcomer.pid(),
        "the newcomer's setsid moved a thread it never had"
    );
    tasks.exit(newcomer.pid(), 0).unwrap();
    assert_eq!(
        newcomer.state(),
        TaskState::Dead,
        "the newcomer, init's child, is freed at its exit: no thread of its holds it"
    );
}

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
