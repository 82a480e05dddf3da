//! Task identity: once the table has let go of its lock (to run watchers, or because
//! another thread took it), a pid may belong to another task. These tests reuse pids on
//! purpose (a small `pid_max`, watchers that re-enter the table) and check that `free`
//! reaches each task exactly once, that no unrelated task is freed or loses its zombie
//! children, and that no child gets a stranger as its parent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, ExitStatus, Ids, Pid, Task, TaskInit, TaskState,
    TaskTable, WatcherTable,
};

/// A table with no static watchers and pids from 2 to `pid_max`.
fn table(pid_max: u32) -> Arc<TaskTable> {
    Arc::new(TaskTable::with_pid_max(
        WatcherTable::from_watchers([]).unwrap(),
        pid_max,
    ))
}

/// Registers a runtime watcher that may call back into `tasks`.
fn reenter(
    tasks: &Arc<TaskTable>,
    name: &str,
    events: EventSet,
    watcher: impl Fn(&TaskTable, &Event<'_>) + Send + Sync + 'static,
) {
    let weak: Weak<TaskTable> = Arc::downgrade(tasks);
    tasks
        .watchers()
        .watcher(name, events)
        .register(move |event| {
            if let Some(tasks) = weak.upgrade() {
                watcher(&tasks, event);
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap()
        .keep();
}

/// What the watchers saw of each task, by serial.
#[derive(Default)]
struct Ledger {
    seen: Mutex<HashMap<u64, Seen>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    pid: u32,
    forks: u32,
    exits: u32,
    frees: u32,
    /// Frees of a task that had not (yet) been through its `exit`.
    frees_before_exit: u32,
}

impl Ledger {
    /// Registers the watcher that fills the ledger on `tasks`.
    fn watch(tasks: &Arc<TaskTable>) -> Arc<Ledger> {
        let ledger = Arc::new(Ledger::default());
        let writer = Arc::clone(&ledger);
        reenter(
            tasks,
            "ledger",
            EventSet::FORK | EventSet::EXIT | EventSet::FREE,
            move |_, event| writer.record(event),
        );
        ledger
    }

    fn record(&self, event: &Event<'_>) {
        let task = event.task();
        let mut seen = self.seen.lock().unwrap();
        let entry = seen.entry(task.serial()).or_default();
        entry.pid = task.pid().get();
        match event.kind() {
            EventKind::Fork => entry.forks += 1,
            EventKind::Exit => entry.exits += 1,
            EventKind::Free => {
                entry.frees += 1;
                if entry.exits == 0 {
                    entry.frees_before_exit += 1;
                }
            }
            _ => {}
        }
    }

    fn of(&self, task: &Task) -> Seen {
        self.seen.lock().unwrap()[&task.serial()]
    }

    fn all(&self) -> HashMap<u64, Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn serials_tell_apart_tasks_that_share_a_pid() {
    let tasks = table(2);
    let first = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.exit(first.pid(), 0).unwrap();
    let second = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    assert_eq!(first.pid(), second.pid(), "premise: the pid was reused");
    assert!(second.serial() > first.serial());
    assert_ne!(tasks.init().serial(), table(3).init().serial());
}

/// Forks S and A (children of init) and Q (A's child), and makes Q a zombie: when A
/// exits, Q is an orphan that A's exit frees.
fn s_a_and_zombie_q(tasks: &TaskTable) -> [Arc<Task>; 3] {
    let s = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let a = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let q = tasks.fork(a.pid(), CloneFlags::empty()).unwrap();
    tasks.exit(q.pid(), 0).unwrap();
    [s, a, q]
}

/// Inside the `free` watcher of an orphan, the dying parent A is reaped and its pid goes
/// to a new task B, a zombie child of another task S. The exit of A must not then free
/// B (which S has yet to wait for).
#[test]
fn a_reused_pid_is_not_freed_by_the_exit_that_freed_its_old_owner() {
    // Pids 2..=6: S, A, Q (A's child), and two fillers take them all.
    let tasks = table(6);
    let ledger = Ledger::watch(&tasks);
    let [s, a, q] = s_a_and_zombie_q(&tasks);
    for _ in 0..2 {
        tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    }
    assert!(
        tasks.fork(Pid::INIT, CloneFlags::empty()).is_err(),
        "premise: every pid is taken"
    );

    let armed = Arc::new(AtomicBool::new(true));
    let b_slot: Arc<OnceLock<Arc<Task>>> = Arc::new(OnceLock::new());
    let (a_in, s_in, q_serial, b_out, armed_in) = (
        Arc::clone(&a),
        Arc::clone(&s),
        q.serial(),
        Arc::clone(&b_slot),
        Arc::clone(&armed),
    );
    reenter(&tasks, "reaper", EventSet::FREE, move |tasks, event| {
        if event.task().serial() != q_serial || !armed_in.swap(false, Ordering::SeqCst) {
            return;
        }
        // A is a zombie child of init: reap it, then give its pid to B.
        tasks.reap(Pid::INIT, a_in.pid()).unwrap();
        let b = tasks.fork(s_in.pid(), CloneFlags::empty()).unwrap();
        tasks.exit(b.pid(), 7).unwrap();
        b_out.set(b).unwrap();
    });

    // A's exit orphans its zombie child Q, whose `free` runs the watcher above.
    tasks.exit(a.pid(), 0).unwrap();
    assert!(
        !armed.load(Ordering::SeqCst),
        "premise: the watcher re-entered"
    );
    let b = b_slot.get().expect("B was forked");
    assert_eq!(b.pid(), a.pid(), "premise: B got A's pid");

    assert_eq!(
        b.state(),
        TaskState::Zombie,
        "B waits for S, not for A's exit"
    );
    assert_eq!(tasks.children(s.pid()), [b.pid()]);
    assert_eq!(
        tasks.wait(s.pid()).unwrap(),
        Some((b.pid(), ExitStatus::exited(7)))
    );
    for task in [&a, &q, b] {
        let seen = ledger.of(task);
        assert_eq!((seen.forks, seen.exits, seen.frees), (1, 1, 1), "{seen:?}");
        assert_eq!(task.state(), TaskState::Dead);
    }
}

/// Inside a child's `fork` watcher its parent P exits (and is freed: its parent is
/// init), and a new task N gets P's pid. The child must not become N's child.
#[test]
fn a_child_whose_parent_exited_during_its_fork_goes_to_init_not_to_the_pid() {
    // Pids 2..=5: P, two fillers, and the child take them all.
    let tasks = table(5);
    let ledger = Ledger::watch(&tasks);
    let p = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let filler = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();

    let armed = Arc::new(AtomicBool::new(true));
    let n_slot: Arc<OnceLock<Arc<Task>>> = Arc::new(OnceLock::new());
    let (p_in, filler_pid, n_out, armed_in) = (
        Arc::clone(&p),
        filler.pid(),
        Arc::clone(&n_slot),
        Arc::clone(&armed),
    );
    reenter(&tasks, "usurper", EventSet::FORK, move |tasks, event| {
        let is_ps_child = event
            .parent()
            .is_some_and(|parent| parent.serial() == p_in.serial());
        if !is_ps_child || !armed_in.swap(false, Ordering::SeqCst) {
            return;
        }
        tasks.exit(p_in.pid(), 0).unwrap();
        let n = tasks.fork(filler_pid, CloneFlags::empty()).unwrap();
        n_out.set(n).unwrap();
    });

    let child = tasks.fork(p.pid(), CloneFlags::empty()).unwrap();
    assert!(
        !armed.load(Ordering::SeqCst),
        "premise: the watcher re-entered"
    );
    let n = n_slot.get().expect("N was forked");
    assert_eq!(n.pid(), p.pid(), "premise: N got P's pid");
    assert_eq!(p.state(), TaskState::Dead);

    assert_eq!(child.parent(), Pid::INIT);
    assert!(tasks.children(n.pid()).is_empty(), "N has no child");
    assert!(tasks.children(Pid::INIT).contains(&child.pid()));
    // As init's child it is reaped as soon as it exits; N is left alone.
    tasks.exit(child.pid(), 0).unwrap();
    assert_eq!(child.state(), TaskState::Dead);
    assert_eq!(n.state(), TaskState::Running);
    assert_eq!(ledger.of(&child).frees, 1);
    assert_eq!(ledger.of(n).frees, 0);
}

/// `fork_with_pid` inside a `free` watcher takes the pid of a task that was just reaped,
/// while an exit still holds that task: the exit must leave the newcomer alone.
#[test]
fn fork_with_pid_of_a_reaped_task_inside_a_free_watcher() {
    let tasks = table(100);
    let ledger = Ledger::watch(&tasks);
    let [s, a, q] = s_a_and_zombie_q(&tasks);
    let b_slot: Arc<OnceLock<Arc<Task>>> = Arc::new(OnceLock::new());
    let (a_in, s_pid, q_serial, b_out) = (Arc::clone(&a), s.pid(), q.serial(), b_slot.clone());
    reenter(&tasks, "reuser", EventSet::FREE, move |tasks, event| {
        if event.task().serial() != q_serial {
            return;
        }
        tasks.reap(Pid::INIT, a_in.pid()).unwrap();
        let b = tasks
            .fork_with_pid(s_pid, a_in.pid(), CloneFlags::empty())
            .unwrap();
        tasks.exit(b.pid(), 3).unwrap();
        b_out.set(b).unwrap();
    });
    tasks.exit(a.pid(), 0).unwrap();
    let b = b_slot.get().expect("premise: the watcher re-entered");
    assert_eq!(b.pid(), a.pid());
    assert_eq!(b.state(), TaskState::Zombie);
    assert_eq!(
        tasks.wait(s.pid()).unwrap(),
        Some((b.pid(), ExitStatus::exited(3)))
    );
    assert_eq!(ledger.of(b).frees, 1);
    assert_eq!(ledger.of(&a).frees, 1);
}

/// A task adopted under a zombie must not be left pointing at the zombie's pid, which
/// will belong to another task once the zombie is reaped.
#[test]
fn a_task_adopted_under_a_zombie_goes_to_init() {
    let tasks = table(100);
    let s = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let p = tasks.fork(s.pid(), CloneFlags::empty()).unwrap();
    tasks.exit(p.pid(), 0).unwrap();
    let init = TaskInit {
        pid: Pid(50),
        tgid: Pid(50),
        parent: p.pid(),
        sid: Pid::INIT,
        pgid: Pid::INIT,
        uids: Ids::all(0),
        gids: Ids::all(0),
        comm: "adopted".to_owned(),
    };
    let adopted = tasks.adopt(init, CloneFlags::empty()).unwrap();
    assert_eq!(adopted.parent(), Pid::INIT);
    assert!(tasks.children(Pid::INIT).contains(&adopted.pid()));
    tasks.wait(s.pid()).unwrap();
    let heir = tasks
        .fork_with_pid(s.pid(), p.pid(), CloneFlags::empty())
        .unwrap();
    assert!(tasks.children(heir.pid()).is_empty());
}

/// A small deterministic generator, one per thread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

thread_local! {
    /// The pids this thread is waiting on, innermost last.
    static WAITING_ON: std::cell::RefCell<Vec<Pid>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The serial of the task whose `exec` or `setsid` this thread is sending: a reap
    /// during it hands that task's `free` to this thread.
    static SENDING: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// `wait`, noting for the `free` watcher whose children this thread is reaping.
fn wait_noted(tasks: &TaskTable, parent: Pid) -> Option<(Pid, ExitStatus)> {
    WAITING_ON.with(|w| w.borrow_mut().push(parent));
    let result = tasks.wait(parent);
    WAITING_ON.with(|w| w.borrow_mut().pop());
    result.ok().flatten()
}

/// Many threads fork (processes, threads, `CLONE_PARENT`), adopt, exec, setsid, exit and
/// wait at once over 63 pids, with watchers that re-enter the table; `free` must reach
/// every task exactly once, after its `exit` and after every other event of it, and
/// only through its parent (or init) reaping it, or itself for a thread.
#[test]
fn threads_forking_exiting_and_waiting_over_few_pids() {
    const THREADS: usize = 4;
    const MIN_OPS: usize = 4_000;
    const MIN_OVERLAPS: u64 = 200;
    const POOL_MAX: usize = 24;
    const MIN_ALONGSIDE: u64 = 20;
    let tasks = table(64);
    let ledger = Ledger::watch(&tasks);
    // An `exec` or `setsid` watcher must never see its task freed (`Dead`), even while
    // another thread exits it; `alongside` counts the times it saw that exit happen.
    let (late, alongside) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // The serial of a task an `exec` or `setsid` watcher is in, which exits then prefer.
    let busy = Arc::new(AtomicU64::new(0));
    let (late_in, alongside_in, busy_in) = (late.clone(), alongside.clone(), busy.clone());
    reenter(
        &tasks,
        "alongside_exit",
        EventSet::EXEC | EventSet::SID,
        move |_, event| {
            let task = event.task();
            let before = task.state();
            busy_in.store(task.serial(), Ordering::SeqCst);
            for _ in 0..50 {
                std::thread::yield_now();
                if task.state() != TaskState::Running {
                    break;
                }
            }
            let _ = busy_in.compare_exchange(task.serial(), 0, Ordering::SeqCst, Ordering::SeqCst);
            let after = task.state();
            if before == TaskState::Dead || after == TaskState::Dead {
                late_in.fetch_add(1, Ordering::Relaxed);
            }
            if before == TaskState::Running && after != TaskState::Running {
                alongside_in.fetch_add(1, Ordering::Relaxed);
            }
        },
    );
    let kinds: [AtomicU64; 3] = Default::default();
    let reentered = Arc::new(AtomicU64::new(0));
    let stolen = Arc::new(Mutex::new(Vec::<String>::new()));
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicU64::new(0));

    // A task that lives throughout and whose children only `wait` reaps.
    let keeper = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let keeper_pid = keeper.pid();
    let handed_on = Arc::new(AtomicU64::new(0));
    // Every 5th fork forks and exits a child of init from inside the fork watcher. Every
    // 3rd free reaps a zombie child of init from inside the free watcher (often the very
    // task whose exit is freeing its orphans) and hands its pid at once to a zombie
    // child of the keeper, which the exit that is still running must leave alone.
    let (count, again, inside_fork, overlap_fork) = (
        AtomicU64::new(0),
        Arc::clone(&reentered),
        Arc::clone(&inside),
        Arc::clone(&overlaps),
    );
    reenter(
        &tasks,
        "nested_fork",
        EventSet::FORK,
        move |tasks, event| {
            if inside_fork.fetch_add(1, Ordering::SeqCst) > 0 {
                overlap_fork.fetch_add(1, Ordering::Relaxed);
            }
            if event.parent().is_some_and(|p| p.pid() != Pid::INIT)
                && count.fetch_add(1, Ordering::Relaxed) % 5 == 0
                && let Ok(helper) = tasks.fork(Pid::INIT, CloneFlags::empty())
            {
                again.fetch_add(1, Ordering::Relaxed);
                tasks.exit(helper.pid(), 0).unwrap();
            }
            std::thread::yield_now();
            inside_fork.fetch_sub(1, Ordering::SeqCst);
        },
    );
    let (count, again, stolen_in, handed) = (
        AtomicU64::new(0),
        Arc::clone(&reentered),
        stolen.clone(),
        Arc::clone(&handed_on),
    );
    reenter(
        &tasks,
        "nested_wait",
        EventSet::FREE,
        move |tasks, event| {
            let task = event.task();
            // Nobody but its parent reaps a process whose parent is not init.
            let parent = task.parent();
            if !task.is_thread()
                && parent != Pid::INIT
                && SENDING.get() != task.serial()
                && !WAITING_ON.with(|w| w.borrow().contains(&parent))
            {
                stolen_in.lock().unwrap().push(format!(
                    "task {} (serial {}) freed without its parent {parent} reaping it",
                    task.pid(),
                    task.serial()
                ));
            }
            if count.fetch_add(1, Ordering::Relaxed) % 3 == 0 {
                again.fetch_add(1, Ordering::Relaxed);
                if let Some((pid, _)) = wait_noted(tasks, Pid::INIT)
                    && let Ok(heir) = tasks.fork_with_pid(keeper_pid, pid, CloneFlags::empty())
                {
                    handed.fetch_add(1, Ordering::Relaxed);
                    tasks.exit(heir.pid(), 0).unwrap();
                }
            }
        },
    );

    let pool: Mutex<Vec<Arc<Task>>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let done = AtomicUsize::new(0);
    let pid_users: Mutex<HashMap<Pid, u64>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for seed in 0..THREADS {
            let (tasks, pool, errors, done, overlaps) = (&tasks, &pool, &errors, &done, &overlaps);
            let (pid_users, ledger, alongside, kinds) = (&pid_users, &ledger, &alongside, &kinds);
            let busy = &busy;
            scope.spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((seed as u64 + 1) * 0x1234_5678));
                let mut ops = 0;
                let mut finished = false;
                // Run until this thread did its share and the threads were seen inside
                // the watchers together often enough.
                while ops < MIN_OPS
                    || overlaps.load(Ordering::Relaxed) < MIN_OVERLAPS
                    || alongside.load(Ordering::Relaxed) < MIN_ALONGSIDE
                {
                    ops += 1;
                    if ops == MIN_OPS {
                        done.fetch_add(1, Ordering::SeqCst);
                        finished = true;
                    }
                    if ops > 200 * MIN_OPS {
                        break;
                    }
                    let pick = |pool: &mut Vec<Arc<Task>>, rng: &mut Rng, take: bool| {
                        if pool.is_empty() {
                            return None;
                        }
                        let i = rng.below(pool.len());
                        Some(if take {
                            pool.swap_remove(i)
                        } else {
                            pool[i].clone()
                        })
                    };
                    match rng.below(8) {
                        0 | 1 | 6 => {
                            let parent = pick(&mut pool.lock().unwrap(), &mut rng, false);
                            if pool.lock().unwrap().len() >= POOL_MAX {
                                continue;
                            }
                            let kind = rng.below(4).saturating_sub(1);
                            let flags =
                                [CloneFlags::empty(), CloneFlags::THREAD, CloneFlags::PARENT][kind];
                            let child = match &parent {
                                // Adopted under a task that may be exiting meanwhile.
                                Some(parent) if ops % 3 == 0 => tasks
                                    .adopt_running(parent, flags, "adopted")
                                    .map(|(child, _)| child),
                                _ => tasks.fork(parent.map_or(Pid::INIT, |p| p.pid()), flags),
                            };
                            if let Ok(child) = child {
                                kinds[kind].fetch_add(1, Ordering::Relaxed);
                                *pid_users.lock().unwrap().entry(child.pid()).or_default() += 1;
                                pool.lock().unwrap().push(child);
                            }
                        }
                        5 => {
                            // Another thread may be exiting this very task.
                            // (The pool's lock is released before the exec.)
                            let task = pick(&mut pool.lock().unwrap(), &mut rng, false);
                            if let Some(task) = task {
                                SENDING.set(task.serial());
                                let _ = if ops % 2 == 0 {
                                    tasks.exec(task.pid(), "/bin/x")
                                } else {
                                    tasks.setsid(task.pid()).map(drop)
                                };
                                SENDING.set(0);
                            }
                        }
                        2 | 3 => {
                            let task = {
                                let mut pool = pool.lock().unwrap();
                                let serial = busy.load(Ordering::SeqCst);
                                match pool.iter().position(|task| task.serial() == serial) {
                                    Some(i) => Some(pool.swap_remove(i)),
                                    None => pick(&mut pool, &mut rng, true),
                                }
                            };
                            let Some(task) = task else {
                                continue;
                            };
                            // Only this thread exits it: it must still be running.
                            if task.state() != TaskState::Running {
                                errors
                                    .lock()
                                    .unwrap()
                                    .push(format!("{task:?} is not running"));
                                continue;
                            }
                            let status = ExitStatus(task.serial() as i32);
                            if let Err(error) = tasks.exit_with(task.pid(), status) {
                                errors
                                    .lock()
                                    .unwrap()
                                    .push(format!("exit {task:?}: {error}"));
                            }
                        }
                        4 => {
                            let parent = pick(&mut pool.lock().unwrap(), &mut rng, false);
                            if let Some(parent) = parent
                                && let Some((pid, status)) = wait_noted(tasks, parent.pid())
                            {
                                // The status names the serial of the task that exited.
                                let seen = ledger.all().get(&(status.0 as u64)).copied();
                                if seen.map(|s| s.pid) != Some(pid.get()) {
                                    errors.lock().unwrap().push(format!(
                                        "wait returned pid {pid} with the status of {seen:?}"
                                    ));
                                }
                            }
                        }
                        _ => {
                            wait_noted(tasks, if ops % 2 == 0 { Pid::INIT } else { keeper_pid });
                        }
                    }
                }
                if !finished {
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });

    // Everything left exits; orphans go to init, which reaps them.
    for task in pool.into_inner().unwrap() {
        assert_eq!(task.state(), TaskState::Running, "{task:?}");
        tasks.exit(task.pid(), 0).unwrap();
    }
    tasks.exit(keeper_pid, 0).unwrap();
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    let stolen = stolen.lock().unwrap();
    assert!(
        stolen.is_empty(),
        "{} stolen frees, first: {:?}",
        stolen.len(),
        stolen.first()
    );
    assert_eq!(tasks.len(), 1, "only init is left: {:?}", tasks.tasks());

    assert_eq!(
        late.load(Ordering::Relaxed),
        0,
        "an exec or setsid watcher saw its task freed"
    );
    let all = ledger.all();
    let stats = tasks.stats();
    assert_eq!(all.len() as u64, stats.forks);
    for (serial, seen) in &all {
        assert_eq!(
            (seen.forks, seen.exits, seen.frees, seen.frees_before_exit),
            (1, 1, 1, 0),
            "task serial {serial}: {seen:?}"
        );
    }

    eprintln!(
        "{} forks, up to {} tasks per pid, {} re-entrant calls, {} pids handed on, {} overlaps",
        stats.forks,
        pid_users.lock().unwrap().values().max().unwrap_or(&0),
        reentered.load(Ordering::Relaxed),
        handed_on.load(Ordering::Relaxed),
        overlaps.load(Ordering::Relaxed)
    );
    // The premise: pids were reused, watchers re-entered, threads overlapped, every kind
    // of fork happened, and exits ran alongside exec and setsid watchers of their task.
    let kinds = kinds.map(|kind| kind.into_inner());
    eprintln!(
        "processes, threads, CLONE_PARENT: {kinds:?}; {} exits alongside exec or setsid",
        alongside.load(Ordering::Relaxed)
    );
    assert!(kinds.iter().all(|&n| n > 100), "{kinds:?}");
    assert!(alongside.load(Ordering::Relaxed) >= MIN_ALONGSIDE);
    let max_reuse = pid_users
        .lock()
        .unwrap()
        .values()
        .copied()
        .max()
        .unwrap_or(0);
    assert!(
        max_reuse > 10,
        "pids were reused (at most {max_reuse} tasks per pid)"
    );
    assert!(stats.forks > (THREADS * MIN_OPS / 4) as u64, "{stats:?}");
    assert!(
        reentered.load(Ordering::Relaxed) > 100,
        "watchers re-entered"
    );
    assert!(
        handed_on.load(Ordering::Relaxed) > 10,
        "pids were handed on inside free watchers only {} times",
        handed_on.load(Ordering::Relaxed)
    );
    assert!(
        overlaps.load(Ordering::Relaxed) >= MIN_OVERLAPS,
        "threads overlapped inside the watchers only {} times",
        overlaps.load(Ordering::Relaxed)
    );
    assert_eq!(done.load(Ordering::SeqCst), THREADS);
}

/// G → P → thread T. G exits (freed: init's child) and X takes G's pid. T's parent is
/// init now, so a `CLONE_PARENT` fork from T gives the child to init, not to X.
#[test]
fn clone_parent_from_a_thread_whose_parent_was_freed_goes_to_init() {
    let tasks = table(100);
    let g = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let p = tasks.fork(g.pid(), CloneFlags::empty()).unwrap();
    let t = tasks.fork(p.pid(), CloneFlags::THREAD).unwrap();
    assert_eq!(t.parent(), g.pid());
    tasks.exit(g.pid(), 0).unwrap();
    assert_eq!(g.state(), TaskState::Dead);
    assert_eq!((p.parent(), t.parent()), (Pid::INIT, Pid::INIT));
    let x = tasks
        .fork_with_pid(Pid::INIT, g.pid(), CloneFlags::empty())
        .unwrap();
    let child = tasks.fork(t.pid(), CloneFlags::PARENT).unwrap();
    assert_eq!(child.parent(), Pid::INIT);
    assert!(tasks.children(Pid::INIT).contains(&child.pid()));
    assert!(tasks.children(x.pid()).is_empty());
    // A thread of T, forked now, has init as its parent too.
    let thread = tasks.fork(t.pid(), CloneFlags::THREAD).unwrap();
    assert_eq!(thread.parent(), Pid::INIT);
}

/// Every task's parent is in the table, and each process is among its parent's
/// children (and only there).
fn check_families(tasks: &TaskTable, step: usize, op: &str) {
    let all = tasks.tasks();
    for task in &all {
        let pid = task.pid();
        if pid == Pid::INIT {
            continue;
        }
        let parent = task.parent();
        assert!(
            tasks.get(parent).is_some(),
            "step {step} ({op}): {pid:?} ({:?}) names {parent:?}, which is not in the table",
            task.state()
        );
        if !task.is_thread() {
            assert!(
                tasks.children(parent).contains(&pid),
                "step {step} ({op}): {pid:?} is not among its parent {parent:?}'s children"
            );
        }
    }
    for owner in &all {
        for child in tasks.children(owner.pid()) {
            let child = tasks.get(child).expect("a listed child is in the table");
            assert_eq!(child.parent(), owner.pid(), "step {step} ({op})");
        }
    }
}

/// Random forks (plain, thread, CLONE_PARENT), adoptions under any pid, exits, waits
/// and frees over few pids, with watchers that adopt under an exiting task and exit a
/// parent during its child's fork: after every step each task's parent pid is in the
/// table and lists it.
#[test]
fn families_stay_consistent_under_random_changes() {
    let tasks = table(40);
    let adopted_in_exit = Arc::new(AtomicU64::new(0));
    let counted = adopted_in_exit.clone();
    reenter(
        &tasks,
        "adopt_in_exit",
        EventSet::EXIT,
        move |tasks, event| {
            let me = event.task();
            let pid = (2..40).map(Pid).find(|pid| tasks.get(*pid).is_none());
            if let Some(pid) = pid.filter(|_| me.pid().0 % 2 == 0) {
                let flags = if me.pid().0 % 4 == 0 {
                    CloneFlags::THREAD
                } else {
                    CloneFlags::empty()
                };
                let init = TaskInit {
                    pid,
                    tgid: if flags.is_empty() { pid } else { me.tgid() },
                    parent: me.pid(),
                    sid: Pid::INIT,
                    pgid: Pid::INIT,
                    uids: Ids::all(0),
                    gids: Ids::all(0),
                    comm: "late".to_owned(),
                };
                if tasks.adopt(init, flags).is_ok() {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        },
    );
    let parents_gone = Arc::new(AtomicU64::new(0));
    let gone = parents_gone.clone();
    reenter(
        &tasks,
        "exit_parent",
        EventSet::FORK,
        move |tasks, event| {
            if let watchers_core::EventData::Fork { parent, .. } = event.data()
                && event.task().pid().0 % 5 == 0
                && parent.pid() != Pid::INIT
                && tasks.exit(parent.pid(), 0).is_ok()
            {
                gone.fetch_add(1, Ordering::Relaxed);
            }
        },
    );
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for step in 0..20_000 {
        let pid = Pid(1 + next(40) as u32);
        let flags = [CloneFlags::empty(), CloneFlags::THREAD, CloneFlags::PARENT][next(3) as usize];
        let op = match next(7) {
            0 | 1 => {
                let _ = tasks.fork(pid, flags);
                "fork"
            }
            2 => {
                let _ = tasks.exit(pid, 0);
                "exit"
            }
            3 => {
                let _ = tasks.exit_unreaped(pid, ExitStatus::exited(0));
                "exit_unreaped"
            }
            4 => {
                let _ = tasks.wait(pid);
                "wait"
            }
            5 => {
                if let Some(task) = tasks.get(pid) {
                    let _ = tasks.free(&task);
                }
                "free"
            }
            _ => {
                let new = Pid(2 + next(39) as u32);
                let init = TaskInit {
                    pid: new,
                    tgid: if flags.contains(CloneFlags::THREAD) {
                        pid
                    } else {
                        new
                    },
                    parent: pid,
                    sid: Pid::INIT,
                    pgid: Pid::INIT,
                    uids: Ids::all(0),
                    gids: Ids::all(0),
                    comm: "adopted".to_owned(),
                };
                let _ = tasks.adopt(init, flags);
                "adopt"
            }
        };
        check_families(&tasks, step, op);
    }
    // The premises: both re-entrant watchers really changed the table many times.
    assert!(adopted_in_exit.load(Ordering::Relaxed) > 100);
    assert!(parents_gone.load(Ordering::Relaxed) > 100);
}
