//! The fork-rate table on real processes, as the patches measured it: each cycle spawns
//! `/bin/true` and waits for it (fork, exec, exit, reap), with no subsystem, then adding
//! the subsystems one by one.
//!
//! * **direct**: the child's task lives in a mirror [`TaskTable`] with an empty watcher
//!   table, and hand-written code calls each subsystem's `fork` hooks before
//!   [`Command::spawn`], its `exec` hooks once the program runs, and its `exit` and
//!   `free` hooks after [`Child::wait`](std::process::Child::wait), in the table's order;
//! * **table**: the child is spawned through the child-process source
//!   ([`watchers_process`]), which sends the same events through a table frozen from the
//!   same subsystems' watchers.
//!
//! Samples of the two variants alternate, as in the model's table.

use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use watchers_core::{Pid, Task, TaskTable, WatcherTable};
use watchers_process::{CommandExt, Processes, to_task_status};

use super::{Direct, FLAGS, ForkRate, Options, SUBSYSTEMS, Sample, Variant, by_row};

/// The program every cycle runs.
pub const PROGRAM: &str = "/bin/true";

/// The target: on every row, table / direct at least this, taken as the median of the
/// paired samples' ratios ([`Row::paired_ratio`](super::Row::paired_ratio)). A spawn
/// of a real process costs about a millisecond, of which the table's share is well under
/// a microsecond, and a sample's rate swings by tens of percent with the machine's load:
/// the mean of a few bursts moves the ratio of means by more than the effect, where the
/// median of adjacent pairs (same load, order alternating) does not.
pub const TARGET: f64 = 0.99;

/// One row's variant on real processes.
pub struct RealBench {
    row: usize,
    how: How,
}

#[allow(
    clippy::large_enum_variant,
    reason = "one per benchmark variant; boxing the table would add a hop to the direct side only"
)]
enum How {
    Direct { tasks: TaskTable, shell: Arc<Task> },
    Table(&'static Processes),
}

impl RealBench {
    /// The bench for the first `row` subsystems of [`SUBSYSTEMS`], called the `variant`
    /// way. The watcher table (and the table variant's source) are leaked.
    ///
    /// # Errors
    /// If `row` is more than [`SUBSYSTEMS`]`.len()`, or the watchers form no table.
    pub fn new(row: usize, variant: Variant) -> Result<RealBench, String> {
        if row > SUBSYSTEMS.len() {
            return Err(format!("only {} subsystems", SUBSYSTEMS.len()));
        }
        let watchers = match variant {
            Variant::Direct => Vec::new(),
            Variant::Table => super::watchers_of(row),
        };
        let table = WatcherTable::from_watchers(watchers)
            .map_err(|e| e.to_string())?
            .leak();
        let how = match variant {
            Variant::Direct => {
                let tasks = TaskTable::with_table(table);
                let shell = tasks.fork(Pid::INIT, FLAGS).map_err(|e| e.to_string())?;
                How::Direct { tasks, shell }
            }
            Variant::Table => How::Table(Box::leak(Box::new(Processes::new(table)))),
        };
        Ok(RealBench { row, how })
    }

    /// Spawns and waits for [`PROGRAM`] `cycles` times; returns how long it took.
    ///
    /// # Errors
    /// If the program cannot be spawned or waited for, or fails; or a task-model or
    /// subsystem error (none is expected).
    pub fn run(&self, cycles: u64) -> Result<Duration, String> {
        match &self.how {
            How::Direct { tasks, shell } => {
                by_row!(self.row, run_real(tasks, shell, cycles))
            }
            How::Table(processes) => run_table(processes, cycles),
        }
    }

    /// The mirror table the children's tasks live in (for checks).
    pub fn tasks(&self) -> &TaskTable {
        match &self.how {
            How::Direct { tasks, .. } => tasks,
            How::Table(processes) => processes.tasks(),
        }
    }
}

impl Sample for RealBench {
    fn variant(&self) -> Variant {
        match self.how {
            How::Direct { .. } => Variant::Direct,
            How::Table(_) => Variant::Table,
        }
    }

    fn run(&self, cycles: u64) -> Result<Duration, String> {
        RealBench::run(self, cycles)
    }
}

/// The table variant's cycles: the child-process source does everything.
#[inline(never)]
fn run_table(processes: &'static Processes, cycles: u64) -> Result<Duration, String> {
    let start = Instant::now();
    for _ in 0..cycles {
        let mut child = Command::new(PROGRAM)
            .spawn_watched_in(processes)
            .map_err(|e| e.to_string())?;
        let status = child.wait().map_err(|e| e.to_string())?;
        if !black_box(status).success() {
            return Err(format!("{PROGRAM} failed: {status}"));
        }
    }
    Ok(start.elapsed())
}

impl<const K: usize> Direct<K> {
    /// The direct variant's cycles: the mirror's bookkeeping and the hand-written calls
    /// around a plain std spawn and wait.
    #[inline(never)]
    fn run_real(tasks: &TaskTable, shell: &Task, cycles: u64) -> Result<Duration, String> {
        let text = |e: &dyn std::fmt::Display| e.to_string();
        let start = Instant::now();
        for _ in 0..cycles {
            let child = tasks.fork(shell.pid(), FLAGS).map_err(|e| text(&e))?;
            let pid = child.pid();
            if let Err(error) = Self::fork(shell, &child, FLAGS) {
                let _ = tasks.abort_fork(&child);
                return Err(format!("a subsystem refused a fork: {error}"));
            }
            let mut process = match Command::new(PROGRAM).spawn() {
                Ok(process) => process,
                Err(error) => {
                    let _ = Self::free(&child);
                    let _ = tasks.abort_fork(&child);
                    return Err(format!("cannot spawn {PROGRAM}: {error}"));
                }
            };
            tasks.exec(pid, PROGRAM).map_err(|e| text(&e))?;
            Self::exec(&child, PROGRAM).map_err(|e| text(&e))?;
            let status = process.wait().map_err(|e| text(&e))?;
            if !black_box(status).success() {
                return Err(format!("{PROGRAM} failed: {status}"));
            }
            let status = to_task_status(status);
            tasks.exit_with(pid, status).map_err(|e| text(&e))?;
            Self::exit(&child, status).map_err(|e| text(&e))?;
            Self::free(&child).map_err(|e| text(&e))?;
            tasks.reap(shell.pid(), pid).map_err(|e| text(&e))?;
        }
        Ok(start.elapsed())
    }
}

/// Measures every row on real processes.
///
/// # Errors
/// If [`PROGRAM`] cannot be run, or a task-model or subsystem error.
pub fn measure(options: Options) -> Result<ForkRate, String> {
    super::measure_rows(options, RealBench::new)
}

/// The rows whose paired table / direct ratio misses [`TARGET`].
pub fn missed(table: &ForkRate) -> Vec<&str> {
    table
        .rows
        .iter()
        .filter(|row| row.paired_ratio < TARGET)
        .map(|row| row.label.as_str())
        .collect()
}

/// The table as text, with the target.
pub fn render(table: &ForkRate) -> String {
    let mut text = super::render_with(&format!("spawn + wait of {PROGRAM}"), table);
    let missed = missed(table);
    text.push_str(&format!(
        "target: table / direct >= {TARGET} on every row (paired: the median of adjacent samples' ratios): {}\n",
        if missed.is_empty() {
            "met".to_owned()
        } else {
            format!("MISSED on {}", missed.join(", "))
        }
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SERIAL, counters, delta};
    use super::*;

    #[test]
    fn direct_and_table_do_the_same_subsystem_work_on_real_processes() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        for row in [0, 3, SUBSYSTEMS.len()] {
            let direct = RealBench::new(row, Variant::Direct).unwrap();
            let table = RealBench::new(row, Variant::Table).unwrap();
            direct.run(1).unwrap();
            table.run(1).unwrap();
            super::super::settle();
            let before = counters();
            direct.run(10).unwrap();
            super::super::settle();
            let middle = counters();
            table.run(10).unwrap();
            super::super::settle();
            let after = counters();
            let by_direct = delta(&before, &middle);
            assert_eq!(by_direct, delta(&middle, &after), "row {row}");
            // The premise: the subsystems of the row did work.
            assert!(row == 0 || by_direct.iter().flatten().any(|&x| x != 0));
            for bench in [&direct, &table] {
                let stats = bench.tasks().stats();
                assert_eq!((stats.exits, stats.frees, stats.tasks), (11, 11, 2));
            }
        }
    }

    #[test]
    fn measure_gives_every_row() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let table = measure(Options {
            samples: 1,
            sample_time: Duration::from_millis(2),
        })
        .unwrap();
        assert_eq!(table.rows.len(), SUBSYSTEMS.len() + 1);
        assert!(
            table
                .rows
                .iter()
                .all(|r| r.ratio.is_finite() && r.ratio > 0.0)
        );
        assert!(render(&table).contains("/bin/true"));
    }

    #[test]
    fn a_row_past_the_last_is_an_error() {
        assert!(RealBench::new(SUBSYSTEMS.len() + 1, Variant::Table).is_err());
    }
}
