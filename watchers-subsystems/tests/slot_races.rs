//! Two threads making the same task's state at the same time. `TaskSlot::get_or_insert_with`
//! then builds a value on each thread and keeps one (as its docs say); a subsystem's
//! count of live state must not count the one thrown away as live for ever.
//!
//! A binary of its own: the counters are process-wide, and the checks compare their
//! absolute values before and after.

#![cfg(all(feature = "sysvipc", feature = "numa"))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use watchers_core::{CloneFlags, ExitStatus, Task};
use watchers_subsystems::mempolicy::{self, MemPolicy};
use watchers_subsystems::semundo;

/// Tasks per round; rounds run until a race was seen or time is up.
const TASKS: u32 = 5_000;
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `first_use` on every task of a round from two threads in lockstep (both arrive
/// at a task before either uses it), then `release` on each, until `built` (a count of
/// values built) says that some task had two built. Returns how many extra values were
/// built in all, which is the premise: zero means the race never happened.
fn race_first_uses(
    first_use: impl Fn(&Task) + Sync,
    release: impl Fn(&Task),
    built: impl Fn() -> u64,
) -> u64 {
    let started = Instant::now();
    let mut extra = 0;
    while extra == 0 && started.elapsed() < PATIENCE {
        let tasks: Vec<Task> = (0..TASKS).map(|i| Task::detached(i + 2)).collect();
        let before = built();
        let arrived = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for (i, task) in tasks.iter().enumerate() {
                        arrived.fetch_add(1, Ordering::AcqRel);
                        let mut spins = 0u32;
                        while arrived.load(Ordering::Acquire) < 2 * (i + 1) {
                            spins += 1;
                            if spins.is_multiple_of(64) {
                                std::thread::yield_now();
                            } else {
                                std::hint::spin_loop();
                            }
                        }
                        first_use(task);
                    }
                });
            }
        });
        extra += built() - before - u64::from(TASKS);
        tasks.iter().for_each(&release);
    }
    extra
}

#[test]
fn racing_first_undo_lists_leave_no_list_counted_live() {
    let before = semundo::stats();
    // A `CLONE_SYSVSEM` fork makes the parent's list if it has none (`semop` makes it
    // under the semaphores' lock, so two `semop`s cannot race). The child's exit then
    // drops its share; the parent's, the last one.
    let exit = |task: &Task| semundo::on_exit(task, ExitStatus::exited(0)).unwrap();
    let extra = race_first_uses(
        |parent| {
            let child = Task::detached(1);
            semundo::on_fork(parent, &child, CloneFlags::SYSVSEM).unwrap();
            exit(&child);
        },
        exit,
        || semundo::stats().lists_allocated,
    );
    assert!(
        extra > 0,
        "premise: two threads never built one task's list at once"
    );
    let after = semundo::stats();
    assert_eq!(
        after.lists_live(),
        before.lists_live(),
        "{extra} lists were built and thrown away"
    );
}

#[test]
fn racing_first_mempolicies_leave_no_policy_counted_live() {
    let before = mempolicy::stats();
    let extra = race_first_uses(
        |task| mempolicy::set_mempolicy(task, MemPolicy::Default).unwrap(),
        |task| mempolicy::on_free(task).unwrap(),
        || mempolicy::stats().allocated,
    );
    assert!(
        extra > 0,
        "premise: two threads never built one task's policy at once"
    );
    let after = mempolicy::stats();
    assert_eq!(
        after.live(),
        before.live(),
        "{extra} policies were built and thrown away"
    );
}
