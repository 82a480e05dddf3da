//! Per-task watchers: closures attached to one task (v1 patch 9).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::event::{Event, EventKind, EventSet};
use crate::task::Task;
use crate::watcher::{IntoWatcherError, WatcherResult};

type Callback = dyn Fn(&Event<'_>) -> WatcherResult + Send + Sync;

/// One closure attached to a task.
pub(crate) struct LocalWatcher {
    events: EventSet,
    callback: Box<Callback>,
    removed: AtomicBool,
    pub(crate) errors: AtomicU64,
}

impl LocalWatcher {
    /// Calls the closure. The walk counts its errors.
    pub(crate) fn call(&self, event: &Event<'_>) -> WatcherResult {
        (self.callback)(event)
    }
}

/// The closures attached to one task.
#[derive(Default)]
pub(crate) struct LocalWatchers {
    /// Whether the list may be non-empty: the dispatch fast path reads only this.
    any: AtomicBool,
    list: Mutex<Vec<Arc<LocalWatcher>>>,
}

impl LocalWatchers {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<LocalWatcher>>> {
        // The list is only pushed to and filtered; a panic cannot tear it.
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// The live watchers of `kind`, cloned so that none of them runs under the lock.
    pub(crate) fn of(&self, kind: EventKind) -> Vec<Arc<LocalWatcher>> {
        let mut list = self.lock();
        list.retain(|w| !w.removed.load(Ordering::Acquire));
        self.any.store(!list.is_empty(), Ordering::Release);
        list.iter()
            .filter(|w| w.events.contains(kind))
            .cloned()
            .collect()
    }

    /// Drops every closure (at the task's `free`).
    pub(crate) fn clear(&self) {
        let list = std::mem::take(&mut *self.lock());
        self.any.store(false, Ordering::Release);
        drop(list);
    }
}

/// The per-task watchers an event reaches: the task's own, or for a fork the parent's.
pub(crate) fn reached_by(event: &Event<'_>) -> Vec<Arc<LocalWatcher>> {
    let owner = event.parent().unwrap_or(event.task());
    if owner.local.any() {
        owner.local.of(event.kind())
    } else {
        Vec::new()
    }
}

/// Whether any per-task watcher could be reached by `event` (the fast-path check).
#[inline]
pub(crate) fn may_reach(event: &Event<'_>) -> bool {
    event.parent().unwrap_or(event.task()).local.any()
}

impl Task {
    /// Attaches `callback` to this task for `events`: it is called for the task's own
    /// events and, when `events` has `fork`, for the fork of each of its children (with
    /// the child as [`Event::task`]). It runs after the table's watchers; an error from
    /// it on `fork` aborts the fork like any fork watcher's. It stays until the task is
    /// freed or the returned handle is dropped or [`removed`](TaskWatch::remove).
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
    /// watch.remove();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch<F, E>(&self, events: EventSet, callback: F) -> TaskWatch
    where
        F: Fn(&Event<'_>) -> Result<(), E> + Send + Sync + 'static,
        E: IntoWatcherError,
    {
        let watcher = Arc::new(LocalWatcher {
            events,
            callback: Box::new(move |event: &Event<'_>| {
                callback(event).map_err(IntoWatcherError::into_watcher_error)
            }),
            removed: AtomicBool::new(false),
            errors: AtomicU64::new(0),
        });
        let handle = TaskWatch {
            watcher: Arc::downgrade(&watcher),
            keep: false,
        };
        self.local.lock().push(watcher);
        self.local.any.store(true, Ordering::Release);
        handle
    }
}

/// A closure attached to one task by [`Task::watch`]. Dropping the handle, or calling
/// [`remove`](TaskWatch::remove), detaches it; [`keep`](TaskWatch::keep) leaves it
/// attached until the task is freed.
#[must_use = "dropping a TaskWatch detaches the closure at once; call `keep` to keep it"]
pub struct TaskWatch {
    watcher: Weak<LocalWatcher>,
    keep: bool,
}

impl TaskWatch {
    /// Detaches the closure: no dispatch that starts after this returns calls it.
    pub fn remove(self) {}

    /// Leaves the closure attached until the task is freed.
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Whether the closure is still attached (false once the task was freed).
    pub fn is_attached(&self) -> bool {
        self.watcher
            .upgrade()
            .is_some_and(|w| !w.removed.load(Ordering::Acquire))
    }

    /// How many times the closure returned an error.
    pub fn errors(&self) -> u64 {
        self.watcher
            .upgrade()
            .map_or(0, |w| w.errors.load(Ordering::Relaxed))
    }
}

impl fmt::Debug for TaskWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskWatch")
            .field("attached", &self.is_attached())
            .finish()
    }
}

impl Drop for TaskWatch {
    fn drop(&mut self) {
        if !self.keep
            && let Some(watcher) = self.watcher.upgrade()
        {
            watcher.removed.store(true, Ordering::Release);
        }
    }
}
