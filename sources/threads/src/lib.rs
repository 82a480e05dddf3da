//! This program's own threads as an event source for task watchers: a drop-in for
//! [`std::thread::spawn`] and [`std::thread::Builder`] that sends every thread's life
//! through the same [`WatcherTable`](watchers_core::WatcherTable) as the task model, with
//! the same ordering, fork rollback, [`TaskSlot`](watchers_core::TaskSlot) and
//! runtime-watcher rules.
//!
//! * `fork` runs on the spawning thread before the OS thread exists. A watcher may refuse
//!   it: the spawn returns [`SpawnError::Fork`] naming the watcher and the closure never
//!   runs. If the OS then fails to start the thread, the `fork` watchers get `free` (the
//!   rollback of [`TaskTable::abort_fork`](watchers_core::TaskTable::abort_fork)).
//! * The thread is a [`Task`] of a process-wide mirror
//!   [`TaskTable`](watchers_core::TaskTable): its thread group is the process, its name
//!   (`comm`) the thread's name. Mirror pids are not OS thread ids: [`os_tid`] gives the
//!   OS id once the thread runs. Code in the thread reaches its task with [`current`];
//!   slot values that `fork` watchers set are there.
//! * `exit` runs on the thread itself when its closure returns (status `exit code 0`) or
//!   panics (status `exit code 101`, the code of a Rust program that panicked); `free`
//!   when its thread-locals are destroyed — exactly once per task.
//! * Threads not spawned here (the main thread; threads that dependencies start with
//!   plain `std::thread::spawn`) are adopted the first time they call into this crate
//!   ([`current`], [`spawn`], [`set_name`]): their `fork` watchers are told with
//!   [`notify`](watchers_core::WatcherTable::notify) (they cannot refuse a thread that
//!   already runs), and they get `exit` and `free` when they end. Their `comm` is the
//!   OS thread name (on Linux read from the kernel, which works even after std's own
//!   clean-up of the thread; std's name elsewhere).
//! * [`set_name`] renames the thread and sends a `comm` event; a thread spawned with a
//!   name sends one too when it starts, as the kernel reports the rename that std's
//!   thread start performs.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use watchers_core::{Event, EventKind, EventSet, Watcher, WatcherResult, WatcherTable};
//! use watchers_threads::Threads;
//!
//! static FREES: AtomicUsize = AtomicUsize::new(0);
//!
//! fn count_frees(event: &Event<'_>) -> WatcherResult {
//!     if event.kind() == EventKind::Free {
//!         FREES.fetch_add(1, Ordering::Relaxed);
//!     }
//!     Ok(())
//! }
//!
//! // Programs usually use the free functions (`watchers_threads::spawn`), which dispatch
//! // through every `#[task_watcher]` of the program; here the table is explicit.
//! let table = WatcherTable::from_watchers([
//!     Watcher::new("example::frees", EventSet::FORK | EventSet::FREE, count_frees),
//! ])?
//! .leak();
//! let threads: &'static Threads = Box::leak(Box::new(Threads::new(table)));
//!
//! let worker = threads
//!     .builder()
//!     .name("worker".into())
//!     .spawn(move || {
//!         let me = threads.current().expect("a running thread has a task");
//!         (me.comm(), watchers_threads::os_tid(&me).is_some())
//!     })?;
//! let task = worker.task().clone();
//! assert_eq!(task.tgid(), threads.process().pid());
//! assert_eq!(worker.join().unwrap(), ("worker".to_owned(), true));
//! // `join` returns once the thread's thread-locals are gone, so it was freed.
//! assert_eq!(FREES.load(Ordering::Relaxed), 1);
//! assert_eq!(task.state(), watchers_core::TaskState::Dead);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! When `free` runs: on Linux with glibc, after every thread-local destructor of the
//! thread (a pthread key's destructor reports its end), so a thread-local's `Drop` still
//! finds the thread's task; a thread that ends the process with `exit` is reported by an
//! `atexit` handler, after its thread-local destructors. The main thread's task ends in
//! a thread-local destructor instead, which runs at `exit` only where the platform runs
//! them (glibc does). Elsewhere that destructor is registered when the thread first
//! meets the crate (first thing for a thread spawned here), so it comes after every
//! thread-local initialised later. A watcher that panics there is caught and ignored (a
//! panic escaping a thread-local destructor or a C callback would abort). A library
//! built on this crate must not be unloaded while threads it bound still run.
//!
//! Limitations: threads of a dependency are adopted only when they meet this crate, so
//! they are never refused and their `fork` comes late. Scoped threads that are not
//! joined may be freed just after [`std::thread::scope`] returns, because std's scope
//! waits for their closures, not for their thread-locals.
#![deny(missing_docs)]

mod bind;
mod end;
mod error;
mod os;
mod spawn;
mod threads;

pub use error::{CurrentError, RenameError, SpawnError};
pub use spawn::{Builder, JoinHandle, PANIC_EXIT_CODE, ScopedJoinHandle};
pub use threads::Threads;

use std::sync::Arc;
use std::thread::Scope;

use watchers_core::Task;

/// The OS thread id of a thread's task, from when the thread first meets the source (for
/// a thread spawned through it, before its closure runs) until the task's `free`: its
/// [`Task::os_id`]. `None` on platforms without thread ids.
pub fn os_tid(task: &Task) -> Option<u32> {
    task.os_id()
}

/// The calling thread's task in [`Threads::global`], adopting the thread if it has none.
///
/// # Errors
/// See [`Threads::current`].
pub fn current() -> Result<Arc<Task>, CurrentError> {
    Threads::global().current()
}

/// Spawns a thread through [`Threads::global`]; like [`std::thread::spawn`], except that
/// a refusal or an OS failure is an error instead of a panic.
///
/// # Errors
/// See [`Builder::spawn`].
pub fn spawn<F, T>(f: F) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Threads::global().builder().spawn(f)
}

/// Spawns a scoped thread through [`Threads::global`]; like [`Scope::spawn`].
///
/// # Errors
/// See [`Builder::spawn`].
pub fn spawn_scoped<'scope, 'env, F, T>(
    scope: &'scope Scope<'scope, 'env>,
    f: F,
) -> Result<ScopedJoinHandle<'scope, T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    Threads::global().builder().spawn_scoped(scope, f)
}

/// Renames the calling thread in [`Threads::global`]; see [`Threads::set_name`].
///
/// # Errors
/// See [`Threads::set_name`].
pub fn set_name(name: &str) -> Result<(), RenameError> {
    Threads::global().set_name(name)
}
