//! The handshake that lets `unregister` promise that no call is in flight once it returns.
//!
//! The gate is one atomic word: the top bit says "closed", the rest counts calls in
//! flight. A caller adds one before each call and, if it finds the bit set, takes its one
//! back and does not call; `close` sets the bit and waits until the count falls to the
//! calls it is itself inside of. Both sides read-modify-write the same word, so in its
//! single modification order either the caller's add comes first (then `close` sees it
//! and waits) or the bit does (then the caller sees it). With two separate atomics this
//! would be the store-buffer pattern, which needs `SeqCst` everywhere and which the
//! loom model at the end of this file (which checks this) showed to be fragile.

#[cfg(loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

const CLOSED: usize = 1 << (usize::BITS - 1);

/// Counts calls in flight and refuses new ones once closed.
#[derive(Default)]
pub(crate) struct Gate {
    state: AtomicUsize,
}

/// One call let through the gate; leaving is dropping it (also when the call panics).
pub(crate) struct Pass<'a>(&'a Gate);

impl Gate {
    /// Lets a call through unless the gate is closed.
    pub(crate) fn enter(&self) -> Option<Pass<'_>> {
        let before = self.state.fetch_add(1, Ordering::AcqRel);
        // Dropping the pass takes the one back, whether or not the call goes ahead.
        let pass = Pass(self);
        (before & CLOSED == 0).then_some(pass)
    }

    /// Closes the gate and waits until at most `own` calls are in flight: the calls the
    /// closing thread is itself inside of, which cannot finish first.
    pub(crate) fn close(&self, own: usize) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        let mut spins = 0u32;
        while self.state.load(Ordering::Acquire) & !CLOSED > own {
            spins = spins.saturating_add(1);
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                yield_now();
            }
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.state.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(not(loom))]
fn yield_now() {
    std::thread::yield_now();
}

#[cfg(loom)]
fn yield_now() {
    loom::thread::yield_now();
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;

    /// Two callers and a close from inside one of them (`own` = 1).
    #[test]
    fn closing_from_inside_a_call_waits_only_for_the_others() {
        loom::model(|| {
            let gate = Arc::new(Gate::default());
            let unregistered = Arc::new(AtomicBool::new(false));
            let other = {
                let gate = gate.clone();
                let unregistered = unregistered.clone();
                loom::thread::spawn(move || {
                    if let Some(_pass) = gate.enter() {
                        assert!(!unregistered.load(Ordering::SeqCst));
                    }
                })
            };
            if let Some(_pass) = gate.enter() {
                gate.close(1);
                unregistered.store(true, Ordering::SeqCst);
            }
            other.join().unwrap();
        });
    }

    /// A caller racing `close`: a call that starts must finish before `close` returns,
    /// and no call starts after it.
    #[test]
    fn no_call_in_flight_or_started_after_close_returns() {
        loom::model(|| {
            let gate = Arc::new(Gate::default());
            let unregistered = Arc::new(AtomicBool::new(false));
            let caller = {
                let gate = gate.clone();
                let unregistered = unregistered.clone();
                loom::thread::spawn(move || {
                    if let Some(_pass) = gate.enter() {
                        // The "callback": it must never run once close has returned.
                        assert!(!unregistered.load(Ordering::SeqCst));
                    }
                })
            };
            gate.close(0);
            unregistered.store(true, Ordering::SeqCst);
            caller.join().unwrap();
        });
    }
}
