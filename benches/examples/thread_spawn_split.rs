//! Where the threads source's time goes: thread spawn + join with 8 trivial watchers,
//! four ways in one run, rounds interleaved (median rounds, ratios against std):
//!
//! * `std`: `std::thread::spawn` and `join`;
//! * `source`: through `watchers_threads` (what `cargo bench --bench threads` measures);
//! * `table only`: the mirror `TaskTable`'s `fork` on the spawning thread, then
//!   `exit_unreaped` and `free` on the new one, without the source's thread binding;
//! * `dispatch only`: a `Task` made and its `fork`, `exit` and `free` dispatched at the
//!   same places, without any task table.
//!
//! ```text
//! cargo run --release -p benches --example thread_spawn_split
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::measure::{Runner, interleave};
use benches::thread_spawn::{self, WATCHERS, std_cycles, watched_cycles};
use benches::watchers;
use watchers_core::{
    CloneFlags, Event, EventData, EventSet, ExitStatus, Pid, Task, TaskTable, WatcherTable,
};

/// A leaked table of the benchmark's trivial watchers on every event.
fn table() -> Result<&'static WatcherTable, watchers_core::FreezeError> {
    Ok(WatcherTable::from_watchers(watchers::records(WATCHERS, EventSet::ALL))?.leak())
}

/// `iters` spawns whose task lives in `tasks` (forked from `parent`), without a source.
fn table_only(tasks: &'static TaskTable, parent: Pid, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let task = tasks
            .fork(parent, CloneFlags::THREAD)
            .expect("the trivial watchers accept every fork");
        let mine = task.clone();
        let thread = std::thread::spawn(move || {
            let _ = tasks.exit_unreaped(mine.pid(), ExitStatus::exited(0));
            let _ = tasks.free(&mine);
            black_box(7u64)
        });
        black_box(thread.join().expect("the thread does not panic"));
    }
    start.elapsed()
}

/// `iters` spawns that dispatch a task's three events at the same places, with no table.
fn dispatch_only(watchers: &'static WatcherTable, iters: u64) -> Duration {
    let parent = Task::detached(2);
    let start = Instant::now();
    for _ in 0..iters {
        let task = Arc::new(Task::detached(3));
        let fork = EventData::Fork {
            parent: &parent,
            flags: CloneFlags::THREAD,
        };
        let _ = watchers.dispatch(&Event::new(&task, fork));
        let mine = task.clone();
        let thread = std::thread::spawn(move || {
            let exit = EventData::Exit {
                status: ExitStatus::exited(0),
            };
            let _ = watchers.dispatch(&Event::new(&mine, exit));
            let _ = watchers.dispatch(&Event::new(&mine, EventData::Free));
            black_box(7u64)
        });
        black_box(thread.join().expect("the thread does not panic"));
    }
    start.elapsed()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source = thread_spawn::source();
    let tasks: &'static TaskTable = Box::leak(Box::new(TaskTable::with_table(table()?)));
    let process = tasks.fork(Pid::INIT, CloneFlags::empty())?.pid();
    let watchers = table()?;
    let mut runners = [
        Runner::new("std", std_cycles),
        Runner::new("source", |iters| watched_cycles(source, iters)),
        Runner::new("table only", |iters| table_only(tasks, process, iters)),
        Runner::new("dispatch only", |iters| dispatch_only(watchers, iters)),
    ];
    let timings = interleave(&mut runners, 41, Duration::from_millis(20));
    let std_ns = timings[0].median_ns;
    println!("thread spawn + join, {WATCHERS} trivial watchers, median of 41 interleaved rounds");
    for timing in &timings {
        println!(
            "{:<14} {:>8.0} ns   std / this {:.3}",
            timing.name,
            timing.median_ns,
            std_ns / timing.median_ns
        );
    }
    Ok(())
}
