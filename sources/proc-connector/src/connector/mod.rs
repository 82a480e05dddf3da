//! The kernel's process-events connector as an event source (Linux only).
//!
//! [`ProcConnector`] subscribes to the connector (netlink `NETLINK_CONNECTOR`, group
//! `CN_IDX_PROC`), keeps a mirror [`TaskTable`] of every task on the machine (seeded
//! from `/proc`), and dispatches each real event through the mirror's
//! [`WatcherTable`], so every watcher runs on real processes.
//!
//! ```no_run
//! use watchers_proc_connector::{Options, ProcConnector, Report};
//! use watchers_core::{EventSet, WatcherTable};
//!
//! let table = std::sync::Arc::new(WatcherTable::from_watchers([])?);
//! let _exits = table
//!     .watcher("example::exits", EventSet::EXIT)
//!     .register(|event| {
//!         println!("{} exited: {:?}", event.task().pid(), event.data());
//!         Ok::<(), std::convert::Infallible>(())
//!     })?;
//! let mut source = ProcConnector::open(table.clone(), Options::default())?;
//! println!("subscription: {}", source.mode());
//! let stop = source.stop_handle();
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_secs(5));
//!     stop.stop();
//! });
//! for report in source.reports() {
//!     match report? {
//!         Report::Lost(loss) => eprintln!("lost events: {loss:?}"),
//!         Report::WatcherPanicked(failure) => eprintln!("{failure}"),
//!         _ => {}
//!     }
//! }
//! println!("{:?}", source.counters());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it guarantees (after keepalived's `track_process.c`)
//!
//! * **Only the kernel is believed.** A datagram whose sender port (from `recvmsg`'s
//!   address, not the header) is not 0, or whose connector id is not
//!   `CN_IDX_PROC`/`CN_VAL_PROC`, is counted as rejected and never dispatched.
//! * **Bounds-checked decoding** through [`cn_proc`]: several netlink
//!   messages per datagram, `NLMSG_NOOP`/`ERROR`/`OVERRUN` handled, truncated, oversized
//!   or unknown events counted as decode errors.
//! * **The subscription is acknowledged.** The kernel answers a subscribe with a
//!   `PROC_EVENT_NONE` message whose `cn_msg.ack` is the request's plus one and whose
//!   error is 0. The kernel drops that answer for a socket whose filter is not "all
//!   events", so the filtered form is probed by first asking for every event through
//!   `struct proc_input` (answered only by kernels that understand it, 6.6+), then
//!   narrowing the filter to the events the table wants ([`SubscriptionMode`]). Older
//!   kernels ignore the probe; the source then subscribes with the plain form and drops
//!   the unwanted events itself. If the wanted events change (a runtime watcher comes),
//!   the filter follows.
//! * **Loss is detected and repaired.** `ENOBUFS` (and `NLMSG_OVERRUN`) and, when the
//!   kernel sends every event, gaps in the per-CPU sequence numbers are counted and
//!   reported ([`Report::Lost`]); the receive buffer grows (`SO_RCVBUFFORCE`, else
//!   `SO_RCVBUF`) up to [`Options::max_receive_buffer`], and once the queue is drained
//!   the mirror is resynchronised from `/proc`: a mirrored task whose pid now belongs to
//!   another task (another thread group, or a later start time in `/proc/<pid>/stat`)
//!   is replaced; the events queued during the scan are applied (so a task that exits
//!   meanwhile keeps its real status); tasks still missing then get `exit` (status
//!   unknown, 0) and `free`; new ones are announced with `fork`. With a kernel filter
//!   the sequence numbers also count the events filtered out, so there only `ENOBUFS`
//!   reveals loss, and [`Counters::lost`] is a lower bound (one per overrun).
//! * **A fork cannot be vetoed:** the kernel already forked. Forks reach the watchers
//!   through [`WatcherTable::notify`]; a failing watcher is reported, not obeyed.
//! * **A panicking watcher** is caught per event, counted and reported with its
//!   message ([`Report::WatcherPanicked`]), and the source goes on. (The panic hook
//!   still prints it; a program may install its own.)
//!
//! # The mirror
//!
//! * Every task of the machine, threads included, read from `/proc/<pid>/task/*/status`
//!   at start and announced to the `fork` watchers (parents before children).
//! * `fork`: the child starts with its parent's ids, session and name; a thread
//!   (`pid != tgid`) is announced with its group leader as the parent and
//!   [`CloneFlags::THREAD`](watchers_core::CloneFlags::THREAD) (and the other `pthread_create`
//!   flags). A fork event for a task already mirrored is a duplicate (the task was
//!   found in `/proc` after it forked) unless it is newer than the mirrored task, which
//!   means the pid was reused and the old task's exit was lost: the old one is removed.
//! * An event about a pid whose exit was seen earlier proves a live task has it again: a
//!   reused pid, or a thread that exec'd and took over its exited leader's pid (the
//!   kernel's `de_thread`), which is adopted again from `/proc` with its start time.
//! * `exec`: the name is re-read from `/proc/<pid>/comm` and the watchers get the
//!   command line from `/proc/<pid>/cmdline` as
//!   [`EventData::Exec::filename`](watchers_core::EventData::Exec) — or `""` when it cannot be
//!   read (the process is already gone, or it is a kernel thread): unknown, not an
//!   error. The command line is read only when some watcher (or
//!   [`Options::extra_events`]) wants `exec`.
//! * `uid`/`gid`: the real and effective ids come from the event, the saved and
//!   filesystem ids from `/proc` when it agrees. `sid`, `comm`, `ptrace` update the task;
//!   `coredump` carries signal 0 (the kernel does not say; the exit status does).
//! * `exit`: `exit` then `free` at once, for every task: real tasks are reaped by
//!   parents the mirror does not model. An exit older than the mirrored task's start
//!   is about an earlier task with that pid (a resync found the new one while the old
//!   one's exit was still queued): counted in [`Counters::unknown`], the task stays.
//! * **Tasks unknown to the mirror** (forked before the seed, or whose fork was lost)
//!   are adopted lazily from `/proc` when an event other than `exit` concerns them;
//!   if `/proc` no longer has them, or shows under their pid a task that started after
//!   the event (the pid was reused), the event is counted in [`Counters::unknown`] and
//!   not dispatched. An `exit` of an unknown task is counted the same way.

mod mirror;
mod procfs;
mod sys;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cn_proc::{
    self, DecodeError, McastOp, ProcEvent, ProcEventMask, netlink, netlink_messages,
};
use watchers_core::{EventKind, EventSet, Ids, TableRef, Task, TaskTable, WatcherTable};

use mirror::Mirror;
use sys::{NetlinkSocket, Received};

/// How the source is subscribed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionMode {
    /// The kernel filters (`struct proc_input`, Linux 6.6+): only the events in `mask`
    /// are sent to this socket. Loss is seen through `ENOBUFS` only.
    KernelFiltered {
        /// The events asked for.
        mask: ProcEventMask,
    },
    /// The kernel sends every event; those the table does not want still update the
    /// mirror, and dispatching them costs nothing. Loss is also seen in the per-CPU
    /// sequence numbers, exactly.
    AllEvents {
        /// Why not filtered in the kernel.
        reason: AllEventsReason,
    },
}

/// Why the kernel sends every event ([`SubscriptionMode::AllEvents`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllEventsReason {
    /// Asked for: [`Options::kernel_filter`] is off, or every event is wanted.
    Requested,
    /// The filtered subscribe was not acknowledged: a kernel older than 6.6.
    FilterUnsupported,
    /// The kernel answered the filtered subscribe with this errno.
    FilterRefused(u32),
}

impl SubscriptionMode {
    /// Whether per-CPU sequence gaps mean lost events in this mode.
    pub const fn tracks_sequence(&self) -> bool {
        matches!(self, SubscriptionMode::AllEvents { .. })
    }
}

impl fmt::Display for SubscriptionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionMode::KernelFiltered { mask } => {
                write!(f, "kernel-filtered ({})", mask.event_set())
            }
            SubscriptionMode::AllEvents { reason } => {
                f.write_str("all events, filtered in user space")?;
                match reason {
                    AllEventsReason::Requested => Ok(()),
                    AllEventsReason::FilterUnsupported => {
                        f.write_str(" (the kernel ignored the filtered subscribe: older than 6.6)")
                    }
                    AllEventsReason::FilterRefused(errno) => {
                        write!(f, " (the kernel refused the filter: errno {errno})")
                    }
                }
            }
        }
    }
}

/// How to open a [`ProcConnector`].
#[derive(Clone, Debug)]
pub struct Options {
    /// The receive buffer to ask for (default 8 MiB; `SO_RCVBUFFORCE` when permitted,
    /// else `SO_RCVBUF`, which `net.core.rmem_max` caps).
    pub receive_buffer: usize,
    /// How far the buffer may grow after losses (default 64 MiB).
    pub max_receive_buffer: usize,
    /// Ask the kernel to filter (default on); see [`SubscriptionMode`].
    pub kernel_filter: bool,
    /// Events to receive beyond what the table's watchers want (`fork` and `exit` are
    /// always received: the mirror needs them).
    pub extra_events: EventSet,
    /// How long a receive waits before the loop checks the stop flag (default 100 ms).
    pub read_timeout: Duration,
    /// How long to wait for each subscription acknowledgement (default 500 ms;
    /// `Duration::MAX` waits without limit). With [`kernel_filter`](Self::kernel_filter)
    /// on, a kernel older than 6.6 never acknowledges the filtered subscribe: only this
    /// timeout tells it apart ([`AllEventsReason::FilterUnsupported`]), so there
    /// `Duration::MAX` makes opening wait for ever; turn the filter off with it.
    pub ack_timeout: Duration,
    /// The longest a resync waits for the receive queue to drain after a loss
    /// (default 500 ms).
    pub resync_delay: Duration,
    /// Seed the mirror from `/proc` (default on). Without a seed, tasks are adopted
    /// lazily as their events come.
    pub seed: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            receive_buffer: 8 << 20,
            max_receive_buffer: 64 << 20,
            kernel_filter: true,
            extra_events: EventSet::EMPTY,
            read_timeout: Duration::from_millis(100),
            ack_timeout: Duration::from_millis(500),
            resync_delay: Duration::from_millis(500),
            seed: true,
        }
    }
}

/// Why the source could not be opened or stopped working.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The kernel has no connector, or no process events.
    #[error(
        "the kernel has no process-events connector (CONFIG_CONNECTOR and CONFIG_PROC_EVENTS are needed): {0}"
    )]
    Unsupported(#[source] io::Error),
    /// Not allowed: the kernel (or a security module) lets only privileged processes
    /// (`CAP_NET_ADMIN`) listen to process events.
    #[error(
        "permission denied: this system lets only privileged processes (CAP_NET_ADMIN, e.g. root) listen to process events: {0}"
    )]
    PermissionDenied(#[source] io::Error),
    /// No acknowledgement came.
    #[error(
        "the kernel did not acknowledge the process-events subscription within {0:?} (it answers only the initial user and pid namespaces)"
    )]
    NotAcknowledged(Duration),
    /// The kernel refused the subscription.
    #[error("the kernel refused the process-events subscription: {}", io::Error::from_raw_os_error(*.0 as i32))]
    Refused(u32),
    /// A socket call failed.
    #[error("{operation}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `/proc` could not be read.
    #[error("cannot read /proc: {0}")]
    Proc(#[source] io::Error),
}

impl ConnectorError {
    fn classify(operation: &'static str, source: io::Error) -> ConnectorError {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => ConnectorError::PermissionDenied(source),
            Some(
                libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT | libc::ENOENT | libc::ESOCKTNOSUPPORT,
            ) => ConnectorError::Unsupported(source),
            _ => ConnectorError::Io { operation, source },
        }
    }

    /// Whether this machine or this process cannot use the connector at all (no
    /// support, no permission, not acknowledged): a reason to skip, not a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ConnectorError::Unsupported(_)
                | ConnectorError::PermissionDenied(_)
                | ConnectorError::NotAcknowledged(_)
                | ConnectorError::Refused(_)
        )
    }
}

/// What the source has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Process-event messages accepted from the kernel (acknowledgements included).
    pub received: u64,
    /// Events applied to the mirror and dispatched.
    pub dispatched: u64,
    /// Messages not from the kernel, with a foreign connector id, or of an unexpected
    /// netlink type: never dispatched.
    pub rejected: u64,
    /// Kernel messages that could not be decoded (truncated, oversized, unknown).
    pub decode_errors: u64,
    /// Events lost. When the kernel sends every event, exact once a message from each
    /// CPU followed the loss (sequence gaps); until then, and with a kernel filter, a
    /// lower bound: one per overrun.
    pub lost: u64,
    /// `ENOBUFS` / `NLMSG_OVERRUN` occurrences.
    pub overruns: u64,
    /// Resynchronisations of the mirror from `/proc`.
    pub resyncs: u64,
    /// Watcher calls that returned an error.
    pub watcher_errors: u64,
    /// Events on which a watcher panicked.
    pub watcher_panics: u64,
    /// Events about tasks neither in the mirror nor in `/proc`: not dispatched.
    pub unknown: u64,
    /// Tasks adopted from `/proc` when an event named them (not seeded, fork lost).
    pub adopted_late: u64,
    /// Fork events for tasks already mirrored (seeded after they forked).
    pub duplicates: u64,
    /// Mirrored tasks replaced because their pid was reused (exit lost).
    pub stale: u64,
    /// Subscription acknowledgements seen (ours and other listeners').
    pub acks: u64,
}

#[derive(Default)]
pub(crate) struct AtomicCounters {
    received: AtomicU64,
    dispatched: AtomicU64,
    rejected: AtomicU64,
    decode_errors: AtomicU64,
    lost: AtomicU64,
    overruns: AtomicU64,
    resyncs: AtomicU64,
    watcher_errors: AtomicU64,
    watcher_panics: AtomicU64,
    unknown: AtomicU64,
    adopted_late: AtomicU64,
    duplicates: AtomicU64,
    stale: AtomicU64,
    acks: AtomicU64,
}

impl AtomicCounters {
    fn snapshot(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            received: get(&self.received),
            dispatched: get(&self.dispatched),
            rejected: get(&self.rejected),
            decode_errors: get(&self.decode_errors),
            lost: get(&self.lost),
            overruns: get(&self.overruns),
            resyncs: get(&self.resyncs),
            watcher_errors: get(&self.watcher_errors),
            watcher_panics: get(&self.watcher_panics),
            unknown: get(&self.unknown),
            adopted_late: get(&self.adopted_late),
            duplicates: get(&self.duplicates),
            stale: get(&self.stale),
            acks: get(&self.acks),
        }
    }

    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// Reads a source's counters from another thread.
#[derive(Clone)]
pub struct CounterHandle(Arc<AtomicCounters>);

impl CounterHandle {
    /// The counters now.
    pub fn get(&self) -> Counters {
        self.0.snapshot()
    }
}

impl fmt::Debug for CounterHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// Stops a running source from any thread (it notices within
/// [`Options::read_timeout`]).
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the source to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What happened to one kernel event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Applied to the mirror and dispatched.
    Applied,
    /// The task was unknown, adopted from `/proc` (announced by `fork`), then the event
    /// was applied and dispatched.
    AdoptedLate,
    /// A fork of a task already mirrored: nothing dispatched.
    Duplicate,
    /// About a task neither mirrored nor in `/proc`: nothing dispatched.
    UnknownTask,
    /// An acknowledgement: nothing to apply.
    Ignored,
}

/// A change an event made, as the mirror saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// User ids, before and after.
    Uids {
        /// Before.
        old: Ids,
        /// After.
        new: Ids,
    },
    /// Group ids, before and after.
    Gids {
        /// Before.
        old: Ids,
        /// After.
        new: Ids,
    },
    /// The name, before and after.
    Comm {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
}

/// One kernel event, after it went through the mirror.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The kernel's per-CPU sequence number.
    pub seq: u32,
    /// The CPU it happened on.
    pub cpu: u32,
    /// When, in nanoseconds since boot (`CLOCK_MONOTONIC`).
    pub timestamp_ns: u64,
    /// The event as the kernel sent it.
    pub event: ProcEvent,
    /// The mirrored task it concerns (the child of a fork; for an exit, the task just
    /// freed), if known.
    pub task: Option<Arc<Task>>,
    /// For a fork: the task the child was copied from (its parent process, or its
    /// group leader for a thread).
    pub parent: Option<Arc<Task>>,
    /// For `uid`, `gid` and `comm`: what changed.
    pub change: Option<Change>,
    /// The process's command line as `/proc/<pid>/cmdline` held it (each argument
    /// followed by a NUL, bytes unchanged: the process chose them): for `exec`, read
    /// at the event (`None` if the process was already gone); for other events, the
    /// last one known (read when the task was found in `/proc`, inherited at fork).
    /// Kept only while some watcher or [`Options::extra_events`] wants `exec`.
    pub command_line: Option<Arc<[u8]>>,
    /// When the task started, in nanoseconds since boot (`CLOCK_MONOTONIC`, like
    /// `timestamp_ns`): its fork event, or its start time in `/proc` if it was there
    /// first. For `exit`, the lifetime is `timestamp_ns - started_ns`.
    pub started_ns: Option<u64>,
    /// What the mirror did with it.
    pub disposition: Disposition,
}

/// Events the kernel dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loss {
    /// How many, when known (a sequence gap); `None` for an overrun.
    pub events: Option<u64>,
    /// The CPU of a sequence gap.
    pub cpu: Option<u32>,
    /// The receive buffer after the loss (grown if it could be).
    pub receive_buffer: usize,
}

/// A resynchronisation of the mirror from `/proc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resync {
    /// Tasks found in `/proc` that the mirror lacked (announced with `fork`).
    pub added: usize,
    /// Mirrored tasks no longer in `/proc` (given `exit` and `free`).
    pub removed: usize,
    /// How long it took.
    pub took: Duration,
}

/// A watcher that failed or panicked on a real event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatcherFailure {
    /// The event.
    pub event: EventKind,
    /// The task.
    pub pid: u32,
    /// The (first) failing watcher, when known (a panic does not name it).
    pub watcher: Option<String>,
    /// The error, or the panic message.
    pub message: String,
}

impl fmt::Display for WatcherFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.watcher {
            Some(name) => write!(
                f,
                "watcher `{name}` failed on {} of {}: {}",
                self.event, self.pid, self.message
            ),
            None => write!(
                f,
                "a watcher panicked on {} of {}: {}",
                self.event, self.pid, self.message
            ),
        }
    }
}

/// Why a message was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Sent by a user-space socket (this port), not the kernel.
    NotFromKernel {
        /// The sender's netlink port.
        port: u32,
    },
    /// A connector message for another connector.
    WrongConnector {
        /// `cn_msg.id.idx`.
        idx: u32,
        /// `cn_msg.id.val`.
        val: u32,
    },
    /// A netlink message type the connector does not send.
    UnexpectedType(u16),
    /// An `NLMSG_ERROR` message with this (negative) errno.
    NetlinkError(i32),
}

/// Something the source reports: an event, or a problem it handled.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Report {
    /// A kernel event went through the mirror.
    Event(Applied),
    /// Events were lost (the buffer has been grown and a resync is scheduled).
    Lost(Loss),
    /// The mirror was resynchronised from `/proc`.
    Resynced(Resync),
    /// A watcher returned an error.
    WatcherFailed(WatcherFailure),
    /// A watcher panicked.
    WatcherPanicked(WatcherFailure),
    /// A message was rejected.
    Rejected(Rejection),
    /// A kernel message could not be decoded.
    DecodeFailed(DecodeError),
    /// The kernel filter changed to follow the wanted events.
    SubscriptionChanged(SubscriptionMode),
}

/// The process-events connector source; see the [crate documentation](crate).
pub struct ProcConnector {
    socket: NetlinkSocket,
    table: TableRef,
    mirror: Mirror,
    options: Options,
    mode: SubscriptionMode,
    counters: Arc<AtomicCounters>,
    stop: Arc<AtomicBool>,
    buf: Vec<u8>,
    last_seq: Vec<Option<u32>>,
    pending_resync: Option<Instant>,
    /// Set by an overrun until a receive finds the queue empty: meanwhile the kernel
    /// drops messages without reporting `ENOBUFS` again (netlink's congestion bit is
    /// cleared only when the queue drains), so a resync stays armed.
    congested: bool,
    /// Overruns counted as one lost event each, whose exact count a later sequence
    /// gap will give.
    provisional_losses: u64,
    receive_buffer: usize,
    nonce: u32,
}

/// Receive buffer for one `recvmsg`: far more than a datagram of process events.
const DATAGRAM_BUFFER: usize = 64 * 1024;

/// What one receive found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queue {
    /// Nothing was queued (or the wait ended).
    Empty,
    /// A signal interrupted the wait.
    Interrupted,
    /// A datagram or an overrun was handled.
    Handled,
}

/// The most datagrams a resync applies between its `/proc` scan and its end.
const MAX_DRAIN_DATAGRAMS: usize = 4096;

/// The highest CPU number whose sequence is tracked (bounds the table).
const MAX_TRACKED_CPUS: u32 = 1 << 16;

impl ProcConnector {
    /// Subscribes, seeds the mirror from `/proc` (dispatching `fork` for every task
    /// found), and returns the source, ready to [`poll`](Self::poll).
    ///
    /// # Errors
    /// [`ConnectorError::Unsupported`], [`ConnectorError::PermissionDenied`],
    /// [`ConnectorError::NotAcknowledged`], [`ConnectorError::Refused`] when the
    /// connector cannot be used here; [`ConnectorError::Io`] or
    /// [`ConnectorError::Proc`] otherwise.
    pub fn open(
        table: impl Into<TableRef>,
        options: Options,
    ) -> Result<ProcConnector, ConnectorError> {
        Self::open_with_reports(table, options, |_| {})
    }

    /// As [`open`](Self::open), passing what the seed reports (watcher failures on
    /// the seeded `fork`s) to `sink`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_reports(
        table: impl Into<TableRef>,
        options: Options,
        mut sink: impl FnMut(Report),
    ) -> Result<ProcConnector, ConnectorError> {
        let table = table.into();
        let socket = NetlinkSocket::open(cn_proc::CN_PROC_GROUP)
            .map_err(|(op, e)| ConnectorError::classify(op, e))?;
        let (receive_buffer, _) =
            socket
                .set_receive_buffer(options.receive_buffer)
                .map_err(|source| ConnectorError::Io {
                    operation: "set the receive buffer",
                    source,
                })?;
        socket
            .set_receive_timeout(options.read_timeout)
            .map_err(|source| ConnectorError::Io {
                operation: "set the receive timeout",
                source,
            })?;
        let counters = Arc::new(AtomicCounters::default());
        let tasks = Arc::new(TaskTable::with_table(table.clone()));
        let mut source = ProcConnector {
            socket,
            table,
            mirror: Mirror::new(tasks, false, Arc::clone(&counters)),
            options,
            mode: SubscriptionMode::AllEvents {
                reason: AllEventsReason::Requested,
            },
            counters,
            stop: Arc::new(AtomicBool::new(false)),
            buf: vec![0; DATAGRAM_BUFFER],
            last_seq: Vec::new(),
            pending_resync: None,
            congested: false,
            provisional_losses: 0,
            receive_buffer,
            nonce: initial_nonce(),
        };
        source.subscribe()?;
        source.mirror.read_cmdline = source.needed_events().contains(EventKind::Exec);
        if source.options.seed {
            source
                .mirror
                .seed(&mut sink)
                .map_err(ConnectorError::Proc)?;
        }
        Ok(source)
    }

    /// The events the source must receive: what the watchers want, the extra events,
    /// and `fork` and `exit` for the mirror.
    fn needed_events(&self) -> EventSet {
        self.table.wanted_events() | self.options.extra_events | EventSet::FORK | EventSet::EXIT
    }

    fn next_nonce(&mut self) -> u32 {
        self.nonce = self.nonce.wrapping_add(0x9e37_79b9);
        self.nonce
    }

    fn send_control(
        &mut self,
        op: McastOp,
        events: Option<ProcEventMask>,
    ) -> Result<u32, ConnectorError> {
        let nonce = self.next_nonce();
        let payload = cn_proc::encode_subscribe(op, events, nonce, nonce);
        let datagram =
            cn_proc::wrap_netlink(&payload, netlink::NLMSG_DONE, 0, nonce, self.socket.port());
        self.socket
            .send_to(&datagram, 0)
            .map_err(|e| ConnectorError::classify("send the subscription", e))?;
        Ok(nonce)
    }

    /// Sends a subscribe request and waits for its acknowledgement: `Some(errno)`, or
    /// `None` if none came in time. Events received meanwhile are dropped (the mirror is
    /// seeded afterwards).
    fn handshake(&mut self, events: Option<ProcEventMask>) -> Result<Option<u32>, ConnectorError> {
        let nonce = self.send_control(McastOp::Listen, events)?;
        let expected = nonce.wrapping_add(1);
        // A timeout past what `Instant` can hold (`Duration::MAX`) waits without end.
        let deadline = Instant::now().checked_add(self.options.ack_timeout);
        while deadline.is_none_or(|deadline| Instant::now() < deadline) {
            let received = self
                .socket
                .receive(&mut self.buf, false)
                .map_err(|source| ConnectorError::Io {
                    operation: "receive the acknowledgement",
                    source,
                })?;
            let Received::Datagram { len, sender: 0, .. } = received else {
                continue;
            };
            let datagram = &self.buf[..len];
            for message in netlink_messages(datagram).flatten() {
                if let Ok(decoded) = cn_proc::decode(message.payload)
                    && let ProcEvent::Ack { err } = decoded.event
                    && decoded.header.ack == expected
                {
                    return Ok(Some(err));
                }
            }
        }
        Ok(None)
    }

    fn subscribe(&mut self) -> Result<(), ConnectorError> {
        let needed = ProcEventMask::from(self.needed_events());
        if self.options.kernel_filter {
            match self.handshake(Some(ProcEventMask::KERNEL_ALL))? {
                Some(0) => {
                    self.mode = if needed.contains(ProcEventMask::ALL) {
                        SubscriptionMode::AllEvents {
                            reason: AllEventsReason::Requested,
                        }
                    } else {
                        // The kernel drops the acknowledgement of a narrowed filter;
                        // the form was just proven to be understood.
                        self.send_control(McastOp::Listen, Some(needed))?;
                        SubscriptionMode::KernelFiltered { mask: needed }
                    };
                    return Ok(());
                }
                Some(errno) => {
                    self.mode = SubscriptionMode::AllEvents {
                        reason: AllEventsReason::FilterRefused(errno),
                    };
                }
                None => {
                    self.mode = SubscriptionMode::AllEvents {
                        reason: AllEventsReason::FilterUnsupported,
                    };
                }
            }
        }
        match self.handshake(None)? {
            Some(0) => Ok(()),
            Some(errno) => Err(ConnectorError::Refused(errno)),
            None => Err(ConnectorError::NotAcknowledged(self.options.ack_timeout)),
        }
    }

    /// Follows a change of the wanted events with the kernel filter.
    fn refresh_subscription(&mut self, sink: &mut dyn FnMut(Report)) -> Result<(), ConnectorError> {
        let needed_set = self.needed_events();
        self.mirror.read_cmdline = needed_set.contains(EventKind::Exec);
        let SubscriptionMode::KernelFiltered { mask } = self.mode else {
            return Ok(());
        };
        let needed = ProcEventMask::from(needed_set);
        if needed == mask {
            return Ok(());
        }
        self.send_control(McastOp::Listen, Some(needed))?;
        self.mode = SubscriptionMode::KernelFiltered { mask: needed };
        sink(Report::SubscriptionChanged(self.mode));
        Ok(())
    }

    /// How the source is subscribed.
    pub fn mode(&self) -> SubscriptionMode {
        self.mode
    }

    /// The mirror of the machine's tasks.
    pub fn mirror(&self) -> &Arc<TaskTable> {
        &self.mirror.tasks
    }

    /// The watcher table events go through.
    pub fn table(&self) -> &WatcherTable {
        &self.table
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        self.counters.snapshot()
    }

    /// A handle to read the counters from another thread.
    pub fn counter_handle(&self) -> CounterHandle {
        CounterHandle(Arc::clone(&self.counters))
    }

    /// A handle to stop [`run`](Self::run) or [`reports`](Self::reports) from another
    /// thread (or a signal handler's flag-watcher).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(Arc::clone(&self.stop))
    }

    /// The socket's netlink port id.
    pub fn port(&self) -> u32 {
        self.socket.port()
    }

    /// The receive buffer as the kernel reports it (twice what was asked for).
    pub fn receive_buffer(&self) -> usize {
        self.receive_buffer
    }

    /// Resynchronises the mirror from `/proc` now.
    ///
    /// # Errors
    /// [`ConnectorError::Proc`] if `/proc` cannot be listed.
    pub fn resync(&mut self, mut sink: impl FnMut(Report)) -> Result<Resync, ConnectorError> {
        self.resync_now(&mut sink)
    }

    fn resync_now(&mut self, sink: &mut dyn FnMut(Report)) -> Result<Resync, ConnectorError> {
        self.pending_resync = None;
        let plan = self
            .mirror
            .resync_scan(sink)
            .map_err(ConnectorError::Proc)?;
        // Apply what the kernel queued during the scan before calling the missing tasks
        // gone: their exit events carry their real status.
        self.drain_queue(sink)?;
        let resync = self.mirror.resync_finish(plan, sink);
        AtomicCounters::bump(&self.counters.resyncs, 1);
        sink(Report::Resynced(resync));
        Ok(resync)
    }

    /// Handles the datagrams already queued, without waiting (at most
    /// [`MAX_DRAIN_DATAGRAMS`], so a flood cannot hold a resync forever).
    fn drain_queue(&mut self, sink: &mut dyn FnMut(Report)) -> Result<(), ConnectorError> {
        for _ in 0..MAX_DRAIN_DATAGRAMS {
            if self.receive_one(true, sink)? != Queue::Handled {
                break;
            }
        }
        Ok(())
    }

    /// Receives one datagram (or an overrun) and handles it; without `nonblocking`,
    /// waits up to [`Options::read_timeout`].
    fn receive_one(
        &mut self,
        nonblocking: bool,
        sink: &mut dyn FnMut(Report),
    ) -> Result<Queue, ConnectorError> {
        let received = self
            .socket
            .receive(&mut self.buf, nonblocking)
            .map_err(|source| ConnectorError::Io {
                operation: "receive",
                source,
            })?;
        Ok(match received {
            Received::Nothing => {
                // The queue is empty: the kernel reports the next overrun again.
                self.congested = false;
                Queue::Empty
            }
            Received::Interrupted => Queue::Interrupted,
            Received::Overrun => {
                self.overrun(sink);
                Queue::Handled
            }
            Received::Datagram {
                len,
                sender,
                truncated,
            } => {
                let buf = std::mem::take(&mut self.buf);
                self.datagram(&buf[..len.min(buf.len())], sender, truncated, sink);
                self.buf = buf;
                Queue::Handled
            }
        })
    }

    /// Receives and handles one datagram (waiting up to [`Options::read_timeout`]),
    /// passing what happened to `sink`. Returns `false` once a stop was asked for.
    ///
    /// # Errors
    /// A failing socket or `/proc`; the source can be polled again.
    pub fn poll(&mut self, mut sink: impl FnMut(Report)) -> Result<bool, ConnectorError> {
        self.poll_dyn(&mut sink)
    }

    fn poll_dyn(&mut self, sink: &mut dyn FnMut(Report)) -> Result<bool, ConnectorError> {
        if self.stop.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.refresh_subscription(sink)?;
        if let Some(since) = self.pending_resync
            && since.elapsed() >= self.options.resync_delay
        {
            // The queue did not drain in time: resync now, and again once it has
            // drained if the socket may still be congested (see `congested`).
            self.resync_now(sink)?;
            if self.congested {
                self.pending_resync = Some(Instant::now());
            }
        }
        // While a resync is pending, drain what is queued first (so the exits it holds
        // are seen with their status), then resync.
        let draining = self.pending_resync.is_some();
        if self.receive_one(draining, sink)? == Queue::Empty && draining {
            self.resync_now(sink)?;
        }
        Ok(!self.stop.load(Ordering::Acquire))
    }

    /// Polls until stopped, passing every report to `sink`.
    ///
    /// # Errors
    /// As [`poll`](Self::poll).
    pub fn run(&mut self, mut sink: impl FnMut(Report)) -> Result<(), ConnectorError> {
        while self.poll_dyn(&mut sink)? {}
        Ok(())
    }

    /// The reports as an iterator, which ends once a stop is asked for (or after an
    /// error, which it yields).
    pub fn reports(&mut self) -> Reports<'_> {
        Reports {
            source: self,
            queue: std::collections::VecDeque::new(),
            done: false,
        }
    }

    fn overrun(&mut self, sink: &mut dyn FnMut(Report)) {
        AtomicCounters::bump(&self.counters.overruns, 1);
        self.congested = true;
        // At least one event is lost. With sequence tracking, the next gap gives the
        // exact number and takes this one back.
        AtomicCounters::bump(&self.counters.lost, 1);
        if self.mode.tracks_sequence() {
            self.provisional_losses += 1;
        }
        self.grow_buffer();
        self.pending_resync.get_or_insert_with(Instant::now);
        sink(Report::Lost(Loss {
            events: None,
            cpu: None,
            receive_buffer: self.receive_buffer,
        }));
    }

    fn grow_buffer(&mut self) {
        // The kernel reports twice the size asked for.
        let asked = self.receive_buffer / 2;
        let wanted = asked.saturating_mul(2).min(self.options.max_receive_buffer);
        if wanted > asked
            && let Ok((size, _)) = self.socket.set_receive_buffer(wanted)
        {
            self.receive_buffer = size;
        }
    }

    fn track_sequence(&mut self, cpu: u32, seq: u32, sink: &mut dyn FnMut(Report)) {
        if !self.mode.tracks_sequence() || cpu >= MAX_TRACKED_CPUS {
            return;
        }
        let index = cpu as usize;
        if self.last_seq.len() <= index {
            self.last_seq.resize(index + 1, None);
        }
        let Some(previous) = self.last_seq[index] else {
            self.last_seq[index] = Some(seq);
            return;
        };
        let gap = seq.wrapping_sub(previous.wrapping_add(1));
        // A "gap" of more than half the space is a message from before (reordering
        // across a CPU hot-plug, or a duplicate): not a loss, and the newest number
        // stays the reference, or the next message in order would look like a gap.
        if gap > u32::MAX / 2 {
            return;
        }
        self.last_seq[index] = Some(seq);
        if gap == 0 {
            return;
        }
        let mut counted = u64::from(gap);
        if self.provisional_losses > 0 {
            self.provisional_losses -= 1;
            counted -= 1;
        }
        AtomicCounters::bump(&self.counters.lost, counted);
        self.grow_buffer();
        self.pending_resync.get_or_insert_with(Instant::now);
        sink(Report::Lost(Loss {
            events: Some(u64::from(gap)),
            cpu: Some(cpu),
            receive_buffer: self.receive_buffer,
        }));
    }

    fn reject(&self, rejection: Rejection, sink: &mut dyn FnMut(Report)) {
        AtomicCounters::bump(&self.counters.rejected, 1);
        sink(Report::Rejected(rejection));
    }

    fn decode_error(&self, error: DecodeError, sink: &mut dyn FnMut(Report)) {
        AtomicCounters::bump(&self.counters.decode_errors, 1);
        sink(Report::DecodeFailed(error));
    }

    /// Handles a datagram as if the socket had received it from netlink port `sender`
    /// (0 is the kernel): for replaying recorded traffic, tests and benchmarks. Messages
    /// from a port other than 0 are rejected, as on the socket.
    pub fn replay_datagram(&mut self, datagram: &[u8], sender: u32, mut sink: impl FnMut(Report)) {
        self.datagram(datagram, sender, false, &mut sink);
    }

    fn datagram(
        &mut self,
        datagram: &[u8],
        sender: u32,
        truncated: bool,
        sink: &mut dyn FnMut(Report),
    ) {
        let len = datagram.len();
        if sender != 0 {
            self.reject(Rejection::NotFromKernel { port: sender }, sink);
            return;
        }
        if truncated {
            self.decode_error(
                DecodeError::Oversized {
                    max: DATAGRAM_BUFFER,
                    got: len,
                },
                sink,
            );
            return;
        }
        let mut messages = Vec::new();
        for message in netlink_messages(datagram) {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    self.decode_error(error, sink);
                    break;
                }
            };
            match message.kind {
                netlink::NLMSG_NOOP => {}
                netlink::NLMSG_ERROR => match message.error_code() {
                    Some(0) => {}
                    Some(code) => self.reject(Rejection::NetlinkError(code), sink),
                    None => self.decode_error(
                        DecodeError::Truncated {
                            what: "nlmsgerr",
                            needed: 4,
                            got: message.payload.len(),
                        },
                        sink,
                    ),
                },
                netlink::NLMSG_OVERRUN => messages.push(Err(())),
                netlink::NLMSG_DONE => match cn_proc::decode(message.payload) {
                    Ok(decoded) => messages.push(Ok(decoded)),
                    Err(DecodeError::WrongConnector { idx, val }) => {
                        self.reject(Rejection::WrongConnector { idx, val }, sink);
                    }
                    Err(error) => self.decode_error(error, sink),
                },
                other => self.reject(Rejection::UnexpectedType(other), sink),
            }
        }
        for message in messages {
            let Ok(message) = message else {
                self.overrun(sink);
                continue;
            };
            AtomicCounters::bump(&self.counters.received, 1);
            self.track_sequence(message.cpu, message.header.seq, sink);
            if let ProcEvent::Ack { .. } = message.event {
                AtomicCounters::bump(&self.counters.acks, 1);
                continue;
            }
            let applied = self.mirror.apply(&message, sink);
            sink(Report::Event(applied));
        }
    }
}

impl Drop for ProcConnector {
    fn drop(&mut self) {
        // Best effort: tell the kernel this listener is gone (closing the socket does
        // too on current kernels).
        let _ = self.send_control(McastOp::Ignore, None);
    }
}

impl fmt::Debug for ProcConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcConnector")
            .field("port", &self.socket.port())
            .field("mode", &self.mode)
            .field("receive_buffer", &self.receive_buffer)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

fn initial_nonce() -> u32 {
    let ns = sys::monotonic_ns();
    (std::process::id() << 16) ^ (ns as u32) ^ ((ns >> 32) as u32)
}

/// The iterator of [`ProcConnector::reports`].
pub struct Reports<'a> {
    source: &'a mut ProcConnector,
    queue: std::collections::VecDeque<Report>,
    done: bool,
}

impl Iterator for Reports<'_> {
    type Item = Result<Report, ConnectorError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(report) = self.queue.pop_front() {
                return Some(Ok(report));
            }
            if self.done {
                return None;
            }
            let queue = &mut self.queue;
            match self.source.poll_dyn(&mut |report| queue.push_back(report)) {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
    }
}

impl fmt::Debug for Reports<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reports")
            .field("queued", &self.queue.len())
            .finish()
    }
}
