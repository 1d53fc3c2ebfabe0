//! The request path of a warm persistent node allocates nothing: with a counting global
//! allocator, 10 000 FIND_NODE, PING and LOOKUP requests (fresh tids, sources already in
//! a full-ish routing table, LOOKUPs of a topic holding records) fed to
//! `Node::handle_datagram` with a reused `TxQueue` cause zero heap allocations, and so do
//! the other read commands (FIND_PEER, MUTABLE_GET, IMMUTABLE_GET), re-announces of a
//! fresh record, relayed PEER_HANDSHAKEs and undecodable datagrams. Decoding borrows the
//! datagram, replies are encoded straight into the queue's arena, closer nodes and LOOKUP
//! records come from stack arrays.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A global allocator is `unsafe impl` by definition; this one only counts and forwards.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};

use tern_base::{SocketId, Timestamp, TxQueue};
use tern_core::{Node, NodeConfig};
use tern_crypto::{KeyPair, hash32, node_id, signable};
use tern_rpc::RpcConfig;
use tern_wire::handshake::{Handshake, Mode};
use tern_wire::hyperdht::{Announce, MutablePut, PeerRecord};
use tern_wire::rpc::Request;
use tern_wire::{AddrList, Encode};

/// Counts allocations (alloc, alloc_zeroed, realloc) made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 49737);
/// Requests per batch; the queue is cleared between batches, as a driver does.
const BATCH: usize = 100;

struct Warm {
    node: Node,
    tx: TxQueue,
    /// Addresses of table nodes (with valid ids) to send from.
    sources: Vec<SocketAddrV4>,
    topic: [u8; 32],
    server_pk: [u8; 32],
    mutable_target: [u8; 32],
    immutable_target: [u8; 32],
    announce: Vec<u8>,
}

fn request<'a>(
    tid: u16,
    internal: bool,
    command: u64,
    target: Option<&'a [u8; 32]>,
    token: Option<&'a [u8; 32]>,
    value: Option<&'a [u8]>,
) -> Request<'a> {
    Request { tid, to: SERVER, id: None, token, internal, command, target, value }
}

impl Warm {
    fn feed(&mut self, from: SocketAddrV4, data: &[u8]) {
        self.node.handle_datagram(Timestamp::ZERO, SocketId::SERVER, from, data, &mut self.tx);
    }

    fn token(&self, from: SocketAddrV4) -> [u8; 32] {
        self.node.rpc().tokens().token(*from.ip())
    }

    /// A persistent node with a full-ish table, a topic with 30 records, a self-announced
    /// server, a mutable and an immutable record.
    fn new() -> Self {
        let config = NodeConfig {
            rpc: RpcConfig { public_addr: Some(SERVER), ..RpcConfig::default() },
            ..NodeConfig::default()
        };
        let mut node = Node::new(config, Timestamp::ZERO, 3, [3; 32]);
        node.set_server_port(SERVER.port());
        let mut w = Self {
            node,
            tx: TxQueue::new(4096),
            sources: Vec::new(),
            topic: [0x42; 32],
            server_pk: [0; 32],
            mutable_target: [0; 32],
            immutable_target: [0; 32],
            announce: Vec::new(),
        };
        // Pings with valid ids from 2 000 addresses fill the rows the table keeps.
        for i in 0..2000u32 {
            let from = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i * 7919), 40_000);
            let id = node_id(from);
            let ping = Request { id: Some(&id), ..request(i as u16, true, 0, None, None, None) };
            w.feed(from, &ping.to_vec());
        }
        w.sources = w.node.rpc().table().iter().map(|n| n.addr).collect();
        assert!(w.sources.len() >= 150, "table holds {}", w.sources.len());
        let client = w.sources[0];
        let (token, own) = (w.token(client), w.node.rpc().persistent_id().unwrap().0);
        let announce = |kp: &KeyPair, target: &[u8; 32]| {
            let pk = kp.public_key().0;
            let relays = [client];
            let peer = PeerRecord { public_key: &pk, relay_addresses: AddrList::Items(&relays) };
            let s = signable::announce_signable(target, &own, &token, &peer.to_vec(), None);
            let sig = kp.sign(&s).0;
            Announce { peer: Some(peer), refresh: None, signature: Some(&sig), bump: 7 }.to_vec()
        };
        for i in 0..30u8 {
            let v = announce(&KeyPair::from_seed(&[i; 32]), &w.topic);
            let topic = w.topic;
            w.feed(client, &request(1, false, 4, Some(&topic), Some(&token), Some(&v)).to_vec());
        }
        w.announce = announce(&KeyPair::from_seed(&[0; 32]), &w.topic);
        let server = KeyPair::from_seed(&[0xee; 32]);
        w.server_pk = server.public_key().0;
        let target = hash32(&w.server_pk);
        let v = announce(&server, &target);
        w.feed(client, &request(2, false, 4, Some(&target), Some(&token), Some(&v)).to_vec());
        let kp = KeyPair::from_seed(&[0xdd; 32]);
        let (pk, value) = (kp.public_key().0, b"mutable value");
        let sig = kp.sign(&signable::mutable_signable(1, value)).0;
        let put = MutablePut { public_key: &pk, seq: 1, value, signature: &sig }.to_vec();
        w.mutable_target = hash32(&pk);
        let t = w.mutable_target;
        w.feed(client, &request(3, false, 6, Some(&t), Some(&token), Some(&put)).to_vec());
        let immutable = b"immutable value";
        w.immutable_target = hash32(immutable);
        let t = w.immutable_target;
        w.feed(client, &request(4, false, 8, Some(&t), Some(&token), Some(immutable)).to_vec());
        let store = w.node.store();
        assert_eq!(store.topics.topic_len(&tern_base::NodeId(w.topic)), 30);
        assert_eq!((store.router.len(), store.mutables.len(), store.immutables.len()), (1, 1, 1));
        w.tx.clear();
        w
    }

    /// Runs `batches × BATCH` requests made by `make(i, from, token, buf)` (which encodes
    /// one into `buf` and returns its length, without allocating), and returns the number
    /// of allocations during the run and the datagrams sent.
    fn run(
        &mut self,
        batches: usize,
        mut make: impl FnMut(&Self, usize, SocketAddrV4, &mut [u8]) -> usize,
    ) -> (u64, usize) {
        let mut buf = [0u8; 2048];
        let (mut sent, start) = (0, allocations());
        for b in 0..batches {
            self.tx.clear();
            for j in 0..BATCH {
                let i = b * BATCH + j;
                let from = self.sources[i % self.sources.len()];
                let len = make(self, i, from, &mut buf);
                self.feed(from, &buf[..len]);
            }
            sent += self.tx.len();
        }
        (allocations() - start, sent)
    }
}

fn encode(req: &Request<'_>, buf: &mut [u8]) -> usize {
    req.encode(buf).unwrap()
}

/// FIND_NODE, PING and LOOKUP in turn, half of them carrying the sender's id.
fn mixed(w: &Warm, i: usize, from: SocketAddrV4, buf: &mut [u8]) -> usize {
    let tid = i as u16;
    let id = node_id(from);
    let mut target = [0u8; 32];
    target[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let req = match i % 3 {
        0 => request(tid, true, 2, Some(&target), None, None),
        1 => request(tid, true, 0, None, None, None),
        _ => request(tid, false, 3, Some(&w.topic), None, None),
    };
    let req = if i.is_multiple_of(2) { Request { id: Some(&id), ..req } } else { req };
    encode(&req, buf)
}

#[test]
fn find_node_ping_and_lookup_allocate_nothing() {
    let before = allocations();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(8)));
    assert_eq!(allocations() - before, 1, "the counter sees this thread's allocations");
    let mut w = Warm::new();
    // Warm-up: the queue's arena and metas reach their working size.
    let (_, sent) = w.run(2, mixed);
    assert_eq!(sent, 2 * BATCH);
    let table = w.node.rpc().table().len();
    let (allocs, sent) = w.run(100, mixed);
    assert_eq!(sent, 10_000, "every request answered");
    assert_eq!(allocs, 0, "allocations in 10 000 FIND_NODE/PING/LOOKUP requests");
    assert_eq!(w.node.rpc().table().len(), table);
    let s = w.node.stats().rpc;
    assert_eq!((s.invalid_ids, s.decode_errors, s.tx_queue_full), (0, 0, 0));
}

#[test]
fn other_reads_relays_and_reannounces_allocate_nothing() {
    let mut w = Warm::new();
    let server_target = hash32(&w.server_pk);
    let reads = |w: &Warm, i: usize, from: SocketAddrV4, buf: &mut [u8]| -> usize {
        let tid = i as u16;
        let token = w.token(from);
        match i % 5 {
            0 => encode(&request(tid, false, 2, Some(&server_target), None, None), buf),
            1 => encode(&request(tid, false, 7, Some(&w.mutable_target), None, Some(&[0])), buf),
            2 => encode(&request(tid, false, 9, Some(&w.immutable_target), None, None), buf),
            // A LOOKUP carrying a (valid) token.
            3 => encode(&request(tid, false, 3, Some(&w.topic), Some(&token), None), buf),
            // A handshake for the announced server: relayed to it.
            _ => {
                let hs = Handshake {
                    mode: Mode::FromClient,
                    noise: &[0xd0; 48],
                    peer_address: None,
                    relay_address: None,
                };
                let mut value = [0u8; 64];
                let n = hs.encode(&mut value).unwrap();
                encode(&request(tid, false, 0, Some(&server_target), None, Some(&value[..n])), buf)
            }
        }
    };
    w.run(2, reads);
    let (allocs, sent) = w.run(100, reads);
    assert_eq!(sent, 10_000);
    assert_eq!(allocs, 0, "allocations in 10 000 FIND_PEER/MUTABLE_GET/IMMUTABLE_GET/relays");
    assert_eq!(w.node.stats().store.relayed, 2_040);

    // Re-announces of a fresh record (signature checked, record kept as is) and
    // undecodable datagrams: nothing allocated either.
    let client = w.sources[0];
    let reannounce = |w: &Warm, i: usize, _: SocketAddrV4, buf: &mut [u8]| -> usize {
        let token = w.token(client);
        let req = request(i as u16, false, 4, Some(&w.topic), Some(&token), Some(&w.announce));
        encode(&req, buf)
    };
    let announce_from_client = |w: &mut Warm, batches| {
        let saved = std::mem::replace(&mut w.sources, vec![client]);
        let r = w.run(batches, reannounce);
        w.sources = saved;
        r
    };
    announce_from_client(&mut w, 1);
    let (allocs, sent) = announce_from_client(&mut w, 5);
    assert_eq!((allocs, sent), (0, 500));
    let garbage = |_: &Warm, i: usize, _: SocketAddrV4, buf: &mut [u8]| -> usize {
        // A request whose flags promise an id the 16 bytes cannot hold.
        buf[..16].fill(i as u8);
        buf[..2].copy_from_slice(&[0x03, 0x1f]);
        16
    };
    let (allocs, sent) = w.run(10, garbage);
    assert_eq!((allocs, sent), (0, 0));
    assert_eq!(w.node.stats().rpc.decode_errors, 1000);
}
