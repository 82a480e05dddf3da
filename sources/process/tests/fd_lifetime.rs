//! Each child's pidfd is held exactly while its status is not collected: one descriptor
//! per child not yet waited for, none once any ending path has run, whether or not the
//! `Child` is still alive. This file holds one test: it counts the process's open
//! descriptors, which another test running at the same time would change.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use watchers_core::WatcherTable;
use watchers_process::{Child, CommandExt, Processes, SpawnError};

/// Spawns per ending path.
const N: usize = 500;

/// How many descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn spawn(processes: &'static Processes, program: &str, args: &[&str]) -> Child {
    Command::new(program)
        .args(args)
        .spawn_watched_in(processes)
        .unwrap()
}

/// Spawns `N` children of `program`, checking that each holds exactly one descriptor.
fn spawn_many(processes: &'static Processes, base: usize, program: &[&str]) -> Vec<Child> {
    let children: Vec<Child> = (0..N)
        .map(|_| spawn(processes, program[0], &program[1..]))
        .collect();
    // The premise: a pidfd per child was opened, else nothing below could leak.
    assert_eq!(
        open_fds(),
        base + N,
        "one pidfd per child not yet waited for"
    );
    children
}

#[test]
fn every_ending_path_gives_the_pidfd_back() {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let processes = common::leaked_source(table, &Mutex::new(Vec::<()>::new()));
    let base = open_fds();

    // wait, with the `Child`s kept alive.
    let mut children = spawn_many(processes, base, &["true"]);
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(open_fds(), base, "after wait");
    drop(children);

    // try_wait polled until it collects.
    let mut children = spawn_many(processes, base, &["true"]);
    for child in &mut children {
        while child.try_wait().unwrap().is_none() {
            std::thread::yield_now();
        }
    }
    assert_eq!(open_fds(), base, "after try_wait");
    drop(children);

    // kill of a child that has exited, which collects its status.
    let mut children = spawn_many(processes, base, &["true"]);
    for child in &mut children {
        common::await_zombie(child.id());
        child.kill().unwrap();
    }
    assert_eq!(open_fds(), base, "after kill of an exited child");
    drop(children);

    // kill of a running child, then wait.
    let mut children = spawn_many(processes, base, &["sleep", "30"]);
    for child in &mut children {
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success());
    }
    assert_eq!(open_fds(), base, "after kill and wait");
    drop(children);

    // Other code reaps the child: the wait is ECHILD, now and later.
    let mut children = spawn_many(processes, base, &["true"]);
    for child in &mut children {
        common::steal(child.id());
        let error = child.wait().unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ECHILD));
        let again = child.try_wait().unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::ECHILD));
    }
    assert_eq!(open_fds(), base, "after a stolen status");
    drop(children);

    // The std child lent out, then waited for through it.
    let mut children = spawn_many(processes, base, &["true"]);
    for child in &mut children {
        assert!(child.as_std_mut().wait().unwrap().success());
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(open_fds(), base, "after a wait through the lent std child");
    drop(children);

    // Dropped once exited: the drop collects.
    let children = spawn_many(processes, base, &["true"]);
    for child in children {
        common::await_zombie(child.id());
        drop(child);
    }
    assert_eq!(processes.reaping(), 0);
    assert_eq!(open_fds(), base, "after drops of exited children");

    // Dropped while running: the reaper holds the pidfd until it collects.
    let children = spawn_many(processes, base, &["sleep", "30"]);
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    drop(children);
    assert_eq!(
        open_fds(),
        base + N,
        "the reaper holds the dropped children's pidfds"
    );
    for pid in pids {
        // SAFETY: kill sends a signal and touches no memory of ours; the children are
        // not reaped until the reaper's wait, so the pids are still theirs.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes.reaping() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(processes.reaping(), 0, "the reaper did not collect in 30 s");
    assert_eq!(open_fds(), base, "after the reaper collected");

    // Spawns that fail roll back with no descriptor left behind.
    for _ in 0..N {
        let error = Command::new("./no-such-program-here")
            .spawn_watched_in(processes)
            .unwrap_err();
        assert!(matches!(error, SpawnError::Os(_)));
    }
    assert_eq!(open_fds(), base, "after failed spawns");

    // wait_with_output, with every pipe.
    for _ in 0..N {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_watched_in(processes)
            .unwrap();
        child.take_stdin().unwrap().write_all(b"x").unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.stdout, b"x");
    }
    assert_eq!(open_fds(), base, "after wait_with_output");
}
