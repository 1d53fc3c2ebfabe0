//! [`TargetFilter`]: which targets a sharded node may hold records for, readable by
//! every shard without a lock.
//!
//! A sharded node keeps each target's records on one shard (its owner) and used to hand
//! every read (LOOKUP, FIND_PEER, MUTABLE_GET, IMMUTABLE_GET) to that owner: a thread
//! hop and a copy per request, although most reads (every lookup of a topic this node
//! was never told about, which is nearly all of a bootstrap node's) find nothing. The
//! owner's answer to such a read is the generic empty reply — token and closer nodes,
//! which every shard of the identity computes alike — so any shard may give it, if it
//! knows for certain that the target has no record anywhere.
//!
//! This is a counting Bloom filter over targets. Each store (topic sets, router
//! entries, mutable and immutable records) adds one count per target it holds an
//! entry for and takes it back when the entry goes (removal, replacement never,
//! expiry, budget eviction); [`TargetFilter::may_hold`] is false only when some
//! counter of the target is zero, so it has **no false negatives**: a false positive
//! costs the forward the node always made. Counters saturate: a counter that reached
//! [`u8::MAX`] stays there (is never decremented), which keeps the filter sound after
//! any number of colliding targets at the price of false positives on that counter.
//!
//! Ordering: a store counts a target (Release) before the record becomes visible and
//! before its reply to the write leaves, so a requester who saw the write acknowledged
//! and then reads through another shard finds the count (Acquire) and is forwarded.
//! A replacement never lets the count touch zero in between.

use std::sync::atomic::{AtomicU8, Ordering};

use tern_base::NodeId;

/// Counters probed per target.
const HASHES: usize = 2;
/// Fewest counters, so a tiny store still gets a filter with few collisions.
pub const MIN_COUNTERS: usize = 1 << 12;
/// Most counters (4 MiB): beyond this a full store only raises the false-positive rate.
pub const MAX_COUNTERS: usize = 1 << 22;

/// Keys a filtered store is indexed by: the 32-byte target.
pub trait FilterKey {
    /// The target this key stands for.
    fn target(&self) -> &[u8; 32];
}

impl FilterKey for NodeId {
    fn target(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FilterKey for [u8; 32] {
    fn target(&self) -> &[u8; 32] {
        self
    }
}

/// A counting Bloom filter of targets, shared by the shards of one node.
pub struct TargetFilter {
    counters: Box<[AtomicU8]>,
    mask: u64,
    /// Keys the probe positions, so a remote that picks targets cannot aim them at
    /// counters it chose (it would only cause forwards, but there is no need to let it).
    seed: u64,
}

impl std::fmt::Debug for TargetFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetFilter").field("counters", &self.counters.len()).finish()
    }
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl TargetFilter {
    /// A filter for at most `max_targets` targets held at once (counted once per store
    /// holding them): the next power of two at or above it, within
    /// [`MIN_COUNTERS`]..=[`MAX_COUNTERS`]. With `n` targets held in `m ≥ n` counters
    /// and two probes, a target held nowhere finds both its counters set with
    /// probability (1 − e^(−2n/m))²: ≤ 75 % with every store full to its bound, ~3 %
    /// when they hold a tenth of it (each such false positive is one forward).
    pub fn new(max_targets: usize, seed: u64) -> Self {
        let n = max_targets.clamp(MIN_COUNTERS, MAX_COUNTERS).next_power_of_two();
        let counters = (0..n).map(|_| AtomicU8::new(0)).collect();
        Self { counters, mask: n as u64 - 1, seed }
    }

    /// Counters in the filter.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Never empty (there is at least [`MIN_COUNTERS`]); for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    fn slots(&self, target: &[u8; 32]) -> [usize; HASHES] {
        let mut a = [0u8; 8];
        a.copy_from_slice(&target[8..16]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&target[16..24]);
        let h = mix(u64::from_le_bytes(a) ^ self.seed);
        let g = mix(u64::from_le_bytes(b) ^ h);
        [(h & self.mask) as usize, (g & self.mask) as usize]
    }

    /// Counts one more store entry for `target`.
    pub fn add(&self, target: &[u8; 32]) {
        for i in self.slots(target) {
            // A saturated counter stays put: it no longer knows how many it holds.
            let _ = self.counters[i].fetch_update(Ordering::Release, Ordering::Relaxed, |c| {
                c.checked_add(1).filter(|_| c != u8::MAX)
            });
        }
    }

    /// Takes back one count [`add`](Self::add)ed for `target`.
    pub fn remove(&self, target: &[u8; 32]) {
        for i in self.slots(target) {
            let r = self.counters[i].fetch_update(Ordering::Release, Ordering::Relaxed, |c| {
                (c != u8::MAX && c != 0).then(|| c - 1)
            });
            // Zero here means more removes than adds: a store bug, never remote input.
            debug_assert!(r != Ok(0) && r != Err(0), "target filter counter underflow");
        }
    }

    /// False only if no store holds anything for `target` (no false negatives).
    pub fn may_hold(&self, target: &[u8; 32]) -> bool {
        self.slots(target).iter().all(|&i| self.counters[i].load(Ordering::Acquire) != 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tern_base::Rng;

    use super::*;

    #[test]
    fn no_false_negatives_under_random_adds_and_removes() {
        let mut rng = Rng::from_seed(7);
        // A small filter so counters collide and some saturate.
        let f = TargetFilter::new(MIN_COUNTERS, rng.next_u64());
        let pool: Vec<[u8; 32]> = (0..20_000).map(|_| rng.bytes32()).collect();
        let mut held: HashMap<[u8; 32], u32> = HashMap::new();
        for step in 0..200_000 {
            let t = pool[rng.below(pool.len() as u64) as usize];
            let n = held.entry(t).or_default();
            if *n > 0 && rng.below(2) == 0 {
                f.remove(&t);
                *n -= 1;
            } else {
                f.add(&t);
                *n += 1;
            }
            if step % 1000 == 0 {
                for (t, n) in &held {
                    if *n > 0 {
                        assert!(f.may_hold(t), "false negative at step {step}");
                    }
                }
            }
        }
        // Drain everything: with no saturated counter involved, empty targets read empty.
        for (t, n) in &held {
            for _ in 0..*n {
                f.remove(t);
            }
        }
        let saturated = f.counters.iter().filter(|c| c.load(Ordering::Relaxed) == u8::MAX).count();
        let nonzero = f.counters.iter().filter(|c| c.load(Ordering::Relaxed) != 0).count();
        assert_eq!(nonzero, saturated, "only saturated counters may stay set");
    }

    #[test]
    fn empty_filter_holds_nothing_and_removal_clears() {
        let mut rng = Rng::from_seed(1);
        let f = TargetFilter::new(100_000, 42);
        assert_eq!(f.len(), 1 << 17);
        let ts: Vec<[u8; 32]> = (0..1000).map(|_| rng.bytes32()).collect();
        assert!(ts.iter().all(|t| !f.may_hold(t)));
        for t in &ts {
            f.add(t);
        }
        assert!(ts.iter().all(|t| f.may_hold(t)));
        for t in &ts {
            f.remove(t);
        }
        assert!(ts.iter().all(|t| !f.may_hold(t)), "counts taken back leave nothing");
    }

    #[test]
    fn saturated_counters_stay_set() {
        let f = TargetFilter::new(0, 0);
        let t = [3u8; 32];
        for _ in 0..300 {
            f.add(&t);
        }
        // More removes than the counter can remember: it must not reach zero.
        for _ in 0..299 {
            f.remove(&t);
        }
        assert!(f.may_hold(&t));
    }

    #[test]
    fn false_positives_are_rare_at_a_tenth_of_the_bound() {
        let mut rng = Rng::from_seed(9);
        let f = TargetFilter::new(100_000, rng.next_u64());
        for _ in 0..10_000 {
            f.add(&rng.bytes32());
        }
        let fp = (0..10_000).filter(|_| f.may_hold(&rng.bytes32())).count();
        assert!(fp < 500, "{fp} false positives in 10 000");
    }
}
