//! Notifier-chain equivalents: what the kernel had before the frozen table, in Rust.
//!
//! * [`RwLockChain`]: the blocking notifier chain (`down_read` around the walk).
//! * [`MutexChain`]: the simplest lock around a list.
//! * [`ArcSwapChain`]: the atomic/SRCU chain, as an RCU-style snapshot (`arc-swap`).
//!
//! Every one holds plain function pointers ([`ChainFn`]) and stops at the first error, as
//! `notifier_call_chain` stops at `NOTIFY_STOP_MASK`. On the success path, which is all
//! the benchmarks take, that costs the same test per call as the table's walk.

use std::sync::{Mutex, RwLock};

use arc_swap::ArcSwap;
use watchers_core::{Event, WatcherResult};

use crate::watchers::{ChainFn, chain};

/// A list of watchers behind a readers-writer lock.
pub struct RwLockChain(RwLock<Vec<ChainFn>>);

impl RwLockChain {
    /// The first `n` benchmark watchers.
    pub fn new(n: usize) -> Self {
        RwLockChain(RwLock::new(chain(n)))
    }

    /// Calls every watcher under the read lock.
    ///
    /// # Errors
    /// The first watcher error.
    #[inline]
    pub fn dispatch(&self, event: &Event<'_>) -> WatcherResult {
        let list = self.0.read().unwrap_or_else(|e| e.into_inner());
        for watcher in list.iter() {
            watcher(event)?;
        }
        Ok(())
    }
}

/// A list of watchers behind a mutex.
pub struct MutexChain(Mutex<Vec<ChainFn>>);

impl MutexChain {
    /// The first `n` benchmark watchers.
    pub fn new(n: usize) -> Self {
        MutexChain(Mutex::new(chain(n)))
    }

    /// Calls every watcher with the lock held.
    ///
    /// # Errors
    /// The first watcher error.
    #[inline]
    pub fn dispatch(&self, event: &Event<'_>) -> WatcherResult {
        let list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for watcher in list.iter() {
            watcher(event)?;
        }
        Ok(())
    }
}

/// A snapshot of the list, replaced whole on change and read without a lock.
pub struct ArcSwapChain(ArcSwap<Vec<ChainFn>>);

impl ArcSwapChain {
    /// The first `n` benchmark watchers.
    pub fn new(n: usize) -> Self {
        ArcSwapChain(ArcSwap::from_pointee(chain(n)))
    }

    /// Calls every watcher of the current snapshot, taken with `load` (a hazard-pointer
    /// style guard, no reference count touched), as an RCU reader would.
    ///
    /// # Errors
    /// The first watcher error.
    #[inline]
    pub fn dispatch(&self, event: &Event<'_>) -> WatcherResult {
        let list = self.0.load();
        for watcher in list.iter() {
            watcher(event)?;
        }
        Ok(())
    }
}
