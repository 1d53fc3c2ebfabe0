//! Bad input at one tern node, fed datagram by datagram into `Node::handle_datagram` with
//! virtual time: truncated, oversize, random, wrong-type, port-0 and replayed datagrams
//! never panic; each is answered or dropped exactly as the JS reference does (its vectors
//! in `testdata/vectors/dht` are the ground truth for reply layouts), and every drop moves
//! the counter of its reason. Covers every dht-rpc internal command and every hyperdht
//! command, on a persistent and an ephemeral node, and the storage rules: missing and
//! invalid tokens, bad signatures, seq rules, hash checks, refresh and bump handling.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};

use tern_base::{NodeId, Rng, SocketId, Timestamp, TxQueue};
use tern_core::{Node, NodeConfig};
use tern_crypto::{KeyPair, hash32, node_id, signable};
use tern_dht::StoreStats;
use tern_rpc::{RpcConfig, RpcStats};
use tern_vectors::{Value, VectorFile, arr32, unhex};
use tern_wire::hyperdht::{Announce, LookupReply, MutablePut, PeerRecord};
use tern_wire::rpc::{Request, Response, error_code};
use tern_wire::{AddrList, Decode, Encode};

/// The responder of the JS vectors.
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 49737);
/// The requester of the JS vectors.
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000);
/// Storage commands (hyperdht 2..=10): persistent nodes only.
const STORAGE: [u64; 9] = [2, 3, 4, 5, 6, 7, 8, 9, 10];
const ANNOUNCE: u64 = 4;
const UNANNOUNCE: u64 = 5;
const MUTABLE_PUT: u64 = 6;
const MUTABLE_GET: u64 = 7;
const IMMUTABLE_PUT: u64 = 8;

/// The 30 table nodes of the vectors: 10.1.0.i:40000+i.
fn table_node(i: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, i), 40_000 + u16::from(i))
}

/// A request to [`SERVER`] without id.
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

/// An ANNOUNCE (or UNANNOUNCE) value signed for `node` and `token`.
#[allow(clippy::too_many_arguments)]
fn announce_value(
    kp: &KeyPair,
    target: &[u8; 32],
    node: &[u8; 32],
    token: &[u8; 32],
    unannounce: bool,
    refresh: Option<&[u8; 32]>,
    bump: u64,
) -> Vec<u8> {
    let pk = kp.public_key().0;
    let relays = [SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 1), 7000)];
    let peer = PeerRecord { public_key: &pk, relay_addresses: AddrList::Items(&relays) };
    let record = peer.to_vec();
    let s = if unannounce {
        signable::unannounce_signable(target, node, token, &record, refresh)
    } else {
        signable::announce_signable(target, node, token, &record, refresh)
    };
    let sig = kp.sign(&s).0;
    Announce { peer: Some(peer), refresh, signature: Some(&sig), bump }.to_vec()
}

/// A MUTABLE_PUT value signed by `kp`.
fn mutable_value(kp: &KeyPair, seq: u64, value: &[u8]) -> Vec<u8> {
    let pk = kp.public_key().0;
    let sig = kp.sign(&signable::mutable_signable(seq, value)).0;
    MutablePut { public_key: &pk, seq, value, signature: &sig }.to_vec()
}

/// Every datagram the node was handed must land in exactly one of these counters.
fn accounted(s: &RpcStats) -> u64 {
    s.too_short
        + s.port_zero
        + s.decode_errors
        + s.internal_requests.iter().sum::<u64>()
        + s.app_requests
        + s.invalid_tokens
        + s.unmatched_responses
        + s.responses
}

/// One node and its clock.
struct Harness {
    node: Node,
    now: Timestamp,
    tx: TxQueue,
    fed: u64,
}

impl Harness {
    /// A persistent node at [`SERVER`] (as in the vectors) or an ephemeral one, with the
    /// vectors' 30-node table admitted through pings carrying valid ids.
    fn new(persistent: bool) -> Self {
        let rpc = if persistent {
            RpcConfig { public_addr: Some(SERVER), ..RpcConfig::default() }
        } else {
            RpcConfig { ephemeral: Some(true), firewalled: false, ..RpcConfig::default() }
        };
        let config = NodeConfig { rpc, ..NodeConfig::default() };
        let mut node = Node::new(config, Timestamp::ZERO, 1, [7; 32]);
        node.set_server_port(SERVER.port());
        let mut h = Self { node, now: Timestamp::ZERO, tx: TxQueue::new(4096), fed: 0 };
        for i in 1..=30 {
            let from = table_node(i);
            let id = node_id(from);
            let ping =
                Request { id: Some(&id), ..request(u16::from(i), true, 0, None, None, None) };
            assert_eq!(h.send(from, &ping.to_vec()).len(), 1, "ping answered");
        }
        assert_eq!(h.node.rpc().table().len(), 30);
        assert_eq!(h.node.rpc().is_persistent(), persistent);
        h
    }

    /// Feeds one datagram; returns everything the node sent in response.
    fn send(&mut self, from: SocketAddrV4, data: &[u8]) -> Vec<(SocketAddrV4, Vec<u8>)> {
        self.tx.clear();
        self.fed += 1;
        self.node.handle_datagram(self.now, SocketId::SERVER, from, data, &mut self.tx);
        self.tx.iter().map(|(m, b)| (m.dest, b.to_vec())).collect()
    }

    /// The node's single answer to `from`, if any.
    fn ask(&mut self, from: SocketAddrV4, data: &[u8]) -> Option<Vec<u8>> {
        let out = self.send(from, data);
        assert!(out.len() <= 1, "one datagram at most, got {}", out.len());
        out.into_iter().next().map(|(to, b)| {
            assert_eq!(to, from, "answers go to the requester");
            b
        })
    }

    /// Like [`Harness::ask`] for an encoded request, from [`CLIENT`].
    fn ask_req(&mut self, req: &Request<'_>) -> Option<Vec<u8>> {
        self.ask(CLIENT, &req.to_vec())
    }

    /// Runs timers up to `at`; returns what was sent to `to`.
    fn advance(&mut self, at: Timestamp, to: SocketAddrV4) -> Vec<Vec<u8>> {
        self.now = at;
        self.tx.clear();
        self.node.handle_timeout(self.now, &mut self.tx);
        self.tx.iter().filter(|(m, _)| m.dest == to).map(|(_, b)| b.to_vec()).collect()
    }

    fn token(&self, host: SocketAddrV4) -> [u8; 32] {
        self.node.rpc().tokens().token(*host.ip())
    }

    fn id(&self) -> [u8; 32] {
        self.node.rpc().persistent_id().unwrap().0
    }

    fn rpc(&self) -> RpcStats {
        self.node.stats().rpc
    }

    fn store(&self) -> StoreStats {
        self.node.stats().store
    }

    /// Asserts that every datagram fed so far is in exactly one counter.
    fn assert_accounted(&self) {
        assert_eq!(accounted(&self.rpc()), self.fed, "every datagram counted once");
    }
}

fn res(bytes: &[u8]) -> Response<'_> {
    Response::decode(bytes).expect("a response")
}

/// Response flags: id 1, token 2, closer nodes 4, error 8, value 16.
fn flags(bytes: &[u8]) -> u8 {
    assert_eq!(bytes[0], 0x13, "a response");
    bytes[1]
}

fn vector(f: &VectorFile, name: &str) -> Value {
    f.vectors().into_iter().find(|v| v["name"] == name).expect(name)
}

/// The bytes of a `hyperdht-messages.json` vector.
fn hyperdht_hex(name: &str) -> Vec<u8> {
    unhex(&vector(&VectorFile::load("dht/hyperdht-messages.json"), name)["hex"])
}

#[test]
fn replies_are_byte_exact_with_the_js_vectors() {
    let rpc = VectorFile::load("dht/dht-rpc-messages.json");
    let hex = |name: &str| unhex(&vector(&rpc, name)["hex"]);
    let mut h = Harness::new(true);
    assert_eq!(h.id(), arr32(&vector(&rpc, "ping-response-persistent")["inputs"]["id"]));
    let target = arr32(&vector(&rpc, "find-node-request")["inputs"]["target"]);

    assert_eq!(h.ask(CLIENT, &hex("find-node-request")), Some(hex("find-node-response")));
    // Command 99 with the vectors' target: UNKNOWN_COMMAND with closer nodes, no token.
    let q = request(28672, false, 99, Some(&target), None, None);
    assert_eq!(h.ask_req(&q), Some(hex("error-unknown-command")));
    // A bad token: INVALID_TOKEN with a fresh token (ours, not the vector's secret's).
    let bogus = [0xee; 32];
    let mut expected = hex("error-invalid-token");
    expected[42..74].copy_from_slice(&h.token(CLIENT));
    let q = request(28672, false, 3, Some(&target), Some(&bogus), None);
    assert_eq!(h.ask_req(&q), Some(expected));
    // LOOKUP of an empty topic: the generic reply's layout (id, token, closer) sans value.
    let generic = hex("generic-reply-with-token-closer-value");
    let token = h.token(CLIENT);
    let expected = Response { token: Some(&token), value: None, ..res(&generic) }.to_vec();
    assert_eq!(h.ask(CLIENT, &hex("lookup-request")), Some(expected));
    // PING_NAT: answered at the requester's host but at the port in the value.
    let out = h.send(CLIENT, &hex("ping-nat-request"));
    assert_eq!(out, [(SocketAddrV4::new(*CLIENT.ip(), 49737), hex("ping-nat-response"))]);
    // DELAYED_PING 1500 ms: nothing before, the persistent ping reply layout at 1500 ms.
    assert!(h.send(CLIENT, &hex("delayed-ping-request")).is_empty());
    assert!(h.advance(Timestamp::from_millis(1499), CLIENT).is_empty());
    let pong = hex("ping-response-persistent");
    let expected = Response { tid: 16385, ..res(&pong) }.to_vec();
    assert_eq!(h.advance(Timestamp::from_millis(1500), CLIENT), [expected]);
    // DOWN_HINT about a table node: empty reply, and that node gets a liveness ping.
    let out = h.send(CLIENT, &hex("down-hint-request"));
    let expected = Response { tid: 16384, ..res(&pong) }.to_vec();
    assert!(out.contains(&(CLIENT, expected)), "empty reply");
    assert!(out.iter().any(|(to, b)| *to == table_node(7) && b[0] == 0x03), "check ping");
    // An accepted ANNOUNCE: id only (hyperdht-messages announce-accepted-reply).
    let kp = KeyPair::from_seed(&[1; 32]);
    let topic = [0x42; 32];
    let value = announce_value(&kp, &topic, &h.id(), &token, false, None, 0);
    let q = request(0x0a0b, false, ANNOUNCE, Some(&topic), Some(&token), Some(&value));
    assert_eq!(h.ask_req(&q), Some(hyperdht_hex("announce-accepted-reply")));
    // Its LOOKUP value: count || record || bump 0 (lookup-reply-value-bump0 layout).
    let reply = h.ask_req(&request(1, false, 3, Some(&topic), None, None)).unwrap();
    let value = res(&reply).value.unwrap().to_vec();
    let record = PeerRecord::decode(&value[1..]).unwrap().to_vec();
    assert_eq!(value, [&[1u8][..], &record, &[0]].concat());
    let lookup = LookupReply::decode(&value).unwrap();
    assert_eq!(lookup.peers.iter().next().unwrap().public_key, kp.public_key().as_bytes());
    // A PING from a persistent peer: last, since its valid id puts it in our table.
    assert_eq!(h.ask(CLIENT, &hex("ping-request-persistent")), Some(pong));
    assert_eq!(h.node.rpc().table().len(), 31);
    h.assert_accounted();
}

/// One well-formed request per command with every optional field set.
fn full_requests(h: &Harness) -> Vec<Vec<u8>> {
    let (id, token, target) = (node_id(CLIENT), h.token(CLIENT), [9u8; 32]);
    let value = [0x10u8, 0x27, 0, 0, 0, 0, 0, 0, 0];
    let mut out = Vec::new();
    for (internal, commands) in
        [(true, &[0u64, 1, 2, 3, 4, 99][..]), (false, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 99, 300])]
    {
        for &command in commands {
            let q = Request {
                id: Some(&id),
                ..request(7, internal, command, Some(&target), Some(&token), Some(&value))
            };
            out.push(q.to_vec());
        }
    }
    out
}

#[test]
fn truncated_datagrams_and_values_are_dropped_by_reason() {
    for persistent in [true, false] {
        let mut h = Harness::new(persistent);
        let before = h.rpc();
        let (mut short, mut undecodable) = (0, 0);
        for full in full_requests(&h) {
            for len in 0..full.len() {
                assert!(h.send(CLIENT, &full[..len]).is_empty(), "prefix {len} of {full:02x?}");
                if len < 2 { short += 1 } else { undecodable += 1 }
            }
        }
        let after = h.rpc();
        assert_eq!(after.too_short - before.too_short, short);
        assert_eq!(after.decode_errors - before.decode_errors, undecodable);
        h.assert_accounted();
    }
    // Truncated values inside well-formed frames: every storage and routing handler
    // drops them silently and counts them as malformed.
    let mut h = Harness::new(true);
    let (token, kp) = (h.token(CLIENT), KeyPair::from_seed(&[2; 32]));
    let pk_target = hash32(kp.public_key().as_bytes());
    let topic = [0x33; 32];
    let immutable = b"an immutable value".to_vec();
    let handshake = hyperdht_hex("handshake-from-client");
    let holepunch = hyperdht_hex("holepunch-from-client");
    let cases: Vec<(u64, [u8; 32], Vec<u8>)> = vec![
        (ANNOUNCE, topic, announce_value(&kp, &topic, &h.id(), &token, false, None, 0)),
        (UNANNOUNCE, topic, announce_value(&kp, &topic, &h.id(), &token, true, None, 0)),
        (MUTABLE_PUT, pk_target, mutable_value(&kp, 1, b"value")),
        (MUTABLE_GET, pk_target, vec![0x05]),
        (IMMUTABLE_PUT, hash32(&immutable), immutable.clone()),
        (0, pk_target, handshake),
        (1, pk_target, holepunch),
    ];
    for (command, target, value) in &cases {
        let before = h.store().malformed;
        for len in 0..value.len() {
            let q = request(8, false, *command, Some(target), Some(&token), Some(&value[..len]));
            assert_eq!(h.ask_req(&q), None, "command {command}, value prefix {len}");
        }
        assert_eq!(h.store().malformed - before, value.len() as u64, "command {command}");
    }
    let store = h.node.store();
    assert!(store.topics.is_empty() && store.mutables.is_empty() && store.immutables.is_empty());
    assert_eq!(h.store().bad_signatures, 0, "no prefix ever reached a signature check");
    h.assert_accounted();
}

#[test]
fn oversize_values_are_answered_small_or_refused_and_never_stored_whole() {
    let mut h = Harness::new(true);
    let (token, kp) = (h.token(CLIENT), KeyPair::from_seed(&[3; 32]));
    let big = vec![0xab; 65_000];
    let target = [5u8; 32];
    // Commands that ignore the value answer normally, with a small reply.
    for (internal, command, want) in
        [(true, 0, 0x01), (true, 2, 0x05), (false, 3, 0x07), (false, 99, 0x0d)]
    {
        let q = request(9, internal, command, Some(&target), None, Some(&big));
        let reply = h.ask_req(&q).expect("answered");
        assert!(reply.len() < 200 && flags(&reply) == want, "command {command}");
    }
    // Stores refuse values over max_value_bytes (16 KiB): no reply, counted too_large.
    let big_target = hash32(&big);
    let q = request(9, false, IMMUTABLE_PUT, Some(&big_target), Some(&token), Some(&big));
    assert_eq!(h.ask_req(&q), None);
    let put = mutable_value(&kp, 1, &big);
    let pk_target = hash32(kp.public_key().as_bytes());
    assert_eq!(
        h.ask_req(&request(9, false, MUTABLE_PUT, Some(&pk_target), Some(&token), Some(&put))),
        None
    );
    assert_eq!(h.store().too_large, 2);
    let limit = h.node.store().limits.max_value_bytes;
    let edge = vec![1u8; limit];
    let edge_target = hash32(&edge);
    let q = request(9, false, IMMUTABLE_PUT, Some(&edge_target), Some(&token), Some(&edge));
    assert_eq!(flags(&h.ask_req(&q).unwrap()), 0x07, "exactly the limit is stored");
    // A valid announce padded to 65 000 bytes (trailing bytes are ignored, as in JS):
    // stored, but only the re-encoded record is kept.
    let topic = [6u8; 32];
    let mut value = announce_value(&kp, &topic, &h.id(), &token, false, None, 0);
    value.resize(65_000, 0xcd);
    let q = request(9, false, ANNOUNCE, Some(&topic), Some(&token), Some(&value));
    assert_eq!(flags(&h.ask_req(&q).unwrap()), 0x01);
    let store = h.node.store();
    assert_eq!((store.topics.len(), store.immutables.len(), store.mutables.len()), (1, 1, 0));
    assert!(
        store.topics.bytes() < 1_000,
        "one small record, not 65 000 bytes: {}",
        store.topics.bytes()
    );
    h.assert_accounted();
}

#[test]
fn random_garbage_never_panics_and_is_always_accounted() {
    for persistent in [true, false] {
        let mut h = Harness::new(persistent);
        let mut rng = Rng::from_seed(0x6a7b_0001);
        let mut buf = vec![0u8; 2048];
        for i in 0..20_000u32 {
            let len = match i % 4 {
                0 => rng.below(16) as usize,
                1 | 2 => rng.below(160) as usize,
                _ => rng.below(2048) as usize,
            };
            rng.fill(&mut buf[..len]);
            // Half start like dht-rpc so the decoder gets past the type byte.
            if len > 0 && i % 2 == 0 {
                buf[0] = if i % 4 == 0 { 0x03 } else { 0x13 };
            }
            let ip = Ipv4Addr::from(rng.next_u64() as u32);
            let port = if i % 50 == 0 { 0 } else { rng.below(65_536) as u16 };
            h.send(SocketAddrV4::new(ip, port), &buf[..len]);
        }
        h.assert_accounted();
        let (s, store) = (h.rpc(), h.node.store());
        assert!(
            s.too_short > 0 && s.port_zero > 0 && s.decode_errors > 0 && s.unmatched_responses > 0
        );
        assert_eq!(h.node.rpc().table().len(), 30, "random ids never join the table");
        assert!(
            store.topics.is_empty() && store.mutables.is_empty() && store.immutables.is_empty()
        );
        assert!(store.router.is_empty() && store.refreshes.is_empty());
    }
}

#[test]
fn wrong_type_byte_and_port_zero_are_dropped_by_reason() {
    let mut h = Harness::new(true);
    let ping = request(11, true, 0, None, None, None).to_vec();
    for b in 0..=255u8 {
        let mut d = ping.clone();
        d[0] = b;
        let out = h.send(CLIENT, &d);
        assert_eq!(out.is_empty(), b != 0x03, "type byte {b:#04x}");
    }
    let s = h.rpc();
    // 0x13 decodes as a response nobody asked for; the other 254 values do not decode.
    assert_eq!((s.decode_errors, s.unmatched_responses), (254, 1));
    assert_eq!(s.unknown_type, 254);
    // UDX (0xff 0x01 ...) and 1-byte holepunch probes are not dht-rpc.
    assert!(
        h.send(CLIENT, &[0xff, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .is_empty()
    );
    assert!(h.send(CLIENT, &[0x00]).is_empty());
    assert_eq!((h.rpc().unknown_type, h.rpc().too_short), (255, 1));
    // Source port 0: dropped before decoding, even with a valid id for that address.
    let zero = SocketAddrV4::new(*CLIENT.ip(), 0);
    let id = node_id(zero);
    let q = Request { id: Some(&id), ..request(12, true, 0, None, None, None) };
    assert!(h.send(zero, &q.to_vec()).is_empty());
    assert_eq!(h.rpc().port_zero, 1);
    assert_eq!(h.node.rpc().table().len(), 30);
    h.assert_accounted();
}

#[test]
fn replayed_requests_are_answered_every_time_and_change_nothing() {
    let mut h = Harness::new(true);
    let (token, kp) = (h.token(CLIENT), KeyPair::from_seed(&[4; 32]));
    let topic = [0x44; 32];
    let pk_target = hash32(kp.public_key().as_bytes());
    let immutable = b"replayed".to_vec();
    let ann = announce_value(&kp, &topic, &h.id(), &token, false, None, 0);
    let put = mutable_value(&kp, 3, b"mutable");
    let requests = [
        request(20, false, ANNOUNCE, Some(&topic), Some(&token), Some(&ann)).to_vec(),
        request(21, false, MUTABLE_PUT, Some(&pk_target), Some(&token), Some(&put)).to_vec(),
        request(
            22,
            false,
            IMMUTABLE_PUT,
            Some(&hash32(&immutable)),
            Some(&token),
            Some(&immutable),
        )
        .to_vec(),
        request(23, true, 2, Some(&topic), None, None).to_vec(),
        request(24, true, 0, None, None, None).to_vec(),
        request(25, false, 3, Some(&topic), None, None).to_vec(),
    ];
    for q in &requests {
        let first = h.ask(CLIENT, q).expect("answered");
        let state = (
            h.node.store().topics.len(),
            h.node.store().topics.bytes(),
            h.node.rpc().table().len(),
        );
        for _ in 0..1000 {
            assert_eq!(h.ask(CLIENT, q).as_ref(), Some(&first), "same answer every time");
        }
        let after = (
            h.node.store().topics.len(),
            h.node.store().topics.bytes(),
            h.node.rpc().table().len(),
        );
        assert_eq!(after, state);
    }
    let store = h.node.store();
    assert_eq!((store.topics.len(), store.mutables.len(), store.immutables.len()), (1, 1, 1));
    assert_eq!(store.topics.topic_len(&NodeId(topic)), 1, "one record, not 1001");
    // An UNANNOUNCE replayed: answered each time, the record stays gone.
    let unann = announce_value(&kp, &topic, &h.id(), &token, true, None, 0);
    let q = request(26, false, UNANNOUNCE, Some(&topic), Some(&token), Some(&unann)).to_vec();
    for _ in 0..100 {
        assert_eq!(flags(&h.ask(CLIENT, &q).unwrap()), 0x01);
    }
    assert!(h.node.store().topics.is_empty());
    assert_eq!((h.store().malformed, h.store().bad_signatures, h.store().seq_refused), (0, 0, 0));
    h.assert_accounted();
}

#[test]
fn ephemeral_nodes_answer_storage_commands_with_unknown_command() {
    let mut h = Harness::new(false);
    let token = h.token(CLIENT);
    let target = [0x55; 32];
    for command in STORAGE.into_iter().chain([99]) {
        let q = request(30, false, command, Some(&target), Some(&token), Some(b"v"));
        let reply = h.ask_req(&q).expect("answered");
        let r = res(&reply);
        // No id (ephemeral), no token, closer nodes, error 1 (error-unknown-command sans id).
        assert_eq!(
            (flags(&reply), r.error, r.closer_nodes.len()),
            (0x0c, error_code::UNKNOWN_COMMAND, 20)
        );
        let q = request(31, false, command, None, None, None);
        assert_eq!(flags(&h.ask_req(&q).unwrap()), 0x08, "no target: no closer nodes");
    }
    // Routing commands are served by any node: an unroutable handshake gets an empty reply.
    let hs = hyperdht_hex("handshake-from-client");
    let reply = h.ask_req(&request(32, false, 0, Some(&target), None, Some(&hs))).unwrap();
    assert_eq!((flags(&reply), res(&reply).error), (0x04, 0));
    assert_eq!(h.store().malformed, 0);
    assert!(h.node.store().topics.is_empty());
    h.assert_accounted();
}

#[test]
fn tokens_missing_are_silent_and_invalid_ones_are_replaced() {
    let mut h = Harness::new(true);
    let (good, kp) = (h.token(CLIENT), KeyPair::from_seed(&[5; 32]));
    let topic = [0x66; 32];
    let pk_target = hash32(kp.public_key().as_bytes());
    let immutable = b"tokens".to_vec();
    let (imm_target, node) = (hash32(&immutable), h.id());
    let value = |command: u64, token: &[u8; 32]| match command {
        ANNOUNCE => announce_value(&kp, &topic, &node, token, false, None, 0),
        UNANNOUNCE => announce_value(&kp, &topic, &node, token, true, None, 0),
        MUTABLE_PUT => mutable_value(&kp, 1, b"m"),
        _ => immutable.clone(),
    };
    let target = |command: u64| match command {
        ANNOUNCE | UNANNOUNCE => topic,
        MUTABLE_PUT => pk_target,
        _ => imm_target,
    };
    let other_host = h.token(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000));
    for command in [ANNOUNCE, UNANNOUNCE, MUTABLE_PUT, IMMUTABLE_PUT] {
        let t = target(command);
        // Missing token: no reply at all, counted malformed.
        let v = value(command, &good);
        let before = h.store().malformed;
        assert_eq!(h.ask_req(&request(40, false, command, Some(&t), None, Some(&v))), None);
        assert_eq!(h.store().malformed, before + 1);
        // A token not issued to this host: INVALID_TOKEN with a fresh one and closer nodes.
        for bad in [[0u8; 32], other_host] {
            let v = value(command, &bad);
            let reply =
                h.ask_req(&request(41, false, command, Some(&t), Some(&bad), Some(&v))).unwrap();
            let r = res(&reply);
            assert_eq!(
                (flags(&reply), r.error, r.closer_nodes.len()),
                (0x0f, error_code::INVALID_TOKEN, 20)
            );
            let fresh = *r.token.unwrap();
            assert!(h.node.rpc().tokens().check(*CLIENT.ip(), &fresh));
            // Re-sent with the fresh token (re-signed where the token is signed): accepted.
            let v = value(command, &fresh);
            let reply =
                h.ask_req(&request(42, false, command, Some(&t), Some(&fresh), Some(&v))).unwrap();
            assert_eq!(res(&reply).error, 0, "command {command} accepted with the fresh token");
        }
    }
    assert_eq!(h.rpc().invalid_tokens, 8);
    assert!(h.node.store().topics.is_empty(), "announced, then unannounced");
    assert_eq!((h.node.store().mutables.len(), h.node.store().immutables.len()), (1, 1));
    // Tokens live 7.5-15 s: valid after one rotation, refused after two.
    let ann = |h: &Harness, tok: &[u8; 32]| {
        let v = announce_value(&kp, &topic, &h.id(), tok, false, None, 0);
        request(43, false, ANNOUNCE, Some(&topic), Some(tok), Some(&v)).to_vec()
    };
    let q = ann(&h, &good);
    h.advance(Timestamp::from_millis(8_000), CLIENT);
    assert_eq!(res(&h.ask(CLIENT, &q).unwrap()).error, 0);
    h.advance(Timestamp::from_millis(16_000), CLIENT);
    assert_eq!(res(&h.ask(CLIENT, &q).unwrap()).error, error_code::INVALID_TOKEN);
    h.assert_accounted();
}

#[test]
fn bad_signatures_are_silent_and_store_nothing() {
    let mut h = Harness::new(true);
    let (token, kp, other) =
        (h.token(CLIENT), KeyPair::from_seed(&[6; 32]), KeyPair::from_seed(&[7; 32]));
    let (topic, node) = ([0x77; 32], h.id());
    let good = announce_value(&kp, &topic, &node, &token, false, None, 0);
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    // Signed by `other` but carrying kp's key: splice kp's key into other's value.
    let mut forged = announce_value(&other, &topic, &node, &token, false, None, 0);
    forged[1..33].copy_from_slice(kp.public_key().as_bytes());
    let bad_announces = [
        flipped,
        forged,
        announce_value(&kp, &topic, &[0; 32], &token, false, None, 0), // another node's id
        announce_value(&kp, &[0x78; 32], &node, &token, false, None, 0), // another target
        announce_value(&kp, &topic, &node, &token, true, None, 0),     // UNANNOUNCE namespace
    ];
    for v in &bad_announces {
        assert_eq!(
            h.ask_req(&request(50, false, ANNOUNCE, Some(&topic), Some(&token), Some(v))),
            None
        );
    }
    assert_eq!(h.store().bad_signatures, 5);
    assert!(h.node.store().topics.is_empty());
    // Unsigned (flags = peer only): malformed, not a signature failure.
    let mut unsigned = good[..good.len() - 64].to_vec();
    unsigned[0] = 0x01;
    assert_eq!(
        h.ask_req(&request(51, false, ANNOUNCE, Some(&topic), Some(&token), Some(&unsigned))),
        None
    );
    assert_eq!((h.store().malformed, h.store().bad_signatures), (1, 5));
    // A stored record survives a forged UNANNOUNCE.
    assert!(
        h.ask_req(&request(52, false, ANNOUNCE, Some(&topic), Some(&token), Some(&good))).is_some()
    );
    let mut unann = announce_value(&kp, &topic, &node, &token, true, None, 0);
    *unann.last_mut().unwrap() ^= 1;
    assert_eq!(
        h.ask_req(&request(53, false, UNANNOUNCE, Some(&topic), Some(&token), Some(&unann))),
        None
    );
    assert_eq!(h.node.store().topics.len(), 1);
    // MUTABLE_PUT: a bit-flipped signature, and a value signed for another seq.
    let pk_target = hash32(kp.public_key().as_bytes());
    let mut put = mutable_value(&kp, 1, b"m");
    *put.last_mut().unwrap() ^= 1;
    let mut reseq = mutable_value(&kp, 2, b"m");
    reseq[32] = 1;
    for v in [put, reseq] {
        assert_eq!(
            h.ask_req(&request(54, false, MUTABLE_PUT, Some(&pk_target), Some(&token), Some(&v))),
            None
        );
    }
    assert_eq!(h.store().bad_signatures, 8);
    assert!(h.node.store().mutables.is_empty());
    h.assert_accounted();
}

#[test]
fn mutable_seq_rules_and_hash_checks() {
    let mut h = Harness::new(true);
    let (token, kp) = (h.token(CLIENT), KeyPair::from_seed(&[8; 32]));
    let target = hash32(kp.public_key().as_bytes());
    let put = |h: &mut Harness, seq: u64, value: &[u8]| {
        let v = mutable_value(&kp, seq, value);
        h.ask_req(&request(60, false, MUTABLE_PUT, Some(&target), Some(&token), Some(&v)))
    };
    assert_eq!(flags(&put(&mut h, 5, b"a").unwrap()), 0x07, "generic reply");
    assert_eq!(flags(&put(&mut h, 5, b"a").unwrap()), 0x07, "same seq, same value: fine");
    for (seq, value, code) in
        [(5, &b"b"[..], error_code::SEQ_REUSED), (4, b"a", error_code::SEQ_TOO_LOW)]
    {
        let reply = put(&mut h, seq, value).unwrap();
        let r = res(&reply);
        // Errors carry closer nodes but no token.
        assert_eq!((flags(&reply), r.error, r.closer_nodes.len()), (0x0d, code, 20));
    }
    assert_eq!(h.store().seq_refused, 2);
    assert_eq!(flags(&put(&mut h, 6, b"c").unwrap()), 0x07);
    let get = |h: &mut Harness, seq: u8| {
        let reply =
            h.ask_req(&request(61, false, MUTABLE_GET, Some(&target), None, Some(&[seq]))).unwrap();
        res(&reply).value.map(<[u8]>::to_vec)
    };
    assert_eq!(get(&mut h, 7), None);
    assert_eq!(get(&mut h, 6).unwrap()[..3], [6, 1, b'c']);
    // MUTABLE_PUT under a target that is not H32(pk): dropped as malformed.
    let v = mutable_value(&kp, 9, b"x");
    assert_eq!(
        h.ask_req(&request(62, false, MUTABLE_PUT, Some(&[1; 32]), Some(&token), Some(&v))),
        None
    );
    // IMMUTABLE_PUT whose hash is not the target: dropped as malformed.
    let q = request(63, false, IMMUTABLE_PUT, Some(&[2; 32]), Some(&token), Some(b"not it"));
    assert_eq!(h.ask_req(&q), None);
    assert_eq!(h.store().malformed, 2);
    assert!(h.node.store().immutables.is_empty());
    h.assert_accounted();
}

#[test]
fn internal_commands_follow_dht_rpc() {
    let mut h = Harness::new(true);
    let ping_nat = |port: &[u8]| request(70, true, 1, None, None, Some(port)).to_vec();
    // PING_NAT: port 0 and a 1-byte value are dropped; a port gets the reply there.
    assert!(h.send(CLIENT, &ping_nat(&[0, 0])).is_empty());
    assert!(h.send(CLIENT, &ping_nat(&[7])).is_empty());
    assert_eq!(h.rpc().malformed_internal, 2);
    let out = h.send(CLIENT, &ping_nat(&6000u16.to_le_bytes()));
    let at = SocketAddrV4::new(*CLIENT.ip(), 6000);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, res(&out[0].1).to, flags(&out[0].1)), (at, at, 0x01));
    // DOWN_HINT about an unknown node: an empty reply, nobody pinged; short value dropped.
    let unknown = [10, 9, 9, 9, 0x10, 0x27];
    let out = h.send(CLIENT, &request(74, true, 3, None, None, Some(&unknown)).to_vec());
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, flags(&out[0].1)), (CLIENT, 0x01));
    let short = request(75, true, 3, None, None, Some(&unknown[..5])).to_vec();
    assert!(h.send(CLIENT, &short).is_empty());
    // FIND_NODE without target: dropped. Unknown internal commands: UNKNOWN_COMMAND.
    assert!(h.send(CLIENT, &request(76, true, 2, None, None, None).to_vec()).is_empty());
    assert_eq!(h.rpc().malformed_internal, 4);
    for (command, target, want) in [(5, None, 0x09), (99, Some(&[1u8; 32]), 0x0d)] {
        let reply = h.ask_req(&request(77, true, command, target, None, None)).unwrap();
        assert_eq!((flags(&reply), res(&reply).error), (want, error_code::UNKNOWN_COMMAND));
    }
    assert_eq!(h.rpc().internal_requests[5], 2);
    // A response whose tid matches nothing we sent (0x13, flags 0, tid, to).
    let stray = [0x13, 0, 0xef, 0xbe, 127, 0, 0, 1, 0x49, 0xc2];
    assert_eq!(res(&stray).tid, 0xbeef);
    assert!(h.send(CLIENT, &stray).is_empty());
    assert_eq!(h.rpc().unmatched_responses, 1);
    // An id that is not H32(source): discarded (counted), the request still answered.
    let wrong = node_id(table_node(1));
    let q = Request { id: Some(&wrong), ..request(78, true, 0, None, None, None) };
    assert!(h.ask(CLIENT, &q.to_vec()).is_some());
    assert_eq!(h.rpc().invalid_ids, 1);
    assert_eq!(h.node.rpc().table().len(), 30);
    // DELAYED_PING: over 10 s never answered; 10 s answered at 10 s and not before.
    let delayed =
        |tid: u16, ms: u32| request(tid, true, 4, None, None, Some(&ms.to_le_bytes()[..])).to_vec();
    assert!(h.send(CLIENT, &delayed(71, 10_001)).is_empty());
    assert!(h.send(CLIENT, &delayed(72, 10_000)).is_empty());
    assert!(
        h.send(CLIENT, &request(73, true, 4, None, None, Some(&[1, 2, 3])).to_vec()).is_empty()
    );
    assert_eq!((h.rpc().delayed_ping_refused, h.rpc().malformed_internal), (1, 5));
    assert!(h.advance(Timestamp::from_millis(9_999), CLIENT).is_empty());
    let due = h.advance(Timestamp::from_millis(10_000), CLIENT);
    assert_eq!(due.iter().map(|b| res(b).tid).collect::<Vec<_>>(), [72]);
    for ms in [12_000, 20_000, 60_000] {
        assert!(h.advance(Timestamp::from_millis(ms), CLIENT).is_empty(), "71 never");
    }
    // At most 1024 waiting: the next is refused.
    for i in 0..1025u16 {
        h.send(CLIENT, &delayed(i, 5_000));
    }
    assert_eq!(h.rpc().delayed_ping_refused, 2);
    assert_eq!(h.advance(Timestamp::from_millis(65_000), CLIENT).len(), 1024);
    h.assert_accounted();
}

#[test]
fn refresh_and_bump_follow_hyperdht() {
    let mut h = Harness::new(true);
    let (token, kp) = (h.token(CLIENT), KeyPair::from_seed(&[9; 32]));
    let (topic, node) = ([0x88; 32], h.id());
    // An announce with refresh secret r1 = H32(r2); a refresh-only announce with r2
    // re-stores the record (hyperdht _onrefresh uses the stored target, not the request's).
    let r2 = [0x22; 32];
    let r1 = hash32(&r2);
    let v = announce_value(&kp, &topic, &node, &token, false, Some(&r1), 0);
    assert!(
        h.ask_req(&request(80, false, ANNOUNCE, Some(&topic), Some(&token), Some(&v))).is_some()
    );
    let unann = announce_value(&kp, &topic, &node, &token, true, None, 0);
    assert!(
        h.ask_req(&request(81, false, UNANNOUNCE, Some(&topic), Some(&token), Some(&unann)))
            .is_some()
    );
    assert!(h.node.store().topics.is_empty());
    let refresh_only = Announce { refresh: Some(&r2), ..Announce::default() }.to_vec();
    let q = request(82, false, ANNOUNCE, Some(&[0x99; 32]), Some(&token), Some(&refresh_only));
    assert_eq!(flags(&h.ask_req(&q).unwrap()), 0x01, "refreshed");
    assert_eq!(h.node.store().topics.topic_len(&NodeId(topic)), 1, "under the stored target");
    assert!(h.node.store().refreshes.peek(&r2).is_some(), "re-keyed for the next link");
    // An unknown refresh secret: no reply.
    let unknown = Announce { refresh: Some(&[0x23; 32]), ..Announce::default() }.to_vec();
    assert_eq!(
        h.ask_req(&request(83, false, ANNOUNCE, Some(&topic), Some(&token), Some(&unknown))),
        None
    );
    // Bumps: kept for topic announces, ignored for self-announces (router entries).
    let self_target = hash32(kp.public_key().as_bytes());
    let lookup_bump = |h: &mut Harness, t: &[u8; 32]| {
        let reply = h.ask_req(&request(84, false, 3, Some(t), None, None)).unwrap();
        LookupReply::decode(res(&reply).value.unwrap()).unwrap().bump
    };
    for t in [topic, self_target] {
        let v = announce_value(&kp, &t, &node, &token, false, None, 1_000);
        assert!(
            h.ask_req(&request(85, false, ANNOUNCE, Some(&t), Some(&token), Some(&v))).is_some()
        );
    }
    assert_eq!(lookup_bump(&mut h, &topic), 1_000);
    assert_eq!(lookup_bump(&mut h, &self_target), 0, "self-announce bumps nothing");
    assert_eq!(h.node.store().router.len(), 1);
    // A bump more than 60 s ahead of the wall clock is ignored.
    let far = h.now.as_millis() + 61_000 + 1;
    let v = announce_value(&kp, &topic, &node, &token, false, None, far);
    h.ask_req(&request(86, false, ANNOUNCE, Some(&topic), Some(&token), Some(&v)));
    assert_eq!(lookup_bump(&mut h, &topic), 1_000);
    h.assert_accounted();
}
