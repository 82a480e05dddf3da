//! Teardown of closures: when runtime and per-task watchers' closures are dropped, that no
//! teardown path aborts or deadlocks, and that `free` pairs with a `fork` the watcher saw.
//!
//! Every test that a regression could hang runs under [`within`], so a hang fails.

use std::cell::RefCell;
use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use watchers_core::{
    CloneFlags, Event, EventData, EventKind, EventSet, ForkError, Pid, Registration, Task,
    TaskSlot, TaskState, TaskTable, TaskWatch, UnregisterError, Watcher, WatcherResult,
    WatcherTable,
};

/// Runs `f` on a thread of its own and fails if it does not finish in time.
fn within<T: Send + 'static>(seconds: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    match finished.recv_timeout(Duration::from_secs(seconds)) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung: not finished in {seconds} s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the test thread panicked"),
    }
}

fn empty_table() -> &'static WatcherTable {
    WatcherTable::from_watchers([]).unwrap().leak()
}

/// Counts the drops of the closure that owns it.
struct Drops(Arc<AtomicUsize>);

impl Drop for Drops {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn exec_of(task: &Task) -> Event<'_> {
    Event::new(
        task,
        EventData::Exec {
            filename: "/bin/true",
        },
    )
}

const TLS_CHILD: &str = "WATCHERS_TEARDOWN_TLS_CHILD";

thread_local! {
    static HELD: RefCell<Option<Registration<'static>>> = const { RefCell::new(None) };
}

/// The process survives a `Registration` dropped by a thread-local's destructor that runs
/// after the library's own thread-locals were destroyed, and the closure is dropped. The
/// scenario runs in a child process, so that an abort is reported instead of ending
/// the test run.
#[test]
fn a_registration_dropped_by_a_thread_local_destructor_does_not_abort() {
    if std::env::var_os(TLS_CHILD).is_some() {
        let table = empty_table();
        let drops = Arc::new(AtomicUsize::new(0));
        let owned = Drops(drops.clone());
        std::thread::spawn(move || {
            // Touched first, so destroyed last: after any thread-local the dispatch uses.
            HELD.with(|_| {});
            let registration = table
                .watcher("tls", EventSet::EXEC)
                .register(move |_| {
                    let _owned = &owned;
                    Ok::<(), String>(())
                })
                .unwrap();
            let task = Task::detached(10);
            table.dispatch(&exec_of(&task)).unwrap();
            HELD.with(|held| *held.borrow_mut() = Some(registration));
        })
        .join()
        .unwrap();
        println!("survived; closure drops: {}", drops.load(Ordering::SeqCst));
        return;
    }
    let stdout = run_in_child(
        "a_registration_dropped_by_a_thread_local_destructor_does_not_abort",
        TLS_CHILD,
    );
    assert!(
        stdout.contains("survived; closure drops: 1"),
        "the child's output: {stdout}"
    );
}

/// Runs the test `name` alone in a child process with `marker` set (the test's own
/// scenario when it sees it), fails if the child failed or aborted, and returns what
/// it printed.
fn run_in_child(name: &str, marker: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(marker, "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the child process failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

static OUTER: TaskSlot<u64> = TaskSlot::new();
static INNER: TaskSlot<u64> = TaskSlot::new();

/// `make` may use the same task's slots, this one included.
#[test]
fn get_or_insert_with_nested_on_the_same_task_does_not_hang() {
    within(30, || {
        let task = Task::detached(11);
        let outer = OUTER.get_or_insert_with(&task, || *INNER.get_or_insert_with(&task, || 7) + 1);
        assert_eq!((*outer, *INNER.get(&task).unwrap()), (8, 7));
        // The same slot from inside its own `make`: the inner value is stored first
        // and kept; the outer one is dropped.
        let task = Task::detached(12);
        let kept = OUTER.get_or_insert_with(&task, || *OUTER.get_or_insert_with(&task, || 1) + 1);
        assert_eq!(*kept, 1);
    });
}

/// Dropping the handle drops the closure at once (not at the task's next event or its
/// `free`), and a closure whose `Drop` uses the same task (attaches another watcher,
/// reads a slot) does not deadlock, whether dropped with its handle or at `free`.
#[test]
fn a_task_watch_drops_its_closure_with_the_handle_and_outside_every_lock() {
    static STATE: TaskSlot<u32> = TaskSlot::new();

    /// On drop, attaches another watcher to the task and reads its slot.
    struct TouchesTask {
        task: Arc<Task>,
        drops: Arc<AtomicUsize>,
    }
    impl Drop for TouchesTask {
        fn drop(&mut self) {
            let _ = STATE.get(&self.task);
            self.task
                .watch(EventSet::EXEC, |_| Ok::<(), String>(()))
                .keep();
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    within(30, || {
        let tasks = TaskTable::with_table(empty_table());
        let shell = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        STATE.set(&shell, 1);
        let drops = Arc::new(AtomicUsize::new(0));
        let touches = TouchesTask {
            task: shell.clone(),
            drops: drops.clone(),
        };
        let watch = shell.watch(EventSet::EXEC, move |_| {
            let _owned = &touches;
            Ok::<(), String>(())
        });
        tasks.exec(shell.pid(), "/bin/a").unwrap();
        drop(watch);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped with its handle");

        // Kept until the task's free, then dropped there (with no lock held).
        let touches = TouchesTask {
            task: shell.clone(),
            drops: drops.clone(),
        };
        shell
            .watch(EventSet::EXEC, move |_| {
                let _owned = &touches;
                Ok::<(), String>(())
            })
            .keep();
        tasks.exit(shell.pid(), 0).unwrap();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2,
            "dropped at the task's free"
        );
    });
}

/// A closure attached to a task that was already freed would never be called: it is
/// dropped before `watch` returns and the handle says it is not attached (it used to
/// stay attached, counted as a per-task watcher that sends every table's events down
/// the slow path, until the task's memory went away).
#[test]
fn watching_a_freed_task_drops_the_closure_at_once() {
    within(30, || {
        let table = empty_table();
        let tasks = TaskTable::with_table(table);
        let shell = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        tasks.exit(shell.pid(), 0).unwrap();
        assert_eq!(shell.state(), watchers_core::TaskState::Dead);

        let drops = Arc::new(AtomicUsize::new(0));
        let owned = Drops(drops.clone());
        let watch = shell.watch(EventSet::EXEC | EventSet::FREE, move |_| {
            let _owned = &owned;
            Ok::<(), String>(())
        });
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped inside `watch`");
        assert!(!watch.is_attached());
        watch.keep();
        drop(shell);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped once");
    });
}

/// Says which thread dropped the closure that owns it.
struct DropSite(Arc<Mutex<Option<std::thread::ThreadId>>>);

impl Drop for DropSite {
    fn drop(&mut self) {
        let mut site = self.0.lock().unwrap();
        assert!(site.is_none(), "dropped twice");
        *site = Some(std::thread::current().id());
    }
}

/// `watch` racing the task's `free` on another thread: either the watcher is attached
/// before the `free` begins, and then it gets that `free` and the free drops it, or it
/// is not attached at all and `watch` drops it. A watch that found the task alive used
/// to be able to publish its watcher just after the `free`'s dispatch had read the
/// task's watchers: attached, never given its `free`, and dropped by the free.
/// A closure for no event could never be called either: it is dropped at once, and no
/// event of the task goes looking for it.
#[test]
fn watching_no_event_drops_the_closure_at_once() {
    within(30, || {
        let calls = Arc::new(AtomicUsize::new(0));
        let table = WatcherTable::from_watchers([]).unwrap().leak();
        let tasks = TaskTable::with_table(table);
        let shell = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let owned = Drops(drops.clone());
        let counted = calls.clone();
        let watch = shell.watch(EventSet::EMPTY, move |_| {
            let _owned = &owned;
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<(), String>(())
        });
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped inside `watch`");
        assert!(!watch.is_attached());
        tasks.exec(shell.pid(), "/bin/true").unwrap();
        tasks.exit(shell.pid(), 0).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        drop(watch);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped once");
    });
}

#[test]
fn a_watch_racing_the_tasks_free_gets_that_free_or_is_not_attached() {
    within(240, || {
        let tasks = Arc::new(TaskTable::with_table(empty_table()));
        let shell = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let reaper = std::thread::current().id();
        let (mut attached, mut refused) = (0, 0);
        for round in 0..20_000u32 {
            let task = tasks.fork(shell.pid(), CloneFlags::empty()).unwrap();
            tasks.exit(task.pid(), 0).unwrap(); // a zombie until the shell reaps it
            let site = Arc::new(Mutex::new(None));
            let frees = Arc::new(AtomicUsize::new(0));
            let start = Arc::new(Barrier::new(2));
            let watcher = {
                let (task, frees, start) = (task.clone(), frees.clone(), start.clone());
                let owned = DropSite(site.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let watch = task.watch(EventSet::FREE, move |event| {
                        let _owned = &owned;
                        assert_eq!(event.kind(), EventKind::Free);
                        frees.fetch_add(1, Ordering::SeqCst);
                        Ok::<(), String>(())
                    });
                    watch.keep();
                })
            };
            start.wait();
            // Vary which side is first.
            for _ in 0..round % 64 {
                std::hint::spin_loop();
            }
            tasks.reap(shell.pid(), task.pid()).unwrap();
            watcher.join().unwrap();
            let dropped_by = site.lock().unwrap().expect("the closure is dropped");
            let got_free = frees.load(Ordering::SeqCst);
            if dropped_by == reaper {
                // Attached: the free detached it.
                assert_eq!(got_free, 1, "round {round}: attached, but no free");
                attached += 1;
            } else {
                assert_eq!(got_free, 0, "round {round}: refused, but called");
                refused += 1;
            }
        }
        // The premise: both orders happened.
        assert!(
            attached > 0 && refused > 0,
            "{attached} watches attached in time, {refused} refused"
        );
    });
}

/// A handle dropped while its closure runs on another thread waits for that call, and
/// the closure is dropped before the drop returns; no call starts afterwards.
#[test]
fn a_task_watch_dropped_during_a_call_on_another_thread_waits_then_drops_the_closure() {
    within(30, || {
        let task = Arc::new(Task::detached(13));
        let drops = Arc::new(AtomicUsize::new(0));
        let (entered, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let returned = Arc::new(AtomicBool::new(false));
        let owned = Drops(drops.clone());
        let (inside, leave, done) = (entered.clone(), release.clone(), returned.clone());
        let watch = task.watch(EventSet::EXEC, move |_| {
            let _owned = &owned;
            inside.wait();
            leave.wait();
            done.store(true, Ordering::SeqCst);
            Ok::<(), String>(())
        });
        let table = empty_table();
        let dispatcher = {
            let task = task.clone();
            std::thread::spawn(move || table.dispatch(&exec_of(&task)))
        };
        entered.wait();
        let dropper = std::thread::spawn(move || {
            drop(watch);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !dropper.is_finished(),
            "the drop waits for the call in flight"
        );
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        release.wait();
        dropper.join().unwrap();
        assert!(returned.load(Ordering::SeqCst));
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "dropped when the drop returned"
        );
        dispatcher.join().unwrap().unwrap();
        table.dispatch(&exec_of(&task)).unwrap();
    });
}

/// Drops a closure slowly: says it started, then finishes only when told to.
struct SlowDrop {
    started: Mutex<mpsc::Sender<()>>,
    finish: Mutex<mpsc::Receiver<()>>,
    drops: Arc<AtomicUsize>,
}

impl SlowDrop {
    /// The value, a receiver of "its drop started" and a sender of "finish the drop".
    fn new(drops: &Arc<AtomicUsize>) -> (SlowDrop, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (started, on_start) = mpsc::channel();
        let (finish, on_finish) = mpsc::channel();
        let value = SlowDrop {
            started: Mutex::new(started),
            finish: Mutex::new(on_finish),
            drops: drops.clone(),
        };
        (value, on_start, finish)
    }
}

impl Drop for SlowDrop {
    fn drop(&mut self) {
        let _ = self.started.lock().unwrap().send(());
        let _ = self
            .finish
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// A per-task watcher has two closers: the task's `free` and the handle. The `free` (on
/// another thread) is dropping the closure when the handle is dropped: the handle's drop
/// returns only once that drop has finished.
#[test]
fn a_task_watch_dropped_while_its_tasks_free_drops_the_closure_waits_for_that_drop() {
    within(30, || {
        let tasks = Arc::new(TaskTable::with_table(empty_table()));
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let (owned, drop_started, finish_drop) = SlowDrop::new(&drops);
        let watch = task.watch(EventSet::EXEC, move |_| {
            let _owned = &owned;
            Ok::<(), String>(())
        });
        let exiter = {
            let (tasks, pid) = (tasks.clone(), task.pid());
            // The parent is init: the exit frees the task, which drops the closure.
            std::thread::spawn(move || tasks.exit(pid, 0))
        };
        drop_started.recv().unwrap();
        let dropper = {
            let drops = drops.clone();
            std::thread::spawn(move || {
                drop(watch);
                drops.load(Ordering::SeqCst)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        // The premise: the handle is dropped while the free's drop is in progress.
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        assert!(
            !dropper.is_finished(),
            "the handle's drop waits for the free's drop of the closure"
        );
        finish_drop.send(()).unwrap();
        assert_eq!(
            dropper.join().unwrap(),
            1,
            "the closure was dropped when the handle's drop returned"
        );
        exiter.join().unwrap().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped once");
    });
}

/// Once `unregister` returns the closure has been dropped, even though a dispatcher in
/// the middle of another watcher still holds a snapshot that lists it.
#[test]
fn unregister_drops_the_closure_even_while_a_dispatcher_holds_a_snapshot() {
    within(30, || {
        let table = empty_table();
        let (entered, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let (inside, leave) = (entered.clone(), release.clone());
        // Runs first (higher priority) and holds the dispatcher there.
        let holder = table
            .watcher("holder", EventSet::EXEC)
            .priority(10)
            .register(move |_| {
                inside.wait();
                leave.wait();
                Ok::<(), String>(())
            })
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let (owned, counted) = (Drops(drops.clone()), calls.clone());
        let module = table
            .watcher("module", EventSet::EXEC)
            .register(move |_| {
                let _owned = &owned;
                counted.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            })
            .unwrap();
        let dispatcher = std::thread::spawn(move || {
            let task = Task::detached(14);
            table.dispatch(&exec_of(&task))
        });
        entered.wait();
        module.unregister().unwrap();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "dropped before unregister returned"
        );
        release.wait();
        dispatcher.join().unwrap().unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "never called after unregister"
        );
        holder.unregister().unwrap();
    });
}

/// Unregistered from inside its own closure, the closure is dropped when the outermost
/// call of it returns: not inside the call (nor when a nested call of it returns), and
/// before the next watcher of the same dispatch runs.
#[test]
fn unregistered_from_inside_the_closure_is_dropped_when_its_outermost_call_returns() {
    within(30, || {
        let table = empty_table();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot: Arc<Mutex<Option<Registration<'static>>>> = Arc::default();
        let seen_inside = Arc::new(Mutex::new(Vec::new()));
        let (owned, me, during, counted) = (
            Drops(drops.clone()),
            slot.clone(),
            seen_inside.clone(),
            drops.clone(),
        );
        let depth = Arc::new(AtomicUsize::new(0));
        let registration = table
            .watcher("self-removing", EventSet::EXEC)
            .register(move |event: &Event<'_>| {
                let _owned = &owned;
                let level = depth.fetch_add(1, Ordering::SeqCst);
                if level == 0 {
                    // A nested dispatch: the inner call unregisters.
                    let _ = table.dispatch(event);
                } else if let Some(registration) = me.lock().unwrap().take() {
                    registration.unregister().unwrap();
                    during.lock().unwrap().push(counted.load(Ordering::SeqCst));
                    // Unregistered: a dispatch from here does not call it again.
                    let _ = table.dispatch(event);
                }
                during.lock().unwrap().push(counted.load(Ordering::SeqCst));
                depth.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), String>(())
            })
            .unwrap();
        *slot.lock().unwrap() = Some(registration);
        // Runs after it in every dispatch, and records the drops it sees.
        let after = Arc::new(Mutex::new(Vec::new()));
        let (seen_after, counted) = (after.clone(), drops.clone());
        let next = table
            .watcher("next", EventSet::EXEC)
            .priority(-1)
            .register(move |_| {
                seen_after
                    .lock()
                    .unwrap()
                    .push(counted.load(Ordering::SeqCst));
                Ok::<(), String>(())
            })
            .unwrap();
        let task = Task::detached(15);
        table.dispatch(&exec_of(&task)).unwrap();
        // Not dropped after unregister, nor when the inner call returned, nor in the
        // outer call; dropped once the outer call returned.
        assert_eq!(*seen_inside.lock().unwrap(), [0, 0, 0]);
        // The dispatches nested in it, then the outermost one, which runs `next` once
        // the outermost call returned.
        assert_eq!(*after.lock().unwrap(), [0, 0, 1]);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        next.unregister().unwrap();
        table.dispatch(&exec_of(&task)).unwrap();
        assert_eq!(seen_inside.lock().unwrap().len(), 3, "never called again");
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

/// Two closures, each removing the other from inside itself on its own thread: one of
/// the two removals reports the cycle instead of both waiting for ever, the other
/// completes, and both closures are dropped. `attach(i, body)` attaches closure `i`
/// running `body`; `enter(i)` makes the calling thread run closure `i`.
fn remove_each_other<H: Send + 'static>(
    attach: impl Fn(usize, Box<dyn Fn() + Send + Sync>) -> H,
    remove: fn(H) -> Result<(), UnregisterError>,
    enter: fn(usize),
) {
    type Slot<H> = Arc<Mutex<Option<H>>>;
    let slots: [Slot<H>; 2] = Default::default();
    let both_inside = Arc::new(Barrier::new(2));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let drops = Arc::new(AtomicUsize::new(0));
    let handles: Vec<H> = (0..2)
        .map(|me| {
            let other = slots[1 - me].clone();
            let (barrier, outcomes, owned) =
                (both_inside.clone(), outcomes.clone(), Drops(drops.clone()));
            attach(
                me,
                Box::new(move || {
                    let _owned = &owned;
                    barrier.wait();
                    let other = other.lock().unwrap().take();
                    if let Some(other) = other {
                        // Not inside `outcomes`' lock: the other thread needs it too.
                        let outcome = remove(other);
                        outcomes.lock().unwrap().push(outcome);
                    }
                }),
            )
        })
        .collect();
    for (slot, handle) in slots.iter().zip(handles) {
        *slot.lock().unwrap() = Some(handle);
    }
    let threads: Vec<_> = (0..2)
        .map(|i| std::thread::spawn(move || enter(i)))
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    outcomes.sort_by_key(Result::is_err);
    assert!(
        matches!(
            outcomes.as_slice(),
            [Ok(()), Err(UnregisterError::WouldDeadlock(_))]
        ),
        "{outcomes:?}"
    );
    assert_eq!(drops.load(Ordering::SeqCst), 2, "both closures dropped");
}

static MUTUAL_TABLE: OnceLock<&'static WatcherTable> = OnceLock::new();

/// Runtime watchers that unregister each other, one on `exec`, one on `comm`.
#[test]
fn two_closures_unregistering_each_other_report_a_deadlock_instead_of_hanging() {
    within(60, || {
        let table = *MUTUAL_TABLE.get_or_init(empty_table);
        remove_each_other(
            |i, body| {
                let events = [EventSet::EXEC, EventSet::COMM][i];
                table
                    .watcher(format!("mutual-{i}"), events)
                    .register(move |_| {
                        body();
                        Ok::<(), String>(())
                    })
                    .unwrap()
            },
            Registration::unregister,
            |i| {
                let table = MUTUAL_TABLE.get().unwrap();
                let task = Task::detached(20);
                let comm = EventData::Comm { old: "a", new: "b" };
                let event = [exec_of(&task), Event::new(&task, comm)][i];
                table.dispatch(&event).unwrap();
            },
        );
        assert_eq!(MUTUAL_TABLE.get().unwrap().wanted_events(), EventSet::EMPTY);
    });
}

static MUTUAL_TASKS: OnceLock<[Task; 2]> = OnceLock::new();

/// Per-task watchers of two tasks that remove each other.
#[test]
fn two_per_task_closures_removing_each_other_report_a_deadlock_instead_of_hanging() {
    within(60, || {
        let tasks = MUTUAL_TASKS.get_or_init(|| [Task::detached(30), Task::detached(31)]);
        remove_each_other(
            |i, body| {
                tasks[i].watch(EventSet::EXEC, move |_| {
                    body();
                    Ok::<(), String>(())
                })
            },
            TaskWatch::remove,
            |i| {
                let task = &MUTUAL_TASKS.get().unwrap()[i];
                empty_table().dispatch(&exec_of(task)).unwrap();
            },
        );
    });
}

/// What watchers saw: (watcher, event, pid).
type Log = Arc<Mutex<Vec<(&'static str, EventKind, u32)>>>;

fn logger(log: &Log, name: &'static str) -> impl Fn(&Event<'_>) -> Result<(), String> + use<> {
    let log = log.clone();
    move |event| {
        let entry = (name, event.kind(), event.task().pid().get());
        log.lock().unwrap().push(entry);
        Ok(())
    }
}

/// A runtime watcher of `fork` and `free` registered after a task's fork gets no `free`
/// for it; one registered before does; one that does not watch `fork` gets every `free`.
#[test]
fn free_goes_to_the_runtime_watchers_that_saw_the_fork_and_to_those_not_watching_fork() {
    let table = empty_table();
    let tasks = TaskTable::with_table(table);
    let log = Log::default();
    let logger = |name| logger(&log, name);
    let early = table
        .watcher("early", EventSet::FORK | EventSet::FREE)
        .register(logger("early"))
        .unwrap();
    let before = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let late = table
        .watcher("late", EventSet::FORK | EventSet::FREE)
        .register(logger("late"))
        .unwrap();
    let frees_only = table
        .watcher("frees-only", EventSet::FREE)
        .register(logger("frees-only"))
        .unwrap();
    let after = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.exit(before.pid(), 0).unwrap();
    tasks.exit(after.pid(), 0).unwrap();
    let (b, a) = (before.pid().get(), after.pid().get());
    let mut frees: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, kind, _)| *kind == EventKind::Free)
        .map(|&(name, _, pid)| (name, pid))
        .collect();
    frees.sort();
    let mut expected = [
        ("early", a),
        ("early", b),
        ("frees-only", a),
        ("frees-only", b),
        ("late", a),
    ];
    expected.sort();
    assert_eq!(frees, expected);
    for registration in [early, late, frees_only] {
        registration.unregister().unwrap();
    }
}

/// Per-task watchers follow the same rule: a watcher of `fork` and `free` on a parent
/// pairs each child's fork (also a rolled-back one) with that child's `free`, and gets
/// no `free` for its own task; a watcher that does not watch `fork` gets its task's.
#[test]
fn free_goes_to_the_per_task_watchers_that_saw_the_fork() {
    let tasks = TaskTable::with_table(empty_table());
    let shell = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let log = Log::default();
    let logger = |name| logger(&log, name);
    shell
        .watch(EventSet::FORK | EventSet::FREE, logger("pairs"))
        .keep();
    shell.watch(EventSet::FREE, logger("own-free")).keep();
    let child = tasks.fork(shell.pid(), CloneFlags::empty()).unwrap();
    // A watcher attached later refuses the next fork: the first one gets its `free`.
    let refuse = shell.watch(EventSet::FORK, |_| Err::<(), _>("no"));
    assert!(tasks.fork(shell.pid(), CloneFlags::empty()).is_err());
    refuse.remove().unwrap();
    // The child's own watcher of fork and free sees nothing of its own free.
    child
        .watch(EventSet::FORK | EventSet::FREE, logger("child"))
        .keep();
    tasks.exit(child.pid(), 0).unwrap();
    tasks.reap(shell.pid(), child.pid()).unwrap();
    tasks.exit(shell.pid(), 0).unwrap();
    let (s, c) = (shell.pid().get(), child.pid().get());
    let log = log.lock().unwrap();
    let rolled_back = log[2].2;
    assert_eq!(
        *log,
        [
            ("pairs", EventKind::Fork, c),
            ("pairs", EventKind::Fork, rolled_back),
            ("pairs", EventKind::Free, rolled_back),
            ("pairs", EventKind::Free, c),
            ("own-free", EventKind::Free, s),
        ]
    );
}

/// A kept `fork | free` watcher of a parent gets the `free` of a child that outlives the
/// parent, and its closure is dropped by that last `free`, not by the parent's.
#[test]
fn a_kept_fork_free_watcher_gets_the_free_of_a_child_that_outlives_its_task() {
    within(30, || {
        let tasks = TaskTable::with_table(empty_table());
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let log: Arc<Mutex<Vec<(EventKind, Pid)>>> = Arc::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let (seen, owned) = (log.clone(), Drops(drops.clone()));
        parent
            .watch(EventSet::FORK | EventSet::FREE, move |event| {
                let _owned = &owned;
                let kind = event.kind();
                seen.lock().unwrap().push((kind, event.task().pid()));
                Ok::<(), String>(())
            })
            .keep();
        let (first, second) = (
            tasks.fork(parent.pid(), CloneFlags::empty()).unwrap(),
            tasks.fork(parent.pid(), CloneFlags::empty()).unwrap(),
        );
        tasks.exit(first.pid(), 0).unwrap();
        tasks.wait(parent.pid()).unwrap();
        // The parent goes first (its parent is init); the second child outlives it.
        tasks.exit(parent.pid(), 0).unwrap();
        assert_eq!(parent.state(), watchers_core::TaskState::Dead);
        assert_eq!(drops.load(Ordering::SeqCst), 0, "still owed a free");
        // Now init's child: freed at its exit.
        tasks.exit(second.pid(), 0).unwrap();
        assert_eq!(second.state(), watchers_core::TaskState::Dead);
        let (f, s) = (first.pid(), second.pid());
        assert_eq!(
            *log.lock().unwrap(),
            [
                (EventKind::Fork, f),
                (EventKind::Fork, s),
                (EventKind::Free, f),
                (EventKind::Free, s)
            ]
        );
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped by the last free");
    });
}

/// Runtime watchers of `fork | free` come and go while other threads fork and exit. A
/// watcher gets a `free` only for a task whose `fork` it saw; and once the workers have
/// stopped (every task they forked is freed), each watcher still registered has had the
/// `free` of every fork it saw: none is missed.
#[test]
fn free_pairs_with_a_seen_fork_while_watchers_register_concurrently() {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    static ID: TaskSlot<u64> = TaskSlot::new();
    fn identify(event: &Event<'_>) -> WatcherResult {
        ID.set(event.task(), NEXT_ID.fetch_add(1, Ordering::Relaxed));
        Ok(())
    }
    /// What one watcher saw: the tasks whose fork it saw and whose free it has not, and
    /// how many forks it saw.
    #[derive(Default)]
    struct Seen {
        open: HashSet<u64>,
        forks: u64,
    }
    type Live = (Registration<'static>, Arc<Mutex<Seen>>);
    const WORKERS: usize = 2;
    /// Watchers registered at once; the oldest is unregistered when one more comes.
    const LIVE: usize = 4;
    const ROUNDS: usize = 20;
    const MIN_FREES: u64 = 300;
    const MIN_REGISTRATIONS: u64 = 10;
    within(240, || {
        let table = WatcherTable::from_watchers([
            Watcher::new("id", EventSet::FORK, identify).with_priority(i32::MAX)
        ])
        .unwrap()
        .leak();
        let tasks = TaskTable::with_table(table);
        let violations = Arc::new(AtomicU64::new(0));
        let paired = Arc::new(AtomicU64::new(0));
        let (mut registrations, mut checked, mut checked_forks) = (0u64, 0usize, 0u64);
        let mut owed_at_stop = 0usize;
        let mut name = 0u64;
        for _ in 0..ROUNDS {
            let stop = AtomicBool::new(false);
            let round_registrations = AtomicU64::new(0);
            let frees_before = tasks.stats().frees;
            let live = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..WORKERS)
                    .map(|_| {
                        scope.spawn(|| {
                            while !stop.load(Ordering::Relaxed) {
                                let child = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
                                tasks.exit(child.pid(), 0).unwrap();
                            }
                        })
                    })
                    .collect();
                let (stop_ref, registered) = (&stop, &round_registrations);
                let (violations, paired, name) = (&violations, &paired, &mut name);
                let registrar = scope.spawn(move || {
                    let mut live = std::collections::VecDeque::<Live>::new();
                    while !stop_ref.load(Ordering::Relaxed) {
                        *name += 1;
                        let seen: Arc<Mutex<Seen>> = Arc::default();
                        let (bad, ok, log) = (violations.clone(), paired.clone(), seen.clone());
                        let registration = table
                            .watcher(format!("pairs-{name}"), EventSet::FORK | EventSet::FREE)
                            .register(move |event: &Event<'_>| {
                                let id = ID.get(event.task()).map_or(0, |id| *id);
                                let mut seen = log.lock().unwrap();
                                if event.kind() == EventKind::Fork {
                                    seen.open.insert(id);
                                    seen.forks += 1;
                                } else if seen.open.remove(&id) {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    bad.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok::<(), String>(())
                            })
                            .unwrap();
                        registered.fetch_add(1, Ordering::Relaxed);
                        live.push_back((registration, seen));
                        if live.len() > LIVE {
                            let (oldest, _) = live.pop_front().unwrap();
                            oldest.unregister().unwrap();
                        }
                        std::thread::yield_now();
                    }
                    live
                });
                // Run until the premise holds: frees and registrations overlapping.
                while tasks.stats().frees - frees_before < MIN_FREES
                    || round_registrations.load(Ordering::Relaxed) < MIN_REGISTRATIONS
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                stop.store(true, Ordering::Relaxed);
                for worker in workers {
                    worker.join().unwrap();
                }
                registrar.join().unwrap()
            });
            // Every task the workers forked has been freed: a watcher still registered
            // must have had the free of each fork it saw.
            for (registration, seen) in live {
                let seen = seen.lock().unwrap();
                owed_at_stop += seen.open.len();
                checked_forks += seen.forks;
                checked += 1;
                registration.unregister().unwrap();
            }
            registrations += round_registrations.load(Ordering::Relaxed);
        }
        let paired = paired.load(Ordering::Relaxed);
        println!(
            "{registrations} registrations, {paired} paired frees; {checked} watchers \
             checked at a stop, which had seen {checked_forks} forks"
        );
        assert_eq!(
            violations.load(Ordering::Relaxed),
            0,
            "a free without its fork"
        );
        assert_eq!(
            owed_at_stop, 0,
            "a registered watcher missed a free it was owed"
        );
        // The premise: watchers were registered at each stop and had seen forks while
        // the workers ran.
        assert!(checked >= ROUNDS && checked_forks >= ROUNDS as u64);
        assert!(paired > 0);
    });
}

/// On drop: unregisters another watcher, then registers a new one under the name of the
/// watcher whose closure is being dropped.
struct Reenter {
    table: &'static WatcherTable,
    other: Option<Registration<'static>>,
    replacement: Arc<Mutex<Option<Registration<'static>>>>,
    calls: Arc<AtomicUsize>,
}

impl Drop for Reenter {
    fn drop(&mut self) {
        if let Some(other) = self.other.take() {
            other.unregister().unwrap();
        }
        let calls = self.calls.clone();
        let again = self
            .table
            .watcher("reentrant", EventSet::EXEC)
            .register(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            })
            .unwrap();
        *self.replacement.lock().unwrap() = Some(again);
    }
}

/// A closure whose `Drop` unregisters and registers on the same table, under the name
/// just freed, neither deadlocks nor is refused: `unregister` drops the closure outside
/// the registration lock, after the name is free.
#[test]
fn a_closure_whose_drop_registers_and_unregisters_does_not_deadlock() {
    within(30, || {
        let table = empty_table();
        let other = table
            .watcher("other", EventSet::EXEC)
            .register(|_| Ok::<(), String>(()))
            .unwrap();
        let replacement: Arc<Mutex<Option<Registration<'static>>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let guard = Reenter {
            table,
            other: Some(other),
            replacement: replacement.clone(),
            calls: calls.clone(),
        };
        let first = table
            .watcher("reentrant", EventSet::EXEC)
            .register(move |_| {
                let _ = &guard;
                Ok::<(), String>(())
            })
            .unwrap();
        first.unregister().unwrap();
        let names: Vec<String> = table.watchers().into_iter().map(|w| w.name).collect();
        assert_eq!(names, ["reentrant"]);
        let task = Task::detached(3);
        table.dispatch(&exec_of(&task)).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        replacement
            .lock()
            .unwrap()
            .take()
            .unwrap()
            .unregister()
            .unwrap();
    });
}

/// A slot value is dropped at the task's `free`; one set after that (by a thread that
/// still holds the task) stays until the task itself is dropped, as `TaskSlot`'s docs say.
#[test]
fn a_slot_value_set_after_the_free_is_dropped_with_the_task() {
    static HELD: TaskSlot<Drops> = TaskSlot::new();
    let tasks = TaskTable::with_table(empty_table());
    let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let (before, after) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    HELD.set(&task, Drops(before.clone()));
    tasks.exit(task.pid(), 0).unwrap(); // init reaps it: `free`
    assert_eq!(before.load(Ordering::SeqCst), 1, "dropped at the free");
    HELD.set(&task, Drops(after.clone()));
    assert_eq!(after.load(Ordering::SeqCst), 0, "kept while the task lives");
    drop(task);
    assert_eq!(after.load(Ordering::SeqCst), 1, "dropped with the task");
}

// Races between a task's teardown and events still in flight for it or its children.

/// Polls `done` until it holds or `seconds` pass; says which.
fn eventually(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// What became of a parent's `fork | free` watcher that was inside a child's `fork`
/// while the parent exited and was freed on another thread.
struct Raced {
    tasks: Arc<TaskTable>,
    /// The fork's outcome.
    child: Result<Arc<Task>, ForkError>,
    /// What the watcher saw.
    log: Arc<Mutex<Vec<(EventKind, Pid)>>>,
    /// How many times its closure was dropped.
    drops: Arc<AtomicUsize>,
}

/// Forks a child of a task whose kept `fork | free` watcher waits inside that `fork`
/// until the task has been freed on another thread; with `refuse`, a second per-task
/// watcher then refuses the fork.
fn fork_while_the_parent_is_freed(refuse: bool) -> Raced {
    let tasks = Arc::new(TaskTable::with_table(empty_table()));
    let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let log: Arc<Mutex<Vec<(EventKind, Pid)>>> = Arc::default();
    let drops = Arc::new(AtomicUsize::new(0));
    let (inside, on_inside) = mpsc::channel();
    let (go, on_go) = mpsc::channel::<()>();
    let (on_go, inside) = (Mutex::new(on_go), Mutex::new(inside));
    let (seen, owned) = (log.clone(), Drops(drops.clone()));
    let watch = parent.watch(EventSet::FORK | EventSet::FREE, move |event| {
        let _owned = &owned;
        if event.kind() == EventKind::Fork {
            inside.lock().unwrap().send(()).unwrap();
            let _ = on_go.lock().unwrap().recv_timeout(Duration::from_secs(10));
        }
        seen.lock()
            .unwrap()
            .push((event.kind(), event.task().pid()));
        Ok::<(), String>(())
    });
    if refuse {
        // Of `free` too, so that the parent's `free` leaves it to the fork in flight.
        parent
            .watch(EventSet::FORK | EventSet::FREE, |event| {
                match event.kind() {
                    EventKind::Fork => Err("refused"),
                    _ => Ok(()),
                }
            })
            .keep();
    }
    let forker = {
        let (tasks, pid) = (tasks.clone(), parent.pid());
        std::thread::spawn(move || tasks.fork(pid, CloneFlags::empty()))
    };
    on_inside.recv().unwrap();
    // The parent is a child of init: its exit frees it at once.
    let exiter = {
        let (tasks, pid) = (tasks.clone(), parent.pid());
        std::thread::spawn(move || tasks.exit(pid, 0).unwrap())
    };
    // The premise: the parent's `free` has run as far as it can while the fork's call
    // is in flight (it shut the watcher and waits for that call, or it is done).
    assert!(
        eventually(10, || !watch.is_attached() || exiter.is_finished()),
        "the parent's free never got to its per-task watchers"
    );
    assert_eq!(parent.state(), TaskState::Dead);
    go.send(()).unwrap();
    let child = forker.join().unwrap();
    exiter.join().unwrap();
    watch.keep();
    Raced {
        tasks,
        child,
        log,
        drops,
    }
}

/// A parent's kept `fork | free` watcher is inside the `fork` of a child when the
/// parent exits and is freed on another thread. The watcher saw that fork succeed, so
/// it is owed the child's `free` (`Task::watch`: it stays "until the task and each child
/// whose `fork` it saw have been freed"), and its closure is dropped by that `free`.
///
/// It used to be shut by the parent's `free`, which decided that no child was owed
/// before the fork in flight was counted: the child's `free` then found it closed.
#[test]
fn a_fork_free_watcher_inside_a_childs_fork_when_its_task_is_freed_gets_that_childs_free() {
    within(30, || {
        let raced = fork_while_the_parent_is_freed(false);
        let child = raced.child.unwrap();
        assert_eq!(
            raced.drops.load(Ordering::SeqCst),
            0,
            "owed the child's free"
        );
        // Init's child now: freed at its exit.
        raced.tasks.exit(child.pid(), 0).unwrap();
        assert_eq!(child.state(), TaskState::Dead);
        assert_eq!(
            *raced.log.lock().unwrap(),
            [
                (EventKind::Fork, child.pid()),
                (EventKind::Free, child.pid())
            ]
        );
        assert_eq!(
            raced.drops.load(Ordering::SeqCst),
            1,
            "dropped by that free"
        );
    });
}

/// As above, but a later watcher refuses the fork: the watcher gets its rollback `free`
/// and, owed nothing more, is dropped by the end of the failed fork.
#[test]
fn a_fork_free_watcher_inside_a_refused_fork_when_its_task_is_freed_gets_the_rollback() {
    within(30, || {
        let raced = fork_while_the_parent_is_freed(true);
        assert!(matches!(raced.child, Err(ForkError::Watcher(_))));
        let log = raced.log.lock().unwrap().clone();
        let kinds: Vec<_> = log.iter().map(|&(kind, _)| kind).collect();
        assert_eq!(kinds, [EventKind::Fork, EventKind::Free], "{log:?}");
        assert_eq!(log[0].1, log[1].1);
        assert_eq!(
            raced.drops.load(Ordering::SeqCst),
            1,
            "dropped, owed nothing"
        );
    });
}

/// A refused fork gives back the child it counted as owed: the watcher is then dropped
/// by its task's `free`, not kept waiting for a child that never was.
#[test]
fn a_refused_fork_leaves_no_child_owed_to_a_fork_free_watcher() {
    within(30, || {
        let tasks = TaskTable::with_table(empty_table());
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let owned = Drops(drops.clone());
        parent
            .watch(EventSet::FORK | EventSet::FREE, move |_| {
                let _owned = &owned;
                Ok::<(), String>(())
            })
            .keep();
        let refuser = parent.watch(EventSet::FORK, |_| Err::<(), _>("refused"));
        for _ in 0..3 {
            assert!(tasks.fork(parent.pid(), CloneFlags::empty()).is_err());
        }
        refuser.remove().unwrap();
        let child = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        tasks.exit(child.pid(), 0).unwrap();
        tasks.wait(parent.pid()).unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        tasks.exit(parent.pid(), 0).unwrap();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "dropped by its task's free"
        );
    });
}

/// Panics when dropped, like a closure's captured state whose `Drop` fails.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a Drop that panics");
    }
}

/// Exits `task` (a child of init, so freed at once), which must panic with the panic of
/// a `Drop` run by its `free`.
fn exit_panicking(tasks: &TaskTable, task: &Task) {
    let exit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tasks.exit(task.pid(), 0)));
    assert!(exit.is_err(), "the Drop's panic continues");
    assert_eq!(task.state(), TaskState::Dead);
}

/// A task's `free` drops every per-task closure even if one closure's `Drop` panics:
/// the others are dropped too (their state released), then the panic continues.
#[test]
fn a_panicking_closure_drop_at_free_does_not_leak_the_tasks_other_watchers() {
    within(30, || {
        let tasks = TaskTable::with_table(empty_table());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let bad = PanicsOnDrop;
        task.watch(EventSet::FREE, move |_| {
            let _bad = &bad;
            Ok::<(), String>(())
        })
        .keep();
        let owned = Drops(drops.clone());
        let good = task.watch(EventSet::FREE, move |_| {
            let _owned = &owned;
            Ok::<(), String>(())
        });
        exit_panicking(&tasks, &task);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the other closure is dropped"
        );
        assert!(!good.is_attached());
    });
}

/// A task's `free` drops its per-task closures even if one of its slot values' `Drop`
/// panics.
#[test]
fn a_panicking_slot_value_drop_at_free_does_not_leak_the_tasks_watchers() {
    static BAD: TaskSlot<PanicsOnDrop> = TaskSlot::new();
    within(30, || {
        let tasks = TaskTable::with_table(empty_table());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        BAD.set(&task, PanicsOnDrop);
        let drops = Arc::new(AtomicUsize::new(0));
        let owned = Drops(drops.clone());
        let good = task.watch(EventSet::FREE, move |_| {
            let _owned = &owned;
            Ok::<(), String>(())
        });
        exit_panicking(&tasks, &task);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the closure is dropped");
        assert!(!good.is_attached());
    });
}

/// Registers, for good, a `fork | free` runtime watcher `name` in `table` that counts
/// the `free`s it gets in `frees`.
fn keep_counting_frees(table: &'static WatcherTable, name: &'static str, frees: &Arc<AtomicUsize>) {
    let counted = frees.clone();
    table
        .watcher(name, EventSet::FORK | EventSet::FREE)
        .register(move |event| {
            if event.kind() == EventKind::Free {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<(), String>(())
        })
        .unwrap()
        .keep();
}

/// A task records the epoch of the runtime snapshot its `fork` was dispatched with, a
/// number from the serials of the table that dispatched it. Its `free` dispatched
/// through another table (by hand: a `TaskTable` uses one table for both) must not
/// compare that number with the other table's serials, or a `fork | free` watcher there
/// that never saw the fork gets the `free`, against "exactly the tasks whose `fork` it
/// saw". The table that dispatches the `free` is also asked whether it saw the fork.
#[test]
fn a_free_dispatched_through_another_table_reaches_no_watcher_that_missed_the_fork() {
    let (forked_in, freed_in) = (empty_table(), empty_table());
    let frees = Arc::new(AtomicUsize::new(0));
    keep_counting_frees(freed_in, "other::fork-free", &frees);
    forked_in
        .watcher("own::fork-free", EventSet::FORK | EventSet::FREE)
        .register(|_| Ok::<(), String>(()))
        .unwrap()
        .keep();
    let tasks = TaskTable::with_table(forked_in);
    let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    freed_in
        .dispatch(&Event::new(&task, EventData::Free))
        .unwrap();
    assert_eq!(frees.load(Ordering::SeqCst), 0, "it never saw the fork");
}

/// The same task's `fork` dispatched by hand through two tables, each with a `fork |
/// free` watcher: both saw the fork, so each gets the task's `free` when it is sent
/// through its own table. With one (table, epoch) pair per task, the last fork's, the
/// first table's watcher missed its `free` (and kept any per-task state it made at the
/// fork).
#[test]
fn a_task_forked_through_two_tables_gets_its_free_from_the_watchers_of_both() {
    let (first, second) = (empty_table(), empty_table());
    let frees = Arc::new(AtomicUsize::new(0));
    for table in [first, second] {
        keep_counting_frees(table, "both::fork-free", &frees);
    }
    let (parent, task) = (Task::detached(1), Task::detached(2));
    let fork = EventData::Fork {
        parent: &parent,
        flags: CloneFlags::empty(),
    };
    for table in [first, second] {
        table.dispatch(&Event::new(&task, fork)).unwrap();
    }
    for table in [first, second] {
        table.dispatch(&Event::new(&task, EventData::Free)).unwrap();
    }
    assert_eq!(frees.load(Ordering::SeqCst), 2, "each saw the fork");
}

/// Many rounds of two threads forking children of a task while a third exits it (its
/// `free` follows at once): its kept `fork | free` watcher gets the `free` of exactly
/// the children whose `fork` it saw, each once, and its closure is dropped once, by the
/// last of those frees. The premise, counted: forks whose call of the watcher began
/// before the task's `exit` (and so its `free`) returned and ended after it, with no
/// fork completed by then; seeing the task `Dead` was not enough (its `free` may not have
/// reached its watchers yet, and a completed fork's child kept the watcher), which let
/// the test pass without the fix on an idle machine.
#[test]
fn forks_racing_their_parents_free_each_get_their_free_once() {
    within(120, || {
        let mut raced = 0;
        // At least 50 rounds; more, up to 300, until ten forks have raced.
        for round in 0..300 {
            if round >= 50 && raced >= 10 {
                break;
            }
            let tasks = Arc::new(TaskTable::with_table(empty_table()));
            let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
            let forks = Arc::new(Mutex::new(Vec::new()));
            let frees = Arc::new(Mutex::new(Vec::new()));
            let freed_during = Arc::new(AtomicUsize::new(0));
            let drops = Arc::new(AtomicUsize::new(0));
            let exited = Arc::new(AtomicBool::new(false));
            let (f, r, d, e, owned) = (
                forks.clone(),
                frees.clone(),
                freed_during.clone(),
                exited.clone(),
                Drops(drops.clone()),
            );
            parent
                .watch(EventSet::FORK | EventSet::FREE, move |event| {
                    let _owned = &owned;
                    let serial = event.task().serial();
                    match event.parent() {
                        Some(_) => {
                            // Held until the task's `exit` (and so its `free`) has
                            // returned, bounded: a `free` that waited for this call
                            // would never return. Each thread's first fork is in flight
                            // across that `free`, when no fork has completed yet.
                            let before = e.load(Ordering::SeqCst);
                            f.lock().unwrap().push(serial);
                            if !before && eventually(2, || e.load(Ordering::SeqCst)) {
                                d.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        None => r.lock().unwrap().push(serial),
                    }
                    Ok::<(), String>(())
                })
                .keep();
            let forkers: Vec<_> = (0..2)
                .map(|_| {
                    let (tasks, pid) = (tasks.clone(), parent.pid());
                    std::thread::spawn(move || {
                        let mut children = Vec::new();
                        while let Ok(child) = tasks.fork(pid, CloneFlags::empty()) {
                            children.push(child);
                        }
                        children
                    })
                })
                .collect();
            while forks.lock().unwrap().len() < 2 {
                std::thread::yield_now();
            }
            tasks.exit(parent.pid(), 0).unwrap();
            exited.store(true, Ordering::SeqCst);
            for child in forkers.into_iter().flat_map(|f| f.join().unwrap()) {
                // Init's child by now: freed at its exit.
                tasks.exit(child.pid(), 0).unwrap();
            }
            let mut forks = forks.lock().unwrap().clone();
            let mut frees = frees.lock().unwrap().clone();
            forks.sort_unstable();
            frees.sort_unstable();
            assert_eq!(forks, frees, "a free for each fork seen, once");
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "dropped once, by the last free"
            );
            raced += freed_during.load(Ordering::SeqCst);
        }
        assert!(
            raced > 0,
            "premise: no fork's call outlasted its parent's free"
        );
        raced
    });
}

/// A refused fork gives back the children it counted as owed to each `fork | free`
/// watcher even if one of those give-backs drops a closure whose `Drop` panics: the
/// task was freed while the fork was in flight, so giving back the last owed child shuts
/// each watcher and drops its closure, and a panic there must not leave the others owed
/// a child that never was (attached, their closures kept, for ever). The panic continues
/// afterwards, as at a task's `free`.
#[test]
fn a_panicking_closure_drop_when_a_refused_fork_gives_back_its_child_leaks_no_other_watcher() {
    within(30, || {
        let tasks = Arc::new(TaskTable::with_table(empty_table()));
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let (inside, on_inside) = mpsc::channel();
        let (go, on_go) = mpsc::channel::<()>();
        let (on_go, inside) = (Mutex::new(on_go), Mutex::new(inside));
        let bad = PanicsOnDrop;
        // First in the list: waits inside the fork until the task has been freed.
        let waiter = parent.watch(EventSet::FORK | EventSet::FREE, move |event| {
            let _bad = &bad;
            if event.kind() == EventKind::Fork {
                inside.lock().unwrap().send(()).unwrap();
                let _ = on_go.lock().unwrap().recv_timeout(Duration::from_secs(10));
            }
            Ok::<(), String>(())
        });
        let drops = Arc::new(AtomicUsize::new(0));
        let owned = Drops(drops.clone());
        // Held, not kept: nothing else would drop its closure.
        let other = parent.watch(EventSet::FORK | EventSet::FREE, move |_| {
            let _owned = &owned;
            Ok::<(), String>(())
        });
        // Of `free` too, so that the task's `free` leaves it to the fork in flight.
        let refuser = parent.watch(EventSet::FORK | EventSet::FREE, |event| {
            match event.kind() {
                EventKind::Fork => Err("refused"),
                _ => Ok(()),
            }
        });
        let forker = {
            let (tasks, pid) = (tasks.clone(), parent.pid());
            std::thread::spawn(move || tasks.fork(pid, CloneFlags::empty()).is_ok())
        };
        on_inside.recv().unwrap();
        // The parent is a child of init: its exit frees it at once.
        let exiter = {
            let (tasks, pid) = (tasks.clone(), parent.pid());
            std::thread::spawn(move || tasks.exit(pid, 0).unwrap())
        };
        assert!(
            eventually(10, || !waiter.is_attached() || exiter.is_finished()),
            "the parent's free never got to its per-task watchers"
        );
        waiter.keep();
        go.send(()).unwrap();
        let forked = forker.join();
        exiter.join().unwrap();
        assert!(forked.is_err(), "the Drop's panic continues: {forked:?}");
        assert!(
            !other.is_attached() && !refuser.is_attached(),
            "the task is freed and no child is owed: shut"
        );
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the other closure is dropped at once, not with its handle"
        );
    });
}

const DOUBLE_PANIC_CHILD: &str = "WATCHERS_TEARDOWN_DOUBLE_PANIC_CHILD";

/// Panics when dropped, after counting the drop.
struct CountedPanicOnDrop(Arc<AtomicUsize>);

impl Drop for CountedPanicOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("the closure's drop panics");
    }
}

/// A closure that unregisters itself and then panics is dropped while its own panic
/// unwinds through the dispatch; if its `Drop` panics too, that second panic would
/// abort the process. It is caught: the closure's own panic reaches the dispatcher's
/// caller, the closure is dropped once and never called again. Run in a child process,
/// so that an abort fails this test rather than the whole test binary.
#[test]
fn a_closure_whose_drop_panics_while_its_own_panic_unwinds_does_not_abort() {
    if std::env::var_os(DOUBLE_PANIC_CHILD).is_some() {
        let table = empty_table();
        let drops = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let slot: Arc<Mutex<Option<Registration<'static>>>> = Arc::default();
        let (owned, me, counted) = (
            CountedPanicOnDrop(drops.clone()),
            slot.clone(),
            calls.clone(),
        );
        let registration = table
            .watcher("unregisters-then-panics", EventSet::EXEC)
            .register(move |_| {
                let _owned = &owned;
                counted.fetch_add(1, Ordering::SeqCst);
                if let Some(registration) = me.lock().unwrap().take() {
                    registration.unregister().unwrap();
                }
                panic!("the closure panics");
                #[allow(unreachable_code)]
                Ok::<(), String>(())
            })
            .unwrap();
        *slot.lock().unwrap() = Some(registration);
        let task = Task::detached(16);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            table.dispatch(&exec_of(&task))
        }));
        let message = unwound
            .err()
            .and_then(|payload| payload.downcast_ref::<&str>().map(|s| s.to_string()));
        let _ = table.dispatch(&exec_of(&task));
        println!(
            "survived: {message:?}; drops {}; calls {}",
            drops.load(Ordering::SeqCst),
            calls.load(Ordering::SeqCst)
        );
        return;
    }
    let stdout = run_in_child(
        "a_closure_whose_drop_panics_while_its_own_panic_unwinds_does_not_abort",
        DOUBLE_PANIC_CHILD,
    );
    assert!(
        stdout.contains("survived: Some(\"the closure panics\"); drops 1; calls 1"),
        "the child's output: {stdout}"
    );
}
