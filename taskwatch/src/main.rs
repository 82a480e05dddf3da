//! `taskwatch`: list, simulate, monitor and benchmark task watchers.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod examples;
mod list;
mod monitor;
mod numbers;
mod output;
mod rng;
mod simulate;
mod subsystems;

// The subsystems register their watchers through `inventory`; naming the crate makes
// sure the linker keeps it.
use watchers_subsystems as _;

/// List, simulate, monitor and benchmark task watchers.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print every registered watcher, per event, in dispatch order.
    List {
        /// Also register the runtime watchers `simulate --with-runtime-watchers` uses.
        #[arg(long)]
        with_runtime_watchers: bool,
    },
    /// Run a seeded workload on the built-in task model and check the invariants.
    Simulate(simulate::SimulateArgs),
    /// Watch every process on this machine through the kernel's process-events connector.
    Monitor(monitor::MonitorArgs),
    /// Measure the fork rate with subsystems called directly and through the table.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage(&error),
    };
    let table = match watchers_core::freeze() {
        Ok(table) => table,
        Err(error) => {
            output::say!("{error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::List {
            with_runtime_watchers,
        } => {
            let args = simulate::SimulateArgs {
                seed: 0,
                tasks: 0,
                with_runtime_watchers,
                fail_every: None,
                pid_max: 2,
            };
            let _registrations = simulate::register_runtime_watchers(&args, table);
            match output::print(&list::render(table)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => output::write_failed(&error),
            }
        }
        Command::Simulate(args) => {
            let report = simulate::run(&args, table);
            if let Some(error) = &report.error {
                output::say!("simulate: {error}");
                return ExitCode::FAILURE;
            }
            if let Err(error) = output::print(&report.text) {
                return output::write_failed(&error);
            }
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                for violation in &report.violations {
                    output::say!("invariant broken: {violation}");
                }
                ExitCode::FAILURE
            }
        }
        Command::Monitor(args) => report(monitor::run(args)),
        Command::Bench(args) => report(bench::run(args)),
    }
}

/// `--help`, `--version` and argument errors. clap's own `exit` ignores a failed write
/// of the help to stdout (`> /dev/full` exited 0 with nothing written); here it is
/// reported like any other output.
fn usage(error: &clap::Error) -> ExitCode {
    if error.use_stderr() {
        // A stderr that cannot be written to is ignored, as everywhere else.
        let _ = error.print();
        return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
    }
    let rendered = error.render();
    let text = if std::io::stdout().is_terminal() {
        rendered.ansi().to_string()
    } else {
        rendered.to_string()
    };
    match output::print(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => output::write_failed(&error),
    }
}

fn report<E: std::fmt::Display>(result: Result<ExitCode, E>) -> ExitCode {
    result.unwrap_or_else(|error| {
        output::say!("{error}");
        ExitCode::FAILURE
    })
}
