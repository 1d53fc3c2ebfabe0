//! tern-core: one HyperDHT node — dht-rpc ([`tern_rpc::Rpc`]) and hyperdht
//! ([`tern_dht::DhtServer`], [`tern_dht::DhtClient`]) on one identity — behind the
//! sans-IO contract of DESIGN.md, with encrypted connections ([`conn`]) over UDX
//! streams ([`tern_udx`]) sharing its sockets.
//!
//! Inputs: [`Node::handle_datagram`], [`Node::handle_timeout`], [`Node::handle_command`];
//! outputs: datagrams appended to the caller's [`tern_base::TxQueue`],
//! [`Node::poll_event`], [`Node::poll_timeout`]. The same `Node` runs under the socket
//! drivers, the simulator and tests. [`Node`] also implements [`tern_base::Endpoint`].

pub mod conn;
mod node;

pub use conn::{ConnConfig, ConnEvent, ConnStats, ConnectError, Connection, ListenerId, Origin};
pub use node::{Firewall, Node, NodeCommand, NodeConfig, NodeEvent, NodeStats};
pub use tern_udx as udx;
