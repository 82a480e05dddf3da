//! The source: a mirror task table of this program and its children.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use watchers_core::{CloneFlags, ExitStatus, Task, TaskTable, WatcherTable};

use crate::child::Child;
use crate::error::SpawnError;
use crate::identity::Identity;
use crate::reaper::Reaper;

/// This program's child processes as an event source: a mirror [`TaskTable`] holding
/// one task for the program and one per child, dispatching through one
/// [`WatcherTable`].
///
/// Most programs use [`Processes::global`] through [`CommandExt`](crate::CommandExt); a
/// `Processes` of their own (for an explicit table, as in tests) must live for the rest
/// of the program (`&'static`), because its children and its reaper report to it.
pub struct Processes {
    tasks: TaskTable,
    process: Arc<Task>,
    reaper: Reaper,
}

impl Processes {
    /// A source dispatching through `watchers`. The program's own task is adopted at
    /// once (its `fork` watchers are notified).
    pub fn new(watchers: &'static WatcherTable) -> Processes {
        let tasks = TaskTable::with_table(watchers);
        let name = std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "process".to_owned());
        let process = match tasks.adopt_running(tasks.init(), CloneFlags::empty(), &name) {
            Ok((process, _)) => process,
            // A fresh table has every pid free; init stands in should that ever change.
            Err(_) => tasks.init().clone(),
        };
        Processes {
            tasks,
            process,
            reaper: Reaper::default(),
        }
    }

    /// The source dispatching through the program's `#[task_watcher]`s
    /// ([`WatcherTable::global`]), made on first use.
    ///
    /// The program's task is adopted while the source is made, so a `fork` watcher must
    /// not spawn through this source for that first event (it would wait for itself).
    ///
    /// # Panics
    /// If the registered watchers cannot form a table; see [`watchers_core::freeze`].
    pub fn global() -> &'static Processes {
        static GLOBAL: OnceLock<Processes> = OnceLock::new();
        GLOBAL.get_or_init(|| Processes::new(WatcherTable::global()))
    }

    /// The mirror table (for its [`stats`](TaskTable::stats) and to look tasks up).
    pub fn tasks(&self) -> &TaskTable {
        &self.tasks
    }

    /// The program's own task: the parent of every child.
    pub fn process(&self) -> &Arc<Task> {
        &self.process
    }

    /// How many dropped children the reaper is still waiting for.
    pub fn reaping(&self) -> usize {
        self.reaper.pending()
    }

    /// Spawns `command`: the `fork` watchers run first; if they all agree, std spawns
    /// the program, and the `exec` watchers run once it runs.
    ///
    /// # Errors
    /// [`SpawnError::Fork`] if a watcher refused (see [`SpawnError::watcher`]): no
    /// process was created. [`SpawnError::Os`] if std could not spawn or exec the
    /// program: the `fork` watchers got `free`.
    pub fn spawn(&'static self, command: &mut Command) -> Result<Child, SpawnError> {
        let task = self
            .tasks
            .fork(self.process.pid(), CloneFlags::empty())
            .map_err(SpawnError::Fork)?;
        match command.spawn() {
            Ok(child) => {
                // At once: until a wait of ours, only other code's wait can make the pid
                // another process's.
                let identity = Identity::of(child.id());
                self.tasks.set_os_id(&task, child.id());
                let pid = task.pid();
                // Made before the `exec` watchers run: should one panic, the unwinding
                // drops it, which hands the running program to the reaper.
                let child = Child::new(self, child, task, identity);
                let program = command.get_program().to_string_lossy();
                // A failing `exec` watcher is counted; the program runs regardless.
                let _ = self.tasks.exec(pid, &program);
                Ok(child)
            }
            Err(error) => {
                // The task was forked just now and is running; a failing `free` watcher
                // is counted.
                let _ = self.tasks.abort_fork(&task);
                Err(SpawnError::Os(error))
            }
        }
    }

    /// A child was waited for: `exit` with its status, then `free` as it is reaped, even
    /// if an `exit` watcher panics (the panic then continues).
    pub(crate) fn finish(&self, task: &Task, status: ExitStatus) {
        let pid = task.pid();
        let exited = catch_unwind(AssertUnwindSafe(|| self.tasks.exit_with(pid, status)));
        // Watcher failures are counted in the table's statistics.
        let _ = self.tasks.reap(self.process.pid(), pid);
        if let Err(payload) = exited {
            resume_unwind(payload);
        }
    }

    pub(crate) fn reaper(&self) -> &Reaper {
        &self.reaper
    }
}

impl std::fmt::Debug for Processes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processes")
            .field("process", &self.process)
            .field("tasks", &self.tasks)
            .field("reaping", &self.reaping())
            .finish_non_exhaustive()
    }
}
