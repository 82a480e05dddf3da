//! Hostile review of the task model: identity after a pid is reused, statistics that
//! must agree with the watcher table's, re-entrant and panicking watchers.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, Ids, Pid, TaskInit, TaskState, TaskTable, Watcher,
    WatcherResult, WatcherTable,
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

fn panic_on_forking_boom(event: &Event<'_>) -> WatcherResult {
    if event.kind() == EventKind::Fork && event.task().comm() == "boom" {
        panic!("fork watcher panics");
    }
    Ok(())
}

/// A task that `adopt` announces exists whatever its `fork` watchers do: a parent's
/// per-task watcher of `fork` and `free` that saw the fork is owed the child's `free`
/// (its per-child state would leak otherwise), also when a table watcher panicked on
/// that `fork` before it ran.
#[test]
fn a_parents_fork_free_watcher_gets_the_free_of_a_child_adopted_despite_a_panic() {
    let table = WatcherTable::from_watchers([Watcher::new(
        "panics",
        EventSet::FORK,
        panic_on_forking_boom,
    )])
    .unwrap();
    let tasks = TaskTable::with_table(table);
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    parent
        .watch(EventSet::FORK | EventSet::FREE, move |event| {
            log.lock()
                .unwrap()
                .push((event.kind(), event.task().serial()));
            Ok::<(), String>(())
        })
        .keep();
    let adopted = catch_unwind(AssertUnwindSafe(|| {
        tasks.adopt(
            TaskInit {
                pid: Pid(500),
                tgid: Pid(500),
                parent: parent.pid(),
                sid: Pid::INIT,
                pgid: Pid::INIT,
                uids: Ids::all(0),
                gids: Ids::all(0),
                comm: "boom".to_owned(),
            },
            CloneFlags::empty(),
        )
    }));
    assert!(adopted.is_err(), "the panic continues");
    let child = tasks.get(Pid(500)).expect("adopted all the same");
    assert_eq!(child.parent(), parent.pid());
    tasks.exit(child.pid(), 0).unwrap();
    tasks.wait(parent.pid()).unwrap().expect("the zombie child");
    assert_eq!(child.state(), TaskState::Dead);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (EventKind::Fork, child.serial()),
            (EventKind::Free, child.serial())
        ],
        "the watcher saw the child's fork, so it gets its free"
    );
}

/// The table of the next test, for its `free` watcher to re-enter.
static WAIT_IN_FREE: OnceLock<(TaskTable, Mutex<Option<Pid>>)> = OnceLock::new();

/// At the `free` of a task named "orphan", waits on the pid the test names.
fn wait_at_an_orphans_free(event: &Event<'_>) -> WatcherResult {
    if event.kind() == EventKind::Free && event.task().comm() == "orphan" {
        let (tasks, waiter) = WAIT_IN_FREE.get().ok_or("no table")?;
        let waiter = waiter.lock().unwrap().ok_or("no waiter")?;
        if let Some((pid, _)) = tasks.wait(waiter)? {
            return Err(format!("wait found {pid:?}").into());
        }
    }
    Ok(())
}

/// A task whose fork is undone never existed for its parent: `abort_fork` frees it
/// and succeeds, and no `wait` of its parent meanwhile (here from a `free` watcher of
/// the zombie child it hands to init) finds it as a zombie to reap.
#[test]
fn an_aborted_fork_is_not_waitable_while_its_orphans_are_freed() {
    let table = WatcherTable::from_watchers([Watcher::new(
        "wait",
        EventSet::FREE,
        wait_at_an_orphans_free,
    )])
    .unwrap();
    let (tasks, waiter) =
        WAIT_IN_FREE.get_or_init(|| (TaskTable::with_table(table), Mutex::new(None)));
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let aborted = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
    let orphan = tasks.fork(aborted.pid(), CloneFlags::empty()).unwrap();
    tasks.set_comm(orphan.pid(), "orphan").unwrap();
    tasks.exit(orphan.pid(), 0).unwrap();
    assert_eq!(
        orphan.state(),
        TaskState::Zombie,
        "its parent has not waited"
    );
    *waiter.lock().unwrap() = Some(parent.pid());

    let aborted_outcome = tasks.abort_fork(&aborted);
    assert_eq!(orphan.state(), TaskState::Dead);
    assert_eq!(aborted.state(), TaskState::Dead);
    aborted_outcome.expect("the fork was undone");
    assert!(tasks.children(parent.pid()).is_empty());
}

/// The table of the next test, for its `exec` watcher to re-enter.
static ABORT_IN_EXEC: OnceLock<TaskTable> = OnceLock::new();

/// Undoes the fork of the task whose `exec` it sees, and counts that task's `free`s.
fn abort_at_exec(event: &Event<'_>) -> WatcherResult {
    let tasks = ABORT_IN_EXEC.get().ok_or("no table")?;
    match event.kind() {
        EventKind::Exec => {
            let task = tasks.get(event.task().pid()).ok_or("not found")?;
            tasks.abort_fork(&task)?;
            if task.state() != TaskState::Zombie {
                return Err(format!("{task:?} was freed while its exec ran").into());
            }
        }
        EventKind::Free => {
            ABORTED_FREES.fetch_add(1, Ordering::SeqCst);
        }
        _ => {}
    }
    Ok(())
}

static ABORTED_FREES: AtomicUsize = AtomicUsize::new(0);

/// `abort_fork` from a watcher of the task's own event: the `free` waits for that
/// event to end, comes once, and nothing deadlocks.
#[test]
fn abort_fork_inside_the_tasks_own_exec_frees_it_once_after_the_exec() {
    let table = WatcherTable::from_watchers([Watcher::new(
        "abort",
        EventSet::EXEC | EventSet::FREE,
        abort_at_exec,
    )])
    .unwrap();
    let tasks = ABORT_IN_EXEC.get_or_init(|| TaskTable::with_table(table));
    let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.exec(task.pid(), "/bin/x").unwrap();
    assert_eq!(task.state(), TaskState::Dead);
    assert_eq!(ABORTED_FREES.load(Ordering::SeqCst), 1);
    assert!(tasks.get(task.pid()).is_none());
    assert_eq!(tasks.stats().frees, 1);
}

/// What each `fork` watcher call saw: the child's serial, its parent pid, the event's
/// parent pid.
static ADOPTED_PARENTS: Mutex<Vec<(u64, Pid, Pid)>> = Mutex::new(Vec::new());

fn record_adopted_parent(event: &Event<'_>) -> WatcherResult {
    if let Some(parent) = event.parent() {
        ADOPTED_PARENTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((event.task().serial(), event.task().parent(), parent.pid()));
    }
    Ok(())
}

/// `adopt` replaces `init.parent` by the task's real parent (the creator's parent for
/// a thread, init when the creator is gone), and the `fork` watchers, which see the
/// task as it will be, see that parent already, as `fork`'s do: never the creator of a
/// thread, nor a pid that names a freed task.
#[test]
fn adopted_tasks_show_their_real_parent_to_the_fork_watchers() {
    let table = WatcherTable::from_watchers([Watcher::new(
        "parents",
        EventSet::FORK,
        record_adopted_parent,
    )])
    .unwrap();
    let tasks = TaskTable::with_table(table);
    let process = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let (thread, _) = tasks
        .adopt_running(&process, CloneFlags::THREAD, "thread")
        .unwrap();
    assert_eq!(
        thread.parent(),
        Pid::INIT,
        "a thread has its creator's parent"
    );

    let gone = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.exit(gone.pid(), 0).unwrap();
    let (orphan, _) = tasks
        .adopt_running(&gone, CloneFlags::empty(), "orphan")
        .unwrap();
    assert_eq!(orphan.parent(), Pid::INIT);

    let seen = ADOPTED_PARENTS.lock().unwrap().clone();
    for task in [&thread, &orphan] {
        let (_, parent, _) = seen
            .iter()
            .find(|(serial, ..)| *serial == task.serial())
            .expect("its fork was seen");
        assert_eq!(*parent, task.parent(), "{task:?} showed another parent");
    }
}
