//! Keys and keyrings (`CONFIG_KEYS`): the thread, process and session keyrings of a task.
//!
//! Keys are reference counted (`Arc`); a keyring holds references to the keys linked
//! into it. Every key is in a registry by serial number while it lives, so
//! [`live_keys`] and [`key_info`] show exactly what is still referenced.
//!
//! * **fork** (the kernel's `copy_creds`): the session keyring is shared with the child.
//!   A thread ([`CloneFlags::THREAD`]) shares its parent's process keyring and gets a
//!   **new** thread keyring of its own if the parent had one; a new process gets neither.
//! * **exec**: the thread keyring is dropped and the process keyring, if there was one,
//!   is replaced by a new empty one.
//! * **uid / gid**: the thread and process keyrings are re-owned to the new filesystem
//!   uid / gid (`key_fsuid_changed`, `key_fsgid_changed`). The session keyring, which
//!   other processes may share, keeps its owner.
//! * **free**: the task's references go; a key is released when the last task (or
//!   keyring) holding it lets go.
//!
//! Keyrings are made with [`install_thread_keyring`], [`install_process_keyring`] and
//! [`join_session_keyring`]; keys are added with [`add_key`] and found with [`search`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use watchers_core::{
    CloneFlags, Event, EventData, EventSet, Ids, Pid, Task, TaskSlot, TaskState, Watcher,
    task_watcher, watcher_record,
};

/// The events the keys watchers ask for.
pub const EVENTS: EventSet = watcher_record!(watch_fork_free)
    .events()
    .union(watcher_record!(watch_exec).events())
    .union(watcher_record!(watch_uid).events())
    .union(watcher_record!(watch_gid).events());

/// The priority all the keys watchers share (`copy_keys` comes late in `copy_process`).
pub const PRIORITY: i32 = watcher_record!(watch_fork_free).priority();

/// A key's serial number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeySerial(pub i32);

impl fmt::Display for KeySerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The type of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// A keyring: a list of links to other keys.
    Keyring,
    /// A `user` key: a blob of data.
    User,
}

/// One of a task's three keyrings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyringKind {
    /// The thread keyring (`KEY_SPEC_THREAD_KEYRING`), private to one thread.
    Thread,
    /// The process keyring (`KEY_SPEC_PROCESS_KEYRING`), shared by a thread group.
    Process,
    /// The session keyring (`KEY_SPEC_SESSION_KEYRING`), inherited by children.
    Session,
}

/// What went wrong with a key operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The task has no key state (it was not forked with this subsystem on).
    #[error("task {0} has no keyrings state")]
    NoState(Pid),
    /// The task has no keyring of this kind.
    #[error("task {pid} has no {kind:?} keyring")]
    NoKeyring {
        /// The task.
        pid: Pid,
        /// The keyring asked for.
        kind: KeyringKind,
    },
    /// The key is not linked into that keyring.
    #[error("key {0} is not in that keyring")]
    NotLinked(KeySerial),
    /// The task is exiting or gone.
    #[error("task {0} is not running")]
    NotRunning(Pid),
}

/// A key or a keyring.
pub struct Key {
    serial: KeySerial,
    kind: KeyType,
    description: String,
    uid: AtomicU32,
    gid: AtomicU32,
    payload: Mutex<Payload>,
}

enum Payload {
    Links(Vec<Arc<Key>>),
    Data(Vec<u8>),
}

impl Key {
    fn new(kind: KeyType, description: &str, owner: (u32, u32), payload: Payload) -> Arc<Key> {
        let serial = KeySerial(NEXT_SERIAL.fetch_add(1, Ordering::Relaxed));
        let key = Arc::new(Key {
            serial,
            kind,
            description: description.to_owned(),
            uid: AtomicU32::new(owner.0),
            gid: AtomicU32::new(owner.1),
            payload: Mutex::new(payload),
        });
        LIVE.fetch_add(1, Ordering::Relaxed);
        CREATED.fetch_add(1, Ordering::Relaxed);
        registry().insert(serial.0, Arc::downgrade(&key));
        key
    }

    fn keyring(description: &str, owner: (u32, u32)) -> Arc<Key> {
        Key::new(
            KeyType::Keyring,
            description,
            owner,
            Payload::Links(Vec::new()),
        )
    }

    fn lock(&self) -> MutexGuard<'_, Payload> {
        self.payload.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reown(&self, uid: Option<u32>, gid: Option<u32>) {
        if let Some(uid) = uid {
            self.uid.store(uid, Ordering::Relaxed);
        }
        if let Some(gid) = gid {
            self.gid.store(gid, Ordering::Relaxed);
        }
    }

    fn info(self: &Arc<Key>) -> KeyInfo {
        let links = match &*self.lock() {
            Payload::Links(links) => links.len(),
            Payload::Data(_) => 0,
        };
        KeyInfo {
            serial: self.serial,
            kind: self.kind,
            description: self.description.clone(),
            uid: self.uid.load(Ordering::Relaxed),
            gid: self.gid.load(Ordering::Relaxed),
            // Not counting the reference this call holds.
            usage: Arc::strong_count(self) - 1,
            links,
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        registry().remove(&self.serial.0);
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("serial", &self.serial)
            .field("kind", &self.kind)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// A key as it is now (what `keyctl describe` shows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its serial number.
    pub serial: KeySerial,
    /// Its type.
    pub kind: KeyType,
    /// Its description (its name).
    pub description: String,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// How many references it has: tasks' keyring slots and keyring links.
    pub usage: usize,
    /// For a keyring, how many keys are linked into it.
    pub links: usize,
}

/// The keys counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeysStats {
    /// Keys alive now.
    pub live_keys: usize,
    /// Keys created so far.
    pub created: u64,
    /// Task key states allocated at fork.
    pub tasks_allocated: u64,
    /// Task key states freed at free.
    pub tasks_freed: u64,
}

impl KeysStats {
    /// Task key states alive now.
    pub fn tasks_live(&self) -> u64 {
        self.tasks_allocated - self.tasks_freed
    }
}

/// The process keyring of a thread group.
struct ProcessKeys(Mutex<Option<Arc<Key>>>);

/// A task's keyrings.
struct TaskKeys {
    thread: Mutex<Option<Arc<Key>>>,
    process: Arc<ProcessKeys>,
    session: Mutex<Option<Arc<Key>>>,
}

impl TaskKeys {
    fn ring(&self, kind: KeyringKind) -> MutexGuard<'_, Option<Arc<Key>>> {
        let ring = match kind {
            KeyringKind::Thread => &self.thread,
            KeyringKind::Process => &self.process.0,
            KeyringKind::Session => &self.session,
        };
        ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, kind: KeyringKind) -> Option<Arc<Key>> {
        self.ring(kind).clone()
    }
}

static KEYS: TaskSlot<TaskKeys> = TaskSlot::new();
static REGISTRY: Mutex<BTreeMap<i32, Weak<Key>>> = Mutex::new(BTreeMap::new());
static NEXT_SERIAL: AtomicI32 = AtomicI32::new(1);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static CREATED: AtomicU64 = AtomicU64::new(0);
static TASKS_ALLOCATED: AtomicU64 = AtomicU64::new(0);
static TASKS_FREED: AtomicU64 = AtomicU64::new(0);

fn registry() -> MutexGuard<'static, BTreeMap<i32, Weak<Key>>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn owner(task: &Task) -> (u32, u32) {
    (task.uids().fs, task.gids().fs)
}

fn state(task: &Task) -> Result<Arc<TaskKeys>, KeysError> {
    KEYS.get(task).ok_or(KeysError::NoState(task.pid()))
}

fn running(task: &Task) -> Result<Arc<TaskKeys>, KeysError> {
    if task.state() != TaskState::Running {
        return Err(KeysError::NotRunning(task.pid()));
    }
    state(task)
}

fn install(task: &Task, kind: KeyringKind, description: &str) -> Result<KeySerial, KeysError> {
    let keys = running(task)?;
    let mut ring = keys.ring(kind);
    let key = ring.get_or_insert_with(|| Key::keyring(description, owner(task)));
    Ok(key.serial)
}

/// Gives the task a thread keyring if it has none (`KEYCTL_GET_KEYRING_ID` with
/// create); returns its serial.
///
/// # Errors
/// [`KeysError::NoState`], [`KeysError::NotRunning`].
pub fn install_thread_keyring(task: &Task) -> Result<KeySerial, KeysError> {
    install(task, KeyringKind::Thread, "_tid")
}

/// Gives the task's thread group a process keyring if it has none; returns its serial.
///
/// # Errors
/// [`KeysError::NoState`], [`KeysError::NotRunning`].
pub fn install_process_keyring(task: &Task) -> Result<KeySerial, KeysError> {
    install(task, KeyringKind::Process, "_pid")
}

/// `KEYCTL_JOIN_SESSION_KEYRING`: the task starts a new session keyring (named `name`,
/// or `_ses`), dropping its reference to the old one. Children forked afterwards share
/// the new one.
///
/// # Errors
/// [`KeysError::NoState`], [`KeysError::NotRunning`].
pub fn join_session_keyring(task: &Task, name: Option<&str>) -> Result<KeySerial, KeysError> {
    let keys = running(task)?;
    let key = Key::keyring(name.unwrap_or("_ses"), owner(task));
    let serial = key.serial;
    let old = keys.ring(KeyringKind::Session).replace(key);
    drop(old);
    Ok(serial)
}

/// `add_key("user", description, payload, ring)`: adds a key owned by the task's
/// filesystem ids to one of its keyrings, or updates the payload of the key with this
/// description already there.
///
/// # Errors
/// [`KeysError::NoKeyring`] if the task has no such keyring; [`KeysError::NoState`],
/// [`KeysError::NotRunning`].
pub fn add_key(
    task: &Task,
    ring: KeyringKind,
    description: &str,
    payload: &[u8],
) -> Result<KeySerial, KeysError> {
    let keyring = running(task)?.get(ring).ok_or(KeysError::NoKeyring {
        pid: task.pid(),
        kind: ring,
    })?;
    let mut links = keyring.lock();
    let Payload::Links(links) = &mut *links else {
        unreachable!("a task's keyrings are keyrings")
    };
    if let Some(existing) = links
        .iter()
        .find(|key| key.kind == KeyType::User && key.description == description)
    {
        *existing.lock() = Payload::Data(payload.to_vec());
        return Ok(existing.serial);
    }
    let key = Key::new(
        KeyType::User,
        description,
        owner(task),
        Payload::Data(payload.to_vec()),
    );
    let serial = key.serial;
    links.push(key);
    Ok(serial)
}

/// `keyctl unlink`: removes a key from one of the task's keyrings; it is released if
/// nothing else holds it.
///
/// # Errors
/// [`KeysError::NotLinked`], [`KeysError::NoKeyring`], [`KeysError::NoState`].
pub fn unlink(task: &Task, ring: KeyringKind, serial: KeySerial) -> Result<(), KeysError> {
    let keyring = state(task)?.get(ring).ok_or(KeysError::NoKeyring {
        pid: task.pid(),
        kind: ring,
    })?;
    let removed = {
        let mut links = keyring.lock();
        let Payload::Links(links) = &mut *links else {
            unreachable!("a task's keyrings are keyrings")
        };
        let at = links
            .iter()
            .position(|key| key.serial == serial)
            .ok_or(KeysError::NotLinked(serial))?;
        links.remove(at)
    };
    drop(removed);
    Ok(())
}

/// `request_key` without an upcall: the key with this description in the task's
/// thread, then process, then session keyring.
pub fn search(task: &Task, description: &str) -> Option<KeySerial> {
    let keys = KEYS.get(task)?;
    [
        KeyringKind::Thread,
        KeyringKind::Process,
        KeyringKind::Session,
    ]
    .into_iter()
    .filter_map(|kind| keys.get(kind))
    .find_map(|keyring| match &*keyring.lock() {
        Payload::Links(links) => links
            .iter()
            .find(|key| key.description == description)
            .map(|key| key.serial),
        Payload::Data(_) => None,
    })
}

/// The task's keyring of this kind, if it has one.
pub fn keyring(task: &Task, kind: KeyringKind) -> Option<KeyInfo> {
    KEYS.get(task)?.get(kind).map(|key| key.info())
}

/// The key with this serial, if it is still alive.
pub fn key_info(serial: KeySerial) -> Option<KeyInfo> {
    let key = registry().get(&serial.0).and_then(Weak::upgrade);
    // The registry lock is released: dropping the last reference here is safe.
    key.map(|key| key.info())
}

/// A user key's payload, if the key is alive and is not a keyring.
pub fn payload(serial: KeySerial) -> Option<Vec<u8>> {
    let key = registry().get(&serial.0).and_then(Weak::upgrade)?;
    match &*key.lock() {
        Payload::Data(data) => Some(data.clone()),
        Payload::Links(_) => None,
    }
}

/// How many keys are alive (referenced by a task or a keyring).
pub fn live_keys() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The counters.
pub fn stats() -> KeysStats {
    KeysStats {
        live_keys: live_keys(),
        created: CREATED.load(Ordering::Relaxed),
        tasks_allocated: TASKS_ALLOCATED.load(Ordering::Relaxed),
        tasks_freed: TASKS_FREED.load(Ordering::Relaxed),
    }
}

/// The one-line summary `taskwatch simulate` prints.
pub fn summary() -> String {
    let s = stats();
    format!(
        "{} keys live ({} created); {} task keyring sets live",
        s.live_keys,
        s.created,
        s.tasks_live()
    )
}

/// `fork`: shares or copies the parent's keyrings as `copy_creds` does.
///
/// # Errors
/// None in this model; the signature matches the watcher.
pub fn on_fork(parent: &Task, child: &Task, flags: CloneFlags) -> Result<(), KeysError> {
    let from = KEYS.get(parent);
    let session = from
        .as_ref()
        .and_then(|keys| keys.get(KeyringKind::Session));
    let keys = if flags.contains(CloneFlags::THREAD) {
        let had_thread = from
            .as_ref()
            .is_some_and(|keys| keys.ring(KeyringKind::Thread).is_some());
        TaskKeys {
            thread: Mutex::new(had_thread.then(|| Key::keyring("_tid", owner(child)))),
            process: from.as_ref().map_or_else(
                || Arc::new(ProcessKeys(Mutex::new(None))),
                |keys| keys.process.clone(),
            ),
            session: Mutex::new(session),
        }
    } else {
        TaskKeys {
            thread: Mutex::new(None),
            process: Arc::new(ProcessKeys(Mutex::new(None))),
            session: Mutex::new(session),
        }
    };
    TASKS_ALLOCATED.fetch_add(1, Ordering::Relaxed);
    if KEYS.set(child, keys).is_some() {
        TASKS_FREED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// `exec`: drops the thread keyring and replaces the process keyring.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_exec(task: &Task, _filename: &str) -> Result<(), KeysError> {
    let Some(keys) = KEYS.get(task) else {
        return Ok(());
    };
    let old_thread = keys.ring(KeyringKind::Thread).take();
    let old_process = {
        let mut process = keys.ring(KeyringKind::Process);
        match process.as_ref() {
            Some(_) => process.replace(Key::keyring("_pid", owner(task))),
            None => None,
        }
    };
    // Released outside the locks.
    drop((old_thread, old_process));
    Ok(())
}

/// `uid`: re-owns the thread and process keyrings to the new filesystem uid.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_uid(task: &Task, old: Ids, new: Ids) -> Result<(), KeysError> {
    if old.fs != new.fs {
        reown(task, Some(new.fs), None);
    }
    Ok(())
}

/// `gid`: re-owns the thread and process keyrings to the new filesystem gid.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_gid(task: &Task, old: Ids, new: Ids) -> Result<(), KeysError> {
    if old.fs != new.fs {
        reown(task, None, Some(new.fs));
    }
    Ok(())
}

fn reown(task: &Task, uid: Option<u32>, gid: Option<u32>) {
    let Some(keys) = KEYS.get(task) else {
        return;
    };
    for kind in [KeyringKind::Thread, KeyringKind::Process] {
        if let Some(key) = keys.get(kind) {
            key.reown(uid, gid);
        }
    }
}

/// `free`: drops the task's references to its keyrings.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_free(task: &Task) -> Result<(), KeysError> {
    if KEYS.take(task).is_some() {
        TASKS_FREED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

// One watcher per event, as v2's `DEFINE_TASK_INITCALL` / `…EXITCALL` / `…FREECALL`
// (but `fork` and `free`, below): the table calls each only for its own event, so none
// switches over the payload; a `let … else` only names the event's fields.

// `fork` and `free` share a watcher: the table sends a rolled-back fork's `free` to the
// fork watchers that succeeded and asked for `free`, so what `fork` set up is released
// on both paths.
#[task_watcher(events = fork | free, priority = 30)]
fn watch_fork_free(event: &Event<'_>) -> Result<(), KeysError> {
    if let EventData::Fork { parent, flags } = *event.data() {
        on_fork(parent, event.task(), flags)
    } else {
        on_free(event.task())
    }
}

#[task_watcher(events = exec, priority = 30)]
fn watch_exec(event: &Event<'_>) -> Result<(), KeysError> {
    let EventData::Exec { filename } = *event.data() else {
        return Ok(());
    };
    on_exec(event.task(), filename)
}

#[task_watcher(events = uid, priority = 30)]
fn watch_uid(event: &Event<'_>) -> Result<(), KeysError> {
    let EventData::Uid { old, new } = *event.data() else {
        return Ok(());
    };
    on_uid(event.task(), old, new)
}

#[task_watcher(events = gid, priority = 30)]
fn watch_gid(event: &Event<'_>) -> Result<(), KeysError> {
    let EventData::Gid { old, new } = *event.data() else {
        return Ok(());
    };
    on_gid(event.task(), old, new)
}

/// The keys watchers, one per event (`fork` and `free` together), for an explicit table
/// (the records `#[task_watcher]` submits).
pub fn watchers() -> Vec<Watcher> {
    vec![
        watcher_record!(watch_fork_free),
        watcher_record!(watch_exec),
        watcher_record!(watch_uid),
        watcher_record!(watch_gid),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{DOOMED, failing_fork, serial, table_of};

    fn serial_of(task: &Task, kind: KeyringKind) -> Option<KeySerial> {
        keyring(task, kind).map(|info| info.serial)
    }

    #[test]
    fn fork_shares_or_copies_as_the_kernel_does() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let parent = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let thread = install_thread_keyring(&parent).unwrap();
        let process = install_process_keyring(&parent).unwrap();
        let session = join_session_keyring(&parent, Some("login")).unwrap();

        let child = tasks.fork(parent.pid(), CloneFlags::empty()).unwrap();
        assert_eq!(serial_of(&child, KeyringKind::Thread), None);
        assert_eq!(serial_of(&child, KeyringKind::Process), None);
        assert_eq!(serial_of(&child, KeyringKind::Session), Some(session));

        let sibling = tasks
            .fork(parent.pid(), CloneFlags::THREAD | CloneFlags::VM)
            .unwrap();
        let own = serial_of(&sibling, KeyringKind::Thread).unwrap();
        assert_ne!(own, thread, "a new thread gets a thread keyring of its own");
        assert_eq!(serial_of(&sibling, KeyringKind::Process), Some(process));
        assert_eq!(serial_of(&sibling, KeyringKind::Session), Some(session));
        assert_eq!(key_info(session).unwrap().usage, 3);
        assert_eq!(
            key_info(process).unwrap().usage,
            1,
            "one group, one reference"
        );

        tasks.exit(sibling.pid(), 0).unwrap();
        assert_eq!(key_info(own), None, "released with the thread");
        tasks.exit(child.pid(), 0).unwrap();
        tasks.exit(parent.pid(), 0).unwrap();
        for key in [thread, process, session] {
            assert_eq!(key_info(key), None);
        }
    }

    #[test]
    fn exec_drops_the_thread_keyring_and_replaces_the_process_keyring() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let thread = install_thread_keyring(&task).unwrap();
        let process = install_process_keyring(&task).unwrap();
        let secret = add_key(&task, KeyringKind::Process, "secret", b"42").unwrap();
        assert_eq!(search(&task, "secret"), Some(secret));
        tasks.exec(task.pid(), "/bin/sh").unwrap();
        assert_eq!(serial_of(&task, KeyringKind::Thread), None);
        let new = serial_of(&task, KeyringKind::Process).unwrap();
        assert_ne!(new, process);
        assert_eq!(keyring(&task, KeyringKind::Process).unwrap().links, 0);
        for gone in [thread, process, secret] {
            assert_eq!(key_info(gone), None, "{gone} released");
        }
        assert_eq!(search(&task, "secret"), None);
        tasks.exit(task.pid(), 0).unwrap();
        assert_eq!(key_info(new), None);
    }

    #[test]
    fn an_id_change_reowns_the_private_keyrings() {
        let _serial = serial();
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        install_thread_keyring(&task).unwrap();
        install_process_keyring(&task).unwrap();
        join_session_keyring(&task, None).unwrap();
        tasks.seteuid(task.pid(), 1000).unwrap();
        tasks.setegid(task.pid(), 50).unwrap();
        for kind in [KeyringKind::Thread, KeyringKind::Process] {
            let info = keyring(&task, kind).unwrap();
            assert_eq!((info.uid, info.gid), (1000, 50), "{kind:?}");
        }
        let session = keyring(&task, KeyringKind::Session).unwrap();
        assert_eq!((session.uid, session.gid), (0, 0));
        let key = add_key(&task, KeyringKind::Session, "k", b"v").unwrap();
        assert_eq!(key_info(key).map(|i| (i.uid, i.gid)), Some((1000, 50)));
        assert_eq!(add_key(&task, KeyringKind::Session, "k", b"w"), Ok(key));
        assert_eq!(payload(key).as_deref(), Some(&b"w"[..]));
        unlink(&task, KeyringKind::Session, key).unwrap();
        assert_eq!(key_info(key), None);
        assert_eq!(
            unlink(&task, KeyringKind::Session, key),
            Err(KeysError::NotLinked(key))
        );
        tasks.exit(task.pid(), 0).unwrap();
    }

    #[test]
    fn every_key_is_released_when_the_last_user_is_freed() {
        let _serial = serial();
        let before = live_keys();
        let mut list = watchers();
        list.push(failing_fork(PRIORITY - 1));
        let tasks = table_of(list);
        let leader = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        install_thread_keyring(&leader).unwrap();
        install_process_keyring(&leader).unwrap();
        let session = join_session_keyring(&leader, None).unwrap();
        add_key(&leader, KeyringKind::Session, "shared", b"x").unwrap();
        let worker = tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap();
        let child = tasks.fork(leader.pid(), CloneFlags::empty()).unwrap();
        tasks.set_comm(leader.pid(), DOOMED).unwrap();
        // The thread keyring made for the refused thread is released by the rollback.
        tasks.fork(leader.pid(), CloneFlags::THREAD).unwrap_err();
        assert_eq!(live_keys() - before, 5);
        // The leader stays, unfreed, while its thread runs (the kernel's
        // `delay_group_leader`): its thread keyring goes with it after the thread.
        tasks.exit(leader.pid(), 0).unwrap();
        assert_eq!(live_keys() - before, 5, "the leader is not freed yet");
        tasks.exit(worker.pid(), 0).unwrap();
        assert_eq!(
            live_keys() - before,
            2,
            "the session keyring and its key stay"
        );
        assert!(key_info(session).is_some());
        tasks.exit(child.pid(), 0).unwrap();
        assert_eq!(live_keys(), before);
        assert_eq!(
            install_thread_keyring(tasks.init()),
            Err(KeysError::NoState(Pid::INIT))
        );
    }
}
