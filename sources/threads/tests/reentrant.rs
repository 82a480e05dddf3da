//! Watchers that panic or spawn threads themselves while a thread starts or ends, and a
//! closure whose panic payload panics when dropped: each task still gets `exit` (with
//! the status of how the thread really ended) and `free` exactly once, and nothing
//! deadlocks or aborts.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use watchers_core::{
    Event, EventData, EventKind, EventSet, ExitStatus, ForkError, Pid, WatcherTable,
};
use watchers_threads::{CurrentError, PANIC_EXIT_CODE, SpawnError, Threads};

type Log = Arc<Mutex<Vec<(EventKind, Pid, Option<ExitStatus>)>>>;

/// A source with a logging watcher that runs `also` after logging each event.
fn source(
    also: impl Fn(&'static Threads, &Event<'_>) + Send + Sync + 'static,
) -> (&'static Threads, Log) {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let threads: &'static Threads = Box::leak(Box::new(Threads::new(table)));
    let log = Log::default();
    let seen = log.clone();
    table
        .watcher("reentrant::log", EventSet::ALL)
        .register(move |event: &Event<'_>| {
            let status = match event.data() {
                EventData::Exit { status } => Some(*status),
                _ => None,
            };
            seen.lock()
                .unwrap()
                .push((event.kind(), event.task().pid(), status));
            also(threads, event);
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap()
        .keep();
    (threads, log)
}

fn events_of(log: &Log, pid: Pid) -> Vec<(EventKind, Option<ExitStatus>)> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _)| *p == pid)
        .map(|(kind, _, status)| (*kind, *status))
        .collect()
}

#[test]
fn a_panicking_comm_watcher_at_a_threads_start_ends_it_as_panicked() {
    let (threads, log) = source(|_, event| {
        if event.kind() == EventKind::Comm {
            panic!("comm watcher panics");
        }
    });
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let handle = threads
        .builder()
        .name("named".into())
        .spawn(move || flag.store(true, Ordering::Relaxed))
        .unwrap();
    let pid = handle.task().pid();
    // The premise: the watcher's panic ended the thread.
    let payload = handle.join().unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"comm watcher panics"));
    assert!(!ran.load(Ordering::Relaxed));
    // A thread that ended in a panic exits with the panic code, not a clean 0.
    assert_eq!(
        events_of(&log, pid),
        [
            (EventKind::Fork, None),
            (EventKind::Comm, None),
            (EventKind::Exit, Some(ExitStatus::exited(PANIC_EXIT_CODE))),
            (EventKind::Free, None),
        ]
    );
}

#[test]
fn watchers_that_spawn_at_a_threads_end_get_errors_not_deadlocks() {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let record = outcomes.clone();
    let (threads, log) = source(move |threads, event| {
        // Only for the test's own thread (the test harness's thread is adopted too).
        if matches!(event.kind(), EventKind::Exit | EventKind::Free)
            && event.task().comm() == "ending"
        {
            let spawned = threads.builder().spawn(|| ());
            record.lock().unwrap().push((event.kind(), spawned.err()));
        }
    });
    let handle = threads
        .builder()
        .name("ending".into())
        .spawn(|| ())
        .unwrap();
    let pid = handle.task().pid();
    handle.join().unwrap();
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    // On `exit` the thread's task is exiting: it cannot fork.
    assert!(
        matches!(
            outcomes[0],
            (
                EventKind::Exit,
                Some(SpawnError::Fork(ForkError::NotRunning { .. }))
            )
        ),
        "{outcomes:?}"
    );
    // On `free` its thread-locals are gone: it has no task.
    assert!(
        matches!(
            outcomes[1],
            (
                EventKind::Free,
                Some(SpawnError::Current(CurrentError::ThreadEnding))
            )
        ),
        "{outcomes:?}"
    );
    let kinds: Vec<_> = events_of(&log, pid).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Fork,
            EventKind::Comm,
            EventKind::Exit,
            EventKind::Free
        ]
    );
    // Nothing was forked from the ending thread: the process, the adopted test thread
    // and the one spawned.
    assert_eq!(threads.tasks().stats().forks, 3);
}

#[test]
fn a_fork_watcher_may_spawn_and_join_a_thread_of_its_own() {
    static ARMED: AtomicBool = AtomicBool::new(false);
    static NESTED: AtomicUsize = AtomicUsize::new(0);
    let (threads, log) = source(|threads, event| {
        // Once, for the outer thread's fork, on the spawning thread.
        if event.kind() == EventKind::Fork && ARMED.swap(false, Ordering::SeqCst) {
            let inner = threads.builder().spawn(|| 5).unwrap();
            assert_eq!(inner.join().unwrap(), 5);
            NESTED.fetch_add(1, Ordering::SeqCst);
        }
    });
    // The test's thread is adopted first, so that the armed fork is the spawn's.
    let parent = threads.current().unwrap().pid();
    ARMED.store(true, Ordering::SeqCst);
    let handle = threads.builder().spawn(|| 7).unwrap();
    let outer = handle.task().pid();
    assert_eq!(handle.join().unwrap(), 7);
    assert_eq!(
        NESTED.load(Ordering::SeqCst),
        1,
        "the nested spawn happened"
    );
    let log = log.lock().unwrap();
    let pids: std::collections::BTreeSet<_> = log
        .iter()
        .filter(|(kind, ..)| *kind == EventKind::Free)
        .map(|(_, pid, _)| *pid)
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.contains(&outer));
    assert!(!pids.contains(&parent));
    for pid in pids {
        let kinds: Vec<_> = log
            .iter()
            .filter(|(_, p, _)| *p == pid)
            .map(|(k, ..)| *k)
            .collect();
        assert_eq!(kinds, [EventKind::Fork, EventKind::Exit, EventKind::Free]);
    }
}

/// A panic payload whose destructor panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the payload's drop panics");
        }
    }
}

#[test]
fn a_panic_payload_that_panics_on_drop_reaches_join_and_the_task_ends_once() {
    let (threads, log) = source(|_, _| {});
    let handle = threads
        .builder()
        .spawn(|| std::panic::panic_any(Bomb))
        .unwrap();
    let pid = handle.task().pid();
    let payload = handle.join().unwrap_err();
    assert!(payload.is::<Bomb>());
    // Dropping it panics here, in the joining thread, as with std's threads.
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload)));
    assert!(dropped.is_err());
    assert_eq!(
        events_of(&log, pid),
        [
            (EventKind::Fork, None),
            (EventKind::Exit, Some(ExitStatus::exited(PANIC_EXIT_CODE))),
            (EventKind::Free, None),
        ]
    );
}

#[test]
fn watchers_that_panic_on_a_threads_exit_or_free_neither_abort_nor_repeat_events() {
    // Per thread name: which of its events panic.
    let (threads, log) = source(|_, event| {
        let comm = event.task().comm();
        let kind = event.kind();
        if (kind == EventKind::Exit && comm.contains("exit"))
            || (kind == EventKind::Free && comm.contains("free"))
        {
            panic!("{kind:?} watcher panics");
        }
    });
    let ends = |name: &str, closure_panics: bool| {
        let handle = threads
            .builder()
            .name(name.into())
            .spawn(move || {
                if closure_panics {
                    panic!("closure panics");
                }
            })
            .unwrap();
        let pid = handle.task().pid();
        let joined = handle.join().map_err(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap()
        });
        let kinds: Vec<_> = events_of(&log, pid).into_iter().map(|(k, _)| k).collect();
        (joined, kinds)
    };
    let all = vec![
        EventKind::Fork,
        EventKind::Comm,
        EventKind::Exit,
        EventKind::Free,
    ];
    // An `exit` watcher's panic reaches `join`; the closure's own panic goes first.
    assert_eq!(
        ends("exit", false),
        (Err("Exit watcher panics".into()), all.clone())
    );
    assert_eq!(
        ends("exit", true),
        (Err("closure panics".into()), all.clone())
    );
    // A `free` watcher's panic, in the thread's end after its closure, goes nowhere.
    assert_eq!(ends("free", false), (Ok(()), all.clone()));
    assert_eq!(
        ends("exit+free", false),
        (Err("Exit watcher panics".into()), all)
    );

    // A plain std thread, adopted, ends in the pthread key's destructor, where a panic
    // would abort the process.
    let pid = std::thread::Builder::new()
        .name("adopted exit+free".into())
        .spawn(move || threads.current().unwrap().pid())
        .unwrap()
        .join()
        .unwrap();
    let kinds: Vec<_> = events_of(&log, pid).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, [EventKind::Fork, EventKind::Exit, EventKind::Free]);
}
