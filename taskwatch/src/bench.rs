//! `taskwatch bench`: the patches' fork-rate table on the task model (subsystems called
//! directly against the same subsystems called through the table), and a dispatch
//! summary measured side by side in this process, with the targets it is held to;
//! with `--real`, the fork-rate table on real processes instead.
//!
//! The workloads live in the `benches` crate, which the criterion benchmarks
//! (`cargo bench -p benches`) share.

use std::process::ExitCode;
use std::time::Duration;

use benches::{fork_rate, icount, summary};

use crate::numbers;

// Upper bounds that keep every buffer sized by an option allocatable (a count near
// `u64::MAX` overflowed `Vec::with_capacity`) and a run finite.
const MAX_SAMPLES: u64 = 1_000_000;
const MAX_SAMPLE_MS: u64 = 60_000;
const MAX_ROUNDS: u64 = 1_000_000;
const MAX_JOBS: u64 = 256;

/// A count that its parser bounded far below `usize::MAX`.
fn count(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// `taskwatch bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Samples per variant per fork-rate row (direct and table samples alternate).
    #[arg(long, default_value_t = 100, value_name = "N", allow_negative_numbers = true,
          value_parser = numbers::whole(1, MAX_SAMPLES, "the number of samples"))]
    pub samples: u64,
    /// About how long one fork-rate sample runs, in milliseconds.
    #[arg(long, default_value_t = 10, value_name = "MS", allow_negative_numbers = true,
          value_parser = numbers::whole(1, MAX_SAMPLE_MS, "a sample's milliseconds"))]
    pub sample_ms: u64,
    /// Rounds of each dispatch variant (each figure is the median of its rounds).
    #[arg(long, default_value_t = 21, value_name = "N", allow_negative_numbers = true,
          value_parser = numbers::whole(1, MAX_ROUNDS, "the number of rounds"))]
    pub rounds: u64,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Skip the fork-rate table (measure the dispatch summary only).
    #[arg(long)]
    pub no_fork_rate: bool,
    /// Also measure every dispatch variant for 0, 1, 8, 64 and 1,024 watchers,
    /// interleaved (about 10 s more).
    #[arg(long)]
    pub matrix: bool,
    /// Exit with status 1 if a target is missed (with `--instructions`: if a figure is
    /// over its ceiling in benches/instructions.toml).
    #[arg(long)]
    pub check: bool,
    /// Measure the fork-rate table on real processes instead (spawn and wait for
    /// `/bin/true` through the child-process source), and nothing else.
    #[arg(long)]
    pub real: bool,
    /// Count instructions instead of timing: run every variant (dispatch to 0, 1, 8, 64
    /// and 1,024 watchers; every fork-rate row) under `valgrind --tool=callgrind` at two
    /// repetition counts and print instructions per dispatch and per fork cycle. Needs
    /// valgrind (Debian package `valgrind`) and a release build (about a minute).
    #[arg(long)]
    pub instructions: bool,
    /// With `--instructions`: count only the figures benches/instructions.toml gates.
    #[arg(long, requires = "instructions")]
    pub gated_only: bool,
    /// With `--instructions`: how many valgrind processes run at once.
    #[arg(long, default_value_t = 2, value_name = "N", requires = "instructions",
          allow_negative_numbers = true,
          value_parser = numbers::whole(1, MAX_JOBS, "the number of valgrind processes"))]
    pub jobs: u64,
    /// Internal: run one instruction-count subject SUBJECT REPS times (what
    /// `--instructions` runs under callgrind).
    #[arg(long, hide = true, num_args = 2, value_names = ["SUBJECT", "REPS"])]
    pub icount_run: Option<Vec<String>>,
}

/// Measures and prints the fork-rate table, the dispatch summary and the targets.
pub fn run(args: BenchArgs) -> Result<ExitCode, String> {
    if let Some(run) = &args.icount_run {
        let [subject, reps] = run.as_slice() else {
            return Err("--icount-run takes SUBJECT REPS".to_owned());
        };
        let subject = icount::Subject::parse(subject).map_err(|e| e.to_string())?;
        let reps = reps
            .parse()
            .map_err(|_| format!("--icount-run: `{reps}` is not a repetition count"))?;
        icount::run_subject(subject, reps)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.instructions {
        return instructions(&args).map_err(|e| e.to_string());
    }
    if args.real {
        return real(&args);
    }
    let fork_rate = if args.no_fork_rate {
        None
    } else {
        Some(fork_rate::measure(fork_rate::Options {
            samples: count(args.samples),
            sample_time: Duration::from_millis(args.sample_ms),
        })?)
    };
    let dispatch = summary::measure(summary::Options {
        rounds: count(args.rounds),
        ..summary::Options::default()
    });
    let matrix = args.matrix.then(|| {
        summary::matrix(summary::Options {
            rounds: count(args.rounds),
            ..summary::Options::default()
        })
    });
    let targets = summary::targets(&dispatch, fork_rate.as_ref());
    let all_met = targets.iter().all(|t| t.met);

    let text = if args.json {
        let report = serde_json::json!({
            "fork_rate": fork_rate,
            "dispatch": dispatch,
            "matrix": matrix,
            "targets": targets,
            "all_targets_met": all_met,
        });
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        text + "\n"
    } else {
        let mut text = String::new();
        if let Some(table) = &fork_rate {
            text += &fork_rate::render(table);
            text.push('\n');
        }
        text += &summary::render(&dispatch, &targets);
        if let Some(matrix) = &matrix {
            text.push('\n');
            text += &summary::render_matrix(matrix);
        }
        text
    };
    Ok(finish(&text, args.check && !all_met))
}

/// `taskwatch bench --real`: the fork-rate table on real processes, with its target.
fn real(args: &BenchArgs) -> Result<ExitCode, String> {
    let table = fork_rate::real::measure(fork_rate::Options {
        samples: count(args.samples),
        sample_time: Duration::from_millis(args.sample_ms),
    })?;
    let missed = fork_rate::real::missed(&table);
    let text = if args.json {
        let report = serde_json::json!({
            "real_fork_rate": table,
            "target": fork_rate::real::TARGET,
            "target_statistic": "paired_ratio",
            "missed_rows": missed,
        });
        format!("{report:#}\n")
    } else {
        fork_rate::real::render(&table)
    };
    Ok(finish(&text, args.check && !missed.is_empty()))
}

/// `--instructions`: counts under callgrind, the tables, and the gate.
fn instructions(args: &BenchArgs) -> Result<ExitCode, icount::IcountError> {
    let gate = icount::Gate::checked_in()?;
    let child = icount::Child {
        program: std::env::current_exe()?,
        args: vec!["bench".into(), "--icount-run".into()],
    };
    let subjects = if args.gated_only {
        gate.subjects()
    } else {
        icount::subjects()
    };
    let counts = icount::measure(&child, &subjects, count(args.jobs))?;
    let breaches = gate.check(&counts);
    let text = if args.json {
        let report = serde_json::json!({ "instructions": counts, "over_ceiling": breaches });
        format!("{report:#}\n")
    } else {
        icount::render(&counts) + &gate.render(&counts)
    };
    Ok(finish(&text, args.check && !breaches.is_empty()))
}

/// Prints a report (a closed or full stdout is a message, never a panic) and turns a
/// missed target into the exit status.
fn finish(text: &str, failed: bool) -> ExitCode {
    if let Err(error) = crate::output::print(text) {
        return crate::output::write_failed(&error);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
