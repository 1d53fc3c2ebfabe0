//! The Rust API: the [`dht::Dht`] handle, its results, and the endpoint it runs.

pub(crate) mod conn;
pub(crate) mod dht;
pub(crate) mod endpoint;
pub(crate) mod error;
pub(crate) mod monitor;
pub(crate) mod pending;
pub(crate) mod pipe;
pub(crate) mod shard;
pub(crate) mod stream;
