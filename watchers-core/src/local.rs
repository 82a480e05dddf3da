//! Per-task watchers: closures attached to one task.

/// The closures attached to one task (filled in by the per-task watcher API).
#[derive(Default)]
pub(crate) struct LocalWatchers {}
