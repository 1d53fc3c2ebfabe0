//! The `snow` crypto resolver for HyperDHT's Noise: Ed25519 DH, BLAKE2b, ring's ChaChaPoly and
//! a caller-seeded "RNG" that yields exactly one ephemeral seed.
//!
//! snow has no Ed25519 DH, so the protocol is parsed as `..._25519_...` and every DH choice is
//! resolved to [`EdDh`] (noise-curve-ed semantics, [`super::dh`]); the handshake name hashed into
//! `h` is then overwritten with the real `..._Ed25519_...` name (see `super::session`).
//! ChaChaPoly comes from snow's ring resolver (ring's assembly AEAD, fastest available); BLAKE2b
//! from RustCrypto's `blake2` through [`Blake2bHash`], so snow's default resolver — and its
//! OS random generator — is not compiled in at all.
//!
//! Sans-IO: snow draws ephemeral keys from `CryptoResolver::resolve_rng`. [`TernResolver`] hands
//! it a [`SeedRng`] holding the caller's 32-byte ephemeral seed, which serves one 32-byte draw
//! and then fails, so a handshake can never silently reuse or invent randomness.

use std::sync::{Arc, Mutex, PoisonError};

use blake2::{Blake2b512, Digest};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::dh::{RemotePoint, dh_scalar, ed25519_dh_point};
use crate::sign::PublicKey;

/// The remote keys one handshake has checked, shared by its two local key pairs: in IK
/// each remote key meets both of ours (es and ss, then ee and se), and checking a key
/// costs as much as the DH. A handshake sees two remote keys; more slots would be idle.
#[derive(Debug, Default)]
pub(crate) struct CheckedKeys {
    slots: [Option<RemotePoint>; 2],
    next: usize,
}

impl CheckedKeys {
    /// `remote`, checked now or by an earlier DH of this handshake. A refused key is not
    /// kept: it fails the handshake anyway.
    fn get(&mut self, remote: &[u8; 32]) -> Result<RemotePoint, snow::Error> {
        if let Some(p) = self.slots.iter().flatten().find(|p| p.as_bytes() == remote) {
            return Ok(*p);
        }
        let p = RemotePoint::new(remote).map_err(|_| snow::Error::Dh)?;
        self.slots[self.next] = Some(p);
        self.next = (self.next + 1) % self.slots.len();
        Ok(p)
    }
}

/// Ed25519 key pair as a snow `Dh`: private key = 32-byte seed, public key = Ed25519 public key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct EdDh {
    seed: [u8; 32],
    scalar: [u8; 32],
    public: [u8; 32],
    /// False until a 32-byte private key was set; `dh` then refuses instead of using zeros.
    valid: bool,
    /// Public keys only: nothing to wipe.
    #[zeroize(skip)]
    checked: Arc<Mutex<CheckedKeys>>,
    /// The static key pair the session already derived: set to its seed, this takes its
    /// public key instead of a base-point multiplication of its own.
    known: Option<([u8; 32], [u8; 32])>,
}

impl EdDh {
    fn new(checked: Arc<Mutex<CheckedKeys>>, known: Option<([u8; 32], [u8; 32])>) -> Self {
        Self { seed: [0; 32], scalar: [0; 32], public: [0; 32], valid: false, checked, known }
    }

    fn set_seed(&mut self, seed: &[u8; 32]) {
        self.seed = *seed;
        self.scalar = *dh_scalar(seed);
        self.public = match &self.known {
            Some((known_seed, public)) if bool::from(known_seed.ct_eq(seed)) => *public,
            _ => ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes(),
        };
        self.valid = true;
    }
}

impl Dh for EdDh {
    fn name(&self) -> &'static str {
        "Ed25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        match <&[u8; 32]>::try_from(privkey) {
            Ok(seed) => self.set_seed(seed),
            Err(_) => {
                self.zeroize();
            }
        }
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.try_fill_bytes(seed.as_mut())?;
        self.set_seed(&seed);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.seed
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        if !self.valid {
            return Err(snow::Error::Dh);
        }
        // snow passes its whole MAXDHLEN (56-byte) key buffer; the key is the first 32 bytes.
        let remote = pubkey.first_chunk::<32>().ok_or(snow::Error::Dh)?;
        let point = self.checked.lock().unwrap_or_else(PoisonError::into_inner).get(remote)?;
        let shared = ed25519_dh_point(&self.scalar, &point).map_err(|_| snow::Error::Dh)?;
        out.get_mut(..32).ok_or(snow::Error::Dh)?.copy_from_slice(&shared);
        Ok(())
    }
}

/// BLAKE2b-512 as a snow `Hash` (block 128, output 64: Noise's `BLAKE2b`).
#[derive(Default)]
pub(crate) struct Blake2bHash {
    state: Blake2b512,
}

impl Hash for Blake2bHash {
    fn name(&self) -> &'static str {
        "BLAKE2b"
    }

    fn block_len(&self) -> usize {
        128
    }

    fn hash_len(&self) -> usize {
        64
    }

    fn reset(&mut self) {
        self.state = Blake2b512::new();
    }

    fn input(&mut self, data: &[u8]) {
        self.state.update(data);
    }

    fn result(&mut self, out: &mut [u8]) {
        let digest = core::mem::take(&mut self.state).finalize();
        if let Some(dst) = out.get_mut(..64) {
            dst.copy_from_slice(&digest);
        }
    }
}

/// One-shot "random" source: yields the caller's 32-byte seed once, then fails.
#[derive(ZeroizeOnDrop)]
pub(crate) struct SeedRng {
    seed: Option<Zeroizing<[u8; 32]>>,
}

impl Random for SeedRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        match (self.seed.take(), dest.len()) {
            (Some(seed), 32) => {
                dest.copy_from_slice(seed.as_ref());
                Ok(())
            }
            _ => Err(snow::Error::Rng),
        }
    }
}

/// The resolver every tern Noise handshake is built with.
#[derive(ZeroizeOnDrop)]
pub(crate) struct TernResolver {
    ephemeral_seed: Zeroizing<[u8; 32]>,
    /// Shared by the handshake's key pairs (snow asks for one `Dh` per local key).
    #[zeroize(skip)]
    checked: Arc<Mutex<CheckedKeys>>,
    /// The local static key pair (seed, public key), derived once by the session.
    static_key: ([u8; 32], [u8; 32]),
}

impl TernResolver {
    pub(crate) fn new(
        ephemeral_seed: &[u8; 32],
        static_seed: &[u8; 32],
        static_public: &PublicKey,
    ) -> Self {
        Self {
            ephemeral_seed: Zeroizing::new(*ephemeral_seed),
            checked: Arc::default(),
            static_key: (*static_seed, static_public.0),
        }
    }
}

impl CryptoResolver for TernResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeedRng { seed: Some(self.ephemeral_seed.clone()) }))
    }

    fn resolve_dh(&self, _choice: &DHChoice) -> Option<Box<dyn Dh>> {
        // The name says 25519 only so that snow can parse it; the curve is always Ed25519.
        Some(Box::new(EdDh::new(self.checked.clone(), Some(self.static_key))))
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        match choice {
            HashChoice::Blake2b => Some(Box::<Blake2bHash>::default()),
            _ => None,
        }
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        // ring's ChaCha20-Poly1305 (the nonce layout, 4 zero bytes || u64le, is snow's and
        // matches noise-handshake).
        RingResolver.resolve_cipher(choice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_rng_is_one_shot() {
        let mut rng = SeedRng { seed: Some(Zeroizing::new([7; 32])) };
        let mut out = [0u8; 32];
        assert!(rng.try_fill_bytes(&mut out).is_ok());
        assert_eq!(out, [7; 32]);
        assert!(rng.try_fill_bytes(&mut out).is_err());
    }

    #[test]
    fn unset_dh_refuses() {
        let dh = EdDh::new(Arc::default(), None);
        let mut out = [0u8; 32];
        assert!(dh.dh(&[1; 32], &mut out).is_err());
        let mut dh = EdDh::new(Arc::default(), None);
        dh.set(&[1; 31]);
        assert!(dh.dh(&[1; 32], &mut out).is_err());
    }

    /// Set to the session's static seed, a key pair takes the public key the session
    /// derived; any other seed (an ephemeral) derives its own.
    #[test]
    fn the_static_public_key_is_derived_once() {
        use crate::sign::KeyPair;
        let (s, e) = (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[9; 32]));
        // A deliberately wrong "known" public key shows which path was taken.
        let known = Some((*s.seed(), [0xaa; 32]));
        let mut a = EdDh::new(Arc::default(), known);
        a.set(s.seed());
        assert_eq!(a.pubkey(), &[0xaa; 32]);
        let mut b = EdDh::new(Arc::default(), known);
        b.set(e.seed());
        assert_eq!(b.pubkey(), &e.public_key().0);
    }

    /// Two key pairs sharing the checked keys give the DHs an unshared check gives, a
    /// refused key stays refused however often it comes, and the slots stay two.
    #[test]
    fn checked_keys_are_shared_and_bounded() {
        use crate::sign::KeyPair;
        let checked = Arc::new(Mutex::new(CheckedKeys::default()));
        let (mut a, mut b) = (EdDh::new(checked.clone(), None), EdDh::new(checked.clone(), None));
        a.set(&[1; 32]);
        b.set(&[2; 32]);
        let remotes: Vec<[u8; 32]> =
            (3u8..7).map(|i| KeyPair::from_seed(&[i; 32]).public_key().0).collect();
        for round in 0..2 {
            for r in &remotes {
                for (dh, seed) in [(&a, [1u8; 32]), (&b, [2u8; 32])] {
                    let mut out = [0u8; 32];
                    assert!(dh.dh(r, &mut out).is_ok(), "round {round}");
                    assert_eq!(Ok(out), super::super::dh::ed25519_dh(&seed, r));
                }
            }
        }
        let c = checked.lock().unwrap();
        assert_eq!(c.slots.iter().flatten().count(), 2);
        drop(c);
        let torsion = curve25519_dalek::constants::EIGHT_TORSION[1].compress().to_bytes();
        for _ in 0..3 {
            assert!(a.dh(&torsion, &mut [0u8; 32]).is_err());
        }
        assert!(!checked.lock().unwrap().slots.iter().flatten().any(|p| *p.as_bytes() == torsion));
    }

    #[test]
    fn blake2b_hash_resets() {
        let mut h = Blake2bHash::default();
        h.input(b"abc");
        let mut a = [0u8; 64];
        h.result(&mut a);
        h.reset();
        h.input(b"abc");
        let mut b = [0u8; 64];
        h.result(&mut b);
        assert_eq!(a, b);
        assert_eq!(a, crate::hash::hash64(b"abc"));
    }
}
