//! DHT round-trip tokens (spec `hyperdht-dht.md` §3.6).
//!
//! A node hands a requester `token(host) = H32k(ascii host, key = current secret)` and later
//! accepts writes (ANNOUNCE, MUTABLE_PUT, ...) only with a token that matches under the current
//! or the previous secret, proving the requester receives traffic at its source IP. The rpc
//! layer owns the rotation timer (every 7.5 s in the JS reference); this module only holds the
//! two secrets and does the hashing, so it needs neither a clock nor randomness.
//!
//! Thread-per-core: every shard must mint and accept the same tokens, because the kernel may
//! hand a request to any shard. [`TokenSecrets::for_epoch`] derives both slots from one 32-byte
//! seed (drawn once by the driver) and the rotation epoch number, so shards agree without
//! talking to each other and a shard that skipped a tick recovers by recomputing. The JS scheme
//! ([`TokenSecrets::rotate`]) is kept for vector parity and for single-shard use; tokens are
//! opaque to everyone but their issuer, so either is wire-compatible.

use std::net::Ipv4Addr;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::hash::{hash32, hash32_keyed, host_token};

/// Domain separator of [`TokenSecrets::for_epoch`], so the derived secrets never collide with
/// another use of the same seed.
const EPOCH_DOMAIN: &[u8] = b"tern/dht-token-epoch";

/// The two token secrets of a node: `slot0` (previous) and `slot1` (current).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TokenSecrets {
    slot0: [u8; 32],
    slot1: [u8; 32],
}

impl TokenSecrets {
    /// Secrets from caller-supplied random bytes (the JS reference draws both at random).
    #[must_use]
    pub fn new(slot0: [u8; 32], slot1: [u8; 32]) -> Self {
        Self { slot0, slot1 }
    }

    /// Secrets for rotation epoch `epoch`, derived from one seed shared by all shards:
    /// `slot1 = H32k("tern/dht-token-epoch" || u64le(epoch), seed)` and `slot0` the same for
    /// `epoch - 1` (wrapping). Advancing `epoch` by one is a rotation: the old current secret
    /// becomes the previous one, so a token stays valid for one to two epochs, as in JS.
    #[must_use]
    pub fn for_epoch(seed: &[u8; 32], epoch: u64) -> Self {
        let derive = |e: u64| {
            let mut msg = [0u8; EPOCH_DOMAIN.len() + 8];
            msg[..EPOCH_DOMAIN.len()].copy_from_slice(EPOCH_DOMAIN);
            msg[EPOCH_DOMAIN.len()..].copy_from_slice(&e.to_le_bytes());
            hash32_keyed(&msg, seed)
        };
        Self { slot0: derive(epoch.wrapping_sub(1)), slot1: derive(epoch) }
    }

    /// The token this node writes into replies to `host`: keyed with the current secret (slot 1).
    #[must_use]
    pub fn token(&self, host: Ipv4Addr) -> [u8; 32] {
        host_token(host, &self.slot1)
    }

    /// Whether `token` was issued to `host` under the current or the previous secret.
    ///
    /// Each comparison is constant time. The slot-0 hash is skipped when slot 1 matches; that
    /// only reveals which epoch a valid token is from, which its holder already knows.
    #[must_use]
    pub fn check(&self, host: Ipv4Addr, token: &[u8; 32]) -> bool {
        if bool::from(host_token(host, &self.slot1).ct_eq(token)) {
            return true;
        }
        bool::from(host_token(host, &self.slot0).ct_eq(token))
    }

    /// JS rotation (dht-rpc): `slot0 = old slot1; slot1 = H32(old slot0)`.
    pub fn rotate(&mut self) {
        let next = hash32(&self.slot0);
        self.slot0 = self.slot1;
        self.slot1 = next;
    }

    /// The current secret (slot 1), for tests and for handing the state to another owner.
    #[must_use]
    pub fn current(&self) -> &[u8; 32] {
        &self.slot1
    }

    /// The previous secret (slot 0).
    #[must_use]
    pub fn previous(&self) -> &[u8; 32] {
        &self.slot0
    }
}

impl core::fmt::Debug for TokenSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Secrets never reach logs.
        f.write_str("TokenSecrets(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_current_and_previous_only() {
        let mut s = TokenSecrets::new([1; 32], [2; 32]);
        let host = Ipv4Addr::new(10, 0, 0, 1);
        let t = s.token(host);
        assert!(s.check(host, &t));
        assert!(!s.check(Ipv4Addr::new(10, 0, 0, 2), &t));
        s.rotate();
        assert!(s.check(host, &t), "previous secret still accepted");
        s.rotate();
        assert!(!s.check(host, &t), "two rotations later the token expired");
    }

    #[test]
    fn epochs_rotate_like_js() {
        let seed = [9u8; 32];
        let a = TokenSecrets::for_epoch(&seed, 41);
        let b = TokenSecrets::for_epoch(&seed, 42);
        assert_eq!(a.current(), b.previous());
        assert_ne!(a.current(), b.current());
        let host = Ipv4Addr::new(127, 0, 0, 1);
        assert!(b.check(host, &a.token(host)));
        let c = TokenSecrets::for_epoch(&seed, 43);
        assert!(!c.check(host, &a.token(host)));
        // Epoch 0 wraps to u64::MAX for its previous slot instead of overflowing.
        let z = TokenSecrets::for_epoch(&seed, 0);
        assert_eq!(z.previous(), TokenSecrets::for_epoch(&seed, u64::MAX).current());
    }

    #[test]
    fn debug_hides_secrets() {
        let s = TokenSecrets::new([0xab; 32], [0xcd; 32]);
        assert!(!format!("{s:?}").contains("ab"));
    }
}
