//! Driving the real `tern` binary from tests: its path, a child that is killed and
//! reaped when a test ends (even by a failed assertion), and a process's output as a
//! channel of lines so every wait can be bounded with `recv_timeout`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// The `tern` binary cargo built for these tests.
pub const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// A child process killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of `reader` (a child's stdout or stderr), read on their own thread until EOF.
pub fn lines_of(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Starts `tern testnet <args>` and waits (≤ 60 s) for its "testnet up" line; returns the
/// guarded child and every stdout line printed until then (the self-check lines).
pub fn start_testnet(args: &[&str]) -> (Killed, Vec<String>) {
    let mut child = Command::new(TERN)
        .arg("testnet")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tern binary runs");
    let rx = lines_of(child.stdout.take().expect("piped stdout"));
    let guard = Killed(child);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("testnet up")) {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("testnet up within 60 s; got {lines:?}"),
        }
    }
    (guard, lines)
}
