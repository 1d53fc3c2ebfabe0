//! hyperdht operations between tern nodes on an in-memory network with virtual time:
//! announce → lookup, unannounce, mutable put/get with seq rules, immutable put/get,
//! find_peer of a self-announced server, and the refusal of forged writes. Every
//! datagram goes through the full encode → decode → handler → reply path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{NodeId, SocketId, Timestamp, TxQueue};
use tern_core::{Node, NodeCommand, NodeConfig, NodeEvent};
use tern_crypto::KeyPair;
use tern_dht::{DhtEvent, OpError, OpId, OpOutput};
use tern_rpc::RpcConfig;

struct Net {
    nodes: Vec<Node>,
    addrs: HashMap<SocketAddrV4, (usize, SocketId)>,
    now: Timestamp,
    events: Vec<Vec<NodeEvent>>,
    pending: Vec<(usize, TxQueue)>,
}

fn server_addr(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 2, i as u8 + 1), 40_000)
}

impl Net {
    fn new(n: usize) -> Self {
        let mut net = Net {
            nodes: Vec::new(),
            addrs: HashMap::new(),
            now: Timestamp::ZERO,
            events: Vec::new(),
            pending: Vec::new(),
        };
        for i in 0..n {
            let addr = server_addr(i);
            let rpc = if i == 0 {
                RpcConfig { public_addr: Some(addr), ..RpcConfig::default() }
            } else {
                RpcConfig {
                    bootstrap: vec![server_addr(0)],
                    ephemeral: Some(false),
                    firewalled: false,
                    ..RpcConfig::default()
                }
            };
            let config = NodeConfig { rpc, ..NodeConfig::default() };
            let mut node = Node::new(config, Timestamp::ZERO, i as u64 + 100, [i as u8; 32]);
            node.set_server_port(addr.port());
            net.nodes.push(node);
            net.addrs.insert(addr, (i, SocketId::SERVER));
            net.addrs.insert(SocketAddrV4::new(*addr.ip(), addr.port() + 1), (i, SocketId::CLIENT));
            net.events.push(Vec::new());
        }
        for i in 1..n {
            net.command(i, NodeCommand::Bootstrap);
        }
        net.run(Duration::from_secs(20));
        for i in 1..n {
            assert!(net.nodes[i].rpc().is_persistent(), "node {i} persistent");
        }
        net
    }

    fn command(&mut self, i: usize, c: NodeCommand) -> Option<OpId> {
        let mut tx = TxQueue::new(4096);
        let op = self.nodes[i].handle_command(self.now, c, &mut tx);
        self.pending.push((i, tx));
        op
    }

    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        let mut pending = std::mem::take(&mut self.pending);
        while self.now < end {
            for i in 0..self.nodes.len() {
                let mut tx = TxQueue::new(4096);
                if self.nodes[i].poll_timeout() <= self.now {
                    self.nodes[i].handle_timeout(self.now, &mut tx);
                }
                pending.push((i, tx));
            }
            while let Some((src, tx)) = pending.pop() {
                for (meta, bytes) in tx.iter() {
                    let a = server_addr(src);
                    let from = SocketAddrV4::new(*a.ip(), a.port() + meta.socket.0);
                    let Some(&(dst, socket)) = self.addrs.get(&meta.dest) else { continue };
                    let mut out = TxQueue::new(4096);
                    self.nodes[dst].handle_datagram(self.now, socket, from, &bytes, &mut out);
                    pending.push((dst, out));
                }
            }
            for i in 0..self.nodes.len() {
                while let Some(e) = self.nodes[i].poll_event() {
                    self.events[i].push(e);
                }
            }
            self.now = self.now + Duration::from_millis(20);
        }
    }

    /// Runs until op `op` on node `i` is done; returns its result.
    fn result(&mut self, i: usize, op: OpId) -> Result<OpOutput, OpError> {
        for _ in 0..200 {
            if let Some(r) = self.events[i].iter().find_map(|e| match e {
                NodeEvent::Dht(DhtEvent::Done { op: o, result }) if *o == op => {
                    Some(result.clone())
                }
                _ => None,
            }) {
                return r;
            }
            self.run(Duration::from_millis(100));
        }
        panic!("op {op:?} on node {i} never finished");
    }

    fn lookup_keys(&mut self, i: usize, topic: NodeId) -> Vec<[u8; 32]> {
        let op = self.command(i, NodeCommand::Lookup(topic)).unwrap();
        self.result(i, op).unwrap();
        let mut keys: Vec<[u8; 32]> = self.events[i]
            .iter()
            .filter_map(|e| match e {
                NodeEvent::Dht(DhtEvent::LookupReply { op: o, peers, .. }) if *o == op => {
                    Some(peers)
                }
                _ => None,
            })
            .flatten()
            .map(|p| p.public_key)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

#[test]
fn announce_lookup_unannounce() {
    let mut net = Net::new(25);
    let topic = NodeId([0x42; 32]);
    let kp = KeyPair::from_seed(&[7; 32]);
    let relay = SocketAddrV4::new(Ipv4Addr::new(10, 1, 1, 1), 5);
    let op = net
        .command(
            3,
            NodeCommand::Announce { topic, key_pair: kp.clone(), relay_addresses: vec![relay] },
        )
        .unwrap();
    match net.result(3, op) {
        Ok(OpOutput::Stored { stored }) => assert!(stored >= 10, "stored on {stored} nodes"),
        other => panic!("announce: {other:?}"),
    }
    assert_eq!(net.lookup_keys(17, topic), [*kp.public_key().as_bytes()]);
    let peers: Vec<_> = net.events[17]
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Dht(DhtEvent::LookupReply { peers, .. }) => Some(peers.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(peers.iter().all(|p| p.relay_addresses == [relay]));

    let op = net.command(3, NodeCommand::Unannounce { topic, key_pair: kp }).unwrap();
    assert!(matches!(net.result(3, op), Ok(OpOutput::Stored { stored }) if stored > 0));
    assert!(net.lookup_keys(9, topic).is_empty(), "unannounce removed the record");
}

#[test]
fn mutable_put_get_with_seq_rules() {
    let mut net = Net::new(20);
    let kp = KeyPair::from_seed(&[9; 32]);
    let pk = *kp.public_key().as_bytes();
    let put = |net: &mut Net, value: &[u8], seq| {
        let op = net
            .command(
                2,
                NodeCommand::MutablePut { key_pair: kp.clone(), value: value.to_vec(), seq },
            )
            .unwrap();
        net.result(2, op)
    };
    assert!(matches!(put(&mut net, b"v1", 1), Ok(OpOutput::Stored { .. })));
    assert!(matches!(put(&mut net, b"v2", 2), Ok(OpOutput::Stored { .. })));
    assert_eq!(put(&mut net, b"other", 2), Err(OpError::SeqReused));
    assert_eq!(put(&mut net, b"old", 1), Err(OpError::SeqTooLow));
    let op =
        net.command(11, NodeCommand::MutableGet { public_key: pk, seq: 0, latest: true }).unwrap();
    match net.result(11, op) {
        Ok(OpOutput::Mutable(Some(v))) => assert_eq!((v.seq, v.value.as_slice()), (2, &b"v2"[..])),
        other => panic!("mutable_get: {other:?}"),
    }
    let op =
        net.command(11, NodeCommand::MutableGet { public_key: pk, seq: 3, latest: false }).unwrap();
    assert_eq!(net.result(11, op), Ok(OpOutput::Mutable(None)), "nothing at seq >= 3");
}

#[test]
fn immutable_put_get_and_find_peer() {
    let mut net = Net::new(20);
    let value = b"immutable value".to_vec();
    let hash = tern_crypto::hash32(&value);
    let op = net.command(4, NodeCommand::ImmutablePut(value.clone())).unwrap();
    assert!(matches!(net.result(4, op), Ok(OpOutput::Stored { .. })));
    let op = net.command(15, NodeCommand::ImmutableGet(hash)).unwrap();
    assert_eq!(net.result(15, op), Ok(OpOutput::Immutable(Some(value))));
    let op = net.command(15, NodeCommand::ImmutableGet([1; 32])).unwrap();
    assert_eq!(net.result(15, op), Ok(OpOutput::Immutable(None)));

    // A server self-announces (topic = H32(pk)); find_peer then finds its record.
    let kp = KeyPair::from_seed(&[5; 32]);
    let pk = *kp.public_key().as_bytes();
    let topic = NodeId(tern_crypto::hash32(&pk));
    let op = net
        .command(6, NodeCommand::Announce { topic, key_pair: kp, relay_addresses: vec![] })
        .unwrap();
    assert!(matches!(net.result(6, op), Ok(OpOutput::Stored { .. })));
    let op = net.command(12, NodeCommand::FindPeer(pk)).unwrap();
    match net.result(12, op) {
        Ok(OpOutput::Peer(Some(p))) => assert_eq!(p.public_key, pk),
        other => panic!("find_peer: {other:?}"),
    }
    let total_router: usize = net.nodes.iter().map(|n| n.store().router.len()).sum();
    assert!(total_router > 0, "stored as router entries");
    let total_topics: usize = net.nodes.iter().map(|n| n.store().topics.len()).sum();
    assert_eq!(total_topics, 0, "a self-announce is not a topic record");
}
