//! The hyperdht server's side of two abuse limits, through a real `Rpc` + `DhtServer`
//! on virtual time:
//!
//! - **relay guard** (hyperdht issue 296): PEER_HANDSHAKE / PEER_HOLEPUNCH routing only
//!   sends to the server registered for the target, and answers a FROM_SERVER only at a
//!   client that asked through us, once — never at an address a message merely names;
//! - **reply budget**: a LOOKUP without a token gets fewer peers rather than a reply
//!   larger than `max_reply_ratio ×` its request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};

use tern_base::{NodeId, SocketId, Timestamp, TxQueue};
use tern_dht::store::RouterEntry;
use tern_dht::{DhtServer, Store, StoreLimits};
use tern_rpc::{RECOMMENDED_MAX_REPLY_RATIO, Rpc, RpcConfig};
use tern_wire::handshake::{Handshake, Holepunch, Mode};
use tern_wire::hyperdht::{Command, LookupReply, PeerRecord};
use tern_wire::rpc::{Message, Request};
use tern_wire::{AddrList, Decode, Encode};

const ME: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 49737);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 4000);
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 5), 5000);
const VICTIM: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 66), 53);

struct Relay {
    rpc: Rpc,
    dht: DhtServer,
}

impl Relay {
    fn new(ratio: u32) -> Self {
        let config = RpcConfig {
            public_addr: Some(ME),
            server_port: ME.port(),
            max_reply_ratio: ratio,
            ..RpcConfig::default()
        };
        let rpc = Rpc::new(config, Timestamp::ZERO, 7, [3; 32]);
        let dht = DhtServer::new(Store::new(StoreLimits::default(), Timestamp::ZERO, 9));
        Self { rpc, dht }
    }

    /// Delivers one datagram; every datagram sent, by destination.
    fn deliver(&mut self, from: SocketAddrV4, data: &[u8]) -> Vec<(SocketAddrV4, Vec<u8>)> {
        let mut tx = TxQueue::new(16);
        self.rpc.handle_datagram(
            Timestamp::ZERO,
            SocketId::SERVER,
            from,
            data,
            &mut self.dht,
            &mut tx,
        );
        tx.iter().map(|(m, d)| (m.dest, d.to_vec())).collect()
    }
}

fn request(tid: u16, command: Command, target: &[u8; 32], value: &[u8]) -> Vec<u8> {
    let req = Request {
        tid,
        to: ME,
        id: None,
        token: None,
        internal: false,
        command: command as u64,
        target: Some(target),
        value: Some(value),
    };
    req.to_vec()
}

fn handshake(mode: Mode, peer: Option<SocketAddrV4>, relay: Option<SocketAddrV4>) -> Vec<u8> {
    Handshake { mode, noise: &[7; 96], peer_address: peer, relay_address: relay }.to_vec()
}

fn holepunch(mode: Mode, peer: Option<SocketAddrV4>) -> Vec<u8> {
    Holepunch { mode, id: 1, payload: &[9; 64], peer_address: peer }.to_vec()
}

fn to(sent: &[(SocketAddrV4, Vec<u8>)], dest: SocketAddrV4) -> usize {
    sent.iter().filter(|(d, _)| *d == dest).count()
}

#[test]
fn routing_never_targets_an_address_that_did_not_register_or_ask() {
    let mut relay = Relay::new(0);
    let unknown = [0x11; 32];
    // No server registered: a client-named relayAddress / peerAddress is not followed.
    let hs = handshake(Mode::FromClient, None, Some(VICTIM));
    let sent = relay.deliver(CLIENT, &request(1, Command::PeerHandshake, &unknown, &hs));
    assert_eq!(to(&sent, VICTIM), 0);
    assert_eq!(to(&sent, CLIENT), 1, "the client gets the usual empty reply");
    let hp = holepunch(Mode::FromClient, Some(VICTIM));
    assert!(relay.deliver(CLIENT, &request(2, Command::PeerHolepunch, &unknown, &hp)).is_empty());
    // FROM_SERVER naming a client that never asked: silence.
    for (tid, cmd, value) in [
        (3, Command::PeerHandshake, handshake(Mode::FromServer, Some(VICTIM), None)),
        (4, Command::PeerHolepunch, holepunch(Mode::FromServer, Some(VICTIM))),
    ] {
        assert!(relay.deliver(SERVER, &request(tid, cmd, &unknown, &value)).is_empty());
    }
    assert_eq!(relay.dht.store.stats.relay_refused, 4);

    // A registered server: FROM_CLIENT goes to it (not to a named relayAddress) ...
    let pk = [0x22; 32];
    let target = tern_crypto::hash32(&pk);
    let record = PeerRecord { public_key: &pk, relay_addresses: AddrList::EMPTY }.to_vec();
    relay.dht.store.router.insert(NodeId(target), RouterEntry { relay: SERVER, record });
    let sent = relay.deliver(CLIENT, &request(10, Command::PeerHandshake, &target, &hs));
    assert_eq!((to(&sent, SERVER), to(&sent, VICTIM)), (1, 0));
    // ... its answer reaches the client once, and only the client that asked.
    let back = request(
        10,
        Command::PeerHandshake,
        &target,
        &handshake(Mode::FromServer, Some(CLIENT), None),
    );
    let sent = relay.deliver(SERVER, &back);
    assert_eq!(to(&sent, CLIENT), 1);
    assert!(matches!(Message::decode(&sent[0].1), Ok(Message::Response(r)) if r.tid == 10));
    assert!(relay.deliver(SERVER, &back).is_empty(), "one answer per request");
    let spoofed = handshake(Mode::FromServer, Some(VICTIM), None);
    assert!(
        relay.deliver(SERVER, &request(10, Command::PeerHandshake, &target, &spoofed)).is_empty()
    );

    // Holepunch: peerAddress on the registered server's host (another port) is followed,
    // one elsewhere is not.
    let moved = SocketAddrV4::new(*SERVER.ip(), 5001);
    let ok = holepunch(Mode::FromClient, Some(moved));
    assert_eq!(
        to(&relay.deliver(CLIENT, &request(11, Command::PeerHolepunch, &target, &ok)), moved),
        1
    );
    let bad = holepunch(Mode::FromClient, Some(VICTIM));
    assert!(relay.deliver(CLIENT, &request(12, Command::PeerHolepunch, &target, &bad)).is_empty());
    let back =
        request(11, Command::PeerHolepunch, &target, &holepunch(Mode::FromServer, Some(CLIENT)));
    assert_eq!(to(&relay.deliver(moved, &back), CLIENT), 1);
    assert_eq!(relay.dht.store.stats.relay_refused, 7);
    assert_eq!(relay.dht.store.stats.relayed, 4);
}

#[test]
fn unauthenticated_lookups_get_fewer_peers_not_a_bigger_reply() {
    let topic = [0x33; 32];
    let relays = [SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1); 3];
    let peers = |relay: &mut Relay| {
        for i in 0..20u8 {
            let pk = [i; 32];
            let record =
                PeerRecord { public_key: &pk, relay_addresses: AddrList::Items(&relays) }.to_vec();
            relay.dht.store.topics.insert(NodeId(topic), pk, &record);
        }
    };
    let lookup = Request {
        tid: 5,
        to: ME,
        id: None,
        token: None,
        internal: false,
        command: Command::Lookup as u64,
        target: Some(&topic),
        value: None,
    }
    .to_vec();
    let count = |sent: &[(SocketAddrV4, Vec<u8>)]| {
        let Ok(Message::Response(r)) = Message::decode(&sent[0].1) else { panic!("a response") };
        LookupReply::decode(r.value.unwrap()).unwrap().peers.len()
    };

    let mut open = Relay::new(0);
    peers(&mut open);
    assert_eq!(count(&open.deliver(CLIENT, &lookup)), 20);

    let mut capped = Relay::new(RECOMMENDED_MAX_REPLY_RATIO);
    peers(&mut capped);
    let sent = capped.deliver(CLIENT, &lookup);
    let budget = RECOMMENDED_MAX_REPLY_RATIO as usize * lookup.len();
    assert!(sent[0].1.len() <= budget, "{} > {budget}", sent[0].1.len());
    let n = count(&sent);
    assert!((10..20).contains(&n), "{n} peers");
    assert_eq!(capped.rpc.stats().replies_trimmed, 1);
}
