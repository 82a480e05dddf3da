//! `taskwatch simulate`: a seeded workload on the task model, a summary, and the
//! invariants checked at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use watchers_core::{
    CloneFlags, DEFAULT_PID_MAX, EventKind, EventSet, ForkError, Pid, Registration, TaskError,
    TaskState, TaskTable, WatcherTable,
};

use crate::examples;
use crate::numbers;

/// The most fork attempts `--tasks` takes (the task model's pids may run out before).
const MAX_TASKS: u64 = 100_000_000;
use crate::rng::SplitMix64;
use crate::subsystems::Activity;

/// `taskwatch simulate` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Seed of the workload; the same seed gives the same run.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true,
          value_parser = numbers::whole(0, u64::MAX, "the seed"))]
    pub seed: u64,
    /// How many forks to attempt.
    #[arg(long, default_value_t = 10_000, allow_negative_numbers = true,
          value_parser = numbers::whole(1, MAX_TASKS, "the number of fork attempts"))]
    pub tasks: u64,
    /// Also register a few runtime watchers (a plugin's, a per-uid counter, a fork limit).
    #[arg(long)]
    pub with_runtime_watchers: bool,
    /// Register a runtime watcher that refuses every Nth fork, to exercise rollback.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = numbers::whole(1, u64::MAX, "N"))]
    pub fail_every: Option<u64>,
    /// The task model's highest pid: the workload stops with an error when every pid
    /// is taken.
    #[arg(long, value_name = "N", default_value_t = u64::from(DEFAULT_PID_MAX), allow_negative_numbers = true,
          value_parser = numbers::whole(2, PID_MAX_LIMIT, "pid_max"))]
    pub pid_max: u64,
}

/// The largest pid_max Linux allows (`PID_MAX_LIMIT` on 64-bit).
const PID_MAX_LIMIT: u64 = 4_194_304;

/// What a run did, and what broke.
pub struct Report {
    /// The summary to print.
    pub text: String,
    /// Broken invariants; empty when the run is sound.
    pub violations: Vec<String>,
    /// Why the workload stopped early (the model ran out of pids), if it did.
    pub error: Option<String>,
}

const PROGRAMS: [&str; 8] = [
    "/bin/sh",
    "/usr/bin/make",
    "/usr/bin/cc",
    "/usr/sbin/sshd",
    "/bin/ls",
    "/usr/bin/python3",
    "/sbin/ip",
    "/usr/bin/git",
];

const NAMES: [&str; 5] = [
    "worker",
    "kworker/0:1",
    "builder",
    "a-very-long-process-name",
    "db",
];

/// Runs the workload on `tasks` and checks the invariants.
pub fn run(args: &SimulateArgs, table: &'static WatcherTable) -> Report {
    let registrations = register_runtime_watchers(args, table);
    // Bounded by the option's parser.
    let tasks = TaskTable::with_pid_max(table, args.pid_max as u32);
    let before = Baseline::take(table);
    let activity = Activity::start();
    let mut sim = Simulation::new(&tasks, &activity, args.seed);
    sim.run(args.tasks);
    sim.drain();
    let violations = check(&tasks, table, &before, &sim);

    let mut text = String::new();
    let stats = tasks.stats();
    let _ = writeln!(
        text,
        "taskwatch simulate: seed {}, {} fork attempts: {} forked, {} refused, {} exited, {} freed",
        args.seed, args.tasks, stats.forks, stats.failed_forks, stats.exits, stats.frees
    );
    let _ = writeln!(text, "\noperations:");
    for (op, count) in &sim.ops {
        let _ = writeln!(text, "  {op:<10} {count:>8}");
    }
    let _ = writeln!(text, "\nevents dispatched (to at least one watcher):");
    for kind in EventKind::ALL {
        let _ = writeln!(
            text,
            "  {:<10} {:>8}",
            kind.name(),
            table.dispatched(kind) - before.dispatched[kind.index()]
        );
    }
    let _ = writeln!(text, "\nwatchers (fork order): calls, errors");
    for w in table.watchers() {
        let kind = if w.runtime { "runtime" } else { "static" };
        let _ = writeln!(
            text,
            "  {:<44} {:<8} {:>8} {:>6}",
            w.name, kind, w.calls, w.errors
        );
    }
    let summary = crate::subsystems::summary();
    if !summary.is_empty() {
        let _ = writeln!(text, "\nsubsystems:");
        for line in summary {
            let _ = writeln!(text, "  {line}");
        }
    }

    let _ = writeln!(
        text,
        "\ninvariants: {}",
        if violations.is_empty() {
            format!(
                "ok ({} forks seen by `lifecycle`, each freed exactly once; {} watcher errors on other events)",
                examples::FORKS_SEEN.load(Ordering::Relaxed) - before.forks_seen,
                sim.watcher_errors
            )
        } else {
            format!("{} BROKEN", violations.len())
        }
    );
    let error = sim.failure.take();
    drop(sim);
    activity.finish();
    drop(registrations);
    Report {
        text,
        violations,
        error,
    }
}

/// Counters that other runs in the same process may already have moved.
struct Baseline {
    dispatched: [u64; EventKind::COUNT],
    forks_seen: u64,
    frees_seen: u64,
    unmatched: u64,
}

impl Baseline {
    fn take(table: &WatcherTable) -> Baseline {
        Baseline {
            dispatched: EventKind::ALL.map(|kind| table.dispatched(kind)),
            forks_seen: examples::FORKS_SEEN.load(Ordering::Relaxed),
            frees_seen: examples::FREES_SEEN.load(Ordering::Relaxed),
            unmatched: examples::UNMATCHED_FREES.load(Ordering::Relaxed),
        }
    }
}

fn check(
    tasks: &TaskTable,
    table: &WatcherTable,
    before: &Baseline,
    sim: &Simulation<'_>,
) -> Vec<String> {
    let stats = tasks.stats();
    let mut broken = Vec::new();
    let mut expect = |what: &str, got: u64, want: u64| {
        if got != want {
            broken.push(format!("{what}: {got}, expected {want}"));
        }
    };
    let seen = |counter: &AtomicU64, base: u64| counter.load(Ordering::Relaxed) - base;
    let dispatched = |kind: EventKind| table.dispatched(kind) - before.dispatched[kind.index()];

    expect("tasks left besides init", stats.tasks as u64 - 1, 0);
    expect("frees of successful forks", stats.frees, stats.forks);
    expect(
        "forks refused by a watcher",
        stats.failed_forks,
        sim.refused_forks,
    );
    expect(
        "fork dispatches",
        dispatched(EventKind::Fork),
        stats.forks + stats.failed_forks,
    );
    expect("exit dispatches", dispatched(EventKind::Exit), stats.exits);
    expect(
        "free dispatches (reaping)",
        dispatched(EventKind::Free),
        stats.frees,
    );
    expect(
        "fork attempts seen by `lifecycle`",
        seen(&examples::FORKS_SEEN, before.forks_seen),
        stats.forks + stats.failed_forks,
    );
    // `lifecycle` runs first, so every refused fork had reached it and was rolled back.
    expect(
        "frees seen by `lifecycle`",
        seen(&examples::FREES_SEEN, before.frees_seen),
        stats.forks + stats.failed_forks,
    );
    expect(
        "frees without a matching fork, or twice",
        seen(&examples::UNMATCHED_FREES, before.unmatched),
        0,
    );
    broken.extend(crate::subsystems::check(table, tasks.init(), stats.exits));
    broken
}

struct Simulation<'t> {
    tasks: &'t TaskTable,
    activity: &'t Activity,
    rng: SplitMix64,
    /// Running tasks other than init.
    live: Vec<Pid>,
    ops: BTreeMap<&'static str, u64>,
    watcher_errors: u64,
    refused_forks: u64,
    /// Set when the workload cannot go on (no free pid): the run stops there.
    failure: Option<String>,
}

impl<'t> Simulation<'t> {
    /// A workload on `tasks` with nothing done yet, its choices drawn from `seed`.
    fn new(tasks: &'t TaskTable, activity: &'t Activity, seed: u64) -> Simulation<'t> {
        Simulation {
            tasks,
            activity,
            rng: SplitMix64::new(seed),
            live: Vec::new(),
            ops: BTreeMap::new(),
            watcher_errors: 0,
            refused_forks: 0,
            failure: None,
        }
    }

    fn count(&mut self, op: &'static str) {
        *self.ops.entry(op).or_default() += 1;
    }

    /// A watcher error on a non-fork event is recorded, not fatal; anything else means
    /// the workload asked for something impossible, which is a bug here.
    fn note(&mut self, result: Result<(), TaskError>) {
        match result {
            Ok(()) => {}
            Err(TaskError::Watcher(_)) => self.watcher_errors += 1,
            Err(TaskError::GroupLeader(_)) => {}
            Err(error) => {
                self.failure.get_or_insert_with(|| {
                    format!("the workload asked for an impossible operation: {error}")
                });
            }
        }
    }

    /// A running task, and its index in `live`.
    fn pick(&mut self) -> Option<(usize, Pid)> {
        if self.live.is_empty() {
            return None;
        }
        let index = self.rng.below(self.live.len() as u64) as usize;
        Some((index, self.live[index]))
    }

    fn run(&mut self, fork_attempts: u64) {
        let mut attempts = 0;
        while attempts < fork_attempts && self.failure.is_none() {
            let roll = self.rng.below(100);
            let picked = self.pick();
            match (roll, picked) {
                (_, None) | (0..=29, _) => {
                    attempts += 1;
                    self.fork(picked.map_or(Pid::INIT, |(_, pid)| pid));
                }
                (30..=44, Some((_, pid))) => {
                    self.count("exec");
                    let program = PROGRAMS[self.rng.below(PROGRAMS.len() as u64) as usize];
                    let result = self.tasks.exec(pid, program);
                    self.note(result);
                }
                (45..=49, Some((_, pid))) => {
                    self.count("setuid");
                    let uid = [0, 1000, 1001, 65534][self.rng.below(4) as usize];
                    let result = if self.rng.below(2) == 0 {
                        self.tasks.setuid(pid, uid)
                    } else {
                        self.tasks.setresuid(pid, None, Some(uid), None)
                    };
                    self.note(result);
                }
                (50..=53, Some((_, pid))) => {
                    self.count("setgid");
                    let gid = [0, 100, 1000][self.rng.below(3) as usize];
                    let result = self.tasks.setgid(pid, gid);
                    self.note(result);
                }
                (54..=56, Some((_, pid))) => {
                    self.count("setsid");
                    let result = self.tasks.setsid(pid).map(|_| ());
                    self.note(result);
                }
                (57..=60, Some((_, pid))) => {
                    self.count("comm");
                    let name = NAMES[self.rng.below(NAMES.len() as u64) as usize];
                    let result = self.tasks.set_comm(pid, name);
                    self.note(result);
                }
                (61..=62, Some((_, pid))) => {
                    self.count("ptrace");
                    let tracer = (self.rng.below(2) == 0).then_some(Pid::INIT);
                    let result = self.tasks.ptrace(pid, tracer);
                    self.note(result);
                }
                (63, Some((_, pid))) => {
                    self.count("coredump");
                    let result = self.tasks.coredump(pid, 11);
                    self.note(result);
                }
                (64..=87, Some((at, pid))) => {
                    // `live` holds each pid once and its order is only what `pick`
                    // indexes: a swap keeps an exit O(1) where a search made large runs
                    // quadratic.
                    self.live.swap_remove(at);
                    self.exit(pid);
                }
                (88..=95, Some((_, pid))) => {
                    if let Some(task) = self.tasks.get(pid) {
                        let op = self.activity.act(&task, &mut self.rng);
                        self.count(op);
                    }
                }
                (_, Some((_, pid))) => {
                    self.count("wait");
                    let result = self.tasks.wait(pid).map(|_| ());
                    self.note(result);
                }
            }
        }
    }

    fn fork(&mut self, parent: Pid) {
        let flags = match self.rng.below(10) {
            0 => CloneFlags::THREAD | CloneFlags::VM | CloneFlags::SIGHAND | CloneFlags::SYSVSEM,
            1 | 2 => CloneFlags::SYSVSEM,
            _ => CloneFlags::empty(),
        };
        match self.tasks.fork(parent, flags) {
            Ok(child) => {
                self.count("fork");
                self.live.push(child.pid());
            }
            Err(ForkError::Watcher(_)) => {
                self.count("fork-refused");
                self.refused_forks += 1;
            }
            Err(ForkError::PidsExhausted(pid_max)) => {
                self.failure = Some(format!(
                    "the workload ran out of pids after {} forks: {} tasks alive, and the task model's pid_max is {pid_max}; \
                     use a smaller --tasks or a larger --pid-max",
                    self.ops.get("fork").copied().unwrap_or(0),
                    self.live.len()
                ));
            }
            Err(error) => {
                self.failure = Some(format!("a fork failed: {error}"));
            }
        }
    }

    /// Exits `pid`, which the caller has taken out of `live`.
    fn exit(&mut self, pid: Pid) {
        self.count("exit");
        let code = [0, 0, 0, 1, 2][self.rng.below(5) as usize];
        let result = self.tasks.exit(pid, code);
        self.note(result);
    }

    /// Ends every task and reaps every zombie, so that nothing but init is left.
    fn drain(&mut self) {
        while let Some(pid) = self.live.pop() {
            if self
                .tasks
                .get(pid)
                .is_some_and(|t| t.state() == TaskState::Running)
            {
                self.exit(pid);
            }
        }
        // Zombies whose parents are still around wait for them; parents are all gone by
        // now, so init has reaped everything. Anything left is a bug `check` reports.
        for task in self.tasks.tasks() {
            if task.state() == TaskState::Zombie {
                let result = self.tasks.reap(task.parent(), task.pid()).map(|_| ());
                self.note(result);
            }
        }
    }
}

/// The runtime watchers `--with-runtime-watchers` and `--fail-every` add.
pub fn register_runtime_watchers(
    args: &SimulateArgs,
    table: &'static WatcherTable,
) -> Vec<Registration<'static>> {
    let mut registrations = Vec::new();
    if args.with_runtime_watchers {
        let execs = Arc::new(AtomicU64::new(0));
        let seen = execs.clone();
        registrations.extend(
            table
                .watcher("plugin::exec-counter", EventSet::EXEC)
                .register(move |_| {
                    seen.fetch_add(1, Ordering::Relaxed);
                    Ok::<(), std::convert::Infallible>(())
                })
                .ok(),
        );
        let per_uid: Arc<Mutex<BTreeMap<u32, u64>>> = Arc::default();
        registrations.extend(
            table
                .watcher("plugin::uid-changes", EventSet::UID)
                .priority(5)
                .register(move |event| {
                    let mut map = per_uid.lock().map_err(|_| "uid table poisoned")?;
                    *map.entry(event.task().uids().effective).or_default() += 1;
                    Ok::<(), &str>(())
                })
                .ok(),
        );
        registrations.extend(
            table
                .watcher("plugin::teardown-order", EventSet::EXIT | EventSet::FREE)
                .priority(-100)
                .register(|_| Ok::<(), std::convert::Infallible>(()))
                .ok(),
        );
    }
    if let Some(every) = args.fail_every.filter(|&n| n > 0) {
        let forks = AtomicU64::new(0);
        registrations.extend(
            table
                .watcher("taskwatch::fork-limit", EventSet::FORK)
                .register(move |_| {
                    if (forks.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(every) {
                        Err(format!("refusing every {every}th fork"))
                    } else {
                        Ok(())
                    }
                })
                .ok(),
        );
    }
    registrations
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check a run ends with sees a real break: a task the workload leaves running.
    #[test]
    fn a_task_left_running_breaks_an_invariant() {
        let table = watchers_core::freeze().expect("no duplicate names");
        let tasks = TaskTable::with_pid_max(table, 1000);
        let before = Baseline::take(table);
        let activity = Activity::start();
        let mut sim = Simulation::new(&tasks, &activity, 3);
        sim.run(50);
        sim.drain();
        assert_eq!(check(&tasks, table, &before, &sim), Vec::<String>::new());
        let stray = tasks.fork(Pid::INIT, CloneFlags::empty()).expect("a fork");
        let broken = check(&tasks, table, &before, &sim);
        assert!(
            broken
                .iter()
                .any(|v| v == "tasks left besides init: 1, expected 0"),
            "{broken:?}"
        );
        tasks.exit(stray.pid(), 0).expect("exit");
        drop(sim);
        activity.finish();
    }
}
