//! Instruction counts under callgrind: the dispatch variants and the fork-rate rows
//! counted in instructions, which, unlike time on a shared machine, do not drift.
//!
//! A count is taken by running one [`Subject`] `reps` times in a child process under
//! `valgrind --tool=callgrind`, collecting only inside the `icount_loop*` functions (no one of which calls another: callgrind toggles collection at each entry)
//! (`--toggle-collect`), at two repetition counts: the difference divided by the
//! difference of the counts is the cost of one repetition, with every fixed cost
//! (building the variant, entering the loop) cancelled. The child is the caller's own
//! program (for `taskwatch`: `taskwatch bench --icount-run SUBJECT REPS`), which calls
//! [`run_subject`].
//!
//! The gate ([`Gate`]) holds a ceiling per figure in `benches/instructions.toml`,
//! compiled in; [`Gate::check`] says which measured figure is over its ceiling.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use watchers_core::{Event, EventKind, Task};

use crate::fork_rate::{Bench, SUBSYSTEMS, Variant, settle};
use crate::measure::exec_event;
use crate::thread_spawn;
use crate::variants::{Variants, Via, unwanted_event};
use crate::watchers::{COUNTS, run_direct};

/// The dispatch variants counted, in column order.
pub const DISPATCH_VIAS: [Via; 5] = [
    Via::Direct,
    Via::Table,
    Via::TableWithRuntime,
    Via::RwLock,
    Via::ArcSwap,
];

/// The two repetition counts of a dispatch figure (the second is twice the first).
pub const DISPATCH_REPS: u64 = 1000;
/// The two repetition counts of a fork-cycle figure (the second is twice the first).
pub const FORK_REPS: u64 = 1000;
/// The two repetition counts of a thread spawn + join figure (the second is twice the
/// first).
pub const THREAD_REPS: u64 = 200;
/// Pairs of processes a fork-cycle figure is the median of.
const FORK_PROCESS_PAIRS: usize = 3;
/// Uncounted fork cycles run first, whatever the repetition count, so that both counts
/// start from the same steady state (the hash maps and backlog sized).
const FORK_WARM_UP: u64 = 1000;

/// What went wrong counting instructions.
#[derive(Debug, thiserror::Error)]
pub enum IcountError {
    /// The subject's arguments were not understood.
    #[error("unknown instruction-count subject `{0}`")]
    Subject(String),
    /// valgrind could not be started.
    #[error("cannot run valgrind (Debian package `valgrind`): {0}")]
    Spawn(#[from] std::io::Error),
    /// The child failed.
    #[error("`{subject}` under callgrind failed ({status}): {stderr}")]
    Failed {
        /// The subject.
        subject: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its error output.
        stderr: String,
    },
    /// callgrind's output had no `Collected` line.
    #[error("no `Collected :` line in callgrind's output for `{0}`")]
    NoCount(String),
    /// More instructions at the lower repetition count than at the higher.
    #[error("`{0}`: fewer instructions for more repetitions")]
    NotMonotonic(String),
    /// The subject itself failed in the child.
    #[error("{0}")]
    Run(String),
    /// The checked-in gate does not parse.
    #[error("benches/instructions.toml: {0}")]
    Gate(String),
}

/// One thing whose instructions per repetition are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// One `exec` dispatch to `n` watchers (one of [`COUNTS`]) `via` a variant.
    Dispatch {
        /// The variant.
        via: Via,
        /// How many watchers.
        n: usize,
    },
    /// The loop of [`Subject::Unwanted`] without the dispatch: builds the event and reads
    /// its kind.
    EmptyLoop,
    /// The dispatch of an event no watcher of an 8-watcher table wants.
    Unwanted,
    /// One fork + exit + reap cycle of a fork-rate row.
    Fork {
        /// The row (how many subsystems).
        row: usize,
        /// Direct calls or the table.
        variant: Variant,
    },
    /// One thread spawn + join: with [`std::thread::spawn`] (`watched: false`) or
    /// through the threads source with 8 trivial watchers. Counted on every thread,
    /// since the new thread's `exit` and `free` are part of the work.
    Thread {
        /// Through the threads source.
        watched: bool,
    },
}

impl Subject {
    /// The subject as one argument (`dispatch/table/8`, `empty-loop`, `unwanted`,
    /// `fork/direct/10`); [`Subject::parse`] reads it back.
    pub fn arg(self) -> String {
        match self {
            Subject::Dispatch { via, n } => format!("dispatch/{}/{n}", via.name()),
            Subject::EmptyLoop => "empty-loop".to_owned(),
            Subject::Unwanted => "unwanted".to_owned(),
            Subject::Fork { row, variant } => format!("fork/{}/{row}", variant_name(variant)),
            Subject::Thread { watched: false } => "thread/std".to_owned(),
            Subject::Thread { watched: true } => "thread/watched".to_owned(),
        }
    }

    /// Reads [`Subject::arg`].
    ///
    /// # Errors
    /// [`IcountError::Subject`] for anything else.
    pub fn parse(text: &str) -> Result<Subject, IcountError> {
        let bad = || IcountError::Subject(text.to_owned());
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            ["empty-loop"] => Ok(Subject::EmptyLoop),
            ["unwanted"] => Ok(Subject::Unwanted),
            ["thread", "std"] => Ok(Subject::Thread { watched: false }),
            ["thread", "watched"] => Ok(Subject::Thread { watched: true }),
            ["dispatch", via, n] => {
                let via = DISPATCH_VIAS
                    .into_iter()
                    .find(|v| v.name() == *via)
                    .ok_or_else(bad)?;
                let n: usize = n.parse().map_err(|_| bad())?;
                if !COUNTS.contains(&n) {
                    return Err(bad());
                }
                Ok(Subject::Dispatch { via, n })
            }
            ["fork", variant, row] => {
                let variant = match *variant {
                    "direct" => Variant::Direct,
                    "table" => Variant::Table,
                    _ => return Err(bad()),
                };
                let row: usize = row.parse().map_err(|_| bad())?;
                if row > SUBSYSTEMS.len() {
                    return Err(bad());
                }
                Ok(Subject::Fork { row, variant })
            }
            _ => Err(bad()),
        }
    }

    fn reps(self) -> u64 {
        match self {
            Subject::Fork { .. } => FORK_REPS,
            Subject::Thread { .. } => THREAD_REPS,
            _ => DISPATCH_REPS,
        }
    }
}

fn variant_name(variant: Variant) -> &'static str {
    match variant {
        Variant::Direct => "direct",
        Variant::Table => "table",
    }
}

/// Runs `subject` `reps` times inside an `icount_loop*` function (what the child process
/// under callgrind does); building the variant and warming it up happen outside it.
///
/// # Errors
/// A fork-cycle error (none is expected).
pub fn run_subject(subject: Subject, reps: u64) -> Result<(), String> {
    let task = Task::detached(1);
    let event = exec_event(&task);
    match subject {
        Subject::Dispatch {
            via: Via::Direct,
            n,
        } => run_direct(n, reps, &event),
        Subject::Dispatch { via, n } => {
            // A loop per variant with its dispatch inlined, as the timed loops have.
            let v = Variants::new(n);
            let (table, mixed) = (v.table, v.mixed);
            match via {
                Via::Direct => unreachable!("counted above"),
                Via::Table => icount_loop(reps, &|e: &Event<'_>| table.dispatch(e).is_ok(), &event),
                Via::TableWithRuntime => {
                    icount_loop(reps, &|e: &Event<'_>| mixed.dispatch(e).is_ok(), &event);
                }
                Via::RwLock => {
                    icount_loop(reps, &|e: &Event<'_>| v.rwlock.dispatch(e).is_ok(), &event)
                }
                Via::Mutex => {
                    icount_loop(reps, &|e: &Event<'_>| v.mutex.dispatch(e).is_ok(), &event)
                }
                Via::ArcSwap => {
                    icount_loop(
                        reps,
                        &|e: &Event<'_>| v.arc_swap.dispatch(e).is_ok(),
                        &event,
                    );
                }
            }
        }
        Subject::EmptyLoop => icount_loop(
            reps,
            &|e: &Event<'_>| black_box(&unwanted_event(e)).kind() != EventKind::Fork,
            &event,
        ),
        Subject::Unwanted => {
            let table = Variants::new(8).table;
            icount_loop(
                reps,
                &|e: &Event<'_>| table.dispatch(black_box(&unwanted_event(e))).is_ok(),
                &event,
            );
        }
        Subject::Fork { row, variant } => {
            let bench = Bench::new(row, variant);
            // Warm up (allocations reach their steady size), then start from an empty
            // audit backlog, as every sample of the timed table does.
            bench.run(FORK_WARM_UP)?;
            settle();
            icount_loop_cycles(&bench, reps)?;
        }
        Subject::Thread { watched } => {
            // Collected everywhere (see `Child::collected`): the same warm-up at both
            // repetition counts, so that only the spawns differ.
            let threads = thread_spawn::source();
            thread_spawn::std_cycles(THREAD_REPS);
            thread_spawn::watched_cycles(threads, THREAD_REPS);
            if watched {
                thread_spawn::watched_cycles(threads, reps);
            } else {
                thread_spawn::std_cycles(reps);
            }
        }
    }
    Ok(())
}

/// The counted loop of a dispatch variant (the same shape as
/// [`event_loop`](crate::measure::event_loop), without the clock).
#[inline(never)]
fn icount_loop<F: Fn(&Event<'_>) -> bool>(reps: u64, f: &F, event: &Event<'_>) {
    for _ in 0..reps {
        black_box(f(black_box(event)));
    }
}

/// The counted fork-rate cycles.
#[inline(never)]
fn icount_loop_cycles(bench: &Bench, reps: u64) -> Result<(), String> {
    bench.run(reps).map(drop)
}

/// How to start the child that runs one subject: a program and the arguments before the
/// subject and its repetition count.
#[derive(Clone, Debug)]
pub struct Child {
    /// The program (for `taskwatch`, its own executable).
    pub program: PathBuf,
    /// Arguments before the subject (for `taskwatch`: `bench --icount-run`).
    pub args: Vec<OsString>,
}

impl Child {
    /// The instructions collected in the `icount_loop*` functions running `subject` `reps`
    /// times under callgrind.
    ///
    /// # Errors
    /// valgrind missing or failing, or its output without a count.
    pub fn collected(&self, subject: Subject, reps: u64) -> Result<u64, IcountError> {
        let mut valgrind = Command::new("valgrind");
        valgrind.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"]);
        // Collection follows the calling thread's stack, so a spawned thread's work
        // would be missed: thread figures collect everything and rely on differencing.
        if !matches!(subject, Subject::Thread { .. }) {
            valgrind.arg("--toggle-collect=*::icount_loop*");
        }
        let output = valgrind
            .arg(&self.program)
            .args(&self.args)
            .arg(subject.arg())
            .arg(reps.to_string())
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: String = stderr.lines().rev().take(8).collect::<Vec<_>>().join(" | ");
            return Err(IcountError::Failed {
                subject: subject.arg(),
                status: output.status,
                stderr: tail,
            });
        }
        stderr
            .lines()
            .find_map(|line| {
                let (_, count) = line.split_once("Collected :")?;
                count.trim().parse().ok()
            })
            .ok_or_else(|| IcountError::NoCount(subject.arg()))
    }

    /// Instructions per repetition of `subject`: the counts at `2R` and `R`
    /// repetitions, differenced, divided by `R` (for a fork cycle, the median of three
    /// such pairs of processes).
    ///
    /// # Errors
    /// As [`Child::collected`].
    pub fn per_rep(&self, subject: Subject) -> Result<f64, IcountError> {
        // A fork cycle's count moves by a few tenths of a percent from one process to
        // the next (seeded hashes, allocation addresses): the median of three pairs of
        // processes steadies the figure the gate compares.
        let pairs = match subject {
            Subject::Fork { .. } => FORK_PROCESS_PAIRS,
            _ => 1,
        };
        let mut figures = Vec::with_capacity(pairs);
        for _ in 0..pairs {
            figures.push(self.one_pair(subject)?);
        }
        figures.sort_by(f64::total_cmp);
        Ok(figures[figures.len() / 2])
    }

    /// Instructions per repetition from one process at `R` and one at `2R`.
    fn one_pair(&self, subject: Subject) -> Result<f64, IcountError> {
        let reps = subject.reps();
        let one = self.collected(subject, reps)?;
        let two = self.collected(subject, 2 * reps)?;
        let diff = two
            .checked_sub(one)
            .ok_or_else(|| IcountError::NotMonotonic(subject.arg()))?;
        Ok(diff as f64 / reps as f64)
    }
}

/// Every figure, by [`Subject::arg`] name.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts(pub BTreeMap<String, f64>);

impl Counts {
    /// The figure of `subject`, if measured.
    pub fn get(&self, subject: Subject) -> Option<f64> {
        self.0.get(&subject.arg()).copied()
    }
}

/// Every subject [`measure`] counts: the dispatch matrix, the unwanted event and its
/// empty loop, and every fork-rate row in both variants.
pub fn subjects() -> Vec<Subject> {
    let mut all = vec![Subject::EmptyLoop, Subject::Unwanted];
    for n in COUNTS {
        for via in DISPATCH_VIAS {
            all.push(Subject::Dispatch { via, n });
        }
    }
    for row in 0..=SUBSYSTEMS.len() {
        for variant in [Variant::Direct, Variant::Table] {
            all.push(Subject::Fork { row, variant });
        }
    }
    all.push(Subject::Thread { watched: false });
    all.push(Subject::Thread { watched: true });
    all
}

/// Counts every one of `subjects` with `jobs` valgrind processes at a time.
///
/// # Errors
/// The first error of a count.
pub fn measure(child: &Child, subjects: &[Subject], jobs: usize) -> Result<Counts, IcountError> {
    let next = Mutex::new(subjects.iter());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let Some(&subject) = next.lock().unwrap_or_else(|e| e.into_inner()).next()
                    else {
                        return;
                    };
                    let result = child.per_rep(subject).map(|n| (subject.arg(), n));
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(result);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.into_iter().collect::<Result<_, _>>().map(Counts)
}

/// The counts as the tables `taskwatch bench --instructions` prints.
pub fn render(counts: &Counts) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let show = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"));
    let _ = writeln!(
        out,
        "instructions per dispatch (callgrind, collected in the loop; (Ir at 2R − Ir at R) / R, R = {DISPATCH_REPS})"
    );
    let _ = write!(out, "{:>6}", "N");
    for via in DISPATCH_VIAS {
        let _ = write!(out, " {:>14}", via.name());
    }
    out.push('\n');
    for n in COUNTS {
        let _ = write!(out, "{n:>6}");
        for via in DISPATCH_VIAS {
            let _ = write!(
                out,
                " {:>14}",
                show(counts.get(Subject::Dispatch { via, n }))
            );
        }
        out.push('\n');
    }
    let empty = counts.get(Subject::EmptyLoop);
    let unwanted = counts.get(Subject::Unwanted);
    let _ = writeln!(
        out,
        "an event no watcher wants: {} (empty loop {}, over it {})",
        show(unwanted),
        show(empty),
        show(unwanted.zip(empty).map(|(u, e)| u - e))
    );
    let _ = writeln!(
        out,
        "\ninstructions per fork + exit + reap cycle (R = {FORK_REPS}; both variants' shell holds the row's state)"
    );
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>10} {:>8} {:>7}",
        "row", "direct", "table", "extra", "ratio"
    );
    for row in 0..=SUBSYSTEMS.len() {
        let d = counts.get(Subject::Fork {
            row,
            variant: Variant::Direct,
        });
        let t = counts.get(Subject::Fork {
            row,
            variant: Variant::Table,
        });
        let label = match row {
            0 => "baseline".to_owned(),
            _ => format!("+ {}", SUBSYSTEMS[row - 1].name),
        };
        let _ = writeln!(
            out,
            "{label:<14} {:>10} {:>10} {:>8} {:>7}",
            show(d),
            show(t),
            show(t.zip(d).map(|(t, d)| t - d)),
            t.zip(d)
                .map_or_else(|| "-".to_owned(), |(t, d)| format!("{:.4}", t / d))
        );
    }
    let std = counts.get(Subject::Thread { watched: false });
    let watched = counts.get(Subject::Thread { watched: true });
    let _ = writeln!(
        out,
        "\nthread spawn + join (R = {THREAD_REPS}; every thread counted; {} trivial watchers)\nstd {}  watched {}  extra {}  ratio {}",
        thread_spawn::WATCHERS,
        show(std),
        show(watched),
        show(watched.zip(std).map(|(w, s)| w - s)),
        watched
            .zip(std)
            .map_or_else(|| "-".to_owned(), |(w, s)| format!("{:.4}", w / s))
    );
    out
}

/// One gated figure of `benches/instructions.toml`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    /// What was measured when the line was last written.
    pub measured: f64,
    /// The most the gate accepts.
    pub ceiling: f64,
    /// Whether issue 11's target for the figure is met (then `ceiling` is the target and
    /// must never be raised); an unmet target's ceiling is the value it was measured at.
    pub met: bool,
    /// The target, in words.
    pub target: String,
}

/// The checked-in ceilings, by figure: a [`Subject::arg`] name, or `unwanted-over-loop`
/// (the unwanted event less its empty loop), or `fork-ratio/ROW` (table / direct).
#[derive(Clone, Debug, Deserialize)]
pub struct Gate {
    /// The ceilings.
    pub ceilings: BTreeMap<String, Ceiling>,
}

/// A figure over its ceiling, or missing.
#[derive(Clone, Debug, Serialize)]
pub struct Breach {
    /// The figure.
    pub figure: String,
    /// What was measured now (`None`: not measured).
    pub measured: Option<f64>,
    /// The ceiling.
    pub ceiling: f64,
}

impl Gate {
    /// The gate compiled into this program (`benches/instructions.toml`).
    ///
    /// # Errors
    /// [`IcountError::Gate`] if the file does not parse.
    pub fn checked_in() -> Result<Gate, IcountError> {
        Gate::parse(include_str!("../instructions.toml"))
    }

    /// Parses a gate file.
    ///
    /// # Errors
    /// [`IcountError::Gate`] if `text` is not one.
    pub fn parse(text: &str) -> Result<Gate, IcountError> {
        toml::from_str(text).map_err(|e| IcountError::Gate(e.to_string()))
    }

    /// The figures over their ceilings (or not measured).
    pub fn check(&self, counts: &Counts) -> Vec<Breach> {
        self.ceilings
            .iter()
            .filter_map(|(figure, c)| {
                let measured = figure_of(counts, figure);
                match measured {
                    Some(m) if m <= c.ceiling => None,
                    _ => Some(Breach {
                        figure: figure.clone(),
                        measured,
                        ceiling: c.ceiling,
                    }),
                }
            })
            .collect()
    }

    /// The gate's lines as text: figure, measured now, ceiling, target and whether it
    /// is met.
    pub fn render(&self, counts: &Counts) -> String {
        use std::fmt::Write as _;
        let mut out = String::from("\ninstruction gate (benches/instructions.toml)\n");
        for (figure, c) in &self.ceilings {
            let now = figure_of(counts, figure);
            let status = match now {
                Some(m) if m <= c.ceiling => "ok",
                _ => "OVER",
            };
            let _ = writeln!(
                out,
                "{figure:<28} now {:>10} ceiling {:>10} {status:<4}  target {} ({})",
                now.map_or_else(|| "-".to_owned(), number),
                number(c.ceiling),
                c.target,
                if c.met { "met" } else { "unmet" }
            );
        }
        out
    }

    /// The subjects the gate's figures need.
    pub fn subjects(&self) -> Vec<Subject> {
        let mut all: Vec<Subject> = Vec::new();
        for figure in self.ceilings.keys() {
            let needed: Vec<Subject> = if figure == "unwanted-over-loop" {
                vec![Subject::Unwanted, Subject::EmptyLoop]
            } else if let Some(row) = figure.strip_prefix("fork-ratio/") {
                let row = row.parse().unwrap_or(usize::MAX);
                vec![
                    Subject::Fork {
                        row,
                        variant: Variant::Direct,
                    },
                    Subject::Fork {
                        row,
                        variant: Variant::Table,
                    },
                ]
            } else {
                Subject::parse(figure).into_iter().collect()
            };
            for s in needed {
                if !all.contains(&s) {
                    all.push(s);
                }
            }
        }
        all
    }
}

/// A figure as text: ratios with four decimals, counts with one.
fn number(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.4}")
    } else {
        format!("{x:.1}")
    }
}

/// The value of a gate figure from the counts.
fn figure_of(counts: &Counts, figure: &str) -> Option<f64> {
    if figure == "unwanted-over-loop" {
        return Some(counts.get(Subject::Unwanted)? - counts.get(Subject::EmptyLoop)?);
    }
    if let Some(row) = figure.strip_prefix("fork-ratio/") {
        let row = row.parse().ok()?;
        let d = counts.get(Subject::Fork {
            row,
            variant: Variant::Direct,
        })?;
        let t = counts.get(Subject::Fork {
            row,
            variant: Variant::Table,
        })?;
        return Some(t / d);
    }
    counts.0.get(figure).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_and_bad_ones_are_errors() {
        for subject in subjects() {
            assert_eq!(Subject::parse(&subject.arg()).unwrap(), subject);
        }
        for bad in [
            "",
            "dispatch/table/7",
            "dispatch/nope/8",
            "fork/table/11",
            "x",
        ] {
            assert!(
                matches!(Subject::parse(bad), Err(IcountError::Subject(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_subject_runs_in_process() {
        for subject in subjects() {
            run_subject(subject, 2).unwrap();
        }
    }

    #[test]
    fn a_figure_over_its_ceiling_fails_the_gate() {
        let gate = Gate::parse(
            r#"[ceilings]
"dispatch/table/8" = { measured = 237, ceiling = 237, met = false, target = "t" }
"fork-ratio/10" = { measured = 1.02, ceiling = 1.03, met = false, target = "t" }
"#,
        )
        .unwrap();
        let mut counts = Counts::default();
        let table8 = Subject::Dispatch {
            via: Via::Table,
            n: 8,
        };
        let fork = |variant| Subject::Fork { row: 10, variant };
        counts.0.insert(table8.arg(), 237.0);
        counts.0.insert(fork(Variant::Direct).arg(), 1000.0);
        counts.0.insert(fork(Variant::Table).arg(), 1030.0);
        assert!(gate.check(&counts).is_empty());
        counts.0.insert(table8.arg(), 238.0);
        counts.0.insert(fork(Variant::Table).arg(), 1031.0);
        let over: Vec<String> = gate.check(&counts).into_iter().map(|b| b.figure).collect();
        assert_eq!(over, ["dispatch/table/8", "fork-ratio/10"]);
        assert!(Gate::parse("[ceilings]\nx = { measured = 1 }").is_err());
    }

    #[test]
    fn the_checked_in_gate_parses_and_names_real_figures() {
        let gate = Gate::checked_in().unwrap();
        assert!(!gate.ceilings.is_empty());
        for (figure, c) in &gate.ceilings {
            assert!(c.ceiling >= c.measured || c.met, "{figure}");
        }
        // Every figure maps to subjects, and a full set of counts satisfies none of
        // them when it is far over every ceiling.
        let mut counts = Counts::default();
        for s in gate.subjects() {
            counts.0.insert(s.arg(), 1e12);
        }
        counts.0.insert(Subject::EmptyLoop.arg(), 0.0);
        for row in 0..=SUBSYSTEMS.len() {
            let direct = Subject::Fork {
                row,
                variant: Variant::Direct,
            };
            counts.0.insert(direct.arg(), 1.0);
        }
        assert_eq!(gate.check(&counts).len(), gate.ceilings.len());
        assert_eq!(gate.check(&Counts::default()).len(), gate.ceilings.len());
    }
}
