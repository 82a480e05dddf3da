//! The handshake behind "once `unregister` returns, the closure has been called for the
//! last time and has been dropped".
//!
//! A gate owns a value (the closure) and one atomic word: a "closed" bit, a "hand-off"
//! bit and the count of calls in flight. A caller is admitted only while the gate is open,
//! by a compare-and-swap that adds one to the count; the closer sets the closed bit. Both
//! read-modify-write the same word, so in its single modification order either the
//! caller's add comes first (then the closer sees it and waits) or the bit does (then the
//! caller sees it and is refused). With two separate atomics this would be the
//! store-buffer pattern, which the loom model at the end of this file showed to be fragile.
//!
//! Admission is a compare-and-swap rather than an add-then-check so that the count is
//! exactly the calls admitted: a refused caller never touches it, and the value can be
//! dropped by whichever side makes the count reach zero after [`Gate::release`] set the
//! hand-off bit, exactly once:
//! * the closer, if no admitted call is left when it releases (the usual case, after
//!   waiting);
//! * otherwise the last admitted call, when it leaves (unregistering from inside the
//!   closure itself, or after a wait that would never end was given up).
//!
//! A gate can have two closers (a per-task watcher's handle and its task's `free`), and
//! the count reaches zero before the last call has dropped the value. So a fourth bit,
//! "dropped", is set once the value's `Drop` has finished: a closer that did not drop the
//! value itself waits for that bit, not for the count, before it may say "dropped".

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

const CLOSED: usize = 1 << (usize::BITS - 1);
const HANDOFF: usize = 1 << (usize::BITS - 2);
const DROPPED: usize = 1 << (usize::BITS - 3);
const COUNT: usize = !(CLOSED | HANDOFF | DROPPED);

/// Owns a value that calls borrow while the gate is open, and that is dropped once the
/// gate is closed, released and no call is left.
pub(crate) struct Gate<T> {
    state: AtomicUsize,
    value: UnsafeCell<Option<T>>,
}

// SAFETY: the value is shared between threads only as `&T` through admitted passes
// (hence `T: Sync`), and taken out (then dropped, possibly on another thread than the
// one that made it: hence `T: Send`) only by the one party that saw the count reach zero
// after the gate was closed and released, when no pass exists and none can be admitted.
unsafe impl<T: Send + Sync> Sync for Gate<T> {}

/// One admitted call; leaving is dropping it (also when the call panics).
pub(crate) struct Pass<'a, T>(&'a Gate<T>);

impl<T> Gate<T> {
    /// An open gate owning `value`.
    pub(crate) fn new(value: T) -> Gate<T> {
        Gate {
            state: AtomicUsize::new(0),
            value: UnsafeCell::new(Some(value)),
        }
    }

    /// Admits a call unless the gate is closed.
    #[inline]
    pub(crate) fn enter(&self) -> Option<Pass<'_, T>> {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & CLOSED != 0 {
                return None;
            }
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Pass(self)),
                Err(now) => state = now,
            }
        }
    }

    /// Closes the gate: no call is admitted from now on.
    pub(crate) fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// How many admitted calls are in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.state.load(Ordering::Acquire) & COUNT
    }

    /// Waits (after [`close`](Gate::close)) until at most `own` calls are in flight: the
    /// calls the waiting thread is itself inside of, which cannot finish first.
    pub(crate) fn wait(&self, own: usize) {
        spin_until(|| self.in_flight() <= own);
    }

    /// Whether the value's `Drop` has finished (or unwound).
    pub(crate) fn is_dropped(&self) -> bool {
        self.state.load(Ordering::Acquire) & DROPPED != 0
    }

    /// Waits (after [`release`](Gate::release), with no call of it left on this thread)
    /// until whichever party drops the value has finished dropping it.
    pub(crate) fn wait_dropped(&self) {
        spin_until(|| self.is_dropped());
    }

    /// This gate's identity while it lives (its address).
    pub(crate) fn id(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    /// Gives up the closer's claim on the value (after [`close`](Gate::close)): drops it
    /// now if no call is in flight, or leaves it to the last call in flight. Returns
    /// whether it was dropped here.
    pub(crate) fn release(&self) -> bool {
        let before = self.state.fetch_or(HANDOFF, Ordering::AcqRel);
        if before & HANDOFF != 0 {
            return false;
        }
        if before & COUNT == 0 {
            self.drop_value();
            return true;
        }
        false
    }

    /// Whether the gate is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Takes the value out and drops it; called once, by the party that saw the count
    /// reach zero with the gate closed and released.
    #[cold]
    #[inline(never)]
    fn drop_value(&self) {
        // SAFETY: the gate is closed (no pass will be admitted) and the count is zero (no
        // pass exists); the hand-off bit lets exactly one party get here: the closer if
        // it saw a zero count when setting it, else the pass whose leaving made it zero.
        let value = unsafe { self.value.with_mut(|value| (*value).take()) };
        // Set also when the value's `Drop` unwinds, or a closer would wait for ever.
        let _dropped = SetDropped(&self.state);
        if std::thread::panicking() {
            // The last pass leaves while a call unwinds (a closure that unregistered
            // itself, then panicked): a panic of the value's `Drop` escaping here would
            // be a second one, which aborts the process. It is dropped; the first goes on.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(value)));
        } else {
            drop(value);
        }
    }
}

impl<T> Pass<'_, T> {
    /// Calls `f` with the value.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        // SAFETY: this pass keeps the count above zero, so the value is not taken out
        // while it exists; others only read it too.
        unsafe { self.0.value.with(|value| (*value).as_ref().map(f)) }
    }
}

impl<T> Drop for Pass<'_, T> {
    fn drop(&mut self) {
        let before = self.0.state.fetch_sub(1, Ordering::AcqRel);
        if before == CLOSED | HANDOFF | 1 {
            self.0.drop_value();
        }
    }
}

/// Sets [`DROPPED`] when dropped: after the value's `Drop` returned or unwound.
struct SetDropped<'a>(&'a AtomicUsize);

impl Drop for SetDropped<'_> {
    fn drop(&mut self) {
        self.0.fetch_or(DROPPED, Ordering::Release);
    }
}

#[cfg(not(loom))]
fn spin_until(mut done: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !done() {
        spins = spins.saturating_add(1);
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            yield_now();
        }
    }
}

/// Under the model every failed check yields, so that it explores other threads
/// instead of interleavings of a spinning one.
#[cfg(loom)]
fn spin_until(mut done: impl FnMut() -> bool) {
    while !done() {
        yield_now();
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

/// `std`'s `UnsafeCell` with loom's closure-based interface, so that the code above
/// runs unchanged under the model (which checks every access for data races).
#[cfg(not(loom))]
struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// # Safety
    /// No `with_mut` may run at the same time.
    unsafe fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// # Safety
    /// No other access may run at the same time.
    unsafe fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;

    /// A value that records its drop, and checks it is not used afterwards.
    struct Closure {
        dropped: Arc<AtomicBool>,
    }

    impl Closure {
        fn call(&self) {
            assert!(
                !self.dropped.load(Ordering::SeqCst),
                "called after its drop"
            );
        }
    }

    impl Drop for Closure {
        fn drop(&mut self) {
            assert!(!self.dropped.swap(true, Ordering::SeqCst), "dropped twice");
        }
    }

    fn gate() -> (Arc<Gate<Closure>>, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let closure = Closure {
            dropped: dropped.clone(),
        };
        (Arc::new(Gate::new(closure)), dropped)
    }

    /// A thread that calls through `gate` once, if admitted, and checks that the call
    /// does not run after `unregistered` was set.
    fn caller(
        gate: &Arc<Gate<Closure>>,
        unregistered: &Arc<AtomicBool>,
    ) -> loom::thread::JoinHandle<()> {
        let (gate, unregistered) = (gate.clone(), unregistered.clone());
        loom::thread::spawn(move || {
            if let Some(pass) = gate.enter() {
                pass.with(|closure| closure.call());
                assert!(!unregistered.load(Ordering::SeqCst));
            }
        })
    }

    /// A caller racing `close`, `wait` and `release`: a call that starts finishes
    /// before the closer returns, none starts after, and the closer drops the value.
    #[test]
    fn no_call_in_flight_or_started_after_close_returns_and_the_value_is_dropped() {
        loom::model(|| {
            let (gate, dropped) = gate();
            let unregistered = Arc::new(AtomicBool::new(false));
            let caller = caller(&gate, &unregistered);
            gate.close();
            gate.wait(0);
            assert!(gate.release(), "the closer drops the value after waiting");
            assert!(dropped.load(Ordering::SeqCst));
            unregistered.store(true, Ordering::SeqCst);
            caller.join().unwrap();
        });
    }

    /// Two callers and a close from inside one of them (`own` = 1): the closer waits
    /// only for the other, and the value is dropped when its own call leaves.
    #[test]
    fn closing_from_inside_a_call_waits_for_the_others_and_drops_on_leaving() {
        loom::model(|| {
            let (gate, dropped) = gate();
            let unregistered = Arc::new(AtomicBool::new(false));
            let other = caller(&gate, &unregistered);
            if let Some(pass) = gate.enter() {
                pass.with(|closure| {
                    closure.call();
                    gate.close();
                    gate.wait(1);
                    assert!(!gate.release(), "the call in flight is this one");
                    unregistered.store(true, Ordering::SeqCst);
                });
                assert!(!dropped.load(Ordering::SeqCst));
                drop(pass);
                assert!(dropped.load(Ordering::SeqCst), "dropped when the call left");
            }
            other.join().unwrap();
        });
    }

    /// What a closer that is not inside a call does (`inflight::shut`): close, wait for
    /// the calls, release, and unless it dropped the value itself wait until whoever
    /// did has finished. Checks the promise: when it returns, the value is dropped.
    fn close_from_outside(gate: &Gate<Closure>, dropped: &AtomicBool) {
        gate.close();
        gate.wait(0);
        if !gate.release() {
            gate.wait_dropped();
        }
        assert!(
            dropped.load(Ordering::SeqCst),
            "closer returned before the drop"
        );
    }

    /// Two closers (a per-task watcher's handle and its task's `free`): neither returns
    /// before the value has been dropped, by either of them. (With a caller as a third
    /// thread the model runs for minutes; the next model has the call.)
    #[test]
    fn two_closers_both_return_only_after_the_value_is_dropped() {
        loom::model(|| {
            let (gate, dropped) = gate();
            let other = {
                let (gate, dropped) = (gate.clone(), dropped.clone());
                loom::thread::spawn(move || close_from_outside(&gate, &dropped))
            };
            close_from_outside(&gate, &dropped);
            other.join().unwrap();
        });
    }

    /// One closer inside a call (it hands the value to its pass) and one outside: the
    /// outside closer does not return between the pass giving up its count and the
    /// value's drop.
    #[test]
    fn a_closer_outside_waits_for_the_drop_handed_to_a_call() {
        loom::model(|| {
            let (gate, dropped) = gate();
            let other = {
                let (gate, dropped) = (gate.clone(), dropped.clone());
                loom::thread::spawn(move || close_from_outside(&gate, &dropped))
            };
            if let Some(pass) = gate.enter() {
                pass.with(|closure| {
                    closure.call();
                    gate.close();
                    gate.wait(1);
                    gate.release();
                });
                drop(pass);
            }
            other.join().unwrap();
            assert!(dropped.load(Ordering::SeqCst));
        });
    }

    /// A closer that does not wait (a wait that would never end was given up): the
    /// value is dropped exactly once, by whichever side finishes last.
    #[test]
    fn without_waiting_the_last_side_drops_the_value_once() {
        loom::model(|| {
            let (gate, dropped) = gate();
            let caller = caller(&gate, &Arc::new(AtomicBool::new(false)));
            gate.close();
            gate.release();
            caller.join().unwrap();
            assert!(dropped.load(Ordering::SeqCst));
        });
    }
}
