//! Criterion benchmarks: dispatch against every alternative, the cost of an unused hook,
//! multi-threaded dispatch, the freeze, and one fork-rate row.
//!
//! Every dispatch variant calls the same watcher functions (`benches::watchers`) from a
//! loop of the same shape (`benches::measure::event_loop`; the hand-written calls' copy of
//! it sits next to the watcher functions so that they are plain `call`s), so only the
//! dispatch differs. Criterion 0.5 rather than divan: it is already a workspace
//! dependency, `iter_custom` covers the multi-threaded runs with our own timed loop, and
//! its statistics and saved baselines (`--save-baseline`) are what CI tooling reads.
//!
//! `BENCH_THREADS=1,2,4 cargo bench -p benches -- threads` picks the thread counts of the
//! multi-threaded group (default 1 and 2).

use std::hint::black_box;
use std::time::Duration;

use benches::fork_rate::{Bench, SUBSYSTEMS, Variant, settle};
use benches::freeze;
use benches::measure::threaded;
use benches::variants::{Variants, Via, time_empty_loop, time_unwanted};
use benches::watchers::COUNTS;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use watchers_core::__private::inventory;
use watchers_core::{Event, EventData, Watcher, WatcherResult, WatcherTable};

// 1,097 `inventory` registrations, named `benches::inventory::…`: 1 on `sid`, 8 on
// `comm`, 64 on `ptrace`, 1,024 on `coredump` (and none on `exec`), all with the marker
// priority below. They also land in this binary's global table, which no benchmark here
// uses (every other benchmark builds its own table).
include!(concat!(env!("OUT_DIR"), "/inventory.rs"));

/// The priority of the `inventory` registrations, which tells them apart from the
/// subsystems' own.
const MARK: i32 = -7777;

/// The event whose `inventory` walk reaches `n` benchmark watchers.
fn inventory_event(n: usize) -> EventData<'static> {
    match n {
        0 => EventData::Exec {
            filename: "/usr/bin/true",
        },
        1 => EventData::Sid {
            sid: watchers_core::Pid::INIT,
        },
        8 => EventData::Comm { old: "a", new: "b" },
        64 => EventData::Ptrace { tracer: None },
        1024 => EventData::Coredump { signal: 11 },
        _ => unreachable!("no inventory set of {n} watchers"),
    }
}

/// A dispatch without a frozen table: walk every registered record, call those that
/// want the event. The walk visits all ~1,100 records of this binary whatever the
/// event, and does not even sort by priority, so it is a lower bound of that design.
/// Records of other crates linked in (the subsystems') are skipped by their priority.
#[inline(never)]
fn inventory_walk(event: &Event<'_>) -> WatcherResult {
    let kind = event.kind();
    for watcher in inventory::iter::<Watcher> {
        if watcher.events().contains(kind) && watcher.priority() == MARK {
            (watcher.func())(event)?;
        }
    }
    Ok(())
}

fn dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");
    for n in COUNTS {
        let v = Variants::new(n);
        for via in Via::ALL {
            group.bench_function(BenchmarkId::new(via.name(), n), |b| {
                b.iter_custom(|iters| v.time(via, 1, iters))
            });
        }
        let data = inventory_event(n);
        group.bench_function(BenchmarkId::new("inventory-walk", n), |b| {
            b.iter_custom(|iters| {
                threaded(1, iters, &|e: &Event<'_>| {
                    let event = Event::new(e.task(), data);
                    inventory_walk(black_box(&event)).is_ok()
                })
            })
        });
    }
    group.finish();
}

/// The cost of a hook nobody uses: an event of a table whose watchers (8, on `exec`)
/// all want other events, and of an empty table, against a loop that builds the same
/// event and does nothing with it.
fn unwanted(c: &mut Criterion) {
    let mut group = c.benchmark_group("unwanted-event");
    let v = Variants::new(8);
    let empty = WatcherTable::from_watchers([]).expect("empty table");
    group.bench_function("empty-loop", |b| b.iter_custom(time_empty_loop));
    group.bench_function("table", |b| {
        b.iter_custom(|iters| time_unwanted(v.table, iters))
    });
    group.bench_function("empty-table", |b| {
        b.iter_custom(|iters| time_unwanted(&empty, iters))
    });
    group.finish();
}

/// Threads dispatching at once (each its own task); time per dispatch per thread.
fn threads(c: &mut Criterion) {
    let counts: Vec<usize> = std::env::var("BENCH_THREADS")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|t| t.trim().parse().ok())
                .collect()
        })
        .filter(|list: &Vec<usize>| !list.is_empty())
        .unwrap_or_else(|| vec![1, 2]);
    let v = Variants::new(8);
    let mut group = c.benchmark_group("threads-8-watchers");
    for t in counts {
        for via in [
            Via::Direct,
            Via::Table,
            Via::RwLock,
            Via::Mutex,
            Via::ArcSwap,
        ] {
            group.bench_function(BenchmarkId::new(via.name(), format!("{t}-threads")), |b| {
                b.iter_custom(|iters| v.time(via, t, iters))
            });
        }
    }
    group.finish();
}

/// Building the table from generated watchers (see `benches::freeze::time_freezes`: the
/// memory of a build is already mapped, so this is the freeze itself, not the page
/// faults of a fresh process).
fn freeze(c: &mut Criterion) {
    let mut group = c.benchmark_group("freeze");
    for n in freeze::SIZES {
        let list = freeze::watchers(n);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let runs = usize::try_from(iters).expect("iterations fit in usize");
                freeze::time_freezes(&list, runs).into_iter().sum()
            })
        });
    }
    group.finish();
}

/// The last row of the fork-rate table (all subsystems), per fork + exit + reap cycle.
fn fork_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("fork-cycle-all-subsystems");
    for variant in [Variant::Direct, Variant::Table] {
        let bench = Bench::new(SUBSYSTEMS.len(), variant);
        let name = match variant {
            Variant::Direct => "direct",
            Variant::Table => "table",
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                settle();
                bench.run(iters).expect("fork cycles")
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = dispatch, unwanted, threads, freeze, fork_cycle
}
criterion_main!(benches);
