//! The task model: a process table that sends every lifecycle event through a
//! [`WatcherTable`].

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use foldhash::fast::SeedableRandomState;

use crate::error::{DispatchError, ForkError, TaskError};
use crate::event::{Event, EventData};
use crate::table::{TableRef, WatcherTable};
use crate::task::{Task, TaskInit};
use crate::task_values::{CloneFlags, Comm, ExitStatus, Ids, Pid, TaskState};

mod source;

pub use source::Recorded;

/// The default highest pid, as the kernel's classic `pid_max`.
pub const DEFAULT_PID_MAX: u32 = 32_768;

/// A process table that a Rust kernel, runtime or simulator can embed, and that tests,
/// the CLI and the benchmarks drive. Every change sends its event through the table's
/// watchers.
///
/// * `init` (pid 1) exists from the start; it is never forked or freed, exits never,
///   and reaps every zombie handed to it (so orphans are freed as soon as they exit),
///   except those that exited with [`exit_unreaped`](TaskTable::exit_unreaped): their
///   event source frees them.
/// * A pid is never reused while its task is alive or a zombie: only after `free`
///   (`free` watchers still see the pid taken). A pid names a task only at the moment a
///   method is called: once the table has let go of its lock (to run watchers, which
///   may re-enter it, or because another thread holds it), it finds the task again by
///   identity, never by pid. So a reused pid never makes the table free, reparent or
///   fork under the wrong task; [`Task::serial`] is that identity for users.
/// * `free` is sent once no other event of the task that this table sends is in flight.
///   If the task is reaped while one still runs its watchers (another thread's `exec`,
///   or a watcher that exits and reaps its own task), the task stays a zombie holding
///   its pid, the reap returns at once, and the thread whose event ends last sends
///   `free` (a `free` watcher's error is then returned to no caller). Nothing waits, so
///   a watcher may re-enter the table on its own task.
/// * A thread (`CloneFlags::THREAD`) joins its parent's thread group, has its parent's
///   parent, and is reaped by itself when it exits. The table holds every task's parent
///   by identity, a thread's too: when the parent exits, its threads go to init with
///   its children, so a `CLONE_PARENT` fork from a thread never reaches a task that
///   took a freed parent's pid.
/// * A thread group's leader that exits while threads of its group are in the table
///   stays a zombie, its pid taken, until the last of them is freed (the kernel's
///   `delay_group_leader`): so no fork can reuse its pid as a pid and thread-group id
///   while its group lives. Until then `wait` passes it over; a reap of it (by its
///   parent, by init for its orphans, or [`free`](TaskTable::free)) returns at once
///   and leaves its `free` to the last thread's, sent right after that one (once,
///   as every `free`). A thread group shares one session and process group: its
///   leader's, which [`setsid`](TaskTable::setsid) changes for all of them at once.
/// * Any thread may call any method; watchers run without the table's lock held.
///
/// ```
/// use watchers_core::{CloneFlags, TaskState, TaskTable, WatcherTable};
///
/// let tasks = TaskTable::with_table(WatcherTable::from_watchers([])?);
/// let shell = tasks.fork(tasks.init().pid(), CloneFlags::empty())?;
/// let job = tasks.fork(shell.pid(), CloneFlags::empty())?;
/// tasks.exec(job.pid(), "/bin/true")?;
/// tasks.exit(job.pid(), 0)?;
/// assert_eq!(job.state(), TaskState::Zombie);
/// let (pid, status) = tasks.wait(shell.pid())?.expect("a zombie child");
/// assert_eq!((pid, status.code()), (job.pid(), Some(0)));
/// assert_eq!(job.state(), TaskState::Dead);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TaskTable {
    watchers: TableRef,
    init: Arc<Task>,
    pid_max: u32,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Keyed by pid with foldhash: SipHash cost a fork, exit and free about a thousand
    /// instructions. The hash keeps a random seed, drawn once per table (and used for
    /// every node's sets too), because pids are not always the table's own: a mirror of
    /// the kernel's processes holds pids that a local user picks by choosing which of
    /// its processes stay alive, and an unkeyed hash would let such a user line them up
    /// in one bucket.
    nodes: HashMap<Pid, Node, SeedableRandomState>,
    /// The process groups there are, by id, each with how many session records (see
    /// [`Task::session_record`]: a process's, shared by its threads) in `nodes` name it:
    /// what `setsid` checks without a search. Init's group (1) is left out: init is
    /// always in it, and every task forked from a process of it joins it, so a fork
    /// and free in it (the benchmarks', most tests') touch no second map.
    groups: HashMap<Pid, u32, SeedableRandomState>,
    /// The sessions named apart from a group: by id, how many session records in
    /// `nodes` have it as their session but another process group (an adopted shell's
    /// job, whose session leader may be gone). A record whose session is its group is
    /// counted in `groups` alone, so every live session id is a key of one of the two:
    /// what keeps [`allocate_pid`] from handing it out, as Linux does.
    sessions: HashMap<Pid, u32, SeedableRandomState>,
    last_pid: u32,
    /// Counted under the lock that each change takes anyway: as atomics of their own,
    /// the spawning thread (forks) and the ending one (exits, frees) passed their
    /// cache line back and forth on every thread.
    stats: Counters,
}

struct Node {
    task: Arc<Task>,
    /// The task whose child this one is, by identity: [`Task::parent`] is only its pid,
    /// which may name another task once that one is freed. Empty when it is init (see
    /// [`parent_link`]) and for init itself; for an embryo, the parent it gets if that
    /// one still runs when the fork is decided.
    parent: Weak<Task>,
    /// The tasks whose parent it is, made with its first one: most nodes (a thread's,
    /// a process's that forks nothing) never need one and stay three words, which
    /// keeps the table's buckets small for the thread that forks and the one that ends
    /// to pass between them.
    family: Option<Box<Family>>,
}

/// The tasks whose parent a task is, by pid.
struct Family {
    /// Processes (threads are not waited for).
    children: HashSet<Pid, SeedableRandomState>,
    /// Threads: handed to init with the children when the task exits, so that their
    /// parent never names a freed task.
    threads: HashSet<Pid, SeedableRandomState>,
}

impl Node {
    /// A task's node, linked to no parent yet, with no family.
    fn new(task: Arc<Task>) -> Node {
        Node {
            task,
            parent: Weak::new(),
            family: None,
        }
    }

    /// Whether `pid` is one of its child processes.
    fn has_child(&self, pid: Pid) -> bool {
        self.family
            .as_ref()
            .is_some_and(|family| family.children.contains(&pid))
    }

    /// Its child processes' pids.
    fn children(&self) -> impl Iterator<Item = &Pid> {
        self.family.iter().flat_map(|family| &family.children)
    }

    /// Its family, made (its sets seeded with the table's seed) if it has none yet.
    fn family(&mut self, hasher: &SeedableRandomState) -> &mut Family {
        self.family.get_or_insert_with(|| {
            Box::new(Family {
                children: HashSet::with_hasher(hasher.clone()),
                threads: HashSet::with_hasher(hasher.clone()),
            })
        })
    }

    /// Takes `pid` off its family.
    fn disown(&mut self, pid: Pid, thread: bool) {
        if let Some(family) = &mut self.family {
            if thread {
                family.threads.remove(&pid);
            } else {
                family.children.remove(&pid);
            }
        }
    }
}

#[derive(Default)]
struct Counters {
    /// Tasks put in the table as embryos (by `fork` and `adopt`): each leaves that
    /// state counted in `forks` or `failed_forks`, under the same lock, so the tasks
    /// being forked now are counted without a counter to take back on the fork path.
    embryos: u64,
    forks: u64,
    failed_forks: u64,
    exits: u64,
    frees: u64,
}

/// What a [`TaskTable`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// Successful forks.
    pub forks: u64,
    /// Forks refused by a watcher (an error or a panic).
    pub failed_forks: u64,
    /// Tasks that exited.
    pub exits: u64,
    /// Tasks freed (reaped).
    pub frees: u64,
    /// Tasks in the table now, zombies and init included; tasks still being forked
    /// are not (as [`TaskTable::get`] does not find them).
    pub tasks: usize,
}

impl TaskTable {
    /// A table dispatching through the program-wide watcher table
    /// ([`WatcherTable::global`]).
    ///
    /// # Panics
    /// If the registered watchers cannot form a table, at the caller's location; call
    /// [`freeze`](crate::freeze) first to get that as an error value.
    #[track_caller]
    pub fn new() -> TaskTable {
        TaskTable::with_table(WatcherTable::global())
    }

    /// A table dispatching through `watchers`: a `&'static WatcherTable`, an
    /// `Arc<WatcherTable>` or a `WatcherTable` (see [`TableRef`]).
    pub fn with_table(watchers: impl Into<TableRef>) -> TaskTable {
        TaskTable::with_pid_max(watchers, DEFAULT_PID_MAX)
    }

    /// A table whose pids run from 2 to `pid_max` (at least 2) before wrapping around.
    pub fn with_pid_max(watchers: impl Into<TableRef>, pid_max: u32) -> TaskTable {
        let watchers = watchers.into();
        let init = Arc::new(Task::new(TaskInit {
            pid: Pid::INIT,
            tgid: Pid::INIT,
            parent: Pid(0),
            sid: Pid::INIT,
            pgid: Pid::INIT,
            uids: Ids::all(0),
            gids: Ids::all(0),
            comm: "init".to_owned(),
        }));
        init.set_state(TaskState::Running);
        let hasher = SeedableRandomState::random();
        let mut nodes = HashMap::with_hasher(hasher.clone());
        nodes.insert(Pid::INIT, Node::new(init.clone()));
        TaskTable {
            watchers,
            init,
            pid_max: pid_max.max(2),
            inner: Mutex::new(Inner {
                nodes,
                groups: HashMap::with_hasher(hasher.clone()),
                sessions: HashMap::with_hasher(hasher),
                last_pid: 1,
                stats: Counters::default(),
            }),
        }
    }

    /// The watcher table events go through.
    pub fn watchers(&self) -> &WatcherTable {
        &self.watchers
    }

    /// The watcher table events go through, as a handle that keeps it alive.
    pub fn shared_watchers(&self) -> TableRef {
        self.watchers.clone()
    }

    /// The init task (pid 1).
    pub fn init(&self) -> &Arc<Task> {
        &self.init
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every method leaves `Inner` consistent before it can panic (watchers run
        // outside the lock), so a poisoned lock holds usable data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task with this pid, unless it is still being forked or already freed.
    pub fn get(&self, pid: Pid) -> Option<Arc<Task>> {
        self.lock().visible(pid).cloned()
    }

    /// Every visible task, by pid.
    pub fn tasks(&self) -> Vec<Arc<Task>> {
        let inner = self.lock();
        let mut tasks: Vec<_> = inner
            .nodes
            .values()
            .filter(|node| node.task.state() != TaskState::Embryo)
            .map(|node| node.task.clone())
            .collect();
        tasks.sort_by_key(|task| task.pid());
        tasks
    }

    /// The pids of a task's child processes.
    pub fn children(&self, pid: Pid) -> Vec<Pid> {
        let inner = self.lock();
        let mut children: Vec<Pid> = inner
            .nodes
            .get(&pid)
            .map(|node| node.children().copied().collect())
            .unwrap_or_default();
        children.sort();
        children
    }

    /// How many tasks the table holds (init, zombies and tasks being forked included).
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    /// Always false: init is always in the table.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// What the table has done so far.
    pub fn stats(&self) -> TaskStats {
        let inner = self.lock();
        let stats = &inner.stats;
        let being_forked = stats
            .embryos
            .saturating_sub(stats.forks)
            .saturating_sub(stats.failed_forks);
        TaskStats {
            forks: stats.forks,
            failed_forks: stats.failed_forks,
            exits: stats.exits,
            frees: stats.frees,
            tasks: inner
                .nodes
                .len()
                .saturating_sub(usize::try_from(being_forked).unwrap_or(usize::MAX)),
        }
    }

    /// The running task with this pid, its event counted as in flight until the
    /// returned guard is dropped (so that its `free` waits for that event).
    fn running(&self, pid: Pid, operation: &'static str) -> Result<InFlight<'_>, TaskError> {
        let inner = self.lock();
        let task = inner.in_state(pid, TaskState::Running, operation)?;
        // Counted before the lock is released: an exit needs the lock to make the task
        // a zombie, and only a zombie's `free` can be claimed. Counted after it, the
        // event could start once the task's `free` was sent, and its end would send
        // `free` a second time.
        task.enter_event();
        drop(inner);
        Ok(InFlight { table: self, task })
    }

    fn send(&self, task: &Task, data: EventData<'_>) -> Result<(), DispatchError> {
        self.watchers.dispatch(&Event::new(task, data))
    }

    /// Forks `parent`. The `fork` watchers run before anyone can see the child; if one
    /// fails, the watchers that had succeeded get `free`, the pid is released, and the
    /// error names the watcher.
    ///
    /// # Errors
    /// [`ForkError::Watcher`] if a watcher refused; [`ForkError::NoSuchTask`],
    /// [`ForkError::NotRunning`] or [`ForkError::PidsExhausted`] otherwise.
    pub fn fork(&self, parent: Pid, flags: CloneFlags) -> Result<Arc<Task>, ForkError> {
        self.fork_inner(parent, None, flags)
    }

    /// Forks `parent` into a child with a chosen pid (for event sources that mirror a
    /// real process table, where the kernel chose the pid).
    ///
    /// # Errors
    /// As [`fork`](TaskTable::fork); [`ForkError::PidsExhausted`] if `child` is taken.
    pub fn fork_with_pid(
        &self,
        parent: Pid,
        child: Pid,
        flags: CloneFlags,
    ) -> Result<Arc<Task>, ForkError> {
        self.fork_inner(parent, Some(child), flags)
    }

    fn fork_inner(
        &self,
        parent_pid: Pid,
        wanted: Option<Pid>,
        flags: CloneFlags,
    ) -> Result<Arc<Task>, ForkError> {
        let thread = flags.contains(CloneFlags::THREAD);
        let (parent, real_parent, child) = {
            let mut inner = self.lock();
            let Inner {
                nodes,
                groups,
                sessions,
                last_pid,
                ..
            } = &mut *inner;
            // One lookup finds the parent and, for a thread, the parent's parent.
            let parent_node = nodes
                .get(&parent_pid)
                .filter(|node| node.task.state() != TaskState::Embryo)
                .ok_or(ForkError::NoSuchTask(parent_pid))?;
            let parent = parent_node.task.clone();
            if parent.state() != TaskState::Running {
                return Err(ForkError::NotRunning {
                    pid: parent_pid,
                    state: parent.state(),
                });
            }
            // The task whose child process this will be, held by identity: its pid
            // may name another task by the time the fork watchers have run.
            let real_parent = if thread || flags.contains(CloneFlags::PARENT) {
                parent_node.parent.upgrade()
            } else {
                Some(parent.clone())
            };
            let pid = match wanted {
                Some(pid) if !nodes.contains_key(&pid) && pid.0 != 0 => pid,
                Some(_) => return Err(ForkError::PidsExhausted(self.pid_max)),
                None => allocate_pid(nodes, [groups, sessions], last_pid, self.pid_max)
                    .ok_or(ForkError::PidsExhausted(self.pid_max))?,
            };
            // A thread shares its group leader's session record; init's threads keep
            // their own, as init's session never changes.
            let leader = if !thread {
                None
            } else if parent.is_thread() {
                parent.leader().cloned()
            } else {
                (parent.pid() != Pid::INIT).then(|| parent.clone())
            };
            let (uids, gids) = parent.ids();
            let (sid, pgid) = parent.session();
            let comm = parent.comm_inline();
            let child = Arc::new(Task::with_comm(
                TaskInit {
                    pid,
                    tgid: if thread { parent.tgid() } else { pid },
                    // Init has no parent: a thread or `CLONE_PARENT` child of init (or of
                    // a child of init) is init's, never pid 0's, also while `fork` runs.
                    parent: real_parent
                        .as_ref()
                        .map_or(Pid::INIT, |parent| parent.pid()),
                    sid,
                    pgid,
                    uids,
                    gids,
                    comm: String::new(),
                },
                comm,
                leader,
            ));
            // The embryo holds its pid, invisible to `get`, until the fork is decided.
            let mut node = Node::new(child.clone());
            node.parent = parent_link(real_parent.as_ref());
            inner.insert(node);
            (parent, real_parent, child)
        };

        let mut embryo = Embryo {
            table: self,
            task: &child,
            born: false,
        };
        let outcome = self.send(
            &child,
            EventData::Fork {
                parent: &parent,
                flags,
            },
        );
        if let Err(error) = outcome {
            drop(embryo);
            return Err(ForkError::Watcher(error));
        }
        embryo.born = true;
        drop(embryo);

        let mut inner = self.lock();
        child.set_state(TaskState::Running);
        // If the parent exited (and its pid may be another task's now) while the child
        // was being forked, init adopts it.
        inner.link(
            &child,
            real_parent.as_ref(),
            |state| state == TaskState::Running,
            &self.init,
        );
        inner.stats.forks += 1;
        drop(inner);
        Ok(child)
    }

    /// Puts a task that already exists elsewhere (a real process found in `/proc`, or
    /// one the kernel just forked) into the table, running, and announces it to the
    /// `fork` watchers with [`WatcherTable::notify`]: they cannot refuse it, and it will
    /// get `exit` and `free` like any other task. `init.parent` names the task that
    /// created it (the `fork` event's parent) if that is in the table and has not
    /// finished exiting, else init. As with [`fork`](TaskTable::fork), that task is its
    /// parent, or with [`CloneFlags::THREAD`] or [`CloneFlags::PARENT`] that task's own
    /// parent; `init.parent` is replaced accordingly (init if there is none). A thread
    /// (`init.tgid` not its pid) whose group leader is in the table, not yet freed,
    /// shares the leader's session and process group (`init.sid` and `init.pgid` are
    /// not used) and delays the leader's `free` as a forked thread does; one whose
    /// leader is not there keeps its own, and does not hold its group's id: that pid
    /// stays free, and [`fork`](TaskTable::fork) (unless its process group or session
    /// has that id too) or [`fork_with_pid`](TaskTable::fork_with_pid) may give it to a
    /// new task.
    ///
    /// # Errors
    /// [`TaskError::InvalidPid`] for pid 0; [`TaskError::WrongState`] if the pid is taken
    /// (the task is not added in either case);
    /// [`TaskError::Watcher`] if a `fork` watcher failed (the task was added).
    pub fn adopt(&self, init: TaskInit, flags: CloneFlags) -> Result<Arc<Task>, TaskError> {
        let (task, outcome) = self.adopt_announced(init, flags)?;
        outcome.map_err(TaskError::Watcher).map(|()| task)
    }

    /// [`adopt`](TaskTable::adopt), returning the task also when a `fork` watcher
    /// failed (it was added all the same), so that the caller holds it by identity
    /// rather than looking its pid up again.
    pub(crate) fn adopt_announced(
        &self,
        init: TaskInit,
        flags: CloneFlags,
    ) -> Result<(Arc<Task>, Result<(), DispatchError>), TaskError> {
        self.adopt_under(init, flags, None)
    }

    /// [`adopt_announced`](TaskTable::adopt_announced); with a `creator`, the task that
    /// created it is that very task, found by identity (not `init.parent`, whose pid may
    /// be another task's by now), and a thread joins only that task's thread group.
    pub(crate) fn adopt_under(
        &self,
        mut init: TaskInit,
        flags: CloneFlags,
        creator: Option<&Task>,
    ) -> Result<(Arc<Task>, Result<(), DispatchError>), TaskError> {
        let (task, parent, real_parent) = {
            if init.pid == Pid(0) {
                return Err(TaskError::InvalidPid(init.pid));
            }
            let mut inner = self.lock();
            if let Some(node) = inner.nodes.get(&init.pid) {
                return Err(TaskError::WrongState {
                    pid: init.pid,
                    state: node.task.state(),
                    operation: "be adopted: the pid is taken",
                });
            }
            // Only a parent whose exit has not yet handed its children to init can take
            // one; any other would leave the child pointing at a pid that is reused.
            let named = match creator {
                Some(creator) => inner.node_of_task(creator),
                None => inner.nodes.get(&init.parent).map(|node| node.task.clone()),
            };
            let parent = named
                .clone()
                .filter(|parent| matches!(parent.state(), TaskState::Running | TaskState::Exiting))
                .unwrap_or_else(|| self.init.clone());
            // An embryo, invisible, until every `fork` watcher has heard of it: nobody
            // can exit it (and send its `free`) before its `fork` has been sent.
            let real_parent = if flags.intersects(CloneFlags::THREAD | CloneFlags::PARENT) {
                inner
                    .node_of(&parent)
                    .and_then(|node| node.parent.upgrade())
            } else {
                Some(parent.clone())
            };
            let leader = match creator {
                // Only the creator's own group: a task that has its group's id now may
                // be another process.
                Some(_) => named.and_then(|creator| inner.adopted_leader(&init, &creator, false)),
                None => inner.adopted_leader(&init, &parent, true),
            };
            // Replaced before the `fork` watchers see the task, as `fork` does: by then
            // `init.parent` may be a thread's creator, a task that has exited, or a pid
            // that names another task.
            init.parent = real_parent
                .as_ref()
                .map_or(Pid::INIT, |parent| parent.pid());
            let comm = Comm::new(&init.comm);
            let task = Arc::new(Task::with_comm(init, comm, leader));
            let mut node = Node::new(task.clone());
            node.parent = parent_link(real_parent.as_ref());
            inner.insert(node);
            (task, parent, real_parent)
        };
        let event = Event::new(
            &task,
            EventData::Fork {
                parent: &parent,
                flags,
            },
        );
        // The task exists for real: it enters the table even if a watcher panics.
        let outcome = catch_unwind(AssertUnwindSafe(|| self.watchers.notify(&event)));
        {
            let mut inner = self.lock();
            task.set_state(TaskState::Running);
            // The parent may have exited while the watchers ran: then init adopts.
            inner.link(
                &task,
                real_parent.as_ref(),
                |state| matches!(state, TaskState::Running | TaskState::Exiting),
                &self.init,
            );
            inner.stats.forks += 1;
        }
        match outcome {
            Ok(result) => Ok((task, result)),
            Err(payload) => resume_unwind(payload),
        }
    }

    /// `execve`: the task runs `filename` (its name becomes the file's base name, as in
    /// the kernel, without a `comm` event).
    ///
    /// # Errors
    /// [`TaskError::NoSuchTask`] or [`TaskError::WrongState`] if it cannot; else
    /// [`TaskError::Watcher`] if a watcher failed (the exec happened).
    pub fn exec(&self, pid: Pid, filename: &str) -> Result<(), TaskError> {
        let task = self.running(pid, "exec")?;
        let base = filename.rsplit('/').next().unwrap_or(filename);
        task.replace_comm(base);
        task.send(EventData::Exec { filename })
    }

    /// `setresuid`: each id that is `Some` is set; the filesystem id follows the
    /// effective one. No permission checks are modelled.
    ///
    /// # Errors
    /// [`TaskError::InvalidId`] for `u32::MAX` (the kernel's -1, which no task has;
    /// `None` leaves an id unchanged); otherwise as [`exec`](TaskTable::exec).
    pub fn setresuid(
        &self,
        pid: Pid,
        real: Option<u32>,
        effective: Option<u32>,
        saved: Option<u32>,
    ) -> Result<(), TaskError> {
        self.change_ids(pid, IdKind::User, [real, effective, saved])
    }

    /// `setuid`: every user id becomes `uid`.
    ///
    /// # Errors
    /// As [`setresuid`](TaskTable::setresuid).
    pub fn setuid(&self, pid: Pid, uid: u32) -> Result<(), TaskError> {
        self.setresuid(pid, Some(uid), Some(uid), Some(uid))
    }

    /// `seteuid`: the effective (and filesystem) user id becomes `euid`.
    ///
    /// # Errors
    /// As [`setresuid`](TaskTable::setresuid).
    pub fn seteuid(&self, pid: Pid, euid: u32) -> Result<(), TaskError> {
        self.setresuid(pid, None, Some(euid), None)
    }

    /// `setresgid`: as [`setresuid`](TaskTable::setresuid), for group ids.
    ///
    /// # Errors
    /// As [`setresuid`](TaskTable::setresuid).
    pub fn setresgid(
        &self,
        pid: Pid,
        real: Option<u32>,
        effective: Option<u32>,
        saved: Option<u32>,
    ) -> Result<(), TaskError> {
        self.change_ids(pid, IdKind::Group, [real, effective, saved])
    }

    /// Sets the real, effective and saved ids that are `Some`; the filesystem id follows
    /// the effective one.
    fn change_ids(
        &self,
        pid: Pid,
        kind: IdKind,
        [real, effective, saved]: [Option<u32>; 3],
    ) -> Result<(), TaskError> {
        let operation = match kind {
            IdKind::User => "setresuid",
            IdKind::Group => "setresgid",
        };
        // The kernel's -1: "unchanged" to `setresuid`, refused by `setuid`, never an id
        // a task has. Here `None` means unchanged, so the value itself is an error.
        if [real, effective, saved].contains(&Some(u32::MAX)) {
            return Err(TaskError::InvalidId(u32::MAX));
        }
        let task = self.running(pid, operation)?;
        let old = match kind {
            IdKind::User => task.uids(),
            IdKind::Group => task.gids(),
        };
        let effective = effective.unwrap_or(old.effective);
        let new = Ids {
            real: real.unwrap_or(old.real),
            effective,
            saved: saved.unwrap_or(old.saved),
            fs: effective,
        };
        let data = match kind {
            IdKind::User => {
                task.replace_uids(new);
                EventData::Uid { old, new }
            }
            IdKind::Group => {
                task.replace_gids(new);
                EventData::Gid { old, new }
            }
        };
        task.send(data)
    }

    /// `setgid`: every group id becomes `gid`.
    ///
    /// # Errors
    /// As [`setresuid`](TaskTable::setresuid).
    pub fn setgid(&self, pid: Pid, gid: u32) -> Result<(), TaskError> {
        self.setresgid(pid, Some(gid), Some(gid), Some(gid))
    }

    /// `setegid`: the effective (and filesystem) group id becomes `egid`.
    ///
    /// # Errors
    /// As [`setresuid`](TaskTable::setresuid).
    pub fn setegid(&self, pid: Pid, egid: u32) -> Result<(), TaskError> {
        self.setresgid(pid, None, Some(egid), None)
    }

    /// `setsid`: the task's thread group starts a session and a process group of its
    /// own, both named by the group's id (its leader's pid, the task's own for a
    /// process); every task of the group joins them, and the task gets the `sid` event.
    /// Returns the session id.
    ///
    /// # Errors
    /// [`TaskError::GroupLeader`] if a process group with that id exists (the kernel's
    /// `EPERM`): the task, or its thread group, leads one, or it was placed on the pid of
    /// a freed group leader whose group lives on (`fork_with_pid`, `adopt`: `fork` never
    /// hands such a pid out); otherwise as [`exec`](TaskTable::exec).
    ///
    /// # Cost
    /// At most four hash-map operations under the table's lock, whatever the table's
    /// size: the table keeps its process groups and sessions by id, and a thread
    /// group's session in one record that all its threads share.
    ///
    /// ```
    /// use watchers_core::{CloneFlags, TaskTable, WatcherTable};
    ///
    /// let tasks = TaskTable::with_table(WatcherTable::from_watchers([])?);
    /// let process = tasks.fork(tasks.init().pid(), CloneFlags::empty())?;
    /// let thread = tasks.fork(process.pid(), CloneFlags::THREAD)?;
    /// assert_eq!(tasks.setsid(thread.pid())?, process.pid());
    /// assert_eq!((process.sid(), thread.pgid()), (process.pid(), process.pid()));
    /// assert!(tasks.setsid(process.pid()).is_err(), "it leads a process group now");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn setsid(&self, pid: Pid) -> Result<Pid, TaskError> {
        let task = self.running(pid, "setsid")?;
        let sid = task.tgid();
        {
            // Checked and changed under one lock, so that two threads of the group
            // cannot both start the session, and no fork joins the group in between.
            let mut inner = self.lock();
            if inner.group_exists(sid) {
                return Err(TaskError::GroupLeader(pid));
            }
            inner.set_session(&task, sid);
        }
        task.send(EventData::Sid { sid })?;
        Ok(sid)
    }

    /// `prctl(PR_SET_NAME)`: renames the task (cut to 15 bytes).
    ///
    /// # Errors
    /// As [`exec`](TaskTable::exec).
    pub fn set_comm(&self, pid: Pid, comm: &str) -> Result<(), TaskError> {
        self.running(pid, "set_comm")?.rename(comm)
    }

    /// `ptrace(PTRACE_ATTACH)` by `tracer`, or a detach when `tracer` is `None`.
    ///
    /// # Errors
    /// As [`exec`](TaskTable::exec).
    pub fn ptrace(&self, pid: Pid, tracer: Option<Pid>) -> Result<(), TaskError> {
        let task = self.running(pid, "ptrace")?;
        task.set_tracer(tracer);
        task.send(EventData::Ptrace { tracer })
    }

    /// The task dumps core after `signal` (it keeps running until it exits).
    ///
    /// # Errors
    /// As [`exec`](TaskTable::exec).
    pub fn coredump(&self, pid: Pid, signal: i32) -> Result<(), TaskError> {
        let task = self.running(pid, "dump core")?;
        task.send(EventData::Coredump { signal })
    }

    /// `exit(code)`: see [`exit_with`](TaskTable::exit_with).
    ///
    /// # Errors
    /// As [`exit_with`](TaskTable::exit_with).
    pub fn exit(&self, pid: Pid, code: i32) -> Result<(), TaskError> {
        self.exit_with(pid, ExitStatus::exited(code))
    }

    /// The task exits with `status`: the `exit` watchers run, it becomes a zombie, its
    /// children are handed to init. A thread, or a task whose parent is init, is then
    /// reaped at once (its `free` watchers run).
    ///
    /// The task becomes a zombie even if a watcher fails or panics (the panic then
    /// continues).
    ///
    /// # Errors
    /// [`TaskError::Init`] for pid 1; [`TaskError::NoSuchTask`] or
    /// [`TaskError::WrongState`]; [`TaskError::Watcher`] if a watcher failed on `exit`
    /// or, for a task reaped at once, on `free`.
    pub fn exit_with(&self, pid: Pid, status: ExitStatus) -> Result<(), TaskError> {
        self.exit_inner(pid, status, true)
    }

    /// `exit_with`; a thread, or a task whose parent is init, is reaped at once only if
    /// `reap_self` (else it stays a zombie for [`TaskTable::free`]).
    fn exit_inner(&self, pid: Pid, status: ExitStatus, reap_self: bool) -> Result<(), TaskError> {
        if pid == Pid::INIT {
            return Err(TaskError::Init("exit"));
        }
        let task = {
            let inner = self.lock();
            let task = inner.in_state(pid, TaskState::Running, "exit")?;
            if !reap_self {
                task.set_source_frees();
            }
            task.set_exit_status(status);
            task.set_state(TaskState::Exiting);
            task
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.send(&task, EventData::Exit { status })
        }));

        let orphans = {
            let mut inner = self.lock();
            task.set_state(TaskState::Zombie);
            inner.stats.exits += 1;
            inner.hand_over(&task)
        };

        // Finish what a panic interrupted, then let the first panic continue.
        let (mut first, mut panic) = match outcome {
            Ok(result) => (result.err(), None),
            Err(payload) => (None, Some(payload)),
        };
        let (error, later_panic) = self.settle_after_exit(&task, &orphans, reap_self);
        if let Some(error) = error {
            first.get_or_insert(error);
        }
        if let Some(payload) = panic.take().or(later_panic) {
            resume_unwind(payload);
        }
        first.map_or(Ok(()), |error| Err(TaskError::Watcher(error)))
    }

    /// Reaps what init or the thread itself reaps after an exit, every one of them even
    /// if a `free` watcher panics; returns the first `free` watcher error and the first
    /// panic.
    fn settle_after_exit(
        &self,
        task: &Arc<Task>,
        orphans: &[Arc<Task>],
        reap_self: bool,
    ) -> (Option<DispatchError>, Option<Box<dyn Any + Send>>) {
        let mut first = None;
        let mut panic = None;
        // Whoever else may reap the task itself (a `wait` on init) claims it by
        // identity too, so it is freed once, and a task that has its pid now is never
        // touched.
        let reap_task = reap_self && (task.is_thread() || task.parent() == Pid::INIT);
        for zombie in orphans.iter().chain(reap_task.then_some(task)) {
            match catch_unwind(AssertUnwindSafe(|| self.release(zombie))) {
                Ok(Err(TaskError::Watcher(error))) => {
                    first.get_or_insert(error);
                }
                Ok(_) => {}
                Err(payload) => {
                    panic.get_or_insert(payload);
                }
            }
        }
        (first, panic)
    }

    /// Reaps `child`, a zombie child of `parent`: the `free` watchers run, the task's
    /// slots and per-task watchers are dropped, and its pid becomes free. A thread-group
    /// leader whose threads are still in the table is reaped all the same (its status
    /// is returned), but freed only after its last thread.
    ///
    /// # Errors
    /// [`TaskError::NotAChild`], [`TaskError::NoSuchTask`] or [`TaskError::WrongState`]
    /// if it cannot; [`TaskError::Watcher`] if a `free` watcher failed (the task was
    /// freed all the same).
    pub fn reap(&self, parent: Pid, child: Pid) -> Result<ExitStatus, TaskError> {
        // The check and the claim share one lock: between them the child could be
        // reaped by another thread and its pid reused.
        let (task, now) = {
            let inner = self.lock();
            let is_child = inner
                .nodes
                .get(&parent)
                .is_some_and(|node| node.has_child(child));
            if !is_child {
                // A task being forked is no task yet, and no child of anyone.
                return Err(if inner.visible(child).is_some() {
                    TaskError::NotAChild { parent, child }
                } else {
                    TaskError::NoSuchTask(child)
                });
            }
            let task = inner.in_state(child, TaskState::Zombie, "be reaped")?;
            let now = task.claim_free().ok_or(TaskError::WrongState {
                pid: child,
                state: TaskState::Zombie,
                operation: "be reaped: it is being freed",
            })?;
            (task, now)
        };
        let status = task.exit_status();
        if now {
            self.free_claimed(task)?;
        }
        Ok(status.unwrap_or(ExitStatus(0)))
    }

    /// `wait`: reaps one zombie child of `parent` (the one with the lowest pid), if it
    /// has one; a thread-group leader only once the threads of its group are gone.
    ///
    /// # Errors
    /// [`TaskError::NoSuchTask`] if `parent` does not exist; [`TaskError::Watcher`] if
    /// a `free` watcher failed (the child was freed all the same).
    pub fn wait(&self, parent: Pid) -> Result<Option<(Pid, ExitStatus)>, TaskError> {
        let zombie = {
            let inner = self.lock();
            let node = inner
                .nodes
                .get(&parent)
                // A task being forked is no task yet (`get` does not find it either).
                .filter(|node| node.task.state() != TaskState::Embryo)
                .ok_or(TaskError::NoSuchTask(parent))?;
            let zombie = node
                .children()
                .filter_map(|child| inner.nodes.get(child))
                .map(|node| &node.task)
                // A leader whose threads are still in the table is not waitable yet
                // (the kernel's `delay_group_leader`).
                .filter(|task| {
                    task.state() == TaskState::Zombie
                        && !task.free_is_claimed()
                        && !task.has_group_threads()
                })
                .min_by_key(|task| task.pid())
                .cloned();
            zombie.and_then(|task| task.claim_free().map(|now| (task, now)))
        };
        let Some((task, now)) = zombie else {
            return Ok(None);
        };
        let status = task.exit_status().unwrap_or(ExitStatus(0));
        let pid = task.pid();
        if now {
            self.free_claimed(task)?;
        }
        Ok(Some((pid, status)))
    }

    /// Frees this zombie, unless someone else has claimed it first.
    fn release(&self, task: &Arc<Task>) -> Result<(), TaskError> {
        if task.pid() == Pid::INIT {
            return Err(TaskError::Init("be reaped"));
        }
        let now = {
            let inner = self.lock();
            if inner.node_of(task).is_none() {
                return Err(TaskError::NoSuchTask(task.pid()));
            }
            let claim = (task.state() == TaskState::Zombie)
                .then(|| task.claim_free())
                .flatten();
            claim.ok_or(TaskError::WrongState {
                pid: task.pid(),
                state: task.state(),
                operation: "be reaped",
            })?
        };
        if now {
            self.free_claimed(task.clone())?;
        }
        Ok(())
    }

    /// Frees a task whose `free` is claimed and no longer has an event in flight:
    /// sends `free`, then forgets it. Its node keeps the pid taken until then. The last
    /// thread of a group whose leader was reaped frees the leader next (the first
    /// error of the two is returned, the first panic continues).
    fn free_claimed(&self, task: Arc<Task>) -> Result<(), TaskError> {
        task.set_state(TaskState::Dead);
        task.local.settle();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.send(&task, EventData::Free)));
        let leader = {
            let mut inner = self.lock();
            inner.stats.frees += 1;
            match inner.forget(&task) {
                Some(node) => {
                    inner.unlist(&task, &node.parent);
                    inner.leave_groups(&task)
                }
                None => None,
            }
        };
        task.forget_os_id();
        // A slot value's `Drop` that panics must not keep the watchers attached for ever.
        let values = catch_unwind(AssertUnwindSafe(|| task.slots.clear()));
        let watchers = catch_unwind(AssertUnwindSafe(|| task.local.clear()));
        let outcome = match (outcome, values.and(watchers)) {
            (Ok(result), Ok(())) => Ok(result),
            (Err(payload), _) | (Ok(_), Err(payload)) => Err(payload),
        };
        if let Some(leader) = leader {
            return self.free_leader_after(leader, outcome);
        }
        match outcome {
            Ok(result) => result.map_err(TaskError::Watcher),
            Err(payload) => resume_unwind(payload),
        }
    }

    /// Frees the leader whose `free` a thread freed just now held back last, then
    /// returns the thread's `outcome`, else the leader's error; the thread's panic, else
    /// the leader's, continues once both are freed.
    #[cold]
    fn free_leader_after(
        &self,
        leader: Arc<Task>,
        outcome: std::thread::Result<Result<(), DispatchError>>,
    ) -> Result<(), TaskError> {
        let leader_freed = catch_unwind(AssertUnwindSafe(|| self.free_claimed(leader)));
        let freed = match outcome {
            Ok(result) => result.map_err(TaskError::Watcher),
            Err(payload) => resume_unwind(payload),
        };
        match leader_freed {
            Ok(leader_freed) => freed.and(leader_freed),
            Err(payload) => resume_unwind(payload),
        }
    }

    /// Sends a `free` that was handed over (see [`InFlight`]): there is no caller to
    /// report a watcher's error to, and while this thread unwinds, a panicking `free`
    /// watcher must not abort the process.
    fn free_handed_over(&self, task: Arc<Task>) {
        if std::thread::panicking() {
            let _ = catch_unwind(AssertUnwindSafe(|| self.free_claimed(task)));
        } else {
            let _ = self.free_claimed(task);
        }
    }
}

impl Default for TaskTable {
    /// As [`TaskTable::new`].
    #[track_caller]
    fn default() -> Self {
        TaskTable::new()
    }
}

impl std::fmt::Debug for TaskTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskTable")
            .field("tasks", &self.len())
            .field("pid_max", &self.pid_max)
            .finish_non_exhaustive()
    }
}

/// An event of a running task in flight: while it lives, the task's `free` is not
/// sent; if the task was claimed for `free` meanwhile, dropping the last such guard
/// sends it (a hand-off: nobody waits, so a watcher may exit and reap its own task).
struct InFlight<'a> {
    table: &'a TaskTable,
    task: Arc<Task>,
}

impl InFlight<'_> {
    /// Renames the task and sends the `comm` event, then ends it.
    fn rename(self, comm: &str) -> Result<(), TaskError> {
        let old = self.task.replace_comm(comm);
        let new = self.task.comm_inline();
        self.send(EventData::Comm {
            old: old.as_str(),
            new: new.as_str(),
        })
    }

    /// Sends the event, then ends it.
    fn send(self, data: EventData<'_>) -> Result<(), TaskError> {
        self.table
            .send(&self.task, data)
            .map_err(TaskError::Watcher)
    }
}

impl std::ops::Deref for InFlight<'_> {
    type Target = Arc<Task>;

    fn deref(&self) -> &Arc<Task> {
        &self.task
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.task.leave_event() {
            self.table.free_handed_over(self.task.clone());
        }
    }
}

/// Takes an embryo out of the table unless its fork succeeded: on a watcher error and
/// when a watcher panics.
struct Embryo<'a> {
    table: &'a TaskTable,
    task: &'a Arc<Task>,
    born: bool,
}

impl Drop for Embryo<'_> {
    fn drop(&mut self) {
        if self.born {
            return;
        }
        let task = self.task;
        let forgotten = {
            let mut inner = self.table.lock();
            // Counted here, not by `fork` on a watcher's error: a fork watcher that
            // panics unwinds past `fork`, and its `fork` event was dispatched all the
            // same (`forks + failed_forks` is the count of `fork` events).
            inner.stats.failed_forks += 1;
            inner.forget(task).map(|_| inner.leave_groups(task))
        };
        if let Some(owed) = forgotten {
            task.set_state(TaskState::Dead);
            // As in `free_claimed`; this may run while a fork watcher's panic unwinds.
            let values = catch_unwind(AssertUnwindSafe(|| task.slots.clear()));
            // A closure's `Drop` that panics must not cost the leader its `free`.
            let watchers = catch_unwind(AssertUnwindSafe(|| task.local.clear()));
            // A thread whose fork failed may have been the last to hold its reaped
            // leader back.
            if let Some(leader) = owed {
                self.table.free_handed_over(leader);
            }
            if let Err(payload) = values.and(watchers)
                && !std::thread::panicking()
            {
                resume_unwind(payload);
            }
        }
    }
}

impl Inner {
    /// The node of this very task, not of another that has its pid now.
    fn node_of(&self, task: &Arc<Task>) -> Option<&Node> {
        let node = self.nodes.get(&task.pid())?;
        Arc::ptr_eq(&node.task, task).then_some(node)
    }

    /// This very task, held by the table, if it is in it (a caller may hold only a
    /// reference to it).
    fn node_of_task(&self, task: &Task) -> Option<Arc<Task>> {
        let node = self.nodes.get(&task.pid())?;
        std::ptr::eq(Arc::as_ptr(&node.task), task).then(|| node.task.clone())
    }

    /// As [`node_of`](Inner::node_of), to change it.
    fn node_of_mut(&mut self, task: &Arc<Task>) -> Option<&mut Node> {
        let node = self.nodes.get_mut(&task.pid())?;
        Arc::ptr_eq(&node.task, task).then_some(node)
    }

    /// Whether this very task (not another that has its pid now) is running here.
    fn check_running(&self, task: &Arc<Task>, operation: &'static str) -> Result<(), TaskError> {
        if self.node_of(task).is_none() {
            return Err(TaskError::NoSuchTask(task.pid()));
        }
        if task.state() != TaskState::Running {
            return Err(TaskError::WrongState {
                pid: task.pid(),
                state: task.state(),
                operation,
            });
        }
        Ok(())
    }

    /// Hands an exiting task's children and threads to init. Zombie children are
    /// returned, held by identity, for init to reap at once (not those that their
    /// source frees: see [`TaskTable::exit_unreaped`]); all of them, and the threads,
    /// become init's.
    fn hand_over(&mut self, task: &Arc<Task>) -> Vec<Arc<Task>> {
        // Most tasks end with nothing to hand over: then nothing more is looked up.
        let Some(family) = self.node_of_mut(task).and_then(|node| node.family.take()) else {
            return Vec::new();
        };
        let Family { children, threads } = *family;
        let mut orphans = Vec::new();
        let mut adopted = Vec::with_capacity(children.len());
        for &pid in &children {
            if let Some(node) = self.nodes.get_mut(&pid) {
                node.task.set_parent(Pid::INIT);
                node.parent = Weak::new();
                if node.task.state() == TaskState::Zombie && !node.task.source_frees() {
                    orphans.push(node.task.clone());
                }
            }
            // Zombies too: one that leads threads stays until the last of them ends.
            adopted.push(pid);
        }
        for pid in &threads {
            if let Some(node) = self.nodes.get_mut(pid) {
                node.task.set_parent(Pid::INIT);
                node.parent = Weak::new();
            }
        }
        // Init never exits, so it keeps no list of its threads (see `link`).
        if !adopted.is_empty() {
            self.init_family().children.extend(adopted);
        }
        orphans
    }

    /// The next free pid (see [`allocate_pid`]).
    fn allocate_pid(&mut self, pid_max: u32) -> Option<Pid> {
        allocate_pid(
            &self.nodes,
            [&self.groups, &self.sessions],
            &mut self.last_pid,
            pid_max,
        )
    }

    /// Init's family, made if it has none yet.
    fn init_family(&mut self) -> &mut Family {
        let hasher = self.nodes.hasher().clone();
        self.init_node().family(&hasher)
    }

    /// Init's node, which is never removed.
    fn init_node(&mut self) -> &mut Node {
        self.nodes
            .get_mut(&Pid::INIT)
            .unwrap_or_else(|| unreachable!("init is never removed"))
    }

    /// Puts a task's node in the table, as an embryo, counted in its process group, or
    /// as a thread that holds its leader's `free` back.
    #[inline(always)]
    fn insert(&mut self, node: Node) {
        self.stats.embryos += 1;
        let task = &node.task;
        match task.leader() {
            // A thread holds the leader's `free` back as an event in flight does: a
            // reap then leaves the leader a zombie with its pid taken, and the last
            // thread to leave sends its `free`.
            Some(leader) => leader.join_group(),
            None => self.join_session_record(task.own_session()),
        }
        self.nodes.insert(task.pid(), node);
    }

    /// Removes this very task's node, if it was there. The caller then takes it out of
    /// its groups ([`leave_groups`](Inner::leave_groups)).
    #[inline(always)]
    fn forget(&mut self, task: &Arc<Task>) -> Option<Node> {
        // One lookup, not two: the pid is almost always still this task's.
        let node = self.nodes.remove(&task.pid())?;
        if Arc::ptr_eq(&node.task, task) {
            return Some(node);
        }
        self.nodes.insert(task.pid(), node);
        None
    }

    /// Takes a task that [`forget`](Inner::forget) removed out of its process group, or
    /// its thread group: returns the leader whose `free` it was the last to hold back,
    /// which the caller must send.
    #[inline(always)]
    fn leave_groups(&mut self, task: &Task) -> Option<Arc<Task>> {
        match task.leader() {
            Some(leader) => leader.leave_group().then(|| leader.clone()),
            None => {
                self.leave_session_record(task.own_session());
                None
            }
        }
    }

    /// Whether a process group with this id exists.
    fn group_exists(&self, pgid: Pid) -> bool {
        pgid == Pid::INIT || self.groups.contains_key(&pgid)
    }

    /// Counts one more session record in process group `pgid` and, if it is not the
    /// group's, in session `sid`.
    #[inline(always)]
    fn join_session_record(&mut self, (sid, pgid): (Pid, Pid)) {
        // Init's session and group, where forks start, are in neither index: a fork
        // and free there (the benchmarks', most tests') make no call.
        if (sid, pgid) == (Pid::INIT, Pid::INIT) {
            return;
        }
        count_in(&mut self.groups, pgid);
        if sid != pgid {
            count_in(&mut self.sessions, sid);
        }
    }

    /// Counts one session record less in process group `pgid` (and session `sid`); a
    /// group or session is gone with its last.
    #[inline(always)]
    fn leave_session_record(&mut self, (sid, pgid): (Pid, Pid)) {
        if (sid, pgid) == (Pid::INIT, Pid::INIT) {
            return;
        }
        uncount_in(&mut self.groups, pgid);
        if sid != pgid {
            uncount_in(&mut self.sessions, sid);
        }
    }

    /// Moves a task's thread group (its session record) to session and process group
    /// `sid`, keeping the indexes of process groups and sessions in step.
    fn set_session(&mut self, task: &Task, sid: Pid) {
        let record = task.session_record();
        self.leave_session_record(record.session());
        self.join_session_record((sid, sid));
        record.set_session(sid, sid);
    }

    /// The leader whose session record an adopted task shares: for a thread, its
    /// group's leader if that is in the table (as its creator, the creator's own
    /// leader, or, if `by_id`, found by the group's id) and may still take threads,
    /// its `free` not yet sent.
    fn adopted_leader(
        &self,
        init: &TaskInit,
        creator: &Arc<Task>,
        by_id: bool,
    ) -> Option<Arc<Task>> {
        let tgid = init.tgid;
        if init.pid == tgid || tgid == Pid::INIT {
            return None;
        }
        let leader = if creator.pid() == tgid {
            Some(creator.clone())
        } else if creator.tgid() == tgid && creator.is_thread() {
            creator.leader().cloned()
        } else if by_id {
            self.nodes.get(&tgid).map(|node| node.task.clone())
        } else {
            None
        }?;
        let open = !leader.is_thread()
            && leader.state() != TaskState::Embryo
            && (leader.has_group_threads() || !leader.free_is_claimed());
        open.then_some(leader)
    }

    /// Makes `task` (a thread, or a process) the child of `named`, the parent its node
    /// names already (see [`parent_link`]), if that one is still in the table in a
    /// state that `adopts` accepts; else of init.
    ///
    /// Init keeps no set of its threads: it never exits, so it never hands them over.
    /// A thread whose parent is init (as every thread of a process that init adopted
    /// is, the threads source's among them) is linked without a lookup.
    fn link(
        &mut self,
        task: &Arc<Task>,
        named: Option<&Arc<Task>>,
        adopts: fn(TaskState) -> bool,
        init: &Arc<Task>,
    ) {
        let pid = task.pid();
        let thread = task.is_thread();
        if let Some(parent) = named {
            if thread && Arc::ptr_eq(parent, init) {
                task.set_parent(Pid::INIT);
                return;
            }
            let hasher = self.nodes.hasher().clone();
            if adopts(parent.state())
                && let Some(node) = self.node_of_mut(parent)
            {
                let family = node.family(&hasher);
                if thread {
                    family.threads.insert(pid);
                } else {
                    family.children.insert(pid);
                }
                task.set_parent(parent.pid());
                return;
            }
            // That parent has gone: so does the node's link to it.
            if let Some(node) = self.node_of_mut(task) {
                node.parent = Weak::new();
            }
        }
        if !thread {
            self.init_family().children.insert(pid);
        }
        task.set_parent(Pid::INIT);
    }

    /// Takes a task that is being forgotten off its parent's list (`parent`: its
    /// node's link).
    fn unlist(&mut self, task: &Task, parent: &Weak<Task>) {
        let (pid, thread) = (task.pid(), task.is_thread());
        match parent.upgrade() {
            Some(parent) => {
                let node = self.node_of_mut(&parent);
                // A parent hands its children and threads over (clearing their links)
                // under the lock that makes it a zombie, before it can be freed: so a
                // link names a task whose node holds a reference, and this temporary is
                // never the last one (whose `Drop` would run slot values' and watchers'
                // `Drop`s, which may re-enter the table, with its lock held).
                debug_assert!(node.is_some(), "{task:?} is linked to a freed {parent:?}");
                if let Some(node) = node {
                    node.disown(pid, thread);
                }
            }
            // Init's; it lists no threads.
            None if !thread => self.init_node().disown(pid, false),
            None => {}
        }
    }

    /// The task with this pid, unless it is still being forked.
    fn visible(&self, pid: Pid) -> Option<&Arc<Task>> {
        let task = &self.nodes.get(&pid)?.task;
        (task.state() != TaskState::Embryo).then_some(task)
    }

    /// The task with this pid, if it is in `state`: checked under the table's lock, so
    /// that the caller can move it on before anyone else sees it.
    fn in_state(
        &self,
        pid: Pid,
        state: TaskState,
        operation: &'static str,
    ) -> Result<Arc<Task>, TaskError> {
        let task = self.visible(pid).ok_or(TaskError::NoSuchTask(pid))?;
        if task.state() != state {
            return Err(TaskError::WrongState {
                pid,
                state: task.state(),
                operation,
            });
        }
        Ok(task.clone())
    }
}

/// A node's link to its parent: empty for init (or none), which is never freed and so
/// needs no counted reference. A counted one would make every fork and free of a thread
/// whose parent is init write init's reference counts, a cache line that the spawning
/// thread and the ending one then passed back and forth.
fn parent_link(parent: Option<&Arc<Task>>) -> Weak<Task> {
    match parent {
        Some(parent) if parent.pid() != Pid::INIT => Arc::downgrade(parent),
        _ => Weak::new(),
    }
}

/// Counts one more session record under `id` (init's, 1, is never counted: see
/// [`Inner::groups`]).
fn count_in(ids: &mut HashMap<Pid, u32, SeedableRandomState>, id: Pid) {
    if id != Pid::INIT {
        *ids.entry(id).or_insert(0) += 1;
    }
}

/// Counts one session record less under `id`; the id leaves `ids` with its last.
fn uncount_in(ids: &mut HashMap<Pid, u32, SeedableRandomState>, id: Pid) {
    if id == Pid::INIT {
        return;
    }
    if let Entry::Occupied(mut members) = ids.entry(id) {
        if *members.get() <= 1 {
            members.remove();
        } else {
            *members.get_mut() -= 1;
        }
    }
}

/// The next pid after `last_pid` that neither `nodes` holds nor `named` (the process
/// groups, the sessions) holds as an id, wrapping from `pid_max` to 2; it becomes
/// `last_pid`. The kernel keeps a pid from reuse while a process group or a session is
/// named by it, as the processes left in the group or session of an exited leader are.
/// A function of the fields, not of `Inner`, so that a fork can hold the parent's node
/// meanwhile.
fn allocate_pid(
    nodes: &HashMap<Pid, Node, SeedableRandomState>,
    named: [&HashMap<Pid, u32, SeedableRandomState>; 2],
    last_pid: &mut u32,
    pid_max: u32,
) -> Option<Pid> {
    // Stepped with a compare, not `last_pid + step` modulo the span: that sum overflows
    // once `pid_max` passes half the range of a u32.
    let mut pid = *last_pid;
    for _ in 1..pid_max {
        pid = if pid >= pid_max { 2 } else { pid + 1 };
        // Both maps are empty while every task is in init's group: no hashing then.
        if !nodes.contains_key(&Pid(pid)) && !named.iter().any(|ids| ids.contains_key(&Pid(pid))) {
            *last_pid = pid;
            return Some(Pid(pid));
        }
    }
    None
}

/// Which ids a `set*id` call changes.
#[derive(Clone, Copy)]
enum IdKind {
    User,
    Group,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_kind::EventSet;
    use crate::routing;

    fn node(pid: u32) -> Node {
        Node::new(Arc::new(Task::new(TaskInit {
            pid: Pid(pid),
            tgid: Pid(pid),
            parent: Pid::INIT,
            sid: Pid::INIT,
            pgid: Pid::INIT,
            uids: Ids::all(0),
            gids: Ids::all(0),
            comm: String::new(),
        })))
    }

    /// The largest `pid_max` wraps from its top pid past taken low ones without an
    /// arithmetic overflow (a panic in debug builds, a wrong pid in release ones).
    #[test]
    fn allocation_wraps_past_taken_pids_at_the_largest_pid_max() {
        let mut nodes = HashMap::with_hasher(SeedableRandomState::random());
        for pid in [2, 3, 4] {
            nodes.insert(Pid(pid), node(pid));
        }
        let groups = HashMap::with_hasher(SeedableRandomState::random());
        let mut last_pid = u32::MAX;
        assert_eq!(
            allocate_pid(&nodes, [&groups, &groups], &mut last_pid, u32::MAX),
            Some(Pid(5))
        );
        assert_eq!(last_pid, 5);
        let mut last_pid = u32::MAX - 1;
        assert_eq!(
            allocate_pid(&nodes, [&groups, &groups], &mut last_pid, u32::MAX),
            Some(Pid(u32::MAX))
        );
    }

    /// A child whose `fork` a parent's `fork | free` watcher saw counts as reachable
    /// (its `free` goes to that watcher) until it is freed; then the count must return,
    /// or every table stays off its fast path for good.
    ///
    /// No other unit test of this crate attaches a per-task watcher, so the process-wide
    /// count moves only here.
    #[test]
    fn a_freed_child_of_a_fork_free_watcher_is_no_longer_counted_as_reachable() {
        let before = routing::reachable();
        let tasks = TaskTable::with_table(WatcherTable::from_watchers([]).unwrap());
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let nothing = parent.watch(EventSet::EMPTY, |_| Ok::<(), String>(()));
        assert!(!nothing.is_attached(), "no event could reach it");
        assert_eq!(routing::reachable(), before, "a watcher of no event");
        parent
            .watch(EventSet::FORK | EventSet::FREE, |_| Ok::<(), String>(()))
            .keep();
        assert_eq!(routing::reachable(), before + 1, "the parent, attached");
        let child = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        assert_eq!(
            routing::reachable(),
            before + 2,
            "and the child, forked by it"
        );
        tasks.exit(child.pid(), 0).unwrap();
        tasks.wait(parent.pid()).unwrap();
        assert_eq!(routing::reachable(), before + 1, "the child is freed");
        tasks.exit(parent.pid(), 0).unwrap();
        assert_eq!(routing::reachable(), before, "both are freed");
    }
}
