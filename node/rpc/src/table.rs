//! The Kademlia routing table (spec §6; ref: kademlia-routing-table 1.0.6).
//!
//! 256 rows; a node goes to the row given by the number of leading bits its id shares
//! with ours. A row keeps at most [`K`] nodes sorted by id bytes. Adding to a full row
//! fails with [`AddOutcome::RowFull`]: the caller (the node) decides whether to ping the
//! row's stalest node and evict it, because that needs the network. `closest` walks rows
//! outward from the target's row in stored order, which is what the JS reference puts in
//! FIND_NODE replies; it allocates nothing and visits only rows that hold nodes (a bitmap
//! of occupied rows), because a bootstrap node answers every FIND_NODE from a table that
//! is mostly empty rows: walking all 256 of them was a tenth of its CPU under load.

use std::net::SocketAddrV4;

use tern_base::NodeId;

/// Bucket size, closest-set size and closer nodes per reply (dht-rpc's k = 20).
pub const K: usize = 20;

/// Number of rows: one per possible shared-prefix length (equal ids share 255).
const ROWS: usize = 256;

/// One known node. Ticks are the node's 5-second tick counter (spec §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableNode {
    /// The node's id, `H32(addr)`.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddrV4,
    /// Tick at which it was added.
    pub added: u64,
    /// Tick at which we last pinged it.
    pub pinged: u64,
    /// Tick at which we last heard from it with a valid id.
    pub seen: u64,
    /// Down hints received about it since it was last seen.
    pub down_hints: u32,
    /// Learned from another replica of this identity (`table_sync`), not yet heard
    /// from here: the first message from it still samples our address, as a newly
    /// added node's does.
    pub via_replica: bool,
}

impl TableNode {
    /// A node first seen at `tick`.
    pub fn new(id: NodeId, addr: SocketAddrV4, tick: u64) -> Self {
        Self { id, addr, added: tick, pinged: tick, seen: tick, down_hints: 0, via_replica: false }
    }
}

/// What [`RoutingTable::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// A new node was inserted.
    Added,
    /// A node with the same id was replaced.
    Updated,
    /// The row is full; nothing changed.
    RowFull,
    /// The id is our own; nothing changed.
    IsSelf,
}

/// A routing table around one local id.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    id: NodeId,
    rows: Vec<Vec<TableNode>>,
    /// Bit `i` is set when row `i` holds a node.
    occupied: RowSet,
    len: usize,
}

impl RoutingTable {
    /// An empty table for the local id `id`.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            rows: (0..ROWS).map(|_| Vec::new()).collect(),
            occupied: RowSet::default(),
            len: 0,
        }
    }

    /// The local id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table holds no node.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The row index for `id`.
    pub fn row_of(&self, id: &NodeId) -> usize {
        self.id.shared_prefix_len(id)
    }

    /// The nodes of row `i`, sorted by id.
    pub fn row(&self, i: usize) -> &[TableNode] {
        self.rows.get(i).map_or(&[], Vec::as_slice)
    }

    /// Inserts or replaces `node`. A full row is left alone (see the module docs).
    pub fn add(&mut self, node: TableNode) -> AddOutcome {
        if node.id == self.id {
            return AddOutcome::IsSelf;
        }
        let i = self.row_of(&node.id);
        let row = &mut self.rows[i];
        match row.binary_search_by(|n| n.id.cmp(&node.id)) {
            Ok(pos) => {
                row[pos] = node;
                AddOutcome::Updated
            }
            Err(_) if row.len() >= K => AddOutcome::RowFull,
            Err(pos) => {
                row.insert(pos, node);
                self.occupied.set(i, true);
                self.len += 1;
                AddOutcome::Added
            }
        }
    }

    fn position(&self, id: &NodeId) -> Option<(usize, usize)> {
        let i = self.row_of(id);
        self.rows[i].binary_search_by(|n| n.id.cmp(id)).ok().map(|pos| (i, pos))
    }

    /// The node with this id.
    pub fn get(&self, id: &NodeId) -> Option<&TableNode> {
        self.position(id).map(|(i, pos)| &self.rows[i][pos])
    }

    /// The node with this id, mutably (to update its ticks).
    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut TableNode> {
        self.position(id).map(|(i, pos)| &mut self.rows[i][pos])
    }

    /// Removes and returns the node with this id.
    pub fn remove(&mut self, id: &NodeId) -> Option<TableNode> {
        let (i, pos) = self.position(id)?;
        self.len -= 1;
        let node = self.rows[i].remove(pos);
        self.occupied.set(i, !self.rows[i].is_empty());
        Some(node)
    }

    /// All nodes, row by row.
    pub fn iter(&self) -> impl Iterator<Item = &TableNode> {
        self.rows.iter().flatten()
    }

    /// Up to `k` nodes near `target`: the target's row, then the rows below it (longer
    /// distance), then the rows above, each in stored order (ref: kademlia-routing-table
    /// `closest`). Not an exact XOR sort; queries sort replies themselves.
    pub fn closest(&self, target: &NodeId, k: usize) -> impl Iterator<Item = &TableNode> {
        let d = self.row_of(target);
        let down = self.occupied.below_or_at(d).descending();
        let up = self.occupied.above(d).ascending();
        down.chain(up).flat_map(move |i| self.rows[i].iter()).take(k)
    }

    /// Replaces the local id (a node turning persistent) and re-files every node under
    /// the new id. Nodes that no longer fit (full rows) are dropped, as in the reference.
    pub fn rebuild(&mut self, id: NodeId) {
        let nodes: Vec<TableNode> = self.iter().copied().collect();
        *self = Self::new(id);
        for n in nodes {
            self.add(n);
        }
    }
}

/// A set of row indices (0..256) as four 64-bit words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RowSet([u64; ROWS / 64]);

impl RowSet {
    fn set(&mut self, i: usize, on: bool) {
        let bit = 1u64 << (i % 64);
        if on {
            self.0[i / 64] |= bit;
        } else {
            self.0[i / 64] &= !bit;
        }
    }

    /// The rows `0..=d` of this set.
    fn below_or_at(self, d: usize) -> Self {
        let mut out = self;
        for (w, word) in out.0.iter_mut().enumerate() {
            let first = w * 64;
            if first > d {
                *word = 0;
            } else if d - first < 63 {
                *word &= (1u64 << (d - first + 1)) - 1;
            }
        }
        out
    }

    /// The rows `d+1..` of this set.
    fn above(self, d: usize) -> Self {
        let mut out = self;
        for (a, b) in out.0.iter_mut().zip(self.below_or_at(d).0) {
            *a &= !b;
        }
        out
    }

    /// Members from the highest down.
    fn descending(mut self) -> impl Iterator<Item = usize> {
        std::iter::from_fn(move || {
            let w = self.0.iter().rposition(|&x| x != 0)?;
            let b = 63 - self.0[w].leading_zeros() as usize;
            self.0[w] &= !(1u64 << b);
            Some(w * 64 + b)
        })
    }

    /// Members from the lowest up.
    fn ascending(mut self) -> impl Iterator<Item = usize> {
        std::iter::from_fn(move || {
            let w = self.0.iter().position(|&x| x != 0)?;
            let b = self.0[w].trailing_zeros() as usize;
            self.0[w] &= !(1u64 << b);
            Some(w * 64 + b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn node(first: u8, tick: u64) -> TableNode {
        let mut id = [0u8; 32];
        id[0] = first;
        TableNode::new(NodeId(id), SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, first), 1), tick)
    }

    #[test]
    fn rows_fill_up_to_k_and_replace_same_id() {
        let mut t = RoutingTable::new(NodeId([0u8; 32]));
        // Ids 0x80..: all share 0 bits with the zero id -> row 0.
        for i in 0..K as u8 {
            assert_eq!(t.add(node(0x80 + i, 0)), AddOutcome::Added);
        }
        assert_eq!(t.add(node(0xf0, 0)), AddOutcome::RowFull);
        assert_eq!(t.add(node(0x80, 5)), AddOutcome::Updated);
        assert_eq!(t.get(&node(0x80, 0).id).map(|n| n.added), Some(5));
        assert_eq!(t.len(), K);
        assert_eq!(
            t.add(TableNode::new(NodeId([0u8; 32]), node(1, 0).addr, 0)),
            AddOutcome::IsSelf
        );
        assert!(t.remove(&node(0x81, 0).id).is_some());
        assert_eq!(t.len(), K - 1);
        assert_eq!(t.add(node(0xf0, 0)), AddOutcome::Added);
    }

    #[test]
    fn closest_walks_from_the_target_row() {
        let mut t = RoutingTable::new(NodeId([0u8; 32]));
        t.add(node(0x80, 0)); // row 0
        t.add(node(0x40, 0)); // row 1
        t.add(node(0x20, 0)); // row 2
        let mut target = [0u8; 32];
        target[0] = 0x41;
        let got: Vec<u8> = t.closest(&NodeId(target), 3).map(|n| n.id.0[0]).collect();
        assert_eq!(got, [0x40, 0x80, 0x20]);
    }

    /// The bitmap walk visits rows in exactly the order of the plain walk over all 256
    /// rows, whatever rows are occupied, including after removals empty a row.
    #[test]
    fn closest_matches_the_walk_over_every_row() {
        let mut rng = tern_base::Rng::from_seed(7);
        let mut t = RoutingTable::new(NodeId([0x5a; 32]));
        // Random ids spread over many rows: each shares a random-length prefix (up to
        // `max` bits) with ours.
        let mut near = |max: u64| {
            let mut id = [0u8; 32];
            rng.fill(&mut id);
            for bit in 0..(rng.next_u64() % max) as usize {
                let mask = 0x80u8 >> (bit % 8);
                id[bit / 8] = (id[bit / 8] & !mask) | (0x5a & mask);
            }
            NodeId(id)
        };
        let mut ids = Vec::new();
        for _ in 0..300 {
            let n = TableNode::new(near(40), SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1), 0);
            t.add(n);
            ids.push(n.id);
        }
        for id in ids.iter().step_by(3) {
            t.remove(id);
        }
        let naive = |t: &RoutingTable, target: &NodeId, k: usize| -> Vec<NodeId> {
            let d = t.row_of(target);
            (0..=d)
                .rev()
                .chain(d + 1..ROWS)
                .flat_map(|i| t.row(i).iter())
                .take(k)
                .map(|n| n.id)
                .collect()
        };
        for _ in 0..200 {
            let target = near(48);
            for k in [1, K, 1000] {
                let got: Vec<NodeId> = t.closest(&target, k).map(|n| n.id).collect();
                assert_eq!(got, naive(&t, &target, k));
            }
        }
        let empty = RoutingTable::new(NodeId([1; 32]));
        assert_eq!(empty.closest(&NodeId([2; 32]), K).count(), 0);
    }
}
