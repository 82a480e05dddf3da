//! When `free` is sent: never while another event of the task is in flight, never
//! before the task's `fork`, and to every zombie an exit hands to init even if a `free`
//! watcher panics.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use watchers_core::{
    CloneFlags, EventKind, EventSet, Ids, Pid, Recorded, TaskError, TaskInit, TaskState, TaskTable,
    WatcherTable,
};

/// A table whose runtime watchers the test registers.
fn tables() -> (Arc<WatcherTable>, Arc<TaskTable>) {
    let watchers = Arc::new(WatcherTable::from_watchers([]).unwrap());
    let tasks = Arc::new(TaskTable::with_table(watchers.clone()));
    (watchers, tasks)
}

/// Thread 1 execs P and its first `exec` watcher blocks; thread 2 exits P (init's
/// child, so reaped at once). `free` must wait for the exec: the second `exec` watcher
/// sees P not yet freed, and `free` comes after it, sent by the exec's thread.
#[test]
fn free_is_sent_after_an_event_in_flight_not_during_it() {
    let (watchers, tasks) = tables();
    let victim = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (entered_tx, go_rx) = (Mutex::new(entered_tx), Mutex::new(go_rx));
    watchers
        .watcher("first", EventSet::EXEC)
        .priority(10)
        .register(move |_| {
            entered_tx.lock().unwrap().send(()).unwrap();
            go_rx.lock().unwrap().recv().unwrap();
            Ok::<(), String>(())
        })
        .unwrap()
        .keep();
    let seen = Arc::new(AtomicU8::new(u8::MAX));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (seen2, log2) = (seen.clone(), log.clone());
    watchers
        .watcher("second", EventSet::EXEC | EventSet::FREE)
        .register(move |e| {
            if e.kind() == EventKind::Exec {
                seen2.store(e.task().state() as u8, Ordering::SeqCst);
            }
            log2.lock()
                .unwrap()
                .push((e.kind(), std::thread::current().id()));
            Ok::<(), String>(())
        })
        .unwrap()
        .keep();
    let pid = victim.pid();
    let exec_tasks = tasks.clone();
    let execer =
        std::thread::spawn(move || (exec_tasks.exec(pid, "/bin/x"), std::thread::current().id()));
    entered_rx.recv().unwrap();
    // The premise: the exec is in flight while the exit runs and claims the free.
    tasks.exit(pid, 0).unwrap();
    assert_eq!(victim.state(), TaskState::Zombie, "free waits for the exec");
    assert!(tasks.get(pid).is_some(), "the pid stays taken until free");
    go_tx.send(()).unwrap();
    let (outcome, exec_thread) = execer.join().unwrap();
    outcome.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), TaskState::Zombie as u8);
    assert_eq!(victim.state(), TaskState::Dead);
    assert!(tasks.get(pid).is_none());
    assert_eq!(
        *log.lock().unwrap(),
        [
            (EventKind::Exec, exec_thread),
            (EventKind::Free, exec_thread)
        ]
    );
    assert_eq!(tasks.stats().frees, 1);
}

/// A watcher may exit and reap its own task inside one of its events: `free` then comes
/// when that event ends, with no wait (no deadlock).
#[test]
fn a_watcher_exiting_its_own_task_gets_free_after_its_event() {
    let (watchers, tasks) = tables();
    let weak = Arc::downgrade(&tasks);
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    watchers
        .watcher("suicide", EventSet::SID | EventSet::FREE)
        .register(move |e| {
            log2.lock().unwrap().push(e.kind());
            if e.kind() == EventKind::Sid
                && let Some(tasks) = weak.upgrade()
            {
                tasks.exit(e.task().pid(), 0).unwrap();
                assert_eq!(e.task().state(), TaskState::Zombie);
            }
            Ok::<(), String>(())
        })
        .unwrap()
        .keep();
    let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.setsid(task.pid()).unwrap();
    assert_eq!(task.state(), TaskState::Dead);
    assert_eq!(*log.lock().unwrap(), [EventKind::Sid, EventKind::Free]);
}

/// A `free` watcher that panics once while A's exit frees its zombie children: every
/// one of them is freed all the same, and the panic continues.
#[test]
fn a_panicking_free_watcher_strands_no_zombie_orphan() {
    let (watchers, tasks) = tables();
    let armed = Arc::new(AtomicBool::new(false));
    let armed2 = armed.clone();
    watchers
        .watcher("boom", EventSet::FREE)
        .register(move |_| {
            if armed2.swap(false, Ordering::SeqCst) {
                panic!("free watcher panics once");
            }
            Ok::<(), String>(())
        })
        .unwrap()
        .keep();
    let a = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let zombies: Vec<_> = (0..3)
        .map(|_| tasks.fork(a.pid(), CloneFlags::empty()).unwrap())
        .collect();
    for zombie in &zombies {
        tasks.exit(zombie.pid(), 0).unwrap();
    }
    armed.store(true, Ordering::SeqCst);
    let exit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tasks.exit(a.pid(), 0)));
    assert!(exit.is_err(), "the panic continues");
    assert!(!armed.load(Ordering::SeqCst), "the watcher did panic");
    for task in zombies.iter().chain([&a]) {
        assert_eq!(task.state(), TaskState::Dead, "{task:?} was stranded");
    }
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks.stats().frees, 4);
}

/// An earlier `fork` watcher of an adopted task exits it: the exit cannot come before
/// the task is announced, so a `fork | free` watcher sees `fork` then `free`.
#[test]
fn an_adopted_task_cannot_be_freed_before_its_fork_is_announced() {
    let (watchers, tasks) = tables();
    let weak = Arc::downgrade(&tasks);
    let exit_in_fork = Arc::new(Mutex::new(None));
    let exit_seen = exit_in_fork.clone();
    watchers
        .watcher("killer", EventSet::FORK)
        .priority(10)
        .register(move |e| {
            if let Some(tasks) = weak.upgrade() {
                *exit_seen.lock().unwrap() = Some(tasks.exit(e.task().pid(), 0));
            }
            Ok::<(), String>(())
        })
        .unwrap()
        .keep();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    watchers
        .watcher("pair", EventSet::FORK | EventSet::FREE)
        .register(move |e| {
            log2.lock().unwrap().push(e.kind());
            Ok::<(), String>(())
        })
        .unwrap()
        .keep();
    let task = tasks
        .adopt(
            TaskInit {
                pid: Pid(77),
                tgid: Pid(77),
                parent: Pid::INIT,
                sid: Pid::INIT,
                pgid: Pid::INIT,
                uids: Ids::all(0),
                gids: Ids::all(0),
                comm: "x".into(),
            },
            CloneFlags::empty(),
        )
        .unwrap();
    assert!(
        exit_in_fork.lock().unwrap().as_ref().unwrap().is_err(),
        "an embryo cannot exit"
    );
    assert_eq!(task.state(), TaskState::Running);
    assert_eq!(tasks.children(Pid::INIT), [Pid(77)]);
    tasks.exit(task.pid(), 0).unwrap();
    assert_eq!(*log.lock().unwrap(), [EventKind::Fork, EventKind::Free]);
}

/// An event source records a change through the table, by identity: a task whose pid
/// was freed and reused is refused, and the newcomer is untouched.
#[test]
fn recorded_changes_reach_only_the_running_task_itself() {
    let (_, tasks) = tables();
    let old = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.exit(old.pid(), 0).unwrap();
    let new = tasks
        .fork_with_pid(Pid::INIT, old.pid(), CloneFlags::empty())
        .unwrap();
    let refused = tasks.record(&old, Recorded::Comm("stale"));
    assert!(
        matches!(refused, Err(TaskError::NoSuchTask(_))),
        "{refused:?}"
    );
    assert_ne!(new.comm(), "stale");
    tasks.record(&new, Recorded::Setsid).unwrap();
    assert_eq!((new.sid(), new.pgid()), (new.pid(), new.pid()));
}
