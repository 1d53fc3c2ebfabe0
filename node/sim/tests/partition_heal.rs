//! A symmetric partition splits the 600 ordinary nodes of a network into two halves for
//! five minutes; each side announces 50 topics while split and finds its own. The three
//! bootstrap nodes (well-connected hosts, as in the real network) stay reachable from
//! both sides. After the partition heals and the network has had ten minutes to re-merge
//! (re-announces, refreshes, new contacts), lookups from random nodes on either side find
//! the records announced on both sides.
//!
//! Not covered here, and worth knowing: if one side also loses every bootstrap node, the
//! halves purge each other from their tables within minutes and dht-rpc only consults
//! bootstrap nodes when a table holds fewer than k nodes, so they re-merge only through
//! the few stale entries left (measured: ~70 % of cross lookups after 10 min, ~80 % after
//! 30 min). That is the reference's behaviour as much as tern's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::Duration;

use tern_sim::workload::{announce_topics, lookup_from, persistent_network, pick};
use tern_sim::{World, WorldConfig, safety};

/// Table entries (over all `nodes`) that point at a node of another partition group.
fn cross_entries(w: &World, nodes: &[usize]) -> usize {
    let group_of_addr = |addr| {
        let j = nodes.iter().find(|j| w.nodes()[**j].public_addr() == Some(addr))?;
        Some(w.net().group(w.net().site_of(w.nodes()[*j].host())))
    };
    nodes
        .iter()
        .map(|i| {
            let g = w.net().group(w.net().site_of(w.nodes()[*i].host()));
            let table = w.nodes()[*i].node().rpc().table();
            table.iter().filter(|e| group_of_addr(e.addr).is_some_and(|h| h != g)).count()
        })
        .sum()
}

#[test]
fn records_from_both_sides_are_found_after_the_partition_heals() {
    let (mut w, nodes) =
        persistent_network(WorldConfig::new(0x5917), 600, Duration::from_secs(120));
    let side_a: Vec<usize> = nodes.iter().copied().step_by(2).collect();
    let side_b: Vec<usize> = nodes.iter().copied().skip(1).step_by(2).collect();
    for (group, side) in [(1, &side_a), (2, &side_b)] {
        for &i in side {
            let site = w.net().site_of(w.nodes()[i].host());
            w.net_mut().set_group(site, group);
        }
    }
    // Bootstrap nodes stay in group 0, which both sides still reach.
    w.net_mut().block(1, 2);
    w.net_mut().block(2, 1);
    w.run_for(Duration::from_secs(60));

    let on_a: Vec<usize> = (0..50).map(|_| pick(w.rng(), &side_a).unwrap()).collect();
    let on_b: Vec<usize> = (0..50).map(|_| pick(w.rng(), &side_b).unwrap()).collect();
    let (mut announced, failed_a) = announce_topics(&mut w, &on_a, Duration::from_secs(10));
    let (from_b, failed_b) = announce_topics(&mut w, &on_b, Duration::from_secs(10));
    assert_eq!((failed_a, failed_b), (0, 0), "each side stores its own records");
    let split_a = lookup_from(&mut w, &announced, &side_a, Duration::from_secs(10));
    let split_b = lookup_from(&mut w, &from_b, &side_b, Duration::from_secs(10));
    let across = lookup_from(&mut w, &from_b, &side_a, Duration::from_secs(10));
    announced.extend(from_b);
    w.run_for(Duration::from_secs(3 * 60));
    let cross_at_heal = cross_entries(&w, &nodes);

    w.net_mut().heal();
    w.run_for(Duration::from_secs(10 * 60));
    let healed = lookup_from(&mut w, &announced, &nodes, Duration::from_secs(20));
    println!(
        "partition: while split A→A {:.0} %, B→B {:.0} %, A→B {:.0} % (via bootstrap nodes); \
         cross-side table entries {cross_at_heal} at heal, {} ten minutes later; after heal \
         {}/{} found ({:.1} %)",
        100.0 * split_a.success_rate(),
        100.0 * split_b.success_rate(),
        100.0 * across.success_rate(),
        cross_entries(&w, &nodes),
        healed.found,
        healed.total,
        100.0 * healed.success_rate(),
    );
    assert!(split_a.success_rate() >= 0.99 && split_b.success_rate() >= 0.99);
    assert!(across.success_rate() < 0.5, "the partition kept most records apart");
    assert!(cross_at_heal < nodes.len(), "the sides purged each other from their tables");
    assert!(healed.success_rate() >= 0.99, "missed {:?}", healed.missed);
    let v = safety(&w);
    assert!(v.is_empty(), "{}", v.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}
