//! Hostile checks of the static walk that finds a failing or panicking watcher from
//! the address of the slot it called: the same function in every slot, chains around
//! the blocks' edges, counted and uncounted tables, failures and panics inside the
//! rollback `free`, re-entrant dispatch, and tables moved after they were built.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};

use watchers_core::{
    CloneFlags, Event, EventData, EventKind, EventSet, ExitStatus, Task, Watcher, WatcherFn,
    WatcherResult, WatcherTable,
};

/// Chain lengths around the edges of the walk's blocks of eight.
const LENGTHS: [usize; 11] = [1, 2, 7, 8, 9, 15, 16, 17, 24, 25, 33];

/// Which call of an event kind (counted per kind from 0 on this thread) misbehaves.
type Trigger = Option<(EventKind, usize)>;

thread_local! {
    static SEEN: RefCell<Vec<EventKind>> = const { RefCell::new(Vec::new()) };
    /// Calls so far of fork, exit and free.
    static NTH: Cell<[usize; 3]> = const { Cell::new([0; 3]) };
    static FAIL: Cell<Trigger> = const { Cell::new(None) };
    static PANIC: Cell<Trigger> = const { Cell::new(None) };
    /// A second call that fails, or panics (for a fork and one of its rollback frees).
    static FAIL_TOO: Cell<Trigger> = const { Cell::new(None) };
    static PANIC_TOO: Cell<Trigger> = const { Cell::new(None) };
    /// The table `reenter` dispatches on.
    static TABLE: Cell<Option<&'static WatcherTable>> = const { Cell::new(None) };
    /// What the nested dispatch of `reenter` did: how many exit calls it made, and
    /// whether it returned an error, panicked or succeeded.
    static NESTED: Cell<Option<(usize, &'static str)>> = const { Cell::new(None) };
}

fn slot(kind: EventKind) -> usize {
    match kind {
        EventKind::Fork => 0,
        EventKind::Exit => 1,
        _ => 2,
    }
}

/// The one function registered under every name: the walk can tell its calls apart
/// only by the slot it was called from.
fn same(event: &Event<'_>) -> WatcherResult {
    let kind = event.kind();
    SEEN.with(|seen| seen.borrow_mut().push(kind));
    let mut nth = NTH.get();
    let n = nth[slot(kind)];
    nth[slot(kind)] += 1;
    NTH.set(nth);
    if [PANIC.get(), PANIC_TOO.get()].contains(&Some((kind, n))) {
        panic!("{kind} call {n} panics");
    }
    if [FAIL.get(), FAIL_TOO.get()].contains(&Some((kind, n))) {
        return Err(format!("{kind} call {n} fails").into());
    }
    Ok(())
}

/// On fork, dispatches the child's exit on the same table before it returns.
fn reenter(event: &Event<'_>) -> WatcherResult {
    if let EventData::Fork { .. } = event.data() {
        let table = TABLE.get().expect("a table to re-enter");
        let exit = Event::new(
            event.task(),
            EventData::Exit {
                status: ExitStatus::exited(0),
            },
        );
        let before = NTH.get()[1];
        let outcome = catch_unwind(AssertUnwindSafe(|| table.dispatch(&exit)));
        let how = match outcome {
            Ok(Ok(())) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "panic",
        };
        NESTED.set(Some((NTH.get()[1] - before, how)));
    }
    Ok(())
}

fn reset() {
    SEEN.with(|seen| seen.borrow_mut().clear());
    NTH.set([0; 3]);
    FAIL.set(None);
    PANIC.set(None);
    FAIL_TOO.set(None);
    PANIC_TOO.set(None);
    NESTED.set(None);
}

fn seen() -> Vec<EventKind> {
    SEEN.with(|seen| std::mem::take(&mut *seen.borrow_mut()))
}

fn name(i: usize) -> &'static str {
    Box::leak(format!("s{i:02}").into_boxed_str())
}

/// `len` watchers, all of them `same` (or `first` in slot 0), in index order on fork.
fn build(len: usize, counted: bool, first: WatcherFn) -> WatcherTable {
    let events = EventSet::FORK | EventSet::EXIT | EventSet::FREE;
    let table = WatcherTable::from_watchers((0..len).map(|i| {
        let func = if i == 0 { first } else { same as WatcherFn };
        Watcher::new(name(i), events, func).with_priority(1000 - i as i32)
    }))
    .expect("distinct names");
    if counted {
        table
    } else {
        table.without_call_counts()
    }
}

/// The table moved twice after it was built (into a vector, out into a box): the
/// slots it finds positions from are on the heap and do not move with it.
fn built_and_moved(len: usize, counted: bool, first: WatcherFn) -> Box<WatcherTable> {
    let tables = vec![build(len, counted, first)];
    Box::new(tables.into_iter().next().expect("one table"))
}

fn fork_of<'a>(parent: &'a Task, child: &'a Task) -> Event<'a> {
    Event::new(
        child,
        EventData::Fork {
            parent,
            flags: CloneFlags::empty(),
        },
    )
}

fn calls_and_errors(table: &WatcherTable) -> (Vec<u64>, Vec<u64>) {
    let stats = table.watchers();
    (
        stats.iter().map(|w| w.calls).collect(),
        stats.iter().map(|w| w.errors).collect(),
    )
}

/// Calls expected of each watcher after one fork stopped at `at` of `len`: its fork
/// (counted tables only: an uncounted one counts no dispatches) and a rollback `free`.
fn expected_calls(len: usize, at: usize, counted: bool) -> Vec<u64> {
    (0..len)
        .map(|i| u64::from(counted && i <= at) + u64::from(i < at))
        .collect()
}

/// The message of the panic that `f` lets through.
fn panic_of<R>(f: impl FnOnce() -> R) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f))
        .err()
        .expect("a panic reaches the caller");
    payload
        .downcast_ref::<String>()
        .expect("a formatted message")
        .clone()
}

fn one_error_at(len: usize, at: usize) -> Vec<u64> {
    (0..len).map(|i| u64::from(i == at)).collect()
}

#[test]
fn the_same_function_in_every_slot_is_told_apart_by_its_slot() {
    let (parent, child) = (Task::detached(1), Task::detached(2));
    let fork = fork_of(&parent, &child);
    for counted in [true, false] {
        for len in LENGTHS {
            for at in 0..len {
                let mut expected = vec![EventKind::Fork; at + 1];
                expected.extend(vec![EventKind::Free; at]);
                for panics in [false, true] {
                    let case = format!("{len}/{at}/{counted}/{panics}");
                    reset();
                    let table = built_and_moved(len, counted, same);
                    if panics {
                        PANIC.set(Some((EventKind::Fork, at)));
                        assert_eq!(
                            panic_of(|| table.dispatch(&fork)),
                            format!("fork call {at} panics")
                        );
                    } else {
                        FAIL.set(Some((EventKind::Fork, at)));
                        let error = table.dispatch(&fork).expect_err("refused");
                        assert_eq!(error.watcher, name(at), "{case}");
                    }
                    assert_eq!(seen(), expected, "{case}");
                    let (calls, errors) = calls_and_errors(&table);
                    assert_eq!(calls, expected_calls(len, at, counted), "{case}");
                    assert_eq!(errors, one_error_at(len, at), "{case}");
                }

                // Notified, the same fork runs every watcher and undoes nothing.
                reset();
                let table = built_and_moved(len, counted, same);
                FAIL.set(Some((EventKind::Fork, at)));
                let error = table.notify(&fork).expect_err("reported");
                assert_eq!((error.watcher.as_ref(), error.failures), (name(at), 1));
                assert_eq!(seen(), vec![EventKind::Fork; len], "notify {len}/{at}");
                reset();
                PANIC.set(Some((EventKind::Fork, at)));
                let outcome = catch_unwind(AssertUnwindSafe(|| table.notify(&fork)));
                assert!(outcome.is_err(), "the panic continues");
                assert_eq!(
                    seen(),
                    vec![EventKind::Fork; len],
                    "notify panic {len}/{at}"
                );
                let (_, errors) = calls_and_errors(&table);
                let twice: Vec<u64> = (0..len).map(|i| 2 * u64::from(i == at)).collect();
                assert_eq!(errors, twice, "notify {len}/{at}/{counted}");
            }
        }
    }
    reset();
}

#[test]
fn an_exit_failing_at_two_slots_of_one_function_reports_the_first_and_the_count() {
    let child = Task::detached(2);
    let exit = Event::new(
        &child,
        EventData::Exit {
            status: ExitStatus::exited(0),
        },
    );
    for counted in [true, false] {
        for len in LENGTHS.into_iter().filter(|&len| len >= 2) {
            for at in 0..len - 1 {
                reset();
                let table = built_and_moved(len, counted, same);
                // Exit runs last first: call `at` is watcher `len - 1 - at`.
                FAIL.set(Some((EventKind::Exit, at)));
                PANIC.set(Some((EventKind::Exit, len - 1)));
                let outcome = catch_unwind(AssertUnwindSafe(|| table.dispatch(&exit)));
                assert!(outcome.is_err(), "the last call's panic continues");
                assert_eq!(seen(), vec![EventKind::Exit; len], "{len}/{at}");
                let (_, errors) = calls_and_errors(&table);
                let expected: Vec<u64> = (0..len)
                    .map(|i| u64::from(i == len - 1 - at) + u64::from(i == 0))
                    .collect();
                assert_eq!(errors, expected, "{len}/{at}/{counted}");

                // Two panics: the rest of the chain runs inside the first one's
                // unwinding, catches the second, and the first continues.
                reset();
                PANIC.set(Some((EventKind::Exit, at)));
                PANIC_TOO.set(Some((EventKind::Exit, len - 1)));
                let message = panic_of(|| table.dispatch(&exit));
                assert_eq!(
                    message,
                    format!("exit call {at} panics"),
                    "the first continues"
                );
                assert_eq!(seen(), vec![EventKind::Exit; len], "{len}/{at}");
                let twice: Vec<u64> = expected.iter().map(|e| 2 * e).collect();
                assert_eq!(calls_and_errors(&table).1, twice, "{len}/{at}/{counted}");

                reset();
                FAIL.set(Some((EventKind::Exit, at)));
                let error = table.dispatch(&exit).expect_err("reported");
                assert_eq!(
                    (error.watcher.as_ref(), error.failures),
                    (name(len - 1 - at), 1)
                );
                assert_eq!(seen(), vec![EventKind::Exit; len]);
            }
        }
    }
    reset();
}

#[test]
fn a_failure_or_a_panic_inside_the_rollback_free_spares_the_other_frees() {
    let (parent, child) = (Task::detached(1), Task::detached(2));
    let fork = fork_of(&parent, &child);
    for counted in [true, false] {
        for len in [2, 8, 9, 17] {
            for at in 1..len {
                for bad_free in 0..at {
                    // Free call `bad_free` goes to watcher `at - 1 - bad_free`.
                    let mut errors = one_error_at(len, at);
                    errors[at - 1 - bad_free] += 1;
                    let mut expected = vec![EventKind::Fork; at + 1];
                    expected.extend(vec![EventKind::Free; at]);
                    let bad = Some((EventKind::Free, bad_free));
                    // The fork refused or panicking; the free failing or panicking.
                    for (fork_panics, free_panics) in [(false, false), (false, true), (true, true)]
                    {
                        let case = format!("{len}/{at}/{bad_free}/{counted}/{fork_panics}");
                        reset();
                        let table = build(len, counted, same);
                        let fork_trigger = Some((EventKind::Fork, at));
                        if fork_panics {
                            PANIC.set(fork_trigger);
                        } else {
                            FAIL.set(fork_trigger);
                        }
                        if free_panics {
                            PANIC_TOO.set(bad);
                        } else {
                            FAIL_TOO.set(bad);
                        }
                        if free_panics {
                            // Every free still runs; then the first panic continues.
                            let first = if fork_panics {
                                format!("fork call {at} panics")
                            } else {
                                format!("free call {bad_free} panics")
                            };
                            assert_eq!(panic_of(|| table.dispatch(&fork)), first, "{case}");
                        } else {
                            let error = table.dispatch(&fork).expect_err("refused");
                            assert_eq!(error.watcher, name(at), "{case}");
                        }
                        assert_eq!(seen(), expected, "{case}");
                        assert_eq!(calls_and_errors(&table).1, errors, "{case}");
                    }
                }
            }
        }
    }
    reset();
}

#[test]
fn a_watcher_that_dispatches_on_its_own_table_mid_walk_leaves_the_outer_walk_intact() {
    let (parent, child) = (Task::detached(1), Task::detached(2));
    let fork = fork_of(&parent, &child);
    for counted in [true, false] {
        for len in [2, 9, 17] {
            for at in 1..len {
                for nested in ["error", "panic"] {
                    reset();
                    let table: &'static WatcherTable =
                        Box::leak(built_and_moved(len, counted, reenter));
                    TABLE.set(Some(table));
                    // The nested exit runs watchers len-1..1 (`same`) and 0 (`reenter`,
                    // which does nothing on exit): its call 0 misbehaves.
                    let trigger = Some((EventKind::Exit, 0));
                    if nested == "error" {
                        FAIL.set(trigger);
                    } else {
                        PANIC.set(trigger);
                    }
                    // …then the outer fork is refused at `at`, or panics there.
                    let outcome = if nested == "error" {
                        PANIC.set(Some((EventKind::Fork, at - 1)));
                        catch_unwind(AssertUnwindSafe(|| table.dispatch(&fork)))
                            .expect_err("the fork's panic");
                        None
                    } else {
                        FAIL.set(Some((EventKind::Fork, at - 1)));
                        Some(table.dispatch(&fork).expect_err("refused"))
                    };
                    // `same` counts its fork calls from slot 1: call at-1 is watcher at.
                    if let Some(error) = outcome {
                        assert_eq!(error.watcher, name(at), "{len}/{at}");
                    }
                    assert_eq!(NESTED.get(), Some((len - 1, nested)), "{len}/{at}");
                    let mut errors = one_error_at(len, at);
                    errors[len - 1] += 1;
                    assert_eq!(calls_and_errors(table).1, errors, "{len}/{at}/{nested}");
                    let kinds = seen();
                    let frees = kinds.iter().filter(|&&k| k == EventKind::Free).count();
                    // Watcher 0 (`reenter`) logs nothing: frees of 1..at only.
                    assert_eq!(frees, at - 1, "{len}/{at}/{nested}");
                }
            }
        }
    }
    TABLE.set(None);
    reset();
}

#[test]
fn an_event_without_static_watchers_calls_nothing() {
    let (parent, child) = (Task::detached(1), Task::detached(2));
    let fork = fork_of(&parent, &child);
    for counted in [true, false] {
        reset();
        let table = WatcherTable::from_watchers([Watcher::new("exit only", EventSet::EXIT, same)])
            .expect("valid");
        let table = if counted {
            table
        } else {
            table.without_call_counts()
        };
        FAIL.set(Some((EventKind::Fork, 0)));
        table.dispatch(&fork).expect("no fork watcher");
        table.notify(&fork).expect("no fork watcher");
        assert!(seen().is_empty());
        assert_eq!(table.dispatched(EventKind::Fork), 0);
    }
    reset();
}

/// On fork, dispatches the child's exit on the same table and lets its panic through.
fn reenter_uncaught(event: &Event<'_>) -> WatcherResult {
    if let EventData::Fork { .. } = event.data() {
        let table = TABLE.get().expect("a table to re-enter");
        let exit = Event::new(
            event.task(),
            EventData::Exit {
                status: ExitStatus::exited(0),
            },
        );
        table.dispatch(&exit)?;
    }
    Ok(())
}

#[test]
fn a_nested_walk_that_panics_through_a_later_watcher_unwinds_both_walks() {
    let (parent, child) = (Task::detached(1), Task::detached(2));
    let fork = fork_of(&parent, &child);
    for counted in [true, false] {
        for len in [2, 8, 9, 17] {
            for at in 0..len - 1 {
                reset();
                let table: &'static WatcherTable =
                    Box::leak(built_and_moved(len, counted, reenter_uncaught));
                TABLE.set(Some(table));
                // The nested exit's call `at` (watcher len-1-at) panics, through the
                // outer fork's watcher 0: the nested walk finishes its exit, and the
                // outer one counts watcher 0 and undoes nothing (none succeeded before).
                PANIC.set(Some((EventKind::Exit, at)));
                let message = panic_of(|| table.dispatch(&fork));
                assert_eq!(message, format!("exit call {at} panics"));
                assert_eq!(seen(), vec![EventKind::Exit; len - 1], "{len}/{at}");
                let mut errors = one_error_at(len, len - 1 - at);
                errors[0] += 1;
                assert_eq!(calls_and_errors(table).1, errors, "{len}/{at}/{counted}");
            }
        }
    }
    TABLE.set(None);
    reset();
}
