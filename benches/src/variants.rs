//! Every dispatch variant for one watcher count, built once and timed side by side.
//!
//! The timed loops live in this crate; the hand-written calls' loop lives next to the
//! watcher functions ([`time_direct`]), so that those calls are real `call`
//! instructions, as the kernel's were.

use std::hint::black_box;
use std::time::Duration;

use watchers_core::{Event, EventData, EventKind, EventSet, Registration, WatcherTable};

use crate::chains::{ArcSwapChain, MutexChain, RwLockChain};
use crate::measure::threaded;
use crate::watchers::{
    FUNCS, NAMES, direct_0, direct_1, direct_8, direct_64, direct_1024, records, time_direct,
};

/// The event the benchmark watchers watch ([`exec_event`](crate::measure::exec_event)).
pub const WATCHED: EventSet = EventSet::EXEC;

/// The event no benchmark watcher wants (the cost of a hook nobody uses).
pub const UNWANTED: EventKind = EventKind::Comm;

/// A way of calling the watchers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Hand-written direct calls of `#[inline(never)]` functions, inlined into the loop
    /// as hand-written code would be (the kernel before the patches).
    Direct,
    /// The frozen table ([`WatcherTable::dispatch`]).
    Table,
    /// The frozen table with a runtime watcher mixed in.
    TableWithRuntime,
    /// The blocking-notifier-chain equivalent.
    RwLock,
    /// A list behind a mutex.
    Mutex,
    /// The atomic/RCU-notifier-chain equivalent.
    ArcSwap,
}

impl Via {
    /// Every variant.
    pub const ALL: [Via; 6] = [
        Via::Direct,
        Via::Table,
        Via::TableWithRuntime,
        Via::RwLock,
        Via::Mutex,
        Via::ArcSwap,
    ];

    /// The variant's short name.
    pub const fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Table => "table",
            Via::TableWithRuntime => "table+runtime",
            Via::RwLock => "rwlock",
            Via::Mutex => "mutex",
            Via::ArcSwap => "arc-swap",
        }
    }
}

/// The variants over the same `n` watchers (`w0` .. `w{n-1}`) on [`WATCHED`].
pub struct Variants {
    /// How many watchers each variant calls.
    pub n: usize,
    /// The frozen table of the `n` watchers.
    pub table: &'static WatcherTable,
    /// The frozen table with runtime watchers mixed in: `n - 1` static watchers and one
    /// runtime watcher (for `n` = 0: no watcher, and one runtime watcher of another event).
    pub mixed: &'static WatcherTable,
    /// The blocking-chain equivalent.
    pub rwlock: RwLockChain,
    /// The mutex-protected list.
    pub mutex: MutexChain,
    /// The atomic/RCU-chain equivalent.
    pub arc_swap: ArcSwapChain,
    _runtime: Registration<'static>,
}

impl Variants {
    /// Builds every variant over `n` watchers, `n` one of
    /// [`DIRECT_COUNTS`](crate::watchers::DIRECT_COUNTS).
    ///
    /// # Panics
    /// For another `n`. The tables are leaked (a benchmark builds a handful).
    pub fn new(n: usize) -> Variants {
        assert!(
            crate::watchers::DIRECT_COUNTS.contains(&n),
            "no hand-written calls of {n} watchers"
        );
        // Without dispatch counts (optional, see `without_call_counts`): the dispatch
        // path the issue-11 targets are about; `mixed` keeps them.
        let table = WatcherTable::from_watchers(records(n, WATCHED))
            .expect("distinct names")
            .without_call_counts()
            .leak();
        let statics = n.saturating_sub(1);
        let mixed = WatcherTable::from_watchers(records(statics, WATCHED))
            .expect("distinct names")
            .leak();
        // The runtime watcher is the last one, `w{n-1}`, called from a closure.
        let (events, func) = if n == 0 {
            (EventSet::PTRACE, FUNCS[0])
        } else {
            (WATCHED, FUNCS[n - 1])
        };
        let runtime = mixed
            .watcher(format!("runtime::{}", NAMES[n.saturating_sub(1)]), events)
            .register(move |event: &Event<'_>| func(event))
            .expect("a fresh name");
        Variants {
            n,
            table,
            mixed,
            rwlock: RwLockChain::new(n),
            mutex: MutexChain::new(n),
            arc_swap: ArcSwapChain::new(n),
            _runtime: runtime,
        }
    }

    /// Dispatches `event` once `via` a variant; whether every watcher succeeded.
    pub fn dispatch(&self, via: Via, event: &Event<'_>) -> bool {
        match via {
            Via::Direct => match self.n {
                0 => direct_0(event).is_ok(),
                1 => direct_1(event).is_ok(),
                8 => direct_8(event).is_ok(),
                64 => direct_64(event).is_ok(),
                _ => direct_1024(event).is_ok(),
            },
            Via::Table => self.table.dispatch(event).is_ok(),
            Via::TableWithRuntime => self.mixed.dispatch(event).is_ok(),
            Via::RwLock => self.rwlock.dispatch(event).is_ok(),
            Via::Mutex => self.mutex.dispatch(event).is_ok(),
            Via::ArcSwap => self.arc_swap.dispatch(event).is_ok(),
        }
    }

    /// Times `iters` dispatches `via` a variant on each of `threads` threads at once;
    /// returns the mean time of one thread (see [`threaded`]). Each variant has a loop
    /// of its own with the dispatch inlined into it.
    pub fn time(&self, via: Via, threads: usize, iters: u64) -> Duration {
        match via {
            Via::Direct => time_direct(self.n, threads, iters),
            Via::Table => {
                let table = self.table;
                threaded(threads, iters, &|e: &Event<'_>| table.dispatch(e).is_ok())
            }
            Via::TableWithRuntime => {
                let table = self.mixed;
                threaded(threads, iters, &|e: &Event<'_>| table.dispatch(e).is_ok())
            }
            Via::RwLock => threaded(threads, iters, &|e: &Event<'_>| {
                self.rwlock.dispatch(e).is_ok()
            }),
            Via::Mutex => threaded(threads, iters, &|e: &Event<'_>| {
                self.mutex.dispatch(e).is_ok()
            }),
            Via::ArcSwap => threaded(threads, iters, &|e: &Event<'_>| {
                self.arc_swap.dispatch(e).is_ok()
            }),
        }
    }
}

/// The event of the same task that no benchmark watcher wants.
#[inline(always)]
pub fn unwanted_event<'a>(event: &Event<'a>) -> Event<'a> {
    Event::new(event.task(), EventData::Comm { old: "a", new: "b" })
}

/// Times `iters` iterations of a loop that builds an [`unwanted_event`] and only reads
/// its kind: the baseline of [`time_unwanted`].
pub fn time_empty_loop(iters: u64) -> Duration {
    threaded(1, iters, &|e: &Event<'_>| {
        black_box(&unwanted_event(e)).kind() != EventKind::Fork
    })
}

/// Times `iters` dispatches through `table` of an [`unwanted_event`].
pub fn time_unwanted(table: &WatcherTable, iters: u64) -> Duration {
    threaded(1, iters, &|e: &Event<'_>| {
        table.dispatch(black_box(&unwanted_event(e))).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::exec_event;
    use watchers_core::Task;

    #[test]
    fn every_variant_calls_n_watchers() {
        let task = Task::detached(9);
        let event = exec_event(&task);
        for n in crate::watchers::COUNTS {
            let v = Variants::new(n);
            assert_eq!(v.table.order(EventKind::Exec).len(), n);
            assert_eq!(v.mixed.order(EventKind::Exec).len(), n.saturating_sub(1));
            let before = v.mixed.dispatched(EventKind::Exec);
            for via in Via::ALL {
                assert!(v.dispatch(via, &event), "{}", via.name());
                assert!(v.time(via, 2, 10) > Duration::ZERO);
            }
            let runtime_calls: u64 = v
                .mixed
                .watchers()
                .iter()
                .filter(|w| w.runtime)
                .map(|w| w.calls)
                .sum();
            assert_eq!(runtime_calls, if n > 0 { 21 } else { 0 });
            assert_eq!(
                v.mixed.dispatched(EventKind::Exec) - before,
                if n > 0 { 21 } else { 0 }
            );
            let comm = unwanted_event(&event);
            assert_eq!(comm.kind(), UNWANTED);
            v.table.dispatch(&comm).unwrap();
            time_unwanted(v.table, 10);
            time_empty_loop(10);
            assert_eq!(v.table.dispatched(UNWANTED), 0);
        }
    }
}
