//! tern: a high-capacity HyperDHT node — the Rust API ([`Dht`]) and the `tern` CLI.
//!
//! ```no_run
//! use tern::{Dht, DhtConfig, KeyPair};
//!
//! let dht = Dht::bind(DhtConfig {
//!     bootstrap: vec!["127.0.0.1:49736".parse().unwrap()],
//!     ..DhtConfig::default()
//! })
//! .unwrap();
//! dht.ready().wait().unwrap();
//! let key_pair = KeyPair::from_seed(&[1; 32]);
//! let topic = [7u8; 32];
//! dht.announce(topic, &key_pair, &[]).wait().unwrap();
//! for reply in dht.lookup(topic) {
//!     println!("{} knows {} peers", reply.from, reply.peers.len());
//! }
//! dht.destroy().unwrap();
//! ```
//!
//! Every call returns at once: [`Pending`] is a `Future` (for any executor) with a
//! blocking `.wait()`, and [`LookupStream`] is both a `Stream` and a blocking iterator.
//! The node itself runs on a driver thread (see `tern-driver`; io_uring where the
//! kernel allows it, else epoll — `TERN_IO=auto|uring|epoll` picks); the protocol lives in
//! the sans-IO crates `tern-rpc`, `tern-dht` and `tern-core`.

mod api;
pub mod snapshot;

pub use api::conn::Server;
pub use api::dht::{
    Dht, DhtConfig, IO_ENV, IO_PROBE_FAIL_ENV, NodeDriver, PUBLIC_BOOTSTRAP, io_mode_from_env,
    node_driver, node_driver_with, shard_driver,
};
pub use api::endpoint::ApiNode;
pub use api::error::{BindError, DhtError};
pub use api::monitor::{DhtMonitor, ShardLoad};
pub use api::pending::{LookupReply, LookupStream, Pending};
pub use api::shard::ShardStats;
pub use api::stream::{MAX_UNORDERED_MESSAGE_LEN, ReadHalf, SecureStream, WriteHalf};
pub use tern_base::NodeId;
pub use tern_core::ConnectError;
pub use tern_core::conn::ConnConfig;
pub use tern_core::conn::RemoteView;
pub use tern_core::udx::{UdxConfig, UdxTotals};
pub use tern_core::{NodeConfig, NodeStats};
pub use tern_crypto::{KeyPair, PublicKey};
pub use tern_dht::{MutableValue, OpError, PeerInfo};
pub use tern_driver::MAX_DATAGRAM_LEN;
pub use tern_driver::{IoBackend, IoMode};
pub use tern_rpc::RpcConfig;
