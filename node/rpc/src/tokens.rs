//! The node's token secrets with a small cache of the tokens minted under the current one.
//!
//! Every generic reply (LOOKUP, FIND_PEER, the gets, ...) carries `token(host)`, a keyed
//! BLAKE2b of the requester's ascii host: two compressions (key block, message block).
//! Profiled on a one-shard bootstrap node answering LOOKUPs at 100k req/s, minting was
//! 11 % of the node's CPU, the largest single item after the kernel's UDP path. A host
//! asks again and again within one rotation epoch (a client walking several lookups, a
//! NAT with many users), and the token for a host only changes when the secrets rotate,
//! so a direct-mapped cache per epoch answers the repeats with a compare and a copy.
//!
//! Bounded: [`TOKEN_CACHE_SLOTS`] entries, one per slot; a host that maps to a taken
//! slot replaces it (the cost of a miss is the hash the node paid before). The cache is
//! emptied whenever the secrets change, so it never hands out a token of a past epoch.
//! Tokens are not secret from the host they are minted for (it receives them in clear),
//! so caching them exposes nothing the secrets protect.

use std::net::Ipv4Addr;

use subtle::ConstantTimeEq;
use tern_crypto::TokenSecrets;

/// Cached tokens per node (per shard). 256 × 40 bytes ≈ 10 KiB: enough for the hosts
/// active within one 7.5 s epoch on a busy node to mostly keep their slot, small next to
/// the node's other per-shard state.
pub const TOKEN_CACHE_SLOTS: usize = 256;

#[derive(Clone, Copy)]
struct Slot {
    /// Whether `host`/`token` hold a token of the current secrets.
    used: bool,
    host: Ipv4Addr,
    token: [u8; 32],
}

const EMPTY: Slot = Slot { used: false, host: Ipv4Addr::UNSPECIFIED, token: [0; 32] };

/// Token secrets plus the cache of tokens minted with the current one.
pub(crate) struct HostTokens {
    secrets: TokenSecrets,
    cache: Box<[Slot; TOKEN_CACHE_SLOTS]>,
    /// Tokens answered from the cache / minted by hashing (tests, `Debug`).
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl HostTokens {
    pub(crate) fn new(secrets: TokenSecrets) -> Self {
        Self { secrets, cache: Box::new([EMPTY; TOKEN_CACHE_SLOTS]), hits: 0, misses: 0 }
    }

    /// The secrets.
    pub(crate) fn secrets(&self) -> &TokenSecrets {
        &self.secrets
    }

    /// Replaces the secrets (rotation) and forgets every cached token.
    pub(crate) fn set(&mut self, secrets: TokenSecrets) {
        self.secrets = secrets;
        self.cache.fill(EMPTY);
    }

    /// Fibonacci hashing of the address onto a slot: hosts differing in any octet spread.
    fn slot(host: Ipv4Addr) -> usize {
        let h = u32::from(host).wrapping_mul(0x9e37_79b1);
        (h >> (32 - TOKEN_CACHE_SLOTS.trailing_zeros())) as usize
    }

    /// `secrets().token(host)`, from the cache when this epoch already minted it.
    pub(crate) fn token(&mut self, host: Ipv4Addr) -> [u8; 32] {
        let slot = &mut self.cache[Self::slot(host)];
        if slot.used && slot.host == host {
            self.hits += 1;
            return slot.token;
        }
        self.misses += 1;
        let token = self.secrets.token(host);
        *slot = Slot { used: true, host, token };
        token
    }

    /// `secrets().check(host, token)`, skipping the hash when `token` is the cached
    /// current-epoch token of `host` (compared in constant time, like the hash check).
    pub(crate) fn check(&self, host: Ipv4Addr, token: &[u8; 32]) -> bool {
        let slot = &self.cache[Self::slot(host)];
        if slot.used && slot.host == host && bool::from(slot.token.ct_eq(token)) {
            return true;
        }
        self.secrets.check(host, token)
    }
}

impl std::fmt::Debug for HostTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostTokens")
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(i: u32) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_0000 | i)
    }

    #[test]
    fn cached_tokens_equal_minted_ones() {
        let secrets = TokenSecrets::for_epoch(&[7; 32], 3);
        let mut t = HostTokens::new(secrets.clone());
        // Enough hosts to collide in slots many times over, each asked twice.
        for round in 0..2 {
            for i in 0..(4 * TOKEN_CACHE_SLOTS as u32) {
                assert_eq!(t.token(host(i)), secrets.token(host(i)), "round {round} host {i}");
            }
        }
        assert!(t.hits + t.misses == 8 * TOKEN_CACHE_SLOTS as u64);
        // The same host twice in a row always hits.
        let before = t.hits;
        let _ = t.token(host(1));
        let _ = t.token(host(1));
        assert_eq!(t.hits, before + 1);
    }

    #[test]
    fn rotation_forgets_cached_tokens() {
        let seed = [9; 32];
        let mut t = HostTokens::new(TokenSecrets::for_epoch(&seed, 0));
        let old = t.token(host(5));
        t.set(TokenSecrets::for_epoch(&seed, 1));
        let new = t.token(host(5));
        assert_ne!(old, new, "a rotated node must mint with the new secret");
        assert_eq!(new, TokenSecrets::for_epoch(&seed, 1).token(host(5)));
        // The old token is still accepted (previous slot), a third epoch's is not.
        assert!(t.check(host(5), &old));
        t.set(TokenSecrets::for_epoch(&seed, 2));
        assert!(!t.check(host(5), &old));
    }

    #[test]
    fn check_rejects_other_hosts_and_wrong_tokens() {
        let mut t = HostTokens::new(TokenSecrets::for_epoch(&[1; 32], 0));
        let tok = t.token(host(1));
        assert!(t.check(host(1), &tok));
        assert!(!t.check(host(2), &tok));
        let mut bad = tok;
        bad[31] ^= 1;
        assert!(!t.check(host(1), &bad));
    }
}
