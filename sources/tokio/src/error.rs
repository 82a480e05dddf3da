//! Why a task was not spawned.

use watchers_core::ForkError;

/// A task was not spawned: nothing of its future or closure ran, and it was dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// A `fork` watcher refused the task (the watchers that had succeeded got `free`), or
    /// the source's table has no pid left.
    #[error("task spawn refused: {0}")]
    Fork(#[source] ForkError),
    /// The call was made outside a tokio runtime (nothing was forked).
    #[error("no tokio runtime here: spawn from inside a runtime, or use spawn_on with a handle")]
    NoRuntime,
}

impl SpawnError {
    /// The name of the `fork` watcher that refused the task, if one did.
    pub fn watcher(&self) -> Option<&str> {
        match self {
            SpawnError::Fork(ForkError::Watcher(error)) => Some(&error.watcher),
            _ => None,
        }
    }
}
