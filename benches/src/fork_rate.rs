//! The patches' fork-rate table on the task model: fork + exit + reap cycles per second,
//! with no subsystem, then adding the subsystems one by one in the patches' order, each
//! row measured with the subsystems called directly by hand-written code and through
//! the table.
//!
//! Both variants run on a [`TaskTable`] and do the same subsystem work:
//!
//! * **direct**: the task table has an empty watcher table (its hook points cost one
//!   load and a branch each), and the cycle calls each subsystem's `on_fork`, `on_exit`
//!   and `on_free` entry points by name, in the table's order, the way `copy_process`
//!   and `do_exit` called `audit_alloc()`, `cpuset_fork()`… before the patches;
//! * **table**: the task table dispatches to a table frozen from the same subsystems'
//!   `watchers()`.
//!
//! A cycle forks a child of a long-lived "shell" task (empty clone flags, as `fork(2)`),
//! exits it and reaps it; both variants run it in the same loop function (the table
//! variant in the baseline's, which makes no hand-written call). Samples of the two variants alternate (direct, table, then
//! table, direct, …), so drift of a shared machine falls on both alike.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use watchers_core::{
    BoxError, CloneFlags, ExitStatus, Pid, Task, TaskTable, Watcher, WatcherTable,
};
use watchers_subsystems::{
    audit, cpusets, delayacct, irqflags, keys, lockdep, mempolicy, proc_events, profile, semundo,
};

use crate::measure::{mean_stddev, median};

pub mod real;

/// A subsystem of the fork-rate table.
#[derive(Clone, Copy)]
pub struct Subsystem {
    /// Its name (its module in `watchers-subsystems`).
    pub name: &'static str,
    /// Its watcher records, for the table variant.
    pub watchers: fn() -> Vec<Watcher>,
    /// Its counters, formatted (what the "same work" checks compare).
    pub stats: fn() -> String,
}

macro_rules! subsystem {
    ($module:ident) => {
        Subsystem {
            name: stringify!($module),
            watchers: $module::watchers,
            stats: || format!("{:?}", $module::stats()),
        }
    };
}

/// The subsystems in the order the patches converted them (v2's eight, then v1's
/// delay accounting and profile). Index `i` is bit `1 << i` of a row's subsystem mask.
pub const SUBSYSTEMS: [Subsystem; 10] = [
    subsystem!(audit),
    subsystem!(semundo),
    subsystem!(cpusets),
    subsystem!(mempolicy),
    subsystem!(irqflags),
    subsystem!(lockdep),
    subsystem!(keys),
    subsystem!(proc_events),
    subsystem!(delayacct),
    subsystem!(profile),
];

const AUDIT: u16 = 1 << 0;
const SEMUNDO: u16 = 1 << 1;
const CPUSETS: u16 = 1 << 2;
const MEMPOLICY: u16 = 1 << 3;
const IRQFLAGS: u16 = 1 << 4;
const LOCKDEP: u16 = 1 << 5;
const KEYS: u16 = 1 << 6;
const PROC_EVENTS: u16 = 1 << 7;
const DELAYACCT: u16 = 1 << 8;
const PROFILE: u16 = 1 << 9;

/// The order in which the hand-written code calls the subsystems on `fork` (indices
/// into [`SUBSYSTEMS`]). It must be the table's order (by priority), so that both
/// variants do the same work in the same order; a test checks it, and the `exit` and
/// `free` orders (the reverse, among the subsystems that watch those events).
pub const DIRECT_FORK_ORDER: [usize; 9] = [8, 2, 3, 4, 5, 0, 1, 6, 7];
/// The order of the hand-written `exec` calls (the real-fork table sends `exec`).
pub const DIRECT_EXEC_ORDER: [usize; 3] = [0, 6, 7];
/// The order of the hand-written `exit` calls.
pub const DIRECT_EXIT_ORDER: [usize; 8] = [7, 9, 1, 0, 5, 4, 2, 8];
/// The order of the hand-written `free` calls.
pub const DIRECT_FREE_ORDER: [usize; 8] = [6, 1, 0, 5, 4, 3, 2, 8];

/// The subsystem mask of row `row`: the first `row` subsystems.
pub const fn row_mask(row: usize) -> u16 {
    ((1u32 << row) - 1) as u16
}

/// Makes each `(bit, call)` whose bit is in `Self::MASK`, every one of them, and returns
/// the first error: the hand-written form of an event that cannot be refused.
macro_rules! every_step {
    ($(($bit:expr, $call:expr)),* $(,)?) => {{
        let mut first: Result<(), BoxError> = Ok(());
        $(
            if Self::MASK & $bit != 0 {
                if let Err(error) = $call {
                    if first.is_ok() {
                        first = Err(error.into());
                    }
                }
            }
        )*
        first
    }};
}

/// The hand-written calls for the subsystems of row `K` (the first `K` subsystems).
/// Constant masks fold away, so each row's functions are straight-line direct calls.
struct Direct<const K: usize>;

impl<const K: usize> Direct<K> {
    const MASK: u16 = row_mask(K);

    /// `copy_process`: each subsystem's fork hook in turn; on an error, the ones that
    /// had succeeded are undone, last first (the cleanup ladder), as the table does.
    #[inline(always)]
    fn fork(parent: &Task, child: &Task, flags: CloneFlags) -> Result<(), BoxError> {
        let mut done = 0u16;
        macro_rules! step {
            ($bit:expr, $call:expr) => {
                if Self::MASK & $bit != 0 {
                    if let Err(error) = $call {
                        Self::undo(child, done);
                        return Err(error.into());
                    }
                    done |= $bit;
                }
            };
        }
        step!(DELAYACCT, delayacct::on_fork(parent, child, flags));
        step!(CPUSETS, cpusets::on_fork(parent, child, flags));
        step!(MEMPOLICY, mempolicy::on_fork(parent, child, flags));
        step!(IRQFLAGS, irqflags::on_fork(parent, child, flags));
        step!(LOCKDEP, lockdep::on_fork(parent, child, flags));
        step!(AUDIT, audit::on_fork(parent, child, flags));
        step!(SEMUNDO, semundo::on_fork(parent, child, flags));
        step!(KEYS, keys::on_fork(parent, child, flags));
        step!(PROC_EVENTS, proc_events::on_fork(parent, child, flags));
        let _ = done;
        Ok(())
    }

    /// The rollback of a refused fork: `free` to the subsystems in `done` that watch it.
    #[cold]
    fn undo(child: &Task, done: u16) {
        if done & KEYS != 0 {
            let _ = keys::on_free(child);
        }
        if done & SEMUNDO != 0 {
            let _ = semundo::on_free(child);
        }
        if done & AUDIT != 0 {
            let _ = audit::on_free(child);
        }
        if done & LOCKDEP != 0 {
            let _ = lockdep::on_free(child);
        }
        if done & IRQFLAGS != 0 {
            let _ = irqflags::on_free(child);
        }
        if done & MEMPOLICY != 0 {
            let _ = mempolicy::on_free(child);
        }
        if done & CPUSETS != 0 {
            let _ = cpusets::on_free(child);
        }
        if done & DELAYACCT != 0 {
            let _ = delayacct::on_free(child);
        }
    }

    /// `exec`: every exec hook in the table's order; the first error is returned.
    #[inline(always)]
    fn exec(task: &Task, filename: &str) -> Result<(), BoxError> {
        every_step!(
            (AUDIT, audit::on_exec(task, filename)),
            (KEYS, keys::on_exec(task, filename)),
            (PROC_EVENTS, proc_events::on_exec(task, filename)),
        )
    }

    /// `do_exit`: every exit hook, last set up first; the first error is returned.
    #[inline(always)]
    fn exit(task: &Task, status: ExitStatus) -> Result<(), BoxError> {
        every_step!(
            (PROC_EVENTS, proc_events::on_exit(task, status)),
            (PROFILE, profile::on_exit(task, status)),
            (SEMUNDO, semundo::on_exit(task, status)),
            (AUDIT, audit::on_exit(task, status)),
            (LOCKDEP, lockdep::on_exit(task, status)),
            (IRQFLAGS, irqflags::on_exit(task, status)),
            (CPUSETS, cpusets::on_exit(task, status)),
            (DELAYACCT, delayacct::on_exit(task, status)),
        )
    }

    /// `free_task`: every free hook, last set up first; the first error is returned.
    #[inline(always)]
    fn free(task: &Task) -> Result<(), BoxError> {
        every_step!(
            (KEYS, keys::on_free(task)),
            (SEMUNDO, semundo::on_free(task)),
            (AUDIT, audit::on_free(task)),
            (LOCKDEP, lockdep::on_free(task)),
            (IRQFLAGS, irqflags::on_free(task)),
            (MEMPOLICY, mempolicy::on_free(task)),
            (CPUSETS, cpusets::on_free(task)),
            (DELAYACCT, delayacct::on_free(task)),
        )
    }

    /// `cycles` fork + exit + reap cycles with direct calls.
    #[inline(never)]
    fn run(bench: &Bench, cycles: u64) -> Result<Duration, String> {
        let tasks = &bench.tasks;
        let shell = &*bench.shell;
        let start = Instant::now();
        for _ in 0..cycles {
            let child = tasks.fork(shell.pid(), FLAGS).map_err(|e| e.to_string())?;
            if let Err(error) = Self::fork(shell, &child, FLAGS) {
                // The kernel would unwind the fork; the model's task is simply dropped.
                let _ = tasks.exit(child.pid(), 1);
                let _ = tasks.reap(shell.pid(), child.pid());
                return Err(format!("a subsystem refused a fork: {error}"));
            }
            let pid = black_box(child.pid());
            tasks.exit(pid, 0).map_err(|e| e.to_string())?;
            Self::exit(&child, STATUS).map_err(|e| e.to_string())?;
            Self::free(&child).map_err(|e| e.to_string())?;
            tasks.reap(shell.pid(), pid).map_err(|e| e.to_string())?;
        }
        Ok(start.elapsed())
    }
}

/// `Direct::<row>::$call`, for a row known only at run time (at most [`SUBSYSTEMS`]`.len()`,
/// which [`Bench::new`] checks).
macro_rules! by_row {
    ($row:expr, $call:ident($($arg:expr),*)) => {
        match $row {
            0 => Direct::<0>::$call($($arg),*),
            1 => Direct::<1>::$call($($arg),*),
            2 => Direct::<2>::$call($($arg),*),
            3 => Direct::<3>::$call($($arg),*),
            4 => Direct::<4>::$call($($arg),*),
            5 => Direct::<5>::$call($($arg),*),
            6 => Direct::<6>::$call($($arg),*),
            7 => Direct::<7>::$call($($arg),*),
            8 => Direct::<8>::$call($($arg),*),
            9 => Direct::<9>::$call($($arg),*),
            10 => Direct::<10>::$call($($arg),*),
            _ => unreachable!("checked in Bench::new"),
        }
    };
}
use by_row;

const FLAGS: CloneFlags = CloneFlags::empty();
const STATUS: ExitStatus = ExitStatus::exited(0);

/// How a row's subsystems are called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Hand-written direct calls of the entry points.
    Direct,
    /// Dispatch through the frozen table.
    Table,
}

/// One row's task table for one variant, ready to run cycles.
pub struct Bench {
    row: usize,
    variant: Variant,
    tasks: TaskTable,
    shell: Arc<Task>,
}

impl Bench {
    /// The task table for the first `row` subsystems of [`SUBSYSTEMS`], called the
    /// `variant` way.
    ///
    /// # Panics
    /// If `row` is more than [`SUBSYSTEMS`]`.len()`. The watcher table is leaked.
    pub fn new(row: usize, variant: Variant) -> Bench {
        assert!(
            row <= SUBSYSTEMS.len(),
            "only {} subsystems",
            SUBSYSTEMS.len()
        );
        let watchers = match variant {
            Variant::Direct => Vec::new(),
            Variant::Table => watchers_of(row),
        };
        // The task table counts forks, exits and frees itself; the watcher table's own
        // dispatch counts are optional and off here.
        let table = WatcherTable::from_watchers(watchers)
            .expect("the subsystems' watchers form a table")
            .without_call_counts();
        let tasks = TaskTable::with_table(table);
        let shell = tasks.fork(Pid::INIT, FLAGS).expect("forking the shell");
        if variant == Variant::Direct {
            // The table variant's shell went through the subsystems' fork watchers; the
            // direct variant's must hold the same state, or its children would take the
            // cheap "parent has nothing" paths and the rows would compare unequal work.
            direct_fork(row, tasks.init(), &shell).expect("the subsystems accept the shell");
        }
        Bench {
            row,
            variant,
            tasks,
            shell,
        }
    }

    /// Runs `cycles` fork + exit + reap cycles and returns how long they took.
    ///
    /// # Errors
    /// A task-model or subsystem error (none is expected).
    pub fn run(&self, cycles: u64) -> Result<Duration, String> {
        match self.variant {
            // The same loop as the baseline's direct variant (no hand-written call),
            // so that both variants run the same machine code but for the calls
            // themselves: a loop of its own would differ by its code layout alone.
            Variant::Table => Direct::<0>::run(self, cycles),
            Variant::Direct => by_row!(self.row, run(self, cycles)),
        }
    }

    /// The task table (for checks).
    pub fn tasks(&self) -> &TaskTable {
        &self.tasks
    }

    /// The long-lived parent of every cycle's child.
    pub fn shell(&self) -> &Arc<Task> {
        &self.shell
    }

    /// The second half of a cycle started by [`fork_child`](Bench::fork_child): exit
    /// (with the row's exit and free hooks called by hand in the direct variant) and reap.
    ///
    /// # Errors
    /// A task-model or subsystem error (none is expected).
    pub fn end_child(&self, child: &Task) -> Result<(), String> {
        let pid = child.pid();
        self.tasks.exit(pid, 0).map_err(|e| e.to_string())?;
        if self.variant == Variant::Direct {
            by_row!(self.row, exit(child, STATUS)).map_err(|e| e.to_string())?;
            by_row!(self.row, free(child)).map_err(|e| e.to_string())?;
        }
        self.tasks
            .reap(self.shell.pid(), pid)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The first half of a cycle, for checks: forks a child of the shell and, in the
    /// direct variant, calls the row's fork hooks by hand.
    ///
    /// # Errors
    /// A task-model or subsystem error (none is expected).
    pub fn fork_child(&self) -> Result<Arc<Task>, String> {
        let child = self
            .tasks
            .fork(self.shell.pid(), FLAGS)
            .map_err(|e| e.to_string())?;
        if self.variant == Variant::Direct {
            direct_fork(self.row, &self.shell, &child).map_err(|e| e.to_string())?;
        }
        Ok(child)
    }
}

/// The hand-written fork hooks of row `row`, for a child forked outside [`Direct::run`].
fn direct_fork(row: usize, parent: &Task, child: &Task) -> Result<(), BoxError> {
    by_row!(row, fork(parent, child, FLAGS))
}

/// Every subsystem's per-task state of `task`, as text: what the fairness check compares
/// between the variants. Key serials are global counters, so keyrings are described by
/// their type, name, owner and links only.
pub fn task_state(task: &Task) -> String {
    let keyrings: Vec<_> = [
        keys::KeyringKind::Thread,
        keys::KeyringKind::Process,
        keys::KeyringKind::Session,
    ]
    .into_iter()
    .map(|kind| keys::keyring(task, kind).map(|k| (k.kind, k.description, k.uid, k.gid, k.links)))
    .collect();
    format!(
        "audit {:?}; semundo {:?}; cpusets {:?}; mempolicy {:?}; irqflags {:?}; lockdep {:?}; \
         keys {:?}; delayacct {:?}",
        audit::context(task).map(|c| (c.loginuid(), c.sessionid(), c.records())),
        semundo::undo_list(task),
        cpusets::membership(task),
        mempolicy::task_policy(task),
        irqflags::state(task),
        lockdep::held_locks(task),
        keyrings,
        delayacct::delays(task),
    )
}

/// The watcher records of the first `row` subsystems.
pub fn watchers_of(row: usize) -> Vec<Watcher> {
    SUBSYSTEMS[..row]
        .iter()
        .flat_map(|s| (s.watchers)())
        .collect()
}

/// Puts the subsystems back in a steady state between samples (not timed): audit's
/// backlog is read out, as `auditd` would, so that every sample writes records rather
/// than some samples counting them as lost.
pub fn settle() {
    let _ = audit::read_records(usize::MAX);
}

/// Forks per second over the samples of one variant of a row.
#[derive(Clone, Debug, Serialize)]
pub struct Rate {
    /// The mean.
    pub mean: f64,
    /// The sample standard deviation.
    pub stddev: f64,
    /// The median.
    pub median: f64,
}

impl Rate {
    fn of(samples: &[f64]) -> Rate {
        let (mean, stddev) = mean_stddev(samples);
        Rate {
            mean,
            stddev,
            median: median(samples),
        }
    }
}

/// One row of the fork-rate table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `baseline`, or `+ name` of the subsystem this row adds.
    pub label: String,
    /// The subsystems called in this row.
    pub subsystems: Vec<&'static str>,
    /// Forks per second with hand-written direct calls.
    pub direct: Rate,
    /// Forks per second through the table.
    pub table: Rate,
    /// `table.mean / direct.mean`.
    pub ratio: f64,
    /// The median of the ratios of the paired (adjacent) samples: less sensitive to
    /// drift than the ratio of means.
    pub paired_ratio: f64,
}

/// The whole table.
#[derive(Clone, Debug, Serialize)]
pub struct ForkRate {
    /// Samples per variant per row.
    pub samples: usize,
    /// Fork + exit + reap cycles per sample.
    pub cycles_per_sample: Vec<u64>,
    /// The rows, baseline first.
    pub rows: Vec<Row>,
}

/// How to measure the table.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Samples per variant per row.
    pub samples: usize,
    /// About how long one sample runs.
    pub sample_time: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            samples: 100,
            sample_time: Duration::from_millis(5),
        }
    }
}

/// One variant of one row, ready to run timed cycles: the model's [`Bench`], or the
/// real-process one of [`real`].
trait Sample {
    fn variant(&self) -> Variant;
    fn run(&self, cycles: u64) -> Result<Duration, String>;
}

impl Sample for Bench {
    fn variant(&self) -> Variant {
        self.variant
    }

    fn run(&self, cycles: u64) -> Result<Duration, String> {
        Bench::run(self, cycles)
    }
}

/// Measures every row.
///
/// # Errors
/// A task-model or subsystem error (none is expected).
pub fn measure(options: Options) -> Result<ForkRate, String> {
    measure_rows(options, |row, variant| Ok(Bench::new(row, variant)))
}

/// Measures every row of the variants that `bench` makes.
fn measure_rows<B: Sample>(
    options: Options,
    bench: impl Fn(usize, Variant) -> Result<B, String>,
) -> Result<ForkRate, String> {
    let samples = options.samples.max(1);
    let mut rows = Vec::new();
    let mut cycles_per_sample = Vec::new();
    for row in 0..=SUBSYSTEMS.len() {
        let direct = bench(row, Variant::Direct)?;
        let table = bench(row, Variant::Table)?;
        // Warm up both and size a sample from the direct variant.
        settle();
        let cycles = calibrate(&direct, options.sample_time)?;
        table.run(cycles / 4 + 1)?;
        let mut direct_rates = Vec::with_capacity(samples);
        let mut table_rates = Vec::with_capacity(samples);
        for i in 0..samples {
            let order = if i % 2 == 0 {
                [&direct, &table]
            } else {
                [&table, &direct]
            };
            for bench in order {
                settle();
                let took = bench.run(cycles)?;
                let rate = cycles as f64 / took.as_secs_f64();
                match bench.variant() {
                    Variant::Direct => direct_rates.push(rate),
                    Variant::Table => table_rates.push(rate),
                }
            }
        }
        let paired: Vec<f64> = table_rates
            .iter()
            .zip(&direct_rates)
            .map(|(t, d)| t / d)
            .collect();
        let direct_rate = Rate::of(&direct_rates);
        let table_rate = Rate::of(&table_rates);
        rows.push(Row {
            label: match row {
                0 => "baseline".to_owned(),
                _ => format!("+ {}", SUBSYSTEMS[row - 1].name),
            },
            subsystems: SUBSYSTEMS[..row].iter().map(|s| s.name).collect(),
            ratio: table_rate.mean / direct_rate.mean,
            paired_ratio: median(&paired),
            direct: direct_rate,
            table: table_rate,
        });
        cycles_per_sample.push(cycles);
    }
    Ok(ForkRate {
        samples,
        cycles_per_sample,
        rows,
    })
}

/// The cycle count whose run takes about `target`.
fn calibrate(bench: &impl Sample, target: Duration) -> Result<u64, String> {
    let mut cycles = 16u64;
    loop {
        let took = bench.run(cycles)?;
        if took >= target / 4 || cycles >= 1 << 24 {
            let per_cycle = took.as_secs_f64() / cycles as f64;
            return Ok(((target.as_secs_f64() / per_cycle.max(1e-9)) as u64).max(1));
        }
        cycles *= 2;
    }
}

/// The table as text, like the patches' (forks per second, mean ± standard deviation).
pub fn render(table: &ForkRate) -> String {
    render_with("fork + exit + reap cycles", table)
}

/// The table as text, its rows counting `what` per second.
fn render_with(what: &str, table: &ForkRate) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{what} per second, mean ± stddev over {} samples each (direct and table interleaved)",
        table.samples
    );
    let _ = writeln!(
        out,
        "{:<14} {:>20} {:>20} {:>8} {:>8}",
        "row", "direct calls", "through the table", "ratio", "paired"
    );
    for row in &table.rows {
        let _ = writeln!(
            out,
            "{:<14} {:>11.0} ± {:<6.0} {:>11.0} ± {:<6.0} {:>8.3} {:>8.3}",
            row.label,
            row.direct.mean,
            row.direct.stddev,
            row.table.mean,
            row.table.stddev,
            row.ratio,
            row.paired_ratio
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use watchers_core::EventKind;

    use super::*;

    /// The subsystems' counters are global: one test at a time.
    pub(super) static SERIAL: Mutex<()> = Mutex::new(());

    fn numbers(text: &str) -> Vec<i128> {
        text.split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("digits"))
            .collect()
    }

    pub(super) fn counters() -> Vec<Vec<i128>> {
        SUBSYSTEMS.iter().map(|s| numbers(&(s.stats)())).collect()
    }

    pub(super) fn delta(before: &[Vec<i128>], after: &[Vec<i128>]) -> Vec<Vec<i128>> {
        before
            .iter()
            .zip(after)
            .map(|(b, a)| a.iter().zip(b).map(|(a, b)| a - b).collect())
            .collect()
    }

    #[test]
    fn direct_order_is_the_table_order() {
        let table = WatcherTable::from_watchers(watchers_of(SUBSYSTEMS.len())).unwrap();
        let module = |name: &str| {
            SUBSYSTEMS
                .iter()
                .position(|s| name.contains(&format!("::{}::", s.name)))
                .unwrap_or_else(|| panic!("{name} is no benchmark subsystem"))
        };
        let order = |kind| {
            table
                .order(kind)
                .map(|w| module(w.name()))
                .collect::<Vec<_>>()
        };
        assert_eq!(order(EventKind::Fork), DIRECT_FORK_ORDER);
        assert_eq!(order(EventKind::Exec), DIRECT_EXEC_ORDER);
        assert_eq!(order(EventKind::Exit), DIRECT_EXIT_ORDER);
        assert_eq!(order(EventKind::Free), DIRECT_FREE_ORDER);
    }

    #[test]
    fn direct_and_table_do_the_same_subsystem_work() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        for row in 0..=SUBSYSTEMS.len() {
            let direct = Bench::new(row, Variant::Direct);
            let table = Bench::new(row, Variant::Table);
            // A first run creates what stays (profile's per-name counter, for one).
            direct.run(1).unwrap();
            table.run(1).unwrap();
            settle();
            let before = counters();
            direct.run(50).unwrap();
            settle();
            let middle = counters();
            table.run(50).unwrap();
            settle();
            let after = counters();
            let by_direct = delta(&before, &middle);
            let by_table = delta(&middle, &after);
            assert_eq!(by_direct, by_table, "row {row}");
            // The subsystems not in the row did nothing. (Those in it did the same as
            // above; semundo has nothing to do for a fork without `CLONE_SYSVSEM`.)
            for (i, d) in by_direct.iter().enumerate().skip(row) {
                assert!(
                    d.iter().all(|&x| x == 0),
                    "row {row}, {}",
                    SUBSYSTEMS[i].name
                );
            }
            assert!(by_direct[..row].iter().flatten().any(|&x| x != 0) || row < 1);
            for bench in [&direct, &table] {
                let stats = bench.tasks().stats();
                assert_eq!((stats.forks, stats.frees, stats.tasks), (52, 51, 2));
            }
        }
    }

    #[test]
    fn both_variants_start_from_the_same_per_task_state() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let nothing = task_state(&Task::detached(4242));
        for row in 0..=SUBSYSTEMS.len() {
            let direct = Bench::new(row, Variant::Direct);
            let table = Bench::new(row, Variant::Table);
            let shell = task_state(direct.shell());
            assert_eq!(shell, task_state(table.shell()), "row {row}: the shells");
            // The premise: with subsystems in the row, the shell holds state of theirs.
            assert_eq!(shell == nothing, row == 0, "row {row}: {shell}");
            let (a, b) = (direct.fork_child().unwrap(), table.fork_child().unwrap());
            assert_eq!(task_state(&a), task_state(&b), "row {row}: the children");
            direct.end_child(&a).unwrap();
            table.end_child(&b).unwrap();
            // The cycle's teardown left the same state behind in both.
            assert_eq!(task_state(&a), task_state(&b), "row {row}: after the reap");
            assert_eq!(task_state(direct.shell()), task_state(table.shell()));
        }
    }

    #[test]
    fn measure_gives_every_row() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let table = measure(Options {
            samples: 2,
            sample_time: Duration::from_micros(300),
        })
        .unwrap();
        assert_eq!(table.rows.len(), SUBSYSTEMS.len() + 1);
        assert!(
            table
                .rows
                .iter()
                .all(|r| r.ratio.is_finite() && r.ratio > 0.0)
        );
        assert!(render(&table).contains("baseline"));
    }
}
