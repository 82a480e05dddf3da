//! What an event source that mirrors real tasks of this program (its threads, its child
//! processes) needs beyond the model's own life cycle: adopting a task that already runs
//! under a pid the table picks, undoing a fork whose real task could not be created, and
//! an exit whose `free` the source sends later, when the real resources are gone; and
//! which watcher refused a fork, for the sources' own errors.

use std::sync::Arc;

use crate::error::{DispatchError, ForkError, TaskError};
use crate::event::EventData;
use crate::task::{Task, TaskInit};
use crate::task_values::{CloneFlags, ExitStatus, Ids, Pid, TaskState};

use super::{InFlight, TaskTable};

/// A change the OS made to a real task, which a mirror of it records with
/// [`TaskTable::record`]: the table takes the values as they are (the OS already
/// checked them), where its own methods such as [`setsid`](TaskTable::setsid) model
/// the checks and the derived values.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Recorded<'a> {
    /// `execve` of `filename`; the task's name becomes `comm` if it is known.
    Exec {
        /// The program (or command line) the task runs now.
        filename: &'a str,
        /// Its new name, if known.
        comm: Option<&'a str>,
    },
    /// The task's user ids are these now.
    Uids(Ids),
    /// The task's group ids are these now.
    Gids(Ids),
    /// `setsid`: the task's thread group leads a session and a process group of its
    /// own, named by its thread-group id.
    Setsid,
    /// The task's name is this now (cut to [`COMM_MAX`](crate::COMM_MAX) bytes).
    Comm(&'a str),
    /// A tracer attached (`Some`) or detached (`None`).
    Ptrace(Option<Pid>),
    /// The task dumped core after `signal` (0 if unknown).
    Coredump {
        /// The signal, or 0.
        signal: i32,
    },
}

impl TaskTable {
    /// Puts a task that already runs into the table, as [`fork`](TaskTable::fork) of
    /// `parent` with `flags` would have made it (a thread joins `parent`'s thread group),
    /// under a pid the table allocates, named `comm`. The `fork` watchers hear of it
    /// through [`WatcherTable::notify`](crate::WatcherTable::notify): they cannot refuse
    /// it, and it later gets `exit` and `free` like any other task. `parent` is that very
    /// task, never whichever has its pid now: once it is freed, or has finished exiting,
    /// the task is init's, as with [`adopt`](TaskTable::adopt). A thread made this way
    /// holds its group's id as [`adopt`](TaskTable::adopt) says: not when `parent` is a
    /// thread whose leader is not in the table, nor when `parent` has been freed.
    ///
    /// Returns the task and the outcome of the `fork` watchers (the task is in the table
    /// either way).
    ///
    /// ```
    /// use watchers_core::{CloneFlags, TaskTable, WatcherTable};
    ///
    /// let tasks = TaskTable::with_table(WatcherTable::from_watchers([])?);
    /// let (process, _) = tasks.adopt_running(tasks.init(), CloneFlags::empty(), "server")?;
    /// let (thread, outcome) = tasks.adopt_running(&process, CloneFlags::THREAD, "worker")?;
    /// assert!(outcome.is_ok());
    /// assert_eq!(thread.tgid(), process.pid());
    /// assert_eq!(thread.comm(), "worker");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ForkError::PidsExhausted`] if every pid is taken (nothing was added).
    pub fn adopt_running(
        &self,
        parent: &Task,
        flags: CloneFlags,
        comm: &str,
    ) -> Result<(Arc<Task>, Result<(), DispatchError>), ForkError> {
        let thread = flags.contains(CloneFlags::THREAD);
        let (uids, gids) = parent.ids();
        // `adopt` takes its own lock, so a pid allocated here may be taken by a
        // concurrent adoption in between; it is then simply drawn again.
        for _ in 0..self.pid_max {
            let pid = self
                .lock()
                .allocate_pid(self.pid_max)
                .ok_or(ForkError::PidsExhausted(self.pid_max))?;
            let init = TaskInit {
                pid,
                tgid: if thread { parent.tgid() } else { pid },
                // `adopt` finds the parent's parent by identity, for a thread too.
                parent: parent.pid(),
                sid: parent.sid(),
                pgid: parent.pgid(),
                uids,
                gids,
                comm: comm.to_owned(),
            };
            // The task comes back by identity even when a watcher failed: by the time
            // its pid could be looked up again, it may name another task.
            if let Ok(adopted) = self.adopt_under(init, flags, Some(parent)) {
                return Ok(adopted);
            }
            // The only refusal: the pid was taken meanwhile.
        }
        Err(ForkError::PidsExhausted(self.pid_max))
    }

    /// Records the id that the operating system gave the real thread or process behind
    /// `task`, a task of this table, once its event source knows it: readable as
    /// [`Task::os_id`] until the task's `free`. Dispatches nothing. The first id
    /// recorded for a task stays: false (and nothing changes) if one is recorded
    /// already, if the task's `free` is over (its OS id may be another's by then; during
    /// the `free` an id may still be recorded, and is forgotten with the rest), or if `id`
    /// is 0 or `u32::MAX`, which no thread or process has. A method of the table,
    /// not of the task, because watchers see tasks but only a table's owner changes them.
    ///
    /// ```
    /// use watchers_core::{CloneFlags, TaskTable, WatcherTable};
    ///
    /// let tasks = TaskTable::with_table(WatcherTable::from_watchers([])?);
    /// let child = tasks.fork(tasks.init().pid(), CloneFlags::empty())?;
    /// assert_eq!(child.os_id(), None);
    /// assert!(tasks.set_os_id(&child, 4242));
    /// assert!(!tasks.set_os_id(&child, 7), "recorded once");
    /// assert_eq!(child.os_id(), Some(4242));
    /// tasks.exit(child.pid(), 0)?; // init reaps it: `free`
    /// assert_eq!(child.os_id(), None);
    /// assert!(!tasks.set_os_id(&child, 4242), "freed");
    /// assert_eq!(child.os_id(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_os_id(&self, task: &Task, id: u32) -> bool {
        task.set_os_id(id)
    }

    /// Undoes a successful [`fork`](TaskTable::fork) whose real task could not be
    /// created (the OS refused the thread or the process): the `fork` watchers, which all
    /// succeeded, get `free` — exactly those that asked for it, in reverse order, as
    /// after a refused fork — without an `exit`, and the pid becomes free. Counted as a
    /// fork and a free in [`stats`](TaskTable::stats). Children that it forked meanwhile
    /// (another thread found it running) go to init, as at an exit; threads that it
    /// forked meanwhile delay its `free` until the last of them is freed. Its parent's
    /// [`wait`](TaskTable::wait) never finds it: it never exited.
    ///
    /// ```
    /// use watchers_core::{CloneFlags, TaskState, TaskTable, WatcherTable};
    ///
    /// let tasks = TaskTable::with_table(WatcherTable::from_watchers([])?);
    /// let child = tasks.fork(tasks.init().pid(), CloneFlags::empty())?;
    /// tasks.abort_fork(&child)?;
    /// assert_eq!(child.state(), TaskState::Dead);
    /// assert!(tasks.get(child.pid()).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TaskError::NoSuchTask`] or [`TaskError::WrongState`] unless the task is running;
    /// [`TaskError::Watcher`] if a `free` watcher failed (the task was freed all the
    /// same).
    pub fn abort_fork(&self, task: &Arc<Task>) -> Result<(), TaskError> {
        if task.pid() == Pid::INIT {
            return Err(TaskError::Init("abort its fork"));
        }
        let (orphans, now) = {
            // Found by identity: the pid may name another task by now.
            let mut inner = self.lock();
            inner.check_running(task, "abort its fork")?;
            task.set_state(TaskState::Zombie);
            // Claimed with the same lock: a task whose fork is undone is no zombie for
            // its parent's `wait` (which a `free` watcher of an orphan below may call)
            // to reap. A running task's `free` is claimed by nobody yet.
            let now = task.claim_free() == Some(true);
            // Children it forked while it ran (another thread found it) go to init, as
            // at an exit: else their parent pid could be taken and nobody reap them.
            (inner.hand_over(task), now)
        };
        let (orphan_error, panic) = self.settle_after_exit(task, &orphans, false);
        // Else an event in flight, or a thread of its group, sends the `free`.
        let freed = if now {
            self.free_claimed(task.clone())
        } else {
            Ok(())
        };
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
        match (freed, orphan_error) {
            (Ok(()), Some(error)) => Err(TaskError::Watcher(error)),
            (freed, _) => freed,
        }
    }

    /// Like [`exit_with`](TaskTable::exit_with), except that the task stays a zombie even
    /// if it is a thread or init's child (also once its parent exits and init adopts
    /// it, which reaps its other orphans at once): its source sends `free` with
    /// [`free`](TaskTable::free) once the real task's resources are gone (for a thread,
    /// when its thread-locals have been destroyed), and until then it keeps its
    /// [`os_id`](Task::os_id). A parent other than init may still reap it, as any
    /// zombie child; the source's `free` then fails with [`TaskError::NoSuchTask`].
    ///
    /// # Errors
    /// As [`exit_with`](TaskTable::exit_with).
    pub fn exit_unreaped(&self, pid: Pid, status: ExitStatus) -> Result<(), TaskError> {
        self.exit_inner(pid, status, false)
    }

    /// Frees this zombie (found by identity, never by a pid that may have been reused)
    /// now, whoever its parent is: its `free` watchers run, its slots and
    /// per-task watchers are dropped, its pid becomes free. For sources that reap their
    /// tasks themselves (see [`exit_unreaped`](TaskTable::exit_unreaped)). A
    /// thread-group leader whose threads are still in the table is freed after the last
    /// of them, as by [`reap`](TaskTable::reap).
    ///
    /// ```
    /// use watchers_core::{CloneFlags, ExitStatus, TaskState, TaskTable, WatcherTable};
    ///
    /// let tasks = TaskTable::with_table(WatcherTable::from_watchers([])?);
    /// let thread = tasks.fork(tasks.init().pid(), CloneFlags::THREAD)?;
    /// tasks.exit_unreaped(thread.pid(), ExitStatus::exited(0))?;
    /// assert_eq!(thread.state(), TaskState::Zombie);
    /// tasks.free(&thread)?;
    /// assert_eq!(thread.state(), TaskState::Dead);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TaskError::Init`] for pid 1; [`TaskError::NoSuchTask`] or
    /// [`TaskError::WrongState`] unless it is a zombie; [`TaskError::Watcher`] if a `free`
    /// watcher failed (the task was freed all the same).
    pub fn free(&self, task: &Arc<Task>) -> Result<(), TaskError> {
        self.release(task)
    }
}

impl ForkError {
    /// The name of the `fork` watcher that refused, if a watcher did (rather than the
    /// table: no such parent, no pid left).
    ///
    /// ```
    /// use watchers_core::{CloneFlags, Pid, TaskTable, WatcherTable};
    ///
    /// let tasks = TaskTable::with_table(WatcherTable::from_watchers([])?);
    /// let error = tasks.fork(Pid(77), CloneFlags::empty()).unwrap_err();
    /// assert_eq!(error.watcher(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watcher(&self) -> Option<&str> {
        match self {
            ForkError::Watcher(error) => Some(&error.watcher),
            _ => None,
        }
    }
}

impl TaskTable {
    /// Records a change the OS made to `task` (found by identity: its pid may name
    /// another task by now) and sends its event, as the method of the table that makes
    /// that change would: counted in flight, so that the task's `free` comes after it.
    ///
    /// ```
    /// use watchers_core::{CloneFlags, Ids, Recorded, TaskTable, WatcherTable};
    ///
    /// let tasks = TaskTable::with_table(WatcherTable::from_watchers([])?);
    /// let task = tasks.fork(tasks.init().pid(), CloneFlags::empty())?;
    /// let uids = Ids { real: 1000, effective: 0, saved: 1000, fs: 1000 };
    /// tasks.record(&task, Recorded::Uids(uids))?;
    /// tasks.record(&task, Recorded::Exec { filename: "/bin/sh -c x", comm: Some("sh") })?;
    /// assert_eq!((task.uids(), task.comm().as_str()), (uids, "sh"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// A task's parent, session, ids, name and tracer change only through the table, so
    /// that its children lists always agree with [`Task::parent`]:
    ///
    /// ```compile_fail
    /// watchers_core::Task::detached(2).set_parent(watchers_core::Pid(1));
    /// ```
    ///
    /// # Errors
    /// [`TaskError::NoSuchTask`] or [`TaskError::WrongState`] unless the task is running
    /// in this table (nothing is changed); [`TaskError::Watcher`] if a watcher failed
    /// (the change was made).
    pub fn record(&self, task: &Arc<Task>, change: Recorded<'_>) -> Result<(), TaskError> {
        let task = {
            let inner = self.lock();
            inner.check_running(task, "record a change")?;
            task.enter_event();
            InFlight {
                table: self,
                task: task.clone(),
            }
        };
        match change {
            Recorded::Exec { filename, comm } => {
                if let Some(comm) = comm {
                    task.replace_comm(comm);
                }
                task.send(EventData::Exec { filename })
            }
            Recorded::Uids(new) => {
                let old = task.replace_uids(new);
                task.send(EventData::Uid { old, new })
            }
            Recorded::Gids(new) => {
                let old = task.replace_gids(new);
                task.send(EventData::Gid { old, new })
            }
            Recorded::Setsid => {
                // The kernel names the session after the thread group; the whole
                // group joins it.
                let sid = task.tgid();
                self.lock().set_session(&task, sid);
                task.send(EventData::Sid { sid })
            }
            Recorded::Comm(comm) => task.rename(comm),
            Recorded::Ptrace(tracer) => {
                task.set_tracer(tracer);
                task.send(EventData::Ptrace { tracer })
            }
            Recorded::Coredump { signal } => task.send(EventData::Coredump { signal }),
        }
    }
}

impl ExitStatus {
    /// Whether the task dumped core when a signal killed it (the wait status's `0x80`
    /// bit).
    ///
    /// ```
    /// use watchers_core::ExitStatus;
    ///
    /// assert!(ExitStatus(6 | 0x80).core_dumped());
    /// assert!(!ExitStatus::signaled(9).core_dumped());
    /// ```
    pub const fn core_dumped(self) -> bool {
        self.signal().is_some() && self.0 & 0x80 != 0
    }
}
