//! Timers and self-organisation: the 750 ms slot (congestion window, token rotation),
//! the 5 s tick (ping-some, refresh, adaptive persistence), bootstrap, query driving,
//! and the firewall test that decides persistence (spec §5.3–§5.6, §7, §11).

use std::net::SocketAddrV4;
use std::time::Duration;

use tern_base::{NodeId, SocketId, Timestamp, TxQueue};
use tern_crypto::TokenSecrets;
use tern_wire::rpc::{InternalCommand, Request};

use crate::io::Owner;
use crate::nat::NatSampler;
use crate::node::{QueryId, Rpc, RpcEvent};
use crate::query::{Query, QuerySpec, Reply};
use crate::table::K;

/// The main tick (dht-rpc `TICK_INTERVAL`).
pub const TICK: Duration = Duration::from_secs(5);
/// A node in the table this many ticks is "old" (30 min).
pub const OLD_NODE: u64 = 360;
/// A node pinged within this many ticks was "recently" checked (1 min).
pub const RECENT_NODE: u64 = 12;
/// Stable ticks before an adaptive node tries to become persistent (20 min).
pub const STABLE_TICKS: u64 = 240;
/// Stable ticks before the next attempt when the host did not change (60 min).
pub const MORE_STABLE_TICKS: u64 = 720;
/// Token secrets rotate every this many 750 ms slots (7.5 s).
const TOKEN_ROTATE_SLOTS: u32 = 10;
/// DOWN_HINTs we send per tick at most (dht-rpc: 50).
const MAX_DOWN_HINTS_PER_TICK: usize = 50;
/// Nodes asked in a firewall test (dht-rpc: 5).
const FIREWALL_TEST_NODES: usize = 5;
/// Background queries (bootstrap, refresh) run with this concurrency.
const BACKGROUND_CONCURRENCY: usize = 2;

/// What a leader shard decided for the whole identity (see [`crate::RpcConfig::follower`]):
/// everything a follower needs to answer as the leader would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifecycle {
    /// The bootstrap walk finished.
    pub bootstrapped: bool,
    /// Whether requests leave from the client socket (we may be behind a firewall).
    pub firewalled: bool,
    /// The id taken on becoming persistent.
    pub persistent: Option<NodeId>,
}

/// A running firewall test: PING_NATs to a few nodes asking them to answer at our
/// server port.
#[derive(Debug)]
pub(crate) struct FirewallTest {
    round: u64,
    asked: usize,
    answered: usize,
    /// Replies that reached the server socket unsolicited.
    reachable: usize,
    sampler: NatSampler,
    /// Only decide `firewalled`, do not turn persistent (the quick test at bootstrap).
    firewall_only: bool,
}

impl Rpc {
    /// The 750 ms slot: rotate the congestion window; every 10th slot rotate tokens.
    pub(crate) fn on_slot(&mut self, now: Timestamp, tx: &mut TxQueue) {
        self.io.rotate_window(now, tx);
        self.slots = self.slots.wrapping_add(1);
        if self.slots.is_multiple_of(TOKEN_ROTATE_SLOTS) {
            self.token_epoch += 1;
            self.tokens.set(TokenSecrets::for_epoch(&self.token_seed, self.token_epoch));
        }
    }

    /// The 5 s tick.
    pub(crate) fn on_tick(&mut self, now: Timestamp, tx: &mut TxQueue) {
        // A long gap means the machine slept: everyone may have moved on, so refresh
        // and restart the stability countdown (spec §5.3 "wake-up detection").
        let slept = now.saturating_since(self.last_tick_at) > 3 * TICK;
        self.last_tick_at = now;
        self.tick += 1;
        self.down_hints_sent = 0;
        if slept {
            self.stable_ticks = MORE_STABLE_TICKS;
            self.last_query_tick = 0;
        }
        if self.config.follower {
            // The leader walks, pings and tests for the identity (see `follow`).
            return;
        }
        if self.tick.is_multiple_of(8) {
            self.ping_some(now, tx);
        }
        let idle = self.tick.saturating_sub(self.last_query_tick);
        if self.bootstrapped
            && (idle >= self.refresh_ticks
                || (self.tick.is_multiple_of(64) && self.table.len() < K))
        {
            self.refresh(now, tx);
        }
        if self.bootstrapped && self.config.ephemeral.is_none() && !self.persistent {
            self.stable_ticks = self.stable_ticks.saturating_sub(1);
            if self.stable_ticks == 0 {
                self.stable_ticks = MORE_STABLE_TICKS;
                self.start_firewall_test(now, false, tx);
            }
        }
    }

    /// Liveness-checks a few of the least recently seen nodes (spec §5.6).
    fn ping_some(&mut self, now: Timestamp, tx: &mut TxQueue) {
        if self.table.is_empty() {
            if self.bootstrapped {
                self.refresh(now, tx);
            }
            return;
        }
        let mut nodes: Vec<_> = self.table.iter().copied().collect();
        nodes.sort_by_key(|n| n.seen);
        let mut count = if self.io.in_flight() > 2 { 3 } else { 5 };
        if nodes.first().is_some_and(|n| self.tick.saturating_sub(n.pinged) < RECENT_NODE) {
            count = 2;
        }
        for n in nodes.into_iter().take(count) {
            if let Some(node) = self.table.get_mut(&n.id) {
                node.pinged = self.tick;
            }
            self.down_hint_checks += 1;
            self.send_check(now, n.addr, n.id, tx);
        }
    }

    /// A background FIND_NODE walk that keeps the table fresh.
    fn refresh(&mut self, now: Timestamp, tx: &mut TxQueue) {
        let nodes: Vec<NodeId> = self.table.iter().map(|n| n.id).collect();
        let target = if nodes.is_empty() {
            *self.table.id()
        } else {
            nodes[self.rng.below(nodes.len() as u64) as usize]
        };
        let mut spec = QuerySpec::new(target, true, InternalCommand::FindNode as u64, None);
        spec.concurrency = BACKGROUND_CONCURRENCY;
        self.query(now, spec, tx);
    }

    /// Starts the bootstrap walk: a FIND_NODE query for our own id seeded with the
    /// bootstrap nodes. [`RpcEvent::Bootstrapped`] follows when it ends.
    /// A follower does not walk: its lifecycle comes from the leader ([`Rpc::follow`]).
    pub fn bootstrap(&mut self, now: Timestamp, tx: &mut TxQueue) {
        if self.config.follower {
            return;
        }
        let target = *self.table.id();
        let spec = QuerySpec::new(target, true, InternalCommand::FindNode as u64, None);
        // Recorded before the query starts: with nobody to ask (a bootstrapper, the
        // first node of a network) it finishes inside `start_query`.
        let id = self.next_handle();
        self.bootstrap_query = Some(QueryId(id));
        self.start_query(now, id, spec, tx);
    }

    /// Adds table and bootstrap seeds to a new query (spec §7 step 1).
    pub(crate) fn seed_query(&mut self, q: &mut Query) {
        let target = q.spec().target;
        if q.seeds() < K {
            let want = K - q.seeds();
            let from_table: Vec<_> =
                self.table.closest(&target, want).map(|n| (n.addr, n.id)).collect();
            for (addr, id) in from_table {
                q.add_seed(addr, id);
            }
            q.seed_from_table();
        }
        if q.seeds() < K {
            for addr in &self.config.bootstrap {
                q.add_seed(*addr, NodeId(tern_crypto::node_id(*addr)));
            }
        }
    }

    /// Sends what the query wants sent; finishes it when the walk is over.
    pub(crate) fn drive_query(&mut self, now: Timestamp, qid: u64, tx: &mut TxQueue) {
        loop {
            let Some(q) = self.queries.get_mut(&qid) else { return };
            let Some(dest) = q.next_node() else { break };
            let spec = q.spec();
            let (internal, command, target) = (spec.internal, spec.command, spec.target);
            let value = spec.value.clone();
            let retries = spec.retries;
            let Some(tid) = self.io.alloc_tid() else { break };
            let req = Request {
                tid,
                to: dest,
                id: None,
                token: None,
                internal,
                command,
                target: Some(target.as_bytes()),
                value: value.as_deref(),
            };
            self.send_request(now, req, None, Owner::Query(qid), retries, tx);
        }
        let Some(q) = self.queries.get_mut(&qid) else { return };
        if !q.is_done() {
            return;
        }
        if q.wants_top_up() {
            let target = q.spec().target;
            let seeds: Vec<_> = self.table.closest(&target, K).map(|n| (n.addr, n.id)).collect();
            if let Some(q) = self.queries.get_mut(&qid) {
                for (addr, id) in seeds {
                    q.add_seed(addr, id);
                }
            }
            return self.drive_query(now, qid, tx);
        }
        self.finish_query(now, qid, tx);
    }

    fn finish_query(&mut self, now: Timestamp, qid: u64, tx: &mut TxQueue) {
        let Some(mut q) = self.queries.remove(&qid) else { return };
        self.io.abandon(Owner::Query(qid));
        let event = RpcEvent::QueryDone {
            query: QueryId(qid),
            closest: q.take_closest(),
            successes: q.successes,
            errors: q.errors,
        };
        self.push_event(event);
        if self.bootstrap_query == Some(QueryId(qid)) {
            self.bootstrap_query = None;
            self.on_bootstrapped(now, tx);
        }
    }

    /// Feeds the outcome of a query's request back into the query.
    pub(crate) fn query_outcome(
        &mut self,
        now: Timestamp,
        qid: u64,
        dest: SocketAddrV4,
        was_slow: bool,
        outcome: Result<(SocketId, Reply), ()>,
        tx: &mut TxQueue,
    ) {
        let own = *self.table.id();
        let Some(q) = self.queries.get_mut(&qid) else { return };
        match outcome {
            Ok((_, reply)) => {
                let ok = reply.error == 0;
                let copy = ok.then(|| reply.clone());
                q.on_reply(reply, was_slow, &own, |a| NodeId(tern_crypto::node_id(*a)));
                if let Some(reply) = copy {
                    self.push_event(RpcEvent::QueryReply { query: QueryId(qid), reply });
                }
            }
            Err(()) => {
                for referrer in q.on_timeout(dest, was_slow) {
                    self.send_down_hint(now, referrer, dest, tx);
                }
            }
        }
        self.drive_query(now, qid, tx);
    }

    /// Tells `to` that `dead` did not answer (rate limited per tick).
    fn send_down_hint(
        &mut self,
        now: Timestamp,
        to: SocketAddrV4,
        dead: SocketAddrV4,
        tx: &mut TxQueue,
    ) {
        if self.down_hints_sent >= MAX_DOWN_HINTS_PER_TICK {
            return;
        }
        let Some(tid) = self.io.alloc_tid() else { return };
        self.down_hints_sent += 1;
        let value = tern_wire::cursor::ipv4_to_bytes(&dead);
        let req = Request {
            tid,
            to,
            id: None,
            token: None,
            internal: true,
            command: InternalCommand::DownHint as u64,
            target: None,
            value: Some(&value),
        };
        let retries = self.config.retries;
        self.send_request(now, req, None, Owner::DownHint, retries, tx);
    }

    /// The bootstrap walk ended (spec §11 and §5.5).
    fn on_bootstrapped(&mut self, now: Timestamp, tx: &mut TxQueue) {
        self.bootstrapped = true;
        match self.config.ephemeral {
            Some(false) => {
                // Forced persistence: no firewall test (`ephemeral: false` clears
                // `firewalled`), persistent as soon as our address is known.
                self.firewalled = false;
                if let Some(addr) = self.public_addr().filter(|a| a.port() != 0) {
                    self.become_persistent(now, addr, tx);
                }
            }
            None if self.firewalled => self.start_firewall_test(now, true, tx),
            _ => {}
        }
        self.push_event(RpcEvent::Bootstrapped);
    }

    /// Sends PING_NAT (value = our server port) to up to 5 recently seen nodes; replies
    /// that reach the server socket prove it is reachable unsolicited (spec §5.5).
    fn start_firewall_test(&mut self, now: Timestamp, firewall_only: bool, tx: &mut TxQueue) {
        if self.firewall_test.is_some() || self.public_addr().is_none_or(|a| a.port() == 0) {
            return;
        }
        let mut nodes: Vec<_> = self.table.iter().map(|n| (n.seen, n.addr)).collect();
        nodes.sort_by_key(|n| std::cmp::Reverse(n.0));
        let mut targets: Vec<SocketAddrV4> =
            nodes.into_iter().take(FIREWALL_TEST_NODES).map(|(_, a)| a).collect();
        for b in &self.config.bootstrap {
            if targets.len() < FIREWALL_TEST_NODES && !targets.contains(b) {
                targets.push(*b);
            }
        }
        let round = self.next_handle();
        self.firewall_test = Some(FirewallTest {
            round,
            asked: targets.len(),
            answered: 0,
            reachable: 0,
            sampler: NatSampler::new(),
            firewall_only,
        });
        let port = self.config.server_port.to_le_bytes();
        for to in targets {
            let Some(tid) = self.io.alloc_tid() else { break };
            let req = Request {
                tid,
                to,
                id: None,
                token: None,
                internal: true,
                command: InternalCommand::PingNat as u64,
                target: None,
                value: Some(&port),
            };
            self.send_request(now, req, None, Owner::PingNat(round), 1, tx);
        }
    }

    /// One PING_NAT of the firewall test finished (`None`: timed out).
    pub(crate) fn firewall_reply(
        &mut self,
        now: Timestamp,
        round: u64,
        outcome: Option<(SocketId, Reply)>,
        tx: &mut TxQueue,
    ) {
        let Some(test) = self.firewall_test.as_mut().filter(|t| t.round == round) else { return };
        test.answered += 1;
        if let Some((socket, reply)) = outcome
            && socket == SocketId::SERVER
        {
            test.reachable += 1;
            test.sampler.add(*reply.to.ip(), reply.to.port());
        }
        if test.answered < test.asked {
            return;
        }
        let Some(test) = self.firewall_test.take() else { return };
        let needed = if test.asked < FIREWALL_TEST_NODES { 1 } else { 3 };
        let same_host = test.sampler.host().is_some() && test.sampler.host() == self.nat.host();
        let open =
            test.reachable >= needed && same_host && test.sampler.port() == self.config.server_port;
        if !open {
            return;
        }
        self.firewalled = false;
        // Adopt the probe's sampler, as dht-rpc does (`this._nat = natSampler` in
        // `_updateNetworkState`): it saw our server socket, while the old one sampled the
        // client socket we sent from while firewalled. Keeping the old one made us
        // persistent as H32(host:client port), an id no one could verify.
        self.nat = test.sampler;
        if !test.firewall_only
            && let Some(addr) = self.public_addr().filter(|a| a.port() != 0)
        {
            self.become_persistent(now, addr, tx);
        }
    }

    /// The lifecycle this node reached, for its followers.
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            bootstrapped: self.bootstrapped,
            firewalled: self.firewalled,
            persistent: self.persistent.then(|| *self.table.id()),
        }
    }

    /// Adopts the leader's lifecycle (a follower shard; idempotent, so a leader may
    /// send it again). Emits [`RpcEvent::Bootstrapped`] and [`RpcEvent::Persistent`]
    /// as the leader's own walk and firewall test did; a follower never walks towards
    /// its new id itself, as the leader's walk already announced the shared address.
    /// Persistence is one-way, as in dht-rpc: a later `persistent: None` is ignored.
    pub fn follow(&mut self, leader: Lifecycle) {
        self.firewalled = leader.firewalled && !self.persistent;
        if let Some(id) = leader.persistent
            && !self.persistent
        {
            self.table.rebuild(id);
            self.persistent = true;
            self.firewalled = false;
            self.sampled_anonymous.clear();
            self.push_event(RpcEvent::Persistent { id });
        }
        if leader.bootstrapped && !self.bootstrapped {
            self.bootstrapped = true;
            self.push_event(RpcEvent::Bootstrapped);
        }
    }

    /// Takes the id `H32(addr)`, re-files the table under it and walks towards it so
    /// that nodes near our new id learn about us.
    fn become_persistent(&mut self, now: Timestamp, addr: SocketAddrV4, tx: &mut TxQueue) {
        if self.persistent {
            return;
        }
        let id = NodeId(tern_crypto::node_id(addr));
        self.table.rebuild(id);
        self.persistent = true;
        self.firewalled = false;
        self.sampled_anonymous.clear();
        self.push_event(RpcEvent::Persistent { id });
        self.refresh(now, tx);
    }
}
