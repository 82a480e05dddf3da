//! The whole crate under a seeded workload: every subsystem on, more than 100,000
//! events, forks aborted by an injected failing watcher in the middle of the fork
//! order, tasks exiting with locks held or interrupts off; then every global invariant.
//!
//! This binary holds one test only: the subsystems' counters are process-wide, and the
//! invariants are checked on their absolute values.

#![cfg(all(
    feature = "audit",
    feature = "sysvipc",
    feature = "cpusets",
    feature = "numa",
    feature = "trace-irqflags",
    feature = "lockdep",
    feature = "keys",
    feature = "proc-events",
    feature = "task-delay-acct",
    feature = "profiling"
))]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use watchers_core::cn_proc::{self, ProcEventMask, what};
use watchers_core::{
    CloneFlags, Event, EventKind, EventSet, ExitStatus, Pid, Task, TaskError, TaskTable, Watcher,
    WatcherTable,
};
use watchers_subsystems::cpusets::{self, CpusetError, CpusetId};
use watchers_subsystems::mempolicy::{self, MemPolicy};
use watchers_subsystems::semundo::{self, SemBuf, SemKey};
use watchers_subsystems::{Mask, audit, delayacct, irqflags, keys, lockdep, proc_events, profile};

/// splitmix64: small, seeded, good enough to drive a workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Refuses every 13th fork that reaches it.
static FORKS_SEEN: AtomicU64 = AtomicU64::new(0);
static FORKS_REFUSED: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
#[error("injected failure of fork #{0}")]
struct Injected(u64);

fn every_13th_fork(_: &Event<'_>) -> Result<(), Injected> {
    let n = FORKS_SEEN.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_multiple_of(13) {
        FORKS_REFUSED.fetch_add(1, Ordering::Relaxed);
        return Err(Injected(n));
    }
    Ok(())
}

/// Between audit (50) and semundo (40): delayacct, cpusets, mempolicy, irqflags,
/// lockdep and audit see the fork and get it rolled back; semundo, keys and
/// proc-events never see it.
const INJECTED_PRIORITY: i32 = 45;

fn table() -> &'static WatcherTable {
    let mut watchers = watchers_subsystems::all_watchers();
    watchers.push(
        Watcher::new("workload::every_13th_fork", EventSet::FORK, |event| {
            watchers_core::IntoWatcherResult::into_watcher_result(every_13th_fork(event))
        })
        .with_priority(INJECTED_PRIORITY),
    );
    WatcherTable::from_watchers(watchers)
        .expect("a valid table")
        .leak()
}

const TARGET_EVENTS: u64 = 110_000;
const POPULATION: usize = 250;
const SEM_START: i32 = 10_000;
const NAMES: [&str; 6] = ["sh", "make", "cc1", "ld", "quiet", "worker"];
const LOCKS: [&str; 6] = [
    "tasklist_lock",
    "mm->mmap_lock",
    "inode->i_rwsem",
    "rq->lock",
    "files->file_lock",
    "sighand->siglock",
];

struct Expect {
    held_at_exit: u64,
    unbalanced_exits: u64,
}

struct World {
    tasks: TaskTable,
    rng: Rng,
    live: Vec<Pid>,
    sems: Vec<u32>,
    cpusets: Vec<CpusetId>,
    locks: Vec<lockdep::LockClass>,
    expect: Expect,
}

impl World {
    fn task(&self, pid: Pid) -> Arc<Task> {
        self.tasks.get(pid).expect("a live task")
    }

    fn random_live(&mut self) -> Option<Pid> {
        (!self.live.is_empty()).then(|| self.live[self.rng.below(self.live.len())])
    }

    fn fork(&mut self) {
        let from_init = self.live.is_empty() || self.rng.chance(10);
        let (parent, flags) = if from_init {
            (Pid::INIT, CloneFlags::empty())
        } else {
            let parent = self.random_live().unwrap_or(Pid::INIT);
            let flags = self.rng.pick(&[
                CloneFlags::empty(),
                CloneFlags::empty(),
                CloneFlags::SYSVSEM,
                CloneFlags::THREAD | CloneFlags::VM | CloneFlags::SIGHAND,
                CloneFlags::THREAD | CloneFlags::VM | CloneFlags::SIGHAND | CloneFlags::SYSVSEM,
            ]);
            (parent, flags)
        };
        match self.tasks.fork(parent, flags) {
            Ok(child) => self.live.push(child.pid()),
            Err(watchers_core::ForkError::Watcher(error)) => {
                assert_eq!(error.watcher, "workload::every_13th_fork");
            }
            Err(other) => panic!("unexpected fork failure: {other}"),
        }
    }

    /// Exits a live task, first making its locks and irq state balanced or, now and
    /// then, leaving them not.
    fn exit(&mut self, pid: Pid) {
        let task = self.task(pid);
        if self.rng.chance(4) {
            let class = self.rng.pick(&self.locks);
            let _ = lockdep::acquire(&task, class);
        } else {
            for class in lockdep::held_locks(&task).into_iter().rev() {
                lockdep::release(&task, class).expect("held");
            }
        }
        if self.rng.chance(3) {
            irqflags::hardirqs_off(&task).expect("irq state");
        } else {
            let state = irqflags::state(&task).expect("irq state");
            if !state.hardirqs_enabled {
                irqflags::hardirqs_on(&task).expect("irq state");
            }
            for _ in 0..state.softirq_disable_depth {
                irqflags::softirqs_on(&task).expect("irq state");
            }
        }
        let holds = !lockdep::held_locks(&task).is_empty();
        let unbalanced = !irqflags::state(&task).expect("irq state").balanced();
        self.expect.held_at_exit += u64::from(holds);
        self.expect.unbalanced_exits += u64::from(unbalanced);

        let status = match self.rng.below(10) {
            0 => ExitStatus::signaled(self.rng.pick(&[9, 11, 15])),
            1 => ExitStatus::exited(1),
            _ => ExitStatus::exited(0),
        };
        self.live.retain(|&p| p != pid);
        match self.tasks.exit_with(pid, status) {
            Ok(()) => assert!(!holds && !unbalanced, "an unbalanced exit went unreported"),
            Err(TaskError::Watcher(error)) => {
                assert!(holds || unbalanced, "unexpected exit error: {error}");
                let watcher = error.watcher.as_ref();
                assert!(
                    watcher.ends_with("lockdep::watch_exit")
                        || watcher.ends_with("irqflags::watch_exit"),
                    "{watcher}"
                );
            }
            Err(other) => panic!("unexpected exit failure: {other}"),
        }
    }

    fn step(&mut self) {
        let crowded = self.live.len() >= POPULATION;
        let Some(pid) = self.random_live() else {
            self.fork();
            return;
        };
        match self.rng.below(100) {
            0..=17 if !crowded => self.fork(),
            0..=17 => self.exit(pid),
            18..=31 => self.exit(pid),
            32..=37 => {
                let _ = self.tasks.wait(pid);
            }
            38..=42 => {
                let path = self.rng.pick(&["/bin/sh", "/usr/bin/make", "/bin/quiet"]);
                self.tasks.exec(pid, path).expect("exec");
            }
            43..=45 => {
                let uid = self.rng.pick(&[0, 1000, 1001]);
                if self.rng.chance(50) {
                    self.tasks.setuid(pid, uid).expect("setuid");
                } else {
                    self.tasks.seteuid(pid, uid).expect("seteuid");
                }
            }
            46..=47 => {
                let gid = self.rng.pick(&[0, 100, 1000]);
                self.tasks
                    .setresgid(pid, Some(gid), None, None)
                    .expect("setgid");
            }
            48 => {
                // A process-group leader is refused (no event).
                let _ = self.tasks.setsid(pid);
            }
            49..=51 => {
                let name = self.rng.pick(&NAMES);
                self.tasks.set_comm(pid, name).expect("set_comm");
            }
            52 => {
                let tracer = if self.rng.chance(50) {
                    self.random_live()
                } else {
                    None
                };
                self.tasks.ptrace(pid, tracer).expect("ptrace");
            }
            53 => self.tasks.coredump(pid, 11).expect("coredump"),
            54..=61 => {
                let task = self.task(pid);
                let id = self.rng.pick(&self.sems);
                let num = self.rng.below(4) as u16;
                let op = self.rng.pick(&[-2i16, -1, 1, 2, 3]);
                semundo::semop(&task, id, &[SemBuf::new(num, op).undo()]).expect("semop");
            }
            62..=64 => {
                let task = self.task(pid);
                let set = self.rng.pick(&self.cpusets);
                cpusets::attach(&task, set).expect("attach");
            }
            65..=67 => {
                let task = self.task(pid);
                let policy = match self.rng.below(4) {
                    0 => MemPolicy::Default,
                    1 => MemPolicy::Bind(Mask::range(0, 1)),
                    2 => MemPolicy::Interleave(Mask::range(0, 3)),
                    _ => MemPolicy::Preferred(Mask::single(2)),
                };
                mempolicy::set_mempolicy(&task, policy).expect("set_mempolicy");
                for _ in 0..3 {
                    mempolicy::alloc_node(&task, 0).expect("alloc_node");
                }
            }
            68..=73 => {
                let task = self.task(pid);
                match self.rng.below(4) {
                    0 => irqflags::hardirqs_off(&task),
                    1 => irqflags::hardirqs_on(&task),
                    2 => irqflags::softirqs_off(&task),
                    _ => match irqflags::softirqs_on(&task) {
                        Err(irqflags::IrqflagsError::SoftirqUnderflow(_)) => Ok(()),
                        other => other,
                    },
                }
                .expect("irq op");
            }
            74..=83 => {
                let task = self.task(pid);
                let held = lockdep::held_locks(&task);
                if !held.is_empty() && self.rng.chance(50) {
                    let class = self.rng.pick(&held);
                    lockdep::release(&task, class).expect("held");
                } else {
                    let class = self.rng.pick(&self.locks);
                    match lockdep::acquire(&task, class) {
                        Ok(_) | Err(lockdep::LockdepError::Recursive { .. }) => {}
                        Err(error) => panic!("acquire: {error}"),
                    }
                }
            }
            84..=89 => {
                let task = self.task(pid);
                let result = match self.rng.below(5) {
                    0 => keys::install_thread_keyring(&task).map(drop),
                    1 => keys::install_process_keyring(&task).map(drop),
                    2 => keys::join_session_keyring(&task, None).map(drop),
                    _ => {
                        let ring = self.rng.pick(&[
                            keys::KeyringKind::Thread,
                            keys::KeyringKind::Process,
                            keys::KeyringKind::Session,
                        ]);
                        let name = self.rng.pick(&["token", "cert", "krb5"]);
                        match keys::add_key(&task, ring, name, b"secret") {
                            Err(keys::KeysError::NoKeyring { .. }) => Ok(()),
                            other => other.map(drop),
                        }
                    }
                };
                result.expect("keys");
            }
            _ => {
                let task = self.task(pid);
                let micros = self.rng.below(50) as u64;
                delayacct::record_cpu(
                    &task,
                    Duration::from_micros(micros),
                    Duration::from_micros(micros / 2),
                )
                .expect("delays");
                if self.rng.chance(30) {
                    delayacct::record_blkio(&task, Duration::from_micros(micros * 10))
                        .expect("delays");
                }
            }
        }
    }

    fn dispatched(&self) -> u64 {
        EventKind::ALL
            .iter()
            .map(|&kind| self.tasks.watchers().dispatched(kind))
            .sum()
    }
}

#[test]
fn seeded_workload_keeps_every_invariant() {
    let started = Instant::now();

    // Configuration and observers.
    audit::set_enabled(true);
    audit::set_backlog_limit(1024).expect("a limit");
    audit::add_rule(audit::AuditRule::new(EventSet::EXEC, audit::RuleAction::Never).comm("quiet"));
    let all_events = proc_events::subscribe(ProcEventMask::KERNEL_ALL, 8192).expect("subscribe");
    let failures =
        proc_events::subscribe(ProcEventMask(what::NONZERO_EXIT), 64).expect("subscribe");
    let taskstats = delayacct::subscribe(4096).expect("subscribe");
    let profiled = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let profiler = {
        let profiled = profiled.clone();
        profile::register("workload", move |notice: &profile::ExitNotice| {
            *profiled
                .lock()
                .expect("not poisoned")
                .entry(notice.comm.clone())
                .or_insert(0) += 1;
        })
    };

    let sems: Vec<u32> = (0..3)
        .map(|i| {
            let id = semundo::semget(SemKey::Key(0x7000 + i), 4).expect("semget");
            for num in 0..4 {
                semundo::set_value(id, num, SEM_START).expect("setval");
            }
            id
        })
        .collect();
    let work = cpusets::create_with(CpusetId::ROOT, "work", Mask::range(0, 7), Mask::range(0, 1))
        .expect("cpuset");
    let batch =
        cpusets::create_with(work, "batch", Mask::range(4, 7), Mask::single(1)).expect("cpuset");
    let rt = cpusets::create_with(CpusetId::ROOT, "rt", Mask::range(0, 1), Mask::single(0))
        .expect("cpuset");
    let locks: Vec<lockdep::LockClass> =
        LOCKS.iter().map(|name| lockdep::lock_class(name)).collect();

    let mut world = World {
        tasks: TaskTable::with_table(table()),
        rng: Rng(0x5eed_2006),
        live: Vec::new(),
        sems: sems.clone(),
        cpusets: vec![CpusetId::ROOT, work, batch, rt],
        locks: locks.clone(),
        expect: Expect {
            held_at_exit: 0,
            unbalanced_exits: 0,
        },
    };

    // A scripted inversion first: A then B in one task, B then A in another.
    {
        let one = world
            .tasks
            .fork(Pid::INIT, CloneFlags::empty())
            .expect("fork");
        let two = world
            .tasks
            .fork(Pid::INIT, CloneFlags::empty())
            .expect("fork");
        let (a, b) = (locks[0], locks[1]);
        lockdep::acquire(&one, a).expect("acquire");
        lockdep::acquire(&one, b).expect("acquire");
        lockdep::release(&one, b).expect("release");
        lockdep::release(&one, a).expect("release");
        lockdep::acquire(&two, b).expect("acquire");
        let inversion = lockdep::acquire(&two, a)
            .expect("acquire")
            .expect("an inversion");
        assert_eq!(inversion.new_order, [LOCKS[1], LOCKS[0]]);
        assert_eq!(inversion.old_order, [LOCKS[0], LOCKS[1]]);
        lockdep::release(&two, a).expect("release");
        lockdep::release(&two, b).expect("release");
        world.live.extend([one.pid(), two.pid()]);
    }

    let mut drained_messages = 0u64;
    let mut last_seq: BTreeMap<u32, u32> = BTreeMap::new();
    // Reads the proc-events subscriber, checking the per-CPU sequence numbers.
    let drain_events = |last_seq: &mut BTreeMap<u32, u32>| -> u64 {
        let mut n = 0;
        for bytes in all_events.drain() {
            let message = cn_proc::decode(&bytes).expect("a valid message");
            if let Some(&previous) = last_seq.get(&message.cpu) {
                assert_eq!(
                    message.header.seq,
                    previous.wrapping_add(1),
                    "per-CPU sequence"
                );
            }
            last_seq.insert(message.cpu, message.header.seq);
            n += 1;
        }
        taskstats.drain();
        n
    };

    let mut steps = 0u64;
    let mut busy_checked = false;
    while world.dispatched() < TARGET_EVENTS {
        world.step();
        steps += 1;
        if steps.is_multiple_of(500) {
            drained_messages += drain_events(&mut last_seq);
        }
        // auditd reads rarely: the backlog overflows now and then.
        if steps.is_multiple_of(5_000) {
            audit::read_records(usize::MAX);
        }
        if !busy_checked && cpusets::info(work).expect("work").tasks > 0 {
            assert!(matches!(
                cpusets::remove(work),
                Err(CpusetError::Busy { .. })
            ));
            busy_checked = true;
        }
    }

    // Teardown: every task exits (zombies are reaped as their parents go).
    while let Some(&pid) = world.live.first() {
        world.exit(pid);
        if world.live.len().is_multiple_of(100) {
            drained_messages += drain_events(&mut last_seq);
        }
    }
    drained_messages += drain_events(&mut last_seq);

    // ---- The invariants ----
    let tasks = &world.tasks;
    let table = tasks.watchers();
    let d = |kind| table.dispatched(kind);
    let total = world.dispatched();
    let stats = tasks.stats();
    eprintln!(
        "workload: {steps} steps, {total} events dispatched, {} forks ({} refused), {} exits in {:?}",
        stats.forks,
        stats.failed_forks,
        stats.exits,
        started.elapsed()
    );
    eprint!("{}", watchers_subsystems::summary_text());
    assert!(total >= 100_000);

    // The task model: only init is left; every task forked was freed.
    assert_eq!(stats.tasks, 1, "only init is left");
    assert_eq!(stats.frees, stats.forks);
    assert_eq!(stats.exits, stats.forks);
    assert_eq!(stats.failed_forks, FORKS_REFUSED.load(Ordering::Relaxed));
    assert!(stats.failed_forks > 100, "forks were aborted");
    assert_eq!(d(EventKind::Fork), stats.forks + stats.failed_forks);

    // Errors were recorded only where expected.
    for watcher in table.watchers() {
        let expected = match watcher.name.as_str() {
            "workload::every_13th_fork" => stats.failed_forks,
            "watchers_subsystems::lockdep::watch_exit" => world.expect.held_at_exit,
            "watchers_subsystems::irqflags::watch_exit" => world.expect.unbalanced_exits,
            _ => 0,
        };
        assert_eq!(watcher.errors, expected, "{}", watcher.name);
    }

    // No per-task state left, whether the fork succeeded or was rolled back.
    let audit_stats = audit::stats();
    assert_eq!(audit_stats.contexts_live(), 0);
    assert_eq!(
        audit_stats.contexts_allocated,
        stats.forks + stats.failed_forks
    );
    assert_eq!(mempolicy::stats().live(), 0);
    assert_eq!(irqflags::stats().live(), 0);
    assert_eq!(lockdep::stats().live(), 0);
    assert_eq!(delayacct::stats().live(), 0);
    let keys_stats = keys::stats();
    assert_eq!(keys_stats.tasks_live(), 0);
    assert_eq!(
        keys_stats.tasks_allocated, stats.forks,
        "keys never saw a refused fork"
    );
    for init_state in [
        audit::context(tasks.init()).is_some(),
        mempolicy::task_policy(tasks.init()).is_some(),
        semundo::undo_list(tasks.init()).is_some(),
        cpusets::membership(tasks.init()).is_some(),
    ] {
        assert!(!init_state, "init has no subsystem state");
    }

    // Reference counts back to zero, undo applied exactly once.
    assert_eq!(keys::live_keys(), 0, "every key released");
    assert!(keys_stats.created > 100);
    let sem = semundo::stats();
    assert_eq!(sem.lists_live(), 0);
    assert!(sem.lists_applied > 0 && sem.semops > 1000);
    for &id in &sems {
        for num in 0..4 {
            assert_eq!(semundo::value(id, num), Ok(SEM_START), "set {id} sem {num}");
        }
        semundo::remove(id).expect("remove");
    }

    // Cpuset counts are zero and every cpuset can go.
    for info in cpusets::list() {
        assert_eq!(info.tasks, 0, "{}", info.path);
    }
    assert_eq!(cpusets::stats().tasks, 0);
    assert!(busy_checked);
    cpusets::remove(batch).expect("remove");
    cpusets::remove(work).expect("remove");
    cpusets::remove(rt).expect("remove");

    // Audit: every exec, id change and exit of an audited task became a record, a
    // lost record or a filtered one.
    let audited = d(EventKind::Exec) + d(EventKind::Uid) + d(EventKind::Gid) + d(EventKind::Exit);
    assert_eq!(audit_stats.events_audited, audited);
    assert_eq!(
        audit_stats.records_written + audit_stats.records_lost + audit_stats.records_filtered,
        audited
    );
    assert!(audit_stats.records_lost > 0 && audit_stats.records_filtered > 0);
    assert_eq!(
        audit_stats.records_read + audit_stats.backlog as u64,
        audit_stats.records_written
    );

    // Process events: one message per event dispatched (forks: only those that
    // happened), each delivered or counted.
    let pe = proc_events::stats();
    for kind in EventKind::ALL {
        let expected = match kind {
            EventKind::Fork => stats.forks,
            EventKind::Free => 0,
            other => d(other),
        };
        assert_eq!(pe.published_by_kind[kind.index()], expected, "{kind}");
    }
    assert_eq!(
        pe.published,
        total - d(EventKind::Free) - stats.failed_forks
    );
    assert_eq!(pe.unheard, 0);
    assert_eq!(all_events.overruns(), 0);
    assert_eq!(all_events.received(), pe.published);
    assert_eq!(drained_messages, pe.published);
    let nonzero_exits = failures.received() + failures.overruns();
    assert!(failures.overruns() > 0, "the small queue overran");
    assert!(nonzero_exits > 0 && nonzero_exits < d(EventKind::Exit));
    assert_eq!(pe.delivered + pe.overruns + pe.filtered, 2 * pe.published);

    // Delay accounting: one record per exit, to the one listener.
    let da = delayacct::stats();
    assert_eq!(da.records, d(EventKind::Exit));
    assert_eq!(da.delivered + da.dropped, da.records);

    // Profiling: every exit, under its name.
    assert_eq!(profile::stats().exits, d(EventKind::Exit));
    assert_eq!(
        profile::exit_counts().values().sum::<u64>(),
        d(EventKind::Exit)
    );
    assert_eq!(
        *profiled.lock().expect("not poisoned"),
        profile::exit_counts()
    );
    drop(profiler);

    // Lockdep and irqflags reported exactly the exits the workload unbalanced.
    let ld = lockdep::stats();
    assert_eq!(ld.held_at_exit, world.expect.held_at_exit);
    assert!(ld.held_at_exit > 10);
    assert!(ld.inversions >= 1);
    assert!(lockdep::reports().iter().any(|r| matches!(
        r,
        lockdep::LockdepReport::Inversion(i) if i.new_order == [LOCKS[1], LOCKS[0]]
    )));
    let irq = irqflags::stats();
    assert_eq!(irq.unbalanced, world.expect.unbalanced_exits);
    assert_eq!(irq.exits_checked, d(EventKind::Exit));

    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the workload should take seconds"
    );
}
