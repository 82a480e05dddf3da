//! The watchers `taskwatch` registers itself, so that `list` and `simulate` show
//! something on any checkout, and so that `simulate` can check the free-exactly-once
//! rule from inside the table.

use std::sync::atomic::{AtomicU64, Ordering};

use watchers_core::{Event, EventData, EventKind, TaskSlot, task_watcher};

/// The fork that created a task, seen by `lifecycle`; its presence at `free` proves the
/// task's fork reached the watcher, and taking it proves `free` came only once.
struct Born;

static BORN: TaskSlot<Born> = TaskSlot::new();

/// Fork attempts `lifecycle` saw (it runs first, so: every fork attempt).
pub static FORKS_SEEN: AtomicU64 = AtomicU64::new(0);
/// `free` events `lifecycle` saw, from reaping and from rollback.
pub static FREES_SEEN: AtomicU64 = AtomicU64::new(0);
/// `free` events for a task whose fork `lifecycle` never saw, or a second `free`.
pub static UNMATCHED_FREES: AtomicU64 = AtomicU64::new(0);
/// Exits with a non-zero code or by a signal.
pub static FAILED_EXITS: AtomicU64 = AtomicU64::new(0);
/// Execs of a program under `/usr/sbin` or `/sbin`.
pub static ADMIN_EXECS: AtomicU64 = AtomicU64::new(0);

/// Marks every task at fork and checks the mark at `free`. The highest priority runs it
/// first on fork and last on free, so it brackets every other watcher.
#[task_watcher(events = fork | free, priority = 1000)]
fn lifecycle(event: &Event<'_>) {
    match event.kind() {
        EventKind::Fork => {
            FORKS_SEEN.fetch_add(1, Ordering::Relaxed);
            BORN.set(event.task(), Born);
        }
        EventKind::Free => {
            FREES_SEEN.fetch_add(1, Ordering::Relaxed);
            if BORN.take(event.task()).is_none() {
                UNMATCHED_FREES.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => {}
    }
}

/// Counts exits that were not clean.
#[task_watcher(events = exit)]
fn exit_codes(event: &Event<'_>) {
    if let EventData::Exit { status } = event.data()
        && status.code() != Some(0)
    {
        FAILED_EXITS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts programs run from the system administration directories.
#[task_watcher(events = exec, priority = -10, name = "taskwatch::admin-execs")]
fn admin_execs(event: &Event<'_>) {
    if let EventData::Exec { filename } = event.data()
        && (filename.starts_with("/usr/sbin/") || filename.starts_with("/sbin/"))
    {
        ADMIN_EXECS.fetch_add(1, Ordering::Relaxed);
    }
}
