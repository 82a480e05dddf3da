//! A program that sets `SIGCHLD` to `SIG_IGN`, so that the kernel reaps its children
//! itself: a wait through the source fails clearly, and each task still gets `exit` and
//! `free` exactly once, never with an exit status the child did not have. One test in
//! this file, as the disposition is process-wide.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use watchers_core::{Event, EventData, EventKind, EventSet, ExitStatus, WatcherTable};
use watchers_process::{CommandExt, Processes};

type Log = Arc<Mutex<Vec<(EventKind, Option<ExitStatus>)>>>;

#[test]
fn children_the_kernel_reaps_end_once_without_a_made_up_status() {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log: Log = Arc::default();
    let seen = log.clone();
    table
        .watcher("sigchld::log", EventSet::EXIT | EventSet::FREE)
        .register(move |event: &Event<'_>| {
            let status = match event.data() {
                EventData::Exit { status } => Some(*status),
                _ => None,
            };
            seen.lock().unwrap().push((event.kind(), status));
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap()
        .keep();
    let processes: &'static Processes = Box::leak(Box::new(Processes::new(table)));
    // SAFETY: SIG_IGN is a valid disposition for SIGCHLD; no handler code runs.
    let previous = unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    assert_ne!(previous, libc::SIG_ERR);

    let mut waited = Command::new("sh")
        .args(["-c", "exit 9"])
        .spawn_watched_in(processes)
        .unwrap();
    // The kernel reaps it: the wait finds no child to collect.
    let error = waited.wait().unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ECHILD), "{error}");
    drop(waited);
    let dropped = Command::new("sh")
        .args(["-c", "sleep 0.1; exit 9"])
        .spawn_watched_in(processes)
        .unwrap();
    drop(dropped);

    let deadline = Instant::now() + Duration::from_secs(30);
    while processes.tasks().stats().frees < 2 {
        assert!(Instant::now() < deadline, "the children were never freed");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let log = log.lock().unwrap();
    let kinds: Vec<_> = log.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Exit,
            EventKind::Free,
            EventKind::Exit,
            EventKind::Free
        ]
    );
    // Both exited with 9, which nobody can learn: no made-up status.
    for (_, status) in log.iter().filter(|(kind, _)| *kind == EventKind::Exit) {
        assert_eq!(*status, Some(ExitStatus::UNKNOWN));
    }
}
