//! Threads watched by `#[task_watcher]`s: a fork watcher that lets at most three workers
//! run at once and stamps each with its start, an exit watcher that reports how each
//! worker ended and how long it ran.
//!
//! `cargo run -p watchers-threads --example worker_limit`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use watchers_core::{Event, EventData, TaskSlot, task_watcher};
use watchers_threads::PANIC_EXIT_CODE;

/// When each worker was forked.
static STARTED: TaskSlot<Instant> = TaskSlot::new();
static RUNNING: AtomicUsize = AtomicUsize::new(0);
const LIMIT: usize = 3;

#[derive(Debug, thiserror::Error)]
#[error("{0} workers are running already")]
struct TooMany(usize);

#[task_watcher(events = fork | free)]
fn limit(event: &Event<'_>) -> Result<(), TooMany> {
    // The program itself is a task too (the process, adopted at the first spawn). So is
    // a thread that this crate did not start (say, one of `std::thread::spawn`), adopted
    // as a thread when it first calls into the crate: spawning from such a thread would
    // count it as a worker. This program spawns from its main thread, which is the
    // process's task.
    if !event.task().is_thread() {
        return Ok(());
    }
    match event.data() {
        EventData::Fork { .. } => {
            let running = RUNNING.fetch_add(1, Ordering::SeqCst);
            if running >= LIMIT {
                RUNNING.fetch_sub(1, Ordering::SeqCst);
                return Err(TooMany(running));
            }
            STARTED.set(event.task(), Instant::now());
        }
        // Only the forks this watcher accepted get `free`.
        EventData::Free => {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        }
        _ => {}
    }
    Ok(())
}

#[task_watcher(events = exit)]
fn report(event: &Event<'_>) {
    if let (EventData::Exit { status }, Some(started)) = (event.data(), STARTED.get(event.task())) {
        let how = if status.code() == Some(PANIC_EXIT_CODE) {
            "panicked"
        } else {
            "returned"
        };
        let ran = started.elapsed();
        println!("{} {how} after {ran:.1?}", event.task().comm());
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Each worker waits for its go, so that the fourth spawn finds three running.
    let mut workers = Vec::new();
    let mut gos = Vec::new();
    for i in 0..4 {
        let (go, wait) = mpsc::channel::<()>();
        let spawned = watchers_threads::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                let _ = wait.recv();
                if i == 1 {
                    panic!("expected: worker-1 panics");
                }
                i * 10
            });
        match spawned {
            Ok(worker) => {
                workers.push((i, worker));
                gos.push(go);
            }
            Err(refused) => println!("worker-{i} not started: {refused}"),
        }
    }
    drop(gos);
    for (i, worker) in workers {
        // The std thread's name, set at spawn: the task's `comm` is the spawner's until
        // the worker has started and sent its rename.
        let name = worker.thread().name().unwrap_or("unnamed").to_owned();
        assert_eq!(
            name,
            format!("worker-{i}"),
            "the name printed for worker-{i}"
        );
        match worker.join() {
            Ok(value) => println!("{name} joined with {value}"),
            Err(_) => println!("{name} joined after its panic"),
        }
    }
    // `join` returns after the thread's `free`.
    assert_eq!(RUNNING.load(Ordering::SeqCst), 0);
    Ok(())
}
