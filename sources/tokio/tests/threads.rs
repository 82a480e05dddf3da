//! The worker and blocking threads of runtimes built through the source.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{SERIAL, harness};
use watchers_core::{CloneFlags, EventData, EventSet};
use watchers_tokio::{Builder, Outcome};

#[test]
fn worker_and_blocking_threads_are_tasks_from_start_to_stop() {
    let h = harness();
    let source = h.source;
    let ledger = h.ledger.clone();
    let bound = Arc::new(AtomicU64::new(0));
    let seen = bound.clone();
    let mut builder = Builder::new_multi_thread();
    builder.tokio().thread_name("test-pool");
    let runtime = builder
        .source(source)
        .worker_threads(2)
        .on_thread_start(move || {
            // The user's hook runs once the thread is a task.
            if source.current_thread().is_some() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    let (thread, child_serial) = runtime.block_on(async {
        let handle = tokio::runtime::Handle::current();
        // From a blocking thread, outside any task: the thread is the parent.
        tokio::task::spawn_blocking(move || {
            let thread = source.current_thread().expect("a runtime thread");
            assert!(source.current().is_none());
            let child = source
                .spawn_on(
                    async move { *SERIAL.get(&source.current().unwrap()).unwrap() },
                    &handle,
                )
                .unwrap();
            (thread, handle.block_on(child).unwrap())
        })
        .await
        .unwrap()
    });
    let threads = bound.load(Ordering::Relaxed);
    assert!(threads >= 3, "two workers and a blocking thread: {threads}");
    assert_eq!(thread.tgid(), source.process().pid());
    assert!(thread.is_thread());
    assert_eq!(thread.comm(), "test-pool");
    {
        let parents = ledger.parents.lock().unwrap();
        assert_eq!(parents[&child_serial], thread.pid());
        let thread_serial = *SERIAL.get(&thread).unwrap();
        // An adopted thread's fork names its creator (the process), as a `CLONE_THREAD`
        // fork does.
        assert_eq!(parents[&thread_serial], source.process().pid());
    }
    assert_eq!(source.tasks().stats().tasks as u64, 2 + threads);
    drop(runtime);
    // Dropping the runtime joins its threads: each stopped, exited 0 and was freed.
    assert_eq!(ledger.forked() as u64, threads + 1);
    assert_eq!(ledger.exited(Outcome::Completed) as u64, threads + 1);
    ledger.assert_balanced();
    common::table_is_empty(source);
    assert_eq!(source.unheeded_refusals(), 0);
}

#[test]
fn a_current_thread_runtime_has_only_its_blocking_threads() {
    let h = harness();
    let source = h.source;
    let ledger = h.ledger.clone();
    let runtime = Builder::new_current_thread()
        .source(source)
        .build()
        .unwrap();
    runtime.block_on(async {
        assert!(
            source.current_thread().is_none(),
            "block_on's thread is the caller's"
        );
        assert_eq!(ledger.forked(), 0);
        tokio::task::spawn_blocking(|| ()).await.unwrap();
    });
    assert_eq!(ledger.forked(), 1);
    drop(runtime);
    ledger.assert_balanced();
}

#[test]
fn a_refused_runtime_thread_runs_and_the_refusal_is_counted() {
    let h = harness();
    let source = h.source;
    let ledger = h.ledger.clone();
    let threads = Arc::new(AtomicU64::new(0));
    let count = threads.clone();
    let _refuse_threads = source
        .tasks()
        .watchers()
        .watcher("test::no-threads", EventSet::FORK)
        .register(move |event| match event.data() {
            EventData::Fork { flags, .. } if flags.contains(CloneFlags::THREAD) => {
                count.fetch_add(1, Ordering::Relaxed);
                Err("no runtime threads")
            }
            _ => Ok(()),
        })
        .unwrap();
    let runtime = Builder::new_multi_thread()
        .source(source)
        .worker_threads(2)
        .build()
        .unwrap();
    let sum = runtime.block_on(async {
        let task = tokio::spawn(async { tokio::task::spawn_blocking(|| 40).await.unwrap() + 2 });
        task.await.unwrap()
    });
    assert_eq!(sum, 42);
    drop(runtime);
    let threads = threads.load(Ordering::Relaxed);
    assert!(threads >= 3, "{threads}");
    assert_eq!(source.unheeded_refusals(), threads);
    assert_eq!(source.untracked(), 0);
    // Refused, yet watched: every thread exited and was freed.
    assert_eq!(ledger.forked() as u64, threads);
    ledger.assert_balanced();
    common::table_is_empty(source);
}

/// The user's `on_thread_stop` hook panics: the thread still stops being a task (its
/// `exit` and `free` are sent), rather than staying in the table forever.
#[test]
fn a_panicking_user_thread_stop_hook_still_retires_the_thread() {
    let h = harness();
    let source = h.source;
    let runtime = Builder::new_current_thread()
        .source(source)
        .on_thread_stop(|| panic!("the user's stop hook panics"))
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::task::spawn_blocking(|| ()).await.unwrap();
    });
    // One blocking thread was started; dropping the runtime stops it.
    assert_eq!(h.ledger.forked(), 1);
    drop(runtime);
    h.ledger.assert_balanced();
    common::table_is_empty(source);
}

/// The user's `on_thread_start` hook panics on a blocking thread after it became a
/// task: tokio never runs `on_thread_stop` for it, so the source must retire it.
#[test]
fn a_panicking_user_thread_start_hook_still_retires_the_thread() {
    let h = harness();
    let source = h.source;
    let runtime = Builder::new_current_thread()
        .source(source)
        .on_thread_start(|| panic!("the user's start hook panics"))
        .build()
        .unwrap();
    // The thread dies before it runs the closure; do not wait for it.
    runtime.block_on(async {
        drop(tokio::task::spawn_blocking(|| ()));
    });
    wait_until(|| h.ledger.forked() != 0);
    assert_eq!(h.ledger.forked(), 1);
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    wait_until(|| source.tasks().stats().tasks == 2);
    h.ledger.assert_balanced();
    common::table_is_empty(source);
}

/// Waits (at most ten seconds) for `done`; the assertions after it say what was missed.
fn wait_until(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
