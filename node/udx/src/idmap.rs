//! The hash map the engine keys streams by (`u32` stream ids), with a multiplicative hash
//! instead of std's SipHash: it is looked up for every datagram (a few times), and SipHash
//! of one `u32` showed as ~2.5 % of a receiving node's CPU at ~400 MB/s on one stream.
//!
//! Flooding is not a concern here: only local calls insert ids (`create_stream`), and a
//! remote id that is looked up and missed cannot lengthen any probe sequence.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Stream-id keyed map.
pub(crate) type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a `u32`, with the high half folded into the low one (the table
/// indexes by low bits, and ids may differ only in their high bits: shard numbers).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u32` keys use this hasher; any other input still hashes deterministically.
        for &b in bytes {
            self.write_u32(u32::from(b) ^ (self.0 as u32));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = (self.0 ^ u64::from(id)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(id: u32) -> u64 {
        let mut h = IdHasher::default();
        h.write_u32(id);
        h.finish()
    }

    #[test]
    fn ids_spread_over_low_bits() {
        // Sequential ids, and ids differing only in their top byte (the shard), land in
        // distinct buckets of a 256-slot table.
        let low: std::collections::HashSet<u64> = (0..256).map(|i| hash(i) & 255).collect();
        assert!(low.len() > 150, "sequential ids: {} buckets of 256", low.len());
        let high: std::collections::HashSet<u64> =
            (0..256u32).map(|i| hash(i << 24) & 255).collect();
        assert!(high.len() > 150, "shard-only ids: {} buckets of 256", high.len());
        let mut m: IdMap<u32> = IdMap::default();
        for i in 0..1000 {
            m.insert(i * 7919, i);
        }
        assert!((0..1000).all(|i| m.get(&(i * 7919)) == Some(&i)));
    }
}
