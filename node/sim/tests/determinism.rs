//! The same seed gives the same event trace: two runs of a busy world (NATs, loss,
//! duplication, reordering, a pause, announces, lookups, mutable and immutable writes)
//! end with the same full-payload trace digest; a different seed does not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use tern_core::NodeCommand;
use tern_netsim::{Filtering, Jitter, Loss, NatConfig, Prob};
use tern_sim::workload::{self, add_nodes};
use tern_sim::{Mode, Placement, TraceLevel, World, WorldConfig};

fn run(seed: u64) -> (u64, u64) {
    let mut cfg = WorldConfig::new(seed);
    cfg.trace = TraceLevel::Full;
    cfg.net.link.loss = Loss::Uniform(Prob::from_f64(0.02));
    cfg.net.link.duplicate = Prob::from_f64(0.01);
    cfg.net.link.reorder = Prob::from_f64(0.02);
    cfg.net.link.reorder_delay = Duration::from_millis(30);
    cfg.net.link.jitter = Jitter::Exponential(Duration::from_millis(3));
    let mut w = World::new(cfg);
    w.add_bootstrappers(3);
    let open =
        add_nodes(&mut w, 120, Mode::Persistent, Duration::from_secs(20), |_| Placement::Public);
    let nat = w.add_nat(NatConfig::consistent(Filtering::PortRestricted));
    let natted = add_nodes(&mut w, 20, Mode::Adaptive, Duration::from_secs(20), move |_| {
        Placement::Behind(nat)
    });
    w.run_for(Duration::from_secs(60));
    w.pause(open[7], Duration::from_secs(20));
    let (announced, _) = workload::announce_topics(
        &mut w,
        &[open[1], open[2], natted[0], natted[1]],
        Duration::from_secs(2),
    );
    workload::lookup_from(&mut w, &announced, &natted, Duration::from_secs(2));
    let kp = workload::key_pair(w.rng());
    w.command(
        open[3],
        NodeCommand::MutablePut { key_pair: kp.clone(), value: b"v".to_vec(), seq: 1 },
    );
    w.command(open[4], NodeCommand::ImmutablePut(b"immutable".to_vec()));
    w.run_for(Duration::from_secs(10));
    let a = &announced[0];
    w.command(a.node, NodeCommand::Unannounce { topic: a.topic, key_pair: a.key_pair.clone() });
    w.run_for(Duration::from_secs(6 * 60));
    (w.trace().digest(), w.trace().events())
}

#[test]
fn same_seed_same_trace() {
    let (a, events) = run(42);
    let (b, _) = run(42);
    assert!(events > 100_000, "a busy trace ({events} events)");
    assert_eq!(a, b, "two runs of seed 42 diverged");
    let (c, _) = run(43);
    assert_ne!(a, c, "another seed, another trace");
}
