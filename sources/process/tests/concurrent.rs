//! Several threads spawn, wait for, poll and drop children of one source at once, while
//! the reaper reaps the dropped ones: every task gets `fork`, `exec`, `exit` with its
//! own child's status, and `free` exactly once.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, LazyLock, Mutex};
use std::time::{Duration, Instant};

use watchers_core::{
    Event, EventData, EventKind, EventSet, ExitStatus, TaskSlot, Watcher, WatcherResult,
    WatcherTable,
};
use watchers_process::{CommandExt, Processes};

const THREADS: usize = 4;
const PER_THREAD: usize = 150;

static SERIAL: TaskSlot<u64> = TaskSlot::new();
static NEXT: AtomicU64 = AtomicU64::new(0);
/// Forks, execs, exits, frees, and the exit status of one task.
type Counts = ([u32; 4], Option<ExitStatus>);
/// Per serial.
static SEEN: LazyLock<Mutex<HashMap<u64, Counts>>> = LazyLock::new(Default::default);
/// Threads inside a spawn (between its `fork` and its `exec`) right now, and the most.
static SPAWNING: AtomicUsize = AtomicUsize::new(0);
static MOST_SPAWNING: AtomicUsize = AtomicUsize::new(0);

fn track(event: &Event<'_>) -> WatcherResult {
    let task = event.task();
    let serial = if event.kind() == EventKind::Fork {
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        SERIAL.set(task, serial);
        let now = SPAWNING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST_SPAWNING.fetch_max(now, Ordering::SeqCst);
        // Widens the window in which another thread's spawn overlaps this one.
        std::thread::sleep(Duration::from_micros(200));
        serial
    } else {
        SERIAL.with(task, |s| *s).ok_or("a task without a serial")?
    };
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let entry = seen.entry(serial).or_default();
    match event.data() {
        EventData::Fork { .. } => entry.0[0] += 1,
        EventData::Exec { .. } => {
            SPAWNING.fetch_sub(1, Ordering::SeqCst);
            entry.0[1] += 1;
        }
        EventData::Exit { status } => {
            entry.0[2] += 1;
            entry.1 = Some(*status);
        }
        EventData::Free => entry.0[3] += 1,
        _ => {}
    }
    Ok(())
}

#[test]
fn threads_spawning_waiting_and_dropping_at_once_keep_every_task_apart() {
    let events = EventSet::FORK | EventSet::EXEC | EventSet::EXIT | EventSet::FREE;
    let table = WatcherTable::from_watchers([Watcher::new("concurrent::track", events, track)])
        .unwrap()
        .leak();
    let processes: &'static Processes = Box::leak(Box::new(Processes::new(table)));
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let mut expected = Vec::new();
                for i in 0..PER_THREAD {
                    let code = ((t * PER_THREAD + i) % 200) as i32;
                    let mut child = Command::new("sh")
                        .args(["-c", &format!("exit {code}")])
                        .spawn_watched_in(processes)
                        .unwrap();
                    let serial = SERIAL.with(child.task(), |s| *s).unwrap();
                    match i % 3 {
                        0 => assert_eq!(child.wait().unwrap().code(), Some(code)),
                        1 => loop {
                            if let Some(status) = child.try_wait().unwrap() {
                                assert_eq!(status.code(), Some(code));
                                break;
                            }
                            std::thread::sleep(Duration::from_micros(500));
                        },
                        _ => drop(child),
                    }
                    expected.push((serial, code));
                }
                expected
            })
        })
        .collect();
    let expected: Vec<_> = workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect();
    // The premise: spawns of different threads really overlapped.
    let most = MOST_SPAWNING.load(Ordering::SeqCst);
    assert!(most >= 2, "the spawns never overlapped ({most})");

    let total = (THREADS * PER_THREAD) as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while processes.tasks().stats().frees < total {
        assert!(Instant::now() < deadline, "dropped children never reaped");
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = SEEN.lock().unwrap();
    assert_eq!(expected.len() as u64, total);
    for (serial, code) in expected {
        assert_eq!(
            seen[&serial],
            ([1, 1, 1, 1], Some(ExitStatus::exited(code))),
            "child {serial}"
        );
    }
    assert_eq!(processes.reaping(), 0);
    assert_eq!(processes.tasks().stats().tasks, 2);
}
