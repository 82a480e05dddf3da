//! `taskwatch monitor`: every process event of the machine, through the kernel's
//! process-events connector, with every linked watcher running on it (forkstat, plus
//! watchers).

use std::process::ExitCode;

use watchers_core::EventSet;

/// `taskwatch monitor` options.
#[derive(Debug, Clone, clap::Args)]
pub struct MonitorArgs {
    /// Events to show: fork, exec, uid, gid, sid, comm, ptrace, coredump, exit
    /// (separated by commas).
    #[arg(short, long, value_name = "LIST", default_value = "fork,exec,exit", value_parser = parse_events)]
    pub events: EventSet,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// At the end, a per-process table: fork, exec, exit, coredump, comm, total.
    #[arg(short = 'S', long)]
    pub stats: bool,
    /// Stop after this many seconds.
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Stop after this many events shown.
    #[arg(short, long, value_name = "N")]
    pub count: Option<u64>,
    /// Do not print the events (the watchers still run; see --stats).
    #[arg(short, long)]
    pub quiet: bool,
    /// Ask the kernel for every event and filter here (default: the kernel filters,
    /// where it can).
    #[arg(long)]
    pub no_kernel_filter: bool,
    /// The receive buffer to ask for, in bytes (default 8 MiB).
    #[arg(long, value_name = "BYTES")]
    pub rcvbuf: Option<usize>,
}

fn parse_events(list: &str) -> Result<EventSet, String> {
    let set = EventSet::parse(list).map_err(|e| e.to_string())?;
    if set.is_empty() {
        return Err("no events given".to_owned());
    }
    Ok(set)
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() && secs < 1e9 => Ok(secs),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
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
    /// Not Linux.
    #[cfg(not(target_os = "linux"))]
    #[error("process monitoring needs Linux (the kernel's process-events connector)")]
    Unsupported,
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs `taskwatch monitor`.
///
/// # Errors
/// A clear [`MonitorError`] when the connector cannot be used (not root: EPERM; no
/// `CONFIG_PROC_EVENTS`: EPROTONOSUPPORT) or the output cannot be written.
pub fn run(args: MonitorArgs) -> Result<ExitCode, MonitorError> {
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

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::io::{self, Write};
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use serde_json::json;
    use watchers_core::{EventKind, ExitStatus, WatcherTable};
    use watchers_proc_connector::cn_proc::ProcEvent;
    use watchers_proc_connector::{Applied, Change, Counters, Options, ProcConnector, Report};

    use super::{MonitorArgs, MonitorError};

    static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        INTERRUPTED.store(true, Ordering::Release);
    }

    /// SIGINT and SIGTERM set a flag the loop checks (no SA_RESTART: a blocked receive
    /// returns at once).
    fn install_signal_handlers() {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is valid; the handler only stores an atomic,
            // which is async-signal-safe; sigemptyset/sigaction get valid pointers.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigemptyset(&raw mut action.sa_mask);
                action.sa_flags = 0;
                libc::sigaction(signal, &raw const action, std::ptr::null_mut());
            }
        }
    }

    /// Wall-clock nanoseconds minus monotonic nanoseconds: turns the events' boot-time
    /// stamps into times of day.
    fn clock_offset_ns() -> i128 {
        let read = |clock| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is valid for writes; both clocks exist on Linux.
            unsafe { libc::clock_gettime(clock, &raw mut ts) };
            i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
        };
        read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC)
    }

    /// `HH:MM:SS.mmm` in local time.
    fn time_of_day(wall_ns: i128) -> String {
        let secs = (wall_ns / 1_000_000_000) as libc::time_t;
        let millis = (wall_ns % 1_000_000_000) / 1_000_000;
        // SAFETY: a zeroed tm is valid; localtime_r writes only into it.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&raw const secs, &raw mut tm).is_null() {
                return format!("{secs}.{millis:03}");
            }
            tm
        };
        format!(
            "{:02}:{:02}:{:02}.{millis:03}",
            tm.tm_hour, tm.tm_min, tm.tm_sec
        )
    }

    #[derive(Default, Clone, Copy)]
    struct ProcessStats {
        fork: u64,
        exec: u64,
        exit: u64,
        coredump: u64,
        comm: u64,
    }

    impl ProcessStats {
        fn total(&self) -> u64 {
            self.fork + self.exec + self.exit + self.coredump + self.comm
        }
    }

    struct Monitor<W: Write> {
        args: MonitorArgs,
        out: W,
        offset_ns: i128,
        /// Fork time of each task whose fork was seen, for the duration at exit.
        forked_at: HashMap<u32, u64>,
        /// The last known command line of each task.
        cmdlines: HashMap<u32, String>,
        stats: HashMap<String, ProcessStats>,
        shown: u64,
        header_done: bool,
        broken_pipe: bool,
    }

    fn read_cmdline(pid: u32) -> Option<String> {
        let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(&bytes);
        (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).replace('\0', " "))
    }

    impl<W: Write> Monitor<W> {
        fn process_name(&mut self, pid: u32, applied: &Applied) -> String {
            if let Some(line) = self.cmdlines.get(&pid) {
                return line.clone();
            }
            let comm = applied.task.as_ref().map(|t| t.comm()).unwrap_or_default();
            match read_cmdline(pid) {
                Some(line) => {
                    self.cmdlines.insert(pid, line.clone());
                    line
                }
                None => format!("[{comm}]"),
            }
        }

        fn write_line(&mut self, line: &str) {
            if self.broken_pipe {
                return;
            }
            if let Err(error) = writeln!(self.out, "{line}").and_then(|()| self.out.flush()) {
                if error.kind() != io::ErrorKind::BrokenPipe {
                    eprintln!("taskwatch: cannot write the output: {error}");
                }
                self.broken_pipe = true;
            }
        }

        fn count(&mut self, kind: EventKind, applied: &Applied) {
            if !self.args.stats {
                return;
            }
            let name = match (kind, &applied.parent, &applied.task) {
                (EventKind::Fork, Some(parent), _) => parent.comm(),
                (_, _, Some(task)) => task.comm(),
                _ => "?".to_owned(),
            };
            let entry = self.stats.entry(name).or_default();
            match kind {
                EventKind::Fork => entry.fork += 1,
                EventKind::Exec => entry.exec += 1,
                EventKind::Exit => entry.exit += 1,
                EventKind::Coredump => entry.coredump += 1,
                EventKind::Comm => entry.comm += 1,
                _ => {}
            }
        }

        fn event(&mut self, applied: &Applied) {
            let Some(kind) = applied.event.event_kind() else {
                return;
            };
            let Some(raw_pid) = applied.event.pid() else {
                return;
            };
            let pid = raw_pid.max(0) as u32;
            // Keep the caches whatever is shown.
            match applied.event {
                ProcEvent::Fork { parent_tgid, .. } => {
                    self.forked_at.insert(pid, applied.timestamp_ns);
                    if let Some(line) = self.cmdlines.get(&(parent_tgid.max(0) as u32)).cloned() {
                        self.cmdlines.insert(pid, line);
                    }
                }
                ProcEvent::Exec { .. } => match &applied.command_line {
                    Some(line) => {
                        self.cmdlines.insert(pid, line.clone());
                    }
                    None => {
                        self.cmdlines.remove(&pid);
                    }
                },
                _ => {}
            }
            let shown = self.args.events.contains(kind);
            if shown {
                self.count(kind, applied);
                self.shown += 1;
                if !self.args.quiet {
                    self.show(kind, pid, applied);
                }
            }
            if let ProcEvent::Exit { .. } = applied.event {
                self.forked_at.remove(&pid);
                self.cmdlines.remove(&pid);
            }
        }

        fn show(&mut self, kind: EventKind, pid: u32, applied: &Applied) {
            let time = time_of_day(i128::from(applied.timestamp_ns) + self.offset_ns);
            let ppid = match applied.event {
                // A thread's "parent" here is the process it joined.
                ProcEvent::Fork {
                    child_pid,
                    child_tgid,
                    ..
                } if child_pid != child_tgid => Some(child_tgid.max(0) as u32),
                ProcEvent::Fork { parent_tgid, .. } => Some(parent_tgid.max(0) as u32),
                ProcEvent::Exit { parent_tgid, .. } if parent_tgid > 0 => Some(parent_tgid as u32),
                _ => applied.task.as_ref().map(|t| t.parent().get()),
            };
            let mut duration = None;
            let mut exit = None;
            let info = match applied.event {
                ProcEvent::Fork {
                    child_pid,
                    child_tgid,
                    ..
                } => {
                    if child_pid == child_tgid {
                        "parent".to_owned()
                    } else {
                        "thread".to_owned()
                    }
                }
                ProcEvent::Exit { exit_code, .. } => {
                    let status = ExitStatus(exit_code as i32);
                    duration = self
                        .forked_at
                        .get(&pid)
                        .map(|&start| applied.timestamp_ns.saturating_sub(start) as f64 / 1e9);
                    exit = Some(status);
                    match (status.code(), status.signal()) {
                        (Some(code), _) => format!("{code:>6}"),
                        (None, Some(signal)) => format!("sig {signal:>2}"),
                        _ => format!("{:#x}", status.0),
                    }
                }
                ProcEvent::Uid { .. } | ProcEvent::Gid { .. } => match &applied.change {
                    Some(Change::Uids { old, new } | Change::Gids { old, new }) => {
                        format!("{}→{}", old.effective, new.effective)
                    }
                    _ => String::new(),
                },
                ProcEvent::Sid { .. } => format!("sid {pid}"),
                ProcEvent::Ptrace {
                    tracer_pid,
                    tracer_tgid,
                    ..
                } => {
                    if tracer_pid == 0 {
                        "detach".to_owned()
                    } else {
                        format!("by {tracer_tgid}")
                    }
                }
                ProcEvent::Comm { .. } => "rename".to_owned(),
                ProcEvent::Coredump { .. } => "core".to_owned(),
                _ => String::new(),
            };
            let process = match (&applied.change, kind) {
                (Some(Change::Comm { old, new }), _) => format!("{old} → {new}"),
                (_, EventKind::Exec) => applied.command_line.clone().unwrap_or_else(|| {
                    let comm = applied.task.as_ref().map(|t| t.comm()).unwrap_or_default();
                    format!("[{comm}]")
                }),
                _ => self.process_name(pid, applied),
            };
            if self.args.json {
                let value = json!({
                    "time": time,
                    "timestamp_ns": applied.timestamp_ns,
                    "cpu": applied.cpu,
                    "event": kind.name(),
                    "pid": pid,
                    "tgid": applied.event.tgid(),
                    "ppid": ppid,
                    "info": info.trim(),
                    "exit_code": exit.and_then(|s| s.code()),
                    "signal": exit.and_then(|s| s.signal()),
                    "duration_s": duration,
                    "uids": match &applied.change {
                        Some(Change::Uids { old, new }) => Some(json!({"old": old.to_string(), "new": new.to_string()})),
                        _ => None,
                    },
                    "gids": match &applied.change {
                        Some(Change::Gids { old, new }) => Some(json!({"old": old.to_string(), "new": new.to_string()})),
                        _ => None,
                    },
                    "process": process,
                });
                self.write_line(&value.to_string());
            } else {
                if !self.header_done {
                    self.header_done = true;
                    self.write_line(&format!(
                        "{:<12} {:<8} {:>7} {:>7} {:<10} {:>9} Process",
                        "Time", "Event", "PID", "PPID", "Info", "Duration"
                    ));
                }
                let ppid = ppid.map_or_else(|| "-".to_owned(), |p| p.to_string());
                let duration = duration.map_or_else(String::new, |d| format!("{d:.3}"));
                self.write_line(&format!(
                    "{time:<12} {:<8} {pid:>7} {ppid:>7} {info:<10} {duration:>9} {process}",
                    kind.name()
                ));
            }
        }

        fn notice(&mut self, report: &Report) {
            let text = match report {
                Report::Lost(loss) => match loss.events {
                    Some(n) => format!("lost {n} events (cpu {})", loss.cpu.unwrap_or(0)),
                    None => format!(
                        "lost events (receive buffer overrun; buffer now {} bytes)",
                        loss.receive_buffer
                    ),
                },
                Report::Resynced(resync) => format!(
                    "resynchronised from /proc: {} added, {} removed ({:.1?})",
                    resync.added, resync.removed, resync.took
                ),
                Report::WatcherFailed(failure) | Report::WatcherPanicked(failure) => {
                    failure.to_string()
                }
                Report::Rejected(rejection) => format!("rejected a message: {rejection:?}"),
                Report::DecodeFailed(error) => format!("undecodable message: {error}"),
                Report::SubscriptionChanged(mode) => format!("subscription now {mode}"),
                _ => return,
            };
            if self.args.json {
                self.write_line(&json!({ "notice": text }).to_string());
            } else {
                eprintln!("taskwatch: {text}");
            }
        }
    }

    fn summary<W: Write>(
        monitor: &mut Monitor<W>,
        table: &WatcherTable,
        counters: Counters,
        ran: Duration,
    ) {
        if monitor.args.stats {
            let mut rows: Vec<(String, ProcessStats)> =
                monitor.stats.iter().map(|(k, v)| (k.clone(), *v)).collect();
            rows.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then_with(|| a.0.cmp(&b.0)));
            if monitor.args.json {
                for (name, s) in &rows {
                    let value = json!({"stats": {
                        "process": name, "fork": s.fork, "exec": s.exec, "exit": s.exit,
                        "coredump": s.coredump, "comm": s.comm, "total": s.total(),
                    }});
                    monitor.write_line(&value.to_string());
                }
            } else {
                monitor.write_line(&format!(
                    "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8} Process",
                    "Fork", "Exec", "Exit", "Coredump", "Comm", "Total"
                ));
                let mut total = ProcessStats::default();
                for (name, s) in &rows {
                    total.fork += s.fork;
                    total.exec += s.exec;
                    total.exit += s.exit;
                    total.coredump += s.coredump;
                    total.comm += s.comm;
                    monitor.write_line(&format!(
                        "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {name}",
                        s.fork,
                        s.exec,
                        s.exit,
                        s.coredump,
                        s.comm,
                        s.total()
                    ));
                }
                monitor.write_line(&format!(
                    "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8} Total",
                    total.fork,
                    total.exec,
                    total.exit,
                    total.coredump,
                    total.comm,
                    total.total()
                ));
            }
        }
        let watchers: Vec<_> = table
            .watchers()
            .into_iter()
            .filter(|w| w.calls > 0 || w.errors > 0)
            .collect();
        if monitor.args.json {
            let value = json!({"summary": {
                "seconds": ran.as_secs_f64(),
                "shown": monitor.shown,
                "received": counters.received,
                "dispatched": counters.dispatched,
                "lost": counters.lost,
                "overruns": counters.overruns,
                "rejected": counters.rejected,
                "decode_errors": counters.decode_errors,
                "resyncs": counters.resyncs,
                "watcher_errors": counters.watcher_errors,
                "watcher_panics": counters.watcher_panics,
                "unknown": counters.unknown,
                "watchers": watchers.iter().map(|w| json!({
                    "name": w.name, "calls": w.calls, "errors": w.errors,
                })).collect::<Vec<_>>(),
            }});
            monitor.write_line(&value.to_string());
        } else {
            eprintln!(
                "taskwatch: {:.1}s, {} events shown; received {}, dispatched {}, lost {}, overruns {}, rejected {}, decode errors {}, resyncs {}, watcher errors {}, watcher panics {}, unknown tasks {}",
                ran.as_secs_f64(),
                monitor.shown,
                counters.received,
                counters.dispatched,
                counters.lost,
                counters.overruns,
                counters.rejected,
                counters.decode_errors,
                counters.resyncs,
                counters.watcher_errors,
                counters.watcher_panics,
                counters.unknown,
            );
            for w in watchers {
                eprintln!(
                    "taskwatch:   watcher {:<40} {:>9} calls {:>6} errors",
                    w.name, w.calls, w.errors
                );
            }
        }
    }

    pub(super) fn run(args: MonitorArgs) -> Result<ExitCode, MonitorError> {
        let table = watchers_core::freeze()?;
        let mut options = Options {
            kernel_filter: !args.no_kernel_filter,
            extra_events: args.events,
            ..Options::default()
        };
        if let Some(bytes) = args.rcvbuf {
            options.receive_buffer = bytes;
        }
        install_signal_handlers();
        let mut seed_notices = Vec::new();
        let mut source =
            ProcConnector::open_with_reports(table, options, |r| seed_notices.push(r))?;
        let stdout = io::stdout();
        let mut monitor = Monitor {
            args,
            out: stdout.lock(),
            offset_ns: clock_offset_ns(),
            forked_at: HashMap::new(),
            cmdlines: HashMap::new(),
            stats: HashMap::new(),
            shown: 0,
            header_done: false,
            broken_pipe: false,
        };
        if !monitor.args.json {
            eprintln!(
                "taskwatch: watching {} ({} tasks mirrored, subscription {}); Ctrl-C to stop",
                monitor.args.events,
                source.mirror().len(),
                source.mode()
            );
        }
        for report in &seed_notices {
            monitor.notice(report);
        }
        let started = Instant::now();
        let deadline = monitor
            .args
            .duration
            .map(|secs| started + Duration::from_secs_f64(secs));
        let limit = monitor.args.count;
        let mut failure = None;
        loop {
            if INTERRUPTED.load(Ordering::Acquire)
                || monitor.broken_pipe
                || deadline.is_some_and(|d| Instant::now() >= d)
                || limit.is_some_and(|n| monitor.shown >= n)
            {
                break;
            }
            let result = source.poll(|report| match &report {
                Report::Event(applied) => {
                    if limit.is_none_or(|n| monitor.shown < n) {
                        monitor.event(applied);
                    }
                }
                other => monitor.notice(other),
            });
            if let Err(error) = result {
                failure = Some(error);
                break;
            }
        }
        let counters = source.counters();
        summary(&mut monitor, table, counters, started.elapsed());
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(ExitCode::SUCCESS),
        }
    }
}
