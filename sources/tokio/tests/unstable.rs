//! Plain `tokio::spawn` tasks on a runtime built through the source, seen through
//! tokio's unstable task hooks. Run with
//! `RUSTFLAGS="--cfg tokio_unstable" cargo test -p watchers-tokio --features unstable-hooks`.
#![cfg(all(feature = "unstable-hooks", tokio_unstable))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Flavour, SERIAL, harness};
use watchers_tokio::Outcome;

/// Plain tasks get `fork` (unrefusable: every third is refused and counted), `exit` and
/// `free`; code in them finds their task; tasks spawned through the source are not seen
/// twice.
fn plain_tasks(flavour: Flavour) {
    let h = harness();
    let source = h.source;
    let ledger = h.ledger.clone();
    let runtime = common::runtime(flavour, source);
    // Its worker threads, all started (and stopped) once the runtime is dropped.
    let threads = match flavour {
        Flavour::CurrentThread => 0,
        Flavour::MultiThread => 2,
    };
    let ran = Arc::new(AtomicU64::new(0));
    let (outer, inner) = runtime.block_on(async {
        ledger.armed.store(true, Ordering::Relaxed);
        let mut handles = Vec::new();
        for _ in 0..300 {
            let ran = ran.clone();
            handles.push(tokio::spawn(async move {
                ran.fetch_add(1, Ordering::Relaxed);
                *SERIAL
                    .get(&source.current().expect("a plain task"))
                    .unwrap()
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        ledger.armed.store(false, Ordering::Relaxed);
        // A task spawned through the source from a plain task is its child; a plain
        // task spawned from one is adopted as a thread of it (`CLONE_THREAD`), whose
        // `fork` names its creator as the parent, as a thread's fork does.
        tokio::spawn(async move {
            let me = source.current().unwrap();
            let plain = tokio::spawn(async move { source.current().unwrap().pid() });
            let through = source
                .spawn(async move { source.current().unwrap() })
                .unwrap();
            let through_task = through.await.unwrap();
            let plain_pid = plain.await.unwrap();
            (me, (plain_pid, through_task.pid()))
        })
        .await
        .unwrap()
    });
    drop(runtime);
    assert_eq!(ran.load(Ordering::Relaxed), 300, "refusals are not obeyed");
    let refused = ledger.refused.load(Ordering::Relaxed);
    assert!(refused >= 99, "{refused}");
    assert_eq!(source.unheeded_refusals(), refused);
    // 300 + the outer task + its plain child + the task spawned through the source.
    assert_eq!(ledger.forked(), threads + 303);
    let parents = ledger.parents.lock().unwrap();
    let children: Vec<_> = parents
        .values()
        .filter(|parent| **parent == outer.pid())
        .collect();
    assert_eq!(children.len(), 2, "{children:?} {inner:?}");
    drop(parents);
    // The task spawned through the source was seen once, not also as a plain task.
    assert_eq!(ledger.exited(Outcome::Completed), threads + 303);
    ledger.assert_balanced();
    common::table_is_empty(source);
}

#[test]
fn plain_tokio_spawn_tasks_are_seen_current_thread() {
    plain_tasks(Flavour::CurrentThread);
}

#[test]
fn plain_tokio_spawn_tasks_are_seen_multi_thread() {
    plain_tasks(Flavour::MultiThread);
}

/// A plain task spawned on a runtime that has shut down: tokio shuts it down (and runs
/// `on_task_terminate`) inside the spawn, before `on_task_spawn`. It must not be left
/// forked and never freed.
fn plain_task_on_a_shut_down_runtime(flavour: Flavour) {
    let h = harness();
    let source = h.source;
    let runtime = common::runtime(flavour, source);
    let handle = runtime.handle().clone();
    drop(runtime);
    let forked = h.ledger.forked();
    let task = handle.spawn(async {});
    assert!(task.is_finished(), "tokio shut the task down at once");
    // Whether or not it was announced, it must not stay in the table.
    let announced = h.ledger.forked() - forked;
    assert!(announced <= 1);
    h.ledger.assert_balanced();
    common::table_is_empty(source);
}

#[test]
fn a_plain_task_spawned_on_a_shut_down_runtime_is_not_left_forked_current_thread() {
    plain_task_on_a_shut_down_runtime(Flavour::CurrentThread);
}

#[test]
fn a_plain_task_spawned_on_a_shut_down_runtime_is_not_left_forked_multi_thread() {
    plain_task_on_a_shut_down_runtime(Flavour::MultiThread);
}

/// Plain tasks spawned from another thread while the runtime shuts down: tokio may
/// shut one down (on the shutting-down thread) between binding it and running the
/// spawn hook, or while the hook announces it, so its terminate hook runs first or in
/// the middle. Such a task must not be left adopted after its end (it would never be
/// freed). Rounds go on until that race was seen (at least 20 rounds, at most 400).
fn spawned_while_shutting_down(flavour: Flavour) {
    let mut late = 0;
    let mut rounds = 0;
    while rounds < 20 || (late == 0 && rounds < 400) {
        rounds += 1;
        let h = harness();
        let source = h.source;
        let runtime = common::runtime(flavour, source);
        let handle = runtime.handle().clone();
        let go = Arc::new(std::sync::Barrier::new(2));
        let spawner = {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                for _ in 0..20_000 {
                    drop(handle.spawn(std::future::pending::<()>()));
                }
            })
        };
        go.wait();
        std::thread::sleep(std::time::Duration::from_micros(200));
        drop(runtime);
        spawner.join().unwrap();
        h.ledger.assert_balanced();
        common::table_is_empty(source);
        late += source.late_spawn_hooks();
    }
    assert!(
        late > 0,
        "no spawn hook came after its task's end in {rounds} rounds"
    );
}

#[test]
fn plain_tasks_spawned_while_the_runtime_shuts_down_are_balanced() {
    spawned_while_shutting_down(Flavour::MultiThread);
}

#[test]
fn plain_tasks_spawned_while_the_runtime_shuts_down_are_balanced_current_thread() {
    spawned_while_shutting_down(Flavour::CurrentThread);
}

/// A blocking task ends with no spawn hook before or after, as a plain task that
/// ended before its spawn hook does: the source must not remember such ends for good.
/// Nor the ends of its own tasks (which the spawn hook does not adopt).
#[test]
fn blocking_tasks_leave_no_remembered_ends() {
    let h = harness();
    let source = h.source;
    let runtime = common::runtime(Flavour::MultiThread, source);
    let most = Arc::new(AtomicU64::new(0));
    let record = {
        let most = most.clone();
        move || {
            most.fetch_max(source.early_ends() as u64, Ordering::Relaxed);
        }
    };
    runtime.block_on(async {
        // No spawn is ever on its way here (spawn_blocking binds no task to the
        // runtime): no end is remembered at any time.
        for _ in 0..50 {
            let blocking: Vec<_> = (0..100)
                .map(|_| tokio::task::spawn_blocking(record.clone()))
                .collect();
            for task in blocking {
                task.await.unwrap();
            }
            record();
        }
        assert_eq!(most.load(Ordering::Relaxed), 0);
        // Plain spawns and the source's own on their way while blocking tasks end: an
        // end may be kept while a spawn hook is due, but none once the spawns stopped
        // and one more task ended.
        let spawning = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let overlapped = Arc::new(AtomicU64::new(0));
        let spawner = {
            let spawning = spawning.clone();
            tokio::spawn(async move {
                for _ in 0..10_000 {
                    tokio::spawn(async {}).await.unwrap();
                    source.spawn(async {}).unwrap().await.unwrap();
                }
                spawning.store(false, Ordering::Relaxed);
            })
        };
        while spawning.load(Ordering::Relaxed) {
            let spawning = spawning.clone();
            let overlapped = overlapped.clone();
            tokio::task::spawn_blocking(move || {
                if spawning.load(Ordering::Relaxed) {
                    overlapped.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await
            .unwrap();
        }
        spawner.await.unwrap();
        assert!(
            overlapped.load(Ordering::Relaxed) > 0,
            "no blocking task ran while plain tasks were spawned"
        );
        // tokio wakes a task's awaiter before it runs the terminate hook, so the end
        // that clears may come a little after the await.
        for _ in 0..1_000 {
            if source.early_ends() == 0 {
                break;
            }
            tokio::task::spawn_blocking(|| ()).await.unwrap();
        }
        assert_eq!(source.early_ends(), 0);
    });
    drop(runtime);
    assert_eq!(source.early_ends(), 0);
    h.ledger.assert_balanced();
    common::table_is_empty(source);
}

/// A task spawned through the source on a runtime that has shut down is dropped inside
/// tokio's spawn, on the spawning thread: its `exit` and `free` watchers run there. A
/// plain task that such a watcher spawns on a live runtime of the source is a plain
/// task like any other and must be announced; the source's hiding of its own spawn
/// must not reach it.
fn a_plain_spawn_from_a_watcher_of_a_task_dropped_inside_the_spawn(blocking: bool) {
    let h = harness();
    let source = h.source;
    let live = common::runtime(Flavour::CurrentThread, source);
    let live_handle = live.handle().clone();
    let dead = common::runtime(Flavour::CurrentThread, source);
    let dead_handle = dead.handle().clone();
    drop(dead);
    let spawned = Arc::new(AtomicU64::new(0));
    let watch = {
        let spawned = spawned.clone();
        source.process().watch(
            watchers_core::EventSet::FREE.union(watchers_core::EventSet::FORK),
            move |event: &watchers_core::Event<'_>| {
                if event.kind() == watchers_core::EventKind::Free {
                    drop(live_handle.spawn(std::future::pending::<()>()));
                    spawned.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), std::convert::Infallible>(())
            },
        )
    };
    let forked = h.ledger.forked();
    if blocking {
        let _guard = dead_handle.enter();
        drop(source.spawn_blocking(|| ()).unwrap());
    } else {
        drop(source.spawn_on(async {}, &dead_handle).unwrap());
    }
    watch.remove().unwrap();
    // The premise: the task was dropped inside the spawn and its `free` spawned.
    assert_eq!(spawned.load(Ordering::Relaxed), 1, "the free watcher ran");
    assert_eq!(
        h.ledger.forked() - forked,
        2,
        "the source's task and the plain task spawned by its free watcher"
    );
    drop(live);
    h.ledger.assert_balanced();
    common::table_is_empty(source);
}

#[test]
fn a_plain_spawn_from_a_watcher_of_a_task_dropped_inside_the_spawn_is_announced() {
    a_plain_spawn_from_a_watcher_of_a_task_dropped_inside_the_spawn(false);
}

#[test]
fn a_plain_spawn_from_a_watcher_of_a_blocking_task_dropped_inside_the_spawn_is_announced() {
    a_plain_spawn_from_a_watcher_of_a_task_dropped_inside_the_spawn(true);
}
