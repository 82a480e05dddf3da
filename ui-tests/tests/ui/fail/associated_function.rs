//! On an associated function without `self`: the macro cannot see the `impl`, so the error comes from name resolution, on the function's name.

use watchers_core::{Event, task_watcher};

struct Subsystem;

impl Subsystem {
    #[task_watcher(events = fork)]
    fn watch(_: &Event<'_>) {}
}

fn main() {
    let _: fn(&Event<'_>) = Subsystem::watch;
}

trait Subsystem2 {
    type Error;
}

impl Subsystem2 for Subsystem {
    type Error = String;
}

impl Subsystem {
    // Here the signature names `Self`: the macro can tell.
    #[task_watcher(events = exit)]
    fn watch_self(_: &Event<'_>) -> Result<(), <Self as Subsystem2>::Error> {
        Ok(())
    }
}
