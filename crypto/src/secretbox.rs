//! XSalsa20-Poly1305 boxes in libsodium `crypto_secretbox_easy` layout (MAC first), and the
//! holepunch address token.
//!
//! Used twice on the wire: hyperdht's encrypted holepunch payloads, `nonce(24) ||
//! secretbox(plaintext)` keyed with the holepunch secret (spec `hyperdht-dht.md` §10.2), and
//! secret-stream's unordered UDX messages, `counter(8) || secretbox(...)` with nonce `counter ||
//! 16 zero bytes` (spec `hyperswarm-transport.md` §2.8, see [`crate::secretstream`]). The
//! cipher is RustCrypto's `crypto_secretbox` (the maintained successor of `xsalsa20poly1305`);
//! this module only fixes the byte layout. Nonces come from the caller (sans-IO): for holepunch
//! payloads they must be random, 24 bytes make collisions negligible.

use std::net::Ipv4Addr;

use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::{Nonce, Tag, XSalsa20Poly1305};

/// Nonce length of XSalsa20.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length; the tag comes *before* the ciphertext.
pub const MAC_LEN: usize = 16;
/// Bytes a sealed holepunch payload adds to its plaintext: nonce + tag.
pub const OVERHEAD: usize = NONCE_LEN + MAC_LEN;

/// Why a box did not open. Remote input: drop and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretboxError {
    /// Shorter than nonce + tag.
    #[error("sealed box too short")]
    TooShort,
    /// The tag does not authenticate the ciphertext under this key.
    #[error("sealed box failed authentication")]
    Forged,
}

/// Encrypts `buf` in place with `key`/`nonce`; returns the tag (`crypto_secretbox_detached`).
#[must_use]
pub fn seal_detached(key: &[u8; 32], nonce: &[u8; NONCE_LEN], buf: &mut [u8]) -> [u8; MAC_LEN] {
    let cipher = XSalsa20Poly1305::new(&(*key).into());
    // Only fails for non-empty associated data, which is never passed.
    match cipher.encrypt_in_place_detached(&Nonce::from(*nonce), &[], buf) {
        Ok(tag) => tag.into(),
        Err(_) => [0; MAC_LEN],
    }
}

/// Checks `tag` over `buf` and decrypts it in place (`crypto_secretbox_open_detached`). On
/// failure `buf` is left untouched.
pub fn open_detached(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    buf: &mut [u8],
    tag: &[u8; MAC_LEN],
) -> Result<(), SecretboxError> {
    let cipher = XSalsa20Poly1305::new(&(*key).into());
    cipher
        .decrypt_in_place_detached(&Nonce::from(*nonce), &[], buf, &Tag::from(*tag))
        .map_err(|_| SecretboxError::Forged)
}

/// Appends `nonce || tag || ciphertext` (the holepunch payload layout) to `out`.
pub fn seal(key: &[u8; 32], nonce: &[u8; NONCE_LEN], plaintext: &[u8], out: &mut Vec<u8>) {
    out.reserve(OVERHEAD + plaintext.len());
    out.extend_from_slice(nonce);
    let tag_at = out.len();
    out.extend_from_slice(&[0; MAC_LEN]);
    let ct_at = out.len();
    out.extend_from_slice(plaintext);
    let tag = seal_detached(key, nonce, &mut out[ct_at..]);
    out[tag_at..ct_at].copy_from_slice(&tag);
}

/// [`seal`] into a new vector.
#[must_use]
pub fn seal_to_vec(key: &[u8; 32], nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    seal(key, nonce, plaintext, &mut out);
    out
}

/// Opens `nonce || tag || ciphertext` and appends the plaintext to `out` (unchanged on error).
pub fn open(key: &[u8; 32], sealed: &[u8], out: &mut Vec<u8>) -> Result<(), SecretboxError> {
    let (nonce, rest) = sealed.split_first_chunk::<NONCE_LEN>().ok_or(SecretboxError::TooShort)?;
    let (tag, ct) = rest.split_first_chunk::<MAC_LEN>().ok_or(SecretboxError::TooShort)?;
    let start = out.len();
    out.extend_from_slice(ct);
    if let Err(e) = open_detached(key, nonce, &mut out[start..], tag) {
        out.truncate(start);
        return Err(e);
    }
    Ok(())
}

/// [`open`] into a new vector.
pub fn open_to_vec(key: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, SecretboxError> {
    let mut out = Vec::with_capacity(sealed.len().saturating_sub(OVERHEAD));
    open(key, sealed, &mut out)?;
    Ok(out)
}

/// Holepunch address token: `H32k(ascii host, key = per-connection local secret)` (§10.2). A
/// peer that echoes it proves it receives at `host`.
#[must_use]
pub fn holepunch_token(host: Ipv4Addr, local_secret: &[u8; 32]) -> [u8; 32] {
    crate::hash::host_token(host, local_secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_and_forged_boxes() {
        let key = [1u8; 32];
        assert_eq!(open_to_vec(&key, &[0; OVERHEAD - 1]), Err(SecretboxError::TooShort));
        assert_eq!(open_to_vec(&key, &[0; OVERHEAD]), Err(SecretboxError::Forged));
        let sealed = seal_to_vec(&key, &[2; NONCE_LEN], b"");
        assert_eq!(sealed.len(), OVERHEAD);
        assert_eq!(open_to_vec(&key, &sealed), Ok(Vec::new()));
        assert!(open_to_vec(&[3; 32], &sealed).is_err());
        let mut out = vec![9u8];
        let mut bad = seal_to_vec(&key, &[2; NONCE_LEN], b"abc");
        bad[1] ^= 1; // nonce
        assert!(open(&key, &bad, &mut out).is_err());
        assert_eq!(out, [9], "output untouched on failure");
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(
            key: [u8; 32],
            nonce: [u8; 24],
            plain in proptest::collection::vec(any::<u8>(), 0..2048),
            flip in any::<prop::sample::Index>(),
        ) {
            let sealed = seal_to_vec(&key, &nonce, &plain);
            prop_assert_eq!(sealed.len(), plain.len() + OVERHEAD);
            prop_assert_eq!(open_to_vec(&key, &sealed), Ok(plain));
            let mut bad = sealed;
            let i = flip.index(bad.len());
            bad[i] ^= 0x80;
            prop_assert!(open_to_vec(&key, &bad).is_err());
        }
    }
}
