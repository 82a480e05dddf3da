//! Child processes watched by `#[task_watcher]`s: a fork watcher that allows three
//! children in all and stamps each with its start, an exec watcher that names the
//! program, and an exit watcher that reports each child's real status.
//!
//! `cargo run -p watchers-process --example child_budget`

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use watchers_core::{Event, EventData, Pid, TaskSlot, task_watcher};
use watchers_process::CommandExt;

/// When each child was forked.
static STARTED: TaskSlot<Instant> = TaskSlot::new();
static SPAWNED: AtomicUsize = AtomicUsize::new(0);
const BUDGET: usize = 3;

#[derive(Debug, thiserror::Error)]
#[error("the budget of {BUDGET} children is spent")]
struct Spent;

#[task_watcher(events = fork)]
fn budget(event: &Event<'_>) -> Result<(), Spent> {
    // The program itself is a task too, adopted as a child of init at the first spawn:
    // only its own children count. Threads do not either: every `#[task_watcher]` sees
    // the forks of every source of the program, the threads source's among them.
    if event.task().is_thread()
        || event
            .parent()
            .is_some_and(|parent| parent.pid() == Pid::INIT)
    {
        return Ok(());
    }
    if SPAWNED.fetch_add(1, Ordering::SeqCst) >= BUDGET {
        return Err(Spent);
    }
    STARTED.set(event.task(), Instant::now());
    Ok(())
}

#[task_watcher(events = exec)]
fn program(event: &Event<'_>) {
    if let EventData::Exec { filename } = event.data() {
        // `{:?}`: a program's name is any bytes its caller chose, escaped for the terminal.
        println!("{} runs {filename:?}", name(event));
    }
}

#[task_watcher(events = exit)]
fn report(event: &Event<'_>) {
    if let (EventData::Exit { status }, Some(started)) = (event.data(), STARTED.get(event.task())) {
        let ran = started.elapsed();
        println!("{} ended ({status}) after {ran:.1?}", name(event));
    }
}

/// The child's task by its pid in the source's mirror table and, once known, the OS's.
fn name(event: &Event<'_>) -> String {
    match watchers_process::os_pid(event.task()) {
        Some(os_pid) => format!("task {} (pid {os_pid})", event.task().pid()),
        None => format!("task {}", event.task().pid()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scripts = ["exit 3", "kill -TERM $$", "true", "echo never"];
    let mut refused = 0;
    for script in scripts {
        match Command::new("sh").args(["-c", script]).spawn_watched() {
            Ok(mut child) => {
                let status = child.wait()?;
                println!("`sh -c {script:?}` waited: {status}");
            }
            Err(error) => {
                refused += 1;
                println!("`sh -c {script:?}` not spawned: {error}");
            }
        }
    }
    assert_eq!(refused, scripts.len() - BUDGET, "the budget held");
    Ok(())
}
