//! Criterion benchmarks of the sources of real tasks: a thread spawn + join through the
//! threads source with 8 trivial watchers against `std::thread::spawn`, and then the
//! same two measured as a ratio in one run (rounds interleaved), which is the figure the
//! target (at least 0.97) is held to.

use std::time::Duration;

use benches::thread_spawn::{self, WATCHERS};
use criterion::{Criterion, criterion_group, criterion_main};

fn spawn_join(c: &mut Criterion) {
    let threads = thread_spawn::source();
    let mut group = c.benchmark_group("thread_spawn_join");
    group.bench_function("std", |b| b.iter_custom(thread_spawn::std_cycles));
    group.bench_function(format!("watchers_threads_{WATCHERS}"), |b| {
        b.iter_custom(|iters| thread_spawn::watched_cycles(threads, iters))
    });
    group.finish();
}

fn ratio(_: &mut Criterion) {
    let comparison = thread_spawn::compare(31, Duration::from_millis(20));
    print!("{}", thread_spawn::render(&comparison));
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = spawn_join, ratio
}
criterion_main!(benches);
