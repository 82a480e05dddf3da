//! Where a watcher was declared, for messages about it.

use std::fmt;

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
