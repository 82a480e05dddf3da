//! `taskwatch monitor`: every process event of the machine, through the kernel's
//! process-events connector, with every linked watcher running on it. The options are
//! forkstat's, letter for letter, plus `--json`, `--count` and `--rcvbuf`.

use std::fmt;
use std::process::ExitCode;

use watchers_core::{EventKind, EventSet};

use crate::numbers;

#[cfg(target_os = "linux")]
mod columns;
pub mod escape;
#[cfg(target_os = "linux")]
mod linux;

/// The largest pid Linux can hand out (`PID_MAX_LIMIT` on 64-bit).
const PID_MAX_LIMIT: u64 = 4_194_304;

/// `taskwatch monitor` options.
#[derive(Debug, Clone, clap::Args)]
pub struct MonitorArgs {
    /// Events to show, separated by commas, in any case: fork, clone (a new thread),
    /// exec, exit, core, comm, ptrce (or ptrace), uid, gid, sid, all.
    #[arg(short, long, value_name = "LIST", default_value = "fork,exec,exit", value_parser = parse_shown)]
    pub events: Shown,
    /// Show every event (the same as `-e all`).
    #[arg(short = 'E', long)]
    pub all_events: bool,
    /// Name processes by their comm (16 bytes) instead of their command line.
    #[arg(short = 'c', long)]
    pub comm: bool,
    /// Strip the directory from the program's path.
    #[arg(short = 'd', long)]
    pub strip_dir: bool,
    /// Short process names: the program, without its arguments.
    #[arg(short = 's', long)]
    pub short: bool,
    /// Extra columns: the process's real user id and its controlling terminal.
    #[arg(short = 'x', long)]
    pub extra: bool,
    /// A glyph before each event's name.
    #[arg(short = 'g', long)]
    pub glyphs: bool,
    /// Show only processes in this process group.
    #[arg(short = 'p', long, value_name = "PGRP", allow_negative_numbers = true,
          value_parser = numbers::whole(1, PID_MAX_LIMIT, "a process group id"))]
    pub pgrp: Option<u64>,
    /// Run with real-time FIFO scheduling at the highest priority, to keep up with
    /// bursts (needs root or CAP_SYS_NICE).
    #[arg(short = 'r', long)]
    pub realtime: bool,
    /// Flush stdout after every line (the default flushes a terminal after each
    /// batch the kernel sends; a file or pipe when the kernel pauses, at least every
    /// 50 ms while events keep coming).
    #[arg(short = 'l', long)]
    pub line_buffered: bool,
    /// Print no events, only the statistics at the end (implies -S).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// At the end, a per-process table: fork, clone, exec, exit, core, comm, total.
    #[arg(short = 'S', long)]
    pub stats: bool,
    /// Everything: the same as -E -g -r -S -x.
    #[arg(short = 'X')]
    pub everything: bool,
    /// Stop after this many seconds.
    #[arg(short = 'D', long, value_name = "SECONDS", allow_negative_numbers = true,
          value_parser = numbers::seconds(0.001, MAX_SECONDS))]
    pub duration: Option<f64>,
    /// Stop after this many events shown.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = numbers::whole(1, u64::MAX, "the count"))]
    pub count: Option<u64>,
    /// One JSON object per line (see the README for the schema).
    #[arg(long)]
    pub json: bool,
    /// The receive buffer to ask for, in bytes (default 8 MiB; it grows after a loss).
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true,
          value_parser = numbers::whole(MIN_RCVBUF, MAX_RCVBUF, "the receive buffer"))]
    pub rcvbuf: Option<u64>,
}

/// The longest run `-D` takes: a year.
const MAX_SECONDS: f64 = 31_536_000.0;
/// The smallest receive buffer `--rcvbuf` takes (the kernel's floor is about this).
const MIN_RCVBUF: u64 = 4096;
/// The largest receive buffer `--rcvbuf` takes: 1 GiB.
const MAX_RCVBUF: u64 = 1 << 30;

impl MonitorArgs {
    /// The options after the ones that imply others (-X, -E, -q).
    fn resolved(mut self) -> MonitorArgs {
        if self.everything {
            self.all_events = true;
            self.glyphs = true;
            self.realtime = true;
            self.stats = true;
            self.extra = true;
        }
        if self.all_events {
            self.events = Shown::ALL;
        }
        if self.quiet {
            self.stats = true;
        }
        self
    }
}

/// The kinds of line the monitor can show. A kernel `fork` is a `fork` line for a new
/// process and a `clone` line for a new thread (forkstat's split).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown(u16);

/// One kind of line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// A new process.
    Fork,
    /// A new thread.
    Clone,
    /// A new program.
    Exec,
    /// A task ended.
    Exit,
    /// A core dump.
    Core,
    /// A new name.
    Comm,
    /// A tracer attached or detached.
    Ptrace,
    /// User ids changed.
    Uid,
    /// Group ids changed.
    Gid,
    /// A new session.
    Sid,
}

impl Line {
    const ALL: [Line; 10] = [
        Line::Fork,
        Line::Clone,
        Line::Exec,
        Line::Exit,
        Line::Core,
        Line::Comm,
        Line::Ptrace,
        Line::Uid,
        Line::Gid,
        Line::Sid,
    ];

    /// The name on the line (and in JSON), forkstat's where it has one.
    pub const fn name(self) -> &'static str {
        match self {
            Line::Fork => "fork",
            Line::Clone => "clone",
            Line::Exec => "exec",
            Line::Exit => "exit",
            Line::Core => "core",
            Line::Comm => "comm",
            Line::Ptrace => "ptrace",
            Line::Uid => "uid",
            Line::Gid => "gid",
            Line::Sid => "sid",
        }
    }

    /// The watcher event the kernel reports it as.
    pub const fn kind(self) -> EventKind {
        match self {
            Line::Fork | Line::Clone => EventKind::Fork,
            Line::Exec => EventKind::Exec,
            Line::Exit => EventKind::Exit,
            Line::Core => EventKind::Coredump,
            Line::Comm => EventKind::Comm,
            Line::Ptrace => EventKind::Ptrace,
            Line::Uid => EventKind::Uid,
            Line::Gid => EventKind::Gid,
            Line::Sid => EventKind::Sid,
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl Shown {
    /// Every line.
    pub const ALL: Shown = Shown((1 << Line::ALL.len()) - 1);

    /// Whether `line` is shown.
    pub const fn contains(self, line: Line) -> bool {
        self.0 & line.bit() != 0
    }

    /// The kernel events these lines need.
    pub fn kernel_events(self) -> EventSet {
        Line::ALL
            .into_iter()
            .filter(|&line| self.contains(line))
            .fold(EventSet::EMPTY, |set, line| set.with(line.kind()))
    }

    /// The names shown, in order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Line::ALL
            .into_iter()
            .filter(move |&line| self.contains(line))
            .map(Line::name)
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.names().collect();
        f.write_str(&names.join(","))
    }
}

/// Parses `-e`: forkstat's names (`core`, `ptrce`, `all`), ours (`coredump`, `ptrace`),
/// in any case.
pub fn parse_shown(list: &str) -> Result<Shown, String> {
    let mut shown = 0;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let lower = name.to_ascii_lowercase();
        let lines: &[Line] = match lower.as_str() {
            "all" => &Line::ALL,
            "fork" => &[Line::Fork],
            "clone" | "thread" => &[Line::Clone],
            "exec" => &[Line::Exec],
            "exit" => &[Line::Exit],
            "core" | "coredump" => &[Line::Core],
            "comm" => &[Line::Comm],
            "ptrce" | "ptrace" => &[Line::Ptrace],
            "uid" => &[Line::Uid],
            "gid" => &[Line::Gid],
            "sid" => &[Line::Sid],
            "free" => {
                return Err(
                    "`free` is not a kernel event: the kernel reports a task's end as \
                            `exit` (its resources go with it); show `exit`"
                        .to_owned(),
                );
            }
            _ => {
                return Err(format!(
                    "unknown event `{name}`; the events are fork, clone, exec, exit, core, comm, \
                     ptrce (ptrace), uid, gid, sid, all"
                ));
            }
        };
        for line in lines {
            shown |= line.bit();
        }
    }
    if shown == 0 {
        return Err("no events given".to_owned());
    }
    Ok(Shown(shown))
}

/// Why the monitor could not run.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The registered watchers do not form a table.
    #[error(transparent)]
    Freeze(#[from] watchers_core::FreezeError),
    /// The connector could not be used (permission, kernel support) or failed.
    #[cfg(target_os = "linux")]
    #[error("cannot monitor processes: {0}")]
    Connector(#[from] watchers_proc_connector::ConnectorError),
    /// `-r` was refused.
    #[error("cannot run with real-time FIFO scheduling (-r): {0}; it needs root or CAP_SYS_NICE")]
    Realtime(#[source] std::io::Error),
    /// Not Linux.
    #[cfg(not(target_os = "linux"))]
    #[error("process monitoring needs Linux (the kernel's process-events connector)")]
    Unsupported,
    /// Writing the output failed (other than its reader going away).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs `taskwatch monitor`.
///
/// # Errors
/// A clear [`MonitorError`] when the connector cannot be used (not root: EPERM; no
/// `CONFIG_PROC_EVENTS`: EPROTONOSUPPORT) or the output cannot be written.
pub fn run(args: MonitorArgs) -> Result<ExitCode, MonitorError> {
    let args = args.resolved();
    #[cfg(target_os = "linux")]
    {
        linux::run(args)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = args;
        Err(MonitorError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forkstat_event_names_parse_in_any_case() {
        let shown = parse_shown("FORK,Core,ptrce,clone").unwrap();
        assert_eq!(shown.to_string(), "fork,clone,core,ptrace");
        assert_eq!(parse_shown("all").unwrap(), Shown::ALL);
        assert_eq!(
            shown.kernel_events(),
            EventSet::FORK | EventSet::COREDUMP | EventSet::PTRACE
        );
        assert!(
            parse_shown("free")
                .unwrap_err()
                .contains("not a kernel event")
        );
        assert!(
            parse_shown("forks")
                .unwrap_err()
                .contains("unknown event `forks`")
        );
        assert!(parse_shown(",").is_err());
    }

    #[test]
    fn x_and_q_imply_their_options() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: MonitorArgs,
        }
        let args = Cli::parse_from(["m", "-X"]).args.resolved();
        assert!(args.all_events && args.glyphs && args.realtime && args.stats && args.extra);
        assert_eq!(args.events, Shown::ALL);
        let args = Cli::parse_from(["m", "-q"]).args.resolved();
        assert!(args.quiet && args.stats);
        let args = Cli::parse_from(["m", "-E"]).args.resolved();
        assert_eq!(args.events, Shown::ALL);
    }
}
