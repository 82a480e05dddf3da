//! Call sites a reviewer would try against the source: a `Child` dropped from a
//! thread-local destructor or from inside another child's `exit` watcher.

mod common;

use std::cell::RefCell;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use watchers_core::{Event, EventData, EventKind, EventSet, ExitStatus, Pid, WatcherTable};
use watchers_process::{Child, CommandExt, Processes};

type Log = Arc<Mutex<Vec<(EventKind, Pid, Option<ExitStatus>)>>>;

/// A source whose watcher logs every event.
fn source() -> (&'static Processes, Log) {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log = Log::default();
    let seen = log.clone();
    table
        .watcher("hostile::log", EventSet::ALL)
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

/// The kinds of event `pid` got, in order.
fn events_of(log: &Log, pid: Pid) -> Vec<EventKind> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _)| *p == pid)
        .map(|(kind, _, _)| *kind)
        .collect()
}

/// Waits up to five seconds for `pid`'s `free`.
fn await_free(log: &Log, pid: Pid) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if events_of(log, pid).contains(&EventKind::Free) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
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

thread_local! {
    static HELD: RefCell<Option<Child>> = const { RefCell::new(None) };
}

#[test]
fn a_running_child_dropped_by_a_thread_local_destructor_is_still_reaped() {
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
    assert!(await_free(&log, pid), "{:?}", events_of(&log, pid));
    assert_eq!(
        events_of(&log, pid),
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
    let running = Command::new("sleep")
        .arg("0.1")
        .spawn_watched_in(processes)
        .unwrap();
    let (exited_pid, running_pid) = (exited.task().pid(), running.task().pid());
    HELD.lock().unwrap().extend([exited, running]);
    let mut trigger = Command::new("true").spawn_watched_in(processes).unwrap();
    *TRIGGER.lock().unwrap() = Some(trigger.task().pid());
    assert!(trigger.wait().unwrap().success());
    let whole = [
        EventKind::Fork,
        EventKind::Exec,
        EventKind::Exit,
        EventKind::Free,
    ];
    assert_eq!(
        events_of(&log, exited_pid),
        whole,
        "not ended inside the watcher"
    );
    assert!(await_free(&log, running_pid));
    assert_eq!(events_of(&log, running_pid), whole);
    assert_eq!(events_of(&log, trigger.task().pid()), whole);
}
