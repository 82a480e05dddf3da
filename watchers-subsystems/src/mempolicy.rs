//! NUMA memory policies (`CONFIG_NUMA`): where a task's memory comes from.
//!
//! * **fork**: the child gets a **copy** of its parent's policy (the kernel's
//!   `mpol_dup`), not a shared one: changing either later leaves the other alone. The
//!   interleave cursor is copied too. A parent without one (init, which gets no `fork`)
//!   gives [`MemPolicy::Default`].
//! * **free**: the policy is freed.
//!
//! [`set_mempolicy`] and [`get_mempolicy`] are the system calls; [`alloc_node`] says
//! which node the task's next page would come from, advancing the per-task interleave
//! cursor for [`MemPolicy::Interleave`].

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use watchers_core::{
    CloneFlags, Event, EventData, EventSet, Pid, Task, TaskSlot, TaskState, Watcher, task_watcher,
    watcher_record,
};

use crate::mask::{MASK_BITS, Mask};

/// The events the mempolicy watchers ask for.
pub const EVENTS: EventSet = watcher_record!(watch_fork_free).events();

/// The priority all the mempolicy watchers share (`mpol_dup` follows `cpuset_fork`).
pub const PRIORITY: i32 = watcher_record!(watch_fork_free).priority();

/// A memory policy (`MPOL_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MemPolicy {
    /// Allocate on the local node.
    #[default]
    Default,
    /// Allocate only on these nodes (the lowest allowed one that is local or, else, the
    /// first).
    Bind(Mask),
    /// Spread allocations round-robin over these nodes.
    Interleave(Mask),
    /// Prefer the first of these nodes; an empty mask prefers the local node.
    Preferred(Mask),
}

impl fmt::Display for MemPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemPolicy::Default => f.write_str("default"),
            MemPolicy::Bind(nodes) => write!(f, "bind:{nodes}"),
            MemPolicy::Interleave(nodes) => write!(f, "interleave:{nodes}"),
            MemPolicy::Preferred(nodes) if nodes.is_empty() => f.write_str("local"),
            MemPolicy::Preferred(nodes) => write!(f, "prefer:{nodes}"),
        }
    }
}

/// What went wrong with a memory policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MempolicyError {
    /// `bind` and `interleave` need at least one node (`EINVAL`).
    #[error("{0} needs at least one node")]
    EmptyNodemask(&'static str),
    /// A node beyond the machine's.
    #[error("node {0} does not exist (nodes are 0..{MASK_BITS})")]
    NoSuchNode(u32),
    /// The task is exiting or gone.
    #[error("task {0} is not running")]
    NotRunning(Pid),
}

/// A task's policy and interleave cursor.
#[derive(Debug)]
pub struct TaskPolicy {
    policy: Mutex<MemPolicy>,
    /// The node the last interleaved allocation came from (the kernel's `il_prev`).
    il_prev: AtomicU32,
}

impl TaskPolicy {
    fn new(policy: MemPolicy, il_prev: u32) -> TaskPolicy {
        ALLOCATED.fetch_add(1, Ordering::Relaxed);
        TaskPolicy {
            policy: Mutex::new(policy),
            il_prev: AtomicU32::new(il_prev),
        }
    }

    /// The policy.
    pub fn policy(&self) -> MemPolicy {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node of the last interleaved allocation.
    pub fn interleave_cursor(&self) -> u32 {
        self.il_prev.load(Ordering::Relaxed)
    }
}

impl Drop for TaskPolicy {
    /// Every policy built is counted freed once, also one built and thrown away.
    fn drop(&mut self) {
        FREED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The mempolicy counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MempolicyStats {
    /// Policies allocated (at fork, or by `set_mempolicy` on a task without one).
    pub allocated: u64,
    /// Policies dropped: at free (or once the last holder of an `Arc` from
    /// [`task_policy`] lets go), or at once when `TaskSlot::get_or_insert_with` built
    /// one for a task that another thread gave one first.
    pub freed: u64,
    /// Successful `set_mempolicy` calls.
    pub changes: u64,
    /// Allocations placed by [`alloc_node`].
    pub allocations: u64,
}

impl MempolicyStats {
    /// Policies alive now.
    pub fn live(&self) -> u64 {
        self.allocated - self.freed
    }
}

static POLICY: TaskSlot<TaskPolicy> = TaskSlot::new();

static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);
static CHANGES: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// `set_mempolicy`: replaces the task's policy. Setting an interleave policy restarts
/// the cursor.
///
/// # Errors
/// [`MempolicyError::EmptyNodemask`] for `bind` or `interleave` without nodes;
/// [`MempolicyError::NotRunning`].
pub fn set_mempolicy(task: &Task, policy: MemPolicy) -> Result<(), MempolicyError> {
    match policy {
        MemPolicy::Bind(nodes) if nodes.is_empty() => {
            return Err(MempolicyError::EmptyNodemask("bind"));
        }
        MemPolicy::Interleave(nodes) if nodes.is_empty() => {
            return Err(MempolicyError::EmptyNodemask("interleave"));
        }
        _ => {}
    }
    if task.state() != TaskState::Running {
        return Err(MempolicyError::NotRunning(task.pid()));
    }
    let slot = POLICY.get_or_insert_with(task, || TaskPolicy::new(MemPolicy::Default, 0));
    *slot.policy.lock().unwrap_or_else(|e| e.into_inner()) = policy;
    // The next interleaved allocation starts from the first node.
    slot.il_prev.store(MASK_BITS - 1, Ordering::Relaxed);
    CHANGES.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// `get_mempolicy`: the task's policy ([`MemPolicy::Default`] if it has none).
pub fn get_mempolicy(task: &Task) -> MemPolicy {
    POLICY.get(task).map_or(MemPolicy::Default, |p| p.policy())
}

/// The task's policy state, if it has one.
pub fn task_policy(task: &Task) -> Option<Arc<TaskPolicy>> {
    POLICY.get(task)
}

/// The node the task's next page comes from when it runs on `local_node`; an interleave
/// policy advances the task's cursor.
///
/// # Errors
/// [`MempolicyError::NoSuchNode`] if `local_node` is not below [`MASK_BITS`].
pub fn alloc_node(task: &Task, local_node: u32) -> Result<u32, MempolicyError> {
    if local_node >= MASK_BITS {
        return Err(MempolicyError::NoSuchNode(local_node));
    }
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let Some(state) = POLICY.get(task) else {
        return Ok(local_node);
    };
    let node = match state.policy() {
        MemPolicy::Default => local_node,
        MemPolicy::Preferred(nodes) => nodes.first().unwrap_or(local_node),
        MemPolicy::Bind(nodes) if nodes.contains(local_node) => local_node,
        MemPolicy::Bind(nodes) => nodes.first().unwrap_or(local_node),
        MemPolicy::Interleave(nodes) => {
            let mut node = local_node;
            // A CAS loop, so that concurrent allocations each take their own node.
            let _ = state
                .il_prev
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |prev| {
                    node = nodes.next_after(prev).unwrap_or(local_node);
                    Some(node)
                });
            node
        }
    };
    Ok(node)
}

/// The counters.
pub fn stats() -> MempolicyStats {
    MempolicyStats {
        allocated: ALLOCATED.load(Ordering::Relaxed),
        freed: FREED.load(Ordering::Relaxed),
        changes: CHANGES.load(Ordering::Relaxed),
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
    }
}

/// The one-line summary `taskwatch simulate` prints.
pub fn summary() -> String {
    let s = stats();
    format!(
        "{} policies live ({} allocated, {} freed); {} set_mempolicy calls; {} allocations placed",
        s.live(),
        s.allocated,
        s.freed,
        s.changes,
        s.allocations
    )
}

/// `fork`: the child gets a copy of the parent's policy and cursor.
///
/// # Errors
/// None in this model; the signature matches the watcher.
pub fn on_fork(parent: &Task, child: &Task, _flags: CloneFlags) -> Result<(), MempolicyError> {
    let (policy, cursor) = POLICY.get(parent).map_or((MemPolicy::Default, 0), |p| {
        (p.policy(), p.interleave_cursor())
    });
    // A policy the child had already is dropped (and counted freed) here.
    POLICY.set(child, TaskPolicy::new(policy, cursor));
    Ok(())
}

/// `free`: frees the policy.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_free(task: &Task) -> Result<(), MempolicyError> {
    // Counted freed when its last holder drops it.
    POLICY.take(task);
    Ok(())
}

// One watcher per event, as v2's `DEFINE_TASK_INITCALL` / `…EXITCALL` / `…FREECALL`
// (but `fork` and `free`, below): the table calls each only for its own event, so none
// switches over the payload; a `let … else` only names the event's fields.

// `fork` and `free` share a watcher: the table sends a rolled-back fork's `free` to the
// fork watchers that succeeded and asked for `free`, so what `fork` set up is released
// on both paths.
#[task_watcher(events = fork | free, priority = 80)]
fn watch_fork_free(event: &Event<'_>) -> Result<(), MempolicyError> {
    if let EventData::Fork { parent, flags } = *event.data() {
        on_fork(parent, event.task(), flags)
    } else {
        on_free(event.task())
    }
}

/// The mempolicy watchers, one per event (`fork` and `free` together), for an explicit table
/// (the records `#[task_watcher]` submits).
pub fn watchers() -> Vec<Watcher> {
    vec![watcher_record!(watch_fork_free)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{DOOMED, failing_fork, serial, table_of};

    fn nodes(list: &str) -> Mask {
        list.parse().unwrap()
    }

    #[test]
    fn the_policy_is_copied_not_shared() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        assert_eq!(get_mempolicy(&parent), MemPolicy::Default);
        set_mempolicy(&parent, MemPolicy::Interleave(nodes("0-1"))).unwrap();
        let child = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        assert_eq!(get_mempolicy(&child), MemPolicy::Interleave(nodes("0-1")));
        assert!(!Arc::ptr_eq(
            &task_policy(&parent).unwrap(),
            &task_policy(&child).unwrap()
        ));
        set_mempolicy(&parent, MemPolicy::Bind(nodes("3"))).unwrap();
        assert_eq!(get_mempolicy(&child), MemPolicy::Interleave(nodes("0-1")));
        set_mempolicy(&child, MemPolicy::Preferred(nodes("2"))).unwrap();
        assert_eq!(get_mempolicy(&parent), MemPolicy::Bind(nodes("3")));
        tasks.exit(child.pid(), 0).unwrap();
        tasks.exit(parent.pid(), 0).unwrap();
    }

    #[test]
    fn policies_are_freed_at_free_also_after_a_rollback() {
        let _serial = serial();
        let mut list = watchers();
        list.push(failing_fork(PRIORITY - 1));
        let tasks = table_of(list);
        let before = stats();
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let child = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        tasks.set_comm(parent.pid(), DOOMED).unwrap();
        tasks.fork(parent.pid(), CloneFlags::empty()).unwrap_err();
        assert_eq!(stats().live() - before.live(), 2);
        tasks.exit(child.pid(), 0).unwrap();
        assert!(task_policy(&child).is_some(), "a zombie keeps its policy");
        tasks.exit(parent.pid(), 0).unwrap();
        assert!(task_policy(&child).is_none());
        let after = stats();
        assert_eq!(after.allocated - before.allocated, 3);
        assert_eq!(after.live(), before.live());
    }

    #[test]
    fn interleave_cursor_is_per_task_and_copied() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let a = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        set_mempolicy(&a, MemPolicy::Interleave(nodes("0,2-3"))).unwrap();
        let seq = |task: &Task, n: usize| -> Vec<u32> {
            (0..n).map(|_| alloc_node(task, 1).unwrap()).collect()
        };
        assert_eq!(seq(&a, 2), [0, 2]);
        let b = tasks.fork(a.pid(), CloneFlags::empty()).unwrap();
        assert_eq!(seq(&b, 4), [3, 0, 2, 3], "the cursor was copied");
        assert_eq!(seq(&a, 2), [3, 0], "and is not shared");
        tasks.exit(b.pid(), 0).unwrap();
        tasks.exit(a.pid(), 0).unwrap();
    }

    #[test]
    fn placement_follows_the_policy() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let t = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        assert_eq!(alloc_node(&t, 2), Ok(2));
        set_mempolicy(&t, MemPolicy::Bind(nodes("4-5"))).unwrap();
        assert_eq!(alloc_node(&t, 2), Ok(4));
        assert_eq!(alloc_node(&t, 5), Ok(5));
        set_mempolicy(&t, MemPolicy::Preferred(Mask::EMPTY)).unwrap();
        assert_eq!(alloc_node(&t, 3), Ok(3));
        set_mempolicy(&t, MemPolicy::Preferred(nodes("6"))).unwrap();
        assert_eq!(alloc_node(&t, 3), Ok(6));
        assert_eq!(alloc_node(&t, 64), Err(MempolicyError::NoSuchNode(64)));
        assert_eq!(
            set_mempolicy(&t, MemPolicy::Bind(Mask::EMPTY)),
            Err(MempolicyError::EmptyNodemask("bind"))
        );
        assert_eq!(
            MemPolicy::Interleave(nodes("0-3")).to_string(),
            "interleave:0-3"
        );
        tasks.exit(t.pid(), 0).unwrap();
        assert_eq!(
            set_mempolicy(&t, MemPolicy::Default),
            Err(MempolicyError::NotRunning(t.pid()))
        );
    }
}
