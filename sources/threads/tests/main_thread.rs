//! The main thread becomes the process's task when it first meets the source.

use std::sync::Arc;

use watchers_core::WatcherTable;
use watchers_threads::Threads;

fn main() {
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
    println!("main thread: ok");
}
