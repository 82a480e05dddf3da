//! Delay accounting (`CONFIG_TASK_DELAY_ACCT`): how long each task waited for a CPU, for
//! block I/O and for swap-in, reported to listeners when it exits.
//!
//! * **fork**: the child gets zeroed counters (`delayacct_tsk_init`).
//! * The task's delays are added with [`record_cpu`], [`record_blkio`] and
//!   [`record_swapin`] (what the scheduler and `delayacct_blkio_start/end` do).
//! * **exit**: a [`Taskstats`] record (the fields of the kernel's `struct taskstats`
//!   that this model has) is sent to every [subscribed](subscribe) listener
//!   (`taskstats_exit`). Each listener has a bounded queue; a full queue drops the record
//!   and counts it.
//! * **free**: the counters are freed (`delayacct_tsk_free`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use watchers_core::{
    CloneFlags, Event, EventData, EventSet, ExitStatus, Pid, Task, TaskSlot, Watcher, task_watcher,
    watcher_record,
};

/// The events the delayacct watchers ask for.
pub const EVENTS: EventSet = watcher_record!(watch_fork_free)
    .events()
    .union(watcher_record!(watch_exit).events());

/// The priority all the delayacct watchers share (`delayacct_tsk_init` is the first set-up in
/// `copy_process`).
pub const PRIORITY: i32 = watcher_record!(watch_fork_free).priority();

/// The version of the [`Taskstats`] layout.
pub const TASKSTATS_VERSION: u16 = 1;

/// `ac_flag` bit: killed by a signal (`AXSIG`).
pub const AXSIG: u8 = 0x10;

/// What went wrong with delay accounting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelayacctError {
    /// The task has no delay counters (it was not forked with this subsystem on).
    #[error("task {0} has no delay accounting state")]
    NoState(Pid),
    /// A listener queue must hold at least one record.
    #[error("a taskstats listener needs a capacity of at least 1")]
    ZeroCapacity,
}

/// A task's delay counters (the kernel's `struct task_delay_info` plus `sched_info`),
/// in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delays {
    /// Timeslices run.
    pub cpu_count: u64,
    /// Time spent waiting on a run queue.
    pub cpu_delay_total: u64,
    /// Time spent running.
    pub cpu_run_real_total: u64,
    /// Block I/O waits.
    pub blkio_count: u64,
    /// Time spent waiting for block I/O.
    pub blkio_delay_total: u64,
    /// Swap-in waits.
    pub swapin_count: u64,
    /// Time spent waiting for swap-in.
    pub swapin_delay_total: u64,
}

/// The record sent to listeners when a task exits (a subset of `struct taskstats`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taskstats {
    /// [`TASKSTATS_VERSION`].
    pub version: u16,
    /// The exit code, or the signal's number.
    pub ac_exitcode: u32,
    /// Flags: [`AXSIG`].
    pub ac_flag: u8,
    /// The task's pid.
    pub ac_pid: u32,
    /// Its parent's pid.
    pub ac_ppid: u32,
    /// Its thread group id.
    pub ac_tgid: u32,
    /// Its real uid.
    pub ac_uid: u32,
    /// Its real gid.
    pub ac_gid: u32,
    /// Its name.
    pub ac_comm: String,
    /// Microseconds from its creation to its exit.
    pub ac_etime: u64,
    /// Its delays.
    pub delays: Delays,
}

impl fmt::Display for Taskstats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.delays;
        write!(
            f,
            "pid {} ({}) exit {}: cpu {} x {}ns run {}ns wait, blkio {} x {}ns, swapin {} x {}ns",
            self.ac_pid,
            self.ac_comm,
            self.ac_exitcode,
            d.cpu_count,
            d.cpu_run_real_total,
            d.cpu_delay_total,
            d.blkio_count,
            d.blkio_delay_total,
            d.swapin_count,
            d.swapin_delay_total
        )
    }
}

/// A subscription to exit records; dropping it unsubscribes.
#[derive(Debug)]
pub struct Listener {
    queue: Arc<Queue>,
}

#[derive(Debug)]
struct Queue {
    records: Mutex<VecDeque<Taskstats>>,
    capacity: usize,
    dropped: AtomicU64,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Taskstats>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Listener {
    /// The oldest record not read yet.
    pub fn try_recv(&self) -> Option<Taskstats> {
        self.queue.lock().pop_front()
    }

    /// Every record not read yet, oldest first.
    pub fn drain(&self) -> Vec<Taskstats> {
        self.queue.lock().drain(..).collect()
    }

    /// How many records wait to be read.
    pub fn len(&self) -> usize {
        self.queue.lock().len()
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many records were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }
}

/// The delayacct counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayacctStats {
    /// Counters allocated at fork.
    pub allocated: u64,
    /// Counters freed at free.
    pub freed: u64,
    /// Exit records built.
    pub records: u64,
    /// Records queued to listeners (one per listener).
    pub delivered: u64,
    /// Records dropped by full listener queues.
    pub dropped: u64,
    /// Listeners subscribed now.
    pub listeners: usize,
}

impl DelayacctStats {
    /// Counters alive now.
    pub fn live(&self) -> u64 {
        self.allocated - self.freed
    }
}

struct TaskDelays(Mutex<Delays>);

static DELAYS: TaskSlot<TaskDelays> = TaskSlot::new();
static LISTENERS: Mutex<Vec<Weak<Queue>>> = Mutex::new(Vec::new());

static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);
static RECORDS: AtomicU64 = AtomicU64::new(0);
static DELIVERED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn listeners() -> MutexGuard<'static, Vec<Weak<Queue>>> {
    LISTENERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Subscribes to exit records (the taskstats `REGISTER_CPUMASK` command, for every CPU),
/// with a queue of `capacity` records.
///
/// # Errors
/// [`DelayacctError::ZeroCapacity`].
pub fn subscribe(capacity: usize) -> Result<Listener, DelayacctError> {
    if capacity == 0 {
        return Err(DelayacctError::ZeroCapacity);
    }
    let queue = Arc::new(Queue {
        records: Mutex::new(VecDeque::new()),
        capacity,
        dropped: AtomicU64::new(0),
    });
    let mut listeners = listeners();
    listeners.retain(|weak| weak.strong_count() > 0);
    listeners.push(Arc::downgrade(&queue));
    Ok(Listener { queue })
}

fn update(task: &Task, f: impl FnOnce(&mut Delays)) -> Result<(), DelayacctError> {
    let delays = DELAYS
        .get(task)
        .ok_or(DelayacctError::NoState(task.pid()))?;
    f(&mut delays.0.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(())
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// One timeslice: the task waited `wait` on a run queue, then ran for `run`.
///
/// # Errors
/// [`DelayacctError::NoState`].
pub fn record_cpu(task: &Task, run: Duration, wait: Duration) -> Result<(), DelayacctError> {
    update(task, |d| {
        d.cpu_count += 1;
        d.cpu_run_real_total = d.cpu_run_real_total.saturating_add(nanos(run));
        d.cpu_delay_total = d.cpu_delay_total.saturating_add(nanos(wait));
    })
}

/// The task waited `delay` for block I/O.
///
/// # Errors
/// [`DelayacctError::NoState`].
pub fn record_blkio(task: &Task, delay: Duration) -> Result<(), DelayacctError> {
    update(task, |d| {
        d.blkio_count += 1;
        d.blkio_delay_total = d.blkio_delay_total.saturating_add(nanos(delay));
    })
}

/// The task waited `delay` for a page to be swapped in.
///
/// # Errors
/// [`DelayacctError::NoState`].
pub fn record_swapin(task: &Task, delay: Duration) -> Result<(), DelayacctError> {
    update(task, |d| {
        d.swapin_count += 1;
        d.swapin_delay_total = d.swapin_delay_total.saturating_add(nanos(delay));
    })
}

/// The task's delays so far, if it has counters.
pub fn delays(task: &Task) -> Option<Delays> {
    DELAYS
        .get(task)
        .map(|d| *d.0.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The counters.
pub fn stats() -> DelayacctStats {
    DelayacctStats {
        allocated: ALLOCATED.load(Ordering::Relaxed),
        freed: FREED.load(Ordering::Relaxed),
        records: RECORDS.load(Ordering::Relaxed),
        delivered: DELIVERED.load(Ordering::Relaxed),
        dropped: DROPPED.load(Ordering::Relaxed),
        listeners: listeners().iter().filter(|w| w.strong_count() > 0).count(),
    }
}

/// The one-line summary `taskwatch simulate` prints.
pub fn summary() -> String {
    let s = stats();
    format!(
        "{} counters live; {} exit records, {} delivered to {} listeners, {} dropped",
        s.live(),
        s.records,
        s.delivered,
        s.listeners,
        s.dropped
    )
}

/// `fork`: zeroed counters for the child.
///
/// # Errors
/// None in this model; the signature matches the watcher.
pub fn on_fork(_parent: &Task, child: &Task, _flags: CloneFlags) -> Result<(), DelayacctError> {
    ALLOCATED.fetch_add(1, Ordering::Relaxed);
    if DELAYS
        .set(child, TaskDelays(Mutex::new(Delays::default())))
        .is_some()
    {
        FREED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// `exit`: sends the task's [`Taskstats`] to every listener.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_exit(task: &Task, status: ExitStatus) -> Result<(), DelayacctError> {
    let Some(delays) = delays(task) else {
        return Ok(());
    };
    let (exitcode, flag) = match (status.code(), status.signal()) {
        (Some(code), _) => (code as u32, 0),
        (None, Some(signal)) => (signal as u32, AXSIG),
        (None, None) => (status.0 as u32, 0),
    };
    let record = Taskstats {
        version: TASKSTATS_VERSION,
        ac_exitcode: exitcode,
        ac_flag: flag,
        ac_pid: task.pid().get(),
        ac_ppid: task.parent().get(),
        ac_tgid: task.tgid().get(),
        ac_uid: task.uids().real,
        ac_gid: task.gids().real,
        ac_comm: task.comm(),
        ac_etime: u64::try_from(task.started().elapsed().as_micros()).unwrap_or(u64::MAX),
        delays,
    };
    RECORDS.fetch_add(1, Ordering::Relaxed);
    let queues: Vec<Arc<Queue>> = listeners().iter().filter_map(Weak::upgrade).collect();
    for queue in queues {
        let mut records = queue.lock();
        if records.len() >= queue.capacity {
            drop(records);
            queue.dropped.fetch_add(1, Ordering::Relaxed);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        } else {
            records.push_back(record.clone());
            DELIVERED.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// `free`: frees the counters.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_free(task: &Task) -> Result<(), DelayacctError> {
    if DELAYS.take(task).is_some() {
        FREED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

// One watcher per event, as v2's `DEFINE_TASK_INITCALL` / `…EXITCALL` / `…FREECALL`
// (but `fork` and `free`, below): the table calls each only for its own event, so none
// switches over the payload; a `let … else` only names the event's fields.

// `fork` and `free` share a watcher: the table sends a rolled-back fork's `free` to the
// fork watchers that succeeded and asked for `free`, so what `fork` set up is released
// on both paths.
#[task_watcher(events = fork | free, priority = 100)]
fn watch_fork_free(event: &Event<'_>) -> Result<(), DelayacctError> {
    if let EventData::Fork { parent, flags } = *event.data() {
        on_fork(parent, event.task(), flags)
    } else {
        on_free(event.task())
    }
}

#[task_watcher(events = exit, priority = 100)]
fn watch_exit(event: &Event<'_>) -> Result<(), DelayacctError> {
    let EventData::Exit { status } = *event.data() else {
        return Ok(());
    };
    on_exit(event.task(), status)
}

/// The delayacct watchers, one per event (`fork` and `free` together), for an explicit table
/// (the records `#[task_watcher]` submits).
pub fn watchers() -> Vec<Watcher> {
    vec![
        watcher_record!(watch_fork_free),
        watcher_record!(watch_exit),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{serial, table_of};

    #[test]
    fn delays_are_reported_at_exit_and_freed() {
        let _serial = serial();
        let before = stats();
        let listener = subscribe(16).unwrap();
        let tasks = table_of(watchers());
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let task = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        tasks.set_comm(task.pid(), "dd").unwrap();
        record_cpu(&task, Duration::from_micros(5), Duration::from_micros(2)).unwrap();
        record_cpu(&task, Duration::from_micros(5), Duration::from_micros(1)).unwrap();
        record_blkio(&task, Duration::from_millis(3)).unwrap();
        record_swapin(&task, Duration::from_nanos(700)).unwrap();
        tasks.exit(task.pid(), 3).unwrap();
        let record = listener.try_recv().unwrap();
        assert_eq!(
            (record.ac_pid, record.ac_ppid),
            (task.pid().get(), parent.pid().get())
        );
        assert_eq!((record.ac_exitcode, record.ac_flag), (3, 0));
        assert_eq!(record.ac_comm, "dd");
        let d = record.delays;
        assert_eq!(
            (d.cpu_count, d.cpu_run_real_total, d.cpu_delay_total),
            (2, 10_000, 3_000)
        );
        assert_eq!((d.blkio_count, d.blkio_delay_total), (1, 3_000_000));
        assert_eq!((d.swapin_count, d.swapin_delay_total), (1, 700));
        assert!(
            delays(&task).is_some(),
            "a zombie keeps its counters until free"
        );
        tasks
            .exit_with(parent.pid(), ExitStatus::signaled(15))
            .unwrap();
        let record = listener.try_recv().unwrap();
        assert_eq!((record.ac_exitcode, record.ac_flag), (15, AXSIG));
        assert!(delays(&task).is_none());
        assert!(listener.is_empty());
        assert_eq!(stats().live(), before.live());
    }

    #[test]
    fn a_full_listener_drops_and_counts() {
        let _serial = serial();
        let small = subscribe(1).unwrap();
        let big = subscribe(8).unwrap();
        let tasks = table_of(watchers());
        for _ in 0..3 {
            let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
            tasks.exit(task.pid(), 0).unwrap();
        }
        assert_eq!((small.len(), small.dropped()), (1, 2));
        assert_eq!((big.len(), big.dropped()), (3, 0));
        let listeners = stats().listeners;
        drop(small);
        assert_eq!(stats().listeners, listeners - 1);
        assert_eq!(big.drain().len(), 3);
        assert_eq!(subscribe(0).unwrap_err(), DelayacctError::ZeroCapacity);
        assert_eq!(
            record_blkio(tasks.init(), Duration::ZERO),
            Err(DelayacctError::NoState(Pid::INIT))
        );
    }
}
