//! Follow-ups of the hostile review of the task model: what a task being forked shows
//! to the rest of the table, who frees a task that its source frees, and where the
//! table lets go of a freed task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};
use std::time::Duration;

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, ExitStatus, Pid, Task, TaskError, TaskSlot, TaskState,
    TaskStats, TaskTable, Watcher, WatcherResult, WatcherTable,
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

/// The table of the next test, for its `free` watcher and slot values to re-enter.
static LATE_VALUES: OnceLock<TaskTable> = OnceLock::new();

/// Set by the `free` watcher: its `Drop`, when `free` clears the task's slots, sets a
/// [`Reenters`] on the task, which then stays until the task's last `Arc` goes.
struct SetsLate(Weak<Task>);

impl Drop for SetsLate {
    fn drop(&mut self) {
        if let Some(task) = self.0.upgrade() {
            REENTERS.set(&task, Reenters);
        }
    }
}

/// A value set after the task's `free`, whose `Drop` calls back into the task's table:
/// it deadlocks if the table drops the task's last reference with its lock held.
struct Reenters;

impl Drop for Reenters {
    fn drop(&mut self) {
        if let Some(tasks) = LATE_VALUES.get() {
            let _ = tasks.stats();
            let _ = tasks.get(Pid::INIT);
            REENTERED.fetch_add(1, Ordering::SeqCst);
        }
    }
}

static SETS_LATE: TaskSlot<SetsLate> = TaskSlot::new();
static REENTERS: TaskSlot<Reenters> = TaskSlot::new();
static REENTERED: AtomicUsize = AtomicUsize::new(0);

fn set_late_values(event: &Event<'_>) -> WatcherResult {
    let tasks = LATE_VALUES.get().ok_or("no table")?;
    if event.kind() == EventKind::Free && event.task().comm() == "late" {
        // Its node is still there while the `free` watchers run.
        let task = tasks.get(event.task().pid()).ok_or("not found")?;
        SETS_LATE.set(&task, SetsLate(Arc::downgrade(&task)));
    }
    Ok(())
}

/// Runs `f` on a thread of its own: a deadlock fails the test instead of hanging it.
fn within(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what}: deadlocked (or panicked)"));
}

/// Forks a child of `parent` named "late", holding no reference to it.
fn late_child(tasks: &TaskTable, parent: Pid, flags: CloneFlags) -> Pid {
    let child = tasks.fork(parent, flags).unwrap().pid();
    tasks.set_comm(child, "late").unwrap();
    child
}

/// Wherever the table drops a freed task's last reference (a task reaped by init at
/// its exit, by its parent's `wait` or `reap`, an orphan reaped by init, a thread, and
/// a leader freed after its last thread, whose last reference that thread holds), a
/// value set on it after its `free` may call back into the table from its `Drop`:
/// that last reference goes away once the table's lock is released.
#[test]
fn a_late_slot_value_may_reenter_the_table_when_the_last_reference_goes() {
    let table =
        WatcherTable::from_watchers([Watcher::new("late", EventSet::FREE, set_late_values)])
            .unwrap();
    let tasks = LATE_VALUES.get_or_init(|| TaskTable::with_table(table));
    let mut expected = 0;

    within("init reaps it at its exit", move || {
        let child = late_child(tasks, Pid::INIT, CloneFlags::empty());
        tasks.exit(child, 0).unwrap();
    });
    expected += 1;
    assert_eq!(REENTERED.load(Ordering::SeqCst), expected);

    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap().pid();
    within("its parent's wait", move || {
        let child = late_child(tasks, parent, CloneFlags::empty());
        tasks.exit(child, 0).unwrap();
        tasks.wait(parent).unwrap().expect("a zombie child");
    });
    within("its parent's reap", move || {
        let child = late_child(tasks, parent, CloneFlags::empty());
        tasks.exit(child, 0).unwrap();
        tasks.reap(parent, child).unwrap();
    });
    expected += 2;
    assert_eq!(REENTERED.load(Ordering::SeqCst), expected);

    within("init reaps an orphan", move || {
        let child = late_child(tasks, parent, CloneFlags::empty());
        tasks.exit(child, 0).unwrap();
        tasks.set_comm(parent, "late").unwrap();
        tasks.exit(parent, 0).unwrap();
    });
    expected += 2;
    assert_eq!(REENTERED.load(Ordering::SeqCst), expected);

    within("a thread, then its leader", move || {
        let leader = late_child(tasks, Pid::INIT, CloneFlags::empty());
        let thread = late_child(tasks, leader, CloneFlags::THREAD);
        tasks.exit(leader, 0).unwrap();
        tasks.exit(thread, 0).unwrap();
    });
    expected += 2;
    assert_eq!(REENTERED.load(Ordering::SeqCst), expected);
    assert_eq!(tasks.stats().tasks, 1, "only init is left");
}
