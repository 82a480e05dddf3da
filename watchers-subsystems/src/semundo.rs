//! SysV semaphore undo lists (`CONFIG_SYSVIPC`).
//!
//! A small model of SysV semaphores: [`semget`] creates a set, [`semop`] applies an
//! array of operations atomically (never sleeping: an operation that would block fails
//! with [`SemError::WouldBlock`], as with `IPC_NOWAIT`). An operation with
//! [`SemBuf::undo`] (`SEM_UNDO`) records the opposite adjustment in the task's **undo
//! list**.
//!
//! * **fork** with [`CloneFlags::SYSVSEM`]: the child shares its parent's undo list
//!   (allocated for the parent first if it had none, as the kernel's `get_undo_list`);
//!   the list counts its sharers. Without the flag the child starts with none.
//! * **exit**: the task drops its share; when the last sharer does, the adjustments are
//!   applied to the semaphores, **exactly once** (the kernel's `exit_sem`).
//! * **free**: a task that never exited (a fork rolled back) drops its share here.
//!
//! Adjustments for a set that was removed, or for a semaphore whose value was set with
//! [`set_value`] after they were recorded, are discarded, as the kernel does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use watchers_core::{
    CloneFlags, Event, EventData, EventSet, ExitStatus, Pid, Task, TaskSlot, TaskState, Watcher,
    task_watcher, watcher_record,
};

/// The events the semundo watchers ask for.
pub const EVENTS: EventSet = watcher_record!(watch_fork_free)
    .events()
    .union(watcher_record!(watch_exit).events());

/// The priority all the semundo watchers share (`copy_semundo` follows `audit_alloc`).
pub const PRIORITY: i32 = watcher_record!(watch_fork_free).priority();

/// The largest semaphore value (`SEMVMX`); also the largest adjustment (`SEMAEM`).
pub const SEMVMX: i32 = 32_767;

/// The most semaphores in one set (`SEMMSL`).
pub const SEMMSL: usize = 250;

/// The most operations in one [`semop`] call (`SEMOPM`).
pub const SEMOPM: usize = 500;

/// What went wrong with a semaphore call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SemError {
    /// No set has this id (never created, or removed).
    #[error("no semaphore set with id {0}")]
    NoSuchSet(u32),
    /// A set size out of `1..=SEMMSL`, or a key reused with more semaphores.
    #[error("invalid number of semaphores: {0}")]
    InvalidSize(usize),
    /// A semaphore number beyond the set.
    #[error("semaphore {num} is out of range for set {id} ({len} semaphores)")]
    NoSuchSemaphore {
        /// The set.
        id: u32,
        /// The number asked for.
        num: u16,
        /// How many the set has.
        len: usize,
    },
    /// Too many operations, or none.
    #[error("{0} operations in one semop (1..={SEMOPM} allowed)")]
    TooManyOps(usize),
    /// The operation would have to wait (the model never sleeps: `EAGAIN`).
    #[error("semaphore {num} of set {id} would block")]
    WouldBlock {
        /// The set.
        id: u32,
        /// The semaphore.
        num: u16,
    },
    /// A value or an adjustment would leave `0..=SEMVMX` (`ERANGE`).
    #[error("semaphore {num} of set {id} would go out of range")]
    Range {
        /// The set.
        id: u32,
        /// The semaphore.
        num: u16,
    },
    /// The task is exiting or gone: it cannot record undo adjustments any more.
    #[error("task {0} is not running")]
    NotRunning(Pid),
}

/// Which set [`semget`] looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SemKey {
    /// A new set nobody else can find (`IPC_PRIVATE`).
    Private,
    /// The set with this key, created if there is none (`IPC_CREAT`).
    Key(i32),
}

/// One operation of a [`semop`] call (`struct sembuf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SemBuf {
    /// The semaphore's number in the set.
    pub num: u16,
    /// Added to the value; zero waits for the value to be zero.
    pub op: i16,
    /// `SEM_UNDO`: record the opposite adjustment, applied when the task exits.
    pub undo: bool,
}

impl SemBuf {
    /// `op` on semaphore `num`, without undo.
    pub const fn new(num: u16, op: i16) -> SemBuf {
        SemBuf {
            num,
            op,
            undo: false,
        }
    }

    /// The same operation with `SEM_UNDO`.
    #[must_use]
    pub const fn undo(self) -> SemBuf {
        SemBuf { undo: true, ..self }
    }
}

/// A task's (possibly shared) undo list (`struct sem_undo_list`).
#[derive(Debug)]
pub struct UndoList {
    sharers: AtomicUsize,
    applied: AtomicBool,
    /// Per set: for each semaphore, the generation its adjustment belongs to and the
    /// adjustment. Ordered, so that an exit applies the sets in the same order in every
    /// run (and a fork cycle runs the same instructions in every process).
    entries: Mutex<BTreeMap<u32, Vec<(u64, i32)>>>,
}

impl UndoList {
    fn new() -> UndoList {
        LISTS_ALLOCATED.fetch_add(1, Ordering::Relaxed);
        UndoList {
            sharers: AtomicUsize::new(1),
            applied: AtomicBool::new(false),
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// How many tasks share it now.
    pub fn sharers(&self) -> usize {
        self.sharers.load(Ordering::Acquire)
    }

    /// Whether its adjustments were applied (its last sharer exited).
    pub fn applied(&self) -> bool {
        self.applied.load(Ordering::Acquire)
    }

    /// The adjustment recorded for semaphore `num` of set `id` (zero if none).
    pub fn adjustment(&self, id: u32, num: u16) -> i32 {
        self.lock()
            .get(&id)
            .and_then(|adjs| adjs.get(usize::from(num)))
            .map_or(0, |&(_, adj)| adj)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, Vec<(u64, i32)>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for UndoList {
    /// A list dropped with a sharer left was never let go by `release`: one that
    /// `TaskSlot::get_or_insert_with` built on a thread that lost the race to give the
    /// task its list, or one whose task was freed without its exit. It is released now,
    /// or it would count as live for ever.
    fn drop(&mut self) {
        if *self.sharers.get_mut() != 0 {
            LISTS_RELEASED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The semundo counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemStats {
    /// Semaphore sets alive now.
    pub sets: usize,
    /// Undo lists allocated.
    pub lists_allocated: u64,
    /// Undo lists whose last sharer let go (applied or, if empty, just dropped), or
    /// dropped with no sharer having let go (built for a task another thread gave one
    /// first).
    pub lists_released: u64,
    /// Undo lists whose adjustments were applied.
    pub lists_applied: u64,
    /// Semaphore adjustments applied at exit (non-zero ones).
    pub adjustments_applied: u64,
    /// Adjustments discarded because their set was removed or their value reset.
    pub adjustments_discarded: u64,
    /// Successful `semop` calls.
    pub semops: u64,
}

impl SemStats {
    /// Undo lists alive now.
    pub fn lists_live(&self) -> u64 {
        self.lists_allocated - self.lists_released
    }
}

struct SemSet {
    key: Option<i32>,
    values: Vec<i32>,
    /// Bumped by `set_value`: adjustments recorded before are void.
    generations: Vec<u64>,
}

struct Registry {
    sets: BTreeMap<u32, SemSet>,
    keys: BTreeMap<i32, u32>,
    next_id: u32,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    sets: BTreeMap::new(),
    keys: BTreeMap::new(),
    next_id: 0,
});

static UNDO: TaskSlot<UndoList> = TaskSlot::new();

static LISTS_ALLOCATED: AtomicU64 = AtomicU64::new(0);
static LISTS_RELEASED: AtomicU64 = AtomicU64::new(0);
static LISTS_APPLIED: AtomicU64 = AtomicU64::new(0);
static ADJUSTMENTS_APPLIED: AtomicU64 = AtomicU64::new(0);
static ADJUSTMENTS_DISCARDED: AtomicU64 = AtomicU64::new(0);
static SEMOPS: AtomicU64 = AtomicU64::new(0);

fn registry() -> MutexGuard<'static, Registry> {
    // Every change to the registry is made after all its checks: a panic cannot tear it.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// `semget`: the id of the set with `key` (created with `nsems` semaphores at zero if
/// there is none), or of a new private set.
///
/// # Errors
/// [`SemError::InvalidSize`] if `nsems` is not in `1..=SEMMSL`, or exceeds the size of
/// the existing set with this key.
pub fn semget(key: SemKey, nsems: usize) -> Result<u32, SemError> {
    if nsems == 0 || nsems > SEMMSL {
        return Err(SemError::InvalidSize(nsems));
    }
    let mut registry = registry();
    if let SemKey::Key(key) = key
        && let Some(&id) = registry.keys.get(&key)
    {
        let len = registry.sets.get(&id).map_or(0, |set| set.values.len());
        return if nsems <= len {
            Ok(id)
        } else {
            Err(SemError::InvalidSize(nsems))
        };
    }
    let id = registry.next_id;
    registry.next_id = registry.next_id.wrapping_add(1);
    let key = match key {
        SemKey::Private => None,
        SemKey::Key(key) => {
            registry.keys.insert(key, id);
            Some(key)
        }
    };
    registry.sets.insert(
        id,
        SemSet {
            key,
            values: vec![0; nsems],
            generations: vec![0; nsems],
        },
    );
    Ok(id)
}

/// `semctl(IPC_RMID)`: removes a set. Undo adjustments recorded for it are discarded.
///
/// # Errors
/// [`SemError::NoSuchSet`].
pub fn remove(id: u32) -> Result<(), SemError> {
    let mut registry = registry();
    let set = registry.sets.remove(&id).ok_or(SemError::NoSuchSet(id))?;
    if let Some(key) = set.key {
        registry.keys.remove(&key);
    }
    Ok(())
}

/// `semctl(GETVAL)`.
///
/// # Errors
/// [`SemError::NoSuchSet`] or [`SemError::NoSuchSemaphore`].
pub fn value(id: u32, num: u16) -> Result<i32, SemError> {
    let registry = registry();
    let set = registry.sets.get(&id).ok_or(SemError::NoSuchSet(id))?;
    set.values
        .get(usize::from(num))
        .copied()
        .ok_or(SemError::NoSuchSemaphore {
            id,
            num,
            len: set.values.len(),
        })
}

/// `semctl(SETVAL)`: sets a value; every undo adjustment recorded for this semaphore is
/// void from now on.
///
/// # Errors
/// [`SemError::NoSuchSet`], [`SemError::NoSuchSemaphore`], or [`SemError::Range`] for a
/// value outside `0..=SEMVMX`.
pub fn set_value(id: u32, num: u16, value: i32) -> Result<(), SemError> {
    let mut registry = registry();
    let set = registry.sets.get_mut(&id).ok_or(SemError::NoSuchSet(id))?;
    let len = set.values.len();
    let i = usize::from(num);
    if i >= len {
        return Err(SemError::NoSuchSemaphore { id, num, len });
    }
    if !(0..=SEMVMX).contains(&value) {
        return Err(SemError::Range { id, num });
    }
    set.values[i] = value;
    set.generations[i] += 1;
    Ok(())
}

/// `semop`: applies `ops` to set `id` all at once or not at all, on behalf of `task`.
/// Operations with `SEM_UNDO` record the opposite adjustment in the task's undo list
/// (allocated on first use).
///
/// # Errors
/// [`SemError::WouldBlock`] if an operation would have to wait; [`SemError::Range`] if
/// a value or an adjustment would leave its range; [`SemError::NoSuchSet`],
/// [`SemError::NoSuchSemaphore`], [`SemError::TooManyOps`]; [`SemError::NotRunning`] for
/// an undo operation by a task that is exiting. Nothing changes on an error.
pub fn semop(task: &Task, id: u32, ops: &[SemBuf]) -> Result<(), SemError> {
    if ops.is_empty() || ops.len() > SEMOPM {
        return Err(SemError::TooManyOps(ops.len()));
    }
    let wants_undo = ops.iter().any(|op| op.undo);
    let mut registry = registry();
    // Under the registry lock, which the exit watcher takes to take the undo list, and
    // the task is `Exiting` before that watcher runs: a list made after the exit would
    // be applied only at free.
    if wants_undo && task.state() != TaskState::Running {
        return Err(SemError::NotRunning(task.pid()));
    }
    let set = registry.sets.get_mut(&id).ok_or(SemError::NoSuchSet(id))?;
    let len = set.values.len();
    let mut values = set.values.clone();
    for op in ops {
        let i = usize::from(op.num);
        let value = values.get_mut(i).ok_or(SemError::NoSuchSemaphore {
            id,
            num: op.num,
            len,
        })?;
        let next = *value + i32::from(op.op);
        if op.op == 0 && *value != 0 || next < 0 {
            return Err(SemError::WouldBlock { id, num: op.num });
        }
        if next > SEMVMX {
            return Err(SemError::Range { id, num: op.num });
        }
        *value = next;
    }
    if wants_undo {
        // Checked before the list is allocated: a call that fails changes nothing. Every
        // change to an undo list is made under the registry lock held here, so the
        // entries read now are still the list's when they are written back.
        let existing = UNDO.get(task);
        let current = existing
            .as_ref()
            .and_then(|list| list.lock().get(&id).cloned());
        let mut adjs: Vec<(u64, i32)> = (0..len)
            .map(|i| match current.as_ref().and_then(|adjs| adjs.get(i)) {
                Some(&(generation, adj)) if generation == set.generations[i] => (generation, adj),
                _ => (set.generations[i], 0),
            })
            .collect();
        for op in ops.iter().filter(|op| op.undo) {
            let (_, adj) = &mut adjs[usize::from(op.num)];
            *adj -= i32::from(op.op);
            if !(-SEMVMX..=SEMVMX).contains(adj) {
                return Err(SemError::Range { id, num: op.num });
            }
        }
        let list = existing.unwrap_or_else(|| UNDO.get_or_insert_with(task, UndoList::new));
        list.lock().insert(id, adjs);
    }
    set.values = values;
    SEMOPS.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The task's undo list, if it has one.
pub fn undo_list(task: &Task) -> Option<Arc<UndoList>> {
    UNDO.get(task)
}

/// The counters.
pub fn stats() -> SemStats {
    SemStats {
        sets: registry().sets.len(),
        lists_allocated: LISTS_ALLOCATED.load(Ordering::Relaxed),
        lists_released: LISTS_RELEASED.load(Ordering::Relaxed),
        lists_applied: LISTS_APPLIED.load(Ordering::Relaxed),
        adjustments_applied: ADJUSTMENTS_APPLIED.load(Ordering::Relaxed),
        adjustments_discarded: ADJUSTMENTS_DISCARDED.load(Ordering::Relaxed),
        semops: SEMOPS.load(Ordering::Relaxed),
    }
}

/// The one-line summary `taskwatch simulate` prints.
pub fn summary() -> String {
    let s = stats();
    format!(
        "{} sets; {} undo lists live; {} applied ({} adjustments, {} discarded); {} semops",
        s.sets,
        s.lists_live(),
        s.lists_applied,
        s.adjustments_applied,
        s.adjustments_discarded,
        s.semops
    )
}

/// `fork`: with [`CloneFlags::SYSVSEM`] the child shares the parent's undo list.
///
/// # Errors
/// None in this model; the signature matches the watcher.
pub fn on_fork(parent: &Task, child: &Task, flags: CloneFlags) -> Result<(), SemError> {
    if flags.contains(CloneFlags::SYSVSEM) {
        let list = UNDO.get_or_insert_with(parent, UndoList::new);
        list.sharers.fetch_add(1, Ordering::AcqRel);
        if let Some(previous) = UNDO.set_arc(child, list) {
            release(&previous);
        }
    }
    Ok(())
}

/// `exit`: drops the task's share of its undo list; the last sharer applies it.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_exit(task: &Task, _status: ExitStatus) -> Result<(), SemError> {
    // Taken under the registry lock, so that a semop that saw the task running has
    // made its list by now (see `semop`); released after it, as `release` takes it.
    let list = {
        let _registry = registry();
        UNDO.take(task)
    };
    if let Some(list) = list {
        release(&list);
    }
    Ok(())
}

/// `free`: drops the share of a task that never exited (a rolled-back fork).
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_free(task: &Task) -> Result<(), SemError> {
    if let Some(list) = UNDO.take(task) {
        release(&list);
    }
    Ok(())
}

// One watcher per event, as v2's `DEFINE_TASK_INITCALL` / `…EXITCALL` / `…FREECALL`
// (but `fork` and `free`, below): the table calls each only for its own event, so none
// switches over the payload; a `let … else` only names the event's fields.

// `fork` and `free` share a watcher: the table sends a rolled-back fork's `free` to the
// fork watchers that succeeded and asked for `free`, so what `fork` set up is released
// on both paths.
#[task_watcher(events = fork | free, priority = 40)]
fn watch_fork_free(event: &Event<'_>) -> Result<(), SemError> {
    if let EventData::Fork { parent, flags } = *event.data() {
        on_fork(parent, event.task(), flags)
    } else {
        on_free(event.task())
    }
}

#[task_watcher(events = exit, priority = 40)]
fn watch_exit(event: &Event<'_>) -> Result<(), SemError> {
    let EventData::Exit { status } = *event.data() else {
        return Ok(());
    };
    on_exit(event.task(), status)
}

/// The semundo watchers, one per event (`fork` and `free` together), for an explicit table
/// (the records `#[task_watcher]` submits).
pub fn watchers() -> Vec<Watcher> {
    vec![
        watcher_record!(watch_fork_free),
        watcher_record!(watch_exit),
    ]
}

/// Drops one share; the last one applies the adjustments (once).
fn release(list: &UndoList) {
    if list.sharers.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    LISTS_RELEASED.fetch_add(1, Ordering::Relaxed);
    if list.applied.swap(true, Ordering::AcqRel) {
        return;
    }
    let mut registry = registry();
    let entries = std::mem::take(&mut *list.lock());
    if entries.is_empty() {
        return;
    }
    LISTS_APPLIED.fetch_add(1, Ordering::Relaxed);
    let (mut applied, mut discarded) = (0, 0);
    for (id, adjs) in entries {
        let Some(set) = registry.sets.get_mut(&id) else {
            discarded += adjs.iter().filter(|&&(_, adj)| adj != 0).count() as u64;
            continue;
        };
        for (i, (generation, adj)) in adjs.into_iter().enumerate() {
            if adj == 0 {
                continue;
            }
            if set.generations.get(i) != Some(&generation) {
                discarded += 1;
                continue;
            }
            let value = &mut set.values[i];
            *value = (*value + adj).clamp(0, SEMVMX);
            applied += 1;
        }
    }
    drop(registry);
    ADJUSTMENTS_APPLIED.fetch_add(applied, Ordering::Relaxed);
    ADJUSTMENTS_DISCARDED.fetch_add(discarded, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{DOOMED, failing_fork, serial, table_of};

    fn set_with(value: i32) -> u32 {
        let id = semget(SemKey::Private, 2).unwrap();
        set_value(id, 0, value).unwrap();
        id
    }

    #[test]
    fn a_value_changed_with_undo_returns_to_its_start_after_exit() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let id = set_with(5);
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        semop(&task, id, &[SemBuf::new(0, -2).undo()]).unwrap();
        semop(&task, id, &[SemBuf::new(1, 3).undo(), SemBuf::new(0, 1)]).unwrap();
        assert_eq!((value(id, 0).unwrap(), value(id, 1).unwrap()), (4, 3));
        assert_eq!(undo_list(&task).unwrap().adjustment(id, 0), 2);
        tasks.exit(task.pid(), 0).unwrap();
        // The operation without SEM_UNDO stays.
        assert_eq!((value(id, 0).unwrap(), value(id, 1).unwrap()), (6, 0));
        remove(id).unwrap();
    }

    #[test]
    fn a_shared_list_is_applied_once_by_the_last_sharer() {
        let _serial = serial();
        let before = stats();
        let tasks = table_of(watchers());
        let id = set_with(10);
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        semop(&parent, id, &[SemBuf::new(0, 1).undo()]).unwrap();
        let child = tasks.fork(parent.pid(), CloneFlags::SYSVSEM).unwrap();
        let list = undo_list(&child).unwrap();
        assert!(Arc::ptr_eq(&list, &undo_list(&parent).unwrap()));
        assert_eq!(list.sharers(), 2);
        semop(&child, id, &[SemBuf::new(0, 1).undo()]).unwrap();
        assert_eq!(list.adjustment(id, 0), -2);
        tasks.exit(child.pid(), 0).unwrap();
        assert_eq!(value(id, 0).unwrap(), 12, "a sharer is left");
        assert!(!list.applied());
        tasks.exit(parent.pid(), 0).unwrap();
        assert_eq!(
            value(id, 0).unwrap(),
            10,
            "applied once (twice would give 8)"
        );
        assert!(list.applied());
        assert_eq!(list.sharers(), 0);
        let after = stats();
        assert_eq!(after.lists_applied - before.lists_applied, 1);
        assert_eq!(after.lists_live(), before.lists_live());
        remove(id).unwrap();
    }

    #[test]
    fn without_sysvsem_the_child_has_its_own_list() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let id = set_with(3);
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        semop(&parent, id, &[SemBuf::new(0, -1).undo()]).unwrap();
        let child = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        assert!(undo_list(&child).is_none());
        semop(&child, id, &[SemBuf::new(0, -1).undo()]).unwrap();
        tasks.exit(child.pid(), 0).unwrap();
        tasks.wait(parent.pid()).unwrap();
        assert_eq!(value(id, 0).unwrap(), 2);
        tasks.exit(parent.pid(), 0).unwrap();
        assert_eq!(value(id, 0).unwrap(), 3);
        remove(id).unwrap();
    }

    #[test]
    fn a_rolled_back_fork_gives_its_share_back() {
        let _serial = serial();
        let mut list = watchers();
        list.push(failing_fork(PRIORITY - 1));
        let tasks = table_of(list);
        let id = set_with(4);
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        semop(&parent, id, &[SemBuf::new(0, 1).undo()]).unwrap();
        tasks.set_comm(parent.pid(), DOOMED).unwrap();
        tasks.fork(parent.pid(), CloneFlags::SYSVSEM).unwrap_err();
        let list = undo_list(&parent).unwrap();
        assert_eq!((list.sharers(), list.applied()), (1, false));
        assert_eq!(value(id, 0).unwrap(), 5);
        tasks.exit(parent.pid(), 0).unwrap();
        assert_eq!(value(id, 0).unwrap(), 4);
        assert!(list.applied());
        remove(id).unwrap();
    }

    #[test]
    fn operations_are_all_or_nothing() {
        let _serial = serial();
        let task = Task::detached(7);
        let id = set_with(1);
        let ops = [SemBuf::new(0, -1).undo(), SemBuf::new(1, -1)];
        assert_eq!(
            semop(&task, id, &ops),
            Err(SemError::WouldBlock { id, num: 1 })
        );
        assert_eq!(value(id, 0).unwrap(), 1);
        assert!(undo_list(&task).is_none_or(|l| l.adjustment(id, 0) == 0));
        assert_eq!(
            semop(&task, id, &[SemBuf::new(0, 0)]),
            Err(SemError::WouldBlock { id, num: 0 })
        );
        assert!(matches!(
            semop(&task, id, &[SemBuf::new(9, 1)]),
            Err(SemError::NoSuchSemaphore { num: 9, .. })
        ));
        assert_eq!(semop(&task, id, &[]), Err(SemError::TooManyOps(0)));
        set_value(id, 1, SEMVMX).unwrap();
        assert_eq!(
            semop(&task, id, &[SemBuf::new(1, 1)]),
            Err(SemError::Range { id, num: 1 })
        );
        remove(id).unwrap();
        assert_eq!(
            semop(&task, id, &[SemBuf::new(0, 1)]),
            Err(SemError::NoSuchSet(id))
        );
    }

    #[test]
    fn removed_sets_and_reset_values_discard_their_adjustments() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let gone = set_with(2);
        let reset = set_with(2);
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        semop(&task, gone, &[SemBuf::new(0, -1).undo()]).unwrap();
        semop(&task, reset, &[SemBuf::new(0, -1).undo()]).unwrap();
        remove(gone).unwrap();
        set_value(reset, 0, 7).unwrap();
        let before = stats();
        tasks.exit(task.pid(), 0).unwrap();
        assert_eq!(value(reset, 0).unwrap(), 7);
        let after = stats();
        assert_eq!(
            after.adjustments_discarded - before.adjustments_discarded,
            2
        );
        remove(reset).unwrap();
    }

    /// A semop that passed its running check before the task exited must not leave an
    /// undo list on the exited task (it would be applied at free, not at exit).
    #[test]
    fn an_undo_semop_racing_the_exit_leaves_no_list() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let id = set_with(0);
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let held = registry();
        let outcome = std::thread::scope(|scope| {
            let racer = scope.spawn(|| semop(&task, id, &[SemBuf::new(0, 1).undo()]));
            std::thread::sleep(std::time::Duration::from_millis(100));
            let exiter = scope.spawn(|| tasks.exit(task.pid(), 0));
            // The premise: the exit has begun (its watcher waits for the lock held
            // here) before the racer can go on, whichever of the two takes it first.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while task.state() == TaskState::Running {
                assert!(std::time::Instant::now() < deadline, "the exit never began");
                std::thread::yield_now();
            }
            drop(held);
            exiter.join().unwrap().unwrap();
            racer.join().unwrap()
        });
        assert!(
            undo_list(&task).is_none(),
            "outcome {outcome:?}: list on an exited task"
        );
        remove(id).unwrap();
    }

    /// An undo adjustment out of range fails the call with nothing changed: no undo
    /// list is allocated for a task that had none.
    #[test]
    fn an_adjustment_out_of_range_allocates_no_list() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let id = set_with(0);
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let before = stats();
        let ops = [
            SemBuf::new(0, 30_000).undo(),
            SemBuf::new(0, -30_000),
            SemBuf::new(0, 30_000).undo(),
        ];
        assert_eq!(semop(&task, id, &ops), Err(SemError::Range { id, num: 0 }));
        assert!(undo_list(&task).is_none(), "no list for a failed call");
        assert_eq!(stats().lists_allocated, before.lists_allocated);
        assert_eq!(value(id, 0), Ok(0));
        tasks.exit(task.pid(), 0).unwrap();
        remove(id).unwrap();
    }

    #[test]
    fn keys_name_one_set() {
        let _serial = serial();
        let a = semget(SemKey::Key(0x5eed), 3).unwrap();
        assert_eq!(semget(SemKey::Key(0x5eed), 2), Ok(a));
        assert_eq!(
            semget(SemKey::Key(0x5eed), 4),
            Err(SemError::InvalidSize(4))
        );
        assert_eq!(semget(SemKey::Private, 0), Err(SemError::InvalidSize(0)));
        remove(a).unwrap();
        assert_ne!(semget(SemKey::Key(0x5eed), 1).unwrap(), a);
        let b = semget(SemKey::Key(0x5eed), 1).unwrap();
        remove(b).unwrap();
    }
}
