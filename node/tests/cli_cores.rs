//! `tern testnet --cores 2`: the testnet's bootstrap node runs as two shards on one
//! SO_REUSEPORT port, and the testnet's self-check (announce + lookup, mutable and
//! immutable put/get across nodes, all bootstrapped through the sharded node) passes.
//! Loopback only; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::bin::{Killed, TERN, lines_of};

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn testnet_with_a_sharded_bootstrap_node_passes_its_self_check() {
    let mut child = Command::new(TERN)
        .args(["testnet", "--nodes", "4", "--port", "26950", "--cores", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Killed(child);
    let rx = lines_of(stdout);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("testnet up")) {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("testnet up within 60 s; got {lines:?}"));
        lines.push(line);
    }
    let checks = lines.iter().filter(|l| l.starts_with("check") && l.ends_with("ok")).count();
    assert_eq!(checks, 3, "{lines:?}");

    // Probes reach the sharded bootstrap node on its one port.
    let ping = Command::new(TERN)
        .args(["ping", "127.0.0.1:26950", "--bootstrap", "127.0.0.1:26950", "--json"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stderr));
}
