//! Spawn + await of an empty task, `N` times, on a current-thread runtime: for
//! instruction counts under callgrind, which are steady where the clock is not.
//!
//! ```text
//! cargo build --release -p benches --example tokio_spawn_cycles
//! valgrind --tool=callgrind target/release/examples/tokio_spawn_cycles watched 20000
//! ```
//!
//! `plain` uses `tokio::spawn`; `watched` spawns through `watchers_tokio` with 8 trivial
//! watchers on `fork`, `exit` and `free`. The difference of two runs (20,000 and 10,000)
//! divided by 10,000 is the cost of one spawn + await, without start-up.

use watchers_core::{EventSet, WatcherTable};
use watchers_tokio::{AsyncTasks, Builder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_default();
    let count: u64 = args.next().as_deref().unwrap_or("10000").parse()?;
    let events = EventSet::FORK | EventSet::EXIT | EventSet::FREE;
    let table = WatcherTable::from_watchers(benches::watchers::records(8, events))?.leak();
    let source: &'static AsyncTasks = Box::leak(Box::new(AsyncTasks::new(table)));
    let runtime = Builder::new_current_thread().source(source).build()?;
    runtime.block_on(async {
        match variant.as_str() {
            "plain" => {
                for _ in 0..count {
                    tokio::spawn(async {}).await?;
                }
            }
            "watched" => {
                for _ in 0..count {
                    source.spawn(async {})?.await?;
                }
            }
            other => return Err(format!("unknown variant {other:?}: plain or watched").into()),
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
