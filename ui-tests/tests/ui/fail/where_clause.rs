//! A function with a `where` clause (even one about lifetimes).

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch<'a, 'b>(_: &'a Event<'b>)
where
    'b: 'a,
{
}

fn main() {}
