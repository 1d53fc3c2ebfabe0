//! [`Rpc`]: one dht-rpc node as a sans-IO state machine (ref: dht-rpc index.js).
//!
//! Inputs are `handle_datagram`, `handle_timeout` and the client calls (`request`,
//! `query`, `bootstrap`); every input takes the driver's [`TxQueue`] and may append
//! datagrams to it. Outputs besides datagrams are [`RpcEvent`]s (`poll_event`) and the
//! next deadline (`poll_timeout`). The application (hyperdht) plugs in as a
//! [`Handler`] for incoming commands and consumes events for its client operations.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

use tern_base::{NodeId, Rng, SocketId, Timestamp, TxQueue};
use tern_crypto::TokenSecrets;
use tern_wire::Decode;
use tern_wire::rpc::{InternalCommand, Message, Request, Response};

use crate::io::{Inflight, Io, Owner};
use crate::nat::NatSampler;
use crate::query::{Query, QuerySpec, Reply};
use crate::ratelimit::{RateLimit, RateLimiter};
use crate::server::Handler;
use crate::stats::{DropReason, RpcStats};
use crate::table::{AddOutcome, RoutingTable, TableNode};
use crate::table_sync::TableChange;
use crate::tokens::HostTokens;

/// Configuration of one node. Defaults mirror dht-rpc / hyperdht.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// Nodes to bootstrap from.
    pub bootstrap: Vec<SocketAddrV4>,
    /// Whether we assume we are behind a firewall (send from the client socket).
    pub firewalled: bool,
    /// `Some(true)`: never persistent; `Some(false)`: persistent as soon as our address
    /// is known; `None`: adaptive (after ~20 min of stable address and a firewall test).
    pub ephemeral: Option<bool>,
    /// A bootstrapper's public address: persistent from the start with this id.
    pub public_addr: Option<SocketAddrV4>,
    /// The local port of the server socket (sent in PING_NAT).
    pub server_port: u16,
    /// Per-transmission timeout (dht-rpc: 1 s).
    pub request_timeout: Duration,
    /// Retransmissions of plain requests (dht-rpc: 3).
    pub retries: u8,
    /// Longest DELAYED_PING honoured (dht-rpc: 10 s).
    pub max_ping_delay: Duration,
    /// Per-source-IP limit on incoming requests. Default [`RateLimit::OFF`], as
    /// dht-rpc has none; public nodes should set [`RateLimit::default`].
    pub rate_limit: RateLimit,
    /// Most reply bytes per request byte for requests without a valid token (which
    /// may carry a spoofed source: a reflection attack's amplification factor); over
    /// it closer nodes, then values are left out. 0 (the default, as dht-rpc) turns
    /// the cap off; public nodes should set
    /// [`crate::RECOMMENDED_MAX_REPLY_RATIO`].
    pub max_reply_ratio: u32,
    /// A follower shard of a sharded identity: it answers requests but runs none of
    /// the background maintenance (bootstrap walk, refresh walks, liveness pings,
    /// firewall test, adaptive persistence); the leader shard runs those for the
    /// whole identity and hands its outcome over with [`Rpc::follow`]. Without this
    /// each of N shards walked and pinged on its own (N× the maintenance traffic of
    /// one node) and decided persistence on its own samples, so one ip:port answered
    /// with and without an id for a while.
    pub follower: bool,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            firewalled: true,
            ephemeral: None,
            public_addr: None,
            server_port: 0,
            request_timeout: Duration::from_secs(1),
            retries: 3,
            max_ping_delay: Duration::from_secs(10),
            rate_limit: RateLimit::OFF,
            max_reply_ratio: 0,
            follower: false,
        }
    }
}

/// Handle of a request started with [`Rpc::request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReqId(pub u64);

/// Handle of a query started with [`Rpc::query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueryId(pub u64);

/// What a node reports besides datagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcEvent {
    /// A response to [`Rpc::request`].
    Response {
        /// The request.
        req: ReqId,
        /// The response.
        reply: Reply,
    },
    /// A request ran out of retries.
    Timeout {
        /// The request.
        req: ReqId,
    },
    /// A reply (error 0) to a query, as it arrives.
    QueryReply {
        /// The query.
        query: QueryId,
        /// The reply.
        reply: Reply,
    },
    /// A query finished.
    QueryDone {
        /// The query.
        query: QueryId,
        /// The k closest replies with valid ids, nearest first (with their tokens).
        closest: Vec<Reply>,
        /// Successful replies.
        successes: usize,
        /// Errors and timeouts.
        errors: usize,
    },
    /// The bootstrap walk finished.
    Bootstrapped,
    /// We became persistent with this id.
    Persistent {
        /// Our new id, `H32(public address)`.
        id: NodeId,
    },
}

/// A DELAYED_PING reply waiting for its time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DelayedPing {
    pub at: Timestamp,
    pub socket: SocketId,
    pub from: SocketAddrV4,
    pub tid: u16,
}

/// Most events buffered; the owner drains them after every input. Past this, the oldest
/// query replies are dropped rather than growing without bound.
const MAX_EVENTS: usize = 65_536;
/// Concurrent full-row eviction pings (dht-rpc: 3).
const MAX_EVICTION_CHECKS: usize = 3;

/// One dht-rpc node.
pub struct Rpc {
    pub(crate) config: RpcConfig,
    pub(crate) table: RoutingTable,
    pub(crate) io: Io,
    /// Token secrets and the tokens minted under the current one.
    pub(crate) tokens: HostTokens,
    pub(crate) token_seed: [u8; 32],
    pub(crate) token_epoch: u64,
    pub(crate) nat: NatSampler,
    pub(crate) persistent: bool,
    pub(crate) firewalled: bool,
    pub(crate) bootstrapped: bool,
    pub(crate) bootstrap_query: Option<QueryId>,
    pub(crate) queries: HashMap<u64, Query>,
    pub(crate) next_id: u64,
    pub(crate) events: VecDeque<RpcEvent>,
    pub(crate) rng: Rng,
    pub(crate) stats: RpcStats,
    /// Per-source-IP token buckets on incoming requests.
    pub(crate) limiter: RateLimiter,
    pub(crate) delayed_pings: Vec<DelayedPing>,
    pub(crate) down_hint_checks: usize,
    pub(crate) down_hints_sent: usize,
    /// Newcomers waiting for the stalest node of their full row to answer a ping.
    pub(crate) evictions: HashMap<NodeId, TableNode>,
    /// Responders without ids sampled for NAT (the first few distinct ones).
    pub(crate) sampled_anonymous: Vec<SocketAddrV4>,
    pub(crate) tick: u64,
    pub(crate) next_tick: Timestamp,
    pub(crate) next_slot: Timestamp,
    pub(crate) slots: u32,
    pub(crate) last_tick_at: Timestamp,
    pub(crate) refresh_ticks: u64,
    pub(crate) stable_ticks: u64,
    pub(crate) last_query_tick: u64,
    pub(crate) firewall_test: Option<crate::maintenance::FirewallTest>,
    /// Table changes for replicas, when recording (see `table_sync`).
    pub(crate) table_changes: Option<VecDeque<TableChange>>,
}

impl Rpc {
    /// A node at time `now`. `seed` seeds its RNG (tids, jitter, its random table id
    /// while ephemeral); `token_seed` is the secret all shards of one identity share.
    pub fn new(config: RpcConfig, now: Timestamp, seed: u64, token_seed: [u8; 32]) -> Self {
        let mut rng = Rng::from_seed(seed);
        let first_tid = rng.below(65_536) as u16;
        let mut nat = NatSampler::new();
        let mut table_id = NodeId(rng.bytes32());
        let mut persistent = false;
        let mut config = config;
        if let Some(addr) = config.public_addr {
            // A bootstrapper knows its address: persistent from the start.
            nat.add(*addr.ip(), addr.port());
            table_id = NodeId(tern_crypto::node_id(addr));
            persistent = true;
            config.firewalled = false;
            config.ephemeral = Some(false);
        }
        let firewalled = config.firewalled;
        // Tick counter starts in (50, 100] like the reference's, so "old" checks work.
        let tick = 51 + rng.below(50);
        Self {
            table: RoutingTable::new(table_id),
            io: Io::new(first_tid),
            tokens: HostTokens::new(TokenSecrets::for_epoch(&token_seed, 0)),
            token_seed,
            token_epoch: 0,
            nat,
            persistent,
            firewalled,
            bootstrapped: false,
            bootstrap_query: None,
            queries: HashMap::new(),
            next_id: 0,
            events: VecDeque::new(),
            stats: RpcStats::default(),
            limiter: RateLimiter::new(config.rate_limit),
            delayed_pings: Vec::new(),
            down_hint_checks: 0,
            down_hints_sent: 0,
            evictions: HashMap::new(),
            sampled_anonymous: Vec::new(),
            tick,
            next_tick: now + crate::maintenance::TICK,
            next_slot: now + crate::io::WINDOW_SLOT,
            slots: 0,
            last_tick_at: now,
            refresh_ticks: 60 + rng.below(20),
            stable_ticks: crate::maintenance::STABLE_TICKS,
            last_query_tick: tick,
            firewall_test: None,
            table_changes: None,
            config,
            rng,
        }
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Our id when persistent (the only id ever sent on the wire).
    pub fn persistent_id(&self) -> Option<NodeId> {
        self.persistent.then(|| *self.table.id())
    }

    /// Whether we are persistent.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Whether we send from the client socket.
    pub fn is_firewalled(&self) -> bool {
        self.firewalled
    }

    /// Whether the bootstrap walk has finished.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// Our public address as sampled from others' replies, if known.
    pub fn public_addr(&self) -> Option<SocketAddrV4> {
        self.nat.host().map(|h| SocketAddrV4::new(h, self.nat.port()))
    }

    /// Counters.
    pub fn stats(&self) -> &RpcStats {
        &self.stats
    }

    /// Records the server socket's port once the driver has bound it (PING_NAT asks
    /// others to answer there).
    pub fn set_server_port(&mut self, port: u16) {
        self.config.server_port = port;
    }

    /// The configuration.
    pub fn config(&self) -> &RpcConfig {
        &self.config
    }

    /// Token secrets (the application checks tokens of its own commands with them).
    pub fn tokens(&self) -> &TokenSecrets {
        self.tokens.secrets()
    }

    /// Requests tracked (in flight or waiting for the congestion window).
    pub fn pending_requests(&self) -> usize {
        self.io.len()
    }

    /// The socket our requests leave from.
    pub(crate) fn sending_socket(&self) -> SocketId {
        if self.firewalled { SocketId::CLIENT } else { SocketId::SERVER }
    }

    pub(crate) fn next_handle(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn push_event(&mut self, event: RpcEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Whether [`Rpc::poll_event`] has anything (a cheap check for callers that drain
    /// after every datagram).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event, if any. Drain after every input.
    pub fn poll_event(&mut self) -> Option<RpcEvent> {
        self.events.pop_front()
    }

    /// When [`Rpc::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Timestamp {
        let delayed = self.delayed_pings.iter().map(|p| p.at).min().unwrap_or(Timestamp::NEVER);
        self.io.next_deadline().min(self.next_tick).min(self.next_slot).min(delayed)
    }

    /// Handles one received datagram.
    pub fn handle_datagram<H: Handler>(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
        handler: &mut H,
        tx: &mut TxQueue,
    ) {
        if data.len() < 2 {
            return self.stats.drop(DropReason::TooShort);
        }
        if from.port() == 0 {
            return self.stats.drop(DropReason::PortZero);
        }
        match Message::decode(data) {
            Err(e) => self.stats.drop(DropReason::Decode(e)),
            Ok(Message::Request(req)) => {
                // Before the table and the handler see it: a flood must cost neither.
                if !self.limiter.allow(now, *from.ip()) {
                    return self.stats.drop(DropReason::RateLimited);
                }
                let from_id = self.validate_id(from, req.id);
                if let Some(id) = from_id {
                    self.node_seen(now, id, from, req.to, socket, tx);
                }
                self.on_request(now, socket, from, from_id, (req, data.len()), handler, tx);
            }
            Ok(Message::Response(res)) => self.on_response(now, socket, from, res, tx),
        }
    }

    /// Returns the id if it is `H32(from)`, as every receiver must check (spec §3.4).
    fn validate_id(&mut self, from: SocketAddrV4, id: Option<&[u8; 32]>) -> Option<NodeId> {
        let id = id?;
        if tern_crypto::node_id(from) == *id {
            Some(NodeId(*id))
        } else {
            self.stats.invalid_ids += 1;
            None
        }
    }

    /// A message with a valid id arrived: refresh or admit the node, sample our address.
    fn node_seen(
        &mut self,
        now: Timestamp,
        id: NodeId,
        from: SocketAddrV4,
        to: SocketAddrV4,
        socket: SocketId,
        tx: &mut TxQueue,
    ) {
        let expected_socket = socket == self.sending_socket() || socket == SocketId::SERVER;
        if let Some(node) = self.table.get_mut(&id) {
            node.seen = self.tick;
            node.down_hints = 0;
            node.addr = from;
            // A node another shard admitted counts as new here: without this sample a
            // shard whose table filled from its siblings would never learn its own
            // address (and never turn persistent).
            let old = self.tick.saturating_sub(node.added) > crate::maintenance::OLD_NODE;
            if expected_socket && (old || node.via_replica) {
                node.added = self.tick;
                node.via_replica = false;
                self.nat.add(*to.ip(), to.port());
            }
            return;
        }
        let node = TableNode::new(id, from, self.tick);
        match self.table_add(node) {
            AddOutcome::Added if expected_socket => {
                self.nat.add(*to.ip(), to.port());
            }
            AddOutcome::RowFull if self.bootstrapped => self.try_evict(now, node, tx),
            _ => {}
        }
    }

    /// A full row got a newcomer: ping the row's stalest node; if it does not answer,
    /// the newcomer takes its place (spec §6.3).
    fn try_evict(&mut self, now: Timestamp, newcomer: TableNode, tx: &mut TxQueue) {
        if self.evictions.len() >= MAX_EVICTION_CHECKS {
            return;
        }
        let row = self.table.row(self.table.row_of(&newcomer.id));
        let stalest = row
            .iter()
            .filter(|n| n.pinged != self.tick && !self.evictions.contains_key(&n.id))
            .min_by_key(|n| (n.pinged, n.added))
            .copied();
        let Some(old) = stalest else { return };
        let recently_pinged =
            self.tick.saturating_sub(old.pinged) < crate::maintenance::RECENT_NODE;
        if recently_pinged && self.tick.saturating_sub(old.added) > crate::maintenance::OLD_NODE {
            return;
        }
        if let Some(n) = self.table.get_mut(&old.id) {
            n.pinged = self.tick;
        }
        self.evictions.insert(old.id, newcomer);
        self.send_check(now, old.addr, old.id, tx);
    }

    fn on_response(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        res: Response<'_>,
        tx: &mut TxQueue,
    ) {
        let Some(req) = self.io.complete(res.tid) else {
            return self.stats.drop(DropReason::UnmatchedResponse);
        };
        self.stats.responses += 1;
        let from_id = self.validate_id(from, res.id);
        match from_id {
            Some(id) => self.node_seen(now, id, from, res.to, socket, tx),
            None => self.sample_anonymous(from, res.to),
        }
        let reply = Reply {
            from,
            from_id,
            to: res.to,
            token: res.token.copied(),
            error: res.error,
            value: res.value.map(<[u8]>::to_vec),
            closer_nodes: res.closer_nodes.iter().collect(),
        };
        self.finish_request(now, req, Ok((socket, reply)), tx);
    }

    /// Responders without an id are sampled only for the first few distinct ones
    /// (`max(1, bootstrap nodes)`), as in the reference.
    fn sample_anonymous(&mut self, from: SocketAddrV4, to: SocketAddrV4) {
        let limit = self.config.bootstrap.len().max(1);
        if self.sampled_anonymous.len() < limit && !self.sampled_anonymous.contains(&from) {
            self.sampled_anonymous.push(from);
            self.nat.add(*to.ip(), to.port());
        }
    }

    /// Routes the outcome of one of our requests to whoever waits for it.
    pub(crate) fn finish_request(
        &mut self,
        now: Timestamp,
        req: Inflight,
        outcome: Result<(SocketId, Reply), ()>,
        tx: &mut TxQueue,
    ) {
        let was_slow = req.sends > 1;
        match (req.owner, outcome) {
            (Owner::User(id), Ok((_, reply))) => {
                self.push_event(RpcEvent::Response { req: ReqId(id), reply })
            }
            (Owner::User(id), Err(())) => self.push_event(RpcEvent::Timeout { req: ReqId(id) }),
            (Owner::Query(q), outcome) => {
                self.query_outcome(now, q, req.dest, was_slow, outcome, tx)
            }
            (Owner::Check(id), outcome) => {
                let alive = matches!(&outcome, Ok((_, r)) if r.from_id == Some(id));
                self.check_done(now, id, alive);
            }
            (Owner::DownHint, _) => {}
            (Owner::PingNat(round), outcome) => {
                let ok = outcome.ok();
                self.firewall_reply(now, round, ok, tx);
            }
        }
    }

    /// A liveness check finished: keep the node or drop it (and admit a waiting newcomer).
    fn check_done(&mut self, _now: Timestamp, id: NodeId, alive: bool) {
        let newcomer = self.evictions.remove(&id);
        if newcomer.is_none() {
            self.down_hint_checks = self.down_hint_checks.saturating_sub(1);
        }
        if alive {
            if let Some(n) = self.table.get_mut(&id) {
                n.seen = self.tick;
                n.down_hints = 0;
            }
            return;
        }
        self.table_remove(&id);
        if let Some(n) = newcomer {
            self.table_add(n);
        }
    }

    /// Sends one request (plain retries). The outcome arrives as [`RpcEvent::Response`]
    /// or [`RpcEvent::Timeout`]. Returns `None` when too many requests are tracked.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        now: Timestamp,
        to: SocketAddrV4,
        internal: bool,
        command: u64,
        target: Option<&[u8; 32]>,
        token: Option<&[u8; 32]>,
        value: Option<&[u8]>,
        tx: &mut TxQueue,
    ) -> Option<ReqId> {
        let tid = self.io.alloc_tid()?;
        let id = self.next_handle();
        let req = Request { tid, to, id: None, token, internal, command, target, value };
        let retries = self.config.retries;
        self.send_request(now, req, None, Owner::User(id), retries, tx);
        Some(ReqId(id))
    }

    /// Pings `to` (internal PING).
    pub fn ping(&mut self, now: Timestamp, to: SocketAddrV4, tx: &mut TxQueue) -> Option<ReqId> {
        self.request(now, to, true, InternalCommand::Ping as u64, None, None, None, tx)
    }

    /// Handles timers: retransmissions, timeouts, ticks, delayed pings.
    pub fn handle_timeout(&mut self, now: Timestamp, tx: &mut TxQueue) {
        let mut timed_out = Vec::new();
        let mut first_retries = Vec::new();
        self.io.expire(now, tx, &mut timed_out, &mut first_retries);
        for owner in first_retries {
            if let Owner::Query(q) = owner
                && let Some(query) = self.queries.get_mut(&q)
            {
                query.on_slow();
                self.drive_query(now, q, tx);
            }
        }
        for req in timed_out {
            self.stats.timeouts += 1;
            // A node addressed as a table node that never answers leaves the table.
            if let Some(id) = req.dest_id {
                self.table_remove(&id);
            }
            self.finish_request(now, req, Err(()), tx);
        }
        self.flush_delayed_pings(now, tx);
        while now >= self.next_slot {
            self.next_slot = self.next_slot + crate::io::WINDOW_SLOT;
            self.on_slot(now, tx);
        }
        while now >= self.next_tick {
            self.next_tick = self.next_tick + crate::maintenance::TICK;
            self.on_tick(now, tx);
        }
    }

    /// Starts an iterative query. Replies arrive as [`RpcEvent::QueryReply`], the end
    /// as [`RpcEvent::QueryDone`].
    pub fn query(&mut self, now: Timestamp, spec: QuerySpec, tx: &mut TxQueue) -> QueryId {
        let id = self.next_handle();
        self.start_query(now, id, spec, tx);
        QueryId(id)
    }

    /// Starts a query under a pre-allocated id (so callers can record the id before a
    /// query with no one to ask finishes synchronously).
    pub(crate) fn start_query(
        &mut self,
        now: Timestamp,
        id: u64,
        spec: QuerySpec,
        tx: &mut TxQueue,
    ) {
        let mut q = Query::new(spec);
        self.seed_query(&mut q);
        self.queries.insert(id, q);
        self.last_query_tick = self.tick;
        self.drive_query(now, id, tx);
    }

    /// Cancels a query; no further events are emitted for it.
    pub fn cancel_query(&mut self, query: QueryId) {
        if self.queries.remove(&query.0).is_some() {
            self.io.abandon(Owner::Query(query.0));
        }
    }
}
