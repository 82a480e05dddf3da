//! On a trait method, with or without a body.

use watchers_core::{Event, task_watcher};

trait Subsystem {
    #[task_watcher(events = fork)]
    fn required(_: &Event<'_>);

    #[task_watcher(events = fork)]
    fn provided(_: &Event<'_>) {}
}

fn main() {}
