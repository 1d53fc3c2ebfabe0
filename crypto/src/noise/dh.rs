//! Diffie-Hellman on Ed25519 points, as noise-curve-ed does it (spec `hyperdht-dht.md` §9.3).
//!
//! HyperDHT's Noise handshakes use the node's Ed25519 signing key as its static Noise key, so
//! the DH is not X25519: the secret scalar is libsodium's signing scalar
//! `a = clamp(SHA-512(seed)[0..32])` and the shared secret is the *compressed Edwards point*
//! `a · P` (`crypto_scalarmult_ed25519_noclamp`). libsodium refuses, and the JS handshake then
//! fails, when `P` is a non-canonical encoding, not on the curve, of small order or not in the
//! prime-order subgroup, or when the result is the identity. [`ed25519_dh`] refuses exactly
//! those inputs, which is what keeps a malicious peer from forcing a predictable shared secret.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, Zeroizing};

use crate::sign::is_canonical_y;

/// Why a DH was refused. Remote input: callers drop the handshake and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhError {
    /// The remote key is not a canonical encoding of a curve point.
    #[error("remote key is not a canonical curve point")]
    InvalidPoint,
    /// The remote key has a torsion component (small order or mixed order).
    #[error("remote key is not in the prime-order subgroup")]
    NotPrimeOrder,
    /// The product is the identity.
    #[error("DH result is the identity")]
    Identity,
}

/// The clamped Ed25519 secret scalar of a seed: `clamp(SHA-512(seed)[0..32])`, the
/// `dhScalarHex` of the vectors. Zeroized on drop.
#[must_use]
pub fn dh_scalar(seed: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut digest: [u8; 64] = Sha512::digest(seed).into();
    let mut scalar = Zeroizing::new([0u8; 32]);
    scalar.copy_from_slice(&digest[..32]);
    digest.zeroize();
    scalar[0] &= 248;
    scalar[31] &= 127;
    scalar[31] |= 64;
    scalar
}

/// A remote public key decoded and checked once, for the several DHs a handshake does
/// with it (IK: every remote key takes part in two).
///
/// The checks are libsodium's: a canonical encoding of a curve point, in the prime-order
/// subgroup. The subgroup test multiplies by the group order ℓ, which costs as much as the
/// DH itself; the key is public, so it runs in variable time (`[ℓ−1]P + P`, ~20 % faster
/// than the constant-time product).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemotePoint {
    bytes: [u8; 32],
    point: EdwardsPoint,
}

impl RemotePoint {
    /// Decodes and checks `remote`.
    pub fn new(remote: &[u8; 32]) -> Result<Self, DhError> {
        if !is_canonical_y(remote) {
            return Err(DhError::InvalidPoint);
        }
        let point = CompressedEdwardsY(*remote).decompress().ok_or(DhError::InvalidPoint)?;
        // Small-order points are not torsion-free either; the first test is just cheap.
        if point.is_small_order() || !is_torsion_free_vartime(&point) {
            return Err(DhError::NotPrimeOrder);
        }
        Ok(Self { bytes: *remote, point })
    }

    /// The encoding it was decoded from.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// `[ℓ]P == O`, computed as `[ℓ−1]P + P` (ℓ itself is not a canonical scalar) in variable
/// time: for public points only.
fn is_torsion_free_vartime(p: &EdwardsPoint) -> bool {
    let l_minus_1 = -Scalar::ONE;
    (EdwardsPoint::vartime_double_scalar_mul_basepoint(&l_minus_1, p, &Scalar::ZERO) + p)
        .is_identity()
}

/// `compress(scalar · P)` for an already clamped `scalar` and a checked remote key.
///
/// The scalar is used unreduced (`mul_clamped`), exactly as libsodium's `_noclamp` variant
/// does; for points of prime order that equals the product with the scalar mod ℓ.
pub fn ed25519_dh_point(scalar: &[u8; 32], remote: &RemotePoint) -> Result<[u8; 32], DhError> {
    let shared = remote.point.mul_clamped(*scalar);
    if shared.is_identity() {
        return Err(DhError::Identity);
    }
    Ok(shared.compress().to_bytes())
}

/// Ed25519 DH from a 32-byte seed and the remote public key, with libsodium's input checks
/// (see the module docs).
pub fn ed25519_dh(seed: &[u8; 32], remote: &[u8; 32]) -> Result<[u8; 32], DhError> {
    ed25519_dh_point(&dh_scalar(seed), &RemotePoint::new(remote)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::KeyPair;
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};

    #[test]
    fn symmetric() {
        let a = KeyPair::from_seed(&[1; 32]);
        let b = KeyPair::from_seed(&[2; 32]);
        let ab = ed25519_dh(a.seed(), b.public_key().as_bytes());
        let ba = ed25519_dh(b.seed(), a.public_key().as_bytes());
        assert!(ab.is_ok());
        assert_eq!(ab, ba);
    }

    #[test]
    fn refuses_small_order_and_mixed_order_points() {
        let seed = [5u8; 32];
        for t in EIGHT_TORSION {
            let enc = t.compress().to_bytes();
            assert_eq!(ed25519_dh(&seed, &enc), Err(DhError::NotPrimeOrder), "{enc:02x?}");
        }
        // A valid key plus a torsion point: on the curve, not small order, not prime order.
        let mixed = (ED25519_BASEPOINT_POINT + EIGHT_TORSION[1]).compress().to_bytes();
        assert_eq!(ed25519_dh(&seed, &mixed), Err(DhError::NotPrimeOrder));
    }

    #[test]
    fn vartime_subgroup_test_agrees_with_the_constant_time_one() {
        let mut points: Vec<EdwardsPoint> =
            (1u64..20).map(|k| ED25519_BASEPOINT_POINT * Scalar::from(k * 7919 + 3)).collect();
        let prime = points.clone();
        for (i, p) in prime.iter().enumerate() {
            points.push(p + EIGHT_TORSION[1 + i % 7]);
        }
        points.extend(EIGHT_TORSION);
        for p in &points {
            assert_eq!(is_torsion_free_vartime(p), p.is_torsion_free(), "{p:?}");
        }
        assert_eq!(points.iter().filter(|p| is_torsion_free_vartime(p)).count(), 19 + 1);
    }

    #[test]
    fn refuses_non_canonical_and_off_curve() {
        let seed = [5u8; 32];
        // y = p + 2 would decode as y = 2 if accepted; libsodium refuses the encoding.
        let mut nc = [0xffu8; 32];
        nc[31] = 0x7f;
        nc[0] = 0xef;
        assert_eq!(ed25519_dh(&seed, &nc), Err(DhError::InvalidPoint));
        // Find a y that is not on the curve.
        let off = (2u8..)
            .map(|y| {
                let mut b = [0u8; 32];
                b[0] = y;
                b
            })
            .find(|b| CompressedEdwardsY(*b).decompress().is_none());
        let off = off.unwrap_or([0; 32]);
        assert_eq!(ed25519_dh(&seed, &off), Err(DhError::InvalidPoint));
    }
}
