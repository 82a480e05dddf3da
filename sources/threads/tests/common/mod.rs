//! What the tests that watch a process exit share: the child process's side (bind a
//! thread to a source whose watchers write to stderr, then let the process end) and the
//! parent's (run the child, read what it wrote).

use std::io::Write;
use std::process::Command;

use watchers_core::{Event, EventKind, EventSet, WatcherTable};
use watchers_threads::Threads;

/// Set in the environment of the child copy of a test binary.
pub const CHILD: &str = "WATCHERS_THREADS_EXIT_CHILD";

/// In the child: binds the calling thread to a new source whose watcher writes each
/// `exit` and `free` to stderr (`exit 3`), after writing the thread's pid (`bound 3`).
pub fn bind_reporting_to_stderr() -> &'static Threads {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    table
        .watcher("test::at_exit", EventSet::EXIT | EventSet::FREE)
        .register(|event: &Event<'_>| {
            let what = if event.kind() == EventKind::Exit {
                "exit"
            } else {
                "free"
            };
            let line = format!("{what} {}\n", event.task().pid());
            std::io::stderr()
                .write_all(line.as_bytes())
                .map_err(|_| "stderr is closed")
        })
        .unwrap()
        .keep();
    let threads: &'static Threads = Box::leak(Box::new(Threads::new(table)));
    let me = threads.current().unwrap();
    eprintln!("bound {}", me.pid());
    threads
}

/// In the parent: runs this test binary again as the child, with `args`, and checks
/// that it succeeded and that the thread it bound got `exit` and then `free`, once each
/// (other tasks' lines may come between).
pub fn child_reports_exit_and_free(args: &[&str]) {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .env(CHILD, "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "{said}");
    let pid = said
        .lines()
        .find_map(|line| line.strip_prefix("bound "))
        .unwrap_or_else(|| panic!("the child said {said:?}"));
    let own: Vec<&str> = said
        .lines()
        .filter(|line| line.split_once(' ').is_some_and(|(_, of)| of == pid))
        .collect();
    assert_eq!(
        own,
        [
            format!("bound {pid}"),
            format!("exit {pid}"),
            format!("free {pid}")
        ],
        "the child said {said:?}"
    );
}
