//! @hyperswarm/secret-stream on the wire: libsodium secretstream, framing, the header exchange
//! and unordered datagrams (spec `hyperswarm-transport.md` §2).
//!
//! * [`cipher`]: `crypto_secretstream_xchacha20poly1305` push/pull, in place.
//! * [`frame`]: `uint24le` framing and a bounded reassembler for the raw byte stream.
//! * [`SecretStream`]: sans-IO session after the handshake: own header frame, encrypted data
//!   frames, validation of the peer's header, decrypted messages.
//! * [`UnorderedSender`] / [`UnorderedReceiver`]: secretbox envelopes for UDX MESSAGE packets.
//!
//! The handshake itself is [`crate::noise`] (XX for secret-stream's own, IK through hyperdht).
//! Randomness (secretstream headers, unordered counters) comes from the caller.

pub mod cipher;
pub mod frame;
mod stream;
mod unordered;

pub use cipher::{CipherError, PullStream, PushStream};
pub use frame::{FrameDecoder, FrameError};
pub use stream::{
    FRAME_OVERHEAD, FRAME_ROOM, HEADER_BODY_LEN, HEADER_FRAME_LEN, MAX_MESSAGE_LEN, SecretStream,
    StreamError, frame_len,
};
pub use unordered::{
    COUNTER_LEN, ENVELOPE_OVERHEAD, UnorderedError, UnorderedReceiver, UnorderedSender,
};
