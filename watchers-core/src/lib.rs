//! Task lifecycle hooks declared with one attribute.
#![deny(missing_docs)]

extern crate self as watchers_core;

mod event;
mod local;
mod slot;
mod task;
mod watcher;

pub use event::{Event, EventData, EventKind, EventSet, ExitStatus, UnknownEvent};
pub use slot::TaskSlot;
pub use task::{COMM_MAX, CloneFlags, Ids, Pid, Task, TaskInit, TaskState};
pub use watcher::{
    BoxError, IntoWatcherError, IntoWatcherResult, Location, Watcher, WatcherFn, WatcherResult,
};
pub use watchers_macros::task_watcher;

/// What `#[task_watcher]` expands to refers to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::event::{Event, EventSet};
    pub use crate::watcher::{IntoWatcherResult, Location, Watcher, WatcherResult};
    pub use ::core;
    pub use ::inventory;
}
