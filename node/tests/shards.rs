//! One identity sharded over two pinned threads (`Dht::bootstrapper_sharded`, the
//! `--cores` of the CLI): both shards serve the one SO_REUSEPORT port, a record
//! announced through one shard lives on the shard owning its topic, and lookups that
//! the kernel hands to either shard all find it. Runs on the backend `TERN_IO` picks.
//! Loopback only; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};

use tern::{Dht, KeyPair, NodeConfig, RpcConfig};

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
