//! Typed per-task state, declared statically by a subsystem.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::task::{SlotValue, Task};

/// A typed piece of per-task state, declared as a `static` by the subsystem that owns it.
///
/// Each slot gets a small index the first time it is used; every task keeps its values
/// in a vector indexed by it, behind a lock of its own, so reaching a value is O(1) and
/// no global lock is taken. Values are handed out as `Arc<T>` (the per-task lock is held
/// only to clone the `Arc`), so a watcher may hold one while touching other slots of the
/// same task. A task's table drops every value when the task is freed, after the `free`
/// watchers ran. A value set on a task after that (by a thread that still holds the
/// `Task`, or by the `Drop` of one of its values) stays until the `Task` itself is
/// dropped with its last `Arc`.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use watchers_core::{Task, TaskSlot};
///
/// static FORKS: TaskSlot<AtomicU64> = TaskSlot::new();
///
/// let task = Task::detached(10);
/// FORKS.set(&task, AtomicU64::new(0));
/// FORKS.with(&task, |forks| forks.fetch_add(1, Ordering::Relaxed));
/// assert_eq!(FORKS.get(&task).unwrap().load(Ordering::Relaxed), 1);
/// assert!(FORKS.take(&task).is_some());
/// assert!(FORKS.get(&task).is_none());
/// ```
///
/// **Only a `'static` slot can be used** (its methods take `&'static self`). A slot's
/// index is never handed to another slot, so a slot that could be dropped would leave
/// its index, and its values on live tasks, behind for ever, and every new slot would
/// grow every task's storage. Reusing indexes instead would cost every access a
/// generation check for a case no subsystem needs; a slot made at run time has to be
/// leaked on purpose (`Box::leak`), which is then the price it visibly pays. So this
/// does not compile:
///
/// ```compile_fail
/// use watchers_core::{Task, TaskSlot};
///
/// let forks: TaskSlot<u64> = TaskSlot::new();
/// forks.set(&Task::detached(10), 0);
/// ```
pub struct TaskSlot<T> {
    /// The slot's index plus one; zero until first use.
    index: AtomicUsize,
    _value: PhantomData<fn() -> T>,
}

static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);

/// Held while a slot draws its index.
static ASSIGNING: Mutex<()> = Mutex::new(());

impl<T: Send + Sync + 'static> TaskSlot<T> {
    /// A new slot. Declare it as a `static`.
    pub const fn new() -> TaskSlot<T> {
        TaskSlot {
            index: AtomicUsize::new(0),
            _value: PhantomData,
        }
    }

    fn index(&'static self) -> usize {
        match self.index.load(Ordering::Acquire) {
            0 => self.assign_index(),
            assigned => assigned - 1,
        }
    }

    /// Gives the slot its index on first use. Under a lock, so that racing first uses
    /// draw one index between them, not one each (each drawn index widens every task's
    /// storage).
    #[cold]
    fn assign_index(&'static self) -> usize {
        let _only_one = ASSIGNING.lock().unwrap_or_else(|e| e.into_inner());
        match self.index.load(Ordering::Acquire) {
            0 => {
                let fresh = NEXT_INDEX.fetch_add(1, Ordering::Relaxed) + 1;
                self.index.store(fresh, Ordering::Release);
                fresh - 1
            }
            assigned => assigned - 1,
        }
    }

    /// Stores `value` for `task`, returning what was there.
    pub fn set(&'static self, task: &Task, value: T) -> Option<Arc<T>> {
        self.set_arc(task, Arc::new(value))
    }

    /// Stores a shared value for `task` (for state that several tasks share, such as a
    /// thread group's), returning what was there.
    pub fn set_arc(&'static self, task: &Task, value: Arc<T>) -> Option<Arc<T>> {
        let index = self.index();
        let mut values = task.slots.lock();
        if values.len() <= index {
            values.resize_with(index + 1, || None);
        }
        values[index].replace(value).and_then(downcast)
    }

    /// The value stored for `task`.
    pub fn get(&'static self, task: &Task) -> Option<Arc<T>> {
        let index = self.index();
        let values = task.slots.lock();
        values.get(index)?.clone().and_then(downcast)
    }

    /// Removes and returns the value stored for `task`.
    pub fn take(&'static self, task: &Task) -> Option<Arc<T>> {
        let index = self.index();
        let mut values = task.slots.lock();
        values.get_mut(index)?.take().and_then(downcast)
    }

    /// Calls `f` with the value stored for `task`, if there is one.
    pub fn with<R>(&'static self, task: &Task, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.get(task).map(|value| f(&value))
    }

    /// The value stored for `task`, stored first by `make` if there is none.
    ///
    /// `make` runs without the task's lock held, so it may use this task's slots (this
    /// one included). If a value was stored meanwhile (by another thread, or by `make`
    /// itself), that value is kept and returned, and the one `make` returned is dropped,
    /// also outside the lock.
    pub fn get_or_insert_with(&'static self, task: &Task, make: impl FnOnce() -> T) -> Arc<T> {
        if let Some(value) = self.get(task) {
            return value;
        }
        let made: SlotValue = Arc::new(make());
        let index = self.index();
        let (value, unused) = {
            let mut values = task.slots.lock();
            if values.len() <= index {
                values.resize_with(index + 1, || None);
            }
            match &values[index] {
                Some(stored) => (stored.clone(), Some(made)),
                None => {
                    values[index] = Some(made.clone());
                    (made, None)
                }
            }
        };
        drop(unused);
        downcast(value).unwrap_or_else(|| unreachable!("a slot holds only its own type"))
    }
}

impl<T: Send + Sync + 'static> Default for TaskSlot<T> {
    fn default() -> Self {
        TaskSlot::new()
    }
}

fn downcast<T: Send + Sync + 'static>(value: SlotValue) -> Option<Arc<T>> {
    // Only `TaskSlot<T>` with this index writes here, and it writes `Arc<T>`.
    value.downcast::<T>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    static DROPS: AtomicU32 = AtomicU32::new(0);

    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }

    static COUNTED: TaskSlot<Counted> = TaskSlot::new();
    static NUMBER: TaskSlot<u64> = TaskSlot::new();

    static RACED: TaskSlot<u8> = TaskSlot::new();

    #[test]
    fn racing_first_uses_draw_one_index() {
        let before = NEXT_INDEX.load(Ordering::SeqCst);
        let barrier = std::sync::Barrier::new(8);
        let indexes: Vec<usize> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        RACED.index()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(indexes.iter().all(|&i| i == indexes[0]));
        // Other tests may assign their slots meanwhile, but never more than two more.
        assert!(NEXT_INDEX.load(Ordering::SeqCst) - before <= 3);
    }

    #[test]
    fn slots_are_independent_and_cleared_once() {
        let task = Task::detached(3);
        assert!(COUNTED.set(&task, Counted).is_none());
        NUMBER.set(&task, 5);
        assert_eq!(NUMBER.with(&task, |n| *n + 1), Some(6));
        assert_eq!(*NUMBER.get_or_insert_with(&task, || 9), 5);
        task.slots.clear();
        assert_eq!(DROPS.load(Ordering::SeqCst), 1);
        assert!(COUNTED.get(&task).is_none());
        assert!(NUMBER.get(&task).is_none());
        drop(task);
        assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    }
}
