//! Children whose status other code collects first (a `waitpid` of its own), and watchers
//! that panic while a child is spawned: each task still gets `exit` and `free` exactly
//! once, never with a status the child did not have, and no child is left unreaped.

mod common;

use common::{Log, await_free, await_zombie, events_of, steal};

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use watchers_core::{Event, EventKind, EventSet, ExitStatus, TaskState, WatcherTable};
use watchers_process::{CommandExt, Processes};

/// For sources whose watchers never panic.
static NEVER: AtomicBool = AtomicBool::new(false);

/// A source with two watchers: one that logs every event, and after it one that panics
/// on `panic_on` events while `armed` is set.
fn source(panic_on: EventKind, armed: &'static AtomicBool) -> (&'static Processes, Log) {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log = common::log_every_event(table);
    table
        .watcher("stolen::panics", EventSet::ALL)
        .register(move |event: &Event<'_>| {
            if event.kind() == panic_on && armed.load(Ordering::SeqCst) {
                panic!("{panic_on:?} watcher panics");
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap()
        .keep();
    let processes = common::leaked_source(table, &log);
    (processes, log)
}

/// Whether the child `os_pid` still exists, as a zombie or running.
fn is_our_child(os_pid: u32) -> bool {
    common::peek(os_pid, libc::WNOHANG) == 0
}

#[test]
fn a_stolen_status_ends_the_task_at_once_with_an_unknown_status() {
    let (processes, log) = source(EventKind::Exec, &NEVER);
    let mut child = Command::new("sh")
        .args(["-c", "exit 7"])
        .spawn_watched_in(processes)
        .unwrap();
    let pid = child.task().pid();
    await_zombie(child.id());
    // The premise: the thief got the real status, so nobody else can know it.
    assert_eq!(steal(child.id()), 7 << 8);

    let error = child.wait().unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ECHILD), "{error}");
    // The child is gone, so its task ends now, once, with no made-up status: the child
    // exited with 7, and whatever else `exit` claimed would be false.
    assert_eq!(child.task().state(), TaskState::Dead);
    assert_eq!(
        events_of(&log, pid),
        [
            (EventKind::Fork, None),
            (EventKind::Exec, None),
            (EventKind::Exit, Some(ExitStatus::UNKNOWN)),
            (EventKind::Free, None),
        ]
    );
    // Its pid may be another process's by now: neither waited for nor signalled again.
    let error = child.try_wait().unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ECHILD), "{error}");
    let error = child.kill().unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ESRCH), "{error}");
    drop(child);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(events_of(&log, pid).len(), 4, "nothing more after the drop");
    assert_eq!(processes.reaping(), 0);
}

#[test]
fn wait_with_output_after_a_steal_still_frees_the_task() {
    let (processes, log) = source(EventKind::Exec, &NEVER);
    let child = Command::new("sh")
        .args(["-c", "echo hi; exit 5"])
        .stdout(Stdio::piped())
        .spawn_watched_in(processes)
        .unwrap();
    let (pid, task) = (child.task().pid(), child.task().clone());
    await_zombie(child.id());
    assert_eq!(steal(child.id()), 5 << 8);

    let error = child.wait_with_output().unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ECHILD), "{error}");
    assert!(
        await_free(&log, pid),
        "no free after wait_with_output failed: {:?} (task {:?})",
        events_of(&log, pid),
        task.state()
    );
    assert_eq!(
        events_of(&log, pid)[2..],
        [
            (EventKind::Exit, Some(ExitStatus::UNKNOWN)),
            (EventKind::Free, None)
        ]
    );
}

#[test]
fn a_panicking_exec_watcher_leaves_no_child_unreaped_and_no_task_unfreed() {
    static PANIC: AtomicBool = AtomicBool::new(true);
    let (processes, log) = source(EventKind::Exec, &PANIC);
    let spawned = catch_unwind(AssertUnwindSafe(|| {
        Command::new("sh")
            .args(["-c", "exit 4"])
            .spawn_watched_in(processes)
    }));
    // The premise: the watcher did panic, out of the spawn, after the child existed.
    assert!(spawned.is_err());
    let forked: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(kind, ..)| *kind == EventKind::Exec)
        .map(|(_, pid, _)| *pid)
        .collect();
    assert_eq!(forked.len(), 1);
    let pid = forked[0];
    let task = processes.tasks().get(pid);
    let os_pid = task.as_ref().and_then(|task| task.os_id());

    assert!(
        await_free(&log, pid),
        "the child's task never got free: {:?} (os pid {os_pid:?}, state {:?})",
        events_of(&log, pid),
        task.map(|task| task.state())
    );
    let events = events_of(&log, pid);
    assert_eq!(
        events.iter().map(|(kind, _)| *kind).collect::<Vec<_>>(),
        [
            EventKind::Fork,
            EventKind::Exec,
            EventKind::Exit,
            EventKind::Free
        ]
    );
    assert_eq!(events[2].1, Some(ExitStatus::exited(4)));
    if let Some(os_pid) = os_pid {
        assert!(!is_our_child(os_pid), "child {os_pid} left unreaped");
    }
    assert_eq!(processes.reaping(), 0);
}

#[test]
fn wait_with_output_drains_both_pipes_at_once() {
    let (processes, log) = source(EventKind::Exec, &NEVER);
    // Far more than a pipe holds goes to stderr first: read one pipe after the other,
    // the child would block on it while stdout is read, and never end.
    let output = Command::new("sh")
        .args([
            "-c",
            "head -c 300000 /dev/zero >&2; head -c 200000 /dev/zero; exit 3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn_watched_in(processes)
        .unwrap()
        .wait_with_output()
        .unwrap();
    assert_eq!(
        (output.stdout.len(), output.stderr.len()),
        (200_000, 300_000)
    );
    assert_eq!(output.status.code(), Some(3));
    let frees = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(kind, _, status)| {
            *kind == EventKind::Free || *status == Some(ExitStatus::exited(3))
        })
        .count();
    assert_eq!(frees, 2, "one exit with code 3 and one free");
}

#[test]
fn a_panicking_fork_watcher_spawns_nothing_and_rolls_back_the_others() {
    // Armed once the source exists: making it announces the program's own task.
    static PANIC: AtomicBool = AtomicBool::new(false);
    let (processes, log) = source(EventKind::Fork, &PANIC);
    PANIC.store(true, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("watchers-process-panic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("ran");
    let spawned = catch_unwind(AssertUnwindSafe(|| {
        Command::new("touch")
            .arg(&marker)
            .spawn_watched_in(processes)
    }));
    assert!(spawned.is_err(), "the watcher's panic reaches the caller");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!marker.exists(), "nothing was spawned");
    // The watcher that had succeeded gets `free`; nothing else happened.
    let kinds: Vec<_> = log.lock().unwrap().iter().map(|(kind, ..)| *kind).collect();
    assert_eq!(kinds, [EventKind::Fork, EventKind::Free]);
    assert_eq!(processes.tasks().stats().tasks, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts `sleep 30` under the OS pid `wanted`, which is free, as a process that is not
/// this program's child (a shell forks it and exits). Needs root to set `ns_last_pid`;
/// other forks on the machine may take the pid first, hence the retries. `None` if not
/// permitted.
fn respawn_with_pid(wanted: u32) -> Option<u32> {
    let script =
        "echo $1 > /proc/sys/kernel/ns_last_pid || exit 1; sleep 30 >/dev/null 2>&1 & echo $!";
    for _ in 0..200 {
        let out = Command::new("sh")
            .args(["-c", script, "sh", &(wanted - 1).to_string()])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        let got: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        if got == wanted {
            return Some(got);
        }
        // SAFETY: plain system call on a pid just printed by its parent.
        unsafe { libc::kill(got as libc::pid_t, libc::SIGKILL) };
    }
    panic!("premise: pid {wanted} was never given to a new process");
}

/// Whether `pid` runs (not gone, not a zombie).
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[test]
fn kill_after_a_steal_does_not_signal_the_process_that_reused_the_pid() {
    let (processes, log) = source(EventKind::Exec, &NEVER);
    let mut child = Command::new("sh")
        .args(["-c", "exit 7"])
        .spawn_watched_in(processes)
        .unwrap();
    let (pid, os_pid) = (child.task().pid(), child.id());
    await_zombie(os_pid);
    assert_eq!(steal(os_pid), 7 << 8);
    // The kernel hands the pid on once it wraps around; here at once.
    let Some(other) = respawn_with_pid(os_pid) else {
        common::skipped_without_root();
        return;
    };
    assert!(runs(other), "premise: the new holder of the pid runs");
    // No wait noticed the steal yet: the kill is the first call after it.
    let killed = child.kill();
    std::thread::sleep(Duration::from_millis(20));
    let other_alive = runs(other);
    // SAFETY: plain system call on the process started above.
    unsafe { libc::kill(other as libc::pid_t, libc::SIGKILL) };
    assert!(
        other_alive,
        "Child::kill signalled the process now holding pid {os_pid} (kill: {killed:?})"
    );
    assert_eq!(killed.map_err(|e| e.raw_os_error()), Err(Some(libc::ESRCH)));
    drop(child);
    assert!(await_free(&log, pid));
    assert_eq!(
        events_of(&log, pid)[2..],
        [
            (EventKind::Exit, Some(ExitStatus::UNKNOWN)),
            (EventKind::Free, None)
        ]
    );
}

/// `kill` on a child that has exited signals nothing: it collects the status, so the
/// task gets `exit` with the real status and `free` there, and a later wait returns it.
#[test]
fn kill_of_an_exited_child_collects_its_status() {
    let (processes, log) = source(EventKind::Fork, &NEVER);
    let mut child = Command::new("sh")
        .args(["-c", "exit 5"])
        .spawn_watched_in(processes)
        .unwrap();
    let pid = child.task().pid();
    await_zombie(child.id());
    child.kill().unwrap();
    assert_eq!(
        events_of(&log, pid)[2..],
        [
            (EventKind::Exit, Some(ExitStatus::exited(5))),
            (EventKind::Free, None)
        ],
        "not collected by the kill"
    );
    assert_eq!(child.wait().unwrap().code(), Some(5));
    assert_eq!(events_of(&log, pid).len(), 4, "a second exit or free");
}
