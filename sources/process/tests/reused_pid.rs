//! A child whose status other code collected, and whose pid the OS then gave to a new
//! child of this program: the first child's calls must never reach the second. The
//! tests set `ns_last_pid` (root only; skipped otherwise) and so take turns.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use watchers_core::{Event, EventData, EventKind, EventSet, ExitStatus, Pid, WatcherTable};
use watchers_process::{Child, CommandExt, Processes};

/// Held by each test: a pid one test waits for must not go to another's child.
static SERIAL: Mutex<()> = Mutex::new(());

type Log = Arc<Mutex<Vec<(EventKind, Pid, Option<ExitStatus>)>>>;

/// A source whose watcher logs every event.
fn source() -> (&'static Processes, Log) {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log = Log::default();
    let seen = log.clone();
    table
        .watcher("reused_pid::log", EventSet::ALL)
        .register(move |event: &Event<'_>| {
            let status = match event.data() {
                EventData::Exit { status } => Some(*status),
                _ => None,
            };
            seen.lock()
                .unwrap()
                .push((event.kind(), event.task().pid(), status));
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap()
        .keep();
    (common::leaked_source(table, &log), log)
}

/// The exit status `pid`'s task got, if it got one.
fn exit_of(log: &Log, pid: Pid) -> Option<ExitStatus> {
    log.lock()
        .unwrap()
        .iter()
        .find(|(kind, p, _)| *kind == EventKind::Exit && *p == pid)
        .and_then(|(_, _, status)| *status)
}

/// Blocks until the child `os_pid` has exited, leaving it a zombie (not reaped).
fn await_zombie(os_pid: u32) {
    // SAFETY: waitid writes only into `info`, a zeroed siginfo_t owned here; WNOWAIT
    // leaves the child to be reaped later.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let result = unsafe {
        libc::waitid(
            libc::P_PID,
            os_pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(result, 0, "{}", std::io::Error::last_os_error());
}

/// Another part of the program reaps the child `os_pid`, as a `waitpid` of its own.
fn steal(os_pid: u32) {
    let mut status = 0;
    // SAFETY: waitpid writes only into `status`, an i32 owned here.
    let reaped = unsafe { libc::waitpid(os_pid as libc::pid_t, &mut status, 0) };
    assert_eq!(reaped, os_pid as libc::pid_t, "the steal itself failed");
}

/// Spawns `command` through `processes` so that the child gets the OS pid `wanted`,
/// which is free: the kernel hands out `ns_last_pid + 1` next (needs root). Other forks
/// on the machine may take the pid first, hence the retries. `None` if not permitted.
fn spawn_with_pid(
    processes: &'static Processes,
    command: &mut Command,
    wanted: u32,
) -> Option<Child> {
    for _ in 0..200 {
        if std::fs::write("/proc/sys/kernel/ns_last_pid", (wanted - 1).to_string()).is_err() {
            return None;
        }
        let mut child = command.spawn_watched_in(processes).unwrap();
        if child.id() == wanted {
            return Some(child);
        }
        child.wait().unwrap();
    }
    panic!("premise: pid {wanted} was never given to a new child");
}

/// A child whose status other code collected, and whose pid the OS gave to a new child
/// of this program before the first wait: that wait must not collect the new child.
#[test]
fn a_wait_after_a_steal_leaves_the_child_that_reused_the_pid_alone() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (processes, log) = source();
    let mut first = Command::new("sh")
        .args(["-c", "exit 7"])
        .spawn_watched_in(processes)
        .unwrap();
    let (first_pid, os_pid) = (first.task().pid(), first.id());
    await_zombie(os_pid);
    steal(os_pid);
    let Some(mut second) =
        spawn_with_pid(processes, Command::new("sh").args(["-c", "exit 9"]), os_pid)
    else {
        println!("skipped: cannot set ns_last_pid (not root)");
        return;
    };
    await_zombie(os_pid);
    let first_waited = first.wait().map_err(|e| e.raw_os_error());
    let second_waited = second.wait().map(|status| status.code());
    assert_eq!(
        first_waited,
        Err(Some(libc::ECHILD)),
        "the first child's wait collected the second's status"
    );
    assert_eq!(exit_of(&log, first_pid), Some(ExitStatus::UNKNOWN));
    assert_eq!(
        second_waited.ok(),
        Some(Some(9)),
        "the second child lost its status"
    );
    assert_eq!(
        exit_of(&log, second.task().pid()),
        Some(ExitStatus::exited(9))
    );
}

/// As above, with `kill` the first call after the steal: it must not signal the new
/// child that holds the pid.
#[test]
fn a_kill_after_a_steal_spares_the_child_that_reused_the_pid() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (processes, log) = source();
    let mut first = Command::new("sh")
        .args(["-c", "exit 7"])
        .spawn_watched_in(processes)
        .unwrap();
    let (first_pid, os_pid) = (first.task().pid(), first.id());
    await_zombie(os_pid);
    steal(os_pid);
    let Some(mut second) = spawn_with_pid(
        processes,
        Command::new("sh")
            .args(["-c", "read line"])
            .stdin(Stdio::piped()),
        os_pid,
    ) else {
        println!("skipped: cannot set ns_last_pid (not root)");
        return;
    };
    let killed = first.kill().map_err(|e| e.raw_os_error());
    // Closing its stdin ends the second child by itself, with code 1 (`read` at EOF).
    drop(second.as_std_mut().stdin.take());
    let second_status = second.wait().unwrap();
    assert_eq!(killed, Err(Some(libc::ESRCH)));
    assert_eq!(
        second_status.code(),
        Some(1),
        "the kill reached the child that reused the pid: {second_status:?}"
    );
    assert_eq!(exit_of(&log, first_pid), Some(ExitStatus::UNKNOWN));
}
