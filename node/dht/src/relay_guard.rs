//! What a relay node remembers so that PEER_HANDSHAKE / PEER_HOLEPUNCH routing cannot
//! be turned against third parties (hyperdht issue 296: the JS reference relays a
//! FROM_CLIENT message to whatever `relayAddress` / `peerAddress` the sender names, and
//! answers a FROM_SERVER message at whatever `peerAddress` it names, so one spoofed or
//! crafted datagram makes a DHT node send to an address of the attacker's choosing).
//!
//! The rules tern's relay side follows (see `server.rs`):
//!
//! - FROM_CLIENT goes only to the server registered for the target (its router entry,
//!   made by its self-announce): a PEER_HANDSHAKE's `relayAddress` is not followed (JS
//!   clients never send one), a PEER_HOLEPUNCH's `peerAddress` only when it is on the
//!   registered server's host (it is the server's address as this relay saw it);
//! - FROM_SERVER is answered at `peerAddress` only if that client sent us a FROM_CLIENT
//!   with the same tid within [`PENDING_TTL`], once per FROM_CLIENT ([`RelayGuard`]).
//!
//! So each relayed datagram is matched by one the client sent, and nothing goes to an
//! address that neither registered here nor asked us.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

use tern_base::Timestamp;

/// How long a relayed FROM_CLIENT waits for the server's FROM_SERVER. A server answers
/// within a round trip plus its Noise work; hyperdht remembers handshakes for 10 s.
pub const PENDING_TTL: Duration = Duration::from_secs(10);
/// Relayed requests remembered at once (oldest forgotten first): ~400 handshakes or
/// punches relayed per second per node within the TTL. A flood of FROM_CLIENTs costs
/// bounded memory (~400 KiB, reserved at the first relay so the relay path allocates
/// nothing afterwards) and at worst pushes out honest entries, whose clients retry.
pub const MAX_PENDING: usize = 4096;

/// Relayed FROM_CLIENT requests awaiting their FROM_SERVER, by (client, tid).
#[derive(Debug, Default)]
pub struct RelayGuard {
    /// (expiry, insertion number) by (client address, tid).
    pending: HashMap<Key, (Timestamp, u64)>,
    /// Insertion order, for expiry and eviction. May hold entries already taken or
    /// superseded; the insertion number tells them from the live one.
    order: VecDeque<(Key, Timestamp, u64)>,
    next: u64,
}

type Key = (SocketAddrV4, u16);

impl RelayGuard {
    /// Remembers that `client`'s request `tid` was relayed at `now`.
    pub fn remember(&mut self, now: Timestamp, client: SocketAddrV4, tid: u16) {
        if self.pending.capacity() == 0 {
            // Once, at the first relay: full size up front, so relaying stays free of
            // allocations (nodes that never relay pay nothing).
            self.pending.reserve(MAX_PENDING);
            self.order.reserve(2 * MAX_PENDING + 1);
        }
        self.expire(now);
        // Oldest first out when full; stale queue entries are skipped by `pop_oldest`.
        while self.pending.len() >= MAX_PENDING && self.pop_oldest() {}
        let (expires, seq) = (now + PENDING_TTL, self.next);
        self.next += 1;
        self.pending.insert((client, tid), (expires, seq));
        self.order.push_back(((client, tid), expires, seq));
        // Superseded entries stay queued until they reach the front; bound the queue.
        while self.order.len() > 2 * MAX_PENDING && self.pop_oldest() {}
    }

    /// Whether `client`'s request `tid` was relayed and not yet answered; consumes it,
    /// so one FROM_CLIENT allows one answer.
    pub fn take(&mut self, now: Timestamp, client: SocketAddrV4, tid: u16) -> bool {
        self.expire(now);
        self.pending.remove(&(client, tid)).is_some_and(|(expires, _)| expires > now)
    }

    /// Requests remembered.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops the front queue entry (and its request, if it is the live one); false
    /// when the queue is empty.
    fn pop_oldest(&mut self) -> bool {
        let Some((key, _, seq)) = self.order.pop_front() else { return false };
        if self.pending.get(&key).is_some_and(|&(_, s)| s == seq) {
            self.pending.remove(&key);
        }
        true
    }

    fn expire(&mut self, now: Timestamp) {
        while self.order.front().is_some_and(|&(_, at, _)| at <= now) {
            self.pop_oldest();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn addr(i: u32) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 5000)
    }

    #[test]
    fn one_answer_per_relayed_request_within_the_ttl() {
        let mut g = RelayGuard::default();
        let t0 = Timestamp::ZERO;
        assert!(!g.take(t0, addr(1), 7), "never relayed");
        g.remember(t0, addr(1), 7);
        assert!(!g.take(t0, addr(1), 8), "other tid");
        assert!(!g.take(t0, addr(2), 7), "other client");
        assert!(g.take(t0, addr(1), 7));
        assert!(!g.take(t0, addr(1), 7), "consumed");
        g.remember(t0, addr(1), 9);
        assert!(!g.take(t0 + PENDING_TTL, addr(1), 9), "expired");
        assert!(g.is_empty());
    }

    #[test]
    fn a_flood_is_bounded() {
        let mut g = RelayGuard::default();
        for i in 0..(3 * MAX_PENDING) as u32 {
            g.remember(Timestamp::ZERO, addr(i), 1);
        }
        assert_eq!(g.len(), MAX_PENDING);
        assert!(g.order.len() <= 2 * MAX_PENDING);
        // The newest are kept.
        assert!(g.take(Timestamp::ZERO, addr(3 * MAX_PENDING as u32 - 1), 1));
        // Re-remembering one key over and over does not grow the queue unboundedly.
        for _ in 0..(5 * MAX_PENDING) {
            g.remember(Timestamp::ZERO, addr(1), 1);
        }
        assert!(g.order.len() <= 2 * MAX_PENDING);
    }
}
