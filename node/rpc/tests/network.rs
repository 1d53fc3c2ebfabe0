//! Many dht-rpc nodes on an in-memory network with virtual time: they bootstrap from a
//! bootstrapper, turn persistent, fill their tables, and an iterative query finds the
//! exact k XOR-closest nodes. Every datagram crosses the full encode/decode path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{NodeId, SocketId, Timestamp, TxQueue};
use tern_rpc::{NoApplication, QuerySpec, Rpc, RpcConfig, RpcEvent};

struct Net {
    nodes: Vec<Rpc>,
    /// Local address -> (node index, socket).
    addrs: HashMap<SocketAddrV4, (usize, SocketId)>,
    now: Timestamp,
    events: Vec<Vec<RpcEvent>>,
    delivered: usize,
    /// Output of client calls, delivered on the next `run`.
    pending: Vec<(usize, TxQueue)>,
}

fn server_addr(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, i as u8 + 1), 30_000)
}

impl Net {
    fn new(n: usize) -> Self {
        let boot = server_addr(0);
        let mut net = Net {
            nodes: Vec::new(),
            addrs: HashMap::new(),
            now: Timestamp::ZERO,
            events: Vec::new(),
            delivered: 0,
            pending: Vec::new(),
        };
        for i in 0..n {
            let addr = server_addr(i);
            let config = if i == 0 {
                RpcConfig {
                    public_addr: Some(addr),
                    server_port: addr.port(),
                    ..RpcConfig::default()
                }
            } else {
                RpcConfig {
                    bootstrap: vec![boot],
                    ephemeral: Some(false),
                    firewalled: false,
                    server_port: addr.port(),
                    ..RpcConfig::default()
                }
            };
            net.nodes.push(Rpc::new(config, Timestamp::ZERO, i as u64 + 1, [i as u8; 32]));
            net.addrs.insert(addr, (i, SocketId::SERVER));
            net.addrs.insert(SocketAddrV4::new(*addr.ip(), addr.port() + 1), (i, SocketId::CLIENT));
            net.events.push(Vec::new());
        }
        net
    }

    fn local(&self, i: usize, socket: SocketId) -> SocketAddrV4 {
        let a = server_addr(i);
        SocketAddrV4::new(*a.ip(), a.port() + socket.0)
    }

    /// Delivers queued datagrams until quiet, then advances virtual time by `step`.
    fn run(&mut self, duration: Duration, step: Duration) {
        let end = self.now + duration;
        let mut pending: Vec<(usize, TxQueue)> = std::mem::take(&mut self.pending);
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
                    let from = self.local(src, meta.socket);
                    let Some(&(dst, socket)) = self.addrs.get(&meta.dest) else { continue };
                    let mut out = TxQueue::new(4096);
                    self.nodes[dst].handle_datagram(
                        self.now,
                        socket,
                        from,
                        &bytes,
                        &mut NoApplication,
                        &mut out,
                    );
                    self.delivered += 1;
                    pending.push((dst, out));
                }
            }
            for i in 0..self.nodes.len() {
                while let Some(e) = self.nodes[i].poll_event() {
                    self.events[i].push(e);
                }
            }
            self.now = self.now + step;
        }
    }
}

#[test]
fn nodes_bootstrap_turn_persistent_and_find_the_closest() {
    let n = 40;
    let mut net = Net::new(n);
    assert!(net.nodes[0].is_persistent(), "a bootstrapper is persistent from the start");
    for i in 1..n {
        let mut tx = TxQueue::new(64);
        net.nodes[i].bootstrap(Timestamp::ZERO, &mut tx);
        // Put the first datagrams in flight via a timeout pass of the loop.
        for (meta, bytes) in tx.iter() {
            let (dst, socket) = net.addrs[&meta.dest];
            let from = net.local(i, meta.socket);
            let mut out = TxQueue::new(64);
            net.nodes[dst].handle_datagram(
                Timestamp::ZERO,
                socket,
                from,
                &bytes,
                &mut NoApplication,
                &mut out,
            );
        }
    }
    net.run(Duration::from_secs(30), Duration::from_millis(50));
    for i in 1..n {
        assert!(net.events[i].contains(&RpcEvent::Bootstrapped), "node {i} bootstrapped");
        assert!(net.nodes[i].is_persistent(), "node {i} persistent");
        let id = net.nodes[i].persistent_id().unwrap();
        assert_eq!(id.0, tern_crypto::node_id(server_addr(i)), "id = H32(public addr)");
        assert!(net.nodes[i].table().len() >= 10, "node {i} table {}", net.nodes[i].table().len());
    }
    // Everyone talked to the bootstrapper; only full rows (k = 20) keep it from
    // holding all of them.
    let boot = net.nodes[0].table();
    let rows_full = (0..256).filter(|r| boot.row(*r).len() == tern_rpc::K).count();
    assert!(boot.len() == n - 1 || rows_full > 0, "bootstrapper table {}", boot.len());

    // A query from node 5 towards an arbitrary target finds the true 20 closest.
    let target = NodeId([0x5a; 32]);
    let mut tx = TxQueue::new(64);
    let q = net.nodes[5].query(net.now, QuerySpec::new(target, true, 2, None), &mut tx);
    net.pending.push((5, tx));
    net.run(Duration::from_secs(10), Duration::from_millis(50));
    let closest = net.events[5]
        .iter()
        .find_map(|e| match e {
            RpcEvent::QueryDone { query, closest, .. } if *query == q => Some(closest.clone()),
            _ => None,
        })
        .expect("query finished");
    let mut all: Vec<NodeId> =
        (0..n).filter(|i| *i != 5).map(|i| NodeId(tern_crypto::node_id(server_addr(i)))).collect();
    all.sort_by(|a, b| target.cmp_distance(a, b));
    let got: Vec<NodeId> = closest.iter().map(|r| r.from_id.unwrap()).collect();
    assert_eq!(got, all[..20].to_vec(), "exact k closest, nearest first");
    assert!(closest.iter().all(|r| r.token.is_none()), "FIND_NODE replies carry no token");
    assert!(net.delivered > 100);
}

#[test]
fn a_lone_bootstrapper_finishes_bootstrapping_at_once() {
    let addr = server_addr(0);
    let config =
        RpcConfig { public_addr: Some(addr), server_port: addr.port(), ..RpcConfig::default() };
    let mut rpc = Rpc::new(config, Timestamp::ZERO, 1, [0; 32]);
    let mut tx = TxQueue::new(16);
    rpc.bootstrap(Timestamp::ZERO, &mut tx);
    assert!(tx.is_empty(), "nobody to ask");
    let events: Vec<_> = std::iter::from_fn(|| rpc.poll_event()).collect();
    assert!(events.contains(&RpcEvent::Bootstrapped), "{events:?}");
    assert!(rpc.is_bootstrapped() && rpc.is_persistent());
}
