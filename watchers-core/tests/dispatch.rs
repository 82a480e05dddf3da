//! Dispatch semantics on tables built from explicit lists: order, fork rollback, panics,
//! error recording and counters.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};

use watchers_core::{
    CloneFlags, Event, EventData, EventKind, EventSet, ExitStatus, ForkError, FreezeError,
    Location, Task, TaskTable, Watcher, WatcherFn, WatcherResult, WatcherTable,
};

thread_local! {
    /// What the watchers saw on this thread: (watcher index, event kind).
    static LOG: RefCell<Vec<(usize, EventKind)>> = const { RefCell::new(Vec::new()) };
    /// The watcher that refuses forks on this thread.
    static FAIL_AT: Cell<Option<usize>> = const { Cell::new(None) };
    /// The watcher that panics on this thread (any event but free).
    static PANIC_AT: Cell<Option<usize>> = const { Cell::new(None) };
    /// The watcher that returns an error on every event but fork.
    static ERR_AT: Cell<Option<usize>> = const { Cell::new(None) };
}

fn record(index: usize, event: &Event<'_>) -> WatcherResult {
    let kind = event.kind();
    LOG.with(|log| log.borrow_mut().push((index, kind)));
    if PANIC_AT.get() == Some(index) && kind != EventKind::Free {
        panic!("watcher {index} panics");
    }
    if kind == EventKind::Fork && FAIL_AT.get() == Some(index) {
        return Err(format!("watcher {index} refuses").into());
    }
    if kind != EventKind::Fork && ERR_AT.get() == Some(index) {
        return Err(format!("watcher {index} fails on {kind}").into());
    }
    Ok(())
}

macro_rules! indexed_watchers {
    ($($name:ident = $index:literal),* $(,)?) => {
        $(fn $name(event: &Event<'_>) -> WatcherResult { record($index, event) })*
        const FUNCS: [WatcherFn; 10] = [$($name),*];
    };
}

indexed_watchers!(
    w0 = 0,
    w1 = 1,
    w2 = 2,
    w3 = 3,
    w4 = 4,
    w5 = 5,
    w6 = 6,
    w7 = 7,
    w8 = 8,
    w9 = 9
);

const NAMES: [&str; 10] = ["w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9"];

/// Ten watchers that run w0..w9 on fork; the odd ones do not ask for `free`.
fn chain() -> &'static WatcherTable {
    first(NAMES.len()).leak()
}

/// The log of a fork stopped at watcher `at`: its `fork` reached watchers 0 to `at`, then
/// the even ones before `at` (those that asked for `free`) got `free`, last first.
fn stopped_at(at: usize) -> Vec<(usize, EventKind)> {
    let forks = (0..=at).map(|i| (i, EventKind::Fork));
    let frees = (0..at)
        .rev()
        .filter(|i| i.is_multiple_of(2))
        .map(|i| (i, EventKind::Free));
    forks.chain(frees).collect()
}

fn take_log() -> Vec<(usize, EventKind)> {
    LOG.with(|log| std::mem::take(&mut *log.borrow_mut()))
}

fn reset() {
    take_log();
    FAIL_AT.set(None);
    PANIC_AT.set(None);
    ERR_AT.set(None);
}

#[test]
fn order_is_priority_then_name_and_teardown_is_reversed() {
    fn nop(_: &Event<'_>) -> WatcherResult {
        Ok(())
    }
    let all = EventSet::FORK | EventSet::EXEC | EventSet::EXIT | EventSet::FREE;
    let table = WatcherTable::from_watchers([
        Watcher::new("b", all, nop),
        Watcher::new("low", all, nop).with_priority(-5),
        Watcher::new("a", all, nop),
        Watcher::new("high", all, nop).with_priority(7),
        Watcher::new("exec-only", EventSet::EXEC, nop).with_priority(100),
    ])
    .unwrap();
    let names = |kind| table.order(kind).map(Watcher::name).collect::<Vec<_>>();
    assert_eq!(names(EventKind::Fork), ["high", "a", "b", "low"]);
    assert_eq!(
        names(EventKind::Exec),
        ["exec-only", "high", "a", "b", "low"]
    );
    assert_eq!(names(EventKind::Exit), ["low", "b", "a", "high"]);
    assert_eq!(names(EventKind::Free), ["low", "b", "a", "high"]);
    assert!(names(EventKind::Uid).is_empty());
    // The introspection list is in fork order with every watcher.
    let listed: Vec<_> = table.watchers().into_iter().map(|w| w.name).collect();
    assert_eq!(listed, ["exec-only", "high", "a", "b", "low"]);
}

#[test]
fn order_does_not_depend_on_declaration_order() {
    fn nop(_: &Event<'_>) -> WatcherResult {
        Ok(())
    }
    let watchers = [
        Watcher::new("c", EventSet::FORK, nop),
        Watcher::new("a", EventSet::FORK, nop).with_priority(1),
        Watcher::new("b", EventSet::FORK, nop).with_priority(1),
    ];
    let forward = WatcherTable::from_watchers(watchers).unwrap();
    let mut reversed = watchers;
    reversed.reverse();
    let backward = WatcherTable::from_watchers(reversed).unwrap();
    let names = |t: &WatcherTable| {
        t.order(EventKind::Fork)
            .map(Watcher::name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&forward), ["a", "b", "c"]);
    assert_eq!(names(&forward), names(&backward));
}

#[test]
fn duplicate_names_are_refused_with_both_locations() {
    fn nop(_: &Event<'_>) -> WatcherResult {
        Ok(())
    }
    let at = |line| Location {
        module_path: "demo",
        file: "src/demo.rs",
        line,
    };
    let error = WatcherTable::from_watchers([
        Watcher::new("same", EventSet::FORK, nop).with_location(at(3)),
        Watcher::new("same", EventSet::EXIT, nop).with_location(at(9)),
    ])
    .unwrap_err();
    assert!(matches!(&error, FreezeError::DuplicateNames(d) if d[0].name == "same"));
    let message = error.to_string();
    assert!(message.contains("src/demo.rs:3"), "{message}");
    assert!(message.contains("src/demo.rs:9"), "{message}");
}

#[test]
fn an_empty_event_set_is_refused() {
    fn nop(_: &Event<'_>) -> WatcherResult {
        Ok(())
    }
    let error = WatcherTable::from_watchers([Watcher::new("none", EventSet::EMPTY, nop)]);
    assert!(matches!(
        error,
        Err(FreezeError::NoEvents { name: "none", .. })
    ));
}

#[test]
fn rollback_frees_exactly_the_watchers_that_succeeded_at_every_position() {
    for (fail_at, &refuser) in NAMES.iter().enumerate() {
        reset();
        let table = chain();
        let tasks = TaskTable::with_table(table);
        FAIL_AT.set(Some(fail_at));

        let error = tasks
            .fork(tasks.init().pid(), CloneFlags::empty())
            .expect_err("the fork is refused");
        let ForkError::Watcher(error) = error else {
            panic!("expected a watcher error, got {error}");
        };
        assert_eq!(error.watcher, refuser);
        assert_eq!(error.event, EventKind::Fork);

        assert_eq!(take_log(), stopped_at(fail_at), "failure at w{fail_at}");

        // The child never became visible and its pid is free again.
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks.stats().failed_forks, 1);
        FAIL_AT.set(None);
        let child = tasks.fork(tasks.init().pid(), CloneFlags::empty()).unwrap();
        assert_eq!(child.pid().get(), 3, "pids move on, as the kernel's do");

        let stats = table.watchers();
        for (i, watcher) in stats.iter().enumerate() {
            let forks = if i <= fail_at { 2 } else { 1 };
            let rollback_free = u64::from(i < fail_at && i.is_multiple_of(2));
            assert_eq!(watcher.calls, forks + rollback_free, "calls of w{i}");
            assert_eq!(watcher.errors, u64::from(i == fail_at), "errors of w{i}");
        }
    }
}

#[test]
fn a_panic_in_the_middle_of_fork_rolls_back_then_unwinds_and_the_table_stays_usable() {
    reset();
    let table = chain();
    let tasks = TaskTable::with_table(table);
    PANIC_AT.set(Some(5));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        tasks.fork(tasks.init().pid(), CloneFlags::empty())
    }));
    let payload = outcome.expect_err("the panic reaches the caller");
    assert_eq!(
        payload.downcast_ref::<String>().unwrap(),
        "watcher 5 panics"
    );

    let mut expected: Vec<_> = (0..=5).map(|i| (i, EventKind::Fork)).collect();
    expected.extend([4, 2, 0].map(|i| (i, EventKind::Free)));
    assert_eq!(take_log(), expected);
    assert_eq!(tasks.len(), 1, "the embryo is gone");
    assert_eq!(table.watchers()[5].errors, 1);

    PANIC_AT.set(None);
    let child = tasks.fork(tasks.init().pid(), CloneFlags::empty()).unwrap();
    assert_eq!(
        take_log(),
        (0..10).map(|i| (i, EventKind::Fork)).collect::<Vec<_>>()
    );
    tasks.exit(child.pid(), 0).unwrap();
    let mut teardown: Vec<_> = (0..10).rev().map(|i| (i, EventKind::Exit)).collect();
    teardown.extend([8, 6, 4, 2, 0].map(|i| (i, EventKind::Free)));
    assert_eq!(take_log(), teardown);
}

/// The first `n` watchers of [`chain`].
fn first(n: usize) -> WatcherTable {
    WatcherTable::from_watchers((0..n).map(|i| {
        let events = if i.is_multiple_of(2) {
            EventSet::FORK | EventSet::EXEC | EventSet::EXIT | EventSet::FREE
        } else {
            EventSet::FORK | EventSet::EXEC | EventSet::EXIT
        };
        // Priorities fall with the index, so fork order is w0..w9 whatever the names.
        Watcher::new(NAMES[i], events, FUNCS[i]).with_priority(100 - i as i32)
    }))
    .expect("distinct names")
}

/// The walk is unrolled in blocks of eight, each call site with a landing pad of its
/// own: a panic at any position, in a full block or in the remainder, is pinned on the
/// watcher that panicked (its error count), a fork rolls back exactly the ones before
/// it, and an exit still reaches every other watcher.
#[test]
fn a_panic_at_any_position_is_pinned_on_its_watcher() {
    for n in 1..=10 {
        for at in 0..n {
            reset();
            let table = first(n);
            let task = Task::detached(9);
            let parent = Task::detached(1);
            let fork = Event::new(
                &task,
                EventData::Fork {
                    parent: &parent,
                    flags: CloneFlags::empty(),
                },
            );
            PANIC_AT.set(Some(at));
            let outcome = catch_unwind(AssertUnwindSafe(|| table.dispatch(&fork)));
            assert!(outcome.is_err(), "n {n}, at {at}: the panic unwinds");
            assert_eq!(take_log(), stopped_at(at), "n {n}, at {at}: fork");

            let exit = Event::new(
                &task,
                EventData::Exit {
                    status: ExitStatus::exited(0),
                },
            );
            let outcome = catch_unwind(AssertUnwindSafe(|| table.dispatch(&exit)));
            assert!(outcome.is_err(), "n {n}, at {at}: the panic unwinds");
            let mut seen: Vec<usize> = take_log().into_iter().map(|(i, _)| i).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n {n}, at {at}: exit");

            let errors: Vec<u64> = table.watchers().iter().map(|w| w.errors).collect();
            let mut expected = vec![0; n];
            expected[at] = 2;
            assert_eq!(errors, expected, "n {n}, at {at}: errors");
        }
    }
    reset();
}

#[test]
fn other_events_run_every_watcher_and_return_the_first_error() {
    reset();
    let table = chain();
    let tasks = TaskTable::with_table(table);
    let child = tasks.fork(tasks.init().pid(), CloneFlags::empty()).unwrap();
    take_log();

    ERR_AT.set(Some(3));
    let error = tasks.exec(child.pid(), "/bin/sh").unwrap_err();
    assert!(error.to_string().contains("w3"), "{error}");
    assert_eq!(
        take_log(),
        (0..10).map(|i| (i, EventKind::Exec)).collect::<Vec<_>>()
    );
    assert_eq!(child.comm(), "sh", "the exec happened all the same");
    assert_eq!(table.watchers()[3].errors, 1);
}

#[test]
fn a_panic_on_exit_still_reaches_the_other_watchers_and_frees_the_task() {
    reset();
    let table = chain();
    let tasks = TaskTable::with_table(table);
    let child = tasks.fork(tasks.init().pid(), CloneFlags::empty()).unwrap();
    take_log();

    PANIC_AT.set(Some(7));
    let outcome = catch_unwind(AssertUnwindSafe(|| tasks.exit(child.pid(), 1)));
    assert!(outcome.is_err());
    let mut expected: Vec<_> = (0..10).rev().map(|i| (i, EventKind::Exit)).collect();
    expected.extend([8, 6, 4, 2, 0].map(|i| (i, EventKind::Free)));
    assert_eq!(take_log(), expected);
    assert!(tasks.get(child.pid()).is_none(), "init reaped the orphan");
}

#[test]
fn an_event_nobody_wants_calls_nothing_and_counts_nothing() {
    reset();
    let table = chain();
    let task = Task::detached(9);
    let event = Event::new(&task, EventData::Sid { sid: task.pid() });
    table.dispatch(&event).unwrap();
    assert!(take_log().is_empty());
    assert_eq!(table.dispatched(EventKind::Sid), 0);
    assert_eq!(
        table.wanted_events(),
        EventSet::FORK | EventSet::EXEC | EventSet::EXIT | EventSet::FREE
    );
}

#[test]
fn notify_runs_every_fork_watcher_without_rollback() {
    reset();
    let table = chain();
    let parent = Task::detached(1);
    let child = Task::detached(2);
    FAIL_AT.set(Some(4));
    let event = Event::new(
        &child,
        EventData::Fork {
            parent: &parent,
            flags: CloneFlags::empty(),
        },
    );
    let error = table.notify(&event).unwrap_err();
    assert_eq!(error.watcher, "w4");
    assert_eq!(
        take_log(),
        (0..10).map(|i| (i, EventKind::Fork)).collect::<Vec<_>>()
    );
}

#[test]
fn exit_status_round_trips_through_the_event() {
    reset();
    let table = chain();
    let tasks = TaskTable::with_table(table);
    let child = tasks.fork(tasks.init().pid(), CloneFlags::empty()).unwrap();
    tasks.exit(child.pid(), 3).unwrap();
    assert_eq!(child.exit_status(), Some(ExitStatus::exited(3)));
    assert_eq!(child.exit_status().and_then(ExitStatus::code), Some(3));
}

/// The `Ok` of a dispatch is one zero word (the error is boxed).
#[test]
fn dispatch_result_is_one_word() {
    use watchers_core::DispatchError;
    assert_eq!(
        size_of::<Result<(), DispatchError>>(),
        size_of::<usize>(),
        "Result<(), DispatchError> grew past one word"
    );
}

/// The routing word of a table covers per-task watchers attached after the table was
/// built, and a table built while one is attached, for an event that no static or
/// runtime watcher wants; a table without dispatch counts routes the same way.
#[test]
fn per_task_watchers_are_reached_through_every_routing_word() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let before = WatcherTable::from_watchers([]).expect("empty table");
    let uncounted = WatcherTable::from_watchers([])
        .expect("empty table")
        .without_call_counts();
    let task = Task::detached(40);
    let other = Task::detached(41);
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let watch = task.watch(EventSet::COMM, move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        Ok::<(), std::convert::Infallible>(())
    });
    let after = WatcherTable::from_watchers([]).expect("empty table");
    let comm = |task| Event::new(task, EventData::Comm { old: "a", new: "b" });
    for table in [&before, &uncounted, &after] {
        table.dispatch(&comm(&task)).expect("no failure");
        // Another task's event goes the slow way and reaches nothing.
        table.dispatch(&comm(&other)).expect("no failure");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    watch.remove().expect("not in flight");
    before.dispatch(&comm(&task)).expect("no failure");
    assert_eq!(seen.load(Ordering::SeqCst), 3, "detached");
}
