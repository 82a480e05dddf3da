//! Edges of thread groups in the task model found in review: a leader's delayed `free`
//! survives panics in the teardown of the thread that held it back last.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, OnceLock};

use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, Pid, TaskState, TaskTable, Watcher, WatcherResult,
    WatcherTable,
};

/// Every `free` sent, by task serial (never reused, so concurrent tests do not mix).
static FREES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn record_free(event: &Event<'_>) -> WatcherResult {
    if event.kind() == EventKind::Free {
        FREES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.task().serial());
    }
    Ok(())
}

fn frees_of(serial: u64) -> usize {
    let frees = FREES.lock().unwrap_or_else(|e| e.into_inner());
    frees.iter().filter(|&&s| s == serial).count()
}

/// Panics when dropped: held by a per-task watcher's closure.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a per-task watcher's closure panics as it is dropped");
        }
    }
}

/// The table of the next test, for its fork watcher to re-enter.
static REFUSED: OnceLock<TaskTable> = OnceLock::new();

/// For a thread being forked: attaches to it a per-task watcher whose closure panics
/// when dropped, exits its group leader (init's child: reaped at once, its `free` held
/// back by this embryo), then refuses the fork.
fn attach_exit_leader_and_refuse(event: &Event<'_>) -> WatcherResult {
    let task = event.task();
    if event.kind() == EventKind::Fork && task.is_thread() {
        let guard = PanicsOnDrop;
        task.watch(EventSet::FREE, move |_| {
            let _ = &guard;
            Ok::<(), std::convert::Infallible>(())
        })
        .keep();
        let tasks = REFUSED.get().ok_or("no table")?;
        tasks.exit(task.tgid(), 0)?;
        return Err("no thread".into());
    }
    Ok(())
}

/// A refused thread fork that was the last to hold its reaped leader back, and whose
/// per-task watcher's closure panics as the rollback drops it: the panic continues,
/// and the leader is freed all the same (once), its pid released.
#[test]
fn a_panicking_per_task_watcher_of_a_refused_thread_still_frees_its_leader() {
    let table = WatcherTable::from_watchers([
        Watcher::new("frees", EventSet::ALL, record_free),
        Watcher::new("refuse", EventSet::FORK, attach_exit_leader_and_refuse),
    ])
    .unwrap();
    let tasks = REFUSED.get_or_init(|| TaskTable::with_table(table));
    let leader = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
    let refused = catch_unwind(AssertUnwindSafe(|| {
        tasks.fork(leader.pid(), CloneFlags::THREAD)
    }));
    assert!(refused.is_err(), "the closure's panic continues");
    assert_eq!(leader.state(), TaskState::Dead, "the leader is freed");
    assert_eq!(frees_of(leader.serial()), 1);
    assert!(tasks.get(leader.pid()).is_none(), "its pid is free");
    assert_eq!(tasks.len(), 1);
}
