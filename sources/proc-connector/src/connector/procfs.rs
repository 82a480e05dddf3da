//! Reading tasks from `/proc`: the seed of the mirror, lazy adoption and resyncs.
//!
//! Everything here is best effort: a task can vanish between any two reads, so a
//! missing or odd file means "no such task", never an error.

use std::fs;
use std::io;
use std::path::Path;

use watchers_core::{Ids, Pid, TaskInit};

/// What `/proc/<pid>/task/<tid>/status` says about one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProcTask {
    pub(crate) pid: u32,
    pub(crate) tgid: u32,
    pub(crate) ppid: u32,
    pub(crate) sid: u32,
    pub(crate) pgid: u32,
    pub(crate) uids: Ids,
    pub(crate) gids: Ids,
    pub(crate) comm: String,
    /// When it started, in clock ticks since boot (`/proc/<pid>/stat`), when read.
    pub(crate) start_ticks: Option<u64>,
    /// Exited but not reaped (`Z`) or dead (`X`): the kernel already sent its exit.
    pub(crate) gone: bool,
}

impl ProcTask {
    /// The task as the mirror will hold it, with `parent` as its parent.
    pub(crate) fn init(&self, parent: Pid) -> TaskInit {
        TaskInit {
            pid: Pid(self.pid),
            tgid: Pid(self.tgid),
            parent,
            sid: Pid(self.sid),
            pgid: Pid(self.pgid),
            uids: self.uids,
            gids: self.gids,
            comm: self.comm.clone(),
        }
    }
}

fn ids(value: &str) -> Option<Ids> {
    let mut it = value.split_whitespace().map(|v| v.parse::<u32>().ok());
    Some(Ids {
        real: it.next()??,
        effective: it.next()??,
        saved: it.next()??,
        fs: it.next()??,
    })
}

/// The name as the task holds it: the status file escapes a newline as `\n` and a
/// backslash as `\\` (and nothing else), so a name cannot break the file's lines.
fn unescape_name(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A `/proc` file as text. Not `read_to_string`: a task's name is any bytes it chose,
/// and a file that is not UTF-8 must not make the task look gone.
fn read_text(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    Some(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

fn first_number(value: &str) -> Option<u32> {
    value.split_whitespace().next()?.parse().ok()
}

/// Parses the text of a `status` file.
pub(crate) fn parse_status(text: &str) -> Option<ProcTask> {
    let mut name = None;
    let mut state = None;
    let mut pid = None;
    let mut tgid = None;
    let mut ppid = None;
    let mut uids = None;
    let mut gids = None;
    let mut sid = None;
    let mut pgid = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "Name" => name = Some(unescape_name(value.strip_prefix('\t').unwrap_or(value))),
            "State" => state = value.trim().chars().next(),
            "Pid" => pid = first_number(value),
            "Tgid" => tgid = first_number(value),
            "PPid" => ppid = first_number(value),
            "Uid" => uids = ids(value),
            "Gid" => gids = ids(value),
            "NSsid" => sid = first_number(value),
            "NSpgid" => pgid = first_number(value),
            _ => {}
        }
    }
    let pid = pid?;
    Some(ProcTask {
        pid,
        tgid: tgid?,
        ppid: ppid?,
        sid: sid.unwrap_or(pid),
        pgid: pgid.unwrap_or(pid),
        uids: uids?,
        gids: gids?,
        comm: name?,
        start_ticks: None,
        gone: matches!(state, Some('Z' | 'X' | 'x')),
    })
}

fn read_status(path: &Path) -> Option<ProcTask> {
    parse_status(&read_text(path)?)
}

/// One task by its id (a thread id works too: `/proc/<tid>` exists though unlisted),
/// with its start time.
pub(crate) fn task(pid: u32) -> Option<ProcTask> {
    let mut task = read_status(Path::new(&format!("/proc/{pid}/status")))?;
    task.start_ticks = start_ticks(pid);
    Some(task)
}

/// The task's current name.
pub(crate) fn comm(pid: u32) -> Option<String> {
    let mut name = read_text(Path::new(&format!("/proc/{pid}/comm")))?;
    if name.ends_with('\n') {
        name.pop();
    }
    Some(name)
}

/// The task's command line as the kernel holds it (each argument followed by a NUL),
/// bytes unchanged; `None` if it is gone or has none (a kernel thread, a zombie).
pub(crate) fn cmdline(pid: u32) -> Option<Vec<u8>> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    (!bytes.is_empty()).then_some(bytes)
}

/// When the task started, in clock ticks since boot (`/proc/<pid>/stat` field 22).
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    parse_start_ticks(&read_text(Path::new(&format!("/proc/{pid}/stat")))?)
}

fn parse_start_ticks(stat: &str) -> Option<u64> {
    // The name (field 2) may hold spaces and parentheses: split after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts with field 3 (the state); field 22 is 19 further.
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn numeric_entries(dir: &Path) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            out.push(pid);
        }
    }
    Ok(out)
}

/// Every task (processes and their threads) now in `/proc`, zombies included (marked
/// [`gone`](ProcTask::gone)).
///
/// # Errors
/// Only if `/proc` itself cannot be listed.
pub(crate) fn scan() -> io::Result<Vec<ProcTask>> {
    let mut out = Vec::new();
    for pid in numeric_entries(Path::new("/proc"))? {
        let threads =
            numeric_entries(Path::new(&format!("/proc/{pid}/task"))).unwrap_or_else(|_| vec![pid]);
        for tid in threads {
            if let Some(mut task) =
                read_status(Path::new(&format!("/proc/{pid}/task/{tid}/status")))
            {
                task.start_ticks = parse_start_ticks(
                    &read_text(Path::new(&format!("/proc/{pid}/task/{tid}/stat")))
                        .unwrap_or_default(),
                );
                out.push(task);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn parses_a_status_file() {
        let text = "Name:\tkworker/0:1-events\nUmask:\t0022\nState:\tZ (zombie)\nTgid:\t42\n\
                    Ngid:\t0\nPid:\t43\nPPid:\t2\nTracerPid:\t0\nUid:\t1000\t1000\t0\t1000\n\
                    Gid:\t5\t6\t7\t8\nNSpid:\t43\nNSpgid:\t40\nNSsid:\t39\n";
        let task = parse_status(text).unwrap();
        assert_eq!(task.pid, 43);
        assert_eq!(task.tgid, 42);
        assert_eq!(task.ppid, 2);
        assert_eq!((task.sid, task.pgid), (39, 40));
        assert_eq!(task.uids.saved, 0);
        assert_eq!(task.gids.fs, 8);
        assert_eq!(task.comm, "kworker/0:1-events");
        assert!(task.gone);
        assert_eq!(parse_status("Name:\tx\n"), None);
        assert_eq!(parse_status(""), None);
    }

    #[test]
    fn parses_the_start_time() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_start_ticks(stat), Some(123_456));
        assert_eq!(parse_start_ticks("42 (x) S 1"), None);
        assert_eq!(parse_start_ticks(""), None);
    }

    /// A thread of this process that named itself `name` (through its own `comm`
    /// file, as `prctl(PR_SET_NAME)` would), parked until the sender is dropped.
    pub(crate) fn named_thread(
        name: &'static [u8],
    ) -> (
        u32,
        std::sync::mpsc::Sender<()>,
        std::thread::JoinHandle<()>,
    ) {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            fs::write("/proc/thread-self/comm", name).expect("rename this thread");
            let link = fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
            let tid: u32 = link
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
                .expect("a thread id");
            tid_tx.send(tid).expect("report the thread id");
            let _ = stop_rx.recv();
        });
        let tid = tid_rx.recv().expect("the thread started");
        (tid, stop_tx, handle)
    }

    #[test]
    fn a_name_that_is_not_utf8_does_not_hide_the_task() {
        // Any process can name itself with bytes that are not UTF-8 (`prctl`, or the
        // file name it execs); /proc/<pid>/status then holds them raw.
        let (tid, stop, handle) = named_thread(b"\xffhidden");
        let found = task(tid);
        let listed = scan().unwrap().iter().any(|t| t.pid == tid);
        let name = comm(tid);
        drop(stop);
        handle.join().unwrap();
        let found = found.expect("the task is found");
        assert_eq!(found.comm, "\u{fffd}hidden");
        assert!(listed, "a scan lists it");
        assert_eq!(name.as_deref(), Some("\u{fffd}hidden"));
    }

    #[test]
    fn status_names_are_read_as_the_kernel_holds_them() {
        // The kernel escapes `\n` and `\\` in the status file's Name (only those) and
        // puts a tab after the colon: the name is what follows, unescaped.
        let text = "Name:\ta\\\\b\\nc\nState:\tS\nTgid:\t4\nPid:\t4\nPPid:\t1\n\
                    Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_status(text).unwrap().comm, "a\\b\nc");
        for name in [&b"a\\b"[..], b"a\nb", b"\t lead", b"x\\n"] {
            let (tid, stop, handle) = named_thread(name);
            let found = task(tid).map(|t| t.comm);
            drop(stop);
            handle.join().unwrap();
            assert_eq!(found.as_deref().map(str::as_bytes), Some(name));
        }
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let task = task(me).unwrap();
        assert_eq!((task.pid, task.tgid), (me, me));
        assert!(!task.gone);
        assert!(cmdline(me).is_some());
        assert!(comm(me).is_some());
        assert!(start_ticks(me).is_some());
        assert!(scan().unwrap().iter().any(|t| t.pid == me));
    }
}
