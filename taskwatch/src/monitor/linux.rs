//! The monitor's loop on Linux: the connector, signals, and the text and JSON lines.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};
use watchers_core::{ExitStatus, Ids, WatcherTable};
use watchers_proc_connector::cn_proc::ProcEvent;
use watchers_proc_connector::{
    Applied, Change, Counters, Options, ProcConnector, Report, SubscriptionMode,
};

use super::columns;
use super::escape::{JsonArg, arguments, escaped, push_escaped};
use super::{Line, MonitorArgs, MonitorError};
use crate::output::say;

/// How long lines written to a file or pipe may wait in the buffer while events keep
/// coming. A flush per batch is a `write(2)` per event at any real rate (the kernel
/// sends one event per datagram), which was the monitor's largest system-time cost.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// The version of the JSON lines' schema (the README describes it).
const SCHEMA: u32 = 1;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::Release);
}

/// SIGINT, SIGTERM and SIGHUP (the terminal went away) set a flag the loop checks, so
/// every way of being told to stop prints the summary. No SA_RESTART: a blocked receive
/// returns at once.
fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
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

/// `-r`: real-time FIFO scheduling at the highest priority.
fn go_realtime() -> Result<(), MonitorError> {
    // SAFETY: plain calls with a valid `sched_param`.
    let result = unsafe {
        let param = libc::sched_param {
            sched_priority: libc::sched_get_priority_max(libc::SCHED_FIFO),
        };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param)
    };
    if result == 0 {
        Ok(())
    } else {
        Err(MonitorError::Realtime(io::Error::last_os_error()))
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

/// Times of day for the events' stamps, as `HH:MM:SS.mmm` in local time. The local
/// time is looked up once per second of stamps, not per event.
struct Clock {
    /// Wall-clock minus monotonic nanoseconds ([`clock_offset_ns`]).
    offset_ns: i128,
    /// The second last looked up and its `HH:MM:SS` (or the seconds since the epoch
    /// where the local time cannot be had).
    second: Option<libc::time_t>,
    hms: String,
}

impl Clock {
    fn new(offset_ns: i128) -> Clock {
        Clock {
            offset_ns,
            second: None,
            hms: String::new(),
        }
    }

    /// Appends the time of day of the boot-time stamp `stamp_ns`.
    fn push(&mut self, out: &mut String, stamp_ns: u64) {
        let wall_ns = i128::from(stamp_ns) + self.offset_ns;
        let secs = (wall_ns / 1_000_000_000) as libc::time_t;
        let millis = ((wall_ns % 1_000_000_000) / 1_000_000).unsigned_abs() as u64;
        if self.second != Some(secs) {
            self.second = Some(secs);
            self.hms.clear();
            // SAFETY: a zeroed tm is valid; localtime_r writes only into it.
            let tm = unsafe {
                let mut tm: libc::tm = std::mem::zeroed();
                (!libc::localtime_r(&raw const secs, &raw mut tm).is_null()).then_some(tm)
            };
            match tm {
                Some(tm) => {
                    let _ = write!(
                        self.hms,
                        "{:02}:{:02}:{:02}",
                        tm.tm_hour, tm.tm_min, tm.tm_sec
                    );
                }
                None => {
                    let _ = write!(self.hms, "{secs}");
                }
            }
        }
        out.push_str(&self.hms);
        out.push('.');
        columns::push_three_digits(out, millis);
    }
}

/// `/proc/<pid>/stat` as text. It holds the process's name raw, any bytes the process
/// chose: those that are not UTF-8 are replaced, not a reason to fail.
fn stat_of(pid: u32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The process group of `pid` now (`/proc/<pid>/stat` field 5).
fn pgrp_of(pid: u32) -> Option<u32> {
    let stat = stat_of(pid)?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// The controlling terminal of `pid` (`/proc/<pid>/stat` field 7), as `pts/3`, `tty1`.
fn tty_of(pid: u32) -> Option<String> {
    let stat = stat_of(pid)?;
    let (_, rest) = stat.rsplit_once(')')?;
    let tty_nr: u32 = rest.split_whitespace().nth(4)?.parse().ok()?;
    if tty_nr == 0 {
        return None;
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    Some(match major {
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => format!("{major}:{minor}"),
    })
}

fn glyph(line: Line) -> char {
    match line {
        Line::Fork => '+',
        Line::Clone => '&',
        Line::Exec => '>',
        Line::Exit => '-',
        Line::Core => '!',
        Line::Comm => '~',
        Line::Ptrace => '?',
        Line::Uid | Line::Gid => '=',
        Line::Sid => '*',
    }
}

/// The most bytes of a command line a text line shows, as in forkstat: any process can
/// give itself megabytes of arguments, which every line about it and its threads would
/// repeat.
const MAX_SHOWN_COMMAND_LINE: usize = 4096;

/// The part of a command line a text line shows (cut before a character, not inside
/// one), and how many bytes are left out.
fn shown_part(line: &[u8]) -> (&[u8], usize) {
    if line.len() <= MAX_SHOWN_COMMAND_LINE {
        return (line, 0);
    }
    let mut cut = MAX_SHOWN_COMMAND_LINE;
    // A UTF-8 character is at most 4 bytes: at most 3 continuation bytes to back over.
    while cut > MAX_SHOWN_COMMAND_LINE - 3 && line.get(cut).is_some_and(|&b| b & 0xc0 == 0x80) {
        cut -= 1;
    }
    (&line[..cut], line.len() - cut)
}

/// What kind of line an event is.
fn line_of(event: &ProcEvent) -> Option<Line> {
    Some(match *event {
        ProcEvent::Ack { .. } => return None,
        ProcEvent::Fork {
            child_pid,
            child_tgid,
            ..
        } if child_pid != child_tgid => Line::Clone,
        ProcEvent::Fork { .. } => Line::Fork,
        ProcEvent::Exec { .. } => Line::Exec,
        ProcEvent::Uid { .. } => Line::Uid,
        ProcEvent::Gid { .. } => Line::Gid,
        ProcEvent::Sid { .. } => Line::Sid,
        ProcEvent::Ptrace { .. } => Line::Ptrace,
        ProcEvent::Comm { .. } => Line::Comm,
        ProcEvent::Coredump { .. } => Line::Core,
        ProcEvent::Exit { .. } => Line::Exit,
    })
}

/// The ids that changed, as `r 0→1000 e 0→1000` (all four if none did).
fn id_change(old: Ids, new: Ids) -> String {
    let fields = [
        ("r", old.real, new.real),
        ("e", old.effective, new.effective),
        ("s", old.saved, new.saved),
        ("fs", old.fs, new.fs),
    ];
    let changed: Vec<String> = fields
        .iter()
        .filter(|(_, o, n)| o != n)
        .map(|(name, o, n)| format!("{name} {o}→{n}"))
        .collect();
    if changed.is_empty() {
        format!("= {}", new)
    } else {
        changed.join(" ")
    }
}

/// `exit` info: the code, or the signal and whether it dumped core.
#[cfg(test)]
fn exit_info(status: ExitStatus) -> String {
    let mut out = String::new();
    push_exit_info(&mut out, status);
    out
}

/// Appends the `exit` info.
fn push_exit_info(out: &mut String, status: ExitStatus) {
    let core = status.core_dumped();
    let _ = match (status.code(), status.signal()) {
        (Some(code), _) => write!(out, "{code}"),
        (None, Some(signal)) if core => write!(out, "sig {signal} core"),
        (None, Some(signal)) => write!(out, "sig {signal}"),
        _ => write!(out, "{:#x}", status.0),
    };
}

/// Appends a text line's info column: what the event says beyond its pids.
fn push_info(
    out: &mut String,
    line: Line,
    applied: &Applied,
    pid: u32,
    status: Option<ExitStatus>,
) {
    match (applied.event, &applied.change) {
        (ProcEvent::Fork { .. }, _) if line == Line::Clone => out.push_str("thread"),
        (ProcEvent::Fork { .. }, _) => out.push_str("child"),
        (ProcEvent::Exit { .. }, _) => {
            if let Some(status) = status {
                push_exit_info(out, status);
            }
        }
        (_, Some(Change::Uids { old, new } | Change::Gids { old, new })) => {
            out.push_str(&id_change(*old, *new));
        }
        (ProcEvent::Sid { .. }, _) => {
            out.push_str("sid ");
            columns::push_number(out, pid.into());
        }
        (ProcEvent::Ptrace { tracer_pid: 0, .. }, _) => out.push_str("detach"),
        (ProcEvent::Ptrace { tracer_tgid, .. }, _) => {
            let _ = write!(out, "by {tracer_tgid}");
        }
        (ProcEvent::Comm { .. }, _) => out.push_str("rename"),
        _ => {}
    }
}

/// An `event` JSON line (schema in the README), serialised straight from the event:
/// building a `serde_json::Value` map per event cost more than all the rest of the
/// line. The keys come in sorted order, as a `Value` map writes them.
struct EventLine<'a> {
    line: Line,
    applied: &'a Applied,
    pid: u32,
    tgid: u32,
    ppid: Option<u32>,
    time: &'a str,
    status: Option<ExitStatus>,
    duration_s: Option<f64>,
    /// `-x`: the real uid and the terminal.
    extra: Option<(Option<u32>, Option<String>)>,
}

/// A two-key object, the keys in the order given (sorted, as a `Value` map writes them).
struct Pair<A, B>([&'static str; 2], A, B);

impl<A: Serialize, B: Serialize> Serialize for Pair<A, B> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.0[0], &self.1)?;
        map.serialize_entry(self.0[1], &self.2)?;
        map.end()
    }
}

/// `{"pid": …, "tgid": …}`.
fn pid_pair(pid: i32, tgid: i32) -> Pair<i32, i32> {
    Pair(["pid", "tgid"], pid, tgid)
}

/// `{"new": …, "old": …}`.
fn old_new<T>(old: T, new: T) -> Pair<T, T> {
    Pair(["new", "old"], new, old)
}

/// An `exit` object: the raw status and what it means.
struct ExitJson(ExitStatus);

impl Serialize for ExitJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let status = self.0;
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("code", &status.code())?;
        map.serialize_entry("core_dumped", &status.core_dumped())?;
        map.serialize_entry("signal", &status.signal())?;
        map.serialize_entry("status", &status.0)?;
        map.end()
    }
}

/// `{"effective", "fs", "real", "saved"}`.
struct IdsJson(Ids);

impl Serialize for IdsJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ids = self.0;
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("effective", &ids.effective)?;
        map.serialize_entry("fs", &ids.fs)?;
        map.serialize_entry("real", &ids.real)?;
        map.serialize_entry("saved", &ids.saved)?;
        map.end()
    }
}

/// `process`: `{"cmdline": null | [argument…], "comm": …}`.
struct ProcessJson<'a>(&'a Applied);

impl Serialize for ProcessJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("cmdline", &self.0.command_line.as_deref().map(Arguments))?;
        map.serialize_entry("comm", &self.0.task.as_ref().map(|t| t.comm()))?;
        map.end()
    }
}

/// A command line as an array of [`JsonArg`]s.
struct Arguments<'a>(&'a [u8]);

impl Serialize for Arguments<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(arguments(self.0).map(JsonArg))
    }
}

impl Serialize for EventLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let applied = self.applied;
        let mut map = serializer.serialize_map(None)?;
        if let Some(Change::Comm { old, new }) = &applied.change {
            map.serialize_entry("comm", &old_new(old, new))?;
        }
        map.serialize_entry("cpu", &applied.cpu)?;
        if self.status.is_some() {
            map.serialize_entry("duration_s", &self.duration_s)?;
        }
        map.serialize_entry("event", self.line.name())?;
        if let Some(status) = self.status {
            map.serialize_entry("exit", &ExitJson(status))?;
        }
        if let Some(Change::Uids { old, new } | Change::Gids { old, new }) = &applied.change {
            map.serialize_entry("ids", &old_new(IdsJson(*old), IdsJson(*new)))?;
        }
        if let ProcEvent::Fork {
            parent_pid,
            parent_tgid,
            ..
        } = applied.event
        {
            map.serialize_entry("parent", &pid_pair(parent_pid, parent_tgid))?;
        }
        map.serialize_entry("pid", &self.pid)?;
        map.serialize_entry("ppid", &self.ppid)?;
        map.serialize_entry("process", &ProcessJson(applied))?;
        map.serialize_entry("seq", &applied.seq)?;
        if let ProcEvent::Sid { .. } = applied.event {
            map.serialize_entry("sid", &self.pid)?;
        }
        map.serialize_entry("tgid", &self.tgid)?;
        map.serialize_entry("time", self.time)?;
        map.serialize_entry("timestamp_ns", &applied.timestamp_ns)?;
        if let ProcEvent::Ptrace {
            tracer_pid,
            tracer_tgid,
            ..
        } = applied.event
        {
            let tracer = (tracer_pid != 0).then(|| pid_pair(tracer_pid, tracer_tgid));
            map.serialize_entry("tracer", &tracer)?;
        }
        if let Some((_, tty)) = &self.extra {
            map.serialize_entry("tty", tty)?;
        }
        map.serialize_entry("type", "event")?;
        if let Some((uid, _)) = &self.extra {
            map.serialize_entry("uid", uid)?;
        }
        map.end()
    }
}

#[derive(Default, Clone, Copy)]
struct ProcessStats {
    fork: u64,
    clone: u64,
    exec: u64,
    exit: u64,
    core: u64,
    comm: u64,
}

impl ProcessStats {
    fn total(&self) -> u64 {
        self.fork + self.clone + self.exec + self.exit + self.core + self.comm
    }
}

struct Monitor<W: Write> {
    args: MonitorArgs,
    out: W,
    clock: Clock,
    /// The line being written, reused for every line.
    text: String,
    /// The JSON line being written, reused for every line.
    json: Vec<u8>,
    stats: HashMap<String, ProcessStats>,
    shown: u64,
    header_done: bool,
    /// The first failed write to stdout; nothing more is written after it.
    write_error: Option<io::Error>,
    /// For `-p`: each process's group as last read from `/proc` (no kernel event
    /// reports `setpgid`, so the mirror's copy can be stale; an exited process can only
    /// be judged by what was read before).
    pgrps: HashMap<u32, u32>,
}

impl<W: Write> Monitor<W> {
    fn write_line(&mut self, line: &str) {
        self.write_bytes(line.as_bytes());
    }

    /// Writes `value` as one JSON line. Serialised into a reused byte buffer: `Value`'s
    /// `Display` goes through the formatting machinery a few bytes at a time, several
    /// times slower.
    fn write_json(&mut self, value: &impl Serialize) {
        let mut json = std::mem::take(&mut self.json);
        json.clear();
        // Serialising into a Vec fails only where a map key is not a string, which none
        // of the lines has: nothing is written then.
        if serde_json::to_writer(&mut json, value).is_ok() {
            self.write_bytes(&json);
        }
        self.json = json;
    }

    fn write_bytes(&mut self, line: &[u8]) {
        if self.write_error.is_some() {
            return;
        }
        let mut result = self
            .out
            .write_all(line)
            .and_then(|()| self.out.write_all(b"\n"));
        if result.is_ok() && self.args.line_buffered {
            result = self.out.flush();
        }
        if let Err(error) = result {
            self.write_error = Some(error);
        }
    }

    fn flush(&mut self) {
        if self.write_error.is_none()
            && let Err(error) = self.out.flush()
        {
            self.write_error = Some(error);
        }
    }

    /// Appends the process as text: its command line (or comm with `-c`, or `[comm]`
    /// when no command line is known), shortened by `-s` / `-d`, every byte escaped.
    fn push_process(&self, out: &mut String, applied: &Applied) {
        let line = applied.command_line.as_deref().filter(|_| !self.args.comm);
        let Some(line) = line else {
            let comm = applied.task.as_ref().map(|t| t.comm()).unwrap_or_default();
            if self.args.comm {
                push_escaped(out, comm.as_bytes());
            } else {
                out.push('[');
                push_escaped(out, comm.as_bytes());
                out.push(']');
            }
            return;
        };
        let whole = line.strip_suffix(&[0]).unwrap_or(line);
        let (line, left_out) = shown_part(whole);
        // The program is whole if the shown part holds its end, or is cut just before it.
        let program_whole = line.contains(&0) || whole.get(line.len()) == Some(&0);
        for (i, arg) in arguments(line).enumerate() {
            if i == 0 {
                let program = if self.args.strip_dir {
                    arg.rsplit(|&b| b == b'/').next().unwrap_or(arg)
                } else {
                    arg
                };
                push_escaped(out, program);
                if self.args.short {
                    break;
                }
            } else {
                out.push(' ');
                push_escaped(out, arg);
            }
        }
        // With `-s`, only when the program itself was cut.
        if left_out > 0 && !(self.args.short && program_whole) {
            // Escaped text can hold `\\…` (an argument's own backslash, doubled), but
            // every backslash it holds starts an escape, and `\…` is none: read escape
            // by escape, the marker cannot be forged by the arguments.
            out.push_str("\\… (");
            columns::push_number(out, left_out as u64);
            out.push_str(" more bytes)");
        }
    }

    fn count(&mut self, line: Line, applied: &Applied) {
        if !self.args.stats {
            return;
        }
        let name = match (line, &applied.parent, &applied.task) {
            (Line::Fork | Line::Clone, Some(parent), _) => parent.comm(),
            (_, _, Some(task)) => task.comm(),
            _ => "?".to_owned(),
        };
        // The name itself: JSON rows hold it as the events do, text rows escape it.
        let entry = self.stats.entry(name).or_default();
        match line {
            Line::Fork => entry.fork += 1,
            Line::Clone => entry.clone += 1,
            Line::Exec => entry.exec += 1,
            Line::Exit => entry.exit += 1,
            Line::Core => entry.core += 1,
            Line::Comm => entry.comm += 1,
            _ => {}
        }
    }

    /// The process group of the event's process, for `-p`.
    fn process_group(&mut self, applied: &Applied) -> Option<u64> {
        let tgid = applied.event.tgid().and_then(|t| u32::try_from(t).ok())?;
        let exit = matches!(applied.event, ProcEvent::Exit { pid, .. } if pid as u32 == tgid);
        let group = match pgrp_of(tgid) {
            Some(group) if !exit => {
                self.pgrps.insert(tgid, group);
                Some(group)
            }
            _ => self
                .pgrps
                .get(&tgid)
                .copied()
                .or_else(|| applied.task.as_ref().map(|t| t.pgid().get())),
        };
        if exit {
            self.pgrps.remove(&tgid);
        }
        group.map(u64::from)
    }

    fn event(&mut self, applied: &Applied) {
        let Some(line) = line_of(&applied.event) else {
            return;
        };
        if !self.args.events.contains(line) {
            return;
        }
        if let Some(pgrp) = self.args.pgrp
            && self.process_group(applied) != Some(pgrp)
        {
            return;
        }
        self.count(line, applied);
        self.shown += 1;
        if !self.args.quiet {
            self.show(line, applied);
        }
    }

    fn show(&mut self, line: Line, applied: &Applied) {
        let event = applied.event;
        let pid = event.pid().map_or(0, |p| p.max(0) as u32);
        let tgid = event.tgid().map_or(0, |p| p.max(0) as u32);
        // The kernel names a task's parent process in fork and exit events (a thread's is
        // its process's parent); other events use the mirror's.
        let ppid = match event {
            ProcEvent::Fork { parent_tgid, .. } | ProcEvent::Exit { parent_tgid, .. }
                if parent_tgid > 0 =>
            {
                Some(parent_tgid as u32)
            }
            _ => applied.task.as_ref().map(|t| t.parent().get()),
        };
        let status = match event {
            ProcEvent::Exit { exit_code, .. } => Some(ExitStatus(exit_code as i32)),
            _ => None,
        };
        let duration_ns = status
            .and(applied.started_ns)
            .map(|start| applied.timestamp_ns.saturating_sub(start));
        let extra = self.args.extra.then(|| {
            let uid = applied.task.as_ref().map(|t| t.uids().real);
            (uid, tty_of(tgid))
        });
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        if self.args.json {
            self.clock.push(&mut text, applied.timestamp_ns);
            let line = EventLine {
                line,
                applied,
                pid,
                tgid,
                ppid,
                time: &text,
                status,
                duration_s: duration_ns.map(|ns| ns as f64 / 1e9),
                extra,
            };
            self.write_json(&line);
            self.text = text;
            return;
        }
        if !self.header_done {
            self.header_done = true;
            let extra_header = if self.args.extra {
                format!("{:>6} {:<6} ", "UID", "TTY")
            } else {
                String::new()
            };
            let glyph_header = if self.args.glyphs { "  " } else { "" };
            self.write_line(&format!(
                "{:<12} {glyph_header}{:<6} {:>7} {:>7} {:<14} {:>9} {extra_header}Process",
                "Time", "Event", "PID", "PPID", "Info", "Duration"
            ));
        }
        // Time, event, pid, ppid, info, duration, [uid, tty,] process.
        self.clock.push(&mut text, applied.timestamp_ns);
        columns::pad_from(&mut text, 0, 12);
        text.push(' ');
        if self.args.glyphs {
            text.push(glyph(line));
            text.push(' ');
        }
        let start = text.len();
        text.push_str(line.name());
        columns::pad_from(&mut text, start, 6);
        text.push(' ');
        columns::push_number_right(&mut text, pid.into(), 7);
        text.push(' ');
        match ppid {
            Some(ppid) => columns::push_number_right(&mut text, ppid.into(), 7),
            None => columns::push_right(&mut text, "?", 7),
        }
        text.push(' ');
        let start = text.len();
        push_info(&mut text, line, applied, pid, status);
        columns::pad_from(&mut text, start, 14);
        text.push(' ');
        match duration_ns {
            Some(ns) => columns::push_seconds_right(&mut text, ns, 9),
            None => columns::push_right(&mut text, "", 9),
        }
        text.push(' ');
        if let Some((uid, tty)) = extra {
            let uid = uid.map_or_else(|| "?".to_owned(), |u| u.to_string());
            let _ = write!(text, "{uid:>6} {:<6} ", tty.as_deref().unwrap_or("?"));
        }
        match &applied.change {
            Some(Change::Comm { old, new }) => {
                push_escaped(&mut text, old.as_bytes());
                text.push_str(" → ");
                push_escaped(&mut text, new.as_bytes());
            }
            _ => self.push_process(&mut text, applied),
        }
        self.write_line(&text);
        self.text = text;
    }

    fn notice(&mut self, report: &Report) {
        let Some((code, text, mut fields)) = describe(report) else {
            return;
        };
        if self.args.json {
            if let Value::Object(map) = &mut fields {
                map.insert("type".into(), json!("notice"));
                map.insert("code".into(), json!(code));
                map.insert("message".into(), json!(text));
            }
            self.write_json(&fields);
        } else {
            // The lines before it first, where stderr shares stdout's file or pipe.
            self.flush();
            say!("{}", notice_text(&text));
        }
    }
}

/// A notice's text as the terminal gets it: escaped like a command line, since a
/// watcher's error or panic message may quote what a process chose.
fn notice_text(text: &str) -> String {
    escaped(text.as_bytes())
}

/// A report that is not an event, as a notice: its code, its text and its JSON fields;
/// `None` for what is not shown.
fn describe(report: &Report) -> Option<(&'static str, String, Value)> {
    let notice = match report {
        Report::Lost(loss) => {
            let text = match loss.events {
                Some(n) => format!("lost {n} events (cpu {})", loss.cpu.unwrap_or(0)),
                None => format!(
                    "lost events (receive buffer overrun; buffer now {} bytes)",
                    loss.receive_buffer
                ),
            };
            let code = if loss.events.is_some() {
                "lost"
            } else {
                "overrun"
            };
            let fields = json!({"events": loss.events, "cpu": loss.cpu, "receive_buffer": loss.receive_buffer});
            (code, text, fields)
        }
        Report::Resynced(resync) => (
            "resynced",
            format!(
                "resynchronised from /proc: {} added, {} removed ({:.1?})",
                resync.added, resync.removed, resync.took
            ),
            json!({"added": resync.added, "removed": resync.removed, "seconds": resync.took.as_secs_f64()}),
        ),
        Report::WatcherFailed(failure) => (
            "watcher_failed",
            failure.to_string(),
            json!({"watcher": failure.watcher, "pid": failure.pid, "event": failure.event.name()}),
        ),
        Report::WatcherPanicked(failure) => (
            "watcher_panicked",
            failure.to_string(),
            json!({"watcher": failure.watcher, "pid": failure.pid, "event": failure.event.name()}),
        ),
        Report::Rejected(rejection) => (
            "rejected",
            format!("rejected a message: {rejection:?}"),
            json!({}),
        ),
        Report::DecodeFailed(error) => (
            "decode_error",
            format!("undecodable message: {error}"),
            json!({}),
        ),
        Report::SubscriptionChanged(mode) => (
            "subscription_changed",
            format!("subscription now {mode}"),
            json!({"subscription": mode.to_string()}),
        ),
        _ => return None,
    };
    Some(notice)
}

fn summary<W: Write>(
    monitor: &mut Monitor<W>,
    table: &WatcherTable,
    counters: Counters,
    ran: Duration,
) {
    // The events held back for a file or pipe come before the summary, which may go to
    // stderr sharing that file or pipe.
    monitor.flush();
    if monitor.args.stats {
        let mut rows: Vec<(String, ProcessStats)> =
            monitor.stats.iter().map(|(k, v)| (k.clone(), *v)).collect();
        rows.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then_with(|| a.0.cmp(&b.0)));
        if monitor.args.json {
            for (name, s) in &rows {
                let value = json!({
                    "type": "stats", "scope": "process", "process": name,
                    "fork": s.fork, "clone": s.clone, "exec": s.exec, "exit": s.exit,
                    "core": s.core, "comm": s.comm, "total": s.total(),
                });
                monitor.write_json(&value);
            }
        } else {
            let row = |s: &ProcessStats, name: &str| {
                format!(
                    "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {name}",
                    s.fork,
                    s.clone,
                    s.exec,
                    s.exit,
                    s.core,
                    s.comm,
                    s.total()
                )
            };
            monitor.write_line(&format!(
                "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} Process",
                "Fork", "Clone", "Exec", "Exit", "Core", "Comm", "Total"
            ));
            let mut total = ProcessStats::default();
            for (name, s) in &rows {
                total.fork += s.fork;
                total.clone += s.clone;
                total.exec += s.exec;
                total.exit += s.exit;
                total.core += s.core;
                total.comm += s.comm;
                monitor.write_line(&row(s, &escaped(name.as_bytes())));
            }
            monitor.write_line(&row(&total, "Total"));
        }
    }
    let watchers: Vec<_> = table
        .watchers()
        .into_iter()
        .filter(|w| w.calls > 0 || w.errors > 0)
        .collect();
    if monitor.args.json {
        let value = json!({
            "type": "stats",
            "scope": "run",
            "seconds": ran.as_secs_f64(),
            "shown": monitor.shown,
            "counters": {
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
            },
            "watchers": watchers.iter().map(|w| json!({
                "name": w.name, "calls": w.calls, "errors": w.errors,
            })).collect::<Vec<_>>(),
        });
        monitor.write_json(&value);
    } else {
        say!(
            "{:.1}s, {} events shown; received {}, dispatched {}, lost {}, overruns {}, rejected {}, decode errors {}, resyncs {}, watcher errors {}, watcher panics {}, unknown tasks {}",
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
            say!(
                "  watcher {:<40} {:>9} calls {:>6} errors",
                w.name,
                w.calls,
                w.errors
            );
        }
    }
    monitor.flush();
}

fn start_json(args: &MonitorArgs, source: &ProcConnector) -> Value {
    json!({
        "type": "start",
        "schema": SCHEMA,
        "events": args.events.names().collect::<Vec<_>>(),
        "subscription": source.mode().to_string(),
        "kernel_filtered": matches!(source.mode(), SubscriptionMode::KernelFiltered { .. }),
        "tasks": source.mirror().len(),
        "receive_buffer": source.receive_buffer(),
    })
}

pub(super) fn run(args: MonitorArgs) -> Result<ExitCode, MonitorError> {
    if args.realtime {
        go_realtime()?;
    }
    let table = watchers_core::freeze()?;
    // The kernel is asked for what is shown plus what the linked watchers want.
    let mut options = Options {
        extra_events: args.events.kernel_events(),
        ..Options::default()
    };
    if let Some(bytes) = args.rcvbuf {
        // Bounded by the option's parser (1 GiB).
        let bytes = bytes as usize;
        options.receive_buffer = bytes;
        options.max_receive_buffer = options.max_receive_buffer.max(bytes);
    }
    install_signal_handlers();
    let mut seed_notices = Vec::new();
    let mut source = ProcConnector::open_with_reports(table, options, |r| seed_notices.push(r))?;
    let mut monitor = Monitor {
        args,
        out: BufWriter::new(io::stdout().lock()),
        clock: Clock::new(clock_offset_ns()),
        text: String::new(),
        json: Vec::new(),
        stats: HashMap::new(),
        shown: 0,
        header_done: false,
        write_error: None,
        pgrps: HashMap::new(),
    };
    if monitor.args.json {
        let start = start_json(&monitor.args, &source);
        monitor.write_json(&start);
    } else {
        say!(
            "watching {} ({} tasks mirrored, subscription {}); Ctrl-C to stop",
            monitor.args.events,
            source.mirror().len(),
            source.mode()
        );
    }
    for report in &seed_notices {
        monitor.notice(report);
    }
    monitor.flush();
    let started = Instant::now();
    let deadline = monitor
        .args
        .duration
        .map(|secs| started + Duration::from_secs_f64(secs));
    let limit = monitor.args.count;
    // A terminal shows each batch at once; a file or pipe gets the lines when the
    // kernel pauses (a receive that times out or brings no event) or every
    // FLUSH_INTERVAL, and whenever the buffer fills.
    let flush_each_batch = monitor.args.line_buffered || io::stdout().is_terminal();
    let mut flushed_at = Instant::now();
    let mut failure = None;
    loop {
        if INTERRUPTED.load(Ordering::Acquire)
            || monitor.write_error.is_some()
            || deadline.is_some_and(|d| Instant::now() >= d)
            || limit.is_some_and(|n| monitor.shown >= n)
        {
            break;
        }
        let mut had_event = false;
        let result = source.poll(|report| match &report {
            Report::Event(applied) => {
                had_event = true;
                if limit.is_none_or(|n| monitor.shown < n) {
                    monitor.event(applied);
                }
            }
            other => monitor.notice(other),
        });
        if flush_each_batch || !had_event || flushed_at.elapsed() >= FLUSH_INTERVAL {
            monitor.flush();
            flushed_at = Instant::now();
        }
        if let Err(error) = result {
            failure = Some(error);
            break;
        }
    }
    let counters = source.counters();
    summary(&mut monitor, table, counters, started.elapsed());
    if let Some(error) = failure {
        return Err(error.into());
    }
    match monitor.write_error {
        // The reader went away (`| head`): a normal end.
        Some(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Some(error) => Err(MonitorError::Output(error)),
        None => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn each_stamp_gets_its_own_time_of_day_though_it_is_looked_up_once_a_second() {
        // The time of day of one stamp on its own, looked up afresh.
        fn looked_up(wall_ns: i128) -> String {
            let secs = (wall_ns / 1_000_000_000) as libc::time_t;
            let millis = (wall_ns % 1_000_000_000) / 1_000_000;
            // SAFETY: a zeroed tm is valid; localtime_r writes only into it.
            let tm = unsafe {
                let mut tm: libc::tm = std::mem::zeroed();
                assert!(!libc::localtime_r(&raw const secs, &raw mut tm).is_null());
                tm
            };
            format!(
                "{:02}:{:02}:{:02}.{millis:03}",
                tm.tm_hour, tm.tm_min, tm.tm_sec
            )
        }
        let offset = clock_offset_ns();
        let mut clock = Clock::new(offset);
        let mut rng = crate::rng::SplitMix64::new(9);
        let mut stamp: u64 = 1_000_000_000_000;
        let mut seconds = std::collections::HashSet::new();
        for _ in 0..2000 {
            // Mostly on by up to 1.5 s, now and then back (each CPU's events come in
            // their own order).
            stamp = if rng.below(8) == 0 {
                stamp - rng.below(2_000_000_000)
            } else {
                stamp + rng.below(1_500_000_000)
            };
            seconds.insert(stamp / 1_000_000_000);
            let mut out = String::from("x");
            clock.push(&mut out, stamp);
            let expected = looked_up(i128::from(stamp) + offset);
            assert_eq!(out, format!("x{expected}"), "{stamp}");
        }
        // Premise: the stamps fell in many seconds.
        assert!(seconds.len() > 500, "{}", seconds.len());
    }

    #[test]
    fn a_watchers_message_cannot_drive_the_terminal() {
        // A watcher's error or panic message may quote what a process chose (its name,
        // its program); the notice on stderr must not carry it raw.
        let failure = watchers_proc_connector::WatcherFailure {
            event: watchers_core::EventKind::Exec,
            pid: 7,
            watcher: Some("w".into()),
            message: "denied \u{1b}[2J\n00:00:00.000 exit 1 0 0 FAKE".into(),
        };
        for report in [
            Report::WatcherFailed(failure.clone()),
            Report::WatcherPanicked(failure),
        ] {
            let (_, text, _) = describe(&report).expect("a notice");
            let shown = notice_text(&text);
            assert!(
                shown.ends_with(r"7: denied \x1b[2J\n00:00:00.000 exit 1 0 0 FAKE"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_long_command_line_is_cut_before_a_character() {
        let short = b"sh\0-c\0true";
        assert_eq!(shown_part(short), (&short[..], 0));
        let exact = vec![b'a'; MAX_SHOWN_COMMAND_LINE];
        assert_eq!(shown_part(&exact), (&exact[..], 0));
        // A 3-byte character across the limit is left out whole.
        let mut line = vec![b'a'; MAX_SHOWN_COMMAND_LINE - 1];
        line.extend_from_slice("€rest".as_bytes());
        let (shown, left_out) = shown_part(&line);
        assert_eq!(shown.len(), MAX_SHOWN_COMMAND_LINE - 1);
        assert_eq!(left_out, "€rest".len());
        // Bytes that are not UTF-8 are cut where they are.
        let junk = vec![0x80; MAX_SHOWN_COMMAND_LINE + 10];
        assert_eq!(shown_part(&junk).1, 13);
    }

    #[test]
    fn an_exit_status_dumps_core_only_when_a_signal_killed_the_task() {
        let killed = ExitStatus(11 | 0x80);
        let exit_json = |status| serde_json::to_value(ExitJson(status)).unwrap();
        assert_eq!(exit_json(killed)["core_dumped"], true);
        assert_eq!(exit_info(killed), "sig 11 core");
        // A kernel thread's -1: the low bits read as a stopped task, not a signal.
        let odd = ExitStatus(-1);
        assert_eq!(
            exit_json(odd),
            json!({"status": -1, "code": null, "signal": null, "core_dumped": false})
        );
        assert_eq!(exit_info(odd), "0xffffffff");
    }

    fn applied(event: ProcEvent, change: Option<Change>) -> Applied {
        Applied {
            seq: 7,
            cpu: 1,
            timestamp_ns: 5_000_000_000,
            event,
            task: None,
            parent: None,
            change,
            command_line: Some(Arc::from(&b"sh\0-c\0\xffx\"\0\n\0"[..])),
            started_ns: Some(4_000_000_000),
            disposition: watchers_proc_connector::Disposition::Applied,
        }
    }

    /// The line as the monitor writes it.
    fn event_line(
        line: Line,
        applied: &Applied,
        extra: Option<(Option<u32>, Option<String>)>,
    ) -> String {
        let status = match applied.event {
            ProcEvent::Exit { exit_code, .. } => Some(ExitStatus(exit_code as i32)),
            _ => None,
        };
        let line = EventLine {
            line,
            applied,
            pid: 10,
            tgid: 10,
            ppid: Some(1),
            time: "12:00:00.000",
            status,
            duration_s: status.map(|_| 1.0),
            extra,
        };
        serde_json::to_string(&line).unwrap()
    }

    #[test]
    fn json_event_lines_hold_the_schema_keys_in_sorted_order() {
        // Each expected line is a `Value` map, which writes its keys sorted: the
        // streamed line must be the same bytes.
        let process = json!({"cmdline": ["sh", "-c", {"hex": "ff7822"}, "\n"], "comm": null});
        let common = json!({
            "cpu": 1, "pid": 10, "ppid": 1, "process": process, "seq": 7, "tgid": 10,
            "time": "12:00:00.000", "timestamp_ns": 5_000_000_000u64, "type": "event",
        });
        let expect = |line: &str, more: Value| {
            let mut value = common.clone();
            value["event"] = json!(line);
            for (key, field) in more.as_object().unwrap() {
                value[key] = field.clone();
            }
            value.to_string()
        };
        let fork = applied(
            ProcEvent::Fork {
                parent_pid: 3,
                parent_tgid: 1,
                child_pid: 10,
                child_tgid: 10,
            },
            None,
        );
        assert_eq!(
            event_line(Line::Fork, &fork, None),
            expect("fork", json!({"parent": {"pid": 3, "tgid": 1}}))
        );
        let exit = applied(
            ProcEvent::Exit {
                pid: 10,
                tgid: 10,
                exit_code: 9,
                exit_signal: 17,
                parent_pid: 1,
                parent_tgid: 1,
            },
            None,
        );
        assert_eq!(
            event_line(Line::Exit, &exit, Some((Some(1000), None))),
            expect(
                "exit",
                json!({
                    "duration_s": 1.0,
                    "exit": {"code": null, "core_dumped": false, "signal": 9, "status": 9},
                    "uid": 1000, "tty": null,
                })
            )
        );
        let ids = |id| Ids {
            real: id,
            effective: id,
            saved: 0,
            fs: id,
        };
        let uid = applied(
            ProcEvent::Uid {
                pid: 10,
                tgid: 10,
                ruid: 5,
                euid: 5,
            },
            Some(Change::Uids {
                old: ids(0),
                new: ids(5),
            }),
        );
        let ids_json = |id| json!({"effective": id, "fs": id, "real": id, "saved": 0});
        assert_eq!(
            event_line(Line::Uid, &uid, None),
            expect(
                "uid",
                json!({"ids": {"new": ids_json(5), "old": ids_json(0)}})
            )
        );
        let comm = applied(
            ProcEvent::Comm {
                pid: 10,
                tgid: 10,
                comm: [0; 16],
            },
            Some(Change::Comm {
                old: "a".into(),
                new: "b\u{1b}".into(),
            }),
        );
        assert_eq!(
            event_line(Line::Comm, &comm, None),
            expect("comm", json!({"comm": {"new": "b\u{1b}", "old": "a"}}))
        );
        let sid = applied(ProcEvent::Sid { pid: 10, tgid: 10 }, None);
        assert_eq!(
            event_line(Line::Sid, &sid, None),
            expect("sid", json!({"sid": 10}))
        );
        for (tracer_pid, tracer) in [(0, json!(null)), (4, json!({"pid": 4, "tgid": 2}))] {
            let ptrace = applied(
                ProcEvent::Ptrace {
                    pid: 10,
                    tgid: 10,
                    tracer_pid,
                    tracer_tgid: 2,
                },
                None,
            );
            assert_eq!(
                event_line(Line::Ptrace, &ptrace, Some((None, Some("pts/1".into())))),
                expect(
                    "ptrace",
                    json!({"tracer": tracer, "uid": null, "tty": "pts/1"})
                )
            );
        }
    }

    /// A thread of this process that named itself `name`, parked until the sender is
    /// dropped; its id.
    fn named_thread(name: &'static [u8]) -> (u32, std::sync::mpsc::Sender<()>) {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            std::fs::write("/proc/thread-self/comm", name).expect("rename this thread");
            let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
            let tid = link
                .file_name()
                .and_then(|n| n.to_str()?.parse::<u32>().ok());
            tid_tx
                .send(tid.expect("a thread id"))
                .expect("report the id");
            let _ = stop_rx.recv();
        });
        (tid_rx.recv().expect("the thread started"), stop_tx)
    }

    #[test]
    fn a_name_that_is_not_utf8_does_not_hide_the_group_or_the_terminal() {
        // `-p` and `-x` read /proc/<pid>/stat, which holds the name raw: a process
        // named with a byte that is not UTF-8 must not lose its group (and slip past or
        // into a `-p` filter by a stale guess) nor its terminal.
        let (plain, stop_plain) = named_thread(b"plain");
        let (hostile, stop_hostile) = named_thread(b"\xff) 1 2 3");
        let groups = (pgrp_of(plain), pgrp_of(hostile));
        let ttys = (tty_of(plain), tty_of(hostile));
        drop((stop_plain, stop_hostile));
        assert!(groups.0.is_some(), "this process has a group");
        assert_eq!(groups.1, groups.0);
        assert_eq!(ttys.1, ttys.0);
    }
}
