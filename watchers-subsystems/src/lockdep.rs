//! Lock dependency checking (`CONFIG_LOCKDEP`): per-task held-lock stacks and a global
//! lock-order graph.
//!
//! * Locks are named [classes](lock_class). A task [`acquire`]s and [`release`]s them;
//!   its held-lock stack is at most [`MAX_LOCK_DEPTH`] deep, and acquiring a class it
//!   already holds is refused as recursive locking.
//! * Each acquisition records "held, then acquired" edges in a graph shared by every
//!   task. Acquiring `A` while holding `B` when `A → … → B` was recorded before is a
//!   **lock-order inversion**: it is reported ([`reports`]) with both orders and the tasks
//!   that showed them, once per pair of classes.
//! * **fork**: the child starts with an empty stack (`lockdep_init_task`).
//! * **exit**: a task still holding locks is reported with the lock names
//!   (`debug_check_no_locks_held`) and the watcher returns [`LockdepError::HeldAtExit`].
//! * **free**: the stack is freed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use watchers_core::{
    CloneFlags, Event, EventData, EventSet, ExitStatus, Pid, Task, TaskSlot, TaskState, Watcher,
    task_watcher, watcher_record,
};

/// The events the lockdep watchers ask for.
pub const EVENTS: EventSet = watcher_record!(watch_fork_free)
    .events()
    .union(watcher_record!(watch_exit).events());

/// The priority all the lockdep watchers share (follows the irq-flags set-up in `copy_process`).
pub const PRIORITY: i32 = watcher_record!(watch_fork_free).priority();

/// The deepest a task's held-lock stack may be (`MAX_LOCK_DEPTH`).
pub const MAX_LOCK_DEPTH: usize = 48;

/// How many reports are kept (later ones are only counted).
pub const REPORTS_KEPT: usize = 256;

/// A lock class: every lock of one kind, named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockClass(u32);

impl LockClass {
    /// The class's name.
    pub fn name(self) -> String {
        graph()
            .names
            .get(self.0 as usize)
            .cloned()
            .unwrap_or_default()
    }
}

/// What went wrong with a lock operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockdepError {
    /// The task has no held-lock stack (it was not forked with this subsystem on).
    #[error("task {0} has no lockdep state")]
    NoState(Pid),
    /// The task is exiting or gone: it cannot take a lock any more.
    #[error("task {0} is not running")]
    NotRunning(Pid),
    /// The stack is full.
    #[error("task {pid} holds {MAX_LOCK_DEPTH} locks already: cannot acquire `{lock}`")]
    TooDeep {
        /// The task.
        pid: Pid,
        /// The lock it tried to take.
        lock: String,
    },
    /// The task already holds a lock of this class.
    #[error("possible recursive locking: task {pid} already holds `{lock}`")]
    Recursive {
        /// The task.
        pid: Pid,
        /// The lock.
        lock: String,
    },
    /// The task releases a lock it does not hold.
    #[error("bad unlock balance: task {pid} releases `{lock}`, which it does not hold")]
    NotHeld {
        /// The task.
        pid: Pid,
        /// The lock.
        lock: String,
    },
    /// The task exited holding locks.
    #[error("{0}")]
    HeldAtExit(HeldAtExit),
}

/// A task that exited while holding locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAtExit {
    /// The task.
    pub pid: Pid,
    /// Its name.
    pub comm: String,
    /// The locks it held, outermost first.
    pub locks: Vec<String>,
}

impl fmt::Display for HeldAtExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task {} ({}) is exiting with {} locks held: {}",
            self.pid,
            self.comm,
            self.locks.len(),
            self.locks.join(", ")
        )
    }
}

/// Two tasks took the same locks in opposite orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inversion {
    /// The task that showed the new order.
    pub pid: Pid,
    /// Its name.
    pub comm: String,
    /// The new order: the lock it held, then the one it acquired.
    pub new_order: [String; 2],
    /// The order recorded before, from the acquired lock to the held one (two classes,
    /// or more for a longer cycle).
    pub old_order: Vec<String>,
    /// The task that showed the first step of the old order.
    pub old_pid: Pid,
    /// Its name.
    pub old_comm: String,
}

impl fmt::Display for Inversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "possible circular locking dependency: task {} ({}) acquires `{}` while holding \
             `{}` ({}), but task {} ({}) took them in the order {}",
            self.pid,
            self.comm,
            self.new_order[1],
            self.new_order[0],
            self.new_order.join(" -> "),
            self.old_pid,
            self.old_comm,
            self.old_order.join(" -> "),
        )
    }
}

/// A lockdep report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockdepReport {
    /// A task exited with locks held.
    HeldAtExit(HeldAtExit),
    /// A lock-order inversion.
    Inversion(Inversion),
}

impl fmt::Display for LockdepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockdepReport::HeldAtExit(report) => report.fmt(f),
            LockdepReport::Inversion(report) => report.fmt(f),
        }
    }
}

/// The lockdep counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockdepStats {
    /// Stacks allocated at fork.
    pub allocated: u64,
    /// Stacks freed at free.
    pub freed: u64,
    /// Successful acquisitions.
    pub acquisitions: u64,
    /// Successful releases.
    pub releases: u64,
    /// Lock classes.
    pub classes: usize,
    /// Recorded dependencies (edges of the order graph).
    pub dependencies: usize,
    /// Tasks reported for exiting with locks held.
    pub held_at_exit: u64,
    /// Locks those tasks held.
    pub locks_held_at_exit: u64,
    /// Lock-order inversions reported (one per pair of classes).
    pub inversions: u64,
}

impl LockdepStats {
    /// Stacks alive now.
    pub fn live(&self) -> u64 {
        self.allocated - self.freed
    }
}

/// Who showed a dependency first.
#[derive(Clone)]
struct Witness {
    pid: Pid,
    comm: String,
}

#[derive(Default)]
struct Graph {
    names: Vec<String>,
    by_name: HashMap<String, u32>,
    /// `after[a][b]`: `b` was acquired while `a` was held.
    after: HashMap<u32, HashMap<u32, Witness>>,
    edges: usize,
    /// Pairs of classes already reported as inverted, lower id first.
    reported: HashSet<(u32, u32)>,
}

impl Graph {
    /// A path `from → … → to`, if the recorded dependencies hold one.
    fn path(&self, from: u32, to: u32) -> Option<Vec<u32>> {
        let mut previous: HashMap<u32, u32> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(at) = queue.pop_front() {
            for &next in self.after.get(&at).into_iter().flat_map(|m| m.keys()) {
                if next == from || previous.contains_key(&next) {
                    continue;
                }
                previous.insert(next, at);
                if next == to {
                    let mut path = vec![to];
                    let mut back = to;
                    while let Some(&before) = previous.get(&back) {
                        path.push(before);
                        back = before;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(next);
            }
        }
        None
    }

    fn name(&self, class: u32) -> String {
        self.names.get(class as usize).cloned().unwrap_or_default()
    }
}

struct Stack(Mutex<Vec<LockClass>>);

impl Stack {
    fn lock(&self) -> MutexGuard<'_, Vec<LockClass>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

static GRAPH: Mutex<Option<Graph>> = Mutex::new(None);
static STACK: TaskSlot<Stack> = TaskSlot::new();
static REPORTS: Mutex<Vec<LockdepReport>> = Mutex::new(Vec::new());

static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);
static ACQUISITIONS: AtomicU64 = AtomicU64::new(0);
static RELEASES: AtomicU64 = AtomicU64::new(0);
static HELD_AT_EXIT: AtomicU64 = AtomicU64::new(0);
static LOCKS_HELD_AT_EXIT: AtomicU64 = AtomicU64::new(0);
static INVERSIONS: AtomicU64 = AtomicU64::new(0);

struct GraphGuard(MutexGuard<'static, Option<Graph>>);

impl std::ops::Deref for GraphGuard {
    type Target = Graph;
    fn deref(&self) -> &Graph {
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("created by graph()"))
    }
}

impl std::ops::DerefMut for GraphGuard {
    fn deref_mut(&mut self) -> &mut Graph {
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("created by graph()"))
    }
}

fn graph() -> GraphGuard {
    // The graph only grows, one complete entry at a time: a panic cannot tear it.
    let mut guard = GRAPH.lock().unwrap_or_else(|e| e.into_inner());
    guard.get_or_insert_with(Graph::default);
    GraphGuard(guard)
}

fn report(report: LockdepReport) {
    let mut reports = REPORTS.lock().unwrap_or_else(|e| e.into_inner());
    if reports.len() < REPORTS_KEPT {
        reports.push(report);
    }
}

/// The class named `name`, registered on first use (every lock of one kind shares it).
pub fn lock_class(name: &str) -> LockClass {
    let mut graph = graph();
    if let Some(&id) = graph.by_name.get(name) {
        return LockClass(id);
    }
    let id = graph.names.len() as u32;
    graph.names.push(name.to_owned());
    graph.by_name.insert(name.to_owned(), id);
    LockClass(id)
}

/// The task acquires a lock of `class`. The lock is taken even when the new order
/// inverts a recorded one: the inversion is reported (once per pair of classes, in
/// [`reports`]) and returned.
///
/// # Errors
/// [`LockdepError::TooDeep`] past [`MAX_LOCK_DEPTH`]; [`LockdepError::Recursive`] if
/// the task holds a lock of this class; [`LockdepError::NotRunning`] once it is exiting;
/// [`LockdepError::NoState`]. The lock is not taken.
pub fn acquire(task: &Task, class: LockClass) -> Result<Option<Inversion>, LockdepError> {
    let stack = STACK.get(task).ok_or(LockdepError::NoState(task.pid()))?;
    let mut held = stack.lock();
    // Under the stack's lock: the exit watcher, which empties the stack, waits for it;
    // and the state is `Exiting` before that watcher runs. A lock taken after the exit
    // would be dropped at free without a report.
    if task.state() != TaskState::Running {
        return Err(LockdepError::NotRunning(task.pid()));
    }
    if held.len() >= MAX_LOCK_DEPTH {
        return Err(LockdepError::TooDeep {
            pid: task.pid(),
            lock: class.name(),
        });
    }
    if held.contains(&class) {
        return Err(LockdepError::Recursive {
            pid: task.pid(),
            lock: class.name(),
        });
    }
    let mut inversion = None;
    let mut graph = graph();
    let comm = task.comm();
    for &LockClass(before) in held.iter() {
        if graph
            .after
            .get(&before)
            .is_some_and(|next| next.contains_key(&class.0))
        {
            continue;
        }
        if let Some(path) = graph.path(class.0, before) {
            let pair = (before.min(class.0), before.max(class.0));
            let first = graph.reported.insert(pair);
            if first || inversion.is_none() {
                let witness = path
                    .get(1)
                    .and_then(|second| graph.after.get(&path[0])?.get(second))
                    .cloned()
                    .unwrap_or(Witness {
                        pid: Pid(0),
                        comm: String::new(),
                    });
                let found = Inversion {
                    pid: task.pid(),
                    comm: comm.clone(),
                    new_order: [graph.name(before), graph.name(class.0)],
                    old_order: path.iter().map(|&c| graph.name(c)).collect(),
                    old_pid: witness.pid,
                    old_comm: witness.comm,
                };
                if first {
                    INVERSIONS.fetch_add(1, Ordering::Relaxed);
                    report(LockdepReport::Inversion(found.clone()));
                }
                inversion.get_or_insert(found);
            }
            // An inverted order is not recorded: the graph stays free of cycles.
            continue;
        }
        graph.after.entry(before).or_default().insert(
            class.0,
            Witness {
                pid: task.pid(),
                comm: comm.clone(),
            },
        );
        graph.edges += 1;
    }
    drop(graph);
    held.push(class);
    ACQUISITIONS.fetch_add(1, Ordering::Relaxed);
    Ok(inversion)
}

/// The task releases its lock of `class` (not necessarily the innermost one).
///
/// # Errors
/// [`LockdepError::NotHeld`]; [`LockdepError::NoState`].
pub fn release(task: &Task, class: LockClass) -> Result<(), LockdepError> {
    let stack = STACK.get(task).ok_or(LockdepError::NoState(task.pid()))?;
    let mut held = stack.lock();
    let at = held
        .iter()
        .rposition(|&c| c == class)
        .ok_or_else(|| LockdepError::NotHeld {
            pid: task.pid(),
            lock: class.name(),
        })?;
    held.remove(at);
    RELEASES.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The locks the task holds, outermost first (none for a task without a stack).
pub fn held_locks(task: &Task) -> Vec<LockClass> {
    STACK
        .get(task)
        .map(|s| s.lock().clone())
        .unwrap_or_default()
}

/// The reports so far (the first [`REPORTS_KEPT`]).
pub fn reports() -> Vec<LockdepReport> {
    REPORTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The counters.
pub fn stats() -> LockdepStats {
    let graph = graph();
    LockdepStats {
        allocated: ALLOCATED.load(Ordering::Relaxed),
        freed: FREED.load(Ordering::Relaxed),
        acquisitions: ACQUISITIONS.load(Ordering::Relaxed),
        releases: RELEASES.load(Ordering::Relaxed),
        classes: graph.names.len(),
        dependencies: graph.edges,
        held_at_exit: HELD_AT_EXIT.load(Ordering::Relaxed),
        locks_held_at_exit: LOCKS_HELD_AT_EXIT.load(Ordering::Relaxed),
        inversions: INVERSIONS.load(Ordering::Relaxed),
    }
}

/// The one-line summary `taskwatch simulate` prints.
pub fn summary() -> String {
    let s = stats();
    format!(
        "{} classes, {} dependencies; {} acquisitions; reports: {} exits with locks held ({} locks), {} inversions; {} stacks live",
        s.classes,
        s.dependencies,
        s.acquisitions,
        s.held_at_exit,
        s.locks_held_at_exit,
        s.inversions,
        s.live()
    )
}

/// `fork`: the child starts holding nothing.
///
/// # Errors
/// None in this model; the signature matches the watcher.
pub fn on_fork(_parent: &Task, child: &Task, _flags: CloneFlags) -> Result<(), LockdepError> {
    ALLOCATED.fetch_add(1, Ordering::Relaxed);
    if STACK.set(child, Stack(Mutex::new(Vec::new()))).is_some() {
        FREED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// `exit`: checks that the task holds no locks; the locks it held are dropped.
///
/// # Errors
/// [`LockdepError::HeldAtExit`] (also kept in [`reports`]) with the lock names.
pub fn on_exit(task: &Task, _status: ExitStatus) -> Result<(), LockdepError> {
    let Some(stack) = STACK.get(task) else {
        return Ok(());
    };
    let held = std::mem::take(&mut *stack.lock());
    if held.is_empty() {
        return Ok(());
    }
    let found = {
        let graph = graph();
        HeldAtExit {
            pid: task.pid(),
            comm: task.comm(),
            locks: held.iter().map(|c| graph.name(c.0)).collect(),
        }
    };
    HELD_AT_EXIT.fetch_add(1, Ordering::Relaxed);
    LOCKS_HELD_AT_EXIT.fetch_add(held.len() as u64, Ordering::Relaxed);
    report(LockdepReport::HeldAtExit(found.clone()));
    Err(LockdepError::HeldAtExit(found))
}

/// `free`: frees the stack.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_free(task: &Task) -> Result<(), LockdepError> {
    if STACK.take(task).is_some() {
        FREED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

// One watcher per event, as v2's `DEFINE_TASK_INITCALL` / `…EXITCALL` / `…FREECALL`
// (but `fork` and `free`, below): the table calls each only for its own event, so none
// switches over the payload; a `let … else` only names the event's fields.

// `fork` and `free` share a watcher: the table sends a rolled-back fork's `free` to the
// fork watchers that succeeded and asked for `free`, so what `fork` set up is released
// on both paths.
#[task_watcher(events = fork | free, priority = 60)]
fn watch_fork_free(event: &Event<'_>) -> Result<(), LockdepError> {
    if let EventData::Fork { parent, flags } = *event.data() {
        on_fork(parent, event.task(), flags)
    } else {
        on_free(event.task())
    }
}

#[task_watcher(events = exit, priority = 60)]
fn watch_exit(event: &Event<'_>) -> Result<(), LockdepError> {
    let EventData::Exit { status } = *event.data() else {
        return Ok(());
    };
    on_exit(event.task(), status)
}

/// The lockdep watchers, one per event (`fork` and `free` together), for an explicit table
/// (the records `#[task_watcher]` submits).
pub fn watchers() -> Vec<Watcher> {
    vec![
        watcher_record!(watch_fork_free),
        watcher_record!(watch_exit),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{serial, table_of};
    use watchers_core::TaskError;

    /// A task that has exited cannot take a lock: its exit was its last check, so a
    /// lock it took afterwards would be dropped at free without a report.
    #[test]
    fn an_exited_task_cannot_acquire() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let class = lock_class("zombie_lock");
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let child = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        tasks.exit(child.pid(), 0).unwrap();
        assert!(tasks.get(child.pid()).is_some(), "a zombie until reaped");
        assert_eq!(
            acquire(&child, class),
            Err(LockdepError::NotRunning(child.pid()))
        );
        assert!(held_locks(&child).is_empty());
        tasks.exit(parent.pid(), 0).unwrap();
    }

    #[test]
    fn a_task_exiting_with_locks_held_is_reported_with_their_names() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let (a, b) = (lock_class("held::a"), lock_class("held::b"));
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        tasks.set_comm(task.pid(), "holder").unwrap();
        acquire(&task, a).unwrap();
        acquire(&task, b).unwrap();
        assert_eq!(held_locks(&task), [a, b]);
        let Err(TaskError::Watcher(error)) = tasks.exit(task.pid(), 0) else {
            panic!("the exit should be reported");
        };
        let message = error.to_string();
        assert!(message.contains("held::a, held::b"), "{message}");
        assert!(reports().iter().any(|r| matches!(
            r,
            LockdepReport::HeldAtExit(h) if h.comm == "holder" && h.locks == ["held::a", "held::b"]
        )));
        assert!(held_locks(&task).is_empty());
    }

    #[test]
    fn an_inversion_is_reported_with_both_orders() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let (a, b) = (lock_class("inv::A"), lock_class("inv::B"));
        let one = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let two = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        tasks.set_comm(one.pid(), "one").unwrap();
        tasks.set_comm(two.pid(), "two").unwrap();
        assert_eq!(acquire(&one, a).unwrap(), None);
        assert_eq!(acquire(&one, b).unwrap(), None);
        release(&one, b).unwrap();
        release(&one, a).unwrap();
        let before = stats();
        acquire(&two, b).unwrap();
        let inversion = acquire(&two, a)
            .unwrap()
            .expect("B then A inverts A then B");
        assert_eq!(inversion.new_order, ["inv::B", "inv::A"]);
        assert_eq!(inversion.old_order, ["inv::A", "inv::B"]);
        assert_eq!((inversion.pid, inversion.comm.as_str()), (two.pid(), "two"));
        assert_eq!(
            (inversion.old_pid, inversion.old_comm.as_str()),
            (one.pid(), "one")
        );
        let text = inversion.to_string();
        assert!(text.contains("inv::B -> inv::A") && text.contains("inv::A -> inv::B"));
        assert_eq!(held_locks(&two), [b, a], "the lock is taken all the same");
        release(&two, a).unwrap();
        release(&two, b).unwrap();
        // Seen again: returned, but reported once.
        acquire(&two, b).unwrap();
        assert!(acquire(&two, a).unwrap().is_some());
        assert_eq!(stats().inversions - before.inversions, 1);
        release(&two, b).unwrap();
        release(&two, a).unwrap();
        tasks.exit(one.pid(), 0).unwrap();
        tasks.exit(two.pid(), 0).unwrap();
    }

    #[test]
    fn a_longer_cycle_is_found_through_the_graph() {
        let _serial = serial();
        let t = Task::detached(9);
        on_fork(&t, &t, CloneFlags::empty()).unwrap();
        let [x, y, z] = ["cyc::x", "cyc::y", "cyc::z"].map(lock_class);
        for (first, second) in [(x, y), (y, z)] {
            acquire(&t, first).unwrap();
            acquire(&t, second).unwrap();
            release(&t, second).unwrap();
            release(&t, first).unwrap();
        }
        acquire(&t, z).unwrap();
        let inversion = acquire(&t, x).unwrap().unwrap();
        assert_eq!(inversion.old_order, ["cyc::x", "cyc::y", "cyc::z"]);
        release(&t, x).unwrap();
        release(&t, z).unwrap();
        on_free(&t).unwrap();
    }

    #[test]
    fn depth_recursion_and_balance_are_checked() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let classes: Vec<LockClass> = (0..=MAX_LOCK_DEPTH)
            .map(|i| lock_class(&format!("depth::{i}")))
            .collect();
        for &class in &classes[..MAX_LOCK_DEPTH] {
            acquire(&task, class).unwrap();
        }
        assert!(matches!(
            acquire(&task, classes[MAX_LOCK_DEPTH]),
            Err(LockdepError::TooDeep { .. })
        ));
        release(&task, classes[3]).unwrap();
        assert!(matches!(
            acquire(&task, classes[0]),
            Err(LockdepError::Recursive { .. })
        ));
        assert!(matches!(
            release(&task, classes[3]),
            Err(LockdepError::NotHeld { .. })
        ));
        for &class in classes[..MAX_LOCK_DEPTH].iter().rev() {
            if class != classes[3] {
                release(&task, class).unwrap();
            }
        }
        tasks.exit(task.pid(), 0).unwrap();
        assert_eq!(
            acquire(tasks.init(), classes[0]),
            Err(LockdepError::NoState(Pid::INIT))
        );
    }
}
