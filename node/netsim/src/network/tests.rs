//! Unit tests of the network's decisions: routing, NAT round trips, the firewall-test
//! situation, partitions, death, pause, queues, duplication and determinism.

use std::net::SocketAddrV4;
use std::time::Duration;

use super::*;
use crate::link::{GilbertElliott, Prob};
use crate::nat::Filtering;

const T0: Timestamp = Timestamp::ZERO;

fn sent(o: Outbound) -> (SocketAddrV4, Copy) {
    match o {
        Outbound::Sent { from, copies: [Some(c), _] } => (from, c),
        other => panic!("not sent: {other:?}"),
    }
}

fn quiet() -> NetConfig {
    NetConfig { link: LinkConfig::default(), ..NetConfig::default() }
}

#[test]
fn public_hosts_reach_each_other_within_the_latency_bounds() {
    let mut net = Network::new(NetConfig::default(), 1);
    let a = net.add_public_host();
    let b = net.add_public_host();
    let dst = SocketAddrV4::new(net.host_ip(b), 9000);
    let (from, copy) = sent(net.send(T0, a, 4000, dst, 100));
    assert_eq!(from, SocketAddrV4::new(net.host_ip(a), 4000));
    let max = Duration::from_millis(15 + 15 + 90 + 2);
    assert!(copy.at > T0 && copy.at <= T0 + max, "{:?}", copy.at);
    assert_eq!(net.arrive(copy.at, from, dst), Inbound::Deliver { host: b, port: 9000 });
    let nowhere = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1);
    assert_eq!(net.send(T0, a, 4000, nowhere, 10), Outbound::Dropped(DropReason::Unroutable));
}

#[test]
fn nat_round_trip_and_unsolicited_server_port() {
    let mut net = Network::new(quiet(), 2);
    let server = net.add_public_host();
    let nat = net.add_nat(NatConfig::consistent(Filtering::PortRestricted));
    let client = net.add_private_host(nat);
    assert_ne!(net.host_ip(client), net.public_ip(client));
    let server_addr = SocketAddrV4::new(net.host_ip(server), 49737);
    let (mapped, copy) = sent(net.send(T0, client, 50_000, server_addr, 60));
    assert_eq!(*mapped.ip(), net.public_ip(client));
    assert_eq!(
        net.arrive(copy.at, mapped, server_addr),
        Inbound::Deliver { host: server, port: 49737 }
    );
    // The reply comes back through the mapping to the private port.
    let (from, copy) = sent(net.send(copy.at, server, 49737, mapped, 60));
    assert_eq!(net.arrive(copy.at, from, mapped), Inbound::Deliver { host: client, port: 50_000 });
    // A PING_NAT reply aimed at the client's server port has no mapping.
    let unsolicited = SocketAddrV4::new(net.public_ip(client), 49737);
    let (from, copy) = sent(net.send(copy.at, server, 49737, unsolicited, 60));
    assert_eq!(net.arrive(copy.at, from, unsolicited), Inbound::Dropped(DropReason::NoMapping));
    assert_eq!(net.stats.dropped(DropReason::NoMapping), 1);
}

#[test]
fn partitions_one_way_and_symmetric_then_heal() {
    let mut net = Network::new(quiet(), 3);
    let a = net.add_public_host();
    let b = net.add_public_host();
    net.set_group(net.site_of(b), 1);
    net.block(0, 1);
    let to_b = SocketAddrV4::new(net.host_ip(b), 1);
    let to_a = SocketAddrV4::new(net.host_ip(a), 1);
    assert_eq!(net.send(T0, a, 1, to_b, 1), Outbound::Dropped(DropReason::Partition));
    assert!(matches!(net.send(T0, b, 1, to_a, 1), Outbound::Sent { .. }), "one-way");
    net.block(1, 0);
    assert_eq!(net.send(T0, b, 1, to_a, 1), Outbound::Dropped(DropReason::Partition));
    net.heal();
    assert!(matches!(net.send(T0, a, 1, to_b, 1), Outbound::Sent { .. }));
}

#[test]
fn dead_and_paused_hosts() {
    let mut net = Network::new(quiet(), 4);
    let a = net.add_public_host();
    let b = net.add_public_host();
    let to_b = SocketAddrV4::new(net.host_ip(b), 1);
    let (from, copy) = sent(net.send(T0, a, 1, to_b, 1));
    net.set_up(b, false);
    assert_eq!(net.arrive(copy.at, from, to_b), Inbound::Dropped(DropReason::HostDown));
    assert_eq!(net.send(T0, b, 1, from, 1), Outbound::Dropped(DropReason::SenderDown));
    net.set_up(b, true);
    net.set_paused(b, true);
    assert!(net.is_paused(b));
    assert_eq!(net.send(T0, b, 1, from, 1), Outbound::Dropped(DropReason::SenderDown));
    assert_eq!(net.arrive(copy.at, from, to_b), Inbound::Deliver { host: b, port: 1 });
}

#[test]
fn uplink_queue_serialises_and_tail_drops() {
    let mut net = Network::new(quiet(), 5);
    let a = net.add_public_host();
    let b = net.add_public_host();
    let bw = Bandwidth { bytes_per_sec: 100_000, queue: Duration::from_millis(50) };
    net.set_uplink(net.site_of(a), Some(bw));
    let to_b = SocketAddrV4::new(net.host_ip(b), 1);
    let mut last = T0;
    let mut sent_n = 0;
    for _ in 0..20 {
        match net.send(T0, a, 1, to_b, 972) {
            Outbound::Sent { copies: [Some(c), _], .. } => {
                assert!(c.at > last, "serialised in order");
                last = c.at;
                sent_n += 1;
            }
            Outbound::Dropped(r) => assert_eq!(r, DropReason::Queue),
            Outbound::Sent { .. } => unreachable!(),
        }
    }
    // 10 ms per datagram, 50 ms of queue: the first six fit.
    assert_eq!(sent_n, 6);
}

#[test]
fn duplication_loss_and_corruption_follow_the_link() {
    let mut net = Network::new(quiet(), 6);
    let a = net.add_public_host();
    let b = net.add_public_host();
    let to_b = SocketAddrV4::new(net.host_ip(b), 1);
    net.set_link(
        net.site_of(a),
        net.site_of(b),
        LinkConfig { duplicate: Prob::ONE, corrupt: Prob::ONE, ..LinkConfig::default() },
    );
    match net.send(T0, a, 1, to_b, 10) {
        Outbound::Sent { copies: [Some(x), Some(y)], .. } => {
            assert!(x.corrupt_bit.is_some_and(|b| b < 80) && y.corrupt_bit.is_some());
        }
        other => panic!("{other:?}"),
    }
    let burst = LinkConfig {
        loss: Loss::GilbertElliott(GilbertElliott::bursty(0.3, 5.0)),
        ..LinkConfig::default()
    };
    net.set_link(net.site_of(a), net.site_of(b), burst);
    let lost = (0..10_000)
        .filter(|_| matches!(net.send(T0, a, 1, to_b, 10), Outbound::Dropped(DropReason::Loss)))
        .count();
    assert!((2_500..3_500).contains(&lost), "{lost}");
    // The reverse direction has no override.
    let to_a = SocketAddrV4::new(net.host_ip(a), 1);
    assert!(matches!(net.send(T0, b, 1, to_a, 10), Outbound::Sent { copies: [_, None], .. }));
}

#[test]
fn same_seed_same_decisions() {
    let run = |seed| {
        let mut cfg = NetConfig::default();
        cfg.link.loss = Loss::Uniform(Prob::from_f64(0.1));
        cfg.link.duplicate = Prob::from_f64(0.05);
        let mut net = Network::new(cfg, seed);
        let hosts: Vec<HostId> = (0..10).map(|_| net.add_public_host()).collect();
        let nat = net.add_nat(NatConfig::random());
        let natted = net.add_private_host(nat);
        let mut out = Vec::new();
        for i in 0..500u32 {
            let src = if i % 7 == 0 { natted } else { hosts[i as usize % 10] };
            let dst = SocketAddrV4::new(net.host_ip(hosts[(i as usize * 3) % 10]), 7);
            out.push(net.send(Timestamp::from_millis(u64::from(i)), src, 5, dst, 100));
        }
        out
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}
