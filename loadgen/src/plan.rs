//! Loadgen plans: a TOML file of steps run in order against one target, so a workload
//! mix is versioned beside the code instead of living in shell history.
//!
//! ```toml
//! target = "127.0.0.1:49736"
//!
//! [[step]]
//! kind = "raw"            # dht-rpc capacity: ping | find_node | lookup
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
//! ```
//!
//! Step kinds are a tagged enum: the streams issue adds `connect` (holepunch rate and
//! time-to-open) and `stream` (throughput per connection) beside these two.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::peers::{PeersArgs, Workload};
use crate::raw::{Arrivals, RawCommand, RawConfig};

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
        })
    }

    /// The peers-mode arguments of a peers step.
    pub fn peers_args(&self, target: SocketAddrV4) -> Option<PeersArgs> {
        let Step::Peers { workload, peers, rate, duration, persistent } = self else { return None };
        Some(PeersArgs {
            target,
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
        assert!(toml::from_str::<Plan>("target = \"127.0.0.1:1\"\n[[step]]\nkind = \"raw\"\ncommand = \"ping\"\nduration = 1\nrat = 5\n").is_err());
    }
}
