//! On a module, a type alias, a `use`, a union and an `extern` block.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
mod module {}

#[task_watcher(events = fork)]
type Alias = u8;

#[task_watcher(events = fork)]
use std::fmt as _;

#[task_watcher(events = fork)]
union Union {
    a: u8,
}

#[task_watcher(events = fork)]
unsafe extern "C" {}

fn main() {
    let _: Alias = Union { a: 1 }.a_field();
    let _: Option<&Event<'_>> = None;
}

impl Union {
    fn a_field(&self) -> u8 {
        unsafe { self.a }
    }
}
