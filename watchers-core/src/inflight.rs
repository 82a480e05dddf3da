//! Which gated closures each thread is running, so that shutting a gate neither waits for
//! the calls it is itself inside of nor waits forever for a thread that waits for it.
//!
//! Two threads, each inside one watcher's closure, that unregister each other's watcher
//! would each wait for the other's call to end. Every thread that waits while inside some
//! closure records what it waits for and what it is inside of; a new waiter follows "I
//! wait for gate G; these waiters are inside G; they wait for …" and, if that leads back
//! to a gate it is itself inside of, gives up instead of waiting. The records change under
//! one mutex, so of the threads closing a cycle the last one to arrive sees it.

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};

use crate::gate::Gate;

/// One call of a gated closure on this thread. Frames are linked through the thread's
/// own stack, innermost first.
pub(crate) struct Frame {
    gate: usize,
    outer: Cell<*const Frame>,
}

thread_local! {
    /// The innermost frame of this thread. A raw pointer in a `Cell` has no destructor,
    /// so this stays usable while other thread-locals are destroyed (a `Registration`
    /// dropped by a thread-local's destructor still finds it).
    static INNERMOST: Cell<*const Frame> = const { Cell::new(std::ptr::null()) };
}

/// Unlinks its frame when dropped.
pub(crate) struct Inside<'f> {
    frame: &'f Frame,
    linked: bool,
}

impl Frame {
    /// A frame for a call of `gate`'s closure; [`enter`](Frame::enter) links it.
    pub(crate) fn new<T>(gate: &Gate<T>) -> Frame {
        Frame {
            gate: gate.id(),
            outer: Cell::new(std::ptr::null()),
        }
    }

    /// Records on this thread that the call is running, until the guard is dropped.
    pub(crate) fn enter(&self) -> Inside<'_> {
        let linked = INNERMOST
            .try_with(|innermost| {
                self.outer.set(innermost.get());
                innermost.set(self);
            })
            .is_ok();
        Inside {
            frame: self,
            linked,
        }
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        if self.linked {
            let _ = INNERMOST.try_with(|innermost| innermost.set(self.frame.outer.get()));
        }
    }
}

/// The gates whose closures this thread is running, innermost first.
fn running_here() -> Vec<usize> {
    let mut gates = Vec::new();
    let mut frame = INNERMOST.try_with(Cell::get).unwrap_or(std::ptr::null());
    while !frame.is_null() {
        // SAFETY: a frame is linked by `enter` and unlinked by its guard, which borrows
        // it and so is dropped before it; guards are dropped in reverse order of their
        // creation (each lives in the scope of one call), so every frame reachable from
        // `INNERMOST` is alive on this thread's stack.
        let current = unsafe { &*frame };
        gates.push(current.gate);
        frame = current.outer.get();
    }
    gates
}

/// A thread waiting for a gate while inside the closures of `inside`.
struct Waiter {
    serial: u64,
    waits_for: usize,
    inside: Vec<usize>,
}

struct Waiters {
    list: Vec<Waiter>,
    next_serial: u64,
}

static WAITERS: Mutex<Waiters> = Mutex::new(Waiters {
    list: Vec::new(),
    next_serial: 0,
});

fn waiters() -> MutexGuard<'static, Waiters> {
    // Every change is a single push or removal; a panic cannot tear the list.
    WAITERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shutting a gate would have waited forever: a call in flight belongs to a thread that
/// waits, directly or through others, for a closure this thread is running.
#[derive(Debug)]
pub(crate) struct Cycle;

/// Closes `gate`, waits until no call of it is in flight other than the ones this thread
/// is inside of, and releases its value: dropped here if no call is left, else by the
/// last call when it leaves. If the wait would never end, gives it up and says so (the
/// gate is closed and released all the same).
pub(crate) fn shut<T>(gate: &Gate<T>) -> Result<(), Cycle> {
    gate.close();
    let id = gate.id();
    let inside = running_here();
    let own = inside.iter().filter(|&&g| g == id).count();
    let outcome = if gate.in_flight() <= own {
        Ok(())
    } else if inside.is_empty() {
        // A thread inside no closure holds up nobody: it cannot close a cycle.
        gate.wait(own);
        Ok(())
    } else {
        match Waiting::begin(id, inside) {
            Some(_waiting) => {
                gate.wait(own);
                Ok(())
            }
            None => Err(Cycle),
        }
    };
    gate.release();
    outcome
}

/// This thread's record among the waiters, removed when dropped.
struct Waiting {
    serial: u64,
}

impl Waiting {
    /// Records that this thread, inside `inside`, waits for `gate`; `None` (and no
    /// record) if that wait would close a cycle.
    fn begin(gate: usize, inside: Vec<usize>) -> Option<Waiting> {
        let mut waiters = waiters();
        if closes_cycle(&waiters.list, gate, &inside) {
            return None;
        }
        let serial = waiters.next_serial;
        waiters.next_serial += 1;
        waiters.list.push(Waiter {
            serial,
            waits_for: gate,
            inside,
        });
        Some(Waiting { serial })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        waiters().list.retain(|w| w.serial != self.serial);
    }
}

/// Whether waiting for `gate` while inside `inside` would wait for ourselves: some chain
/// of waiters, each inside the gate the previous one waits for, ends waiting for a gate
/// in `inside`.
fn closes_cycle(others: &[Waiter], gate: usize, inside: &[usize]) -> bool {
    let mut reached = vec![gate];
    let mut next = 0;
    while let Some(&gate) = reached.get(next) {
        next += 1;
        for waiter in others.iter().filter(|w| w.inside.contains(&gate)) {
            if inside.contains(&waiter.waits_for) {
                return true;
            }
            if !reached.contains(&waiter.waits_for) {
                reached.push(waiter.waits_for);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(waits_for: usize, inside: &[usize]) -> Waiter {
        Waiter {
            serial: 0,
            waits_for,
            inside: inside.to_vec(),
        }
    }

    #[test]
    fn cycles_through_any_number_of_waiters_are_found() {
        // Waiting for 2 while inside 1.
        assert!(!closes_cycle(&[], 2, &[1]));
        // Another waiter inside 2 waits for 1: a cycle of two.
        assert!(closes_cycle(&[waiter(1, &[2])], 2, &[1]));
        // Through a third: inside 2 waits for 3, inside 3 waits for 1.
        let chain = [waiter(3, &[2]), waiter(1, &[3])];
        assert!(closes_cycle(&chain, 2, &[1]));
        // A chain that ends elsewhere, and one that loops without us, are no cycle.
        assert!(!closes_cycle(&[waiter(4, &[2]), waiter(2, &[4])], 2, &[1]));
    }

    #[test]
    fn frames_nest_and_unlink() {
        let (a, b) = (Gate::new(()), Gate::new(()));
        let outer = Frame::new(&a);
        let _outer = outer.enter();
        {
            let inner = Frame::new(&b);
            let _inner = inner.enter();
            assert_eq!(running_here(), [b.id(), a.id()]);
        }
        assert_eq!(running_here(), [a.id()]);
    }
}
