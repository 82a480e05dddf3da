//! 2,000 real child processes with exit codes and signals, waited for, polled, killed
//! and dropped: every task gets `fork`, `exec`, `exit` (with the real status) and
//! `free` exactly once, and its slot value is dropped exactly once.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use watchers_core::{
    Event, EventData, EventKind, EventSet, ExitStatus, TaskSlot, TaskState, Watcher, WatcherResult,
    WatcherTable,
};
use watchers_process::{CommandExt, Processes, to_task_status};

const CHILDREN: usize = 2_000;
const BATCH: usize = 16;

struct Tracked(u64);

impl Drop for Tracked {
    fn drop(&mut self) {
        *lock(&DROPS).entry(self.0).or_default() += 1;
    }
}

#[derive(Default, Debug, Clone, Copy, PartialEq)]
struct Counts {
    forks: u32,
    execs: u32,
    exits: u32,
    frees: u32,
    status: Option<ExitStatus>,
}

static TRACKED: TaskSlot<Tracked> = TaskSlot::new();
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0);
static SEEN: LazyLock<Mutex<HashMap<u64, Counts>>> = LazyLock::new(Default::default);
static DROPS: LazyLock<Mutex<HashMap<u64, u32>>> = LazyLock::new(Default::default);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn track(event: &Event<'_>) -> WatcherResult {
    let task = event.task();
    let serial = if event.kind() == EventKind::Fork {
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        TRACKED.set(task, Tracked(serial));
        serial
    } else {
        TRACKED
            .with(task, |tracked| tracked.0)
            .ok_or("a task without a serial")?
    };
    let mut seen = lock(&SEEN);
    let counts = seen.entry(serial).or_default();
    match event.data() {
        EventData::Fork { .. } => counts.forks += 1,
        EventData::Exec { .. } => counts.execs += 1,
        EventData::Exit { status } => {
            counts.exits += 1;
            counts.status = Some(*status);
        }
        EventData::Free => counts.frees += 1,
        _ => {}
    }
    Ok(())
}

/// What child `i` runs and how it is collected.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Code(i32),
    Terminated,
    Killed,
    Polled,
    Dropped,
}

fn kind(i: usize) -> Kind {
    match i % 5 {
        0 => Kind::Code((i % 256) as i32),
        1 => Kind::Terminated,
        2 => Kind::Killed,
        3 => Kind::Polled,
        _ => Kind::Dropped,
    }
}

fn command(kind: Kind) -> Command {
    let mut command = Command::new("sh");
    match kind {
        Kind::Code(code) => command.args(["-c", &format!("exit {code}")]),
        Kind::Terminated => command.args(["-c", "kill -TERM $$"]),
        Kind::Killed => command.args(["-c", "sleep 30"]),
        Kind::Polled | Kind::Dropped => command.args(["-c", ":"]),
    };
    command
}

#[test]
fn two_thousand_children_get_every_event_exactly_once() {
    let events = EventSet::FORK | EventSet::EXEC | EventSet::EXIT | EventSet::FREE;
    let table = WatcherTable::from_watchers([Watcher::new("children::track", events, track)])
        .unwrap()
        .leak();
    let processes: &'static Processes = Box::leak(Box::new(Processes::new(table)));
    let own = TRACKED.with(processes.process(), |t| t.0).unwrap();

    // Per serial, the status std reported (None for dropped children: exit code 0).
    let mut expected: HashMap<u64, Option<ExitStatus>> = HashMap::new();
    let mut max_alive = 0;
    for start in (0..CHILDREN).step_by(BATCH) {
        let mut batch: Vec<_> = (start..(start + BATCH).min(CHILDREN))
            .map(|i| {
                let child = command(kind(i)).spawn_watched_in(processes).unwrap();
                let serial = TRACKED.with(child.task(), |t| t.0).unwrap();
                assert_eq!(watchers_process::os_pid(child.task()), Some(child.id()));
                (kind(i), serial, child)
            })
            .collect();
        max_alive = max_alive.max(processes.tasks().stats().tasks);
        for (kind, serial, mut child) in batch.drain(..) {
            let task = child.task().clone();
            let status = match kind {
                Kind::Code(_) | Kind::Terminated => Some(child.wait().unwrap()),
                Kind::Killed => {
                    child.kill().unwrap();
                    Some(child.wait().unwrap())
                }
                Kind::Polled => loop {
                    if let Some(status) = child.try_wait().unwrap() {
                        break Some(status);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                },
                Kind::Dropped => {
                    drop(child);
                    None
                }
            };
            if let Some(status) = status {
                match kind {
                    Kind::Code(code) => assert_eq!(status.code(), Some(code)),
                    Kind::Terminated => assert_eq!(signal(status), Some(15)),
                    Kind::Killed => assert_eq!(signal(status), Some(9)),
                    _ => assert_eq!(status.code(), Some(0)),
                }
                // Once waited for, the task is freed, and its OS pid (free to be reused)
                // is forgotten.
                assert_eq!(lock(&SEEN)[&serial].frees, 1);
                assert_eq!(watchers_process::os_pid(&task), None);
                expected.insert(serial, Some(to_task_status(status)));
            } else {
                expected.insert(serial, None);
            }
        }
    }
    // The batches really ran side by side: init, this program, and a batch of children
    // (plus, under load, a dropped child of the batch before that the reaper has not yet
    // reaped).
    assert!(
        max_alive >= 2 + BATCH,
        "at most {max_alive} tasks at once: the batch did not run side by side"
    );

    // Dropped children are reaped in the background.
    let deadline = Instant::now() + Duration::from_secs(120);
    while processes.tasks().stats().frees < CHILDREN as u64 {
        assert!(
            Instant::now() < deadline,
            "dropped children were never reaped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let seen = lock(&SEEN);
    assert_eq!(seen.len(), CHILDREN + 1);
    for (serial, status) in &expected {
        let counts = seen[serial];
        assert_eq!(
            (counts.forks, counts.execs, counts.exits, counts.frees),
            (1, 1, 1, 1),
            "child {serial}"
        );
        assert_eq!(counts.status, Some(status.unwrap_or(ExitStatus::exited(0))));
    }
    assert_eq!(seen[&own].frees, 0);
    let drops = lock(&DROPS);
    assert_eq!(drops.len(), CHILDREN);
    assert!(drops.values().all(|&drops| drops == 1));
    assert!(!drops.contains_key(&own));
    assert_eq!(processes.process().state(), TaskState::Running);
    assert_eq!(processes.reaping(), 0);
}

fn signal(status: std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}
