//! Setup shared by the source's tests.
#![allow(dead_code, reason = "each test file uses some of it")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use watchers_core::{Event, EventData, EventKind, EventSet, ExitStatus, Pid, WatcherTable};
use watchers_process::Processes;

/// A source on `table`, for the test's duration, with `log` emptied of what its watchers
/// saw while the source adopted the program's own task.
pub fn leaked_source<T>(table: &'static WatcherTable, log: &Mutex<Vec<T>>) -> &'static Processes {
    let processes: &'static Processes = Box::leak(Box::new(Processes::new(table)));
    log.lock().unwrap().clear();
    processes
}

/// Every event the sources' watchers saw: kind, task, and the status of an `exit`.
pub type Log = Arc<Mutex<Vec<(EventKind, Pid, Option<ExitStatus>)>>>;

/// Registers on `table` a watcher that logs every event into the returned log, ahead of
/// the table's other watchers.
pub fn log_every_event(table: &'static WatcherTable) -> Log {
    let log = Log::default();
    let seen = log.clone();
    table
        .watcher("common::log", EventSet::ALL)
        .priority(10)
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
    log
}

/// The events `pid` got, in order.
pub fn events_of(log: &Log, pid: Pid) -> Vec<(EventKind, Option<ExitStatus>)> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _)| *p == pid)
        .map(|(kind, _, status)| (*kind, *status))
        .collect()
}

/// Waits (up to 30 s) until `pid` got its `free`.
pub fn await_free(log: &Log, pid: Pid) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if events_of(log, pid)
            .iter()
            .any(|(k, _)| *k == EventKind::Free)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// `waitid` for the child `os_pid` with `WEXITED | WNOWAIT | flags`: it is never
/// reaped here. Zero if the child exists (with `WNOHANG`, even if it runs).
pub fn peek(os_pid: u32, flags: libc::c_int) -> libc::c_int {
    // SAFETY: waitid writes only into `info`, a zeroed siginfo_t owned here; WNOWAIT
    // leaves the child to be reaped later.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::waitid(
            libc::P_PID,
            os_pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | flags,
        )
    }
}

/// Blocks until the child `os_pid` has exited, leaving it a zombie (not reaped).
pub fn await_zombie(os_pid: u32) {
    assert_eq!(peek(os_pid, 0), 0, "{}", std::io::Error::last_os_error());
}

/// Another part of the program reaps the child `os_pid`: its raw wait status.
pub fn steal(os_pid: u32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid writes only into `status`, an i32 owned here.
    let reaped = unsafe { libc::waitpid(os_pid as libc::pid_t, &mut status, 0) };
    assert_eq!(reaped, os_pid as libc::pid_t, "the steal itself failed");
    status
}

/// Says that the running test skipped its check for want of root (to set
/// `ns_last_pid`). Written straight to stderr: the test harness captures only `print!`
/// and `eprint!`, and a skip must not pass unseen.
pub fn skipped_without_root() {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr(),
        "{test}: SKIPPED, cannot set ns_last_pid (needs root)"
    );
}
