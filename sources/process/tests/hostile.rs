//! Call sites a reviewer would try against the source: a `Child` dropped from a
//! thread-local destructor or from inside another child's `exit` watcher, and a child
//! whose status other code collected and whose pid the OS then gave to a new child of
//! this program (its calls must never reach the new child). Those set `ns_last_pid`
//! (root only; skipped otherwise), so the tests here take turns: a pid one waits for must
//! not go to another's child.

mod common;

use common::{Log, await_free, await_zombie, events_of, steal};

use std::cell::RefCell;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use watchers_core::{Event, EventKind, EventSet, ExitStatus, Pid, WatcherTable};
use watchers_process::{Child, CommandExt, Processes};

static SERIAL: Mutex<()> = Mutex::new(());

/// This test's turn.
fn turn() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A source whose watcher logs every event.
fn source() -> (&'static Processes, Log) {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log = common::log_every_event(table);
    (common::leaked_source(table, &log), log)
}

/// The kinds of event `pid` got, in order.
fn kinds_of(log: &Log, pid: Pid) -> Vec<EventKind> {
    events_of(log, pid)
        .into_iter()
        .map(|(kind, _)| kind)
        .collect()
}

/// The exit status `pid`'s task got, if it got one.
fn exit_of(log: &Log, pid: Pid) -> Option<ExitStatus> {
    events_of(log, pid)
        .into_iter()
        .find_map(|(kind, status)| status.filter(|_| kind == EventKind::Exit))
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

/// A child that exited and whose status other code collected, and a new child running
/// `command` that the OS gave the first one's pid. `None` if the pid cannot be chosen.
fn stolen_then_reused(
    processes: &'static Processes,
    command: &mut Command,
) -> Option<(Child, Child)> {
    let first = Command::new("sh")
        .args(["-c", "exit 7"])
        .spawn_watched_in(processes)
        .unwrap();
    let os_pid = first.id();
    await_zombie(os_pid);
    steal(os_pid);
    let second = spawn_with_pid(processes, command, os_pid)?;
    Some((first, second))
}

thread_local! {
    static HELD: RefCell<Option<Child>> = const { RefCell::new(None) };
}

#[test]
fn a_running_child_dropped_by_a_thread_local_destructor_is_still_reaped() {
    let _turn = turn();
    let (processes, log) = source();
    let pid = std::thread::spawn(move || {
        let child = Command::new("sleep")
            .arg("0.2")
            .spawn_watched_in(processes)
            .unwrap();
        let pid = child.task().pid();
        HELD.with(|held| *held.borrow_mut() = Some(child));
        pid
    })
    .join()
    .unwrap();
    assert!(await_free(&log, pid), "{:?}", kinds_of(&log, pid));
    assert_eq!(
        kinds_of(&log, pid),
        [
            EventKind::Fork,
            EventKind::Exec,
            EventKind::Exit,
            EventKind::Free
        ]
    );
}

/// A child that an `exit` watcher of another child drops: one that has exited ends
/// there, inside the other's dispatch; one still running goes to the reaper.
#[test]
fn children_dropped_inside_another_childs_exit_watcher_end_once_without_deadlock() {
    let _turn = turn();
    static HELD: Mutex<Vec<Child>> = Mutex::new(Vec::new());
    static TRIGGER: Mutex<Option<Pid>> = Mutex::new(None);
    let (processes, log) = source();
    processes
        .tasks()
        .watchers()
        .watcher("hostile::drop_in_exit", EventSet::EXIT)
        .register(|event: &Event<'_>| {
            if *TRIGGER.lock().unwrap() == Some(event.task().pid()) {
                let held = std::mem::take(&mut *HELD.lock().unwrap());
                drop(held);
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap()
        .keep();
    let exited = Command::new("true").spawn_watched_in(processes).unwrap();
    await_zombie(exited.id());
    // Runs until its stdin closes, so that it surely still runs when dropped.
    let mut running = Command::new("sh")
        .args(["-c", "read line"])
        .stdin(Stdio::piped())
        .spawn_watched_in(processes)
        .unwrap();
    let running_stdin = running.take_stdin();
    let (exited_pid, running_pid) = (exited.task().pid(), running.task().pid());
    HELD.lock().unwrap().extend([exited, running]);
    let mut trigger = Command::new("true").spawn_watched_in(processes).unwrap();
    *TRIGGER.lock().unwrap() = Some(trigger.task().pid());
    assert!(trigger.wait().unwrap().success());
    assert_eq!(
        processes.reaping(),
        1,
        "premise: the running child went to the reaper"
    );
    drop(running_stdin);
    let whole = [
        EventKind::Fork,
        EventKind::Exec,
        EventKind::Exit,
        EventKind::Free,
    ];
    assert_eq!(
        kinds_of(&log, exited_pid),
        whole,
        "not ended inside the watcher"
    );
    assert!(await_free(&log, running_pid));
    assert_eq!(kinds_of(&log, running_pid), whole);
    assert_eq!(kinds_of(&log, trigger.task().pid()), whole);
}

/// A child whose status other code collected, and whose pid the OS gave to a new child
/// of this program before the first wait: that wait must not collect the new child.
#[test]
fn a_wait_after_a_steal_leaves_the_child_that_reused_the_pid_alone() {
    let _turn = turn();
    let (processes, log) = source();
    let Some((mut first, mut second)) =
        stolen_then_reused(processes, Command::new("sh").args(["-c", "exit 9"]))
    else {
        common::skipped_without_root();
        return;
    };
    let (first_pid, os_pid) = (first.task().pid(), first.id());
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
    let _turn = turn();
    let (processes, log) = source();
    let Some((mut first, mut second)) = stolen_then_reused(
        processes,
        Command::new("sh")
            .args(["-c", "read line"])
            .stdin(Stdio::piped()),
    ) else {
        common::skipped_without_root();
        return;
    };
    let first_pid = first.task().pid();
    let killed = first.kill().map_err(|e| e.raw_os_error());
    // Closing its stdin ends the second child by itself, with code 1 (`read` at EOF).
    drop(second.take_stdin());
    let second_status = second.wait().unwrap();
    assert_eq!(killed, Err(Some(libc::ESRCH)));
    assert_eq!(
        second_status.code(),
        Some(1),
        "the kill reached the child that reused the pid: {second_status:?}"
    );
    assert_eq!(exit_of(&log, first_pid), Some(ExitStatus::UNKNOWN));
}

/// As above for the reaper: a dropped child is stolen and its pid given to a new child
/// while the reaper is held up (in a watcher of another dropped child); the reaper must
/// then end the first child's task as lost, and leave the new child to its own wait.
#[test]
fn the_reaper_leaves_the_child_that_reused_a_dropped_childs_pid_alone() {
    static HOLD_ON: Mutex<Option<(Pid, std::sync::mpsc::Receiver<()>)>> = Mutex::new(None);
    let _turn = turn();
    let (processes, log) = source();
    processes
        .tasks()
        .watchers()
        .watcher("hostile::hold_the_reaper", EventSet::EXIT)
        .register(|event: &Event<'_>| {
            let mut hold = HOLD_ON.lock().unwrap();
            if hold
                .as_ref()
                .is_some_and(|(pid, _)| *pid == event.task().pid())
            {
                let (_, release) = hold.take().unwrap();
                drop(hold);
                let _ = release.recv();
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap()
        .keep();
    // Both go to the reaper while they run; `holder` ends first, and holds the reaper
    // in its `exit` watcher.
    let (release, held) = std::sync::mpsc::channel();
    let reading = || {
        let mut child = Command::new("sh")
            .args(["-c", "read line"])
            .stdin(Stdio::piped())
            .spawn_watched_in(processes)
            .unwrap();
        let stdin = child.take_stdin();
        (child, stdin)
    };
    let ((holder, holder_stdin), (first, stdin)) = (reading(), reading());
    *HOLD_ON.lock().unwrap() = Some((holder.task().pid(), held));
    let (first_pid, os_pid) = (first.task().pid(), first.id());
    drop((holder, first));
    drop(holder_stdin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while HOLD_ON.lock().unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "premise: the reaper is held"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // The reaper is held: the first child ends, other code reaps it, a new child gets
    // its pid.
    drop(stdin);
    await_zombie(os_pid);
    steal(os_pid);
    let second = spawn_with_pid(
        processes,
        Command::new("sh")
            .args(["-c", "read line; exit 5"])
            .stdin(Stdio::piped()),
        os_pid,
    );
    let Some(mut second) = second else {
        release.send(()).unwrap();
        common::skipped_without_root();
        return;
    };
    release.send(()).unwrap();
    assert!(
        await_free(&log, first_pid),
        "{:?}",
        events_of(&log, first_pid)
    );
    assert_eq!(exit_of(&log, first_pid), Some(ExitStatus::UNKNOWN));
    drop(second.take_stdin());
    let status = second.wait().map(|status| status.code());
    assert_eq!(
        status.ok(),
        Some(Some(5)),
        "the reaper took the new child's status"
    );
}
