//! Profiling hooks (`CONFIG_PROFILING`): task-exit notifications for profilers.
//!
//! A profiler (oprofile, in the kernel) [registers](register) a callback
//! (`profile_event_register(PROFILE_TASK_EXIT, …)`); every **exit** calls each
//! registered callback with an [`ExitNotice`] (`profile_task_exit`). The subsystem also
//! counts exits per task name ([`exit_counts`]).
//!
//! Callbacks are called outside every lock of this module, in registration order. Once
//! the [`Profiler`] handle is dropped, no new call starts on the dropping thread, nor on
//! another thread that has seen the drop; an exit on another thread that checked the
//! profiler just before the drop may still call it once, and a call already running
//! finishes (the drop does not wait for calls, unlike a runtime watcher's `unregister`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use watchers_core::{
    Event, EventData, EventSet, ExitStatus, Pid, Task, Watcher, task_watcher, watcher_record,
};

/// The events the profile watchers ask for.
pub const EVENTS: EventSet = watcher_record!(watch_exit).events();

/// The priority all the profile watchers share (`profile_task_exit` is the first thing `do_exit`
/// does; teardown runs low priorities first).
pub const PRIORITY: i32 = watcher_record!(watch_exit).priority();

/// What went wrong with profiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A profiler's callback panicked; the others were still called.
    #[error("profiler `{0}` panicked on a task exit")]
    ProfilerPanicked(String),
}

/// What a profiler is told about an exiting task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitNotice {
    /// The task.
    pub pid: Pid,
    /// Its thread group.
    pub tgid: Pid,
    /// Its name.
    pub comm: String,
    /// How it exits.
    pub status: ExitStatus,
}

type Callback = Arc<dyn Fn(&ExitNotice) + Send + Sync>;

struct Registered {
    id: u64,
    name: String,
    callback: Callback,
    /// Cleared when the handle is dropped: an exit that took its callbacks before then
    /// skips this one rather than start a call after the drop.
    alive: Arc<AtomicBool>,
}

/// A registered profiler; dropping it unregisters.
pub struct Profiler {
    id: u64,
    name: String,
}

impl Profiler {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        profilers().retain(|p| {
            let keep = p.id != self.id;
            if !keep {
                p.alive.store(false, Ordering::Release);
            }
            keep
        });
    }
}

impl fmt::Debug for Profiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profiler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The profile counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileStats {
    /// Exits seen.
    pub exits: u64,
    /// Notifications delivered (one per profiler per exit).
    pub notifications: u64,
    /// Profilers registered now.
    pub profilers: usize,
    /// Distinct task names seen exiting.
    pub comms: usize,
}

static PROFILERS: RwLock<Vec<Registered>> = RwLock::new(Vec::new());
static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static EXITS: AtomicU64 = AtomicU64::new(0);
static NOTIFICATIONS: AtomicU64 = AtomicU64::new(0);

fn profilers() -> std::sync::RwLockWriteGuard<'static, Vec<Registered>> {
    PROFILERS.write().unwrap_or_else(|e| e.into_inner())
}

fn counts() -> MutexGuard<'static, BTreeMap<String, u64>> {
    COUNTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a profiler that `callback` is called for at every task exit.
pub fn register(
    name: impl Into<String>,
    callback: impl Fn(&ExitNotice) + Send + Sync + 'static,
) -> Profiler {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let name = name.into();
    profilers().push(Registered {
        id,
        name: name.clone(),
        callback: Arc::new(callback),
        alive: Arc::new(AtomicBool::new(true)),
    });
    Profiler { id, name }
}

/// How many tasks with each name exited.
pub fn exit_counts() -> BTreeMap<String, u64> {
    counts().clone()
}

/// How many tasks named `comm` exited.
pub fn exit_count(comm: &str) -> u64 {
    counts().get(comm).copied().unwrap_or(0)
}

/// The counters.
pub fn stats() -> ProfileStats {
    ProfileStats {
        exits: EXITS.load(Ordering::Relaxed),
        notifications: NOTIFICATIONS.load(Ordering::Relaxed),
        profilers: PROFILERS.read().unwrap_or_else(|e| e.into_inner()).len(),
        comms: counts().len(),
    }
}

/// The one-line summary `taskwatch simulate` prints: exits and the commonest names.
pub fn summary() -> String {
    let s = stats();
    let mut top: Vec<(String, u64)> = exit_counts().into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let top: Vec<String> = top
        .iter()
        .take(3)
        .map(|(comm, n)| format!("{comm}={n}"))
        .collect();
    format!(
        "{} exits over {} names (top: {}); {} notifications to {} profilers",
        s.exits,
        s.comms,
        if top.is_empty() {
            "none".to_owned()
        } else {
            top.join(" ")
        },
        s.notifications,
        s.profilers
    )
}

/// `exit`: counts the exit under the task's name and notifies every profiler.
///
/// # Errors
/// [`ProfileError::ProfilerPanicked`] naming the first profiler whose callback
/// panicked (every profiler is called all the same).
pub fn on_exit(task: &Task, status: ExitStatus) -> Result<(), ProfileError> {
    let comm = task.comm();
    EXITS.fetch_add(1, Ordering::Relaxed);
    *counts().entry(comm.clone()).or_insert(0) += 1;
    let callbacks: Vec<(String, Callback, Arc<AtomicBool>)> = PROFILERS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|p| (p.name.clone(), p.callback.clone(), p.alive.clone()))
        .collect();
    if callbacks.is_empty() {
        return Ok(());
    }
    let notice = ExitNotice {
        pid: task.pid(),
        tgid: task.tgid(),
        comm,
        status,
    };
    let mut failed = None;
    for (name, callback, alive) in callbacks {
        if !alive.load(Ordering::Acquire) {
            continue;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(&notice)));
        NOTIFICATIONS.fetch_add(1, Ordering::Relaxed);
        if outcome.is_err() {
            failed.get_or_insert(name);
        }
    }
    failed.map_or(Ok(()), |name| Err(ProfileError::ProfilerPanicked(name)))
}

// One watcher per event, as v2's `DEFINE_TASK_INITCALL` / `…EXITCALL` / `…FREECALL`
// (but `fork` and `free`, below): the table calls each only for its own event, so none
// switches over the payload; a `let … else` only names the event's fields.
#[task_watcher(events = exit, priority = 20)]
fn watch_exit(event: &Event<'_>) -> Result<(), ProfileError> {
    let EventData::Exit { status } = *event.data() else {
        return Ok(());
    };
    on_exit(event.task(), status)
}

/// The profile watchers, one per event (`fork` and `free` together), for an explicit table
/// (the records `#[task_watcher]` submits).
pub fn watchers() -> Vec<Watcher> {
    vec![watcher_record!(watch_exit)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{serial, table_of};
    use watchers_core::{CloneFlags, TaskError};

    /// A profiler dropped by an earlier profiler's callback, during an exit's round of
    /// calls, is not called after its drop returned.
    #[test]
    fn a_profiler_dropped_during_an_exit_is_not_called_after() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let victim_slot: Arc<Mutex<Option<Profiler>>> = Arc::default();
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let slot = victim_slot.clone();
        let flag = dropped.clone();
        let _dropper = register("dropper", move |_: &ExitNotice| {
            if let Some(victim) = slot.lock().unwrap().take() {
                drop(victim);
                flag.store(true, Ordering::SeqCst);
            }
        });
        let flag = dropped.clone();
        let called_after_drop = Arc::new(AtomicU64::new(0));
        let count = called_after_drop.clone();
        *victim_slot.lock().unwrap() = Some(register("victim", move |_: &ExitNotice| {
            if flag.load(Ordering::SeqCst) {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        tasks.exit(task.pid(), 0).unwrap();
        assert!(dropped.load(Ordering::SeqCst));
        assert_eq!(called_after_drop.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn profilers_hear_every_exit_and_names_are_counted() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let profiler = register("oprofile", move |notice: &ExitNotice| {
            log.lock().unwrap().push((notice.pid, notice.comm.clone()));
        });
        assert_eq!(profiler.name(), "oprofile");
        let before = exit_count("prof-make");
        let mut pids = Vec::new();
        for _ in 0..3 {
            let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
            tasks.set_comm(task.pid(), "prof-make").unwrap();
            pids.push(task.pid());
            tasks.exit(task.pid(), 0).unwrap();
        }
        assert_eq!(exit_count("prof-make") - before, 3);
        let heard_pids: Vec<Pid> = heard
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, comm)| comm == "prof-make")
            .map(|(pid, _)| *pid)
            .collect();
        assert_eq!(heard_pids, pids);
        drop(profiler);
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        tasks.set_comm(task.pid(), "prof-make").unwrap();
        tasks.exit(task.pid(), 0).unwrap();
        assert_eq!(heard.lock().unwrap().len(), 3, "unregistered");
        assert_eq!(exit_counts().get("prof-make"), Some(&(before + 4)));
    }

    #[test]
    fn a_panicking_profiler_does_not_stop_the_others() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        let _bad = register("bad", |_: &ExitNotice| panic!("profiler bug"));
        let _good = register("good", move |_: &ExitNotice| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let error = tasks.exit(task.pid(), 0).unwrap_err();
        assert!(matches!(error, TaskError::Watcher(_)));
        assert!(
            error.to_string().contains("profiler `bad` panicked"),
            "{error}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
