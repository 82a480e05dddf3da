//! On a closure (an attribute on an expression or a statement, which only nightly
//! allows), the macro reports one error, on the closure's parameters, and nothing after
//! it asks for a `;` or mismatches a type.

use watchers_core::{Event, EventData, Task, task_watcher};

fn bound() {
    let watch = #[task_watcher(events = fork)] |_: &Event<'_>| {};
    watch(&Event::new(&Task::detached(2), EventData::Free));
}

fn tail() {
    #[task_watcher(events = fork)]
    |_: &Event<'_>| {}
}

fn statement() {
    #[task_watcher(events = fork)]
    |_: &Event<'_>| {};
}

fn main() {
    bound();
    tail();
    statement();
}
