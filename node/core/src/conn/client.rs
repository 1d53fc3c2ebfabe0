//! The client side: FIND_PEER, the first Noise message through a relay, and choosing the
//! path from the server's answer (spec §9.2 client check, §10.4 fast paths; ref: hyperdht
//! lib/connect.js `findAndConnect`, `connectThroughNode`, `holepunch`).
//!
//! Relays are tried one at a time in the order FIND_PEER finds them; the Noise initiator
//! is unchanged by a failed read, so the same first message goes to the next relay.

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use tern_base::{NodeId, Timestamp, TxQueue};
use tern_crypto::KeyPair;
use tern_crypto::PublicKey;
use tern_crypto::noise::IkInitiator;
use tern_dht::OpId;
use tern_rpc::{QueryId, QuerySpec, ReqId, Rpc, RpcEvent};
use tern_wire::handshake::{Firewall, Handshake, Mode, PayloadError};
use tern_wire::hyperdht::{Command, PeerRecord};
use tern_wire::{Decode, Encode};

use super::early::EarlyPacket;
use super::payload::{self, LocalView};
use super::punch::InitiatorSeed;
use super::{Connections, NetView, Origin};

/// An rpc operation a connect is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RpcHandle {
    /// Its FIND_PEER query.
    Query(QueryId),
    /// Its PEER_HANDSHAKE request in flight.
    Req(ReqId),
}

/// Relays remembered per connect (FIND_PEER finds the k closest at most).
const MAX_CANDIDATES: usize = 32;

/// Why a connect failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No node knows the server (it is not listening, or not yet announced).
    #[error("peer not found")]
    PeerNotFound,
    /// Relays were found but no handshake completed through them.
    #[error("could not reach the peer through any relay")]
    ConnectionFailed,
    /// The server speaks another payload version.
    #[error("server is incompatible")]
    ServerIncompatible,
    /// The server answered with an error or without a UDX stream.
    #[error("server refused the connection")]
    ServerError,
    /// Neither side is reachable and no holepunch strategy fits the two NATs (both
    /// randomise ports, or ours does and tern punches from one socket), or the server
    /// offered no holepunch relays.
    #[error("no holepunch strategy works between these NATs")]
    HolepunchUnsupported,
    /// Holepunching was tried and failed.
    #[error("holepunch failed: {0}")]
    HolepunchFailed(&'static str),
    /// The connect deadline passed.
    #[error("connect timed out")]
    Timeout,
    /// Too many connects in flight, or the key is invalid.
    #[error("connect refused locally: {0}")]
    Local(&'static str),
}

/// One connect in flight.
pub(crate) struct Connecting {
    pub stream: u32,
    pub deadline: Timestamp,
    target: NodeId,
    initiator: IkInitiator,
    /// The encoded PEER_HANDSHAKE value (FROM_CLIENT with the first Noise message).
    value: Vec<u8>,
    query: Option<QueryId>,
    candidates: VecDeque<SocketAddrV4>,
    tried: Vec<SocketAddrV4>,
    inflight: Option<(ReqId, SocketAddrV4)>,
    found_any: bool,
}

impl Connections {
    /// Starts connecting to the server with `public_key` as `key_pair`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn connect(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        op: OpId,
        public_key: &[u8; 32],
        key_pair: &KeyPair,
        net: NetView,
        tx: &mut TxQueue,
    ) {
        if self.connecting.len() >= self.config.max_connecting {
            return self.fail(op, ConnectError::Local("too many connects in flight"));
        }
        let stream = self.alloc_stream_id();
        let ephemeral = self.ephemerals.next();
        let Ok(mut initiator) =
            IkInitiator::with_key_pair(key_pair, &PublicKey(*public_key), &ephemeral)
        else {
            return self.fail(op, ConnectError::Local("invalid public key"));
        };
        let view = LocalView {
            open_address: net.open_address,
            lan_addresses: &self.lan_addresses,
            udx_id: stream,
            holepunch_id: None,
            error: PayloadError::None,
            relay_addresses: &[],
            holepunch_relays: &[],
        };
        let Ok(noise) = initiator.write_message_1(&payload::encode(&view)) else {
            return self.fail(op, ConnectError::Local("invalid public key"));
        };
        let hs = Handshake {
            mode: Mode::FromClient,
            noise: &noise,
            peer_address: None,
            relay_address: None,
        };
        let mut value = vec![0u8; hs.encoded_len()];
        if hs.encode(&mut value).is_err() {
            return self.fail(op, ConnectError::Local("handshake too large"));
        }
        let target = NodeId(tern_crypto::hash32(public_key));
        let spec = QuerySpec::new(target, false, Command::FindPeer as u64, None);
        let query = rpc.query(now, spec, tx);
        self.rpc_owner.insert(RpcHandle::Query(query), op);
        let c = Connecting {
            stream,
            deadline: now + self.config.connect_timeout,
            target,
            initiator,
            value,
            query: Some(query),
            candidates: VecDeque::new(),
            tried: Vec::new(),
            inflight: None,
            found_any: false,
        };
        self.connecting.insert(op, c);
        self.early.watch(stream);
        self.connecting_order.push_back((now + self.config.connect_timeout, op));
    }

    /// Cancels a connect (its events stop).
    pub fn cancel_connect(&mut self, rpc: &mut Rpc, op: OpId) {
        if let Some(c) = self.connecting.remove(&op) {
            self.early.take(c.stream);
            self.release(rpc, &c);
        }
    }

    /// Cancels a finished connect's query and forgets its rpc handles.
    fn release(&mut self, rpc: &mut Rpc, c: &Connecting) {
        if let Some(q) = c.query {
            rpc.cancel_query(q);
            self.rpc_owner.remove(&RpcHandle::Query(q));
        }
        if let Some((req, _)) = c.inflight {
            self.rpc_owner.remove(&RpcHandle::Req(req));
        }
    }

    /// Claims rpc events that belong to connects; returns the others.
    pub(crate) fn on_rpc_event(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        event: RpcEvent,
        net: NetView,
        tx: &mut TxQueue,
    ) -> Option<RpcEvent> {
        // Holepunch rounds of connects past their handshake.
        let (req, reply) = match &event {
            RpcEvent::Response { req, reply } => (Some(*req), Some(reply)),
            RpcEvent::Timeout { req } => (Some(*req), None),
            _ => (None, None),
        };
        if let Some(req) = req
            && (self.on_lan_ping(now, req, reply, tx)
                || self.on_holepunch_response(rpc, now, req, reply, tx))
        {
            return None;
        }
        // Every rpc event of the node passes here: look the owner up, never scan.
        let (handle, last) = match &event {
            RpcEvent::QueryReply { query, .. } => (RpcHandle::Query(*query), false),
            RpcEvent::QueryDone { query, .. } => (RpcHandle::Query(*query), true),
            RpcEvent::Response { req, .. } | RpcEvent::Timeout { req } => {
                (RpcHandle::Req(*req), true)
            }
            _ => return Some(event),
        };
        let owner = if last {
            self.rpc_owner.remove(&handle)
        } else {
            self.rpc_owner.get(&handle).copied()
        };
        // A connect that timed out leaves its query running; its events are not ours.
        let Some(op) = owner.filter(|op| self.connecting.contains_key(op)) else {
            return Some(event);
        };
        match event {
            RpcEvent::QueryReply { reply, .. } => {
                let is_record =
                    reply.value.as_deref().and_then(|v| PeerRecord::decode(v).ok()).is_some();
                if let Some(c) = self.connecting.get_mut(&op)
                    && is_record
                    && c.candidates.len() < MAX_CANDIDATES
                    && !c.tried.contains(&reply.from)
                    && !c.candidates.contains(&reply.from)
                {
                    c.found_any = true;
                    c.candidates.push_back(reply.from);
                }
            }
            RpcEvent::QueryDone { .. } => {
                if let Some(c) = self.connecting.get_mut(&op) {
                    c.query = None;
                }
            }
            RpcEvent::Response { reply, .. } => {
                let relay = self.connecting.get_mut(&op).and_then(|c| c.inflight.take());
                if let Some((_, relay)) = relay
                    && reply.from == relay
                    && let Some(v) = reply.value.as_deref()
                    && self.on_reply(rpc, now, op, (relay, reply.to), v, net, tx)
                {
                    return None;
                }
            }
            RpcEvent::Timeout { .. } => {
                if let Some(c) = self.connecting.get_mut(&op) {
                    c.inflight = None;
                }
            }
            _ => {}
        }
        self.advance(rpc, now, op, tx);
        None
    }

    /// Sends the handshake to the next relay, or fails when none is left.
    fn advance(&mut self, rpc: &mut Rpc, now: Timestamp, op: OpId, tx: &mut TxQueue) {
        let Some(c) = self.connecting.get_mut(&op) else { return };
        if c.inflight.is_some() {
            return;
        }
        while let Some(relay) = c.candidates.pop_front() {
            c.tried.push(relay);
            let cmd = Command::PeerHandshake as u64;
            let target = c.target.0;
            if let Some(req) =
                rpc.request(now, relay, false, cmd, Some(&target), None, Some(&c.value), tx)
            {
                c.inflight = Some((req, relay));
                self.rpc_owner.insert(RpcHandle::Req(req), op);
                return;
            }
        }
        if c.query.is_none() {
            let error = if c.found_any {
                ConnectError::ConnectionFailed
            } else {
                ConnectError::PeerNotFound
            };
            if let Some(c) = self.connecting.remove(&op) {
                self.early.take(c.stream);
            }
            self.fail(op, error);
        }
    }

    /// Hands packets kept for a stream (see `early`) to it, oldest first.
    fn replay_early(&mut self, now: Timestamp, early: Vec<EarlyPacket>, tx: &mut TxQueue) {
        for p in early {
            self.stats.early_packets += 1;
            self.udx.handle_datagram(now, p.socket, p.from, &p.data, tx);
        }
    }

    /// A handshake response from `relay`, which saw us at `client`; true when the
    /// connect is finished (either way).
    #[allow(clippy::too_many_arguments)]
    fn on_reply(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        op: OpId,
        (relay, client): (SocketAddrV4, SocketAddrV4),
        value: &[u8],
        net: NetView,
        tx: &mut TxQueue,
    ) -> bool {
        let Ok(hs) = Handshake::decode(value) else { return false };
        if hs.mode != Mode::Reply || hs.noise.is_empty() {
            return false;
        }
        let Some(c) = self.connecting.get_mut(&op) else { return true };
        let Ok((remote_payload, handshake)) = c.initiator.read_message_2(hs.noise) else {
            return false;
        };
        let Some(c) = self.connecting.remove(&op) else { return true };
        self.release(rpc, &c);
        // Packets the server sent straight to us while its reply took the relay's path.
        let early = self.early.take(c.stream);
        let Some(remote) = payload::decode(&remote_payload) else {
            self.fail(op, ConnectError::ServerIncompatible);
            return true;
        };
        if remote.version != 1 {
            self.fail(op, ConnectError::ServerIncompatible);
            return true;
        }
        let (PayloadError::None, Some(remote_stream)) = (remote.error, remote.udx_id) else {
            self.fail(op, ConnectError::ServerError);
            return true;
        };
        let server = hs.peer_address.unwrap_or(relay);
        let relayed = server != relay;
        // Direct answer: the server is where we sent it. Reachable server (or one that
        // offers no holepunch relays): its first public address, else the relay's view.
        let path = if !relayed {
            Some(relay)
        } else if remote.firewall == Firewall::Open || !remote.holepunchable {
            Some(payload::first_remote_address(&remote.addresses4, server))
        } else {
            None
        };
        if self.udx.create_stream(now, c.stream).is_err() {
            self.fail(op, ConnectError::Local("stream table full"));
            return true;
        }
        let origin = Origin::Client(op);
        match path {
            Some(addr) => {
                if self.udx.connect(now, c.stream, net.socket, remote_stream, addr, tx).is_ok() {
                    self.established(now, origin, c.stream, addr, handshake);
                    self.replay_early(now, early, tx);
                } else {
                    self.udx.destroy(now, c.stream, tx);
                    self.fail(op, ConnectError::Local("stream connect failed"));
                }
            }
            // We said OPEN: the server connects to us; its first packet binds the path.
            None if net.open_address.is_some() => {
                let ok = self.udx.connect_on_first_packet(c.stream, remote_stream).is_ok()
                    && self.await_first_packet(now, c.stream, origin, handshake);
                if ok {
                    // The first of them binds the path, as if it arrived now.
                    self.replay_early(now, early, tx);
                } else {
                    self.udx.destroy(now, c.stream, tx);
                    self.fail(op, ConnectError::Local("too many pending connections"));
                }
            }
            // Neither side is reachable: holepunch through the server's relays.
            None => {
                let Some((hp_id, relays)) = remote.holepunch else {
                    self.udx.destroy(now, c.stream, tx);
                    self.fail(op, ConnectError::HolepunchUnsupported);
                    return true;
                };
                let seed = InitiatorSeed {
                    op,
                    target: c.target,
                    stream: c.stream,
                    remote_stream,
                    handshake,
                    hp_id,
                    relays,
                    relay,
                    server_address: server,
                };
                match self.start_initiator(rpc, now, seed, net, tx) {
                    // Behind the same NAT (the relay saw us both at one host): race the
                    // holepunch with the server's LAN address (see `lan`).
                    Ok(()) if *client.ip() == *server.ip() => {
                        self.start_lan_shortcut(rpc, now, c.stream, &remote.addresses4, tx);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        self.udx.destroy(now, c.stream, tx);
                        self.fail(op, e);
                    }
                }
            }
        }
        true
    }
}
