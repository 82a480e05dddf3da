//! The task model's own rules: pids, orphans, threads, sessions, ids, reaping.

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, ForkError, Ids, Pid, TaskError, TaskState, TaskTable,
    Watcher, WatcherResult, WatcherTable,
};

fn nop(_: &Event<'_>) -> WatcherResult {
    Ok(())
}

fn tasks() -> TaskTable {
    let table = WatcherTable::from_watchers([Watcher::new("nop", EventSet::ALL, nop)]).unwrap();
    TaskTable::with_table(table)
}

#[test]
fn pids_are_not_reused_until_the_task_is_freed() {
    let table = WatcherTable::from_watchers([]).unwrap();
    // Pids 2..=5 only.
    let tasks = TaskTable::with_pid_max(table, 5);
    let init = tasks.init().pid();
    let a = tasks.fork(init, CloneFlags::empty()).unwrap();
    let shell = tasks.fork(init, CloneFlags::empty()).unwrap();
    let b = tasks.fork(shell.pid(), CloneFlags::empty()).unwrap();
    let c = tasks.fork(shell.pid(), CloneFlags::empty()).unwrap();
    assert_eq!(
        [a.pid(), shell.pid(), b.pid(), c.pid()].map(Pid::get),
        [2, 3, 4, 5]
    );
    assert!(matches!(
        tasks.fork(init, CloneFlags::empty()),
        Err(ForkError::PidsExhausted(5))
    ));

    // A zombie keeps its pid.
    tasks.exit(b.pid(), 0).unwrap();
    assert_eq!(b.state(), TaskState::Zombie);
    assert!(tasks.fork(init, CloneFlags::empty()).is_err());

    // Once reaped, the pid comes back.
    assert_eq!(
        tasks.wait(shell.pid()).unwrap().map(|(pid, _)| pid),
        Some(b.pid())
    );
    assert_eq!(b.state(), TaskState::Dead);
    let d = tasks.fork(init, CloneFlags::empty()).unwrap();
    assert_eq!(d.pid(), b.pid());
}

#[test]
fn orphans_are_reparented_to_init_and_reaped_by_it() {
    let tasks = tasks();
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let live = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
    let zombie = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
    tasks.exit(zombie.pid(), 4).unwrap();
    assert_eq!(zombie.state(), TaskState::Zombie);
    assert_eq!(tasks.children(parent.pid()), [live.pid(), zombie.pid()]);

    tasks.exit(parent.pid(), 0).unwrap();
    // The parent's parent is init, so the parent was reaped at once; so was its zombie.
    assert_eq!(parent.state(), TaskState::Dead);
    assert_eq!(zombie.state(), TaskState::Dead);
    assert_eq!(live.parent(), Pid::INIT);
    assert!(tasks.children(Pid::INIT).contains(&live.pid()));

    tasks.exit(live.pid(), 0).unwrap();
    assert_eq!(live.state(), TaskState::Dead);
    assert_eq!(tasks.len(), 1);
}

#[test]
fn threads_share_a_group_and_reap_themselves() {
    let tasks = tasks();
    let process = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let child = tasks.fork(process.pid(), CloneFlags::empty()).unwrap();
    let thread = tasks
        .fork(
            child.pid(),
            CloneFlags::THREAD | CloneFlags::VM | CloneFlags::SIGHAND,
        )
        .unwrap();
    assert!(thread.is_thread());
    assert_eq!(thread.tgid(), child.pid());
    assert_eq!(
        thread.parent(),
        process.pid(),
        "a thread has its creator's parent"
    );
    assert!(
        !tasks.children(process.pid()).contains(&thread.pid()),
        "threads are not waited for"
    );

    tasks.exit(thread.pid(), 0).unwrap();
    assert_eq!(thread.state(), TaskState::Dead);
    assert!(tasks.get(thread.pid()).is_none());
}

#[test]
fn setsid_is_refused_to_a_group_leader() {
    let tasks = tasks();
    let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    assert_eq!(task.sid(), Pid::INIT);
    assert_eq!(tasks.setsid(task.pid()).unwrap(), task.pid());
    assert_eq!((task.sid(), task.pgid()), (task.pid(), task.pid()));
    assert!(matches!(
        tasks.setsid(task.pid()),
        Err(TaskError::GroupLeader(_))
    ));
}

#[test]
fn ids_names_and_tracing_change_as_asked() {
    let tasks = tasks();
    let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks
        .setresuid(task.pid(), Some(1000), Some(1001), None)
        .unwrap();
    assert_eq!(
        task.uids(),
        Ids {
            real: 1000,
            effective: 1001,
            saved: 0,
            fs: 1001
        }
    );
    tasks.setgid(task.pid(), 50).unwrap();
    assert_eq!(task.gids(), Ids::all(50));
    tasks
        .set_comm(task.pid(), "a-rather-long-task-name")
        .unwrap();
    assert_eq!(task.comm(), "a-rather-long-t");
    tasks.ptrace(task.pid(), Some(Pid::INIT)).unwrap();
    assert_eq!(task.tracer(), Some(Pid::INIT));
    tasks.coredump(task.pid(), 11).unwrap();
    let watchers = tasks.watchers();
    for kind in [
        EventKind::Uid,
        EventKind::Gid,
        EventKind::Comm,
        EventKind::Ptrace,
        EventKind::Coredump,
    ] {
        assert_eq!(watchers.dispatched(kind), 1, "{kind}");
    }
    // The child inherits what the parent has now.
    let child = tasks.fork(task.pid(), CloneFlags::empty()).unwrap();
    assert_eq!(child.uids(), task.uids());
    assert_eq!(child.comm(), "a-rather-long-t");
}

#[test]
fn operations_on_the_wrong_task_are_refused() {
    let tasks = tasks();
    assert!(matches!(
        tasks.exec(Pid(999), "/bin/sh"),
        Err(TaskError::NoSuchTask(Pid(999)))
    ));
    assert!(matches!(tasks.exit(Pid::INIT, 0), Err(TaskError::Init(_))));
    let shell = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let other = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let job = tasks.fork(shell.pid(), CloneFlags::empty()).unwrap();
    tasks.exit(job.pid(), 0).unwrap();
    assert!(matches!(
        tasks.exec(job.pid(), "/bin/sh"),
        Err(TaskError::WrongState { .. })
    ));
    assert!(matches!(
        tasks.reap(other.pid(), job.pid()),
        Err(TaskError::NotAChild { .. })
    ));
    assert!(matches!(
        tasks.fork(job.pid(), CloneFlags::empty()),
        Err(ForkError::NotRunning { .. })
    ));
    assert_eq!(tasks.reap(shell.pid(), job.pid()).unwrap().code(), Some(0));
    assert!(matches!(
        tasks.reap(shell.pid(), job.pid()),
        Err(TaskError::NoSuchTask(_))
    ));
}

/// Set when dropped: shows when a closure a table owns is gone.
struct DropFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_short_lived_watcher_table_goes_with_its_last_holder() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    // Shared: the task table holds it while it lives, and no longer.
    let table =
        Arc::new(WatcherTable::from_watchers([Watcher::new("nop", EventSet::ALL, nop)]).unwrap());
    let weak = Arc::downgrade(&table);
    let tasks = TaskTable::with_table(Arc::clone(&table));
    drop(table);
    let child = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.exit(child.pid(), 0).unwrap();
    drop(child);
    assert!(weak.upgrade().is_some(), "the task table holds it");
    drop(tasks);
    assert!(
        weak.upgrade().is_none(),
        "nothing else holds it, nothing leaked"
    );

    // Owned: a runtime watcher's closure kept in it is dropped with the task table.
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(Arc::clone(&dropped));
    let table = WatcherTable::from_watchers([]).unwrap();
    table
        .watcher("test::kept", EventSet::EXIT)
        .register(move |_| {
            let _ = &flag;
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap()
        .keep();
    let tasks = TaskTable::with_table(table);
    let child = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.exit(child.pid(), 0).unwrap();
    drop(child);
    assert!(!dropped.load(Ordering::SeqCst));
    drop(tasks);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the closure went with the table"
    );
}
