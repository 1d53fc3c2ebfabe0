//! tern-rpc: the sans-IO core of dht-rpc.
//!
//! It owns the routing table, the transaction table, iterative queries, token secrets
//! and NAT sampling of one DHT identity. It never touches a socket or a clock: the
//! driver feeds it datagrams and timestamps and drains the datagrams it wants sent.

pub mod io;
pub mod nat;
pub mod query;
pub mod table;

pub use table::{AddOutcome, K, RoutingTable, TableNode};
