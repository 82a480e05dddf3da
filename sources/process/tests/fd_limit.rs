//! Spawns that fail for want of file descriptors roll back exactly and leak nothing.
//! This file holds one test: it lowers the process's descriptor limit, which no other
//! test may see.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use watchers_core::{Event, EventKind, EventSet, WatcherTable};
use watchers_process::{CommandExt, SpawnError};

/// The descriptors this process has open.
fn open_fds() -> Vec<u32> {
    let mut fds: Vec<u32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

fn set_fd_limit(soft: libc::rlim_t, hard: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads `limit`, owned here.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

#[test]
fn spawns_short_of_descriptors_fail_cleanly_and_leak_none() {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log: Arc<Mutex<Vec<EventKind>>> = Arc::default();
    let seen = log.clone();
    table
        .watcher("fd_limit::log", EventSet::ALL)
        .register(move |event: &Event<'_>| {
            seen.lock().unwrap().push(event.kind());
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap()
        .keep();
    let processes = common::leaked_source(table, &log);
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `old`, owned here.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    // Every number below the limit is taken, so that the limit alone decides how many
    // descriptors a spawn may open.
    let highest = open_fds().last().copied().unwrap_or(0);
    let mut fillers = Vec::new();
    while open_fds().len() <= highest as usize {
        fillers.push(std::fs::File::open("/dev/null").unwrap());
    }
    let before = open_fds();
    let first_free = libc::rlim_t::from(before.last().copied().unwrap_or(0) + 1);
    let (mut failed, mut spawned) = (0, 0);
    for spare in 0..8 {
        set_fd_limit(first_free + spare, old.rlim_max);
        // Piped output needs descriptors in the parent (std's spawn needs none else).
        let outcome = Command::new("true")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_watched_in(processes);
        set_fd_limit(old.rlim_cur, old.rlim_max);
        match outcome {
            Ok(mut child) => {
                spawned += 1;
                assert!(child.wait().unwrap().success());
            }
            Err(SpawnError::Os(error)) => {
                failed += 1;
                assert_eq!(error.raw_os_error(), Some(libc::EMFILE), "{error}");
            }
            Err(error) => panic!("{error}"),
        }
    }
    assert!(
        failed > 0 && spawned > 0,
        "premise: {failed} failed, {spawned} spawned"
    );
    assert_eq!(open_fds(), before, "descriptors leaked");
    drop(fillers);
    let log = log.lock().unwrap();
    let count = |kind| log.iter().filter(|k| **k == kind).count();
    assert_eq!(count(EventKind::Fork), failed + spawned, "{log:?}");
    assert_eq!(count(EventKind::Free), failed + spawned, "{log:?}");
    assert_eq!(count(EventKind::Exec), spawned, "{log:?}");
    assert_eq!(count(EventKind::Exit), spawned, "{log:?}");
}
