//! A crate's own type named `Event`: the macro cannot tell it from the event by name; the
//! compiler's error points at the parameter.

use watchers_core::task_watcher;

pub struct Event<'a>(&'a str);

#[task_watcher(events = fork)]
fn own(_: &Event<'_>) {}

fn main() {
    let _ = Event("unused");
}
