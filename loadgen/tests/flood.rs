//! Garbage flood (issue 7's operator test): a tern bootstrap node on 127.0.0.1 keeps
//! answering valid requests while half of every datagram it receives is malformed
//! (`tern-loadgen raw --malformed 0.5`: truncated and corrupted requests, length bombs,
//! stray responses, UDX packets for unknown streams, oversize datagrams), and its memory
//! stays flat while the flood goes on.
//!
//! The node runs in this process (so its counters can be read); the flood comes from the
//! real `tern-loadgen` binary over real UDP sockets. The rate is fixed and modest
//! because this runs as a debug build next to other tests: the highest rate the machine
//! allows is measured by netbench's `garbage-flood` scenario (BENCHMARKS.md "Operator
//! figures"). Fixed port 29500; every run is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::process::Command;

use tern::Dht;

const PORT: u16 = 29500;
/// Datagrams per second offered, half of them malformed.
const RATE: u32 = 20_000;

/// The `tern-loadgen --json` summary fields this test reads.
#[derive(Debug, serde::Deserialize)]
struct Summary {
    sent: u64,
    ok: u64,
    ok_ratio: f64,
    #[serde(default)]
    malformed: u64,
}

/// Floods the node for `seconds` and returns loadgen's summary.
fn flood(seconds: u32) -> Summary {
    let out = Command::new(env!("CARGO_BIN_EXE_tern-loadgen"))
        .args(["--json", "--quiet", "raw", "--command", "find_node", "--malformed", "0.5"])
        .args(["--target", &format!("127.0.0.1:{PORT}")])
        .args(["--rate", &RATE.to_string(), "--duration", &seconds.to_string()])
        .args(["--sockets", "8", "--seed", &seconds.to_string()])
        .output()
        .expect("running tern-loadgen");
    assert!(out.status.success(), "tern-loadgen failed: {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// This process's resident set (the node lives here), KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_garbage_flood_leaves_valid_requests_answered_and_memory_flat() {
    let dht = Dht::bootstrapper(PORT, Ipv4Addr::LOCALHOST).unwrap();
    dht.ready().wait().unwrap();

    // Warm-up: buffers, tables and caches reach their working size.
    let warm = flood(2);
    let before = dht.stats().wait().unwrap();
    let rss_before = rss_kib();

    let run = flood(6);
    let after = dht.stats().wait().unwrap();
    let rss_after = rss_kib();
    eprintln!(
        "warm-up {warm:?}\nflood {run:?}\nRSS {rss_before} KiB -> {rss_after} KiB\nrpc {:?}",
        after.rpc
    );

    for s in [&warm, &run] {
        assert!(s.ok_ratio >= 0.99, "valid FIND_NODEs answered: {} of {}", s.ok, s.sent);
    }
    // Half of the offered rate was garbage (Bernoulli 0.5 over ~120 000 datagrams).
    let total = run.sent + run.malformed;
    assert!(total > u64::from(RATE) * 6 * 9 / 10, "only {total} datagrams offered");
    assert!(run.malformed * 10 > total * 4 && run.malformed * 10 < total * 6, "{run:?}");
    // The garbage reached the node's decoders (truncations, corrupted flags and length
    // bombs are decode errors; the rest are counted under other reasons or dropped by
    // the driver) and was refused there.
    let decode_errors = after.rpc.decode_errors - before.rpc.decode_errors;
    assert!(decode_errors * 5 > run.malformed, "{decode_errors} decode errors");
    let unmatched = after.rpc.unmatched_responses - before.rpc.unmatched_responses;
    assert!(unmatched * 20 > run.malformed, "{unmatched} unmatched responses");
    // Memory flat: the flood after the warm-up leaves the resident set where it was,
    // give or take allocator noise.
    assert!(
        rss_after <= rss_before + 4 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB during the flood"
    );
    dht.destroy().unwrap();
}
