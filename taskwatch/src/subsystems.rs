//! What `simulate` reports and checks of the subsystems.

/// One line per enabled subsystem.
pub fn summary() -> Vec<String> {
    Vec::new()
}

/// The subsystems' global invariants that a finished workload breaks.
pub fn check() -> Vec<String> {
    Vec::new()
}
