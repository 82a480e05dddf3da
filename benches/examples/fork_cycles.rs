//! Runs fork + exit + reap cycles with all ten subsystems, called directly or through the
//! table, for instruction counting:
//!
//! ```sh
//! cargo build --release -p benches --example fork_cycles
//! for n in 10000 20000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/fork_cycles table $n
//! done
//! ```
//!
//! The difference between the two totals, divided by 10,000, is the instruction count of
//! one cycle, free of start-up costs and of the host's noise.

use benches::fork_rate::{Bench, SUBSYSTEMS, Variant};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let variant = match args.next().as_deref() {
        Some("direct") => Variant::Direct,
        Some("table") => Variant::Table,
        _ => return Err("usage: fork_cycles direct|table CYCLES".to_owned()),
    };
    let cycles = args
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or("CYCLES must be a number")?;
    let bench = Bench::new(SUBSYSTEMS.len(), variant);
    let took = bench.run(cycles)?;
    println!("{cycles} cycles {variant:?} in {took:?}");
    Ok(())
}
