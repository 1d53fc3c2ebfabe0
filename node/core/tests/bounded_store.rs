//! The topic store stays within its limits under an announce flood of random topics:
//! the record cap (two generations of `max_records`), the byte budget, and the heap the
//! process really uses (measured with a counting global allocator).
//!
//! * Through the full node path: signed ANNOUNCEs with valid tokens for random topics fed
//!   to one persistent `Node::handle_datagram`, ten times more than the node may hold,
//!   every one answered, caps checked as they arrive.
//! * At a million topics: the same `TopicStore::insert` the ANNOUNCE handler ends in,
//!   with hyperdht-sized caps (50 000 records per generation, so at most 100 000 held),
//!   timed GC running on virtual time, caps and heap sampled every 10 000 topics.
//!
//! The node-path count is bounded by Ed25519: every announce costs a signature and a
//! verification (~50-150 µs each even with the crypto crates optimised in the dev
//! profile), so a million would take minutes; the store-path run covers the million.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A global allocator is `unsafe impl` by definition; this one only counts and forwards.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{NodeId, Rng, SocketId, Timestamp, TxQueue};
use tern_core::{Node, NodeConfig};
use tern_crypto::{KeyPair, signable};
use tern_dht::topics::{InsertOutcome, TopicLimits};
use tern_dht::{Store, StoreLimits};
use tern_rpc::RpcConfig;
use tern_wire::hyperdht::{Announce, PeerRecord};
use tern_wire::rpc::{Request, Response};
use tern_wire::{AddrList, Decode, Encode};

/// Tracks the heap bytes live on the current thread (allocated minus freed).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

/// Heap bytes allocated and not yet freed by this thread.
fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 49737);
const MIB: isize = 1 << 20;

/// Resident set size of the process, from /proc (Linux), in bytes.
fn rss() -> Option<isize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: isize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A realistic encoded record: key + one relay address (39 bytes).
fn record(pk: &[u8; 32], relay: SocketAddrV4) -> Vec<u8> {
    PeerRecord { public_key: pk, relay_addresses: AddrList::Items(&[relay]) }.to_vec()
}

#[test]
fn a_node_flooded_with_announces_holds_its_caps() {
    /// Announces sent: ten times what the store may hold.
    const ANNOUNCES: usize = 20_000;
    const PER_GENERATION: usize = 1_000;
    const SAMPLE: usize = 500;
    let limits = StoreLimits {
        topics: TopicLimits { max_records: PER_GENERATION, ..TopicLimits::default() },
        ..StoreLimits::default()
    };
    let config = NodeConfig {
        rpc: RpcConfig { public_addr: Some(SERVER), ..RpcConfig::default() },
        store: limits,
        ..NodeConfig::default()
    };
    let mut node = Node::new(config, Timestamp::ZERO, 5, [5; 32]);
    node.set_server_port(SERVER.port());
    let own = node.rpc().persistent_id().unwrap().0;
    // Eight announcers on eight hosts, each with its own token.
    let announcers: Vec<(SocketAddrV4, KeyPair, [u8; 32])> = (0..8u8)
        .map(|i| {
            let from = SocketAddrV4::new(Ipv4Addr::new(10, 3, 0, i + 1), 6000);
            let token = node.rpc().tokens().token(*from.ip());
            (from, KeyPair::from_seed(&[i + 1; 32]), token)
        })
        .collect();
    let (mut rng, mut tx) = (Rng::from_seed(0xb0_0de5), TxQueue::new(64));
    let (heap_before, mut heap_peak) = (live_bytes(), 0);
    let mut first = None;
    for i in 0..ANNOUNCES {
        let (from, kp, token) = &announcers[i % announcers.len()];
        let topic = rng.bytes32();
        first.get_or_insert(topic);
        let pk = kp.public_key().0;
        let rec = record(&pk, *from);
        let sig = kp.sign(&signable::announce_signable(&topic, &own, token, &rec, None)).0;
        let peer = PeerRecord::decode(&rec).unwrap();
        let value = Announce { peer: Some(peer), refresh: None, signature: Some(&sig), bump: 0 };
        let value = value.to_vec();
        let req = Request {
            tid: i as u16,
            to: SERVER,
            id: None,
            token: Some(token),
            internal: false,
            command: 4,
            target: Some(&topic),
            value: Some(&value),
        };
        tx.clear();
        node.handle_datagram(Timestamp::ZERO, SocketId::SERVER, *from, &req.to_vec(), &mut tx);
        let (_, reply) = tx.iter().next().expect("every announce answered");
        assert_eq!(Response::decode(&reply).unwrap().error, 0);
        if i % SAMPLE == SAMPLE - 1 {
            let topics = &node.store().topics;
            assert!(topics.len() <= 2 * PER_GENERATION, "{} records", topics.len());
            assert!(topics.bytes() <= 2 * limits.topics.max_bytes);
            heap_peak = heap_peak.max(live_bytes() - heap_before);
        }
    }
    let (stats, topics) = (node.stats(), &node.store().topics);
    assert!(topics.len() > PER_GENERATION, "a full generation and more is held");
    assert!(topics.evicted as usize >= ANNOUNCES - 2 * PER_GENERATION);
    assert_eq!(
        (stats.store.topic_full, stats.store.too_large, stats.store.bad_signatures),
        (0, 0, 0)
    );
    assert_eq!(stats.rpc.app_requests, ANNOUNCES as u64);
    assert_eq!(topics.topic_len(&NodeId(first.unwrap())), 0, "the oldest topics aged out");
    assert!(heap_peak < 64 * MIB, "heap grew {} MiB", heap_peak / MIB);
    eprintln!(
        "{ANNOUNCES} announces: {} records held, {} B accounted, heap +{} KiB at peak",
        topics.len(),
        topics.bytes(),
        heap_peak / 1024
    );
}

#[test]
fn a_million_random_topics_stay_within_the_caps_and_memory() {
    const TOPICS: usize = 1_000_000;
    const SAMPLE: usize = 10_000;
    let limits = StoreLimits {
        topics: TopicLimits { max_records: 50_000, ..TopicLimits::default() },
        ..StoreLimits::default()
    };
    let budget = 2 * limits.topics.max_bytes;
    let mut store = Store::new(limits, Timestamp::ZERO, 1);
    let mut rng = Rng::from_seed(0x1d_ea11);
    let keys: Vec<[u8; 32]> = (0..64).map(|_| rng.bytes32()).collect();
    let relay = SocketAddrV4::new(Ipv4Addr::new(10, 4, 0, 1), 7000);
    let records: Vec<Vec<u8>> = keys.iter().map(|k| record(k, relay)).collect();
    let (heap_before, rss_before) = (live_bytes(), rss());
    let (mut heap_peak, mut held_peak, mut now) = (0, 0, Timestamp::ZERO);
    for i in 0..TOPICS {
        // One announce per millisecond: 1 000 s of virtual time, one timed GC on the way.
        now = now + Duration::from_millis(1);
        store.gc(now);
        let k = i % keys.len();
        let outcome = store.topics.insert(NodeId(rng.bytes32()), keys[k], &records[k]);
        assert_eq!(outcome, InsertOutcome::Added);
        if i % SAMPLE == SAMPLE - 1 {
            let t = &store.topics;
            assert!(t.len() <= 100_000, "{} records held after {} topics", t.len(), i + 1);
            assert!(t.topics() <= t.len());
            assert!(t.bytes() <= budget, "{} bytes", t.bytes());
            held_peak = held_peak.max(t.len());
            heap_peak = heap_peak.max(live_bytes() - heap_before);
            assert!(heap_peak < 200 * MIB, "heap grew {} MiB", heap_peak / MIB);
        }
    }
    let t = &store.topics;
    assert_eq!(held_peak, 100_000, "the cap is reached, and held");
    assert_eq!(t.evicted as usize + t.len(), TOPICS, "every topic is held or was evicted");
    let rss_growth = rss().zip(rss_before).map(|(a, b)| a - b);
    if let Some(growth) = rss_growth {
        assert!(growth < 200 * MIB, "RSS grew {} MiB", growth / MIB);
    }
    // What a held record really costs against what the byte budget counts for it.
    let per_record = heap_peak as usize / held_peak;
    let accounted = t.bytes() / t.len().max(1);
    eprintln!(
        "{TOPICS} topics: peak {held_peak} held, heap +{} MiB at peak ({per_record} B/record, \
         {accounted} B accounted), RSS +{:?} MiB",
        heap_peak / MIB,
        rss_growth.map(|g| g / MIB)
    );
    assert!(
        per_record <= 2 * accounted && accounted <= 2 * per_record,
        "the byte budget miscounts a record: {per_record} B real vs {accounted} B counted"
    );
}
