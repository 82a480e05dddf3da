//! The source: a mirror task table of the async tasks and runtime threads spawned
//! through it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use watchers_core::{CloneFlags, ExitStatus, Task, TaskTable, WatcherTable};

use crate::{current, threads};

/// The kernel's `PID_MAX_LIMIT`: room for millions of tasks alive at once.
const PID_MAX: u32 = 4 * 1024 * 1024;

/// The flags of every task of the source: an async task, like a runtime thread, shares
/// everything with the process, as a thread made by `pthread_create` does.
pub(crate) const TASK_FLAGS: CloneFlags = CloneFlags::VM
    .union(CloneFlags::FS)
    .union(CloneFlags::FILES)
    .union(CloneFlags::SIGHAND)
    .union(CloneFlags::THREAD)
    .union(CloneFlags::SYSVSEM);

/// Tokio tasks and runtime threads as an event source: a mirror [`TaskTable`] holding one
/// task for the process (adopted when the source is made), one per worker or blocking
/// thread of each runtime built through [`Builder`](crate::Builder), and one per task
/// spawned through it, dispatching through one [`WatcherTable`].
///
/// Most programs use [`AsyncTasks::global`] through the crate's free functions; a source
/// of their own (for an explicit table, as in tests) must live for the rest of the
/// program (`&'static`), because its tasks and threads report to it when they end.
pub struct AsyncTasks {
    tasks: TaskTable,
    process: Arc<Task>,
    unheeded: AtomicU64,
    untracked: AtomicU64,
    #[cfg(all(feature = "unstable-hooks", tokio_unstable))]
    pub(crate) plain: crate::plain::PlainTasks,
}

impl AsyncTasks {
    /// A source dispatching through `watchers`. The process's task is adopted at once
    /// (its `fork` watchers are notified and cannot refuse it).
    pub fn new(watchers: &'static WatcherTable) -> AsyncTasks {
        let tasks = TaskTable::with_pid_max(watchers, PID_MAX);
        let process = match tasks.adopt_running(tasks.init(), CloneFlags::empty(), &process_name())
        {
            Ok((process, _)) => process,
            // A fresh table has every pid free; init stands in should that ever change.
            Err(_) => tasks.init().clone(),
        };
        AsyncTasks {
            tasks,
            process,
            unheeded: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
            #[cfg(all(feature = "unstable-hooks", tokio_unstable))]
            plain: crate::plain::PlainTasks::default(),
        }
    }

    /// The source dispatching through the program's `#[task_watcher]`s
    /// ([`WatcherTable::global`]), made on first use.
    ///
    /// # Panics
    /// If the registered watchers cannot form a table; see [`watchers_core::freeze`].
    pub fn global() -> &'static AsyncTasks {
        static GLOBAL: OnceLock<AsyncTasks> = OnceLock::new();
        GLOBAL.get_or_init(|| AsyncTasks::new(WatcherTable::global()))
    }

    /// The mirror table (for its [`stats`](TaskTable::stats) and to look tasks up).
    pub fn tasks(&self) -> &TaskTable {
        &self.tasks
    }

    /// The process's task: the thread group of every task of the source, and the parent
    /// of a task spawned from outside any of them.
    pub fn process(&self) -> &Arc<Task> {
        &self.process
    }

    /// The calling code's task: the task spawned through this source whose future (or
    /// blocking closure) is running on this thread, or, with the `unstable-hooks`
    /// feature, the plain tokio task running on one of the source's runtimes. `None`
    /// elsewhere (a runtime thread outside any task is found by
    /// [`current_thread`](AsyncTasks::current_thread)).
    pub fn current(&self) -> Option<Arc<Task>> {
        let task = current::of(self);
        #[cfg(all(feature = "unstable-hooks", tokio_unstable))]
        let task = task.or_else(|| self.plain.current());
        task
    }

    /// The calling thread's task, if it is a worker or blocking thread of a runtime built
    /// through this source.
    pub fn current_thread(&self) -> Option<Arc<Task>> {
        threads::of(self)
    }

    /// How many `fork` watcher errors were reported but could not be obeyed: a runtime
    /// thread (or, with `unstable-hooks`, a plain tokio task) already exists when its
    /// `fork` is sent, so a refusal there is counted here and the task is watched like
    /// any other. Each watcher's own error count is in
    /// [`WatcherTable::watchers`](watchers_core::WatcherTable::watchers).
    pub fn unheeded_refusals(&self) -> u64 {
        self.unheeded.load(Ordering::Relaxed)
    }

    /// How many runtime threads (or plain tokio tasks) could not be put into the table:
    /// it had no pid left, or a `fork` watcher panicked while they were announced. Such a
    /// thread or task runs unwatched.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// With `unstable-hooks`: how many ends of plain tokio tasks the source remembers
    /// because their spawn hook may still be to come. tokio can run a task's
    /// `on_task_terminate` before its `on_task_spawn` when the runtime shuts down, on
    /// another thread, between the two; the spawn hook must then not announce a task
    /// already gone. A blocking task's end, which no spawn hook ever follows, looks the
    /// same, so a runtime's remembered ends are all dropped whenever none of its spawns
    /// is between tokio's bind and its spawn hook: this stays small, and is 0 once no
    /// task is being spawned on the source's runtimes and one more task has ended there.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let runtime = watchers_tokio::Builder::new_current_thread().build()?;
    /// runtime.block_on(async {
    ///     for _ in 0..100 {
    ///         tokio::task::spawn_blocking(|| ()).await.unwrap();
    ///     }
    /// });
    /// // The blocking tasks' ends were not kept.
    /// assert_eq!(watchers_tokio::AsyncTasks::global().early_ends(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(all(feature = "unstable-hooks", tokio_unstable))]
    pub fn early_ends(&self) -> usize {
        self.plain.early_ends()
    }

    /// With `unstable-hooks`: how many plain tokio tasks had already ended when their
    /// spawn hook came to them, because their runtime shut them down, from another
    /// thread, right after tokio made them. One that ended before its spawn hook ran is
    /// not announced at all (no `fork`, `exit` or `free`); one that ended while its
    /// `fork` watchers ran gets `exit` and `free` as soon as they return. (A task
    /// spawned on a runtime that had already shut down is not counted: tokio ends it
    /// inside the spawn, and it is never announced either.)
    #[cfg(all(feature = "unstable-hooks", tokio_unstable))]
    pub fn late_spawn_hooks(&self) -> u64 {
        self.plain.late_spawn_hooks()
    }

    /// The parent of a task spawned from here: the calling task, else the calling
    /// runtime thread, else the process.
    pub(crate) fn parent(&self) -> Arc<Task> {
        self.current()
            .or_else(|| self.current_thread())
            .unwrap_or_else(|| self.process.clone())
    }

    /// Puts a thread or task that already runs into the table under `parent`; its
    /// `fork` watchers are told and cannot refuse it.
    pub(crate) fn adopt(&self, parent: &Task, comm: &str) -> Option<Arc<Task>> {
        let adopted = catch_unwind(AssertUnwindSafe(|| {
            self.tasks.adopt_running(parent, TASK_FLAGS, comm)
        }));
        match adopted {
            Ok(Ok((task, outcome))) => {
                if outcome.is_err() {
                    self.unheeded.fetch_add(1, Ordering::Relaxed);
                }
                Some(task)
            }
            Ok(Err(_)) | Err(_) => {
                self.untracked.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Sends `exit` with `status` and then `free` for a task of the source.
    pub(crate) fn retire(&self, task: &Arc<Task>, status: ExitStatus) {
        self.exit_quietly(task, status);
        self.free_quietly(task);
    }

    /// Sends `exit`, from a place where a panic must not escape (a drop, a runtime
    /// hook, or while another panic is on its way). A failing watcher is counted in the
    /// table's statistics; a panicking one is caught, and the task becomes a zombie
    /// regardless.
    pub(crate) fn exit_quietly(&self, task: &Task, status: ExitStatus) {
        quietly(|| {
            let _ = self.tasks.exit_unreaped(task.pid(), status);
        });
    }

    /// Sends `free` for a zombie, as [`exit_quietly`](AsyncTasks::exit_quietly) does
    /// `exit`; the task is freed even if a watcher panics.
    pub(crate) fn free_quietly(&self, task: &Arc<Task>) {
        quietly(|| {
            let _ = self.tasks.free(task);
        });
    }
}

/// Runs `f`, swallowing a panic.
fn quietly(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        // Dropping the payload runs its destructor, which could panic in turn, where
        // that may abort; leaking it is the safe choice.
        std::mem::forget(payload);
    }
}

/// The executable's file name, as the process's `comm`.
fn process_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "process".to_owned())
}

impl std::fmt::Debug for AsyncTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTasks")
            .field("process", &self.process)
            .field("tasks", &self.tasks)
            .field("unheeded_refusals", &self.unheeded_refusals())
            .field("untracked", &self.untracked())
            .finish_non_exhaustive()
    }
}
