//! On a method (a function with a `self` receiver).

use watchers_core::{Event, task_watcher};

struct Subsystem;

impl Subsystem {
    #[task_watcher(events = fork)]
    fn watch(&self, _: &Event<'_>) {}
}

fn main() {}
