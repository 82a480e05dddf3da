//! Each subsystem is behind the Cargo feature the crate docs name, and only there:
//! `.ci/run` runs this with each feature alone and with none.

use watchers_core::WatcherTable;

// The linker keeps the crate, and with it its registrations.
use watchers_subsystems as _;

/// Module and feature, as in the crate docs' table, and whether the feature is on in
/// this build.
const SUBSYSTEMS: [(&str, &str, bool); 10] = [
    ("audit", "audit", cfg!(feature = "audit")),
    ("semundo", "sysvipc", cfg!(feature = "sysvipc")),
    ("cpusets", "cpusets", cfg!(feature = "cpusets")),
    ("mempolicy", "numa", cfg!(feature = "numa")),
    (
        "irqflags",
        "trace-irqflags",
        cfg!(feature = "trace-irqflags"),
    ),
    ("lockdep", "lockdep", cfg!(feature = "lockdep")),
    ("keys", "keys", cfg!(feature = "keys")),
    ("proc_events", "proc-events", cfg!(feature = "proc-events")),
    (
        "delayacct",
        "task-delay-acct",
        cfg!(feature = "task-delay-acct"),
    ),
    ("profile", "profiling", cfg!(feature = "profiling")),
];

#[test]
fn a_subsystem_registers_watchers_exactly_when_its_feature_is_on() {
    let table = WatcherTable::from_inventory().expect("a valid registration");
    let ours: Vec<String> = table
        .watchers()
        .iter()
        .filter_map(|w| {
            w.name
                .strip_prefix("watchers_subsystems::")
                .map(str::to_owned)
        })
        .collect();
    for (module, feature, on) in SUBSYSTEMS {
        let registered = ours
            .iter()
            .filter(|name| name.split("::").next() == Some(module))
            .count();
        assert_eq!(
            registered > 0,
            on,
            "`{module}` has {registered} watchers registered with feature `{feature}` {}",
            if on { "on" } else { "off" }
        );
        let explicit = watchers_subsystems::all_watchers()
            .iter()
            .filter(|w| {
                w.name()
                    .starts_with(&format!("watchers_subsystems::{module}::"))
            })
            .count();
        assert_eq!(
            explicit, registered,
            "all_watchers() lists `{module}`'s too"
        );
        let summarised = watchers_subsystems::summary()
            .iter()
            .any(|(subsystem, _)| *subsystem == module);
        assert_eq!(summarised, on, "summary() has a line for `{module}`");
    }
    for name in &ours {
        let module = name.split("::").next().unwrap_or_default();
        assert!(
            SUBSYSTEMS.iter().any(|(m, _, _)| *m == module),
            "{name} belongs to no subsystem of the table"
        );
    }
}

#[test]
fn every_feature_is_on_by_default() {
    let manifest = include_str!("../Cargo.toml");
    let default = manifest
        .split("\ndefault = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("a default feature list");
    for (_, feature, _) in SUBSYSTEMS {
        assert!(
            default.contains(&format!("\"{feature}\"")),
            "`{feature}` is not a default feature: {default}"
        );
    }
}

/// The table above is the crate docs' table: same modules, same features, no row more.
#[test]
fn the_table_is_the_one_in_the_crate_docs() {
    let docs = include_str!("../src/lib.rs");
    let rows: Vec<&str> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("//! | `"))
        .collect();
    assert_eq!(
        rows.len(),
        SUBSYSTEMS.len(),
        "rows of the docs' table: {rows:?}"
    );
    for (module, feature, _) in SUBSYSTEMS {
        let row = format!("{module}` | `{feature}` |");
        assert!(
            rows.iter().any(|r| r.starts_with(&row)),
            "the crate docs do not put `{module}` behind `{feature}`"
        );
    }
}
