//! [`Dht`]: the Rust API of a tern node, shaped after hyperdht's (`lookup`, `announce`,
//! `unannounce`, `findPeer`, `mutablePut/Get`, `immutablePut/Get`, `destroy`).
//!
//! A `Dht` owns (or shares) a driver thread that runs the node; every method sends a
//! command through the driver's bounded mailbox and returns a [`Pending`] or a
//! [`LookupStream`] at once.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, OnceLock};

use futures_channel::mpsc;
use tern_base::NodeId;
use tern_core::conn::RemoteView;
use tern_core::{Firewall, Node, NodeCommand, NodeConfig, NodeStats};
use tern_crypto::{KeyPair, PublicKey};
use tern_dht::{MutableValue, OpOutput, PeerInfo};
use tern_driver::{Driver, DriverBuilder, EndpointHandle, IoMode, SendError, SocketOptions};
use tern_rpc::RpcConfig;

use crate::api::conn::{SelfHandle, Server};
use crate::api::endpoint::{ApiCommand, ApiNode, Route, Shared};
use crate::api::error::{BindError, DhtError};
use crate::api::monitor::DhtMonitor;
use crate::api::pending::{LookupStream, Pending};
use crate::api::shard::{ShardCounters, ShardLink, ShardStats};
use crate::api::stream::SecureStream;

/// The public HyperDHT bootstrap nodes, used when no bootstrap list is given, as the
/// JS reference does. Tests never use them.
pub const PUBLIC_BOOTSTRAP: [&str; 3] =
    ["88.99.3.86:49737", "142.93.90.113:49737", "138.68.147.8:49737"];

/// Buffered lookup replies per stream; replies beyond are dropped (and counted) rather
/// than buffering without bound when the caller reads slowly.
const LOOKUP_BUFFER: usize = 1024;

/// How to start a node.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Bootstrap nodes; empty means the public HyperDHT network.
    pub bootstrap: Vec<SocketAddrV4>,
    /// Host to bind (default 0.0.0.0).
    pub host: Ipv4Addr,
    /// Server port; 0 means hyperdht's default 49737–49741, then any free port.
    pub port: u16,
    /// `Some(false)`: become persistent as soon as the address is known (like
    /// `ephemeral: false`); `Some(true)`: stay a client; `None`: adaptive.
    pub ephemeral: Option<bool>,
    /// Assume a firewall (send from a separate client socket) until tested otherwise.
    pub firewalled: bool,
    /// Never contact the public network even with an empty bootstrap list (a first node
    /// of a private network).
    pub no_public_bootstrap: bool,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            host: Ipv4Addr::UNSPECIFIED,
            port: 0,
            ephemeral: None,
            firewalled: true,
            no_public_bootstrap: false,
        }
    }
}

/// Driver threads that run [`Dht`] nodes; share one among many nodes with
/// [`Dht::start_on`] (a test network, a load generator).
pub type NodeDriver = Driver<ApiNode>;

/// The environment variable that picks the driver backend: `auto` (default), `uring`
/// or `epoll` (the CLI's `--io` reads it too).
pub const IO_ENV: &str = "TERN_IO";

/// The environment variable that makes the io_uring probe fail as if the kernel
/// answered `EPERM` or `ENOSYS` — for testing the automatic fallback on a host where
/// io_uring works.
pub const IO_PROBE_FAIL_ENV: &str = "TERN_IO_PROBE_FAIL";

/// The environment variable that turns UDP GSO off (`0`): every datagram then leaves
/// with its own message, as before GSO (for A/B measurements and odd kernels).
pub const GSO_ENV: &str = "TERN_GSO";

/// The environment variable that turns UDP_GRO off (`0`); the driver then keeps its
/// receive buffers at 2 KiB instead of 64 KiB.
pub const GRO_ENV: &str = "TERN_GRO";

/// The backend `TERN_IO` asks for ([`IoMode::Auto`] when unset).
pub fn io_mode_from_env() -> Result<IoMode, BindError> {
    match std::env::var(IO_ENV) {
        Ok(v) => v.parse().map_err(|e| BindError::Driver(format!("{IO_ENV}: {e}"))),
        Err(_) => Ok(IoMode::Auto),
    }
}

/// Starts a driver for `threads` threads named `name`, on the backend `TERN_IO` asks
/// for (see [`node_driver_with`]).
pub fn node_driver(threads: usize, name: &str) -> Result<NodeDriver, BindError> {
    node_driver_with(threads, name, io_mode_from_env()?)
}

/// Starts a driver for `threads` threads named `name` on backend `io`. With
/// [`IoMode::Auto`], io_uring is probed once per process; where it is blocked the
/// driver logs one warning naming the cause and runs epoll.
pub fn node_driver_with(threads: usize, name: &str, io: IoMode) -> Result<NodeDriver, BindError> {
    builder(threads, name, io).start::<ApiNode>().map_err(|e| BindError::Driver(e.to_string()))
}

/// Starts a driver for one sharded node ([`Dht::start_sharded`]): `cores` threads,
/// each pinned to a core, whose sockets are bound with SO_REUSEPORT so the shards'
/// server sockets share one port.
pub fn shard_driver(cores: usize, name: &str, io: IoMode) -> Result<NodeDriver, BindError> {
    builder(cores, name, io)
        .pin_threads(true)
        .socket_options(SocketOptions { reuse_port: true, ..offload_options() })
        .start::<ApiNode>()
        .map_err(|e| BindError::Driver(e.to_string()))
}

fn builder(threads: usize, name: &str, io: IoMode) -> DriverBuilder {
    let simulate = match std::env::var(IO_PROBE_FAIL_ENV).as_deref() {
        Ok("EPERM" | "eperm") => Some(libc_errno::EPERM),
        Ok("ENOSYS" | "enosys") => Some(libc_errno::ENOSYS),
        _ => None,
    };
    DriverBuilder::new()
        .threads(threads)
        .name(name)
        .io(io)
        .simulate_uring_errno(simulate)
        .socket_options(offload_options())
}

/// Socket options with GSO and GRO on unless [`GSO_ENV`] / [`GRO_ENV`] say `0`. Both
/// pay for one encrypted stream: GSO cuts the kernel's per-datagram send path to one
/// pass per run of up to 64 datagrams, GRO the receive path likewise (BENCHMARKS.md,
/// P5). Peers see ordinary datagrams either way.
fn offload_options() -> SocketOptions {
    let on = |name| std::env::var(name).map_or(true, |v| v.trim() != "0");
    SocketOptions { gso: on(GSO_ENV), gro: on(GRO_ENV), ..SocketOptions::default() }
}

/// The two errno values [`IO_PROBE_FAIL_ENV`] can simulate (Linux numbering; the
/// crate does not otherwise need libc).
mod libc_errno {
    pub(super) const EPERM: i32 = 1;
    pub(super) const ENOSYS: i32 = 38;
}

/// A running HyperDHT node.
pub struct Dht {
    handle: EndpointHandle<ApiNode>,
    shared: Arc<Mutex<Shared>>,
    /// The driver this node owns (None when it runs on a shared driver).
    driver: Option<NodeDriver>,
    /// The other shards of a sharded node (the first shard is `handle`).
    shards: Vec<EndpointHandle<ApiNode>>,
    /// Their states, for what the whole node is only when every shard is (persistence).
    shards_shared: Vec<Arc<Mutex<Shared>>>,
    /// What the shards passed between them (sharded nodes only).
    counters: Option<Arc<ShardCounters>>,
    /// The identity `connect` uses unless given one (random per node).
    key_pair: KeyPair,
}

impl std::fmt::Debug for Dht {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dht").field("local_addr", &self.local_addr()).finish_non_exhaustive()
    }
}

fn random_seeds() -> Result<(u64, [u8; 32]), BindError> {
    let mut buf = [0u8; 40];
    getrandom::fill(&mut buf).map_err(|e| BindError::Random(e.to_string()))?;
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&buf[..8]);
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&buf[8..]);
    Ok((u64::from_le_bytes(seed), secret))
}

/// A node's default identity, derived one-way from its OS-random secret seed.
fn default_key_pair(secret: &[u8; 32]) -> KeyPair {
    KeyPair::from_seed(&tern_crypto::hash32_keyed(b"tern/default-key-pair", secret))
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Dht {
    /// Starts a node on its own driver thread and bootstraps it.
    pub fn bind(config: DhtConfig) -> Result<Dht, BindError> {
        let mut bootstrap = config.bootstrap.clone();
        if bootstrap.is_empty() && !config.no_public_bootstrap {
            bootstrap = PUBLIC_BOOTSTRAP.iter().filter_map(|s| s.parse().ok()).collect();
        }
        let rpc = RpcConfig {
            bootstrap,
            firewalled: config.firewalled,
            ephemeral: config.ephemeral,
            ..RpcConfig::default()
        };
        Self::start(NodeConfig {
            rpc,
            host: config.host,
            port: config.port,
            ..NodeConfig::default()
        })
    }

    /// Starts a bootstrap node at `host:port`: persistent from the start with id
    /// `H32(host:port)`, no bootstrap list, never falling back to another port (like
    /// hyperdht's `DHT.bootstrapper(port, host)`).
    pub fn bootstrapper(port: u16, host: Ipv4Addr) -> Result<Dht, BindError> {
        Self::bootstrapper_with_io(port, host, io_mode_from_env()?)
    }

    /// [`Dht::bootstrapper`] on driver backend `io`.
    pub fn bootstrapper_with_io(port: u16, host: Ipv4Addr, io: IoMode) -> Result<Dht, BindError> {
        Self::start_with_io(bootstrapper_config(port, host)?, io)
    }

    /// [`Dht::bootstrapper`] sharded over `cores` pinned threads (see
    /// [`Dht::start_sharded`]).
    pub fn bootstrapper_sharded(
        port: u16,
        host: Ipv4Addr,
        cores: usize,
        io: IoMode,
    ) -> Result<Dht, BindError> {
        Self::start_sharded(bootstrapper_config(port, host)?, cores, io)
    }

    /// Starts one node identity sharded over `cores` threads pinned to their cores
    /// (DESIGN.md "Thread-per-core"; `cores` = 1 is [`Dht::start_with_io`]). Every
    /// shard runs a full node with this configuration and the same token secret, its
    /// server socket joined to one SO_REUSEPORT port; requests are answered by the
    /// shard the kernel hands them to, storage requests by the shard owning their
    /// target, so a record announced through any shard is found through every shard
    /// (reads of targets no shard stores anything for, which a shared filter tells,
    /// are answered where they land).
    /// The API calls of this handle run on the first shard.
    pub fn start_sharded(
        mut config: NodeConfig,
        cores: usize,
        io: IoMode,
    ) -> Result<Dht, BindError> {
        if cores <= 1 {
            return Self::start_with_io(config, io);
        }
        config.wall_clock_offset_ms = wall_clock_ms();
        let driver = shard_driver(cores, "tern-shard", io)?;
        let (seed, secret) = random_seeds()?;
        let peers = Arc::new(OnceLock::new());
        let counters = Arc::new(ShardCounters::default());
        let listening: Arc<std::sync::RwLock<std::collections::HashMap<[u8; 32], usize>>> =
            Arc::default();
        // Every shard's store counts its targets here, sized for all of them full.
        let max_targets =
            tern_dht::Store::max_filtered_targets(&config.store).saturating_mul(cores);
        let records = Arc::new(tern_dht::TargetFilter::new(max_targets, seed.rotate_left(29)));
        let mut handles: Vec<EndpointHandle<ApiNode>> = Vec::with_capacity(cores);
        let mut all_shared = Vec::with_capacity(cores);
        for index in 0..cores {
            let mut cfg = config.clone();
            // Shard 0 leads: it alone walks, pings and decides persistence (see `shard`).
            cfg.rpc.follower = index > 0;
            if let Some(first) = handles.first() {
                // The first shard resolved the port (the hyperdht default ladder or an
                // OS-chosen one); the others join it.
                let port = first.local_addrs().first().map_or(config.port, |a| a.port());
                cfg.port = port;
                cfg.random_port = false;
            }
            // Different protocol randomness per shard (transaction ids, sampling);
            // one token secret for all.
            let shard_seed = seed.wrapping_add((index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut node = Node::new(cfg, driver.now(), shard_seed, secret);
            node.set_target_filter(&records);
            let shared = Arc::new(Mutex::new(Shared::default()));
            let link = ShardLink {
                index,
                count: cores,
                peers: peers.clone(),
                counters: counters.clone(),
                listening: listening.clone(),
                records: records.clone(),
            };
            let me = SelfHandle::default();
            let endpoint = ApiNode::new(node, shared.clone(), me.clone()).with_shard(link);
            let handle = driver
                .spawn_endpoint_on(index, endpoint)
                .map_err(|e| BindError::Driver(format!("shard {index}: {e}")))?;
            let _ = me.set(handle.clone());
            all_shared.push(shared);
            handles.push(handle);
        }
        let _ = peers.set(handles.clone());
        let mut handles = handles.into_iter();
        let mut all_shared = all_shared.into_iter();
        let (Some(handle), Some(shared)) = (handles.next(), all_shared.next()) else {
            return Err(BindError::Driver("no shard started".into()));
        };
        tracing::info!(cores, backend = %driver.backend(), "sharded node started");
        Ok(Dht {
            handle,
            shared,
            driver: Some(driver),
            shards: handles.collect(),
            shards_shared: all_shared.collect(),
            counters: Some(counters),
            key_pair: default_key_pair(&secret),
        })
    }

    /// Counters of every shard, first shard first (one entry for an unsharded node).
    pub fn shard_stats(&self) -> Vec<Pending<NodeStats>> {
        std::iter::once(&self.handle)
            .chain(&self.shards)
            .map(|h| {
                let (tx, pending) = Pending::channel();
                match h.send(ApiCommand::Stats(tx)) {
                    Ok(()) => pending,
                    Err(e) => failed(matches!(e, SendError::Full(_))),
                }
            })
            .collect()
    }

    /// Up to `limit` routing-table addresses of every shard, first shard first (one
    /// entry for an unsharded node): the shards replicate their tables, so these
    /// converge.
    pub fn shard_table_nodes(&self, limit: usize) -> Vec<Pending<Vec<SocketAddrV4>>> {
        std::iter::once(&self.handle)
            .chain(&self.shards)
            .map(|h| crate::api::monitor::table_nodes_of(h, limit))
            .collect()
    }

    /// A cloneable read-only view of this node for other threads (metrics, health).
    pub fn monitor(&self) -> DhtMonitor {
        DhtMonitor {
            handles: std::iter::once(&self.handle).chain(&self.shards).cloned().collect(),
            shared: self.shared.clone(),
            counters: self.counters.clone(),
            backend: self.driver.as_ref().map(Driver::backend),
        }
    }

    /// What the shards passed between them (`None` for an unsharded node).
    pub fn forwarding_stats(&self) -> Option<ShardStats> {
        self.counters.as_ref().map(|c| c.snapshot())
    }

    /// Starts a node from a full [`NodeConfig`] on its own driver thread, on the
    /// backend `TERN_IO` asks for.
    pub fn start(config: NodeConfig) -> Result<Dht, BindError> {
        Self::start_with_io(config, io_mode_from_env()?)
    }

    /// [`Dht::start`] on driver backend `io`.
    pub fn start_with_io(mut config: NodeConfig, io: IoMode) -> Result<Dht, BindError> {
        let driver = node_driver_with(1, "tern-dht", io)?;
        let mut dht = Self::start_on(&driver, {
            config.wall_clock_offset_ms = wall_clock_ms();
            config
        })?;
        dht.driver = Some(driver);
        Ok(dht)
    }

    /// Starts a node on an existing driver (many nodes can share one thread).
    pub fn start_on(driver: &NodeDriver, config: NodeConfig) -> Result<Dht, BindError> {
        let (seed, secret) = random_seeds()?;
        let node = Node::new(config, driver.now(), seed, secret);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let me = SelfHandle::default();
        let endpoint = ApiNode::new(node, shared.clone(), me.clone());
        let handle =
            driver.spawn_endpoint(endpoint).map_err(|e| BindError::Driver(e.to_string()))?;
        let _ = me.set(handle.clone());
        Ok(Dht {
            handle,
            shared,
            driver: None,
            shards: Vec::new(),
            shards_shared: Vec::new(),
            counters: None,
            key_pair: default_key_pair(&secret),
        })
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The server socket's local address (once bound).
    pub fn local_addr(&self) -> Option<SocketAddrV4> {
        self.shared().local.first().copied()
    }

    /// Our node id, once persistent.
    pub fn id(&self) -> Option<NodeId> {
        self.shared().persistent
    }

    /// Whether the node is persistent (stores records, appears in routing tables). A
    /// sharded node is once every shard is: each decides on its own samples, and until
    /// the last one has, requests that land on it are answered without an id.
    pub fn is_persistent(&self) -> bool {
        self.shared().persistent.is_some()
            && self.shards_shared.iter().all(|s| {
                s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).persistent.is_some()
            })
    }

    /// Resolves when the bootstrap walk has finished.
    pub fn ready(&self) -> Pending<()> {
        let (tx, pending) = Pending::channel();
        let mut s = self.shared();
        if s.bootstrapped {
            let _ = tx.send(Ok(()));
        } else if s.closed {
            let _ = tx.send(Err(DhtError::Closed));
        } else {
            s.ready_waiters.push(tx);
        }
        pending
    }

    /// Sends an operation; its output is transformed by `f` when it arrives.
    fn op<T: Send + 'static>(
        &self,
        cmd: NodeCommand,
        f: impl FnOnce(OpOutput) -> T + Send + 'static,
    ) -> Pending<T> {
        let (tx, rx) = futures_channel::oneshot::channel();
        if let Err(e) = self.handle.send(ApiCommand::Op(Box::new(cmd), Route::Once(tx))) {
            return failed(matches!(e, SendError::Full(_)));
        }
        Pending::map_rx(rx, f)
    }

    /// Streams the peers announced under `topic`.
    pub fn lookup(&self, topic: [u8; 32]) -> LookupStream {
        let (tx, rx) = mpsc::channel(LOOKUP_BUFFER);
        let _ = self
            .handle
            .send(ApiCommand::Op(Box::new(NodeCommand::Lookup(NodeId(topic))), Route::Lookup(tx)));
        LookupStream { rx }
    }

    /// Announces `key_pair` under `topic` on the closest nodes and keeps it announced
    /// (re-announced every 5 minutes) until [`Dht::unannounce`] or [`Dht::destroy`].
    /// Resolves to the number of nodes that stored it.
    pub fn announce(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: &[SocketAddrV4],
    ) -> Pending<usize> {
        let cmd = NodeCommand::Announce {
            topic: NodeId(topic),
            key_pair: key_pair.clone(),
            relay_addresses: relay_addresses.to_vec(),
        };
        self.op(cmd, stored)
    }

    /// Removes `key_pair`'s record under `topic` and stops re-announcing it.
    pub fn unannounce(&self, topic: [u8; 32], key_pair: &KeyPair) -> Pending<usize> {
        self.op(
            NodeCommand::Unannounce { topic: NodeId(topic), key_pair: key_pair.clone() },
            stored,
        )
    }

    /// Finds the record (relays) of the server with `public_key`.
    pub fn find_peer(&self, public_key: [u8; 32]) -> Pending<Option<PeerInfo>> {
        self.op(NodeCommand::FindPeer(public_key), |o| match o {
            OpOutput::Peer(p) => p,
            _ => None,
        })
    }

    /// Stores a signed mutable record; resolves to the number of nodes that stored it.
    pub fn mutable_put(&self, key_pair: &KeyPair, value: &[u8], seq: u64) -> Pending<usize> {
        let cmd =
            NodeCommand::MutablePut { key_pair: key_pair.clone(), value: value.to_vec(), seq };
        self.op(cmd, stored)
    }

    /// Fetches the mutable record of `public_key` with seq ≥ `seq`; with `latest` the
    /// highest seq found by the whole query wins.
    pub fn mutable_get(
        &self,
        public_key: [u8; 32],
        seq: u64,
        latest: bool,
    ) -> Pending<Option<MutableValue>> {
        self.op(NodeCommand::MutableGet { public_key, seq, latest }, |o| match o {
            OpOutput::Mutable(m) => m,
            _ => None,
        })
    }

    /// Stores `value` under its hash; resolves to the hash.
    pub fn immutable_put(&self, value: &[u8]) -> Pending<[u8; 32]> {
        let hash = tern_crypto::hash32(value);
        self.op(NodeCommand::ImmutablePut(value.to_vec()), move |_| hash)
    }

    /// Fetches the value whose BLAKE2b-256 hash is `hash` (verified).
    pub fn immutable_get(&self, hash: [u8; 32]) -> Pending<Option<Vec<u8>>> {
        self.op(NodeCommand::ImmutableGet(hash), |o| match o {
            OpOutput::Immutable(v) => v,
            _ => None,
        })
    }

    /// Listens for encrypted connections to `key_pair`: answers handshakes for its
    /// public key and announces it (re-announced every few minutes) so clients find it.
    /// Resolves once the first announce finished.
    pub fn listen(&self, key_pair: &KeyPair) -> Pending<Server> {
        self.listen_inner(key_pair, None)
    }

    /// [`Dht::listen`] with a firewall: `firewall(remote public key, its handshake
    /// payload, its address)` runs on the node's thread for every new client; `true`
    /// rejects it (no answer is sent, as in hyperdht).
    pub fn listen_with_firewall(
        &self,
        key_pair: &KeyPair,
        firewall: impl FnMut(&PublicKey, &RemoteView, SocketAddrV4) -> bool + Send + 'static,
    ) -> Pending<Server> {
        self.listen_inner(key_pair, Some(Firewall(Box::new(firewall))))
    }

    fn listen_inner(&self, key_pair: &KeyPair, firewall: Option<Firewall>) -> Pending<Server> {
        let (waiter, pending) = Pending::channel();
        let public_key = *key_pair.public_key().as_bytes();
        let route = Route::Listen { public_key, waiter, server: None };
        let cmd = NodeCommand::Listen { key_pair: key_pair.clone(), firewall };
        if let Err(e) = self.handle.send(ApiCommand::Op(Box::new(cmd), route)) {
            return failed(matches!(e, SendError::Full(_)));
        }
        pending
    }

    /// Opens an encrypted connection to the server listening on `public_key`, as this
    /// node's default identity (a random key pair made once per node).
    pub fn connect(&self, public_key: [u8; 32]) -> Pending<SecureStream> {
        self.connect_as(public_key, &self.key_pair)
    }

    /// [`Dht::connect`] as `key_pair` (the server's firewall sees its public key).
    pub fn connect_as(&self, public_key: [u8; 32], key_pair: &KeyPair) -> Pending<SecureStream> {
        let (waiter, pending) = Pending::channel();
        let cmd = NodeCommand::Connect { public_key, key_pair: key_pair.clone() };
        if let Err(e) = self.handle.send(ApiCommand::Op(Box::new(cmd), Route::Connect(waiter))) {
            return failed(matches!(e, SendError::Full(_)));
        }
        pending
    }

    /// The identity [`Dht::connect`] uses.
    pub fn default_key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// Pings `addr`; resolves to whether it answered.
    pub fn ping(&self, addr: SocketAddrV4) -> Pending<bool> {
        let (tx, pending) = Pending::channel();
        if let Err(e) =
            self.handle.send(ApiCommand::Op(Box::new(NodeCommand::Ping(addr)), Route::Ping(tx)))
        {
            return failed(matches!(e, SendError::Full(_)));
        }
        pending
    }

    /// Up to `limit` addresses of the first shard's routing table, most recently heard
    /// from first ([`DhtMonitor::table_nodes`] gathers every shard's).
    pub fn table_nodes(&self, limit: usize) -> Pending<Vec<SocketAddrV4>> {
        crate::api::monitor::table_nodes_of(&self.handle, limit)
    }

    /// A snapshot of the node's counters; a sharded node's are summed over its shards
    /// (see [`NodeStats::absorb`]; [`Dht::shard_stats`] has each shard's).
    pub fn stats(&self) -> Pending<NodeStats> {
        crate::api::monitor::node_stats_of(std::iter::once(&self.handle).chain(&self.shards))
    }

    /// Unannounces everything this node announced, then closes it and (if it owns
    /// one) stops its driver thread.
    pub fn destroy(mut self) -> Result<(), DhtError> {
        let (tx, pending) = Pending::channel();
        let result = match self.handle.send(ApiCommand::Destroy(tx)) {
            Ok(()) => pending.wait(),
            Err(_) => Err(DhtError::Closed),
        };
        // The other shards announced nothing of their own (API calls run on the
        // first); they only close.
        for shard in std::mem::take(&mut self.shards) {
            let (tx, pending) = Pending::channel();
            if shard.send(ApiCommand::Destroy(tx)).is_ok() {
                let _ = pending.wait();
            }
        }
        if let Some(driver) = self.driver.take() {
            // The node is closed either way; a driver error here has nothing to undo.
            let _ = driver.shutdown();
        }
        result
    }
}

/// The configuration of a bootstrap node at `host:port` (see [`Dht::bootstrapper`]).
fn bootstrapper_config(port: u16, host: Ipv4Addr) -> Result<NodeConfig, BindError> {
    if host.is_unspecified() {
        return Err(BindError::UnspecifiedHost(host));
    }
    let public = SocketAddrV4::new(host, port);
    let rpc = RpcConfig { public_addr: Some(public), ..RpcConfig::default() };
    Ok(NodeConfig { rpc, host, port, ..NodeConfig::default() })
}

fn stored(o: OpOutput) -> usize {
    match o {
        OpOutput::Stored { stored } => stored,
        _ => 0,
    }
}

/// A pending result that failed before reaching the node.
fn failed<T: Send + 'static>(full: bool) -> Pending<T> {
    Pending::ready(Err(if full { DhtError::Busy } else { DhtError::Closed }))
}
