//! Runtime ("module") watchers and per-task watchers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use watchers_core::{
    CloneFlags, Event, EventData, EventKind, EventSet, Pid, RegisterError, Task, TaskTable,
    Watcher, WatcherResult, WatcherStats, WatcherTable,
};

type Log = Arc<Mutex<Vec<String>>>;

fn logger(log: &Log, name: &'static str) -> impl Fn(&Event<'_>) -> WatcherResult + use<> {
    let log = log.clone();
    move |event| {
        log.lock().unwrap().push(format!("{name}:{}", event.kind()));
        Ok(())
    }
}

fn empty_table() -> &'static WatcherTable {
    WatcherTable::from_watchers([]).unwrap().leak()
}

static STATIC_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn static_b(event: &Event<'_>) -> WatcherResult {
    STATIC_LOG
        .lock()
        .unwrap()
        .push(format!("b:{}", event.kind()));
    Ok(())
}

#[test]
fn runtime_watchers_merge_with_static_ones_by_priority_then_name() {
    let table =
        WatcherTable::from_watchers([Watcher::new("b", EventSet::FORK | EventSet::EXIT, static_b)])
            .unwrap()
            .leak();
    let log: Log = Arc::default();
    let both = EventSet::FORK | EventSet::EXIT;
    let a = table
        .watcher("a", both)
        .register(logger(&log, "a"))
        .unwrap();
    let c = table
        .watcher("c", both)
        .register(logger(&log, "c"))
        .unwrap();
    let first = table
        .watcher("z-first", both)
        .priority(5)
        .register(logger(&log, "z"))
        .unwrap();

    let tasks = TaskTable::with_table(table);
    let child = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.exit(child.pid(), 0).unwrap();
    // Static `b` logs elsewhere; the runtime ones' relative order must be z, a, c on fork
    // and c, a, z on exit, with `b` between a and c (checked through the listing).
    assert_eq!(
        *log.lock().unwrap(),
        ["z:fork", "a:fork", "c:fork", "c:exit", "a:exit", "z:exit"]
    );
    let order: Vec<_> = table
        .watchers()
        .into_iter()
        .map(|w| (w.name, w.runtime))
        .collect();
    assert_eq!(
        order,
        [
            ("z-first".to_owned(), true),
            ("a".to_owned(), true),
            ("b".to_owned(), false),
            ("c".to_owned(), true)
        ]
    );
    assert_eq!(table.watchers()[0].calls, 2);
    assert_eq!(*STATIC_LOG.lock().unwrap(), ["b:fork", "b:exit"]);
    drop((a, c, first));
    assert_eq!(table.watchers().len(), 1, "only the static watcher is left");
}

/// A blank name is refused at run time as `#[task_watcher(name = "")]` is at compile
/// time: it would name nothing in `taskwatch list` or an error.
#[test]
fn a_blank_runtime_name_is_refused() {
    let table = empty_table();
    let ok = |_: &Event<'_>| -> WatcherResult { Ok(()) };
    for blank in ["", "  ", "\n"] {
        assert_eq!(
            table
                .watcher(blank, EventSet::EXIT)
                .register(ok)
                .unwrap_err(),
            RegisterError::EmptyName,
            "{blank:?}"
        );
    }
    assert!(table.watchers().is_empty());
}

#[test]
fn names_must_be_unique_across_static_and_runtime_watchers() {
    let table = WatcherTable::from_watchers([Watcher::new("taken", EventSet::FORK, static_b)])
        .unwrap()
        .leak();
    let ok = |_: &Event<'_>| -> WatcherResult { Ok(()) };
    assert_eq!(
        table
            .watcher("taken", EventSet::EXIT)
            .register(ok)
            .unwrap_err(),
        RegisterError::DuplicateName("taken".into())
    );
    let first = table.watcher("mine", EventSet::EXIT).register(ok).unwrap();
    assert!(table.watcher("mine", EventSet::EXIT).register(ok).is_err());
    assert!(matches!(
        table.watcher("nothing", EventSet::EMPTY).register(ok),
        Err(RegisterError::NoEvents(_))
    ));
    first.unregister().unwrap();
    // The name is free again once unregistered.
    table
        .watcher("mine", EventSet::EXIT)
        .register(ok)
        .unwrap()
        .keep();
}

#[test]
fn after_unregister_returns_the_closure_is_never_called_again() {
    let table = empty_table();
    let tasks = TaskTable::with_table(table);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let registration = table
        .watcher("counter", EventSet::FORK)
        .register(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<(), String>(())
        })
        .unwrap();
    tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    registration.unregister().unwrap();
    tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        table.wanted_events(),
        EventSet::EMPTY,
        "the fast path is back"
    );
}

#[test]
fn a_task_whose_fork_an_unregistered_watcher_saw_gets_no_free_from_it() {
    let table = empty_table();
    let tasks = TaskTable::with_table(table);
    let log: Log = Arc::default();
    let registration = table
        .watcher("tracker", EventSet::FORK | EventSet::FREE)
        .register(logger(&log, "tracker"))
        .unwrap();
    let child = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    registration.unregister().unwrap();
    tasks.exit(child.pid(), 0).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["tracker:fork"],
        "unregister is its teardown"
    );
}

#[test]
fn unregistering_from_inside_its_own_callback_does_not_deadlock() {
    let table = empty_table();
    let tasks = TaskTable::with_table(table);
    let slot: Arc<Mutex<Option<watchers_core::Registration<'static>>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (inside, counted) = (slot.clone(), calls.clone());
    let registration = table
        .watcher("one-shot", EventSet::FORK)
        .register(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            if let Some(me) = inside.lock().unwrap().take() {
                me.unregister().unwrap();
            }
            Ok::<(), String>(())
        })
        .unwrap();
    *slot.lock().unwrap() = Some(registration);
    tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_failing_runtime_watcher_rolls_back_static_and_runtime_watchers_alike() {
    static STATIC_FREES: AtomicUsize = AtomicUsize::new(0);
    fn counted(event: &Event<'_>) -> WatcherResult {
        if event.kind() == EventKind::Free {
            STATIC_FREES.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
    let table = WatcherTable::from_watchers([Watcher::new(
        "static-first",
        EventSet::FORK | EventSet::FREE,
        counted,
    )
    .with_priority(10)])
    .unwrap()
    .leak();
    let log: Log = Arc::default();
    let _early = table
        .watcher("runtime-early", EventSet::FORK | EventSet::FREE)
        .priority(5)
        .register(logger(&log, "early"))
        .unwrap();
    let _refuser = table
        .watcher("runtime-refuser", EventSet::FORK)
        .register(|_| Err::<(), _>("no"))
        .unwrap();
    let tasks = TaskTable::with_table(table);
    let error = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap_err();
    assert!(error.to_string().contains("runtime-refuser"), "{error}");
    assert_eq!(*log.lock().unwrap(), ["early:fork", "early:free"]);
    assert_eq!(STATIC_FREES.load(Ordering::SeqCst), 1);
    let refuser = stats_of(table, "runtime-refuser");
    assert_eq!((refuser.calls, refuser.errors), (1, 1));
}

#[test]
fn a_runtime_watcher_that_panics_is_counted_as_called_and_failed() {
    let table = empty_table();
    let _panicker = table
        .watcher("runtime-panicker", EventSet::EXEC)
        .register(|_| -> WatcherResult { panic!("watcher panics on purpose") })
        .unwrap();
    let tasks = TaskTable::with_table(table);
    let child = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tasks.exec(child.pid(), "/bin/sh")
    }));
    assert!(outcome.is_err(), "the panic keeps unwinding");
    let stats = stats_of(table, "runtime-panicker");
    assert_eq!((stats.calls, stats.errors), (1, 1));
}

/// The statistics of the watcher called `name`.
fn stats_of(table: &WatcherTable, name: &str) -> WatcherStats {
    table
        .watchers()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no watcher `{name}`"))
}

/// Several threads dispatch while others register and unregister in a loop. Each closure
/// checks a flag that is cleared as soon as its `unregister` returns, and counts itself
/// in flight; any call after unregister, or in flight when it returns, or a closure not
/// yet dropped when it returns, is a violation.
///
/// The run lasts until there were enough dispatches, registrations, and unregisters that
/// overlapped a dispatch in progress after the closure had been called, whatever the
/// build profile or the load: the test makes its own premise true, then asserts it.
#[test]
fn stress_unregister_never_leaves_a_call_behind() {
    const DISPATCHERS: usize = 3;
    const REGISTRARS: usize = 2;
    const MIN_DISPATCHES: u64 = 200_000;
    const MIN_REGISTRATIONS: u64 = 2_000;
    const MIN_OVERLAPS: u64 = 500;
    const TIME_LIMIT: Duration = Duration::from_secs(240);
    let table = empty_table();
    let stress = Stress::default();
    let started = Instant::now();
    let task = Task::detached(100);
    let enough = |stress: &Stress| {
        stress.dispatched.load(Ordering::Relaxed) >= MIN_DISPATCHES
            && stress.registrations.load(Ordering::Relaxed) >= MIN_REGISTRATIONS
            && stress.overlaps.load(Ordering::Relaxed) >= MIN_OVERLAPS
    };
    let should_stop = |stress: &Stress| {
        if enough(stress) || started.elapsed() > TIME_LIMIT {
            stress.stop.store(true, Ordering::Relaxed);
        }
        stress.stop.load(Ordering::Relaxed)
    };

    std::thread::scope(|scope| {
        for _ in 0..DISPATCHERS {
            scope.spawn(|| {
                let event = Event::new(
                    &task,
                    EventData::Exec {
                        filename: "/bin/true",
                    },
                );
                while !should_stop(&stress) {
                    stress.dispatching.fetch_add(1, Ordering::SeqCst);
                    let _ = table.dispatch(&event);
                    stress.dispatching.fetch_sub(1, Ordering::SeqCst);
                    stress.dispatched.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for registrar in 0..REGISTRARS {
            let stress = &stress;
            scope.spawn(move || {
                // The previous registration stays until the next one is in, so a runtime
                // watcher is always registered and every dispatch takes the merged path.
                let mut previous: Option<Watched<'_>> = None;
                let mut round = 0u64;
                while !should_stop(stress) {
                    round += 1;
                    let watched = Watched::register(
                        table,
                        stress,
                        format!("stress-{registrar}-{round}"),
                        (round % 3) as i32,
                    );
                    stress.registrations.fetch_add(1, Ordering::Relaxed);
                    if round.is_multiple_of(16) {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    if let Some(previous) = previous.replace(watched) {
                        previous.unregister_and_check(stress);
                    }
                }
                if let Some(previous) = previous {
                    previous.unregister_and_check(stress);
                }
            });
        }
    });

    let count = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
    let (dispatched, registrations) = (count(&stress.dispatched), count(&stress.registrations));
    let (overlaps, calls) = (count(&stress.overlaps), count(&stress.calls));
    println!(
        "stress: {dispatched} dispatches, {registrations} registrations, {overlaps} unregisters \
         during a dispatch, {calls} runtime calls, {} violations, {:?}",
        count(&stress.violations),
        started.elapsed()
    );
    assert_eq!(count(&stress.violations), 0);
    assert!(
        enough(&stress),
        "the premise was not reached in {TIME_LIMIT:?}: {dispatched} dispatches, \
         {registrations} registrations, {overlaps} overlapping unregisters"
    );
}

#[derive(Default)]
struct Stress {
    stop: AtomicBool,
    dispatched: AtomicU64,
    /// Dispatches in progress right now.
    dispatching: AtomicU64,
    registrations: AtomicU64,
    /// Unregisters that began while a dispatch was in progress, of a closure that had
    /// been called.
    overlaps: AtomicU64,
    calls: AtomicU64,
    /// Shared with the closures, which count calls made after their unregister returned.
    violations: Arc<AtomicU64>,
}

/// One registration of the stress test and what its closure reports.
struct Watched<'t> {
    registration: watchers_core::Registration<'t>,
    live: Arc<AtomicBool>,
    in_flight: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    dropped: Arc<AtomicBool>,
}

/// Sets its flag when the closure that owns it is dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl<'t> Watched<'t> {
    fn register(table: &'t WatcherTable, stress: &Stress, name: String, priority: i32) -> Self {
        let live = Arc::new(AtomicBool::new(true));
        let in_flight = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let (flag, busy, counted) = (live.clone(), in_flight.clone(), calls.clone());
        let on_drop = DropFlag(dropped.clone());
        let bad = stress.violations.clone();
        let registration = table
            .watcher(name, EventSet::EXEC)
            .priority(priority)
            .register(move |_| {
                let _owned = &on_drop;
                busy.fetch_add(1, Ordering::SeqCst);
                if !flag.load(Ordering::SeqCst) {
                    bad.fetch_add(1, Ordering::SeqCst);
                }
                counted.fetch_add(1, Ordering::Relaxed);
                std::hint::spin_loop();
                busy.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), String>(())
            })
            .unwrap();
        Watched {
            registration,
            live,
            in_flight,
            calls,
            dropped,
        }
    }

    fn unregister_and_check(self, stress: &Stress) {
        if stress.dispatching.load(Ordering::SeqCst) > 0 && self.calls.load(Ordering::SeqCst) > 0 {
            stress.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        if self.registration.unregister().is_err() {
            stress.violations.fetch_add(1, Ordering::SeqCst);
        }
        if self.in_flight.load(Ordering::SeqCst) != 0 || !self.dropped.load(Ordering::SeqCst) {
            stress.violations.fetch_add(1, Ordering::SeqCst);
        }
        self.live.store(false, Ordering::SeqCst);
        stress
            .calls
            .fetch_add(self.calls.load(Ordering::SeqCst), Ordering::Relaxed);
    }
}

#[test]
fn per_task_watchers_see_their_task_and_the_forks_of_its_children() {
    let table = empty_table();
    let tasks = TaskTable::with_table(table);
    let shell = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let other = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let seen: Arc<Mutex<Vec<(EventKind, u32)>>> = Arc::default();
    let log = seen.clone();
    let watch = shell.watch(EventSet::ALL, move |event| {
        log.lock()
            .unwrap()
            .push((event.kind(), event.task().pid().get()));
        Ok::<(), String>(())
    });
    let child = tasks.fork(shell.pid(), CloneFlags::empty()).unwrap();
    tasks.exec(child.pid(), "/bin/ls").unwrap(); // the child's own event: not seen
    tasks.exit(child.pid(), 0).unwrap(); // not seen either; a zombie of the shell's
    tasks.exec(other.pid(), "/bin/ls").unwrap(); // another task's: not seen
    tasks.setuid(shell.pid(), 1000).unwrap();
    assert!(watch.is_attached());
    // Its parent is init: freed at once, after init reaped the child.
    tasks.exit(shell.pid(), 0).unwrap();
    let shell_pid = shell.pid().get();
    // A watcher of `fork` pairs each child's fork with that child's `free`, and gets no
    // `free` of its own task, whose `fork` it never saw.
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (EventKind::Fork, child.pid().get()),
            (EventKind::Uid, shell_pid),
            (EventKind::Exit, shell_pid),
            (EventKind::Free, child.pid().get())
        ]
    );
    assert!(!watch.is_attached(), "dropped at the task's free");
}

#[test]
fn a_dropped_per_task_handle_detaches_and_a_failing_one_can_refuse_a_fork() {
    let table = empty_table();
    let tasks = TaskTable::with_table(table);
    let shell = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let watch = shell.watch(EventSet::EXEC, move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok::<(), String>(())
    });
    tasks.exec(shell.pid(), "/bin/a").unwrap();
    drop(watch);
    tasks.exec(shell.pid(), "/bin/b").unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let limit = shell.watch(EventSet::FORK, |_| Err::<(), _>("fork limit reached"));
    let error = tasks.fork(shell.pid(), CloneFlags::empty()).unwrap_err();
    assert!(error.to_string().contains("fork limit reached"), "{error}");
    assert_eq!(limit.errors(), 1);
    assert_eq!(tasks.children(shell.pid()), []);
    limit.keep();
}

/// A per-task watcher gets only the events it asked for: one of `exec` and `exit` is
/// not called with its task's `free`.
#[test]
fn a_per_task_watcher_that_did_not_ask_for_free_gets_no_free() {
    let table = empty_table();
    let tasks = TaskTable::with_table(table);
    let shell = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let seen: Arc<Mutex<Vec<(&str, EventKind)>>> = Arc::default();
    for (name, events) in [
        ("exec+exit", EventSet::EXEC | EventSet::EXIT),
        ("free", EventSet::FREE),
    ] {
        let log = seen.clone();
        shell
            .watch(events, move |event| {
                log.lock().unwrap().push((name, event.kind()));
                Ok::<(), String>(())
            })
            .keep();
    }
    tasks.exec(shell.pid(), "/bin/a").unwrap();
    // init's child: exited, it is reaped and freed at once.
    tasks.exit(shell.pid(), 0).unwrap();
    assert_eq!(shell.state(), watchers_core::TaskState::Dead);
    // The premise: the task's free reached its per-task watchers (the one of `free`).
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("exec+exit", EventKind::Exec),
            ("exec+exit", EventKind::Exit),
            ("free", EventKind::Free),
        ],
        "the watcher of exec and exit was called with a free it did not ask for"
    );
}
