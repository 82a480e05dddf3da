//! A watcher returning `Result<(), String>` (or `&'static str`), and one returning `()`
//! explicitly.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, EventData, Task, Watcher, task_watcher};

#[task_watcher(events = exec)]
fn string(event: &Event<'_>) -> Result<(), String> {
    Err(format!("no exec for {}", event.task().pid().get()))
}

#[task_watcher(events = exec)]
fn str_slice(_: &Event<'_>) -> Result<(), &'static str> {
    Err("static message")
}

#[task_watcher(events = exec)]
fn unit(_: &Event<'_>) -> () {}

fn call(suffix: &str, event: &Event<'_>) -> Result<(), String> {
    let watcher = inventory::iter::<Watcher>
        .into_iter()
        .find(|w| w.name().ends_with(suffix))
        .expect("registered");
    (watcher.func())(event).map_err(|e| e.to_string())
}

fn main() {
    let task = Task::detached(9);
    let event = Event::new(&task, EventData::Exec { filename: "/bin/true" });
    assert_eq!(call("::string", &event), Err("no exec for 9".to_owned()));
    assert_eq!(call("::str_slice", &event), Err("static message".to_owned()));
    assert_eq!(call("::unit", &event), Ok(()));
}
