//! Edges of thread groups in the task model found in review: a leader's delayed `free`
//! survives panics in the teardown of the thread that held it back last.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, OnceLock};

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, ExitStatus, Pid, Recorded, TaskState, TaskTable,
    Watcher, WatcherResult, WatcherTable,
};

/// Every `free` sent, by task serial (never reused, so concurrent tests do not mix).
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

fn frees_of(serial: u64) -> usize {
    let frees = FREES.lock().unwrap_or_else(|e| e.into_inner());
    frees.iter().filter(|&&s| s == serial).count()
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
        let tasks = REFUSED.get().ok_or("no table")?;
        tasks.exit(task.tgid(), 0)?;
        return Err("no thread".into());
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
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
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
    let (mut deferred, mut direct) = (0, 0);
    for round in 0..100_000 {
        if deferred >= 20 && direct >= 20 {
            break;
        }
        let leader = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        let thread = tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap();
        tasks.exit(leader.pid(), 3).unwrap();
        let barrier = std::sync::Barrier::new(2);
        let reaped = std::thread::scope(|scope| {
            let reaper = scope.spawn(|| {
                barrier.wait();
                (
                    tasks.reap(parent.pid(), leader.pid()),
                    std::thread::current().id(),
                )
            });
            barrier.wait();
            tasks.exit(thread.pid(), 0).unwrap();
            reaper.join().unwrap()
        });
        let (status, reaper) = reaped;
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
    assert_eq!(tasks.len(), 2);
}
