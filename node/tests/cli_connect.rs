//! `tern listen` and `tern connect` as a shell user runs them, against a `tern testnet`
//! on loopback: an echo server returns a client's stdin on its stdout; a piping
//! listener and a client exchange their stdins; a connect to a key nobody serves
//! fails with a message. Every wait is bounded and every process killed on drop.
//! Ports 27400–27499 (the listen/connect nodes take OS-chosen ports).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::bin::{Killed, TERN, start_testnet};

/// How long any one process may take.
const LIMIT: Duration = Duration::from_secs(60);

/// `tern <args>` with piped stdio and quiet logs (warnings still reach the test output).
fn tern(args: &[&str]) -> Command {
    let mut cmd = Command::new(TERN);
    cmd.args(args)
        .env("TERN_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A child's stdout: its first line (the listener's public key) as soon as it is
/// printed, and everything after it once the child closes stdout.
fn stdout_of(out: ChildStdout) -> (Receiver<String>, JoinHandle<Vec<u8>>) {
    let (tx, first) = channel();
    let rest = std::thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return Vec::new();
        }
        let _ = tx.send(line.trim_end().to_owned());
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        rest
    });
    (first, rest)
}

/// Everything `reader` yields until EOF, on its own thread.
fn all_of(mut reader: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = reader.read_to_end(&mut all);
        all
    })
}

/// Writes `input` to the child's stdin on a thread, then closes it (EOF).
fn feed(child: &mut Child, input: Vec<u8>) {
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
}

/// Waits (≤ [`LIMIT`]) for the child to exit.
fn exit_of(child: &mut Killed, what: &str) -> ExitStatus {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not exit within {LIMIT:?}");
}

/// Starts `tern listen <args>` and waits (≤ [`LIMIT`]) for the public key line.
fn listen(args: &[&str]) -> (Killed, String, JoinHandle<Vec<u8>>, JoinHandle<Vec<u8>>) {
    let mut child = tern(&[&["listen"], args].concat()).spawn().unwrap();
    let (first, rest) = stdout_of(child.stdout.take().unwrap());
    let stderr = all_of(child.stderr.take().unwrap());
    let mut guard = Killed(child);
    let Ok(public_key) = first.recv_timeout(LIMIT) else {
        let _ = guard.0.kill();
        panic!("no public key line; stderr: {}", String::from_utf8_lossy(&stderr.join().unwrap()));
    };
    (guard, public_key, rest, stderr)
}

/// Runs `tern connect <args>` with `input` on stdin; returns its exit status, stdout
/// and stderr.
fn connect(args: &[&str], input: Vec<u8>) -> (ExitStatus, Vec<u8>, String) {
    let mut child = tern(&[&["connect"], args].concat()).spawn().unwrap();
    feed(&mut child, input);
    let stdout = all_of(child.stdout.take().unwrap());
    let stderr = all_of(child.stderr.take().unwrap());
    let mut guard = Killed(child);
    let status = exit_of(&mut guard, "tern connect");
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    (status, stdout.join().unwrap(), stderr)
}

/// Bytes that are not text and do not repeat within a chunk (catches reordering).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

#[test]
fn listen_echo_returns_what_connect_sends() {
    let (_testnet, _) = start_testnet(&["--nodes", "5", "--port", "27400"]);
    let seed = "11".repeat(32);
    let (_listener, public_key, _, _) =
        listen(&["--seed", &seed, "--echo", "--bootstrap", "127.0.0.1:27400"]);
    let expected = hex::encode(tern::KeyPair::from_seed(&[0x11; 32]).public_key().as_bytes());
    assert_eq!(public_key, expected, "the first stdout line is the seed's public key");

    let data = pattern(1 << 20);
    let (status, out, err) =
        connect(&[&public_key, "--bootstrap", "127.0.0.1:27400"], data.clone());
    assert!(status.success(), "tern connect exits 0: {status}; stderr: {err}");
    assert_eq!(out.len(), data.len(), "every byte came back; stderr: {err}");
    assert!(out == data, "the echo is intact and in order");

    // The echo server keeps serving: a second client is echoed too.
    let (status, out, err) =
        connect(&[&public_key, "--bootstrap", "127.0.0.1:27400"], b"again\n".to_vec());
    assert!(status.success(), "second connect: {status}; stderr: {err}");
    assert_eq!(out, b"again\n");
}

#[test]
fn listen_pipe_and_connect_exchange_their_stdin() {
    let (_testnet, _) = start_testnet(&["--nodes", "5", "--port", "27420"]);
    let mut child = tern(&["listen", "--bootstrap", "127.0.0.1:27420"]).spawn().unwrap();
    // Queued in the pipe before any connection exists; sent once one is up.
    feed(&mut child, b"from the listener\n".to_vec());
    let (first, rest) = stdout_of(child.stdout.take().unwrap());
    let listen_err = all_of(child.stderr.take().unwrap());
    let mut listener = Killed(child);
    let public_key = first.recv_timeout(LIMIT).expect("the public key line");
    assert_eq!(public_key.len(), 64, "hex public key: {public_key:?}");

    let (status, out, err) =
        connect(&[&public_key, "--bootstrap", "127.0.0.1:27420"], b"from the connector\n".to_vec());
    assert!(status.success(), "tern connect exits 0: {status}; stderr: {err}");
    assert_eq!(out, b"from the listener\n", "the listener's stdin reached connect's stdout");

    let status = exit_of(&mut listener, "tern listen");
    let listen_err = String::from_utf8_lossy(&listen_err.join().unwrap()).into_owned();
    assert!(status.success(), "tern listen exits 0 after one connection: {status}; {listen_err}");
    assert!(listen_err.contains("--seed"), "a random seed is printed to stderr: {listen_err}");
    assert_eq!(
        rest.join().unwrap(),
        b"from the connector\n",
        "connect's stdin reached the listener's stdout after the key line"
    );
}

#[test]
fn connect_to_a_key_nobody_serves_fails_with_a_message() {
    let (_testnet, _) = start_testnet(&["--nodes", "5", "--port", "27440"]);
    let nobody = hex::encode(tern::KeyPair::from_seed(&[0x44; 32]).public_key().as_bytes());
    let (status, out, err) =
        connect(&[&nobody, "--bootstrap", "127.0.0.1:27440"], b"lost\n".to_vec());
    assert!(!status.success(), "exit non-zero");
    assert!(out.is_empty());
    assert!(err.contains("error: connecting to"), "a clear message: {err}");

    let (status, _, err) = connect(&["not-hex"], Vec::new());
    assert!(!status.success());
    assert!(err.contains("PUBLIC_KEY"), "names the bad argument: {err}");
}

#[test]
fn help_explains_listen_and_connect_with_examples() {
    for cmd in ["listen", "connect"] {
        let out = Command::new(TERN).args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "tern {cmd} --help shows an example: {text}");
        assert!(text.contains("--bootstrap"), "tern {cmd} --help lists --bootstrap");
    }
}
