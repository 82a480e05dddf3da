//! Async tasks watched by `#[task_watcher]`s: a fork watcher that labels each task and
//! refuses more than four at once, an exit watcher that reports how each ended.
//!
//! `cargo run -p watchers-tokio --example watch_tasks`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use watchers_core::{Event, EventData, TaskSlot, task_watcher};
use watchers_tokio::{Builder, Outcome};

/// Each task's label, set at fork.
static LABEL: TaskSlot<String> = TaskSlot::new();
static ALIVE: AtomicUsize = AtomicUsize::new(0);
/// The name of the runtime's threads, which are tasks too; the limit skips them and
/// the process's own task (the only one that is not a thread).
const RUNTIME_THREAD: &str = "runtime";

#[derive(Debug, thiserror::Error)]
#[error("{0} tasks are alive already")]
struct TooMany(usize);

#[task_watcher(events = fork | free, priority = 10)]
fn limit(event: &Event<'_>) -> Result<(), TooMany> {
    if !event.task().is_thread() || event.task().comm() == RUNTIME_THREAD {
        return Ok(());
    }
    match event.data() {
        EventData::Fork { .. } => {
            let alive = ALIVE.fetch_add(1, Ordering::SeqCst);
            if alive >= 4 {
                ALIVE.fetch_sub(1, Ordering::SeqCst);
                return Err(TooMany(alive));
            }
            LABEL.set(event.task(), format!("task #{}", event.task().pid()));
        }
        // Only forks this watcher accepted get `free`.
        EventData::Free => {
            ALIVE.fetch_sub(1, Ordering::SeqCst);
        }
        _ => {}
    }
    Ok(())
}

#[task_watcher(events = exit)]
fn report(event: &Event<'_>) {
    if let EventData::Exit { status } = event.data()
        && let (Some(label), Some(outcome)) = (LABEL.get(event.task()), Outcome::of(*status))
    {
        println!("{label}: {outcome:?}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Builder::new_multi_thread();
    builder.tokio().thread_name(RUNTIME_THREAD);
    let runtime = builder.worker_threads(2).build()?;
    runtime.block_on(async {
        let done = watchers_tokio::spawn(async {
            let label = watchers_tokio::current_slot(&LABEL).expect("labelled at fork");
            println!("{label} says hello");
        })?;
        done.await?;

        let stuck = watchers_tokio::spawn(std::future::pending::<()>())?;
        stuck.abort();
        let _ = stuck.await;

        let boom = watchers_tokio::spawn(async { panic!("expected: this task panics") })?;
        assert!(boom.await.is_err());

        // Four sleepers at once are allowed; the fifth spawn is refused.
        let mut sleepers = Vec::new();
        for _ in 0..5 {
            match watchers_tokio::spawn_blocking(|| std::thread::sleep(Duration::from_millis(20))) {
                Ok(sleeper) => sleepers.push(sleeper),
                Err(refused) => println!("refused: {refused}"),
            }
        }
        for sleeper in sleepers {
            sleeper.await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
