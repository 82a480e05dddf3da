//! The main thread becomes the process's task when it first meets the source, and that
//! task gets `exit` and `free` when the process exits (glibc runs the main thread's
//! thread-local destructors in `exit`).

mod common;

use std::sync::Arc;

use watchers_core::WatcherTable;
use watchers_threads::Threads;

fn main() {
    if std::env::var_os(common::CHILD).is_some() {
        // Binds the main thread, spawns a thread through the same source (which sets up
        // the report of a thread's end at `exit` too), then returns from `main`: the
        // main thread's end, which both reports reach, is reported once.
        let threads = common::bind_reporting_to_stderr();
        threads.builder().spawn(|| ()).unwrap().join().unwrap();
        return;
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
        common::child_reports_exit_and_free(&[]);
    }
    println!("main thread: ok");
}
