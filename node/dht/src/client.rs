//! hyperdht client operations on top of dht-rpc queries (spec §8.9; ref: hyperdht
//! index.js `lookup`, `announce`, `unannounce`, `findPeer`, `mutablePut/Get`,
//! `immutablePut/Get`).
//!
//! Each operation is a query towards a target, optionally followed by a commit round:
//! the query collects the closest nodes and the tokens they issued, the commit sends
//! the write (signed with the storing node's id and token) to each of them. Results
//! stream as [`DhtEvent`]s; every reply is verified here (signatures, hashes, seq) so
//! callers never see a forged value.

use std::collections::HashMap;
use std::net::SocketAddrV4;

use tern_base::{NodeId, Timestamp, TxQueue};
use tern_crypto::{KeyPair, PublicKey, Signature, sign, signable};
use tern_rpc::{QueryId, QuerySpec, Reply, ReqId, Rpc, RpcEvent};
use tern_wire::hyperdht::{Announce, Command, LookupReply, MutablePut, MutableRecord, PeerRecord};
use tern_wire::rpc::error_code;
use tern_wire::{AddrList, Decode, Encode, RelayPair};

/// Handle of one client operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// A peer record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's public key.
    pub public_key: [u8; 32],
    /// Its relays (at most 3 as stored by nodes).
    pub relay_addresses: Vec<SocketAddrV4>,
}

impl PeerInfo {
    fn from_record(r: &PeerRecord<'_>) -> Self {
        Self { public_key: *r.public_key, relay_addresses: r.relay_addresses.iter().collect() }
    }
}

/// A verified mutable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableValue {
    /// Sequence number.
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
    /// The signature (verified).
    pub signature: [u8; 64],
    /// The node that returned it.
    pub from: SocketAddrV4,
}

/// What a finished operation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutput {
    /// A lookup ended; `replies` replies carried records.
    Lookup {
        /// Replies that carried at least one record.
        replies: usize,
    },
    /// Writes stored by `stored` nodes (announce, unannounce, puts).
    Stored {
        /// Nodes that accepted the write.
        stored: usize,
    },
    /// find_peer: the first record found.
    Peer(Option<PeerInfo>),
    /// mutable_get: the best verified record.
    Mutable(Option<MutableValue>),
    /// immutable_get: the verified value.
    Immutable(Option<Vec<u8>>),
}

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The query reached no node that could store the write.
    #[error("no node answered with a valid id and token")]
    NoNodes,
    /// Every node refused or timed out during the commit round.
    #[error("every commit failed")]
    CommitFailed,
    /// A node already holds this seq with a different value.
    #[error("seq reused with a different value")]
    SeqReused,
    /// A node holds a higher seq.
    #[error("seq lower than the stored one")]
    SeqTooLow,
    /// Too many requests in flight on this node.
    #[error("too many requests in flight")]
    Busy,
}

/// Events of client operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtEvent {
    /// One LOOKUP reply's records (lookup, announce and unannounce stream them).
    LookupReply {
        /// The operation.
        op: OpId,
        /// The node that answered.
        from: SocketAddrV4,
        /// Its records.
        peers: Vec<PeerInfo>,
        /// The topic's bump.
        bump: u64,
    },
    /// The operation finished.
    Done {
        /// The operation.
        op: OpId,
        /// Its outcome.
        result: Result<OpOutput, OpError>,
    },
}

#[derive(Debug)]
enum Kind {
    Lookup { replies: usize },
    Announce { key_pair: KeyPair, relay_addresses: Vec<SocketAddrV4> },
    Unannounce { key_pair: KeyPair, targets: Vec<Reply> },
    FindPeer,
    MutablePut { key_pair: KeyPair, seq: u64, value: Vec<u8>, signature: [u8; 64] },
    MutableGet { public_key: [u8; 32], min_seq: u64, latest: bool, best: Option<MutableValue> },
    ImmutablePut { value: Vec<u8> },
    ImmutableGet { hash: [u8; 32] },
}

#[derive(Debug)]
struct Op {
    target: NodeId,
    kind: Kind,
    query: Option<QueryId>,
    commits_pending: usize,
    stored: usize,
    seq_error: Option<OpError>,
    /// Announce commits that succeeded: (storing node, our address as it saw us).
    relays: Vec<RelayPair>,
}

/// Most relays remembered per announce (hyperdht keeps the nodes of one commit round:
/// k = 20 at most).
const MAX_RELAYS: usize = 20;

/// The client side of one hyperdht node.
#[derive(Debug, Default)]
pub struct DhtClient {
    ops: HashMap<u64, Op>,
    by_query: HashMap<QueryId, u64>,
    by_req: HashMap<ReqId, u64>,
    next: u64,
    events: std::collections::VecDeque<DhtEvent>,
    /// Relays of finished announces, until [`DhtClient::take_announce_relays`] takes
    /// them (the owner takes them on every `Done`, so this holds at most a few).
    finished_relays: HashMap<OpId, (NodeId, Vec<RelayPair>)>,
}

impl DhtClient {
    /// No operations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Operations in progress.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when no operation is in progress.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether [`DhtClient::poll_event`] has anything.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// The nodes that stored a finished announce, with our address as each saw it:
    /// a listening server offers these as holepunch relays (hyperdht's
    /// `announcer.relays`). Call on the op's `Done`; `None` for other ops.
    pub fn take_announce_relays(&mut self, op: OpId) -> Option<(NodeId, Vec<RelayPair>)> {
        self.finished_relays.remove(&op)
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        target: NodeId,
        command: Command,
        value: Option<Vec<u8>>,
        kind: Kind,
        tx: &mut TxQueue,
    ) -> OpId {
        self.next += 1;
        let id = self.next;
        let q = rpc.query(now, QuerySpec::new(target, false, command as u64, value), tx);
        self.by_query.insert(q, id);
        let op = Op {
            target,
            kind,
            query: Some(q),
            commits_pending: 0,
            stored: 0,
            seq_error: None,
            relays: Vec::new(),
        };
        self.ops.insert(id, op);
        OpId(id)
    }

    /// Streams the records announced under `topic`.
    pub fn lookup(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        topic: NodeId,
        tx: &mut TxQueue,
    ) -> OpId {
        self.start(rpc, now, topic, Command::Lookup, None, Kind::Lookup { replies: 0 }, tx)
    }

    /// Announces `key_pair` under `topic` on the closest nodes (LOOKUP + ANNOUNCE commit).
    pub fn announce(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        topic: NodeId,
        key_pair: KeyPair,
        relay_addresses: Vec<SocketAddrV4>,
        tx: &mut TxQueue,
    ) -> OpId {
        let kind = Kind::Announce { key_pair, relay_addresses };
        self.start(rpc, now, topic, Command::Lookup, None, kind, tx)
    }

    /// Removes `key_pair`'s record under `topic` from the nodes that list it.
    pub fn unannounce(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        topic: NodeId,
        key_pair: KeyPair,
        tx: &mut TxQueue,
    ) -> OpId {
        let kind = Kind::Unannounce { key_pair, targets: Vec::new() };
        self.start(rpc, now, topic, Command::Lookup, None, kind, tx)
    }

    /// Finds the record of the server with `public_key` (its relays).
    pub fn find_peer(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        public_key: &[u8; 32],
        tx: &mut TxQueue,
    ) -> OpId {
        let target = NodeId(tern_crypto::hash32(public_key));
        self.start(rpc, now, target, Command::FindPeer, None, Kind::FindPeer, tx)
    }

    /// Stores a signed mutable record under `H32(public key)`.
    pub fn mutable_put(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        key_pair: KeyPair,
        value: Vec<u8>,
        seq: u64,
        tx: &mut TxQueue,
    ) -> OpId {
        let pk = *key_pair.public_key().as_bytes();
        let signature = key_pair.sign(&signable::mutable_signable(seq, &value)).0;
        let target = NodeId(tern_crypto::hash32(&pk));
        let kind = Kind::MutablePut { key_pair, seq, value, signature };
        let get = uint_value(0);
        self.start(rpc, now, target, Command::MutableGet, Some(get), kind, tx)
    }

    /// Fetches the mutable record of `public_key` with seq ≥ `min_seq`; with `latest`
    /// the whole query runs and the highest seq wins, else the first valid one.
    pub fn mutable_get(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        public_key: [u8; 32],
        min_seq: u64,
        latest: bool,
        tx: &mut TxQueue,
    ) -> OpId {
        let target = NodeId(tern_crypto::hash32(&public_key));
        let kind = Kind::MutableGet { public_key, min_seq, latest, best: None };
        self.start(rpc, now, target, Command::MutableGet, Some(uint_value(min_seq)), kind, tx)
    }

    /// Stores `value` under `H32(value)`.
    pub fn immutable_put(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        value: Vec<u8>,
        tx: &mut TxQueue,
    ) -> OpId {
        let target = NodeId(tern_crypto::hash32(&value));
        self.start(rpc, now, target, Command::ImmutableGet, None, Kind::ImmutablePut { value }, tx)
    }

    /// Fetches the value whose hash is `hash`.
    pub fn immutable_get(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        hash: [u8; 32],
        tx: &mut TxQueue,
    ) -> OpId {
        let kind = Kind::ImmutableGet { hash };
        self.start(rpc, now, NodeId(hash), Command::ImmutableGet, None, kind, tx)
    }

    /// Feeds an [`RpcEvent`]; returns it back if it belongs to no client operation.
    pub fn on_rpc_event(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        event: RpcEvent,
        tx: &mut TxQueue,
    ) -> Option<RpcEvent> {
        match event {
            RpcEvent::QueryReply { query, reply } => match self.by_query.get(&query).copied() {
                Some(op) => self.on_reply(rpc, op, reply),
                None => return Some(RpcEvent::QueryReply { query, reply }),
            },
            RpcEvent::QueryDone { query, closest, successes, errors } => {
                match self.by_query.remove(&query) {
                    Some(op) => self.on_query_done(rpc, now, op, closest, tx),
                    None => {
                        return Some(RpcEvent::QueryDone { query, closest, successes, errors });
                    }
                }
            }
            RpcEvent::Response { req, reply } => match self.by_req.remove(&req) {
                Some(op) => self.on_commit(op, Some(reply)),
                None => return Some(RpcEvent::Response { req, reply }),
            },
            RpcEvent::Timeout { req } => match self.by_req.remove(&req) {
                Some(op) => self.on_commit(op, None),
                None => return Some(RpcEvent::Timeout { req }),
            },
            other => return Some(other),
        }
        None
    }
}

/// A compact-encoding `uint` as a request value.
fn uint_value(n: u64) -> Vec<u8> {
    let mut buf = [0u8; 9];
    let mut w = tern_wire::Writer::new(&mut buf);
    w.uint(n);
    let len = w.position();
    buf[..len].to_vec()
}

impl DhtClient {
    fn finish(&mut self, rpc: &mut Rpc, op: u64, result: Result<OpOutput, OpError>) {
        if let Some(o) = self.ops.remove(&op)
            && let Some(q) = o.query
        {
            self.by_query.remove(&q);
            rpc.cancel_query(q);
        }
        self.by_req.retain(|_, v| *v != op);
        self.events.push_back(DhtEvent::Done { op: OpId(op), result });
    }

    fn on_reply(&mut self, rpc: &mut Rpc, op_id: u64, reply: Reply) {
        let Some(op) = self.ops.get_mut(&op_id) else { return };
        let value = reply.value.as_deref();
        match &mut op.kind {
            // Announce runs a LOOKUP query too and streams its records like a lookup.
            kind @ (Kind::Lookup { .. } | Kind::Announce { .. }) => {
                if let Some((peers, bump)) = value.and_then(decode_lookup) {
                    if let Kind::Lookup { replies } = kind {
                        *replies += 1;
                    }
                    let ev =
                        DhtEvent::LookupReply { op: OpId(op_id), from: reply.from, peers, bump };
                    self.events.push_back(ev);
                }
            }
            Kind::Unannounce { key_pair, targets } => {
                let pk = *key_pair.public_key().as_bytes();
                let lists_us = value.and_then(decode_lookup).is_some_and(|(peers, _)| {
                    peers.len() >= 20 || peers.iter().any(|p| p.public_key == pk)
                });
                if lists_us && reply.from_id.is_some() && reply.token.is_some() {
                    targets.push(reply);
                }
            }
            Kind::FindPeer => {
                if let Some(rec) = value.and_then(|v| PeerRecord::decode(v).ok()) {
                    let info = PeerInfo::from_record(&rec);
                    self.finish(rpc, op_id, Ok(OpOutput::Peer(Some(info))));
                }
            }
            Kind::MutableGet { public_key, min_seq, latest, best } => {
                let Some(rec) = value.and_then(|v| MutableRecord::decode(v).ok()) else { return };
                let signable = signable::mutable_signable(rec.seq, rec.value);
                let pk = PublicKey(*public_key);
                if rec.seq < *min_seq
                    || sign::verify(&pk, &signable, &Signature(*rec.signature)).is_err()
                {
                    return;
                }
                if best.as_ref().is_none_or(|b| rec.seq > b.seq) {
                    *best = Some(MutableValue {
                        seq: rec.seq,
                        value: rec.value.to_vec(),
                        signature: *rec.signature,
                        from: reply.from,
                    });
                }
                if !*latest {
                    let found = best.take();
                    self.finish(rpc, op_id, Ok(OpOutput::Mutable(found)));
                }
            }
            Kind::ImmutableGet { hash } => {
                if let Some(v) = value
                    && tern_crypto::hash32(v) == *hash
                {
                    let v = v.to_vec();
                    self.finish(rpc, op_id, Ok(OpOutput::Immutable(Some(v))));
                }
            }
            Kind::MutablePut { .. } | Kind::ImmutablePut { .. } => {}
        }
    }

    fn on_query_done(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        op_id: u64,
        closest: Vec<Reply>,
        tx: &mut TxQueue,
    ) {
        let Some(op) = self.ops.get_mut(&op_id) else { return };
        op.query = None;
        let target = op.target;
        let result = match &mut op.kind {
            Kind::Lookup { replies } => Ok(OpOutput::Lookup { replies: *replies }),
            Kind::FindPeer => Ok(OpOutput::Peer(None)),
            Kind::MutableGet { best, .. } => Ok(OpOutput::Mutable(best.take())),
            Kind::ImmutableGet { .. } => Ok(OpOutput::Immutable(None)),
            Kind::Unannounce { targets, .. } => {
                let targets = std::mem::take(targets);
                return self.commit(rpc, now, op_id, target, targets, tx);
            }
            Kind::Announce { .. } | Kind::MutablePut { .. } | Kind::ImmutablePut { .. } => {
                return self.commit(rpc, now, op_id, target, closest, tx);
            }
        };
        self.finish(rpc, op_id, result);
    }

    /// Sends the write to every node in `to` that gave us an id and a token.
    fn commit(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        op_id: u64,
        target: NodeId,
        to: Vec<Reply>,
        tx: &mut TxQueue,
    ) {
        let Some(op) = self.ops.get(&op_id) else { return };
        let mut sent = Vec::new();
        for reply in &to {
            let (Some(node_id), Some(token)) = (reply.from_id, reply.token) else { continue };
            let Some((command, value)) = commit_value(&op.kind, &target, &node_id, &token) else {
                continue;
            };
            let Some(req) = rpc.request(
                now,
                reply.from,
                false,
                command as u64,
                Some(target.as_bytes()),
                Some(&token),
                Some(&value),
                tx,
            ) else {
                continue;
            };
            sent.push(req);
        }
        if sent.is_empty() {
            let err = if to.is_empty() && matches!(op.kind, Kind::Unannounce { .. }) {
                // Nobody lists us: nothing to remove is a success.
                Ok(OpOutput::Stored { stored: 0 })
            } else {
                Err(OpError::NoNodes)
            };
            return self.finish(rpc, op_id, err);
        }
        for req in &sent {
            self.by_req.insert(*req, op_id);
        }
        if let Some(op) = self.ops.get_mut(&op_id) {
            op.commits_pending = sent.len();
        }
    }

    fn on_commit(&mut self, op_id: u64, reply: Option<Reply>) {
        let Some(op) = self.ops.get_mut(&op_id) else { return };
        op.commits_pending = op.commits_pending.saturating_sub(1);
        if let Some(r) = reply.as_ref().filter(|r| r.error == error_code::OK)
            && matches!(op.kind, Kind::Announce { .. })
            && op.relays.len() < MAX_RELAYS
        {
            op.relays.push(RelayPair { relay_address: r.from, peer_address: r.to });
        }
        match reply.map(|r| r.error) {
            Some(error_code::OK) => op.stored += 1,
            Some(error_code::SEQ_REUSED) => op.seq_error = Some(OpError::SeqReused),
            Some(error_code::SEQ_TOO_LOW) => op.seq_error = Some(OpError::SeqTooLow),
            _ => {}
        }
        if op.commits_pending > 0 {
            return;
        }
        let result = match (op.stored, op.seq_error) {
            (0, Some(e)) => Err(e),
            (0, None) if !matches!(op.kind, Kind::Unannounce { .. }) => Err(OpError::CommitFailed),
            (stored, _) => Ok(OpOutput::Stored { stored }),
        };
        if let Some(op) = self.ops.remove(&op_id)
            && matches!(op.kind, Kind::Announce { .. })
            && !op.relays.is_empty()
        {
            self.finished_relays.insert(OpId(op_id), (op.target, op.relays));
        }
        self.events.push_back(DhtEvent::Done { op: OpId(op_id), result });
    }
}

fn decode_lookup(v: &[u8]) -> Option<(Vec<PeerInfo>, u64)> {
    let r = LookupReply::decode(v).ok()?;
    Some((r.peers.iter().map(|p| PeerInfo::from_record(&p)).collect(), r.bump))
}

/// The command and value a commit sends to one storing node.
fn commit_value(
    kind: &Kind,
    target: &NodeId,
    node_id: &NodeId,
    token: &[u8; 32],
) -> Option<(Command, Vec<u8>)> {
    match kind {
        Kind::Announce { key_pair, relay_addresses } => {
            let pk = *key_pair.public_key().as_bytes();
            let relays = &relay_addresses[..relay_addresses.len().min(3)];
            let peer = PeerRecord { public_key: &pk, relay_addresses: AddrList::Items(relays) };
            let record = peer.to_vec();
            let s = signable::announce_signable(
                target.as_bytes(),
                node_id.as_bytes(),
                token,
                &record,
                None,
            );
            let sig = key_pair.sign(&s).0;
            let msg = Announce { peer: Some(peer), refresh: None, signature: Some(&sig), bump: 0 };
            Some((Command::Announce, msg.to_vec()))
        }
        Kind::Unannounce { key_pair, .. } => {
            let pk = *key_pair.public_key().as_bytes();
            let peer = PeerRecord { public_key: &pk, relay_addresses: AddrList::EMPTY };
            let record = peer.to_vec();
            let s = signable::unannounce_signable(
                target.as_bytes(),
                node_id.as_bytes(),
                token,
                &record,
                None,
            );
            let sig = key_pair.sign(&s).0;
            let msg = Announce { peer: Some(peer), refresh: None, signature: Some(&sig), bump: 0 };
            Some((Command::Unannounce, msg.to_vec()))
        }
        Kind::MutablePut { key_pair, seq, value, signature } => {
            let pk = *key_pair.public_key().as_bytes();
            let put = MutablePut { public_key: &pk, seq: *seq, value, signature };
            Some((Command::MutablePut, put.to_vec()))
        }
        Kind::ImmutablePut { value } => Some((Command::ImmutablePut, value.clone())),
        _ => None,
    }
}
