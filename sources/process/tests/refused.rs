//! A refused spawn, and one the OS cannot perform, leave no process behind. This file
//! holds one test, so that no other test's child can be mistaken for a leftover.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use watchers_core::{Event, EventKind, EventSet, WatcherTable};
use watchers_process::{CommandExt, SpawnError};

/// Whether this process has any child, dead or alive, without reaping it.
fn has_children() -> bool {
    // SAFETY: waitid writes only into `info`, a zeroed siginfo_t owned here; WNOWAIT
    // leaves any child as it is.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let result = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // ECHILD: no child at all. Zero: a child exists (it may not have changed state).
    result == 0
}

#[test]
fn refused_and_failed_spawns_leave_no_process_behind() {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log: Arc<Mutex<Vec<EventKind>>> = Arc::default();
    let refuse = Arc::new(Mutex::new(true));
    let (seen, refusing) = (log.clone(), refuse.clone());
    table
        .watcher("refused::gate", EventSet::ALL)
        .register(move |event: &Event<'_>| {
            seen.lock().unwrap().push(event.kind());
            if event.kind() == EventKind::Fork && *refusing.lock().unwrap() {
                return Err("no children today");
            }
            Ok(())
        })
        .unwrap()
        .keep();
    let processes = common::leaked_source(table, &log);

    let dir = std::env::temp_dir().join(format!("watchers-process-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("ran");
    let error = Command::new("touch")
        .arg(&marker)
        .spawn_watched_in(processes)
        .unwrap_err();
    assert_eq!(error.watcher(), Some("refused::gate"));
    assert!(error.to_string().contains("no children today"), "{error}");
    assert!(!marker.exists());
    assert!(!has_children());
    // The refusing watcher refused itself: it gets no `free`, and nothing else ran.
    assert_eq!(*log.lock().unwrap(), [EventKind::Fork]);

    // A program that does not exist: the fork watchers agreed, the OS failed, and the
    // rollback sends `free` (no `exec`, no `exit`).
    *refuse.lock().unwrap() = false;
    log.lock().unwrap().clear();
    let error = Command::new(dir.join("no-such-program"))
        .spawn_watched_in(processes)
        .unwrap_err();
    assert!(matches!(error, SpawnError::Os(_)), "{error}");
    assert!(!has_children());
    assert_eq!(*log.lock().unwrap(), [EventKind::Fork, EventKind::Free]);
    assert_eq!(processes.tasks().stats().tasks, 2);

    // The premise: a spawn that is let through does leave a child until it is waited for.
    let mut child = Command::new("touch")
        .arg(&marker)
        .spawn_watched_in(processes)
        .unwrap();
    assert!(has_children());
    assert!(child.wait().unwrap().success());
    assert!(marker.exists());
    assert!(!has_children());
    std::fs::remove_dir_all(&dir).unwrap();
}
