//! Unordered messages: secret-stream's datagrams over UDX MESSAGE packets (spec
//! `hyperswarm-transport.md` §2.8).
//!
//! Envelope = `counter (8) || crypto_secretbox_easy(msg, nonce = counter || 16 zero bytes,
//! send_key)`, 24 + len bytes. The sender's 8-byte counter starts at a random value (from the
//! caller) and is incremented as a little-endian integer *before* each message; wrapping around
//! to the start value again is an error, since the next nonce would repeat. Receivers drop
//! envelopes under 24 bytes or that fail to open; there is no replay protection (as in JS).

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::noise::unordered_send_key;
use crate::secretbox::{MAC_LEN, NONCE_LEN, open_detached, seal_detached};

/// Length of the counter that prefixes an envelope.
pub const COUNTER_LEN: usize = 8;
/// Bytes an envelope adds to its message: counter + MAC.
pub const ENVELOPE_OVERHEAD: usize = COUNTER_LEN + MAC_LEN;

/// Unordered-message failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnorderedError {
    /// Every counter value has been used (2^64 messages); local.
    #[error("unordered-message counter exhausted")]
    Exhausted,
    /// Envelope shorter than 24 bytes (remote; drop silently).
    #[error("unordered envelope too short")]
    TooShort,
    /// Envelope failed authentication (remote; drop silently).
    #[error("unordered envelope failed to open")]
    Forged,
}

fn nonce_of(counter: &[u8; COUNTER_LEN]) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..COUNTER_LEN].copy_from_slice(counter);
    nonce
}

/// Sealing side of one direction.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct UnorderedSender {
    key: [u8; 32],
    counter: [u8; COUNTER_LEN],
    start: [u8; COUNTER_LEN],
    exhausted: bool,
}

impl UnorderedSender {
    /// Sender for this side of a stream with handshake hash `hash`; `counter_start` is 8 random
    /// bytes from the caller.
    #[must_use]
    pub fn new(hash: &[u8; 64], is_initiator: bool, counter_start: [u8; COUNTER_LEN]) -> Self {
        Self::from_key(&unordered_send_key(hash, is_initiator), counter_start)
    }

    /// Sender with an explicit send key.
    #[must_use]
    pub fn from_key(key: &[u8; 32], counter_start: [u8; COUNTER_LEN]) -> Self {
        Self { key: *key, counter: counter_start, start: counter_start, exhausted: false }
    }

    /// Appends the envelope of `message` to `out`.
    pub fn seal(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), UnorderedError> {
        if self.exhausted {
            return Err(UnorderedError::Exhausted);
        }
        // sodium_increment: little-endian, wrapping.
        let next = u64::from_le_bytes(self.counter).wrapping_add(1).to_le_bytes();
        if next == self.start {
            self.exhausted = true;
            return Err(UnorderedError::Exhausted);
        }
        self.counter = next;
        out.reserve(ENVELOPE_OVERHEAD + message.len());
        out.extend_from_slice(&self.counter);
        let tag_at = out.len();
        out.extend_from_slice(&[0; MAC_LEN]);
        let body_at = out.len();
        out.extend_from_slice(message);
        let tag = seal_detached(&self.key, &nonce_of(&self.counter), &mut out[body_at..]);
        out[tag_at..body_at].copy_from_slice(&tag);
        Ok(())
    }
}

/// Opening side of one direction.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct UnorderedReceiver {
    key: [u8; 32],
}

impl UnorderedReceiver {
    /// Receiver for this side of a stream: opens what the *peer* sealed.
    #[must_use]
    pub fn new(hash: &[u8; 64], is_initiator: bool) -> Self {
        Self::from_key(&unordered_send_key(hash, !is_initiator))
    }

    /// Receiver with an explicit key (the peer's send key).
    #[must_use]
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self { key: *key }
    }

    /// Opens `envelope` and appends the message to `out` (unchanged on error).
    pub fn open(&self, envelope: &[u8], out: &mut Vec<u8>) -> Result<(), UnorderedError> {
        let (counter, rest) =
            envelope.split_first_chunk::<COUNTER_LEN>().ok_or(UnorderedError::TooShort)?;
        let (tag, body) = rest.split_first_chunk::<MAC_LEN>().ok_or(UnorderedError::TooShort)?;
        let start = out.len();
        out.extend_from_slice(body);
        if open_detached(&self.key, &nonce_of(counter), &mut out[start..], tag).is_err() {
            out.truncate(start);
            return Err(UnorderedError::Forged);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counter_exhaustion() {
        let mut s = UnorderedSender::from_key(&[1; 32], u64::MAX.to_le_bytes());
        let mut out = Vec::new();
        // MAX -> 0 wraps fine; reaching MAX (the start) again is refused.
        s.seal(b"a", &mut out).unwrap();
        assert_eq!(out[..8], [0; 8]);
        s.counter = (u64::MAX - 1).to_le_bytes();
        assert_eq!(s.seal(b"b", &mut out), Err(UnorderedError::Exhausted));
        assert_eq!(s.seal(b"b", &mut out), Err(UnorderedError::Exhausted));
    }

    #[test]
    fn short_and_forged() {
        let r = UnorderedReceiver::from_key(&[1; 32]);
        let mut out = Vec::new();
        assert_eq!(r.open(&[0; 23], &mut out), Err(UnorderedError::TooShort));
        assert_eq!(r.open(&[0; 24], &mut out), Err(UnorderedError::Forged));
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(
            hash in proptest::array::uniform32(any::<u8>()),
            start: [u8; 8],
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 1..5),
        ) {
            let mut h = [0u8; 64];
            h[..32].copy_from_slice(&hash);
            let mut tx = UnorderedSender::new(&h, true, start);
            let rx = UnorderedReceiver::new(&h, false);
            let wrong = UnorderedReceiver::new(&h, true);
            for m in msgs {
                let mut env = Vec::new();
                tx.seal(&m, &mut env).unwrap();
                prop_assert_eq!(env.len(), m.len() + ENVELOPE_OVERHEAD);
                let mut out = Vec::new();
                rx.open(&env, &mut out).unwrap();
                prop_assert_eq!(out, m);
                prop_assert!(wrong.open(&env, &mut Vec::new()).is_err());
            }
        }
    }
}
