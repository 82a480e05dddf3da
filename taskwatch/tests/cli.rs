//! `taskwatch` as a user runs it.

mod common;

use std::process::{Command, Output};

use common::{closed_pipe, dev_full};

fn taskwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskwatch"))
        .args(args)
        .output()
        .expect("taskwatch runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn simulate_keeps_every_invariant_and_is_deterministic() {
    let args = [
        "simulate",
        "--seed",
        "7",
        "--tasks",
        "3000",
        "--fail-every",
        "5",
        "--with-runtime-watchers",
    ];
    let first = taskwatch(&args);
    assert!(
        first.status.success(),
        "{}{}",
        stdout(&first),
        String::from_utf8_lossy(&first.stderr)
    );
    let text = stdout(&first);
    assert!(text.contains("invariants: ok"), "{text}");
    assert!(text.contains("taskwatch::fork-limit"), "{text}");
    assert!(text.contains("plugin::exec-counter"), "{text}");
    // 3000 attempts, every 5th refused by the fork limit.
    assert!(
        text.contains("3000 fork attempts: 2400 forked, 600 refused"),
        "{text}"
    );

    let again = taskwatch(&args);
    assert_eq!(stdout(&again), text, "the same seed gives the same run");
    let other = taskwatch(&["simulate", "--seed", "8", "--tasks", "3000"]);
    assert!(other.status.success());
    assert_ne!(stdout(&other), text);
}

#[test]
fn list_shows_the_example_watchers_in_dispatch_order() {
    let output = taskwatch(&["list", "--with-runtime-watchers"]);
    assert!(output.status.success());
    let text = stdout(&output);
    let fork = text
        .split("\nfork (")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a fork section");
    let first = fork.lines().nth(1).unwrap_or_default();
    assert!(first.contains("taskwatch::examples::lifecycle"), "{fork}");
    assert!(first.contains("taskwatch/src/examples.rs:"), "{fork}");
    // Teardown runs the other way: `lifecycle` is the last `free` watcher.
    let free = text.split("\nfree (").nth(1).expect("a free section");
    let last = free.lines().rfind(|l| l.contains(". ")).unwrap_or_default();
    assert!(last.contains("taskwatch::examples::lifecycle"), "{free}");
    assert!(text.contains("plugin::uid-changes"), "{text}");
    assert!(text.contains("runtime"), "{text}");
}

#[test]
fn a_bad_argument_is_a_clear_error() {
    let output = taskwatch(&["simulate", "--tasks", "many"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'many'"), "{stderr}");
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn out_of_range_numbers_say_what_is_allowed() {
    let cases: &[&[&str]] = &[
        &["monitor", "-D", "-1"],
        &["monitor", "-D", "0"],
        &["monitor", "-D", "1e300"],
        &["monitor", "--count", "-1"],
        &["monitor", "--count", "0"],
        &["monitor", "--rcvbuf", "-5"],
        &["monitor", "--rcvbuf", "0"],
        &["monitor", "-p", "-3"],
        &["simulate", "--tasks", "-1"],
        &["simulate", "--tasks", "0"],
        &["simulate", "--seed", "-1"],
        &["simulate", "--fail-every", "-1"],
        &["simulate", "--pid-max", "1"],
        &["bench", "--samples", "0"],
        &["bench", "--samples", "18446744073709551615"],
        &["bench", "--real", "--samples", "18446744073709551615"],
        &["bench", "--sample-ms", "0"],
        &["bench", "--sample-ms", "18446744073709551615"],
        &["bench", "--rounds", "0"],
        &["bench", "--rounds", "18446744073709551615"],
        &["bench", "--instructions", "--jobs", "0"],
    ];
    for args in cases {
        let output = taskwatch(args);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains("is out of range"), "{args:?}: {text}");
        assert!(
            text.contains(" from "),
            "{args:?} says what is allowed: {text}"
        );
        assert!(!text.contains("unexpected argument"), "{args:?}: {text}");
    }
}

#[test]
fn forkstat_letters_mean_what_they_mean_in_forkstat() {
    let help = stdout(&taskwatch(&["monitor", "--help"]));
    for (flag, meaning) in [
        ("-c, --comm", "comm"),
        ("-d, --strip-dir", "directory"),
        ("-D, --duration", "seconds"),
        ("-E, --all-events", "every event"),
        ("-s, --short", "Short"),
        ("-x, --extra", "user id"),
        ("-g, --glyphs", "glyph"),
        ("-p, --pgrp", "process group"),
        ("-r, --realtime", "FIFO"),
        ("-l, --line-buffered", "line"),
        ("-q, --quiet", "-S"),
        ("-S, --stats", "per-process"),
        ("-X", "-E -g -r -S -x"),
    ] {
        let line = help
            .lines()
            .skip_while(|l| !l.contains(flag))
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(line.contains(meaning), "{flag}: {line}\n{help}");
    }
    assert!(!help.contains("--no-kernel-filter"));
    let output = taskwatch(&["monitor", "-e", "free"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("`free` is not a kernel event"),
        "{}",
        stderr(&output)
    );
    let output = taskwatch(&["monitor", "-e", "EXIT,Bogus"]);
    assert!(
        stderr(&output).contains("unknown event `Bogus`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_workload_that_runs_out_of_pids_is_an_error_not_a_panic() {
    let output = taskwatch(&["simulate", "--tasks", "5000", "--pid-max", "100"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("ran out of pids"), "{text}");
    assert!(text.contains("pid_max is 100"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

/// Runs taskwatch with stdout and stderr on the given files.
fn taskwatch_with(args: &[&str], out: std::process::Stdio, err: std::process::Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskwatch"))
        .args(args)
        .stdout(out)
        .stderr(err)
        .output()
        .expect("taskwatch runs")
}

#[test]
fn a_full_or_closed_output_never_panics() {
    let cases: [&[&str]; 7] = [
        &["list"],
        &["simulate", "--tasks", "200"],
        &["bench", "--real", "--samples", "1", "--sample-ms", "1"],
        &["--help"],
        &["--version"],
        &["monitor", "--help"],
        &["help", "bench"],
    ];
    for args in cases {
        // stdout full: a message and a failure.
        let output = taskwatch_with(args, dev_full(), std::process::Stdio::piped());
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("cannot write the output"),
            "{}",
            stderr(&output)
        );
        // stdout closed (`| head`): quiet success.
        let output = taskwatch_with(args, closed_pipe(), std::process::Stdio::piped());
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "");
    }
    // stderr full or closed while reporting an error: no panic (101), the error's code.
    for err in [dev_full(), closed_pipe()] {
        let output = taskwatch_with(
            &["simulate", "--tasks", "5000", "--pid-max", "100"],
            std::process::Stdio::null(),
            err,
        );
        assert_eq!(output.status.code(), Some(1));
    }
    let output = taskwatch_with(&["list"], dev_full(), dev_full());
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn bench_icount_run_runs_one_subject_and_refuses_bad_ones() {
    // What `bench --instructions` runs under callgrind, without callgrind.
    for subject in ["dispatch/table/8", "unwanted", "fork/direct/10"] {
        let ok = taskwatch(&["bench", "--icount-run", subject, "3"]);
        assert!(ok.status.success(), "{subject}: {ok:?}");
    }
    for (subject, reps, message) in [
        ("dispatch/table/7", "3", "unknown instruction-count subject"),
        ("fork/table/2", "many", "is not a repetition count"),
    ] {
        let bad = taskwatch(&["bench", "--icount-run", subject, reps]);
        assert!(!bad.status.success());
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
    let help = stdout(&taskwatch(&["bench", "--help"]));
    assert!(
        help.contains("--instructions") && help.contains("callgrind"),
        "{help}"
    );
}

#[test]
fn simulate_prints_events_watcher_counts_and_one_line_per_subsystem() {
    let output = taskwatch(&["simulate", "--tasks", "300"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let section = |title: &str| -> Vec<String> {
        text.split(&format!("\n{title}"))
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .unwrap_or_else(|| panic!("no `{title}` section: {text}"))
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect()
    };
    let events = section("events dispatched");
    for kind in watchers_core::EventKind::ALL {
        assert!(
            events
                .iter()
                .any(|l| l.split_whitespace().next() == Some(kind.name())),
            "{}: {events:?}",
            kind.name()
        );
    }
    let watchers = section("watchers");
    for name in [
        "taskwatch::examples::lifecycle",
        "watchers_subsystems::audit::",
    ] {
        let line = watchers
            .iter()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name}: {watchers:?}"));
        let numbers: Vec<&str> = line.split_whitespace().rev().take(2).collect();
        assert!(
            numbers.iter().all(|n| n.parse::<u64>().is_ok()),
            "calls and errors: {line}"
        );
    }
    let subsystems = section("subsystems");
    for (name, _) in watchers_subsystems::summary() {
        assert_eq!(
            subsystems
                .iter()
                .filter(|l| l.split_whitespace().next() == Some(name))
                .count(),
            1,
            "{name}: {subsystems:?}"
        );
    }
}

#[test]
fn list_prints_every_event_in_dispatch_order_with_priority_events_and_location() {
    let output = taskwatch(&["list"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let mut sections = 0;
    for section in text.split("\n\n").skip(1) {
        let mut lines = section.lines();
        let event = lines
            .next()
            .and_then(|title| title.split_whitespace().next())
            .expect("a title");
        sections += 1;
        let teardown = matches!(event, "exit" | "free");
        let mut previous: Option<(i64, String)> = None;
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[2], "priority", "{line}");
            let name = fields[1].to_owned();
            let priority: i64 = fields[3].parse().expect("a priority");
            assert!(
                fields[4].split('|').any(|e| e == event),
                "{name} is listed under `{event}` but wants {}",
                fields[4]
            );
            assert!(fields[5].contains(".rs:"), "a source location: {line}");
            if let Some((p, n)) = &previous {
                // Higher priority first, ties by name; exit and free the other way round.
                let in_order = if teardown {
                    *p < priority || (*p == priority && *n > name)
                } else {
                    *p > priority || (*p == priority && *n < name)
                };
                assert!(
                    in_order,
                    "`{event}`: {n} ({p}) is listed before {name} ({priority})"
                );
            }
            previous = Some((priority, name));
        }
    }
    assert_eq!(
        sections, 10,
        "one section per event that has watchers: {text}"
    );
}

#[test]
fn arguments_that_are_not_utf8_are_usage_errors() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let bad = OsStr::from_bytes(b"\xffbad");
    let cases: [&[&OsStr]; 5] = [
        &[bad],
        &[OsStr::new("list"), bad],
        &[OsStr::new("simulate"), OsStr::new("--seed"), bad],
        &[OsStr::new("monitor"), OsStr::new("-e"), bad],
        &[OsStr::new("bench"), OsStr::new("--samples"), bad],
    ];
    for args in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_taskwatch"))
            .args(args)
            .output()
            .expect("taskwatch runs");
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.starts_with("error: "), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
    }
}

#[test]
fn bench_json_reports_what_was_measured_and_check_exits_1_exactly_on_a_miss() {
    // Whether a target is met on this host is noise; what is checked is that --check's
    // exit code agrees with the report, whichever way it went.
    let real = taskwatch(&[
        "bench",
        "--real",
        "--samples",
        "2",
        "--sample-ms",
        "1",
        "--json",
        "--check",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&real.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&real), stderr(&real)));
    let rows = report["real_fork_rate"]["rows"].as_array().expect("rows");
    let labels: Vec<&str> = rows.iter().filter_map(|r| r["label"].as_str()).collect();
    assert_eq!(
        labels.len(),
        11,
        "the baseline and ten subsystems: {labels:?}"
    );
    assert_eq!(labels[0], "baseline");
    let target = report["target"].as_f64().expect("target");
    let missed: Vec<&str> = report["missed_rows"]
        .as_array()
        .expect("missed_rows")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    let below: Vec<&str> = rows
        .iter()
        .filter(|r| r["paired_ratio"].as_f64().expect("paired_ratio") < target)
        .filter_map(|r| r["label"].as_str())
        .collect();
    assert_eq!(missed, below, "missed rows are those under {target}");
    assert_eq!(
        real.status.code(),
        Some(if missed.is_empty() { 0 } else { 1 }),
        "{}",
        stderr(&real)
    );

    let table = taskwatch(&[
        "bench",
        "--no-fork-rate",
        "--rounds",
        "1",
        "--json",
        "--check",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&table.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&table), stderr(&table)));
    assert!(report["fork_rate"].is_null(), "--no-fork-rate");
    assert!(report["matrix"].is_null(), "no --matrix");
    assert!(report["dispatch"]["one_thread"].is_array());
    let targets = report["targets"].as_array().expect("targets");
    let all_met = targets.iter().all(|t| t["met"] == true);
    assert_eq!(report["all_targets_met"], all_met);
    assert_eq!(
        table.status.code(),
        Some(if all_met { 0 } else { 1 }),
        "{}",
        stderr(&table)
    );
}

#[test]
fn the_profile_script_fails_when_the_monitor_does_not_start() {
    // It waited for the monitor's first line forever: a monitor that exited (a bad
    // option, no connector) hung the script.
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("no valgrind here; the script is not run");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tw-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/monitor-profile.sh");
    let mut child = Command::new("sh")
        .args([
            script,
            env!("CARGO_BIN_EXE_taskwatch"),
            "5",
            "cg",
            "--no-such-option",
        ])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = std::fs::remove_dir_all(&dir);
    let status = status.expect("the script hung after the monitor failed to start");
    assert!(!status.success());
}
