//! Everything a persistent hyperdht node stores for others, under one set of limits
//! (spec §8.8; ref: hyperdht lib/persistent.js).

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use tern_base::{NodeId, Rng, Timestamp};

use crate::cache::{CacheLimits, GenCache, Weigh};
use crate::presence::TargetFilter;
use crate::topics::{TopicLimits, TopicStore};

/// hyperdht's record lifetime for announces, router entries, refreshes and bumps.
const ANNOUNCE_AGE: Duration = Duration::from_secs(20 * 60);
/// hyperdht's lifetime for mutable and immutable records (48 h).
const RECORD_AGE: Duration = Duration::from_secs(48 * 3600);

/// Every limit of the store. Defaults mirror hyperdht's sizes, plus byte budgets and a
/// value cap the reference lacks (hyperdht issue 297: unbounded record values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Announced topic records.
    pub topics: TopicLimits,
    /// Server router entries (self-announces): 65 536 for 20 min.
    pub router: CacheLimits,
    /// Refresh secrets: 65 536 for 20 min.
    pub refreshes: CacheLimits,
    /// Topic bumps: 65 536 for 20 min.
    pub bumps: CacheLimits,
    /// Mutable records: 32 768 for 48 h.
    pub mutables: CacheLimits,
    /// Immutable values: 32 768 for 48 h.
    pub immutables: CacheLimits,
    /// Largest mutable or immutable value accepted. JS checks nothing: the datagram
    /// caps it, since libudx receives into a 2 048-byte buffer (longer datagrams arrive
    /// truncated and fail to decode) and so does tern's driver (its receive slot). The
    /// default, 2 KiB, therefore refuses nothing a JS node would store; lower it to
    /// refuse smaller values (hyperswarm's old DHT refused values over 1 000 bytes).
    pub max_value_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        let announce =
            |n| CacheLimits { max_entries: n, max_bytes: 64 << 20, max_age: ANNOUNCE_AGE };
        let record = |n| CacheLimits { max_entries: n, max_bytes: 256 << 20, max_age: RECORD_AGE };
        Self {
            topics: TopicLimits::default(),
            router: announce(65_536),
            refreshes: announce(65_536),
            bumps: announce(65_536),
            mutables: record(32_768),
            immutables: record(32_768),
            max_value_bytes: 2048,
        }
    }
}

/// A router entry: a server announced itself here; handshakes for it are relayed to
/// `relay` (the address it announced from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterEntry {
    /// Where to relay PEER_HANDSHAKE / PEER_HOLEPUNCH for this server.
    pub relay: SocketAddrV4,
    /// Its encoded peer record (FIND_PEER reply value).
    pub record: Vec<u8>,
}

impl Weigh for RouterEntry {
    fn weight(&self) -> usize {
        self.record.len() + size_of::<Self>() + 32
    }
}

/// What a refresh secret re-announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshEntry {
    /// The announce target.
    pub target: NodeId,
    /// The encoded peer record.
    pub record: Vec<u8>,
}

impl Weigh for RefreshEntry {
    fn weight(&self) -> usize {
        self.record.len() + size_of::<Self>() + 32
    }
}

/// A topic's bump timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bump(pub u64);

impl Weigh for Bump {
    fn weight(&self) -> usize {
        40
    }
}

/// Counters of the storage side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Requests refused because a signature did not verify.
    pub bad_signatures: u64,
    /// Requests dropped for missing target, token or value, or an undecodable value
    /// (storage commands and PEER_HANDSHAKE / PEER_HOLEPUNCH alike).
    pub malformed: u64,
    /// Values over `max_value_bytes` or over a budget.
    pub too_large: u64,
    /// Announces refused because their topic is full.
    pub topic_full: u64,
    /// Mutable puts refused with SEQ_REUSED / SEQ_TOO_LOW.
    pub seq_refused: u64,
    /// Handshakes and holepunches relayed.
    pub relayed: u64,
    /// Handshakes and holepunches not relayed because they named a destination that
    /// neither registered here nor asked us (see `relay_guard`).
    pub relay_refused: u64,
}

impl StoreStats {
    /// Adds `other`'s counters to these (the shards of one node identity summed).
    pub fn accumulate(&mut self, other: &StoreStats) {
        let Self {
            bad_signatures,
            malformed,
            too_large,
            topic_full,
            seq_refused,
            relayed,
            relay_refused,
        } = other;
        self.bad_signatures += bad_signatures;
        self.malformed += malformed;
        self.too_large += too_large;
        self.topic_full += topic_full;
        self.seq_refused += seq_refused;
        self.relayed += relayed;
        self.relay_refused += relay_refused;
    }
}

/// The stores of one node.
#[derive(Debug)]
pub struct Store {
    /// Topic records.
    pub topics: TopicStore,
    /// Server router entries by target `H32(pk)`.
    pub router: GenCache<NodeId, RouterEntry>,
    /// Refresh secrets by `refresh` bytes.
    pub refreshes: GenCache<[u8; 32], RefreshEntry>,
    /// Topic bumps.
    pub bumps: GenCache<NodeId, Bump>,
    /// Mutable records (`uint seq || buffer value || signature`) by `H32(pk)`.
    pub mutables: GenCache<NodeId, Vec<u8>>,
    /// Immutable values by `H32(value)`.
    pub immutables: GenCache<NodeId, Vec<u8>>,
    /// The limits.
    pub limits: StoreLimits,
    /// Randomness for LOOKUP sampling.
    pub rng: Rng,
    /// Counters.
    pub stats: StoreStats,
}

impl Store {
    /// Empty stores.
    pub fn new(limits: StoreLimits, now: Timestamp, seed: u64) -> Self {
        Self {
            topics: TopicStore::new(limits.topics, now),
            router: GenCache::new(limits.router, now, true),
            refreshes: GenCache::new(limits.refreshes, now, true),
            bumps: GenCache::new(limits.bumps, now, true),
            mutables: GenCache::new(limits.mutables, now, true),
            immutables: GenCache::new(limits.immutables, now, true),
            limits,
            rng: Rng::from_seed(seed),
            stats: StoreStats::default(),
        }
    }

    /// Most targets the stores a read can find something in (topics, router entries,
    /// mutable and immutable records) hold at once: two generations of each. The size
    /// a [`TargetFilter`] over them needs per store.
    pub fn max_filtered_targets(limits: &StoreLimits) -> usize {
        2 * (limits.topics.max_records
            + limits.router.max_entries
            + limits.mutables.max_entries
            + limits.immutables.max_entries)
    }

    /// Counts every target a read (LOOKUP, FIND_PEER, MUTABLE_GET, IMMUTABLE_GET) could
    /// find something for in `filter`, from now on: a shard that sees a target absent
    /// from it answers such a read itself. Refresh secrets and bumps are left out: a
    /// read finds nothing through them alone (a LOOKUP reports a bump only beside
    /// records).
    pub fn set_filter(&mut self, filter: &Arc<TargetFilter>) {
        self.topics.set_filter(filter.clone());
        self.router.set_filter(filter.clone());
        self.mutables.set_filter(filter.clone());
        self.immutables.set_filter(filter.clone());
    }

    /// Runs due GC steps.
    pub fn gc(&mut self, now: Timestamp) {
        self.topics.gc(now);
        self.router.gc(now);
        self.refreshes.gc(now);
        self.bumps.gc(now);
        self.mutables.gc(now);
        self.immutables.gc(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a read could find anything for `t` in `s`.
    fn holds(s: &Store, t: &NodeId) -> bool {
        s.topics.topic_len(t) > 0
            || s.router.peek(t).is_some()
            || s.mutables.peek(t).is_some()
            || s.immutables.peek(t).is_some()
    }

    /// Random writes, removals, promotions, budget rotations and expiry against a store
    /// with small budgets: the filter never misses a held target, and once everything
    /// aged out it holds nothing (every count was taken back).
    #[test]
    fn filter_tracks_every_store_through_churn_and_expiry() {
        let small = |n| CacheLimits { max_entries: n, max_bytes: 1 << 20, max_age: ANNOUNCE_AGE };
        let limits = StoreLimits {
            topics: TopicLimits { max_records: 64, max_per_topic: 4, ..TopicLimits::default() },
            router: small(16),
            refreshes: small(16),
            bumps: small(16),
            mutables: small(16),
            immutables: small(16),
            max_value_bytes: 2048,
        };
        let mut now = Timestamp::from_millis(0);
        let mut store = Store::new(limits, now, 1);
        let mut rng = Rng::from_seed(5);
        let pool: Vec<NodeId> = (0..48).map(|_| NodeId(rng.bytes32())).collect();
        let keys: Vec<[u8; 32]> = (0..6).map(|_| rng.bytes32()).collect();
        // Something stored before the filter is set is counted too.
        store
            .router
            .insert(pool[0], RouterEntry { relay: "1.2.3.4:5".parse().unwrap(), record: vec![1] });
        let filter = Arc::new(TargetFilter::new(1 << 16, rng.next_u64()));
        store.set_filter(&filter);
        for step in 0..20_000 {
            let t = pool[rng.below(pool.len() as u64) as usize];
            let pk = keys[rng.below(keys.len() as u64) as usize];
            match rng.below(10) {
                0 | 1 => {
                    let _ = store.topics.insert(t, pk, &[pk[0]; 40]);
                }
                2 => {
                    store.topics.remove(&t, &pk);
                }
                3 => {
                    let relay = "1.2.3.4:5".parse().unwrap();
                    store.router.insert(t, RouterEntry { relay, record: vec![pk[0]; 8] });
                }
                4 => {
                    store.router.remove(&t);
                }
                5 => {
                    let _ = store.router.get(&t);
                    let _ = store.mutables.get(&t);
                }
                6 => {
                    store.mutables.insert(t, vec![pk[0]; 16]);
                }
                7 => {
                    store.immutables.insert(t, vec![pk[1]; 16]);
                }
                8 => {
                    store.immutables.remove(&t);
                }
                _ => {
                    now = now + Duration::from_secs(rng.below(120));
                    store.gc(now);
                }
            }
            for t in &pool {
                if holds(&store, t) {
                    assert!(filter.may_hold(&t.0), "false negative at step {step}");
                }
            }
        }
        // Two GC periods of the longest lifetime later, everything has aged out.
        for _ in 0..3 {
            now = now + RECORD_AGE;
            store.gc(now);
        }
        assert!(pool.iter().all(|t| !holds(&store, t)));
        assert!(pool.iter().all(|t| !filter.may_hold(&t.0)), "a count was never taken back");
    }
}
