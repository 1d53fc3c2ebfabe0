//! Ed25519 keys, signatures and (batch) verification with libsodium's acceptance rules.
//!
//! hyperdht signs ANNOUNCE/UNANNOUNCE records and mutable values with libsodium
//! `crypto_sign_detached` and checks them with `crypto_sign_verify_detached` (spec
//! `hyperdht-dht.md` §8.2). A Rust node must accept exactly what JS nodes accept, or records
//! would be stored by one implementation and dropped by the other. libsodium (≥ 1.0.16, not
//! `ED25519_COMPAT`) rejects when:
//!
//! * `S` is not canonical (`S ≥ ℓ`),
//! * `R` is a small-order encoding (compared against a byte blacklist, sign bit ignored),
//! * the public key `A` is not canonical (`y ≥ p`) or is a small-order encoding,
//! * `A` does not decode, or the cofactorless check `[S]B - [k]A` does not re-encode to
//!   exactly the 32 bytes of `R`.
//!
//! [`verify`] runs the byte-level checks here ([`check_encodings`]) and then ed25519-dalek's
//! `verify_strict`, whose cofactorless equation compares the *encoded* `R` bytes; together
//! they give the same verdict as libsodium on every input. (dalek's own `VerifyingKey`
//! decoding would accept a non-canonical `A`; our check closes that gap.)
//!
//! [`verify_batch`] uses dalek's batch verification (random linear combination, about twice
//! as fast per signature) after the same encoding checks, and on failure bisects to find the
//! bad items. Its one documented divergence: for a key or `R` of *mixed* order (a torsion
//! component, not small order) the probabilistic batch equation and the single cofactorless
//! equation can disagree. Honest keys and nonces are always torsion-free (`a·B`, `r·B`), so
//! this only changes which of an attacker's own malformed-key signatures are accepted; no
//! signature under an honest key can be forged this way. Callers that need bit-exact parity
//! for such inputs verify one by one.

use core::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use zeroize::ZeroizeOnDrop;

use crate::hash::hash32;

/// Errors of signature verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The public key is not a canonical, non-small-order point encoding.
    #[error("invalid public key encoding")]
    InvalidPublicKey,
    /// The signature is malformed (non-canonical `S`, small-order `R`) or does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// An Ed25519 public key as it appears on the wire: 32 bytes, not yet validated.
///
/// Validation happens where it matters ([`verify`]), so decoding a message never fails just
/// because a key is malformed; the record is then rejected when its signature is checked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Wraps 32 bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The DHT target of a server with this key: `H32(publicKey)` (spec §8.2).
    #[must_use]
    pub fn target(&self) -> [u8; 32] {
        hash32(&self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl From<[u8; 32]> for PublicKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// A detached Ed25519 signature (`R || S`, 64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Wraps 64 bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The 64 bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    fn r_bytes(&self) -> &[u8; 32] {
        // Infallible split of a fixed array; written without indexing panics.
        let (r, _) = self.0.split_first_chunk::<32>().unwrap_or((&[0; 32], &[]));
        r
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl From<[u8; 64]> for Signature {
    fn from(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }
}

/// An Ed25519 key pair, libsodium `crypto_sign_seed_keypair`-compatible.
///
/// The secret is kept as the 32-byte seed (libsodium's 64-byte secret key is `seed ||
/// publicKey`) and zeroized on drop (ed25519-dalek's `SigningKey` does that).
#[derive(Clone, ZeroizeOnDrop)]
pub struct KeyPair {
    signing: SigningKey,
    #[zeroize(skip)]
    public: PublicKey,
}

impl KeyPair {
    /// The key pair of a 32-byte seed (`HyperDHT.keyPair(seed)`). Random key pairs are this with
    /// 32 random bytes from the caller: the crate itself never draws randomness.
    #[must_use]
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Self { signing, public }
    }

    /// The public key.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The 32-byte seed (the secret). Handle with care: copies are not zeroized.
    #[must_use]
    pub fn seed(&self) -> &[u8; 32] {
        self.signing.as_bytes()
    }

    /// libsodium's 64-byte secret key layout, `seed || publicKey`, for interop with JS tooling.
    #[must_use]
    pub fn to_libsodium_secret_key(&self) -> zeroize::Zeroizing<[u8; 64]> {
        let mut out = zeroize::Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(self.seed());
        out[32..].copy_from_slice(&self.public.0);
        out
    }

    /// Signs `message` (deterministic Ed25519, identical to `crypto_sign_detached`).
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

/// Canonical `y` encodings (sign bit cleared) of the eight small-order points: libsodium's
/// `ge25519_has_small_order` blacklist without its two non-canonical entries (`p`, `p + 1`),
/// which the canonicity check already rejects.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    // y = 0: the two points of order 4.
    [0; 32],
    // y = 1: the identity.
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // Two y values of the four points of order 8.
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    // y = p - 1 = -1: the point of order 2.
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// libsodium `ge25519_is_canonical`: the `y` coordinate (sign bit ignored) is below
/// `p = 2^255 - 19`.
pub(crate) fn is_canonical_y(s: &[u8; 32]) -> bool {
    // y >= p only when bytes 1..=30 are 0xff, byte 31 (sans sign) is 0x7f and byte 0 >= 0xed.
    let high_all_ones = s[1..31].iter().all(|&b| b == 0xff) && (s[31] & 0x7f) == 0x7f;
    !(high_all_ones && s[0] >= 0xed)
}

/// libsodium `ge25519_has_small_order` on a canonical encoding.
fn has_small_order(s: &[u8; 32]) -> bool {
    let mut y = *s;
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

/// The byte-level checks libsodium makes before any curve arithmetic: canonical `S` is left to
/// dalek (which refuses non-canonical scalars), the rest is here. Cheap: no field inversion.
pub fn check_encodings(
    public_key: &PublicKey,
    signature: &Signature,
) -> Result<(), SignatureError> {
    if !is_canonical_y(&public_key.0) || has_small_order(&public_key.0) {
        return Err(SignatureError::InvalidPublicKey);
    }
    let r = signature.r_bytes();
    // A non-canonical R can never equal the canonical re-encoding libsodium compares with, and
    // a small-order R is refused outright.
    if !is_canonical_y(r) || has_small_order(r) {
        return Err(SignatureError::BadSignature);
    }
    Ok(())
}

/// Verifies `signature` on `message` under `public_key` with libsodium
/// `crypto_sign_verify_detached` semantics (see the module docs).
pub fn verify(
    public_key: &PublicKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    check_encodings(public_key, signature)?;
    let vk =
        VerifyingKey::from_bytes(&public_key.0).map_err(|_| SignatureError::InvalidPublicKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    vk.verify_strict(message, &sig).map_err(|_| SignatureError::BadSignature)
}

/// One `(public key, message, signature)` triple of a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    /// Claimed signer.
    pub public_key: &'a PublicKey,
    /// Signed bytes (for the DHT: a 64-byte signable).
    pub message: &'a [u8],
    /// Detached signature.
    pub signature: &'a Signature,
}

/// Below this many items a batch is verified one by one: the batch equation's fixed cost
/// (transcript, multiscalar setup) outweighs its per-item saving.
const BATCH_MIN: usize = 4;

/// Verifies many signatures at once; writes one verdict per item into `verdicts` (cleared
/// first, same order as `items`) and returns how many verified.
///
/// All-valid batches cost one multiscalar multiplication. When the batch equation fails, the
/// batch is bisected so that `k` bad items among `n` cost about `k·log2(n)` extra batch checks
/// instead of `n` single verifications. Items whose encodings libsodium would refuse are
/// rejected up front and never enter the batch.
///
/// Not a drop-in for [`verify`] where agreeing with libsodium matters (a DHT node deciding
/// what to store): the batch equation is cofactorless with 128-bit coefficients `z` drawn
/// from a hash of the whole batch, so a signature whose `R` carries a small torsion
/// component `T` (which only the key holder can make, and which libsodium and [`verify`]
/// refuse) passes whenever `z·T` is the identity: in at least 1/8 of batches (1/2 for `T` of
/// order 2), and a signer who controls the rest of the batch can grind for it. Making the two
/// agree would need a torsion check of every `R`, which costs about what batching saves.
/// The node therefore verifies stored writes one by one; this is for callers that only
/// need forgery resistance.
pub fn verify_batch(items: &[BatchItem<'_>], verdicts: &mut Vec<bool>) -> usize {
    verdicts.clear();
    verdicts.resize(items.len(), false);
    // Indices of the items that pass the cheap encoding checks and parse.
    let mut candidates = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if check_encodings(item.public_key, item.signature).is_err() {
            continue;
        }
        if let Ok(vk) = VerifyingKey::from_bytes(&item.public_key.0) {
            candidates.push(i);
            keys.push(vk);
        }
    }
    bisect(items, &candidates, &keys, verdicts);
    verdicts.iter().filter(|&&ok| ok).count()
}

/// Verifies `idx` (with their parsed `keys`) as one batch, splitting on failure.
fn bisect(items: &[BatchItem<'_>], idx: &[usize], keys: &[VerifyingKey], verdicts: &mut [bool]) {
    if idx.is_empty() {
        return;
    }
    if idx.len() < BATCH_MIN {
        for (&i, vk) in idx.iter().zip(keys) {
            let item = &items[i];
            let sig = ed25519_dalek::Signature::from_bytes(&item.signature.0);
            verdicts[i] = vk.verify_strict(item.message, &sig).is_ok();
        }
        return;
    }
    let messages: Vec<&[u8]> = idx.iter().map(|&i| items[i].message).collect();
    let signatures: Vec<ed25519_dalek::Signature> =
        idx.iter().map(|&i| ed25519_dalek::Signature::from_bytes(&items[i].signature.0)).collect();
    if ed25519_dalek::verify_batch(&messages, &signatures, keys).is_ok() {
        for &i in idx {
            verdicts[i] = true;
        }
        return;
    }
    let mid = idx.len() / 2;
    bisect(items, &idx[..mid], &keys[..mid], verdicts);
    bisect(items, &idx[mid..], &keys[mid..], verdicts);
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;

    #[test]
    fn blacklist_is_the_eight_torsion() {
        for t in EIGHT_TORSION {
            let enc = t.compress().to_bytes();
            assert!(is_canonical_y(&enc));
            assert!(has_small_order(&enc), "{enc:02x?}");
        }
        let mut ys: Vec<[u8; 32]> = EIGHT_TORSION
            .iter()
            .map(|t| {
                let mut y = t.compress().to_bytes();
                y[31] &= 0x7f;
                y
            })
            .collect();
        ys.sort_unstable();
        ys.dedup();
        assert_eq!(ys.len(), SMALL_ORDER_Y.len());
    }

    #[test]
    fn canonical_boundary() {
        let mut p = [0xffu8; 32];
        p[31] = 0x7f;
        p[0] = 0xec; // p - 1
        assert!(is_canonical_y(&p));
        p[0] = 0xed; // p
        assert!(!is_canonical_y(&p));
        p[31] = 0xff; // sign bit does not matter
        assert!(!is_canonical_y(&p));
    }

    fn kp(i: u8) -> KeyPair {
        KeyPair::from_seed(&[i; 32])
    }

    #[test]
    fn sign_verify_and_tamper() {
        let k = kp(1);
        let sig = k.sign(b"hello");
        assert_eq!(verify(&k.public_key(), b"hello", &sig), Ok(()));
        assert_eq!(verify(&k.public_key(), b"hellO", &sig), Err(SignatureError::BadSignature));
        let mut bad = sig;
        bad.0[5] ^= 1;
        assert!(verify(&k.public_key(), b"hello", &bad).is_err());
        assert!(verify(&kp(2).public_key(), b"hello", &sig).is_err());
    }

    #[test]
    fn rejects_non_canonical_s() {
        let k = kp(3);
        let sig = k.sign(b"m");
        // S + l is the same scalar mod l but non-canonical; libsodium refuses it.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig.0[32..]);
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(l[i]) + carry;
            s[i] = (v & 0xff) as u8;
            carry = v >> 8;
        }
        let mut bad = sig;
        bad.0[32..].copy_from_slice(&s);
        assert!(verify(&k.public_key(), b"m", &bad).is_err());
    }

    #[test]
    fn rejects_small_order_key_and_r() {
        // The identity as public key with the "signature" (identity, 0) verifies under a naive
        // cofactorless check for every message; libsodium refuses it.
        let mut id = [0u8; 32];
        id[0] = 1;
        let mut sig = [0u8; 64];
        sig[0] = 1;
        assert_eq!(
            verify(&PublicKey(id), b"anything", &Signature(sig)),
            Err(SignatureError::InvalidPublicKey)
        );
        let k = kp(4);
        assert_eq!(
            verify(&k.public_key(), b"anything", &Signature(sig)),
            Err(SignatureError::BadSignature)
        );
        // Non-canonical encoding of the key (y + p) is refused even though it decodes.
        let mut nc = [0xffu8; 32];
        nc[31] = 0x7f;
        nc[0] = 0xee; // p + 1, i.e. y = 1 non-canonically
        assert!(verify(&PublicKey(nc), b"x", &Signature(sig)).is_err());
    }

    #[test]
    fn batch_finds_the_bad_ones() {
        let keys: Vec<KeyPair> = (1..=20).map(kp).collect();
        let msgs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 64]).collect();
        let mut sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let pks: Vec<PublicKey> = keys.iter().map(KeyPair::public_key).collect();
        sigs[3].0[40] ^= 1;
        sigs[17].0[0] ^= 4;
        let items: Vec<BatchItem<'_>> = (0..20)
            .map(|i| BatchItem { public_key: &pks[i], message: &msgs[i], signature: &sigs[i] })
            .collect();
        let mut verdicts = Vec::new();
        assert_eq!(verify_batch(&items, &mut verdicts), 18);
        for (i, ok) in verdicts.iter().enumerate() {
            assert_eq!(*ok, i != 3 && i != 17, "item {i}");
        }
        assert_eq!(verify_batch(&items[..3], &mut verdicts), 3);
        assert_eq!(verify_batch(&[], &mut verdicts), 0);
    }

    /// What `verify_batch`'s documentation warns of: the key holder can make a signature
    /// with `R = rB + T`, `T` of order 2. Then `sB = R - T + hA`, so the single strict check
    /// (and libsodium) refuse it, while the batch equation sees `z·T`, the identity
    /// whenever the batch's random coefficient `z` is even.
    #[test]
    fn batch_sometimes_accepts_a_torsioned_r_that_verify_refuses() {
        use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
        use curve25519_dalek::scalar::Scalar;
        use curve25519_dalek::traits::IsIdentity;
        use sha2::{Digest, Sha512};

        let t = EIGHT_TORSION[4];
        assert!(!t.is_identity() && (t + t).is_identity(), "T has order 2");
        let k = kp(9);
        let pk = k.public_key();
        let msg = b"torsion";
        let r = Scalar::from_bytes_mod_order([7u8; 32]);
        let big_r = (ED25519_BASEPOINT_POINT * r + t).compress();
        let digest: [u8; 64] = Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(pk.0)
            .chain_update(msg)
            .finalize()
            .into();
        let h = Scalar::from_bytes_mod_order_wide(&digest);
        let s = r + h * k.signing.to_scalar();
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(big_r.as_bytes());
        bytes[32..].copy_from_slice(s.as_bytes());
        let torsioned = Signature(bytes);
        assert_eq!(verify(&pk, msg, &torsioned), Err(SignatureError::BadSignature));

        // With three honest items the batch is big enough to be checked as one. Its
        // coefficients are a hash of the whole batch, so each try changes the honest
        // items' message to draw a fresh z.
        let others: Vec<KeyPair> = (10..13).map(kp).collect();
        let other_pks: Vec<PublicKey> = others.iter().map(KeyPair::public_key).collect();
        let mut verdicts = Vec::new();
        let accepted = (0..64u8)
            .filter(|&i| {
                let m = [i; 8];
                let sigs: Vec<Signature> = others.iter().map(|o| o.sign(&m)).collect();
                let mut items =
                    vec![BatchItem { public_key: &pk, message: msg, signature: &torsioned }];
                for (p, s) in other_pks.iter().zip(&sigs) {
                    items.push(BatchItem { public_key: p, message: &m, signature: s });
                }
                let n = verify_batch(&items, &mut verdicts);
                assert!(n >= 3, "the honest items always verify");
                n == 4
            })
            .count();
        // Each batch accepts with probability 1/2: none or all of 64 would be 2^-64 events.
        assert!(accepted > 0 && accepted < 64, "accepted {accepted} of 64");
    }
}
