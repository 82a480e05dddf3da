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

mod counter;
mod dispatch;
mod error;
mod event;
mod gate;
mod inflight;
mod local;
mod routing;
mod runtime;
mod slot;
mod table;
mod task;
mod task_table;
mod watcher;

pub use error::{DispatchError, DispatchFailure, DuplicateName, ForkError, FreezeError, TaskError};
pub use event::{Event, EventData, EventKind, EventSet, ExitStatus, UnknownEvent};
pub use local::TaskWatch;
pub use runtime::{RegisterError, Registration, RuntimeBuilder, UnregisterError};
pub use slot::TaskSlot;
pub use table::{TableRef, WatcherStats, WatcherTable, freeze};
pub use task::{COMM_MAX, CloneFlags, Ids, Pid, Task, TaskInit, TaskState};
pub use task_table::{DEFAULT_PID_MAX, Recorded, TaskStats, TaskTable};
pub use watcher::{
    BoxError, IntoWatcherError, IntoWatcherResult, Location, Watcher, WatcherFn, WatcherResult,
};
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
    pub use crate::event::{Event, EventSet};
    pub use crate::watcher::{IntoWatcherResult, Location, Watcher, WatcherResult};
    pub use ::core;
    pub use ::inventory;
}
