//! The process-events connector source against the real kernel.
//!
//! Needs CONFIG_PROC_EVENTS, the initial namespaces and, on some systems, CAP_NET_ADMIN. Where the connector cannot be
//! opened each test prints `skipped: <reason>` and passes, unless
//! `TASKWATCH_REQUIRE_PROC_CONNECTOR=1` is set, which makes that a failure.
//!
//! Tests in this binary run in parallel and every one receives every event of the
//! machine, so each looks only at the processes it spawned.
#![cfg(target_os = "linux")]

use std::collections::{BTreeSet, HashSet};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use watchers_core::{EventData, EventKind, EventSet, Registration, TaskState, WatcherTable};
use watchers_proc_connector::cn_proc::{self, ProcEvent};
use watchers_proc_connector::{Options, ProcConnector, Rejection, Report};

/// Passes as skipped, unless `TASKWATCH_REQUIRE_PROC_CONNECTOR=1`.
fn skip(reason: &str) {
    if std::env::var("TASKWATCH_REQUIRE_PROC_CONNECTOR").as_deref() == Ok("1") {
        panic!("TASKWATCH_REQUIRE_PROC_CONNECTOR=1 but {reason}");
    }
    println!("skipped: {reason}");
}

fn open_or_skip(table: &'static WatcherTable, options: Options) -> Option<ProcConnector> {
    match ProcConnector::open(table, options) {
        Ok(source) => Some(source),
        Err(error) if error.is_unavailable() => {
            skip(&format!("the connector is unavailable: {error}"));
            None
        }
        Err(error) => panic!("opening the connector failed: {error}"),
    }
}

fn empty_table() -> &'static WatcherTable {
    WatcherTable::from_watchers([])
        .expect("an empty table")
        .leak()
}

/// Registers `name` for `events` on `table`, recording the pid of each task it is
/// called for.
fn record_pids(
    table: &'static WatcherTable,
    name: &'static str,
    events: EventSet,
) -> (Registration<'static>, Arc<Mutex<HashSet<u32>>>) {
    let pids: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let record = pids.clone();
    let registration = table
        .watcher(name, events)
        .register(move |event| {
            record.lock().unwrap().insert(event.task().pid().get());
            Ok::<(), std::convert::Infallible>(())
        })
        .expect("register");
    (registration, pids)
}

/// What the test watcher recorded: (kind, pid, parent pid for a fork, exit code).
type Seen = Arc<Mutex<Vec<(EventKind, u32, Option<u32>, Option<i32>)>>>;

fn events_of(seen: &Seen, pid: u32) -> Vec<(EventKind, Option<u32>, Option<i32>)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _, _)| *p == pid)
        .map(|&(kind, _, parent, code)| (kind, parent, code))
        .collect()
}

/// Runs the source on a thread until `done` says so (or 20 s pass); returns it.
fn run_until(
    mut source: ProcConnector,
    done: impl Fn() -> bool + Send + 'static,
) -> (
    thread::JoinHandle<(ProcConnector, Vec<Report>)>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = finished.clone();
    let handle = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut reports = Vec::new();
        while Instant::now() < deadline && !done() {
            source.poll(|r| reports.push(r)).expect("poll");
        }
        flag.store(true, std::sync::atomic::Ordering::Release);
        (source, reports)
    });
    (handle, finished)
}

#[test]
fn the_longest_timeouts_are_waits_not_panics() {
    // `Duration::MAX` reads as "wait as long as it takes"; the acknowledgement's
    // deadline overflowed `Instant` and panicked instead.
    let options = Options {
        ack_timeout: Duration::MAX,
        read_timeout: Duration::MAX,
        resync_delay: Duration::MAX,
        seed: false,
        ..Options::default()
    };
    let Some(source) = open_or_skip(empty_table(), options) else {
        return;
    };
    drop(source);
}

#[test]
fn real_children_are_seen_fork_exec_exit_in_order() {
    let table = empty_table();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let _registration = table
        .watcher(
            "test::lifecycle",
            EventSet::FORK | EventSet::EXEC | EventSet::EXIT,
        )
        .register(move |event| {
            let parent = event.parent().map(|p| p.pid().get());
            let code = match event.data() {
                EventData::Exit { status } => status.code(),
                _ => None,
            };
            record
                .lock()
                .unwrap()
                .push((event.kind(), event.task().pid().get(), parent, code));
            Ok::<(), std::convert::Infallible>(())
        })
        .expect("register");
    let Some(source) = open_or_skip(table, Options::default()) else {
        return;
    };
    println!("subscription mode: {}", source.mode());
    let counters = source.counter_handle();

    let mut pids = Vec::new();
    for _ in 0..3 {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("spawn sh");
        pids.push(child.id());
        assert_eq!(child.wait().expect("wait").code(), Some(3));
    }
    let watch = seen.clone();
    let wanted = pids.clone();
    let (handle, _) = run_until(source, move || {
        wanted.iter().all(|&pid| {
            events_of(&watch, pid)
                .iter()
                .any(|e| e.0 == EventKind::Exit)
        })
    });
    let (source, _reports) = handle.join().expect("source thread");
    let me = std::process::id();
    for pid in pids {
        assert_eq!(
            events_of(&seen, pid),
            [
                (EventKind::Fork, Some(me), None),
                (EventKind::Exec, None, None),
                (EventKind::Exit, None, Some(3)),
            ],
            "events of child {pid}"
        );
        assert!(
            source.mirror().get(watchers_core::Pid(pid)).is_none(),
            "exited child {pid} is freed in the mirror"
        );
    }
    let counters = counters.get();
    assert_eq!(counters.rejected, 0);
    assert_eq!(counters.decode_errors, 0);
    assert!(counters.dispatched >= 9, "{counters:?}");
}

#[test]
fn a_panicking_watcher_is_reported_and_the_source_goes_on() {
    let table = empty_table();
    // Set once the child is spawned; the source is polled only after that.
    let target = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let victim = target.clone();
    let _panicky = table
        .watcher("test::panics_on_exec", EventSet::EXEC)
        .register(move |event| {
            let pid = event.task().pid().get();
            if pid == victim.load(std::sync::atomic::Ordering::Acquire) {
                panic!("deliberate panic on exec of {pid}");
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .expect("register");
    let (_exits, exits) = record_pids(table, "test::exits", EventSet::EXIT);
    let Some(source) = open_or_skip(table, Options::default()) else {
        return;
    };
    let mut child = Command::new("sleep").arg("0").spawn().expect("spawn sleep");
    let pid = child.id();
    target.store(pid, std::sync::atomic::Ordering::Release);
    child.wait().expect("wait");
    let watch = exits.clone();
    let (handle, _) = run_until(source, move || watch.lock().unwrap().contains(&pid));
    let (source, reports) = handle.join().expect("source thread");
    assert!(
        exits.lock().unwrap().contains(&pid),
        "the exit after the panic was dispatched"
    );
    assert!(source.counters().watcher_panics >= 1);
    assert!(reports.iter().any(|r| matches!(
        r,
        Report::WatcherPanicked(f) if f.pid == pid && f.message.contains("deliberate panic")
    )));
}

/// A user-space `NETLINK_CONNECTOR` socket.
fn user_socket() -> (OwnedFd, u32) {
    // SAFETY: plain system call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_CONNECTOR,
        )
    };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_nl is valid; bind/getsockname get matching lengths.
    let port = unsafe {
        use std::os::fd::AsRawFd;
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as u16;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        assert_eq!(libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len), 0);
        let mut out_len = len;
        assert_eq!(
            libc::getsockname(fd.as_raw_fd(), (&raw mut addr).cast(), &raw mut out_len),
            0
        );
        addr.nl_pid
    };
    (fd, port)
}

#[test]
fn a_spoofed_message_from_user_space_is_rejected() {
    let table = empty_table();
    let forged_pid = 0x3fff_fff0;
    let (_registration, seen) = record_pids(table, "test::spoof", EventSet::ALL);
    let Some(mut source) = open_or_skip(table, Options::default()) else {
        return;
    };
    let (fd, spoofer) = user_socket();
    // A perfect imitation of a kernel fork message, header port 0 included.
    let forged = cn_proc::encode_netlink(
        &ProcEvent::Fork {
            parent_pid: 1,
            parent_tgid: 1,
            child_pid: forged_pid,
            child_tgid: forged_pid,
        },
        0,
        0,
        0,
    );
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as u16;
    to.nl_pid = source.port();
    // SAFETY: `forged` and `to` are valid for the lengths given.
    let sent = unsafe {
        use std::os::fd::AsRawFd;
        libc::sendto(
            fd.as_raw_fd(),
            forged.as_ptr().cast(),
            forged.len(),
            0,
            (&raw const to).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    assert_eq!(
        sent,
        forged.len() as isize,
        "sendto: {}",
        std::io::Error::last_os_error()
    );

    let mut rejections = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rejections.is_empty() && Instant::now() < deadline {
        source
            .poll(|r| {
                if let Report::Rejected(rejection) = r {
                    rejections.push(rejection);
                }
            })
            .expect("poll");
    }
    assert_eq!(rejections, [Rejection::NotFromKernel { port: spoofer }]);
    assert_eq!(source.counters().rejected, 1);
    assert!(!seen.lock().unwrap().contains(&(forged_pid as u32)));
    assert!(
        source
            .mirror()
            .get(watchers_core::Pid(forged_pid as u32))
            .is_none()
    );

    // The same bytes replayed as if from the kernel would be accepted: the sender
    // port, not the content, is what was checked.
    let mut applied = false;
    source.replay_datagram(&forged, 0, |r| applied |= matches!(r, Report::Event(_)));
    assert!(applied);
}

/// Live (not zombie) task ids in /proc: processes and threads.
fn proc_pids() -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let state = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.chars().next()))
                .flatten();
            if matches!(state, Some(s) if s != 'Z' && s != 'X') {
                out.insert(tid);
            }
        }
    }
    out
}

fn mirror_pids(source: &ProcConnector) -> BTreeSet<u32> {
    source
        .mirror()
        .tasks()
        .iter()
        .filter(|t| t.state() == TaskState::Running)
        .map(|t| t.pid().get())
        .collect()
}

fn spawn_sleeper() -> Child {
    Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep")
}

#[test]
#[ignore = "known intermittent bug (about once per CI run of three): after a flood a task stays mirrored as running though gone, while the counters show exits of unknown tasks; not yet explained. Run with --ignored"]
fn a_flood_into_a_small_buffer_is_detected_and_the_mirror_resynchronised() {
    flood(true);
}

/// The same with every event sent (no kernel filter): loss is also counted exactly from
/// the per-CPU sequence numbers.
#[test]
fn a_flood_without_kernel_filter_is_counted_from_sequence_gaps() {
    flood(false);
}

fn flood(kernel_filter: bool) {
    let table = empty_table();
    let options = Options {
        receive_buffer: 4096,
        max_receive_buffer: 64 << 10,
        resync_delay: Duration::from_millis(200),
        kernel_filter,
        ..Options::default()
    };
    let Some(mut source) = open_or_skip(table, options) else {
        return;
    };
    // Sleepers the mirror sees start (their forks fit in the buffer) and whose exits
    // will be lost in the flood.
    let mut doomed: Vec<Child> = (0..3).map(|_| spawn_sleeper()).collect();
    let mut reports = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !doomed
            .iter()
            .all(|c| source.mirror().get(watchers_core::Pid(c.id())).is_some())
    {
        source.poll(|r| reports.push(r)).expect("poll");
    }
    // Not polling now: the flood overflows the tiny buffer.
    for _ in 0..300 {
        Command::new("/bin/true").status().expect("spawn true");
    }
    for child in &mut doomed {
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
    for _ in 0..100 {
        Command::new("/bin/true").status().expect("spawn true");
    }
    // Sleepers whose forks are lost.
    let mut survivors: Vec<Child> = (0..3).map(|_| spawn_sleeper()).collect();

    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && source.counters().resyncs == 0 {
        source.poll(|r| reports.push(r)).expect("poll");
    }
    let counters = source.counters();
    println!("after the flood: {counters:?}, mode {}", source.mode());
    assert!(counters.overruns >= 1 || counters.lost >= 1, "{counters:?}");
    assert!(counters.lost >= 1, "{counters:?}");
    assert!(counters.resyncs >= 1, "{counters:?}");
    assert!(reports.iter().any(|r| matches!(r, Report::Lost(_))));
    if !kernel_filter {
        assert!(source.mode().tracks_sequence());
        // The exact count comes with the next message from each CPU: make some.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && source.counters().lost <= 10 {
            for _ in 0..20 {
                Command::new("/bin/true").status().expect("spawn true");
            }
            let until = Instant::now() + Duration::from_millis(50);
            while Instant::now() < until {
                source.poll(|r| reports.push(r)).expect("poll");
            }
        }
        // The flood was ~1200 events; far more than one must have been counted.
        let counters = source.counters();
        assert!(counters.lost > 10, "{counters:?}");
        assert!(
            reports
                .iter()
                .any(|r| matches!(r, Report::Lost(l) if l.events.is_some()))
        );
    }
    assert!(reports.iter().any(|r| matches!(r, Report::Resynced(_))));
    assert!(
        source.receive_buffer() > 8192,
        "the buffer grew: {}",
        source.receive_buffer()
    );

    // The mirror now matches /proc. Other tests run at the same time (the other flood
    // among them, spawning hundreds of processes), so compare only tasks alive across
    // the whole check, and retry while the queue catches up. The queue is polled after
    // the first scan: a task that scan saw had its fork queued already, and one that
    // had exited its exit; polling only before the scan left the events of whatever
    // started or ended in between unapplied, and a concurrent flood could make every
    // try miss that way.
    let mut last = String::new();
    let mut matched = false;
    for _ in 0..50 {
        let before = proc_pids();
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            source.poll(|r| reports.push(r)).expect("poll");
        }
        let mirrored = mirror_pids(&source);
        let after = proc_pids();
        let stable: BTreeSet<u32> = before.intersection(&after).copied().collect();
        let either: BTreeSet<u32> = before.union(&after).copied().collect();
        let missing: Vec<u32> = stable.difference(&mirrored).copied().collect();
        let extra: Vec<u32> = mirrored.difference(&either).copied().collect();
        if missing.is_empty() && extra.is_empty() {
            matched = true;
            break;
        }
        let details: Vec<_> = extra
            .iter()
            .filter_map(|&pid| source.mirror().get(watchers_core::Pid(pid)))
            .map(|t| format!("{t:?}"))
            .collect();
        last = format!(
            "missing from the mirror: {missing:?}; in the mirror but gone: {extra:?} {details:?}; {:?}; mode {}",
            source.counters(),
            source.mode()
        );
    }
    assert!(matched, "{last}");
    for child in &doomed {
        assert!(
            source
                .mirror()
                .get(watchers_core::Pid(child.id()))
                .is_none()
        );
    }
    for child in &mut survivors {
        assert!(
            source
                .mirror()
                .get(watchers_core::Pid(child.id()))
                .is_some()
        );
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
}

#[test]
fn the_kernel_filter_follows_the_wanted_events() {
    let table = empty_table();
    let Some(mut source) = open_or_skip(table, Options::default()) else {
        return;
    };
    let before = source.mode();
    println!("subscription mode: {before}");
    let _registration = table
        .watcher("test::uids", EventSet::UID | EventSet::COMM)
        .register(|_| Ok::<(), std::convert::Infallible>(()))
        .expect("register");
    let mut changes = Vec::new();
    source
        .poll(|r| {
            if let Report::SubscriptionChanged(mode) = r {
                changes.push(mode);
            }
        })
        .expect("poll");
    if let watchers_proc_connector::SubscriptionMode::KernelFiltered { .. } = before {
        assert_eq!(changes, [source.mode()]);
        let watchers_proc_connector::SubscriptionMode::KernelFiltered { mask } = source.mode()
        else {
            panic!("still filtered")
        };
        assert!(mask.event_set().contains(EventKind::Uid));
        assert!(mask.event_set().contains(EventKind::Comm));
    }
}

fn shared_source() -> Option<&'static Mutex<ProcConnector>> {
    static SOURCE: std::sync::OnceLock<Option<Mutex<ProcConnector>>> = std::sync::OnceLock::new();
    SOURCE
        .get_or_init(|| {
            let options = Options {
                seed: false,
                ..Options::default()
            };
            open_or_skip(empty_table(), options).map(Mutex::new)
        })
        .as_ref()
}

fn any_datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        // Well-formed headers around arbitrary events, some bytes flipped.
        (
            any::<u32>(),
            any::<[i32; 6]>(),
            proptest::collection::vec((0usize..76, any::<u8>()), 0..4)
        )
            .prop_map(|(what_index, f, flips)| {
                let event = match what_index % 8 {
                    0 => ProcEvent::Fork {
                        parent_pid: f[0],
                        parent_tgid: f[1],
                        child_pid: f[2],
                        child_tgid: f[3],
                    },
                    1 => ProcEvent::Exec {
                        pid: f[0],
                        tgid: f[1],
                    },
                    2 => ProcEvent::Exit {
                        pid: f[0],
                        tgid: f[1],
                        exit_code: f[2] as u32,
                        exit_signal: f[3] as u32,
                        parent_pid: f[4],
                        parent_tgid: f[5],
                    },
                    3 => ProcEvent::Uid {
                        pid: f[0],
                        tgid: f[1],
                        ruid: f[2] as u32,
                        euid: f[3] as u32,
                    },
                    4 => ProcEvent::Comm {
                        pid: f[0],
                        tgid: f[1],
                        comm: [0xff; 16],
                    },
                    5 => ProcEvent::Ptrace {
                        pid: f[0],
                        tgid: f[1],
                        tracer_pid: f[2],
                        tracer_tgid: f[3],
                    },
                    6 => ProcEvent::Sid {
                        pid: f[0],
                        tgid: f[1],
                    },
                    _ => ProcEvent::Ack { err: f[0] as u32 },
                };
                let mut bytes = cn_proc::encode_netlink(&event, f[4] as u32, f[5] as u32 % 8, 0);
                for (at, value) in flips {
                    bytes[at] = value;
                }
                bytes
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes through every decoder: errors, never panics.
    #[test]
    fn decoders_never_panic(bytes in any_datagram()) {
        let _ = cn_proc::decode(&bytes);
        let _ = cn_proc::CnMsgHeader::decode(&bytes);
        let _ = cn_proc::ProcEventRecord::decode(&bytes);
        for message in cn_proc::netlink_messages(&bytes).flatten() {
            let _ = message.error_code();
            let _ = cn_proc::decode(message.payload);
        }
    }

    /// The same bytes through the whole source as if the kernel sent them: the mirror
    /// and the counters cope, nothing panics.
    #[test]
    fn the_source_survives_arbitrary_datagrams(bytes in any_datagram()) {
        if let Some(source) = shared_source() {
            let mut source = source.lock().unwrap();
            source.replay_datagram(&bytes, 0, |_| {});
            source.replay_datagram(&bytes, 7, |_| {});
        }
    }
}

/// The exit, with status 0, of a process of init.
fn clean_exit(pid: i32) -> ProcEvent {
    ProcEvent::Exit {
        pid,
        tgid: pid,
        exit_code: 0,
        exit_signal: 17,
        parent_pid: 1,
        parent_tgid: 1,
    }
}

/// A source for replayed datagrams: every event sent (sequence numbers tracked), no
/// seed.
fn replaying_source() -> Option<ProcConnector> {
    let options = Options {
        kernel_filter: false,
        seed: false,
        ..Options::default()
    };
    open_or_skip(empty_table(), options)
}

#[test]
fn a_sequence_number_that_goes_back_is_not_a_loss_nor_the_new_reference() {
    let Some(mut source) = replaying_source() else {
        return;
    };
    assert!(source.mode().tracks_sequence());
    // A CPU number no machine here has, so real events cannot interleave.
    let cpu = 60_000;
    let fake = 0x3fff_ff00;
    for seq in [100, 101, 99, 102, 103] {
        let event = clean_exit(fake);
        source.replay_datagram(&cn_proc::encode_netlink(&event, seq, cpu, 0), 0, |_| {});
    }
    assert_eq!(source.counters().lost, 0, "99 came late; 102 follows 101");
}

/// Set in the child of [`an_exec_from_a_non_leader_thread_keeps_the_process`].
const EXEC_FROM_THREAD: &str = "TASKWATCH_TEST_EXEC_FROM_THREAD";

#[test]
fn an_exec_from_a_non_leader_thread_keeps_the_process() {
    if let Ok(program) = std::env::var(EXEC_FROM_THREAD) {
        // The child: a second thread replaces the process image (the kernel's
        // de_thread gives it the leader's pid after the leader exits).
        let thread = thread::spawn(move || {
            use std::os::unix::process::CommandExt;
            let error = Command::new(program).arg("0.3").exec();
            panic!("exec failed: {error}");
        });
        let _ = thread.join();
        unreachable!("the exec replaced this process");
    }
    let options = Options {
        extra_events: EventSet::EXEC,
        ..Options::default()
    };
    let Some(source) = open_or_skip(empty_table(), options) else {
        return;
    };
    let test_binary = std::env::current_exe().expect("this test's binary");
    let mut child = Command::new(test_binary)
        .args([
            "--exact",
            "an_exec_from_a_non_leader_thread_keeps_the_process",
            "--test-threads=1",
        ])
        .env(EXEC_FROM_THREAD, "sleep")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn the child");
    let pid = child.id();
    let applied: Arc<Mutex<Vec<watchers_proc_connector::Applied>>> = Arc::default();
    let record = applied.clone();
    let mut source = source;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut exited = false;
    while Instant::now() < deadline && !exited {
        source
            .poll(|report| {
                if let Report::Event(event) = report
                    && event.event.tgid() == Some(pid as i32)
                {
                    let mut seen = record.lock().unwrap();
                    let slept = seen.iter().any(|a| {
                        matches!(a.event, ProcEvent::Exec { .. })
                            && a.command_line
                                .as_deref()
                                .is_some_and(|l| l.starts_with(b"sleep"))
                    });
                    if slept
                        && matches!(event.event, ProcEvent::Exit { pid: p, .. } if p == pid as i32)
                    {
                        exited = true;
                    }
                    seen.push(event);
                }
            })
            .expect("poll");
    }
    let _ = child.wait();
    let events = applied.lock().unwrap();
    // The child's first exec is this test binary's; the last one is the thread's.
    let exec = events
        .iter()
        .rev()
        .find(|a| matches!(a.event, ProcEvent::Exec { .. }))
        .expect("an exec event for the child");
    let task = exec
        .task
        .as_ref()
        .expect("the exec'ing process is mirrored");
    assert_eq!(
        task.pid().get(),
        pid,
        "the thread took over the leader's pid"
    );
    assert_eq!(task.parent().get(), std::process::id());
    let line = exec.command_line.as_deref().expect("the new command line");
    assert!(line.starts_with(b"sleep\x000.3\0"), "{line:?}");
    let fork_ns = events
        .iter()
        .find(|a| matches!(a.event, ProcEvent::Fork { child_pid, .. } if child_pid == pid as i32))
        .and_then(|a| a.started_ns)
        .expect("the child's fork");
    let started = exec.started_ns.expect("a start time");
    assert!(
        started.abs_diff(fork_ns) < 20_000_000,
        "the process keeps its start time: fork {fork_ns}, after exec {started}"
    );
    let exit = events.last().expect("events");
    assert!(
        matches!(exit.event, ProcEvent::Exit { .. }),
        "{:?}",
        exit.event
    );
    assert!(exit.started_ns.is_some(), "the exit knows the lifetime");
}

#[test]
fn netlink_control_messages_are_reported_as_documented() {
    let Some(mut source) = replaying_source() else {
        return;
    };
    use cn_proc::netlink::{NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN};
    let mut replay = |datagram: Vec<u8>| {
        let mut reports = Vec::new();
        source.replay_datagram(&datagram, 0, |r| reports.push(r));
        (reports, source.counters())
    };
    let before = replay(Vec::new()).1;
    // Nothing to say: a no-op, and an ack of a request.
    let (reports, counters) = replay(cn_proc::wrap_netlink(&[], NLMSG_NOOP, 0, 0, 0));
    assert!(reports.is_empty() && counters == before, "{reports:?}");
    let ack = cn_proc::wrap_netlink(&0i32.to_ne_bytes(), NLMSG_ERROR, 0, 0, 0);
    let (reports, counters) = replay(ack);
    assert!(reports.is_empty() && counters == before, "{reports:?}");
    // An error, one too short to read, a type the connector never sends.
    let (reports, _) = replay(cn_proc::wrap_netlink(
        &(-22i32).to_ne_bytes(),
        NLMSG_ERROR,
        0,
        0,
        0,
    ));
    assert!(
        matches!(
            &reports[..],
            [Report::Rejected(Rejection::NetlinkError(-22))]
        ),
        "{reports:?}"
    );
    let (reports, _) = replay(cn_proc::wrap_netlink(&[1], NLMSG_ERROR, 0, 0, 0));
    assert!(
        matches!(&reports[..], [Report::DecodeFailed(_)]),
        "{reports:?}"
    );
    let (reports, counters) = replay(cn_proc::wrap_netlink(&[], 0x10, 0, 0, 0));
    assert!(
        matches!(
            &reports[..],
            [Report::Rejected(Rejection::UnexpectedType(0x10))]
        ),
        "{reports:?}"
    );
    assert_eq!(
        (counters.rejected, counters.decode_errors),
        (before.rejected + 2, before.decode_errors + 1)
    );
    // An overrun is a loss, reported.
    let (reports, counters) = replay(cn_proc::wrap_netlink(&[], NLMSG_OVERRUN, 0, 0, 0));
    assert!(
        matches!(&reports[..], [Report::Lost(loss)] if loss.events.is_none()),
        "{reports:?}"
    );
    assert_eq!(
        (counters.overruns, counters.lost),
        (before.overruns + 1, before.lost + 1)
    );
    // Several messages: an event of a task nobody knows, then a length that lies.
    let fake = 0x3fff_ff10;
    let exit = clean_exit(fake);
    let mut datagram = cn_proc::encode_netlink(&exit, 1, 61_000, 0);
    let mut lying = cn_proc::encode_netlink(&exit, 2, 61_000, 0);
    lying[0..4].copy_from_slice(&500u32.to_ne_bytes());
    datagram.extend(lying);
    let (reports, counters) = replay(datagram);
    assert!(
        matches!(&reports[..], [Report::DecodeFailed(_), Report::Event(_)]),
        "{reports:?}"
    );
    assert_eq!(counters.unknown, before.unknown + 1);
    // Another listener's subscription acknowledged: counted, not an event.
    let other_ack = cn_proc::encode_netlink(&ProcEvent::Ack { err: 0 }, 7, u32::MAX, 0);
    let (reports, counters) = replay(other_ack);
    assert!(reports.is_empty(), "{reports:?}");
    assert_eq!(counters.acks, before.acks + 1);
}

// A time namespace whose clocks are shifted (as CRIU restores a container: monotonic and
// boottime moved together). The kernel stamps events with the host's CLOCK_MONOTONIC,
// while /proc start times and the source's own clock reads are shifted: a task found in
// /proc must still get its exit. The test re-runs itself under `unshare --time` (root or
// CAP_SYS_ADMIN, util-linux); without that it is skipped like the connector.

/// Set in the re-run, inside the namespace.
const INNER: &str = "TASKWATCH_TEST_IN_TIME_NAMESPACE";
const SHIFT_S: &str = "3600";

#[test]
fn a_task_found_in_proc_gets_its_exit_in_a_shifted_time_namespace() {
    if std::env::var_os(INNER).is_none() {
        let exe = std::env::current_exe().expect("the test binary");
        let output = Command::new("unshare")
            .args([
                "--time",
                "--fork",
                "--monotonic",
                SHIFT_S,
                "--boottime",
                SHIFT_S,
            ])
            .arg(exe)
            .args([
                "--exact",
                "a_task_found_in_proc_gets_its_exit_in_a_shifted_time_namespace",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INNER, "1")
            .output();
        let output = match output {
            Ok(output) => output,
            Err(error) => return skip(&format!("no unshare: {error}")),
        };
        let text = String::from_utf8_lossy(&output.stdout);
        let errors = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() && errors.contains("unshare failed") {
            return skip(&format!("no time namespace: {errors}"));
        }
        assert!(
            output.status.success(),
            "inside the namespace:\n{text}\n{errors}"
        );
        print!("{text}");
        return;
    }
    let offsets = std::fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default();
    assert!(offsets.contains(SHIFT_S), "in the namespace: {offsets}");
    // Started before the source, so it is found in /proc by the seed.
    let mut victim = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = victim.id();
    let table = empty_table();
    let (_exits, exits) = record_pids(table, "test::exits", EventSet::EXIT);
    let Some(mut source) = open_or_skip(table, Options::default()) else {
        let _ = victim.kill();
        let _ = victim.wait();
        return;
    };
    assert!(
        source.mirror().get(watchers_core::Pid(pid)).is_some(),
        "seeded from /proc"
    );
    victim.kill().expect("kill");
    victim.wait().expect("wait");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !exits.lock().unwrap().contains(&pid) {
        source.poll(|_| {}).expect("poll");
    }
    assert!(
        exits.lock().unwrap().contains(&pid),
        "the exit of {pid} never reached the watchers; still mirrored: {}",
        source.mirror().get(watchers_core::Pid(pid)).is_some()
    );
}
