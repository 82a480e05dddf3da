//! Cpusets (`CONFIG_CPUSETS`): a hierarchy of CPU and memory-node sets that tasks
//! belong to.
//!
//! * The hierarchy has a root (`/`, every CPU and node) and cpusets created under it
//!   with [`create`], given CPUs and nodes with [`set_cpus`] and [`set_mems`] (a child's
//!   masks must stay within its parent's), and [`remove`]d when empty: a cpuset that
//!   still has tasks is [busy](CpusetError::Busy), one with children too.
//! * **fork**: the child joins its parent's cpuset (the kernel's `cpuset_fork`); a
//!   parent that never joined one (such as init, which gets no `fork`) counts as being
//!   in the root, without being counted itself.
//! * **exit**: the task leaves its cpuset (the kernel's `cpuset_exit`).
//! * **free**: a task that never exited (a fork rolled back) leaves it here.
//!
//! Every cpuset counts its tasks; [`attach`] moves a task. All changes to the hierarchy
//! and the counts happen under one lock, so the counts are exact at every moment.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use watchers_core::{
    CloneFlags, Event, EventData, EventSet, ExitStatus, Pid, Task, TaskSlot, TaskState, Watcher,
    task_watcher, watcher_record,
};

use crate::mask::Mask;

/// The events the cpusets watchers ask for.
pub const EVENTS: EventSet = watcher_record!(watch_fork_free)
    .events()
    .union(watcher_record!(watch_exit).events());

/// The priority all the cpusets watchers share (early in `copy_process`, after delay accounting).
pub const PRIORITY: i32 = watcher_record!(watch_fork_free).priority();

/// A cpuset's id; ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpusetId(pub u32);

impl CpusetId {
    /// The root cpuset, `/`.
    pub const ROOT: CpusetId = CpusetId(0);
}

impl fmt::Display for CpusetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What went wrong with a cpuset operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpusetError {
    /// No cpuset has this id (never created, or removed).
    #[error("no cpuset {0}")]
    NoSuchCpuset(CpusetId),
    /// The root cannot be removed or changed.
    #[error("the root cpuset cannot be removed or changed")]
    Root,
    /// A name that is empty, `.`/`..`, or holds a `/`.
    #[error("invalid cpuset name `{0}`")]
    InvalidName(String),
    /// A sibling has this name.
    #[error("cpuset `{0}` already exists")]
    Exists(String),
    /// The cpuset still has tasks (`EBUSY`).
    #[error("cpuset `{path}` is busy: {tasks} tasks attached")]
    Busy {
        /// The cpuset's path.
        path: String,
        /// How many tasks it has.
        tasks: usize,
    },
    /// The cpuset still has child cpusets (`EBUSY`).
    #[error("cpuset `{path}` is busy: it has {children} child cpusets")]
    HasChildren {
        /// The cpuset's path.
        path: String,
        /// How many children it has.
        children: usize,
    },
    /// A mask not within the parent's, or that would leave a child's outside it.
    #[error("{what} {mask} of `{path}` is not within {bound}")]
    NotWithin {
        /// `cpus` or `mems`.
        what: &'static str,
        /// The mask asked for.
        mask: Mask,
        /// The cpuset's path.
        path: String,
        /// What it must stay within (or contain).
        bound: String,
    },
    /// A cpuset with tasks needs CPUs and nodes; one without cannot take tasks
    /// (`ENOSPC`).
    #[error("cpuset `{0}` has no CPUs or no memory nodes for its tasks")]
    NoResources(String),
    /// The task is exiting or gone.
    #[error("task {0} is not running")]
    NotRunning(Pid),
}

/// What a cpuset looks like now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpusetInfo {
    /// Its id.
    pub id: CpusetId,
    /// Its path from the root, such as `/batch/low`.
    pub path: String,
    /// Its parent (none for the root).
    pub parent: Option<CpusetId>,
    /// Its CPUs.
    pub cpus: Mask,
    /// Its memory nodes.
    pub mems: Mask,
    /// How many tasks are attached.
    pub tasks: usize,
    /// Its child cpusets.
    pub children: Vec<CpusetId>,
}

/// The cpusets counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpusetStats {
    /// Cpusets, the root included.
    pub cpusets: usize,
    /// Tasks attached to any cpuset (counted tasks only).
    pub tasks: usize,
    /// Tasks that joined a cpuset at fork.
    pub forks: u64,
    /// Successful [`attach`] calls.
    pub attaches: u64,
}

struct Cpuset {
    name: String,
    parent: Option<CpusetId>,
    children: BTreeSet<CpusetId>,
    cpus: Mask,
    mems: Mask,
    tasks: usize,
}

struct Hierarchy {
    sets: BTreeMap<CpusetId, Cpuset>,
    next: u32,
}

/// A task's membership: the id of its cpuset, changed only under the hierarchy lock.
struct Membership(AtomicU32);

impl Membership {
    fn get(&self) -> CpusetId {
        CpusetId(self.0.load(Ordering::Relaxed))
    }
}

static HIERARCHY: LazyLock<Mutex<Hierarchy>> = LazyLock::new(|| {
    let mut sets = BTreeMap::new();
    sets.insert(
        CpusetId::ROOT,
        Cpuset {
            name: String::new(),
            parent: None,
            children: BTreeSet::new(),
            cpus: Mask::ALL,
            mems: Mask::ALL,
            tasks: 0,
        },
    );
    Mutex::new(Hierarchy { sets, next: 1 })
});

static MEMBERSHIP: TaskSlot<Membership> = TaskSlot::new();

static FORKS: AtomicU64 = AtomicU64::new(0);
static ATTACHES: AtomicU64 = AtomicU64::new(0);

fn hierarchy() -> MutexGuard<'static, Hierarchy> {
    // Every method checks before it changes anything: a panic cannot tear the hierarchy.
    HIERARCHY.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hierarchy {
    fn get(&self, id: CpusetId) -> Result<&Cpuset, CpusetError> {
        self.sets.get(&id).ok_or(CpusetError::NoSuchCpuset(id))
    }

    fn get_mut(&mut self, id: CpusetId) -> Result<&mut Cpuset, CpusetError> {
        self.sets.get_mut(&id).ok_or(CpusetError::NoSuchCpuset(id))
    }

    fn path(&self, id: CpusetId) -> String {
        let mut names = Vec::new();
        let mut at = Some(id);
        while let Some(current) = at {
            match self.sets.get(&current) {
                Some(set) if set.parent.is_some() => {
                    names.push(set.name.as_str());
                    at = set.parent;
                }
                _ => break,
            }
        }
        if names.is_empty() {
            return "/".to_owned();
        }
        names.reverse();
        names
            .iter()
            .fold(String::new(), |path, name| path + "/" + name)
    }

    fn info(&self, id: CpusetId) -> Result<CpusetInfo, CpusetError> {
        let set = self.get(id)?;
        Ok(CpusetInfo {
            id,
            path: self.path(id),
            parent: set.parent,
            cpus: set.cpus,
            mems: set.mems,
            tasks: set.tasks,
            children: set.children.iter().copied().collect(),
        })
    }

    /// Moves one counted task from `from` (if any) to `to`.
    fn recount(&mut self, from: Option<CpusetId>, to: Option<CpusetId>) {
        if let Some(set) = from.and_then(|id| self.sets.get_mut(&id)) {
            set.tasks -= 1;
        }
        if let Some(set) = to.and_then(|id| self.sets.get_mut(&id)) {
            set.tasks += 1;
        }
    }
}

/// Creates an empty cpuset (no CPUs, no nodes, as the kernel does) named `name` under
/// `parent`.
///
/// # Errors
/// [`CpusetError::NoSuchCpuset`], [`CpusetError::InvalidName`], [`CpusetError::Exists`].
pub fn create(parent: CpusetId, name: &str) -> Result<CpusetId, CpusetError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(CpusetError::InvalidName(name.to_owned()));
    }
    let mut h = hierarchy();
    let taken = h
        .get(parent)?
        .children
        .iter()
        .any(|child| h.sets.get(child).is_some_and(|set| set.name == name));
    if taken {
        return Err(CpusetError::Exists(format!(
            "{}/{name}",
            h.path(parent).trim_end_matches('/')
        )));
    }
    let id = CpusetId(h.next);
    h.next += 1;
    h.sets.insert(
        id,
        Cpuset {
            name: name.to_owned(),
            parent: Some(parent),
            children: BTreeSet::new(),
            cpus: Mask::EMPTY,
            mems: Mask::EMPTY,
            tasks: 0,
        },
    );
    h.get_mut(parent)?.children.insert(id);
    Ok(id)
}

/// Creates a cpuset and gives it `cpus` and `mems`.
///
/// # Errors
/// As [`create`], [`set_cpus`] and [`set_mems`] (the cpuset is removed again if the
/// masks are refused).
pub fn create_with(
    parent: CpusetId,
    name: &str,
    cpus: Mask,
    mems: Mask,
) -> Result<CpusetId, CpusetError> {
    let id = create(parent, name)?;
    let configured = set_cpus(id, cpus).and_then(|()| set_mems(id, mems));
    if let Err(error) = configured {
        // Nothing can be attached to it yet: the removal succeeds.
        let _ = remove(id);
        return Err(error);
    }
    Ok(id)
}

/// Removes a cpuset.
///
/// # Errors
/// [`CpusetError::Busy`] if it has tasks, [`CpusetError::HasChildren`] if it has child
/// cpusets, [`CpusetError::Root`], [`CpusetError::NoSuchCpuset`].
pub fn remove(id: CpusetId) -> Result<(), CpusetError> {
    if id == CpusetId::ROOT {
        return Err(CpusetError::Root);
    }
    let mut h = hierarchy();
    let set = h.get(id)?;
    if set.tasks > 0 {
        return Err(CpusetError::Busy {
            path: h.path(id),
            tasks: set.tasks,
        });
    }
    if !set.children.is_empty() {
        return Err(CpusetError::HasChildren {
            path: h.path(id),
            children: set.children.len(),
        });
    }
    let parent = set.parent;
    h.sets.remove(&id);
    if let Some(parent) = parent.and_then(|parent| h.sets.get_mut(&parent)) {
        parent.children.remove(&id);
    }
    Ok(())
}

fn set_mask(id: CpusetId, mask: Mask, what: &'static str) -> Result<(), CpusetError> {
    if id == CpusetId::ROOT {
        return Err(CpusetError::Root);
    }
    let mut h = hierarchy();
    let pick = |set: &Cpuset| if what == "cpus" { set.cpus } else { set.mems };
    let set = h.get(id)?;
    let parent = set.parent.map_or(Ok(Mask::ALL), |p| h.get(p).map(pick))?;
    if !mask.is_subset(parent) {
        return Err(CpusetError::NotWithin {
            what,
            mask,
            path: h.path(id),
            bound: format!("the parent's {parent}"),
        });
    }
    for child in &set.children {
        let child_mask = h.get(*child).map(pick)?;
        if !child_mask.is_subset(mask) {
            return Err(CpusetError::NotWithin {
                what,
                mask,
                path: h.path(id),
                bound: format!("a mask holding child {}'s {child_mask}", h.path(*child)),
            });
        }
    }
    if set.tasks > 0 && mask.is_empty() {
        return Err(CpusetError::NoResources(h.path(id)));
    }
    let set = h.get_mut(id)?;
    if what == "cpus" {
        set.cpus = mask;
    } else {
        set.mems = mask;
    }
    Ok(())
}

/// Sets a cpuset's CPUs (its `cpuset.cpus`).
///
/// # Errors
/// [`CpusetError::NotWithin`] if the mask is not within the parent's or leaves out a
/// child's CPUs; [`CpusetError::NoResources`] for an empty mask on a cpuset with tasks;
/// [`CpusetError::Root`]; [`CpusetError::NoSuchCpuset`].
pub fn set_cpus(id: CpusetId, cpus: Mask) -> Result<(), CpusetError> {
    set_mask(id, cpus, "cpus")
}

/// Sets a cpuset's memory nodes (its `cpuset.mems`).
///
/// # Errors
/// As [`set_cpus`].
pub fn set_mems(id: CpusetId, mems: Mask) -> Result<(), CpusetError> {
    set_mask(id, mems, "mems")
}

/// Moves a running task into a cpuset (a write to its `tasks` file).
///
/// # Errors
/// [`CpusetError::NoResources`] if the cpuset has no CPUs or no nodes;
/// [`CpusetError::NotRunning`]; [`CpusetError::NoSuchCpuset`].
pub fn attach(task: &Task, id: CpusetId) -> Result<(), CpusetError> {
    let mut h = hierarchy();
    let set = h.get(id)?;
    if set.cpus.is_empty() || set.mems.is_empty() {
        return Err(CpusetError::NoResources(h.path(id)));
    }
    // Under the lock: the exit watcher, which takes the membership, waits for it; and
    // the state is `Exiting` before that watcher runs.
    if task.state() != TaskState::Running {
        return Err(CpusetError::NotRunning(task.pid()));
    }
    let from = MEMBERSHIP.get(task).map(|m| m.get());
    MEMBERSHIP
        .get_or_insert_with(task, || Membership(AtomicU32::new(id.0)))
        .0
        .store(id.0, Ordering::Relaxed);
    h.recount(from, Some(id));
    ATTACHES.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The cpuset a task is counted in, if any (init and tasks that exited are in none).
pub fn membership(task: &Task) -> Option<CpusetId> {
    MEMBERSHIP.get(task).map(|m| m.get())
}

/// The cpuset a task runs in: its membership, or the root.
pub fn task_cpuset(task: &Task) -> CpusetId {
    membership(task).unwrap_or(CpusetId::ROOT)
}

/// The CPUs a task may run on (its cpuset's).
pub fn task_cpus(task: &Task) -> Mask {
    let h = hierarchy();
    h.get(task_cpuset(task)).map_or(Mask::ALL, |set| set.cpus)
}

/// The memory nodes a task may allocate from (its cpuset's).
pub fn task_mems(task: &Task) -> Mask {
    let h = hierarchy();
    h.get(task_cpuset(task)).map_or(Mask::ALL, |set| set.mems)
}

/// A cpuset as it is now.
///
/// # Errors
/// [`CpusetError::NoSuchCpuset`].
pub fn info(id: CpusetId) -> Result<CpusetInfo, CpusetError> {
    hierarchy().info(id)
}

/// Every cpuset, by id (the root first).
pub fn list() -> Vec<CpusetInfo> {
    let h = hierarchy();
    h.sets.keys().filter_map(|&id| h.info(id).ok()).collect()
}

/// The cpuset at `path` (such as `/batch/low`).
pub fn lookup(path: &str) -> Option<CpusetId> {
    let h = hierarchy();
    path.split('/')
        .filter(|name| !name.is_empty())
        .try_fold(CpusetId::ROOT, |at, name| {
            h.sets
                .get(&at)?
                .children
                .iter()
                .copied()
                .find(|child| h.sets.get(child).is_some_and(|set| set.name == name))
        })
}

/// The counters.
pub fn stats() -> CpusetStats {
    let h = hierarchy();
    CpusetStats {
        cpusets: h.sets.len(),
        tasks: h.sets.values().map(|set| set.tasks).sum(),
        forks: FORKS.load(Ordering::Relaxed),
        attaches: ATTACHES.load(Ordering::Relaxed),
    }
}

/// The one-line summary `taskwatch simulate` prints: the cpusets and their task counts.
pub fn summary() -> String {
    let h = hierarchy();
    const SHOWN: usize = 8;
    let mut counts: Vec<String> = h
        .sets
        .iter()
        .take(SHOWN)
        .map(|(&id, set)| format!("{}={}", h.path(id), set.tasks))
        .collect();
    if h.sets.len() > SHOWN {
        counts.push(format!("and {} more", h.sets.len() - SHOWN));
    }
    let total: usize = h.sets.values().map(|set| set.tasks).sum();
    format!(
        "{} cpusets, {} tasks attached ({})",
        h.sets.len(),
        total,
        counts.join(" ")
    )
}

/// `fork`: the child joins its parent's cpuset.
///
/// # Errors
/// None in this model; the signature matches the watcher.
pub fn on_fork(parent: &Task, child: &Task, _flags: CloneFlags) -> Result<(), CpusetError> {
    let mut h = hierarchy();
    let id = membership(parent)
        .filter(|id| h.sets.contains_key(id))
        .unwrap_or(CpusetId::ROOT);
    let previous = MEMBERSHIP
        .set(child, Membership(AtomicU32::new(id.0)))
        .map(|m| m.get());
    h.recount(previous, Some(id));
    FORKS.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// `exit`: the task leaves its cpuset.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_exit(task: &Task, _status: ExitStatus) -> Result<(), CpusetError> {
    leave(task);
    Ok(())
}

/// `free`: a task that never exited (a rolled-back fork) leaves its cpuset.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_free(task: &Task) -> Result<(), CpusetError> {
    leave(task);
    Ok(())
}

fn leave(task: &Task) {
    let mut h = hierarchy();
    if let Some(membership) = MEMBERSHIP.take(task) {
        h.recount(Some(membership.get()), None);
    }
}

// One watcher per event, as v2's `DEFINE_TASK_INITCALL` / `…EXITCALL` / `…FREECALL`
// (but `fork` and `free`, below): the table calls each only for its own event, so none
// switches over the payload; a `let … else` only names the event's fields.

// `fork` and `free` share a watcher: the table sends a rolled-back fork's `free` to the
// fork watchers that succeeded and asked for `free`, so what `fork` set up is released
// on both paths.
#[task_watcher(events = fork | free, priority = 90)]
fn watch_fork_free(event: &Event<'_>) -> Result<(), CpusetError> {
    if let EventData::Fork { parent, flags } = *event.data() {
        on_fork(parent, event.task(), flags)
    } else {
        on_free(event.task())
    }
}

#[task_watcher(events = exit, priority = 90)]
fn watch_exit(event: &Event<'_>) -> Result<(), CpusetError> {
    let EventData::Exit { status } = *event.data() else {
        return Ok(());
    };
    on_exit(event.task(), status)
}

/// The cpusets watchers, one per event (`fork` and `free` together), for an explicit table
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
    use crate::testing::{DOOMED, Rng, failing_fork, serial, table_of};
    use watchers_core::TaskTable;

    fn tasks_in(id: CpusetId) -> usize {
        info(id).unwrap().tasks
    }

    #[test]
    fn the_child_joins_its_parents_cpuset_and_leaves_at_exit() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let batch =
            create_with(CpusetId::ROOT, "join", Mask::range(0, 3), Mask::single(0)).unwrap();
        let shell = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        assert_eq!(membership(&shell), Some(CpusetId::ROOT));
        attach(&shell, batch).unwrap();
        let job = tasks.fork(shell.pid(), CloneFlags::empty()).unwrap();
        assert_eq!(task_cpuset(&job), batch);
        assert_eq!(task_cpus(&job), Mask::range(0, 3));
        assert_eq!(task_mems(&job), Mask::single(0));
        assert_eq!(tasks_in(batch), 2);
        tasks.exit(job.pid(), 0).unwrap();
        assert_eq!(tasks_in(batch), 1, "a zombie is in no cpuset");
        assert_eq!(membership(&job), None);
        tasks.exit(shell.pid(), 0).unwrap();
        assert_eq!(tasks_in(batch), 0);
        remove(batch).unwrap();
        assert_eq!(info(batch), Err(CpusetError::NoSuchCpuset(batch)));
    }

    #[test]
    fn a_cpuset_with_tasks_or_children_is_busy() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let top =
            create_with(CpusetId::ROOT, "busy", Mask::range(0, 7), Mask::range(0, 1)).unwrap();
        let inner = create_with(top, "inner", Mask::range(0, 1), Mask::single(1)).unwrap();
        assert_eq!(lookup("/busy/inner"), Some(inner));
        assert_eq!(info(inner).unwrap().path, "/busy/inner");
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        attach(&task, inner).unwrap();
        assert_eq!(
            remove(inner),
            Err(CpusetError::Busy {
                path: "/busy/inner".into(),
                tasks: 1
            })
        );
        assert!(matches!(
            remove(top),
            Err(CpusetError::HasChildren { children: 1, .. })
        ));
        assert_eq!(remove(CpusetId::ROOT), Err(CpusetError::Root));
        attach(&task, top).unwrap();
        assert_eq!((tasks_in(inner), tasks_in(top)), (0, 1));
        remove(inner).unwrap();
        tasks.exit(task.pid(), 0).unwrap();
        assert_eq!(attach(&task, top), Err(CpusetError::NotRunning(task.pid())));
        remove(top).unwrap();
        assert_eq!(lookup("/busy"), None);
    }

    #[test]
    fn masks_nest_within_the_parent() {
        let _serial = serial();
        let top =
            create_with(CpusetId::ROOT, "nest", Mask::range(0, 3), Mask::range(0, 1)).unwrap();
        let child = create(top, "child").unwrap();
        assert!(matches!(
            set_cpus(child, Mask::range(2, 5)),
            Err(CpusetError::NotWithin { what: "cpus", .. })
        ));
        set_cpus(child, Mask::range(2, 3)).unwrap();
        assert!(matches!(
            set_cpus(top, Mask::range(0, 2)),
            Err(CpusetError::NotWithin { what: "cpus", .. })
        ));
        assert_eq!(
            create(top, "child"),
            Err(CpusetError::Exists("/nest/child".into()))
        );
        assert!(matches!(
            create(top, "a/b"),
            Err(CpusetError::InvalidName(_))
        ));
        let task = Task::detached(5);
        assert!(matches!(
            attach(&task, child),
            Err(CpusetError::NoResources(_))
        ));
        assert_eq!(
            set_cpus(CpusetId::ROOT, Mask::EMPTY),
            Err(CpusetError::Root)
        );
        remove(child).unwrap();
        remove(top).unwrap();
    }

    #[test]
    fn a_rolled_back_fork_leaves_the_count_unchanged() {
        let _serial = serial();
        let mut list = watchers();
        list.push(failing_fork(PRIORITY - 1));
        let tasks = table_of(list);
        let set =
            create_with(CpusetId::ROOT, "rollback", Mask::single(0), Mask::single(0)).unwrap();
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        attach(&parent, set).unwrap();
        tasks.set_comm(parent.pid(), DOOMED).unwrap();
        tasks.fork(parent.pid(), CloneFlags::empty()).unwrap_err();
        assert_eq!(tasks_in(set), 1);
        tasks.exit(parent.pid(), 0).unwrap();
        remove(set).unwrap();
    }

    /// Counts each cpuset's running tasks from the table itself.
    fn recount(tasks: &TaskTable, ids: &[CpusetId]) -> Vec<usize> {
        let all = tasks.tasks();
        ids.iter()
            .map(|&id| all.iter().filter(|t| membership(t) == Some(id)).count())
            .collect()
    }

    #[test]
    fn counts_stay_consistent_under_a_random_workload() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let a = create_with(CpusetId::ROOT, "wl-a", Mask::range(0, 3), Mask::single(0)).unwrap();
        let b = create_with(a, "wl-b", Mask::single(1), Mask::single(0)).unwrap();
        let ids = [a, b];
        let mut rng = Rng::new(7);
        let seed = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        attach(&seed, a).unwrap();
        let mut live = vec![seed.pid()];
        for _ in 0..2_000 {
            let pid = live[rng.below(live.len())];
            match rng.below(4) {
                0 | 1 => {
                    let flags = if rng.below(3) == 0 {
                        CloneFlags::THREAD
                    } else {
                        CloneFlags::empty()
                    };
                    live.push(tasks.fork(pid, flags).unwrap().pid());
                }
                2 if live.len() > 1 => {
                    live.retain(|&p| p != pid);
                    tasks.exit(pid, 0).unwrap();
                }
                _ => {
                    let task = tasks.get(pid).unwrap();
                    attach(&task, ids[rng.below(2)]).unwrap();
                }
            }
            let counted: Vec<usize> = ids.iter().map(|&id| tasks_in(id)).collect();
            assert_eq!(counted, recount(&tasks, &ids));
        }
        for pid in live {
            tasks.exit(pid, 0).unwrap();
        }
        assert_eq!((tasks_in(a), tasks_in(b)), (0, 0));
        remove(b).unwrap();
        remove(a).unwrap();
    }

    #[test]
    fn counts_stay_consistent_with_threads_racing() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let set = create_with(CpusetId::ROOT, "race", Mask::range(0, 1), Mask::single(0)).unwrap();
        std::thread::scope(|scope| {
            for seed in 0..4 {
                let tasks = &tasks;
                scope.spawn(move || {
                    let mut rng = Rng::new(seed);
                    for _ in 0..300 {
                        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
                        if rng.below(2) == 0 {
                            attach(&task, set).unwrap();
                        }
                        let child = tasks.fork(task.pid(), CloneFlags::empty()).unwrap();
                        tasks.exit(task.pid(), 0).unwrap();
                        tasks.exit(child.pid(), 0).unwrap();
                    }
                });
            }
        });
        assert_eq!(tasks_in(set), 0);
        remove(set).unwrap();
    }
}
