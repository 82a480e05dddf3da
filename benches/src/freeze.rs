//! Generated watcher lists for timing the freeze (building the table).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use watchers_core::{EventSet, Watcher, WatcherTable};

use crate::watchers::FUNCS;

/// The table sizes whose freeze is measured.
pub const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// The most watchers [`watchers`] makes.
pub const MAX: usize = 10_000;

fn names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        (0..MAX)
            .map(|i| {
                &*Box::leak(
                    format!("freeze::subsystem{:03}::watcher{i:05}", i % 97).into_boxed_str(),
                )
            })
            .collect()
    })
}

/// `n` (≤ [`MAX`]) watchers with distinct names, a mix of event sets and priorities,
/// in a scrambled order, as link order would give them.
///
/// # Panics
/// If `n` is more than [`MAX`].
pub fn watchers(n: usize) -> Vec<Watcher> {
    assert!(n <= MAX, "at most {MAX} generated watchers");
    let names = names();
    // A fixed permutation of 0..n (multiplying by a number coprime to n).
    let step = (1..)
        .map(|k| 7919 * k)
        .find(|s| gcd(*s, n.max(1)) == 1)
        .unwrap_or(1);
    (0..n)
        .map(|k| {
            let i = (k * step) % n;
            let events = EventSet::from_bits_truncate((i as u16).wrapping_mul(0x2f5) | 1);
            Watcher::new(names[i], events, FUNCS[i % FUNCS.len()])
                .with_priority((i % 13) as i32 - 6)
        })
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Builds a table from `watchers` `runs` times and returns how long each build took.
///
/// Each input is cloned before its build and each table dropped only after the next
/// build, so the memory of a build is already mapped (a table dropped at once would let
/// the allocator give its pages back, and the next build pay the page faults again,
/// more or less of them depending on what ran before). This is the cost of the freeze
/// itself; the first freeze of a fresh process also faults in about 2 MB for 10,000
/// watchers.
///
/// # Panics
/// If the watchers cannot form a table.
pub fn time_freezes(watchers: &[Watcher], runs: usize) -> Vec<Duration> {
    let mut previous = None;
    (0..runs)
        .map(|_| {
            let input = watchers.to_vec();
            let start = Instant::now();
            let table = WatcherTable::from_watchers(input).expect("distinct names");
            let took = start.elapsed();
            drop(previous.replace(std::hint::black_box(table)));
            took
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_watchers_freeze() {
        for n in SIZES {
            let list = watchers(n);
            assert_eq!(list.len(), n);
            let table = WatcherTable::from_watchers(list.clone()).expect("distinct names");
            assert_eq!(table.len(), n);
            assert_eq!(time_freezes(&list, 3).len(), 3);
        }
    }
}
