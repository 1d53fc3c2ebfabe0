//! Process lifecycle of the real binary: SIGTERM and SIGINT stop `tern testnet`
//! cleanly — it logs "shutting down" and "stopped" and exits 0 within the shutdown
//! deadline. Loopback only (ports 27100+); every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::bin::{Killed, TERN};

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// Starts a testnet on `port` and waits (≤ 60 s) until it says it is up; returns the
/// child and a channel of its stderr lines.
fn start_testnet(port: u16) -> (Killed, Receiver<String>) {
    let mut child = Command::new(TERN)
        .args(["testnet", "--nodes", "3", "--port", &port.to_string()])
        .args(["--shutdown-timeout", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        for line in text.lines() {
            let _ = tx.send(line.to_owned());
        }
    });
    let (up_tx, up_rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("testnet up") {
                let _ = up_tx.send(());
            }
        }
    });
    up_rx.recv_timeout(Duration::from_secs(60)).expect("testnet up within 60 s");
    (Killed(child), rx)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args(["-s", name, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Waits (≤ `limit`) for the child to exit; returns its status and how long it took.
fn wait_exit(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("tern did not exit within {limit:?} of the signal");
}

fn stops_cleanly_on(sig: &str, port: u16) {
    let (mut guard, stderr) = start_testnet(port);
    signal(&guard.0, sig);
    let (status, took) = wait_exit(&mut guard.0, Duration::from_secs(12));
    assert!(status.success(), "{sig}: exit status {status:?}");
    assert!(took < Duration::from_secs(10), "{sig}: stopping took {took:?}");
    let lines: Vec<String> = stderr.iter().collect();
    assert!(lines.iter().any(|l| l.contains("shutting down")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("stopped")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains(sig)), "the log names the signal: {lines:?}");
}

#[test]
fn sigterm_stops_the_testnet_cleanly() {
    stops_cleanly_on("TERM", 27100);
}

#[test]
fn sigint_stops_the_testnet_cleanly() {
    stops_cleanly_on("INT", 27120);
}
