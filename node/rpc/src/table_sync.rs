//! Routing-table changes for replicas: the shards of one identity (DESIGN.md
//! "Thread-per-core") each run an [`Rpc`] and keep their tables in step by telling
//! each other which nodes they admitted or dropped.
//!
//! The rpc stays sans-IO: when [`Rpc::record_table_changes`] is on, the places that
//! change the table on their own account (a node heard from, an eviction settled, a
//! table node that stopped answering) append a [`TableChange`] to a bounded queue;
//! the owner drains it with [`Rpc::poll_table_change`] and carries the changes to the
//! other replicas however it likes, which hand them to [`Rpc::apply_table_change`].
//! Applied changes are never recorded again, so a change crosses the shards once and
//! cannot echo between them.

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use tern_base::NodeId;

use crate::node::Rpc;
use crate::table::{AddOutcome, TableNode};

/// Changes kept for the owner to drain; past this the newest are dropped (and
/// counted in `RpcStats::table_changes_dropped`). The owner drains after every input,
/// so only a replica that stopped draining (or a burst of thousands of new nodes in
/// one input) reaches it; a missed change costs a replica one node it will learn
/// when it hears from that node itself.
pub const MAX_TABLE_CHANGES: usize = 4096;

/// A change one replica made to its routing table on its own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableChange {
    /// A node was admitted (heard from with a valid id, or took an evicted node's
    /// place).
    Added {
        /// `H32(addr)`: checked again by whoever applies it.
        id: NodeId,
        /// Where it listens.
        addr: SocketAddrV4,
    },
    /// A node left the table: it did not answer a request addressed to it as a table
    /// node, or lost an eviction check.
    Removed {
        /// The node.
        id: NodeId,
    },
}

impl Rpc {
    /// Starts (or stops) recording [`TableChange`]s for [`Rpc::poll_table_change`].
    /// Off by default: a lone node has no one to tell. Stopping discards what waits.
    pub fn record_table_changes(&mut self, on: bool) {
        self.table_changes = on.then(VecDeque::new);
    }

    /// The oldest recorded change not yet drained.
    pub fn poll_table_change(&mut self) -> Option<TableChange> {
        self.table_changes.as_mut()?.pop_front()
    }

    /// Whether recorded changes wait to be drained.
    pub fn has_table_changes(&self) -> bool {
        self.table_changes.as_ref().is_some_and(|q| !q.is_empty())
    }

    /// Applies a change another replica recorded, under this table's own rules: an
    /// added node must carry the id `H32(addr)`, is admitted only if unknown and its
    /// row has room (no eviction check: the replica that heard from it keeps it), and
    /// is not recorded (so not passed on again). Returns whether the table changed.
    pub fn apply_table_change(&mut self, change: TableChange) -> bool {
        match change {
            TableChange::Added { id, addr } => {
                if tern_crypto::node_id(addr) != id.0 {
                    self.stats.invalid_ids += 1;
                    return false;
                }
                if self.table.get(&id).is_some() {
                    return false;
                }
                let node = TableNode { via_replica: true, ..TableNode::new(id, addr, self.tick) };
                self.table.add(node) == AddOutcome::Added
            }
            TableChange::Removed { id } => self.table.remove(&id).is_some(),
        }
    }

    /// Records `change` if recording is on and the queue has room.
    fn record(&mut self, change: TableChange) {
        let Some(q) = self.table_changes.as_mut() else { return };
        if q.len() >= MAX_TABLE_CHANGES {
            self.stats.table_changes_dropped += 1;
            return;
        }
        q.push_back(change);
    }

    /// Adds `node` to the table on this replica's own account, recording it if it was
    /// admitted.
    pub(crate) fn table_add(&mut self, node: TableNode) -> AddOutcome {
        let outcome = self.table.add(node);
        if outcome == AddOutcome::Added {
            self.record(TableChange::Added { id: node.id, addr: node.addr });
        }
        outcome
    }

    /// Removes `id` from the table on this replica's own account, recording it if it
    /// was there.
    pub(crate) fn table_remove(&mut self, id: &NodeId) -> Option<TableNode> {
        let removed = self.table.remove(id);
        if removed.is_some() {
            self.record(TableChange::Removed { id: *id });
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tern_base::{SocketId, Timestamp, TxQueue};
    use tern_wire::Encode;
    use tern_wire::rpc::{InternalCommand, Message, Request};

    use super::*;
    use crate::node::RpcConfig;
    use crate::server::NoApplication;

    fn rpc() -> Rpc {
        Rpc::new(RpcConfig::default(), Timestamp::ZERO, 7, [1; 32])
    }

    fn addr(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), 49_737)
    }

    fn added(a: SocketAddrV4) -> TableChange {
        TableChange::Added { id: NodeId(tern_crypto::node_id(a)), addr: a }
    }

    /// A PING from `from` carrying its valid id, as a persistent node sends.
    fn ping_from(rpc: &mut Rpc, from: SocketAddrV4) {
        let id = tern_crypto::node_id(from);
        let req = Request {
            tid: 1,
            to: addr(1),
            id: Some(&id),
            token: None,
            internal: true,
            command: InternalCommand::Ping as u64,
            target: None,
            value: None,
        };
        let buf = Message::Request(req).to_vec();
        let mut tx = TxQueue::new(64);
        rpc.handle_datagram(
            Timestamp::ZERO,
            SocketId::SERVER,
            from,
            &buf,
            &mut NoApplication,
            &mut tx,
        );
    }

    #[test]
    fn a_node_heard_from_is_recorded_once_and_only_when_recording() {
        let mut a = rpc();
        ping_from(&mut a, addr(2));
        assert_eq!(a.table().len(), 1);
        assert_eq!(a.poll_table_change(), None, "off by default");

        a.record_table_changes(true);
        ping_from(&mut a, addr(3));
        ping_from(&mut a, addr(3)); // known now: a refresh, not a change
        assert_eq!(a.poll_table_change(), Some(added(addr(3))));
        assert_eq!(a.poll_table_change(), None);
        assert!(!a.has_table_changes());
    }

    #[test]
    fn applied_changes_follow_the_table_rules_and_are_not_passed_on() {
        let (mut a, mut b) = (rpc(), rpc());
        a.record_table_changes(true);
        b.record_table_changes(true);
        ping_from(&mut a, addr(4));
        let change = a.poll_table_change().unwrap();

        assert!(b.apply_table_change(change));
        assert!(b.table().get(&NodeId(tern_crypto::node_id(addr(4)))).is_some());
        assert!(!b.apply_table_change(change), "no duplicate");
        assert_eq!(b.table().len(), 1);
        assert_eq!(b.poll_table_change(), None, "an applied change is not recorded again");

        // An id that is not H32(addr) is refused and counted.
        let forged = TableChange::Added { id: NodeId([9; 32]), addr: addr(5) };
        assert!(!b.apply_table_change(forged));
        assert_eq!(b.table().len(), 1);
        assert_eq!(b.stats().invalid_ids, 1);

        let removed = TableChange::Removed { id: NodeId(tern_crypto::node_id(addr(4))) };
        assert!(b.apply_table_change(removed));
        assert!(b.table().is_empty());
        assert!(!b.apply_table_change(removed), "removing an unknown node changes nothing");
        assert_eq!(b.poll_table_change(), None);
    }

    #[test]
    fn a_node_learned_from_a_replica_still_samples_our_address_when_heard_from() {
        let (mut a, mut b) = (rpc(), rpc());
        a.record_table_changes(true);
        ping_from(&mut a, addr(6));
        assert!(b.apply_table_change(a.poll_table_change().unwrap()));
        assert_eq!(b.public_addr(), None);
        // Known already, and not old: a node of b's own would not be sampled again.
        ping_from(&mut b, addr(6));
        assert_eq!(b.public_addr(), Some(addr(1)), "the PING's `to` was sampled");
        assert_eq!(b.poll_table_change(), None, "hearing from it is no new change");
    }

    #[test]
    fn the_queue_is_bounded_and_counts_what_it_drops() {
        let mut a = rpc();
        a.record_table_changes(true);
        for i in 0..MAX_TABLE_CHANGES + 10 {
            a.record(TableChange::Removed { id: NodeId([i as u8; 32]) });
        }
        assert_eq!(a.stats().table_changes_dropped, 10);
        let mut n = 0;
        while a.poll_table_change().is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_TABLE_CHANGES);
    }
}
