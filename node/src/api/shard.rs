//! Sharding one node identity over the threads of a driver (DESIGN.md
//! "Thread-per-core"): each shard is a full [`tern_core::Node`] with the same
//! configuration, the same token secret seed and a SO_REUSEPORT server socket on the
//! same ip:port, pinned to its own core. The kernel spreads incoming datagrams over
//! the shards by flow hash; this module makes the shards act as one node:
//!
//! - **requests** are answered by whichever shard the kernel handed them to, except
//!   storage requests (LOOKUP, ANNOUNCE, UNANNOUNCE, FIND_PEER, mutable/immutable
//!   put/get, and the PEER_HANDSHAKE/PEER_HOLEPUNCH relays that read records), which go
//!   to the shard owning their target ([`ShardLink::owner`]) and are answered from
//!   that shard's socket on the same port — so every record lives on exactly one
//!   shard and is found through all of them;
//! - **reads of targets nobody stores** (LOOKUP, FIND_PEER, MUTABLE_GET, IMMUTABLE_GET
//!   whose target is absent from the shared [`TargetFilter`], which every shard's store
//!   keeps its targets counted in) are answered where they land, by a persistent shard:
//!   the owner would give the same empty reply (token, closer nodes, no value), and
//!   most reads at a bootstrap node are of this kind. The filter has no false
//!   negatives, and a store counts a target before it acknowledges the write, so a
//!   read after an acknowledged write is always forwarded; a false positive only
//!   costs the forward every read used to take;
//! - **tokens** verify on every shard: the secrets derive from one seed and the epoch;
//! - **responses** to a shard's own requests sent from the shared port come back on
//!   the port and may land on another shard. A shard that cannot match a response to
//!   one of its transactions (`RpcStats::unmatched_responses` rises) passes it to the
//!   next shard, at most once around the ring.
//!
//! Forwarded datagrams travel through the owner's driver mailbox: a bounded crossbeam
//! queue woken by an eventfd, whose wake-ups coalesce under load. A full mailbox drops
//! the datagram and counts it (the sender retries as after any loss).
//!
//! - **connections**: a stream id carries its shard (`id & 0xff ≡ shard (mod count)`,
//!   see `Connections::set_shard`), so a UDX packet on the shared port goes to the
//!   shard that owns its stream; PEER_HANDSHAKE / PEER_HOLEPUNCH for a key a shard
//!   listens on go to that shard (the listening registry below), not to the target's
//!   record owner.
//!
//! - **the routing table** is replicated: each shard records the changes it makes on
//!   its own account (a node heard from and admitted; a node dropped after it stopped
//!   answering or lost an eviction check — `tern_rpc::table_sync`), and at the end of
//!   the loop turn sends them, at most [`TABLE_BATCH_MAX`] per message, to every
//!   sibling's mailbox as one shared batch. The sibling applies them under its own
//!   table's rules (id = `H32(addr)` checked again, k per row, no duplicates, no
//!   eviction pings) and never passes them on, so a change crosses the shards once. A
//!   full mailbox drops the batch for that sibling and counts it
//!   (`ShardStats::table_dropped`); the sibling learns those nodes when it hears from
//!   them. `seen`/`pinged` ticks stay per shard: only membership is replicated, which
//!   is what changes rarely next to reads.
//!
//! - **maintenance** runs once per identity, on the leader (shard 0): the bootstrap
//!   and refresh walks, the liveness pings, the firewall test and the persistence
//!   decision. The others are followers (`RpcConfig::follower`): they answer what
//!   the kernel hands them and adopt the leader's lifecycle (bootstrapped,
//!   firewalled, the persistent id) from an [`ApiCommand::Lifecycle`] message the
//!   leader sends at the end of the turn it changed in, again until every sibling
//!   took it. Nodes the leader drops for not answering leave the followers' tables
//!   through the table broadcast above.
//!
//! UDX packets are steered in the kernel: the server socket's SO_REUSEPORT group
//! carries a classic BPF program that picks the member by the id's low byte
//! (`UdpSocket::attach_udx_steering`; members are numbered in bind order, which is
//! shard order). Should the program be refused, or a packet land elsewhere anyway,
//! the shard forwards it through the mailbox, one thread hop later.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tern_dht::TargetFilter;
use tern_driver::EndpointHandle;
use tern_rpc::{Lifecycle, TableChange};
use tern_wire::Decode;
use tern_wire::hyperdht::Command;
use tern_wire::rpc::Message;
use tern_wire::udx::{UDX_HEADER_LEN, UDX_MAGIC};

use crate::api::endpoint::{ApiCommand, ApiNode};

/// Most routing-table changes in one broadcast message. A shard sends at most one
/// batch per loop turn; changes beyond wait in the node's bounded queue for the next
/// turn, so neither a message nor a turn grows with a burst of new nodes.
pub(crate) const TABLE_BATCH_MAX: usize = 128;

/// Counters of one sharded node, shared by its shards.
#[derive(Debug, Default)]
pub(crate) struct ShardCounters {
    pub(crate) forwarded_requests: AtomicU64,
    pub(crate) forwarded_responses: AtomicU64,
    pub(crate) forward_dropped: AtomicU64,
    pub(crate) table_broadcast: AtomicU64,
    pub(crate) table_applied: AtomicU64,
    pub(crate) table_dropped: AtomicU64,
}

impl ShardCounters {
    /// The current values.
    pub(crate) fn snapshot(&self) -> ShardStats {
        ShardStats {
            forwarded_requests: self.forwarded_requests.load(Ordering::Relaxed),
            forwarded_responses: self.forwarded_responses.load(Ordering::Relaxed),
            forward_dropped: self.forward_dropped.load(Ordering::Relaxed),
            table_broadcast: self.table_broadcast.load(Ordering::Relaxed),
            table_applied: self.table_applied.load(Ordering::Relaxed),
            table_dropped: self.table_dropped.load(Ordering::Relaxed),
        }
    }
}

/// What the shards of one node passed between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardStats {
    /// Storage requests passed to the shard owning their target (reads of targets no
    /// shard stores anything for are answered where they land and not counted).
    pub forwarded_requests: u64,
    /// Responses passed on because the receiving shard had no matching transaction.
    pub forwarded_responses: u64,
    /// Datagrams dropped because the target shard's mailbox was full or gone.
    pub forward_dropped: u64,
    /// Routing-table changes (nodes added or removed) sent to sibling shards, counted
    /// once per receiving shard.
    pub table_broadcast: u64,
    /// Routing-table changes a shard received from a sibling that changed its table
    /// (the rest it already had, or its row was full).
    pub table_applied: u64,
    /// Routing-table changes not delivered because a sibling's mailbox was full or
    /// gone, counted once per shard missed.
    pub table_dropped: u64,
}

/// Where one received datagram should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Steer {
    /// By the shard that has it.
    Here,
    /// By shard `n`, which owns the request's target.
    Owner(usize),
    /// A read of a target no shard holds records for: here, when this shard is
    /// persistent (it answers as the owner `n` would); else by the owner.
    Unstored(usize),
    /// A response: here if it matches, else the next shard.
    Response,
}

/// One shard's view of its siblings.
#[derive(Clone)]
pub(crate) struct ShardLink {
    /// This shard's index.
    pub(crate) index: usize,
    /// Shards of the node.
    pub(crate) count: usize,
    /// Every shard's handle, in index order; set once all are spawned (until then a
    /// shard handles everything itself).
    pub(crate) peers: Arc<OnceLock<Vec<EndpointHandle<ApiNode>>>>,
    pub(crate) counters: Arc<ShardCounters>,
    /// Which shard listens on which target (`H32(public key)`): handshakes for it go
    /// there. Written on listen/unlisten only, read per handshake datagram.
    pub(crate) listening: Arc<RwLock<HashMap<[u8; 32], usize>>>,
    /// The targets some shard may hold records for (every shard's store counts in it).
    pub(crate) records: Arc<TargetFilter>,
}

impl std::fmt::Debug for ShardLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardLink")
            .field("index", &self.index)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl ShardLink {
    /// The shard owning the records of `target`. Targets are BLAKE2b hashes, so their
    /// first bytes are uniform: no need to hash again.
    pub(crate) fn owner(&self, target: &[u8; 32]) -> usize {
        let mut b = [0u8; 8];
        b.copy_from_slice(&target[..8]);
        (u64::from_le_bytes(b) % self.count as u64) as usize
    }

    /// Where `data`, received on the shared server socket, should be handled.
    /// Undecodable datagrams stay here (the node counts and drops them).
    pub(crate) fn steer(&self, data: &[u8]) -> Steer {
        // UDX: the id in the header is the receiver's stream id, whose low byte names
        // the shard that allocated it.
        if data.len() >= UDX_HEADER_LEN && data[0] == UDX_MAGIC {
            return Steer::Owner(usize::from(data[4]) % self.count);
        }
        match Message::decode(data) {
            Ok(Message::Response(_)) => Steer::Response,
            Ok(Message::Request(q)) if !q.internal => {
                // Which storage request it is: a relay (PEER_HANDSHAKE / PEER_HOLEPUNCH,
                // which also consult the relay guard and the listening registry, so they
                // stay with their owner), a read whose answer comes from the stores
                // alone, or a write.
                let (handshake, read, storage) = match Command::from_u64(q.command) {
                    Some(Command::PeerHandshake | Command::PeerHolepunch) => (true, false, true),
                    Some(
                        Command::Lookup
                        | Command::FindPeer
                        | Command::MutableGet
                        | Command::ImmutableGet,
                    ) => (false, true, true),
                    Some(
                        Command::Announce
                        | Command::Unannounce
                        | Command::MutablePut
                        | Command::ImmutablePut,
                    ) => (false, false, true),
                    _ => (false, false, false),
                };
                match q.target {
                    Some(t) if handshake && let Some(shard) = self.listener_shard(t) => {
                        Steer::Owner(shard)
                    }
                    Some(t) if read && !self.records.may_hold(t) => Steer::Unstored(self.owner(t)),
                    Some(t) if storage => Steer::Owner(self.owner(t)),
                    _ => Steer::Here,
                }
            }
            _ => Steer::Here,
        }
    }

    /// The shard listening on `target`, if any.
    fn listener_shard(&self, target: &[u8; 32]) -> Option<usize> {
        let map = self.listening.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(target).copied()
    }

    /// Records that this shard listens on `target` (or no longer does).
    pub(crate) fn set_listening(&self, target: [u8; 32], on: bool) {
        let mut map = self.listening.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if on {
            map.insert(target, self.index);
        } else if map.get(&target) == Some(&self.index) {
            map.remove(&target);
        }
    }

    /// Passes a datagram to shard `to`; false (and counted) if it could not.
    pub(crate) fn forward(&self, to: usize, from: SocketAddrV4, data: &[u8], hops: u8) -> bool {
        let Some(handle) = self.peers.get().and_then(|p| p.get(to)) else {
            return false;
        };
        let cmd = ApiCommand::Forwarded { from, data: data.into(), hops };
        let ok = handle.send(cmd).is_ok();
        if !ok {
            self.counters.forward_dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Sends one batch of this shard's routing-table changes to every other shard.
    pub(crate) fn broadcast_table(&self, batch: &Arc<[TableChange]>) {
        let Some(peers) = self.peers.get() else { return };
        let n = batch.len() as u64;
        for (i, handle) in peers.iter().enumerate() {
            if i == self.index {
                continue;
            }
            let counter = match handle.send(ApiCommand::TableChanges(batch.clone())) {
                Ok(()) => &self.counters.table_broadcast,
                Err(_) => &self.counters.table_dropped,
            };
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Whether this shard leads: it runs the identity's maintenance and hands the
    /// lifecycle to the others (shard 0 of two or more).
    pub(crate) fn leads(&self) -> bool {
        self.index == 0 && self.count > 1
    }

    /// Sends the leader's lifecycle to every other shard; true if every one took it.
    pub(crate) fn send_lifecycle(&self, lifecycle: Lifecycle) -> bool {
        let Some(peers) = self.peers.get() else { return false };
        let mut all = true;
        for (i, handle) in peers.iter().enumerate() {
            if i != self.index {
                all &= handle.send(ApiCommand::Lifecycle(lifecycle)).is_ok();
            }
        }
        all
    }

    /// Whether the sibling handles are in place (forwarding is possible).
    pub(crate) fn ready(&self) -> bool {
        self.peers.get().is_some()
    }
}
