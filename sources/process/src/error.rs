//! Why a child was not spawned.

use std::io;

use watchers_core::ForkError;

/// A child was not spawned: no process runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// A `fork` watcher refused the child (the watchers that had succeeded got `free`).
    #[error("process spawn refused: {0}")]
    Fork(#[source] ForkError),
    /// The OS could not spawn or exec the program; the `fork` watchers got `free`.
    #[error("the OS could not spawn the program: {0}")]
    Os(#[source] io::Error),
}

impl SpawnError {
    /// The name of the `fork` watcher that refused the child, if one did.
    pub fn watcher(&self) -> Option<&str> {
        match self {
            SpawnError::Fork(error) => error.watcher(),
            _ => None,
        }
    }
}
