//! [`Node`]: composition of the dht-rpc node, the hyperdht stores and handlers, the
//! client operations, and periodic re-announcing.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{Endpoint, NodeId, OpenError, SocketId, SocketOp, SocketSpec, Timestamp, TxQueue};
use tern_crypto::KeyPair;
use tern_dht::{DhtClient, DhtEvent, DhtServer, OpId, Store, StoreLimits};
use tern_rpc::{Lifecycle, ReqId, Rpc, RpcConfig, RpcEvent, RpcStats, TableChange};
use tern_udx::{Udx, UdxConfig, UdxEvent};

use crate::conn::{
    ConnConfig, ConnEvent, ConnStats, Connections, FirewallFn, Handlers, ListenerId, NetView,
};

/// hyperdht's default port; with a fixed port the next four are tried too.
pub const DEFAULT_PORT: u16 = 49737;
/// Ports tried after [`DEFAULT_PORT`] (hyperdht: 49737–49741).
const DEFAULT_FALLBACK_PORTS: &[u16] = &[49738, 49739, 49740, 49741];
/// Announcements are re-sent this often so they outlive the 13–27 min record TTL.
pub const REANNOUNCE_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// dht-rpc settings (bootstrap, firewalled, ephemeral, public address...).
    pub rpc: RpcConfig,
    /// Record store limits.
    pub store: StoreLimits,
    /// Host to bind both sockets on.
    pub host: Ipv4Addr,
    /// Server socket port; 0 = the hyperdht default range, then any.
    pub port: u16,
    /// Bind the server socket to an OS-chosen port (clients, probes, load generators),
    /// ignoring `port`.
    pub random_port: bool,
    /// Wall-clock ms at the driver's epoch (for bump drift checks).
    pub wall_clock_offset_ms: u64,
    /// Connection-layer limits.
    pub conn: ConnConfig,
    /// UDX stream limits.
    pub udx: UdxConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            rpc: RpcConfig::default(),
            store: StoreLimits::default(),
            host: Ipv4Addr::UNSPECIFIED,
            port: 0,
            random_port: false,
            wall_clock_offset_ms: 0,
            conn: ConnConfig::default(),
            udx: UdxConfig::default(),
        }
    }
}

/// Client calls into a node (from an API handle, a CLI, a load generator).
#[derive(Debug)]
pub enum NodeCommand {
    /// Join the network via the configured bootstrap nodes.
    Bootstrap,
    /// Ping a node.
    Ping(SocketAddrV4),
    /// Stream the records of a topic.
    Lookup(NodeId),
    /// Announce a key pair under a topic and keep it announced until unannounced.
    Announce {
        /// Topic.
        topic: NodeId,
        /// Announcing key pair.
        key_pair: KeyPair,
        /// Relays to list in the record (at most 3 are kept).
        relay_addresses: Vec<SocketAddrV4>,
    },
    /// Stop re-announcing and remove the record.
    Unannounce {
        /// Topic.
        topic: NodeId,
        /// Key pair that announced.
        key_pair: KeyPair,
    },
    /// Find a server's record.
    FindPeer([u8; 32]),
    /// Store a mutable record.
    MutablePut {
        /// Signing key pair.
        key_pair: KeyPair,
        /// Value.
        value: Vec<u8>,
        /// Sequence number.
        seq: u64,
    },
    /// Fetch a mutable record.
    MutableGet {
        /// Signer's public key.
        public_key: [u8; 32],
        /// Minimum seq.
        seq: u64,
        /// Run the whole query and return the highest seq.
        latest: bool,
    },
    /// Store an immutable value.
    ImmutablePut(Vec<u8>),
    /// Fetch an immutable value by hash.
    ImmutableGet([u8; 32]),
    /// Answer handshakes for `key_pair` and announce it so clients can find it; the
    /// returned op is the first announce. Connections arrive as
    /// [`ConnEvent::Connection`] with [`crate::Origin::Server`].
    Listen {
        /// The server's identity.
        key_pair: KeyPair,
        /// Decides which clients are accepted (`true` rejects).
        firewall: Option<Firewall>,
    },
    /// Stop answering for a listener and unannounce it.
    Unlisten(ListenerId),
    /// Open an encrypted connection to the server with this public key.
    Connect {
        /// The server's public key.
        public_key: [u8; 32],
        /// Our identity for the Noise handshake.
        key_pair: KeyPair,
    },
}

/// A server's firewall callback, as carried by a command.
pub struct Firewall(pub FirewallFn);

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Firewall(..)")
    }
}

/// What a node reports.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// A client operation's progress or result.
    Dht(DhtEvent),
    /// A ping answered (`Some(rtt)`) or timed out (`None`).
    Ping {
        /// The operation.
        op: OpId,
        /// Who was pinged.
        to: SocketAddrV4,
        /// Whether it answered with a valid id... and at all.
        answered: bool,
    },
    /// The bootstrap walk finished.
    Bootstrapped,
    /// The node became persistent with this id.
    Persistent(NodeId),
    /// A connection was established or a connect failed.
    Conn(ConnEvent),
    /// A listener was registered; its first announce reports `Done` under the same op.
    Listening {
        /// The `Listen` command's op (its announce).
        op: OpId,
        /// The listener, or `None` when the table is full or the key already listens.
        listener: Option<ListenerId>,
    },
    /// Progress of an established stream (readable, writable, ended, closed...).
    Stream(UdxEvent),
}

/// Counters of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStats {
    /// dht-rpc counters.
    pub rpc: RpcStats,
    /// Store counters.
    pub store: tern_dht::StoreStats,
    /// Routing table size.
    pub table_len: usize,
    /// Topic records stored.
    pub records: usize,
    /// Bytes of topic records stored.
    pub record_bytes: usize,
    /// Connection and holepunch counters.
    pub conn: ConnStats,
}

impl NodeStats {
    /// Adds another shard's counters to these: counters and records sum (records are
    /// partitioned over shards); the table is replicated, so its size is the largest.
    pub fn absorb(&mut self, shard: &NodeStats) {
        self.rpc.accumulate(&shard.rpc);
        self.store.accumulate(&shard.store);
        self.conn.accumulate(&shard.conn);
        self.table_len = self.table_len.max(shard.table_len);
        self.records += shard.records;
        self.record_bytes += shard.record_bytes;
    }
}

#[derive(Debug)]
struct Announcement {
    key_pair: KeyPair,
    relay_addresses: Vec<SocketAddrV4>,
    next: Timestamp,
}

/// Most events buffered between polls.
const MAX_EVENTS: usize = 65_536;

/// One HyperDHT node.
pub struct Node {
    rpc: Rpc,
    server: DhtServer,
    client: DhtClient,
    events: VecDeque<NodeEvent>,
    announcements: HashMap<(NodeId, [u8; 32]), Announcement>,
    pings: HashMap<ReqId, (OpId, SocketAddrV4)>,
    conns: Connections,
    next_op: u64,
    host: Ipv4Addr,
    port: u16,
    random_port: bool,
    /// The server socket's bound address (port 0 until bound).
    bound: SocketAddrV4,
    /// The host's interface addresses, from whoever runs the node (see `set_lan_hosts`).
    lan_hosts: Vec<Ipv4Addr>,
    next_gc: Timestamp,
    bootstrap_on_bind: bool,
}

impl Node {
    /// A node at `now`. `seed` seeds protocol randomness; `secret_seed` derives token
    /// secrets (shared by all shards of one identity).
    pub fn new(config: NodeConfig, now: Timestamp, seed: u64, secret_seed: [u8; 32]) -> Self {
        let mut server =
            DhtServer::new(Store::new(config.store, now, seed.wrapping_mul(0x9e37_79b9)));
        server.wall_clock_offset_ms = config.wall_clock_offset_ms;
        let conns = Connections::new(config.conn, Udx::new(config.udx), seed, &secret_seed);
        Self {
            conns,
            rpc: Rpc::new(config.rpc, now, seed, secret_seed),
            server,
            client: DhtClient::new(),
            events: VecDeque::new(),
            announcements: HashMap::new(),
            pings: HashMap::new(),
            next_op: 1 << 48,
            host: config.host,
            port: config.port,
            random_port: config.random_port,
            bound: SocketAddrV4::new(config.host, 0),
            lan_hosts: Vec::new(),
            next_gc: now + Duration::from_secs(5),
            bootstrap_on_bind: true,
        }
    }

    /// The announcements this node keeps refreshed: (topic, key pair).
    pub fn active_announcements(&self) -> Vec<(NodeId, KeyPair)> {
        self.announcements.iter().map(|(k, a)| (k.0, a.key_pair.clone())).collect()
    }

    /// Whether [`Endpoint::bound`] starts the bootstrap walk (default true).
    pub fn set_bootstrap_on_bind(&mut self, yes: bool) {
        self.bootstrap_on_bind = yes;
    }

    /// The dht-rpc node.
    pub fn rpc(&self) -> &Rpc {
        &self.rpc
    }

    /// Records routing-table changes for the other shards of this identity (see
    /// [`tern_rpc::table_sync`]); drain them with [`Node::poll_table_change`].
    pub fn record_table_changes(&mut self, on: bool) {
        self.rpc.record_table_changes(on);
    }

    /// The oldest routing-table change this node made on its own account, not yet
    /// drained.
    pub fn poll_table_change(&mut self) -> Option<TableChange> {
        self.rpc.poll_table_change()
    }

    /// Whether routing-table changes wait to be drained.
    pub fn has_table_changes(&self) -> bool {
        self.rpc.has_table_changes()
    }

    /// Applies a routing-table change another shard of this identity made (under
    /// this table's rules; never recorded again). Returns whether the table changed.
    pub fn apply_table_change(&mut self, change: TableChange) -> bool {
        self.rpc.apply_table_change(change)
    }

    /// Adopts the leader shard's lifecycle (a follower shard, see
    /// [`tern_rpc::RpcConfig::follower`]); the events it causes come out of
    /// [`Node::poll_event`] after the next [`Node::flush_events`].
    pub fn follow(&mut self, leader: Lifecycle) {
        self.rpc.follow(leader);
    }

    /// Counts this node's stored targets in `filter`, shared with the other shards of
    /// its identity (see [`tern_dht::presence`]).
    pub fn set_target_filter(&mut self, filter: &std::sync::Arc<tern_dht::TargetFilter>) {
        self.server.store.set_filter(filter);
    }

    /// The stores.
    pub fn store(&self) -> &Store {
        &self.server.store
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            rpc: self.rpc.stats().clone(),
            store: self.server.store.stats.clone(),
            table_len: self.rpc.table().len(),
            records: self.server.store.topics.len(),
            record_bytes: self.server.store.topics.bytes(),
            conn: self.conns.stats(),
        }
    }

    /// Tells the node its server socket's port (needed for PING_NAT) — set by
    /// [`Endpoint::bound`] under a driver, or by hand in tests.
    pub fn set_server_port(&mut self, port: u16) {
        self.port = port;
    }

    /// Tells the node the host's interface addresses (the OS's, queried by the driver
    /// side; a sans-IO node cannot). A server socket listening on every interface offers
    /// them, with its port, to peers behind the same NAT (the LAN shortcut of
    /// hyperdht); without them such a socket offers 127.0.0.1, as the reference does.
    pub fn set_lan_hosts(&mut self, hosts: Vec<Ipv4Addr>) {
        self.lan_hosts = hosts;
        self.conns.set_lan_addresses(self.bound, &self.lan_hosts);
    }

    fn push(&mut self, e: NodeEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// Handles one datagram.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
        tx: &mut TxQueue,
    ) {
        // Datagrams of at most one byte are holepunch probes (spec §10.4); UDX claims its
        // own streams' packets next (spec transport §1.5); the rest is dht-rpc (which
        // drops anything else as undecodable).
        let claimed = if data.len() <= 1 {
            self.conns.on_probe(now, socket, from, tx)
        } else {
            self.conns.udx().handle_datagram(now, socket, from, data, tx)
                || self.conns.offer_early(socket, from, data)
        };
        if !claimed {
            let net = self.net_view();
            let mut handlers = Handlers { dht: &mut self.server, conns: &mut self.conns, net };
            self.rpc.handle_datagram(now, socket, from, data, &mut handlers, tx);
            self.conns.after_input(now, tx);
        }
        self.drain(now, tx);
    }

    /// Handles timers.
    pub fn handle_timeout(&mut self, now: Timestamp, tx: &mut TxQueue) {
        self.rpc.handle_timeout(now, tx);
        self.conns.udx().handle_timeout(now, tx);
        self.conns.handle_timeout(&mut self.rpc, now, tx);
        if now >= self.next_gc {
            self.server.store.gc(now);
            self.next_gc = now + Duration::from_secs(5);
        }
        let mut due: Vec<(NodeId, [u8; 32])> =
            self.announcements.iter().filter(|(_, a)| a.next <= now).map(|(k, _)| *k).collect();
        // A fixed order, not the map's OS-seeded one, so runs replay from their seed.
        due.sort_unstable();
        for key in due {
            if let Some(a) = self.announcements.get_mut(&key) {
                a.next = now + REANNOUNCE_INTERVAL;
                let (kp, relays) = (a.key_pair.clone(), a.relay_addresses.clone());
                self.client.announce(&mut self.rpc, now, key.0, kp, relays, tx);
            }
        }
        self.drain(now, tx);
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Timestamp {
        let announce =
            self.announcements.values().map(|a| a.next).min().unwrap_or(Timestamp::NEVER);
        self.rpc
            .poll_timeout()
            .min(self.next_gc)
            .min(announce)
            .min(self.conns.poll_timeout())
            .min(self.conns.udx_ref().poll_timeout())
    }

    /// Starts a client operation; its events carry the returned id (`None` for
    /// [`NodeCommand::Bootstrap`]).
    pub fn handle_command(
        &mut self,
        now: Timestamp,
        command: NodeCommand,
        tx: &mut TxQueue,
    ) -> Option<OpId> {
        let rpc = &mut self.rpc;
        let c = &mut self.client;
        let op = match command {
            NodeCommand::Bootstrap => {
                rpc.bootstrap(now, tx);
                None
            }
            NodeCommand::Ping(to) => {
                self.next_op += 1;
                let op = OpId(self.next_op);
                match rpc.ping(now, to, tx) {
                    Some(req) => {
                        self.pings.insert(req, (op, to));
                    }
                    None => self.push(NodeEvent::Ping { op, to, answered: false }),
                }
                Some(op)
            }
            NodeCommand::Lookup(topic) => Some(c.lookup(rpc, now, topic, tx)),
            NodeCommand::Announce { topic, key_pair, relay_addresses } => {
                Some(Self::start_announce(
                    &mut self.announcements,
                    c,
                    rpc,
                    now,
                    topic,
                    key_pair,
                    relay_addresses,
                    tx,
                ))
            }
            NodeCommand::Unannounce { topic, key_pair } => {
                self.announcements.remove(&(topic, *key_pair.public_key().as_bytes()));
                Some(c.unannounce(rpc, now, topic, key_pair, tx))
            }
            NodeCommand::FindPeer(pk) => Some(c.find_peer(rpc, now, &pk, tx)),
            NodeCommand::MutablePut { key_pair, value, seq } => {
                Some(c.mutable_put(rpc, now, key_pair, value, seq, tx))
            }
            NodeCommand::MutableGet { public_key, seq, latest } => {
                Some(c.mutable_get(rpc, now, public_key, seq, latest, tx))
            }
            NodeCommand::ImmutablePut(value) => Some(c.immutable_put(rpc, now, value, tx)),
            NodeCommand::ImmutableGet(hash) => Some(c.immutable_get(rpc, now, hash, tx)),
            NodeCommand::Listen { key_pair, firewall } => {
                let listener = self.conns.listen(key_pair.clone(), firewall.map(|f| f.0));
                let op = match listener {
                    // A self-announce: the nodes closest to H32(pk) keep a router entry
                    // and relay handshakes to us; the listen completes with it.
                    Some(_) => {
                        let topic = NodeId(tern_crypto::hash32(key_pair.public_key().as_bytes()));
                        let relays = Vec::new();
                        let a = &mut self.announcements;
                        Self::start_announce(a, c, rpc, now, topic, key_pair, relays, tx)
                    }
                    None => {
                        self.next_op += 1;
                        OpId(self.next_op)
                    }
                };
                self.push(NodeEvent::Listening { op, listener });
                Some(op)
            }
            NodeCommand::Unlisten(listener) => {
                let key_pair = self.conns.unlisten(listener)?;
                let topic = NodeId(tern_crypto::hash32(key_pair.public_key().as_bytes()));
                self.handle_command(now, NodeCommand::Unannounce { topic, key_pair }, tx)
            }
            NodeCommand::Connect { public_key, key_pair } => {
                self.next_op += 1;
                let op = OpId(self.next_op);
                let net = self.net_view();
                self.conns.connect(&mut self.rpc, now, op, &public_key, &key_pair, net, tx);
                Some(op)
            }
        };
        self.drain(now, tx);
        op
    }

    /// Announces and remembers the announcement for re-announcing.
    #[allow(clippy::too_many_arguments)]
    fn start_announce(
        announcements: &mut HashMap<(NodeId, [u8; 32]), Announcement>,
        client: &mut DhtClient,
        rpc: &mut Rpc,
        now: Timestamp,
        topic: NodeId,
        key_pair: KeyPair,
        relay_addresses: Vec<SocketAddrV4>,
        tx: &mut TxQueue,
    ) -> OpId {
        let key = (topic, *key_pair.public_key().as_bytes());
        let a = Announcement {
            key_pair: key_pair.clone(),
            relay_addresses: relay_addresses.clone(),
            next: now + REANNOUNCE_INTERVAL,
        };
        announcements.insert(key, a);
        client.announce(rpc, now, topic, key_pair, relay_addresses, tx)
    }

    /// What the connection layer needs to know about our network position.
    fn net_view(&self) -> NetView {
        let firewalled = self.rpc.is_firewalled();
        NetView {
            open_address: self.rpc.public_addr().filter(|a| !firewalled && a.port() != 0),
            socket: if firewalled { SocketId::CLIENT } else { SocketId::SERVER },
            nat: self.rpc.public_addr(),
        }
    }

    /// The connection layer (stream reads and writes go through its UDX engine).
    pub fn connections(&mut self) -> &mut Connections {
        &mut self.conns
    }

    /// Routes rpc events to client operations and turns the rest into node events.
    fn drain(&mut self, now: Timestamp, tx: &mut TxQueue) {
        // This runs after every datagram; one encrypted stream brings ~400k a second, and
        // those almost never leave anything to route (about 1 % of all CPU went here).
        if !(self.rpc.has_events() || self.client.has_events() || self.conns.has_events()) {
            return;
        }
        let net = self.net_view();
        while let Some(e) = self.rpc.poll_event() {
            let Some(e) = self.client.on_rpc_event(&mut self.rpc, now, e, tx) else { continue };
            let Some(e) = self.conns.on_rpc_event(&mut self.rpc, now, e, net, tx) else { continue };
            match e {
                RpcEvent::Bootstrapped => self.push(NodeEvent::Bootstrapped),
                RpcEvent::Persistent { id } => self.push(NodeEvent::Persistent(id)),
                RpcEvent::Response { req, reply } => {
                    if let Some((op, to)) = self.pings.remove(&req) {
                        let answered = reply.error == 0;
                        self.push(NodeEvent::Ping { op, to, answered });
                    }
                }
                RpcEvent::Timeout { req } => {
                    if let Some((op, to)) = self.pings.remove(&req) {
                        self.push(NodeEvent::Ping { op, to, answered: false });
                    }
                }
                RpcEvent::QueryReply { .. } | RpcEvent::QueryDone { .. } => {}
            }
        }
        while let Some(e) = self.client.poll_event() {
            if let DhtEvent::Done { op, .. } = &e
                && let Some((target, relays)) = self.client.take_announce_relays(*op)
            {
                // A listener's self-announce landed: these nodes relay its holepunches.
                self.conns.set_relays(&target, relays);
            }
            self.push(NodeEvent::Dht(e));
        }
        while let Some(e) = self.conns.poll_stream_event() {
            if let Some(e) = self.conns.on_udx_event(now, e) {
                self.push(NodeEvent::Stream(e));
            }
        }
        while let Some(e) = self.conns.poll_event() {
            self.push(NodeEvent::Conn(e));
        }
    }

    /// Call after driving the UDX engine directly (stream reads and writes) so its
    /// events are routed.
    pub fn flush_events(&mut self, now: Timestamp, tx: &mut TxQueue) {
        self.drain(now, tx);
    }
}

impl Endpoint for Node {
    type Command = NodeCommand;

    fn sockets(&self) -> Vec<SocketSpec> {
        let (port, fallback, any) = match self.port {
            _ if self.random_port => (0, &[][..], true),
            0 => (DEFAULT_PORT, DEFAULT_FALLBACK_PORTS, true),
            p => (p, &[][..], false),
        };
        // A bootstrapper's port is part of its identity: never fall back.
        let any = any && self.rpc.config().public_addr.is_none();
        vec![
            SocketSpec {
                id: SocketId::SERVER,
                bind: SocketAddrV4::new(self.host, port),
                fallback_ports: fallback,
                any_port: any,
                steer_udx_shards: self.conns.shard_count(),
            },
            SocketSpec {
                id: SocketId::CLIENT,
                bind: SocketAddrV4::new(self.host, 0),
                fallback_ports: &[],
                any_port: true,
                steer_udx_shards: 0,
            },
        ]
    }

    fn bound(&mut self, now: Timestamp, local: &[SocketAddrV4], tx: &mut TxQueue) {
        if let Some(server) = local.first() {
            self.port = server.port();
            self.rpc.set_server_port(server.port());
            self.bound = *server;
            self.conns.set_lan_addresses(self.bound, &self.lan_hosts);
        }
        // Birthday sockets bind where the node's own sockets do.
        self.conns.set_socket_host(self.host);
        if self.bootstrap_on_bind {
            self.handle_command(now, NodeCommand::Bootstrap, tx);
        }
    }

    fn handle_datagram(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
        tx: &mut TxQueue,
    ) {
        Node::handle_datagram(self, now, socket, from, data, tx);
    }

    fn handle_command(&mut self, now: Timestamp, command: NodeCommand, tx: &mut TxQueue) {
        Node::handle_command(self, now, command, tx);
    }

    fn handle_timeout(&mut self, now: Timestamp, tx: &mut TxQueue) {
        Node::handle_timeout(self, now, tx);
    }

    fn poll_timeout(&self) -> Timestamp {
        Node::poll_timeout(self)
    }

    fn poll_socket_op(&mut self) -> Option<SocketOp> {
        self.conns.poll_socket_op()
    }

    fn socket_opened(
        &mut self,
        now: Timestamp,
        id: SocketId,
        result: Result<SocketAddrV4, OpenError>,
        tx: &mut TxQueue,
    ) {
        self.conns.socket_opened(id, result, tx);
        self.drain(now, tx);
    }
}
