//! The enabled subsystems called **directly**, the way a kernel without task watchers
//! calls them: hand-written calls in `copy_process`, `do_exit` and `free_task` order.
//!
//! Each function calls every enabled subsystem's `on_*` entry point for one event, in
//! exactly the order the dispatch table would (descending priority for set-up events,
//! ascending for `exit` and `free`). A benchmark can run the same task-model workload
//! once through a [`WatcherTable`](watchers_core::WatcherTable) built from
//! [`all_watchers`](crate::all_watchers) and once through these calls (on a table with
//! no watchers, or on tasks made with [`Task::new`]) to compare dispatch through the
//! table with the hand-written baseline.
//!
//! [`fork`] rolls back like `copy_process`'s cleanup ladder: if a subsystem refuses,
//! the subsystems that had succeeded get their `on_free`, last first.
//!
//! ```
//! use watchers_core::{CloneFlags, ExitStatus, Task};
//! use watchers_subsystems::direct;
//!
//! let parent = Task::detached(10);
//! let child = Task::detached(11);
//! direct::fork(&parent, &child, CloneFlags::empty())?;
//! direct::exit(&child, ExitStatus::exited(0))?;
//! direct::free(&child)?;
//! # Ok::<(), direct::SubsystemError>(())
//! ```

#![allow(unused_variables, unused_mut, unused_assignments)]

use watchers_core::{BoxError, CloneFlags, ExitStatus, Ids, Pid, Task};

/// A subsystem refused or failed; like the table's dispatch, the first error is kept.
#[derive(Debug, thiserror::Error)]
#[error("subsystem `{subsystem}` failed: {source}")]
pub struct SubsystemError {
    /// The subsystem (its module name).
    pub subsystem: &'static str,
    /// Its error.
    #[source]
    pub source: BoxError,
}

impl SubsystemError {
    fn new(subsystem: &'static str, source: impl Into<BoxError>) -> SubsystemError {
        SubsystemError {
            subsystem,
            source: source.into(),
        }
    }
}

/// Keeps the first error of a sequence of calls that all run.
#[derive(Default)]
#[allow(dead_code)]
struct First(Option<SubsystemError>);

#[allow(dead_code)]
impl First {
    fn check<E: Into<BoxError>>(&mut self, subsystem: &'static str, result: Result<(), E>) {
        if let Err(error) = result
            && self.0.is_none()
        {
            self.0 = Some(SubsystemError::new(subsystem, error));
        }
    }

    fn finish(self) -> Result<(), SubsystemError> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Bits of the subsystems whose `fork` succeeded, for the rollback.
#[allow(dead_code)]
mod bit {
    pub(super) const DELAYACCT: u32 = 1 << 0;
    pub(super) const CPUSETS: u32 = 1 << 1;
    pub(super) const MEMPOLICY: u32 = 1 << 2;
    pub(super) const IRQFLAGS: u32 = 1 << 3;
    pub(super) const LOCKDEP: u32 = 1 << 4;
    pub(super) const AUDIT: u32 = 1 << 5;
    pub(super) const SEMUNDO: u32 = 1 << 6;
    pub(super) const KEYS: u32 = 1 << 7;
}

/// `fork` of `child` by `parent`: `copy_process`'s calls, in order.
///
/// # Errors
/// The first subsystem that refused; the ones before it got `on_free`.
pub fn fork(parent: &Task, child: &Task, flags: CloneFlags) -> Result<(), SubsystemError> {
    let mut done = 0u32;
    macro_rules! step {
        ($feature:literal, $module:ident, $bit:expr) => {
            #[cfg(feature = $feature)]
            {
                if let Err(error) = crate::$module::on_fork(parent, child, flags) {
                    rollback(child, done);
                    return Err(SubsystemError::new(stringify!($module), error));
                }
                done |= $bit;
            }
        };
    }
    step!("task-delay-acct", delayacct, bit::DELAYACCT);
    step!("cpusets", cpusets, bit::CPUSETS);
    step!("numa", mempolicy, bit::MEMPOLICY);
    step!("trace-irqflags", irqflags, bit::IRQFLAGS);
    step!("lockdep", lockdep, bit::LOCKDEP);
    step!("audit", audit, bit::AUDIT);
    step!("sysvipc", semundo, bit::SEMUNDO);
    step!("keys", keys, bit::KEYS);
    #[cfg(feature = "proc-events")]
    {
        if let Err(error) = crate::proc_events::on_fork(parent, child, flags) {
            rollback(child, done);
            return Err(SubsystemError::new("proc_events", error));
        }
    }
    Ok(())
}

/// `free` for the subsystems in `done`, last set up first.
#[allow(dead_code)]
fn rollback(child: &Task, done: u32) {
    macro_rules! undo {
        ($feature:literal, $module:ident, $bit:expr) => {
            #[cfg(feature = $feature)]
            if done & $bit != 0 {
                // Teardown cannot be refused; an error here has nowhere to go.
                let _ = crate::$module::on_free(child);
            }
        };
    }
    undo!("keys", keys, bit::KEYS);
    undo!("sysvipc", semundo, bit::SEMUNDO);
    undo!("audit", audit, bit::AUDIT);
    undo!("lockdep", lockdep, bit::LOCKDEP);
    undo!("trace-irqflags", irqflags, bit::IRQFLAGS);
    undo!("numa", mempolicy, bit::MEMPOLICY);
    undo!("cpusets", cpusets, bit::CPUSETS);
    undo!("task-delay-acct", delayacct, bit::DELAYACCT);
}

/// `exec` of `filename` by `task`.
///
/// # Errors
/// The first subsystem error (every subsystem runs).
pub fn exec(task: &Task, filename: &str) -> Result<(), SubsystemError> {
    let mut first = First::default();
    #[cfg(feature = "audit")]
    first.check("audit", crate::audit::on_exec(task, filename));
    #[cfg(feature = "keys")]
    first.check("keys", crate::keys::on_exec(task, filename));
    #[cfg(feature = "proc-events")]
    first.check("proc_events", crate::proc_events::on_exec(task, filename));
    first.finish()
}

/// A change of `task`'s user ids.
///
/// # Errors
/// The first subsystem error (every subsystem runs).
pub fn uid(task: &Task, old: Ids, new: Ids) -> Result<(), SubsystemError> {
    let mut first = First::default();
    #[cfg(feature = "audit")]
    first.check("audit", crate::audit::on_uid(task, old, new));
    #[cfg(feature = "keys")]
    first.check("keys", crate::keys::on_uid(task, old, new));
    #[cfg(feature = "proc-events")]
    first.check("proc_events", crate::proc_events::on_uid(task, old, new));
    first.finish()
}

/// A change of `task`'s group ids.
///
/// # Errors
/// The first subsystem error (every subsystem runs).
pub fn gid(task: &Task, old: Ids, new: Ids) -> Result<(), SubsystemError> {
    let mut first = First::default();
    #[cfg(feature = "audit")]
    first.check("audit", crate::audit::on_gid(task, old, new));
    #[cfg(feature = "keys")]
    first.check("keys", crate::keys::on_gid(task, old, new));
    #[cfg(feature = "proc-events")]
    first.check("proc_events", crate::proc_events::on_gid(task, old, new));
    first.finish()
}

/// `task` started session `sid`.
///
/// # Errors
/// The first subsystem error.
pub fn sid(task: &Task, sid: Pid) -> Result<(), SubsystemError> {
    let mut first = First::default();
    #[cfg(feature = "proc-events")]
    first.check("proc_events", crate::proc_events::on_sid(task, sid));
    first.finish()
}

/// `task` was renamed.
///
/// # Errors
/// The first subsystem error.
pub fn comm(task: &Task, old: &str, new: &str) -> Result<(), SubsystemError> {
    let mut first = First::default();
    #[cfg(feature = "proc-events")]
    first.check("proc_events", crate::proc_events::on_comm(task, old, new));
    first.finish()
}

/// A tracer attached to `task` (or detached, `None`).
///
/// # Errors
/// The first subsystem error.
pub fn ptrace(task: &Task, tracer: Option<Pid>) -> Result<(), SubsystemError> {
    let mut first = First::default();
    #[cfg(feature = "proc-events")]
    first.check("proc_events", crate::proc_events::on_ptrace(task, tracer));
    first.finish()
}

/// `task` dumped core after `signal`.
///
/// # Errors
/// The first subsystem error.
pub fn coredump(task: &Task, signal: i32) -> Result<(), SubsystemError> {
    let mut first = First::default();
    #[cfg(feature = "proc-events")]
    first.check("proc_events", crate::proc_events::on_coredump(task, signal));
    first.finish()
}

/// `do_exit` of `task`: teardown order, the last set up first.
///
/// # Errors
/// The first subsystem error (every subsystem runs): lockdep's locks held at exit,
/// irqflags' unbalanced state, a panicking profiler.
pub fn exit(task: &Task, status: ExitStatus) -> Result<(), SubsystemError> {
    let mut first = First::default();
    #[cfg(feature = "proc-events")]
    first.check("proc_events", crate::proc_events::on_exit(task, status));
    #[cfg(feature = "profiling")]
    first.check("profile", crate::profile::on_exit(task, status));
    #[cfg(feature = "sysvipc")]
    first.check("semundo", crate::semundo::on_exit(task, status));
    #[cfg(feature = "audit")]
    first.check("audit", crate::audit::on_exit(task, status));
    #[cfg(feature = "lockdep")]
    first.check("lockdep", crate::lockdep::on_exit(task, status));
    #[cfg(feature = "trace-irqflags")]
    first.check("irqflags", crate::irqflags::on_exit(task, status));
    #[cfg(feature = "cpusets")]
    first.check("cpusets", crate::cpusets::on_exit(task, status));
    #[cfg(feature = "task-delay-acct")]
    first.check("delayacct", crate::delayacct::on_exit(task, status));
    first.finish()
}

/// `free_task` of `task`: teardown order, the last set up first.
///
/// # Errors
/// The first subsystem error (every subsystem runs).
pub fn free(task: &Task) -> Result<(), SubsystemError> {
    let mut first = First::default();
    #[cfg(feature = "keys")]
    first.check("keys", crate::keys::on_free(task));
    #[cfg(feature = "sysvipc")]
    first.check("semundo", crate::semundo::on_free(task));
    #[cfg(feature = "audit")]
    first.check("audit", crate::audit::on_free(task));
    #[cfg(feature = "lockdep")]
    first.check("lockdep", crate::lockdep::on_free(task));
    #[cfg(feature = "trace-irqflags")]
    first.check("irqflags", crate::irqflags::on_free(task));
    #[cfg(feature = "numa")]
    first.check("mempolicy", crate::mempolicy::on_free(task));
    #[cfg(feature = "cpusets")]
    first.check("cpusets", crate::cpusets::on_free(task));
    #[cfg(feature = "task-delay-acct")]
    first.check("delayacct", crate::delayacct::on_free(task));
    first.finish()
}

#[cfg(test)]
mod tests {
    use watchers_core::EventKind;

    /// The hand-written order must be the table's: compare with `all_watchers`.
    #[test]
    fn direct_order_matches_the_table() {
        let table = watchers_core::WatcherTable::from_watchers(crate::all_watchers()).unwrap();
        let module = |name: &str| -> String {
            name.trim_start_matches("watchers_subsystems::")
                .trim_end_matches("::watch")
                .to_owned()
        };
        let order = |kind| -> Vec<String> { table.order(kind).map(|w| module(w.name())).collect() };
        let fork: Vec<&str> = [
            ("task-delay-acct", "delayacct"),
            ("cpusets", "cpusets"),
            ("numa", "mempolicy"),
            ("trace-irqflags", "irqflags"),
            ("lockdep", "lockdep"),
            ("audit", "audit"),
            ("sysvipc", "semundo"),
            ("keys", "keys"),
            ("proc-events", "proc_events"),
        ]
        .into_iter()
        .filter(|(feature, _)| crate::ENABLED.contains(feature))
        .map(|(_, module)| module)
        .collect();
        assert_eq!(order(EventKind::Fork), fork);
        let exit: Vec<&str> = [
            ("proc-events", "proc_events"),
            ("profiling", "profile"),
            ("sysvipc", "semundo"),
            ("audit", "audit"),
            ("lockdep", "lockdep"),
            ("trace-irqflags", "irqflags"),
            ("cpusets", "cpusets"),
            ("task-delay-acct", "delayacct"),
        ]
        .into_iter()
        .filter(|(feature, _)| crate::ENABLED.contains(feature))
        .map(|(_, module)| module)
        .collect();
        assert_eq!(order(EventKind::Exit), exit);
        let free: Vec<&str> = [
            ("keys", "keys"),
            ("sysvipc", "semundo"),
            ("audit", "audit"),
            ("lockdep", "lockdep"),
            ("trace-irqflags", "irqflags"),
            ("numa", "mempolicy"),
            ("cpusets", "cpusets"),
            ("task-delay-acct", "delayacct"),
        ]
        .into_iter()
        .filter(|(feature, _)| crate::ENABLED.contains(feature))
        .map(|(_, module)| module)
        .collect();
        assert_eq!(order(EventKind::Free), free);
        for (kind, list) in [
            (
                EventKind::Exec,
                &[
                    ("audit", "audit"),
                    ("keys", "keys"),
                    ("proc-events", "proc_events"),
                ][..],
            ),
            (
                EventKind::Uid,
                &[
                    ("audit", "audit"),
                    ("keys", "keys"),
                    ("proc-events", "proc_events"),
                ][..],
            ),
            (EventKind::Sid, &[("proc-events", "proc_events")][..]),
        ] {
            let expected: Vec<&str> = list
                .iter()
                .filter(|(feature, _)| crate::ENABLED.contains(feature))
                .map(|(_, module)| *module)
                .collect();
            assert_eq!(order(kind), expected, "{kind}");
        }
    }
}
