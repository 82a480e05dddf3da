//! Thread spawn + join through the threads source (`watchers-threads`) with 8 trivial
//! watchers on every event, against plain [`std::thread::spawn`]: both loops spawn a
//! thread that returns at once and join it, so the difference is the source's work
//! (`fork` on the spawning thread, `exit` on the new one, `free` from its thread-local
//! destructor, the mirror table's bookkeeping) and the 24 watcher calls.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::Serialize;
use watchers_core::{EventSet, WatcherTable};
use watchers_threads::Threads;

use crate::measure::{Runner, Timing, interleave};
use crate::watchers;

/// How many trivial watchers the source's table holds.
pub const WATCHERS: usize = 8;

/// A threads source whose table holds [`WATCHERS`] trivial watchers on every event
/// (leaked, as a source must be).
///
/// # Panics
/// Never: the benchmark watchers have distinct names.
pub fn source() -> &'static Threads {
    let table = WatcherTable::from_watchers(watchers::records(WATCHERS, EventSet::ALL))
        .expect("distinct benchmark watchers")
        .leak();
    Box::leak(Box::new(Threads::new(table)))
}

/// `iters` spawn + join cycles with [`std::thread::spawn`].
///
/// # Panics
/// If the OS cannot start a thread.
#[inline(never)]
pub fn std_cycles(iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let handle = std::thread::spawn(|| black_box(7u64));
        black_box(handle.join().expect("the thread does not panic"));
    }
    start.elapsed()
}

/// `iters` spawn + join cycles through `threads`.
///
/// # Panics
/// If the OS cannot start a thread (the trivial watchers never refuse).
#[inline(never)]
pub fn watched_cycles(threads: &'static Threads, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let handle = threads
            .builder()
            .spawn(|| black_box(7u64))
            .expect("the trivial watchers accept every thread");
        black_box(handle.join().expect("the thread does not panic"));
    }
    start.elapsed()
}

/// Both variants measured in one run, rounds interleaved.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// `std::thread::spawn`.
    pub std: Timing,
    /// Through the source with [`WATCHERS`] watchers.
    pub watched: Timing,
    /// Spawns per second through the source / with std (median rounds): the target is
    /// at least 0.97.
    pub ratio: f64,
}

/// Measures both variants over `rounds` interleaved rounds of about `round_time` each.
pub fn compare(rounds: usize, round_time: Duration) -> Comparison {
    let threads = source();
    let mut runners = [
        Runner::new("std::thread::spawn", std_cycles),
        Runner::new(format!("watchers_threads, {WATCHERS} watchers"), |iters| {
            watched_cycles(threads, iters)
        }),
    ];
    let mut timings = interleave(&mut runners, rounds, round_time).into_iter();
    let (std, watched) = match (timings.next(), timings.next()) {
        (Some(std), Some(watched)) => (std, watched),
        _ => unreachable!("two runners give two timings"),
    };
    Comparison {
        ratio: std.median_ns / watched.median_ns,
        std,
        watched,
    }
}

/// The comparison as text.
pub fn render(comparison: &Comparison) -> String {
    let line = |t: &Timing| {
        format!(
            "{:<34} {:>10.0} ns median {:>10.0} ns fastest ({} rounds of {} spawns)\n",
            t.name, t.median_ns, t.min_ns, t.rounds, t.iters
        )
    };
    format!(
        "thread spawn + join, one run, rounds interleaved\n{}{}speed ratio (watched / std): {:.3} (target >= 0.97)\n",
        line(&comparison.std),
        line(&comparison.watched),
        comparison.ratio
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_loops_run_and_the_source_frees_every_thread() {
        let threads = source();
        std_cycles(3);
        watched_cycles(threads, 3);
        let stats = threads.tasks().stats();
        // The process, this test's thread (adopted at its first spawn), and init remain.
        assert_eq!(
            (stats.forks, stats.exits, stats.frees, stats.tasks),
            (5, 3, 3, 3)
        );
        let comparison = compare(2, Duration::from_millis(2));
        assert!(comparison.ratio.is_finite() && comparison.ratio > 0.0);
        assert!(render(&comparison).contains("watchers_threads"));
    }
}
