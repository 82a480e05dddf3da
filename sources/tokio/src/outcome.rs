//! How a task ended, as the `exit` event's status says it.

use watchers_core::ExitStatus;

/// The exit code of a task whose future or closure panicked: the code of a Rust program
/// that panicked (the same as `watchers-threads` uses for a panicking thread).
pub const PANIC_EXIT_CODE: i32 = 101;

/// The signal of a task that was cancelled: `SIGKILL`, as for a process that was killed.
pub const CANCEL_SIGNAL: i32 = 9;

/// How a task spawned through the source ended: what its `exit` event's
/// [`ExitStatus`] encodes.
///
/// ```
/// use watchers_tokio::Outcome;
///
/// for outcome in [Outcome::Completed, Outcome::Panicked, Outcome::Cancelled] {
///     assert_eq!(Outcome::of(outcome.status()), Some(outcome));
/// }
/// assert_eq!(Outcome::Completed.status().code(), Some(0));
/// assert_eq!(Outcome::Cancelled.status().signal(), Some(9));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The future returned (or the blocking closure returned): `exit code 0`.
    Completed,
    /// The future or closure panicked: `exit code 101`.
    Panicked,
    /// The future was dropped before it completed — aborted, or still pending when its
    /// runtime shut down — or a blocking closure never ran: killed by `SIGKILL`.
    Cancelled,
}

impl Outcome {
    /// The exit status the `exit` event carries.
    pub const fn status(self) -> ExitStatus {
        match self {
            Outcome::Completed => ExitStatus::exited(0),
            Outcome::Panicked => ExitStatus::exited(PANIC_EXIT_CODE),
            Outcome::Cancelled => ExitStatus::signaled(CANCEL_SIGNAL),
        }
    }

    /// The outcome an exit status stands for, if it is one of the three.
    pub fn of(status: ExitStatus) -> Option<Outcome> {
        [Outcome::Completed, Outcome::Panicked, Outcome::Cancelled]
            .into_iter()
            .find(|outcome| outcome.status() == status)
    }
}
