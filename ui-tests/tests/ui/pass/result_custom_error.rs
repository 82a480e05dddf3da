//! A watcher returning `Result<(), E>` with its own error type; the error reaches the
//! table boxed.
#![deny(warnings)]

use std::fmt;

use watchers_core::__private::inventory;
use watchers_core::{Event, EventData, Task, Watcher, task_watcher};

#[derive(Debug)]
struct Refused {
    pid: u32,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} refused", self.pid)
    }
}

impl std::error::Error for Refused {}

#[task_watcher(events = fork)]
fn refuse(event: &Event<'_>) -> Result<(), Refused> {
    Err(Refused { pid: event.task().pid().get() })
}

#[task_watcher(events = fork)]
fn io(_: &Event<'_>) -> std::io::Result<()> {
    Ok(())
}

fn find(suffix: &str) -> &'static Watcher {
    inventory::iter::<Watcher>
        .into_iter()
        .find(|w| w.name().ends_with(suffix))
        .expect("registered")
}

fn main() {
    let parent = Task::detached(1);
    let child = Task::detached(42);
    let event = Event::new(&child, EventData::Fork { parent: &parent, flags: watchers_core::CloneFlags::empty() });

    let error = (find("::refuse").func())(&event).unwrap_err();
    assert_eq!(error.to_string(), "task 42 refused");
    assert!(error.downcast_ref::<Refused>().is_some());

    (find("::io").func())(&event).unwrap();
}
