//! Irq-flags tracing (`CONFIG_TRACE_IRQFLAGS`): per-task hard and soft interrupt state.
//!
//! * **fork**: the child's state is initialised: hard and soft interrupts enabled, all
//!   counters zero (the `#ifdef CONFIG_TRACE_IRQFLAGS` block of `copy_process`).
//! * The task then calls [`hardirqs_off`] / [`hardirqs_on`] (`local_irq_disable` /
//!   `local_irq_enable`) and [`softirqs_off`] / [`softirqs_on`] (`local_bh_disable` /
//!   `local_bh_enable`, which nest); every transition is counted as an event, and
//!   redundant ones separately, as the kernel does.
//! * **exit**: the state is checked: a task that exits with hard interrupts disabled or
//!   bottom halves still disabled is **reported** ([`reports`]) and the watcher returns
//!   [`IrqflagsError::Unbalanced`], which the task model records against the watcher.
//! * **free**: the state is freed.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use watchers_core::{
    CloneFlags, Event, EventData, EventSet, ExitStatus, Pid, Task, TaskSlot, TaskState, Watcher,
    task_watcher, watcher_record,
};

/// The events the irqflags watchers ask for.
pub const EVENTS: EventSet = watcher_record!(watch_fork_free)
    .events()
    .union(watcher_record!(watch_exit).events());

/// The priority all the irqflags watchers share (follows `mpol_dup` in `copy_process`).
pub const PRIORITY: i32 = watcher_record!(watch_fork_free).priority();

/// How many reports are kept (later ones are only counted).
pub const REPORTS_KEPT: usize = 256;

/// What went wrong with irq-state tracing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IrqflagsError {
    /// The task has no irq state (it was not forked with this subsystem on).
    #[error("task {0} has no irq-flags state")]
    NoState(Pid),
    /// The task is exiting or gone: its irq state was checked at its exit.
    #[error("task {0} is not running")]
    NotRunning(Pid),
    /// `local_bh_enable` without a matching `local_bh_disable`.
    #[error("task {0} enabled softirqs more often than it disabled them")]
    SoftirqUnderflow(Pid),
    /// The task exited with interrupts disabled.
    #[error("{0}")]
    Unbalanced(IrqReport),
}

/// A task that exited with unbalanced irq state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqReport {
    /// The task.
    pub pid: Pid,
    /// Its name.
    pub comm: String,
    /// Its state when it exited.
    pub state: IrqState,
}

impl fmt::Display for IrqReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task {} ({}) exited with hardirqs {} and softirqs {} (bh disable depth {}); last \
             hardirq enable event #{}, disable event #{}",
            self.pid,
            self.comm,
            if self.state.hardirqs_enabled {
                "on"
            } else {
                "off"
            },
            if self.state.softirq_disable_depth == 0 {
                "on"
            } else {
                "off"
            },
            self.state.softirq_disable_depth,
            self.state.hardirq_enable_event,
            self.state.hardirq_disable_event,
        )
    }
}

/// A task's irq state and event counters (the `irq_events` family of `task_struct`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqState {
    /// Whether hard interrupts are enabled.
    pub hardirqs_enabled: bool,
    /// How deep `local_bh_disable` is nested (softirqs are enabled at zero).
    pub softirq_disable_depth: u32,
    /// Transitions counted so far (the kernel's `irq_events`).
    pub irq_events: u64,
    /// The event number of the last hardirq enable.
    pub hardirq_enable_event: u64,
    /// The event number of the last hardirq disable.
    pub hardirq_disable_event: u64,
    /// The event number of the last softirq enable.
    pub softirq_enable_event: u64,
    /// The event number of the last softirq disable.
    pub softirq_disable_event: u64,
    /// Enables of already-enabled hard interrupts.
    pub redundant_hardirqs_on: u64,
    /// Disables of already-disabled hard interrupts.
    pub redundant_hardirqs_off: u64,
}

impl IrqState {
    const FRESH: IrqState = IrqState {
        hardirqs_enabled: true,
        softirq_disable_depth: 0,
        irq_events: 0,
        hardirq_enable_event: 0,
        hardirq_disable_event: 0,
        softirq_enable_event: 0,
        softirq_disable_event: 0,
        redundant_hardirqs_on: 0,
        redundant_hardirqs_off: 0,
    };

    /// Whether a task may exit in this state.
    pub fn balanced(&self) -> bool {
        self.hardirqs_enabled && self.softirq_disable_depth == 0
    }
}

/// The irqflags counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqflagsStats {
    /// States initialised at fork.
    pub initialised: u64,
    /// States freed at free.
    pub freed: u64,
    /// Exits checked.
    pub exits_checked: u64,
    /// Exits reported as unbalanced.
    pub unbalanced: u64,
    /// Irq events counted across tasks.
    pub irq_events: u64,
}

impl IrqflagsStats {
    /// States alive now.
    pub fn live(&self) -> u64 {
        self.initialised - self.freed
    }
}

struct TaskIrq(Mutex<IrqState>);

impl TaskIrq {
    fn lock(&self) -> MutexGuard<'_, IrqState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

static IRQ: TaskSlot<TaskIrq> = TaskSlot::new();
static REPORTS: Mutex<Vec<IrqReport>> = Mutex::new(Vec::new());

static INITIALISED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);
static EXITS_CHECKED: AtomicU64 = AtomicU64::new(0);
static UNBALANCED: AtomicU64 = AtomicU64::new(0);
static EVENTS_COUNTED: AtomicU64 = AtomicU64::new(0);

fn with_state<R>(
    task: &Task,
    f: impl FnOnce(&mut IrqState) -> Result<R, IrqflagsError>,
) -> Result<R, IrqflagsError> {
    let irq = IRQ.get(task).ok_or(IrqflagsError::NoState(task.pid()))?;
    let mut state = irq.lock();
    // Under the state's lock: the exit watcher, which reads the state to check it,
    // waits for it; and the task is `Exiting` before that watcher runs. A change made
    // after the exit would never be checked.
    if task.state() != TaskState::Running {
        return Err(IrqflagsError::NotRunning(task.pid()));
    }
    f(&mut state)
}

fn next_event(state: &mut IrqState) -> u64 {
    state.irq_events += 1;
    EVENTS_COUNTED.fetch_add(1, Ordering::Relaxed);
    state.irq_events
}

/// `local_irq_disable` by the task (`trace_hardirqs_off`).
///
/// # Errors
/// [`IrqflagsError::NotRunning`] once the task is exiting; [`IrqflagsError::NoState`].
pub fn hardirqs_off(task: &Task) -> Result<(), IrqflagsError> {
    with_state(task, |state| {
        if state.hardirqs_enabled {
            state.hardirqs_enabled = false;
            state.hardirq_disable_event = next_event(state);
        } else {
            state.redundant_hardirqs_off += 1;
        }
        Ok(())
    })
}

/// `local_irq_enable` by the task (`trace_hardirqs_on`).
///
/// # Errors
/// [`IrqflagsError::NotRunning`] once the task is exiting; [`IrqflagsError::NoState`].
pub fn hardirqs_on(task: &Task) -> Result<(), IrqflagsError> {
    with_state(task, |state| {
        if state.hardirqs_enabled {
            state.redundant_hardirqs_on += 1;
        } else {
            state.hardirqs_enabled = true;
            state.hardirq_enable_event = next_event(state);
        }
        Ok(())
    })
}

/// `local_bh_disable` by the task (nests).
///
/// # Errors
/// [`IrqflagsError::NotRunning`] once the task is exiting; [`IrqflagsError::NoState`].
pub fn softirqs_off(task: &Task) -> Result<(), IrqflagsError> {
    with_state(task, |state| {
        if state.softirq_disable_depth == 0 {
            state.softirq_disable_event = next_event(state);
        }
        state.softirq_disable_depth += 1;
        Ok(())
    })
}

/// `local_bh_enable` by the task; softirqs are enabled again when the outermost
/// disable is undone.
///
/// # Errors
/// [`IrqflagsError::SoftirqUnderflow`] without a matching disable;
/// [`IrqflagsError::NotRunning`] once the task is exiting; [`IrqflagsError::NoState`].
pub fn softirqs_on(task: &Task) -> Result<(), IrqflagsError> {
    with_state(task, |state| {
        if state.softirq_disable_depth == 0 {
            return Err(IrqflagsError::SoftirqUnderflow(task.pid()));
        }
        state.softirq_disable_depth -= 1;
        if state.softirq_disable_depth == 0 {
            state.softirq_enable_event = next_event(state);
        }
        Ok(())
    })
}

/// The task's irq state, if it has one.
pub fn state(task: &Task) -> Option<IrqState> {
    IRQ.get(task).map(|irq| *irq.lock())
}

/// The unbalanced exits reported so far (the first [`REPORTS_KEPT`]).
pub fn reports() -> Vec<IrqReport> {
    REPORTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The counters.
pub fn stats() -> IrqflagsStats {
    IrqflagsStats {
        initialised: INITIALISED.load(Ordering::Relaxed),
        freed: FREED.load(Ordering::Relaxed),
        exits_checked: EXITS_CHECKED.load(Ordering::Relaxed),
        unbalanced: UNBALANCED.load(Ordering::Relaxed),
        irq_events: EVENTS_COUNTED.load(Ordering::Relaxed),
    }
}

/// The one-line summary `taskwatch simulate` prints.
pub fn summary() -> String {
    let s = stats();
    format!(
        "{} states live; {} irq events; {} exits checked, {} unbalanced",
        s.live(),
        s.irq_events,
        s.exits_checked,
        s.unbalanced
    )
}

/// `fork`: initialises the child's state.
///
/// # Errors
/// None in this model; the signature matches the watcher.
pub fn on_fork(_parent: &Task, child: &Task, _flags: CloneFlags) -> Result<(), IrqflagsError> {
    INITIALISED.fetch_add(1, Ordering::Relaxed);
    if IRQ
        .set(child, TaskIrq(Mutex::new(IrqState::FRESH)))
        .is_some()
    {
        FREED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// `exit`: checks that interrupts are enabled.
///
/// # Errors
/// [`IrqflagsError::Unbalanced`] (also kept in [`reports`]) if they are not.
pub fn on_exit(task: &Task, _status: ExitStatus) -> Result<(), IrqflagsError> {
    let Some(state) = state(task) else {
        return Ok(());
    };
    EXITS_CHECKED.fetch_add(1, Ordering::Relaxed);
    if state.balanced() {
        return Ok(());
    }
    UNBALANCED.fetch_add(1, Ordering::Relaxed);
    let report = IrqReport {
        pid: task.pid(),
        comm: task.comm(),
        state,
    };
    let mut reports = REPORTS.lock().unwrap_or_else(|e| e.into_inner());
    if reports.len() < REPORTS_KEPT {
        reports.push(report.clone());
    }
    Err(IrqflagsError::Unbalanced(report))
}

/// `free`: frees the state.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_free(task: &Task) -> Result<(), IrqflagsError> {
    if IRQ.take(task).is_some() {
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
#[task_watcher(events = fork | free, priority = 70)]
fn watch_fork_free(event: &Event<'_>) -> Result<(), IrqflagsError> {
    if let EventData::Fork { parent, flags } = *event.data() {
        on_fork(parent, event.task(), flags)
    } else {
        on_free(event.task())
    }
}

#[task_watcher(events = exit, priority = 70)]
fn watch_exit(event: &Event<'_>) -> Result<(), IrqflagsError> {
    let EventData::Exit { status } = *event.data() else {
        return Ok(());
    };
    on_exit(event.task(), status)
}

/// The irqflags watchers, one per event (`fork` and `free` together), for an explicit table
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
    use watchers_core::TaskError;

    /// A task that has exited cannot change its irq state: the exit was its check, so
    /// an imbalance made afterwards would never be reported.
    #[test]
    fn an_exited_task_cannot_change_its_irq_state() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let child = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        tasks.exit(child.pid(), 0).unwrap();
        assert!(tasks.get(child.pid()).is_some(), "a zombie until reaped");
        let refused = Err(IrqflagsError::NotRunning(child.pid()));
        assert_eq!(hardirqs_off(&child), refused);
        assert_eq!(hardirqs_on(&child), refused);
        assert_eq!(softirqs_off(&child), refused);
        assert_eq!(softirqs_on(&child), refused);
        assert!(state(&child).is_none_or(|s| s.balanced()));
        tasks.exit(parent.pid(), 0).unwrap();
    }

    #[test]
    fn state_is_initialised_at_fork_and_freed() {
        let _serial = serial();
        let before = stats();
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        assert_eq!(state(&task), Some(IrqState::FRESH));
        assert_eq!(state(tasks.init()), None);
        assert_eq!(
            hardirqs_off(tasks.init()),
            Err(IrqflagsError::NoState(Pid::INIT))
        );
        tasks.exit(task.pid(), 0).unwrap();
        assert_eq!(state(&task), None);
        assert_eq!(stats().live(), before.live());
    }

    #[test]
    fn transitions_are_counted_and_redundant_ones_apart() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        hardirqs_on(&task).unwrap(); // redundant
        hardirqs_off(&task).unwrap(); // event 1
        hardirqs_off(&task).unwrap(); // redundant
        softirqs_off(&task).unwrap(); // event 2
        softirqs_off(&task).unwrap(); // nested: no event
        softirqs_on(&task).unwrap();
        softirqs_on(&task).unwrap(); // event 3
        hardirqs_on(&task).unwrap(); // event 4
        let s = state(&task).unwrap();
        assert_eq!(s.irq_events, 4);
        assert_eq!((s.hardirq_disable_event, s.softirq_disable_event), (1, 2));
        assert_eq!((s.softirq_enable_event, s.hardirq_enable_event), (3, 4));
        assert_eq!((s.redundant_hardirqs_on, s.redundant_hardirqs_off), (1, 1));
        assert_eq!(
            softirqs_on(&task),
            Err(IrqflagsError::SoftirqUnderflow(task.pid()))
        );
        tasks.exit(task.pid(), 0).unwrap();
    }

    #[test]
    fn an_unbalanced_exit_is_reported() {
        let _serial = serial();
        let before = stats();
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        tasks.set_comm(task.pid(), "irqleak").unwrap();
        hardirqs_off(&task).unwrap();
        softirqs_off(&task).unwrap();
        let error = tasks.exit(task.pid(), 0).unwrap_err();
        let TaskError::Watcher(error) = error else {
            panic!("expected a watcher error, got {error}");
        };
        assert!(error.to_string().contains("irqleak"), "{error}");
        let report = reports()
            .into_iter()
            .rfind(|r| r.comm == "irqleak")
            .unwrap();
        assert!(!report.state.hardirqs_enabled);
        assert_eq!(report.state.softirq_disable_depth, 1);
        let after = stats();
        assert_eq!(after.unbalanced - before.unbalanced, 1);
        assert_eq!(after.live(), before.live(), "freed all the same");
    }
}
