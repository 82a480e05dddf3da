//! Tokio tasks and runtime threads as an event source for task watchers: spawn a future
//! through this crate and every `#[task_watcher]` of the program sees its `fork`, `exit`
//! and `free`, with the same ordering, fork rollback, [`TaskSlot`] and per-task watcher
//! rules as the task model and the other sources.
//!
//! * [`spawn`] (and [`spawn_blocking`], [`AsyncTasks::spawn_on`] and
//!   [`AsyncTasks::spawn_in`] for a [`JoinSet`](tokio::task::JoinSet)): the `fork`
//!   watchers run on the spawning thread before tokio sees the task. A watcher may
//!   refuse: the spawn returns [`SpawnError::Fork`] naming the watcher, and the future is
//!   dropped unpolled.
//! * The task gets `exit` when its future completes, panics, or is dropped unfinished
//!   (aborted, or pending when its runtime shuts down); the exit status says which
//!   ([`Outcome`]). It gets `free` exactly once, after the future and everything it held
//!   were dropped.
//! * Code inside the future reaches its own [`Task`] with [`current`], and so the
//!   [`TaskSlot`] values its `fork` watchers set; per-task watchers
//!   ([`Task::watch`](watchers_core::Task::watch)) on it see its `exit` and `free`, and
//!   on a parent task they see (and may refuse) the `fork` of its children.
//! * Each task is a [`Task`] of a process-wide mirror [`TaskTable`](watchers_core::TaskTable)
//!   ([`AsyncTasks::global`]), a thread (`CloneFlags::THREAD`) of the process's task
//!   group whose parent in the `fork` event is the spawning task, the spawning runtime
//!   thread, or the process.
//! * A runtime built through [`Builder`] makes its worker and blocking threads tasks too,
//!   from tokio's stable `on_thread_start` / `on_thread_stop` hooks. Those threads
//!   already exist when `fork` is sent, so they cannot be refused: a refusal is counted
//!   ([`AsyncTasks::unheeded_refusals`]) and the thread is watched regardless.
//! * With the `unstable-hooks` feature, built with `RUSTFLAGS="--cfg tokio_unstable"`,
//!   a runtime built through [`Builder`] also reports tasks spawned with plain
//!   `tokio::spawn` (by any crate) through tokio's `on_task_spawn` / `on_task_terminate`:
//!   they cannot be refused either, their `exit` status is always `exit code 0` (tokio's
//!   hook does not say how a task ended), and [`current`] finds them too. They are
//!   adopted ([`TaskTable::adopt_running`](watchers_core::TaskTable::adopt_running)) as
//!   threads of the spawning task, so their `fork` event names that task as the parent,
//!   as a `CLONE_THREAD` fork does (and cannot be refused). Plain `spawn_blocking` closures and `LocalSet` tasks are not reported by
//!   tokio's hooks.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use watchers_core::{Event, EventData, EventSet, TaskSlot, Watcher, WatcherResult, WatcherTable};
//! use watchers_tokio::{AsyncTasks, Builder, Outcome};
//!
//! static LABEL: TaskSlot<&'static str> = TaskSlot::new();
//! static PANICKED: AtomicUsize = AtomicUsize::new(0);
//!
//! fn label(event: &Event<'_>) -> WatcherResult {
//!     match event.data() {
//!         EventData::Fork { .. } => {
//!             LABEL.set(event.task(), "labelled at fork");
//!         }
//!         EventData::Exit { status } if Outcome::of(*status) == Some(Outcome::Panicked) => {
//!             PANICKED.fetch_add(1, Ordering::Relaxed);
//!         }
//!         _ => {}
//!     }
//!     Ok(())
//! }
//!
//! // Programs usually use the free functions (`watchers_tokio::spawn`), which dispatch
//! // through every `#[task_watcher]` of the program; here the table is explicit.
//! let table = WatcherTable::from_watchers([
//!     Watcher::new("example::label", EventSet::FORK | EventSet::EXIT, label),
//! ])?
//! .leak();
//! let source: &'static AsyncTasks = Box::leak(Box::new(AsyncTasks::new(table)));
//! let runtime = Builder::new_current_thread().source(source).build()?;
//!
//! runtime.block_on(async {
//!     let seen = source.spawn(async move {
//!         let me = source.current().expect("a task spawned through the source");
//!         *LABEL.get(&me).expect("set by the fork watcher")
//!     })?;
//!     assert_eq!(seen.await?, "labelled at fork");
//!     let boom = source.spawn(async { panic!("boom") })?;
//!     assert!(boom.await.unwrap_err().is_panic());
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! assert_eq!(PANICKED.load(Ordering::Relaxed), 1);
//! // Both tasks were freed: only init and the process remain.
//! assert_eq!(source.tasks().stats().tasks, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Limitations: the free functions and [`Builder`] dispatch through
//! [`AsyncTasks::global`]; a task spawned with plain `tokio::spawn` is seen only with
//! `unstable-hooks`. `exit` and `free` watchers that panic while a task is being dropped
//! (cancelled, or at the `free` after any end) are caught there, so that `free` still
//! runs; a panicking `exit` watcher on a task that completed fails that task as its own
//! panic would. A runtime thread's `fork` watcher that panics leaves the thread
//! unwatched ([`AsyncTasks::untracked`]). [`current`] works while the future is polled,
//! not in its destructor. With `unstable-hooks`, a plain task that its runtime shuts
//! down, from another thread, after tokio made it but before tokio's spawn hook ran, is
//! never announced (no `fork`, `exit` or `free`); see [`AsyncTasks::early_ends`].
#![deny(missing_docs)]

#[cfg(all(feature = "unstable-hooks", not(tokio_unstable)))]
compile_error!(
    "the `unstable-hooks` feature of watchers-tokio needs tokio's unstable API: build with RUSTFLAGS=\"--cfg tokio_unstable\""
);

// The count of spawns tokio bound (`RuntimeMetrics::spawned_tasks_count`) that tells a
// plain task's early end from a blocking task's exists only with 64-bit atomics.
#[cfg(all(
    feature = "unstable-hooks",
    tokio_unstable,
    not(target_has_atomic = "64")
))]
compile_error!("the `unstable-hooks` feature of watchers-tokio needs 64-bit atomics");

mod builder;
mod current;
mod error;
mod outcome;
#[cfg(all(feature = "unstable-hooks", tokio_unstable))]
mod plain;
mod source;
mod spawn;
mod threads;

pub use builder::Builder;
pub use error::SpawnError;
pub use outcome::{CANCEL_SIGNAL, Outcome, PANIC_EXIT_CODE};
pub use source::AsyncTasks;
pub use spawn::JoinHandle;

use std::future::Future;
use std::sync::Arc;

use watchers_core::{Task, TaskSlot};

/// Spawns `future` through [`AsyncTasks::global`]; like [`tokio::spawn`], except that a
/// refusal (or a call outside a runtime) is an error instead of a panic.
///
/// # Errors
/// See [`AsyncTasks::spawn`].
pub fn spawn<F>(future: F) -> Result<JoinHandle<F::Output>, SpawnError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    AsyncTasks::global().spawn(future)
}

/// Runs `f` on the blocking pool through [`AsyncTasks::global`]; like
/// [`tokio::task::spawn_blocking`].
///
/// # Errors
/// See [`AsyncTasks::spawn_blocking`].
pub fn spawn_blocking<F, R>(f: F) -> Result<JoinHandle<R>, SpawnError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    AsyncTasks::global().spawn_blocking(f)
}

/// The calling task in [`AsyncTasks::global`]; see [`AsyncTasks::current`].
pub fn current() -> Option<Arc<Task>> {
    AsyncTasks::global().current()
}

/// The calling task's value of `slot`, if it is a task of [`AsyncTasks::global`] and has
/// one.
pub fn current_slot<T: Send + Sync + 'static>(slot: &'static TaskSlot<T>) -> Option<Arc<T>> {
    slot.get(&*current()?)
}
