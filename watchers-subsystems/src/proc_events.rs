//! Process events (`CONFIG_PROC_EVENTS`): every task event published to subscribers in
//! the wire format of the kernel's process-events connector.
//!
//! Each `fork`, `exec`, `uid`, `gid`, `sid`, `comm`, `ptrace`, `coredump` and `exit`
//! becomes one connector message, `struct cn_msg` followed by `struct proc_event`,
//! **byte for byte** as the kernel sends it (native endian), encoded by
//! [`watchers_proc_connector::cn_proc`], the codec the Linux process-events connector source decodes
//! with. So a subscriber here reads exactly what a netlink listener reads on Linux, and
//! [`cn_proc::decode`] reads it back.
//!
//! * **Sequence numbers** are per CPU, as in the kernel (`proc_event_counts`): each
//!   thread publishing events is given one of [`NR_CPUS`] model CPUs, and every message
//!   carries that CPU and the next number of its counter.
//! * **Filters**: each subscriber has a listen/ignore state and an event mask, applied
//!   as the kernel's `cn_filter` applies a socket's `struct proc_input`
//!   ([`ProcEventMask::KERNEL_ALL`] lets everything through; `NONZERO_EXIT` admits exits
//!   with a non-zero code).
//! * **Queues** are bounded: a message for a full queue is dropped and counted as an
//!   overrun (the kernel's `ENOBUFS` on a full socket buffer).
//! * With no subscriber listening, no message is built and no sequence number used (the
//!   kernel checks `proc_event_num_listeners` first).
//!
//! Differences from the kernel, which this model cannot know: a fork reports the
//! forking task as the parent (the kernel reports `real_parent`, the same except for
//! threads); the parent's `tgid` in `exit` and `coredump`, and the tracer's `tgid` in
//! `ptrace`, are the pid the task model records; no ack is queued on subscribing; a
//! fork refused by a watcher that runs after these (see [`PRIORITY`]) was announced all
//! the same, where the kernel announces only forks that can no longer fail.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Instant;

use watchers_core::{
    CloneFlags, Event, EventData, EventKind, EventSet, ExitStatus, Ids, Pid, Task, Watcher,
    task_watcher, watcher_record,
};
use watchers_proc_connector::cn_proc::{
    self, DecodeError, McastOp, ProcEvent, ProcEventMask, ProcMessage,
};

/// The events the proc-events watchers ask for.
pub const EVENTS: EventSet = watcher_record!(watch_fork)
    .events()
    .union(watcher_record!(watch_exec).events())
    .union(watcher_record!(watch_uid).events())
    .union(watcher_record!(watch_gid).events())
    .union(watcher_record!(watch_sid).events())
    .union(watcher_record!(watch_comm).events())
    .union(watcher_record!(watch_ptrace).events())
    .union(watcher_record!(watch_coredump).events())
    .union(watcher_record!(watch_exit).events());

/// The priority all the proc-events watchers share: the lowest of the subsystems, so a fork is
/// announced only once every subsystem accepted it (`proc_fork_connector` is the end of
/// `copy_process`), and an exit is announced first. A watcher that runs later (a lower
/// priority, or a per-task watcher, which runs after the table's) and refuses a fork does
/// so after its announcement: a subscriber then hears of a child that never exits.
pub const PRIORITY: i32 = watcher_record!(watch_fork).priority();

/// How many model CPUs carry sequence counters.
pub const NR_CPUS: usize = 4;

/// `SIGCHLD`, the exit signal of a process.
const SIGCHLD: u32 = 17;

/// What went wrong with a subscription.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProcEventsError {
    /// A subscriber queue must hold at least one message.
    #[error("a proc-events subscriber needs a capacity of at least 1")]
    ZeroCapacity,
}

/// A subscription to process events; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscriber {
    queue: Arc<Queue>,
}

#[derive(Debug)]
struct Queue {
    filter: Mutex<(McastOp, ProcEventMask)>,
    messages: Mutex<VecDeque<Vec<u8>>>,
    capacity: usize,
    overruns: AtomicU64,
    received: AtomicU64,
}

impl Queue {
    fn messages(&self) -> MutexGuard<'_, VecDeque<Vec<u8>>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn filter(&self) -> (McastOp, ProcEventMask) {
        *self.filter.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Subscriber {
    /// The oldest message not read yet: `struct cn_msg` + `struct proc_event` bytes.
    pub fn recv(&self) -> Option<Vec<u8>> {
        self.queue.messages().pop_front()
    }

    /// The oldest message not read yet, decoded with [`cn_proc::decode`].
    pub fn recv_message(&self) -> Option<Result<ProcMessage, DecodeError>> {
        self.recv().map(|bytes| cn_proc::decode(&bytes))
    }

    /// Every message not read yet, oldest first.
    pub fn drain(&self) -> Vec<Vec<u8>> {
        self.queue.messages().drain(..).collect()
    }

    /// How many messages wait to be read.
    pub fn len(&self) -> usize {
        self.queue.messages().len()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many messages were dropped because the queue was full.
    pub fn overruns(&self) -> u64 {
        self.queue.overruns.load(Ordering::Relaxed)
    }

    /// How many messages were queued for it in all.
    pub fn received(&self) -> u64 {
        self.queue.received.load(Ordering::Relaxed)
    }

    /// `PROC_CN_MCAST_LISTEN` with a filter (`struct proc_input`): receive the events of
    /// `events` from now on.
    pub fn listen(&self, events: ProcEventMask) {
        *self.queue.filter.lock().unwrap_or_else(|e| e.into_inner()) = (McastOp::Listen, events);
    }

    /// `PROC_CN_MCAST_IGNORE`: receive nothing until the next [`listen`](Self::listen).
    pub fn ignore(&self) {
        self.queue
            .filter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0 = McastOp::Ignore;
    }
}

/// The proc-events counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcEventsStats {
    /// Events the watcher saw.
    pub events: u64,
    /// Events that became a message (someone was listening).
    pub published: u64,
    /// Events not published because nobody was listening.
    pub unheard: u64,
    /// Messages queued to subscribers.
    pub delivered: u64,
    /// Messages a subscriber's filter kept out.
    pub filtered: u64,
    /// Messages dropped by full subscriber queues.
    pub overruns: u64,
    /// Subscribers now (listening or not).
    pub subscribers: usize,
    /// Messages published per event kind (indexed by [`EventKind::index`]).
    pub published_by_kind: [u64; EventKind::COUNT],
}

static SUBSCRIBERS: Mutex<Vec<Weak<Queue>>> = Mutex::new(Vec::new());
static SEQUENCES: [AtomicU32; NR_CPUS] = [const { AtomicU32::new(0) }; NR_CPUS];
static NEXT_CPU: AtomicUsize = AtomicUsize::new(0);
static BOOT: LazyLock<Instant> = LazyLock::new(Instant::now);

static EVENTS_SEEN: AtomicU64 = AtomicU64::new(0);
static PUBLISHED: AtomicU64 = AtomicU64::new(0);
static UNHEARD: AtomicU64 = AtomicU64::new(0);
static DELIVERED: AtomicU64 = AtomicU64::new(0);
static FILTERED: AtomicU64 = AtomicU64::new(0);
static OVERRUNS: AtomicU64 = AtomicU64::new(0);
static BY_KIND: [AtomicU64; EventKind::COUNT] = [const { AtomicU64::new(0) }; EventKind::COUNT];

thread_local! {
    /// The model CPU this thread publishes on.
    static CPU: u32 = (NEXT_CPU.fetch_add(1, Ordering::Relaxed) % NR_CPUS) as u32;
}

fn subscribers() -> MutexGuard<'static, Vec<Weak<Queue>>> {
    SUBSCRIBERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Subscribes with the filter `events` (use [`ProcEventMask::KERNEL_ALL`] for every
/// event) and a queue of `capacity` messages.
///
/// # Errors
/// [`ProcEventsError::ZeroCapacity`].
pub fn subscribe(events: ProcEventMask, capacity: usize) -> Result<Subscriber, ProcEventsError> {
    if capacity == 0 {
        return Err(ProcEventsError::ZeroCapacity);
    }
    let queue = Arc::new(Queue {
        filter: Mutex::new((McastOp::Listen, events)),
        messages: Mutex::new(VecDeque::new()),
        capacity,
        overruns: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    let mut subscribers = subscribers();
    subscribers.retain(|weak| weak.strong_count() > 0);
    subscribers.push(Arc::downgrade(&queue));
    Ok(Subscriber { queue })
}

/// Whether a socket with this filter receives a message (the kernel's `cn_filter`).
pub fn filter_admits(op: McastOp, events: ProcEventMask, what: u32, exit_code: u32) -> bool {
    if op == McastOp::Ignore {
        return false;
    }
    if events == ProcEventMask::KERNEL_ALL {
        return true;
    }
    if events.0 & cn_proc::what::NONZERO_EXIT != 0 && what == cn_proc::what::EXIT && exit_code != 0
    {
        return true;
    }
    events.0 & what != 0
}

/// The counters.
pub fn stats() -> ProcEventsStats {
    ProcEventsStats {
        events: EVENTS_SEEN.load(Ordering::Relaxed),
        published: PUBLISHED.load(Ordering::Relaxed),
        unheard: UNHEARD.load(Ordering::Relaxed),
        delivered: DELIVERED.load(Ordering::Relaxed),
        filtered: FILTERED.load(Ordering::Relaxed),
        overruns: OVERRUNS.load(Ordering::Relaxed),
        subscribers: subscribers()
            .iter()
            .filter(|w| w.strong_count() > 0)
            .count(),
        published_by_kind: std::array::from_fn(|i| BY_KIND[i].load(Ordering::Relaxed)),
    }
}

/// The one-line summary `taskwatch simulate` prints.
pub fn summary() -> String {
    let s = stats();
    format!(
        "{} messages published ({} unheard), {} delivered to {} subscribers, {} filtered, {} dropped (overrun)",
        s.published, s.unheard, s.delivered, s.subscribers, s.filtered, s.overruns
    )
}

fn pid(pid: Pid) -> i32 {
    i32::try_from(pid.get()).unwrap_or(i32::MAX)
}

/// Encodes and delivers one event.
fn publish(kind: EventKind, event: ProcEvent) {
    EVENTS_SEEN.fetch_add(1, Ordering::Relaxed);
    let queues: Vec<Arc<Queue>> = subscribers().iter().filter_map(Weak::upgrade).collect();
    let listening: Vec<(Arc<Queue>, (McastOp, ProcEventMask))> = queues
        .into_iter()
        .map(|queue| {
            let filter = queue.filter();
            (queue, filter)
        })
        .filter(|(_, (op, _))| *op == McastOp::Listen)
        .collect();
    if listening.is_empty() {
        UNHEARD.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let cpu = CPU.with(|cpu| *cpu);
    let seq = SEQUENCES[cpu as usize].fetch_add(1, Ordering::Relaxed);
    let timestamp = u64::try_from(BOOT.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let bytes = cn_proc::encode(&event, seq, cpu, timestamp);
    PUBLISHED.fetch_add(1, Ordering::Relaxed);
    BY_KIND[kind.index()].fetch_add(1, Ordering::Relaxed);
    let exit_code = match event {
        ProcEvent::Exit { exit_code, .. } => exit_code,
        _ => 0,
    };
    for (queue, (op, mask)) in listening {
        if !filter_admits(op, mask, event.what(), exit_code) {
            FILTERED.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut messages = queue.messages();
        if messages.len() >= queue.capacity {
            drop(messages);
            queue.overruns.fetch_add(1, Ordering::Relaxed);
            OVERRUNS.fetch_add(1, Ordering::Relaxed);
        } else {
            messages.push_back(bytes.clone());
            drop(messages);
            queue.received.fetch_add(1, Ordering::Relaxed);
            DELIVERED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `fork`: `PROC_EVENT_FORK`.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_fork(parent: &Task, child: &Task, _flags: CloneFlags) -> Result<(), ProcEventsError> {
    publish(
        EventKind::Fork,
        ProcEvent::Fork {
            parent_pid: pid(parent.pid()),
            parent_tgid: pid(parent.tgid()),
            child_pid: pid(child.pid()),
            child_tgid: pid(child.tgid()),
        },
    );
    Ok(())
}

/// `exec`: `PROC_EVENT_EXEC`.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_exec(task: &Task, _filename: &str) -> Result<(), ProcEventsError> {
    publish(
        EventKind::Exec,
        ProcEvent::Exec {
            pid: pid(task.pid()),
            tgid: pid(task.tgid()),
        },
    );
    Ok(())
}

/// `uid`: `PROC_EVENT_UID` with the new real and effective uids.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_uid(task: &Task, _old: Ids, new: Ids) -> Result<(), ProcEventsError> {
    publish(
        EventKind::Uid,
        ProcEvent::Uid {
            pid: pid(task.pid()),
            tgid: pid(task.tgid()),
            ruid: new.real,
            euid: new.effective,
        },
    );
    Ok(())
}

/// `gid`: `PROC_EVENT_GID` with the new real and effective gids.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_gid(task: &Task, _old: Ids, new: Ids) -> Result<(), ProcEventsError> {
    publish(
        EventKind::Gid,
        ProcEvent::Gid {
            pid: pid(task.pid()),
            tgid: pid(task.tgid()),
            rgid: new.real,
            egid: new.effective,
        },
    );
    Ok(())
}

/// `sid`: `PROC_EVENT_SID`.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_sid(task: &Task, _sid: Pid) -> Result<(), ProcEventsError> {
    publish(
        EventKind::Sid,
        ProcEvent::Sid {
            pid: pid(task.pid()),
            tgid: pid(task.tgid()),
        },
    );
    Ok(())
}

/// `comm`: `PROC_EVENT_COMM` with the new name.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_comm(task: &Task, _old: &str, new: &str) -> Result<(), ProcEventsError> {
    publish(
        EventKind::Comm,
        ProcEvent::Comm {
            pid: pid(task.pid()),
            tgid: pid(task.tgid()),
            comm: cn_proc::comm_bytes(new),
        },
    );
    Ok(())
}

/// `ptrace`: `PROC_EVENT_PTRACE` (tracer 0 on detach).
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_ptrace(task: &Task, tracer: Option<Pid>) -> Result<(), ProcEventsError> {
    let tracer = tracer.map_or(0, pid);
    publish(
        EventKind::Ptrace,
        ProcEvent::Ptrace {
            pid: pid(task.pid()),
            tgid: pid(task.tgid()),
            tracer_pid: tracer,
            tracer_tgid: tracer,
        },
    );
    Ok(())
}

/// `coredump`: `PROC_EVENT_COREDUMP`.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_coredump(task: &Task, _signal: i32) -> Result<(), ProcEventsError> {
    let parent = pid(task.parent());
    publish(
        EventKind::Coredump,
        ProcEvent::Coredump {
            pid: pid(task.pid()),
            tgid: pid(task.tgid()),
            parent_pid: parent,
            parent_tgid: parent,
        },
    );
    Ok(())
}

/// `exit`: `PROC_EVENT_EXIT` with the status in the `wait(2)` encoding and the exit
/// signal (`SIGCHLD` for a process, `-1` for a thread).
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_exit(task: &Task, status: ExitStatus) -> Result<(), ProcEventsError> {
    let parent = pid(task.parent());
    publish(
        EventKind::Exit,
        ProcEvent::Exit {
            pid: pid(task.pid()),
            tgid: pid(task.tgid()),
            exit_code: status.0 as u32,
            exit_signal: if task.is_thread() { u32::MAX } else { SIGCHLD },
            parent_pid: parent,
            parent_tgid: parent,
        },
    );
    Ok(())
}

// One watcher per event, as v2's `DEFINE_TASK_INITCALL` / `…EXITCALL` / `…FREECALL`
// (but `fork` and `free`, below): the table calls each only for its own event, so none
// switches over the payload; a `let … else` only names the event's fields.
#[task_watcher(events = fork, priority = -100)]
fn watch_fork(event: &Event<'_>) -> Result<(), ProcEventsError> {
    let EventData::Fork { parent, flags } = *event.data() else {
        return Ok(());
    };
    on_fork(parent, event.task(), flags)
}

#[task_watcher(events = exec, priority = -100)]
fn watch_exec(event: &Event<'_>) -> Result<(), ProcEventsError> {
    let EventData::Exec { filename } = *event.data() else {
        return Ok(());
    };
    on_exec(event.task(), filename)
}

#[task_watcher(events = uid, priority = -100)]
fn watch_uid(event: &Event<'_>) -> Result<(), ProcEventsError> {
    let EventData::Uid { old, new } = *event.data() else {
        return Ok(());
    };
    on_uid(event.task(), old, new)
}

#[task_watcher(events = gid, priority = -100)]
fn watch_gid(event: &Event<'_>) -> Result<(), ProcEventsError> {
    let EventData::Gid { old, new } = *event.data() else {
        return Ok(());
    };
    on_gid(event.task(), old, new)
}

#[task_watcher(events = sid, priority = -100)]
fn watch_sid(event: &Event<'_>) -> Result<(), ProcEventsError> {
    let EventData::Sid { sid } = *event.data() else {
        return Ok(());
    };
    on_sid(event.task(), sid)
}

#[task_watcher(events = comm, priority = -100)]
fn watch_comm(event: &Event<'_>) -> Result<(), ProcEventsError> {
    let EventData::Comm { old, new } = *event.data() else {
        return Ok(());
    };
    on_comm(event.task(), old, new)
}

#[task_watcher(events = ptrace, priority = -100)]
fn watch_ptrace(event: &Event<'_>) -> Result<(), ProcEventsError> {
    let EventData::Ptrace { tracer } = *event.data() else {
        return Ok(());
    };
    on_ptrace(event.task(), tracer)
}

#[task_watcher(events = coredump, priority = -100)]
fn watch_coredump(event: &Event<'_>) -> Result<(), ProcEventsError> {
    let EventData::Coredump { signal } = *event.data() else {
        return Ok(());
    };
    on_coredump(event.task(), signal)
}

#[task_watcher(events = exit, priority = -100)]
fn watch_exit(event: &Event<'_>) -> Result<(), ProcEventsError> {
    let EventData::Exit { status } = *event.data() else {
        return Ok(());
    };
    on_exit(event.task(), status)
}

/// The proc-events watchers, one per event (`fork` and `free` together), for an explicit table
/// (the records `#[task_watcher]` submits).
pub fn watchers() -> Vec<Watcher> {
    vec![
        watcher_record!(watch_fork),
        watcher_record!(watch_exec),
        watcher_record!(watch_uid),
        watcher_record!(watch_gid),
        watcher_record!(watch_sid),
        watcher_record!(watch_comm),
        watcher_record!(watch_ptrace),
        watcher_record!(watch_coredump),
        watcher_record!(watch_exit),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{serial, table_of};
    use watchers_proc_connector::cn_proc::{CN_MSG_HEADER_LEN, PROC_EVENT_LEN, what};

    fn events(subscriber: &Subscriber) -> Vec<ProcEvent> {
        std::iter::from_fn(|| subscriber.recv_message())
            .map(|m| m.unwrap().event)
            .collect()
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn a_fork_is_encoded_byte_for_byte() {
        let _serial = serial();
        let all = subscribe(ProcEventMask::KERNEL_ALL, 16).unwrap();
        let tasks = table_of(watchers());
        let child = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let bytes = all.recv().unwrap();
        assert_eq!(bytes.len(), CN_MSG_HEADER_LEN + PROC_EVENT_LEN);
        // struct cn_msg: id {1, 1}, seq, ack 0, len 40, flags 0.
        assert_eq!((u32_at(&bytes, 0), u32_at(&bytes, 4)), (1, 1));
        assert_eq!(u32_at(&bytes, 12), 0);
        assert_eq!(u16::from_ne_bytes([bytes[16], bytes[17]]), 40);
        // struct proc_event: what, cpu, timestamp, then fork {ppid, ptgid, pid, tgid}.
        let event = &bytes[CN_MSG_HEADER_LEN..];
        assert_eq!(u32_at(event, 0), what::FORK);
        assert!((u32_at(event, 4) as usize) < NR_CPUS);
        let child_pid = child.pid().get();
        assert_eq!(
            [16, 20, 24, 28].map(|at| u32_at(event, at)),
            [1, 1, child_pid, child_pid]
        );
        assert!(
            event[32..].iter().all(|&b| b == 0),
            "the rest of the union is zero"
        );
        let message = cn_proc::decode(&bytes).unwrap();
        assert_eq!(message.header.seq, u32_at(&bytes, 8));
        tasks.exit(child.pid(), 0).unwrap();
    }

    #[test]
    fn every_kind_is_published_with_its_fields() {
        let _serial = serial();
        let all = subscribe(ProcEventMask::KERNEL_ALL, 64).unwrap();
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let thread = tasks.fork(task.pid(), CloneFlags::THREAD).unwrap();
        let (p, t) = (task.pid().get() as i32, thread.pid().get() as i32);
        tasks.exec(task.pid(), "/bin/ls").unwrap();
        tasks.setresuid(task.pid(), Some(5), Some(6), None).unwrap();
        tasks.setgid(task.pid(), 7).unwrap();
        tasks.setsid(task.pid()).unwrap();
        tasks.set_comm(thread.pid(), "worker").unwrap();
        tasks.ptrace(task.pid(), Some(Pid::INIT)).unwrap();
        tasks.coredump(task.pid(), 11).unwrap();
        tasks.exit(thread.pid(), 0).unwrap();
        tasks
            .exit_with(task.pid(), ExitStatus::signaled(11))
            .unwrap();
        let got = events(&all);
        let expected = [
            ProcEvent::Fork {
                parent_pid: 1,
                parent_tgid: 1,
                child_pid: p,
                child_tgid: p,
            },
            ProcEvent::Fork {
                parent_pid: p,
                parent_tgid: p,
                child_pid: t,
                child_tgid: p,
            },
            ProcEvent::Exec { pid: p, tgid: p },
            ProcEvent::Uid {
                pid: p,
                tgid: p,
                ruid: 5,
                euid: 6,
            },
            ProcEvent::Gid {
                pid: p,
                tgid: p,
                rgid: 7,
                egid: 7,
            },
            ProcEvent::Sid { pid: p, tgid: p },
            ProcEvent::Comm {
                pid: t,
                tgid: p,
                comm: cn_proc::comm_bytes("worker"),
            },
            ProcEvent::Ptrace {
                pid: p,
                tgid: p,
                tracer_pid: 1,
                tracer_tgid: 1,
            },
            ProcEvent::Coredump {
                pid: p,
                tgid: p,
                parent_pid: 1,
                parent_tgid: 1,
            },
            ProcEvent::Exit {
                pid: t,
                tgid: p,
                exit_code: 0,
                exit_signal: u32::MAX,
                parent_pid: 1,
                parent_tgid: 1,
            },
            ProcEvent::Exit {
                pid: p,
                tgid: p,
                exit_code: 11,
                exit_signal: 17,
                parent_pid: 1,
                parent_tgid: 1,
            },
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn filters_follow_the_kernels_proc_input_rules() {
        let _serial = serial();
        let exits = subscribe(ProcEventMask(what::EXIT), 16).unwrap();
        let failures = subscribe(ProcEventMask(what::NONZERO_EXIT), 16).unwrap();
        let forks_and_execs = subscribe(ProcEventMask(what::FORK | what::EXEC), 16).unwrap();
        let ignoring = subscribe(ProcEventMask::KERNEL_ALL, 16).unwrap();
        ignoring.ignore();
        let before = stats();
        let tasks = table_of(watchers());
        let ok = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let bad = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        tasks.exec(ok.pid(), "/bin/true").unwrap();
        tasks.exit(ok.pid(), 0).unwrap();
        tasks.exit(bad.pid(), 1).unwrap();
        let kinds = |s: &Subscriber| -> Vec<u32> { events(s).iter().map(|e| e.what()).collect() };
        assert_eq!(kinds(&exits), [what::EXIT, what::EXIT]);
        assert_eq!(
            events(&failures),
            [ProcEvent::Exit {
                pid: bad.pid().get() as i32,
                tgid: bad.pid().get() as i32,
                exit_code: 1 << 8,
                exit_signal: 17,
                parent_pid: 1,
                parent_tgid: 1,
            }]
        );
        assert_eq!(
            kinds(&forks_and_execs),
            [what::FORK, what::FORK, what::EXEC]
        );
        assert!(ignoring.is_empty());
        let after = stats();
        assert_eq!(after.published - before.published, 5);
        assert_eq!(after.delivered - before.delivered, 2 + 1 + 3);
        assert_eq!(after.filtered - before.filtered, 3 + 4 + 2);
        ignoring.listen(ProcEventMask(what::SID));
        assert!(filter_admits(
            McastOp::Listen,
            ProcEventMask::KERNEL_ALL,
            what::COMM,
            0
        ));
        assert!(!filter_admits(
            McastOp::Ignore,
            ProcEventMask::KERNEL_ALL,
            what::COMM,
            0
        ));
    }

    #[test]
    fn full_queues_count_overruns_and_sequences_are_per_cpu() {
        let _serial = serial();
        let small = subscribe(ProcEventMask::KERNEL_ALL, 2).unwrap();
        let big = subscribe(ProcEventMask::KERNEL_ALL, 100).unwrap();
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        for i in 0..5 {
            tasks.set_comm(task.pid(), &format!("n{i}")).unwrap();
        }
        tasks.exit(task.pid(), 0).unwrap();
        assert_eq!((small.len(), small.overruns(), small.received()), (2, 5, 2));
        let messages: Vec<ProcMessage> = big
            .drain()
            .iter()
            .map(|bytes| cn_proc::decode(bytes).unwrap())
            .collect();
        assert_eq!(messages.len(), 7);
        // One thread, one CPU: consecutive numbers on that CPU's counter.
        assert!(messages.iter().all(|m| m.cpu == messages[0].cpu));
        assert!(
            messages
                .windows(2)
                .all(|w| w[1].header.seq == w[0].header.seq + 1)
        );
        assert!(
            messages
                .windows(2)
                .all(|w| w[1].timestamp_ns >= w[0].timestamp_ns)
        );
        assert_eq!(
            subscribe(ProcEventMask::ALL, 0).unwrap_err(),
            ProcEventsError::ZeroCapacity
        );
    }

    #[test]
    fn nothing_is_built_without_listeners() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let lonely = subscribe(ProcEventMask::KERNEL_ALL, 4).unwrap();
        lonely.ignore();
        let before = stats();
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        tasks.exit(task.pid(), 0).unwrap();
        let after = stats();
        assert_eq!(after.unheard - before.unheard, 2);
        assert_eq!(after.published, before.published);
    }
}
