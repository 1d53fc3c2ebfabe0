//! Per-IP token buckets on incoming requests (an abuse limit the JS reference lacks):
//! each source IPv4 address may send `per_second` requests per second on average and
//! `burst` at once; requests beyond are dropped before they touch the routing table or
//! the handler, and counted as `DropReason::RateLimited`. Responses to our own
//! requests are never limited (they are bounded by what we sent).
//!
//! Sans-IO: time is the `Timestamp` the driver passes in. The bucket table is bounded
//! (`max_tracked` addresses); when full, the least recently seen address is evicted —
//! a flood of spoofed sources therefore costs bounded memory and at worst resets the
//! bucket of a quiet address, which then starts full (the generous direction).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use tern_base::Timestamp;

/// Limits of [`RateLimiter`] (part of `RpcConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second per source IP; 0 disables the limit. The default
    /// (1 000/s) is far above what an honest peer sends — a hyperdht client issues a
    /// few requests per query, tens per second when busy — but a NAT can hide many
    /// peers behind one address, hence the margin.
    pub per_second: u32,
    /// Requests a source may send at once after being quiet (bucket capacity).
    pub burst: u32,
    /// Source addresses tracked at once (bounds memory: ~64 bytes each).
    pub max_tracked: usize,
    /// Exempt 127.0.0.0/8: the operator's own load generators, probes and tests run
    /// there, and a remote attacker cannot send from it.
    pub exempt_loopback: bool,
}

impl Default for RateLimit {
    /// The recommended limit for a public node (what `tern node` runs with).
    fn default() -> Self {
        Self { per_second: 1_000, burst: 2_000, max_tracked: 65_536, exempt_loopback: true }
    }
}

impl RateLimit {
    /// No limit: `RpcConfig::default()` uses it, so that the library's defaults keep
    /// mirroring dht-rpc (which has none) and embedded nodes, simulations and tests
    /// behave as before; the operator's binary turns the default limit on.
    pub const OFF: Self = Self { per_second: 0, burst: 0, max_tracked: 0, exempt_loopback: true };
}

/// One address's bucket. `tokens` is in units of 1/10⁹ request so that refills over
/// nanoseconds stay exact in integers.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u128,
    last: Timestamp,
    /// Position in the recency order.
    seq: u64,
}

/// Token buckets by source IP with LRU eviction.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: HashMap<Ipv4Addr, Bucket>,
    /// Recency order: `seq` → address; the first entry is the least recently seen.
    order: BTreeMap<u64, Ipv4Addr>,
    next_seq: u64,
}

/// Scale of [`Bucket::tokens`]: one request.
const ONE: u128 = 1_000_000_000;

impl RateLimiter {
    /// A limiter enforcing `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, buckets: HashMap::new(), order: BTreeMap::new(), next_seq: 0 }
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Takes one token from `ip`'s bucket at `now`; `false`: over the limit, drop.
    pub fn allow(&mut self, now: Timestamp, ip: Ipv4Addr) -> bool {
        let l = self.limit;
        if l.per_second == 0 || l.max_tracked == 0 || (l.exempt_loopback && ip.is_loopback()) {
            return true;
        }
        let capacity = u128::from(l.burst.max(1)) * ONE;
        let seq = self.next_seq;
        self.next_seq += 1;
        let bucket = match self.buckets.get_mut(&ip) {
            Some(b) => {
                let elapsed = u128::from(now.saturating_since(b.last).as_nanos() as u64);
                // tokens/ns = per_second / 1e9, scaled by ONE = 1e9: elapsed * per_second.
                b.tokens = (b.tokens + elapsed * u128::from(l.per_second)).min(capacity);
                b.last = now;
                self.order.remove(&b.seq);
                b.seq = seq;
                b
            }
            None => {
                if self.buckets.len() >= l.max_tracked
                    && let Some((_, oldest)) = self.order.pop_first()
                {
                    self.buckets.remove(&oldest);
                }
                self.buckets.entry(ip).or_insert(Bucket { tokens: capacity, last: now, seq })
            }
        };
        self.order.insert(seq, ip);
        if bucket.tokens >= ONE {
            bucket.tokens -= ONE;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limiter(per_second: u32, burst: u32, max_tracked: usize) -> RateLimiter {
        RateLimiter::new(RateLimit { per_second, burst, max_tracked, exempt_loopback: true })
    }

    #[test]
    fn burst_then_refill() {
        let mut r = limiter(10, 5, 16);
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let t0 = Timestamp::ZERO;
        assert_eq!((0..20).filter(|_| r.allow(t0, ip)).count(), 5);
        // 10/s: one token per 100 ms.
        let t1 = t0.saturating_add(Duration::from_millis(350));
        assert_eq!((0..20).filter(|_| r.allow(t1, ip)).count(), 3);
    }

    #[test]
    fn loopback_exempt_and_zero_disables() {
        let mut r = limiter(1, 1, 16);
        assert!((0..100).all(|_| r.allow(Timestamp::ZERO, Ipv4Addr::LOCALHOST)));
        let mut off = limiter(0, 1, 16);
        assert!((0..100).all(|_| off.allow(Timestamp::ZERO, Ipv4Addr::new(10, 0, 0, 1))));
    }

    #[test]
    fn table_is_bounded_and_evicts_the_least_recent() {
        let mut r = limiter(1, 1, 4);
        let t = Timestamp::ZERO;
        for i in 0..4 {
            assert!(r.allow(t, Ipv4Addr::new(10, 0, 0, i)));
        }
        // Touch .0 so .1 becomes the least recent, then add a fifth address.
        assert!(!r.allow(t, Ipv4Addr::new(10, 0, 0, 0)));
        assert!(r.allow(t, Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(r.tracked(), 4);
        // .0 kept its (empty) bucket; .1 was evicted and starts full again.
        assert!(!r.allow(t, Ipv4Addr::new(10, 0, 0, 0)));
        assert!(r.allow(t, Ipv4Addr::new(10, 0, 0, 1)));
        for i in 0..10_000u32 {
            let [a, b, c, d] = (0x0b00_0000 + i).to_be_bytes();
            r.allow(t, Ipv4Addr::new(a, b, c, d));
        }
        assert_eq!(r.tracked(), 4);
    }
}
