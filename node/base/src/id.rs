//! Node ids and XOR distance.
//!
//! A HyperDHT node id is 32 bytes: BLAKE2b-256 of the node's 6-byte public address
//! (computed in tern-crypto). Kademlia orders ids by XOR distance to a target; rows of
//! the routing table are indexed by the length of the prefix an id shares with the
//! table's own id.

use std::cmp::Ordering;
use std::fmt;

/// A 32-byte DHT key: a node id, a topic, or a record target.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Number of leading bits `self` and `other` share, capped at 255 so that equal ids
    /// land in the last row, as kademlia-routing-table does.
    pub fn shared_prefix_len(&self, other: &NodeId) -> usize {
        for (i, (a, b)) in self.0.iter().zip(other.0.iter()).enumerate() {
            let x = a ^ b;
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        255
    }

    /// Compares the XOR distances of `a` and `b` to `self`: `Less` means `a` is closer.
    pub fn cmp_distance(&self, a: &NodeId, b: &NodeId) -> Ordering {
        for i in 0..32 {
            let da = self.0[i] ^ a.0[i];
            let db = self.0[i] ^ b.0[i];
            if da != db {
                return da.cmp(&db);
            }
        }
        Ordering::Equal
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits identify a node in logs without flooding them.
        write!(f, "NodeId(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl From<[u8; 32]> for NodeId {
    fn from(b: [u8; 32]) -> Self {
        Self(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_distance() {
        let a = NodeId([0u8; 32]);
        let mut b = [0u8; 32];
        b[1] = 0b0010_0000;
        let b = NodeId(b);
        assert_eq!(a.shared_prefix_len(&b), 10);
        assert_eq!(a.shared_prefix_len(&a), 255);
        let mut c = [0u8; 32];
        c[0] = 1;
        let c = NodeId(c);
        assert_eq!(a.cmp_distance(&b, &c), Ordering::Less);
        assert_eq!(a.cmp_distance(&c, &b), Ordering::Greater);
        assert_eq!(a.cmp_distance(&c, &c), Ordering::Equal);
    }
}
