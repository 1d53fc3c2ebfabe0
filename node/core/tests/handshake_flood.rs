//! A flood of valid PEER_HANDSHAKE messages at a listening node (hyperdht issue 294:
//! unlimited inbound handshakes exhaust a server). Every message is a real first Noise IK
//! message with its own ephemeral key, so each would cost the server three Diffie-Hellman
//! operations and a stream: one client IP gets at most `max_handshakes_per_ip` answers per
//! 10 s window, other IPs are unaffected, and the window frees up again. And the
//! connections a flood leaves open: one client IP holds at most `max_connections_per_ip`
//! of them and the node at most `max_connections`, each place freed when its stream
//! closes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{SocketId, Timestamp, TxQueue};
use tern_core::{ConnConfig, ConnEvent, Node, NodeCommand, NodeConfig, NodeEvent};
use tern_crypto::noise::IkInitiator;
use tern_crypto::{KeyPair, PublicKey, hash32};
use tern_rpc::RpcConfig;
use tern_wire::Encode;
use tern_wire::handshake::{Handshake, Mode, NoisePayload, UdxInfo};
use tern_wire::hyperdht::Command;
use tern_wire::rpc::Request;

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 49737);

/// A PEER_HANDSHAKE (FROM_CLIENT, sent straight to the server) with a fresh first Noise
/// message from client key `client` (ephemeral `n`) to `server`.
fn handshake(server: &PublicKey, client: u8, n: u32, tid: u16) -> Vec<u8> {
    let mut eph = [0u8; 32];
    eph[..4].copy_from_slice(&n.to_le_bytes());
    eph[31] = client;
    let mut init = IkInitiator::new(&[client; 32], server, &eph).unwrap();
    let payload = NoisePayload {
        udx: Some(UdxInfo { version: 1, reusable_socket: false, id: n + 1, seq: 0 }),
        secret_stream: Some(1),
        ..NoisePayload::default()
    };
    let noise = init.write_message_1(&payload.to_vec()).unwrap();
    let hs = Handshake {
        mode: Mode::FromClient,
        noise: &noise,
        peer_address: None,
        relay_address: None,
    };
    let value = hs.to_vec();
    let target = hash32(server.as_bytes());
    let req = Request {
        tid,
        to: SERVER,
        id: None,
        token: None,
        internal: false,
        command: Command::PeerHandshake as u64,
        target: Some(&target),
        value: Some(&value),
    };
    req.to_vec()
}

/// A node at `SERVER` with `conn` limits, listening as the server key pair; returns it
/// and the server's public key.
fn listening_node(conn: ConnConfig) -> (Node, PublicKey) {
    let rpc = RpcConfig { public_addr: Some(SERVER), ..RpcConfig::default() };
    let config = NodeConfig { rpc, conn, ..NodeConfig::default() };
    let mut node = Node::new(config, Timestamp::ZERO, 1, [7; 32]);
    node.set_server_port(SERVER.port());
    let server = KeyPair::from_seed(&[42; 32]);
    let public = server.public_key();
    let command = NodeCommand::Listen { key_pair: server, firewall: None };
    node.handle_command(Timestamp::ZERO, command, &mut TxQueue::new(4096));
    (node, public)
}

/// Sends handshake `n` from `from`; true when the node answered it (the reply is an rpc
/// response, first byte 0x13, to the requester).
fn answered_to(
    node: &mut Node,
    public: &PublicKey,
    now: Timestamp,
    from: SocketAddrV4,
    n: u32,
) -> bool {
    let mut tx = TxQueue::new(4096);
    let msg = handshake(public, from.ip().octets()[3], n, n as u16);
    node.handle_datagram(now, SocketId::SERVER, from, &msg, &mut tx);
    tx.iter().any(|(m, b)| m.dest == from && b.first() == Some(&0x13))
}

#[test]
fn one_ip_cannot_flood_a_server_with_handshakes() {
    let limit = 16;
    let (mut node, public) =
        listening_node(ConnConfig { max_handshakes_per_ip: limit, ..ConnConfig::default() });
    let mut now = Timestamp::ZERO;
    let mut tx = TxQueue::new(4096);
    let answered_to = |node: &mut Node, now: Timestamp, from: SocketAddrV4, n: u32| {
        answered_to(node, &public, now, from, n)
    };

    let attacker = SocketAddrV4::new(Ipv4Addr::new(10, 6, 6, 6), 4000);
    let answered = (0..200).filter(|&n| answered_to(&mut node, now, attacker, n)).count();
    assert_eq!(answered, limit as usize, "one IP gets its limit of answers, no more");
    let stats = node.stats().conn;
    assert_eq!(stats.handshakes_refused, 200 - u64::from(limit));
    assert_eq!(stats.connections, u64::from(limit), "only answered handshakes made streams");

    // A repeated first message is the same handshake: answered from the cache, no cost.
    assert!(answered_to(&mut node, now, attacker, 0), "a retransmission is still answered");

    // Another client is not affected.
    let other = SocketAddrV4::new(Ipv4Addr::new(10, 7, 7, 7), 4000);
    assert!(answered_to(&mut node, now, other, 1000));

    // After the de-duplication window the attacker's IP is answered again.
    now = now + Duration::from_secs(11);
    node.handle_timeout(now, &mut tx);
    assert!(answered_to(&mut node, now, attacker, 5000), "the window frees up");
}

/// The streams of the connections established since the last call.
fn new_connections(node: &mut Node) -> Vec<u32> {
    let mut streams = Vec::new();
    while let Some(e) = node.poll_event() {
        if let NodeEvent::Conn(ConnEvent::Connection(c)) = e {
            streams.push(c.stream);
        }
    }
    streams
}

#[test]
fn one_ip_holds_at_most_its_share_of_open_connections() {
    let (per_ip, total) = (8u32, 12usize);
    let conn = ConnConfig {
        max_connections_per_ip: per_ip,
        max_connections: total,
        keepalive: None,
        ..ConnConfig::default()
    };
    let (mut node, public) = listening_node(conn);
    let mut now = Timestamp::ZERO;
    let mut tx = TxQueue::new(4096);
    let mut n = 0u32;
    let mut attempt = |node: &mut Node, now: Timestamp, from: SocketAddrV4| {
        n += 1;
        answered_to(node, &public, now, from, n)
    };

    let attacker = SocketAddrV4::new(Ipv4Addr::new(10, 6, 6, 6), 4000);
    let answered = (0..50).filter(|_| attempt(&mut node, now, attacker)).count();
    assert_eq!(answered, per_ip as usize, "one IP gets its share of connections, no more");
    let stats = node.stats().conn;
    assert_eq!(stats.connections_refused, 50 - u64::from(per_ip));
    assert_eq!(stats.served, u64::from(per_ip));
    let attacker_streams = new_connections(&mut node);
    assert_eq!(attacker_streams.len(), per_ip as usize);

    // Past the handshake de-duplication window the attacker is still held to its share:
    // the limit counts open connections, not recent handshakes.
    now = now + Duration::from_secs(11);
    node.handle_timeout(now, &mut tx);
    assert!(!attempt(&mut node, now, attacker), "still at its share");

    // Another client gets what is left of the node's total, then nothing.
    let other = SocketAddrV4::new(Ipv4Addr::new(10, 7, 7, 7), 4000);
    let answered = (0..10).filter(|_| attempt(&mut node, now, other)).count();
    assert_eq!(answered, total - per_ip as usize, "the node-wide limit");
    assert_eq!(node.stats().conn.served, total as u64);
    let other_streams = new_connections(&mut node);

    // Loopback clients are exempt from the per-IP share, not from the node's total.
    let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000);
    assert!(!attempt(&mut node, now, local), "the node is full");

    // A closed connection frees its place: the attacker may open one more, not two.
    node.connections().udx().destroy(now, attacker_streams[0], &mut tx);
    node.flush_events(now, &mut tx);
    assert_eq!(node.stats().conn.served, total as u64 - 1);
    assert!(attempt(&mut node, now, attacker), "the freed place is usable");
    assert!(!attempt(&mut node, now, attacker), "but only the one");

    // Closing everything returns every place.
    let mut all = attacker_streams[1..].to_vec();
    all.extend(other_streams);
    all.extend(new_connections(&mut node));
    for id in all {
        node.connections().udx().destroy(now, id, &mut tx);
    }
    node.flush_events(now, &mut tx);
    assert_eq!(node.stats().conn.served, 0);
    let answered = (0..10).filter(|_| attempt(&mut node, now, local)).count();
    assert_eq!(answered, 10, "loopback is not held to the per-IP share");
}
