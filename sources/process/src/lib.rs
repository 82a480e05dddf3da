//! This program's child processes as an event source for task watchers: spawning a
//! [`std::process::Command`] through [`CommandExt::spawn_watched`] sends the child's life
//! through the same [`WatcherTable`](watchers_core::WatcherTable) as the task model, with
//! the same ordering, fork rollback, [`TaskSlot`](watchers_core::TaskSlot) and
//! runtime-watcher rules. No privileges are needed.
//!
//! * `fork` runs first, in the spawning thread. A watcher may refuse: the spawn returns
//!   [`SpawnError::Fork`] naming the watcher and no process is created. If the OS then
//!   fails to spawn (say, no such program), the `fork` watchers get `free` (the rollback
//!   of [`TaskTable::abort_fork`](watchers_core::TaskTable::abort_fork)).
//! * `exec` once the program runs: std's `spawn` returns only after the child's `exec`
//!   succeeded (or reports why it failed), so the event follows a successful spawn. The
//!   task's `comm` becomes the program's file name, as the kernel sets it.
//! * `exit` with the real status — code, or signal and whether core was dumped — when
//!   [`Child::wait`] or [`Child::try_wait`] collects it, then `free` (the child is
//!   reaped): exactly once per child. Should other code collect the status first (a
//!   `waitpid` of its own, or `SIGCHLD` ignored so that the kernel reaps children), the
//!   wait returns the OS's `ECHILD` error and the task exits with
//!   [`ExitStatus::UNKNOWN`](watchers_core::ExitStatus::UNKNOWN), never a made-up code.
//!   On Linux (5.4 or later) a pidfd opened at the spawn, held until the status is
//!   collected (one descriptor per child not yet waited for), tells the child from a new
//!   process the OS gave its pid to, so a wait does not collect another child's status.
//!   The check comes just before std's wait by pid: a steal, and a new child given the
//!   pid, that both land between the two calls still escape it.
//! * A [`Child`] dropped without a wait is still reaped: at once if it has exited, else
//!   by a background reaper thread (one per source, started on first need) that polls
//!   every few milliseconds; its `exit` and `free` watchers then run on that thread.
//!   Children still running when the program ends get neither.
//! * Nothing of this crate runs in the child between `fork` and `exec` (no `pre_exec`
//!   hook): the watchers run in the parent.
//!
//! Tasks live in a mirror [`TaskTable`](watchers_core::TaskTable) whose pids are not OS
//! pids: [`Child::id`] and [`os_pid`] give the OS pid. The program itself is the parent
//! task ([`Processes::process`]).
//!
//! ```
//! use std::process::Command;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use watchers_core::{Event, EventData, EventSet, Watcher, WatcherResult, WatcherTable};
//! use watchers_process::{CommandExt, Processes};
//!
//! static EXIT_CODE: AtomicUsize = AtomicUsize::new(0);
//!
//! fn record_exit(event: &Event<'_>) -> WatcherResult {
//!     if let EventData::Exit { status } = event.data() {
//!         EXIT_CODE.store(status.code().unwrap_or(-1) as usize, Ordering::Relaxed);
//!     }
//!     Ok(())
//! }
//!
//! // Programs usually call `spawn_watched`, which dispatches through every
//! // `#[task_watcher]` of the program; here the table is explicit.
//! let table = WatcherTable::from_watchers([
//!     Watcher::new("example::exit", EventSet::EXIT, record_exit),
//! ])?
//! .leak();
//! let processes: &'static Processes = Box::leak(Box::new(Processes::new(table)));
//!
//! let mut child = Command::new("sh").args(["-c", "exit 7"]).spawn_watched_in(processes)?;
//! assert_eq!(child.task().comm(), "sh");
//! assert_eq!(child.wait()?.code(), Some(7));
//! assert_eq!(EXIT_CODE.load(Ordering::Relaxed), 7);
//! assert_eq!(child.task().state(), watchers_core::TaskState::Dead);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod child;
mod error;
mod identity;
mod processes;
mod reaper;
mod status;

pub use child::Child;
pub use error::SpawnError;
pub use processes::Processes;
pub use status::to_task_status;

use std::process::Command;

use watchers_core::Task;

/// The OS pid of a child's task, from its `exec` event until its `free` (after which the
/// OS may give the pid to another process): its [`Task::os_id`].
pub fn os_pid(task: &Task) -> Option<u32> {
    task.os_id()
}

/// Spawning a [`Command`] through a [`Processes`] source.
pub trait CommandExt {
    /// Spawns the command through [`Processes::global`]; see [`Processes::spawn`].
    ///
    /// # Errors
    /// See [`Processes::spawn`].
    fn spawn_watched(&mut self) -> Result<Child, SpawnError>;

    /// Spawns the command through `source`; see [`Processes::spawn`].
    ///
    /// # Errors
    /// See [`Processes::spawn`].
    fn spawn_watched_in(&mut self, source: &'static Processes) -> Result<Child, SpawnError>;
}

impl CommandExt for Command {
    fn spawn_watched(&mut self) -> Result<Child, SpawnError> {
        Processes::global().spawn(self)
    }

    fn spawn_watched_in(&mut self, source: &'static Processes) -> Result<Child, SpawnError> {
        source.spawn(self)
    }
}
