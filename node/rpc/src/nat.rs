//! NAT sampling: learning our public address from how others see us (spec §5.4; ref:
//! nat-sampler 1.0.1).
//!
//! Every response (and every request carrying a valid id) says in its `to` field which
//! address the sender saw us at. The sampler keeps a ring of the last 16 samples, each
//! stored twice — once as (host, port) and once as (host, 0) — with hit counts shared by
//! equal neighbours, and reports an address once enough recent samples agree. A host
//! without a stable port means a randomising NAT.

use std::net::Ipv4Addr;

/// Ring size: 16 samples × (full address, host only).
const SLOTS: usize = 32;
/// How many earlier entries of the same kind a sample is compared with.
const LOOKBACK: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Entry {
    host: Ipv4Addr,
    port: u16,
    hits: i32,
}

/// The sampler. Bounded: 32 ring slots and at most 34 live entries.
#[derive(Debug, Clone, Default)]
pub struct NatSampler {
    /// Entries by index; slots and the two "best" pointers refer into it.
    entries: Vec<Entry>,
    slots: Vec<usize>,
    top: usize,
    size: usize,
    threshold: usize,
    best_full: Option<usize>,
    best_host: Option<usize>,
    host: Option<Ipv4Addr>,
    port: u16,
}

impl NatSampler {
    /// An empty sampler.
    pub fn new() -> Self {
        Self::default()
    }

    /// The public host, once enough samples agree.
    pub fn host(&self) -> Option<Ipv4Addr> {
        self.host
    }

    /// The public port; 0 when unknown or when the NAT randomises ports.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Samples taken into account (at most 16).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Adds one observation of our address; returns the full-address entry's hits.
    pub fn add(&mut self, host: Ipv4Addr, port: u16) -> i32 {
        let a = self.bump(host, port, 2);
        let b = self.bump(host, 0, 1);
        if self.slots.len() < SLOTS {
            self.size += 1;
            self.threshold = self.size
                - match self.size {
                    0..4 => 0,
                    4..8 => 1,
                    8..12 => 2,
                    _ => 3,
                };
            self.slots.push(a);
            self.slots.push(b);
            self.top += 2;
        } else {
            if self.top == SLOTS {
                self.top = 0;
            }
            for id in [a, b] {
                let old = self.slots[self.top];
                self.entries[old].hits -= 1;
                self.slots[self.top] = id;
                self.top += 1;
            }
        }
        if self.best_full.is_none_or(|i| self.entries[i].hits < self.entries[a].hits) {
            self.best_full = Some(a);
        }
        if self.best_host.is_none_or(|i| self.entries[i].hits < self.entries[b].hits) {
            self.best_host = Some(b);
        }
        let threshold = self.threshold as i32;
        let full = self.best_full.map(|i| self.entries[i]);
        let hostonly = self.best_host.map(|i| self.entries[i]);
        match (full, hostonly) {
            (Some(f), _) if f.hits >= threshold => {
                self.host = Some(f.host);
                self.port = f.port;
            }
            (_, Some(h)) if h.hits >= threshold => {
                self.host = Some(h.host);
                self.port = 0;
            }
            _ => {
                self.host = None;
                self.port = 0;
            }
        }
        // Read before collecting: GC compacts `entries`, so `a` is stale afterwards (it
        // indexed past the end once a randomising NAT had filled the table).
        let hits = self.entries[a].hits;
        self.collect_garbage();
        hits
    }

    /// Finds an equal entry among the last `LOOKBACK` of the same kind (`back` = 2 for
    /// full addresses, 1 for host-only, given the alternating layout) and bumps it, or
    /// creates a new entry.
    fn bump(&mut self, host: Ipv4Addr, port: u16, back: usize) -> usize {
        for i in 0..LOOKBACK {
            let j = (self.top + 2 * SLOTS - back - 2 * i) % SLOTS;
            let Some(&id) = self.slots.get(j) else { break };
            let e = &mut self.entries[id];
            if e.host == host && e.port == port {
                e.hits += 1;
                return id;
            }
        }
        self.entries.push(Entry { host, port, hits: 1 });
        self.entries.len() - 1
    }

    /// Drops entries no slot or best pointer refers to, keeping memory bounded.
    fn collect_garbage(&mut self) {
        if self.entries.len() <= 2 * SLOTS {
            return;
        }
        let mut remap = vec![usize::MAX; self.entries.len()];
        let mut kept = Vec::with_capacity(SLOTS + 2);
        let live = self.slots.iter().copied().chain(self.best_full).chain(self.best_host);
        for id in live {
            if remap[id] == usize::MAX {
                remap[id] = kept.len();
                kept.push(self.entries[id]);
            }
        }
        for s in &mut self.slots {
            *s = remap[*s];
        }
        self.best_full = self.best_full.map(|i| remap[i]);
        self.best_host = self.best_host.map(|i| remap[i]);
        self.entries = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

    #[test]
    fn consistent_samples_give_host_and_port() {
        let mut s = NatSampler::new();
        assert_eq!(s.host(), None);
        s.add(H, 4000);
        // One sample is enough at size 1 (threshold 1), as in the reference.
        assert_eq!((s.host(), s.port()), (Some(H), 4000));
        for _ in 0..40 {
            s.add(H, 4000);
        }
        assert_eq!((s.host(), s.port()), (Some(H), 4000));
        assert!(s.entries.len() <= 2 * SLOTS);
    }

    #[test]
    fn random_ports_give_host_only() {
        let mut s = NatSampler::new();
        for p in 0..10 {
            s.add(H, 5000 + p);
        }
        assert_eq!((s.host(), s.port()), (Some(H), 0));
    }

    #[test]
    fn many_distinct_ports_collect_garbage_without_panicking() {
        let mut s = NatSampler::new();
        for p in 0..1000u16 {
            assert_eq!(s.add(H, 10_000 + p), 1, "a fresh full-address entry");
        }
        assert!(s.entries.len() <= 2 * SLOTS + 2);
        assert_eq!((s.host(), s.port()), (Some(H), 0));
    }

    #[test]
    fn disagreeing_hosts_give_nothing() {
        let mut s = NatSampler::new();
        for i in 0..6 {
            s.add(Ipv4Addr::new(10, 0, 0, i), 7);
        }
        assert_eq!(s.host(), None);
    }
}
