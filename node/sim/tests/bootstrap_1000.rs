//! 1 000 nodes with hyperdht's default (adaptive) settings join over two minutes from 3
//! bootstrap nodes: 900 on public addresses, 100 behind NAT boxes of every kind. Within
//! 25 simulated minutes every node that should be persistent is — each public node after
//! its ~20-minute stability period and a passed firewall test, with the id H32 of its
//! real address — and no NAT'd node is; every routing table is well-formed (the safety
//! checker: row bounds, order and placement, no self, ids hash from real addresses of
//! persistent nodes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::Duration;

use tern_netsim::{Filtering, NatConfig};
use tern_sim::workload::add_nodes;
use tern_sim::{Mode, Placement, World, WorldConfig, safety};

#[test]
fn a_thousand_nodes_bootstrap_and_turn_persistent_within_25_minutes() {
    let mut w = World::new(WorldConfig::new(0xb007));
    w.add_bootstrappers(3);
    let spread = Duration::from_secs(120);
    let kinds = [
        NatConfig::consistent(Filtering::Open),
        NatConfig::consistent(Filtering::AddressRestricted),
        NatConfig::consistent(Filtering::PortRestricted),
        NatConfig::random(),
    ];
    let mut k = 0;
    let nodes = add_nodes(&mut w, 1000, Mode::Adaptive, spread, |w| {
        k += 1;
        if k % 10 == 0 {
            Placement::Behind(w.add_nat(kinds[(k / 10) % kinds.len()]))
        } else {
            Placement::Public
        }
    });
    w.run_for(Duration::from_secs(25 * 60));

    let mut persistent = 0;
    let mut table_total = 0;
    for &i in &nodes {
        let n = &w.nodes()[i];
        let rpc = n.node().rpc();
        assert!(n.bootstrapped_at.is_some(), "node {i} bootstrapped");
        assert_eq!(rpc.is_persistent(), n.should_be_persistent(), "node {i} ({:?})", n.placement());
        assert!(!rpc.table().is_empty(), "node {i} knows someone");
        table_total += rpc.table().len();
        if let Some((at, _)) = n.persistent {
            persistent += 1;
            let stable = at.saturating_since(n.bootstrapped_at.unwrap());
            assert!(stable >= Duration::from_secs(19 * 60), "node {i} persistent after {stable:?}");
        }
    }
    println!(
        "bootstrap: {persistent}/900 public nodes persistent at 25 min, 0/100 NAT'd; mean table {}; {:?}",
        table_total / nodes.len(),
        w.stats(),
    );
    assert_eq!(persistent, 900);
    let v = safety(&w);
    assert!(v.is_empty(), "{}", v.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}
