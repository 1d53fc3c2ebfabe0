//! `tern testnet --cores 2`: the testnet's bootstrap node runs as two shards on one
//! SO_REUSEPORT port, and the testnet's self-check (announce + lookup, mutable and
//! immutable put/get across nodes, all bootstrapped through the sharded node) passes.
//! Loopback only; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::bin::{TERN, start_testnet};

use std::process::Command;

#[test]
fn testnet_with_a_sharded_bootstrap_node_passes_its_self_check() {
    let (_guard, lines) = start_testnet(&["--nodes", "4", "--port", "26950", "--cores", "2"]);
    let checks = lines.iter().filter(|l| l.starts_with("check") && l.ends_with("ok")).count();
    assert_eq!(checks, 3, "{lines:?}");

    // Probes reach the sharded bootstrap node on its one port.
    let ping = Command::new(TERN)
        .args(["ping", "127.0.0.1:26950", "--bootstrap", "127.0.0.1:26950", "--json"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stderr));
}
