//! `peers --sim`: the same peers and workload as real-socket `peers`, in the
//! deterministic simulator (`tern-sim`'s [`World`] over `tern-netsim`) instead of on
//! 127.x sockets. The network under test is simulated too: a bootstrap node plus
//! `--sim-nodes - 1` persistent tern nodes, settled for a minute and a half of virtual
//! time; then the peers (ephemeral nodes on public addresses) join at `--join-rate`,
//! topics are announced, and operations arrive open-loop (Poisson) at `--rate` over
//! `--duration` virtual seconds. Latencies are virtual time under netsim's default
//! latency model (4 regions, 1–15 ms access, 15–90 ms between regions), so they measure
//! the protocol's round trips, not this machine; the wall time of the run is logged.
//!
//! Workloads: lookup (a miss of an announced record is wrong), announce, bootstrap, and
//! for mutable / immutable the put only (the world tracks one operation per command).

use std::time::{Duration, Instant};

use anyhow::bail;
use tern_base::{NodeId, Rng};
use tern_core::NodeCommand;
use tern_dht::OpId;
use tern_sim::workload::{add_nodes, announce_topics, key_pair};
use tern_sim::{Mode, OpRecord, Placement, TraceLevel, World, WorldConfig};

use crate::peers::{PeersArgs, Workload};
use crate::stats::OpStats;

/// Virtual time the network's nodes take to join before the peers come.
const NETWORK_JOIN: Duration = Duration::from_secs(60);
/// Virtual time the formed network settles (tables fill, nodes turn persistent).
const NETWORK_SETTLE: Duration = Duration::from_secs(30);
/// Virtual time between checks of pending joins and operations.
const STEP: Duration = Duration::from_millis(50);

/// An operation in flight: its node, its id and what a lookup must find.
struct Pending {
    node: usize,
    op: OpId,
    want: Option<[u8; 32]>,
}

/// Runs the peers in a simulated world; returns (virtual seconds of workload, stats).
pub fn run(args: &PeersArgs) -> anyhow::Result<(f64, Vec<OpStats>)> {
    if matches!(args.workload, Workload::Mutable | Workload::Immutable) {
        tracing::info!("--sim runs the put of mutable/immutable workloads only");
    }
    let wall = Instant::now();
    let mut cfg = WorldConfig::new(args.seed);
    cfg.trace = TraceLevel::Off;
    let mut world = World::new(cfg);
    world.add_bootstrappers(1);
    let nodes = args.sim_nodes.max(2) - 1;
    add_nodes(&mut world, nodes, Mode::Persistent, NETWORK_JOIN, |_| Placement::Public);
    world.run_for(NETWORK_JOIN + NETWORK_SETTLE);
    let timeout = Duration::from_secs_f64(args.timeout);
    let join = join_peers(&mut world, args, timeout);
    let peers: Vec<usize> = (world.nodes().len() - args.peers..world.nodes().len())
        .filter(|i| world.node(*i).is_some_and(|n| n.bootstrapped_at.is_some()))
        .collect();
    if args.workload == Workload::Bootstrap || peers.is_empty() {
        log_wall(&world, wall);
        return Ok((join.elapsed.unwrap_or(0.0), vec![join]));
    }
    let stats = workload(&mut world, args, &peers, timeout)?;
    log_wall(&world, wall);
    Ok((args.duration, vec![join, stats]))
}

/// Says how much virtual time the run covered and what it cost (stderr, beside the
/// table): the latencies in the table are virtual.
fn log_wall(world: &World, wall: Instant) {
    eprintln!(
        "simulated {:.1} s of virtual time ({} events) in {:.1} s wall; latencies are virtual",
        world.now().as_millis() as f64 / 1e3,
        world.stats().events,
        wall.elapsed().as_secs_f64()
    );
}

/// Adds the peers joining at `join_rate` and runs until each joined or timed out.
fn join_peers(world: &mut World, args: &PeersArgs, timeout: Duration) -> OpStats {
    let mut join = OpStats::new("bootstrap");
    let start = world.now();
    let spread = Duration::from_secs_f64(args.peers as f64 / args.join_rate.max(1.0));
    let peers = add_nodes(world, args.peers, Mode::Ephemeral, spread, |_| Placement::Public);
    join.sent = peers.len() as u64;
    let deadline = start + spread + timeout;
    // Bounded by the deadline: each turn advances virtual time by STEP.
    while world.now() < deadline {
        world.run_for(STEP);
        let waiting =
            peers.iter().any(|i| world.node(*i).is_some_and(|n| n.bootstrapped_at.is_none()));
        if world.now() >= start + spread && !waiting {
            break;
        }
    }
    let mut last = start;
    for n in peers.iter().filter_map(|i| world.node(*i)) {
        match (n.started_at, n.bootstrapped_at) {
            (Some(s), Some(b)) if b.saturating_since(s) <= timeout => {
                join.record_ok(b.saturating_since(s).as_micros() as u64);
                last = last.max(b);
            }
            _ => join.timeouts += 1,
        }
    }
    join.elapsed = Some(last.saturating_since(start).as_secs_f64());
    join
}

/// Announces the lookup topics, then offers operations open-loop and collects them.
fn workload(
    world: &mut World,
    args: &PeersArgs,
    peers: &[usize],
    timeout: Duration,
) -> anyhow::Result<OpStats> {
    let mut rng = Rng::from_seed(args.seed ^ 0x5eed);
    let announced = if args.workload == Workload::Lookup {
        let announcers: Vec<usize> =
            (0..args.topics).map(|_| peers[rng.below(peers.len() as u64) as usize]).collect();
        let (ok, failed) = announce_topics(world, &announcers, Duration::from_secs(1));
        if ok.is_empty() {
            bail!("no topic could be announced ({failed} announces failed)");
        }
        ok
    } else {
        Vec::new()
    };
    let mut stats = OpStats::new(args.workload.name());
    let start = world.now();
    let end = start + Duration::from_secs_f64(args.duration);
    let mut next = start;
    let mut pending: Vec<Pending> = Vec::new();
    // Bounded: arrivals stop at `end`, and pending operations are dropped as timeouts
    // after `timeout`; every turn advances virtual time.
    while world.now() < end || (!pending.is_empty() && world.now() < end + timeout) {
        while next <= world.now() && next < end {
            let node = peers[rng.below(peers.len() as u64) as usize];
            let (command, want) = match args.workload {
                Workload::Lookup => {
                    let a = &announced[rng.below(announced.len() as u64) as usize];
                    (NodeCommand::Lookup(a.topic), Some(a.public_key()))
                }
                Workload::Announce => (
                    NodeCommand::Announce {
                        topic: NodeId(rng.bytes32()),
                        key_pair: key_pair(&mut rng),
                        relay_addresses: Vec::new(),
                    },
                    None,
                ),
                Workload::Mutable => (
                    NodeCommand::MutablePut {
                        key_pair: key_pair(&mut rng),
                        value: rng.bytes32().to_vec(),
                        seq: 1,
                    },
                    None,
                ),
                Workload::Immutable => (NodeCommand::ImmutablePut(rng.bytes32().to_vec()), None),
                Workload::Bootstrap => break,
            };
            stats.sent += 1;
            match world.command(node, command) {
                Some(op) => pending.push(Pending { node, op, want }),
                None => stats.record_error(0),
            }
            let u = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            next = next + Duration::from_secs_f64(-u.ln() / args.rate.max(0.001));
        }
        let until = if next < end { next.min(world.now() + STEP) } else { world.now() + STEP };
        world.run_until(until.max(world.now() + Duration::from_micros(1)));
        collect(world, &mut pending, &mut stats, timeout);
    }
    stats.timeouts += pending.len() as u64;
    Ok(stats)
}

/// Takes finished (and timed-out) operations out of `pending` into `stats`.
fn collect(world: &mut World, pending: &mut Vec<Pending>, stats: &mut OpStats, timeout: Duration) {
    let now = world.now();
    let mut i = 0;
    while i < pending.len() {
        let p = &pending[i];
        let state = world.op(p.node, p.op).map(|r| (r.is_done(), now.saturating_since(r.started)));
        match state {
            Some((false, age)) if age <= timeout => i += 1,
            Some((true, _)) => {
                let p = pending.swap_remove(i);
                if let Some(rec) = world.take_op(p.node, p.op) {
                    record(stats, &rec, p.want, timeout);
                }
            }
            // Still running past the timeout, or lost with its node.
            _ => {
                let p = pending.swap_remove(i);
                let _ = world.take_op(p.node, p.op);
                stats.timeouts += 1;
            }
        }
    }
}

/// Counts one finished operation: a lookup is right only if it found the record.
fn record(stats: &mut OpStats, rec: &OpRecord, want: Option<[u8; 32]>, timeout: Duration) {
    let latency = rec.latency().unwrap_or_default();
    if latency > timeout {
        stats.timeouts += 1;
    } else if !rec.succeeded() {
        stats.record_error(0);
    } else if want.is_some_and(|pk| !rec.found.contains(&pk)) {
        stats.wrong += 1;
    } else {
        stats.record_ok(latency.as_micros() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(workload: Workload) -> PeersArgs {
        PeersArgs {
            target: None,
            peers: 12,
            threads: 1,
            join_rate: 50.0,
            workload,
            rate: 4.0,
            duration: 5.0,
            topics: 3,
            timeout: 10.0,
            persistent: false,
            seed: 7,
            processes: 1,
            first_peer: 0,
            sim: true,
            sim_nodes: 20,
            raw_stats: false,
        }
    }

    #[test]
    fn simulated_peers_join_and_find_every_announced_topic() {
        let (seconds, stats) = run(&args(Workload::Lookup)).expect("the simulation runs");
        assert_eq!(seconds, 5.0);
        let (join, lookup) = (&stats[0], &stats[1]);
        assert_eq!((join.name.as_str(), join.sent, join.ok), ("bootstrap", 12, 12));
        assert_eq!(lookup.name, "lookup");
        assert!(lookup.sent > 0, "lookups were offered");
        assert_eq!((lookup.ok, lookup.wrong, lookup.timeouts), (lookup.sent, 0, 0));
        // Virtual latencies: a lookup walks real protocol round trips (> 1 ms each).
        assert!(lookup.latency.value_at_quantile(0.5) > 1_000);
    }

    #[test]
    fn a_seed_replays_the_same_run() {
        let summary = |s: &[OpStats]| s.iter().map(|o| o.summary(1.0)).collect::<Vec<_>>();
        let a = run(&args(Workload::Announce)).expect("runs").1;
        let b = run(&args(Workload::Announce)).expect("runs").1;
        assert_eq!(summary(&a), summary(&b));
        assert!(a[1].ok > 0);
    }
}
