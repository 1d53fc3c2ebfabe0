//! A bounded two-generation cache (ref: xache 1.3.0 / record-cache 1.2.0 ageing).
//!
//! Entries live in a "fresh" and an "old" generation. A GC step drops the old
//! generation and demotes fresh to old; it runs every `2/3 · max_age` and whenever the
//! fresh generation reaches its entry or byte budget. An entry not rewritten therefore
//! lives between ≈ 0.67× and 1.33× `max_age`, and the cache never holds more than two
//! budgets' worth — a cheap LRU approximation with O(1) operations and a hard bound,
//! which is what a node exposed to the whole network needs.
//!
//! A cache may report which keys it holds to a shared [`TargetFilter`]
//! ([`GenCache::set_filter`]): one count per key present, added before the key becomes
//! visible, taken back when it leaves by removal, rotation or budget pressure, and left
//! alone when a value is replaced or promoted (so the count never dips to zero while
//! the key is held).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tern_base::Timestamp;

use crate::presence::{FilterKey, TargetFilter};

/// Size of a value in bytes, as counted against a cache's byte budget.
pub trait Weigh {
    /// Approximate heap + inline bytes this value pins.
    fn weight(&self) -> usize;
}

impl Weigh for Vec<u8> {
    fn weight(&self) -> usize {
        self.len() + size_of::<Self>()
    }
}

/// Budgets of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Entries per generation (the cache holds at most twice this).
    pub max_entries: usize,
    /// Bytes per generation.
    pub max_bytes: usize,
    /// Nominal lifetime; the GC period is two thirds of it.
    pub max_age: Duration,
}

#[derive(Debug)]
struct Generation<K, V> {
    map: HashMap<K, V>,
    bytes: usize,
}

impl<K, V> Default for Generation<K, V> {
    fn default() -> Self {
        Self { map: HashMap::new(), bytes: 0 }
    }
}

/// The cache.
#[derive(Debug)]
pub struct GenCache<K, V> {
    fresh: Generation<K, V>,
    old: Generation<K, V>,
    limits: CacheLimits,
    next_gc: Timestamp,
    /// Reads of old entries promote them back to fresh (xache); record-cache does not.
    promote_on_get: bool,
    /// Entries dropped by GC or budget pressure since creation.
    pub evicted: u64,
    /// Where the keys held are counted (sharded nodes; see the module docs), and how a
    /// key names its target.
    filter: Option<(Arc<TargetFilter>, KeyTarget<K>)>,
}

/// How a cache key names the target it is counted under.
type KeyTarget<K> = fn(&K) -> &[u8; 32];

impl<K: Hash + Eq + Clone + FilterKey, V: Weigh> GenCache<K, V> {
    /// Counts the keys held in `filter` from now on (those already held at once).
    pub fn set_filter(&mut self, filter: Arc<TargetFilter>) {
        for key in self.fresh.map.keys().chain(self.old.map.keys()) {
            filter.add(key.target());
        }
        if let Some((previous, _)) = self.filter.replace((filter, K::target)) {
            for key in self.fresh.map.keys().chain(self.old.map.keys()) {
                previous.remove(key.target());
            }
        }
    }
}

impl<K: Hash + Eq + Clone, V: Weigh> GenCache<K, V> {
    /// An empty cache created at `now`.
    pub fn new(limits: CacheLimits, now: Timestamp, promote_on_get: bool) -> Self {
        Self {
            fresh: Generation::default(),
            old: Generation::default(),
            next_gc: now + gc_period(limits.max_age),
            limits,
            promote_on_get,
            evicted: 0,
            filter: None,
        }
    }

    /// Entries held (both generations).
    pub fn len(&self) -> usize {
        self.fresh.map.len() + self.old.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (both generations).
    pub fn bytes(&self) -> usize {
        self.fresh.bytes + self.old.bytes
    }

    /// Drops the old generation and demotes the fresh one.
    fn rotate(&mut self) {
        self.evicted += self.old.map.len() as u64;
        let dropped = std::mem::replace(&mut self.old, std::mem::take(&mut self.fresh));
        if let Some((f, target)) = &self.filter {
            for key in dropped.map.keys() {
                f.remove(target(key));
            }
        }
    }

    /// Runs the timed GC if due.
    pub fn gc(&mut self, now: Timestamp) {
        if now >= self.next_gc {
            self.rotate();
            self.next_gc = now + gc_period(self.limits.max_age);
        }
    }

    /// When the next timed GC is due.
    pub fn next_gc(&self) -> Timestamp {
        self.next_gc
    }

    /// Inserts or replaces `key` in the fresh generation. A value larger than the whole
    /// byte budget is refused (returns `false`).
    pub fn insert(&mut self, key: K, value: V) -> bool {
        let w = value.weight();
        if w > self.limits.max_bytes {
            return false;
        }
        // A replaced key stays counted throughout; a new one is counted before it shows.
        if self.take(&key).is_none()
            && let Some((f, target)) = &self.filter
        {
            f.add(target(&key));
        }
        self.put(key, value, w);
        true
    }

    /// Stores `key` in the fresh generation (absent from both), rotating first when the
    /// fresh generation is at its budget. Counts nothing.
    fn put(&mut self, key: K, value: V, w: usize) {
        if self.fresh.map.len() >= self.limits.max_entries
            || self.fresh.bytes + w > self.limits.max_bytes
        {
            self.rotate();
        }
        self.fresh.bytes += w;
        self.fresh.map.insert(key, value);
    }

    /// The value for `key`; an old entry is promoted to fresh when the cache does that.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        if self.promote_on_get
            && !self.fresh.map.contains_key(key)
            && let Some(v) = self.old.map.remove(key)
        {
            let w = v.weight();
            self.old.bytes -= w;
            // Still held: the count stays as it is.
            self.put(key.clone(), v, w);
        }
        self.fresh.map.get(key).or_else(|| self.old.map.get(key))
    }

    /// The value for `key` without promoting it.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.fresh.map.get(key).or_else(|| self.old.map.get(key))
    }

    /// True when `key` is in the fresh generation.
    pub fn is_fresh(&self, key: &K) -> bool {
        self.fresh.map.contains_key(key)
    }

    /// Removes `key` from either generation.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let v = self.take(key)?;
        if let Some((f, target)) = &self.filter {
            f.remove(target(key));
        }
        Some(v)
    }

    /// Removes `key` from either generation without uncounting it.
    fn take(&mut self, key: &K) -> Option<V> {
        if let Some(v) = self.fresh.map.remove(key) {
            self.fresh.bytes -= v.weight();
            return Some(v);
        }
        let v = self.old.map.remove(key)?;
        self.old.bytes -= v.weight();
        Some(v)
    }
}

/// The GC period: `ceil(2/3 · max_age)`.
pub fn gc_period(max_age: Duration) -> Duration {
    Duration::from_millis((max_age.as_millis() as u64 * 2).div_ceil(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(entries: usize, bytes: usize) -> CacheLimits {
        CacheLimits { max_entries: entries, max_bytes: bytes, max_age: Duration::from_secs(30) }
    }

    #[test]
    fn entries_live_between_two_and_four_thirds_of_max_age() {
        let mut c = GenCache::new(limits(100, 1 << 20), Timestamp::ZERO, false);
        c.insert(1u32, vec![1u8]);
        c.gc(Timestamp::from_millis(20_000));
        assert!(c.peek(&1).is_some(), "demoted, still there");
        c.gc(Timestamp::from_millis(40_000));
        assert!(c.peek(&1).is_none(), "gone after the second GC");
    }

    #[test]
    fn budgets_bound_the_cache() {
        let mut c = GenCache::new(limits(10, 1 << 20), Timestamp::ZERO, false);
        for i in 0..1000u32 {
            c.insert(i, vec![0u8; 8]);
            assert!(c.len() <= 20);
        }
        assert!(c.evicted > 900);
        let mut b = GenCache::new(limits(1000, 400), Timestamp::ZERO, false);
        for i in 0..1000u32 {
            b.insert(i, vec![0u8; 40]);
            assert!(b.bytes() <= 800);
        }
        assert!(!b.insert(5000, vec![0u8; 500]), "larger than the whole budget");
    }

    #[test]
    fn reads_promote_when_asked() {
        let mut c = GenCache::new(limits(100, 1 << 20), Timestamp::ZERO, true);
        c.insert(1u32, vec![1u8]);
        c.gc(Timestamp::from_millis(20_000));
        assert!(!c.is_fresh(&1));
        assert!(c.get(&1).is_some());
        assert!(c.is_fresh(&1), "promoted by the read");
        c.gc(Timestamp::from_millis(40_000));
        assert!(c.peek(&1).is_some());
    }
}
