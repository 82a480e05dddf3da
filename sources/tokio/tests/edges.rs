//! Edges of the source's promises: aborts at every stage, panics (also in a future's
//! destructor and in a panic payload's), runtime shutdown with work pending, watchers
//! that spawn or panic, and spawns and aborts from several threads at once.

mod common;

use std::future::{Future, pending};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use common::{Flavour, harness, table_is_empty};
use watchers_core::{Event, EventData, EventSet};
use watchers_tokio::Outcome;

/// A future that panics when it is dropped.
struct PanicOnDrop;

impl Future for PanicOnDrop {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Pending
    }
}

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("a future's destructor panics");
    }
}

/// A panic payload whose destructor panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("a panic payload's destructor panics");
    }
}

fn aborts_at_every_stage(flavour: Flavour) {
    let h = harness();
    let source = h.source;
    let runtime = common::runtime(flavour, source);
    runtime.block_on(async {
        // Before its first poll. On several worker threads one could poll it before the
        // abort, so each worker is held (blocked on a barrier) until the abort is made.
        let workers = if flavour == Flavour::MultiThread {
            common::WORKERS
        } else {
            0
        };
        let hold = Arc::new(Barrier::new(workers + 1));
        let held: Vec<_> = (0..workers)
            .map(|_| {
                let hold = hold.clone();
                source.spawn(async move { hold.wait() }).unwrap()
            })
            .collect();
        let never = source
            .spawn(async { unreachable!("aborted before it ran") })
            .unwrap();
        never.abort();
        hold.wait();
        for held in held {
            held.await.unwrap();
        }
        assert!(never.await.unwrap_err().is_cancelled());
        // While it waits.
        let waiting = source.spawn(pending::<()>()).unwrap();
        tokio::task::yield_now().await;
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        // From inside its own poll: the poll finishes, then it is cancelled.
        let slot: Arc<Mutex<Option<tokio::task::AbortHandle>>> = Arc::default();
        let own = {
            let slot = slot.clone();
            source
                .spawn(async move {
                    loop {
                        let abort = slot.lock().unwrap().take();
                        if let Some(abort) = abort {
                            abort.abort();
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    pending::<()>().await;
                })
                .unwrap()
        };
        *slot.lock().unwrap() = Some(own.abort_handle());
        assert!(own.await.unwrap_err().is_cancelled());
        // After it finished: still completed.
        let done = source.spawn(async { 7 }).unwrap();
        while !done.is_finished() {
            tokio::task::yield_now().await;
        }
        done.abort();
        assert_eq!(done.await.unwrap(), 7);
        // A future whose destructor panics, aborted.
        let bad = source.spawn(PanicOnDrop).unwrap();
        tokio::task::yield_now().await;
        bad.abort();
        // tokio reports the destructor's panic; the task was still cancelled.
        assert!(bad.await.is_err());
    });
    drop(runtime);
    let ledger = &h.ledger;
    ledger.assert_balanced();
    assert_eq!(ledger.exited(Outcome::Cancelled), 4);
    table_is_empty(source);
}

#[test]
fn aborts_at_every_stage_current_thread() {
    aborts_at_every_stage(Flavour::CurrentThread);
}

#[test]
fn aborts_at_every_stage_multi_thread() {
    aborts_at_every_stage(Flavour::MultiThread);
}

#[test]
fn a_panic_whose_payload_panics_on_drop_exits_panicked_once() {
    let h = harness();
    let source = h.source;
    let runtime = common::runtime(Flavour::MultiThread, source);
    let error = runtime.block_on(async {
        source
            .spawn(async { std::panic::panic_any(Bomb) })
            .unwrap()
            .await
            .unwrap_err()
    });
    // The payload's destructor would panic here: it is the test's, not the source's.
    std::mem::forget(error.into_panic());
    drop(runtime);
    h.ledger.assert_balanced();
    assert_eq!(h.ledger.exited(Outcome::Panicked), 1);
    table_is_empty(source);
}

fn shutdown_with_pending(flavour: Flavour) {
    let h = harness();
    let source = h.source;
    let runtime = common::runtime(flavour, source);
    let handle = runtime.handle().clone();
    runtime.block_on(async {
        for _ in 0..50 {
            source.spawn(pending::<()>()).unwrap();
        }
        tokio::task::yield_now().await;
    });
    drop(runtime);
    assert_eq!(h.ledger.exited(Outcome::Cancelled), 50);
    // Spawned into the runtime after it shut down: tokio drops them unrun.
    let _entered = handle.enter();
    let blocking = source
        .spawn_blocking(|| unreachable!("the runtime is shut down"))
        .unwrap();
    let task = source
        .spawn(async { unreachable!("the runtime is shut down") })
        .unwrap();
    assert!(blocking.is_finished() && task.is_finished());
    let ledger = &h.ledger;
    ledger.assert_balanced();
    assert_eq!(ledger.exited(Outcome::Cancelled), 52);
    table_is_empty(source);
}

#[test]
fn shutdown_cancels_pending_and_late_tasks_once_current_thread() {
    shutdown_with_pending(Flavour::CurrentThread);
}

#[test]
fn shutdown_cancels_pending_and_late_tasks_once_multi_thread() {
    shutdown_with_pending(Flavour::MultiThread);
}

/// Watchers that spawn a task (once per event kind, to stay finite) from inside
/// `fork`, `exit` and `free`: no deadlock, and every task is balanced.
#[test]
fn watchers_that_spawn_do_not_deadlock() {
    let h = harness();
    let source = h.source;
    let runtime = common::runtime(Flavour::MultiThread, source);
    let handle = runtime.handle().clone();
    let spawned = Arc::new(Mutex::new(Vec::new()));
    let fired = Arc::new([
        AtomicBool::new(false),
        AtomicBool::new(false),
        AtomicBool::new(false),
    ]);
    let armed = Arc::new(AtomicBool::new(false));
    let table = source.tasks().watchers();
    let _reg = {
        let (spawned, fired, armed) = (spawned.clone(), fired.clone(), armed.clone());
        table
            .watcher(
                "edges::spawner",
                EventSet::FORK | EventSet::EXIT | EventSet::FREE,
            )
            .register(move |event: &Event<'_>| {
                if !armed.load(Ordering::Relaxed) {
                    return Ok::<(), String>(());
                }
                let which = match event.data() {
                    EventData::Fork { .. } => 0,
                    EventData::Exit { .. } => 1,
                    EventData::Free => 2,
                    _ => return Ok(()),
                };
                if !fired[which].swap(true, Ordering::Relaxed) {
                    let task = source.spawn_on(async move { which }, &handle).unwrap();
                    spawned.lock().unwrap().push(task);
                }
                Ok(())
            })
            .unwrap()
    };
    armed.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        source.spawn(async {}).unwrap().await.unwrap();
        loop {
            let tasks: Vec<_> = std::mem::take(&mut *spawned.lock().unwrap());
            if tasks.is_empty() && fired.iter().all(|f| f.load(Ordering::Relaxed)) {
                break;
            }
            for task in tasks {
                task.await.unwrap();
            }
            tokio::task::yield_now().await;
        }
    });
    drop(runtime);
    h.ledger.assert_balanced();
    table_is_empty(source);
}

/// A `fork` watcher that panics: the panic continues out of the spawn, which leaves
/// nothing behind in the table; the future is not run.
#[test]
fn a_panicking_fork_watcher_leaves_nothing_forked() {
    let h = harness();
    let source = h.source;
    let runtime = common::runtime(Flavour::CurrentThread, source);
    let armed = Arc::new(AtomicBool::new(false));
    let _reg = {
        let armed = armed.clone();
        source
            .tasks()
            .watchers()
            .watcher("edges::panics", EventSet::FORK)
            .register(move |_: &Event<'_>| {
                if armed.load(Ordering::Relaxed) {
                    panic!("a fork watcher panics");
                }
                Ok::<(), String>(())
            })
            .unwrap()
    };
    let ran = Arc::new(AtomicBool::new(false));
    runtime.block_on(async {
        armed.store(true, Ordering::Relaxed);
        let ran2 = ran.clone();
        let result = catch_unwind(AssertUnwindSafe(|| {
            source.spawn(async move { ran2.store(true, Ordering::Relaxed) })
        }));
        armed.store(false, Ordering::Relaxed);
        // The panic continues out of the spawn, as its documentation says.
        assert!(result.is_err(), "the spawn returned");
        tokio::task::yield_now().await;
    });
    drop(runtime);
    assert!(!ran.load(Ordering::Relaxed), "a refused future ran");
    table_is_empty(source);
}

/// Spawns and aborts from four threads onto one multi-thread runtime: every identity
/// is freed once, and tasks really ended while others were being spawned.
#[test]
fn concurrent_spawns_and_aborts_from_several_threads() {
    let h = harness();
    let source = h.source;
    let ledger = h.ledger.clone();
    let runtime = common::runtime(Flavour::MultiThread, source);
    let handle = runtime.handle().clone();
    ledger.busy.store(true, Ordering::Relaxed);
    let barrier = Arc::new(Barrier::new(4));
    let aborted = Arc::new(AtomicU64::new(0));
    // Threads inside their spawning loop right now, and the most at once.
    let spawning = Arc::new(AtomicU64::new(0));
    let most_spawning = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (handle, barrier, aborted) = (handle.clone(), barrier.clone(), aborted.clone());
            let (spawning, most_spawning) = (spawning.clone(), most_spawning.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let now = spawning.fetch_add(1, Ordering::SeqCst) + 1;
                most_spawning.fetch_max(now, Ordering::SeqCst);
                let mut keep = Vec::new();
                for i in 0..5_000u32 {
                    let task = if i % 2 == 0 {
                        source.spawn_on(pending::<u32>(), &handle).unwrap()
                    } else {
                        source.spawn_on(async move { i }, &handle).unwrap()
                    };
                    if i % 2 == 0 {
                        task.abort();
                        aborted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        keep.push(task);
                    }
                    let _ = t;
                    // Another thread may have entered since this one did.
                    most_spawning.fetch_max(spawning.load(Ordering::SeqCst), Ordering::SeqCst);
                }
                spawning.fetch_sub(1, Ordering::SeqCst);
                handle.block_on(async {
                    for task in keep {
                        task.await.unwrap();
                    }
                });
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    ledger.busy.store(false, Ordering::Relaxed);
    drop(runtime);
    assert!(
        ledger.frees_while_busy.load(Ordering::Relaxed) > 0,
        "no overlap"
    );
    // The premise: the threads' spawns really overlapped one another.
    let most = most_spawning.load(Ordering::SeqCst);
    assert!(most >= 2, "the spawning threads never overlapped ({most})");
    ledger.assert_balanced();
    assert_eq!(
        ledger.exited(Outcome::Cancelled) as u64,
        aborted.load(Ordering::Relaxed)
    );
    table_is_empty(source);
}

/// Tasks of the source on a runtime not built through it, dropped from a blocking task
/// of another runtime; spawns from a `LocalSet`'s local task and from `block_on`: all
/// balanced, and the parents are the tasks that spawned.
#[test]
fn other_runtimes_local_sets_and_block_on() {
    let h = harness();
    let source = h.source;
    let runtime = common::runtime(Flavour::MultiThread, source);
    let other = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Pending tasks of the source on the plain runtime.
    for _ in 0..10 {
        source.spawn_on(pending::<()>(), other.handle()).unwrap();
    }
    runtime.block_on(async move {
        // The plain runtime is dropped on a blocking task of the source: its pending
        // tasks are cancelled there.
        source
            .spawn_blocking(move || {
                drop(other);
            })
            .unwrap()
            .await
            .unwrap()
    });
    assert_eq!(h.ledger.exited(Outcome::Cancelled), 10);
    // A LocalSet inside a task of the source: a local task spawns through the source.
    let (outer, inner_parent) = runtime.block_on(async move {
        source
            .spawn_blocking(move || {
                let local = tokio::task::LocalSet::new();
                let handle = tokio::runtime::Handle::current();
                let me = source.current().unwrap();
                let parent = handle.block_on(local.run_until(async move {
                    tokio::task::spawn_local(async move {
                        // Its serial, read while it lives (`free` clears the slots).
                        let child = source
                            .spawn(async move {
                                *common::SERIAL.get(&source.current().unwrap()).unwrap()
                            })
                            .unwrap();
                        child.await.unwrap()
                    })
                    .await
                    .unwrap()
                }));
                (me, parent)
            })
            .unwrap()
            .await
            .unwrap()
    });
    // The local task runs inside the blocking task: that task is the child's parent.
    assert_eq!(h.ledger.parents.lock().unwrap()[&inner_parent], outer.pid());
    drop(runtime);
    h.ledger.assert_balanced();
    table_is_empty(source);
}
