//! Lookups of 200 announced topics succeed at least 99 % of the time on a network of
//! 1 000 nodes whose uplinks lose datagrams in Gilbert-Elliott bursts: 5 % on average,
//! in runs of 8 datagrams on average (from the first bootstrap datagram on).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::Duration;

use tern_netsim::{GilbertElliott, Loss};
use tern_sim::workload::{announce_topics, lookup_from, persistent_network, pick};
use tern_sim::{WorldConfig, safety};

#[test]
fn lookups_survive_bursty_loss() {
    let mut cfg = WorldConfig::new(0xb0_57);
    let ge = GilbertElliott::bursty(0.05, 8.0);
    cfg.net.link.loss = Loss::GilbertElliott(ge);
    let (mut w, nodes) = persistent_network(cfg, 1000, Duration::from_secs(120));
    let announcers: Vec<usize> = (0..200).map(|_| pick(w.rng(), &nodes).unwrap()).collect();
    let (announced, failed) = announce_topics(&mut w, &announcers, Duration::from_secs(30));
    assert!(failed <= 2, "{failed} of 200 announces failed");
    let report = lookup_from(&mut w, &announced, &nodes, Duration::from_secs(30));
    let stats = &w.net().stats;
    let loss = stats.dropped(tern_netsim::DropReason::Loss) as f64 / stats.sent as f64;
    println!(
        "bursty loss ({:.1} % measured): {}/{} found ({:.1} %), p50 {:?}, p99 {:?}",
        100.0 * loss,
        report.found,
        report.total,
        100.0 * report.success_rate(),
        report.latency_quantile(0.5),
        report.latency_quantile(0.99),
    );
    assert!((0.03..0.07).contains(&loss), "the model lost {loss}");
    assert!(report.success_rate() >= 0.99, "missed {:?}", report.missed);
    let v = safety(&w);
    assert!(v.is_empty(), "{}", v.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}
