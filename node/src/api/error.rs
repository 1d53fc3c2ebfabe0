//! Errors of the Rust API.

use tern_dht::OpError;

/// Why a [`crate::Dht`] call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// The operation reached the network and failed there.
    #[error(transparent)]
    Op(#[from] OpError),
    /// The node was destroyed (or its driver stopped) before the result arrived.
    #[error("the node is closed")]
    Closed,
    /// The node's command mailbox is full; retry later.
    #[error("the node is busy (command mailbox full)")]
    Busy,
    /// A connect failed.
    #[error(transparent)]
    Connect(#[from] tern_core::ConnectError),
    /// This key pair already listens on this node (or the listener table is full).
    #[error("already listening on this key pair (or too many listeners)")]
    AlreadyListening,
}

/// Why [`crate::Dht::bind`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The driver could not start or bind the node's sockets.
    #[error("could not start the node: {0}")]
    Driver(String),
    /// A bootstrapper needs a concrete IPv4 host (not 0.0.0.0).
    #[error("a bootstrapper needs a concrete IPv4 host, not {0}")]
    UnspecifiedHost(std::net::Ipv4Addr),
    /// The OS random source failed while drawing the node's seeds.
    #[error("OS random source failed: {0}")]
    Random(String),
}
