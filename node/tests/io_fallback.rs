//! The automatic io_uring → epoll fallback as an operator sees it: `tern testnet`
//! started where io_uring is "blocked" (`TERN_IO_PROBE_FAIL=EPERM` makes the probe
//! answer what Docker's default seccomp profile answers) logs exactly one warning
//! naming the cause, reports epoll in its startup line, and still serves a probe.
//! `--io uring` on the same host refuses to start. Loopback only; waits are bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::bin::{Killed, TERN};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

/// The log line without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_blocked_io_uring_falls_back_to_epoll_and_still_serves() {
    let mut child = Command::new(TERN)
        .args(["testnet", "--nodes", "2", "--port", "26750", "--io", "auto"])
        .env("TERN_IO_PROBE_FAIL", "EPERM")
        .env("TERN_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let _guard = Killed(child);
    let (tx, rx) = channel();
    let err_tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((false, line));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send((true, line));
        }
    });
    let mut logs = Vec::new();
    loop {
        let (is_log, line) =
            rx.recv_timeout(Duration::from_secs(60)).expect("testnet up within 60 s");
        if is_log {
            logs.push(strip_ansi(&line));
        } else if line.contains("testnet up") {
            break;
        }
    }
    let warnings: Vec<&String> = logs.iter().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{logs:#?}");
    assert!(
        warnings[0].contains(
            "io_uring is blocked (EPERM): a seccomp filter blocks it (Docker's default profile \
             since 2023, a systemd SystemCallFilter); using the epoll backend"
        ),
        "{warnings:?}"
    );
    let started = logs.iter().find(|l| l.contains("driver started")).expect("startup line");
    assert!(started.contains("backend=epoll"), "{started}");

    // The node still serves: a probe (on the real backend) gets an answer.
    let ping = Command::new(TERN)
        .args(["ping", "127.0.0.1:26751", "--bootstrap", "127.0.0.1:26750", "--json"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stderr));
    assert!(String::from_utf8_lossy(&ping.stdout).contains("\"answered\":true"));
}

#[test]
fn forcing_io_uring_where_it_is_blocked_fails_with_the_cause() {
    let out = Command::new(TERN)
        .args(["testnet", "--nodes", "2", "--port", "26760", "--io", "uring"])
        .env("TERN_IO_PROBE_FAIL", "ENOSYS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("io_uring is unavailable (ENOSYS)"), "{stderr}");
}
