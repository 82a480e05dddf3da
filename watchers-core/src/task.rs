//! The task a watcher sees: identity, credentials, name and per-task state.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::local::LocalWatchers;
use crate::task_values::{Comm, ExitStatus, Ids, Pid, TaskState};

/// The OS id of a freed task: no thread or process has it (Linux ids stay below 2^22),
/// and a freed task can record no other.
const OS_ID_FORGOTTEN: u32 = u32::MAX;

/// A task (a process or a thread) as watchers see it.
///
/// Tasks are created by a [`TaskTable`](crate::TaskTable) (or by an event source that
/// mirrors a real process table); [`Task::detached`] makes one that belongs to no table,
/// for examples and unit tests. Per-task state lives in [`TaskSlot`](crate::TaskSlot)s.
pub struct Task {
    serial: u64,
    pid: Pid,
    tgid: Pid,
    parent: AtomicU32,
    /// A thread's group leader, whose session and process group are the whole thread
    /// group's: one record per group, so that `setsid` changes every thread with one
    /// store instead of a search for them. `None` for a process, for a thread of init
    /// (whose group never changes session) and for a thread adopted while its leader
    /// was not in its table; those keep their own `sid` and `pgid`.
    leader: Option<Arc<Task>>,
    /// The record's values, read only when `leader` is `None`.
    sid: AtomicU32,
    pgid: AtomicU32,
    state: AtomicU8,
    /// Set when it exits through `exit_unreaped`: its event source frees it, so init
    /// does not reap it when it is handed over as an orphan.
    source_frees: AtomicBool,
    exit_status: AtomicI32,
    tracer: AtomicU32,
    creds: Mutex<Credentials>,
    comm: Mutex<Comm>,
    /// The OS's id for what this task mirrors: 0 until a source records one,
    /// [`OS_ID_FORGOTTEN`] from its `free` on.
    os_id: AtomicU32,
    started: Instant,
    /// Events of this task in flight through its table (the low 32 bits), for a leader
    /// the threads that name it as `leader` and are in its table (counted in
    /// [`GROUP_THREAD`]s), and whether its `free` has been claimed ([`FREE_CLAIMED`]):
    /// whoever brings both counts to zero with the claim set sends `free`. So a thread
    /// holds its leader's `free` back as an event in flight does (the kernel's
    /// `delay_group_leader`), at one atomic add when it joins and one when it leaves.
    inflight: AtomicU64,
    pub(crate) slots: SlotStorage,
    pub(crate) local: LocalWatchers,
}

#[derive(Clone, Copy, Debug, Default)]
struct Credentials {
    uids: Ids,
    gids: Ids,
}

/// What a new task is made of; the task model and event sources fill it in.
#[derive(Clone, Debug)]
pub struct TaskInit {
    /// The task's id.
    pub pid: Pid,
    /// Its thread group (its own pid unless it is a thread).
    pub tgid: Pid,
    /// Its parent's pid.
    pub parent: Pid,
    /// Its session id.
    pub sid: Pid,
    /// Its process group id.
    pub pgid: Pid,
    /// Its user ids.
    pub uids: Ids,
    /// Its group ids.
    pub gids: Ids,
    /// Its name (cut to [`COMM_MAX`](crate::COMM_MAX) bytes).
    pub comm: String,
}

/// The bit of [`Task::inflight`] that says the task's `free` is claimed.
const FREE_CLAIMED: u64 = 1 << 63;

/// One thread of a leader's group in [`Task::inflight`].
const GROUP_THREAD: u64 = 1 << 32;

/// The bits of [`Task::inflight`] that count a leader's threads.
const GROUP_THREADS: u64 = (FREE_CLAIMED - 1) & !(GROUP_THREAD - 1);

/// The next task's serial; see [`Task::serial`].
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

impl Task {
    /// A task with the given state, in the [`TaskState::Embryo`] state, with a new
    /// [`serial`](Task::serial).
    pub fn new(init: TaskInit) -> Task {
        let comm = Comm::new(&init.comm);
        Task::with_comm(init, comm, None)
    }

    /// A task made of `init`, named `comm` (`init.comm` is not read): a fork copies its
    /// parent's name this way, without a `String` in between. A thread with a `leader`
    /// shares the leader's session and process group (`init.sid` and `init.pgid` are
    /// not read then).
    #[inline]
    pub(crate) fn with_comm(init: TaskInit, comm: Comm, leader: Option<Arc<Task>>) -> Task {
        Task {
            // Only uniqueness matters: no other memory is published through it.
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            pid: init.pid,
            tgid: init.tgid,
            parent: AtomicU32::new(init.parent.0),
            leader,
            sid: AtomicU32::new(init.sid.0),
            pgid: AtomicU32::new(init.pgid.0),
            state: AtomicU8::new(TaskState::Embryo as u8),
            source_frees: AtomicBool::new(false),
            exit_status: AtomicI32::new(0),
            tracer: AtomicU32::new(0),
            creds: Mutex::new(Credentials {
                uids: init.uids,
                gids: init.gids,
            }),
            comm: Mutex::new(comm),
            os_id: AtomicU32::new(0),
            started: Instant::now(),
            inflight: AtomicU64::new(0),
            slots: SlotStorage::default(),
            local: LocalWatchers::default(),
        }
    }

    /// A running task that belongs to no table: root, its own session, parent 0, named
    /// `task`. For examples and unit tests of watchers.
    pub fn detached(pid: u32) -> Task {
        let task = Task::new(TaskInit {
            pid: Pid(pid),
            tgid: Pid(pid),
            parent: Pid(0),
            sid: Pid(pid),
            pgid: Pid(pid),
            uids: Ids::default(),
            gids: Ids::default(),
            comm: "task".to_owned(),
        });
        task.set_state(TaskState::Running);
        task
    }

    /// The task's identity: a number given to no other task created in this process,
    /// whatever its table, so it still tells tasks apart once a pid has been reused
    /// (the task model's answer to the kernel's start time and pidfds). Serials grow
    /// in creation order, starting at 1.
    ///
    /// ```
    /// use watchers_core::Task;
    ///
    /// let (first, second) = (Task::detached(7), Task::detached(7));
    /// assert_eq!(first.pid(), second.pid());
    /// assert!(first.serial() < second.serial());
    /// ```
    #[inline]
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// The task's id. Reused once the task is freed: use [`serial`](Task::serial) to
    /// tell tasks apart over time.
    #[inline]
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Its thread-group id (the process id); equal to [`pid`](Task::pid) for a process.
    #[inline]
    pub fn tgid(&self) -> Pid {
        self.tgid
    }

    /// Whether this task is a thread other than its group's leader.
    pub fn is_thread(&self) -> bool {
        self.pid != self.tgid
    }

    /// Its parent's pid (init, once orphaned).
    pub fn parent(&self) -> Pid {
        Pid(self.parent.load(Ordering::Acquire))
    }

    /// Its session id.
    pub fn sid(&self) -> Pid {
        let record = self.session_record();
        Pid(record.sid.load(Ordering::Acquire))
    }

    /// Its process group id.
    pub fn pgid(&self) -> Pid {
        let record = self.session_record();
        Pid(record.pgid.load(Ordering::Acquire))
    }

    /// Its session and process group, read through one look at its session record.
    #[inline]
    pub(crate) fn session(&self) -> (Pid, Pid) {
        let record = self.session_record();
        (
            Pid(record.sid.load(Ordering::Acquire)),
            Pid(record.pgid.load(Ordering::Acquire)),
        )
    }

    /// Its session and process group as its own session record holds them: the
    /// group's for a task with no [`leader`](Task::leader) (the table's indexes of
    /// process groups and sessions count only those), never read through a leader.
    #[inline]
    pub(crate) fn own_session(&self) -> (Pid, Pid) {
        (
            Pid(self.sid.load(Ordering::Acquire)),
            Pid(self.pgid.load(Ordering::Acquire)),
        )
    }

    /// The task whose `sid` and `pgid` fields are this one's: its group leader, or
    /// itself.
    #[inline]
    pub(crate) fn session_record(&self) -> &Task {
        self.leader.as_deref().unwrap_or(self)
    }

    /// Its group leader, if it shares the leader's session record (see
    /// [`session_record`](Task::session_record)).
    #[inline]
    pub(crate) fn leader(&self) -> Option<&Arc<Task>> {
        self.leader.as_ref()
    }

    /// Where it is in its life.
    pub fn state(&self) -> TaskState {
        TaskState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// How it exited, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        matches!(self.state(), TaskState::Zombie | TaskState::Dead)
            .then(|| ExitStatus(self.exit_status.load(Ordering::Acquire)))
    }

    /// The pid of the tracer attached to it, if any.
    pub fn tracer(&self) -> Option<Pid> {
        match self.tracer.load(Ordering::Acquire) {
            0 => None,
            pid => Some(Pid(pid)),
        }
    }

    /// Its user ids.
    pub fn uids(&self) -> Ids {
        self.lock_creds().uids
    }

    /// Its group ids.
    pub fn gids(&self) -> Ids {
        self.lock_creds().gids
    }

    /// Its user and group ids, read together (one lock, one consistent pair).
    pub(crate) fn ids(&self) -> (Ids, Ids) {
        let creds = self.lock_creds();
        (creds.uids, creds.gids)
    }

    /// Its name.
    pub fn comm(&self) -> String {
        self.comm_inline().as_str().to_owned()
    }

    /// Its name, copied out without an allocation.
    pub(crate) fn comm_inline(&self) -> Comm {
        *self.comm.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id that the operating system gives the thread or process this task mirrors,
    /// from when its event source records it (see
    /// [`TaskTable::set_os_id`](crate::TaskTable::set_os_id)) until its `free` (whose
    /// watchers still see it): after that the OS may give the id to another thread or
    /// process. A table's pids are its own: a mirror of this program's threads numbers
    /// them from 2, whatever their OS thread ids, and its sources for threads and child
    /// processes record the OS ids here. A mirror whose pids are the kernel's own (the
    /// process-events connector's) records none: there the pid is the OS id.
    pub fn os_id(&self) -> Option<u32> {
        match self.os_id.load(Ordering::Acquire) {
            0 | OS_ID_FORGOTTEN => None,
            id => Some(id),
        }
    }

    /// Records the OS's id unless one is recorded already or the task is freed; see
    /// [`TaskTable::set_os_id`](crate::TaskTable::set_os_id).
    pub(crate) fn set_os_id(&self, id: u32) -> bool {
        id != 0
            && id != OS_ID_FORGOTTEN
            && self
                .os_id
                .compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Forgets the OS's id, at `free`, for good: the task cannot get one again.
    pub(crate) fn forget_os_id(&self) {
        self.os_id.store(OS_ID_FORGOTTEN, Ordering::Release);
    }

    /// When it was created (for durations; not a wall-clock time).
    pub fn started(&self) -> Instant {
        self.started
    }

    fn lock_creds(&self) -> std::sync::MutexGuard<'_, Credentials> {
        // Credentials are plain data: a panic elsewhere cannot leave them half-written.
        self.creds.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_state(&self, state: TaskState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Records a new parent. Dispatches nothing: the table's children lists must agree,
    /// so only the table calls it (event sources use
    /// [`TaskTable::record`](crate::TaskTable::record)).
    pub(crate) fn set_parent(&self, parent: Pid) {
        self.parent.store(parent.0, Ordering::Release);
    }

    /// Records a new session and process group, for its whole thread group when it
    /// shares its leader's record. Dispatches nothing (see
    /// [`set_parent`](Self::set_parent)).
    pub(crate) fn set_session(&self, sid: Pid, pgid: Pid) {
        let record = self.session_record();
        record.sid.store(sid.0, Ordering::Release);
        record.pgid.store(pgid.0, Ordering::Release);
    }

    /// Counts one more thread of its group in its table (under the table's lock, while
    /// the leader's `free` is not claimed or other threads still hold it back).
    #[inline]
    pub(crate) fn join_group(&self) {
        self.inflight.fetch_add(GROUP_THREAD, Ordering::AcqRel);
    }

    /// Counts one thread of its group less (under the table's lock); true if it was the
    /// last thing holding back a claimed `free`, which the caller must then send.
    #[inline]
    pub(crate) fn leave_group(&self) -> bool {
        self.inflight.fetch_sub(GROUP_THREAD, Ordering::AcqRel) == FREE_CLAIMED | GROUP_THREAD
    }

    /// Whether threads of its group are in its table.
    pub(crate) fn has_group_threads(&self) -> bool {
        self.inflight.load(Ordering::Acquire) & GROUP_THREADS != 0
    }

    /// Counts an event of this task as in flight. Called under the table's lock while
    /// the task is running, so never after its `free` was claimed.
    pub(crate) fn enter_event(&self) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
    }

    /// Ends an event in flight; true if it was the last one and `free` is owed, which
    /// the caller must then send.
    pub(crate) fn leave_event(&self) -> bool {
        self.inflight.fetch_sub(1, Ordering::AcqRel) == FREE_CLAIMED | 1
    }

    /// Claims the task's `free` (under the table's lock, once it is a zombie): `None`
    /// if someone has already claimed it, `Some(true)` if the caller sends it now,
    /// `Some(false)` if events are still in flight and the last of them sends it.
    pub(crate) fn claim_free(&self) -> Option<bool> {
        let prev = self.inflight.fetch_or(FREE_CLAIMED, Ordering::AcqRel);
        (prev & FREE_CLAIMED == 0).then_some(prev == 0)
    }

    /// Whether the task's `free` has been claimed (sent, or owed by an event in flight).
    pub(crate) fn free_is_claimed(&self) -> bool {
        self.inflight.load(Ordering::Acquire) & FREE_CLAIMED != 0
    }

    /// Marks it as freed by its event source, not by init (see
    /// [`TaskTable::exit_unreaped`](crate::TaskTable::exit_unreaped)); before it becomes
    /// a zombie.
    pub(crate) fn set_source_frees(&self) {
        self.source_frees.store(true, Ordering::Release);
    }

    /// Whether its event source, not init, frees it.
    pub(crate) fn source_frees(&self) -> bool {
        self.source_frees.load(Ordering::Acquire)
    }

    pub(crate) fn set_exit_status(&self, status: ExitStatus) {
        self.exit_status.store(status.0, Ordering::Release);
    }

    /// Records the tracer (`None`: detached). Dispatches nothing (see
    /// [`set_parent`](Self::set_parent)).
    pub(crate) fn set_tracer(&self, tracer: Option<Pid>) {
        self.tracer
            .store(tracer.map_or(0, |pid| pid.0), Ordering::Release);
    }

    /// Replaces the user ids, returning the old ones. Dispatches nothing (see
    /// [`set_parent`](Self::set_parent)).
    pub(crate) fn replace_uids(&self, uids: Ids) -> Ids {
        std::mem::replace(&mut self.lock_creds().uids, uids)
    }

    /// Replaces the group ids, returning the old ones. Dispatches nothing (see
    /// [`set_parent`](Self::set_parent)).
    pub(crate) fn replace_gids(&self, gids: Ids) -> Ids {
        std::mem::replace(&mut self.lock_creds().gids, gids)
    }

    /// Replaces the name (cut to [`COMM_MAX`](crate::COMM_MAX) bytes), returning the old one.
    /// Dispatches nothing (see [`set_parent`](Self::set_parent)).
    pub(crate) fn replace_comm(&self, comm: &str) -> Comm {
        let comm = Comm::new(comm);
        std::mem::replace(
            &mut *self.comm.lock().unwrap_or_else(|e| e.into_inner()),
            comm,
        )
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.local.forget_forks_elsewhere(self.serial);
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("serial", &self.serial)
            .field("pid", &self.pid)
            .field("tgid", &self.tgid)
            .field("parent", &self.parent())
            .field("state", &self.state())
            .field("comm", &self.comm_inline())
            .finish_non_exhaustive()
    }
}

/// One value a [`TaskSlot`](crate::TaskSlot) stores for a task.
pub(crate) type SlotValue = Arc<dyn Any + Send + Sync>;

/// Every slot value of one task.
#[derive(Default)]
pub(crate) struct SlotStorage {
    values: Mutex<Vec<Option<SlotValue>>>,
}

impl SlotStorage {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<Option<SlotValue>>> {
        // The vector is consistent after every statement; a panic cannot tear it.
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops every value (outside the lock, so a value's `Drop` may touch the task).
    pub(crate) fn clear(&self) {
        let values = std::mem::take(&mut *self.lock());
        drop(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_task_is_running_with_no_exit_status() {
        let task = Task::detached(7);
        assert_eq!(task.state(), TaskState::Running);
        assert_eq!(task.exit_status(), None);
        assert!(!task.is_thread());
    }
}
