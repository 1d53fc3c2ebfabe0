//! Noise handshakes over Ed25519 keys, and the values derived from their result.
//!
//! * [`IkInitiator`] / [`IkResponder`]: `Noise_IK_Ed25519_ChaChaPoly_BLAKE2b` with prologue
//!   `NS_PEER_HANDSHAKE`, carried inside DHT PEER_HANDSHAKE messages (spec `hyperdht-dht.md`
//!   §9.3). The client knows the server's public key; one round trip.
//! * [`XxInitiator`] / [`XxResponder`]: `Noise_XX_Ed25519_ChaChaPoly_BLAKE2b`, empty prologue,
//!   empty payloads: secret-stream's built-in handshake when no completed one is supplied (spec
//!   `hyperswarm-transport.md` §2.2).
//!
//! Both run on `snow` with a custom resolver (`resolver`): DH on Ed25519 points as
//! noise-curve-ed does ([`dh`]), BLAKE2b, ring's ChaChaPoly. Sans-IO: each handshake takes its
//! 32-byte ephemeral seed from the caller and nothing here reads a clock or the OS RNG. Every
//! malformed input (short message, bad point, bad tag) is an `Err`, never a panic.
//!
//! After the handshake, [`HandshakeResult`] holds the split keys (`tx`, `rx`) and the 64-byte
//! handshake hash from which hyperdht derives the holepunch secret and secret-stream derives
//! stream ids and unordered-message keys ([`holepunch_secret`], [`stream_id`],
//! [`unordered_send_key`]).

pub mod dh;
mod handshake;
mod resolver;
mod session;

use zeroize::{Zeroize, ZeroizeOnDrop};

pub use handshake::{IkInitiator, IkResponder, XxInitiator, XxResponder};
pub use session::MAX_MESSAGE_LEN;

use crate::hash::hash32_keyed_parts;
use crate::ns::{NS_PEER_HOLEPUNCH, NS_SS_INITIATOR, NS_SS_RESPONDER, NS_SS_SEND};
use crate::sign::PublicKey;

/// Why a handshake step failed. All variants but `Setup` and `State` are remote input: drop
/// the handshake and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A DH was refused: the peer sent a non-canonical, small-order or mixed-order point.
    #[error("Noise DH refused the remote key")]
    Dh,
    /// A ciphertext did not authenticate (tampered message, wrong keys).
    #[error("Noise message failed to decrypt")]
    Decrypt,
    /// The message is too short for its pattern.
    #[error("malformed Noise message")]
    Malformed,
    /// Message or payload above the Noise limit of 65535 bytes.
    #[error("Noise message too long")]
    MessageTooLong,
    /// A second message was written with the same ephemeral seed (one seed, one message `e`).
    #[error("ephemeral seed already used")]
    EphemeralUsed,
    /// A step was called out of order, after a failure that ends the handshake, or twice.
    #[error("handshake step out of order or after a failure")]
    State,
    /// snow refused the parameters (only possible with a bug in this crate).
    #[error("handshake setup failed")]
    Setup,
}

/// The outcome of a completed handshake: what secret-stream and hyperdht need.
///
/// `tx`/`rx` are the first 32 bytes of the Noise split outputs (the initiator's `tx` is the
/// responder's `rx`); `hash` is the final handshake hash `h`, equal on both sides. Secrets are
/// zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct HandshakeResult {
    /// Key this side sends with.
    pub tx: [u8; 32],
    /// Key this side receives with.
    pub rx: [u8; 32],
    /// The 64-byte handshake hash.
    pub hash: [u8; 64],
    /// Whether this side initiated the handshake (decides stream-id and key roles).
    #[zeroize(skip)]
    pub is_initiator: bool,
    /// This side's static public key.
    #[zeroize(skip)]
    pub local_public_key: PublicKey,
    /// The peer's authenticated static public key.
    #[zeroize(skip)]
    pub remote_public_key: PublicKey,
}

impl HandshakeResult {
    /// `H32k(NS_PEER_HOLEPUNCH, key = hash)`: the key of encrypted holepunch payloads.
    #[must_use]
    pub fn holepunch_secret(&self) -> [u8; 32] {
        holepunch_secret(&self.hash)
    }

    /// This side's secret-stream id (sent in its header frame).
    #[must_use]
    pub fn local_stream_id(&self) -> [u8; 32] {
        stream_id(&self.hash, self.is_initiator)
    }

    /// The stream id the peer's header frame must carry.
    #[must_use]
    pub fn remote_stream_id(&self) -> [u8; 32] {
        stream_id(&self.hash, !self.is_initiator)
    }
}

impl core::fmt::Debug for HandshakeResult {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HandshakeResult")
            .field("is_initiator", &self.is_initiator)
            .field("remote_public_key", &self.remote_public_key)
            .finish_non_exhaustive()
    }
}

/// `holepunchSecret = H32k(NS_PEER_HOLEPUNCH, key = handshake hash)` (spec §9.5).
#[must_use]
pub fn holepunch_secret(hash: &[u8; 64]) -> [u8; 32] {
    hash32_keyed_parts(&[&NS_PEER_HOLEPUNCH], hash)
}

/// secret-stream id of one side: `H32k(NS_INITIATOR or NS_RESPONDER, key = hash)`
/// (`SecretStream.id(hash, isInitiator)`, spec `hyperswarm-transport.md` §2.4).
#[must_use]
pub fn stream_id(hash: &[u8; 64], initiator: bool) -> [u8; 32] {
    let ns = if initiator { &NS_SS_INITIATOR } else { &NS_SS_RESPONDER };
    hash32_keyed_parts(&[ns], hash)
}

/// Key of the unordered messages one side *sends*: `H32k(NS_X || NS_SEND, key = hash)` with X
/// the sender's role (spec `hyperswarm-transport.md` §2.8). A side receives with
/// `unordered_send_key(hash, !is_initiator)`.
#[must_use]
pub fn unordered_send_key(hash: &[u8; 64], initiator: bool) -> [u8; 32] {
    let ns = if initiator { &NS_SS_INITIATOR } else { &NS_SS_RESPONDER };
    hash32_keyed_parts(&[ns, &NS_SS_SEND], hash)
}
