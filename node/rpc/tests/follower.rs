//! A follower shard (`RpcConfig::follower`) sends nothing on its own account — no
//! bootstrap walk, no refresh, no liveness pings, no firewall test — over half an
//! hour of virtual time, where the same node as a leader walks and pings; and it takes
//! the leader's lifecycle with the events the leader's own walk produced, once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{NodeId, Timestamp, TxQueue};
use tern_rpc::{Lifecycle, Rpc, RpcConfig, RpcEvent, TableChange};

fn config(follower: bool) -> RpcConfig {
    RpcConfig {
        bootstrap: vec![SocketAddrV4::new(Ipv4Addr::new(127, 0, 9, 1), 30_000)],
        server_port: 30_001,
        follower,
        ..RpcConfig::default()
    }
}

/// Datagrams `rpc` sends on its own over `minutes` of virtual time from a bootstrap
/// call, with a few table nodes to ping and refresh from (nobody ever answers).
fn sent_alone(follower: bool, minutes: u64) -> (Rpc, usize) {
    let mut now = Timestamp::ZERO;
    let mut rpc = Rpc::new(config(follower), now, 7, [3; 32]);
    for i in 0..8u8 {
        let addr = SocketAddrV4::new(Ipv4Addr::new(127, 0, 9, 10 + i), 30_000);
        let id = NodeId(tern_crypto::node_id(addr));
        rpc.apply_table_change(TableChange::Added { id, addr });
    }
    let mut sent = 0;
    let mut tx = TxQueue::new(1024);
    rpc.bootstrap(now, &mut tx);
    sent += tx.len();
    tx.clear();
    let end = now + Duration::from_secs(60 * minutes);
    while now < end {
        now = rpc.poll_timeout().max(now + Duration::from_millis(1)).min(end);
        rpc.handle_timeout(now, &mut tx);
        sent += tx.len();
        tx.clear();
    }
    (rpc, sent)
}

#[test]
fn a_follower_sends_nothing_unprompted_where_a_leader_walks_and_pings() {
    let (leader, leader_sent) = sent_alone(false, 30);
    assert!(leader_sent > 20, "the leader walks and pings: {leader_sent}");
    assert!(leader.stats().requests_sent > 0);
    let (follower, follower_sent) = sent_alone(true, 30);
    assert_eq!(follower_sent, 0, "a follower leaves maintenance to the leader");
    assert_eq!(follower.stats().requests_sent, 0);
    assert!(!follower.is_bootstrapped(), "bootstrapped only when the leader says so");
}

#[test]
fn a_follower_adopts_the_leaders_lifecycle_once() {
    let (mut rpc, _) = sent_alone(true, 1);
    while rpc.poll_event().is_some() {}
    let id =
        NodeId(tern_crypto::node_id(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 49_737)));

    rpc.follow(Lifecycle { bootstrapped: true, firewalled: true, persistent: None });
    assert!(rpc.is_bootstrapped() && rpc.is_firewalled() && !rpc.is_persistent());
    assert!(matches!(rpc.poll_event(), Some(RpcEvent::Bootstrapped)));
    assert!(rpc.poll_event().is_none());

    let leader = Lifecycle { bootstrapped: true, firewalled: false, persistent: Some(id) };
    rpc.follow(leader);
    assert!(matches!(rpc.poll_event(), Some(RpcEvent::Persistent { id: got }) if got == id));
    assert!(rpc.poll_event().is_none(), "bootstrapped was already reported");
    assert_eq!(rpc.persistent_id(), Some(id));
    assert_eq!(*rpc.table().id(), id, "the table is filed under the shared id");
    assert!(!rpc.is_firewalled());
    assert_eq!(rpc.lifecycle(), leader);
    assert_eq!(rpc.table().len(), 8, "re-filed, not emptied");

    // Sent again (a retry after a full mailbox): nothing new happens.
    rpc.follow(leader);
    rpc.follow(Lifecycle { persistent: None, ..leader });
    assert!(rpc.poll_event().is_none());
    assert_eq!(rpc.persistent_id(), Some(id), "persistence is one-way");
}
