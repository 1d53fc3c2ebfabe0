//! tern-dht: the hyperdht layer on top of dht-rpc, sans-IO.
//!
//! * [`store`]: bounded record stores (topics, router entries, refreshes, bumps,
//!   mutable and immutable records) with hyperdht's ageing and explicit budgets.
//! * [`server`]: [`DhtServer`], the [`tern_rpc::Handler`] answering hyperdht commands
//!   with the reference's exact replies, error codes and silent drops, and relaying
//!   PEER_HANDSHAKE / PEER_HOLEPUNCH for announced servers ([`relay_guard`] keeps
//!   that routing from being aimed at third parties).
//! * [`presence`]: [`presence::TargetFilter`], the lock-free filter a sharded node's
//!   shards share to know which targets certainly hold no record.
//! * [`client`]: [`DhtClient`], lookup / announce / unannounce / find_peer / mutable and
//!   immutable put and get as queries plus commit rounds, verifying every reply.

pub mod cache;
pub mod client;
pub mod presence;
pub mod relay_guard;
pub mod server;
pub mod store;
pub mod topics;

pub use client::{DhtClient, DhtEvent, MutableValue, OpError, OpId, OpOutput, PeerInfo};
pub use presence::TargetFilter;
pub use server::DhtServer;
pub use store::{Store, StoreLimits, StoreStats};
