//! [`ApiNode`]: a [`Node`] wrapped for the Rust API. It runs on a driver thread and
//! routes each operation's events to the channel of the caller that started it.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures_channel::{mpsc, oneshot};
use tern_base::{Endpoint, NodeId, OpenError, SocketId, SocketOp, SocketSpec, Timestamp, TxQueue};
use tern_core::{ConnEvent, ListenerId, Node, NodeCommand, NodeEvent, NodeStats};
use tern_dht::{DhtEvent, OpError, OpId, OpOutput};
use tern_rpc::{Lifecycle, TableChange};

use crate::api::conn::{SelfHandle, Server, Streams};
use crate::api::error::DhtError;
use crate::api::pending::LookupReply;
use crate::api::shard::{ShardLink, Steer, TABLE_BATCH_MAX};
use crate::api::stream::SecureStream;

/// Where the outcome of one operation goes.
#[derive(Debug)]
pub enum Route {
    /// Stream replies, then close.
    Lookup(mpsc::Sender<LookupReply>),
    /// One final result.
    Once(oneshot::Sender<Result<OpOutput, DhtError>>),
    /// A ping's outcome.
    Ping(oneshot::Sender<Result<bool, DhtError>>),
    /// Nobody waits (re-announces, destroy's unannounces).
    Ignore,
    /// A connect's stream.
    Connect(oneshot::Sender<Result<SecureStream, DhtError>>),
    /// A listen: the server handle once its first announce finished.
    Listen {
        /// The listening public key.
        public_key: [u8; 32],
        /// Who waits.
        waiter: oneshot::Sender<Result<Server, DhtError>>,
        /// The handle, made when the listener registered.
        server: Option<Server>,
    },
}

/// A command from an API handle (opaque).
#[derive(Debug)]
pub enum ApiCommand {
    /// A node operation and where its result goes (boxed: a command carrying a key
    /// pair is ~10× the other variants, and mailbox slots are sized by the largest).
    Op(Box<NodeCommand>, Route),
    /// A snapshot of the counters.
    Stats(oneshot::Sender<Result<NodeStats, DhtError>>),
    /// Up to `limit` routing-table addresses, most recently heard from first.
    TableNodes(usize, oneshot::Sender<Result<Vec<SocketAddrV4>, DhtError>>),
    /// A datagram another shard of the same node received on the shared server
    /// socket and passed here (see `shard`); `hops` counts passes so far.
    Forwarded { from: SocketAddrV4, data: Box<[u8]>, hops: u8 },
    /// Unannounce everything, then close.
    Destroy(oneshot::Sender<Result<(), DhtError>>),
    /// A stream's handle changed its pipe: move its bytes.
    Pump(u32),
    /// Routing-table changes a sibling shard made (see `shard`): applied to this
    /// shard's table as if learned here, and not passed on.
    TableChanges(Arc<[TableChange]>),
    /// The leader shard's lifecycle, adopted by a follower (see `shard`).
    Lifecycle(Lifecycle),
}

/// State the API handle reads without a round trip to the node's thread.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub local: Vec<SocketAddrV4>,
    pub bootstrapped: bool,
    pub persistent: Option<NodeId>,
    pub ready_waiters: Vec<oneshot::Sender<Result<(), DhtError>>>,
    pub closed: bool,
}

/// A destroy in progress: who waits, and the unannounces still running.
type Destroying = (oneshot::Sender<Result<(), DhtError>>, Vec<OpId>);

/// The endpoint a [`crate::Dht`] runs as on its driver thread (opaque: it wraps a
/// `tern_core::Node` and routes results back to API callers).
pub struct ApiNode {
    node: Node,
    routes: HashMap<OpId, Route>,
    shared: Arc<Mutex<Shared>>,
    destroying: Option<Destroying>,
    closed: bool,
    /// Set when this node is one shard of a sharded identity.
    shard: Option<ShardLink>,
    /// Lookup replies dropped because the caller did not read fast enough.
    pub dropped_replies: u64,
    /// Connections and their pipes.
    streams: Streams,
    /// This endpoint's own handle (streams nudge the node through it).
    me: SelfHandle,
    /// Targets (`H32(public key)`) of this node's listeners.
    listened: HashMap<ListenerId, [u8; 32]>,
    /// A leader shard: the lifecycle every follower has taken so far.
    lifecycle_shared: Lifecycle,
    /// A leader shard: the last hand-over found a follower's mailbox full (or gone),
    /// so the next try waits for the node's own next timer instead of the next turn.
    lifecycle_refused: bool,
}

impl ApiNode {
    pub(crate) fn new(node: Node, shared: Arc<Mutex<Shared>>, me: SelfHandle) -> Self {
        // A bootstrapper (configured public address) is persistent from the start and
        // never emits the Persistent event, so record it here.
        if let Some(id) = node.rpc().persistent_id() {
            shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).persistent = Some(id);
        }
        Self {
            node,
            routes: HashMap::new(),
            shared,
            destroying: None,
            closed: false,
            shard: None,
            dropped_replies: 0,
            streams: Streams::default(),
            me,
            listened: HashMap::new(),
            lifecycle_shared: Lifecycle::default(),
            lifecycle_refused: false,
        }
    }

    /// Makes this node one shard of a sharded identity.
    pub(crate) fn with_shard(mut self, link: ShardLink) -> Self {
        // Stream ids name this shard, so UDX packets on the shared port find it.
        self.node.connections().set_shard(link.index, link.count);
        // Table changes go to the siblings (`broadcast_table_changes`).
        self.node.record_table_changes(link.count > 1);
        self.shard = Some(link);
        self
    }

    /// Hands a datagram to the node — or, for a sharded node's server socket, to the
    /// shard that should handle it (see `shard`).
    fn receive(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
        tx: &mut TxQueue,
        hops: u8,
    ) {
        let link = match &self.shard {
            Some(link) if socket == SocketId::SERVER && link.ready() => link,
            _ => {
                self.node.handle_datagram(now, socket, from, data, tx);
                self.drain(now, tx);
                return;
            }
        };
        let steer = match link.steer(data) {
            // A shard not yet persistent would refuse storage commands; the owner may
            // not, so the read goes there as any storage request does.
            Steer::Unstored(owner) if !self.node.rpc().is_persistent() => Steer::Owner(owner),
            Steer::Unstored(_) => Steer::Here,
            steer => steer,
        };
        if let Steer::Owner(owner) = steer
            && owner != link.index
            && hops == 0
        {
            if link.forward(owner, from, data, 1) {
                link.counters.forwarded_requests.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let unmatched = self.node.rpc().stats().unmatched_responses;
        self.node.handle_datagram(now, socket, from, data, tx);
        let next_hops = usize::from(hops) + 1;
        if steer == Steer::Response
            && self.node.rpc().stats().unmatched_responses > unmatched
            && next_hops < link.count
            && link.forward((link.index + 1) % link.count, from, data, next_hops as u8)
        {
            link.counters.forwarded_responses.fetch_add(1, Ordering::Relaxed);
        }
        self.drain(now, tx);
    }

    /// Sends one batch of the node's own routing-table changes to the sibling shards.
    /// Runs from `handle_timeout`, which `poll_timeout` makes due at once while
    /// changes wait: so every change made during a loop turn (a whole receive batch)
    /// leaves in one message per sibling at the end of that turn, not one per change.
    fn broadcast_table_changes(&mut self) {
        let Some(link) = self.shard.as_ref().filter(|l| l.ready()) else { return };
        let mut batch = Vec::new();
        while batch.len() < TABLE_BATCH_MAX {
            match self.node.poll_table_change() {
                Some(change) => batch.push(change),
                None => break,
            }
        }
        if !batch.is_empty() {
            link.broadcast_table(&Arc::from(batch));
        }
    }

    /// Whether this shard has table changes to broadcast (and siblings to take them).
    fn table_changes_waiting(&self) -> bool {
        self.shard.as_ref().is_some_and(ShardLink::ready) && self.node.has_table_changes()
    }

    /// A leader whose lifecycle changed since every follower last took it (and whose
    /// siblings are in place to take it now).
    fn lifecycle_waiting(&self) -> bool {
        self.shard.as_ref().is_some_and(|l| l.leads() && l.ready())
            && self.node.rpc().lifecycle() != self.lifecycle_shared
    }

    /// Hands a changed lifecycle to the followers; kept pending until all took it.
    fn share_lifecycle(&mut self) {
        if !self.lifecycle_waiting() {
            return;
        }
        let now = self.node.rpc().lifecycle();
        let taken = self.shard.as_ref().is_some_and(|l| l.send_lifecycle(now));
        if taken {
            self.lifecycle_shared = now;
        }
        self.lifecycle_refused = !taken;
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Routes every pending node event.
    fn drain(&mut self, now: Timestamp, tx: &mut TxQueue) {
        while let Some(event) = self.node.poll_event() {
            match event {
                NodeEvent::Stream(e) => {
                    self.streams.on_stream_event(&mut self.node, now, e, tx);
                    // Pumping may have produced more UDX events.
                    self.node.flush_events(now, tx);
                }
                NodeEvent::Conn(ConnEvent::Connection(conn)) => {
                    let me = self.me.get();
                    self.streams.on_connection(
                        &mut self.node,
                        now,
                        *conn,
                        me,
                        &mut self.routes,
                        tx,
                    );
                    self.node.flush_events(now, tx);
                }
                NodeEvent::Conn(ConnEvent::ConnectFailed { op, error }) => {
                    if let Some(Route::Connect(w)) = self.routes.remove(&op) {
                        let _ = w.send(Err(DhtError::Connect(error)));
                    }
                }
                NodeEvent::Listening { op, listener } => match (self.routes.get_mut(&op), listener)
                {
                    (Some(Route::Listen { public_key, server, .. }), Some(id)) => {
                        if let Some(me) = self.me.get() {
                            *server = Some(self.streams.listener(id, *public_key, me.clone()));
                        }
                        let target = tern_crypto::hash32(public_key);
                        if let Some(link) = &self.shard {
                            link.set_listening(target, true);
                        }
                        self.listened.insert(id, target);
                    }
                    (Some(Route::Listen { .. }), None) => {
                        if let Some(Route::Listen { waiter, .. }) = self.routes.remove(&op) {
                            let _ = waiter.send(Err(DhtError::AlreadyListening));
                        }
                    }
                    _ => {}
                },
                NodeEvent::Bootstrapped => {
                    let mut s = self.shared();
                    s.bootstrapped = true;
                    for w in s.ready_waiters.drain(..) {
                        let _ = w.send(Ok(()));
                    }
                }
                NodeEvent::Persistent(id) => self.shared().persistent = Some(id),
                NodeEvent::Ping { op, answered, .. } => {
                    if let Some(Route::Ping(tx)) = self.routes.remove(&op) {
                        let _ = tx.send(Ok(answered));
                    }
                }
                NodeEvent::Dht(DhtEvent::LookupReply { op, from, peers, bump }) => {
                    if let Some(Route::Lookup(tx)) = self.routes.get_mut(&op)
                        && tx.try_send(LookupReply { from, peers, bump }).is_err()
                    {
                        self.dropped_replies += 1;
                    }
                }
                NodeEvent::Dht(DhtEvent::Done { op, result }) => self.done(op, result),
            }
        }
    }

    fn done(&mut self, op: OpId, result: Result<OpOutput, OpError>) {
        match self.routes.remove(&op) {
            Some(Route::Once(tx)) => {
                let _ = tx.send(result.map_err(DhtError::Op));
            }
            // A listener is usable even when its first announce reached nobody (it is
            // still reachable directly, and re-announces every few minutes).
            Some(Route::Listen { waiter, server, .. }) => {
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "listen: first announce failed");
                }
                let _ = waiter.send(server.ok_or(DhtError::Closed));
            }
            Some(Route::Connect(_)) => {}
            // Dropping the sender ends the caller's stream.
            Some(Route::Lookup(_)) | Some(Route::Ping(_)) | Some(Route::Ignore) | None => {}
        }
        if let Some((_, waiting)) = self.destroying.as_mut() {
            waiting.retain(|o| *o != op);
            if waiting.is_empty() {
                self.finish_destroy();
            }
        }
    }

    fn finish_destroy(&mut self) {
        if let Some((tx, _)) = self.destroying.take() {
            let _ = tx.send(Ok(()));
        }
        self.closed = true;
        let mut s = self.shared();
        s.closed = true;
        for w in s.ready_waiters.drain(..) {
            let _ = w.send(Err(DhtError::Closed));
        }
    }
}

impl Endpoint for ApiNode {
    type Command = ApiCommand;

    fn sockets(&self) -> Vec<SocketSpec> {
        self.node.sockets()
    }

    fn bound(&mut self, now: Timestamp, local: &[SocketAddrV4], tx: &mut TxQueue) {
        self.shared().local = local.to_vec();
        // The interface addresses a wildcard socket offers to peers behind our NAT.
        if local.first().is_some_and(|a| a.ip().is_unspecified()) {
            self.node.set_lan_hosts(tern_udp::ipv4_interface_addresses());
        }
        self.node.bound(now, local, tx);
        self.drain(now, tx);
    }

    fn handle_datagram(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
        tx: &mut TxQueue,
    ) {
        self.receive(now, socket, from, data, tx, 0);
    }

    fn handle_command(&mut self, now: Timestamp, command: ApiCommand, tx: &mut TxQueue) {
        match command {
            ApiCommand::Op(cmd, route) => {
                if self.destroying.is_some() || self.closed {
                    return;
                }
                if let NodeCommand::Unlisten(id) = &*cmd {
                    self.streams.remove_listener(*id);
                    if let (Some(target), Some(link)) = (self.listened.remove(id), &self.shard) {
                        link.set_listening(target, false);
                    }
                }
                if let Some(op) = self.node.handle_command(now, *cmd, tx) {
                    self.routes.insert(op, route);
                }
            }
            ApiCommand::Stats(tx) => {
                let _ = tx.send(Ok(self.node.stats()));
            }
            ApiCommand::TableNodes(limit, tx) => {
                let mut nodes: Vec<_> = self.node.rpc().table().iter().collect();
                // Most recently heard from first: the likeliest to be up later.
                nodes.sort_by_key(|n| std::cmp::Reverse(n.seen));
                let _ = tx.send(Ok(nodes.into_iter().take(limit).map(|n| n.addr).collect()));
            }
            ApiCommand::Pump(id) => {
                self.streams.pump(&mut self.node, now, id, tx);
                self.node.flush_events(now, tx);
            }
            ApiCommand::Forwarded { from, data, hops } => {
                self.receive(now, SocketId::SERVER, from, &data, tx, hops);
            }
            ApiCommand::TableChanges(changes) => {
                let applied = changes.iter().filter(|c| self.node.apply_table_change(**c)).count();
                if let Some(link) = &self.shard {
                    link.counters.table_applied.fetch_add(applied as u64, Ordering::Relaxed);
                }
            }
            ApiCommand::Lifecycle(leader) => {
                self.node.follow(leader);
                self.node.flush_events(now, tx);
            }
            ApiCommand::Destroy(done) => {
                let mut waiting = Vec::new();
                for (topic, key_pair) in self.node.active_announcements() {
                    let cmd = NodeCommand::Unannounce { topic, key_pair };
                    if let Some(op) = self.node.handle_command(now, cmd, tx) {
                        self.routes.insert(op, Route::Ignore);
                        waiting.push(op);
                    }
                }
                self.destroying = Some((done, waiting));
                if self.destroying.as_ref().is_some_and(|(_, w)| w.is_empty()) {
                    self.finish_destroy();
                }
            }
        }
        self.drain(now, tx);
    }

    fn handle_timeout(&mut self, now: Timestamp, tx: &mut TxQueue) {
        // Also called early, only to broadcast table changes: the node's timers (and
        // its per-call work) run only when due.
        if now >= self.node.poll_timeout() {
            self.node.handle_timeout(now, tx);
            self.drain(now, tx);
        }
        self.broadcast_table_changes();
        self.share_lifecycle();
    }

    fn poll_timeout(&self) -> Timestamp {
        // Due at once while table changes wait: the driver calls `handle_timeout` in
        // the same loop turn, after the turn's datagrams and commands.
        if self.table_changes_waiting() || (self.lifecycle_waiting() && !self.lifecycle_refused) {
            return Timestamp::ZERO;
        }
        self.node.poll_timeout()
    }

    fn poll_socket_op(&mut self) -> Option<SocketOp> {
        self.node.poll_socket_op()
    }

    fn socket_opened(
        &mut self,
        now: Timestamp,
        id: SocketId,
        result: Result<SocketAddrV4, OpenError>,
        tx: &mut TxQueue,
    ) {
        self.node.socket_opened(now, id, result, tx);
        self.drain(now, tx);
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}
