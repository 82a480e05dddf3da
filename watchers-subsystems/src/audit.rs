//! Audit (`CONFIG_AUDIT`): per-task audit contexts and auditd-style records.
//!
//! * **fork**: when auditing is [enabled](set_enabled) and no rule says
//!   [`RuleAction::Never`] for `fork`, the child gets an audit context (the kernel's
//!   `audit_alloc`). Its login uid and session are inherited from the parent, which
//!   keeps them also when it has no context (the kernel holds them in the task): an
//!   unaudited task in between does not make its descendants lose the user's `auid`.
//! * **exec, uid, gid, exit**: a task with a context gets one text record each, in the
//!   auditd format `type=EXECVE msg=audit(1700000000.123:42): pid=12 ...`, unless a rule
//!   filters it. Records go to a bounded backlog; when it is full the record is counted as
//!   lost instead of blocking the task (the kernel's `audit_backlog_limit` with
//!   `audit_log_lost`).
//! * **free**: the context is freed.
//!
//! Read records with [`read_records`], the counters with [`stats`].

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use watchers_core::{
    CloneFlags, Event, EventData, EventKind, EventSet, ExitStatus, Ids, Pid, Task, TaskSlot,
    Watcher, task_watcher, watcher_record,
};

/// The events the audit watchers ask for.
pub const EVENTS: EventSet = watcher_record!(watch_fork_free)
    .events()
    .union(watcher_record!(watch_exec).events())
    .union(watcher_record!(watch_uid).events())
    .union(watcher_record!(watch_gid).events())
    .union(watcher_record!(watch_exit).events());

/// The priority all the audit watchers share (`audit_alloc` comes after the scheduler set-up in
/// `copy_process`).
pub const PRIORITY: i32 = watcher_record!(watch_fork_free).priority();

/// The backlog limit a program starts with (the kernel's default `audit_backlog_limit`
/// is 64; a simulation wants more).
pub const DEFAULT_BACKLOG_LIMIT: usize = 8192;

/// The login uid and session id of a task that never logged in (`(uid_t)-1`).
pub const UNSET: u32 = u32::MAX;

/// What went wrong in the audit subsystem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The task has no audit context (it was not forked while auditing was enabled).
    #[error("task {0} has no audit context")]
    NoContext(Pid),
    /// A backlog limit of zero would lose every record.
    #[error("the audit backlog limit must be at least 1")]
    InvalidBacklogLimit,
}

/// The kinds of record the model writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// A program was executed.
    Execve,
    /// User ids changed.
    UidChange,
    /// Group ids changed.
    GidChange,
    /// The task exited.
    Exit,
}

impl RecordType {
    /// The `type=` name.
    pub const fn name(self) -> &'static str {
        match self {
            RecordType::Execve => "EXECVE",
            RecordType::UidChange => "UID_CHANGE",
            RecordType::GidChange => "GID_CHANGE",
            RecordType::Exit => "EXIT",
        }
    }

    /// The event that produces this record.
    pub const fn event(self) -> EventKind {
        match self {
            RecordType::Execve => EventKind::Exec,
            RecordType::UidChange => EventKind::Uid,
            RecordType::GidChange => EventKind::Gid,
            RecordType::Exit => EventKind::Exit,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One audit record, as it sits in the backlog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its type.
    pub kind: RecordType,
    /// Its serial number (unique, increasing, shared by every task).
    pub serial: u64,
    /// The task it is about.
    pub pid: Pid,
    /// The whole line, `type=... msg=audit(<ts>:<serial>): ...`.
    pub text: String,
}

impl fmt::Display for AuditRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// Audit it (for `fork`: give the child a context).
    Always,
    /// Do not audit it (for `fork`: the child gets no context at all).
    Never,
}

/// One audit rule: which events and tasks it matches, and what it does.
///
/// Rules are tried in the order they were added; the first that matches decides. With
/// no matching rule everything is audited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRule {
    /// The events it applies to (`fork` is the kernel's task filter list).
    pub events: EventSet,
    /// Only tasks with this real uid, if set.
    pub uid: Option<u32>,
    /// Only tasks with this name, if set.
    pub comm: Option<String>,
    /// What it does.
    pub action: RuleAction,
}

impl AuditRule {
    /// A rule for `events` matching every task.
    pub fn new(events: EventSet, action: RuleAction) -> AuditRule {
        AuditRule {
            events,
            uid: None,
            comm: None,
            action,
        }
    }

    /// The same rule, restricted to tasks whose real uid is `uid`.
    #[must_use]
    pub fn uid(self, uid: u32) -> AuditRule {
        AuditRule {
            uid: Some(uid),
            ..self
        }
    }

    /// The same rule, restricted to tasks named `comm`.
    #[must_use]
    pub fn comm(self, comm: impl Into<String>) -> AuditRule {
        AuditRule {
            comm: Some(comm.into()),
            ..self
        }
    }

    fn matches(&self, kind: EventKind, uid: u32, comm: &str) -> bool {
        self.events.contains(kind)
            && self.uid.is_none_or(|want| want == uid)
            && self.comm.as_deref().is_none_or(|want| want == comm)
    }
}

/// A task's audit context (the kernel's `struct audit_context` plus `loginuid`).
#[derive(Debug)]
pub struct AuditContext {
    loginuid: AtomicU32,
    sessionid: AtomicU32,
    records: AtomicU64,
}

impl AuditContext {
    /// The login uid (`auid`), [`UNSET`] if the task never logged in.
    pub fn loginuid(&self) -> u32 {
        self.loginuid.load(Ordering::Relaxed)
    }

    /// The audit session id (`ses`), [`UNSET`] if none.
    pub fn sessionid(&self) -> u32 {
        self.sessionid.load(Ordering::Relaxed)
    }

    /// How many records this task produced (written or lost).
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}

/// The audit counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Whether auditing is enabled now.
    pub enabled: bool,
    /// Contexts allocated at fork.
    pub contexts_allocated: u64,
    /// Contexts freed at free.
    pub contexts_freed: u64,
    /// Events about tasks with a context (each became a record, a lost record or was
    /// filtered).
    pub events_audited: u64,
    /// Records put in the backlog.
    pub records_written: u64,
    /// Records dropped because the backlog was full.
    pub records_lost: u64,
    /// Events a rule (or auditing being disabled) kept from becoming a record.
    pub records_filtered: u64,
    /// Records read out of the backlog.
    pub records_read: u64,
    /// Records in the backlog now.
    pub backlog: usize,
    /// The backlog limit.
    pub backlog_limit: usize,
}

impl AuditStats {
    /// Contexts alive now.
    pub fn contexts_live(&self) -> u64 {
        self.contexts_allocated - self.contexts_freed
    }
}

static CONTEXT: TaskSlot<AuditContext> = TaskSlot::new();

/// The login uid and session of a task forked without a context, kept (only when set)
/// to pass them on to its children: they are the task's, not its context's.
static LOGIN: TaskSlot<(u32, u32)> = TaskSlot::new();

static ENABLED: AtomicBool = AtomicBool::new(true);
static SERIAL: AtomicU64 = AtomicU64::new(0);
static NEXT_SESSION: AtomicU32 = AtomicU32::new(1);
static RULES: RwLock<Vec<AuditRule>> = RwLock::new(Vec::new());
static BACKLOG: Mutex<Backlog> = Mutex::new(Backlog {
    records: VecDeque::new(),
    limit: DEFAULT_BACKLOG_LIMIT,
});

static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);
static AUDITED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);
static LOST: AtomicU64 = AtomicU64::new(0);
static FILTERED: AtomicU64 = AtomicU64::new(0);
static READ: AtomicU64 = AtomicU64::new(0);

struct Backlog {
    records: VecDeque<AuditRecord>,
    limit: usize,
}

fn backlog() -> MutexGuard<'static, Backlog> {
    // Every update of the backlog is a single push or pop: a panic cannot tear it.
    BACKLOG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Turns auditing on or off (`auditctl -e`). New contexts are allocated only while it is
/// on, and no record is written while it is off.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether auditing is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Appends a rule (`auditctl -a`).
pub fn add_rule(rule: AuditRule) {
    RULES.write().unwrap_or_else(|e| e.into_inner()).push(rule);
}

/// Removes every rule (`auditctl -D`).
pub fn clear_rules() {
    RULES.write().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The rules, in the order they are tried.
pub fn rules() -> Vec<AuditRule> {
    RULES.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What the rules say about `kind` for `task`.
fn decide(kind: EventKind, task: &Task) -> RuleAction {
    let rules = RULES.read().unwrap_or_else(|e| e.into_inner());
    if rules.is_empty() {
        return RuleAction::Always;
    }
    let uid = task.uids().real;
    let comm = task.comm();
    rules
        .iter()
        .find(|rule| rule.matches(kind, uid, &comm))
        .map_or(RuleAction::Always, |rule| rule.action)
}

/// Sets the backlog limit (`auditctl -b`). Records already queued beyond a lower limit
/// stay until read.
///
/// # Errors
/// [`AuditError::InvalidBacklogLimit`] for zero.
pub fn set_backlog_limit(limit: usize) -> Result<(), AuditError> {
    if limit == 0 {
        return Err(AuditError::InvalidBacklogLimit);
    }
    backlog().limit = limit;
    Ok(())
}

/// Takes up to `max` records out of the backlog, oldest first (what `auditd` reads).
pub fn read_records(max: usize) -> Vec<AuditRecord> {
    let mut backlog = backlog();
    let n = max.min(backlog.records.len());
    let records: Vec<AuditRecord> = backlog.records.drain(..n).collect();
    READ.fetch_add(records.len() as u64, Ordering::Relaxed);
    records
}

/// The task's audit context, if it has one.
pub fn context(task: &Task) -> Option<std::sync::Arc<AuditContext>> {
    CONTEXT.get(task)
}

/// Sets the task's login uid (a write to `/proc/<pid>/loginuid`); it starts a new audit
/// session. Children forked afterwards inherit both.
///
/// # Errors
/// [`AuditError::NoContext`] if the task has no audit context.
pub fn set_loginuid(task: &Task, loginuid: u32) -> Result<u32, AuditError> {
    let context = CONTEXT.get(task).ok_or(AuditError::NoContext(task.pid()))?;
    let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    context.loginuid.store(loginuid, Ordering::Relaxed);
    context.sessionid.store(session, Ordering::Relaxed);
    Ok(session)
}

/// The counters.
pub fn stats() -> AuditStats {
    let backlog = backlog();
    AuditStats {
        enabled: enabled(),
        contexts_allocated: ALLOCATED.load(Ordering::Relaxed),
        contexts_freed: FREED.load(Ordering::Relaxed),
        events_audited: AUDITED.load(Ordering::Relaxed),
        records_written: WRITTEN.load(Ordering::Relaxed),
        records_lost: LOST.load(Ordering::Relaxed),
        records_filtered: FILTERED.load(Ordering::Relaxed),
        records_read: READ.load(Ordering::Relaxed),
        backlog: backlog.records.len(),
        backlog_limit: backlog.limit,
    }
}

/// The one-line summary `taskwatch simulate` prints.
pub fn summary() -> String {
    let s = stats();
    format!(
        "{}; {} records written, {} lost, {} filtered; backlog {}/{}; {} contexts live",
        if s.enabled { "enabled" } else { "disabled" },
        s.records_written,
        s.records_lost,
        s.records_filtered,
        s.backlog,
        s.backlog_limit,
        s.contexts_live()
    )
}

/// `fork`: allocates the child's context if auditing is on and the rules allow it.
///
/// # Errors
/// None in this model (the kernel fails with `ENOMEM`); the signature matches the watcher.
pub fn on_fork(parent: &Task, child: &Task, _flags: CloneFlags) -> Result<(), AuditError> {
    let (loginuid, sessionid) = match CONTEXT.get(parent) {
        Some(p) => (p.loginuid(), p.sessionid()),
        None => LOGIN.get(parent).map_or((UNSET, UNSET), |ids| *ids),
    };
    if !enabled() || decide(EventKind::Fork, child) == RuleAction::Never {
        if (loginuid, sessionid) != (UNSET, UNSET) {
            LOGIN.set(child, (loginuid, sessionid));
        }
        return Ok(());
    }
    let previous = CONTEXT.set(
        child,
        AuditContext {
            loginuid: AtomicU32::new(loginuid),
            sessionid: AtomicU32::new(sessionid),
            records: AtomicU64::new(0),
        },
    );
    if previous.is_none() {
        ALLOCATED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// `exec`: an `EXECVE` record.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_exec(task: &Task, filename: &str) -> Result<(), AuditError> {
    log(task, RecordType::Execve, |text| {
        let _ = write!(text, " exe={}", Quoted(filename));
    });
    Ok(())
}

/// `uid`: a `UID_CHANGE` record with the old and new ids.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_uid(task: &Task, old: Ids, new: Ids) -> Result<(), AuditError> {
    log(task, RecordType::UidChange, |text| {
        write_ids(text, "uid", old, new);
    });
    Ok(())
}

/// `gid`: a `GID_CHANGE` record with the old and new ids.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_gid(task: &Task, old: Ids, new: Ids) -> Result<(), AuditError> {
    log(task, RecordType::GidChange, |text| {
        write_ids(text, "gid", old, new);
    });
    Ok(())
}

/// `exit`: an `EXIT` record with the exit code or signal.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_exit(task: &Task, status: ExitStatus) -> Result<(), AuditError> {
    log(task, RecordType::Exit, |text| {
        let _ = match (status.code(), status.signal()) {
            (Some(code), _) => write!(text, " exit={code}"),
            (None, Some(signal)) => write!(text, " sig={signal}"),
            (None, None) => write!(text, " status={:#x}", status.0),
        };
    });
    Ok(())
}

/// `free`: frees the context.
///
/// # Errors
/// None; the signature matches the watcher.
pub fn on_free(task: &Task) -> Result<(), AuditError> {
    if CONTEXT.take(task).is_some() {
        FREED.fetch_add(1, Ordering::Relaxed);
    } else {
        // Only a task forked without a context keeps its ids apart (never both).
        LOGIN.take(task);
    }
    Ok(())
}

// One watcher per event, as v2's `DEFINE_TASK_INITCALL` / `…EXITCALL` / `…FREECALL`
// (but `fork` and `free`, below): the table calls each only for its own event, so none
// switches over the payload; a `let … else` only names the event's fields.

// `fork` and `free` share a watcher: the table sends a rolled-back fork's `free` to the
// fork watchers that succeeded and asked for `free`, so what `fork` set up is released
// on both paths.
#[task_watcher(events = fork | free, priority = 50)]
fn watch_fork_free(event: &Event<'_>) -> Result<(), AuditError> {
    if let EventData::Fork { parent, flags } = *event.data() {
        on_fork(parent, event.task(), flags)
    } else {
        on_free(event.task())
    }
}

#[task_watcher(events = exec, priority = 50)]
fn watch_exec(event: &Event<'_>) -> Result<(), AuditError> {
    let EventData::Exec { filename } = *event.data() else {
        return Ok(());
    };
    on_exec(event.task(), filename)
}

#[task_watcher(events = uid, priority = 50)]
fn watch_uid(event: &Event<'_>) -> Result<(), AuditError> {
    let EventData::Uid { old, new } = *event.data() else {
        return Ok(());
    };
    on_uid(event.task(), old, new)
}

#[task_watcher(events = gid, priority = 50)]
fn watch_gid(event: &Event<'_>) -> Result<(), AuditError> {
    let EventData::Gid { old, new } = *event.data() else {
        return Ok(());
    };
    on_gid(event.task(), old, new)
}

#[task_watcher(events = exit, priority = 50)]
fn watch_exit(event: &Event<'_>) -> Result<(), AuditError> {
    let EventData::Exit { status } = *event.data() else {
        return Ok(());
    };
    on_exit(event.task(), status)
}

/// The audit watchers, one per event (`fork` and `free` together), for an explicit table
/// (the records `#[task_watcher]` submits).
pub fn watchers() -> Vec<Watcher> {
    vec![
        watcher_record!(watch_fork_free),
        watcher_record!(watch_exec),
        watcher_record!(watch_uid),
        watcher_record!(watch_gid),
        watcher_record!(watch_exit),
    ]
}

/// Writes one record for `task` if it has a context and nothing filters it.
fn log(task: &Task, kind: RecordType, details: impl FnOnce(&mut String)) {
    let Some(context) = CONTEXT.get(task) else {
        return;
    };
    AUDITED.fetch_add(1, Ordering::Relaxed);
    context.records.fetch_add(1, Ordering::Relaxed);
    if !enabled() || decide(kind.event(), task) == RuleAction::Never {
        FILTERED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed) + 1;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let uids = task.uids();
    let gids = task.gids();
    let mut text = format!(
        "type={} msg=audit({}.{:03}:{}): pid={} ppid={} auid={} uid={} gid={} euid={} egid={} ses={} comm={}",
        kind.name(),
        now.as_secs(),
        now.subsec_millis(),
        serial,
        task.pid(),
        task.parent(),
        context.loginuid(),
        uids.real,
        gids.real,
        uids.effective,
        gids.effective,
        context.sessionid(),
        Quoted(&task.comm()),
    );
    details(&mut text);
    let record = AuditRecord {
        kind,
        serial,
        pid: task.pid(),
        text,
    };
    let mut backlog = backlog();
    if backlog.records.len() >= backlog.limit {
        drop(backlog);
        LOST.fetch_add(1, Ordering::Relaxed);
    } else {
        backlog.records.push_back(record);
        drop(backlog);
        WRITTEN.fetch_add(1, Ordering::Relaxed);
    }
}

fn write_ids(text: &mut String, what: &str, old: Ids, new: Ids) {
    let _ = write!(
        text,
        " o{what}={} oe{what}={} os{what}={} ofs{what}={} {what}={} e{what}={} s{what}={} fs{what}={}",
        old.real, old.effective, old.saved, old.fs, new.real, new.effective, new.saved, new.fs
    );
}

/// A value as auditd writes it: in double quotes, or as upper-case hex when it holds a
/// quote, a space, a control character or a non-ASCII byte.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = self.0.bytes().all(|b| b > 0x20 && b < 0x7f && b != b'"');
        if plain {
            write!(f, "\"{}\"", self.0)
        } else {
            self.0.bytes().try_for_each(|b| write!(f, "{b:02X}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{serial, table_of};

    fn drain_all() -> Vec<AuditRecord> {
        read_records(usize::MAX)
    }

    #[test]
    fn context_follows_fork_and_free() {
        let _serial = serial();
        set_enabled(true);
        clear_rules();
        let before = stats();
        let tasks = table_of(watchers());
        let child = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        assert!(context(&child).is_some());
        assert!(context(tasks.init()).is_none(), "init was never forked");
        tasks.exit(child.pid(), 0).unwrap();
        assert!(
            context(&child).is_none(),
            "an orphan of init is freed at once"
        );
        let after = stats();
        assert_eq!(after.contexts_allocated - before.contexts_allocated, 1);
        assert_eq!(after.contexts_freed - before.contexts_freed, 1);
    }

    #[test]
    fn records_have_the_auditd_shape() {
        let _serial = serial();
        set_enabled(true);
        clear_rules();
        drain_all();
        let tasks = table_of(watchers());
        let sh = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        set_loginuid(&sh, 1000).unwrap();
        let job = tasks.fork(sh.pid(), CloneFlags::empty()).unwrap();
        tasks.exec(job.pid(), "/usr/bin/my prog").unwrap();
        tasks.setuid(job.pid(), 1000).unwrap();
        tasks.setgid(job.pid(), 100).unwrap();
        tasks.exit_with(job.pid(), ExitStatus::signaled(9)).unwrap();
        let records = drain_all();
        let kinds: Vec<_> = records.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                RecordType::Execve,
                RecordType::UidChange,
                RecordType::GidChange,
                RecordType::Exit
            ]
        );
        let exec = &records[0].text;
        assert!(exec.starts_with("type=EXECVE msg=audit("), "{exec}");
        assert!(exec.contains(&format!(":{}): pid={} ", records[0].serial, job.pid())));
        assert!(exec.contains(" auid=1000 "), "{exec}");
        // The space makes auditd hex-encode the path; the name is the base name, quoted.
        assert!(
            exec.contains(" exe=2F7573722F62696E2F6D792070726F67"),
            "{exec}"
        );
        assert!(exec.contains(" comm=6D792070726F67 "), "{exec}");
        assert!(records[1].text.contains(" ouid=0 "), "{}", records[1].text);
        assert!(
            records[1].text.contains(" fsuid=1000"),
            "{}",
            records[1].text
        );
        assert!(
            records[2].text.contains(" egid=100 "),
            "{}",
            records[2].text
        );
        assert!(records[3].text.ends_with(" sig=9"), "{}", records[3].text);
        assert!(records.windows(2).all(|w| w[0].serial < w[1].serial));
        assert_eq!(
            context(&job).map(|c| c.records()),
            Some(4),
            "a zombie keeps it"
        );
        tasks.exit(sh.pid(), 0).unwrap();
        assert!(context(&job).is_none(), "init reaped the orphaned zombie");
    }

    #[test]
    fn a_full_backlog_counts_lost_records_instead_of_blocking() {
        let _serial = serial();
        set_enabled(true);
        clear_rules();
        drain_all();
        set_backlog_limit(3).unwrap();
        let before = stats();
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        for i in 0..10 {
            tasks.exec(task.pid(), &format!("/bin/p{i}")).unwrap();
        }
        let after = stats();
        assert_eq!(after.records_written - before.records_written, 3);
        assert_eq!(after.records_lost - before.records_lost, 7);
        assert_eq!(context(&task).unwrap().records(), 10);
        assert_eq!(drain_all().len(), 3);
        set_backlog_limit(DEFAULT_BACKLOG_LIMIT).unwrap();
        assert_eq!(set_backlog_limit(0), Err(AuditError::InvalidBacklogLimit));
        tasks.exit(task.pid(), 0).unwrap();
        drain_all();
    }

    #[test]
    fn rules_filter_events_and_contexts() {
        let _serial = serial();
        set_enabled(true);
        clear_rules();
        drain_all();
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        add_rule(AuditRule::new(EventSet::EXEC, RuleAction::Never).uid(0));
        add_rule(AuditRule::new(EventSet::FORK, RuleAction::Never).comm("quiet"));
        let before = stats();
        tasks.exec(task.pid(), "/bin/a").unwrap(); // uid 0: filtered
        tasks.setuid(task.pid(), 7).unwrap(); // a uid record
        tasks.exec(task.pid(), "/bin/b").unwrap(); // uid 7: recorded
        tasks.set_comm(task.pid(), "quiet").unwrap();
        let quiet = tasks.fork(task.pid(), CloneFlags::empty()).unwrap();
        assert!(context(&quiet).is_none(), "the task filter said never");
        tasks.exec(quiet.pid(), "/bin/c").unwrap(); // no context: not audited
        let after = stats();
        assert_eq!(after.records_filtered - before.records_filtered, 1);
        assert_eq!(after.records_written - before.records_written, 2);
        assert_eq!(after.events_audited - before.events_audited, 3);
        clear_rules();
        assert!(rules().is_empty());
        tasks.exit(quiet.pid(), 0).unwrap();
        tasks.exit(task.pid(), 0).unwrap();
        drain_all();
    }

    #[test]
    fn disabled_audit_allocates_no_context() {
        let _serial = serial();
        clear_rules();
        set_enabled(false);
        let tasks = table_of(watchers());
        let task = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        assert!(context(&task).is_none());
        assert_eq!(
            set_loginuid(&task, 1),
            Err(AuditError::NoContext(task.pid()))
        );
        set_enabled(true);
        let child = tasks.fork(task.pid(), CloneFlags::empty()).unwrap();
        let context = context(&child).unwrap();
        assert_eq!((context.loginuid(), context.sessionid()), (UNSET, UNSET));
        tasks.exit(child.pid(), 0).unwrap();
        tasks.exit(task.pid(), 0).unwrap();
        drain_all();
    }

    /// The login uid is the task's, not its context's (the kernel keeps it in the task):
    /// a task forked without a context (a `never` fork rule, or auditing off) still
    /// passes it on, so an unaudited process in between cannot shed the user's `auid`.
    #[test]
    fn the_login_uid_survives_a_task_without_a_context() {
        let _serial = serial();
        set_enabled(true);
        clear_rules();
        drain_all();
        let tasks = table_of(watchers());
        let login = tasks.fork(Pid::INIT, CloneFlags::empty()).unwrap();
        let session = set_loginuid(&login, 1000).unwrap();
        tasks.set_comm(login.pid(), "quiet").unwrap();
        add_rule(AuditRule::new(EventSet::FORK, RuleAction::Never).comm("quiet"));
        let quiet = tasks.fork(login.pid(), CloneFlags::empty()).unwrap();
        assert!(context(&quiet).is_none());
        tasks.set_comm(quiet.pid(), "sh").unwrap();
        let audited = tasks.fork(quiet.pid(), CloneFlags::empty()).unwrap();
        let ids = context(&audited).map(|c| (c.loginuid(), c.sessionid()));
        assert_eq!(ids, Some((1000, session)), "through a context-less task");
        clear_rules();
        set_enabled(false);
        let unaudited = tasks.fork(login.pid(), CloneFlags::empty()).unwrap();
        set_enabled(true);
        let later = tasks.fork(unaudited.pid(), CloneFlags::empty()).unwrap();
        let ids = context(&later).map(|c| (c.loginuid(), c.sessionid()));
        assert_eq!(
            ids,
            Some((1000, session)),
            "through a task forked while off"
        );
        let before = stats();
        for task in [later, unaudited, audited, quiet, login] {
            tasks.exit(task.pid(), 0).unwrap();
        }
        assert_eq!(
            stats().contexts_live(),
            before.contexts_live() - 3,
            "context-less tasks never counted a context"
        );
        drain_all();
    }

    #[test]
    fn hex_encoding_of_odd_values() {
        assert_eq!(Quoted("ls").to_string(), "\"ls\"");
        assert_eq!(Quoted("a b").to_string(), "612062");
        assert_eq!(Quoted("q\"").to_string(), "7122");
    }
}
