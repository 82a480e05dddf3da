//! The dispatch summary `taskwatch bench` prints: the figures the targets are about,
//! measured in one process, side by side, with the calibrated loop of
//! [`measure`](crate::measure), and the targets checked against them.

use std::time::Duration;

use serde::Serialize;

use crate::fork_rate::ForkRate;
use crate::freeze;
use crate::measure::{Runner, Timing, interleave, median};
use crate::variants::{Variants, Via, time_empty_loop, time_unwanted};

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Rounds per variant (each figure is the median of its rounds).
    pub rounds: usize,
    /// About how long one round of one variant runs.
    pub round_time: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rounds: 21,
            round_time: Duration::from_millis(10),
        }
    }
}

/// How long building a table took.
#[derive(Clone, Debug, Serialize)]
pub struct FreezeTiming {
    /// Watchers in the table.
    pub watchers: usize,
    /// The median, in microseconds.
    pub median_us: f64,
    /// The fastest, in microseconds.
    pub min_us: f64,
}

/// The measured figures.
#[derive(Clone, Debug, Serialize)]
pub struct DispatchSummary {
    /// Watchers on the event in the variant rows.
    pub watchers: usize,
    /// Nanoseconds per dispatch on one thread (the targets use the fastest round):
    /// `empty-loop`, `unwanted-event` (an event
    /// of a table where no watcher wants it), `direct`, `table`, `table+runtime`,
    /// `rwlock`, `mutex`, `arc-swap`.
    pub one_thread: Vec<Timing>,
    /// Nanoseconds per dispatch per thread with two threads dispatching at once (the
    /// targets use the median round).
    pub two_threads: Vec<Timing>,
    /// Freeze times.
    pub freeze: Vec<FreezeTiming>,
}

impl DispatchSummary {
    /// The fastest round of the one-thread row `name`: on one thread, other tenants of a
    /// shared machine only ever add time, so the fastest round is the least disturbed.
    pub fn one(&self, name: &str) -> f64 {
        find(&self.one_thread, name).map_or(f64::NAN, |t| t.min_ns)
    }

    /// The median round of the two-thread row `name`: the fastest round may be one where
    /// the two threads did not in fact overlap (a shared 2-core machine can run them one
    /// after the other), which hides the contention being measured.
    pub fn two(&self, name: &str) -> f64 {
        find(&self.two_threads, name).map_or(f64::NAN, |t| t.median_ns)
    }
}

fn find<'a>(timings: &'a [Timing], name: &str) -> Option<&'a Timing> {
    timings.iter().find(|t| t.name == name)
}

/// Measures the summary with 8 watchers.
pub fn measure(options: Options) -> DispatchSummary {
    let v = &Variants::new(8);
    let rounds = options.rounds;
    let target = options.round_time;

    let one_thread = {
        let mut runners = vec![
            Runner::new("empty-loop", time_empty_loop),
            Runner::new("unwanted-event", |n| time_unwanted(v.table, n)),
        ];
        runners.extend(Via::ALL.map(|via| Runner::new(via.name(), move |n| v.time(via, 1, n))));
        interleave(&mut runners, rounds, target)
    };

    let two_threads = {
        let mut runners: Vec<Runner<'_>> = [
            Via::Direct,
            Via::Table,
            Via::RwLock,
            Via::Mutex,
            Via::ArcSwap,
        ]
        .map(|via| Runner::new(via.name(), move |n| v.time(via, 2, n)))
        .into();
        interleave(&mut runners, rounds, target)
    };

    let freeze = freeze::SIZES
        .iter()
        .map(|&n| {
            let list = freeze::watchers(n);
            // At least 11 runs, and about 20 ms of them for the small tables; the first
            // run warms up and is not counted.
            let runs = rounds.max(11).max(if n < 1000 { 200 } else { 0 });
            let us: Vec<f64> = freeze::time_freezes(&list, runs + 1)
                .into_iter()
                .skip(1)
                .map(|took| took.as_secs_f64() * 1e6)
                .collect();
            FreezeTiming {
                watchers: n,
                median_us: median(&us),
                min_us: us.iter().copied().fold(f64::INFINITY, f64::min),
            }
        })
        .collect();

    DispatchSummary {
        watchers: v.n,
        one_thread,
        two_threads,
        freeze,
    }
}

/// One watcher count of the [`matrix`]: every variant, interleaved.
#[derive(Clone, Debug, Serialize)]
pub struct MatrixRow {
    /// Watchers on the event.
    pub watchers: usize,
    /// Nanoseconds per dispatch on one thread, per variant.
    pub timings: Vec<Timing>,
}

/// Every variant for every watcher count of [`COUNTS`](crate::watchers::COUNTS), each
/// count's variants interleaved round by round (what the criterion `dispatch` group
/// measures one after the other).
pub fn matrix(options: Options) -> Vec<MatrixRow> {
    crate::watchers::COUNTS
        .iter()
        .map(|&n| {
            let v = &Variants::new(n);
            let mut runners: Vec<Runner<'_>> = Via::ALL
                .map(|via| Runner::new(via.name(), move |iters| v.time(via, 1, iters)))
                .into();
            MatrixRow {
                watchers: n,
                timings: interleave(&mut runners, options.rounds, options.round_time),
            }
        })
        .collect()
}

/// The matrix as text: the fastest round of each, and its ratio to the table.
pub fn render_matrix(rows: &[MatrixRow]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dispatch of one event to N watchers, 1 thread, ns (fastest round; x = time / table's)"
    );
    if let Some(first) = rows.first() {
        let _ = write!(out, "  {:>6}", "N");
        for t in &first.timings {
            let _ = write!(out, " {:>22}", t.name);
        }
        let _ = writeln!(out);
    }
    for row in rows {
        let table = find(&row.timings, "table").map_or(f64::NAN, |t| t.min_ns);
        let _ = write!(out, "  {:>6}", row.watchers);
        for t in &row.timings {
            let cell = format!("{:.2} ({:.2}x)", t.min_ns, t.min_ns / table);
            let _ = write!(out, " {cell:>22}");
        }
        let _ = writeln!(out);
    }
    out
}

/// A target and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// A short, stable key for scripts.
    pub id: &'static str,
    /// What is measured.
    pub name: &'static str,
    /// The figure this run measured.
    pub value: f64,
    /// The limit it must be on the right side of.
    pub limit: f64,
    /// `at most` or `at least`.
    pub bound: &'static str,
    /// The figure's unit.
    pub unit: &'static str,
    /// Whether the figure is on the right side of the limit.
    pub met: bool,
}

impl Target {
    fn at_most(
        id: &'static str,
        name: &'static str,
        value: f64,
        limit: f64,
        unit: &'static str,
    ) -> Target {
        Target {
            id,
            name,
            value,
            limit,
            bound: "at most",
            unit,
            met: value <= limit,
        }
    }

    fn at_least(
        id: &'static str,
        name: &'static str,
        value: f64,
        limit: f64,
        unit: &'static str,
    ) -> Target {
        Target {
            id,
            name,
            value,
            limit,
            bound: "at least",
            unit,
            met: value >= limit,
        }
    }
}

/// The targets, from the summary and (when measured) the fork-rate table.
pub fn targets(summary: &DispatchSummary, fork_rate: Option<&ForkRate>) -> Vec<Target> {
    let n = summary.watchers as f64;
    let mut targets = vec![
        Target::at_most(
            "unwanted_event_ns",
            "unwanted event: dispatch minus empty loop",
            summary.one("unwanted-event") - summary.one("empty-loop"),
            1.0,
            "ns",
        ),
        Target::at_most(
            "table_minus_direct_per_watcher_ns",
            "8 watchers: (table - direct) / 8",
            (summary.one("table") - summary.one("direct")) / n,
            1.0,
            "ns per watcher",
        ),
        Target::at_least(
            "rwlock_speedup_1_thread",
            "8 watchers, 1 thread: rwlock chain / table",
            summary.one("rwlock") / summary.one("table"),
            1.5,
            "x",
        ),
        Target::at_least(
            "rwlock_speedup_2_threads",
            "8 watchers, 2 threads: rwlock chain / table, per thread",
            summary.two("rwlock") / summary.two("table"),
            3.0,
            "x",
        ),
        Target::at_least(
            "arc_swap_speedup_1_thread",
            "8 watchers, 1 thread: arc-swap chain / table",
            summary.one("arc-swap") / summary.one("table"),
            1.8,
            "x",
        ),
    ];
    if let Some(last) = fork_rate.and_then(|f| f.rows.last()) {
        targets.push(Target::at_least(
            "fork_rate_ratio",
            "fork rate, all subsystems: table / direct",
            last.ratio,
            0.97,
            "x",
        ));
    }
    if let Some(big) = summary.freeze.iter().find(|f| f.watchers == 10_000) {
        targets.push(Target::at_most(
            "freeze_10000_ms",
            "freeze of 10,000 watchers",
            big.median_us / 1000.0,
            2.0,
            "ms",
        ));
    }
    targets
}

/// One block of timings: a heading line (`[heading, median column, ratio column]`),
/// then each row's median, minimum and ratio to the table.
fn timing_block(
    out: &mut String,
    labels: [&str; 3],
    rows: &[Timing],
    ratio: impl Fn(&Timing) -> f64,
) {
    use std::fmt::Write as _;
    let [heading, median, versus] = labels;
    let _ = writeln!(
        out,
        "  {heading:<16} {median:>10} {:>10} {versus:>12}",
        "min"
    );
    for t in rows {
        let _ = writeln!(
            out,
            "  {:<16} {:>10.2} {:>10.2} {:>11.2}x",
            t.name,
            t.median_ns,
            t.min_ns,
            ratio(t)
        );
    }
}

/// The summary and the targets as text.
pub fn render(summary: &DispatchSummary, targets: &[Target]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dispatch of one event to {} watchers, ns per dispatch over interleaved rounds; targets use the fastest round on 1 thread, the median on 2 (absolute times are machine-dependent)",
        summary.watchers
    );
    // Each block's ratio uses the figure its targets use: the fastest round on one
    // thread, the median round on two.
    let table = summary.one("table");
    let labels = ["1 thread", "median", "min/table"];
    timing_block(&mut out, labels, &summary.one_thread, |t| t.min_ns / table);
    let table = summary.two("table");
    let labels = ["2 threads", "per thread", "median/table"];
    timing_block(&mut out, labels, &summary.two_threads, |t| {
        t.median_ns / table
    });
    let _ = writeln!(out, "freeze (building the table), µs");
    for f in &summary.freeze {
        let _ = writeln!(
            out,
            "  {:>6} watchers {:>10.1} median {:>10.1} min",
            f.watchers, f.median_us, f.min_us
        );
    }
    let _ = writeln!(out, "targets");
    for t in targets {
        let _ = writeln!(
            out,
            "  [{}] {}: {:.3} {} ({} {} {})",
            if t.met { "met" } else { "MISSED" },
            t.name,
            t.value,
            t.unit,
            t.bound,
            t.limit,
            t.unit
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(name: &str, median_ns: f64) -> Timing {
        Timing {
            name: name.to_owned(),
            median_ns,
            min_ns: median_ns,
            rounds: 1,
            iters: 1,
        }
    }

    #[test]
    fn targets_follow_the_figures() {
        let summary = DispatchSummary {
            watchers: 8,
            one_thread: vec![
                timing("empty-loop", 1.0),
                timing("unwanted-event", 1.5),
                timing("direct", 10.0),
                timing("table", 16.0),
                timing("rwlock", 30.0),
                timing("arc-swap", 20.0),
            ],
            two_threads: vec![timing("table", 16.0), timing("rwlock", 50.0)],
            freeze: vec![FreezeTiming {
                watchers: 10_000,
                median_us: 2500.0,
                min_us: 2400.0,
            }],
        };
        let targets = targets(&summary, None);
        let met = |id: &str| {
            targets
                .iter()
                .find(|t| t.id == id)
                .map(|t| (t.value, t.met))
        };
        assert_eq!(met("unwanted_event_ns"), Some((0.5, true)));
        assert_eq!(met("table_minus_direct_per_watcher_ns"), Some((0.75, true)));
        assert_eq!(met("rwlock_speedup_1_thread"), Some((1.875, true)));
        assert_eq!(met("rwlock_speedup_2_threads"), Some((3.125, true)));
        assert_eq!(met("arc_swap_speedup_1_thread"), Some((1.25, false)));
        assert_eq!(met("freeze_10000_ms"), Some((2.5, false)));
        assert_eq!(met("fork_rate_ratio"), None);
        assert!(render(&summary, &targets).contains("[MISSED] freeze of 10,000 watchers"));
    }
}
