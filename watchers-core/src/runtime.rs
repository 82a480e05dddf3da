//! Watchers that come and go at run time (the patches' "watchers from modules").
//!
//! Registration rebuilds a merged snapshot of static and runtime watchers per event and
//! publishes it with `arc-swap`; dispatch loads the snapshot without a lock. Unregistering
//! takes the watcher out of the snapshot, then closes its [`Gate`] and waits until no call
//! of it is in flight: the kernel's `synchronize_rcu` promise, narrowed to one watcher.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::fmt;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::ArcSwapOption;

use crate::event::{Event, EventKind, EventSet};
use crate::gate::Gate;
use crate::table::WatcherTable;
use crate::watcher::{IntoWatcherError, WatcherResult};

type Callback = dyn Fn(&Event<'_>) -> WatcherResult + Send + Sync;

/// A watcher registered at run time.
pub(crate) struct RuntimeWatcher {
    pub(crate) name: String,
    pub(crate) events: EventSet,
    pub(crate) priority: i32,
    callback: Box<Callback>,
    pub(crate) calls: AtomicU64,
    pub(crate) errors: AtomicU64,
    gate: Gate,
}

/// What a call of a runtime watcher came to.
pub(crate) enum Called {
    /// It ran and returned this.
    Ran(WatcherResult),
    /// It was unregistered in the meantime and was not called.
    Removed,
}

thread_local! {
    /// The runtime watchers whose callbacks this thread is running, innermost last.
    static RUNNING: RefCell<Vec<*const RuntimeWatcher>> = const { RefCell::new(Vec::new()) };
}

impl RuntimeWatcher {
    /// Calls the watcher unless it has been unregistered. The walk counts its errors.
    pub(crate) fn call(&self, event: &Event<'_>) -> Called {
        let Some(_pass) = self.gate.enter() else {
            return Called::Removed;
        };
        let _running = Running::enter(self);
        self.calls.fetch_add(1, Ordering::Relaxed);
        Called::Ran((self.callback)(event))
    }
}

/// Records on this thread's stack that a runtime watcher's callback is running, so that
/// unregistering it from inside does not wait for itself.
struct Running;

impl Running {
    fn enter(watcher: &RuntimeWatcher) -> Running {
        // During thread teardown there is no stack to record on; nothing can unregister
        // from inside this call then.
        let _ = RUNNING.try_with(|running| running.borrow_mut().push(watcher));
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = RUNNING.try_with(|running| running.borrow_mut().pop());
    }
}

/// One watcher in a merged chain.
#[derive(Clone)]
pub(crate) enum Callee {
    /// A static watcher: its entry index in the table.
    Static(u32),
    /// A runtime watcher.
    Runtime(Arc<RuntimeWatcher>),
}

/// Static and runtime watchers merged, per event, in dispatch order.
pub(crate) struct Snapshot {
    pub(crate) chains: [Box<[Callee]>; EventKind::COUNT],
}

/// The runtime side of a table.
#[derive(Default)]
pub(crate) struct Runtime {
    /// The merged chains; `None` while no runtime watcher is registered.
    pub(crate) snapshot: ArcSwapOption<Snapshot>,
    /// The events some runtime watcher asked for: the fast path checks this alone.
    wanted: AtomicU16,
    /// The registered watchers; writers take this lock, dispatch never does.
    registered: Mutex<Vec<Arc<RuntimeWatcher>>>,
}

impl Runtime {
    /// Whether a runtime watcher asked for `kind`.
    #[inline]
    pub(crate) fn wants(&self, kind: EventKind) -> bool {
        EventSet::from_bits_truncate(self.wanted.load(Ordering::Acquire)).contains(kind)
    }

    pub(crate) fn wanted_events(&self) -> EventSet {
        EventSet::from_bits_truncate(self.wanted.load(Ordering::Acquire))
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<RuntimeWatcher>>> {
        // The list is only pushed to and filtered; a panic cannot tear it.
        self.registered.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn registered(&self) -> Vec<Arc<RuntimeWatcher>> {
        self.lock().clone()
    }
}

/// A runtime watcher could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// A static or runtime watcher already has this name.
    #[error("a task watcher named `{0}` is already registered")]
    DuplicateName(String),
    /// The watcher asked for no events.
    #[error("runtime task watcher `{0}` asks for no events")]
    NoEvents(String),
}

/// How to register a runtime watcher: its name, events and priority. Build one with
/// [`WatcherTable::watcher`] (or [`watcher`](crate::watcher) for the global table) and
/// finish with [`register`](RuntimeBuilder::register).
#[must_use = "a builder does nothing until `register` is called"]
pub struct RuntimeBuilder<'t> {
    table: &'t WatcherTable,
    name: String,
    events: EventSet,
    priority: i32,
}

impl fmt::Debug for RuntimeBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("name", &self.name)
            .field("events", &self.events)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl<'t> RuntimeBuilder<'t> {
    /// The watcher's priority (default 0): higher runs earlier on set-up events, later on
    /// `exit` and `free`, merged with the static watchers under the same rules.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Registers `callback`, which returns `()`-like `Ok(())` or an error. It is called
    /// from whatever thread dispatches.
    ///
    /// # Errors
    /// [`RegisterError::DuplicateName`] if a static or runtime watcher has the name;
    /// [`RegisterError::NoEvents`] for an empty event set.
    pub fn register<F, E>(self, callback: F) -> Result<Registration<'t>, RegisterError>
    where
        F: Fn(&Event<'_>) -> Result<(), E> + Send + Sync + 'static,
        E: IntoWatcherError,
    {
        let callback: Box<Callback> = Box::new(move |event: &Event<'_>| {
            callback(event).map_err(IntoWatcherError::into_watcher_error)
        });
        self.register_boxed(callback)
    }

    fn register_boxed(self, callback: Box<Callback>) -> Result<Registration<'t>, RegisterError> {
        let table = self.table;
        if self.events.is_empty() {
            return Err(RegisterError::NoEvents(self.name));
        }
        let mut registered = table.runtime.lock();
        let taken = table.entries.iter().any(|e| e.watcher.name() == self.name)
            || registered.iter().any(|w| w.name == self.name);
        if taken {
            return Err(RegisterError::DuplicateName(self.name));
        }
        let watcher = Arc::new(RuntimeWatcher {
            name: self.name,
            events: self.events,
            priority: self.priority,
            callback,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            gate: Gate::default(),
        });
        registered.push(watcher.clone());
        publish(table, &registered);
        Ok(Registration {
            table,
            watcher: Arc::downgrade(&watcher),
            done: false,
        })
    }
}

impl WatcherTable {
    /// Starts registering a runtime watcher of `events` named `name` on this table.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use watchers_core::{EventSet, TaskTable, WatcherTable};
    ///
    /// let table = WatcherTable::from_watchers([])?.leak();
    /// let tasks = TaskTable::with_table(table);
    /// let forks = Arc::new(AtomicUsize::new(0));
    /// let seen = forks.clone();
    /// let registration = table
    ///     .watcher("plugin::forks", EventSet::FORK)
    ///     .register(move |_| {
    ///         seen.fetch_add(1, Ordering::Relaxed);
    ///         Ok::<(), std::convert::Infallible>(())
    ///     })?;
    /// tasks.fork(tasks.init().pid(), Default::default())?;
    /// registration.unregister();
    /// // After unregister returns the closure is never called again.
    /// tasks.fork(tasks.init().pid(), Default::default())?;
    /// assert_eq!(forks.load(Ordering::Relaxed), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watcher(&self, name: impl Into<String>, events: EventSet) -> RuntimeBuilder<'_> {
        RuntimeBuilder {
            table: self,
            name: name.into(),
            events,
            priority: 0,
        }
    }
}

/// Rebuilds and publishes the merged chains. Called with the registration lock held, so
/// snapshots are published in the order the changes were made.
fn publish(table: &WatcherTable, registered: &[Arc<RuntimeWatcher>]) {
    let wanted = registered
        .iter()
        .fold(EventSet::EMPTY, |set, w| set | w.events);
    if registered.is_empty() {
        table.runtime.snapshot.store(None);
    } else {
        let chains = EventKind::ALL.map(|kind| merged_chain(table, registered, kind));
        table
            .runtime
            .snapshot
            .store(Some(Arc::new(Snapshot { chains })));
    }
    table.runtime.wanted.store(wanted.bits(), Ordering::Release);
}

fn merged_chain(
    table: &WatcherTable,
    registered: &[Arc<RuntimeWatcher>],
    kind: EventKind,
) -> Box<[Callee]> {
    let statics = table.entries.iter().enumerate().filter_map(|(id, entry)| {
        let w = &entry.watcher;
        w.events().contains(kind).then(|| {
            let key = (Reverse(w.priority()), w.name().to_owned());
            (key, Callee::Static(id as u32))
        })
    });
    let runtimes = registered
        .iter()
        .filter(|w| w.events.contains(kind))
        .map(|w| {
            let key = (Reverse(w.priority), w.name.clone());
            (key, Callee::Runtime(w.clone()))
        });
    let mut merged: Vec<_> = statics.chain(runtimes).collect();
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    if kind.is_teardown() {
        merged.reverse();
    }
    merged.into_iter().map(|(_, callee)| callee).collect()
}

/// A registered runtime watcher. Dropping it, or calling
/// [`unregister`](Registration::unregister), removes the watcher.
///
/// **Once `unregister` returns (or the drop finishes), the closure is never called again
/// and no call of it is in flight on any thread.** Unregistering from inside the
/// watcher's own callback does not wait for that one call (which is the caller itself)
/// but does wait for calls on other threads, so it cannot deadlock on itself.
///
/// A task whose `fork` the watcher saw gets no `free` from it after it is unregistered:
/// unregistering is the watcher's own teardown, like a module unload, and a watcher that
/// keeps per-task state releases it there (for example in its captured state's `Drop`).
#[must_use = "dropping a Registration unregisters the watcher at once; call `keep` to keep it"]
pub struct Registration<'t> {
    table: &'t WatcherTable,
    watcher: Weak<RuntimeWatcher>,
    done: bool,
}

impl fmt::Debug for Registration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.watcher.upgrade().map(|w| w.name.clone());
        f.debug_struct("Registration")
            .field("name", &name)
            .finish_non_exhaustive()
    }
}

impl Registration<'_> {
    /// Removes the watcher and waits until no call of it is in flight.
    pub fn unregister(mut self) {
        self.remove();
    }

    /// Keeps the watcher registered for the rest of the program.
    pub fn keep(mut self) {
        self.done = true;
    }

    /// The watcher's name.
    pub fn name(&self) -> Option<String> {
        self.watcher.upgrade().map(|w| w.name.clone())
    }

    fn remove(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let Some(watcher) = self.watcher.upgrade() else {
            return;
        };
        {
            let mut registered = self.table.runtime.lock();
            registered.retain(|w| !Arc::ptr_eq(w, &watcher));
            publish(self.table, &registered);
        }
        // Calls of this watcher that this thread is itself inside of cannot finish first.
        let own = RUNNING.with(|running| {
            running
                .borrow()
                .iter()
                .filter(|&&w| std::ptr::eq(w, Arc::as_ptr(&watcher)))
                .count()
        });
        watcher.gate.close(own);
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}
