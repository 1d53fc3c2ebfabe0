//! Known attacks on the JS reference, replayed against a tern node over real UDP
//! sockets on loopback (127.0.0.0/8: the node on 127.0.0.1, attacker and victim on
//! other addresses of the block). Each shows the node stays up (it answers a PING
//! afterwards) and bounded. The node runs with the operator defaults of the limits
//! under test (`max_reply_ratio` 20) and small store caps so that "bounded" is
//! observable through the protocol; the per-IP rate limit is off so the store limits,
//! not the rate limit, are what is shown.
//!
//! - reflection through PEER_HANDSHAKE / PEER_HOLEPUNCH routing (hyperdht issue 296):
//!   messages naming a victim as relay or peer address send it nothing;
//! - amplification: a tiny MUTABLE_GET for the largest value the node stores gets ≤ 20×
//!   its size without a token (the whole value with one);
//! - unbounded record values (297): values over the cap are refused by the store, those
//!   over the driver's 2 KiB receive slot never reach it; a flood of records is held to
//!   the cache bounds;
//! - repeated MUTABLE_PUT (63): thousands of puts on one key and across keys, stale and
//!   conflicting ones refused with the protocol's errors, counts bounded.
//!
//! Fixed server ports 29100–29120; every loop is bounded in count and every wait in time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use tern::{Dht, NodeConfig, RpcConfig};
use tern_crypto::{KeyPair, signable};
use tern_dht::StoreLimits;
use tern_dht::cache::CacheLimits;
use tern_wire::handshake::{Handshake, Holepunch, Mode};
use tern_wire::hyperdht::{Command, MutablePut, MutableRecord};
use tern_wire::rpc::{InternalCommand, Message, Request, error_code};
use tern_wire::{Decode, Encode};

use support::eventually;

/// Entries per cache generation in the attacked node (it holds at most twice this).
const CACHE_ENTRIES: usize = 64;
/// The attacked node's value cap: the 1 000 bytes of hyperswarm/dht's
/// `PUT_VALUE_MAX_SIZE`, so that refused values still fit the driver's 2 KiB receive
/// slot (longer datagrams never reach the node: the driver drops them as truncated).
const MAX_VALUE: usize = 1000;

/// A persistent tern node at 127.0.0.1:`port` with the limits described above.
fn target_node(driver: &tern::NodeDriver, port: u16) -> (Dht, SocketAddrV4) {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let cache = CacheLimits {
        max_entries: CACHE_ENTRIES,
        max_bytes: 4 << 20,
        max_age: Duration::from_secs(3600),
    };
    let config = NodeConfig {
        rpc: RpcConfig {
            public_addr: Some(addr),
            max_reply_ratio: tern_rpc::RECOMMENDED_MAX_REPLY_RATIO,
            ..RpcConfig::default()
        },
        store: StoreLimits {
            mutables: cache,
            immutables: cache,
            max_value_bytes: MAX_VALUE,
            ..StoreLimits::default()
        },
        host: Ipv4Addr::LOCALHOST,
        port,
        ..NodeConfig::default()
    };
    let dht = Dht::start_on(driver, config).unwrap();
    dht.ready().wait().unwrap();
    (dht, addr)
}

/// A raw dht-rpc peer on its own loopback address.
struct Peer {
    socket: UdpSocket,
    node: SocketAddrV4,
    tid: u16,
    token: Option<[u8; 32]>,
}

/// A reply as the test needs it.
/// How long a peer waits for a reply before taking silence for an answer.
const REPLY_WAIT: Duration = Duration::from_secs(2);

struct Reply {
    len: usize,
    error: u64,
    token: Option<[u8; 32]>,
    value: Option<Vec<u8>>,
}

impl Peer {
    fn new(ip: Ipv4Addr, node: SocketAddrV4) -> Self {
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        // Generous: CI runs these next to other test binaries on two cores, and a reply
        // that takes longer would read as silence. Only 8 asks here expect silence.
        socket.set_read_timeout(Some(REPLY_WAIT)).unwrap();
        Self { socket, node, tid: 0, token: None }
    }

    /// Sends one request; its reply (waits ≤ `REPLY_WAIT`: `None` means silence).
    fn ask(
        &mut self,
        command: u64,
        internal: bool,
        target: Option<&[u8; 32]>,
        value: Option<&[u8]>,
        token: bool,
    ) -> Option<Reply> {
        self.tid = self.tid.wrapping_add(1);
        let token = if token { self.token } else { None };
        let req = Request {
            tid: self.tid,
            to: self.node,
            id: None,
            token: token.as_ref(),
            internal,
            command,
            target,
            value,
        };
        self.socket.send_to(&req.to_vec(), self.node).unwrap();
        let mut buf = vec![0u8; 65_536];
        // Bounded: at most 8 stray datagrams skipped before giving up.
        for _ in 0..8 {
            let Ok(n) = self.socket.recv(&mut buf) else { return None };
            if let Ok(Message::Response(r)) = Message::decode(&buf[..n])
                && r.tid == self.tid
            {
                return Some(Reply {
                    len: n,
                    error: r.error,
                    token: r.token.copied(),
                    value: r.value.map(<[u8]>::to_vec),
                });
            }
        }
        None
    }

    /// Discards every datagram already received (bounded).
    fn drain(&mut self) {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65_536];
        for _ in 0..100_000 {
            if self.socket.recv(&mut buf).is_err() {
                break;
            }
        }
        self.socket.set_nonblocking(false).unwrap();
    }

    /// Fetches a fresh token for this address (tokens rotate every 7.5 s).
    fn refresh_token(&mut self) {
        let reply = self.ask(Command::ImmutableGet as u64, false, Some(&[0; 32]), None, false);
        self.token = reply.and_then(|r| r.token);
        assert!(self.token.is_some(), "a GENERIC reply carries a token");
    }

    fn alive(&mut self) -> bool {
        self.ask(InternalCommand::Ping as u64, true, None, None, false)
            .is_some_and(|r| r.error == 0)
    }

    fn mutable_put(&mut self, kp: &KeyPair, seq: u64, value: &[u8]) -> Option<Reply> {
        let pk = *kp.public_key().as_bytes();
        let signature = kp.sign(&signable::mutable_signable(seq, value)).0;
        let put = MutablePut { public_key: &pk, seq, value, signature: &signature }.to_vec();
        let target = tern_crypto::hash32(&pk);
        self.ask(Command::MutablePut as u64, false, Some(&target), Some(&put), true)
    }

    fn mutable_get(&mut self, kp: &KeyPair, token: bool) -> Option<Reply> {
        let target = tern_crypto::hash32(kp.public_key().as_bytes());
        self.ask(Command::MutableGet as u64, false, Some(&target), Some(&[0]), token)
    }
}

fn key(i: u32) -> KeyPair {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    KeyPair::from_seed(&seed)
}

#[test]
fn relay_and_reply_paths_do_not_reflect_at_a_victim() {
    let driver = tern::node_driver(1, "attack-296").unwrap();
    let (dht, node) = target_node(&driver, 29100);
    let mut attacker = Peer::new(Ipv4Addr::new(127, 0, 0, 2), node);
    let victim = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 3), 0)).unwrap();
    victim.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let victim_addr = match victim.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!(),
    };
    let noise = [7u8; 200];
    const ROUNDS: u32 = 250;
    for i in 0..ROUNDS {
        let target = tern_crypto::hash32(&i.to_le_bytes());
        let messages = [
            (
                Command::PeerHandshake,
                Handshake {
                    mode: Mode::FromClient,
                    noise: &noise,
                    peer_address: None,
                    relay_address: Some(victim_addr),
                }
                .to_vec(),
            ),
            (
                Command::PeerHandshake,
                Handshake {
                    mode: Mode::FromServer,
                    noise: &noise,
                    peer_address: Some(victim_addr),
                    relay_address: None,
                }
                .to_vec(),
            ),
            (
                Command::PeerHolepunch,
                Holepunch {
                    mode: Mode::FromClient,
                    id: 1,
                    payload: &noise,
                    peer_address: Some(victim_addr),
                }
                .to_vec(),
            ),
            (
                Command::PeerHolepunch,
                Holepunch {
                    mode: Mode::FromServer,
                    id: 1,
                    payload: &noise,
                    peer_address: Some(victim_addr),
                }
                .to_vec(),
            ),
        ];
        for (command, value) in &messages {
            let req = Request {
                tid: i as u16,
                to: node,
                id: None,
                token: None,
                internal: false,
                command: *command as u64,
                target: Some(&target),
                value: Some(value),
            };
            attacker.socket.send_to(&req.to_vec(), node).unwrap();
        }
    }
    // The node handles the burst in its own time (on a loaded machine it may still be
    // at it when the last one is sent): wait until it has seen every message, then give
    // whatever it would send the victim 500 ms to arrive.
    let aimed = 4 * u64::from(ROUNDS);
    let handled = || {
        let s = dht.stats().wait().unwrap().store;
        s.relay_refused + s.relayed >= aimed
    };
    assert!(eventually(Duration::from_secs(20), handled), "the node handled the burst");
    let mut buf = [0u8; 2048];
    assert!(victim.recv(&mut buf).is_err(), "the victim received nothing");
    let stats = dht.stats().wait().unwrap();
    assert_eq!(stats.store.relay_refused, aimed, "every aimed message refused");
    assert_eq!(stats.store.relayed, 0);

    // Amplification: the largest value the node takes behind a ~47-byte MUTABLE_GET.
    attacker.drain();
    attacker.refresh_token();
    let kp = key(1);
    let big = vec![0x61; MAX_VALUE];
    assert_eq!(attacker.mutable_put(&kp, 1, &big).map(|r| r.error), Some(0));
    let get_len = Request {
        tid: 0,
        to: node,
        id: None,
        token: None,
        internal: false,
        command: Command::MutableGet as u64,
        target: Some(&[0; 32]),
        value: Some(&[0]),
    }
    .encoded_len();
    let capped = attacker.mutable_get(&kp, false).expect("answered");
    assert!(capped.len <= 20 * get_len, "{} bytes for a {get_len}-byte request", capped.len);
    assert!(capped.value.is_none(), "the value is withheld without a token");
    let whole = attacker.mutable_get(&kp, true).expect("answered");
    let record = MutableRecord::decode(whole.value.as_deref().unwrap()).unwrap();
    assert_eq!(record.value.len(), big.len(), "with a token, the whole value");
    let stats = dht.stats().wait().unwrap();
    assert!(stats.rpc.values_withheld >= 1);
    assert!(attacker.alive());
    dht.destroy().unwrap();
}

#[test]
fn oversized_values_are_refused_and_record_counts_stay_bounded() {
    let driver = tern::node_driver(1, "attack-297").unwrap();
    let (dht, node) = target_node(&driver, 29110);
    let mut attacker = Peer::new(Ipv4Addr::new(127, 0, 0, 4), node);
    attacker.refresh_token();
    // Oversized: over max_value_bytes, and past the driver's receive slot up to the UDP
    // maximum. No reply (the reference's silent drop for a refused store), nothing stored.
    for size in [MAX_VALUE + 1, 1800, 4096, 60 * 1024] {
        let value = vec![0x5a; size];
        let hash = tern_crypto::hash32(&value);
        let put =
            attacker.ask(Command::ImmutablePut as u64, false, Some(&hash), Some(&value), true);
        assert!(put.is_none(), "an oversized immutable value ({size} B) is refused");
        let get = attacker.ask(Command::ImmutableGet as u64, false, Some(&hash), None, true);
        assert!(get.unwrap().value.is_none());
        assert!(attacker.mutable_put(&key(size as u32), 1, &value).is_none());
    }
    let stats = dht.stats().wait().unwrap();
    // The two sizes within the slot reached the store and were refused there; the
    // larger ones were dropped by the driver before any parsing.
    assert_eq!(stats.store.too_large, 4);
    assert_eq!(stats.rpc.app_requests, 1 + 4 + 4, "token fetch, gets, in-slot puts");

    // A flood of distinct 900-byte records: every put accepted, at most two generations
    // of the cache kept.
    const RECORDS: u32 = 600;
    let mut hashes = Vec::new();
    for i in 0..RECORDS {
        if i % 100 == 0 {
            attacker.refresh_token();
        }
        let mut value = vec![0u8; 900];
        value[..4].copy_from_slice(&i.to_le_bytes());
        let hash = tern_crypto::hash32(&value);
        let put =
            attacker.ask(Command::ImmutablePut as u64, false, Some(&hash), Some(&value), true);
        assert_eq!(put.map(|r| r.error), Some(0), "put {i}");
        hashes.push(hash);
    }
    attacker.refresh_token();
    let held = hashes
        .iter()
        .filter(|h| {
            let r = attacker.ask(Command::ImmutableGet as u64, false, Some(h), None, true);
            r.unwrap().value.is_some()
        })
        .count();
    assert!(held <= 2 * CACHE_ENTRIES, "{held} records held");
    assert!(held >= CACHE_ENTRIES / 2, "the newest are kept: {held}");
    assert!(attacker.alive());
    dht.destroy().unwrap();
}

#[test]
fn thousands_of_mutable_puts_keep_the_node_up_and_bounded() {
    let driver = tern::node_driver(1, "attack-63").unwrap();
    let (dht, node) = target_node(&driver, 29120);
    let mut attacker = Peer::new(Ipv4Addr::new(127, 0, 0, 5), node);
    // One key: 2 000 increasing puts, each followed by a stale and a conflicting one.
    let kp = key(7);
    const PUTS: u64 = 2_000;
    let mut refused = 0;
    for seq in 1..=PUTS {
        if seq % 200 == 1 {
            attacker.refresh_token();
        }
        let value = seq.to_le_bytes();
        assert_eq!(attacker.mutable_put(&kp, seq, &value).map(|r| r.error), Some(0), "seq {seq}");
        if seq % 10 == 0 {
            let stale = attacker.mutable_put(&kp, seq - 1, b"old").map(|r| r.error);
            let reused = attacker.mutable_put(&kp, seq, b"other").map(|r| r.error);
            assert_eq!(stale, Some(error_code::SEQ_TOO_LOW));
            assert_eq!(reused, Some(error_code::SEQ_REUSED));
            refused += 2;
        }
    }
    attacker.refresh_token();
    let latest = attacker.mutable_get(&kp, true).unwrap();
    let record = MutableRecord::decode(latest.value.as_deref().unwrap()).unwrap();
    assert_eq!((record.seq, record.value), (PUTS, &PUTS.to_le_bytes()[..]));
    assert_eq!(dht.stats().wait().unwrap().store.seq_refused, refused);

    // Across keys: 1 000 keys, each put once; at most two cache generations are kept.
    const KEYS: u32 = 1_000;
    for i in 0..KEYS {
        if i % 200 == 0 {
            attacker.refresh_token();
        }
        assert_eq!(attacker.mutable_put(&key(1000 + i), 1, b"v").map(|r| r.error), Some(0));
    }
    let held = (0..KEYS)
        .filter(|i| attacker.mutable_get(&key(1000 + i), false).unwrap().value.is_some())
        .count();
    assert!(held <= 2 * CACHE_ENTRIES, "{held} mutable records held");
    assert!(attacker.alive());
    dht.destroy().unwrap();
}
