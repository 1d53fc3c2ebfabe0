//! Announced peer records per topic (ref: record-cache 1.2.0 as used by hyperdht's
//! Persistent store).
//!
//! Each topic holds records keyed by the announcer's public key. Records age in two
//! generations like [`crate::cache::GenCache`]: a fresh record is not overwritten by a
//! re-announce (so a flood of re-announces costs nothing), an aged one is refreshed.
//! Bounds: records and bytes per generation (global), and records per topic, so one hot
//! or hostile topic cannot push every other topic out.
//!
//! With a [`TargetFilter`] set, each topic holding at least one record counts once in
//! it: before its first record shows, until its last one is removed or aged out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tern_base::{NodeId, Rng, Timestamp};

use crate::cache::gc_period;
use crate::presence::TargetFilter;

/// Budgets of the topic store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Records per generation (hyperdht `maxSize`: 65 536).
    pub max_records: usize,
    /// Estimated heap bytes per generation (as counted by [`TopicStore::bytes`]).
    pub max_bytes: usize,
    /// Records one topic may hold. A LOOKUP returns 20 random ones, so more only cost
    /// memory; hyperdht has no such cap (its global cap is the only bound).
    pub max_per_topic: usize,
    /// Nominal record lifetime (hyperdht: 20 min).
    pub max_age: Duration,
}

impl Default for TopicLimits {
    fn default() -> Self {
        Self {
            max_records: 65_536,
            max_bytes: 64 << 20,
            max_per_topic: 4_096,
            max_age: Duration::from_secs(20 * 60),
        }
    }
}

#[derive(Debug)]
struct Record {
    bytes: Vec<u8>,
    generation: u64,
}

/// What [`TopicStore::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new record.
    Added,
    /// An aged record was replaced and is fresh again.
    Refreshed,
    /// A fresh record for this key exists and was kept as is.
    KeptFresh,
    /// The topic is at its cap.
    TopicFull,
    /// The record alone exceeds the byte budget.
    TooLarge,
}

/// The store.
#[derive(Debug)]
pub struct TopicStore {
    topics: HashMap<NodeId, HashMap<[u8; 32], Record>>,
    generation: u64,
    fresh_records: usize,
    fresh_bytes: usize,
    records: usize,
    bytes: usize,
    limits: TopicLimits,
    next_gc: Timestamp,
    /// Records dropped by ageing or budget pressure.
    pub evicted: u64,
    /// Where the topics held are counted (sharded nodes; see the module docs).
    filter: Option<Arc<TargetFilter>>,
}

/// Heap one record pins besides its bytes: its slot in its topic's map (key, [`Record`],
/// hashbrown's control byte, up to 8/7 load-factor slack) and the allocator's rounding
/// of its byte vector.
const RECORD_OVERHEAD: usize = (32 + size_of::<Record>() + 1) * 8 / 7 + 16;
/// Heap one topic pins: its slot in the outer map and the smallest table of its own map
/// (hashbrown allocates four buckets for the first entry). A flood of one-record topics
/// costs ~530 B of heap per record (node/core/tests/bounded_store.rs measures it); without
/// this term the byte budget counted ~100 B of it.
const TOPIC_OVERHEAD: usize =
    (size_of::<NodeId>() + size_of::<HashMap<[u8; 32], Record>>() + 1) * 8 / 7
        + 4 * (32 + size_of::<Record>() + 1)
        + 16;

impl TopicStore {
    /// An empty store.
    pub fn new(limits: TopicLimits, now: Timestamp) -> Self {
        Self {
            topics: HashMap::new(),
            generation: 1,
            fresh_records: 0,
            fresh_bytes: 0,
            records: 0,
            bytes: 0,
            next_gc: now + gc_period(limits.max_age),
            limits,
            evicted: 0,
            filter: None,
        }
    }

    /// Counts the topics held in `filter` from now on (those already held at once).
    pub fn set_filter(&mut self, filter: Arc<TargetFilter>) {
        for topic in self.topics.keys() {
            filter.add(&topic.0);
        }
        if let Some(previous) = self.filter.replace(filter) {
            for topic in self.topics.keys() {
                previous.remove(&topic.0);
            }
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Estimated heap bytes held: record bytes, their map slots and each topic's map.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Topics held.
    pub fn topics(&self) -> usize {
        self.topics.len()
    }

    /// Runs the timed GC if due.
    pub fn gc(&mut self, now: Timestamp) {
        if now >= self.next_gc {
            self.rotate();
            self.next_gc = now + gc_period(self.limits.max_age);
        }
    }

    /// Drops the old generation; the fresh one becomes old. O(records), and runs at
    /// most once per `max_records` inserts or per GC period.
    fn rotate(&mut self) {
        self.generation += 1;
        let keep = self.generation - 1;
        let (mut records, mut bytes, mut evicted) = (0, 0, 0u64);
        let filter = self.filter.as_deref();
        self.topics.retain(|topic, set| {
            let before = records;
            set.retain(|_, r| {
                let live = r.generation >= keep;
                if live {
                    records += 1;
                    bytes += r.bytes.len() + RECORD_OVERHEAD;
                } else {
                    evicted += 1;
                }
                live
            });
            if records > before {
                bytes += TOPIC_OVERHEAD;
            }
            let keep = !set.is_empty();
            if !keep && let Some(f) = filter {
                f.remove(&topic.0);
            }
            keep
        });
        self.records = records;
        self.bytes = bytes;
        self.evicted += evicted;
        self.fresh_records = 0;
        self.fresh_bytes = 0;
    }

    /// Stores `record` for `public_key` under `topic`.
    pub fn insert(&mut self, topic: NodeId, public_key: [u8; 32], record: &[u8]) -> InsertOutcome {
        // The topic is pinned in the filter for the whole update: replacing its only
        // record, or a rotation dropping it before it is re-created, never lets another
        // shard read it as empty.
        let filter = self.filter.clone();
        if let Some(f) = &filter {
            f.add(&topic.0);
        }
        let outcome = self.insert_pinned(topic, public_key, record);
        if let Some(f) = &filter {
            f.remove(&topic.0);
        }
        outcome
    }

    fn insert_pinned(
        &mut self,
        topic: NodeId,
        public_key: [u8; 32],
        record: &[u8],
    ) -> InsertOutcome {
        let mut w = record.len() + RECORD_OVERHEAD;
        if w + TOPIC_OVERHEAD > self.limits.max_bytes {
            return InsertOutcome::TooLarge;
        }
        if let Some(existing) = self.topics.get(&topic).and_then(|s| s.get(&public_key))
            && existing.generation == self.generation
        {
            return InsertOutcome::KeptFresh;
        }
        let replacing = self.remove(&topic, &public_key);
        if !replacing
            && self.topics.get(&topic).is_some_and(|s| s.len() >= self.limits.max_per_topic)
        {
            return InsertOutcome::TopicFull;
        }
        let topic_w = |s: &Self| if s.topics.contains_key(&topic) { 0 } else { TOPIC_OVERHEAD };
        if self.fresh_records >= self.limits.max_records
            || self.fresh_bytes + w + topic_w(self) > self.limits.max_bytes
        {
            self.rotate();
        }
        // A new topic's map is charged to the record that creates it.
        w += topic_w(self);
        if let Some(f) = &self.filter
            && !self.topics.contains_key(&topic)
        {
            f.add(&topic.0);
        }
        let set = self.topics.entry(topic).or_default();
        set.insert(public_key, Record { bytes: record.to_vec(), generation: self.generation });
        self.fresh_records += 1;
        self.fresh_bytes += w;
        self.records += 1;
        self.bytes += w;
        if replacing { InsertOutcome::Refreshed } else { InsertOutcome::Added }
    }

    /// Removes the record of `public_key` under `topic`; true if there was one.
    pub fn remove(&mut self, topic: &NodeId, public_key: &[u8; 32]) -> bool {
        let Some(set) = self.topics.get_mut(topic) else { return false };
        let Some(r) = set.remove(public_key) else { return false };
        let w = r.bytes.len() + RECORD_OVERHEAD;
        self.records -= 1;
        self.bytes -= w;
        if r.generation == self.generation {
            self.fresh_records -= 1;
            self.fresh_bytes -= w;
        }
        if set.is_empty() {
            self.topics.remove(topic);
            self.bytes -= TOPIC_OVERHEAD;
            if let Some(f) = &self.filter {
                f.remove(&topic.0);
            }
        }
        true
    }

    /// Number of records under `topic`.
    pub fn topic_len(&self, topic: &NodeId) -> usize {
        self.topics.get(topic).map_or(0, HashMap::len)
    }

    /// Writes up to `out.len()` records of `topic`, chosen uniformly at random, into
    /// `out`; returns how many. Allocates nothing.
    ///
    /// The choice must not depend on the map's iteration order, which std seeds from the
    /// OS per map: a simulated run would not replay. So this is bottom-k sampling — each
    /// record gets a priority from its public key and one salt drawn from `rng`, and the
    /// `out.len()` lowest priorities win, in priority order. When everything fits, every
    /// record is returned, sorted by its bytes.
    pub fn sample<'a>(&'a self, topic: &NodeId, rng: &mut Rng, out: &mut [&'a [u8]]) -> usize {
        let Some(set) = self.topics.get(topic) else { return 0 };
        let k = out.len();
        if k == 0 {
            return 0;
        }
        if set.len() <= k {
            for (slot, r) in out.iter_mut().zip(set.values()) {
                *slot = &r.bytes;
            }
            out[..set.len()].sort_unstable();
            return set.len();
        }
        let salt = rng.next_u64();
        let mut n = 0;
        for r in set.values() {
            let p = priority(salt, &r.bytes);
            if n == k && p >= priority(salt, out[k - 1]) {
                continue;
            }
            // Insertion into the sorted prefix; k is small (20 for LOOKUP replies).
            let mut i = n.min(k - 1);
            while i > 0 && priority(salt, out[i - 1]) > p {
                out[i] = out[i - 1];
                i -= 1;
            }
            out[i] = &r.bytes;
            n = (n + 1).min(k);
        }
        n
    }
}

/// A record's sampling priority: its first 32 bytes (the public key) mixed with `salt`
/// by SplitMix64 rounds, so neither the announcer nor the map order can steer it.
fn priority(salt: u64, record: &[u8]) -> u64 {
    let mut h = salt;
    for chunk in record[..record.len().min(32)].chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h ^= u64::from_le_bytes(w);
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TopicLimits {
        TopicLimits {
            max_records: 100,
            max_bytes: 1 << 20,
            max_per_topic: 5,
            max_age: Duration::from_secs(30),
        }
    }

    #[test]
    fn fresh_records_are_kept_aged_ones_refreshed() {
        let mut s = TopicStore::new(limits(), Timestamp::ZERO);
        let t = NodeId([1; 32]);
        assert_eq!(s.insert(t, [7; 32], b"a"), InsertOutcome::Added);
        assert_eq!(s.insert(t, [7; 32], b"b"), InsertOutcome::KeptFresh);
        s.gc(Timestamp::from_millis(20_000));
        assert_eq!(s.insert(t, [7; 32], b"c"), InsertOutcome::Refreshed);
        let mut out = [&[][..]; 20];
        let n = s.sample(&t, &mut Rng::from_seed(1), &mut out);
        assert_eq!(&out[..n], [&b"c"[..]]);
        s.gc(Timestamp::from_millis(40_000));
        s.gc(Timestamp::from_millis(60_000));
        assert!(s.is_empty());
        assert_eq!(s.topics(), 0);
    }

    #[test]
    fn per_topic_and_global_caps_hold() {
        let mut s = TopicStore::new(limits(), Timestamp::ZERO);
        let t = NodeId([1; 32]);
        for i in 0..5u8 {
            assert_eq!(s.insert(t, [i; 32], b"x"), InsertOutcome::Added);
        }
        assert_eq!(s.insert(t, [9; 32], b"x"), InsertOutcome::TopicFull);
        for i in 0..10_000u32 {
            let mut topic = [0u8; 32];
            topic[..4].copy_from_slice(&i.to_le_bytes());
            s.insert(NodeId(topic), [0; 32], b"rec");
            assert!(s.len() <= 200, "two generations of 100 at most");
        }
        let mut out = [&[][..]; 20];
        assert_eq!(s.sample(&NodeId([42; 32]), &mut Rng::from_seed(1), &mut out), 0);
    }

    #[test]
    fn sampling_does_not_depend_on_map_order() {
        let mut l = limits();
        l.max_per_topic = 100;
        let t = NodeId([4; 32]);
        let (mut a, mut b) =
            (TopicStore::new(l, Timestamp::ZERO), TopicStore::new(l, Timestamp::ZERO));
        for i in 0..60u8 {
            a.insert(t, [i; 32], &[i]);
            b.insert(t, [59 - i; 32], &[59 - i]);
        }
        for n in [5, 60, 80] {
            let (mut x, mut y) = (vec![&[][..]; n], vec![&[][..]; n]);
            let got = a.sample(&t, &mut Rng::from_seed(3), &mut x);
            assert_eq!(got, b.sample(&t, &mut Rng::from_seed(3), &mut y));
            assert_eq!(x, y, "same records in the same order for {n} slots");
        }
        assert_eq!(a.sample(&t, &mut Rng::from_seed(3), &mut []), 0);
    }

    #[test]
    fn sampling_returns_at_most_the_slots() {
        let mut l = limits();
        l.max_per_topic = 100;
        let mut s = TopicStore::new(l, Timestamp::ZERO);
        let t = NodeId([3; 32]);
        for i in 0..50u8 {
            s.insert(t, [i; 32], &[i]);
        }
        let mut out = [&[][..]; 20];
        let n = s.sample(&t, &mut Rng::from_seed(9), &mut out);
        assert_eq!(n, 20);
        let mut seen: Vec<u8> = out.iter().map(|r| r[0]).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 20, "distinct records");
    }
}
