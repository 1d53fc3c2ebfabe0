//! `--state-dir`: a restarted `tern node` rejoins through its routing-table snapshot.
//!
//! A loopback network (a bootstrap node and 30 persistent nodes, in this process) and
//! the real binary as the node under test, whose time to ready (`/readyz` 200: persistent
//! and ≥ k = 20 nodes in its table, measured from spawn) is taken:
//!
//! 1. first start, empty state dir, bootstrap node up;
//! 2. restart with the snapshot the clean stop wrote, bootstrap node up;
//! 3. restart with the snapshot, bootstrap node gone — the snapshot is the only way in;
//! 4. restart without a snapshot (a damaged file in its place), bootstrap node gone —
//!    never ready; the damaged file is reported and ignored, the process stays up.
//!
//! The times are printed (`--nocapture`) for BENCHMARKS.md; only what must hold is
//! asserted: 3 gets ready, 4 does not. The same holds for `tern listen`: a server
//! restarted with its snapshot announces itself with its bootstrap node gone. And
//! `tern bootstrap --peer` makes the nodes of a bootstrap cluster know each other.
//! Ports 29000–29041, 29050–29081, 29090–29093; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use support::bin::{Killed, TERN, lines_of};
use support::{eventually, localhost, tern_bootstrapper, tern_node};
use tern::Dht;

const BOOT: u16 = 29000;
const NETWORK_NODES: u16 = 30;
const NODE_PORT: u16 = 29040;
const ADMIN_PORT: u16 = 29041;
/// How long a start may take to get ready before the test gives up on it.
const READY_LIMIT: Duration = Duration::from_secs(40);
/// How long the start without any way in is watched (it must stay unready).
const UNREADY_WATCH: Duration = Duration::from_secs(10);

/// One HTTP GET to the admin listener: the status, or `None` if it is not up.
fn status(path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", ADMIN_PORT)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// `tern node` on NODE_PORT with `dir` as its state directory, and its stderr lines.
fn start(dir: &Path) -> (Killed, Receiver<String>, Instant) {
    let started = Instant::now();
    let mut child = Command::new(TERN)
        .args(["--admin", &format!("127.0.0.1:{ADMIN_PORT}")])
        .arg("--state-dir")
        .arg(dir)
        .args(["node", "--host", "127.0.0.1", "--port", &NODE_PORT.to_string()])
        .args(["--bootstrap", &localhost(BOOT).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern runs");
    let logs = lines_of(child.stderr.take().unwrap());
    (Killed(child), logs, started)
}

/// Polls /readyz until 200 (Some(time from spawn)) or `limit` (None).
fn time_to_ready(started: Instant, limit: Duration) -> Option<Duration> {
    while started.elapsed() < limit {
        if status("/readyz") == Some(200) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

/// SIGTERM, then waits (≤ 20 s) for a clean exit.
fn stop(mut node: Killed) {
    let pid = node.0.id().to_string();
    assert!(Command::new("kill").args(["-s", "TERM", &pid]).status().unwrap().success());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Some(s) = node.0.try_wait().unwrap() {
            assert!(s.success(), "clean exit, got {s}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("tern node did not stop within 20 s of SIGTERM");
}

/// `tern listen --echo` with `dir` as its state directory: its stdout lines (the first
/// is the public key, printed once it has announced itself).
fn listen(dir: &Path, boot: u16) -> (Killed, Receiver<String>) {
    let mut child = Command::new(TERN)
        .arg("--state-dir")
        .arg(dir)
        .args(["listen", "--echo", "--seed", &"5e".repeat(32), "--host", "127.0.0.1"])
        .args(["--bootstrap", &localhost(boot).to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tern runs");
    let out = lines_of(child.stdout.take().unwrap());
    (Killed(child), out)
}

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_snapshot_lets_a_restarted_node_rejoin_without_its_bootstrap_node() {
    let driver = tern::node_driver(1, "state-net").unwrap();
    let boot = tern_bootstrapper(&driver, BOOT);
    let nodes: Vec<Dht> =
        (1..=NETWORK_NODES).map(|i| tern_node(&driver, localhost(BOOT), BOOT + i)).collect();
    for n in &nodes {
        n.ready().wait().unwrap();
    }
    assert!(eventually(Duration::from_secs(30), || nodes.iter().all(Dht::is_persistent)));

    // 1. First start: the snapshot the clean stop writes.
    let dir = state_dir("kept");
    let (node, _logs, started) = start(&dir);
    let fresh = time_to_ready(started, READY_LIMIT).expect("ready on a first start");
    stop(node);
    let saved = tern::snapshot::read(&tern::snapshot::path_in(&dir, 0)).unwrap().unwrap();
    assert!(saved.len() >= 20, "the snapshot holds the table: {} nodes", saved.len());
    assert!(saved.iter().all(|a| a.ip().is_loopback() && a.port() != NODE_PORT));

    // 2. Restart with the snapshot, bootstrap node still up.
    let (node, _logs, started) = start(&dir);
    let with_boot = time_to_ready(started, READY_LIMIT).expect("ready with the snapshot");
    stop(node);

    // 3. The bootstrap node is gone: the snapshot is the only way back in.
    boot.destroy().unwrap();
    let (node, _logs, started) = start(&dir);
    let without_boot = time_to_ready(started, READY_LIMIT)
        .expect("a node with a snapshot rejoins without its bootstrap node");
    stop(node);

    // 4. No usable snapshot (a damaged file) and no bootstrap node: reported, ignored,
    // the process runs but cannot join.
    let damaged = state_dir("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::write(tern::snapshot::path_in(&damaged, 0), b"not a snapshot").unwrap();
    let (node, logs, started) = start(&damaged);
    assert_eq!(time_to_ready(started, UNREADY_WATCH), None, "no way in, never ready");
    assert_eq!(status("/healthz"), Some(200), "the process is up");
    let lines: Vec<String> = logs.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("ignoring the routing-table snapshot")),
        "the damaged snapshot is reported: {lines:?}"
    );
    stop(node);

    eprintln!(
        "time to ready (bootstrap + {NETWORK_NODES} nodes on loopback): first start {:.2} s; \
         restart with snapshot, bootstrap up {:.2} s; with snapshot, bootstrap gone {:.2} s; \
         without snapshot, bootstrap gone: not ready after {} s",
        fresh.as_secs_f64(),
        with_boot.as_secs_f64(),
        without_boot.as_secs_f64(),
        UNREADY_WATCH.as_secs()
    );
    for n in nodes {
        n.destroy().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&damaged);
}

#[test]
fn a_listening_server_restarted_with_its_snapshot_announces_without_its_bootstrap_node() {
    const LISTEN_BOOT: u16 = 29050;
    let driver = tern::node_driver(1, "listen-net").unwrap();
    let boot = tern_bootstrapper(&driver, LISTEN_BOOT);
    let nodes: Vec<Dht> =
        (1..=30).map(|i| tern_node(&driver, localhost(LISTEN_BOOT), LISTEN_BOOT + i)).collect();
    for n in &nodes {
        n.ready().wait().unwrap();
    }
    assert!(eventually(Duration::from_secs(30), || nodes.iter().all(Dht::is_persistent)));

    let dir = state_dir("listen");
    let (server, out) = listen(&dir, LISTEN_BOOT);
    let key = out.recv_timeout(READY_LIMIT).expect("the server announces itself");
    stop(server);
    let saved = tern::snapshot::read(&tern::snapshot::path_in(&dir, 0)).unwrap().unwrap();
    assert!(saved.len() >= 20, "the listener's snapshot holds its table: {}", saved.len());

    // The bootstrap node is gone: only the snapshot leads to the network.
    boot.destroy().unwrap();
    let (server, out) = listen(&dir, LISTEN_BOOT);
    let again = out.recv_timeout(READY_LIMIT).expect("announced through the snapshot");
    assert_eq!(again, key, "the same seed is the same key");
    // Clients find it through the network (a node it never had as bootstrap).
    let client = tern_node(&driver, localhost(LISTEN_BOOT + 1), LISTEN_BOOT + 31);
    client.ready().wait().unwrap();
    let public_key: [u8; 32] = hex::decode(key.trim()).unwrap().try_into().unwrap();
    let found = client.find_peer(public_key).wait().unwrap();
    assert!(found.is_some(), "the restarted server's announcement is found");
    stop(server);
    client.destroy().unwrap();
    for n in nodes {
        n.destroy().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bootstrap_nodes_given_their_peers_know_each_other() {
    const FIRST: u16 = 29090;
    const ADMIN: u16 = 29092;
    let spawn = |port: u16, admin: Option<u16>, peers: &[u16]| {
        let mut cmd = Command::new(TERN);
        if let Some(a) = admin {
            cmd.args(["--admin", &format!("127.0.0.1:{a}")]);
        }
        cmd.args(["bootstrap", "--host", "127.0.0.1", "--port", &port.to_string()]);
        for p in peers {
            cmd.args(["--peer", &localhost(*p).to_string()]);
        }
        Killed(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("tern runs"))
    };
    let table_size = |admin: u16| -> Option<u64> {
        let mut s = TcpStream::connect(("127.0.0.1", admin)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let line = text.lines().find(|l| l.starts_with("tern_routing_table_nodes"))?;
        line.split_whitespace().last()?.parse::<f64>().ok().map(|v| v as u64)
    };
    // The first knows no one; the second names the first (and itself, which is skipped).
    let first = spawn(FIRST, Some(ADMIN), &[]);
    assert!(eventually(Duration::from_secs(20), || table_size(ADMIN).is_some()), "admin up");
    assert_eq!(table_size(ADMIN), Some(0), "a lone bootstrap node knows no one");
    let second = spawn(FIRST + 1, Some(ADMIN + 1), &[FIRST, FIRST + 1]);
    assert!(
        eventually(Duration::from_secs(20), || table_size(ADMIN) == Some(1)
            && table_size(ADMIN + 1) == Some(1)),
        "each bootstrap node has the other in its table: {:?} {:?}",
        table_size(ADMIN),
        table_size(ADMIN + 1)
    );
    stop(second);
    stop(first);
}
