//! The typed payload a watcher receives: what happened, and to which task.

use crate::event_kind::EventKind;
use crate::task::Task;
use crate::task_values::{CloneFlags, ExitStatus, Ids, Pid};

/// What happened, with the data that belongs to it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum EventData<'a> {
    /// A child is being forked. [`Event::task`] is the child.
    Fork {
        /// The task that called fork.
        parent: &'a Task,
        /// The clone flags the fork was called with.
        flags: CloneFlags,
    },
    /// The task executed a new program.
    Exec {
        /// The program's path (or, from the kernel connector, its command line when known).
        filename: &'a str,
    },
    /// The task's user ids changed.
    Uid {
        /// The ids before the change.
        old: Ids,
        /// The ids after the change.
        new: Ids,
    },
    /// The task's group ids changed.
    Gid {
        /// The ids before the change.
        old: Ids,
        /// The ids after the change.
        new: Ids,
    },
    /// The task started a new session (it is now its session and group leader).
    Sid {
        /// The new session id (the task's pid).
        sid: Pid,
    },
    /// The task's name changed.
    Comm {
        /// The name before.
        old: &'a str,
        /// The name after.
        new: &'a str,
    },
    /// A tracer attached (`tracer` is `Some`) or detached (`None`).
    Ptrace {
        /// The tracing process while attached.
        tracer: Option<Pid>,
    },
    /// The task dumped core.
    Coredump {
        /// The signal that caused the dump.
        signal: i32,
    },
    /// The task is exiting.
    Exit {
        /// How it exits.
        status: ExitStatus,
    },
    /// The task's resources are being released.
    Free,
}

impl EventData<'_> {
    /// The kind of this event.
    pub const fn kind(&self) -> EventKind {
        match self {
            EventData::Fork { .. } => EventKind::Fork,
            EventData::Exec { .. } => EventKind::Exec,
            EventData::Uid { .. } => EventKind::Uid,
            EventData::Gid { .. } => EventKind::Gid,
            EventData::Sid { .. } => EventKind::Sid,
            EventData::Comm { .. } => EventKind::Comm,
            EventData::Ptrace { .. } => EventKind::Ptrace,
            EventData::Coredump { .. } => EventKind::Coredump,
            EventData::Exit { .. } => EventKind::Exit,
            EventData::Free => EventKind::Free,
        }
    }
}

/// One event as a watcher sees it: the task it concerns and what happened.
///
/// ```
/// use watchers_core::{Event, EventData, EventKind, ExitStatus, Task};
///
/// let task = Task::detached(42);
/// let event = Event::new(&task, EventData::Exit { status: ExitStatus::exited(3) });
/// assert_eq!(event.kind(), EventKind::Exit);
/// assert_eq!(event.task().pid().get(), 42);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    task: &'a Task,
    data: EventData<'a>,
}

impl<'a> Event<'a> {
    /// An event about `task`. For a fork, `task` is the child.
    pub const fn new(task: &'a Task, data: EventData<'a>) -> Event<'a> {
        Event { task, data }
    }

    /// Which event this is.
    #[inline]
    pub const fn kind(&self) -> EventKind {
        self.data.kind()
    }

    /// The task the event concerns (the child, for a fork).
    #[inline]
    pub const fn task(&self) -> &'a Task {
        self.task
    }

    /// What happened.
    #[inline]
    pub const fn data(&self) -> &EventData<'a> {
        &self.data
    }

    /// For a fork, the parent task.
    pub const fn parent(&self) -> Option<&'a Task> {
        match self.data {
            EventData::Fork { parent, .. } => Some(parent),
            _ => None,
        }
    }

    /// The same event about the same task, as `free` (used for fork rollback).
    pub(crate) const fn as_free(&self) -> Event<'a> {
        Event {
            task: self.task,
            data: EventData::Free,
        }
    }
}
