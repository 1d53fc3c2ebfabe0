//! Workloads: populate a world, run batches of client operations, and measure them.
//!
//! A batch starts its commands spread evenly over a window (so thousands of lookups do
//! not all leave in the same nanosecond), then runs the world until every operation has
//! finished or a timeout passes; records come back in command order. Everything random
//! (which node asks, key pairs, topics) is drawn from the world's RNG, so a workload
//! replays with the world.

use std::time::Duration;

use tern_base::{NodeId, Rng, Timestamp};
use tern_core::NodeCommand;
use tern_crypto::KeyPair;

use crate::check::Violation;
use crate::ops::OpRecord;
use crate::world::{Mode, NodeState, Placement, World, WorldConfig};

/// A topic announced by a node with a key pair.
#[derive(Debug, Clone)]
pub struct Announced {
    /// The announcing node.
    pub node: usize,
    /// The topic.
    pub topic: NodeId,
    /// The announcing key pair.
    pub key_pair: KeyPair,
}

impl Announced {
    /// The public key lookups must find.
    pub fn public_key(&self) -> [u8; 32] {
        *self.key_pair.public_key().as_bytes()
    }
}

/// A key pair drawn from `rng`.
pub fn key_pair(rng: &mut Rng) -> KeyPair {
    KeyPair::from_seed(&rng.bytes32())
}

/// Adds `n` nodes of `mode` at public addresses (or behind NATs made by `nat`), joining
/// uniformly over `spread` from now; returns their indices.
pub fn add_nodes(
    world: &mut World,
    n: usize,
    mode: Mode,
    spread: Duration,
    mut placement: impl FnMut(&mut World) -> Placement,
) -> Vec<usize> {
    let start = world.now();
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let p = placement(world);
        let offset = spread.mul_f64(k as f64 / n.max(1) as f64);
        out.push(world.add_node(mode, p, start + offset));
    }
    out
}

/// A world of 3 bootstrap nodes and `n` forced-persistent public nodes that join over
/// the first minute, run until `settle` after the last join. The quick way to a formed
/// network when adaptive persistence (20 simulated minutes) is not what a test is about.
pub fn persistent_network(cfg: WorldConfig, n: usize, settle: Duration) -> (World, Vec<usize>) {
    let mut world = World::new(cfg);
    world.add_bootstrappers(3);
    let spread = Duration::from_secs(60);
    let nodes = add_nodes(&mut world, n, Mode::Persistent, spread, |_| Placement::Public);
    world.run_for(spread + settle);
    (world, nodes)
}

/// Running nodes matching `filter`.
pub fn running(world: &World, filter: impl Fn(usize) -> bool) -> Vec<usize> {
    (0..world.nodes().len())
        .filter(|i| world.nodes()[*i].state() == NodeState::Running && filter(*i))
        .collect()
}

/// Picks one element of `from` uniformly (`None` if empty).
pub fn pick<T: Copy>(rng: &mut Rng, from: &[T]) -> Option<T> {
    (!from.is_empty()).then(|| from[rng.below(from.len() as u64) as usize])
}

/// Starts `commands` spread over `spread`, then runs until all are done or `timeout`
/// after the last start. Returns each command's record (`None`: its node was not
/// running, or the operation never finished).
pub fn run_batch(
    world: &mut World,
    commands: Vec<(usize, NodeCommand)>,
    spread: Duration,
    timeout: Duration,
) -> Vec<Option<OpRecord>> {
    let start = world.now();
    let n = commands.len().max(1);
    let mut ops = Vec::with_capacity(commands.len());
    for (k, (node, command)) in commands.into_iter().enumerate() {
        world.run_until(start + spread.mul_f64(k as f64 / n as f64));
        ops.push(world.command(node, command).map(|op| (node, op)));
    }
    let deadline = world.now() + timeout;
    let step = Duration::from_millis(250);
    // Bounded by the deadline: each turn advances virtual time by `step`.
    while world.now() < deadline {
        let all_done = ops
            .iter()
            .flatten()
            .all(|(node, op)| world.op(*node, *op).is_none_or(OpRecord::is_done));
        if all_done {
            break;
        }
        world.run_for(step);
    }
    ops.into_iter().map(|o| o.and_then(|(node, op)| world.take_op(node, op))).collect()
}

/// Outcome of a batch of lookups.
#[derive(Debug, Clone, Default)]
pub struct LookupReport {
    /// Lookups started.
    pub total: usize,
    /// Lookups that found the expected record.
    pub found: usize,
    /// (asking node, topic) of the lookups that did not.
    pub missed: Vec<(usize, NodeId)>,
    /// Latencies of the successful ones.
    pub latencies: Vec<Duration>,
}

impl LookupReport {
    /// Fraction found (1.0 for an empty batch).
    pub fn success_rate(&self) -> f64 {
        if self.total == 0 { 1.0 } else { self.found as f64 / self.total as f64 }
    }

    /// The `q` quantile of successful lookups' latency.
    pub fn latency_quantile(&self, q: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let idx = ((l.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
        l.get(idx).copied().unwrap_or_default()
    }
}

/// Looks up every `(asking node, topic, expected public key)`; a lookup counts as found
/// when it finished and one of its replies carried the key.
pub fn lookups(
    world: &mut World,
    queries: &[(usize, NodeId, [u8; 32])],
    spread: Duration,
) -> LookupReport {
    let commands = queries.iter().map(|(n, t, _)| (*n, NodeCommand::Lookup(*t))).collect();
    let records = run_batch(world, commands, spread, Duration::from_secs(60));
    let mut report = LookupReport { total: queries.len(), ..LookupReport::default() };
    for ((node, topic, pk), rec) in queries.iter().zip(records) {
        match rec {
            Some(r) if r.is_done() && r.found.contains(pk) => {
                report.found += 1;
                report.latencies.extend(r.latency());
            }
            _ => report.missed.push((*node, *topic)),
        }
    }
    report
}

/// Announces a fresh random topic from each of `announcers`; returns the announcements
/// whose commit stored the record on at least one node, and the number that failed.
pub fn announce_topics(
    world: &mut World,
    announcers: &[usize],
    spread: Duration,
) -> (Vec<Announced>, usize) {
    let mut planned = Vec::with_capacity(announcers.len());
    for &node in announcers {
        let topic = NodeId(world.rng().bytes32());
        let key_pair = key_pair(world.rng());
        planned.push(Announced { node, topic, key_pair });
    }
    let commands = planned
        .iter()
        .map(|a| {
            let c = NodeCommand::Announce {
                topic: a.topic,
                key_pair: a.key_pair.clone(),
                relay_addresses: Vec::new(),
            };
            (a.node, c)
        })
        .collect();
    let records = run_batch(world, commands, spread, Duration::from_secs(60));
    let mut ok = Vec::new();
    let mut failed = 0;
    for (a, r) in planned.into_iter().zip(records) {
        if r.as_ref().is_some_and(OpRecord::succeeded) {
            ok.push(a);
        } else {
            failed += 1;
        }
    }
    (ok, failed)
}

/// Lookups of every topic in `announced` from random running nodes of `askers`.
pub fn lookup_from(
    world: &mut World,
    announced: &[Announced],
    askers: &[usize],
    spread: Duration,
) -> LookupReport {
    let mut queries = Vec::with_capacity(announced.len());
    for a in announced {
        let Some(asker) = pick(world.rng(), askers) else { continue };
        queries.push((asker, a.topic, a.public_key()));
    }
    lookups(world, &queries, spread)
}

/// The liveness check: every topic whose announcer is still alive is found by a lookup
/// from a random running node within `rounds` attempts `gap` apart. Topics still missing
/// after the last round are violations.
pub fn liveness(
    world: &mut World,
    announced: &[Announced],
    rounds: usize,
    gap: Duration,
) -> Vec<Violation> {
    let mut pending: Vec<&Announced> = announced
        .iter()
        .filter(|a| world.node(a.node).is_some_and(|n| n.state() == NodeState::Running))
        .collect();
    for round in 0..rounds {
        if pending.is_empty() {
            break;
        }
        if round > 0 {
            world.run_for(gap);
        }
        let askers = running(world, |_| true);
        let owned: Vec<Announced> = pending.iter().map(|a| (*a).clone()).collect();
        let report = lookup_from(world, &owned, &askers, Duration::from_secs(10));
        pending.retain(|a| report.missed.iter().any(|(_, t)| *t == a.topic));
    }
    let now: Timestamp = world.now();
    pending
        .into_iter()
        .map(|a| {
            let what = format!(
                "liveness: topic {:?} announced by node {} not found in {rounds} rounds",
                a.topic, a.node
            );
            Violation::new(now, Some(a.node), what)
        })
        .collect()
}
