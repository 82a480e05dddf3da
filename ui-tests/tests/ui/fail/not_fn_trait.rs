//! On a trait.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
trait Watch {
    fn watch(_: &Event<'_>);
}

fn main() {}
