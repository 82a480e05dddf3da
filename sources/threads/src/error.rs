//! Why a spawn, a lookup of the current task or a rename did not happen.

use std::io;

use watchers_core::{ForkError, TaskError};

/// The calling thread has no task and cannot get one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CurrentError {
    /// The thread is ending: its thread-locals are being destroyed, and its task was (or
    /// is being) freed.
    #[error("the thread is ending: its task is gone")]
    ThreadEnding,
    /// The mirror table could not adopt the thread.
    #[error("the thread could not be adopted: {0}")]
    Adopt(#[source] ForkError),
}

/// A thread was not spawned; nothing of its closure ran.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// A `fork` watcher refused the thread (the watchers that had succeeded got `free`),
    /// or the spawning thread cannot fork (it is exiting).
    #[error("thread spawn refused: {0}")]
    Fork(#[source] ForkError),
    /// The spawning thread has no task (it is ending).
    #[error("cannot spawn from here: {0}")]
    Current(#[source] CurrentError),
    /// The OS could not start the thread; the `fork` watchers got `free`.
    #[error("the OS could not start the thread: {0}")]
    Os(#[source] io::Error),
    /// The thread's name holds a NUL byte, which no OS thread name can: nothing ran,
    /// not even the `fork` watchers.
    #[error("a thread name cannot hold a NUL byte")]
    Nul,
}

impl SpawnError {
    /// The name of the `fork` watcher that refused the thread, if one did.
    pub fn watcher(&self) -> Option<&str> {
        match self {
            SpawnError::Fork(error) => error.watcher(),
            _ => None,
        }
    }
}

/// A thread was not renamed, or a `comm` watcher failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenameError {
    /// The name holds a NUL byte.
    #[error("a thread name cannot hold a NUL byte")]
    Nul,
    /// The calling thread has no task.
    #[error("cannot rename this thread: {0}")]
    Current(#[source] CurrentError),
    /// The OS refused the name (the task keeps its old name).
    #[error("the OS refused the thread name: {0}")]
    Os(#[source] io::Error),
    /// The task could not be renamed, or a `comm` watcher failed (the thread was
    /// renamed).
    #[error(transparent)]
    Task(TaskError),
}
