//! A small calibrated timing harness for figures measured side by side in one process
//! (`taskwatch bench`): each variant runs a loop long enough to time, the variants take
//! turns round after round (so drift of a shared machine hits them all alike), and each
//! figure is the median of its rounds.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde::Serialize;
use watchers_core::{Event, EventData, Task};

/// The event every dispatch benchmark sends: an `exec` (the walk that runs every
/// watcher; `fork` adds only the rollback bookkeeping of a failed fork).
pub fn exec_event(task: &Task) -> Event<'_> {
    Event::new(
        task,
        EventData::Exec {
            filename: "/usr/bin/true",
        },
    )
}

/// Runs `run` on `threads` threads at once (the calling thread alone when `threads` is
/// 1), each with an `exec` event of a task of its own, and returns the mean of what the
/// runs returned (the time each took). Threads start together after a barrier;
/// spawning is not timed.
pub fn on_threads<F>(threads: usize, run: &F) -> Duration
where
    F: Fn(&Event<'_>) -> Duration + Sync,
{
    let threads = threads.max(1);
    let one = |pid: u32| {
        let task = Task::detached(pid);
        let event = exec_event(&task);
        run(&event)
    };
    if threads == 1 {
        return one(1);
    }
    let barrier = Barrier::new(threads);
    let total: Duration = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, one) = (&barrier, &one);
                scope.spawn(move || {
                    barrier.wait();
                    one(100 + t as u32)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a benchmark thread panicked"))
            .sum()
    });
    total / threads as u32
}

/// Runs `f` `iters` times on each of `threads` threads at once (see [`on_threads`]) and
/// returns the mean time one thread took.
///
/// The loop is generic, so each `f` gets a loop of its own with `f` inlined into it;
/// the event's address goes through `black_box` on every iteration, so nothing about
/// it is hoisted out of the loop.
pub fn threaded<F, R>(threads: usize, iters: u64, f: &F) -> Duration
where
    F: Fn(&Event<'_>) -> R + Sync,
{
    on_threads(threads, &|event: &Event<'_>| event_loop(iters, f, event))
}

/// Times `iters` calls of `f` with `event`.
#[inline(never)]
pub fn event_loop<F, R>(iters: u64, f: &F, event: &Event<'_>) -> Duration
where
    F: Fn(&Event<'_>) -> R,
{
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f(black_box(event)));
    }
    start.elapsed()
}

/// Times `f` run `iters` times on this thread (for work that is not a dispatch).
#[inline(never)]
pub fn time_loop<R>(iters: u64, mut f: impl FnMut() -> R) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed()
}

/// One variant taking part in an interleaved comparison.
pub struct Runner<'a> {
    name: String,
    /// Runs the variant `iters` times and returns the time taken (per thread).
    run: Box<dyn FnMut(u64) -> Duration + 'a>,
    iters: u64,
    ns: Vec<f64>,
}

impl<'a> Runner<'a> {
    /// A variant called `name` that `run(iters)` times.
    pub fn new(name: impl Into<String>, run: impl FnMut(u64) -> Duration + 'a) -> Self {
        Runner {
            name: name.into(),
            run: Box::new(run),
            iters: 0,
            ns: Vec::new(),
        }
    }

    /// Finds an iteration count whose run takes about `target`.
    fn calibrate(&mut self, target: Duration) {
        let mut iters = 1u64;
        loop {
            let took = (self.run)(iters);
            if took >= target / 8 || iters >= 1 << 40 {
                let per_iter = took.as_secs_f64() / iters as f64;
                self.iters = ((target.as_secs_f64() / per_iter.max(1e-12)) as u64).max(1);
                return;
            }
            iters *= 4;
        }
    }

    fn round(&mut self) {
        let took = (self.run)(self.iters);
        self.ns.push(took.as_secs_f64() * 1e9 / self.iters as f64);
    }
}

/// What a variant measured: nanoseconds per iteration.
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    /// The variant.
    pub name: String,
    /// The median over the rounds.
    pub median_ns: f64,
    /// The fastest round.
    pub min_ns: f64,
    /// How many rounds.
    pub rounds: usize,
    /// Iterations per round.
    pub iters: u64,
}

/// Calibrates every runner to about `target` per round, then runs `rounds` rounds in
/// which each runner runs once, in an order that rotates from round to round.
pub fn interleave(runners: &mut [Runner<'_>], rounds: usize, target: Duration) -> Vec<Timing> {
    for runner in runners.iter_mut() {
        runner.calibrate(target);
        // A first, untimed round warms caches and branch predictors.
        (runner.run)(runner.iters);
    }
    let count = runners.len();
    for round in 0..rounds.max(1) {
        for k in 0..count {
            runners[(round + k) % count].round();
        }
    }
    runners
        .iter()
        .map(|r| Timing {
            name: r.name.clone(),
            median_ns: median(&r.ns),
            min_ns: r.ns.iter().copied().fold(f64::INFINITY, f64::min),
            rounds: r.ns.len(),
            iters: r.iters,
        })
        .collect()
}

/// The median of `values` (the mean of the middle two for an even count); NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The mean and the sample standard deviation of `values`.
pub fn mean_stddev(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let (mean, sd) = mean_stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(mean, 5.0);
        assert!((sd - 2.138).abs() < 1e-3);
        assert_eq!(mean_stddev(&[1.0]), (1.0, 0.0));
    }

    #[test]
    fn interleave_measures_every_runner() {
        let mut runners = vec![
            Runner::new("a", |iters| threaded(1, iters, &|e: &Event<'_>| e.kind())),
            Runner::new("b", |iters| {
                threaded(2, iters, &|e: &Event<'_>| e.task().pid())
            }),
        ];
        let timings = interleave(&mut runners, 3, Duration::from_micros(200));
        assert_eq!(timings.len(), 2);
        assert!(timings.iter().all(|t| t.rounds == 3 && t.iters > 0));
        assert!(
            timings
                .iter()
                .all(|t| t.median_ns.is_finite() && t.min_ns <= t.median_ns)
        );
    }
}
