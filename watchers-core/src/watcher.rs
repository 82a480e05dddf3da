//! The record `#[task_watcher]` submits.

use std::fmt;

use crate::event::Event;
use crate::event_kind::EventSet;
use crate::location::Location;
use crate::watcher_result::WatcherResult;

/// The function pointer the table calls.
pub type WatcherFn = for<'a, 'b> fn(&'a Event<'b>) -> WatcherResult;

/// A statically declared task watcher: what `#[task_watcher]` submits to `inventory`.
///
/// It can also be built by hand, for a table made from an explicit list
/// ([`WatcherTable::from_watchers`](crate::WatcherTable::from_watchers)), which is how
/// unit tests and Miri (which runs no link-time constructors) build tables.
///
/// ```
/// use watchers_core::{Event, EventSet, Watcher, WatcherResult};
///
/// fn count(_: &Event<'_>) -> WatcherResult { Ok(()) }
///
/// const COUNT: Watcher = Watcher::new("count", EventSet::FORK, count).with_priority(-3);
/// assert_eq!(COUNT.priority(), -3);
/// ```
#[derive(Clone, Copy)]
pub struct Watcher {
    name: &'static str,
    events: EventSet,
    priority: i32,
    func: WatcherFn,
    location: Location,
}

impl Watcher {
    /// A watcher of `events` called `name`, with priority 0 and no known location.
    pub const fn new(name: &'static str, events: EventSet, func: WatcherFn) -> Watcher {
        Watcher {
            name,
            events,
            priority: 0,
            func,
            location: Location::UNKNOWN,
        }
    }

    /// The same watcher with another priority (higher runs first).
    #[must_use]
    pub const fn with_priority(self, priority: i32) -> Watcher {
        Watcher { priority, ..self }
    }

    /// The same watcher declared at `location`.
    #[must_use]
    pub const fn with_location(self, location: Location) -> Watcher {
        Watcher { location, ..self }
    }

    /// Its name, unique in a table.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The events it asked for.
    pub const fn events(&self) -> EventSet {
        self.events
    }

    /// Its priority: higher runs earlier on `fork` and the other set-up events, later on
    /// `exit` and `free`.
    pub const fn priority(&self) -> i32 {
        self.priority
    }

    /// The function the table calls.
    pub const fn func(&self) -> WatcherFn {
        self.func
    }

    /// Where it was declared.
    pub const fn location(&self) -> Location {
        self.location
    }
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("name", &self.name)
            .field("events", &self.events)
            .field("priority", &self.priority)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

inventory::collect!(Watcher);
