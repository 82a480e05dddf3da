//! `name`, `priority` and `crate` given through `macro_rules!` fragments: `$x:literal`,
//! `$x:expr` and `$x:path` reach the attribute wrapped in invisible groups.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, EventSet, Watcher, task_watcher, watcher_record};

macro_rules! from_literals {
    ($function:ident, $name:literal, $priority:literal) => {
        #[task_watcher(events = fork, name = $name, priority = $priority)]
        fn $function(_: &Event<'_>) {}
    };
}

macro_rules! from_exprs {
    ($function:ident, $name:expr, $priority:expr) => {
        #[task_watcher(events = exit | free, name = $name, priority = $priority)]
        fn $function(_: &Event<'_>) {}
    };
}

macro_rules! negated {
    ($function:ident, $priority:literal) => {
        #[task_watcher(events = exec, name = "negated", priority = -$priority)]
        fn $function(_: &Event<'_>) {}
    };
}

macro_rules! with_crate {
    ($function:ident, $krate:path) => {
        #[task_watcher(events = sid, name = "with crate", crate = $krate)]
        fn $function(_: &Event<'_>) {}
    };
}

mod rt {
    pub use watchers_core::*;
}

from_literals!(literals, "from literals", 12);
from_literals!(negative_literal, "negative literal", -12);
from_exprs!(exprs, "from exprs", 34);
from_exprs!(negative_expr, "negative expr", -2147483648);
negated!(negated, 56);
with_crate!(with_crate, crate::rt);

/// The record registered under `name`, once, checked against `watcher_record!`'s.
fn registered(record: Watcher, events: EventSet, priority: i32) {
    let found: Vec<&Watcher> = inventory::iter::<Watcher>
        .into_iter()
        .filter(|w| w.name() == record.name())
        .collect();
    assert_eq!(found.len(), 1, "{} registered {} times", record.name(), found.len());
    assert_eq!((found[0].events(), found[0].priority()), (events, priority));
    assert_eq!((record.events(), record.priority()), (events, priority));
}

fn main() {
    assert_eq!(watcher_record!(literals).name(), "from literals");
    assert_eq!(watcher_record!(negative_literal).name(), "negative literal");
    assert_eq!(watcher_record!(exprs).name(), "from exprs");
    assert_eq!(watcher_record!(negative_expr).name(), "negative expr");
    assert_eq!(watcher_record!(negated).name(), "negated");
    assert_eq!(watcher_record!(with_crate).name(), "with crate");
    registered(watcher_record!(literals), EventSet::FORK, 12);
    registered(watcher_record!(negative_literal), EventSet::FORK, -12);
    registered(watcher_record!(exprs), EventSet::EXIT | EventSet::FREE, 34);
    registered(watcher_record!(negative_expr), EventSet::EXIT | EventSet::FREE, i32::MIN);
    registered(watcher_record!(negated), EventSet::EXEC, -56);
    registered(watcher_record!(with_crate), EventSet::SID, 0);
}
