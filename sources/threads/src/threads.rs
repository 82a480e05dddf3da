//! The source: a mirror task table of this program's threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use watchers_core::{CloneFlags, Task, TaskTable, WatcherTable};

use crate::error::{CurrentError, RenameError};
use crate::spawn::Builder;
use crate::{bind, os};

/// The kernel's `PID_MAX_LIMIT`: mirror pids never run out before the OS's thread ids.
const PID_MAX: u32 = 4 * 1024 * 1024;

/// This program's threads as an event source: a mirror [`TaskTable`] holding one task for
/// the process (its thread-group leader, which the main thread becomes when it meets the
/// source) and one per thread, dispatching through one [`WatcherTable`].
///
/// Most programs use [`Threads::global`] through the crate's free functions; a `Threads`
/// of their own (for an explicit table, as in tests) must live for the rest of the
/// program (`&'static`), because each thread's thread-local destructor reports to it.
pub struct Threads {
    tasks: TaskTable,
    process: Arc<Task>,
    main_bound: AtomicBool,
}

impl Threads {
    /// A source dispatching through `watchers`. The process's task is adopted at once
    /// (its `fork` watchers are notified).
    pub fn new(watchers: &'static WatcherTable) -> Threads {
        let tasks = TaskTable::with_pid_max(watchers, PID_MAX);
        let process =
            match tasks.adopt_running(tasks.init(), CloneFlags::empty(), &os::process_name()) {
                Ok((process, _)) => process,
                // A fresh table has every pid free; init stands in should that ever change.
                Err(_) => tasks.init().clone(),
            };
        Threads {
            tasks,
            process,
            main_bound: AtomicBool::new(false),
        }
    }

    /// The source dispatching through the program's `#[task_watcher]`s
    /// ([`WatcherTable::global`]), made on first use.
    ///
    /// The process's task is adopted while the source is made, so a `fork` watcher must
    /// not call into this crate for that first event (it would wait for itself).
    ///
    /// # Panics
    /// If the registered watchers cannot form a table; see [`watchers_core::freeze`].
    pub fn global() -> &'static Threads {
        static GLOBAL: OnceLock<Threads> = OnceLock::new();
        GLOBAL.get_or_init(|| Threads::new(WatcherTable::global()))
    }

    /// The mirror table (for its [`stats`](TaskTable::stats) and to look tasks up).
    pub fn tasks(&self) -> &TaskTable {
        &self.tasks
    }

    /// The process's task: the thread group of every thread.
    pub fn process(&self) -> &Arc<Task> {
        &self.process
    }

    /// The calling thread's task, adopting the thread if it has none yet (the main
    /// thread becomes the process's task).
    ///
    /// # Errors
    /// [`CurrentError::ThreadEnding`] if the thread's thread-locals are being destroyed;
    /// [`CurrentError::Adopt`] if the mirror table has no pid left.
    pub fn current(&'static self) -> Result<Arc<Task>, CurrentError> {
        bind::current(self)
    }

    /// Starts building a thread spawned through this source.
    pub fn builder(&'static self) -> Builder {
        Builder::with_source(self)
    }

    /// Renames the calling thread: the OS name (cut to 15 bytes) and its task's `comm`,
    /// which sends a `comm` event.
    ///
    /// # Errors
    /// [`RenameError::Nul`] for a name with a NUL byte and [`RenameError::Os`] if the OS
    /// refused it (nothing changed); [`RenameError::Current`] if the thread has no task;
    /// [`RenameError::Task`] if a `comm` watcher failed (the thread was renamed).
    pub fn set_name(&'static self, name: &str) -> Result<(), RenameError> {
        if name.contains('\0') {
            return Err(RenameError::Nul);
        }
        let task = self.current().map_err(RenameError::Current)?;
        os::set_thread_name(name).map_err(RenameError::Os)?;
        self.tasks
            .set_comm(task.pid(), name)
            .map_err(RenameError::Task)
    }

    /// Claims the process's task for the main thread; true the first time only.
    pub(crate) fn claim_main(&self) -> bool {
        !self.main_bound.swap(true, Ordering::AcqRel)
    }
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads")
            .field("process", &self.process)
            .field("tasks", &self.tasks)
            .finish_non_exhaustive()
    }
}
