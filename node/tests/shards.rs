//! One identity sharded over two pinned threads (`Dht::bootstrapper_sharded`, the
//! `--cores` of the CLI): both shards serve the one SO_REUSEPORT port, a record
//! announced through one shard lives on the shard owning its topic, and lookups that
//! the kernel hands to either shard all find it; reads of topics no shard stores are
//! answered where they land. Runs on the backend `TERN_IO` picks.
//! Loopback only; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use tern::{Dht, KeyPair, NodeConfig, RpcConfig};
use tern_wire::hyperdht::Command;
use tern_wire::rpc::{Message, Request};
use tern_wire::{Decode, Encode};

const PORT: u16 = 26_900;
/// Clients, each on its own port: the kernel spreads their flows over the shards by
/// hash, so with this many the chance that one shard gets none is 2^-11.
const CLIENTS: usize = 12;

fn client(driver: &tern::NodeDriver, boot: SocketAddrV4) -> Dht {
    let rpc = RpcConfig { bootstrap: vec![boot], ephemeral: Some(true), ..RpcConfig::default() };
    let config =
        NodeConfig { rpc, host: Ipv4Addr::LOCALHOST, random_port: true, ..NodeConfig::default() };
    Dht::start_on(driver, config).unwrap()
}

#[test]
fn records_announced_through_one_shard_are_found_through_every_shard() {
    let io = tern::io_mode_from_env().unwrap();
    let boot = Dht::bootstrapper_sharded(PORT, Ipv4Addr::LOCALHOST, 2, io).unwrap();
    boot.ready().wait().unwrap();
    let boot_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT);
    assert_eq!(boot.local_addr(), Some(boot_addr));

    let driver = tern::node_driver(1, "shard-clients").unwrap();
    let clients: Vec<Dht> = (0..CLIENTS).map(|_| client(&driver, boot_addr)).collect();
    for c in &clients {
        c.ready().wait().unwrap();
    }

    let key_pair = KeyPair::from_seed(&[0x42; 32]);
    let pk = *key_pair.public_key().as_bytes();
    let topic = tern_crypto::hash32(b"tern shards test");
    let stored = clients[0].announce(topic, &key_pair, &[]).wait().unwrap();
    assert!(stored >= 1, "announce stored on the sharded bootstrapper");

    for (i, c) in clients.iter().enumerate() {
        let found = c.lookup(topic).flat_map(|r| r.peers).any(|p| p.public_key == pk);
        assert!(found, "client {i} found the record");
    }

    // The record lives on exactly one shard, and both shards served requests
    // directly: the lookups the other shard received went to the owner.
    let per_shard: Vec<_> = boot.shard_stats().into_iter().map(|p| p.wait().unwrap()).collect();
    assert_eq!(per_shard.len(), 2);
    let records: Vec<usize> = per_shard.iter().map(|s| s.records).collect();
    assert_eq!(records.iter().filter(|&&r| r > 0).count(), 1, "records per shard {records:?}");
    let owner = records.iter().position(|&r| r > 0).unwrap();
    let other = 1 - owner;
    let forwarding = boot.forwarding_stats().unwrap();
    assert!(forwarding.forwarded_requests > 0, "{forwarding:?}");
    assert_eq!(forwarding.forward_dropped, 0, "{forwarding:?}");
    let requests =
        |s: &tern::NodeStats| s.rpc.app_requests + s.rpc.internal_requests.iter().sum::<u64>();
    assert!(requests(&per_shard[other]) > 0, "the non-owner shard served requests too");
    eprintln!(
        "owner shard {owner}; requests per shard {:?}; {forwarding:?}",
        per_shard.iter().map(requests).collect::<Vec<_>>()
    );

    // Unannounce through yet another flow: it reaches the owner, the record is gone.
    clients[0].unannounce(topic, &key_pair).wait().unwrap();
    let still =
        clients[CLIENTS - 1].lookup(topic).flat_map(|r| r.peers).any(|p| p.public_key == pk);
    assert!(!still, "unannounced record gone");

    for c in clients {
        c.destroy().unwrap();
    }
    boot.destroy().unwrap();
}

/// One LOOKUP for `topic` from `sock` to `to`; the reply's value (`None`: no records),
/// or `Err` after three unanswered tries.
fn raw_lookup(
    sock: &UdpSocket,
    to: SocketAddrV4,
    topic: &[u8; 32],
    tid: u16,
) -> Result<Option<Vec<u8>>, ()> {
    let req = Request {
        tid,
        to,
        id: None,
        token: None,
        internal: false,
        command: Command::Lookup as u64,
        target: Some(topic),
        value: None,
    };
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        sock.send_to(&req.to_vec(), to).unwrap();
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Ok(Message::Response(r)) = Message::decode(&buf[..n])
                && r.tid == tid
            {
                return Ok(r.value.map(<[u8]>::to_vec));
            }
        }
    }
    Err(())
}

/// A record is found through every shard the moment its announce is acknowledged (no
/// wait: the owner counts it in the shared filter before it replies), and once it is
/// unannounced the shards answer lookups of the topic themselves again.
#[test]
fn reads_after_a_write_see_it_on_every_shard_and_empty_reads_stay_local() {
    const SHARDED: u16 = 26_910;
    /// Raw requesters, one flow each, so both shards receive some (2^-15 that not).
    const FLOWS: usize = 16;
    let io = tern::io_mode_from_env().unwrap();
    let boot = Dht::bootstrapper_sharded(SHARDED, Ipv4Addr::LOCALHOST, 2, io).unwrap();
    boot.ready().wait().unwrap();
    let boot_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, SHARDED);
    let driver = tern::node_driver(1, "filter-client").unwrap();
    let writer = client(&driver, boot_addr);
    writer.ready().wait().unwrap();
    let socks: Vec<UdpSocket> = (0..FLOWS)
        .map(|_| {
            let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
            s
        })
        .collect();
    let forwarded = || boot.forwarding_stats().unwrap().forwarded_requests;
    let key_pair = KeyPair::from_seed(&[0x43; 32]);
    let pk = *key_pair.public_key().as_bytes();
    let has_pk = |v: &Option<Vec<u8>>| v.as_ref().is_some_and(|v| v.windows(32).any(|w| w == pk));

    // Nothing stored: every shard answers a lookup of the topic itself.
    let topic = tern_crypto::hash32(b"tern shard filter test");
    let before = forwarded();
    for (i, s) in socks.iter().enumerate() {
        let v = raw_lookup(s, boot_addr, &topic, i as u16).expect("answered");
        assert!(v.is_none(), "flow {i}: no records yet");
    }
    assert_eq!(forwarded(), before, "reads of an unstored topic are answered locally");

    // Announced: looked up at once through every flow, every reply carries the record.
    assert!(writer.announce(topic, &key_pair, &[]).wait().unwrap() >= 1);
    let before = forwarded();
    for (i, s) in socks.iter().enumerate() {
        let v = raw_lookup(s, boot_addr, &topic, 100 + i as u16).expect("answered");
        assert!(has_pk(&v), "flow {i} found the record right after the announce");
    }
    assert!(forwarded() > before, "the non-owner shard forwarded the reads of a stored topic");

    // Unannounced: nothing found, and the non-owner answers by itself again.
    writer.unannounce(topic, &key_pair).wait().unwrap();
    let before = forwarded();
    for (i, s) in socks.iter().enumerate() {
        let v = raw_lookup(s, boot_addr, &topic, 200 + i as u16).expect("answered");
        assert!(!has_pk(&v), "flow {i}: the record is gone");
    }
    assert_eq!(forwarded(), before, "the filter forgot the topic with its last record");

    writer.destroy().unwrap();
    boot.destroy().unwrap();
}

/// A node at 127.0.0.1:`port` that knows its address (persistent from the start, id
/// `H32(addr)`), bootstrapping from `boot`.
fn persistent_config(port: u16, boot: Option<u16>) -> NodeConfig {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let rpc = RpcConfig {
        public_addr: Some(addr),
        bootstrap: boot.map(|b| SocketAddrV4::new(Ipv4Addr::LOCALHOST, b)).into_iter().collect(),
        ..RpcConfig::default()
    };
    NodeConfig { rpc, host: Ipv4Addr::LOCALHOST, port, ..NodeConfig::default() }
}

/// A bootstrapper on `boot` and `nodes` persistent nodes on the ports after it, all
/// bootstrapped.
fn testnet(driver: &tern::NodeDriver, boot: u16, nodes: u16) -> (Dht, Vec<Dht>) {
    let first = Dht::start_on(driver, persistent_config(boot, None)).unwrap();
    first.ready().wait().unwrap();
    let net: Vec<Dht> = (1..=nodes)
        .map(|i| Dht::start_on(driver, persistent_config(boot + i, Some(boot))).unwrap())
        .collect();
    for n in &net {
        n.ready().wait().unwrap();
    }
    (first, net)
}

/// Every shard's table, sorted.
fn shard_tables(dht: &Dht) -> Vec<Vec<SocketAddrV4>> {
    dht.shard_table_nodes(1000)
        .into_iter()
        .map(|p| {
            let mut t = p.wait().unwrap();
            t.sort();
            t
        })
        .collect()
}

#[test]
fn shards_replicate_their_routing_tables() {
    const BOOT: u16 = 29_400;
    const SHARDED: u16 = 29_410;
    const LATE: u16 = 29_420;
    let io = tern::io_mode_from_env().unwrap();
    let driver = tern::node_driver(1, "table-net").unwrap();
    let (boot, net) = testnet(&driver, BOOT, 6);

    let sharded = Dht::start_sharded(persistent_config(SHARDED, Some(BOOT)), 2, io).unwrap();
    sharded.ready().wait().unwrap();
    // Both shards end up with the same table: all seven testnet nodes.
    let mut tables = Vec::new();
    let converged = support_eventually(|| {
        tables = shard_tables(&sharded);
        tables.len() == 2 && tables[0] == tables[1] && tables[0].len() >= 7
    });
    assert!(converged, "shard tables converge: {tables:?}");

    // A late node that talks only to the sharded node, always from one port: the
    // kernel hands its whole flow to one shard, and only that shard hears from it.
    // The other shard learns it through the broadcast.
    let late_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, LATE);
    let late = Dht::start_on(&driver, persistent_config(LATE, Some(SHARDED))).unwrap();
    late.ready().wait().unwrap();
    let both = support_eventually(|| {
        tables = shard_tables(&sharded);
        tables.iter().all(|t| t.contains(&late_addr))
    });
    assert!(both, "the late node is in both shards' tables: {tables:?}");
    let stats = sharded.forwarding_stats().unwrap();
    assert!(stats.table_broadcast >= 1, "{stats:?}");
    assert!(stats.table_applied >= 1, "{stats:?}");
    assert_eq!(stats.table_dropped, 0, "{stats:?}");
    // Applied changes are not broadcast again: nothing echoes between the shards.
    assert!(stats.table_applied <= stats.table_broadcast, "{stats:?}");
    let per_shard: Vec<_> = sharded.shard_stats().into_iter().map(|p| p.wait().unwrap()).collect();
    assert_eq!(per_shard[0].table_len, per_shard[1].table_len, "{tables:?}");
    eprintln!("tables {:?}; {stats:?}", tables.iter().map(Vec::len).collect::<Vec<_>>());

    late.destroy().unwrap();
    sharded.destroy().unwrap();
    for n in net {
        n.destroy().unwrap();
    }
    boot.destroy().unwrap();
}

#[test]
fn the_first_shard_keeps_up_the_identity_and_the_others_follow() {
    const BOOT: u16 = 29_430;
    const SHARDED: u16 = 29_440;
    let io = tern::io_mode_from_env().unwrap();
    let driver = tern::node_driver(1, "leader-net").unwrap();
    let (boot, net) = testnet(&driver, BOOT, 3);

    // Not told its address: it learns it from its walk's replies (requests leave from
    // the shared server port) and turns persistent once it knows it.
    let rpc = RpcConfig {
        bootstrap: vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, BOOT)],
        firewalled: false,
        ephemeral: Some(false),
        ..RpcConfig::default()
    };
    let config = NodeConfig { rpc, host: Ipv4Addr::LOCALHOST, port: SHARDED, ..Default::default() };
    let sharded = Dht::start_sharded(config, 2, io).unwrap();
    sharded.ready().wait().unwrap();
    assert!(support_eventually(|| sharded.is_persistent()), "every shard turns persistent");
    let id = tern_crypto::node_id(SocketAddrV4::new(Ipv4Addr::LOCALHOST, SHARDED));
    assert_eq!(sharded.id().map(|i| i.0), Some(id));

    // Only the leader walked: the follower sent no request of its own, yet answers
    // with the shared id (a PING through every flow the kernel may pick).
    let per_shard: Vec<_> = sharded.shard_stats().into_iter().map(|p| p.wait().unwrap()).collect();
    assert!(per_shard[0].rpc.requests_sent > 0, "{:?}", per_shard[0].rpc);
    assert_eq!(per_shard[1].rpc.requests_sent, 0, "{:?}", per_shard[1].rpc);
    let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, SHARDED);
    let clients: Vec<Dht> = (0..CLIENTS).map(|_| client(&driver, target)).collect();
    for c in &clients {
        c.ready().wait().unwrap();
        assert!(c.ping(target).wait().unwrap(), "answered by either shard");
    }
    let per_shard: Vec<_> = sharded.shard_stats().into_iter().map(|p| p.wait().unwrap()).collect();
    let pings = |s: &tern::NodeStats| s.rpc.internal_requests.iter().sum::<u64>();
    assert!(pings(&per_shard[1]) > 0, "the follower served requests: {:?}", per_shard[1].rpc);
    // Each client's table holds the sharded node under H32(its address): every reply,
    // whichever shard sent it, carried the persistent id.
    for c in &clients {
        let nodes = c.table_nodes(100).wait().unwrap();
        assert!(nodes.contains(&target), "admitted with a verified id: {nodes:?}");
    }

    for c in clients {
        c.destroy().unwrap();
    }
    sharded.destroy().unwrap();
    for n in net {
        n.destroy().unwrap();
    }
    boot.destroy().unwrap();
}

/// Waits (≤ 20 s) until `f` holds.
fn support_eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    f()
}
