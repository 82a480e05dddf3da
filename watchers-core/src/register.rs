//! Watchers that come and go at run time (the patches' "watchers from modules").
//!
//! Registration rebuilds a merged snapshot of static and runtime watchers per event and
//! publishes it with `arc-swap`; dispatch loads the snapshot without a lock. Unregistering
//! takes the watcher out of the snapshot, then shuts its [`Gate`]: waits until no call of
//! it is in flight and drops the closure (the kernel's `synchronize_rcu` then `kfree`,
//! narrowed to one watcher). A snapshot that a dispatcher still holds keeps only the
//! watcher's empty shell.

use std::cmp::Reverse;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::UnregisterError;
use crate::event::Event;
use crate::event_kind::{EventKind, EventSet};
use crate::gate::Gate;
use crate::inflight;
use crate::local::Callback;
use crate::runtime::{Callee, Registered, RuntimeWatcher, Snapshot};
use crate::table::WatcherTable;
use crate::watcher_result::IntoWatcherError;

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
    /// The name is empty or only blanks, which `#[task_watcher(name = ...)]` refuses too.
    #[error("the name of a task watcher cannot be empty or blank")]
    EmptyName,
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
    /// [`RegisterError::NoEvents`] for an empty event set;
    /// [`RegisterError::EmptyName`] for an empty or blank name.
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
        if self.name.trim().is_empty() {
            return Err(RegisterError::EmptyName);
        }
        if self.events.is_empty() {
            return Err(RegisterError::NoEvents(self.name));
        }
        let mut registered = table.runtime.lock();
        let taken = table.entries.iter().any(|e| e.watcher.name() == self.name)
            || registered.watchers.iter().any(|w| w.name == self.name);
        if taken {
            return Err(RegisterError::DuplicateName(self.name));
        }
        registered.last_serial += 1;
        let watcher = Arc::new(RuntimeWatcher {
            name: self.name,
            events: self.events,
            priority: self.priority,
            serial: registered.last_serial,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            gate: Gate::new(callback),
        });
        registered.watchers.push(watcher.clone());
        publish(table, &registered);
        Ok(Registration {
            table,
            watcher,
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
    /// registration.unregister()?;
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
fn publish(table: &WatcherTable, registered: &Registered) {
    let (registered, epoch) = (&registered.watchers[..], registered.last_serial);
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
            .store(Some(Arc::new(Snapshot { chains, epoch })));
    }
    table.runtime.wanted.store(wanted.bits(), Ordering::Release);
    table.reroute(wanted);
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
/// **Once `unregister` returns `Ok` (or the drop finishes), the closure has been called
/// for the last time on every thread and has been dropped**, on the unregistering
/// thread: a module's code and data may go. Two exceptions, both about calls that
/// cannot end before `unregister` returns:
///
/// * Unregistering from inside the watcher's own closure waits for its calls on other
///   threads, not for the one it is inside of. No call starts after it returns, and the
///   closure is dropped as soon as the outermost call of it on this thread returns.
/// * If a call in flight belongs to a thread that is itself waiting, directly or through
///   others, for a watcher whose closure this thread is running (two closures that
///   unregister each other from two threads), waiting would never end: `unregister`
///   returns [`UnregisterError::WouldDeadlock`] at once instead. No call starts after it
///   returns, and the closure is dropped when the last call in flight returns, on that
///   call's thread.
///
/// `free` goes to the tasks whose `fork` the watcher saw: a watcher of `fork` gets the
/// `free` of exactly the tasks whose `fork` it saw succeed (none forked before it was
/// registered); a watcher that does not ask for `fork` gets every `free`. A task whose
/// `fork` the watcher saw gets no `free` from it after it is unregistered: unregistering
/// is the watcher's own teardown, like a module unload, and a watcher that keeps
/// per-task state releases it there (for example in its captured state's `Drop`).
#[must_use = "dropping a Registration unregisters the watcher at once; call `keep` to keep it"]
pub struct Registration<'t> {
    table: &'t WatcherTable,
    watcher: Arc<RuntimeWatcher>,
    done: bool,
}

impl fmt::Debug for Registration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.watcher.name)
            .finish_non_exhaustive()
    }
}

impl Registration<'_> {
    /// Removes the watcher, waits until no call of it is in flight and drops its
    /// closure; see [`Registration`] for calls from inside the closure.
    ///
    /// # Errors
    /// [`UnregisterError::WouldDeadlock`] if the wait would never end; the watcher is
    /// removed all the same.
    pub fn unregister(mut self) -> Result<(), UnregisterError> {
        self.remove()
    }

    /// Keeps the watcher registered for the rest of the program.
    pub fn keep(mut self) {
        self.done = true;
    }

    /// The watcher's name.
    pub fn name(&self) -> &str {
        &self.watcher.name
    }

    fn remove(&mut self) -> Result<(), UnregisterError> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(());
        }
        let watcher = &self.watcher;
        {
            let mut registered = self.table.runtime.lock();
            registered.watchers.retain(|w| !Arc::ptr_eq(w, watcher));
            publish(self.table, &registered);
        }
        inflight::shut(&watcher.gate)
            .map_err(|inflight::Cycle| UnregisterError::WouldDeadlock(watcher.name.clone()))
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // A drop cannot report the cycle; the closure is then dropped by the last call.
        let _ = self.remove();
    }
}
