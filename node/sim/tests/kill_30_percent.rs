//! Killing 30 % of a 1 000-node network at once: right after the crash lookups suffer;
//! after the table repair period (liveness pings, DOWN_HINTs, refreshes, and the 5-minute
//! re-announces that move records onto the surviving closest nodes) lookups of every topic
//! whose announcer survived succeed at least 99 % of the time again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::Duration;

use tern_sim::workload::{announce_topics, lookup_from, persistent_network, pick, running};
use tern_sim::{WorldConfig, safety};

#[test]
fn lookups_recover_after_a_third_of_the_network_dies() {
    let (mut w, nodes) =
        persistent_network(WorldConfig::new(0xdead), 1000, Duration::from_secs(120));
    let announcers: Vec<usize> = (0..200).map(|_| pick(w.rng(), &nodes).unwrap()).collect();
    let (announced, failed) = announce_topics(&mut w, &announcers, Duration::from_secs(30));
    assert_eq!(failed, 0);
    w.run_for(Duration::from_secs(60));

    let mut victims = nodes.clone();
    for k in 0..victims.len() {
        let j = k + w.rng().below((victims.len() - k) as u64) as usize;
        victims.swap(k, j);
    }
    victims.truncate(300);
    for &v in &victims {
        w.kill(v);
    }
    let alive = running(&w, |_| true);
    let survivors: Vec<_> =
        announced.iter().filter(|a| !victims.contains(&a.node)).cloned().collect();
    let during = lookup_from(&mut w, &survivors, &alive, Duration::from_secs(30));

    // The repair period: two re-announce rounds and many ping/refresh ticks.
    w.run_for(Duration::from_secs(10 * 60));
    let after = lookup_from(&mut w, &survivors, &alive, Duration::from_secs(30));
    println!(
        "kill 30 %: {} topics of surviving announcers; right after: {:.1} % (p50 {:?}); after repair: {:.1} % (p50 {:?}, p99 {:?})",
        survivors.len(),
        100.0 * during.success_rate(),
        during.latency_quantile(0.5),
        100.0 * after.success_rate(),
        after.latency_quantile(0.5),
        after.latency_quantile(0.99),
    );
    assert!(after.success_rate() >= 0.99, "missed {:?}", after.missed);
    let dead_in_tables: usize = alive
        .iter()
        .map(|i| {
            let t = w.nodes()[*i].node().rpc().table();
            t.iter()
                .filter(|e| victims.iter().any(|v| w.nodes()[*v].public_addr() == Some(e.addr)))
                .count()
        })
        .sum();
    let total: usize = alive.iter().map(|i| w.nodes()[*i].node().rpc().table().len()).sum();
    println!("dead entries left in tables: {dead_in_tables} of {total}");
    let v = safety(&w);
    assert!(v.is_empty(), "{}", v.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}
