//! Thread groups in the task model: a leader that exits before its threads stays a
//! zombie holding its pid until the last of them is gone (the kernel's
//! `delay_group_leader`), its `free` sent once, then, whatever refuses, panics or races
//! on the way; and `setsid` keeps every thread of a group in the group's session through
//! many forks, frees and reused pids.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, ExitStatus, ForkError, Pid, Recorded, Task, TaskError,
    TaskState, TaskTable, Watcher, WatcherResult, WatcherTable,
};

/// Every `free` sent, by task serial (serials are never reused, so tests running at
/// the same time never count each other's tasks).
static FREES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// The thread that sent each `free`, by task serial.
static FREED_ON: Mutex<Vec<(u64, std::thread::ThreadId)>> = Mutex::new(Vec::new());

fn record_free(event: &Event<'_>) -> WatcherResult {
    if event.kind() == EventKind::Free {
        FREES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.task().serial());
        FREED_ON
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((event.task().serial(), std::thread::current().id()));
    }
    Ok(())
}

/// How many `free`s the task with this serial got.
fn frees_of(serial: u64) -> usize {
    let frees = FREES.lock().unwrap_or_else(|e| e.into_inner());
    frees.iter().filter(|&&s| s == serial).count()
}

fn tasks_with_pid_max(pid_max: u32) -> TaskTable {
    let table =
        WatcherTable::from_watchers([Watcher::new("frees", EventSet::ALL, record_free)]).unwrap();
    TaskTable::with_pid_max(table, pid_max)
}

/// A leader whose parent is init exits while two threads run: it stays a zombie with its
/// pid taken (no fork can get it) until the second thread is gone, then it is freed
/// (once) and its pid can be used again.
#[test]
fn the_last_thread_of_a_group_releases_its_leaders_pid() {
    let tasks = tasks_with_pid_max(100);
    let leader = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let first = tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap();
    let second = tasks.fork(first.pid(), CloneFlags::THREAD).unwrap();
    tasks.exit(leader.pid(), 0).unwrap();
    assert_eq!(leader.state(), TaskState::Zombie);
    assert!(matches!(
        tasks.fork_with_pid(Pid::INIT, leader.pid(), CloneFlags::empty()),
        Err(ForkError::PidsExhausted(_))
    ));
    tasks.exit(first.pid(), 0).unwrap();
    assert_eq!(leader.state(), TaskState::Zombie, "a thread still runs");
    assert_eq!(frees_of(leader.serial()), 0);
    tasks.exit(second.pid(), 0).unwrap();
    assert_eq!(leader.state(), TaskState::Dead);
    for task in [&leader, &first, &second] {
        assert_eq!(frees_of(task.serial()), 1, "{task:?}");
    }
    let stats = tasks.stats();
    assert_eq!((stats.exits, stats.frees, stats.tasks), (3, 3, 1));
    let new = tasks
        .fork_with_pid(Pid::INIT, leader.pid(), CloneFlags::empty())
        .unwrap();
    assert_eq!(new.tgid(), new.pid());
}

/// A parent that reaps its leader child by pid while the leader's thread runs gets the
/// status at once; the leader's `free` comes when the thread ends, once: a second reap,
/// a `wait` and a source's `free` meanwhile are refused or find nothing.
#[test]
fn a_leader_reaped_early_is_freed_once_after_its_last_thread() {
    let tasks = tasks_with_pid_max(100);
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let leader = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
    let thread = tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap();
    tasks.exit(leader.pid(), 7).unwrap();
    assert!(tasks.wait(parent.pid()).unwrap().is_none());
    let status = tasks.reap(parent.pid(), leader.pid()).unwrap();
    assert_eq!(status.code(), Some(7));
    assert_eq!(leader.state(), TaskState::Zombie, "its thread still runs");
    assert!(tasks.reap(parent.pid(), leader.pid()).is_err());
    assert!(matches!(
        tasks.free(&leader),
        Err(TaskError::WrongState { .. })
    ));
    assert!(tasks.wait(parent.pid()).unwrap().is_none());
    assert_eq!(frees_of(leader.serial()), 0);
    // As the threads source ends a thread: exit, then `free` once its resources are gone.
    tasks
        .exit_unreaped(thread.pid(), ExitStatus::exited(0))
        .unwrap();
    assert_eq!(leader.state(), TaskState::Zombie);
    tasks.free(&thread).unwrap();
    assert_eq!(leader.state(), TaskState::Dead);
    assert_eq!(
        (frees_of(leader.serial()), frees_of(thread.serial())),
        (1, 1)
    );
    assert!(tasks.wait(parent.pid()).unwrap().is_none());
    assert_eq!(tasks.children(parent.pid()), Vec::<Pid>::new());
    assert_eq!(tasks.stats().frees, 2);
}

/// With every pid taken by a zombie leader and its running thread, a fork fails with
/// `PidsExhausted` (no panic, nothing added); once the thread ends, both pids are free.
#[test]
fn pid_exhaustion_under_a_zombie_leader_is_a_clean_error() {
    // Pids 2 and 3 only.
    let tasks = tasks_with_pid_max(3);
    let leader = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let thread = tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap();
    tasks.exit(leader.pid(), 0).unwrap();
    for flags in [CloneFlags::empty(), CloneFlags::THREAD] {
        assert!(matches!(
            tasks.fork(Pid::INIT, flags),
            Err(ForkError::PidsExhausted(3))
        ));
        assert!(matches!(
            tasks.fork(thread.pid(), flags),
            Err(ForkError::PidsExhausted(3))
        ));
    }
    assert_eq!(tasks.len(), 3);
    tasks.exit(thread.pid(), 0).unwrap();
    assert_eq!(tasks.len(), 1);
    let a = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let b = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    assert_eq!(
        [a.tgid(), b.tgid()],
        [a.pid(), b.pid()],
        "new processes lead groups of their own"
    );
}

/// The table of the next test, for its fork watcher to re-enter.
static ROLLBACK: OnceLock<TaskTable> = OnceLock::new();

/// Exits the group leader of a thread being forked, then refuses the fork.
fn exit_leader_and_refuse(event: &Event<'_>) -> WatcherResult {
    let task = event.task();
    if event.kind() == EventKind::Fork && task.is_thread() {
        return exit_leader_then_refuse(ROLLBACK.get(), task);
    }
    Ok(())
}

/// Exits the group leader of `task`, a thread being forked, then refuses its fork.
fn exit_leader_then_refuse(tasks: Option<&TaskTable>, task: &Task) -> WatcherResult {
    tasks.ok_or("no table")?.exit(task.tgid(), 0)?;
    Err("no thread".into())
}

/// A leader (init's child) exits while its only thread is being forked, and that fork is
/// refused: the thread that never ran was the last to hold the leader back, so the
/// rollback frees the leader.
#[test]
fn a_refused_thread_fork_frees_the_leader_it_held_back() {
    let table = WatcherTable::from_watchers([
        Watcher::new("frees", EventSet::ALL, record_free),
        Watcher::new("refuse", EventSet::FORK, exit_leader_and_refuse),
    ])
    .unwrap();
    let tasks = ROLLBACK.get_or_init(|| TaskTable::with_table(table));
    let leader = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let refused = tasks.fork(leader.pid(), CloneFlags::THREAD);
    assert!(matches!(refused, Err(ForkError::Watcher(_))), "{refused:?}");
    assert_eq!(leader.state(), TaskState::Dead);
    assert_eq!(frees_of(leader.serial()), 1);
    let stats = tasks.stats();
    assert_eq!(
        (stats.forks, stats.failed_forks, stats.frees, stats.tasks),
        (1, 1, 1, 1)
    );
}

/// `setsid` from a thread moves its whole group, threads forked by threads included,
/// and no task of another group.
#[test]
fn setsid_from_a_thread_moves_every_thread_of_its_group() {
    let tasks = tasks_with_pid_max(100);
    let process = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let other = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let mut threads = vec![tasks.fork(process.pid(), CloneFlags::THREAD).unwrap()];
    for _ in 0..5 {
        let last = threads.last().unwrap().pid();
        threads.push(tasks.fork(last, CloneFlags::THREAD).unwrap());
    }
    let child = tasks.fork(threads[3].pid(), CloneFlags::empty()).unwrap();
    let sid = tasks.setsid(threads[2].pid()).unwrap();
    assert_eq!(sid, process.pid());
    for task in threads.iter().chain([&process]) {
        assert_eq!((task.sid(), task.pgid()), (sid, sid), "{task:?}");
    }
    for task in [&other, &child] {
        assert_eq!(
            (task.sid(), task.pgid()),
            (Pid::INIT, Pid::INIT),
            "{task:?}"
        );
    }
    // A thread forked now joins the new session with its group.
    let late = tasks.fork(child.pid(), CloneFlags::THREAD).unwrap();
    assert_eq!(late.sid(), Pid::INIT);
    let late = tasks.fork(threads[0].pid(), CloneFlags::THREAD).unwrap();
    assert_eq!((late.sid(), late.pgid()), (sid, sid));
}

/// A process-group leader cannot start a session, nor a thread of it; nor a process
/// placed (by a source, as `fork` never hands it out) on a pid that names a group left
/// by a freed task, until that group's last member is freed.
#[test]
fn setsid_of_a_process_group_leader_is_refused_while_its_group_lives() {
    let tasks = tasks_with_pid_max(3);
    let leader = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.setsid(leader.pid()).unwrap();
    let member = tasks.fork(leader.pid(), CloneFlags::empty()).unwrap();
    assert!(matches!(
        tasks.setsid(leader.pid()),
        Err(TaskError::GroupLeader(_))
    ));
    tasks.exit(leader.pid(), 0).unwrap();
    let reused = tasks
        .fork_with_pid(Pid::INIT, leader.pid(), CloneFlags::empty())
        .unwrap();
    assert!(matches!(
        tasks.setsid(reused.pid()),
        Err(TaskError::GroupLeader(_))
    ));
    tasks.exit(member.pid(), 0).unwrap();
    assert_eq!(member.state(), TaskState::Dead);
    assert_eq!(tasks.setsid(reused.pid()).unwrap(), reused.pid());
}

/// A source's recorded `setsid` of a thread names the session after its thread group
/// and moves the whole group, as the kernel does; the model's `setsid` then sees the
/// group.
#[test]
fn a_recorded_setsid_of_a_thread_moves_its_group() {
    let tasks = tasks_with_pid_max(100);
    let process = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let thread = tasks.fork(process.pid(), CloneFlags::THREAD).unwrap();
    tasks.record(&thread, Recorded::Setsid).unwrap();
    for task in [&process, &thread] {
        assert_eq!((task.sid(), task.pgid()), (process.pid(), process.pid()));
    }
    assert!(matches!(
        tasks.setsid(process.pid()),
        Err(TaskError::GroupLeader(_))
    ));
}

/// A reproducible pseudo-random number below `n` per call, from `seed` (not 0).
fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

/// Thousands of random forks (processes and threads), exits, waits and `setsid`s over
/// few pids: every `setsid` succeeds exactly when no task has a process group with the
/// thread group's id (checked by a search of every task, as the table once did), and
/// every thread always has its leader's session and process group.
#[test]
fn setsid_agrees_with_a_search_of_every_task_after_many_changes() {
    let tasks = tasks_with_pid_max(24);
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut started, mut refused) = (0, 0);
    let mut users: HashMap<Pid, u64> = HashMap::new();
    for step in 0..20_000 {
        let pid = Pid(1 + next(24) as u32);
        match next(8) {
            0 | 1 => {
                let flags = if next(2) == 0 {
                    CloneFlags::THREAD
                } else {
                    CloneFlags::empty()
                };
                if let Ok(task) = tasks.fork(pid, flags) {
                    *users.entry(task.pid()).or_default() += 1;
                }
            }
            2 => {
                let _ = tasks.exit(pid, 0);
            }
            3 => {
                let _ = tasks.wait(pid);
            }
            _ => {
                let Some(task) = tasks.get(pid).filter(|t| t.state() == TaskState::Running) else {
                    continue;
                };
                let tgid = task.tgid();
                let taken = tasks.tasks().iter().any(|t| t.pgid() == tgid);
                match tasks.setsid(pid) {
                    Ok(sid) => {
                        assert!(!taken, "step {step}: {task:?} started a taken group");
                        assert_eq!(sid, tgid);
                        started += 1;
                    }
                    Err(TaskError::GroupLeader(_)) => {
                        assert!(taken, "step {step}: {task:?} refused, no group {tgid:?}");
                        refused += 1;
                    }
                    Err(error) => panic!("step {step}: {error}"),
                }
            }
        }
        for task in tasks.tasks() {
            if task.is_thread() && task.tgid() != Pid::INIT {
                let leader = tasks
                    .get(task.tgid())
                    .unwrap_or_else(|| panic!("step {step}: {task:?} has no leader"));
                assert_eq!(leader.tgid(), task.tgid(), "step {step}");
                assert_eq!(
                    (task.sid(), task.pgid()),
                    (leader.sid(), leader.pgid()),
                    "step {step}: {task:?} left its group's session"
                );
            }
        }
    }
    // The premises: pids were reused many times, and both outcomes happened often.
    let max_reuse = users.values().copied().max().unwrap_or(0);
    assert!(max_reuse > 50, "at most {max_reuse} tasks per pid");
    assert!(
        started > 500 && refused > 500,
        "{started} started, {refused} refused"
    );
}

/// Panics in the `free` of a task named "panics".
fn panic_on_free(event: &Event<'_>) -> WatcherResult {
    if event.kind() == EventKind::Free && event.task().comm() == "panics" {
        panic!("a free watcher panics");
    }
    Ok(())
}

/// The last thread's `free` watcher panics after its leader was reaped: the leader is
/// freed all the same (once), then the panic continues.
#[test]
fn a_panicking_free_of_the_last_thread_still_frees_its_leader() {
    let table = WatcherTable::from_watchers([
        Watcher::new("frees", EventSet::ALL, record_free),
        Watcher::new("panics", EventSet::ALL, panic_on_free),
    ])
    .unwrap();
    let tasks = TaskTable::with_table(table);
    let leader = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let thread = tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap();
    tasks.set_comm(thread.pid(), "panics").unwrap();
    // Init's child: reaped at its exit, its `free` held back by the thread.
    tasks.exit(leader.pid(), 0).unwrap();
    assert_eq!(leader.state(), TaskState::Zombie);
    let ended =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tasks.exit(thread.pid(), 0)));
    assert!(ended.is_err(), "the free watcher's panic continues");
    assert_eq!(thread.state(), TaskState::Dead);
    assert_eq!(leader.state(), TaskState::Dead);
    assert_eq!(frees_of(leader.serial()), 1);
    assert_eq!(tasks.len(), 1);
}

/// Panics when dropped: held by a per-task watcher's closure.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a per-task watcher's closure panics as it is dropped");
        }
    }
}

/// The table of the next test, for its fork watcher to re-enter.
static REFUSED: OnceLock<TaskTable> = OnceLock::new();

/// For a thread being forked: attaches to it a per-task watcher whose closure panics
/// when dropped, exits its group leader (init's child: reaped at once, its `free` held
/// back by this embryo), then refuses the fork.
fn attach_exit_leader_and_refuse(event: &Event<'_>) -> WatcherResult {
    let task = event.task();
    if event.kind() == EventKind::Fork && task.is_thread() {
        let guard = PanicsOnDrop;
        task.watch(EventSet::FREE, move |_| {
            let _ = &guard;
            Ok::<(), std::convert::Infallible>(())
        })
        .keep();
        return exit_leader_then_refuse(REFUSED.get(), task);
    }
    Ok(())
}

/// A refused thread fork that was the last to hold its reaped leader back, and whose
/// per-task watcher's closure panics as the rollback drops it: the panic continues,
/// and the leader is freed all the same (once), its pid released.
#[test]
fn a_panicking_per_task_watcher_of_a_refused_thread_still_frees_its_leader() {
    let table = WatcherTable::from_watchers([
        Watcher::new("frees", EventSet::ALL, record_free),
        Watcher::new("refuse", EventSet::FORK, attach_exit_leader_and_refuse),
    ])
    .unwrap();
    let tasks = REFUSED.get_or_init(|| TaskTable::with_table(table));
    let leader = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let refused = catch_unwind(AssertUnwindSafe(|| {
        tasks.fork(leader.pid(), CloneFlags::THREAD)
    }));
    assert!(refused.is_err(), "the closure's panic continues");
    assert_eq!(leader.state(), TaskState::Dead, "the leader is freed");
    assert_eq!(frees_of(leader.serial()), 1);
    assert!(tasks.get(leader.pid()).is_none(), "its pid is free");
    assert_eq!(tasks.len(), 1);
}

/// The table of the random test, for its watchers to re-enter.
static RANDOM: OnceLock<TaskTable> = OnceLock::new();

/// The random test's watcher: by the name of the task (or of the parent, at a fork),
/// refuses a fork ("refuser"), panics in one ("panicker"), panics in a `free`
/// ("panicfree"), or re-enters the table from a thread's `free` ("reenter": exits its
/// group's leader, forks a thread of it).
fn misbehave(event: &Event<'_>) -> WatcherResult {
    let tasks = RANDOM.get().ok_or("no table")?;
    match event.kind() {
        EventKind::Fork => match event.parent().map(|p| p.comm()).as_deref() {
            Some("refuser") => return Err("refused".into()),
            Some("panicker") => panic!("a fork watcher panics"),
            _ => {}
        },
        EventKind::Free => match event.task().comm().as_str() {
            "panicfree" => panic!("a free watcher panics"),
            "reenter" if event.task().is_thread() => {
                let tgid = event.task().tgid();
                let _ = tasks.fork(tgid, CloneFlags::THREAD);
                let _ = tasks.exit(tgid, 0);
            }
            _ => {}
        },
        _ => {}
    }
    Ok(())
}

/// Thousands of random operations over few pids — forks of processes and threads (some
/// refused, some panicking), adoptions of threads whose leader may be absent, exits,
/// unreaped exits and sources' frees, waits, reaps by pid, aborted forks, recorded and
/// checked `setsid`s, re-entrant and panicking `free` watchers: every checked `setsid`
/// succeeds exactly when no task has a process group with the thread group's id (a
/// search of every task), no task is freed twice, and at the end every task is freed
/// once and the table holds only init.
#[test]
fn the_process_group_index_agrees_with_a_search_after_random_misbehaviour() {
    let table = WatcherTable::from_watchers([
        Watcher::new("frees", EventSet::ALL, record_free),
        Watcher::new("misbehave", EventSet::ALL, misbehave),
    ])
    .unwrap();
    let tasks = RANDOM.get_or_init(|| TaskTable::with_pid_max(table, 24));
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    const NAMES: [&str; 6] = ["a", "refuser", "panicker", "panicfree", "reenter", "b"];
    let mut seen: Vec<std::sync::Arc<watchers_core::Task>> = Vec::new();
    let (mut started, mut refused, mut delayed) = (0, 0, 0);
    for step in 0..20_000 {
        let pid = Pid(1 + next(24) as u32);
        let task = tasks.get(pid);
        let op = next(16);
        let _ = catch_unwind(AssertUnwindSafe(|| match op {
            0..=2 => {
                let flags = match next(3) {
                    0 => CloneFlags::THREAD,
                    1 => CloneFlags::PARENT,
                    _ => CloneFlags::empty(),
                };
                tasks.fork(pid, flags).ok()
            }
            3 => {
                let _ = tasks.exit(pid, 0);
                None
            }
            4 => {
                let _ = tasks.exit_unreaped(pid, ExitStatus::exited(0));
                None
            }
            5 => {
                let _ = task.map(|t| tasks.free(&t));
                None
            }
            6 => {
                let _ = tasks.wait(pid);
                None
            }
            7 => {
                let _ = task.map(|t| tasks.reap(t.parent(), t.pid()));
                None
            }
            8 => {
                let _ = task.map(|t| tasks.abort_fork(&t));
                None
            }
            9 => {
                let _ = task.map(|t| tasks.record(&t, Recorded::Setsid));
                None
            }
            10 => {
                let name = NAMES[next(NAMES.len() as u64) as usize];
                let _ = tasks.set_comm(pid, name);
                None
            }
            11 => {
                let flags = if next(2) == 0 {
                    CloneFlags::THREAD
                } else {
                    CloneFlags::empty()
                };
                let parent = task.unwrap_or_else(|| tasks.init().clone());
                tasks
                    .adopt_running(&parent, flags, "adopted")
                    .ok()
                    .map(|(t, _)| t)
            }
            12 => {
                // A thread of a group whose leader may be absent, in any process group.
                let child = Pid(2 + next(23) as u32);
                let tgid = Pid(2 + next(23) as u32);
                let group = Pid(1 + next(24) as u32);
                tasks
                    .adopt(
                        watchers_core::TaskInit {
                            pid: child,
                            tgid,
                            parent: pid,
                            sid: group,
                            pgid: group,
                            uids: watchers_core::Ids::all(0),
                            gids: watchers_core::Ids::all(0),
                            comm: "stray".to_owned(),
                        },
                        CloneFlags::THREAD,
                    )
                    .ok()
            }
            _ => None,
        }))
        .map(|added| {
            if let Some(task) = added {
                seen.push(task);
            }
        });
        // `setsid` out of `catch_unwind`: its `sid` event panics nowhere, and a failed
        // check must fail the test.
        if op >= 13
            && let Some(task) = tasks.get(pid).filter(|t| t.state() == TaskState::Running)
        {
            let tgid = task.tgid();
            let taken = tgid == Pid::INIT || tasks.tasks().iter().any(|t| t.pgid() == tgid);
            match tasks.setsid(pid) {
                Ok(_) => {
                    assert!(!taken, "step {step}: {task:?} started a taken group");
                    started += 1;
                }
                Err(watchers_core::TaskError::GroupLeader(_)) => {
                    assert!(taken, "step {step}: {task:?} refused, no group {tgid:?}");
                    refused += 1;
                }
                Err(error) => panic!("step {step}: {error}"),
            }
        }
        // The premise: leaders held back by their threads happen often.
        let now = tasks.tasks();
        if now.iter().any(|leader| {
            leader.state() == TaskState::Zombie
                && !leader.is_thread()
                && now
                    .iter()
                    .any(|t| t.is_thread() && t.tgid() == leader.pid())
        }) {
            delayed += 1;
        }
        if step % 1_000 == 0 {
            let frees = FREES.lock().unwrap_or_else(|e| e.into_inner());
            let mut counts: HashMap<u64, usize> = HashMap::new();
            for &serial in frees.iter() {
                *counts.entry(serial).or_default() += 1;
            }
            for task in &seen {
                let n = counts.get(&task.serial()).copied().unwrap_or(0);
                assert!(n <= 1, "step {step}: {task:?} freed {n} times");
            }
        }
    }
    // Everything ends: exits, then frees of every zombie, until only init is left.
    for _ in 0..100 {
        for task in tasks.tasks() {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                let _ = tasks.set_comm(task.pid(), "a");
                let _ = tasks.exit(task.pid(), 0);
                let _ = tasks.free(&task);
            }));
        }
        if tasks.len() == 1 {
            break;
        }
    }
    assert_eq!(tasks.len(), 1, "left: {:?}", tasks.tasks());
    for task in &seen {
        assert_eq!(task.state(), TaskState::Dead, "{task:?}");
        assert_eq!(frees_of(task.serial()), 1, "{task:?}");
    }
    assert!(seen.len() > 1_000, "{} tasks", seen.len());
    assert!(delayed > 1_000, "a leader held back at {delayed} steps");
    assert!(
        started > 100 && refused > 100,
        "{started} started, {refused} refused"
    );
}

/// A parent reaps its leader child by pid on one thread while the leader's last thread
/// exits on another: whichever comes first, the leader is freed once, and only after
/// its thread. Both orders are seen (the premise), many times each.
#[test]
fn a_leaders_reap_racing_its_last_threads_exit_frees_it_once() {
    let table =
        WatcherTable::from_watchers([Watcher::new("frees", EventSet::ALL, record_free)]).unwrap();
    let tasks = TaskTable::with_table(table);
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let (mut deferred, mut direct, mut overlapped) = (0, 0, 0);
    for round in 0..100_000 {
        if deferred >= 20 && direct >= 20 && overlapped >= 1 {
            break;
        }
        let leader = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        let thread = tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap();
        tasks.exit(leader.pid(), 3).unwrap();
        let barrier = std::sync::Barrier::new(2);
        // The exit's call, begun and ended, for the reaper to see whether the two
        // calls overlapped: its reap began before the exit ended and ended after the
        // exit began.
        let (exit_began, exit_ended) = (AtomicBool::new(false), AtomicBool::new(false));
        let reaped = std::thread::scope(|scope| {
            let reaper = scope.spawn(|| {
                barrier.wait();
                let before_end = !exit_ended.load(Ordering::SeqCst);
                let status = tasks.reap(parent.pid(), leader.pid());
                let overlap = before_end && exit_began.load(Ordering::SeqCst);
                (status, std::thread::current().id(), overlap)
            });
            barrier.wait();
            exit_began.store(true, Ordering::SeqCst);
            tasks.exit(thread.pid(), 0).unwrap();
            exit_ended.store(true, Ordering::SeqCst);
            reaper.join().unwrap()
        });
        let (status, reaper, overlap) = reaped;
        overlapped += usize::from(overlap);
        // Sent by the reaper if the thread was gone when it claimed the leader.
        let freed_by_reap = FREED_ON
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|&(serial, on)| serial == leader.serial() && on == reaper);
        assert_eq!(status.unwrap(), ExitStatus::exited(3), "round {round}");
        if freed_by_reap {
            direct += 1;
        } else {
            deferred += 1;
        }
        assert_eq!(leader.state(), TaskState::Dead, "round {round}");
        assert_eq!(frees_of(leader.serial()), 1, "round {round}");
        assert_eq!(frees_of(thread.serial()), 1, "round {round}");
        let frees = FREES.lock().unwrap_or_else(|e| e.into_inner());
        let at = |serial| frees.iter().position(|&s| s == serial);
        assert!(at(thread.serial()) < at(leader.serial()), "round {round}");
    }
    assert!(
        deferred >= 20 && direct >= 20,
        "{deferred} reaps left the free to the thread, {direct} freed it"
    );
    // The premise: both orders alone would also come from calls that never overlap.
    assert!(
        overlapped >= 1,
        "the reap and the exit overlapped in {overlapped} rounds"
    );
    assert_eq!(tasks.len(), 2);
}
