//! The errors of freezing, dispatching, unregistering and the task model.

use std::borrow::Cow;
use std::mem::ManuallyDrop;

use crate::event_kind::EventKind;
use crate::location::Location;
use crate::task_values::{Pid, TaskState};
use crate::watcher_result::BoxError;

/// The table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FreezeError {
    /// Watchers share names: every shared name, by name, each with all its locations.
    #[error(
        "task watchers share names: {}; give all but one of each a `name = \"...\"`",
        list_duplicates(.0)
    )]
    DuplicateNames(Vec<DuplicateName>),
    /// A watcher asked for no events.
    #[error("task watcher `{name}` (at {location}) asks for no events")]
    NoEvents {
        /// Its name.
        name: &'static str,
        /// Where it was declared.
        location: Location,
    },
    /// A hand-built watcher has an empty or blank name (`#[task_watcher]` refuses one
    /// at compile time).
    #[error("a task watcher (at {location}) has an empty or blank name")]
    EmptyName {
        /// Where it was declared.
        location: Location,
    },
}

/// A name that several watchers share, as [`FreezeError::DuplicateNames`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateName {
    /// The name they share.
    pub name: &'static str,
    /// Where each of them was declared, at least two.
    pub locations: Vec<Location>,
}

fn list_duplicates(duplicates: &[DuplicateName]) -> String {
    let each = duplicates.iter().map(|duplicate| {
        let places: Vec<String> = duplicate
            .locations
            .iter()
            .map(|at| format!("{at} (in {})", at.module_path))
            .collect();
        format!("`{}` at {}", duplicate.name, places.join(", "))
    });
    each.collect::<Vec<_>>().join("; ")
}

/// A watcher returned an error (or panicked) during a dispatch.
///
/// One pointer wide, so that the `Ok` of a dispatch is a single zero word; its fields
/// are those of [`DispatchFailure`], read through `Deref` (`error.watcher`).
#[derive(Debug)]
// `ManuallyDrop`, so that dropping an `Ok` stays a test of one word inline: the
// compiler's own drop of a `Result` holding a `Box` was not inlined (13 instructions
// and a call per dispatch whose result the caller drops).
pub struct DispatchError(ManuallyDrop<Box<DispatchFailure>>);

impl std::fmt::Display for DispatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&**self, f)
    }
}

impl std::error::Error for DispatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&**self)
    }
}

impl Drop for DispatchError {
    #[inline]
    fn drop(&mut self) {
        free(self);
    }
}

#[cold]
#[inline(never)]
fn free(error: &mut DispatchError) {
    // SAFETY: called once, from `drop`; the field is not used again.
    unsafe { ManuallyDrop::drop(&mut error.0) }
}

/// What a [`DispatchError`] says.
#[derive(Debug, thiserror::Error)]
#[error("task watcher `{watcher}` failed on {event}: {source}")]
pub struct DispatchFailure {
    /// The name of the (first) watcher that failed.
    pub watcher: Cow<'static, str>,
    /// The event being dispatched.
    pub event: EventKind,
    /// What it returned.
    #[source]
    pub source: BoxError,
    /// How many watchers failed on this event (the first is reported).
    pub failures: usize,
}

impl DispatchError {
    /// The failure, unboxed.
    pub fn into_failure(self) -> DispatchFailure {
        let mut error = ManuallyDrop::new(self);
        // SAFETY: `error` is never dropped, so the box is taken out exactly once.
        *unsafe { ManuallyDrop::take(&mut error.0) }
    }
}

impl From<DispatchFailure> for DispatchError {
    fn from(failure: DispatchFailure) -> DispatchError {
        DispatchError(ManuallyDrop::new(Box::new(failure)))
    }
}

impl std::ops::Deref for DispatchError {
    type Target = DispatchFailure;

    fn deref(&self) -> &DispatchFailure {
        &self.0
    }
}

/// A fork did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForkError {
    /// A `fork` watcher refused it; the watchers that had already succeeded got `free`.
    #[error("fork aborted: {0}")]
    Watcher(#[source] DispatchError),
    /// The parent does not exist.
    #[error("no task with pid {0}")]
    NoSuchTask(Pid),
    /// The parent is not running.
    #[error("task {pid} cannot fork: it is {state:?}")]
    NotRunning {
        /// The parent.
        pid: Pid,
        /// Where it is in its life.
        state: TaskState,
    },
    /// Every pid is taken, by a task or as the id of a live process group or session
    /// (for [`TaskTable::fork_with_pid`](crate::TaskTable::fork_with_pid): the pid
    /// asked for is a task's).
    #[error("no free pid left (pid_max {0})")]
    PidsExhausted(u32),
}

/// A task-model operation was refused, or a watcher failed on its event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// No task has this pid.
    #[error("no task with pid {0}")]
    NoSuchTask(Pid),
    /// The task is not in a state that allows the operation.
    #[error("task {pid} is {state:?}: cannot {operation}")]
    WrongState {
        /// The task.
        pid: Pid,
        /// Where it is in its life.
        state: TaskState,
        /// What was asked.
        operation: &'static str,
    },
    /// `setsid` while a process group with the id the session would take exists: the
    /// task (or its thread group) leads one (the kernel's `EPERM`).
    #[error("task {0} cannot start a session: a process group with its id exists")]
    GroupLeader(Pid),
    /// A task cannot have this pid (0, which names no task: init's parent).
    #[error("pid {0} cannot be a task's")]
    InvalidPid(Pid),
    /// A `set*id` call with `u32::MAX`, the kernel's -1, which is no id (nothing was
    /// changed).
    #[error("{0} is not a valid user or group id (it is the kernel's -1)")]
    InvalidId(u32),
    /// `reap` of a task by something other than its parent.
    #[error("task {child} is not a child of {parent}")]
    NotAChild {
        /// The task that tried to reap.
        parent: Pid,
        /// The task it tried to reap.
        child: Pid,
    },
    /// The init task cannot exit or be reaped.
    #[error("init (pid 1) cannot {0}")]
    Init(&'static str),
    /// The operation took effect, but a watcher failed on its event.
    #[error("the change was made, but {0}")]
    Watcher(#[source] DispatchError),
}

/// Unregistering could not wait until no call of the watcher was in flight.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnregisterError {
    /// A call in flight belongs to a thread that waits, directly or through others, for
    /// a watcher whose closure the unregistering thread is running: each would wait for
    /// the other for ever. The watcher is removed and no call of it starts any more; its
    /// closure is dropped when the last call in flight returns.
    #[error(
        "unregistering `{0}` would wait for ever: a call of it is in flight on a thread \
         that is waiting for a watcher whose closure this thread is running"
    )]
    WouldDeadlock(String),
}
