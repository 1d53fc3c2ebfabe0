//! tern-rpc: the sans-IO core of dht-rpc.
//!
//! It owns the routing table, the transaction table, iterative queries, token secrets
//! and NAT sampling of one DHT identity. It never touches a socket or a clock: the
//! driver feeds it datagrams and timestamps and drains the datagrams it wants sent.
//! [`Rpc`] is the node; [`Handler`] is how the application (hyperdht) answers its own
//! commands on the zero-copy path.

pub mod io;
mod maintenance;
pub mod nat;
mod node;
pub mod query;
pub mod ratelimit;
mod server;
pub mod stats;
pub mod table;
pub mod table_sync;
mod tokens;

pub use maintenance::Lifecycle;
pub use node::{QueryId, ReqId, Rpc, RpcConfig, RpcEvent};
pub use query::{QuerySpec, Reply};
pub use ratelimit::{RateLimit, RateLimiter};
pub use server::{
    Handler, IncomingRequest, NoApplication, RECOMMENDED_MAX_REPLY_RATIO, ReplyFields, Responder,
};
pub use stats::{APP_COMMAND_SLOTS, DropReason, RpcStats};
pub use table::{AddOutcome, K, RoutingTable, TableNode};
pub use table_sync::TableChange;
pub use tokens::TOKEN_CACHE_SLOTS;
