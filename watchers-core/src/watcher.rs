//! The record `#[task_watcher]` submits, and the return types a watcher may have.

use std::fmt;

use crate::event::{Event, EventSet};

/// The error a watcher returns: any error type, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a watcher returns once its own return type is converted.
pub type WatcherResult = Result<(), BoxError>;

/// The function pointer the table calls.
pub type WatcherFn = for<'a, 'b> fn(&'a Event<'b>) -> WatcherResult;

/// Where a watcher was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// `module_path!()` of the declaration.
    pub module_path: &'static str,
    /// `file!()` of the declaration.
    pub file: &'static str,
    /// `line!()` of the declaration.
    pub line: u32,
}

impl Location {
    /// The location of a watcher built by hand without one.
    pub const UNKNOWN: Location = Location {
        module_path: "?",
        file: "?",
        line: 0,
    };
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

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

/// The return types a task watcher may have: `()` or `Result<(), E>` where `E` converts
/// into [`BoxError`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a return type a task watcher can have",
    label = "unsupported return type",
    note = "a task watcher returns `()` or `Result<(), E>` where `E` converts into `watchers_core::BoxError` (any `std::error::Error + Send + Sync + 'static`, a `String` or a `&str`)"
)]
pub trait IntoWatcherResult {
    /// Converts the watcher's own return value.
    fn into_watcher_result(self) -> WatcherResult;
}

impl IntoWatcherResult for () {
    #[inline]
    fn into_watcher_result(self) -> WatcherResult {
        Ok(())
    }
}

impl<E: IntoWatcherError> IntoWatcherResult for Result<(), E> {
    #[inline]
    fn into_watcher_result(self) -> WatcherResult {
        self.map_err(IntoWatcherError::into_watcher_error)
    }
}

/// The error types a task watcher may return in `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a task watcher",
    label = "this error type does not convert into `watchers_core::BoxError`",
    note = "a task watcher returns `()` or `Result<(), E>` where `E` converts into `watchers_core::BoxError` (any `std::error::Error + Send + Sync + 'static`, a `String` or a `&str`)"
)]
pub trait IntoWatcherError {
    /// Boxes the error.
    fn into_watcher_error(self) -> BoxError;
}

// Without this, rustc explains a bad error type through the blanket impl's own bound
// ("`i32: Error` is not satisfied") instead of this trait's message.
#[diagnostic::do_not_recommend]
impl<E: Into<BoxError>> IntoWatcherError for E {
    #[inline]
    fn into_watcher_error(self) -> BoxError {
        self.into()
    }
}
