//! Per-task watchers: closures attached to one task (v1 patch 9).
//!
//! A task's watchers are published as an `arc-swap` snapshot that dispatch loads without
//! a lock; attaching and detaching take the task's writer lock and publish a new one.
//! Each closure lives in a [`Gate`], so detaching waits for calls in flight and drops the
//! closure outside every lock, like unregistering a runtime watcher.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use arc_swap::{ArcSwap, Guard};

use crate::error::UnregisterError;
use crate::event::Event;
use crate::event_kind::{EventKind, EventSet};
use crate::gate::Gate;
use crate::inflight;
use crate::routing;
use crate::task::Task;
use crate::task_values::TaskState;
use crate::watcher_result::{IntoWatcherError, WatcherResult};

/// A watcher's closure as a gate holds it. Runtime watchers share it, and [`Called`]
/// and [`call_gated`], with per-task watchers; they live here because a task's own
/// watchers sit below the runtime registry (see the layering note in `lib.rs`).
pub(crate) type Callback = dyn Fn(&Event<'_>) -> WatcherResult + Send + Sync;

/// What a call of a runtime or per-task watcher came to.
pub(crate) enum Called {
    /// It ran and returned this.
    Ran(WatcherResult),
    /// It was not called: unregistered in the meantime, or not meant for this event.
    Removed,
}

/// Calls the closure in `gate` unless it is shut, recording on this thread's stack that
/// it runs (so that shutting it from inside does not wait for itself); `admitted` runs
/// once the gate lets the call through, before the closure (so also when it panics).
pub(crate) fn call_gated(
    gate: &Gate<Box<Callback>>,
    event: &Event<'_>,
    admitted: impl FnOnce(),
) -> Called {
    match inflight::call(gate, |callback| {
        admitted();
        callback(event)
    }) {
        Some(result) => Called::Ran(result),
        None => Called::Removed,
    }
}

/// One closure attached to a task.
pub(crate) struct LocalWatcher {
    events: EventSet,
    gate: Gate<Box<Callback>>,
    pub(crate) errors: AtomicU64,
    /// For a watcher of `fork` and `free`: [`OWNER_FREED`] once its task is freed, and
    /// the count of children whose `fork` it sees (a fork in flight) or saw and that
    /// are not freed yet. It is shut when both are true: freed owner, no child owed a
    /// `free`.
    owed: AtomicUsize,
}

/// [`LocalWatcher::owed`]: the watcher's own task has been freed.
const OWNER_FREED: usize = 1 << (usize::BITS - 1);

impl LocalWatcher {
    /// Whether it wants the `free` of each child whose `fork` it saw.
    fn pairs_fork_with_free(&self) -> bool {
        self.events.contains(EventKind::Fork) && self.events.contains(EventKind::Free)
    }

    /// Its task was freed: shuts it unless a child whose `fork` it saw is still to be
    /// freed (then the last such child's `free` shuts it).
    fn owner_freed(&self) {
        let before = self.owed.fetch_or(OWNER_FREED, Ordering::AcqRel);
        if before & !OWNER_FREED == 0 {
            // A wait that would never end is given up; the last call drops the closure.
            let _ = inflight::shut(&self.gate);
        }
    }

    /// Counts a child owed its `free` before the watcher sees that child's `fork`,
    /// unless its task's `free` has already decided to shut it (the task freed, no child
    /// owed): then it must not see the fork, whose child's `free` would find it shut.
    /// Counted before the call, not after it, so that a task freed while the `fork` is
    /// in flight leaves the watcher to that child's `free`.
    fn owe_child(&self) -> bool {
        let mut owed = self.owed.load(Ordering::Acquire);
        loop {
            if owed == OWNER_FREED {
                return false;
            }
            match self.owed.compare_exchange_weak(
                owed,
                owed + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => owed = now,
            }
        }
    }

    /// A child whose `fork` it saw has been freed (its `free` sent), or a child counted
    /// by [`owe_child`](LocalWatcher::owe_child) was not forked after all.
    fn child_freed(&self) {
        if self.owed.fetch_sub(1, Ordering::AcqRel) == OWNER_FREED | 1 {
            let _ = inflight::shut(&self.gate);
        }
    }
}

type List = Vec<Arc<LocalWatcher>>;

/// What dispatch needs to know about one task beyond the table: its per-task watchers,
/// the parent's watchers that saw its `fork`, and which runtime watchers saw it.
#[derive(Default)]
pub(crate) struct LocalWatchers {
    /// Made by the first watcher that concerns the task; until then the fast path
    /// reads this alone.
    shared: OnceLock<Arc<Shared>>,
    /// The epoch of the runtime snapshot its `fork` was dispatched with (0: none).
    runtime_epoch: AtomicU64,
    /// The table whose snapshot that was ([`Runtime::id`](crate::runtime::Runtime)): an
    /// epoch counts serials of one table only, and a `free` may be dispatched through
    /// another table by hand. With [`OTHER_TABLES`] set, forks dispatched by hand
    /// through further tables are kept in [`FORKS_ELSEWHERE`].
    runtime_table: AtomicU64,
}

/// [`LocalWatchers::runtime_table`]: the task's `fork` was also dispatched through
/// other tables (table ids never reach this bit).
const OTHER_TABLES: u64 = 1 << 63;

/// By task serial, the (table id, epoch) of each fork dispatched through a table other
/// than the one a task records inline: only a `fork` sent by hand through several
/// tables comes here (a `TaskTable` uses one), so every task keeps two words and no
/// list. An entry goes when its task is dropped.
static FORKS_ELSEWHERE: Mutex<BTreeMap<u64, Vec<(u64, u64)>>> = Mutex::new(BTreeMap::new());

fn forks_elsewhere() -> MutexGuard<'static, BTreeMap<u64, Vec<(u64, u64)>>> {
    // Each update leaves the map whole; a panic cannot tear it.
    FORKS_ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`Shared::reach`]: the task has attached watchers.
const ATTACHED: u8 = 1;
/// [`Shared::reach`]: watchers of its parent saw its `fork` and want its `free`.
const FORKED_BY: u8 = 2;

#[derive(Default)]
struct Shared {
    /// Whether the task's events may reach a per-task watcher (bits above).
    reach: AtomicU8,
    /// The attached watchers; writers take this lock, dispatch never does.
    list: Mutex<List>,
    /// The attached watchers, for dispatch.
    published: ArcSwap<List>,
    /// The parent's watchers of `fork` and `free` that saw this task's `fork` succeed.
    forked_by: OnceLock<Box<[Arc<LocalWatcher>]>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, List> {
        // The list is only pushed to and filtered; a panic cannot tear it.
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `list`; called with the writer lock held, so that publications follow
    /// the order of the changes.
    fn publish(&self, list: &List) {
        self.published.store(Arc::new(list.clone()));
        if list.is_empty() {
            let was = self.reach.fetch_and(!ATTACHED, Ordering::Release);
            reach_changed(was, was & !ATTACHED);
        } else {
            let was = self.reach.fetch_or(ATTACHED, Ordering::Release);
            reach_changed(was, was | ATTACHED);
        }
    }

    /// Takes `watcher` off the list.
    fn detach(&self, watcher: &Arc<LocalWatcher>) {
        let mut list = self.lock();
        list.retain(|w| !Arc::ptr_eq(w, watcher));
        self.publish(&list);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        reach_changed(*self.reach.get_mut(), 0);
    }
}

/// Reports a task's `reach` going from `was` to `now` to the routing words.
///
/// Each change of a task's `reach` is one read-modify-write whose result says both
/// `was` and `now`, so of the changes that race (a handle detaching the last watcher
/// while the task's `free` clears `FORKED_BY`) exactly one sees `reach` leave zero and
/// one sees it return there, whichever order they take.
fn reach_changed(was: u8, now: u8) {
    let delta: isize = match (was != 0, now != 0) {
        (false, true) => 1,
        (true, false) => -1,
        _ => return,
    };
    routing::reachable_changed(delta);
}

impl LocalWatchers {
    fn shared(&self) -> &Arc<Shared> {
        self.shared.get_or_init(Arc::default)
    }

    /// Whether the task's events may reach a per-task watcher: the fast-path check.
    #[inline]
    fn may_be_reached(&self) -> bool {
        self.shared
            .get()
            .is_some_and(|shared| shared.reach.load(Ordering::Acquire) != 0)
    }

    /// Waits until a [`Task::watch`] that found the task alive has published its
    /// watcher. Called once the task is `Dead` and before its `free` is dispatched, so
    /// that the `free` reaches every watcher attached before it began; a later `watch`
    /// finds the task `Dead` and attaches nothing. (A `watch` checks the state and
    /// publishes under the list's lock, which the `free`'s dispatch does not take.)
    pub(crate) fn settle(&self) {
        // Pairs with the fence in `Task::watch`: either this sees the `Shared` that the
        // watch made, or the watch sees `Dead`.
        fence(Ordering::SeqCst);
        if let Some(shared) = self.shared.get() {
            drop(shared.lock());
        }
    }

    /// Detaches every watcher and drops the closures (at the task's `free`), outside the
    /// lock; one whose call is in flight on this thread is dropped when that call ends.
    /// A watcher of `fork` and `free` stays until every child whose `fork` it saw has
    /// been freed; the watchers of the parent that saw this task's `fork` are told.
    ///
    /// A closure's `Drop` that panics leaves none of the others attached for ever: each
    /// is handled, then the first panic continues (unless the thread already unwinds).
    pub(crate) fn clear(&self) {
        // Pairs with the fence in `Task::watch`: the task is `Dead` by now, and either
        // this sees the watcher's list, or that `watch` sees `Dead` and attaches nothing.
        fence(Ordering::SeqCst);
        let Some(shared) = self.shared.get() else {
            return;
        };
        // Once: the bit is set only after `forked_by` was.
        let was = shared.reach.fetch_and(!FORKED_BY, Ordering::AcqRel);
        let forked_by = match shared.forked_by.get() {
            Some(forked_by) if was & FORKED_BY != 0 => {
                reach_changed(was, was & !FORKED_BY);
                &forked_by[..]
            }
            _ => &[],
        };
        let list = {
            let mut list = shared.lock();
            let taken = std::mem::take(&mut *list);
            shared.publish(&list);
            taken
        };
        let parents = forked_by.iter().map(|watcher| (watcher, true));
        let own = list.iter().map(|watcher| (watcher, false));
        each_despite_panics(parents.chain(own), |(watcher, parents)| {
            if parents {
                watcher.child_freed();
            } else if watcher.pairs_fork_with_free() {
                watcher.owner_freed();
            } else {
                // A wait that would never end is given up; the last call drops it.
                let _ = inflight::shut(&watcher.gate);
            }
        });
    }

    /// Records that the `fork` of the task whose serial is `serial` was dispatched with
    /// the runtime snapshot `epoch` of the table whose runtime id is `table`.
    pub(crate) fn set_runtime_epoch(&self, serial: u64, table: u64, epoch: u64) {
        let recorded = self.runtime_table.load(Ordering::Acquire);
        let inline = recorded & !OTHER_TABLES == table
            || (recorded == 0
                && self
                    .runtime_table
                    .compare_exchange(0, table, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok());
        if inline {
            // The table was stored first: a reader that sees this epoch sees it too.
            self.runtime_epoch.store(epoch, Ordering::Release);
            return;
        }
        let mut elsewhere = forks_elsewhere();
        let forks = elsewhere.entry(serial).or_default();
        match forks.iter_mut().find(|(id, _)| *id == table) {
            Some(fork) => fork.1 = epoch,
            None => forks.push((table, epoch)),
        }
        self.runtime_table.fetch_or(OTHER_TABLES, Ordering::Release);
    }

    /// The epoch of the runtime snapshot of table `table` that the `fork` of the task
    /// whose serial is `serial` was dispatched with; 0 (no runtime watcher of `table` saw
    /// it) if it was dispatched with none of that table's.
    pub(crate) fn runtime_epoch(&self, serial: u64, table: u64) -> u64 {
        let epoch = self.runtime_epoch.load(Ordering::Acquire);
        let recorded = self.runtime_table.load(Ordering::Acquire);
        if recorded & !OTHER_TABLES == table {
            return epoch;
        }
        if recorded & OTHER_TABLES == 0 {
            return 0;
        }
        forks_elsewhere()
            .get(&serial)
            .and_then(|forks| forks.iter().find(|(id, _)| *id == table))
            .map_or(0, |&(_, epoch)| epoch)
    }

    /// Whether the task with serial `serial` keeps forks through other tables aside.
    #[cfg(test)]
    pub(crate) fn keeps_forks_elsewhere(serial: u64) -> bool {
        forks_elsewhere().contains_key(&serial)
    }

    /// Drops what the task with serial `serial` kept of forks through other tables.
    #[inline(always)]
    pub(crate) fn forget_forks_elsewhere(&self, serial: u64) {
        #[cold]
        #[inline(never)]
        fn forget(serial: u64) {
            forks_elsewhere().remove(&serial);
        }
        if self.runtime_table.load(Ordering::Relaxed) & OTHER_TABLES != 0 {
            forget(serial);
        }
    }
}

/// The per-task watchers an event may reach, in the order they run: for a `fork`, the
/// parent's watchers of `fork`; for a `free`, the task's own watchers of `free` that do
/// not watch `fork`, then the parent's that saw its `fork`; otherwise the task's own.
pub(crate) struct Reached<'e> {
    kind: EventKind,
    attached: Option<Guard<Arc<List>>>,
    forked_by: &'e [Arc<LocalWatcher>],
    /// For a `fork`, per attached watcher: whether it is counted as owed the child's
    /// `free` (see [`LocalWatcher::owe_child`]); empty when none wants that `free`.
    /// Handed to the child when the fork succeeds, given back when dropped otherwise.
    owing: Box<[bool]>,
}

impl Reached<'_> {
    fn attached(&self) -> &[Arc<LocalWatcher>] {
        self.attached.as_deref().map_or(&[], |list| &list[..])
    }

    pub(crate) fn len(&self) -> usize {
        self.attached().len() + self.forked_by.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, i: usize) -> (&LocalWatcher, bool) {
        let attached = self.attached();
        match attached.get(i) {
            Some(watcher) => (watcher, true),
            None => (&self.forked_by[i - attached.len()], false),
        }
    }

    /// Calls watcher `i` if it is still attached and meant for this event.
    pub(crate) fn call(&self, i: usize, event: &Event<'_>) -> Called {
        let (watcher, attached) = self.get(i);
        let meant = match self.kind {
            // A watcher of `fork` watches the task's children: it never saw this
            // task's own `fork`, so it gets no `free` for it. The list holds every
            // attached watcher, so one that did not ask for `free` is skipped here too.
            EventKind::Free if attached => {
                watcher.events.contains(EventKind::Free)
                    && !watcher.events.contains(EventKind::Fork)
            }
            // The parent's watchers that saw the fork were recorded asking for `free`.
            EventKind::Free => true,
            // One that wants the child's `free` sees the fork only if it will stay for
            // that `free` (also its rollback `free`, which only a call of it asks for).
            EventKind::Fork if watcher.pairs_fork_with_free() => self.owing.get(i) == Some(&true),
            kind => watcher.events.contains(kind),
        };
        if !meant {
            return Called::Removed;
        }
        call_gated(&watcher.gate, event, || {})
    }

    /// Whether watcher `i` is owed a `free` when a later one refuses the `fork`.
    pub(crate) fn wants_free(&self, i: usize) -> bool {
        let (watcher, _) = self.get(i);
        self.kind == EventKind::Fork && watcher.pairs_fork_with_free()
    }

    pub(crate) fn record_error(&self, i: usize) {
        self.get(i).0.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// After `child`'s `fork` succeeded: the watchers that saw it and asked for `free`
    /// will get the child's `free`.
    pub(crate) fn saw_fork_of(&mut self, child: &Task) {
        let owing = std::mem::take(&mut self.owing);
        let seen: Box<[_]> = self
            .attached()
            .iter()
            .zip(&owing)
            .filter(|&(_, &owed)| owed)
            .map(|(watcher, _)| watcher.clone())
            .collect();
        if seen.is_empty() {
            return;
        }
        let shared = child.local.shared();
        // A fork is dispatched once; a second dispatch of the same fork keeps the first.
        match shared.forked_by.set(seen) {
            Ok(()) => {
                let was = shared.reach.fetch_or(FORKED_BY, Ordering::Release);
                reach_changed(was, was | FORKED_BY);
            }
            Err(seen) => each_despite_panics(seen.iter(), |watcher| watcher.child_freed()),
        }
    }
}

impl Drop for Reached<'_> {
    /// A fork that failed (or unwound) owes no child's `free`: gives back what
    /// [`reached_by`] counted, which shuts a watcher whose task was freed meanwhile.
    fn drop(&mut self) {
        if self.owing.is_empty() {
            return;
        }
        // Each is given back even if one's closure, dropped as it shuts, panics.
        let owed = self.attached().iter().zip(&self.owing);
        each_despite_panics(owed.filter(|&(_, &owed)| owed), |(watcher, _)| {
            watcher.child_freed();
        });
    }
}

/// Runs `f` on every item even if it panics on some (a closure's or a value's `Drop`),
/// so that none is left attached or owed; then the first panic continues, unless the
/// thread already unwinds.
fn each_despite_panics<T>(items: impl IntoIterator<Item = T>, mut f: impl FnMut(T)) {
    let mut panic = None;
    for item in items {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(item))) {
            panic.get_or_insert(payload);
        }
    }
    if let Some(payload) = panic
        && !std::thread::panicking()
    {
        resume_unwind(payload);
    }
}

/// The per-task watchers `event` may reach; see [`Reached`].
pub(crate) fn reached_by<'e>(event: &'e Event<'_>) -> Reached<'e> {
    let kind = event.kind();
    let owner = event.parent().unwrap_or(event.task());
    let shared = owner.local.shared.get();
    let attached = shared
        .filter(|shared| shared.reach.load(Ordering::Acquire) & ATTACHED != 0)
        .map(|shared| shared.published.load());
    let forked_by = match (kind, shared) {
        (EventKind::Free, Some(shared)) => shared.forked_by.get().map_or(&[][..], |b| &b[..]),
        _ => &[],
    };
    let mut reached = Reached {
        kind,
        attached,
        forked_by,
        owing: Box::default(),
    };
    let attached = reached.attached();
    if kind == EventKind::Fork && attached.iter().any(|w| w.pairs_fork_with_free()) {
        reached.owing = attached
            .iter()
            .map(|w| w.pairs_fork_with_free() && w.owe_child())
            .collect();
    }
    reached
}

/// Whether any per-task watcher could be reached by `event` (the fast-path check: one
/// load and a branch for a task that never had one).
#[inline]
pub(crate) fn may_reach(event: &Event<'_>) -> bool {
    event
        .parent()
        .unwrap_or(event.task())
        .local
        .may_be_reached()
}

impl Task {
    /// Attaches `callback` to this task for `events`: it is called for the task's own
    /// events and, when `events` has `fork`, for the fork of each of its children (with
    /// the child as [`Event::task`]). It runs after the table's watchers; an error from
    /// it on `fork` aborts the fork like any fork watcher's.
    ///
    /// `free` follows the table's rule: a watcher of `fork` watches the task's children
    /// and gets, with `free`, the `free` of each child whose `fork` it saw succeed (also
    /// when a later watcher refuses that fork), not the task's own; a watcher of `free`
    /// that does not ask for `fork` gets the task's own `free`.
    ///
    /// The closure stays until the task is freed or the returned handle is dropped or
    /// [`removed`](TaskWatch::remove); it is dropped then, outside every lock, so its
    /// `Drop` may use the task (attach another watcher, read a slot). A watcher of `fork`
    /// and `free` is owed the `free` of children that may outlive the task: it stays
    /// (unless its handle is dropped) until the task and each child whose `fork` it saw
    /// have been freed, and is dropped by the last of those frees. On a task whose `free`
    /// has begun ([`TaskState::Dead`]) nothing is attached: the closure is dropped before
    /// `watch` returns, and [`TaskWatch::is_attached`] is false. The same holds for an
    /// empty `events`, which no event could reach (attached, it would keep every table's
    /// dispatch off its fast path for nothing).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use watchers_core::{EventKind, EventSet, TaskTable, WatcherTable};
    ///
    /// let tasks = TaskTable::with_table(WatcherTable::from_watchers([])?.leak());
    /// let shell = tasks.fork(tasks.init().pid(), Default::default())?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let watch = shell.watch(EventSet::FORK | EventSet::EXEC, move |event| {
    ///     log.lock().unwrap().push((event.kind(), event.task().pid()));
    ///     Ok::<(), std::convert::Infallible>(())
    /// });
    /// let child = tasks.fork(shell.pid(), Default::default())?;
    /// tasks.exec(shell.pid(), "/bin/ls")?;
    /// assert_eq!(*seen.lock().unwrap(), [(EventKind::Fork, child.pid()), (EventKind::Exec, shell.pid())]);
    /// watch.remove()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch<F, E>(&self, events: EventSet, callback: F) -> TaskWatch
    where
        F: Fn(&Event<'_>) -> Result<(), E> + Send + Sync + 'static,
        E: IntoWatcherError,
    {
        let callback: Box<Callback> = Box::new(move |event: &Event<'_>| {
            callback(event).map_err(IntoWatcherError::into_watcher_error)
        });
        let watcher = Arc::new(LocalWatcher {
            events,
            gate: Gate::new(callback),
            errors: AtomicU64::new(0),
            owed: AtomicUsize::new(0),
        });
        let shared = self.local.shared();
        // Pairs with the fence in `LocalWatchers::clear`, which a freed task has run or
        // will run after it became `Dead`.
        fence(Ordering::SeqCst);
        let attached = {
            let mut list = shared.lock();
            let attach = !events.is_empty() && self.state() != TaskState::Dead;
            if attach {
                list.push(watcher.clone());
                shared.publish(&list);
            }
            attach
        };
        if !attached {
            // Nothing will ever call it: it is dropped now, and the handle says so.
            // Nobody else holds the gate, so this drop waits for nothing.
            let _ = inflight::shut(&watcher.gate);
        }
        TaskWatch {
            task: Arc::downgrade(shared),
            pid: self.pid().get(),
            watcher,
            keep: false,
        }
    }
}

/// A closure attached to one task by [`Task::watch`]. Dropping the handle, or calling
/// [`remove`](TaskWatch::remove), detaches it; [`keep`](TaskWatch::keep) leaves it
/// attached until the task is freed.
///
/// **Once the drop (or `remove`) returns, the closure has been called for the last time
/// on every thread and has been dropped** (here, or by the task's `free` on another
/// thread, whose drop of it this waits for), with the same two exceptions as
/// [`Registration`](crate::Registration): detached from inside its own call, it is
/// dropped when the outermost call of it on this thread returns; and when waiting for a
/// call, or for the `free`'s drop of it, on another thread would never end (that thread
/// waits for a closure this thread is running), the wait is given up and the last party
/// drops it.
#[must_use = "dropping a TaskWatch detaches the closure at once; call `keep` to keep it"]
pub struct TaskWatch {
    task: Weak<Shared>,
    pid: u32,
    watcher: Arc<LocalWatcher>,
    keep: bool,
}

impl TaskWatch {
    /// Detaches the closure, waits until no call of it is in flight and drops it.
    ///
    /// # Errors
    /// [`UnregisterError::WouldDeadlock`] if that wait would never end; the closure is
    /// detached all the same, and dropped when its last call returns.
    pub fn remove(mut self) -> Result<(), UnregisterError> {
        self.detach()
    }

    /// Leaves the closure attached until the task is freed (a watcher of `fork` and
    /// `free`: until the task and every child whose `fork` it saw are freed).
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Whether the closure can still be called: false once it was removed, or once the
    /// task was freed (for a watcher of `fork` and `free`: the task and every child
    /// whose `fork` it saw).
    pub fn is_attached(&self) -> bool {
        !self.watcher.gate.is_closed()
    }

    /// How many times the closure returned an error.
    pub fn errors(&self) -> u64 {
        self.watcher.errors.load(Ordering::Relaxed)
    }

    fn detach(&mut self) -> Result<(), UnregisterError> {
        if std::mem::replace(&mut self.keep, true) {
            return Ok(());
        }
        if let Some(shared) = self.task.upgrade() {
            shared.detach(&self.watcher);
        }
        inflight::shut(&self.watcher.gate).map_err(|inflight::Cycle| {
            UnregisterError::WouldDeadlock(format!("per-task watcher of task {}", self.pid))
        })
    }
}

impl fmt::Debug for TaskWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskWatch")
            .field("task", &self.pid)
            .field("attached", &self.is_attached())
            .finish()
    }
}

impl Drop for TaskWatch {
    fn drop(&mut self) {
        // A drop cannot report the cycle; the closure is then dropped by the last call.
        let _ = self.detach();
    }
}
