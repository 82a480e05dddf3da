//! Tasks spawned through the source, on current-thread and multi-thread runtimes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Flavour, REFUSER, SERIAL, harness};
use watchers_core::{EventKind, EventSet, TaskState};
use watchers_tokio::{Outcome, SpawnError};

const TASKS: u64 = 100_000;

/// 100,000 spawns from inside a task, every third refused: the refused futures never
/// run, the rest complete; every identity forked is freed exactly once.
fn refusing_watcher(flavour: Flavour) {
    let h = harness();
    let source = h.source;
    let ledger = h.ledger.clone();
    let runtime = common::runtime(flavour, source);
    let ran = Arc::new(AtomicU64::new(0));
    let body = {
        let ran = ran.clone();
        let ledger = ledger.clone();
        async move {
            ledger.armed.store(true, Ordering::Relaxed);
            ledger.busy.store(true, Ordering::Relaxed);
            let mut handles = Vec::new();
            let mut refused = 0u64;
            for i in 0..TASKS {
                let ran = ran.clone();
                match source.spawn(async move {
                    ran.fetch_add(1, Ordering::Relaxed);
                }) {
                    Ok(handle) => handles.push(handle),
                    Err(error) => {
                        assert_eq!(error.watcher(), Some(REFUSER), "{error}");
                        refused += 1;
                    }
                }
                // Let the children run meanwhile (on this worker too).
                if i % 1000 == 999 {
                    tokio::task::yield_now().await;
                }
            }
            ledger.busy.store(false, Ordering::Relaxed);
            let accepted = handles.len() as u64;
            for handle in handles {
                handle.await.unwrap();
            }
            (accepted, refused)
        }
    };
    let (accepted, refused) = runtime
        .block_on(async { source.spawn(body).unwrap().await })
        .unwrap();
    drop(runtime);

    assert_eq!(accepted + refused, TASKS);
    // The watcher also refuses runtime threads started after it was armed (a blocking
    // thread, a worker restarted): those cannot be refused and are counted as unheeded.
    assert_eq!(
        refused + source.unheeded_refusals(),
        ledger.refused.load(Ordering::Relaxed)
    );
    // Serials run in order of fork; a third of them, give or take the spawner and
    // runtime threads before arming, are refused.
    assert!(refused.abs_diff(TASKS / 3) <= 2, "{refused} refused");
    assert_eq!(
        ran.load(Ordering::Relaxed),
        accepted,
        "a refused future ran"
    );
    // The premise: tasks ended while others were still being spawned.
    assert!(ledger.frees_while_busy.load(Ordering::Relaxed) > 0);
    ledger.assert_balanced();
    // Every accepted task and the spawner completed; runtime threads exit with code 0.
    let threads = ledger.forked() as u64 - accepted - refused - 1;
    assert_eq!(
        ledger.exited(Outcome::Completed) as u64,
        accepted + 1 + threads
    );
    let stats = source.tasks().stats();
    assert_eq!(stats.failed_forks, refused);
    assert_eq!(stats.tasks, 2, "only init and the process remain");
}

#[test]
fn hundred_thousand_spawns_with_a_refusing_watcher_current_thread() {
    refusing_watcher(Flavour::CurrentThread);
}

#[test]
fn hundred_thousand_spawns_with_a_refusing_watcher_multi_thread() {
    refusing_watcher(Flavour::MultiThread);
}

/// Aborted tasks, one aborted before it was ever polled, and tasks left pending when the
/// runtime shuts down, all exit cancelled and are freed once.
fn aborts(flavour: Flavour) {
    let h = harness();
    let source = h.source;
    let ledger = h.ledger.clone();
    let runtime = common::runtime(flavour, source);
    let started = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let unpolled = source.spawn(std::future::pending::<()>()).unwrap();
        unpolled.abort();
        assert!(unpolled.await.unwrap_err().is_cancelled());

        let mut handles = Vec::new();
        for _ in 0..200 {
            let started = started.clone();
            handles.push(
                source
                    .spawn(async move {
                        started.fetch_add(1, Ordering::Relaxed);
                        std::future::pending::<()>().await
                    })
                    .unwrap(),
            );
        }
        while started.load(Ordering::Relaxed) < 200 {
            tokio::task::yield_now().await;
        }
        for handle in handles.drain(..100) {
            handle.abort();
            let task = handle.task().clone();
            assert!(handle.await.unwrap_err().is_cancelled());
            // The future was dropped before the handle saw the cancellation.
            assert_eq!(task.state(), TaskState::Dead);
        }
        // The other hundred stay pending until the runtime drops them.
    });
    assert_eq!(ledger.exited(Outcome::Cancelled), 101);
    drop(runtime);
    assert_eq!(ledger.exited(Outcome::Cancelled), 201);
    assert_eq!(ledger.exited(Outcome::Completed), ledger.forked() - 201);
    ledger.assert_balanced();
    common::table_is_empty(source);
}

#[test]
fn aborted_and_dropped_tasks_exit_cancelled_current_thread() {
    aborts(Flavour::CurrentThread);
}

#[test]
fn aborted_and_dropped_tasks_exit_cancelled_multi_thread() {
    aborts(Flavour::MultiThread);
}

/// Panicking futures and blocking closures exit with the panic code; the panic still
/// reaches the join handle.
fn panics(flavour: Flavour) {
    let h = harness();
    let source = h.source;
    let ledger = h.ledger.clone();
    let runtime = common::runtime(flavour, source);
    runtime.block_on(async {
        for i in 0..20 {
            let handle = if i % 2 == 0 {
                source
                    .spawn(async { panic!("expected test panic") })
                    .unwrap()
            } else {
                source
                    .spawn_blocking(|| panic!("expected test panic"))
                    .unwrap()
            };
            assert!(handle.await.unwrap_err().is_panic());
        }
    });
    assert_eq!(ledger.exited(Outcome::Panicked), 20);
    drop(runtime);
    ledger.assert_balanced();
    common::table_is_empty(source);
}

#[test]
fn panicking_tasks_exit_with_the_panic_code_current_thread() {
    panics(Flavour::CurrentThread);
}

#[test]
fn panicking_tasks_exit_with_the_panic_code_multi_thread() {
    panics(Flavour::MultiThread);
}

/// Code in a future or a blocking closure finds its task and the slot values its `fork`
/// watchers set; a task spawned from inside a task is its child.
fn current_task(flavour: Flavour) {
    let h = harness();
    let source = h.source;
    let ledger = h.ledger.clone();
    let runtime = common::runtime(flavour, source);
    assert!(source.current().is_none());
    runtime.block_on(async {
        assert!(
            source.current().is_none(),
            "block_on is no task of the source"
        );
        let outer = source
            .spawn(async move {
                let me = source.current().unwrap();
                let serial = *SERIAL.get(&me).unwrap();
                let child = source
                    .spawn(async move { *SERIAL.get(&source.current().unwrap()).unwrap() })
                    .unwrap();
                let child_task = child.task().clone();
                let child_serial = child.await.unwrap();
                let blocking = source
                    .spawn_blocking(move || *SERIAL.get(&source.current().unwrap()).unwrap())
                    .unwrap();
                let blocking_serial = blocking.await.unwrap();
                (me, serial, child_task, child_serial, blocking_serial)
            })
            .unwrap();
        let outer_task = outer.task().clone();
        let (me, serial, child, child_serial, blocking_serial) = outer.await.unwrap();
        assert!(Arc::ptr_eq(&me, &outer_task));
        let parents = ledger.parents.lock().unwrap();
        assert_eq!(parents[&serial], source.process().pid());
        assert_eq!(parents[&child_serial], me.pid());
        assert_eq!(parents[&blocking_serial], me.pid());
        assert_eq!(child.tgid(), source.process().pid());
        assert!(child.is_thread());
    });
    drop(runtime);
    ledger.assert_balanced();
}

#[test]
fn code_in_a_task_finds_its_task_and_slots_current_thread() {
    current_task(Flavour::CurrentThread);
}

#[test]
fn code_in_a_task_finds_its_task_and_slots_multi_thread() {
    current_task(Flavour::MultiThread);
}

/// Per-task watchers: a task's own watcher sees its exit and free; a watcher on a
/// parent refuses the fork of its children.
fn per_task_watchers(flavour: Flavour) {
    let h = harness();
    let source = h.source;
    let runtime = common::runtime(flavour, source);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let refused = runtime.block_on(async move {
        source
            .spawn(async move {
                let me = source.current().unwrap();
                me.watch(EventSet::EXIT | EventSet::FREE, move |event| {
                    log.lock().unwrap().push(event.kind());
                    if let watchers_core::EventData::Exit { status } = event.data() {
                        assert_eq!(Outcome::of(*status), Some(Outcome::Completed));
                    }
                    Ok::<(), String>(())
                })
                .keep();
                let _no_children = me.watch(EventSet::FORK, |_| Err::<(), _>("no children"));
                let ran = Arc::new(AtomicU64::new(0));
                let child_ran = ran.clone();
                let refused = source.spawn(async move {
                    child_ran.fetch_add(1, Ordering::Relaxed);
                });
                tokio::task::yield_now().await;
                assert_eq!(ran.load(Ordering::Relaxed), 0);
                matches!(refused, Err(SpawnError::Fork(_)))
            })
            .unwrap()
            .await
            .unwrap()
    });
    assert!(refused);
    assert_eq!(*seen.lock().unwrap(), [EventKind::Exit, EventKind::Free]);
    drop(runtime);
}

#[test]
fn per_task_watchers_work_current_thread() {
    per_task_watchers(Flavour::CurrentThread);
}

#[test]
fn per_task_watchers_work_multi_thread() {
    per_task_watchers(Flavour::MultiThread);
}

/// A `JoinSet` holds tasks of the source; a refusal leaves it unchanged.
fn join_set(flavour: Flavour) {
    let h = harness();
    let source = h.source;
    let ledger = h.ledger.clone();
    let runtime = common::runtime(flavour, source);
    runtime.block_on(async {
        ledger.armed.store(true, Ordering::Relaxed);
        let mut set = tokio::task::JoinSet::new();
        let mut spawned = 0;
        for i in 0..30u64 {
            match source.spawn_in(&mut set, async move { i }) {
                Ok(_) => spawned += 1,
                Err(error) => assert_eq!(error.watcher(), Some(REFUSER)),
            }
        }
        assert_eq!(set.len(), spawned);
        // Every third serial is refused; a runtime thread started meanwhile (a multi-thread
        // runtime's worker or blocking thread) takes a serial too, and its refusal is not
        // heeded.
        let refused = 30 - spawned as u64;
        assert_eq!(
            refused + source.unheeded_refusals(),
            ledger.refused.load(Ordering::Relaxed)
        );
        assert!(refused.abs_diff(10) <= 1, "{refused} refused");
        let mut done = 0;
        while let Some(result) = set.join_next().await {
            result.unwrap();
            done += 1;
        }
        assert_eq!(done, spawned);
        for _ in 0..30 {
            let _ = source.spawn_in(&mut set, std::future::pending::<u64>());
        }
        set.shutdown().await;
    });
    assert_eq!(ledger.exited(Outcome::Cancelled), 20);
    drop(runtime);
    ledger.assert_balanced();
    common::table_is_empty(source);
}

#[test]
fn join_set_tasks_are_tasks_current_thread() {
    join_set(Flavour::CurrentThread);
}

#[test]
fn join_set_tasks_are_tasks_multi_thread() {
    join_set(Flavour::MultiThread);
}

#[test]
fn spawning_outside_a_runtime_is_an_error_and_forks_nothing() {
    let h = harness();
    let error = h.source.spawn(async {}).unwrap_err();
    assert!(matches!(error, SpawnError::NoRuntime), "{error}");
    assert!(matches!(
        h.source.spawn_blocking(|| ()),
        Err(SpawnError::NoRuntime)
    ));
    assert_eq!(h.ledger.forked(), 0);
    assert_eq!(h.source.tasks().stats().forks, 1, "only the process");
}
