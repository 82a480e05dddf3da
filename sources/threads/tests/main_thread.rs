//! The main thread becomes the process's task when it first meets the source, and that
//! task gets `exit` and `free` when the process exits (glibc runs the main thread's
//! thread-local destructors in `exit`).

use std::io::Write;
use std::process::Command;
use std::sync::Arc;

use watchers_core::{Event, EventKind, EventSet, WatcherTable};
use watchers_threads::Threads;

/// Set in the copy of this test that checks what happens at exit.
const CHILD: &str = "WATCHERS_THREADS_MAIN_EXIT_CHILD";

fn main() {
    if std::env::var_os(CHILD).is_some() {
        return exiting_child();
    }
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let threads: &'static Threads = Box::leak(Box::new(Threads::new(table)));
    let me = threads.current().unwrap();
    assert!(Arc::ptr_eq(&me, threads.process()));
    assert_eq!(watchers_threads::os_tid(&me), Some(std::process::id()));
    // A thread it spawns is in its thread group, with the main thread as its creator.
    let handle = threads.builder().spawn(|| ()).unwrap();
    assert_eq!(handle.task().tgid(), me.pid());
    assert!(!Arc::ptr_eq(handle.task(), &me));
    handle.join().unwrap();

    // Only glibc is known to run the main thread's thread-local destructors at `exit`.
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        exits_with_the_process();
    }
    println!("main thread: ok");
}

/// Runs this test's child copy and checks that its main thread's task got `exit` and
/// `free` as the process exited.
fn exits_with_the_process() {
    let child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "{said}");
    let pid = said
        .strip_prefix("bound ")
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("the child said {said:?}"));
    assert_eq!(said, format!("bound {pid}\nexit {pid}\nfree {pid}\n"));
}

/// Binds the main thread, then returns from `main`: its task's `exit` and `free` are
/// written to stderr as the process exits.
fn exiting_child() {
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
}
