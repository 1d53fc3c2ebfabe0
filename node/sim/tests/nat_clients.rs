//! Firewalled clients behind every kind of NAT (consistent mapping with open, address- and
//! port-restricted filtering; random mapping) run adaptive, like hyperdht's defaults, next
//! to 300 public adaptive nodes. After 25 simulated minutes the public nodes are persistent
//! and no NAT'd client is (their firewall test must fail: PING_NAT replies to their
//! server port die at the NAT). The clients then announce topics and look up each other's
//! records through the persistent nodes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::Duration;

use tern_netsim::{Filtering, NatConfig};
use tern_sim::workload::{add_nodes, announce_topics, lookup_from};
use tern_sim::{Mode, Placement, World, WorldConfig, safety};

#[test]
fn natted_clients_announce_and_look_up_through_persistent_nodes() {
    let mut w = World::new(WorldConfig::new(0x0a7));
    w.add_bootstrappers(3);
    let spread = Duration::from_secs(60);
    let public = add_nodes(&mut w, 300, Mode::Adaptive, spread, |_| Placement::Public);
    let kinds = [
        NatConfig::consistent(Filtering::Open),
        NatConfig::consistent(Filtering::AddressRestricted),
        NatConfig::consistent(Filtering::PortRestricted),
        NatConfig::random(),
    ];
    let (mut k, mut nat) = (0, None);
    // 120 clients: 4 NAT kinds, 3 clients behind each box (a household).
    let clients = add_nodes(&mut w, 120, Mode::Adaptive, spread, |w| {
        if k % 3 == 0 || nat.is_none() {
            nat = Some(w.add_nat(kinds[(k / 3) % kinds.len()]));
        }
        k += 1;
        Placement::Behind(nat.expect("set above"))
    });
    w.run_for(Duration::from_secs(25 * 60));

    let persistent = public.iter().filter(|i| w.nodes()[**i].node().rpc().is_persistent()).count();
    assert_eq!(persistent, public.len(), "every public adaptive node turned persistent");
    for &c in &clients {
        let rpc = w.nodes()[c].node().rpc();
        assert!(!rpc.is_persistent(), "client {c} turned persistent behind a NAT");
        assert!(rpc.is_firewalled(), "client {c} passed a firewall test behind a NAT");
        assert!(w.nodes()[c].bootstrapped_at.is_some(), "client {c} bootstrapped");
    }

    let announcers: Vec<usize> = clients.iter().copied().step_by(2).collect();
    let (announced, failed) = announce_topics(&mut w, &announcers, Duration::from_secs(20));
    assert_eq!(failed, 0, "every client announce was stored");
    let askers: Vec<usize> = clients.iter().copied().skip(1).step_by(2).collect();
    let report = lookup_from(&mut w, &announced, &askers, Duration::from_secs(20));
    println!(
        "NAT'd clients: {} announced, {}/{} lookups found ({:.1} %), p50 {:?}; NAT drops: no mapping {}, filtered {}",
        announced.len(),
        report.found,
        report.total,
        100.0 * report.success_rate(),
        report.latency_quantile(0.5),
        w.net().stats.dropped(tern_netsim::DropReason::NoMapping),
        w.net().stats.dropped(tern_netsim::DropReason::Filtered),
    );
    assert!(report.success_rate() >= 0.99, "missed {:?}", report.missed);
    let v = safety(&w);
    assert!(v.is_empty(), "{}", v.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}
