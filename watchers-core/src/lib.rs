//! Task lifecycle hooks declared with one attribute.
#![deny(missing_docs)]

extern crate self as watchers_core;

pub mod cn_proc;
mod counter;
mod dispatch;
mod error;
mod event;
mod gate;
mod local;
mod runtime;
mod slot;
mod table;
mod task;
mod task_table;
mod watcher;

pub use error::{DispatchError, ForkError, FreezeError, TaskError};
pub use event::{Event, EventData, EventKind, EventSet, ExitStatus, UnknownEvent};
pub use local::TaskWatch;
pub use runtime::{RegisterError, Registration, RuntimeBuilder};
pub use slot::TaskSlot;
pub use table::{WatcherStats, WatcherTable, freeze};
pub use task::{COMM_MAX, CloneFlags, Ids, Pid, Task, TaskInit, TaskState};
pub use task_table::{DEFAULT_PID_MAX, TaskStats, TaskTable};
pub use watcher::{
    BoxError, IntoWatcherError, IntoWatcherResult, Location, Watcher, WatcherFn, WatcherResult,
};
pub use watchers_macros::task_watcher;

/// Starts registering a runtime watcher on the program-wide table
/// ([`WatcherTable::global`]); see [`WatcherTable::watcher`].
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
