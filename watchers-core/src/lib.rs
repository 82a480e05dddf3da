//! Task lifecycle hooks declared with one attribute.
//!
//! ```
//! use watchers_core::{CloneFlags, Event, EventKind, Pid, TaskTable, task_watcher};
//!
//! #[task_watcher(events = fork | exit)]
//! fn hello(event: &Event<'_>) {
//!     if event.kind() == EventKind::Fork {
//!         assert!(event.parent().is_some());
//!     }
//! }
//!
//! let tasks = TaskTable::new();
//! let child = tasks.fork(Pid::INIT, CloneFlags::empty())?;
//! tasks.exit(child.pid(), 0)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The workspace README (checked here as doctests) describes the events, the dispatch
//! semantics, runtime and per-task watchers, and the limitations.
#![deny(missing_docs)]

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

extern crate self as watchers_core;

// Layering, bottom to top: a module uses only modules named before it in this list, and
// `tests/layering.rs` checks that order (its `LAYERS`) and that the graph has no cycle
// other than the one named here.
//
// * Using nothing of ours: the plain values (`event_kind`, `task_values`, `location`,
//   `watcher_result`) and two primitives (`gate`, `routing`); then `inflight` (on
//   `gate`), `counter` (on `event_kind`) and `error` (on the plain values).
// * The task and its events: `task`, `event`, `local`. The one cycle: an `Event` borrows
//   its `Task` (event -> task), a `Task` owns its per-task watchers (task -> local), and
//   those are closures that take an `&Event` (local -> event) and are attached to a
//   `Task` (local -> task: `Task::watch` and the fork's bookkeeping on the child). No
//   other module is in the cycle. The three stay sibling modules rather than one tree
//   because each is a concept the rest of the crate names on its own; folding them into
//   `task/` would hide the cycle from the layering test without removing it, while as
//   siblings the test pins its edges.
// * On the task: `slot` (`TaskSlot`, the key to the storage a `Task` holds), `watcher`
//   (the static record, whose `fn` takes an `&Event`), `runtime` (the registry of
//   runtime watchers that a table holds and dispatch reads).
// * `table` (the frozen table, holding the runtime registry), then `register` (adding
//   and removing runtime watchers, which needs the table), `dispatch` (walking the
//   table) and `task_table` (the task model, dispatching through the table).
mod counter;
mod dispatch;
mod error;
mod event;
mod event_kind;
mod gate;
mod inflight;
mod local;
mod location;
mod register;
mod routing;
mod runtime;
mod slot;
mod table;
mod task;
mod task_table;
mod task_values;
mod watcher;
mod watcher_result;

pub use error::{
    DispatchError, DispatchFailure, DuplicateName, ForkError, FreezeError, TaskError,
    UnregisterError,
};
pub use event::{Event, EventData};
pub use event_kind::{EventKind, EventSet, UnknownEvent};
pub use local::TaskWatch;
pub use location::Location;
pub use register::{RegisterError, Registration, RuntimeBuilder};
pub use slot::TaskSlot;
pub use table::{TableRef, WatcherStats, WatcherTable, freeze};
pub use task::{Task, TaskInit};
pub use task_table::{DEFAULT_PID_MAX, Recorded, TaskStats, TaskTable};
pub use task_values::{COMM_MAX, CloneFlags, ExitStatus, Ids, Pid, TaskState};
pub use watcher::{Watcher, WatcherFn};
pub use watcher_result::{BoxError, IntoWatcherError, IntoWatcherResult, WatcherResult};
pub use watchers_macros::{task_watcher, watcher_record};

/// Starts registering a runtime watcher on the program-wide table
/// ([`WatcherTable::global`]); see [`WatcherTable::watcher`].
///
/// # Panics
/// As [`WatcherTable::global`], at the caller's location.
#[track_caller]
pub fn watcher(name: impl Into<String>, events: EventSet) -> RuntimeBuilder<'static> {
    WatcherTable::global().watcher(name, events)
}

/// What `#[task_watcher]` expands to refers to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::event::Event;
    pub use crate::event_kind::EventSet;
    pub use crate::location::Location;
    pub use crate::watcher::Watcher;
    pub use crate::watcher_result::{IntoWatcherResult, WatcherResult};
    pub use ::core;
    pub use ::inventory;
}
