//! tern-crypto: every cryptographic primitive of the HyperDHT / Hyperswarm wire, byte-compatible
//! with the JavaScript reference (hyperdht 6.34.0, noise-handshake 4.2.0, noise-curve-ed 2.1.0,
//! @hyperswarm/secret-stream 6.9.2, libsodium).
//!
//! | module | what | spec |
//! |---|---|---|
//! | [`hash`] | BLAKE2b `H32`/`H64`/keyed `H32k`, node ids | dht §3.4 |
//! | [`ns`] | namespaces (`NS_ANNOUNCE`, ..., secret-stream) | dht §8.2, transport §2.4 |
//! | [`token`] | round-trip tokens and their rotation | dht §3.6 |
//! | [`sign`] | Ed25519 keys, libsodium-strict and batch verification | dht §8.2 |
//! | [`signable`] | announce / unannounce / mutable signables | dht §8.3, §8.5 |
//! | [`noise`] | Noise IK and XX over Ed25519, derived secrets | dht §9.3–9.5, transport §2.2 |
//! | [`secretbox`] | XSalsa20-Poly1305 holepunch payloads, address tokens | dht §10.2 |
//! | [`secretstream`] | libsodium secretstream, secret-stream framing, unordered boxes | transport §2 |
//!
//! Sans-IO (DESIGN.md principle 1): nothing here reads a clock, draws OS randomness, spawns a
//! thread or touches a socket. Every random value (ephemeral keys, nonces, secretstream
//! headers, token secrets, unordered counters) is an argument. `crypto/clippy.toml` enforces it.
//! Remote input never panics: malformed keys, messages and frames are typed errors. Secrets are
//! fixed-size arrays zeroized on drop.

pub mod hash;
pub mod noise;
pub mod ns;
pub mod secretbox;
pub mod secretstream;
pub mod sign;
pub mod signable;
pub mod token;

pub use hash::{hash32, hash32_keyed, hash64, node_id};
pub use noise::{
    HandshakeError, HandshakeResult, IkInitiator, IkResponder, XxInitiator, XxResponder,
};
pub use secretstream::{SecretStream, StreamError};
pub use sign::{KeyPair, PublicKey, Signature, SignatureError};
pub use token::TokenSecrets;
