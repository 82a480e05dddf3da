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

/// Calls `f` with `gate`'s value unless the gate is closed, recording on this thread
/// that it runs. The record outlives the pass, so that a value dropped by the last call
/// as it leaves is dropped "inside" the gate: a thread waiting for that drop can be seen
/// by the cycle check like one waiting for the call.
pub(crate) fn call<T, R>(gate: &Gate<T>, f: impl FnOnce(&T) -> R) -> Option<R> {
    let frame = Frame::new(gate);
    let _inside = frame.enter();
    let pass = gate.enter()?;
    pass.with(f)
}

/// Closes `gate`, waits until no call of it is in flight other than the ones this thread
/// is inside of, and releases its value: dropped here if no call is left, else by the
/// last call when it leaves. Unless this thread is inside a call of it, returns only once
/// the value has been dropped, also when another closer (or a call it was handed to)
/// drops it. If a wait would never end, gives it up and says so (the gate is closed and
/// released all the same; the value is dropped by whichever party finishes last).
pub(crate) fn shut<T>(gate: &Gate<T>) -> Result<(), Cycle> {
    gate.close();
    let id = gate.id();
    let inside = running_here();
    let own = inside.iter().filter(|&&g| g == id).count();
    // A thread inside no closure holds up nobody: it cannot close a cycle, and needs
    // no record.
    let mut waiting = None;
    let record = |waiting: &mut Option<Waiting>| {
        if waiting.is_none() && !inside.is_empty() {
            *waiting = Some(Waiting::begin(id, inside.clone()).ok_or(Cycle)?);
        }
        Ok(())
    };
    if gate.in_flight() > own {
        if let Err(cycle) = record(&mut waiting) {
            release(gate);
            return Err(cycle);
        }
        gate.wait(own);
    }
    if release(gate) || own > 0 || gate.is_dropped() {
        // Dropped here; or it cannot be before this thread's own call leaves.
        return Ok(());
    }
    // Another closer, or the last call, is dropping it.
    record(&mut waiting)?;
    gate.wait_dropped();
    Ok(())
}

/// [`Gate::release`], recording on this thread that it is inside the gate while it may
/// drop the value (whose `Drop` may shut other gates).
fn release<T>(gate: &Gate<T>) -> bool {
    let frame = Frame::new(gate);
    let _inside = frame.enter();
    gate.release()
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
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier, mpsc};
    use std::time::Duration;

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

    /// A value whose `Drop` says it started and finishes only when told to.
    struct SlowDrop {
        started: Mutex<mpsc::Sender<()>>,
        finish: Mutex<mpsc::Receiver<()>>,
        done: Arc<AtomicBool>,
    }

    impl Drop for SlowDrop {
        fn drop(&mut self) {
            let _ = self.started.lock().unwrap().send(());
            let _ = self
                .finish
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            self.done.store(true, Ordering::SeqCst);
        }
    }

    /// Runs `f` on a thread of its own and fails if it does not finish in time.
    fn within(f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("hung, or the test thread panicked");
    }

    /// A closer inside the call hands the drop to its pass; a closer on another thread
    /// waits for the calls to end. It must also wait for the drop that the pass does
    /// after leaving, not only for the count to reach zero.
    #[test]
    fn a_closer_waits_for_the_drop_handed_to_a_call_in_flight() {
        within(|| {
            let (started, drop_started) = mpsc::channel();
            let (finish_drop, finish) = mpsc::channel();
            let done = Arc::new(AtomicBool::new(false));
            let gate = Arc::new(Gate::new(SlowDrop {
                started: Mutex::new(started),
                finish: Mutex::new(finish),
                done: done.clone(),
            }));
            let (shut_inside, on_shut_inside) = mpsc::channel();
            let (leave, on_leave) = mpsc::channel::<()>();
            let caller = {
                let gate = gate.clone();
                std::thread::spawn(move || {
                    call(&gate, |_| {
                        shut(&gate).unwrap();
                        shut_inside.send(()).unwrap();
                        on_leave.recv().unwrap();
                    })
                })
            };
            on_shut_inside.recv().unwrap();
            let closer = {
                let (gate, done) = (gate.clone(), done.clone());
                std::thread::spawn(move || {
                    shut(&gate).unwrap();
                    done.load(Ordering::SeqCst)
                })
            };
            leave.send(()).unwrap();
            drop_started.recv().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            // The premise: the call has left and its pass is dropping the value.
            assert!(gate.in_flight() == 0 && !done.load(Ordering::SeqCst));
            assert!(!closer.is_finished(), "the closer waits for the drop");
            finish_drop.send(()).unwrap();
            assert!(closer.join().unwrap(), "dropped when the closer returned");
            assert!(caller.join().unwrap().is_some());
        });
    }

    /// Three threads, each inside its own gate's call, shut the next one's gate at
    /// once: a ring of waits. At least one sees the cycle instead of waiting, all
    /// return, and every value is dropped exactly once.
    #[test]
    fn a_ring_of_three_threads_shutting_each_others_gates_is_detected() {
        within(|| {
            const N: usize = 3;
            for _ in 0..20 {
                let drops: Arc<[AtomicUsize; N]> = Arc::new(Default::default());
                let gates: Arc<Vec<Gate<Counted>>> = Arc::new(
                    (0..N)
                        .map(|i| Gate::new(Counted(drops.clone(), i)))
                        .collect(),
                );
                let all_inside = Arc::new(Barrier::new(N));
                let threads: Vec<_> = (0..N)
                    .map(|i| {
                        let (gates, all_inside) = (gates.clone(), all_inside.clone());
                        std::thread::spawn(move || {
                            call(&gates[i], |_| {
                                // Every thread is inside its call before any shuts.
                                all_inside.wait();
                                shut(&gates[(i + 1) % N]).is_err()
                            })
                        })
                    })
                    .collect();
                let cycles = threads
                    .into_iter()
                    .map(|t| t.join().unwrap().expect("admitted before any shut"))
                    .filter(|&cycle| cycle)
                    .count();
                assert!(cycles >= 1, "the ring was seen");
                assert!(cycles < N, "the first to arrive cannot see a cycle yet");
                for d in drops.iter() {
                    assert_eq!(d.load(Ordering::SeqCst), 1);
                }
            }
        });
    }

    struct Counted(Arc<[AtomicUsize; 3]>, usize);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0[self.1].fetch_add(1, Ordering::SeqCst);
        }
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
