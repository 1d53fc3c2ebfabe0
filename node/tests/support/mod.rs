//! Test support for live interop: a JS reference peer (`interop/peer.js`, real
//! hyperdht 6.34.0 from npm) driven over JSON lines, and helpers to start tern nodes
//! (one shard each, or `TERN_CORES` shards).
//! Everything binds 127.0.0.1; every wait is bounded.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tern::{ConnConfig, Dht, NodeConfig, NodeDriver, RpcConfig};

pub mod bin;
pub mod stream;

/// The interop folder; its `node_modules` is installed by `scripts/test.sh` (`npm ci`).
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop")
}

/// Starts `node <args>` in `interop/` (stdin and stdout piped); its stdout lines arrive
/// on the channel, read by a thread that ends with the process.
pub fn spawn_js(args: &[&str]) -> (Child, Receiver<String>) {
    let dir = interop_dir();
    assert!(
        dir.join("node_modules/hyperdht").is_dir(),
        "the JS reference is not installed: run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    let mut child = Command::new("node")
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node (Node.js) must be installed to run interop tests");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// A running `peer.js` process.
pub struct JsPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: u64,
    /// The `nodes` array of the ready line.
    pub nodes: Vec<Value>,
}

impl JsPeer {
    /// Starts `node peer.js <options>` and waits (≤ 60 s) for its ready line.
    pub fn start(options: Value) -> JsPeer {
        let (mut child, lines) = spawn_js(&["peer.js", &options.to_string()]);
        let stdin = child.stdin.take();
        let mut peer = JsPeer { child, stdin, lines, next_id: 0, nodes: Vec::new() };
        let ready = peer.next_line(Duration::from_secs(60)).expect("peer.js ready line");
        assert_eq!(ready["event"], "ready", "peer.js failed: {ready}");
        peer.nodes = ready["nodes"].as_array().unwrap().clone();
        peer
    }

    fn next_line(&self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(serde_json::from_str(&line).expect("peer.js prints JSON lines")),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Runs one command; `Ok(result)` or `Err(error message)`. Waits at most 60 s.
    pub fn call(&mut self, op: &str, mut args: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        args["id"] = json!(id);
        args["op"] = json!(op);
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{args}").unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(msg) = self.next_line(left) else { break };
            if msg["id"] == json!(id) {
                return if msg["ok"] == json!(true) {
                    Ok(msg["result"].clone())
                } else {
                    Err(msg["error"].as_str().unwrap_or("?").to_owned())
                };
            }
        }
        panic!("peer.js did not answer {op} within 60 s");
    }

    /// `call` that must succeed.
    pub fn ok(&mut self, op: &str, args: Value) -> Value {
        self.call(op, args).unwrap_or_else(|e| panic!("peer.js {op} failed: {e}"))
    }
}

impl Drop for JsPeer {
    fn drop(&mut self) {
        // Closing stdin makes peer.js destroy its nodes and exit; kill if it lingers.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Shards per tern node these helpers start: `TERN_CORES` (default 1), as the CLI's
/// `--cores` reads it, so CI runs the interop suite on one and on two cores.
pub fn cores() -> usize {
    match std::env::var("TERN_CORES") {
        Ok(v) => v.parse().ok().filter(|&n| n >= 1).expect("TERN_CORES: a number ≥ 1"),
        Err(_) => 1,
    }
}

/// Starts a tern node on `driver`, or — with `TERN_CORES` > 1 — sharded over its own
/// pinned threads (the driver is then unused), on the backend `TERN_IO` picks.
pub fn start_tern(driver: &NodeDriver, config: NodeConfig) -> Dht {
    match cores() {
        1 => Dht::start_on(driver, config).expect("node binds"),
        n => Dht::start_sharded(config, n, tern::io_mode_from_env().unwrap())
            .expect("sharded node binds"),
    }
}

/// A tern bootstrap node at 127.0.0.1:`port`.
pub fn tern_bootstrapper(driver: &NodeDriver, port: u16) -> Dht {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let config = NodeConfig {
        rpc: RpcConfig { public_addr: Some(addr), ..RpcConfig::default() },
        host: Ipv4Addr::LOCALHOST,
        port,
        ..NodeConfig::default()
    };
    let dht = start_tern(driver, config);
    dht.ready().wait().unwrap();
    dht
}

/// A persistent tern node (like JS `ephemeral: false, firewalled: false`) on 127.0.0.1.
pub fn tern_node(driver: &NodeDriver, bootstrap: SocketAddrV4, port: u16) -> Dht {
    tern_peer(driver, bootstrap, port, false)
}

/// A tern node that stays firewalled and ephemeral (a peer behind a NAT, as far as the
/// connection logic can tell): it says UNKNOWN in handshakes, so connections between two
/// of these need holepunching even on loopback.
pub fn tern_firewalled_node(driver: &NodeDriver, bootstrap: SocketAddrV4, port: u16) -> Dht {
    tern_peer(driver, bootstrap, port, true)
}

fn tern_peer(driver: &NodeDriver, bootstrap: SocketAddrV4, port: u16, natted: bool) -> Dht {
    let config = NodeConfig {
        rpc: RpcConfig {
            bootstrap: vec![bootstrap],
            ephemeral: Some(natted),
            firewalled: natted,
            ..RpcConfig::default()
        },
        host: Ipv4Addr::LOCALHOST,
        port,
        // Peers "behind NATs" on one loopback must not find each other at 127.0.0.1
        // (the LAN shortcut), or no test would holepunch.
        conn: ConnConfig { lan: !natted, ..ConnConfig::default() },
        ..NodeConfig::default()
    };
    start_tern(driver, config)
}

/// Waits (≤ `limit`) until `f` holds.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

pub fn localhost(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}
