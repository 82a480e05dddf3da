//! What `simulate` does with the subsystems beyond the lifecycle events (lock
//! acquisitions, semaphore operations, cpuset moves …), what it prints of them, and the
//! global invariants it checks once every task is gone.

use watchers_core::{EventKind, Task, WatcherTable};
use watchers_proc_connector::cn_proc::ProcEventMask;
use watchers_subsystems::{
    Mask, audit, cpusets, delayacct, irqflags, keys, lockdep, mempolicy, proc_events, profile,
    semundo,
};

use crate::rng::SplitMix64;

/// The listeners and objects a run creates, kept alive until its summary is printed.
pub struct Activity {
    _events: Option<proc_events::Subscriber>,
    _delays: Option<delayacct::Listener>,
    _profiler: profile::Profiler,
    cpusets: Vec<cpusets::CpusetId>,
    semaphores: Option<u32>,
    locks: [lockdep::LockClass; 3],
}

impl Activity {
    /// Turns on auditing, subscribes small listeners (so that overruns show), creates
    /// two cpusets and a semaphore set.
    pub fn start() -> Activity {
        audit::set_enabled(true);
        let cpusets = ["batch", "web"]
            .into_iter()
            .filter_map(|name| {
                cpusets::create(cpusets::CpusetId::ROOT, name)
                    .or_else(|_| cpusets::lookup(&format!("/{name}")).ok_or(()))
                    .ok()
            })
            .collect();
        Activity {
            _events: proc_events::subscribe(ProcEventMask::ALL, 4096).ok(),
            _delays: delayacct::subscribe(1024).ok(),
            _profiler: profile::register("taskwatch", |_| {}),
            cpusets,
            semaphores: semundo::semget(semundo::SemKey::Key(2006), 4).ok(),
            locks: ["tasklist_lock", "mmap_lock", "files_lock"].map(lockdep::lock_class),
        }
    }

    /// Does one random subsystem operation on `task`. Refusals (a task without state,
    /// a semaphore that would go negative, a full keyring) are part of the workload.
    pub fn act(&self, task: &Task, rng: &mut SplitMix64) -> &'static str {
        let pick = |rng: &mut SplitMix64, n: usize| rng.below(n as u64) as usize;
        match rng.below(8) {
            0 => {
                let class = self.locks[pick(rng, self.locks.len())];
                if lockdep::held_locks(task).contains(&class) {
                    let _ = lockdep::release(task, class);
                } else {
                    let _ = lockdep::acquire(task, class);
                }
                "lock"
            }
            1 => {
                let _ = if rng.below(2) == 0 {
                    irqflags::hardirqs_off(task)
                } else {
                    irqflags::hardirqs_on(task)
                };
                "irq"
            }
            2 => {
                if let Some(id) = self.semaphores {
                    let op = if rng.below(2) == 0 { 1 } else { -1 };
                    let num = pick(rng, 4) as u16;
                    let _ = semundo::semop(task, id, &[semundo::SemBuf::new(num, op).undo()]);
                }
                "semop"
            }
            3 => {
                if !self.cpusets.is_empty() {
                    let _ = cpusets::attach(task, self.cpusets[pick(rng, self.cpusets.len())]);
                }
                "cpuset"
            }
            4 => {
                let policy = match rng.below(3) {
                    0 => mempolicy::MemPolicy::Interleave(Mask::range(0, 3)),
                    1 => mempolicy::MemPolicy::Bind(Mask::single(1)),
                    _ => mempolicy::MemPolicy::Default,
                };
                let _ = mempolicy::set_mempolicy(task, policy);
                let _ = mempolicy::alloc_node(task, 0);
                "mempolicy"
            }
            5 => {
                let _ = keys::install_thread_keyring(task);
                let _ = keys::add_key(task, keys::KeyringKind::Session, "user:token", b"secret");
                "keys"
            }
            _ => {
                let micros = std::time::Duration::from_micros(rng.below(500));
                let _ = delayacct::record_cpu(task, micros, micros / 2);
                let _ = delayacct::record_blkio(task, micros);
                "delay"
            }
        }
    }

    /// Releases what `start` created, once no task is left.
    pub fn finish(self) {
        if let Some(id) = self.semaphores {
            let _ = semundo::remove(id);
        }
        for id in self.cpusets {
            let _ = cpusets::remove(id);
        }
    }
}

/// One line per enabled subsystem.
pub fn summary() -> Vec<String> {
    watchers_subsystems::summary()
        .into_iter()
        .map(|(name, line)| format!("{name:<12} {line}"))
        .collect()
}

/// The subsystems' global invariants once every task of the run but `init` has been
/// freed.
pub fn check(table: &WatcherTable, init: &Task, exits: u64) -> Vec<String> {
    let mut broken = Vec::new();
    let mut expect = |what: &str, got: u64, want: u64| {
        if got != want {
            broken.push(format!("{what}: {got}, expected {want}"));
        }
    };
    let a = audit::stats();
    expect(
        "audit contexts left",
        a.contexts_allocated - a.contexts_freed,
        0,
    );
    let s = semundo::stats();
    // A `CLONE_SYSVSEM` fork from init gives init an undo list, as in the kernel; init
    // never exits, so that one list stays.
    let init_lists = u64::from(semundo::undo_list(init).is_some());
    expect(
        "semaphore undo lists left besides init's",
        s.lists_allocated - s.lists_released,
        init_lists,
    );
    let c = cpusets::stats();
    expect("tasks left in cpusets", c.tasks as u64, 0);
    let m = mempolicy::stats();
    expect("memory policies left", m.allocated - m.freed, 0);
    let i = irqflags::stats();
    expect("irq-state trackers left", i.initialised - i.freed, 0);
    expect("irq states checked at exit", i.exits_checked, exits);
    let l = lockdep::stats();
    expect("held-lock stacks left", l.allocated - l.freed, 0);
    let k = keys::stats();
    expect("live keys", k.live_keys as u64, 0);
    expect("keyring sets left", k.tasks_allocated - k.tasks_freed, 0);
    let d = delayacct::stats();
    expect("delay accounts left", d.allocated - d.freed, 0);
    expect("taskstats records", d.records, exits);
    let p = profile::stats();
    expect("profiled exits", p.exits, exits);
    let e = proc_events::stats();
    expect(
        "proc-events exit messages",
        e.published_by_kind[EventKind::Exit.index()],
        table.dispatched(EventKind::Exit),
    );
    broken
}
