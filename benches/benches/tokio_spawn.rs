//! Spawn + await of an empty task: `watchers_tokio` with 8 trivial watchers (on `fork`,
//! `exit` and `free`) against plain `tokio::spawn`, on a current-thread and a
//! multi-thread runtime.
//!
//! Criterion times each variant on its own; after the criterion groups, the two are
//! also run interleaved round by round (`benches::measure::interleave`, 15 rounds of
//! about 20 ms) and the ratio of their medians, `tokio::spawn` time / `watchers_tokio`
//! time (1.0 = no overhead; the target is 0.95), is printed, so the figure comes from
//! one run on one machine state.
//!
//! `cargo bench -p benches --bench tokio_spawn`

use std::time::{Duration, Instant};

use benches::measure::{Runner, interleave};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use watchers_core::{EventSet, WatcherTable};
use watchers_tokio::{AsyncTasks, Builder};

/// The source: 8 distinct trivial watchers on every event a task gets.
fn source() -> &'static AsyncTasks {
    let events = EventSet::FORK | EventSet::EXIT | EventSet::FREE;
    let table = WatcherTable::from_watchers(benches::watchers::records(8, events))
        .expect("distinct names")
        .leak();
    Box::leak(Box::new(AsyncTasks::new(table)))
}

/// Both flavours, built through the source (their threads are its tasks either way).
fn runtimes(source: &'static AsyncTasks) -> [(&'static str, Runtime); 2] {
    let current = Builder::new_current_thread().source(source).build();
    let multi = Builder::new_multi_thread()
        .source(source)
        .worker_threads(2)
        .build();
    [
        ("current-thread", current.expect("a runtime")),
        ("multi-thread", multi.expect("a runtime")),
    ]
}

/// `iters` spawns of an empty task with `tokio::spawn`, each awaited.
fn plain(runtime: &Runtime, iters: u64) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            tokio::spawn(async {}).await.expect("an empty task");
        }
        start.elapsed()
    })
}

/// The same through the source.
fn watched(source: &'static AsyncTasks, runtime: &Runtime, iters: u64) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let task = source.spawn(async {}).expect("no watcher refuses");
            task.await.expect("an empty task");
        }
        start.elapsed()
    })
}

fn spawn_await(c: &mut Criterion) {
    let source = source();
    let runtimes = runtimes(source);
    for (flavour, runtime) in &runtimes {
        let mut group = c.benchmark_group(format!("tokio_spawn/{flavour}"));
        group.bench_function("tokio::spawn", |b| b.iter_custom(|n| plain(runtime, n)));
        group.bench_function("watchers_tokio (8 watchers)", |b| {
            b.iter_custom(|n| watched(source, runtime, n))
        });
        group.finish();
    }
    println!("\ninterleaved, median ns per spawn + await (15 rounds):");
    for (flavour, runtime) in &runtimes {
        let mut runners = [
            Runner::new("tokio::spawn", |n| plain(runtime, n)),
            Runner::new("watchers_tokio", |n| watched(source, runtime, n)),
        ];
        let timings = interleave(&mut runners, 15, Duration::from_millis(20));
        let (tokio, ours) = (timings[0].median_ns, timings[1].median_ns);
        println!(
            "{flavour:>15}: tokio::spawn {tokio:8.1}   watchers_tokio {ours:8.1}   ratio {:.3}",
            tokio / ours
        );
    }
}

criterion_group!(benches, spawn_await);
criterion_main!(benches);
