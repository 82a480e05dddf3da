//! Edge cases of the task model's Linux semantics: sessions of threads and of reused
//! pids, ids, names, `CLONE_PARENT` from init, pid reuse under a thread group.

use std::sync::Mutex;

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, ForkError, Ids, Pid, Recorded, TaskError, TaskInit,
    TaskState, TaskTable, Watcher, WatcherResult, WatcherTable,
};

fn nop(_: &Event<'_>) -> WatcherResult {
    Ok(())
}

fn tasks_with_pid_max(pid_max: u32) -> TaskTable {
    let table = WatcherTable::from_watchers([Watcher::new("nop", EventSet::ALL, nop)]).unwrap();
    TaskTable::with_pid_max(table, pid_max)
}

fn tasks() -> TaskTable {
    tasks_with_pid_max(watchers_core::DEFAULT_PID_MAX)
}

/// Linux's `setsid` names the session after the thread group (its leader's pid) and
/// refuses with `EPERM` when a process group of that id exists: a thread of a process
/// that leads its process group cannot start a session.
#[test]
fn setsid_from_a_thread_of_a_group_leader_is_refused() {
    let tasks = tasks();
    let leader = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.setsid(leader.pid()).unwrap();
    let thread = tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap();
    assert_eq!(thread.pgid(), leader.pid());
    let outcome = tasks.setsid(thread.pid());
    assert!(
        matches!(outcome, Err(TaskError::GroupLeader(_))),
        "setsid from a thread of a group leader: {outcome:?}; thread sid {:?}, pgid {:?}",
        thread.sid(),
        thread.pgid()
    );
    assert_eq!((thread.sid(), thread.pgid()), (leader.pid(), leader.pid()));
}

/// A session a thread starts is its thread group's: named by the group's id, never by
/// the thread's own pid (which is freed, and reused, when the thread exits).
#[test]
fn setsid_from_a_thread_names_the_session_after_its_thread_group() {
    let tasks = tasks();
    let process = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let thread = tasks.fork(process.pid(), CloneFlags::THREAD).unwrap();
    assert_eq!(process.pgid(), Pid::INIT);
    let sid = tasks.setsid(thread.pid()).unwrap();
    assert_eq!(sid, process.pid(), "the session is the thread group's");
    assert_eq!(
        (thread.sid(), thread.pgid()),
        (process.pid(), process.pid())
    );
    assert_eq!(
        (process.sid(), process.pgid()),
        (process.pid(), process.pid())
    );
}

/// A pid that names a live process group is not handed out again, as Linux keeps it
/// from reuse: the processes left in the group of a freed leader would otherwise share
/// their group's id with a new task. Once the group is gone the pid is free again.
#[test]
fn a_pid_that_names_a_live_process_group_is_not_reused() {
    // Pids 2, 3 and 4 only.
    let tasks = tasks_with_pid_max(4);
    let old = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.setsid(old.pid()).unwrap();
    let member = tasks.fork(old.pid(), CloneFlags::empty()).unwrap();
    assert_eq!(member.pgid(), old.pid());
    tasks.exit(old.pid(), 0).unwrap();
    assert_eq!(
        old.state(),
        TaskState::Dead,
        "init reaped it: its pid is free"
    );
    let new = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    assert_ne!(new.pid(), old.pid(), "{member:?}'s group still has the id");
    let full = tasks.fork(Pid::INIT, CloneFlags::empty());
    assert!(
        matches!(full, Err(ForkError::PidsExhausted(4))),
        "the group's id is the only pid not held by a task: {full:?}"
    );
    tasks.exit(member.pid(), 0).unwrap();
    let reused = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    assert_eq!(
        reused.pid(),
        old.pid(),
        "the group is gone with its last member"
    );
    assert_eq!(tasks.setsid(reused.pid()).unwrap(), old.pid());
}

/// Adopts pid 6 as a job that leads its own process group in session 5, whose leader
/// is not in the table.
fn adopt_job_of_session_5(tasks: &TaskTable) -> std::sync::Arc<watchers_core::Task> {
    let job = TaskInit {
        pid: Pid(6),
        tgid: Pid(6),
        parent: Pid::INIT,
        sid: Pid(5),
        pgid: Pid(6),
        uids: Ids::all(0),
        gids: Ids::all(0),
        comm: "job".to_owned(),
    };
    tasks.adopt(job, CloneFlags::empty()).unwrap()
}

/// A session outlives its leader's process group when the members left are in other
/// groups (a shell's jobs each lead their own): Linux keeps the session's id from reuse
/// as long as any task has it as its session. A mirror adopts such tasks as they are,
/// so the table's own `fork` must not hand that id out either, or `setsid` on the new
/// task would start a second session of the same id.
#[test]
fn a_pid_that_names_a_live_session_but_no_group_is_not_reused() {
    // Pids 2 to 6; the job has 6, its session 5, whose leader is gone.
    let tasks = tasks_with_pid_max(6);
    let job = adopt_job_of_session_5(&tasks);
    assert_eq!((job.sid(), job.pgid()), (Pid(5), Pid(6)));
    let mut forked = Vec::new();
    let outcome = loop {
        match tasks.fork(Pid::INIT, CloneFlags::empty()) {
            Ok(task) => {
                assert_ne!(task.pid(), job.sid(), "{job:?}'s session still has the id");
                forked.push(task.pid());
            }
            Err(error) => break error,
        }
    };
    assert_eq!(forked, [Pid(2), Pid(3), Pid(4)]);
    assert!(
        matches!(outcome, ForkError::PidsExhausted(6)),
        "the session's id is the only pid not held by a task: {outcome:?}"
    );
    tasks.exit(job.pid(), 0).unwrap();
    let reused = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    assert_eq!(
        reused.pid(),
        Pid(5),
        "the session is gone with its last member"
    );
}

/// A task that leaves a session of its own accord (`setsid`, recorded from the OS)
/// releases the session's id as its exit would: the id is not held forever.
#[test]
fn a_session_left_by_its_last_member_through_setsid_frees_its_id() {
    // Pids 2 to 6; the job has 6, its session 5.
    let tasks = tasks_with_pid_max(6);
    let job = adopt_job_of_session_5(&tasks);
    tasks.record(&job, Recorded::Setsid).unwrap();
    assert_eq!((job.sid(), job.pgid()), (Pid(6), Pid(6)));
    let pids: Vec<Pid> = (0..4)
        .map(|_| tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap().pid())
        .collect();
    assert_eq!(pids, [Pid(2), Pid(3), Pid(4), Pid(5)]);
}

/// A pid that still names a live process group cannot start a session. The table never
/// hands such a pid out, but a source that mirrors the kernel's choices may place a task
/// there (`fork_with_pid`); `setsid` must then refuse rather than put the new task in
/// the old group.
#[test]
fn setsid_refuses_a_pid_that_names_another_process_group() {
    let tasks = tasks();
    let old = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.setsid(old.pid()).unwrap();
    let member = tasks.fork(old.pid(), CloneFlags::empty()).unwrap();
    assert_eq!(member.pgid(), old.pid());
    tasks.exit(old.pid(), 0).unwrap();
    assert_eq!(old.state(), TaskState::Dead);
    let new = tasks
        .fork_with_pid(Pid::INIT, old.pid(), CloneFlags::empty())
        .unwrap();
    let outcome = tasks.setsid(new.pid());
    assert!(
        matches!(outcome, Err(TaskError::GroupLeader(_))),
        "setsid of a reused pid that names {member:?}'s process group: {outcome:?}"
    );
    assert_eq!(new.pgid(), Pid::INIT);
}

/// `-1` is "unchanged" to the kernel's `set*id` calls and never an id a task can have
/// (`setuid(-1)` is `EINVAL`).
#[test]
fn an_id_of_minus_one_is_never_set() {
    let tasks = tasks();
    let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    assert!(matches!(
        tasks.setuid(task.pid(), u32::MAX),
        Err(TaskError::InvalidId(u32::MAX))
    ));
    let _ = tasks.setgid(task.pid(), u32::MAX);
    let _ = tasks.seteuid(task.pid(), u32::MAX);
    let _ = tasks.setresuid(task.pid(), Some(u32::MAX), None, Some(u32::MAX));
    let (uids, gids) = (task.uids(), task.gids());
    for id in [uids.real, uids.effective, uids.saved, uids.fs] {
        assert_ne!(id, u32::MAX, "uids {uids:?}");
    }
    for id in [gids.real, gids.effective, gids.saved, gids.fs] {
        assert_ne!(id, u32::MAX, "gids {gids:?}");
    }
}

#[test]
fn set_comm_cuts_at_fifteen_bytes_on_a_character_boundary() {
    let tasks = tasks();
    let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.set_comm(task.pid(), "0123456789abcdefgh").unwrap();
    assert_eq!(task.comm(), "0123456789abcde");
    // 14 bytes, then a two-byte character across the cut.
    tasks.set_comm(task.pid(), "0123456789abcdé").unwrap();
    assert_eq!(task.comm(), "0123456789abcd");
    // 13 bytes, then a four-byte character across it.
    tasks.set_comm(task.pid(), "0123456789abc🦀").unwrap();
    assert_eq!(task.comm(), "0123456789abc");
    tasks.set_comm(task.pid(), "0123456789abcé").unwrap();
    assert_eq!(task.comm(), "0123456789abcé");
}

static FORK_PARENTS: Mutex<Vec<(Pid, Pid)>> = Mutex::new(Vec::new());

fn record_fork_parent(event: &Event<'_>) -> WatcherResult {
    if event.kind() == EventKind::Fork {
        let task = event.task();
        FORK_PARENTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((task.pid(), task.parent()));
    }
    Ok(())
}

/// A `CLONE_PARENT` fork (or a thread) of init: init has no parent, so the child is
/// init's; the `fork` watchers never see a parent pid of 0.
#[test]
fn clone_parent_from_init_never_shows_pid_zero() {
    let table = WatcherTable::from_watchers([Watcher::new(
        "fork_parent",
        EventSet::ALL,
        record_fork_parent,
    )])
    .unwrap();
    let tasks = TaskTable::with_table(table);
    let child = tasks.fork(Pid::INIT, CloneFlags::PARENT).unwrap();
    let thread = tasks.fork(Pid::INIT, CloneFlags::THREAD).unwrap();
    assert_eq!(child.parent(), Pid::INIT);
    assert!(tasks.children(Pid::INIT).contains(&child.pid()));
    assert_eq!(thread.parent(), Pid::INIT);
    let seen = FORK_PARENTS.lock().unwrap().clone();
    for (pid, parent) in seen {
        assert_ne!(
            parent,
            Pid(0),
            "the fork watchers saw task {pid} with parent 0"
        );
    }
    tasks.exit(child.pid(), 0).unwrap();
    tasks.exit(thread.pid(), 0).unwrap();
    assert_eq!(
        (child.state(), thread.state()),
        (TaskState::Dead, TaskState::Dead)
    );
    assert_eq!(tasks.len(), 1);
}

/// A thread group whose leader is in the table keeps its id while any of its threads
/// runs: a task forked later never gets the id of a group it does not belong to.
#[test]
fn a_reused_leader_pid_does_not_join_a_running_thread_group() {
    // Pids 2 and 3 only.
    let tasks = tasks_with_pid_max(3);
    let leader = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let thread = tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap();
    tasks.exit(leader.pid(), 0).unwrap();
    assert_eq!(thread.state(), TaskState::Running);
    if let Ok(new) = tasks.fork(Pid::INIT, CloneFlags::empty()) {
        assert_ne!(
            new.tgid(),
            thread.tgid(),
            "{new:?} has the thread group id of {thread:?}, whose leader {leader:?} is freed"
        );
    }
}

/// The documented exception: a thread adopted while its group's leader is not in the
/// table holds only its own pid, so the group's id is free, and a later task may get it.
#[test]
fn a_thread_adopted_without_its_leader_does_not_hold_its_groups_id() {
    let tasks = tasks();
    let thread = tasks
        .adopt(
            TaskInit {
                pid: Pid(51),
                tgid: Pid(50),
                parent: Pid::INIT,
                sid: Pid::INIT,
                pgid: Pid::INIT,
                uids: Ids::all(0),
                gids: Ids::all(0),
                comm: "orphan thread".to_owned(),
            },
            CloneFlags::THREAD,
        )
        .unwrap();
    assert_eq!(thread.tgid(), Pid(50));
    assert_eq!(thread.state(), TaskState::Running);
    let new = tasks
        .fork_with_pid(Pid::INIT, Pid(50), CloneFlags::empty())
        .unwrap();
    assert_eq!(new.tgid(), thread.tgid());
    assert_ne!(new.serial(), thread.serial());
}

/// Exiting twice, reaping a non-child, a thread or a running child: clear errors.
#[test]
fn misuse_gets_errors_not_panics() {
    let tasks = tasks();
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let child = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
    let thread = tasks.fork(child.pid(), CloneFlags::THREAD).unwrap();
    assert!(matches!(
        tasks.reap(parent.pid(), child.pid()),
        Err(TaskError::WrongState { .. })
    ));
    assert!(matches!(
        tasks.reap(Pid::INIT, child.pid()),
        Err(TaskError::NotAChild { .. })
    ));
    assert!(matches!(
        tasks.reap(child.pid(), thread.pid()),
        Err(TaskError::NotAChild { .. })
    ));
    tasks.exit(child.pid(), 0).unwrap();
    assert!(matches!(
        tasks.exit(child.pid(), 0),
        Err(TaskError::WrongState { .. })
    ));
    assert!(matches!(tasks.exit(Pid::INIT, 0), Err(TaskError::Init(_))));
    // The child leads a thread group: it is waitable once its thread is gone.
    tasks.exit(thread.pid(), 0).unwrap();
    assert_eq!(
        tasks.wait(parent.pid()).unwrap().map(|(p, _)| p),
        Some(child.pid())
    );
    assert!(tasks.wait(parent.pid()).unwrap().is_none());
    assert!(matches!(
        tasks.reap(parent.pid(), child.pid()),
        Err(TaskError::NoSuchTask(_))
    ));
    assert_eq!(tasks.stats().frees, 2);
}

#[test]
fn pids_wrap_around_to_the_lowest_free_one_and_exhaustion_is_an_error() {
    let tasks = tasks_with_pid_max(4);
    let a = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let b = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let c = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    assert_eq!((a.pid(), b.pid(), c.pid()), (Pid(2), Pid(3), Pid(4)));
    assert!(matches!(
        tasks.fork(Pid::INIT, CloneFlags::empty()),
        Err(watchers_core::ForkError::PidsExhausted(4))
    ));
    tasks.exit(c.pid(), 0).unwrap();
    tasks.exit(b.pid(), 0).unwrap();
    assert_eq!(
        tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap().pid(),
        Pid(3)
    );
    assert_eq!(
        tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap().pid(),
        Pid(4)
    );
}

/// Pid 0 is no task's (it is init's parent): `fork_with_pid` refuses it, and so must
/// `adopt`, or a task would take the pid that means "no parent".
#[test]
fn adopt_refuses_pid_zero() {
    let tasks = tasks();
    let outcome = tasks.adopt(
        TaskInit {
            pid: Pid(0),
            tgid: Pid(0),
            parent: Pid::INIT,
            sid: Pid::INIT,
            pgid: Pid::INIT,
            uids: Ids::all(0),
            gids: Ids::all(0),
            comm: "zero".to_owned(),
        },
        CloneFlags::empty(),
    );
    assert!(outcome.is_err(), "adopted as pid 0: {outcome:?}");
    assert_eq!(tasks.len(), 1);
    assert!(
        tasks
            .fork_with_pid(Pid::INIT, Pid(0), CloneFlags::empty())
            .is_err()
    );
}

/// A leader that is not init's child exits while its thread runs: it stays a zombie, its
/// pid taken, and its parent cannot wait for it (the kernel's `delay_group_leader`)
/// until the last thread of its group is gone, new threads forked meanwhile included;
/// then the parent reaps it. Each is freed exactly once.
#[test]
fn a_leader_and_its_last_thread_are_each_freed_once() {
    let tasks = tasks();
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let leader = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
    let thread = tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap();
    // A thread forked by a thread whose leader is a zombie joins the same group.
    tasks.exit(leader.pid(), 3).unwrap();
    assert_eq!(leader.state(), TaskState::Zombie);
    let second = tasks.fork(thread.pid(), CloneFlags::THREAD).unwrap();
    assert_eq!(second.tgid(), leader.pid());
    assert_eq!(second.parent(), parent.pid());
    assert!(
        tasks.wait(parent.pid()).unwrap().is_none(),
        "the leader is not waitable while its threads run"
    );
    tasks.exit(thread.pid(), 0).unwrap();
    assert!(tasks.wait(parent.pid()).unwrap().is_none());
    assert_eq!(leader.state(), TaskState::Zombie);
    tasks.exit(second.pid(), 0).unwrap();
    assert_eq!(leader.state(), TaskState::Zombie, "its parent reaps it");
    assert_eq!(
        tasks
            .wait(parent.pid())
            .unwrap()
            .map(|(pid, status)| (pid, status.code())),
        Some((leader.pid(), Some(3)))
    );
    assert_eq!(leader.state(), TaskState::Dead);
    assert!(
        tasks.wait(parent.pid()).unwrap().is_none(),
        "threads are not waited for"
    );
    let stats = tasks.stats();
    assert_eq!((stats.exits, stats.frees), (3, 3));
    assert_eq!(tasks.len(), 2);
}
