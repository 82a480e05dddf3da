//! Benchmarks of the process-events connector source (Linux, root).
//!
//! ```text
//! cargo run --release -p watchers-proc-connector --example connector_bench -- \
//!     [--spawns 20000] [--parallel 2] [--rcvbuf BYTES] [--no-kernel-filter] [--messages 300000]
//! ```
//!
//! 1. **decode**: the netlink walk and `cn_proc::decode` over a synthesized buffer of
//!    fork/exec/exit datagrams, in messages per second.
//! 2. **decode + mirror + dispatch**: the same datagrams replayed through an open source
//!    (fake pids that exist nowhere, so `exec` also pays its failed `/proc` reads), with
//!    three counting watchers; and again with `fork`/`exit` only.
//! 3. **end to end**: spawns `--spawns` processes (`/bin/true`, `--parallel` at a time)
//!    while the source runs on its own thread, then compares what was spawned with the
//!    fork, exec and exit events the watchers saw for those pids, and reports the loss
//!    counters.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    bench::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("connector_bench needs Linux");
}

#[cfg(target_os = "linux")]
mod bench {
    use std::collections::HashSet;
    use std::process::{Command, ExitCode};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    use watchers_core::{EventKind, EventSet, WatcherTable};
    use watchers_proc_connector::cn_proc::{self, ProcEvent};
    use watchers_proc_connector::{Options, ProcConnector};

    struct Args {
        spawns: usize,
        parallel: usize,
        rcvbuf: Option<usize>,
        kernel_filter: bool,
        messages: usize,
    }

    fn parse() -> Result<Args, String> {
        let mut args = Args {
            spawns: 20_000,
            parallel: 2,
            rcvbuf: None,
            kernel_filter: true,
            messages: 300_000,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut number = |name: &str| -> Result<usize, String> {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{name} needs a number"))
            };
            match flag.as_str() {
                "--spawns" => args.spawns = number("--spawns")?,
                "--parallel" => args.parallel = number("--parallel")?.max(1),
                "--rcvbuf" => args.rcvbuf = Some(number("--rcvbuf")?),
                "--messages" => args.messages = number("--messages")?.max(3),
                "--no-kernel-filter" => args.kernel_filter = false,
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(args)
    }

    /// `count` datagrams, one message each, as the kernel sends them: fork, exec, exit
    /// of fake processes, round-robin over 4 CPUs with per-CPU sequence numbers.
    fn synthesize(count: usize) -> Vec<Vec<u8>> {
        let mut seq = [0u32; 4];
        (0..count)
            .map(|i| {
                let pid = 5_000_000 + (i / 3) as i32 % 100_000;
                let event = match i % 3 {
                    0 => ProcEvent::Fork {
                        parent_pid: 1,
                        parent_tgid: 1,
                        child_pid: pid,
                        child_tgid: pid,
                    },
                    1 => ProcEvent::Exec { pid, tgid: pid },
                    _ => ProcEvent::Exit {
                        pid,
                        tgid: pid,
                        exit_code: 0,
                        exit_signal: 17,
                        parent_pid: 1,
                        parent_tgid: 1,
                    },
                };
                let cpu = (i / 3) % 4;
                let s = seq[cpu];
                seq[cpu] += 1;
                cn_proc::encode_netlink(&event, s, cpu as u32, i as u64)
            })
            .collect()
    }

    fn rate(n: usize, took: Duration) -> String {
        format!("{:.0}/s", n as f64 / took.as_secs_f64().max(1e-9))
    }

    fn counting_table(events: EventSet) -> (&'static WatcherTable, Arc<AtomicU64>) {
        let table = WatcherTable::from_watchers([]).expect("empty table").leak();
        let calls = Arc::new(AtomicU64::new(0));
        for (i, kind) in events.iter().enumerate() {
            let calls = calls.clone();
            table
                .watcher(format!("bench::count{i}"), EventSet::of(kind))
                .register(move |_| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Ok::<(), std::convert::Infallible>(())
                })
                .expect("register")
                .keep();
        }
        (table, calls)
    }

    fn replay(datagrams: &[Vec<u8>], events: EventSet) -> Result<(), String> {
        let (table, calls) = counting_table(events);
        let options = Options {
            seed: false,
            ..Options::default()
        };
        let mut source = ProcConnector::open(table, options).map_err(|e| e.to_string())?;
        let start = Instant::now();
        for datagram in datagrams {
            source.replay_datagram(datagram, 0, |_| {});
        }
        let took = start.elapsed();
        let c = source.counters();
        println!(
            "decode + mirror + dispatch ({events}): {} messages in {took:.2?} = {} ({} watcher calls, dispatched {}, lost {})",
            datagrams.len(),
            rate(datagrams.len(), took),
            calls.load(Ordering::Relaxed),
            c.dispatched,
            c.lost,
        );
        Ok(())
    }

    type Seen = Arc<Mutex<Vec<(EventKind, u32)>>>;

    fn end_to_end(args: &Args) -> Result<bool, String> {
        let table = WatcherTable::from_watchers([]).expect("empty table").leak();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        table
            .watcher(
                "bench::e2e",
                EventSet::FORK | EventSet::EXEC | EventSet::EXIT,
            )
            .register(move |event| {
                record
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((event.kind(), event.task().pid().get()));
                Ok::<(), std::convert::Infallible>(())
            })
            .expect("register")
            .keep();
        let mut options = Options {
            kernel_filter: args.kernel_filter,
            ..Options::default()
        };
        if let Some(bytes) = args.rcvbuf {
            options.receive_buffer = bytes;
        }
        let mut source = ProcConnector::open(table, options).map_err(|e| e.to_string())?;
        println!(
            "end to end: mode {}, receive buffer {} bytes",
            source.mode(),
            source.receive_buffer()
        );
        let stop = source.stop_handle();
        let counters = source.counter_handle();
        let runner = thread::spawn(move || {
            let result = source.run(|_| {});
            (source, result)
        });

        let start = Instant::now();
        let per_worker = args.spawns.div_ceil(args.parallel);
        let workers: Vec<_> = (0..args.parallel)
            .map(|w| {
                let n = per_worker.min(args.spawns.saturating_sub(w * per_worker));
                thread::spawn(move || {
                    let mut pids = Vec::with_capacity(n);
                    for _ in 0..n {
                        if let Ok(mut child) = Command::new("/bin/true").spawn() {
                            pids.push(child.id());
                            let _ = child.wait();
                        }
                    }
                    pids
                })
            })
            .collect();
        let mut pids = Vec::new();
        for worker in workers {
            pids.extend(worker.join().map_err(|_| "a spawning thread panicked")?);
        }
        let spawn_took = start.elapsed();
        let wanted: HashSet<u32> = pids.iter().copied().collect();
        let exits = |seen: &Seen| {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(k, p)| *k == EventKind::Exit && wanted.contains(p))
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while exits(&seen) < pids.len() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let all_took = start.elapsed();
        stop.stop();
        let (source, result) = runner.join().map_err(|_| "the source thread panicked")?;
        result.map_err(|e| e.to_string())?;

        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let count = |kind| {
            seen.iter()
                .filter(|(k, p)| *k == kind && wanted.contains(p))
                .count()
        };
        let (forks, execs, exits) = (
            count(EventKind::Fork),
            count(EventKind::Exec),
            count(EventKind::Exit),
        );
        let c = counters.get();
        println!(
            "end to end: spawned {} processes ({} unique pids) in {spawn_took:.2?} ({}), all exits seen after {all_took:.2?}",
            pids.len(),
            wanted.len(),
            rate(pids.len(), spawn_took),
        );
        println!(
            "end to end: seen for the spawned pids: fork {forks}, exec {execs}, exit {exits}; machine-wide messages received {} ({} over {all_took:.2?})",
            c.received,
            rate(c.received as usize, all_took),
        );
        println!("end to end: counters {c:?}");
        println!(
            "end to end: receive buffer at the end {} bytes",
            source.receive_buffer()
        );
        // pids can be reused within a run: compare with the number of spawns.
        let complete = forks >= pids.len() && execs >= pids.len() && exits >= pids.len();
        Ok(complete && c.lost == 0)
    }

    pub(super) fn main() -> ExitCode {
        let args = match parse() {
            Ok(args) => args,
            Err(error) => {
                eprintln!("connector_bench: {error}");
                return ExitCode::FAILURE;
            }
        };
        let datagrams = synthesize(args.messages);
        let start = Instant::now();
        let mut decoded = 0usize;
        for datagram in &datagrams {
            for message in cn_proc::netlink_messages(datagram).flatten() {
                if cn_proc::decode(message.payload).is_ok() {
                    decoded += 1;
                }
            }
        }
        let took = start.elapsed();
        println!(
            "decode only: {decoded} messages in {took:.2?} = {}",
            rate(decoded, took)
        );
        let run = || -> Result<bool, String> {
            replay(&datagrams, EventSet::FORK | EventSet::EXEC | EventSet::EXIT)?;
            replay(&datagrams, EventSet::FORK | EventSet::EXIT)?;
            end_to_end(&args)
        };
        match run() {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("connector_bench: events were lost or missing");
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("connector_bench: {error}");
                ExitCode::FAILURE
            }
        }
    }
}
