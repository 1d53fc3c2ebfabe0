//! Plans: which targets, which scenarios, how many repeats (TOML).
//!
//! Request scenarios (`mode = "capacity"` or `"rates"`) load one target process with
//! `tern-loadgen raw`. Connection scenarios (`mode = "connect"` or `"stream"`) give each
//! target a small network of its own implementation, a server and a client (see
//! `streams`); targets that cannot hold encrypted connections (the raw echo) are
//! skipped for them. Network scenarios (`mode = "network"`) start a loopback network of
//! `nodes` nodes of the target's implementation and run `tern-loadgen peers` against it
//! (lookup latency in a large network, thousands of real peers).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A benchmark plan.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Plan {
    /// Plan name (shown in reports).
    pub name: String,
    /// Measurements per (scenario, target, rate); the report takes the median.
    #[serde(default = "default_repeats")]
    pub repeats: usize,
    /// Seconds per measurement.
    #[serde(default = "default_duration")]
    pub duration: f64,
    /// Systems under test.
    pub targets: Vec<Target>,
    /// What to measure.
    pub scenarios: Vec<Scenario>,
}

fn default_repeats() -> usize {
    3
}

fn default_duration() -> f64 {
    3.0
}

/// What kind of process a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// `tern bootstrap` (one driver thread = one core today).
    Tern,
    /// The JS reference: a hyperdht 6.34.0 bootstrapper from `interop/`.
    Js,
    /// netbench's own raw UDP echo: recvmmsg, a minimal valid response, sendmmsg. The
    /// physical limit a node can approach on this machine.
    Echo,
}

/// One system under test.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Target {
    /// Name in reports.
    pub name: String,
    /// Kind.
    pub kind: TargetKind,
    /// Extra arguments for the target process (e.g. tern's `--io`, `--cores` later).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment of every process of this target (e.g. `TERN_IO = "epoll"`, which
    /// also reaches the loadgen nodes of the connection scenarios).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The raw echo target this one's CPU per request is compared with at equal rates
    /// (e.g. a two-thread echo for a two-shard node); default: the plan's first echo.
    #[serde(default)]
    pub baseline: Option<String>,
}

/// How a scenario measures.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// Raise the offered rate step by step until fewer than `min_ok` of the requests are
    /// answered within the timeout; report the last passing rate.
    Capacity {
        /// First offered rate (req/s).
        start: f64,
        /// Multiplier per step.
        factor: f64,
        /// Highest rate tried.
        max: f64,
        /// Bisection steps between the last passing and the first failing rate (geometric
        /// midpoints): each halves the step's uncertainty, so 2 turns a ×1.4 ladder's
        /// 40 % resolution into about 9 %.
        #[serde(default)]
        refine: u32,
    },
    /// Measure at each of these offered rates.
    Rates {
        /// Offered rates (req/s).
        rates: Vec<f64>,
    },
    /// Encrypted connects from a client to a listening server on a loopback network of
    /// the target's own implementation: time-to-open percentiles.
    Connect {
        /// Measured connects per repeat.
        connects: usize,
        /// Connects in flight (1 = sequential).
        #[serde(default = "one")]
        concurrency: usize,
        /// Unrecorded connects before them (a cold V8 or page cache is not the subject).
        #[serde(default = "default_warmup")]
        warmup: usize,
        /// Nodes in the network besides the bootstrap node (relays for the handshake).
        #[serde(default = "default_nodes")]
        nodes: usize,
    },
    /// One-way throughput of `streams` encrypted streams sending `mib` MiB each at once.
    Stream {
        /// Payload per stream, MiB.
        mib: u64,
        /// Streams at once.
        #[serde(default = "one")]
        streams: usize,
        /// Payload check by the server: "count" or "crc32".
        #[serde(default = "default_verify")]
        verify: String,
        /// Unrecorded transfer first, MiB.
        #[serde(default = "default_warmup_mib")]
        warmup_mib: u64,
        /// Nodes in the network besides the bootstrap node.
        #[serde(default = "default_nodes")]
        nodes: usize,
    },
    /// A loopback network of `nodes` nodes of the target's implementation (tern testnet
    /// or `interop/bench-net.js`), loaded by `peers` real tern peers from
    /// `tern-loadgen peers` running `workload` at `rate` operations per second.
    Network {
        /// Nodes in the network, the bootstrap node included; they take the ports from
        /// netbench's `--network-port` (tern: consecutive ports; JS: the bootstrap only).
        nodes: usize,
        /// Loadgen peers (each a tern node with its own sockets on a 127.x address).
        peers: usize,
        /// `tern-loadgen peers --workload`: lookup, announce, mutable, immutable, bootstrap.
        #[serde(default = "default_workload")]
        workload: String,
        /// Offered operations per second over all peers (open loop).
        #[serde(default = "default_network_rate")]
        rate: f64,
        /// Seconds of workload after the peers joined.
        #[serde(default = "default_network_seconds")]
        seconds: f64,
        /// Topics announced before lookups (a lookup missing one is a wrong answer).
        #[serde(default = "default_topics")]
        topics: usize,
        /// Peers joining per second.
        #[serde(default = "default_join_rate")]
        join_rate: f64,
    },
}

impl Mode {
    /// Whether this is a connection scenario (connect or stream).
    pub fn is_connection(&self) -> bool {
        matches!(self, Mode::Connect { .. } | Mode::Stream { .. })
    }

    /// Whether this is a network scenario.
    pub fn is_network(&self) -> bool {
        matches!(self, Mode::Network { .. })
    }
}

fn default_workload() -> String {
    "lookup".into()
}

fn default_network_rate() -> f64 {
    20.0
}

fn default_network_seconds() -> f64 {
    10.0
}

fn default_topics() -> usize {
    20
}

fn default_join_rate() -> f64 {
    500.0
}

fn one() -> usize {
    1
}

fn default_warmup() -> usize {
    5
}

fn default_nodes() -> usize {
    3
}

fn default_verify() -> String {
    "count".into()
}

fn default_warmup_mib() -> u64 {
    8
}

/// One scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Scenario {
    /// Name in reports.
    pub name: String,
    /// Request kind for `tern-loadgen raw` (request scenarios): ping, find_node, lookup,
    /// or the signed writes announce and mutable_put (the raw echo is skipped for those:
    /// it issues no token).
    #[serde(default)]
    pub command: String,
    /// Measurement mode.
    #[serde(flatten)]
    pub mode: Mode,
    /// Fraction answered within the timeout for a rate to pass (default 0.99).
    #[serde(default = "default_min_ok")]
    pub min_ok: f64,
    /// A rate passes only if its p99 latency stays at or below this (ms), when set. The
    /// load generator shares the machine: when it falls behind its own schedule, or the
    /// target queues for most of the 1 s timeout, requests still count as answered, and
    /// without a latency bound the ladder "passes" rates nobody served in time.
    #[serde(default)]
    pub max_p99_ms: Option<f64>,
    /// Targets to skip (e.g. the echo for a scenario whose answers it cannot fake).
    #[serde(default)]
    pub skip: Vec<String>,
    /// Garbage flood: this fraction of the offered datagrams is malformed
    /// (`tern-loadgen raw --malformed`); rates and capacities count all datagrams, the
    /// pass criterion only the valid requests among them.
    #[serde(default)]
    pub malformed: f64,
}

fn default_min_ok() -> f64 {
    0.99
}

impl Scenario {
    /// Whether a request measurement passes: enough answered within the timeout, and
    /// the p99 within `max_p99_ms` where the scenario sets one.
    pub fn passes(&self, m: &crate::run::Measurement) -> bool {
        m.ok_ratio >= self.min_ok && self.max_p99_ms.is_none_or(|b| m.p99_us as f64 <= b * 1000.0)
    }
}

impl Plan {
    /// Reads and checks a plan file.
    pub fn load(path: &Path) -> anyhow::Result<Plan> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let plan: Plan =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(plan.repeats >= 1, "repeats must be at least 1");
        anyhow::ensure!(plan.duration > 0.0, "duration must be positive");
        for t in &plan.targets {
            if let Some(b) = &t.baseline {
                anyhow::ensure!(
                    plan.targets.iter().any(|e| &e.name == b && e.kind == TargetKind::Echo),
                    "{}: baseline {b} is not an echo target of the plan",
                    t.name
                );
            }
        }
        for s in &plan.scenarios {
            anyhow::ensure!(
                s.max_p99_ms.is_none_or(|b| b > 0.0),
                "{}: max_p99_ms must be positive",
                s.name
            );
            match &s.mode {
                Mode::Capacity { start, factor, max, .. } => anyhow::ensure!(
                    *start > 0.0 && *factor > 1.0 && max >= start,
                    "{}: bad capacity ladder",
                    s.name
                ),
                Mode::Rates { .. } => {}
                Mode::Connect { connects, concurrency, nodes, .. } => anyhow::ensure!(
                    *connects >= 1 && *concurrency >= 1 && *nodes >= 2,
                    "{}: connects and concurrency must be ≥ 1, nodes ≥ 2",
                    s.name
                ),
                Mode::Stream { mib, streams, verify, nodes, .. } => anyhow::ensure!(
                    *mib >= 1
                        && *streams >= 1
                        && *nodes >= 2
                        && matches!(verify.as_str(), "count" | "crc32"),
                    "{}: mib and streams must be ≥ 1, nodes ≥ 2, verify count or crc32",
                    s.name
                ),
                Mode::Network { nodes, peers, rate, seconds, workload, .. } => anyhow::ensure!(
                    (2..=1000).contains(nodes)
                        && *peers >= 1
                        && *rate > 0.0
                        && *seconds > 0.0
                        && matches!(
                            workload.as_str(),
                            "lookup" | "announce" | "mutable" | "immutable" | "bootstrap"
                        ),
                    "{}: nodes 2..=1000 (one port each), peers ≥ 1, rate and seconds > 0, \
                     workload lookup|announce|mutable|immutable|bootstrap",
                    s.name
                ),
            }
            anyhow::ensure!(
                (0.0..1.0).contains(&s.malformed)
                    && (s.malformed == 0.0 || !(s.mode.is_connection() || s.mode.is_network())),
                "{}: malformed is a fraction in [0, 1) of a request scenario",
                s.name
            );
            anyhow::ensure!(
                s.mode.is_connection() || s.mode.is_network() || !s.command.is_empty(),
                "{}: request scenarios need a command",
                s.name
            );
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rate answered in full still fails when its p99 passes the scenario's bound, and
    /// passes without one.
    #[test]
    fn a_latency_bound_fails_late_answers() {
        let text = "name = \"p\"\nrepeats = 1\nduration = 1.0\n[[targets]]\nname = \"t\"\nkind = \"echo\"\n\
                    [[scenarios]]\nname = \"a\"\ncommand = \"ping\"\nmode = \"rates\"\nrates = [1.0]\nmax_p99_ms = 50\n\
                    [[scenarios]]\nname = \"b\"\ncommand = \"ping\"\nmode = \"rates\"\nrates = [1.0]\n";
        let plan: Plan = toml::from_str(text).unwrap();
        let m = |p99_us: u64, ok_ratio: f64| crate::run::Measurement {
            scenario: "a".into(),
            target: "t".into(),
            repeat: 0,
            command: "ping".into(),
            offered: 1.0,
            sent: 100,
            ok: (ok_ratio * 100.0) as u64,
            ok_ratio,
            rate: 1.0,
            p50_us: 1,
            p90_us: 1,
            p99_us,
            p999_us: p99_us,
            cpu_s: 0.0,
            cpu_us_per_req: 0.0,
            cpu_percent: 0.0,
            rss_kib: 0,
        };
        let (bounded, open) = (&plan.scenarios[0], &plan.scenarios[1]);
        assert!(bounded.passes(&m(50_000, 1.0)));
        assert!(!bounded.passes(&m(50_001, 1.0)));
        assert!(!bounded.passes(&m(1_000, 0.9)));
        assert!(open.passes(&m(900_000, 1.0)));
    }

    #[test]
    fn every_shipped_plan_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Plan::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 4, "found only {n} plans in {}", dir.display());
    }

    #[test]
    fn a_network_scenario_outside_one_port_block_is_refused() {
        let plan = |nodes: usize| {
            format!(
                "name = \"x\"\n[[targets]]\nname = \"t\"\nkind = \"tern\"\n[[scenarios]]\n\
                 name = \"n\"\nmode = \"network\"\nnodes = {nodes}\npeers = 5\n"
            )
        };
        let dir = std::env::temp_dir().join(format!("netbench-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ok, big) = (dir.join("ok.toml"), dir.join("big.toml"));
        std::fs::write(&ok, plan(1000)).unwrap();
        std::fs::write(&big, plan(1001)).unwrap();
        let loaded = Plan::load(&ok).unwrap();
        assert!(matches!(
            loaded.scenarios[0].mode,
            Mode::Network { nodes: 1000, peers: 5, rate: 20.0, .. }
        ));
        assert!(Plan::load(&big).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
