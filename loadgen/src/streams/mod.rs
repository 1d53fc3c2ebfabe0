//! Encrypted-connection workloads: how fast a client opens connections to a listening
//! server, and how many bytes per second one or several encrypted streams carry.
//!
//! Three roles, each a `tern-loadgen` subcommand, mirrored one for one by
//! `interop/stream-bench.js` so that tern<->tern and JS<->JS are measured the same way
//! (and a tern client can drive a JS server, or the reverse):
//!
//! * `serve`: a node that listens as a key pair and runs the sink protocol on every
//!   connection it accepts ([`server`]).
//! * `connect`: N connects with C in flight; each opens, sends the one-byte header and
//!   ends, then waits for the server's report ([`client::connect`]).
//! * `stream`: M streams opened first, then B bytes one way on each at once
//!   ([`client::stream`]).
//!
//! **Sink protocol.** The client sends one header byte ([`HEADER_COUNT`] or
//! [`HEADER_CRC32`]), then its payload, then ends its side. The server answers with a
//! [`Report`] (payload length and CRC-32) and ends its side.
//!
//! **Time to open** is measured from the `connect` call until it returns the stream:
//! the Noise IK handshake through a relay is complete on both sides and the UDX stream
//! is connected to the server's address; no application byte has crossed yet. That is
//! the moment hyperdht emits `'open'` on its socket (the secret-stream is started with
//! the handshake already done, so `'open'` does not wait for the peer's header).
//! **Reply** adds one data round trip: until the server's report has arrived.
//!
//! Nodes here are like hyperdht's default client: reachable (`firewalled: false`) so the
//! connection takes the direct path on loopback, otherwise default (adaptive) settings,
//! on OS-chosen ports.

pub mod client;
pub mod server;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tern::{Dht, NodeConfig, RpcConfig};

/// Header byte: the server only counts the payload.
pub const HEADER_COUNT: u8 = 0;
/// Header byte: the server counts the payload and computes its CRC-32.
pub const HEADER_CRC32: u8 = 1;
/// Length of the server's report: payload length (u64 LE) then CRC-32 (u32 LE).
pub const REPORT_BYTES: usize = 12;
/// The payload is this block repeated (generated once, so sending costs no generation).
pub const BLOCK: usize = 1 << 20;
/// Bytes per write: one secret-stream message each (tern splits writes at 64 KiB).
pub const CHUNK: usize = 64 * 1024;

/// How the server checks a stream's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Byte count only (the throughput runs: a CRC costs the JS receiver ~15 % of a
    /// core at these rates, which would measure zlib rather than the stream).
    Count,
    /// Byte count and CRC-32 of the whole payload.
    Crc32,
}

impl Verify {
    /// The header byte that asks for this check.
    pub fn header(self) -> u8 {
        match self {
            Verify::Count => HEADER_COUNT,
            Verify::Crc32 => HEADER_CRC32,
        }
    }
}

/// The server's answer once the client ended its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Payload bytes received (after the header byte).
    pub bytes: u64,
    /// CRC-32 of the payload (0 unless asked for).
    pub crc: u32,
}

impl Report {
    /// Wire form.
    pub fn encode(self) -> [u8; REPORT_BYTES] {
        let mut b = [0u8; REPORT_BYTES];
        b[..8].copy_from_slice(&self.bytes.to_le_bytes());
        b[8..].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Parses a report (exactly [`REPORT_BYTES`]).
    pub fn decode(b: &[u8]) -> Option<Report> {
        let b: &[u8; REPORT_BYTES] = b.try_into().ok()?;
        let (bytes, crc) = b.split_at(8);
        Some(Report {
            bytes: u64::from_le_bytes(bytes.try_into().ok()?),
            crc: u32::from_le_bytes(crc.try_into().ok()?),
        })
    }
}

/// The payload block, identical to `interop/stream-bench.js`'s (a multiplicative hash
/// of the offset, so a shifted or repeated chunk changes the CRC).
pub fn pattern_block() -> Vec<u8> {
    (0..BLOCK as u32).map(|j| (j.wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}

/// CRC-32 of `total` bytes of the repeated block.
pub fn expected_crc(block: &[u8], total: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        h.update(&block[..n]);
        left -= n as u64;
    }
    h.finalize()
}

/// Parses a 32-byte key from hex.
pub fn parse_key(hex_key: &str) -> anyhow::Result<[u8; 32]> {
    let v = hex::decode(hex_key.trim()).context("public key: not hex")?;
    v.try_into().map_err(|_| anyhow::anyhow!("public key: not 32 bytes"))
}

/// Starts a node on its own driver thread that joins `bootstrap`, and waits (≤ 30 s)
/// until it has bootstrapped.
pub fn start_node(bootstrap: SocketAddrV4) -> anyhow::Result<Dht> {
    let rpc = RpcConfig { bootstrap: vec![bootstrap], firewalled: false, ..RpcConfig::default() };
    let config =
        NodeConfig { rpc, host: Ipv4Addr::LOCALHOST, random_port: true, ..NodeConfig::default() };
    let dht = Dht::start(config).context("starting a node")?;
    let ready = dht.ready();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(ready.wait());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .context("the node did not bootstrap within 30 s")?
        .context("bootstrapping")?;
    Ok(dht)
}

/// CPU seconds (user + system) this process used so far, from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
    // USER_HZ, the unit of utime/stime in /proc, is 100 on every Linux ABI.
    const USER_HZ: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / USER_HZ
}

/// The JSON line of `connect` (same fields as `stream-bench.js connect`).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectOutput {
    /// Always "connect".
    pub op: &'static str,
    /// Always "tern" here ("js" from the JS driver).
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    /// Connects that opened and got the server's report.
    pub ok: u64,
    /// Connects that failed or timed out.
    pub failed: u64,
    /// Time to open of each successful connect, µs, in completion order.
    pub open_us: Vec<u64>,
    /// Time to the server's report of each successful connect, µs.
    pub reply_us: Vec<u64>,
    /// Wall time of the measured connects.
    pub seconds: f64,
    /// CPU seconds this client used for them.
    pub cpu_s: f64,
}

/// The JSON line of `stream` (same fields as `stream-bench.js stream`).
#[derive(Debug, Clone, Serialize)]
pub struct StreamOutput {
    /// Always "stream".
    pub op: &'static str,
    /// Always "tern" here.
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    /// Streams whose report matched (count, and CRC when verified).
    pub ok: u64,
    /// Streams that failed, timed out or were reported wrong.
    pub failed: u64,
    /// How the payload was checked.
    pub verify: Verify,
    /// Payload bytes per stream.
    pub bytes_per_stream: u64,
    /// Aggregate: payload bytes of the good streams / wall time of the transfer (10⁶ B/s).
    pub mb_per_s: f64,
    /// Per good stream: payload / (its report's arrival - the common start).
    pub stream_mb_per_s: Vec<f64>,
    /// Wall time from the common start until the last stream finished.
    pub seconds: f64,
    /// CPU seconds this client used during the transfer.
    pub cpu_s: f64,
    /// The client node's UDX counters over the transfer (it sends: its retransmission
    /// timeouts are the stalls a slow run may show).
    pub udx: UdxCounters,
}

/// UDX loss and flow-control counters of the sending node, as `StreamOutput` reports.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct UdxCounters {
    pub retransmits: u64,
    pub rto_timeouts: u64,
    pub tail_loss_probes: u64,
    pub fast_recoveries: u64,
    pub zero_window_probes: u64,
}

impl UdxCounters {
    /// The counters of `now` less those of `before`.
    pub fn since(now: &tern::UdxTotals, before: &tern::UdxTotals) -> Self {
        Self {
            retransmits: now.retransmits - before.retransmits,
            rto_timeouts: now.rto_timeouts - before.rto_timeouts,
            tail_loss_probes: now.tail_loss_probes - before.tail_loss_probes,
            fast_recoveries: now.fast_recoveries - before.fast_recoveries,
            zero_window_probes: now.zero_window_probes - before.zero_window_probes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trip_and_pattern_matches_the_js_driver() {
        let r = Report { bytes: 1 << 40, crc: 0xdead_beef };
        assert_eq!(Report::decode(&r.encode()), Some(r));
        assert_eq!(Report::decode(&[0; 11]), None);
        let block = pattern_block();
        // Math.imul(j, 2654435761 | 0) >>> 24 in stream-bench.js, for j = 0, 1, 2, 1000.
        assert_eq!([block[0], block[1], block[2], block[1000]], [0, 158, 60, 8]);
        let whole = crc32fast::hash(&[block.as_slice(), &block[..10]].concat());
        assert_eq!(expected_crc(&block, BLOCK as u64 + 10), whole);
    }
}
