//! The IK and XX handshake front ends: one type per role, one method per message, in order.
//!
//! Each method either returns the next value or an error; a call out of order is
//! [`HandshakeError::State`]. Payload and message buffers are `Vec<u8>`: handshakes happen once
//! per connection, so a small allocation there is cheaper than a more complex API.

use super::session::{Pattern, Session};
use super::{HandshakeError, HandshakeResult};
use crate::ns::NS_PEER_HANDSHAKE;
use crate::sign::{KeyPair, PublicKey};

/// Client side of HyperDHT's Noise IK (`-> e, es, s, ss`, `<- e, ee, se`).
pub struct IkInitiator {
    session: Session,
}

impl IkInitiator {
    /// Starts a handshake to the server `remote_static` with this node's `static_seed` and a
    /// fresh 32-byte `ephemeral_seed` from the caller's RNG (never reuse one).
    pub fn new(
        static_seed: &[u8; 32],
        remote_static: &PublicKey,
        ephemeral_seed: &[u8; 32],
    ) -> Result<Self, HandshakeError> {
        Self::with_key_pair(&KeyPair::from_seed(static_seed), remote_static, ephemeral_seed)
    }

    /// [`IkInitiator::new`] with the static key pair already derived (a node keeps its own:
    /// deriving the public key again costs a base-point multiplication per handshake).
    pub fn with_key_pair(
        static_key: &KeyPair,
        remote_static: &PublicKey,
        ephemeral_seed: &[u8; 32],
    ) -> Result<Self, HandshakeError> {
        let session = Session::new(
            Pattern::Ik,
            true,
            static_key,
            Some(remote_static),
            ephemeral_seed,
            &NS_PEER_HANDSHAKE,
        )?;
        Ok(Self { session })
    }

    /// Message 1: `e(32) || Enc(s)(48) || Enc(payload)(len + 16)`.
    ///
    /// Fails with [`HandshakeError::Dh`] if the server key given to [`IkInitiator::new`] is not
    /// a valid prime-order point.
    pub fn write_message_1(&mut self, payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        self.session.write(payload)
    }

    /// Reads message 2 and completes the handshake; returns the server's payload and the keys.
    ///
    /// A failed read leaves the initiator unchanged, so the reply relayed by another node can
    /// still be tried (clients ask two relays in parallel).
    pub fn read_message_2(
        &mut self,
        message: &[u8],
    ) -> Result<(Vec<u8>, HandshakeResult), HandshakeError> {
        let payload = self.session.read(message, true)?;
        let result = self.session.finish()?;
        Ok((payload, result))
    }
}

/// Server side of HyperDHT's Noise IK.
pub struct IkResponder {
    session: Session,
}

impl IkResponder {
    /// Prepares to answer one handshake with this server's `static_seed` and a fresh
    /// `ephemeral_seed` from the caller.
    pub fn new(static_seed: &[u8; 32], ephemeral_seed: &[u8; 32]) -> Result<Self, HandshakeError> {
        Self::with_key_pair(&KeyPair::from_seed(static_seed), ephemeral_seed)
    }

    /// [`IkResponder::new`] with the static key pair already derived.
    pub fn with_key_pair(
        static_key: &KeyPair,
        ephemeral_seed: &[u8; 32],
    ) -> Result<Self, HandshakeError> {
        let session =
            Session::new(Pattern::Ik, false, static_key, None, ephemeral_seed, &NS_PEER_HANDSHAKE)?;
        Ok(Self { session })
    }

    /// Reads message 1; returns the client's (authenticated) static key and its payload.
    pub fn read_message_1(
        &mut self,
        message: &[u8],
    ) -> Result<(PublicKey, Vec<u8>), HandshakeError> {
        let payload = self.session.read(message, true)?;
        Ok((self.session.remote_static()?, payload))
    }

    /// Message 2: `e(32) || Enc(payload)(len + 16)`; completes the handshake.
    pub fn write_message_2(
        &mut self,
        payload: &[u8],
    ) -> Result<(Vec<u8>, HandshakeResult), HandshakeError> {
        let message = self.session.write(payload)?;
        let result = self.session.finish()?;
        Ok((message, result))
    }
}

/// Initiator of secret-stream's built-in Noise XX (`-> e`, `<- e, ee, s, es`, `-> s, se`).
///
/// secret-stream sends empty payloads; received payloads are returned for completeness.
pub struct XxInitiator {
    session: Session,
}

impl XxInitiator {
    /// Starts a handshake with this side's `static_seed` and a fresh `ephemeral_seed`.
    pub fn new(static_seed: &[u8; 32], ephemeral_seed: &[u8; 32]) -> Result<Self, HandshakeError> {
        let key = KeyPair::from_seed(static_seed);
        let session = Session::new(Pattern::Xx, true, &key, None, ephemeral_seed, &[])?;
        Ok(Self { session })
    }

    /// Message 1: `e(32)` (plus the payload in clear; secret-stream sends none).
    pub fn write_message_1(&mut self, payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        self.session.write(payload)
    }

    /// Reads message 2; returns the responder's static key and payload.
    pub fn read_message_2(
        &mut self,
        message: &[u8],
    ) -> Result<(PublicKey, Vec<u8>), HandshakeError> {
        let payload = self.session.read(message, true)?;
        Ok((self.session.remote_static()?, payload))
    }

    /// Message 3: `Enc(s)(48) || Enc(payload)(len + 16)`; completes the handshake.
    pub fn write_message_3(
        &mut self,
        payload: &[u8],
    ) -> Result<(Vec<u8>, HandshakeResult), HandshakeError> {
        let message = self.session.write(payload)?;
        let result = self.session.finish()?;
        Ok((message, result))
    }
}

/// Responder of secret-stream's built-in Noise XX.
pub struct XxResponder {
    session: Session,
}

impl XxResponder {
    /// Prepares to answer with this side's `static_seed` and a fresh `ephemeral_seed`.
    pub fn new(static_seed: &[u8; 32], ephemeral_seed: &[u8; 32]) -> Result<Self, HandshakeError> {
        let key = KeyPair::from_seed(static_seed);
        let session = Session::new(Pattern::Xx, false, &key, None, ephemeral_seed, &[])?;
        Ok(Self { session })
    }

    /// Reads message 1; returns its (clear-text) payload.
    pub fn read_message_1(&mut self, message: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        // Message 1 has no DH, so nothing can desynchronise: always retryable.
        self.session.read(message, true)
    }

    /// Message 2: `e(32) || Enc(s)(48) || Enc(payload)(len + 16)`.
    pub fn write_message_2(&mut self, payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        self.session.write(payload)
    }

    /// Reads message 3 and completes the handshake; returns the payload and the keys.
    ///
    /// Message 3 decrypts before its DH, so a failure ends the handshake (as in JS, where any
    /// handshake failure destroys the stream).
    pub fn read_message_3(
        &mut self,
        message: &[u8],
    ) -> Result<(Vec<u8>, HandshakeResult), HandshakeError> {
        let payload = self.session.read(message, false)?;
        let result = self.session.finish()?;
        Ok((payload, result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::KeyPair;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn ik_pair() -> (IkInitiator, IkResponder, KeyPair) {
        let server = KeyPair::from_seed(&[2; 32]);
        let i = IkInitiator::new(&[1; 32], &server.public_key(), &[0x11; 32]);
        let r = IkResponder::new(&[2; 32], &[0x22; 32]);
        match (i, r) {
            (Ok(i), Ok(r)) => (i, r, server),
            _ => panic!("setup"),
        }
    }

    #[test]
    fn ik_round_trip() {
        let (mut i, mut r, _) = ik_pair();
        let m1 = i.write_message_1(b"hello").unwrap();
        let (client, p1) = r.read_message_1(&m1).unwrap();
        assert_eq!(client, KeyPair::from_seed(&[1; 32]).public_key());
        assert_eq!(p1, b"hello");
        let (m2, rr) = r.write_message_2(b"world").unwrap();
        let (p2, ir) = i.read_message_2(&m2).unwrap();
        assert_eq!(p2, b"world");
        assert_eq!(ir.tx, rr.rx);
        assert_eq!(ir.rx, rr.tx);
        assert_eq!(ir.hash, rr.hash);
        assert_eq!(ir.local_stream_id(), rr.remote_stream_id());
        // Done: further steps are out of order.
        assert_eq!(i.read_message_2(&m2).unwrap_err(), HandshakeError::State);
        assert_eq!(r.write_message_2(b"").unwrap_err(), HandshakeError::State);
    }

    #[test]
    fn ik_every_truncation_and_bit_flip_is_an_error() {
        let (mut i, _, _) = ik_pair();
        let m1 = i.write_message_1(b"payload").unwrap();
        for len in 0..m1.len() {
            let (_, mut r, _) = ik_pair();
            assert!(r.read_message_1(&m1[..len]).is_err(), "len {len}");
        }
        for byte in 0..m1.len() {
            let (_, mut r, _) = ik_pair();
            let mut bad = m1.clone();
            bad[byte] ^= 0x40;
            assert!(r.read_message_1(&bad).is_err(), "byte {byte}");
        }
    }

    #[test]
    fn ik_initiator_retries_after_a_bad_reply() {
        let (mut i, mut r, _) = ik_pair();
        let m1 = i.write_message_1(b"").unwrap();
        r.read_message_1(&m1).unwrap();
        let (m2, _) = r.write_message_2(b"ok").unwrap();
        let mut bad = m2.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(i.read_message_2(&bad).unwrap_err(), HandshakeError::Decrypt);
        assert_eq!(i.read_message_2(&m2[..10]).unwrap_err(), HandshakeError::Malformed);
        assert_eq!(i.read_message_2(&m2).unwrap().0, b"ok");
    }

    #[test]
    fn small_order_ephemeral_is_refused() {
        let (mut i, _, _) = ik_pair();
        let m1 = i.write_message_1(b"").unwrap();
        for t in EIGHT_TORSION {
            let (_, mut r, _) = ik_pair();
            let mut bad = m1.clone();
            bad[..32].copy_from_slice(&t.compress().to_bytes());
            assert_eq!(r.read_message_1(&bad).unwrap_err(), HandshakeError::Dh);
        }
    }

    #[test]
    fn small_order_server_key_is_refused() {
        let bad_server = PublicKey(EIGHT_TORSION[2].compress().to_bytes());
        let mut i = IkInitiator::new(&[1; 32], &bad_server, &[3; 32]).unwrap();
        assert_eq!(i.write_message_1(b"").unwrap_err(), HandshakeError::Dh);
        assert_eq!(i.write_message_1(b"").unwrap_err(), HandshakeError::State);
    }

    #[test]
    fn oversized_payload_is_refused() {
        let (mut i, _, _) = ik_pair();
        let big = vec![0u8; 65535];
        assert_eq!(i.write_message_1(&big).unwrap_err(), HandshakeError::MessageTooLong);
        let (_, mut r, _) = ik_pair();
        // 65535 zero bytes: the all-zero `e` is a small-order point.
        assert_eq!(r.read_message_1(&big[..]).unwrap_err(), HandshakeError::Dh);
        let bigger = vec![0u8; 65536];
        assert_eq!(r.read_message_1(&bigger).unwrap_err(), HandshakeError::MessageTooLong);
    }

    #[test]
    fn xx_round_trip_and_tampered_message_3() {
        let run = |tamper: bool| {
            let mut i = XxInitiator::new(&[1; 32], &[3; 32]).unwrap();
            let mut r = XxResponder::new(&[2; 32], &[4; 32]).unwrap();
            let m1 = i.write_message_1(&[]).unwrap();
            assert_eq!(m1.len(), 32);
            assert!(r.read_message_1(&m1).unwrap().is_empty());
            let m2 = r.write_message_2(&[]).unwrap();
            assert_eq!(m2.len(), 96);
            let (rs, _) = i.read_message_2(&m2).unwrap();
            assert_eq!(rs, KeyPair::from_seed(&[2; 32]).public_key());
            let (mut m3, ir) = i.write_message_3(&[]).unwrap();
            assert_eq!(m3.len(), 64);
            if tamper {
                m3[60] ^= 1;
                assert_eq!(r.read_message_3(&m3).unwrap_err(), HandshakeError::Decrypt);
                m3[60] ^= 1;
                // Poisoned: even the genuine message is refused now.
                assert_eq!(r.read_message_3(&m3).unwrap_err(), HandshakeError::State);
                return;
            }
            let (_, rr) = r.read_message_3(&m3).unwrap();
            assert_eq!(ir.hash, rr.hash);
            assert_eq!(ir.tx, rr.rx);
            assert_eq!(rr.remote_public_key, KeyPair::from_seed(&[1; 32]).public_key());
        };
        run(false);
        run(true);
    }

    proptest::proptest! {
        // Each case runs several handshakes (slow curve arithmetic in debug builds).
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn arbitrary_bytes_never_panic(msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let (mut i, mut r, _) = ik_pair();
            let _ = r.read_message_1(&msg);
            let _ = i.write_message_1(b"x");
            let _ = i.read_message_2(&msg);
            let mut xr = XxResponder::new(&[2; 32], &[4; 32]).unwrap();
            let _ = xr.read_message_1(&msg);
            let mut xi = XxInitiator::new(&[1; 32], &[3; 32]).unwrap();
            let _ = xi.write_message_1(&[]);
            let _ = xi.read_message_2(&msg);
            let _ = xr.read_message_3(&msg);
        }
    }
}
