//! `taskwatch list`: the table, per event, in dispatch order.

use std::fmt::Write as _;

use watchers_core::{EventKind, WatcherStats, WatcherTable};

/// Renders every event's watchers in the order a dispatch calls them, static and
/// runtime alike.
pub fn render(table: &WatcherTable) -> String {
    let watchers = table.watchers();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} task watchers ({} static, {} runtime)",
        watchers.len(),
        watchers.iter().filter(|w| !w.runtime).count(),
        watchers.iter().filter(|w| w.runtime).count()
    );
    let width = watchers.iter().map(|w| w.name.len()).max().unwrap_or(0);
    for kind in EventKind::ALL {
        let mut chain: Vec<&WatcherStats> = watchers
            .iter()
            .filter(|w| w.events.contains(kind))
            .collect();
        // `watchers()` is in fork order; teardown events run it backwards.
        if kind.is_teardown() {
            chain.reverse();
        }
        let _ = writeln!(out, "\n{kind} ({} watchers)", chain.len());
        for (position, w) in chain.iter().enumerate() {
            let origin = if w.runtime {
                "runtime".to_owned()
            } else {
                format!("{} ({})", w.location, w.location.module_path)
            };
            let _ = writeln!(
                out,
                "  {:>2}. {:<width$}  priority {:>5}  {:<28}  {origin}",
                position + 1,
                w.name,
                w.priority,
                w.events.to_string(),
            );
        }
    }
    out
}
