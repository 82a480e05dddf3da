//! `taskwatch monitor` against the real kernel, with real children.
//!
//! Needs the process-events connector (root, initial namespaces). Where it cannot be
//! opened each test prints `skipped: <reason>` and passes, unless
//! `TASKWATCH_REQUIRE_PROC_CONNECTOR=1` is set, which makes that a failure.
#![cfg(target_os = "linux")]

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{closed_pipe, dev_full};

/// Set in a child this binary starts of itself: what the child does.
const ROLE: &str = "TASKWATCH_MONITOR_TEST_ROLE";

/// The hostile arguments of the issue, and a byte that is not UTF-8.
const FORGED_LINE: &str = "0.2\n04:00:00.000 exit 1 0 0 FAKE";
const RED: &str = "\x1b[31mRED";

/// What a child started with [`ROLE`] does, if this process is one; never returns then.
fn act_as_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "exec-from-thread" => {
            let thread = thread::spawn(|| {
                let error = Command::new("sleep").arg("1").exec();
                panic!("exec failed: {error}");
            });
            let _ = thread.join();
        }
        "set-ruid" => {
            // SAFETY: plain system calls; -1 keeps an id.
            unsafe { libc::setresuid(4242, u32::MAX, u32::MAX) };
            thread::sleep(Duration::from_millis(200));
        }
        "thread" => {
            thread::spawn(|| thread::sleep(Duration::from_millis(100)))
                .join()
                .expect("the thread");
            // Its clone line is found by its command line, which the monitor reads from
            // /proc when it handles the exec: the process lives long enough for a
            // monitor that lags behind on a loaded machine.
            thread::sleep(Duration::from_millis(1500));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// This test binary started again as a child playing `role`.
fn child_in_role(role: &str) -> Child {
    Command::new(std::env::current_exe().expect("this binary"))
        .args([
            "--exact",
            "a_role_player_is_never_run_as_a_test",
            "--test-threads=1",
        ])
        // Names the role on the command line (a filter that skips nothing else).
        .args(["--skip", &format!("role-{role}")])
        .env(ROLE, role)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn a child of this binary")
}

#[test]
fn a_role_player_is_never_run_as_a_test() {
    // Children enter here (through `--exact`) and act; as a test it checks nothing
    // else can reach the roles.
    act_as_child();
    assert!(std::env::var(ROLE).is_err());
}

struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

fn collect(mut from: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>) {
    let buffer: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sink = buffer.clone();
    let handle = thread::spawn(move || {
        let mut chunk = [0; 8192];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buffer, handle)
}

/// A monitor that ended at once with `text` on stderr: the connector cannot be opened
/// here. The test is skipped, unless `TASKWATCH_REQUIRE_PROC_CONNECTOR=1`.
fn skip_without_connector(text: &str) {
    assert!(text.contains("cannot monitor processes"), "{text}");
    if std::env::var("TASKWATCH_REQUIRE_PROC_CONNECTOR").as_deref() == Ok("1") {
        panic!("TASKWATCH_REQUIRE_PROC_CONNECTOR=1 but: {text}");
    }
    println!("skipped: {text}");
}

/// Starts `taskwatch monitor ARGS` and waits until it watches; `None` (skipped) if the
/// connector cannot be used here.
fn monitor(args: &[&str]) -> Option<Running> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskwatch"))
        .arg("monitor")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("taskwatch runs");
    let (stdout, out) = collect(child.stdout.take().unwrap());
    let (stderr, err) = collect(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = String::from_utf8_lossy(&stderr.lock().unwrap()).contains("watching")
            || String::from_utf8_lossy(&stdout.lock().unwrap()).contains(r#""type":"start""#);
        if ready {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let _ = (out.join(), err.join());
            let text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
            skip_without_connector(&format!("{status}: {text}"));
            return None;
        }
        assert!(Instant::now() < deadline, "the monitor did not start");
        thread::sleep(Duration::from_millis(20));
    }
    Some(Running {
        child,
        stdout,
        stderr,
        readers: vec![out, err],
    })
}

impl Running {
    /// Sends `signal`, waits for the end; returns the status, stdout and stderr.
    fn stop(mut self, signal: libc::c_int) -> (ExitStatus, Vec<u8>, String) {
        // Let the last events arrive, also at a monitor that lags on a loaded machine.
        thread::sleep(Duration::from_millis(1000));
        // SAFETY: a plain kill of our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let status = self.child.wait().expect("wait");
        self.ended(status)
    }

    /// What the monitor, ended with `status`, wrote: its status, stdout and stderr.
    fn ended(self, status: ExitStatus) -> (ExitStatus, Vec<u8>, String) {
        for reader in self.readers {
            reader.join().expect("reader");
        }
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap());
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        (status, stdout, stderr)
    }
}

/// `sh -c 'sleep 1; true' FORGED RED <0xff>`: the hostile bytes are its arguments.
fn hostile_child() -> u32 {
    let mut child = Command::new("sh")
        .args(["-c", "sleep 1; true", FORGED_LINE, RED])
        .arg(OsStr::from_bytes(b"\xffbad"))
        .spawn()
        .expect("spawn sh");
    child.wait().expect("wait sh");
    child.id()
}

/// The text output's `exec` line of the process `pid` (its third column).
fn exec_line<'a>(text: &'a str, pid: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(" exec ") && l.split_whitespace().nth(2) == Some(pid))
        .unwrap_or_else(|| panic!("no exec line for {pid}:\n{text}"))
}

#[test]
fn process_controlled_bytes_are_escaped_in_text() {
    let Some(running) = monitor(&["-e", "exec,exit"]) else {
        return;
    };
    let child = hostile_child();
    let (status, stdout, stderr) = running.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {stderr}");
    let text = String::from_utf8(stdout).expect("the output is UTF-8 whatever processes hold");
    let pid = child.to_string();
    let exec = exec_line(&text, &pid);
    assert!(
        exec.ends_with(
            r"sh -c sleep 1; true 0.2\n04:00:00.000 exit 1 0 0 FAKE \x1b[31mRED \xffbad"
        ),
        "{exec}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("04:00:00.000")),
        "a forged line:\n{text}"
    );
    assert!(!text.contains('\x1b'), "a raw escape reached the terminal");
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'));
    assert!(stderr.contains("events shown"), "the summary: {stderr}");
}

#[test]
fn invisible_characters_cannot_disguise_a_process() {
    // `ss<ZWSP>hd` looks exactly like `sshd` on a terminal: every invisible format
    // character (zero-width space and joiners, soft hyphen, BOM, word joiner, tags)
    // must show as an escape, or any process can pass itself off as another.
    let Some(running) = monitor(&["-e", "exec"]) else {
        return;
    };
    let disguised = "ss\u{200b}hd\u{ad}\u{200d}\u{feff}\u{2060}\u{e0041}x";
    let mut child = Command::new("sh")
        .args(["-c", "sleep 1; true", disguised])
        .spawn()
        .expect("spawn sh");
    child.wait().expect("wait sh");
    let pid = child.id().to_string();
    let (status, stdout, stderr) = running.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {stderr}");
    let text = String::from_utf8(stdout).expect("UTF-8 output");
    let exec = exec_line(&text, &pid);
    assert!(
        exec.ends_with(r"sh -c sleep 1; true ss\u{200b}hd\u{ad}\u{200d}\u{feff}\u{2060}\u{e0041}x"),
        "{exec}"
    );
}

#[test]
fn a_huge_command_line_does_not_make_huge_lines() {
    // Any process can give itself megabytes of arguments; printed whole on each of its
    // fork, clone, exec and exit lines, one process floods the output (and the
    // monitor falls behind the kernel). Text lines show the first 4096 bytes, as
    // forkstat does, and say how much was left out.
    let Some(running) = monitor(&["-e", "exec,exit"]) else {
        return;
    };
    // The kernel takes at most 128 KiB per argument.
    let huge = "A".repeat(100_000);
    let mut child = Command::new("sh")
        .args(["-c", "sleep 1; true"])
        .args([&huge; 8])
        .spawn()
        .expect("spawn sh");
    child.wait().expect("wait sh");
    let pid = child.id().to_string();
    let (status, stdout, stderr) = running.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {stderr}");
    let text = String::from_utf8(stdout).expect("UTF-8 output");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(&pid))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(" exec ")),
        "no exec line for {pid}"
    );
    // The arguments and the NULs between them, past the 4096 shown.
    let cut = "sh\0-c\0sleep 1; true\0".len() + 8 * (huge.len() + 1) - 1 - 4096;
    for line in lines {
        assert!(line.len() < 4096 + 200, "a line of {} bytes", line.len());
        assert!(
            line.ends_with(&format!(r"AAAA\… ({cut} more bytes)")),
            "{}",
            line.get(..200).unwrap_or(line)
        );
    }
}

#[test]
fn a_short_line_shows_no_cut_marker_for_a_program_that_ends_at_the_cut() {
    // With `-s` a line shows only the program, and says that something was left out
    // only when the program itself was cut. A program of exactly the 4096 bytes shown,
    // followed by arguments, was shown whole and yet marked as cut.
    let Some(running) = monitor(&["-s", "-e", "exec"]) else {
        return;
    };
    let program = "P".repeat(4096);
    let mut child = Command::new("sh")
        .arg0(&program)
        .args(["-c", "sleep 1; true"])
        .spawn()
        .expect("spawn sh");
    child.wait().expect("wait sh");
    let pid = child.id().to_string();
    let (status, stdout, stderr) = running.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {stderr}");
    let text = String::from_utf8(stdout).expect("UTF-8 output");
    let exec = exec_line(&text, &pid);
    // The premise: the program fills what a line shows, and the arguments go past it.
    assert!(exec.contains(&program), "the program is shown whole");
    assert!(
        exec.ends_with(&program),
        "{}",
        exec.get(exec.len().saturating_sub(60)..).unwrap_or(exec)
    );
}

#[test]
fn json_statistics_name_a_process_as_json_events_do() {
    // A JSON consumer matches the `-S` rows with the events' `comm`: the row must hold
    // the name itself, not the text output's escaped form of it.
    let Some(running) = monitor(&["-e", "comm", "-S", "--json"]) else {
        return;
    };
    let mut child = Command::new("sh")
        .args(["-c", "printf 'tw\\nstat' > /proc/self/comm; sleep 0.2"])
        .spawn()
        .expect("spawn sh");
    child.wait().expect("wait sh");
    let (status, stdout, stderr) = running.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {stderr}");
    let lines: Vec<Value> = String::from_utf8(stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let renamed = lines
        .iter()
        .any(|l| l["type"] == "event" && l["comm"]["new"] == "tw\nstat");
    assert!(renamed, "no comm event for the rename");
    let row = lines.iter().find(|l| {
        l["scope"] == "process"
            && l["comm"] == 1
            && l["process"].as_str().is_some_and(|p| p.starts_with("tw"))
    });
    assert_eq!(
        row.map(|r| &r["process"]),
        Some(&Value::from("tw\nstat")),
        "{lines:?}"
    );
}

/// Checks one JSON line against the schema the README documents; panics with the line.
fn bad(line: &Value, why: &str) -> ! {
    panic!("{why}: {line}")
}

fn validate(line: &Value) {
    let object = line
        .as_object()
        .unwrap_or_else(|| bad(line, "not an object"));
    let uint = |key: &str| {
        if !object.get(key).is_some_and(Value::is_u64) {
            bad(line, &format!("`{key}` is not an unsigned integer"));
        }
    };
    let uint_or_null = |key: &str| {
        if !object.get(key).is_some_and(|v| v.is_u64() || v.is_null()) {
            bad(line, &format!("`{key}` is not an unsigned integer or null"));
        }
    };
    let string = |key: &str| {
        if !object.get(key).is_some_and(Value::is_string) {
            bad(line, &format!("`{key}` is not a string"));
        }
    };
    let ids = |v: &Value| {
        ["real", "effective", "saved", "fs"]
            .iter()
            .all(|k| v.get(k).is_some_and(Value::is_u64))
    };
    let arg = |v: &Value| {
        v.is_string()
            || v.get("hex")
                .and_then(Value::as_str)
                .is_some_and(|h| h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    match object.get("type").and_then(Value::as_str) {
        Some("start") => {
            uint("schema");
            string("subscription");
            uint("tasks");
            uint("receive_buffer");
            assert!(
                object["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().all(Value::is_string))
            );
            assert!(object["kernel_filtered"].is_boolean());
        }
        Some("event") => {
            let event = object
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or_else(|| bad(line, "no event"));
            let known = [
                "fork", "clone", "exec", "exit", "core", "comm", "ptrace", "uid", "gid", "sid",
            ];
            if !known.contains(&event) {
                bad(line, "unknown event");
            }
            string("time");
            for key in ["timestamp_ns", "cpu", "seq", "pid", "tgid"] {
                uint(key);
            }
            uint_or_null("ppid");
            let process = object
                .get("process")
                .unwrap_or_else(|| bad(line, "no process"));
            if !process
                .get("comm")
                .is_some_and(|c| c.is_string() || c.is_null())
            {
                bad(line, "process.comm");
            }
            match process.get("cmdline") {
                Some(Value::Null) => {}
                Some(Value::Array(args)) if args.iter().all(arg) => {}
                _ => bad(line, "process.cmdline"),
            }
            match event {
                "fork" | "clone" => {
                    let parent = &object["parent"];
                    if !(parent["pid"].is_i64() && parent["tgid"].is_i64()) {
                        bad(line, "parent");
                    }
                }
                "exit" => {
                    let exit = &object["exit"];
                    let ok = exit["status"].is_i64()
                        && (exit["code"].is_i64() || exit["code"].is_null())
                        && (exit["signal"].is_i64() || exit["signal"].is_null())
                        && exit["core_dumped"].is_boolean()
                        && (object["duration_s"].is_f64() || object["duration_s"].is_null());
                    if !ok {
                        bad(line, "exit");
                    }
                }
                "uid" | "gid" if !(ids(&object["ids"]["old"]) && ids(&object["ids"]["new"])) => {
                    bad(line, "ids")
                }
                "comm"
                    if !(object["comm"]["old"].is_string()
                        && object["comm"]["new"].is_string()) =>
                {
                    bad(line, "comm")
                }
                "ptrace" => {
                    let tracer = &object["tracer"];
                    if !(tracer.is_null() || tracer["pid"].is_i64()) {
                        bad(line, "tracer");
                    }
                }
                "sid" => uint("sid"),
                _ => {}
            }
        }
        Some("notice") => {
            string("code");
            string("message");
            let codes = [
                "lost",
                "overrun",
                "resynced",
                "watcher_failed",
                "watcher_panicked",
                "rejected",
                "decode_error",
                "subscription_changed",
            ];
            if !codes.contains(&object["code"].as_str().unwrap_or("")) {
                bad(line, "unknown notice code");
            }
        }
        Some("stats") => match object.get("scope").and_then(Value::as_str) {
            Some("process") => {
                string("process");
                for key in ["fork", "clone", "exec", "exit", "core", "comm", "total"] {
                    uint(key);
                }
            }
            Some("run") => {
                uint("shown");
                assert!(object["seconds"].is_f64(), "{line}");
                let counters = &object["counters"];
                for key in [
                    "received",
                    "dispatched",
                    "lost",
                    "overruns",
                    "rejected",
                    "unknown",
                ] {
                    assert!(counters[key].is_u64(), "counters.{key}: {line}");
                }
                assert!(object["watchers"].is_array(), "{line}");
            }
            _ => bad(line, "unknown stats scope"),
        },
        _ => bad(line, "no known `type`"),
    }
}

#[test]
fn every_json_line_follows_the_schema_and_keeps_every_byte() {
    let Some(running) = monitor(&["--json", "-E", "-S", "-x"]) else {
        return;
    };
    let child = hostile_child();
    let mut ruid = child_in_role("set-ruid");
    ruid.wait().expect("wait");
    let (status, stdout, stderr) = running.stop(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    let text = String::from_utf8(stdout).expect("UTF-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 3, "{text}");
    lines.iter().for_each(validate);
    assert_eq!(lines[0]["type"], "start");
    assert_eq!(
        lines.last().unwrap()["scope"],
        "run",
        "the summary comes last"
    );
    let pid = u64::from(child);
    let exec = lines
        .iter()
        .find(|l| l["event"] == "exec" && l["pid"] == pid)
        .unwrap_or_else(|| panic!("no exec of {pid}:\n{text}"));
    assert_eq!(
        exec["process"]["cmdline"],
        serde_json::json!(["sh", "-c", "sleep 1; true", FORGED_LINE, RED, {"hex": "ff626164"}])
    );
    let uid = lines
        .iter()
        .find(|l| l["event"] == "uid" && l["pid"] == u64::from(ruid.id()))
        .unwrap_or_else(|| panic!("no uid event of {}:\n{text}", ruid.id()));
    assert_eq!(uid["ids"]["new"]["real"], 4242);
    assert_eq!(
        uid["ids"]["new"]["effective"],
        uid["ids"]["old"]["effective"]
    );
}

fn lines_of(text: &str, pid: u32) -> Vec<&str> {
    let pid = pid.to_string();
    text.lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(pid.as_str()))
        .collect()
}

#[test]
fn events_are_shown_as_they_happened() {
    // A process that was there before the monitor: its exit still has a lifetime and
    // a command line (from /proc at the seed).
    let mut older = Command::new("sleep").arg("29.5").spawn().expect("sleep");
    thread::sleep(Duration::from_millis(300));
    let Some(running) = monitor(&["-e", "all"]) else {
        let _ = older.kill();
        let _ = older.wait();
        return;
    };
    older.kill().expect("kill");
    older.wait().expect("wait");
    let me = std::process::id().to_string();
    // A fork, an exec of a new program, an exit with its lifetime. The command line is
    // read from /proc when the monitor handles the exec, so the program lives long enough
    // for a monitor that lags behind on a loaded machine to find it.
    let mut sleeper = Command::new("sh")
        .args(["-c", "exec sleep 1.5"])
        .spawn()
        .expect("sh");
    sleeper.wait().expect("wait");
    // A ruid-only change.
    let mut ruid = child_in_role("set-ruid");
    ruid.wait().expect("wait");
    // An exec from a thread that is not the group leader.
    let mut de_thread = child_in_role("exec-from-thread");
    de_thread.wait().expect("wait");
    // A thread, created and ended.
    let mut threads = child_in_role("thread");
    threads.wait().expect("wait");
    // A core dump, in a scratch directory (the core file lands there).
    let scratch = std::env::temp_dir().join(format!("taskwatch-core-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let mut core = Command::new("sh")
        .args(["-c", "ulimit -c unlimited; kill -SEGV $$"])
        .current_dir(&scratch)
        .spawn()
        .expect("sh");
    let core_status = core.wait().expect("wait");
    let _ = std::fs::remove_dir_all(&scratch);
    let (status, stdout, stderr) = running.stop(libc::SIGHUP);
    assert!(
        status.success(),
        "SIGHUP ends it like SIGINT: {status}: {stderr}"
    );
    assert!(
        stderr.contains("events shown"),
        "the summary after SIGHUP: {stderr}"
    );
    let text = String::from_utf8(stdout).expect("UTF-8");

    let older = lines_of(&text, older.id());
    let exit = older
        .iter()
        .find(|l| l.contains(" exit "))
        .expect("the older one's exit");
    assert!(exit.ends_with(" sleep 29.5"), "its command line: {exit}");
    let fields: Vec<&str> = exit.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["sig", "9"], "{exit}");
    assert!(
        fields[6].parse::<f64>().is_ok_and(|d| d >= 0.3),
        "its lifetime: {exit}"
    );

    let sleeper_lines = lines_of(&text, sleeper.id());
    let fork = sleeper_lines
        .iter()
        .find(|l| l.contains(" fork "))
        .expect("fork");
    assert_eq!(fork.split_whitespace().nth(3), Some(me.as_str()), "{fork}");
    assert!(
        fork.contains(" child "),
        "a fork line describes the child: {fork}"
    );
    // The last exec is sh's of sleep.
    let exec = sleeper_lines
        .iter()
        .rfind(|l| l.contains(" exec "))
        .expect("exec");
    assert!(exec.ends_with("sleep 1.5"), "the new program: {exec}");
    let exit = sleeper_lines
        .iter()
        .find(|l| l.contains(" exit "))
        .expect("exit");
    let fields: Vec<&str> = exit.split_whitespace().collect();
    assert_eq!(fields[4], "0", "{exit}");
    assert!(
        fields[5].parse::<f64>().is_ok_and(|d| d >= 1.4),
        "a lifetime: {exit}"
    );

    let uid = lines_of(&text, ruid.id());
    let uid = uid.iter().find(|l| l.contains(" uid ")).expect("uid line");
    assert!(uid.contains("r 0→4242"), "the id that changed: {uid}");

    let de = lines_of(&text, de_thread.id());
    // Its first exec is this test binary's; the last is the thread's.
    let exec = de
        .iter()
        .rev()
        .find(|l| l.contains(" exec "))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        exec.split_whitespace().nth(3),
        Some(me.as_str()),
        "the ppid: {exec}"
    );
    assert!(exec.ends_with("sleep 1"), "the new program: {exec}");
    let last_exit = de
        .iter()
        .rev()
        .find(|l| l.contains(" exit "))
        .expect("exit");
    let fields: Vec<&str> = last_exit.split_whitespace().collect();
    assert!(
        fields[5].parse::<f64>().is_ok_and(|d| d >= 0.25),
        "the lifetime counts from the first fork: {last_exit}"
    );

    // The monitor sees every process on the machine, another run of this test's too:
    // its thread role's clone line ends the same, under another parent. (A clone line
    // of ours with a wrong ppid is then not found, which fails too.)
    let clone = text
        .lines()
        .find(|l| {
            l.contains(" clone ")
                && l.ends_with("role-thread")
                && l.split_whitespace().nth(3) == Some(me.as_str())
        })
        .unwrap_or_else(|| panic!("no clone line of {}:\n{text}", threads.id()));
    let thread_id = clone.split_whitespace().nth(2).expect("tid");
    let thread_lines = lines_of(&text, thread_id.parse().expect("tid"));
    let ppids: Vec<&str> = thread_lines
        .iter()
        .map(|l| l.split_whitespace().nth(3).unwrap_or(""))
        .collect();
    assert!(ppids.len() >= 2, "{thread_lines:?}");
    assert!(
        ppids.iter().all(|p| *p == me),
        "a thread's ppid is its process's parent: {thread_lines:?}"
    );

    use std::os::unix::process::ExitStatusExt;
    if core_status.core_dumped() {
        let line = lines_of(&text, core.id())
            .into_iter()
            .find(|l| l.contains(" exit "))
            .expect("exit line");
        assert!(line.contains("sig 11 core"), "{line}");
    } else {
        println!("no core dump here (core_pattern); the core flag is not checked");
    }
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_full_one_fails() {
    // Closed: the first write after the reader left ends the run, successfully.
    let Some(mut running) = monitor(&["-e", "all"]) else {
        return;
    };
    drop(running.child.stdout.take());
    // The reader thread holds the pipe: end it by dropping what it reads into.
    let pid = running.child.id();
    let mut children: Vec<Child> = (0..3)
        .map(|_| Command::new("true").spawn().expect("true"))
        .collect();
    children.iter_mut().for_each(|c| drop(c.wait()));
    let (status, _, stderr) = running.stop(libc::SIGINT);
    assert!(status.success(), "{pid}: {status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Full: a message and a failure.
    let child = Command::new(env!("CARGO_BIN_EXE_taskwatch"))
        .args(["monitor", "-e", "all", "-D", "2"])
        .stdout(dev_full())
        .stderr(Stdio::piped())
        .spawn()
        .expect("taskwatch");
    thread::sleep(Duration::from_millis(800));
    let mut children: Vec<Child> = (0..3)
        .map(|_| Command::new("true").spawn().expect("true"))
        .collect();
    children.iter_mut().for_each(|c| drop(c.wait()));
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("cannot monitor processes") {
        return;
    }
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write the output: No space left on device"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_full_or_closed_stderr_does_not_crash_the_monitor() {
    for stderr in ["full", "closed"] {
        let err = if stderr == "full" {
            dev_full()
        } else {
            closed_pipe()
        };
        let output = Command::new(env!("CARGO_BIN_EXE_taskwatch"))
            .args(["monitor", "-e", "exit", "-D", "0.5"])
            .stdout(Stdio::null())
            .stderr(err)
            .output()
            .expect("taskwatch");
        // 0 after a run, 1 where the connector is unavailable; never 101 (a panic).
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "{stderr}: {}",
            output.status
        );
    }
}

/// Runs a monitor with `args`, then `/bin/sleep 1 NAME` in its own process group;
/// returns the lines about that sleep and the whole output.
fn sleep_under(args: &[&str], name: &str) -> Option<(Vec<String>, String)> {
    let running = monitor(args)?;
    let mut child = Command::new("/bin/sleep")
        .args(["1", name])
        .process_group(0)
        .spawn()
        .expect("sleep");
    // `sleep 1 NAME` fails on NAME after sleeping; its lines are what matter.
    let _ = child.wait();
    let (status, stdout, stderr) = running.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {stderr}");
    let text = String::from_utf8(stdout).expect("UTF-8");
    let pid = child.id().to_string();
    let lines = text
        .lines()
        .filter(|l| l.split_whitespace().take(4).any(|f| f == pid))
        .map(str::to_owned)
        .collect();
    Some((lines, text))
}

#[test]
fn forkstat_options_change_the_lines_as_in_forkstat() {
    // -d -s: the program's name only; -x: uid and tty columns; -g: a glyph.
    let Some((lines, text)) = sleep_under(&["-e", "exec", "-d", "-s", "-x", "-g"], "0.01") else {
        return;
    };
    let exec = lines
        .first()
        .unwrap_or_else(|| panic!("no exec line:\n{text}"));
    let fields: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(fields[1], ">", "the exec glyph: {exec}");
    assert_eq!(fields[2], "exec", "{exec}");
    assert_eq!(
        &fields[fields.len() - 3..],
        ["0", "?", "sleep"],
        "uid, tty, short name: {exec}"
    );

    // -c: the comm instead of the command line.
    let Some((lines, text)) = sleep_under(&["-e", "exec", "-c"], "0.02") else {
        return;
    };
    let exec = lines
        .first()
        .unwrap_or_else(|| panic!("no exec line:\n{text}"));
    assert!(exec.ends_with(" sleep"), "{exec}");

    // -p: only the given process group (here, one no process has: nothing shows).
    let Some((lines, text)) = sleep_under(&["-e", "all", "-p", "4194304"], "0.03") else {
        return;
    };
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(text.lines().count(), 0, "no line at all:\n{text}");
}

#[test]
fn a_process_group_filter_shows_that_group() {
    // SAFETY: getpgrp cannot fail.
    let pgrp = unsafe { libc::getpgrp() };
    // (exec and exit: at a fork the child has not left its parent's group yet.)
    let Some(running) = monitor(&["-e", "exec,exit", "-p", &pgrp.to_string()]) else {
        return;
    };
    // `ours` stays in this process group; `own` gets a group of its own.
    let mut own = Command::new("/bin/sleep")
        .arg("0.1")
        .process_group(0)
        .spawn()
        .expect("sleep");
    let mut ours = Command::new("/bin/sleep")
        .arg("0.1")
        .spawn()
        .expect("sleep");
    let _ = (own.wait(), ours.wait());
    let (status, stdout, _) = running.stop(libc::SIGINT);
    assert!(status.success());
    let text = String::from_utf8(stdout).expect("UTF-8");
    let ours = lines_of(&text, ours.id());
    assert_eq!(
        ours.len(),
        2,
        "exec and exit of the child in the group:\n{text}"
    );
    assert!(lines_of(&text, own.id()).is_empty(), "{text}");
}

/// `-r` without the right to real-time scheduling ends in a message that names what is
/// needed and exit status 1, before the connector is opened, so this needs no root: as
/// root, the monitor runs without `CAP_SYS_NICE` (util-linux's `setpriv`).
#[test]
fn realtime_without_the_privilege_is_a_clear_error() {
    let taskwatch = env!("CARGO_BIN_EXE_taskwatch");
    // SAFETY: `geteuid` has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut command = if root {
        let mut setpriv = Command::new("setpriv");
        setpriv
            .args(["--inh-caps=-sys_nice", "--bounding-set=-sys_nice", "--"])
            .arg(taskwatch);
        setpriv
    } else {
        Command::new(taskwatch)
    };
    command.args(["monitor", "-r", "-D", "0.1"]);
    // Without the capability the kernel still grants priorities up to RLIMIT_RTPRIO: the
    // child's soft limit is made 0 so that the maximum priority is refused.
    // SAFETY: `getrlimit` and `setrlimit` are async-signal-safe and touch only the
    // child, between its fork and its exec.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_RTPRIO, &raw mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = 0;
            if libc::setrlimit(libc::RLIMIT_RTPRIO, &raw const limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command
        .output()
        .expect("taskwatch (and, as root, setpriv) can be started");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("taskwatch: cannot run with real-time FIFO scheduling (-r): ")
            && stderr.contains("os error 1")
            && stderr.contains("it needs root or CAP_SYS_NICE"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing was monitored");
}

#[test]
fn a_reader_that_goes_away_ends_the_monitor_by_itself_with_0() {
    // `taskwatch monitor | head -1`: once the reader has gone, the next write fails
    // with EPIPE and the monitor ends on its own, successfully, without a panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskwatch"))
        .args(["monitor", "--json", "-e", "all", "-D", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("taskwatch runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let (stderr, reader) = collect(child.stderr.take().expect("stderr"));
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while first.last() != Some(&b'\n') && stdout.read(&mut byte).unwrap_or(0) == 1 {
        first.push(byte[0]);
    }
    if !String::from_utf8_lossy(&first).contains(r#""type":"start""#) {
        let _ = child.wait();
        let _ = reader.join();
        let text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
        skip_without_connector(&text);
        return;
    }
    // The reader goes away, as `head -1` does after its line.
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let mut spawned = Command::new("true").spawn().expect("true");
        let _ = spawned.wait();
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after its reader left"
        );
        thread::sleep(Duration::from_millis(50));
    };
    reader.join().expect("reader");
    let text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(!text.contains("cannot write"), "{text}");
}

#[test]
fn a_line_reaches_a_pipe_while_the_monitor_runs() {
    // Output to a pipe is buffered across events, but not until the buffer fills: a
    // lone line is flushed once the kernel pauses. Only a group of its own is shown
    // (`-p`), so other processes' lines cannot fill the buffer and flush it instead.
    // The first program lives a while: the monitor reads its command line from /proc
    // when it handles the exec, and a program gone by then (`sleep 0` on a loaded
    // machine) is shown as `[sh]`, which the wait below would not recognise.
    let mut group = Command::new("sh")
        .args(["-c", "read go; /bin/sleep 2; /bin/sleep 5"])
        .stdin(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("sh");
    let pgrp = group.id().to_string();
    let Some(mut running) = monitor(&["-e", "exec", "-p", &pgrp]) else {
        let _ = group.kill();
        let _ = group.wait();
        return;
    };
    drop(group.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let text = String::from_utf8_lossy(&running.stdout.lock().unwrap()).into_owned();
        if text.contains("/bin/sleep 2") {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let still_running = running.child.try_wait().expect("try_wait").is_none();
    let _ = group.kill();
    let _ = group.wait();
    let (status, stdout, stderr) = running.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        shown && still_running,
        "the exec line came only at the end:\n{}",
        String::from_utf8_lossy(&stdout)
    );
}

/// Spawns `/bin/true` until `running` ends by itself; returns what [`Running::stop`] does.
fn run_until_it_ends(mut running: Running) -> (ExitStatus, Vec<u8>, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let _ = Command::new("/bin/true").status();
        if let Some(status) = running.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the monitor did not stop by itself"
        );
        thread::sleep(Duration::from_millis(20));
    };
    running.ended(status)
}

#[test]
fn count_rcvbuf_and_quiet_do_what_their_help_says() {
    // --count N: the run ends by itself after N events shown, with 0 and the summary.
    let Some(running) = monitor(&["--json", "-e", "exec", "--count", "2"]) else {
        return;
    };
    let (status, stdout, stderr) = run_until_it_ends(running);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let text = String::from_utf8(stdout).expect("UTF-8");
    let events = text
        .lines()
        .filter(|l| l.contains(r#""type":"event""#))
        .count();
    assert_eq!(events, 2, "{text}");
    let run: Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(run["scope"], "run", "the run's statistics close it: {text}");
    // The linked watchers ran on the real events, the subsystems' included (the list
    // holds the watchers that were called).
    let watchers = run["watchers"].as_array().expect("watchers");
    let subsystem_calls: u64 = watchers
        .iter()
        .filter(|w| {
            w["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("watchers_subsystems::"))
        })
        .filter_map(|w| w["calls"].as_u64())
        .sum();
    assert!(subsystem_calls > 0, "{watchers:?}");

    // --rcvbuf: the socket gets the size asked for (the kernel doubles what it is given
    // for its bookkeeping); the default is 8 MiB.
    for asked in [65_536_u64, 4_194_304] {
        let Some(running) = monitor(&["--json", "-e", "exit", "--rcvbuf", &asked.to_string()])
        else {
            return;
        };
        let (status, stdout, stderr) = running.stop(libc::SIGINT);
        assert!(status.success(), "{stderr}");
        let text = String::from_utf8(stdout).expect("UTF-8");
        let start: Value =
            serde_json::from_str(text.lines().next().expect("a start line")).expect("JSON");
        let granted = start["receive_buffer"].as_u64().expect("receive_buffer");
        assert!(
            (asked..=2 * asked).contains(&granted),
            "asked {asked}, got {granted}: {text}"
        );
    }

    // -q: no event lines, the per-process table at the end (-S).
    let Some(running) = monitor(&["-q", "-e", "exec,exit"]) else {
        return;
    };
    let mut child = Command::new("/bin/true").spawn().expect("true");
    let _ = child.wait();
    let (status, stdout, stderr) = running.stop(libc::SIGINT);
    assert!(status.success(), "{stderr}");
    let text = String::from_utf8(stdout).expect("UTF-8");
    let header = text.lines().next().unwrap_or_default();
    for column in [
        "Fork", "Clone", "Exec", "Exit", "Core", "Comm", "Total", "Process",
    ] {
        assert!(header.contains(column), "{column}: {text}");
    }
    assert!(
        lines_of(&text, child.id()).is_empty(),
        "no event line about the child: {text}"
    );
    assert!(
        text.lines().skip(1).all(|l| l
            .split_whitespace()
            .take(6)
            .all(|n| n.parse::<u64>().is_ok())),
        "only the table's rows: {text}"
    );
}

/// With stdout and stderr on one pipe (`2>&1 | less`, `&> log`), the run's summary on
/// stderr comes after every event line, as when each batch was flushed: the lines a
/// file or pipe holds back for up to 50 ms are written before anything goes to stderr.
#[test]
fn the_summary_follows_the_events_on_a_shared_output() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskwatch"))
        .args(["monitor", "-e", "all", "--count", "40", "-D", "30"])
        .stdout(writer.try_clone().expect("a second end"))
        .stderr(writer)
        .spawn()
        .expect("taskwatch runs");
    let (output, collector) = collect(reader);
    let text = || String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text().contains("watching") {
        if child.try_wait().expect("try_wait").is_some() {
            collector.join().expect("reader");
            skip_without_connector(&text());
            return;
        }
        assert!(Instant::now() < deadline, "the monitor did not start");
        thread::sleep(Duration::from_millis(20));
    }
    // A burst of events, well over the count, faster than the 50 ms flush interval.
    let mut children: Vec<Child> = (0..30)
        .map(|_| Command::new("true").spawn().expect("true"))
        .collect();
    children.iter_mut().for_each(|c| drop(c.wait()));
    let status = child.wait().expect("wait");
    collector.join().expect("reader");
    let text = text();
    assert!(status.success(), "{status}: {text}");
    let lines: Vec<&str> = text.lines().collect();
    let summary = lines
        .iter()
        .position(|line| line.contains("events shown"))
        .unwrap_or_else(|| panic!("no summary: {text}"));
    let header = lines
        .iter()
        .position(|line| line.starts_with("Time "))
        .unwrap_or_else(|| panic!("no header: {text}"));
    let events = lines[header + 1..]
        .iter()
        .filter(|line| !line.starts_with("taskwatch:"))
        .count();
    assert_eq!(events, 40, "--count 40: {text}");
    assert!(
        lines[summary..]
            .iter()
            .all(|line| line.starts_with("taskwatch:")),
        "an event line after the summary: {text}"
    );
}
