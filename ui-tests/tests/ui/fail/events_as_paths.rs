use watchers_core::{Event, EventSet, task_watcher};

#[task_watcher(events = EventSet::FORK | exit)]
fn constant(_: &Event<'_>) {}

#[task_watcher(events = fork | watchers_core::EventSet::EXITED)]
fn unknown(_: &Event<'_>) {}

fn main() {
    let _ = EventSet::FORK;
}
