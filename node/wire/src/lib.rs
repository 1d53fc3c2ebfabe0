//! tern-wire: panic-free, zero-copy codecs for everything on the HyperDHT wire.
//!
//! * [`cursor`]: the compact-encoding primitives (`uint`, fixed integers, buffers,
//!   strings, addresses, arrays with the 0x100000 cap) on a bounds-checked [`Reader`]
//!   and an overflow-tracking [`Writer`].
//! * [`rpc`]: dht-rpc request and response datagrams.
//! * [`hyperdht`]: storage values (peer records, announce, lookup, mutable, plugin).
//! * [`handshake`]: PEER_HANDSHAKE / PEER_HOLEPUNCH messages and their payloads.
//! * [`udx`]: the UDX packet header and SACK blocks.
//!
//! Decoding borrows from the input and returns a [`DecodeError`] (small, `Copy`, only
//! ever counted) on any malformed input; it never panics and never allocates. Encoding
//! knows its exact size first ([`Encode::encoded_len`]) and writes into a caller's
//! buffer. Nothing here does I/O: this crate is a sans-IO core.
//!
//! Facts come from the JS reference (compact-encoding 3.5.2, dht-rpc 6.27.0, hyperdht
//! 6.34.0, udx-native 1.21.3); byte-exact vectors made by it are in `testdata/vectors`.

pub mod cursor;
mod error;
pub mod handshake;
pub mod hyperdht;
mod list;
pub mod rpc;
pub mod udx;

pub use cursor::{Decode, Encode, Reader, Writer};
pub use error::{DecodeError, EncodeError};
pub use list::{Addr6List, AddrList, FixedItem, List, ListIter, RelayPair, RelayPairList};
