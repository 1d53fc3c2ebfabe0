//! Loadgen plans: a TOML file of steps run in order against one target, so a workload
//! mix is versioned beside the code instead of living in shell history.
//!
//! ```toml
//! target = "127.0.0.1:49736"
//!
//! [[step]]
//! kind = "raw"            # dht-rpc capacity: ping | find_node | lookup | announce | mutable_put
//! command = "ping"
//! rate = 50000            # open loop (or `inflight = 64` for closed loop)
//! duration = 5
//!
//! [[step]]
//! kind = "peers"          # real tern peers: lookup | announce | mutable | immutable | bootstrap
//! workload = "lookup"
//! peers = 1000
//! rate = 200
//! duration = 10
//!
//! [[step]]
//! kind = "connect"        # encrypted connects to a server: time to open
//! connects = 100          # measured connects (after `warmup` unrecorded ones)
//! concurrency = 1         # in flight
//! # public_key = "..."    # a server speaking the sink protocol; default: one in-process
//!
//! [[step]]
//! kind = "stream"         # one-way throughput of encrypted streams
//! mib = 64                # per stream
//! streams = 4             # at once
//! verify = "crc32"        # or "count"
//! ```
//!
//! Step kinds are a tagged enum; `target` is the bootstrap node for connect and stream
//! steps.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::peers::{PeersArgs, Workload};
use crate::raw::{Arrivals, RawCommand, RawConfig};
use crate::streams::Verify;
use crate::streams::client::{ConnectArgs, ServerArgs, StreamArgs};

/// A plan file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The node or bootstrap node under test.
    pub target: SocketAddrV4,
    /// Steps, run in order.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// One step.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Raw request capacity (see `tern-loadgen raw`).
    Raw {
        /// Request kind.
        command: RawCommand,
        /// Open-loop offered rate.
        rate: Option<f64>,
        /// Closed-loop requests in flight.
        inflight: Option<usize>,
        /// Seconds.
        duration: f64,
        /// Sockets (default 16).
        sockets: Option<usize>,
    },
    /// Real peers (see `tern-loadgen peers`).
    Peers {
        /// Workload.
        workload: WorkloadName,
        /// Peers (default 100).
        peers: Option<usize>,
        /// Operations per second.
        rate: f64,
        /// Seconds.
        duration: f64,
        /// Peers become persistent nodes.
        #[serde(default)]
        persistent: bool,
    },

    /// Encrypted connects (see `tern-loadgen connect`).
    Connect {
        /// Measured connects (default 100).
        connects: Option<usize>,
        /// In flight (default 1).
        concurrency: Option<usize>,
        /// Unrecorded connects first (default 5).
        warmup: Option<usize>,
        /// Server public key (hex); default: a tern server in this process.
        public_key: Option<String>,
    },
    /// Encrypted stream throughput (see `tern-loadgen stream`).
    Stream {
        /// MiB per stream (default 64).
        mib: Option<u64>,
        /// Streams at once (default 1).
        streams: Option<usize>,
        /// Payload check (default count).
        verify: Option<Verify>,
        /// Server public key (hex); default: a tern server in this process.
        public_key: Option<String>,
    },
}

/// Workload names as written in plans.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadName {
    /// See [`Workload::Lookup`].
    Lookup,
    /// See [`Workload::Announce`].
    Announce,
    /// See [`Workload::Mutable`].
    Mutable,
    /// See [`Workload::Immutable`].
    Immutable,
    /// See [`Workload::Bootstrap`].
    Bootstrap,
}

impl From<WorkloadName> for Workload {
    fn from(w: WorkloadName) -> Self {
        match w {
            WorkloadName::Lookup => Workload::Lookup,
            WorkloadName::Announce => Workload::Announce,
            WorkloadName::Mutable => Workload::Mutable,
            WorkloadName::Immutable => Workload::Immutable,
            WorkloadName::Bootstrap => Workload::Bootstrap,
        }
    }
}

impl Plan {
    /// Reads a plan.
    pub fn load(path: &Path) -> anyhow::Result<Plan> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

impl Step {
    /// The raw-mode configuration of a raw step.
    pub fn raw_config(&self, target: SocketAddrV4) -> Option<RawConfig> {
        let Step::Raw { command, rate, inflight, duration, sockets } = self else { return None };
        Some(RawConfig {
            target,
            command: *command,
            arrivals: match (inflight, rate) {
                (Some(n), _) => Arrivals::Closed(*n),
                (None, r) => Arrivals::Open(r.unwrap_or(10_000.0)),
            },
            duration: Duration::from_secs_f64(*duration),
            sockets: sockets.unwrap_or(16),
            timeout: Duration::from_secs(1),
            bind: Ipv4Addr::LOCALHOST,
            seed: 1,
            malformed: 0.0,
        })
    }

    /// The peers-mode arguments of a peers step.
    pub fn peers_args(&self, target: SocketAddrV4) -> Option<PeersArgs> {
        let Step::Peers { workload, peers, rate, duration, persistent } = self else { return None };
        Some(PeersArgs {
            target: Some(target),
            peers: peers.unwrap_or(100),
            threads: 2,
            join_rate: 500.0,
            workload: (*workload).into(),
            rate: *rate,
            duration: *duration,
            topics: 20,
            timeout: 10.0,
            persistent: *persistent,
            seed: 1,
            processes: 0,
            sim: false,
            sim_nodes: 100,
            first_peer: 0,
            raw_stats: false,
        })
    }
}

impl Step {
    /// The arguments of a connect step.
    pub fn connect_args(&self, target: SocketAddrV4) -> Option<ConnectArgs> {
        let Step::Connect { connects, concurrency, warmup, public_key } = self else {
            return None;
        };
        Some(ConnectArgs {
            server: ServerArgs { bootstrap: target, public_key: public_key.clone() },
            connects: connects.unwrap_or(100),
            concurrency: concurrency.unwrap_or(1),
            warmup: warmup.unwrap_or(5),
            timeout: 10.0,
        })
    }

    /// The arguments of a stream step.
    pub fn stream_args(&self, target: SocketAddrV4) -> Option<StreamArgs> {
        let Step::Stream { mib, streams, verify, public_key } = self else { return None };
        Some(StreamArgs {
            server: ServerArgs { bootstrap: target, public_key: public_key.clone() },
            mib: mib.unwrap_or(64),
            streams: streams.unwrap_or(1),
            verify: verify.unwrap_or(Verify::Count),
            warmup_mib: 8,
            timeout: 120.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_step_kinds_and_refuses_typos() {
        let plan: Plan = toml::from_str(
            r#"
            target = "127.0.0.1:49736"
            [[step]]
            kind = "raw"
            command = "find_node"
            inflight = 64
            duration = 1
            [[step]]
            kind = "peers"
            workload = "mutable"
            rate = 5
            duration = 2
            "#,
        )
        .unwrap();
        assert_eq!(plan.steps.len(), 2);
        let raw = plan.steps[0].raw_config(plan.target).unwrap();
        assert_eq!(raw.arrivals, Arrivals::Closed(64));
        let peers = plan.steps[1].peers_args(plan.target).unwrap();
        assert_eq!((peers.peers, peers.workload), (100, Workload::Mutable));
        let conn: Plan = toml::from_str(
            "target = \"127.0.0.1:1\"\n[[step]]\nkind = \"connect\"\nconnects = 7\n\
             [[step]]\nkind = \"stream\"\nstreams = 3\nverify = \"crc32\"\n",
        )
        .unwrap();
        let c = conn.steps[0].connect_args(conn.target).unwrap();
        assert_eq!((c.connects, c.concurrency, c.server.public_key), (7, 1, None));
        let s = conn.steps[1].stream_args(conn.target).unwrap();
        assert_eq!((s.streams, s.mib, s.verify), (3, 64, Verify::Crc32));
        assert!(toml::from_str::<Plan>("target = \"127.0.0.1:1\"\n[[step]]\nkind = \"raw\"\ncommand = \"ping\"\nduration = 1\nrat = 5\n").is_err());
    }
}
