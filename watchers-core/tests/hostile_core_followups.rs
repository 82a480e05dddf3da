//! Follow-ups of the hostile review of the task model: what a task being forked shows
//! to the rest of the table, and who frees a task that its source frees.

use std::sync::{Mutex, OnceLock};

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, ExitStatus, Pid, TaskError, TaskState, TaskStats,
    TaskTable, Watcher, WatcherResult, WatcherTable,
};

/// The table of the next test, for its `fork` watcher to look into.
static LOOK_IN_FORK: OnceLock<TaskTable> = OnceLock::new();

/// What the `fork` watcher saw of the child being forked: `wait` on its pid, `reap` of
/// it by its parent, and the table's statistics.
type SeenInFork = (
    Result<Option<(Pid, ExitStatus)>, TaskError>,
    Result<ExitStatus, TaskError>,
    TaskStats,
);

static SEEN_IN_FORK: Mutex<Vec<SeenInFork>> = Mutex::new(Vec::new());

fn look_at_the_embryo(event: &Event<'_>) -> WatcherResult {
    let tasks = LOOK_IN_FORK.get().ok_or("no table")?;
    let (Some(parent), EventKind::Fork) = (event.parent(), event.kind()) else {
        return Ok(());
    };
    let child = event.task().pid();
    let seen = (
        tasks.wait(child),
        tasks.reap(parent.pid(), child),
        tasks.stats(),
    );
    SEEN_IN_FORK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(seen);
    Ok(())
}

/// A task being forked is invisible (`TaskState::Embryo`: "nobody else can see it"):
/// `wait` and `reap` name no such task, as `get` does, and the table's statistics do
/// not count it until its fork is decided.
#[test]
fn a_task_being_forked_is_no_such_task_to_wait_reap_and_stats() {
    let table =
        WatcherTable::from_watchers([Watcher::new("look", EventSet::FORK, look_at_the_embryo)])
            .unwrap();
    let tasks = LOOK_IN_FORK.get_or_init(|| TaskTable::with_table(table));
    let child = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let seen = SEEN_IN_FORK
        .lock()
        .unwrap()
        .pop()
        .expect("the fork was seen");
    let (waited, reaped, stats) = seen;
    assert!(
        matches!(waited, Err(TaskError::NoSuchTask(pid)) if pid == child.pid()),
        "wait on a task being forked: {waited:?}"
    );
    assert!(
        matches!(reaped, Err(TaskError::NoSuchTask(pid)) if pid == child.pid()),
        "reap of a task being forked: {reaped:?}"
    );
    assert_eq!(stats.tasks, 1, "only init was visible: {stats:?}");
    assert_eq!(tasks.stats().tasks, 2, "init and the child, once forked");
}

fn nop(_: &Event<'_>) -> WatcherResult {
    Ok(())
}

/// `exit_unreaped` leaves the task a zombie "even if it is a thread or init's child:
/// its source sends `free`": a process whose parent exits first becomes init's child,
/// and init must not free it under its source (which would then get `NoSuchTask`, and
/// lose the task's OS id before the real process is gone).
#[test]
fn an_unreaped_orphan_waits_for_its_sources_free() {
    let table = WatcherTable::from_watchers([Watcher::new("nop", EventSet::ALL, nop)]).unwrap();
    let tasks = TaskTable::with_table(table);
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let child = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
    assert!(tasks.set_os_id(&child, 4242));
    tasks
        .exit_unreaped(child.pid(), ExitStatus::exited(3))
        .unwrap();
    tasks.exit(parent.pid(), 0).unwrap();
    assert_eq!(parent.state(), TaskState::Dead);
    assert_eq!(child.parent(), Pid::INIT, "reparented to init");
    assert_eq!(child.state(), TaskState::Zombie, "its source frees it");
    assert_eq!(child.os_id(), Some(4242));
    tasks.free(&child).expect("the source's free");
    assert_eq!(child.state(), TaskState::Dead);
    assert_eq!(child.os_id(), None);
    assert!(tasks.children(Pid::INIT).is_empty());
    assert_eq!(tasks.stats().frees, 2);
}
