//! `Event` imported under another name or aliased: the macro sees names only, and says
//! how to write the parameter instead of only that it is not the event.

use watchers_core::{Event as TaskEvent, task_watcher};

type Alias<'a> = watchers_core::Event<'a>;

#[task_watcher(events = fork)]
fn renamed(_: &TaskEvent<'_>) {}

#[task_watcher(events = fork)]
fn aliased<'a>(_: &'a Alias<'a>) {}

fn main() {}
