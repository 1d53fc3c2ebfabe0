//! The answering side of dht-rpc: validation, tokens, the internal commands, and the
//! [`Responder`] through which the application (hyperdht) answers its own commands
//! (spec §3.6–§3.10; ref: dht-rpc index.js `_onrequest`, lib/io.js `Request`).
//!
//! This is the hot path of a bootstrap node: decode → validate id → table → reply,
//! encoded straight into the driver's [`TxQueue`] with closer nodes read from the table
//! into a stack array. Nothing here allocates per request.

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::tokens::HostTokens;
use tern_base::{NodeId, SocketId, Timestamp, TxQueue};
use tern_wire::rpc::{InternalCommand, Request, Response, error_code};
use tern_wire::{AddrList, Encode};

use crate::io::{Inflight, Owner};
use crate::node::{DelayedPing, Rpc};
use crate::stats::{CommandSlot, DropReason, RpcStats};
use crate::table::{K, RoutingTable};

/// Largest reply we encode; dht-rpc values are expected to fit one MTU-ish datagram
/// but mutable values can be larger, so allow the UDP maximum.
pub const MAX_DATAGRAM: usize = 65_507;
/// Most DELAYED_PING replies waiting at once; more are refused (no reply), which is what
/// a requester asking for too long a delay sees anyway.
pub const MAX_DELAYED_PINGS: usize = 1024;
/// Concurrent liveness checks caused by DOWN_HINTs (dht-rpc: 10).
pub const MAX_DOWN_HINT_CHECKS: usize = 10;
/// The recommended [`crate::RpcConfig::max_reply_ratio`] for a public node (what `tern
/// node` runs with; dht-rpc has no such cap). A request without a valid token may come
/// from a spoofed source, so its reply is bounded to this many times its size. 20× lets
/// every ordinary reply through whole — FIND_NODE with 20 closer nodes is ~4× a
/// client's 43-byte request, a LOOKUP with 20 peers ~20× — while a 16 KiB mutable
/// value fetched by a 47-byte MUTABLE_GET (350×) can no longer be reflected at a victim.
pub const RECOMMENDED_MAX_REPLY_RATIO: u32 = 20;
/// Bytes of one closer node on the wire (IPv4 + port).
const CLOSER_NODE_BYTES: usize = 6;
/// The largest length prefix of a reply value (compact-encoding uint up to 65 535).
const VALUE_PREFIX_MAX: usize = 3;

/// An application-space request that passed the id and token checks.
#[derive(Debug, Clone, Copy)]
pub struct IncomingRequest<'a> {
    /// The sender's address.
    pub from: SocketAddrV4,
    /// The socket it arrived on (replies leave from it).
    pub socket: SocketId,
    /// The sender's id, when it matched `H32(from)`.
    pub from_id: Option<NodeId>,
    /// The decoded request (borrows the datagram). A present token is valid.
    pub request: Request<'a>,
}

/// The application side of a node: hyperdht's command handlers.
pub trait Handler {
    /// Handles one request; answer through `out` (or not at all, to stay silent).
    fn on_request(&mut self, now: Timestamp, req: &IncomingRequest<'_>, out: &mut Responder<'_>);
}

/// A handler that answers every application command with UNKNOWN_COMMAND, as a bare
/// dht-rpc node does.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoApplication;

impl Handler for NoApplication {
    fn on_request(&mut self, _: Timestamp, _: &IncomingRequest<'_>, out: &mut Responder<'_>) {
        out.error(error_code::UNKNOWN_COMMAND);
    }
}

/// Writes the answer to one request into the transmit queue.
pub struct Responder<'a> {
    pub(crate) tx: &'a mut TxQueue,
    pub(crate) table: &'a RoutingTable,
    pub(crate) tokens: &'a mut HostTokens,
    pub(crate) stats: &'a mut RpcStats,
    /// Our id, if persistent.
    pub(crate) own_id: Option<NodeId>,
    pub(crate) socket: SocketId,
    pub(crate) from: SocketAddrV4,
    pub(crate) tid: u16,
    pub(crate) target: Option<[u8; 32]>,
    /// The counters the replies to this request go to.
    pub(crate) slot: CommandSlot,
    /// Most bytes the reply to the requester may take (`None`: no cap): set for
    /// requests without a valid token when `RpcConfig::max_reply_ratio` is on.
    pub(crate) budget: Option<usize>,
}

/// Which optional fields a reply carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyFields {
    /// Include a fresh token for the requester's host.
    pub token: bool,
    /// Include closer nodes when the request had a target.
    pub closer_nodes: bool,
}

impl ReplyFields {
    /// The generic reply: token and closer nodes.
    pub const GENERIC: Self = Self { token: true, closer_nodes: true };
    /// Neither (ANNOUNCE/UNANNOUNCE success, pings).
    pub const BARE: Self = Self { token: false, closer_nodes: false };
    /// Closer nodes only (FIND_NODE, errors).
    pub const CLOSER: Self = Self { token: false, closer_nodes: true };
}

impl Responder<'_> {
    /// True when the node is persistent (hyperdht only serves storage then).
    pub fn is_persistent(&self) -> bool {
        self.own_id.is_some()
    }

    /// Our id, if persistent.
    pub fn own_id(&self) -> Option<&NodeId> {
        self.own_id.as_ref()
    }

    /// The requester.
    pub fn from(&self) -> SocketAddrV4 {
        self.from
    }

    /// The id sent in datagrams leaving on this socket: only persistent nodes on their
    /// server socket send one.
    fn id_field(&self) -> Option<[u8; 32]> {
        self.own_id.filter(|_| self.socket == SocketId::SERVER).map(|id| id.0)
    }

    /// Sends a response with the given fields to the requester. Over the reply budget
    /// (an unauthenticated request, see [`RECOMMENDED_MAX_REPLY_RATIO`]) the farthest
    /// closer nodes are left out first, then the value, never the token or the error:
    /// both are things the protocol lets a node omit (the requester walks on to other
    /// nodes, or asks again with the token it was given).
    pub fn reply_with(&mut self, value: Option<&[u8]>, error: u64, fields: ReplyFields) {
        let token = fields.token.then(|| self.tokens.token(*self.from.ip()));
        let mut closer = [SocketAddrV4::new([0, 0, 0, 0].into(), 0); K];
        let mut n = 0;
        if fields.closer_nodes
            && let Some(target) = self.target
        {
            for (slot, node) in closer.iter_mut().zip(self.table.closest(&NodeId(target), K)) {
                *slot = node.addr;
                n += 1;
            }
        }
        let id = self.id_field();
        let mut res = Response {
            tid: self.tid,
            to: self.from,
            id: id.as_ref(),
            token: token.as_ref(),
            closer_nodes: AddrList::Items(&closer[..n]),
            error,
            value,
        };
        if let Some(budget) = self.budget {
            let len = res.encoded_len();
            if len > budget {
                self.stats.replies_trimmed += 1;
                let full = n;
                // Whole nodes first by arithmetic, then one at a time for the count
                // prefix (bounded by k iterations).
                n -= (len - budget).div_ceil(CLOSER_NODE_BYTES).min(n);
                res.closer_nodes = AddrList::Items(&closer[..n]);
                while n > 0 && res.encoded_len() > budget {
                    n -= 1;
                    res.closer_nodes = AddrList::Items(&closer[..n]);
                }
                if res.value.is_some() && res.encoded_len() > budget {
                    self.stats.values_withheld += 1;
                    res.value = None;
                    // Room freed by the value goes back to closer nodes.
                    while n < full {
                        res.closer_nodes = AddrList::Items(&closer[..n + 1]);
                        if res.encoded_len() > budget {
                            res.closer_nodes = AddrList::Items(&closer[..n]);
                            break;
                        }
                        n += 1;
                    }
                }
            }
        }
        if self.push(self.from, &res) {
            self.stats.count_reply(self.slot, error);
        }
    }

    /// Bytes a value may take in a reply with `fields` before the reply budget forces
    /// it out (`None`: no cap), assuming no closer nodes. Handlers that can shorten
    /// their value (LOOKUP: fewer peers) size it with this.
    pub fn value_budget(&self, fields: ReplyFields) -> Option<usize> {
        let budget = self.budget?;
        let token = fields.token.then_some([0u8; 32]);
        let id = self.id_field();
        let bare = Response {
            tid: self.tid,
            to: self.from,
            id: id.as_ref(),
            token: token.as_ref(),
            closer_nodes: AddrList::EMPTY,
            error: error_code::OK,
            value: None,
        };
        Some(budget.saturating_sub(bare.encoded_len() + VALUE_PREFIX_MAX))
    }

    /// Counts a reply a handler shortened to fit [`Responder::value_budget`].
    pub fn count_trimmed(&mut self) {
        self.stats.replies_trimmed += 1;
    }

    /// The generic reply: value, token and closer nodes (hyperdht's `req.reply`).
    pub fn reply(&mut self, value: Option<&[u8]>) {
        self.reply_with(value, error_code::OK, ReplyFields::GENERIC);
    }

    /// An error reply: closer nodes when the request had a target, no token.
    pub fn error(&mut self, code: u64) {
        self.reply_with(None, code, ReplyFields::CLOSER);
    }

    /// Forwards the request to `to` with a new value, keeping tid, command and target
    /// (spec §3.10); the final hop answers the original requester.
    pub fn relay(&mut self, to: SocketAddrV4, request: &Request<'_>, value: &[u8]) {
        let id = self.id_field();
        let fwd = Request {
            tid: request.tid,
            to,
            id: id.as_ref(),
            token: None,
            internal: request.internal,
            command: request.command,
            target: request.target,
            value: Some(value),
        };
        self.push(to, &fwd);
    }

    /// Sends a response bearing this request's tid to someone other than the requester
    /// (a relay answering the client for the server, PEER_HANDSHAKE FROM_SERVER).
    pub fn respond_to(&mut self, to: SocketAddrV4, value: &[u8]) {
        let id = self.id_field();
        let res = Response {
            tid: self.tid,
            to,
            id: id.as_ref(),
            token: None,
            closer_nodes: AddrList::EMPTY,
            error: error_code::OK,
            value: Some(value),
        };
        if self.push(to, &res) {
            self.stats.count_reply(self.slot, error_code::OK);
        }
    }

    /// Queues `msg` for `to`; false (and counted) when it did not fit.
    fn push(&mut self, to: SocketAddrV4, msg: &impl Encode) -> bool {
        let len = msg.encoded_len();
        if len > MAX_DATAGRAM
            || !self.tx.push_with(self.socket, to, None, len, |buf| msg.encode(buf).ok())
        {
            self.stats.drop(DropReason::TxQueueFull);
            return false;
        }
        true
    }
}

impl Rpc {
    pub(crate) fn responder<'a>(
        &'a mut self,
        tx: &'a mut TxQueue,
        socket: SocketId,
        from: SocketAddrV4,
        req: &Request<'_>,
    ) -> Responder<'a> {
        let own_id = self.persistent_id();
        Responder {
            tx,
            table: &self.table,
            tokens: &mut self.tokens,
            stats: &mut self.stats,
            own_id,
            socket,
            from,
            tid: req.tid,
            target: req.target.copied(),
            slot: CommandSlot::of(req.internal, req.command),
            budget: None,
        }
    }

    /// The reply budget of a request `req_len` bytes long: capped when the ratio is on
    /// and the request carried no token (one that carried a token only gets here once
    /// the token checked out: it proves the requester received an earlier reply of ours
    /// at this address, so the address is not spoofed).
    fn reply_budget(&self, req: &Request<'_>, req_len: usize) -> Option<usize> {
        let ratio = self.config.max_reply_ratio;
        (ratio > 0 && req.token.is_none()).then(|| req_len.saturating_mul(ratio as usize))
    }

    /// Handles a decoded request: token check, internal commands, or the application.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_request<H: Handler>(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        from_id: Option<NodeId>,
        (req, req_len): (Request<'_>, usize),
        handler: &mut H,
        tx: &mut TxQueue,
    ) {
        if let Some(token) = req.token
            && !self.tokens.check(*from.ip(), token)
        {
            self.stats.invalid_tokens += 1;
            // An invalid token authenticates nothing: capped like no token at all.
            let ratio = self.config.max_reply_ratio as usize;
            let budget = (ratio > 0).then(|| req_len.saturating_mul(ratio));
            let mut out = self.responder(tx, socket, from, &req);
            out.budget = budget;
            out.reply_with(None, error_code::INVALID_TOKEN, ReplyFields::GENERIC);
            return;
        }
        let budget = self.reply_budget(&req, req_len);
        if !req.internal {
            self.stats.app_requests += 1;
            if let CommandSlot::App(i) = CommandSlot::of(false, req.command) {
                self.stats.app_commands[i] += 1;
            }
            let incoming = IncomingRequest { from, socket, from_id, request: req };
            let mut out = self.responder(tx, socket, from, &req);
            out.budget = budget;
            handler.on_request(now, &incoming, &mut out);
            return;
        }
        let cmd = req.internal_command();
        self.stats.internal_requests[cmd.map_or(5, |c| c as usize)] += 1;
        match cmd {
            Some(InternalCommand::Ping) => {
                self.responder(tx, socket, from, &req).reply_with(None, 0, ReplyFields::BARE)
            }
            Some(InternalCommand::PingNat) => self.on_ping_nat(socket, from, &req, tx),
            Some(InternalCommand::FindNode) if req.target.is_some() => {
                let mut out = self.responder(tx, socket, from, &req);
                out.budget = budget;
                out.reply_with(None, 0, ReplyFields::CLOSER)
            }
            Some(InternalCommand::DownHint) => self.on_down_hint(now, socket, from, &req, tx),
            Some(InternalCommand::DelayedPing) => self.on_delayed_ping(now, socket, from, &req),
            Some(InternalCommand::FindNode) => self.stats.drop(DropReason::MalformedInternal),
            None => {
                let mut out = self.responder(tx, socket, from, &req);
                out.budget = budget;
                out.error(error_code::UNKNOWN_COMMAND)
            }
        }
    }

    /// PING_NAT: answer at the requester's host but at the port it names, so it learns
    /// whether that port is reachable unsolicited.
    fn on_ping_nat(
        &mut self,
        socket: SocketId,
        from: SocketAddrV4,
        req: &Request<'_>,
        tx: &mut TxQueue,
    ) {
        let port = match req.value {
            Some(&[lo, hi, ..]) => u16::from_le_bytes([lo, hi]),
            _ => return self.stats.drop(DropReason::MalformedInternal),
        };
        if port == 0 {
            // dht-rpc ignores it too; counted so no drop goes unseen.
            return self.stats.drop(DropReason::MalformedInternal);
        }
        let to = SocketAddrV4::new(*from.ip(), port);
        self.responder(tx, socket, to, req).reply_with(None, 0, ReplyFields::BARE);
    }

    /// DOWN_HINT: someone says a node of ours is down: check it (bounded), reply empty.
    fn on_down_hint(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        req: &Request<'_>,
        tx: &mut TxQueue,
    ) {
        let Some(value) = req.value.filter(|v| v.len() >= 6) else {
            return self.stats.drop(DropReason::MalformedInternal);
        };
        let mut addr = [0u8; 6];
        addr.copy_from_slice(&value[..6]);
        let id = NodeId(tern_crypto::node_id(tern_wire::cursor::ipv4_from_bytes(&addr)));
        if self.down_hint_checks < MAX_DOWN_HINT_CHECKS
            && let Some(node) = self.table.get_mut(&id)
            && (node.pinged != self.tick || node.down_hints == 0)
        {
            node.down_hints += 1;
            node.pinged = self.tick;
            let dest = node.addr;
            self.down_hint_checks += 1;
            self.send_check(now, dest, id, tx);
        }
        self.responder(tx, socket, from, req).reply_with(None, 0, ReplyFields::BARE);
    }

    /// DELAYED_PING: reply empty after the requested delay, if it is not too long.
    fn on_delayed_ping(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        req: &Request<'_>,
    ) {
        let delay = match req.value {
            Some(&[a, b, c, d, ..]) => {
                Duration::from_millis(u64::from(u32::from_le_bytes([a, b, c, d])))
            }
            _ => return self.stats.drop(DropReason::MalformedInternal),
        };
        if delay > self.config.max_ping_delay || self.delayed_pings.len() >= MAX_DELAYED_PINGS {
            return self.stats.drop(DropReason::DelayedPingRefused);
        }
        self.delayed_pings.push(DelayedPing { at: now + delay, socket, from, tid: req.tid });
    }

    /// Sends the DELAYED_PING replies that are due.
    pub(crate) fn flush_delayed_pings(&mut self, now: Timestamp, tx: &mut TxQueue) {
        let mut i = 0;
        while i < self.delayed_pings.len() {
            if self.delayed_pings[i].at <= now {
                let p = self.delayed_pings.swap_remove(i);
                let req = Request {
                    tid: p.tid,
                    to: p.from,
                    id: None,
                    token: None,
                    internal: true,
                    command: InternalCommand::DelayedPing as u64,
                    target: None,
                    value: None,
                };
                self.responder(tx, p.socket, p.from, &req).reply_with(None, 0, ReplyFields::BARE);
            } else {
                i += 1;
            }
        }
    }

    /// Pings a table node to check it is alive (eviction, ping-some, down hints).
    pub(crate) fn send_check(
        &mut self,
        now: Timestamp,
        dest: SocketAddrV4,
        id: NodeId,
        tx: &mut TxQueue,
    ) {
        let Some(tid) = self.io.alloc_tid() else { return };
        let req = Request {
            tid,
            to: dest,
            id: None,
            token: None,
            internal: true,
            command: InternalCommand::Ping as u64,
            target: None,
            value: None,
        };
        self.send_request(now, req, Some(id), Owner::Check(id), 3, tx);
    }

    /// Encodes and starts tracking one of our requests (adding our id when the sending
    /// socket is the server socket and we are persistent).
    pub(crate) fn send_request(
        &mut self,
        now: Timestamp,
        req: Request<'_>,
        dest_id: Option<NodeId>,
        owner: Owner,
        retries: u8,
        tx: &mut TxQueue,
    ) {
        let socket = self.sending_socket();
        let own = self.persistent_id().filter(|_| socket == SocketId::SERVER).map(|id| id.0);
        let req = Request { id: own.as_ref(), ..req };
        let timeout = match req.internal_command() {
            // DELAYED_PING waits for the delay on top of the usual timeout.
            Some(InternalCommand::DelayedPing) => {
                let ms = req
                    .value
                    .and_then(|v| v.get(..4))
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                self.config.request_timeout + Duration::from_millis(u64::from(ms))
            }
            _ => self.config.request_timeout,
        };
        let inflight = Inflight {
            tid: req.tid,
            dest: req.to,
            dest_id,
            socket,
            bytes: req.to_vec(),
            sends: 0,
            max_sends: retries.saturating_add(1),
            timeout,
            deadline: Timestamp::NEVER,
            owner,
            force: false,
        };
        self.stats.requests_sent += 1;
        self.io.start(now, inflight, tx);
    }
}
