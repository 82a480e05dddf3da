//! The task-table calls that event sources of real tasks use: adopting a running task,
//! undoing a fork the OS refused, and an exit whose `free` comes later.

use std::sync::{Arc, Mutex};

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, ExitStatus, Pid, TaskError, TaskState, TaskTable,
    WatcherTable,
};

type Log = Arc<Mutex<Vec<(&'static str, EventKind, Pid)>>>;

/// A table with two runtime watchers, `a` (fork and free) and `b` (fork, exit, free).
fn table() -> (TaskTable, Log) {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log = Log::default();
    for (name, events) in [
        ("a", EventSet::FORK | EventSet::FREE),
        ("b", EventSet::FORK | EventSet::EXIT | EventSet::FREE),
    ] {
        let seen = log.clone();
        table
            .watcher(name, events)
            .register(move |event: &Event<'_>| {
                seen.lock()
                    .unwrap()
                    .push((name, event.kind(), event.task().pid()));
                Ok::<(), std::convert::Infallible>(())
            })
            .unwrap()
            .keep();
    }
    (TaskTable::with_table(table), log)
}

#[test]
fn abort_fork_frees_every_fork_watcher_once_without_an_exit() {
    let (tasks, log) = table();
    let child = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let pid = child.pid();
    log.lock().unwrap().clear();
    tasks.abort_fork(&child).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        // Teardown runs in the reverse of fork order (ties by name: a, then b).
        [("b", EventKind::Free, pid), ("a", EventKind::Free, pid)]
    );
    assert_eq!(child.state(), TaskState::Dead);
    assert!(tasks.get(pid).is_none());
    // Once undone, it cannot be undone or freed again.
    assert!(matches!(
        tasks.abort_fork(&child),
        Err(TaskError::NoSuchTask(_))
    ));
    assert!(matches!(tasks.free(&child), Err(TaskError::NoSuchTask(_))));
}

#[test]
fn abort_fork_refuses_a_task_that_is_not_running() {
    let (tasks, _) = table();
    let child = tasks.fork(Pid::INIT, CloneFlags::THREAD).unwrap();
    tasks
        .exit_unreaped(child.pid(), ExitStatus::exited(0))
        .unwrap();
    assert!(matches!(
        tasks.abort_fork(&child),
        Err(TaskError::WrongState {
            state: TaskState::Zombie,
            ..
        })
    ));
    assert!(matches!(
        tasks.abort_fork(tasks.init()),
        Err(TaskError::Init(_))
    ));
}

#[test]
fn exit_unreaped_keeps_a_thread_a_zombie_until_free() {
    let (tasks, log) = table();
    let thread = tasks.fork(Pid::INIT, CloneFlags::THREAD).unwrap();
    let pid = thread.pid();
    tasks.exit_unreaped(pid, ExitStatus::exited(3)).unwrap();
    assert_eq!(thread.state(), TaskState::Zombie);
    assert_eq!(thread.exit_status(), Some(ExitStatus::exited(3)));
    assert!(
        !log.lock()
            .unwrap()
            .iter()
            .any(|(_, kind, _)| *kind == EventKind::Free)
    );
    tasks.free(&thread).unwrap();
    assert_eq!(thread.state(), TaskState::Dead);
    let frees = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, kind, p)| *kind == EventKind::Free && *p == pid)
        .count();
    assert_eq!(frees, 2);
    // The plain exit of a thread still reaps it at once.
    let other = tasks.fork(Pid::INIT, CloneFlags::THREAD).unwrap();
    tasks.exit(other.pid(), 0).unwrap();
    assert_eq!(other.state(), TaskState::Dead);
}

#[test]
fn adopt_running_allocates_distinct_pids_and_notifies_fork_watchers() {
    let (tasks, log) = table();
    let (process, outcome) = tasks
        .adopt_running(tasks.init(), CloneFlags::empty(), "process")
        .unwrap();
    outcome.unwrap();
    let threads: Vec<_> = (0..5)
        .map(|_| {
            tasks
                .adopt_running(&process, CloneFlags::THREAD, "worker")
                .unwrap()
                .0
        })
        .collect();
    let mut pids: Vec<Pid> = threads.iter().map(|task| task.pid()).collect();
    pids.push(process.pid());
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 6);
    for thread in &threads {
        assert_eq!(
            (thread.tgid(), thread.comm(), thread.state()),
            (process.pid(), "worker".to_owned(), TaskState::Running)
        );
    }
    let forks = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, kind, _)| *kind == EventKind::Fork)
        .count();
    assert_eq!(forks, 12);
}

#[test]
fn adopt_running_reports_pid_exhaustion() {
    let tasks = TaskTable::with_pid_max(WatcherTable::from_watchers([]).unwrap(), 3);
    let init = tasks.init().clone();
    tasks
        .adopt_running(&init, CloneFlags::empty(), "a")
        .unwrap()
        .1
        .unwrap();
    tasks
        .adopt_running(&init, CloneFlags::empty(), "b")
        .unwrap()
        .1
        .unwrap();
    assert!(matches!(
        tasks.adopt_running(&init, CloneFlags::empty(), "c"),
        Err(watchers_core::ForkError::PidsExhausted(3))
    ));
}

/// A task whose fork is undone after it forked children of its own (another thread
/// found it running meanwhile) hands them to init, as an exit does: else they keep a
/// parent pid that any later task may take, and nobody can ever reap them.
#[test]
fn abort_fork_hands_the_tasks_children_to_init() {
    let (tasks, _) = table();
    let aborted = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let child = tasks.fork(aborted.pid(), CloneFlags::empty()).unwrap();
    let sibling = tasks.fork(child.pid(), CloneFlags::PARENT).unwrap();
    tasks.abort_fork(&aborted).unwrap();
    drop(aborted);
    for orphan in [&child, &sibling] {
        assert_eq!(orphan.parent(), Pid::INIT);
        assert!(tasks.children(Pid::INIT).contains(&orphan.pid()));
    }
    // An orphan's exit is reaped by init, as any other orphan's.
    tasks.exit(child.pid(), 0).unwrap();
    assert_eq!(child.state(), TaskState::Dead);
}
