//! The server side: answering PEER_HANDSHAKE for a listening key pair (spec §9.2 server
//! table, §9.4; ref: hyperdht lib/server.js `_addHandshake`).
//!
//! The Noise answer is computed inside the rpc handler (the reply must carry the
//! request's tid); the UDX stream is set up right after the input, when the transmit
//! queue is free again. Identical first messages (clients ask two relays at once) get the
//! identical answer and no second stream.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{NodeId, SocketId, Timestamp, TxQueue};
use tern_crypto::KeyPair;
use tern_crypto::noise::{HandshakeResult, IkResponder};
use tern_dht::DhtServer;
use tern_rpc::{Handler, IncomingRequest, ReplyFields, Responder};
use tern_wire::Encode;
use tern_wire::RelayPair;
use tern_wire::handshake::{Firewall, Handshake, Holepunch, Mode, PayloadError};
use tern_wire::hyperdht::Command;
use tern_wire::rpc::error_code;

use super::payload::{self, LocalView};
use super::punch::ResponderSeed;
use super::{Connections, FirewallFn, ListenerId, NetView, Origin};

/// How long an answered handshake is remembered (hyperdht: 10 s).
const ANSWER_TTL: Duration = Duration::from_secs(10);

/// A listening key pair.
pub(crate) struct Listener {
    pub id: ListenerId,
    pub key_pair: KeyPair,
    pub firewall: Option<FirewallFn>,
    /// Nodes that stored our latest self-announce (holepunch relays).
    pub relays: Vec<RelayPair>,
}

/// The answer given to one first Noise message.
pub(crate) struct Answered {
    pub reply: Vec<u8>,
    pub expires: Timestamp,
    /// The client's IP (counted against its handshake limit while remembered).
    pub ip: Ipv4Addr,
}

/// A handshake a listener accepted; its stream is created after the input.
pub(crate) struct Accepted {
    pub listener: ListenerId,
    pub stream: u32,
    pub remote_stream: u32,
    pub handshake: HandshakeResult,
    /// Connect to this address at once (client reachable, or it contacted us directly);
    /// otherwise wait for its first packet.
    pub connect_to: Option<(SocketId, SocketAddrV4)>,
    /// Neither side is reachable: holepunch (slot id and what the session needs).
    pub punch: Option<(u64, ResponderSeed)>,
}

/// The rpc handler of a node with connections: PEER_HANDSHAKE for our own listeners is
/// answered here, everything else goes to the hyperdht server.
pub(crate) struct Handlers<'a> {
    pub dht: &'a mut DhtServer,
    pub conns: &'a mut Connections,
    pub net: NetView,
}

impl Handler for Handlers<'_> {
    fn on_request(&mut self, now: Timestamp, req: &IncomingRequest<'_>, out: &mut Responder<'_>) {
        let q = &req.request;
        if q.command == Command::PeerHandshake as u64
            && !q.internal
            && let (Some(target), Some(value)) = (q.target, q.value)
            && self.conns.listeners.contains_key(&NodeId(*target))
        {
            if let Ok(hs) = <Handshake<'_> as tern_wire::Decode<'_>>::decode(value) {
                self.conns.on_handshake(now, req, out, &NodeId(*target), &hs, self.net);
            }
            return;
        }
        // A holepunch relayed to us for one of our listeners' sessions (relays route the
        // other modes in the hyperdht server).
        if q.command == Command::PeerHolepunch as u64
            && !q.internal
            && let (Some(target), Some(value)) = (q.target, q.value)
            && self.conns.listeners.contains_key(&NodeId(*target))
            && let Ok(hp) = <Holepunch<'_> as tern_wire::Decode<'_>>::decode(value)
            && hp.mode == Mode::FromRelay
        {
            self.conns.on_holepunch_request(now, req, out, &hp, self.net);
            return;
        }
        self.dht.on_request(now, req, out);
    }
}

impl Connections {
    /// A PEER_HANDSHAKE for one of our listeners (spec §9.2, server table).
    fn on_handshake(
        &mut self,
        now: Timestamp,
        req: &IncomingRequest<'_>,
        out: &mut Responder<'_>,
        target: &NodeId,
        hs: &Handshake<'_>,
        net: NetView,
    ) {
        // Where the client is, and where the answer goes.
        let (client, direct) = match hs.mode {
            Mode::FromClient => (req.from, true),
            Mode::FromRelay | Mode::FromSecondRelay => match hs.peer_address {
                Some(addr) => (addr, false),
                None => return,
            },
            Mode::FromServer | Mode::Reply => return,
        };
        if hs.noise.is_empty() {
            return;
        }
        let key = tern_crypto::hash32(hs.noise);
        let reply = match self.answered.get(&key) {
            Some(a) if a.expires > now => a.reply.clone(),
            _ => {
                let ip = *client.ip();
                if !ip.is_loopback()
                    && self.answered_per_ip.get(&ip).copied().unwrap_or(0)
                        >= self.config.max_handshakes_per_ip
                {
                    self.stats.handshakes_refused += 1;
                    return;
                }
                if !self.may_serve(ip) {
                    self.stats.connections_refused += 1;
                    return;
                }
                match self.answer(now, target, hs.noise, client, direct, req.socket, net) {
                    Some(reply) => {
                        self.remember(key, reply.clone(), now, ip);
                        reply
                    }
                    None => return,
                }
            }
        };
        let mut buf = vec![0u8; reply.len() + 64];
        let fields = |mode, peer_address| Handshake {
            mode,
            noise: &reply,
            peer_address,
            relay_address: None,
        };
        match hs.mode {
            Mode::FromClient => {
                if let Ok(n) = fields(Mode::Reply, None).encode(&mut buf) {
                    out.reply_with(Some(&buf[..n]), error_code::OK, ReplyFields::BARE);
                }
            }
            Mode::FromRelay => {
                if let Ok(n) = fields(Mode::FromServer, hs.peer_address).encode(&mut buf) {
                    out.relay(req.from, &req.request, &buf[..n]);
                }
            }
            Mode::FromSecondRelay => {
                let Some(first_relay) = hs.relay_address else { return };
                if let Ok(n) = fields(Mode::FromServer, hs.peer_address).encode(&mut buf) {
                    out.relay(first_relay, &req.request, &buf[..n]);
                }
            }
            Mode::FromServer | Mode::Reply => {}
        }
    }

    /// Whether a new connection from `ip` fits the connection limits.
    fn may_serve(&self, ip: Ipv4Addr) -> bool {
        self.served.len() < self.config.max_connections
            && (ip.is_loopback()
                || self.served_per_ip.get(&ip).copied().unwrap_or(0)
                    < self.config.max_connections_per_ip)
    }

    /// Counts the stream of an accepted connection against its client's IP.
    fn serve(&mut self, stream: u32, ip: Ipv4Addr) {
        if self.served.insert(stream, ip).is_none() {
            *self.served_per_ip.entry(ip).or_default() += 1;
        }
    }

    /// Releases a stream's place (any stream id; only served ones count).
    pub(super) fn unserve(&mut self, stream: u32) {
        let Some(ip) = self.served.remove(&stream) else { return };
        if let Some(n) = self.served_per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.served_per_ip.remove(&ip);
            }
        }
    }

    fn remember(&mut self, key: [u8; 32], reply: Vec<u8>, now: Timestamp, ip: Ipv4Addr) {
        if self.answered.len() >= self.config.max_answered {
            // Full: forget the oldest answer early (its client has usually moved on).
            while let Some((old, _)) = self.answered_order.pop_front() {
                if self.forget_answer(&old) {
                    break;
                }
            }
        }
        let expires = now + ANSWER_TTL;
        // A stale entry under the same key is replaced: release its count first.
        self.forget_answer(&key);
        self.answered.insert(key, Answered { reply, expires, ip });
        *self.answered_per_ip.entry(ip).or_insert(0) += 1;
        self.answered_order.push_back((key, expires));
    }

    /// Drops a remembered answer and its per-IP count; false if there was none.
    pub(super) fn forget_answer(&mut self, key: &[u8; 32]) -> bool {
        let Some(a) = self.answered.remove(key) else { return false };
        if let Some(n) = self.answered_per_ip.get_mut(&a.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.answered_per_ip.remove(&a.ip);
            }
        }
        true
    }

    /// Runs the responder side of Noise IK and decides the path; `None` = stay silent
    /// (undecryptable, rejected by the firewall, or out of room).
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        _now: Timestamp,
        target: &NodeId,
        noise: &[u8],
        client: SocketAddrV4,
        direct: bool,
        socket: SocketId,
        net: NetView,
    ) -> Option<Vec<u8>> {
        if self.accepted.len() + self.awaiting.len() >= self.config.max_awaiting {
            return None;
        }
        let ephemeral = self.ephemerals.next();
        let stream = self.alloc_stream_id();
        self.next_slot += 1;
        let slot = self.next_slot;
        let listener = self.listeners.get_mut(target)?;
        let mut responder = IkResponder::with_key_pair(&listener.key_pair, &ephemeral).ok()?;
        let (remote_key, remote_payload) = responder.read_message_1(noise).ok()?;
        let remote = payload::decode(&remote_payload)?;
        if let Some(firewall) = listener.firewall.as_mut()
            && firewall(&remote_key, &remote, client)
        {
            return None;
        }
        let error = match (remote.version, remote.udx_id) {
            (1, Some(_)) => PayloadError::None,
            (1, None) => PayloadError::Aborted,
            _ => PayloadError::VersionMismatch,
        };
        let ok = error == PayloadError::None;
        let view = LocalView {
            open_address: net.open_address,
            lan_addresses: &self.lan_addresses,
            udx_id: if ok { stream } else { 0 },
            holepunch_id: Some(slot),
            error,
            relay_addresses: &[],
            holepunch_relays: &listener.relays,
        };
        let (reply, handshake) = responder.write_message_2(&payload::encode(&view)).ok()?;
        if let (true, Some(remote_stream)) = (ok, remote.udx_id) {
            // Connect at once when the client is reachable or came straight to us
            // (from the socket it reached); otherwise its first packet shows the path.
            let connect_to = if direct {
                Some((socket, client))
            } else if remote.firewall == Firewall::Open {
                Some((net.socket, client))
            } else {
                None
            };
            // Neither side reachable: a holepunch session answers the client's rounds.
            // (Reachable ourselves, we only wait for the client, as the reference does.)
            let punch = (connect_to.is_none() && net.open_address.is_none()).then(|| {
                let relays = listener.relays.iter().map(|r| r.relay_address).collect();
                (slot, ResponderSeed { listener: listener.id, client, relays, net })
            });
            let listener = listener.id;
            self.serve(stream, *client.ip());
            self.accepted.push(Accepted {
                listener,
                stream,
                remote_stream,
                handshake,
                connect_to,
                punch,
            });
        }
        Some(reply)
    }

    /// Creates the UDX stream of an accepted handshake.
    pub(super) fn setup_accepted(&mut self, now: Timestamp, a: Accepted, tx: &mut TxQueue) {
        if self.udx.create_stream(now, a.stream).is_err() {
            // No stream, so no `Closed` event will release its place.
            self.unserve(a.stream);
            return;
        }
        let origin = Origin::Server(a.listener);
        match a.connect_to {
            Some((socket, addr)) => {
                if self.udx.connect(now, a.stream, socket, a.remote_stream, addr, tx).is_ok() {
                    self.established(now, origin, a.stream, addr, a.handshake);
                } else {
                    self.udx.destroy(now, a.stream, tx);
                }
            }
            None => {
                let bound = self.udx.connect_on_first_packet(a.stream, a.remote_stream).is_ok()
                    && match a.punch {
                        Some((slot, seed)) => self.start_responder(
                            now,
                            slot,
                            a.stream,
                            a.remote_stream,
                            a.handshake,
                            seed,
                        ),
                        None => self.await_first_packet(now, a.stream, origin, a.handshake),
                    };
                if !bound {
                    self.udx.destroy(now, a.stream, tx);
                }
            }
        }
    }
}
