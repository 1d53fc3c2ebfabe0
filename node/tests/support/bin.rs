//! Driving the real `tern` binary from tests: its path, a child that is killed and
//! reaped when a test ends (even by a failed assertion), and a process's output as a
//! channel of lines so every wait can be bounded with `recv_timeout`.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc::{Receiver, channel};

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
