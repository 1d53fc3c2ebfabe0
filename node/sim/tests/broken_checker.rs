//! A failing seed prints the line that reproduces it. The runner's hidden
//! `--break-checker` adds a deliberately broken liveness check (it demands a topic nobody
//! announced); the real binary must fail, name the violation, and end with the exact
//! command that replays the run — which, run again, fails the same way with the same
//! trace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tern-sim")).args(args).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), stdout)
}

#[test]
fn a_failing_seed_prints_its_reproduction_line() {
    let args = ["--seed", "77", "--nodes", "60", "--minutes", "6", "--break-checker"];
    let (ok, stdout) = run(&args);
    println!("{stdout}");
    assert!(!ok, "the broken checker must fail the run");
    assert!(stdout.contains("FAIL: 1 violation(s)"), "{stdout}");
    assert!(stdout.contains("liveness: topic"), "names the broken property: {stdout}");
    let repro =
        stdout.lines().find_map(|l| l.strip_prefix("reproduce: ")).expect("a reproduction line");
    assert_eq!(
        repro,
        "cargo run --release -p tern-sim -- --seed 77 --nodes 60 --minutes 6 --break-checker"
    );

    // Replaying the printed arguments gives the same failure and the same trace.
    let replay: Vec<&str> = repro.split_whitespace().skip_while(|a| *a != "--").skip(1).collect();
    let (ok2, stdout2) = run(&replay);
    assert!(!ok2);
    let trace = |s: &str| s.lines().find(|l| l.contains("trace ")).map(str::to_owned);
    assert_eq!(trace(&stdout), trace(&stdout2), "the replay is identical");

    // Without the broken checker the same seed passes.
    let (ok3, stdout3) = run(&args[..6]);
    assert!(ok3, "{stdout3}");
    assert!(stdout3.contains("PASS"));
}
