//! Encrypted connections: listening servers and connecting clients (spec hyperdht §9–§10,
//! transport §1–§2; ref: hyperdht lib/server.js, lib/connect.js).
//!
//! A server registers its key pair; handshakes for `H32(public key)` reach it directly or
//! through the nodes it announced itself to, and it answers with the second Noise IK
//! message. A client finds the server's relays with FIND_PEER, sends the first Noise
//! message through one of them, and on the answer both sides bind one UDX stream to the
//! path. The Noise split keys then key secret-stream on top (done by the owner of the
//! bytes, not here: encryption runs on the application's thread, see `tern::SecureStream`).
//!
//! When one side is reachable (OPEN), or the server answered directly, the path is
//! direct; when neither is, both sides holepunch (PEER_HOLEPUNCH rounds, see `punch`),
//! and a client behind the server's own NAT races that with the server's LAN address
//! (see `lan`).

mod client;
mod early;
mod lan;
mod payload;
mod punch;
mod server;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

use tern_base::{NodeId, SocketId, Timestamp, TxQueue};
use tern_crypto::hash::hash32_keyed_parts;
use tern_crypto::noise::HandshakeResult;
use tern_crypto::{KeyPair, PublicKey};
use tern_dht::OpId;
use tern_rpc::ReqId;
use tern_udx::{Udx, UdxEvent, UdxTotals};
use tern_wire::RelayPair;

pub use client::ConnectError;
pub use payload::{RemoteView, first_remote_address, is_bogon};
pub(crate) use server::Handlers;

use client::Connecting;
use server::{Answered, Listener};

/// A server's handle (the announce op that keeps it findable has its own id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u64);

/// Who started a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Our `connect` operation.
    Client(OpId),
    /// A client reached our listener.
    Server(ListenerId),
}

/// An established connection: a UDX stream bound to a path, and the Noise outputs that
/// key secret-stream on it.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Who started it.
    pub origin: Origin,
    /// Our UDX stream id (data moves through [`tern_udx::Udx`] with it).
    pub stream: u32,
    /// The peer's address on the path.
    pub remote: SocketAddrV4,
    /// Split keys, handshake hash, both public keys.
    pub handshake: HandshakeResult,
}

/// What the connection layer reports.
#[derive(Debug, Clone)]
pub enum ConnEvent {
    /// A connection is ready for secret-stream.
    Connection(Box<Connection>),
    /// A connect operation failed.
    ConnectFailed {
        /// The operation.
        op: OpId,
        /// Why.
        error: ConnectError,
    },
}

/// Decides whether a server accepts a client: called with the client's public key, its
/// handshake payload and its address; `true` rejects (hyperdht's `firewall` option).
pub type FirewallFn = Box<dyn FnMut(&PublicKey, &RemoteView, SocketAddrV4) -> bool + Send>;

/// Limits of the connection layer (everything a remote can make us allocate).
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Listening key pairs.
    pub max_listeners: usize,
    /// Connect operations in flight.
    pub max_connecting: usize,
    /// Server-side handshakes remembered for de-duplication (hyperdht: 10 s each).
    pub max_answered: usize,
    /// Accepted connections waiting for the client's first packet.
    pub max_awaiting: usize,
    /// How long a connect may take end to end.
    pub connect_timeout: Duration,
    /// How long an accepted or answered stream waits for its peer's first packet
    /// (hyperdht: 10 s).
    pub first_packet_timeout: Duration,
    /// New handshakes answered per client IP within the 10 s de-duplication window.
    /// Each costs three Diffie-Hellman operations, a stream and possibly a holepunch
    /// session; hyperdht has no limit (its issue 294: a flood of handshakes exhausts a
    /// server). Beyond it the server stays silent, as for a rejected client. Loopback
    /// clients are exempt (local load generators and tests, like the rpc rate limit's
    /// `exempt_loopback`).
    pub max_handshakes_per_ip: u32,
    /// Connections accepted by this node's listeners and open at once (each holds a UDX
    /// stream and, while its application reads slowly, up to a few MiB of buffers).
    /// Beyond it new handshakes go unanswered, as for a rejected client. It keeps part of
    /// the UDX stream table (`UdxConfig::max_streams`) for our own connects.
    pub max_connections: usize,
    /// Of those, connections from one client IP (as the client's address is known: the
    /// packet's source, or the relay's word for a relayed handshake). Without it one host
    /// could take the whole table, locking every other client out, and park a connection's
    /// buffers in each. Loopback clients are exempt, as for `max_handshakes_per_ip`.
    /// Counted per shard, like the handshake limit.
    pub max_connections_per_ip: u32,
    /// Heartbeat interval of idle connections (hyperdht's `connectionKeepAlive`, 5 s,
    /// which it sends as empty secret-stream messages; tern sends UDX heartbeats, which
    /// the peer acknowledges the same way). `None` turns it off.
    pub keepalive: Option<Duration>,
    /// The LAN shortcut (see `lan`): offer our interface addresses in handshake payloads
    /// and, as a client behind the server's NAT, try the server's. hyperdht's
    /// `shareLocalAddress` and `localConnection`, both on by default; tests that stand
    /// in for peers behind different NATs on one loopback turn it off.
    pub lan: bool,
}

impl Default for ConnConfig {
    fn default() -> Self {
        Self {
            max_listeners: 256,
            max_connecting: 4096,
            max_answered: 16_384,
            max_awaiting: 16_384,
            connect_timeout: Duration::from_secs(20),
            first_packet_timeout: Duration::from_secs(10),
            max_handshakes_per_ip: 1024,
            max_connections: 32_768,
            max_connections_per_ip: 256,
            keepalive: Some(Duration::from_secs(5)),
            lan: true,
        }
    }
}

/// Counters of the connection layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Connections established (both roles, every path).
    pub connections: u64,
    /// Holepunch sessions started (both roles).
    pub holepunches: u64,
    /// Holepunch sessions that ended in a connection.
    pub holepunched: u64,
    /// Holepunch sessions that ended without one.
    pub holepunch_failures: u64,
    /// Probes sent (opening, punching and echoes).
    pub probes_sent: u64,
    /// Probes received.
    pub probes_received: u64,
    /// Handshakes left unanswered because their client IP reached its limit.
    pub handshakes_refused: u64,
    /// Handshakes left unanswered because the node, or their client IP, had as many
    /// connections open as allowed (`max_connections`, `max_connections_per_ip`).
    pub connections_refused: u64,
    /// Connections accepted by listeners and open now (a gauge).
    pub served: u64,
    /// UDX packets that arrived for a connecting stream before its handshake reply and
    /// were handed to it once it existed (see `early`; each would have cost a second).
    pub early_packets: u64,
    /// LAN shortcut pings sent: the relay saw us at the server's public host (see `lan`).
    pub lan_pings: u64,
    /// Connections whose path is the server's LAN address (the ping beat the holepunch).
    pub lan_connects: u64,
    /// Birthday sockets opened for punches from behind a RANDOM NAT (see `punch`).
    pub birthday_sockets_opened: u64,
    /// Birthday sockets the driver could not open (descriptor limit, its cap).
    pub birthday_sockets_failed: u64,
    /// The UDX streams' transport counters (loss, timeouts, flow control).
    pub udx: UdxTotals,
}

impl ConnStats {
    /// Adds `other`'s counters to these (the shards of one node identity summed).
    pub fn accumulate(&mut self, other: &ConnStats) {
        let Self {
            connections,
            holepunches,
            holepunched,
            holepunch_failures,
            probes_sent,
            probes_received,
            handshakes_refused,
            connections_refused,
            served,
            early_packets,
            lan_pings,
            lan_connects,
            birthday_sockets_opened,
            birthday_sockets_failed,
            udx,
        } = other;
        self.connections += connections;
        self.holepunches += holepunches;
        self.holepunched += holepunched;
        self.holepunch_failures += holepunch_failures;
        self.probes_sent += probes_sent;
        self.probes_received += probes_received;
        self.handshakes_refused += handshakes_refused;
        self.connections_refused += connections_refused;
        self.served += served;
        self.early_packets += early_packets;
        self.lan_pings += lan_pings;
        self.lan_connects += lan_connects;
        self.birthday_sockets_opened += birthday_sockets_opened;
        self.birthday_sockets_failed += birthday_sockets_failed;
        self.udx.accumulate(udx);
    }
}

/// The network facts the handshake logic needs, snapshot from the rpc node per input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetView {
    /// Our public address when we are reachable unsolicited.
    pub open_address: Option<SocketAddrV4>,
    /// The socket our requests leave from (and streams use by default).
    pub socket: SocketId,
    /// That socket's public address as DHT nodes see it (port 0: the NAT randomises
    /// ports), when enough samples agree.
    pub nat: Option<SocketAddrV4>,
}

/// A stream waiting for its peer's first UDX packet to learn the path.
#[derive(Debug)]
struct Awaiting {
    origin: Origin,
    handshake: HandshakeResult,
    deadline: Timestamp,
}

/// Ephemeral Noise keys: a keyed BLAKE2b stream over a counter. The key mixes the node's
/// secret seed (from the OS, via the driver) and its per-shard seed, so shards of one
/// identity never repeat each other's ephemerals and simulated runs still replay.
struct Ephemerals {
    key: [u8; 32],
    counter: u64,
}

impl Ephemerals {
    fn next(&mut self) -> [u8; 32] {
        self.counter += 1;
        hash32_keyed_parts(&[&b"tern/noise-ephemeral"[..], &self.counter.to_le_bytes()], &self.key)
    }
}

/// The connection layer of one node.
pub struct Connections {
    config: ConnConfig,
    udx: Udx,
    listeners: HashMap<NodeId, Listener>,
    answered: HashMap<[u8; 32], Answered>,
    answered_order: VecDeque<([u8; 32], Timestamp)>,
    /// Live `answered` entries per client IP (the per-IP handshake limit).
    answered_per_ip: HashMap<std::net::Ipv4Addr, u32>,
    /// Streams of connections our listeners accepted, from set-up until their `Closed`
    /// event, with the client's IP (the connection limits).
    served: HashMap<u32, std::net::Ipv4Addr>,
    /// `served` entries per client IP.
    served_per_ip: HashMap<std::net::Ipv4Addr, u32>,
    /// Accepted by a listener inside the rpc handler; streams are set up right after.
    accepted: Vec<server::Accepted>,
    awaiting: HashMap<u32, Awaiting>,
    /// `awaiting` deadlines in order (all are now + one constant); stale entries are
    /// skipped when they come due, so timers never scan the maps.
    awaiting_order: VecDeque<(Timestamp, u32)>,
    connecting: HashMap<OpId, Connecting>,
    /// `connecting` deadlines in order, as `awaiting_order`.
    connecting_order: VecDeque<(Timestamp, OpId)>,
    /// UDX packets for connecting streams that beat their handshake reply.
    early: early::EarlyPackets,
    /// Which connect owns an rpc query or request.
    rpc_owner: HashMap<client::RpcHandle, OpId>,
    events: VecDeque<ConnEvent>,
    stats: ConnStats,
    /// Holepunch sessions by our stream id, and their indexes (see `punch`).
    punches: HashMap<u32, punch::Session>,
    punch_slots: HashMap<u64, u32>,
    punch_owner: HashMap<ReqId, u32>,
    /// LAN shortcut pings in flight: our stream and the address pinged (one per client
    /// session at most, so bounded by the sessions; the rpc ends each with a response
    /// or a timeout).
    lan_pings: HashMap<ReqId, (u32, SocketAddrV4)>,
    /// Our own addresses, offered in payloads for peers behind the same NAT.
    lan_addresses: Vec<SocketAddrV4>,
    random_punches: u32,
    last_random_punch: Option<Timestamp>,
    /// Sockets opened at run time (birthday sockets) and their owners.
    sockets: punch::BirthdaySockets,
    /// Work queued by request handlers for the next `after_input`.
    pending_probes: Vec<(SocketId, SocketAddrV4)>,
    pending_punches: Vec<u32>,
    pending_ends: Vec<u32>,
    ephemerals: Ephemerals,
    next_listener: u64,
    next_slot: u64,
    stream_rng: u64,
    /// This node's shard and the shard count (1 unsharded): stream ids carry the shard
    /// in their low byte so a sharded node can send their packets to it.
    shard: (u8, u8),
}

impl Connections {
    /// A connection layer with its own UDX engine.
    pub fn new(config: ConnConfig, udx: Udx, seed: u64, secret_seed: &[u8; 32]) -> Self {
        let key = hash32_keyed_parts(&[&b"tern/conn"[..], &seed.to_le_bytes()], secret_seed);
        Self {
            config,
            udx,
            listeners: HashMap::new(),
            answered: HashMap::new(),
            answered_order: VecDeque::new(),
            answered_per_ip: HashMap::new(),
            served: HashMap::new(),
            served_per_ip: HashMap::new(),
            accepted: Vec::new(),
            awaiting: HashMap::new(),
            awaiting_order: VecDeque::new(),
            connecting: HashMap::new(),
            connecting_order: VecDeque::new(),
            early: early::EarlyPackets::default(),
            rpc_owner: HashMap::new(),
            events: VecDeque::new(),
            stats: ConnStats::default(),
            punches: HashMap::new(),
            punch_slots: HashMap::new(),
            punch_owner: HashMap::new(),
            lan_pings: HashMap::new(),
            lan_addresses: Vec::new(),
            random_punches: 0,
            last_random_punch: None,
            sockets: punch::BirthdaySockets::default(),
            pending_probes: Vec::new(),
            pending_punches: Vec::new(),
            pending_ends: Vec::new(),
            ephemerals: Ephemerals { key, counter: 0 },
            next_listener: 0,
            next_slot: 0,
            stream_rng: seed ^ 0x5bd1_e995_7f4a_7c15,
            shard: (0, 1),
        }
    }

    /// The UDX engine (stream reads and writes go straight to it).
    pub fn udx(&mut self) -> &mut Udx {
        &mut self.udx
    }

    /// The UDX engine, read-only.
    pub fn udx_ref(&self) -> &Udx {
        &self.udx
    }

    /// Counters.
    pub fn stats(&self) -> ConnStats {
        ConnStats { udx: self.udx.totals(), served: self.served.len() as u64, ..self.stats }
    }

    /// Whether [`Connections::poll_event`] or [`Connections::poll_stream_event`] has
    /// anything.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || self.udx.has_events()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        self.events.pop_front()
    }

    /// The next UDX event, for whoever moves the bytes.
    pub fn poll_stream_event(&mut self) -> Option<UdxEvent> {
        self.udx.poll_event()
    }

    /// Number of listeners.
    pub fn listeners(&self) -> usize {
        self.listeners.len()
    }

    /// Makes stream ids name shard `index` of `count` (`id & 0xff ≡ index mod count`).
    /// At most 256 shards are told apart; more share id classes.
    pub fn set_shard(&mut self, index: usize, count: usize) {
        let count = count.clamp(1, 256);
        self.shard = ((index % count) as u8, (count - 1) as u8);
    }

    /// The shard count stream ids are spread over (1: unsharded; at most 255 here, the
    /// kernel steering's limit).
    pub fn shard_count(&self) -> u8 {
        self.shard.1.saturating_add(1)
    }

    /// A fresh stream id not in use (random, so ids do not reveal connection counts).
    fn alloc_stream_id(&mut self) -> u32 {
        let (index, last) = self.shard;
        let count = u32::from(last) + 1;
        loop {
            // splitmix64: cheap, and ids only need to be unique, not secret.
            self.stream_rng = self.stream_rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.stream_rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let mut id = (z ^ (z >> 31)) as u32;
            if count > 1 {
                // Replace the low byte by one of this shard's class below 256.
                let class = (id & 0xff) / count * count + u32::from(index);
                let class = if class > 0xff { u32::from(index) } else { class };
                id = (id & !0xff) | class;
            }
            let taken = self.udx.contains(id)
                || self.accepted.iter().any(|a| a.stream == id)
                || self.connecting.values().any(|c| c.stream == id)
                || self.punches.contains_key(&id);
            if id != 0 && !taken {
                return id;
            }
        }
    }

    /// Registers a listening key pair; handshakes for `H32(public key)` are answered
    /// from now on. `None` when the listener table is full or the key already listens.
    pub fn listen(
        &mut self,
        key_pair: KeyPair,
        firewall: Option<FirewallFn>,
    ) -> Option<ListenerId> {
        let target = NodeId(tern_crypto::hash32(key_pair.public_key().as_bytes()));
        if self.listeners.len() >= self.config.max_listeners || self.listeners.contains_key(&target)
        {
            return None;
        }
        self.next_listener += 1;
        let id = ListenerId(self.next_listener);
        self.listeners.insert(target, Listener { id, key_pair, firewall, relays: Vec::new() });
        Some(id)
    }

    /// The nodes that stored a listener's latest self-announce: offered to clients as
    /// holepunch relays. Ignored for keys that do not listen (any more).
    pub(crate) fn set_relays(&mut self, target: &NodeId, relays: Vec<RelayPair>) {
        if let Some(l) = self.listeners.get_mut(target) {
            l.relays = relays;
        }
    }

    /// Stops answering for a listener; established connections stay up.
    pub fn unlisten(&mut self, id: ListenerId) -> Option<KeyPair> {
        let target = self.listeners.iter().find(|(_, l)| l.id == id).map(|(t, _)| *t)?;
        self.listeners.remove(&target).map(|l| l.key_pair)
    }

    /// Offers a UDX datagram no stream claimed: kept when it is for a connect in flight
    /// (see `early`); true when it is not dht-rpc's to judge.
    pub(crate) fn offer_early(
        &mut self,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
    ) -> bool {
        self.early.offer(socket, from, data)
    }

    /// Sets up the streams of handshakes a listener accepted during the last input.
    pub(crate) fn after_input(&mut self, now: Timestamp, tx: &mut TxQueue) {
        for a in std::mem::take(&mut self.accepted) {
            self.setup_accepted(now, a, tx);
        }
        self.punch_after_input(now, tx);
    }

    /// Routes UDX events that concern connection setup; returns the others.
    pub(crate) fn on_udx_event(&mut self, now: Timestamp, event: UdxEvent) -> Option<UdxEvent> {
        if let UdxEvent::Closed { id, .. } = event {
            // A stream that ran on a birthday socket takes the socket with it.
            self.stream_gone(id);
            self.unserve(id);
        }
        match event {
            UdxEvent::Connected { id, socket, remote } => {
                if self.on_responder_connected(now, id, socket, remote) {
                    return None;
                }
                let a = self.awaiting.remove(&id)?;
                self.established(now, a.origin, id, remote, a.handshake);
                None
            }
            UdxEvent::Closed { id, .. } if self.awaiting.remove(&id).is_some() => None,
            UdxEvent::Closed { id, .. } if self.punches.contains_key(&id) => {
                // Destroyed under a session (shutdown): the session's deadline reports it.
                None
            }
            other => Some(other),
        }
    }

    /// Timers: connect deadlines, first-packet waits, de-duplication entries.
    pub(crate) fn handle_timeout(
        &mut self,
        rpc: &mut tern_rpc::Rpc,
        now: Timestamp,
        tx: &mut TxQueue,
    ) {
        self.punch_timeout(rpc, now, tx);
        while let Some((key, at)) = self.answered_order.front().copied() {
            if at > now {
                break;
            }
            self.answered_order.pop_front();
            if self.answered.get(&key).is_some_and(|a| a.expires <= now) {
                self.forget_answer(&key);
            }
        }
        while let Some(&(at, id)) = self.awaiting_order.front() {
            if at > now {
                break;
            }
            self.awaiting_order.pop_front();
            if self.awaiting.get(&id).is_some_and(|a| a.deadline == at)
                && let Some(a) = self.awaiting.remove(&id)
            {
                self.udx.destroy(now, id, tx);
                if let Origin::Client(op) = a.origin {
                    self.fail(op, ConnectError::Timeout);
                }
            }
        }
        while let Some(&(at, op)) = self.connecting_order.front() {
            if at > now {
                break;
            }
            self.connecting_order.pop_front();
            if self.connecting.get(&op).is_some_and(|c| c.deadline == at) {
                // Its query and request finish on their own; their events are then
                // not claimed (the owner is gone).
                if let Some(c) = self.connecting.remove(&op) {
                    self.early.take(c.stream);
                }
                self.fail(op, ConnectError::Timeout);
            }
        }
    }

    /// The earliest connection-layer deadline.
    pub(crate) fn poll_timeout(&self) -> Timestamp {
        let answered = self.answered_order.front().map_or(Timestamp::NEVER, |(_, at)| *at);
        // Fronts may be stale (already finished): that only costs an early wake-up.
        let awaiting = self.awaiting_order.front().map_or(Timestamp::NEVER, |(at, _)| *at);
        let connecting = self.connecting_order.front().map_or(Timestamp::NEVER, |(at, _)| *at);
        answered.min(awaiting).min(connecting).min(self.punch_poll_timeout())
    }

    fn fail(&mut self, op: OpId, error: ConnectError) {
        self.events.push_back(ConnEvent::ConnectFailed { op, error });
    }

    /// Waits for the peer's first packet on `stream` to bind the path.
    fn await_first_packet(
        &mut self,
        now: Timestamp,
        stream: u32,
        origin: Origin,
        handshake: HandshakeResult,
    ) -> bool {
        if self.awaiting.len() >= self.config.max_awaiting {
            return false;
        }
        let deadline = now + self.config.first_packet_timeout;
        self.awaiting.insert(stream, Awaiting { origin, handshake, deadline });
        self.awaiting_order.push_back((deadline, stream));
        true
    }

    /// A stream bound to a known path right away.
    fn established(
        &mut self,
        now: Timestamp,
        origin: Origin,
        stream: u32,
        remote: SocketAddrV4,
        hs: HandshakeResult,
    ) {
        // Idle connections send UDX heartbeats: they keep NAT mappings open (a
        // holepunched path dies with its mapping) and make a dead path time out.
        if let Some(every) = self.config.keepalive {
            let _ = self.udx.set_keepalive(now, stream, Some(every));
        }
        let conn = Connection { origin, stream, remote, handshake: hs };
        self.stats.connections += 1;
        self.events.push_back(ConnEvent::Connection(Box::new(conn)));
    }
}
