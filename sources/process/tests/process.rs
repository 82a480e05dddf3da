//! Single children through the source: event order, names, kills, polling, and a child
//! dropped while it runs.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use watchers_core::{Event, EventData, EventSet, ExitStatus, Pid, TaskState, WatcherTable};
use watchers_process::{CommandExt, Processes};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Fork(Pid),
    Exec(Pid, String, Option<u32>),
    Exit(Pid, ExitStatus),
    Free(Pid),
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn source() -> (&'static Processes, Log) {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log = Log::default();
    let seen = log.clone();
    table
        .watcher("test::log", EventSet::ALL)
        .register(move |event: &Event<'_>| {
            let task = event.task();
            let pid = task.pid();
            let entry = match event.data() {
                EventData::Fork { .. } => Seen::Fork(pid),
                EventData::Exec { .. } => {
                    Seen::Exec(pid, task.comm(), watchers_process::os_pid(task))
                }
                EventData::Exit { status } => Seen::Exit(pid, *status),
                EventData::Free => Seen::Free(pid),
                _ => return Ok(()),
            };
            seen.lock().unwrap().push(entry);
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap()
        .keep();
    let processes = common::leaked_source(table, &log);
    (processes, log)
}

/// The status of the `exit` event the source sent for `pid`.
fn exit_of(log: &Log, pid: Pid) -> ExitStatus {
    log.lock()
        .unwrap()
        .iter()
        .find_map(|seen| match seen {
            Seen::Exit(p, status) if *p == pid => Some(*status),
            _ => None,
        })
        .expect("an exit event")
}

#[test]
fn a_child_gets_fork_exec_exit_free_in_order() {
    let (processes, log) = source();
    let mut child = Command::new("sh")
        .args(["-c", "exit 3"])
        .spawn_watched_in(processes)
        .unwrap();
    let pid = child.task().pid();
    assert_eq!(child.task().parent(), processes.process().pid());
    assert_eq!(child.wait().unwrap().code(), Some(3));
    // A second wait reports nothing new.
    assert_eq!(child.wait().unwrap().code(), Some(3));
    assert_eq!(child.try_wait().unwrap().map(|s| s.code()), Some(Some(3)));
    assert_eq!(
        *log.lock().unwrap(),
        [
            Seen::Fork(pid),
            Seen::Exec(pid, "sh".into(), Some(child.id())),
            Seen::Exit(pid, ExitStatus::exited(3)),
            Seen::Free(pid),
        ]
    );
    assert_eq!(child.task().state(), TaskState::Dead);
}

#[test]
fn a_child_that_dumps_core_exits_with_the_signal_and_the_core_flag() {
    use std::os::unix::process::ExitStatusExt;
    let (processes, log) = source();
    // In a scratch directory: with a plain `core_pattern` the core file lands there.
    let scratch =
        std::env::temp_dir().join(format!("watchers-process-core-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -c unlimited; kill -SEGV $$"])
        .current_dir(&scratch)
        .spawn_watched_in(processes)
        .unwrap();
    let status = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    let pid = child.task().pid();
    let exit = exit_of(&log, pid);
    assert_eq!(exit.signal(), Some(libc::SIGSEGV));
    assert_eq!(exit.code(), None);
    // Whether the kernel dumped core depends on the host (`core_pattern`, limits); the
    // event says what the wait status says, either way.
    assert_eq!(exit.core_dumped(), status.core_dumped(), "{status:?}");
    if !status.core_dumped() {
        println!("no core dump on this host: only the agreement was checked");
    }
}

#[test]
fn a_killed_child_exits_with_the_signal() {
    let (processes, log) = source();
    let mut child = Command::new("sleep")
        .arg("30")
        .spawn_watched_in(processes)
        .unwrap();
    assert_eq!(child.try_wait().unwrap(), None);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let pid = child.task().pid();
    let exit = exit_of(&log, pid);
    assert_eq!(exit.signal(), Some(9));
    assert!(!exit.core_dumped());
    assert_eq!(watchers_process::to_task_status(status), exit);
}

#[test]
fn a_child_dropped_while_running_is_reaped_in_the_background() {
    let (processes, log) = source();
    let child = Command::new("sleep")
        .arg("0.2")
        .spawn_watched_in(processes)
        .unwrap();
    let (pid, os_pid, task) = (child.task().pid(), child.id(), child.task().clone());
    drop(child);
    // It was still running when dropped, so the reaper took it.
    assert_eq!(task.state(), TaskState::Running);
    let deadline = Instant::now() + Duration::from_secs(60);
    while task.state() != TaskState::Dead {
        assert!(
            Instant::now() < deadline,
            "the dropped child was never reaped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(processes.reaping(), 0);
    // Reaped, not a zombie: the OS pid is gone (or, rarely, reused by a live process).
    let stat = std::fs::read_to_string(format!("/proc/{os_pid}/stat")).unwrap_or_default();
    assert!(!stat.contains(") Z "), "{stat}");
    let log = log.lock().unwrap();
    assert_eq!(
        log[log.len() - 2..],
        [Seen::Exit(pid, ExitStatus::exited(0)), Seen::Free(pid)]
    );
}

#[test]
fn output_is_collected_and_reported() {
    let (processes, log) = source();
    let output = Command::new("echo")
        .arg("hello")
        .stdout(Stdio::piped())
        .spawn_watched_in(processes)
        .unwrap()
        .wait_with_output()
        .unwrap();
    assert_eq!(output.stdout, b"hello\n");
    let frees = log
        .lock()
        .unwrap()
        .iter()
        .filter(|seen| matches!(seen, Seen::Free(_)))
        .count();
    assert_eq!(frees, 1);
}

#[test]
fn take_stdout_and_take_stderr_hand_over_each_pipe_once() {
    let (processes, log) = source();
    let mut child = Command::new("sh")
        .args(["-c", "echo out; echo err >&2; exit 4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_watched_in(processes)
        .unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    child
        .take_stdout()
        .expect("piped stdout")
        .read_to_string(&mut out)
        .unwrap();
    child
        .take_stderr()
        .expect("piped stderr")
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert!(child.take_stdout().is_none(), "stdout taken twice");
    assert!(child.take_stderr().is_none(), "stderr taken twice");
    assert!(child.take_stdin().is_none(), "stdin was not piped");
    assert_eq!(child.wait().unwrap().code(), Some(4));
    assert_eq!(exit_of(&log, child.task().pid()), ExitStatus::exited(4));
}
