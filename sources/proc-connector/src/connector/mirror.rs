//! The mirror: a [`TaskTable`] kept in step with the kernel's tasks, through which every
//! real event is dispatched.

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::procfs::{self, ProcTask};
use super::sys::{clock_ticks_per_second, monotonic_ns, suspended_ns};
use super::{Applied, AtomicCounters, Change, Disposition, Report, Resync, WatcherFailure};
use crate::cn_proc::{ProcEvent, ProcMessage, comm_str};
use watchers_core::{CloneFlags, Ids, Pid, Task, TaskState};
use watchers_core::{DispatchError, TaskError};
use watchers_core::{EventKind, ExitStatus};
use watchers_core::{Recorded, TaskTable};

/// The clone flags `pthread_create` uses: what a thread shares with its group.
const THREAD_FLAGS: CloneFlags = CloneFlags::VM
    .union(CloneFlags::FS)
    .union(CloneFlags::FILES)
    .union(CloneFlags::SIGHAND)
    .union(CloneFlags::THREAD)
    .union(CloneFlags::SYSVSEM);

/// How long an exit is remembered against `/proc` reads (60 s of event time).
const TOMBSTONE_NS: u64 = 60_000_000_000;

/// The most exits remembered.
const MAX_TOMBSTONES: usize = 1 << 18;

/// The status reported for a task found gone without its exit event (lost, or removed
/// by a resync): nothing is known, so neither a code nor a signal.
const UNKNOWN_STATUS: ExitStatus = ExitStatus::UNKNOWN;

/// How far a fork event's time may lie from the start time `/proc` reports for the
/// same task, beyond one clock tick (the kernel stamps the two a few microseconds apart).
const START_SLACK_NS: u64 = 2_000_000;

/// A resync between its scan and its end ([`Mirror::resync_scan`]).
pub(crate) struct ResyncPlan {
    started: Instant,
    /// The events' clock when the `/proc` read began: a task forked before it and not
    /// found live had ended by the read's end.
    scan_started_ns: u64,
    /// The tasks the read found live.
    live: HashSet<u32>,
    added: usize,
    removed: usize,
}

pub(crate) struct Mirror {
    pub(crate) tasks: Arc<TaskTable>,
    /// When each mirrored task was created, on the events' clock (`CLOCK_MONOTONIC`):
    /// its fork event's timestamp, or the end of the `/proc` read that found it. A fork
    /// event older than that is about the same task (a duplicate); a newer one means the
    /// pid was reused and the mirror missed the exit.
    origin: HashMap<u32, u64>,
    /// When each mirrored task started, on the events' clock: its fork event's time, or
    /// its start time in `/proc` (the kernel keeps a process's start time across an
    /// exec from a non-leader thread, so that process keeps it too).
    started: HashMap<u32, u64>,
    /// The command line of each mirrored process (by thread-group id), as
    /// `/proc/<pid>/cmdline` held it: read when found in `/proc`, copied at fork,
    /// re-read at exec. Kept only when `read_cmdline` is on.
    cmdlines: HashMap<u32, Arc<[u8]>>,
    /// The non-leader threads of each thread group.
    threads: HashMap<u32, HashSet<u32>>,
    /// Exits seen lately (pid → event time), oldest first in `tombstone_order`. A task
    /// is still visible in `/proc` for a moment after its exit event (until it is
    /// released): a `/proc` read must not bring it back.
    tombstones: HashMap<u32, u64>,
    tombstone_order: VecDeque<(u32, u64)>,
    /// Nanoseconds per clock tick of `/proc` start times.
    tick_ns: u64,
    /// Whether exec events read the command line from `/proc`.
    pub(crate) read_cmdline: bool,
    counters: Arc<AtomicCounters>,
}

fn pid_of(raw: i32) -> Option<u32> {
    u32::try_from(raw).ok().filter(|&pid| pid != 0)
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

impl Mirror {
    pub(crate) fn new(
        tasks: Arc<TaskTable>,
        read_cmdline: bool,
        counters: Arc<AtomicCounters>,
    ) -> Mirror {
        Mirror {
            tasks,
            origin: HashMap::new(),
            started: HashMap::new(),
            cmdlines: HashMap::new(),
            threads: HashMap::new(),
            tombstones: HashMap::new(),
            tombstone_order: VecDeque::new(),
            tick_ns: 1_000_000_000 / clock_ticks_per_second().max(1),
            read_cmdline,
            counters,
        }
    }

    /// Runs `f` (a mirror change and its dispatch), catching a panicking watcher and
    /// turning watcher errors into reports. Returns the other task-model errors (which
    /// mean the mirror and the event disagree).
    fn guarded(
        &self,
        kind: EventKind,
        pid: u32,
        sink: &mut dyn FnMut(Report),
        f: impl FnOnce() -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(TaskError::Watcher(error))) => {
                self.watcher_failed(kind, pid, &error, sink);
                Ok(())
            }
            Ok(Err(other)) => Err(other),
            Err(payload) => {
                self.counters.watcher_panics.fetch_add(1, Ordering::Relaxed);
                sink(Report::WatcherPanicked(WatcherFailure {
                    event: kind,
                    pid,
                    watcher: None,
                    message: panic_message(payload.as_ref()),
                }));
                Ok(())
            }
        }
    }

    fn watcher_failed(
        &self,
        kind: EventKind,
        pid: u32,
        error: &DispatchError,
        sink: &mut dyn FnMut(Report),
    ) {
        let failures = u64::try_from(error.failures.max(1)).unwrap_or(1);
        self.counters
            .watcher_errors
            .fetch_add(failures, Ordering::Relaxed);
        sink(Report::WatcherFailed(WatcherFailure {
            event: kind,
            pid,
            watcher: Some(error.watcher.to_string()),
            message: error.to_string(),
        }));
    }

    /// Remembers that `pid` exited at `ts` (for [`died_already`](Self::died_already)).
    fn bury(&mut self, pid: u32, ts: u64) {
        self.tombstones.insert(pid, ts);
        self.tombstone_order.push_back((pid, ts));
        while let Some(&(old_pid, old_ts)) = self.tombstone_order.front() {
            let expired = old_ts.saturating_add(TOMBSTONE_NS) < ts
                || self.tombstone_order.len() > MAX_TOMBSTONES;
            if !expired {
                break;
            }
            self.tombstone_order.pop_front();
            if self.tombstones.get(&old_pid) == Some(&old_ts) {
                self.tombstones.remove(&old_pid);
            }
        }
    }

    /// Whether the task `/proc` shows as `pid` is one whose exit was already seen: it
    /// started no later than that exit (a reused pid starts after it).
    fn died_already(&self, pid: u32) -> bool {
        let Some(&exit_ns) = self.tombstones.get(&pid) else {
            return false;
        };
        match procfs::start_ticks(pid) {
            Some(ticks) => {
                let boot_ns = ticks.saturating_mul(self.tick_ns);
                let start_ns = boot_ns.saturating_sub(suspended_ns());
                start_ns <= exit_ns
            }
            None => true,
        }
    }

    /// Puts a task read from `/proc` (or described by a fork event) into the mirror and
    /// announces it to the `fork` watchers (who cannot refuse it). For a thread, the
    /// fork event names its group leader as the parent (the task that created it, as
    /// in [`TaskTable::fork`]); the table makes its parent the leader's, like any
    /// thread's.
    fn adopt(
        &mut self,
        info: &ProcTask,
        origin_ns: u64,
        sink: &mut dyn FnMut(Report),
    ) -> Option<Arc<Task>> {
        if info.pid <= 1 {
            return self.tasks.get(Pid(info.pid));
        }
        let thread = info.pid != info.tgid;
        let (init, flags) = if thread {
            let leader = self.tasks.get(Pid(info.tgid));
            let parent = leader.as_ref().map_or(Pid::INIT, |l| l.pid());
            (info.init(parent), THREAD_FLAGS)
        } else {
            let parent = Pid(info.ppid);
            let parent = if self.tasks.get(parent).is_some() {
                parent
            } else {
                Pid::INIT
            };
            (info.init(parent), CloneFlags::empty())
        };
        let tasks = Arc::clone(&self.tasks);
        let result = self.guarded(EventKind::Fork, info.pid, sink, || {
            tasks.adopt(init, flags).map(drop)
        });
        if result.is_err() {
            // The pid is taken: the caller checked, so another path raced; keep what is there.
            return self.tasks.get(Pid(info.pid));
        }
        let task = self.tasks.get(Pid(info.pid))?;
        if thread {
            self.threads.entry(info.tgid).or_default().insert(info.pid);
        }
        self.origin.insert(info.pid, origin_ns);
        let started = info
            .start_ticks
            .map_or(origin_ns, |ticks| self.ticks_to_ns(ticks));
        self.started.insert(info.pid, started);
        if self.read_cmdline
            && !thread
            && info.start_ticks.is_some()
            && let Some(line) = procfs::cmdline(info.pid)
        {
            self.cmdlines.insert(info.pid, line.into());
        }
        Some(task)
    }

    /// `/proc` clock ticks since boot as a time on the events' clock.
    fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ticks
            .saturating_mul(self.tick_ns)
            .saturating_sub(suspended_ns())
    }

    /// Whether the mirrored task `task` is the one `/proc` shows as `info`: the same
    /// thread group and, when both are known, the same start time (to a clock tick; a
    /// reused pid starts later).
    fn same_task(&self, task: &Task, info: &ProcTask) -> bool {
        if info.tgid != task.tgid().get() {
            return false;
        }
        match (self.started.get(&info.pid), info.start_ticks) {
            (Some(&mirrored), Some(ticks)) => {
                mirrored.abs_diff(self.ticks_to_ns(ticks)) <= self.tick_ns + START_SLACK_NS
            }
            _ => true,
        }
    }

    /// When the mirrored task `pid` started (events' clock), if known.
    pub(crate) fn started(&self, pid: u32) -> Option<u64> {
        self.started.get(&pid).copied()
    }

    /// The last known command line of the process `tgid`.
    pub(crate) fn command_line(&self, tgid: u32) -> Option<Arc<[u8]>> {
        self.cmdlines.get(&tgid).cloned()
    }

    /// Whether the task `/proc` shows as `info` may be the one an event of time `ts`
    /// concerns: it started by then (to a clock tick). One that started later has a
    /// reused pid: the task of the event is gone.
    fn existed_at(&self, info: &ProcTask, ts: u64) -> bool {
        info.start_ticks
            .is_none_or(|ticks| self.started_by(self.ticks_to_ns(ticks), ts))
    }

    /// Whether a task that started at `started_ns` (events' clock) had started by `ts`,
    /// to a `/proc` clock tick. An event without a time (0: the kernel always stamps
    /// its events, replayed traffic may not) is taken to be about the task there is.
    fn started_by(&self, started_ns: u64, ts: u64) -> bool {
        ts == 0 || started_ns <= ts.saturating_add(self.tick_ns + START_SLACK_NS)
    }

    /// The mirrored task, adopting it from `/proc` if the mirror does not know it
    /// (forked before the seed, or its events lost) and the task there existed at `ts`,
    /// the time of the event that names it. `None` if it is gone.
    fn ensure(
        &mut self,
        pid: u32,
        ts: u64,
        sink: &mut dyn FnMut(Report),
    ) -> Option<(Arc<Task>, bool)> {
        if let Some(task) = self.tasks.get(Pid(pid)) {
            if task.state() == TaskState::Running || task.is_thread() {
                return Some((task, false));
            }
            // A leader whose exit was applied, kept (a zombie holding its pid) for
            // threads whose exits were not: an event names its pid again, so a thread
            // took it over (the kernel's `de_thread` at an exec) or it was reused, and
            // those threads are gone. Freeing them frees the leader.
            self.remove_threads(pid, UNKNOWN_STATUS, sink);
            if let Some(task) = self.tasks.get(Pid(pid)) {
                return Some((task, false));
            }
        }
        let info = procfs::task(pid)
            .filter(|info| !info.gone && info.pid == pid && self.existed_at(info, ts))?;
        if self.died_already(pid) {
            return None;
        }
        if info.pid != info.tgid && self.tasks.get(Pid(info.tgid)).is_none() {
            // Its leader first (one level: the leader's own parent is not chased).
            if let Some(leader) = procfs::task(info.tgid).filter(|l| {
                !l.gone && l.pid == l.tgid && !self.died_already(l.pid) && self.existed_at(l, ts)
            }) {
                let now = monotonic_ns();
                self.adopt(&leader, now, sink);
            }
        }
        let now = monotonic_ns();
        self.counters.adopted_late.fetch_add(1, Ordering::Relaxed);
        self.adopt(&info, now, sink).map(|task| (task, true))
    }

    /// Sends `exit` then `free` for a task and forgets it, whatever its parent: the
    /// kernel reaps real tasks through parents the mirror does not model.
    fn remove(
        &mut self,
        pid: u32,
        status: ExitStatus,
        sink: &mut dyn FnMut(Report),
    ) -> Option<Arc<Task>> {
        let task = self.tasks.get(Pid(pid))?;
        let tasks = Arc::clone(&self.tasks);
        if task.state() == TaskState::Running {
            // Watcher errors and panics are reported; other errors cannot happen for a
            // running task.
            let _ = self.guarded(EventKind::Exit, pid, sink, || {
                tasks.exit_with(Pid(pid), status)
            });
        }
        // Exit reaps threads and children of init at once; reap the rest here.
        if task.state() == TaskState::Zombie {
            let parent = task.parent();
            let _ = self.guarded(EventKind::Free, pid, sink, || {
                tasks.reap(parent, Pid(pid)).map(drop)
            });
        }
        self.origin.remove(&pid);
        self.started.remove(&pid);
        if !task.is_thread() {
            self.cmdlines.remove(&pid);
        }
        if task.is_thread() {
            let tgid = task.tgid().get();
            if let Some(set) = self.threads.get_mut(&tgid) {
                set.remove(&pid);
                if set.is_empty() {
                    self.threads.remove(&tgid);
                }
            }
        }
        Some(task)
    }

    /// Whether the mirrored task `pid` is a leader kept for its threads ([`kept_leader`]).
    fn keeps_leader(&self, pid: u32) -> bool {
        self.tasks.get(Pid(pid)).is_some_and(|t| kept_leader(&t))
    }

    /// Removes (as [`remove`](Mirror::remove) does) the mirrored threads of the group
    /// `tgid`, other than its leader.
    fn remove_threads(&mut self, tgid: u32, status: ExitStatus, sink: &mut dyn FnMut(Report)) {
        if let Some(threads) = self.threads.remove(&tgid) {
            for thread in threads {
                self.remove(thread, status, sink);
            }
        }
    }

    /// Adopts every live task in `tasks`, parents before children, processes before
    /// threads. Returns how many were added.
    fn adopt_all(
        &mut self,
        found: &HashMap<u32, ProcTask>,
        origin_ns: u64,
        sink: &mut dyn FnMut(Report),
    ) -> usize {
        let mut order = Vec::with_capacity(found.len());
        let mut visited = HashSet::new();
        let mut pids: Vec<u32> = found.keys().copied().collect();
        pids.sort_unstable();
        for &pid in &pids {
            let mut chain = Vec::new();
            let mut current = pid;
            while let Some(info) = found.get(&current) {
                if info.pid != info.tgid || !visited.insert(current) {
                    break;
                }
                chain.push(current);
                current = info.ppid;
            }
            order.extend(chain.into_iter().rev());
        }
        order.extend(
            pids.iter()
                .copied()
                .filter(|pid| found.get(pid).is_some_and(|i| i.pid != i.tgid)),
        );
        let mut added = 0;
        for pid in order {
            if self.tasks.get(Pid(pid)).is_some() || self.died_already(pid) {
                continue;
            }
            if let Some(info) = found.get(&pid)
                && self.adopt(info, origin_ns, sink).is_some()
            {
                added += 1;
            }
        }
        added
    }

    /// Fills the mirror from `/proc` (live tasks only).
    pub(crate) fn seed(&mut self, sink: &mut dyn FnMut(Report)) -> io::Result<usize> {
        let found = procfs::scan()?;
        let origin_ns = monotonic_ns();
        let live = found
            .into_iter()
            .filter(|t| !t.gone)
            .map(|t| (t.pid, t))
            .collect::<HashMap<_, _>>();
        Ok(self.adopt_all(&live, origin_ns, sink))
    }

    /// The first half of a resync: reads `/proc`, replaces mirrored tasks whose pid now
    /// belongs to another task (a different thread group or start time: the exit was
    /// lost), adopts the tasks the mirror lacks, and remembers which tasks it found
    /// live. The mirrored tasks it did not find are removed by
    /// [`resync_finish`](Self::resync_finish) once the events queued meanwhile are
    /// applied: a task that exited during the scan then leaves with the status its exit
    /// event carries, not an unknown one.
    pub(crate) fn resync_scan(&mut self, sink: &mut dyn FnMut(Report)) -> io::Result<ResyncPlan> {
        let started = Instant::now();
        let scan_started_ns = monotonic_ns();
        let found = procfs::scan()?;
        // Everything in the scan existed before this instant.
        let origin_ns = monotonic_ns();
        let live: HashMap<u32, ProcTask> = found
            .into_iter()
            .filter(|t| !t.gone)
            .map(|t| (t.pid, t))
            .collect();
        let mut removed = 0;
        // Threads first, so a group leader goes after its threads.
        let mut mirrored = self.tasks.tasks();
        mirrored.sort_by_key(|t| (!t.is_thread(), t.pid()));
        for task in mirrored {
            let pid = task.pid().get();
            if pid == 1 {
                continue;
            }
            match live.get(&pid) {
                None => {}
                // A leader kept as a zombie for its threads is no live task: the pid is
                // another's now, and the threads' exits were lost (as at a fork).
                Some(info) if kept_leader(&task) || !self.same_task(&task, info) => {
                    self.counters.stale.fetch_add(1, Ordering::Relaxed);
                    self.remove_threads(pid, UNKNOWN_STATUS, sink);
                    if self.remove(pid, UNKNOWN_STATUS, sink).is_some() {
                        removed += 1;
                    }
                }
                Some(_) => {}
            }
        }
        let added = self.adopt_all(&live, origin_ns, sink);
        Ok(ResyncPlan {
            started,
            scan_started_ns,
            live: live.into_keys().collect(),
            added,
            removed,
        })
    }

    /// The second half of a resync: every mirrored task that started before the scan
    /// and that the scan did not find live, and for which no exit event came since,
    /// gets `exit` (status unknown) and `free`. That covers the tasks mirrored before
    /// the scan, and also those whose fork event, queued before the scan, was applied
    /// only after it (when the queue could not be drained first), with their exit lost:
    /// without this they would stay in the mirror as running until the next resync.
    /// A task forked (again) under the same pid since the scan began is left alone.
    pub(crate) fn resync_finish(
        &mut self,
        plan: ResyncPlan,
        sink: &mut dyn FnMut(Report),
    ) -> Resync {
        let mut removed = plan.removed;
        // Threads first, so a group leader goes after its threads.
        let mut mirrored = self.tasks.tasks();
        mirrored.sort_by_key(|t| (!t.is_thread(), t.pid()));
        for task in mirrored {
            let pid = task.pid().get();
            if pid == 1 || plan.live.contains(&pid) {
                continue;
            }
            let before_scan = self
                .origin
                .get(&pid)
                .is_none_or(|&origin| origin < plan.scan_started_ns);
            // `/proc` shows a leader that exited before its threads as a zombie, so the
            // scan misses it; while threads of its group are still mirrored (they were
            // live, the scan's threads go first) it stays, and is not counted removed.
            let kept = self.threads.contains_key(&pid) && self.keeps_leader(pid);
            if before_scan && !kept && self.remove(pid, UNKNOWN_STATUS, sink).is_some() {
                removed += 1;
            }
        }
        Resync {
            added: plan.added,
            removed,
            took: plan.started.elapsed(),
        }
    }

    /// Applies one kernel event to the mirror and dispatches it.
    pub(crate) fn apply(&mut self, message: &ProcMessage, sink: &mut dyn FnMut(Report)) -> Applied {
        let mut applied = Applied {
            seq: message.header.seq,
            cpu: message.cpu,
            timestamp_ns: message.timestamp_ns,
            event: message.event,
            task: None,
            parent: None,
            change: None,
            command_line: None,
            started_ns: None,
            disposition: Disposition::Applied,
        };
        let ts = message.timestamp_ns;
        match message.event {
            ProcEvent::Ack { .. } => applied.disposition = Disposition::Ignored,
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
                ..
            } => self.fork(&mut applied, ts, parent_tgid, child_pid, child_tgid, sink),
            ProcEvent::Exit {
                pid,
                tgid,
                exit_code,
                ..
            } => match pid_of(pid) {
                Some(pid) => {
                    // A leader exits once: a later exit of the pid of a leader kept for
                    // its threads is another task's (a thread that took the pid over at
                    // an exec, or a reuse, whose events were lost), so those threads
                    // are gone, and the leader with them.
                    let earlier = self.tombstones.get(&pid).is_some_and(|&exit| exit < ts);
                    if earlier && self.keeps_leader(pid) {
                        self.remove_threads(pid, UNKNOWN_STATUS, sink);
                    }
                    self.bury(pid, ts);
                    // An exit from before the mirrored task started is about an older
                    // task that had the pid (a resync found this one first).
                    let started = self.started(pid);
                    if self.tasks.get(Pid(pid)).is_some()
                        && started.is_none_or(|started| self.started_by(started, ts))
                    {
                        applied.started_ns = started;
                        applied.command_line = pid_of(tgid).and_then(|t| self.command_line(t));
                        applied.task = self.remove(pid, ExitStatus(exit_code as i32), sink);
                    } else {
                        applied.disposition = Disposition::UnknownTask;
                    }
                }
                None => applied.disposition = Disposition::UnknownTask,
            },
            other => {
                let pid = other.pid().and_then(pid_of);
                if let Some(pid) = pid
                    && self.tombstones.get(&pid).is_some_and(|&exit| exit < ts)
                {
                    // An event newer than the pid's exit proves a live task has it: a
                    // reused pid, or a thread that exec'd and took over the pid of its
                    // group leader, which had to exit first (the kernel's de_thread).
                    self.tombstones.remove(&pid);
                }
                let Some((task, late)) = pid.and_then(|pid| self.ensure(pid, ts, sink)) else {
                    applied.disposition = Disposition::UnknownTask;
                    self.count(&applied);
                    return applied;
                };
                if late {
                    applied.disposition = Disposition::AdoptedLate;
                }
                self.change(&mut applied, &task, sink);
                applied.task = Some(task);
            }
        }
        if let Some(task) = &applied.task {
            let pid = task.pid().get();
            if applied.started_ns.is_none() {
                applied.started_ns = self.started(pid);
            }
            if applied.command_line.is_none() && !matches!(message.event, ProcEvent::Exec { .. }) {
                applied.command_line = self.command_line(task.tgid().get());
            }
        }
        self.count(&applied);
        applied
    }

    fn count(&self, applied: &Applied) {
        let counter = match applied.disposition {
            Disposition::Applied | Disposition::AdoptedLate => &self.counters.dispatched,
            Disposition::Duplicate => &self.counters.duplicates,
            Disposition::UnknownTask => &self.counters.unknown,
            Disposition::Ignored => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn fork(
        &mut self,
        applied: &mut Applied,
        ts: u64,
        parent_tgid: i32,
        child_pid: i32,
        child_tgid: i32,
        sink: &mut dyn FnMut(Report),
    ) {
        let (Some(child), Some(tgid)) = (pid_of(child_pid), pid_of(child_tgid)) else {
            applied.disposition = Disposition::UnknownTask;
            return;
        };
        if let Some(existing) = self.tasks.get(Pid(child)) {
            let origin = self.origin.get(&child).copied().unwrap_or(u64::MAX);
            // A zombie here is a group leader that the mirror keeps for threads whose
            // exits it has not seen: a fork never reuses its pid in the kernel.
            let running = existing.state() == TaskState::Running;
            if running && (ts <= origin || child == 1) {
                // Found in /proc after this fork: the same task.
                applied.disposition = Disposition::Duplicate;
                applied.task = Some(existing);
                return;
            }
            // The pid was reused: the old task's exit was lost, and so were those of
            // the threads of its group still mirrored (the kernel frees a leader's pid
            // only after its last thread's), which would keep it.
            self.counters.stale.fetch_add(1, Ordering::Relaxed);
            self.remove_threads(child, UNKNOWN_STATUS, sink);
            self.remove(child, UNKNOWN_STATUS, sink);
        }
        // A new task with this pid: an exit remembered for it is about an older one.
        self.tombstones.remove(&child);
        let thread = child != tgid;
        // The task whose data the child starts with: the group leader for a thread,
        // the parent process for a process.
        let source_pid = if thread {
            tgid
        } else {
            pid_of(parent_tgid).unwrap_or(1)
        };
        // A leader kept as a zombie still leads its live threads, and a fork names its
        // group's id (a new thread's group, a new process's parent): that is no sign
        // that the pid was taken over, as any other event naming it is (see `ensure`).
        let source = match self.tasks.get(Pid(source_pid)) {
            Some(leader) if kept_leader(&leader) => Some(leader),
            _ => self.ensure(source_pid, ts, sink).map(|(task, _)| task),
        };
        let source = source.unwrap_or_else(|| Arc::clone(self.tasks.init()));
        let info = ProcTask {
            pid: child,
            tgid,
            ppid: if thread {
                source.parent().get()
            } else {
                source.pid().get()
            },
            sid: source.sid().get(),
            pgid: source.pgid().get(),
            uids: source.uids(),
            gids: source.gids(),
            comm: source.comm(),
            start_ticks: None,
            gone: false,
        };
        applied.task = self.adopt(&info, ts, sink);
        if !thread && let Some(line) = self.cmdlines.get(&source.tgid().get()).cloned() {
            self.cmdlines.insert(child, line);
        }
        applied.parent = Some(source);
    }

    /// Applies a change to a running task: exec, ids, session, name, tracer, coredump.
    fn change(&mut self, applied: &mut Applied, task: &Arc<Task>, sink: &mut dyn FnMut(Report)) {
        let pid = task.pid().get();
        let kind = applied.event.event_kind().unwrap_or(EventKind::Exec);
        let result = match applied.event {
            ProcEvent::Exec { .. } => {
                // A thread that execs takes over the leader's pid; threads of the group
                // still mirrored are gone.
                self.remove_threads(pid, ExitStatus::signaled(9), sink);
                let comm = procfs::comm(pid);
                let line: Option<Arc<[u8]>> = if self.read_cmdline {
                    procfs::cmdline(pid).map(Into::into)
                } else {
                    None
                };
                match &line {
                    Some(line) => self.cmdlines.insert(pid, Arc::clone(line)),
                    None => self.cmdlines.remove(&pid),
                };
                let filename = line.as_deref().map(joined).unwrap_or_default();
                applied.command_line = line;
                self.guarded(kind, pid, sink, || {
                    self.tasks.record(
                        task,
                        Recorded::Exec {
                            filename: &filename,
                            comm: comm.as_deref(),
                        },
                    )
                })
            }
            ProcEvent::Uid { ruid, euid, .. } => {
                let old = task.uids();
                let new = fresh_ids(pid, ruid, euid, old, |t| t.uids);
                applied.change = Some(Change::Uids { old, new });
                self.guarded(kind, pid, sink, || {
                    self.tasks.record(task, Recorded::Uids(new))
                })
            }
            ProcEvent::Gid { rgid, egid, .. } => {
                let old = task.gids();
                let new = fresh_ids(pid, rgid, egid, old, |t| t.gids);
                applied.change = Some(Change::Gids { old, new });
                self.guarded(kind, pid, sink, || {
                    self.tasks.record(task, Recorded::Gids(new))
                })
            }
            ProcEvent::Sid { .. } => self.guarded(kind, pid, sink, || {
                self.tasks.record(task, Recorded::Setsid)
            }),
            ProcEvent::Comm { comm, .. } => {
                let old = task.comm();
                let result = self.guarded(kind, pid, sink, || {
                    self.tasks.record(task, Recorded::Comm(&comm_str(&comm)))
                });
                let new = task.comm();
                applied.change = Some(Change::Comm { old, new });
                result
            }
            ProcEvent::Ptrace {
                tracer_pid,
                tracer_tgid,
                ..
            } => {
                let tracer = if tracer_pid == 0 {
                    None
                } else {
                    pid_of(tracer_tgid).map(Pid)
                };
                self.guarded(kind, pid, sink, || {
                    self.tasks.record(task, Recorded::Ptrace(tracer))
                })
            }
            ProcEvent::Coredump { .. } => {
                // The event does not carry the signal; the exit status that follows does.
                self.guarded(kind, pid, sink, || {
                    self.tasks.record(task, Recorded::Coredump { signal: 0 })
                })
            }
            ProcEvent::Ack { .. } | ProcEvent::Fork { .. } | ProcEvent::Exit { .. } => Ok(()),
        };
        // `guarded` consumed watcher errors; any other means the task is no longer
        // running in the table (nothing was changed or sent), which the events that
        // end it account for.
        let _ = result;
    }
}

/// Whether a mirrored task is a group leader whose exit was applied, kept (a zombie
/// holding its pid) while threads of its group are mirrored.
fn kept_leader(task: &Task) -> bool {
    task.state() == TaskState::Zombie && !task.is_thread()
}

/// A raw command line as one string: arguments separated by spaces, invalid UTF-8
/// replaced (what watchers get as the `exec` filename).
pub(crate) fn joined(line: &[u8]) -> String {
    let line = line.strip_suffix(&[0]).unwrap_or(line);
    String::from_utf8_lossy(line).replace('\0', " ")
}

/// The ids after a uid/gid event: the real and effective ids from the event; the saved
/// and filesystem ids from `/proc` when it agrees with the event, else the saved id
/// unchanged and the filesystem id following the effective one.
fn fresh_ids(
    pid: u32,
    real: u32,
    effective: u32,
    old: Ids,
    pick: impl Fn(&ProcTask) -> Ids,
) -> Ids {
    procfs::task(pid)
        .map(|t| pick(&t))
        .filter(|ids| ids.real == real && ids.effective == effective)
        .unwrap_or(Ids {
            real,
            effective,
            saved: old.saved,
            fs: effective,
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::cn_proc::{CnMsgHeader, comm_bytes};
    use watchers_core::EventSet;
    use watchers_core::WatcherTable;

    /// Pids no real task has (above the kernel's pid limit).
    const BASE: i32 = 5_000_000;

    type Log = Arc<Mutex<Vec<(EventKind, u32, Option<u32>)>>>;

    fn setup() -> (Mirror, Log, Arc<WatcherTable>) {
        let table = Arc::new(WatcherTable::from_watchers([]).unwrap());
        let log: Log = Arc::default();
        let record = log.clone();
        table
            .watcher("test::log", EventSet::ALL)
            .register(move |event| {
                let parent = event.parent().map(|p| p.pid().get());
                record
                    .lock()
                    .unwrap()
                    .push((event.kind(), event.task().pid().get(), parent));
                Ok::<(), std::convert::Infallible>(())
            })
            .unwrap()
            .keep();
        let counters = Arc::new(AtomicCounters::default());
        let mirror = Mirror::new(
            Arc::new(TaskTable::with_table(table.clone())),
            true,
            counters,
        );
        (mirror, log, table)
    }

    fn message(event: ProcEvent, ts: u64) -> ProcMessage {
        ProcMessage {
            header: CnMsgHeader::proc(0, 0, 40),
            cpu: 0,
            timestamp_ns: ts,
            event,
        }
    }

    fn fork(parent: i32, child: i32, tgid: i32) -> ProcEvent {
        ProcEvent::Fork {
            parent_pid: parent,
            parent_tgid: parent,
            child_pid: child,
            child_tgid: tgid,
        }
    }

    fn exit(pid: i32, tgid: i32, code: u32) -> ProcEvent {
        ProcEvent::Exit {
            pid,
            tgid,
            exit_code: code,
            exit_signal: 17,
            parent_pid: 0,
            parent_tgid: 0,
        }
    }

    fn kinds(log: &Log, pid: i32) -> Vec<EventKind> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|e| e.1 == pid as u32)
            .map(|e| e.0)
            .collect()
    }

    /// A process `p` forks a thread `t` at `ts`, then exits: the mirror keeps it, a
    /// zombie holding its pid, for its thread.
    fn keep_leader(m: &mut Mirror, p: i32, t: i32, ts: u64) {
        let mut sink = |_| {};
        m.apply(&message(fork(1, p, p), ts), &mut sink);
        m.apply(&message(fork(p, t, p), ts + 1), &mut sink);
        m.apply(&message(exit(p, p, 0), ts + 2), &mut sink);
    }

    /// The task that had `pid` got its exit and `free` when a newer fork reused the pid,
    /// the one stale task the mirror found.
    fn assert_replaced_once(m: &Mirror, log: &Log, pid: i32) {
        assert_eq!(
            kinds(log, pid),
            [
                EventKind::Fork,
                EventKind::Exit,
                EventKind::Free,
                EventKind::Fork
            ]
        );
        assert_eq!(m.counters.stale.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_fork_inherits_the_command_line_and_starts_at_its_event() {
        let (mut m, _, _) = setup();
        let mut sink = |_| {};
        let (p, c, t) = (BASE + 40, BASE + 41, BASE + 42);
        m.apply(&message(fork(1, p, p), 10), &mut sink);
        let line: Arc<[u8]> = Arc::from(&b"server\0--port\08080\0"[..]);
        m.cmdlines.insert(p as u32, Arc::clone(&line));
        let child = m.apply(&message(fork(p, c, c), 11), &mut sink);
        assert_eq!(child.command_line.as_deref(), Some(&line[..]));
        assert_eq!(child.started_ns, Some(11));
        // A thread of the child: its process's command line, its own start.
        let thread = m.apply(&message(fork(p, t, c), 12), &mut sink);
        assert_eq!(thread.command_line.as_deref(), Some(&line[..]));
        assert_eq!(thread.started_ns, Some(12));
        // The child's later events carry the line it inherited.
        let gone = m.apply(&message(exit(c, c, 0), 13), &mut sink);
        assert_eq!(gone.command_line.as_deref(), Some(&line[..]));
        assert_eq!(gone.started_ns, Some(11));
    }

    #[test]
    fn processes_and_threads_live_and_die_in_the_mirror() {
        let (mut m, log, _) = setup();
        let mut sink = |_| {};
        let (p, c, t) = (BASE, BASE + 1, BASE + 2);
        assert_eq!(
            m.apply(&message(fork(1, p, p), 10), &mut sink).disposition,
            Disposition::Applied
        );
        m.apply(&message(fork(p, c, c), 11), &mut sink);
        // A thread of `c`: announced with its leader as the parent.
        m.apply(&message(fork(p, t, c), 12), &mut sink);
        let thread = m.tasks.get(Pid(t as u32)).unwrap();
        assert!(thread.is_thread());
        assert_eq!(
            thread.parent(),
            Pid(p as u32),
            "a thread's parent is its leader's"
        );
        assert!(
            log.lock()
                .unwrap()
                .contains(&(EventKind::Fork, t as u32, Some(c as u32)))
        );
        assert!(
            log.lock()
                .unwrap()
                .contains(&(EventKind::Fork, c as u32, Some(p as u32)))
        );
        let renamed = ProcEvent::Comm {
            pid: c,
            tgid: c,
            comm: comm_bytes("worker"),
        };
        m.apply(&message(renamed, 13), &mut sink);
        assert_eq!(m.tasks.get(Pid(c as u32)).unwrap().comm(), "worker");
        let uid = ProcEvent::Uid {
            pid: c,
            tgid: c,
            ruid: 1000,
            euid: 1000,
        };
        let applied = m.apply(&message(uid, 14), &mut sink);
        assert!(matches!(applied.change, Some(Change::Uids { new, .. }) if new.effective == 1000));
        // The exec of a gone process: the command line is unknown, not an error.
        let applied = m.apply(&message(ProcEvent::Exec { pid: c, tgid: c }, 15), &mut sink);
        assert_eq!(applied.command_line, None);
        assert_eq!(applied.disposition, Disposition::Applied);
        // The parent exits first: its child is not freed with it.
        m.apply(&message(exit(p, p, 0), 16), &mut sink);
        assert!(m.tasks.get(Pid(p as u32)).is_none());
        assert_eq!(
            kinds(&log, p),
            [EventKind::Fork, EventKind::Exit, EventKind::Free]
        );
        m.apply(&message(exit(t, c, 0), 17), &mut sink);
        let applied = m.apply(&message(exit(c, c, 3 << 8), 18), &mut sink);
        assert_eq!(
            applied.task.unwrap().exit_status(),
            Some(ExitStatus::exited(3))
        );
        for pid in [c, t] {
            assert!(m.tasks.get(Pid(pid as u32)).is_none());
            assert_eq!(kinds(&log, pid).last(), Some(&EventKind::Free));
        }
        assert_eq!(m.tasks.len(), 1, "only init is left");
        assert!(m.origin.is_empty() && m.threads.is_empty());
    }

    #[test]
    fn duplicate_forks_unknown_tasks_and_reused_pids() {
        let (mut m, log, _) = setup();
        let mut sink = |_| {};
        let p = BASE + 10;
        m.apply(&message(fork(1, p, p), 100), &mut sink);
        // The same fork again (as when found in /proc after it forked): a duplicate.
        let again = m.apply(&message(fork(1, p, p), 100), &mut sink);
        assert_eq!(again.disposition, Disposition::Duplicate);
        // A newer fork of the same pid: the exit was lost; the old task is removed.
        let reused = m.apply(&message(fork(1, p, p), 200), &mut sink);
        assert_eq!(reused.disposition, Disposition::Applied);
        assert_replaced_once(&m, &log, p);
        // Events about tasks nobody knows, not even /proc.
        let unknown = m.apply(
            &message(
                ProcEvent::Exec {
                    pid: BASE + 11,
                    tgid: BASE + 11,
                },
                300,
            ),
            &mut sink,
        );
        assert_eq!(unknown.disposition, Disposition::UnknownTask);
        let unknown = m.apply(&message(exit(BASE + 12, BASE + 12, 0), 300), &mut sink);
        assert_eq!(unknown.disposition, Disposition::UnknownTask);
        let nonsense = m.apply(&message(fork(1, -5, 0), 300), &mut sink);
        assert_eq!(nonsense.disposition, Disposition::UnknownTask);
        assert_eq!(m.counters.unknown.load(Ordering::Relaxed), 3);
    }

    /// A leader's exit arrives, its thread's is lost, and a fork reuses the leader's pid:
    /// the leader, which the task model keeps (a zombie holding its pid) while its
    /// thread is mirrored, goes with that thread, and the new task is mirrored.
    #[test]
    fn a_reused_leader_pid_takes_the_threads_whose_exits_were_lost() {
        let (mut m, log, _) = setup();
        let mut sink = |_| {};
        let (p, t) = (BASE + 20, BASE + 21);
        keep_leader(&mut m, p, t, 100);
        let leader = m.tasks.get(Pid(p as u32)).expect("kept for its thread");
        assert_eq!(leader.state(), TaskState::Zombie);
        let reused = m.apply(&message(fork(1, p, p), 200), &mut sink);
        assert_eq!(reused.disposition, Disposition::Applied);
        let new = m
            .tasks
            .get(Pid(p as u32))
            .expect("the new task is mirrored");
        assert_ne!(new.serial(), leader.serial());
        assert_eq!(new.state(), TaskState::Running);
        assert!(m.tasks.get(Pid(t as u32)).is_none());
        assert_eq!(
            kinds(&log, t),
            [EventKind::Fork, EventKind::Exit, EventKind::Free]
        );
        assert_replaced_once(&m, &log, p);
    }

    /// The leader's exit arrives while its threads live (a main thread that called
    /// `pthread_exit`); a thread of the group then creates a thread, and another
    /// creates a process: both fork events name the group's id (the new thread's
    /// group, the new process's parent). Neither proves the threads gone: they stay
    /// mirrored, with no `exit`, and the new thread joins them.
    #[test]
    fn a_fork_in_a_group_whose_leader_exited_keeps_its_threads() {
        let (mut m, log, _) = setup();
        let mut sink = |_| {};
        let (p, t, t2, c) = (BASE + 30, BASE + 31, BASE + 32, BASE + 33);
        keep_leader(&mut m, p, t, 100);
        // The kernel's fork event of a thread names its group's parent; the mirror
        // reads the group's id from the child.
        m.apply(&message(fork(1, t2, p), 103), &mut sink);
        m.apply(&message(fork(p, c, c), 104), &mut sink);
        assert_eq!(kinds(&log, t), [EventKind::Fork], "t still runs");
        let thread = m.tasks.get(Pid(t as u32)).expect("t still mirrored");
        assert_eq!(thread.state(), TaskState::Running);
        let new = m.tasks.get(Pid(t2 as u32)).expect("t2 mirrored");
        assert_eq!(new.tgid().get(), p as u32);
        let leader = m.tasks.get(Pid(p as u32)).expect("the leader is kept");
        assert_eq!(leader.state(), TaskState::Zombie);
        // The last thread's exit frees the leader, once.
        m.apply(&message(exit(t, p, 0), 105), &mut sink);
        m.apply(&message(exit(t2, p, 0), 106), &mut sink);
        assert_eq!(
            kinds(&log, p),
            [EventKind::Fork, EventKind::Exit, EventKind::Free]
        );
        assert!(m.tasks.get(Pid(p as u32)).is_none());
    }

    /// A leader's exit arrives while its thread is mirrored, then a second exit of the
    /// same pid (a thread that exec'd took the pid over, the kernel's `de_thread`, and
    /// its exec event was lost): the thread is gone, and the kept leader with it.
    #[test]
    fn a_second_exit_of_a_kept_leaders_pid_ends_its_threads() {
        let (mut m, log, _) = setup();
        let mut sink = |_| {};
        let (p, t) = (BASE + 50, BASE + 51);
        keep_leader(&mut m, p, t, 100);
        m.apply(&message(exit(p, p, 0), 200), &mut sink);
        assert_eq!(
            kinds(&log, t),
            [EventKind::Fork, EventKind::Exit, EventKind::Free]
        );
        assert!(m.tasks.get(Pid(p as u32)).is_none(), "the leader is freed");
    }

    #[test]
    fn failing_and_panicking_watchers_are_reported_not_obeyed() {
        let (mut m, _, table) = setup();
        table
            .watcher("test::refuses", EventSet::FORK)
            .register(|_| Err::<(), _>(std::io::Error::other("no")))
            .unwrap()
            .keep();
        table
            .watcher("test::panics", EventSet::EXIT)
            .register(|_| -> Result<(), std::convert::Infallible> { panic!("boom") })
            .unwrap()
            .keep();
        let mut reports = Vec::new();
        let p = BASE + 20;
        m.apply(&message(fork(1, p, p), 1), &mut |r| reports.push(r));
        assert!(
            m.tasks.get(Pid(p as u32)).is_some(),
            "the fork happened anyway"
        );
        assert!(matches!(
            &reports[..],
            [Report::WatcherFailed(f)] if f.watcher.as_deref() == Some("test::refuses")
        ));
        reports.clear();
        m.apply(&message(exit(p, p, 0), 2), &mut |r| reports.push(r));
        assert!(
            m.tasks.get(Pid(p as u32)).is_none(),
            "freed despite the panic"
        );
        assert!(
            reports
                .iter()
                .any(|r| matches!(r, Report::WatcherPanicked(f) if f.message == "boom"))
        );
        assert_eq!(m.counters.watcher_panics.load(Ordering::Relaxed), 1);
        assert_eq!(m.counters.watcher_errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_seed_holds_this_process_and_a_resync_keeps_it() {
        let (mut m, _, _) = setup();
        let mut sink = |_| {};
        let added = m.seed(&mut sink).unwrap();
        let me = std::process::id();
        assert!(added > 1);
        let task = m.tasks.get(Pid(me)).unwrap();
        assert_eq!(task.tgid(), Pid(me));
        // A fake task the kernel never had goes away on a resync.
        m.apply(&message(fork(1, BASE + 30, BASE + 30), 1), &mut sink);
        let resync = resync(&mut m);
        assert!(resync.removed >= 1);
        assert!(m.tasks.get(Pid(BASE as u32 + 30)).is_none());
        assert!(m.tasks.get(Pid(me)).is_some());
    }

    #[test]
    fn a_resync_keeps_a_live_task_whose_name_is_not_utf8() {
        // A process that renames itself with a byte that is not UTF-8 must not look
        // gone: a resync would send it `exit` and `free` while it runs, and its later
        // events would concern an unknown task.
        let (mut m, log, _) = setup();
        let mut sink = |_| {};
        let (tid, stop, handle) = procfs::tests::named_thread(b"plain");
        m.seed(&mut sink).unwrap();
        assert!(m.tasks.get(Pid(tid)).is_some(), "seeded");
        std::fs::write(format!("/proc/self/task/{tid}/comm"), b"\xffhidden")
            .expect("rename the thread");
        let renamed = ProcEvent::Comm {
            pid: tid as i32,
            tgid: std::process::id() as i32,
            comm: *b"\xffhidden\0\0\0\0\0\0\0\0\0",
        };
        m.apply(&message(renamed, monotonic_ns()), &mut sink);
        resync(&mut m);
        let still = m.tasks.get(Pid(tid)).is_some();
        drop(stop);
        handle.join().unwrap();
        assert!(
            !kinds(&log, tid as i32).contains(&EventKind::Exit),
            "a live task got `exit`: {:?}",
            kinds(&log, tid as i32)
        );
        assert!(still, "still mirrored after the resync");
    }

    /// A small deterministic generator (xorshift64*), so a failure replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Checks the watchers' view of each pid: `fork`, then events, then `free`, and
    /// never an event on a pid that is not alive. Returns the first violation.
    fn lifecycle_violation(log: &Log) -> Option<String> {
        let mut alive: HashMap<u32, bool> = HashMap::new();
        for (i, &(kind, pid, _)) in log.lock().unwrap().iter().enumerate() {
            // Init is there from the start, without a `fork`.
            let live = alive.entry(pid).or_insert(pid == 1);
            match kind {
                EventKind::Fork if *live => return Some(format!("#{i}: {pid} forked twice")),
                EventKind::Fork => *live = true,
                EventKind::Free if !*live => return Some(format!("#{i}: {pid} freed twice")),
                EventKind::Free => *live = false,
                other if !*live => return Some(format!("#{i}: {other} on dead {pid}")),
                _ => {}
            }
        }
        None
    }

    #[test]
    fn random_event_streams_keep_every_task_freed_exactly_once() {
        // Fake pids (no /proc entry), events in any order: unknown pids, exits before
        // forks, threads of groups never seen, reused pids, time going backwards.
        for seed in 1..=200u64 {
            let (mut m, log, _) = setup();
            let mut sink = |_| {};
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            // Init too: its exit is refused, a thread of it is still a thread.
            let mut pids: Vec<i32> = (0..6).map(|i| BASE + 100 + i).collect();
            pids.push(1);
            let mut ts = 1_000u64;
            for _ in 0..200 {
                ts = if rng.below(10) == 0 {
                    ts.saturating_sub(rng.below(50))
                } else {
                    ts + rng.below(20)
                };
                let pick = |rng: &mut Rng| pids[rng.below(pids.len() as u64) as usize];
                let pid = pick(&mut rng);
                let tgid = if rng.below(3) == 0 {
                    pick(&mut rng)
                } else {
                    pid
                };
                let event = match rng.below(9) {
                    0..=2 => {
                        let parent = if rng.below(4) == 0 { 1 } else { pick(&mut rng) };
                        fork(parent, pid, tgid)
                    }
                    3 | 4 => exit(pid, tgid, (rng.below(256) as u32) << 8),
                    5 => ProcEvent::Exec { pid, tgid },
                    6 => ProcEvent::Comm {
                        pid,
                        tgid,
                        comm: comm_bytes("x"),
                    },
                    7 => ProcEvent::Uid {
                        pid,
                        tgid,
                        ruid: 1,
                        euid: 1,
                    },
                    _ => ProcEvent::Coredump {
                        pid,
                        tgid,
                        parent_pid: 0,
                        parent_tgid: 0,
                    },
                };
                m.apply(&message(event, ts), &mut sink);
                if let Some(violation) = lifecycle_violation(&log) {
                    panic!("seed {seed}: {violation} after {event:?} at {ts}");
                }
            }
            // Every task exits (threads first): nothing may be left, nothing freed twice.
            let mut left = m.tasks.tasks();
            left.sort_by_key(|t| (!t.is_thread(), t.pid()));
            for task in left.iter().filter(|t| t.pid() != Pid::INIT) {
                let (pid, tgid) = (task.pid().get() as i32, task.tgid().get() as i32);
                m.apply(&message(exit(pid, tgid, 0), u64::MAX / 2), &mut sink);
            }
            if let Some(violation) = lifecycle_violation(&log) {
                panic!("seed {seed}: {violation} at the final exits");
            }
            assert_eq!(m.tasks.len(), 1, "seed {seed}: only init is left");
            assert!(m.origin.is_empty(), "seed {seed}: origins {:?}", m.origin);
            assert!(m.threads.is_empty(), "seed {seed}: threads {:?}", m.threads);
        }
    }

    /// A real process whose leader called `pthread_exit` while a thread of it runs:
    /// `/proc` shows the leader as a zombie, the thread as live. Killed and reaped on drop.
    struct ExitedLeader {
        pid: libc::pid_t,
        tid: u32,
    }

    impl ExitedLeader {
        fn start() -> Self {
            extern "C" fn park(_: *mut libc::c_void) -> *mut libc::c_void {
                loop {
                    // SAFETY: `pause` has no preconditions.
                    unsafe { libc::pause() };
                }
            }
            // SAFETY: the test harness is multi-threaded, so POSIX allows the child only
            // async-signal-safe calls, and `pthread_create` is not one: it takes the
            // stack-cache and loader locks and may allocate. This relies on glibc (and
            // musl), whose `fork` re-initialises those locks and malloc's in the child,
            // so another thread's lock held at the fork cannot deadlock it. Besides that
            // the child calls only `_exit` and the raw `exit`, and writes no memory it
            // shares with the parent (the fork copied it).
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let mut thread: libc::pthread_t = 0;
                // SAFETY: `park` never returns and takes no argument; `thread` is valid.
                let made = unsafe {
                    libc::pthread_create(&mut thread, std::ptr::null(), park, std::ptr::null_mut())
                };
                if made != 0 {
                    // SAFETY: ends the child without running the parent's destructors.
                    unsafe { libc::_exit(1) };
                }
                // The leader's thread ends (the raw `exit`, not `pthread_exit`, whose
                // unwinding would cross Rust frames); the process lives on in `thread`.
                // SAFETY: the raw `exit` ends only this thread and touches no memory; the
                // `_exit` after it is never reached, a guard should the call return.
                unsafe {
                    libc::syscall(libc::SYS_exit, 0);
                    libc::_exit(1)
                }
            }
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let leader = procfs::task(pid as u32);
                let thread = std::fs::read_dir(format!("/proc/{pid}/task"))
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .find(|&tid| tid != pid as u32);
                if let (Some(leader), Some(tid)) = (leader, thread)
                    && leader.gone
                {
                    return ExitedLeader { pid, tid };
                }
                assert!(
                    Instant::now() < deadline,
                    "the child's leader did not exit: {:?} {:?}",
                    std::fs::read_to_string(format!("/proc/{pid}/stat")),
                    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name())
                        .collect::<Vec<_>>())
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    impl Drop for ExitedLeader {
        fn drop(&mut self) {
            // SAFETY: `pid` is our child, not yet reaped.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }

    /// A leader kept (a zombie in the mirror and in `/proc`) for a thread that `/proc`
    /// shows live survives a resync, which does not count it removed.
    #[test]
    fn a_resync_keeps_a_leader_whose_threads_live_and_counts_it_not_removed() {
        let (mut m, log, _) = setup();
        let child = ExitedLeader::start();
        let (p, t) = (child.pid, child.tid as i32);
        let now = monotonic_ns();
        let mut sink = |_| {};
        m.apply(&message(fork(1, p, p), now), &mut sink);
        m.apply(&message(fork(p, t, p), now + 1), &mut sink);
        m.apply(&message(exit(p, p, 0), now + 2), &mut sink);
        let key = p as u32;
        for round in 0..2 {
            // The count covers the whole machine, where other processes end between
            // rounds: the leader, which the scan sees as gone (a zombie), must be the
            // one of those it does not count.
            let plan = m.resync_scan(&mut |_| {}).unwrap();
            assert!(
                !plan.live.contains(&key),
                "round {round}: /proc shows a zombie"
            );
            let vanished = m
                .tasks
                .tasks()
                .iter()
                .filter(|t| t.pid() != Pid::INIT && !plan.live.contains(&t.pid().get()))
                .count();
            let at_most = plan.removed + vanished - 1;
            let resync = m.resync_finish(plan, &mut |_| {});
            assert!(resync.removed <= at_most, "round {round}: {resync:?}");
            let leader = m.tasks.get(Pid(p as u32)).expect("the leader is kept");
            assert_eq!(leader.state(), TaskState::Zombie);
            assert!(m.tasks.get(Pid(t as u32)).is_some(), "the thread runs");
        }
        assert_eq!(kinds(&log, t), [EventKind::Fork]);
        assert_eq!(kinds(&log, p), [EventKind::Fork, EventKind::Exit]);
    }

    fn resync(m: &mut Mirror) -> Resync {
        let plan = m.resync_scan(&mut |_| {}).unwrap();
        m.resync_finish(plan, &mut |_| {})
    }

    fn sleeper() -> std::process::Child {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        // `spawn` returns once the exec has begun; the new program's arguments are in
        // place a moment later.
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while procfs::cmdline(child.id()).is_none_or(|l| !l.starts_with(b"sleep"))
            && Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        child
    }

    #[test]
    fn a_task_a_resync_finds_gone_ends_with_an_unknown_status_not_exit_0() {
        let (mut m, _, _) = setup();
        let mut sink = |_| {};
        let p = BASE + 41;
        let task = m
            .apply(&message(fork(1, p, p), 1), &mut sink)
            .task
            .expect("mirrored");
        // Its exit was lost: no process has this pid, so the resync ends the task.
        assert_eq!(resync(&mut m).removed, 1);
        assert_eq!(task.exit_status(), Some(ExitStatus::UNKNOWN));
    }

    #[test]
    fn an_event_without_a_time_is_about_the_task_the_mirror_knows() {
        let (mut m, _, _) = setup();
        let mut sink = |_| {};
        let p = BASE + 42;
        m.apply(&message(fork(1, p, p), 1_000_000_000), &mut sink);
        // Replayed traffic may carry no time (the kernel's always has one).
        let applied = m.apply(&message(exit(p, p, 3 << 8), 0), &mut sink);
        assert_eq!(applied.disposition, Disposition::Applied);
        let task = applied.task.expect("the mirrored task");
        assert_eq!(task.exit_status(), Some(ExitStatus::exited(3)));
    }

    /// When the queue could not be drained before a resync, a fork event queued before
    /// the scan is applied after it. If the task had ended by then and its exit was lost
    /// (the overrun that called the resync), the scan cannot have seen it: the resync's
    /// end removes it, where it used to stay in the mirror as running until the next
    /// resync (seen as a "bash" child of a shell loop, kept through a whole test).
    #[test]
    fn a_fork_queued_before_a_scan_of_a_task_the_scan_missed_leaves_no_ghost() {
        let (mut m, log, _) = setup();
        let mut sink = |_| {};
        let (ghost, reused) = (BASE + 43, BASE + 44);
        let queued = monotonic_ns();
        let plan = m.resync_scan(&mut sink).unwrap();
        // Drained after the scan: the ghost's fork from before it, and a fork from
        // after the scan began, of a task the scan may have been too early to see.
        m.apply(&message(fork(1, ghost, ghost), queued), &mut sink);
        m.apply(&message(fork(1, reused, reused), monotonic_ns()), &mut sink);
        let resync = m.resync_finish(plan, &mut sink);
        assert!(
            m.tasks.get(Pid(ghost as u32)).is_none(),
            "the ghost is still mirrored: {resync:?}"
        );
        assert_eq!(
            kinds(&log, ghost),
            [EventKind::Fork, EventKind::Exit, EventKind::Free],
            "its watchers saw it end"
        );
        let task = m.tasks.get(Pid(reused as u32)).expect("a newer task stays");
        assert_eq!(task.state(), TaskState::Running);
        assert_eq!(kinds(&log, reused), [EventKind::Fork]);
    }

    #[test]
    fn a_task_that_exits_during_the_scan_keeps_its_exit_status() {
        let (mut m, _, _) = setup();
        let mut sink = |_| {};
        let p = BASE + 40;
        m.apply(&message(fork(1, p, p), 1), &mut sink);
        let plan = m.resync_scan(&mut sink).unwrap();
        // Its exit event was queued while /proc was read.
        let applied = m.apply(&message(exit(p, p, 3 << 8), monotonic_ns()), &mut sink);
        assert_eq!(applied.disposition, Disposition::Applied);
        let task = applied.task.expect("still mirrored after the scan");
        assert_eq!(task.exit_status(), Some(ExitStatus::exited(3)));
        let resync = m.resync_finish(plan, &mut sink);
        assert_eq!(
            resync.removed, 0,
            "nothing left to remove with an unknown status"
        );
        assert_eq!(m.counters.unknown.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_resync_replaces_a_reused_pid_of_the_same_thread_group() {
        let (mut m, log, _) = setup();
        let mut sink = |_| {};
        let mut child = sleeper();
        let pid = child.id() as i32;
        // The mirror believes an older task (started at boot + 1 ns) has this pid and
        // thread group: its exit was lost, and the pid was reused.
        m.apply(&message(fork(1, pid, pid), 1), &mut sink);
        assert_eq!(m.started(pid as u32), Some(1));
        resync(&mut m);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            kinds(&log, pid),
            [
                EventKind::Fork,
                EventKind::Exit,
                EventKind::Free,
                EventKind::Fork
            ],
            "the old task left and the new one came"
        );
        assert_eq!(m.counters.stale.load(Ordering::Relaxed), 1);
        let started = m.started(pid as u32).unwrap();
        assert!(started > 1 && started <= monotonic_ns());
    }

    /// The mirror applied a leader's exit but lost its thread's; the leader's pid is
    /// reused by a live process before a resync: the resync ends the thread, which
    /// frees the kept leader, and mirrors the process that has the pid now.
    #[test]
    fn a_resync_mirrors_the_process_that_reused_a_kept_leaders_pid() {
        let (mut m, log, _) = setup();
        let mut child = sleeper();
        let pid = child.id() as i32;
        let thread = BASE + 40;
        keep_leader(&mut m, pid, thread, 1);
        resync(&mut m);
        let mirrored = m.tasks.get(Pid(pid as u32));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            kinds(&log, thread),
            [EventKind::Fork, EventKind::Exit, EventKind::Free]
        );
        assert_replaced_once(&m, &log, pid);
        let mirrored = mirrored.expect("the live process is mirrored");
        assert_eq!(mirrored.state(), TaskState::Running);
    }

    #[test]
    fn a_late_event_is_not_pinned_on_a_newer_task_that_has_its_pid() {
        // An event about a task the mirror lacks (its fork was lost) is adopted from
        // /proc: but if the task there started after the event, the pid was reused
        // meanwhile and /proc shows another task. Adopting that one would give it the
        // old task's events (and then its exit).
        let (mut m, log, _) = setup();
        let mut sink = |_| {};
        let before = monotonic_ns();
        let mut child = sleeper();
        let pid = child.id() as i32;
        // An event from a second before the child existed.
        let stale = before.saturating_sub(1_000_000_000);
        let exec = m.apply(
            &message(ProcEvent::Exec { pid, tgid: pid }, stale),
            &mut sink,
        );
        // And its parent, found through a fork event just as old.
        let fork = m.apply(&message(fork(pid, BASE + 50, BASE + 50), stale), &mut sink);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(exec.disposition, Disposition::UnknownTask);
        assert!(kinds(&log, pid).is_empty(), "{:?}", kinds(&log, pid));
        assert!(
            fork.parent.is_none_or(|p| p.pid().get() != pid as u32),
            "the newer task became the parent of an older fork"
        );
    }

    #[test]
    fn an_exit_older_than_the_mirrored_task_does_not_end_it() {
        // A resync finds a task under a reused pid while the exit of the pid's previous
        // task is still queued; the drain then applies that exit. It is about the older
        // task: the one mirrored now started after it and is alive.
        let (mut m, log, _) = setup();
        let mut sink = |_| {};
        let before = monotonic_ns();
        let mut child = sleeper();
        let pid = child.id();
        let plan = m.resync_scan(&mut sink).unwrap();
        assert!(m.tasks.get(Pid(pid)).is_some(), "found by the scan");
        let old_exit = exit(pid as i32, pid as i32, 7 << 8);
        let unknown = m.counters.unknown.load(Ordering::Relaxed);
        let applied = m.apply(
            &message(old_exit, before.saturating_sub(1_000_000_000)),
            &mut sink,
        );
        m.resync_finish(plan, &mut sink);
        let still = m.tasks.get(Pid(pid));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            kinds(&log, pid as i32),
            [EventKind::Fork],
            "no exit for a live task"
        );
        assert!(still.is_some(), "still mirrored");
        assert_eq!(applied.disposition, Disposition::UnknownTask);
        // As the module documentation promises: counted as unknown.
        assert_eq!(
            m.counters.unknown.load(Ordering::Relaxed),
            unknown + 1,
            "counted in Counters::unknown"
        );
    }

    #[test]
    fn an_exec_after_the_leaders_exit_brings_the_process_back() {
        // The kernel's de_thread: a thread that execs takes over its leader's pid after
        // the leader's exit event; the exec event proves the pid alive.
        let (mut m, _, _) = setup();
        let mut sink = |_| {};
        let mut child = sleeper();
        let pid = child.id() as i32;
        let now = monotonic_ns();
        m.apply(
            &message(fork(std::process::id() as i32, pid, pid), now),
            &mut sink,
        );
        m.apply(&message(exit(pid, pid, 9), now + 1), &mut sink);
        let exec = ProcEvent::Exec { pid, tgid: pid };
        let applied = m.apply(&message(exec, now + 2), &mut sink);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(applied.disposition, Disposition::AdoptedLate);
        let task = applied.task.expect("the process is mirrored again");
        assert_eq!(task.parent().get(), std::process::id());
        let line = applied.command_line.expect("its new command line");
        assert!(line.starts_with(b"sleep\x0030\x00"), "{line:?}");
        assert!(applied.started_ns.is_some_and(|s| s <= monotonic_ns()));
    }
}
