//! `taskwatch` as a user runs it.

use std::process::{Command, Output};

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
