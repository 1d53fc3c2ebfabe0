//! The effective configuration of `tern node`: defaults, then a TOML file
//! (`--config FILE` / `TERN_CONFIG`), then environment variables (`TERN_*`), then
//! flags — each later source overriding the earlier ones key by key. Clap resolves
//! "flag, else environment" per option; this module lays that over the file, which
//! serde has already laid over the defaults (`#[serde(default)]`).
//!
//! Every limit of a node is a key of the file: `[rpc]` maps onto `RpcConfig`,
//! `[store]` onto `StoreLimits`, `[conn]` onto `ConnConfig` (encrypted connections:
//! what `tern listen` accepts and `tern connect` starts), `[udx]` onto the limits of
//! `UdxConfig` (the streams under them), `[node]` onto the driver and process options.
//! The
//! limits are file-only; the options an operator changes per host (addresses, ports,
//! bootstrap list, io backend, cores, admin, logging) also have flags and variables.
//! `tern config print` prints the result as TOML.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tern::{ConnConfig, IoMode, NodeConfig, RpcConfig, UdxConfig};
use tern_dht::StoreLimits;
use tern_dht::cache::CacheLimits;
use tern_dht::topics::TopicLimits;
use tern_rpc::RateLimit;

/// Everything `tern node` runs with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Process and node options.
    pub node: NodeSection,
    /// Logging.
    pub log: LogSection,
    /// The admin HTTP listener.
    pub admin: AdminSection,
    /// dht-rpc limits and timers (`RpcConfig`).
    pub rpc: RpcSection,
    /// Record store limits (`StoreLimits`).
    pub store: StoreSection,
    /// Encrypted-connection limits and timers (`ConnConfig`).
    pub conn: ConnSection,
    /// UDX stream limits (`UdxConfig`).
    pub udx: UdxSection,
}

/// `[node]`: where and how the nodes run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Host to bind.
    pub host: Ipv4Addr,
    /// First server port (0: hyperdht's default ladder, then any).
    pub port: u16,
    /// Nodes to run (consecutive ports when `port` is set).
    pub nodes: u16,
    /// Bootstrap nodes; empty: the public HyperDHT network.
    pub bootstrap: Vec<SocketAddrV4>,
    /// Never become persistent.
    pub ephemeral: bool,
    /// Assume a firewall until the adaptive test passes.
    pub firewalled: bool,
    /// Driver backend: auto, uring or epoll.
    pub io: String,
    /// Shards per node; default: every core this process may run on
    /// ([`available_cores`]).
    pub cores: usize,
    /// How long a clean stop may take.
    pub shutdown_timeout_ms: u64,
    /// Directory for the routing-table snapshots (`routing-table-N.bin`); absent: none
    /// are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// How often the snapshots are rewritten (and once more at a clean stop).
    pub snapshot_interval_ms: u64,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            host: Ipv4Addr::UNSPECIFIED,
            port: 0,
            nodes: 1,
            bootstrap: Vec::new(),
            ephemeral: false,
            firewalled: false,
            io: IoMode::Auto.to_string(),
            cores: available_cores(),
            shutdown_timeout_ms: 10_000,
            state_dir: None,
            snapshot_interval_ms: 60_000,
        }
    }
}

/// The cores this process may run on (its affinity mask and cgroup quota, as
/// `std::thread::available_parallelism` reads them), 1 when unknown: the default
/// shard count, so a node serves its identity on every core it has ("`--cores N`,
/// default all").
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// tracing `EnvFilter` syntax.
    pub filter: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self { filter: "info".into(), format: "text".into() }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin listener; absent: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// `[rpc]`: the timers of `RpcConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcSection {
    /// Per-transmission timeout.
    pub request_timeout_ms: u64,
    /// Retransmissions of plain requests.
    pub retries: u8,
    /// Longest DELAYED_PING honoured.
    pub max_ping_delay_ms: u64,
    /// Most reply bytes per request byte for requests without a valid token (the
    /// amplification a spoofed source could get); 0: no cap.
    pub max_reply_ratio: u32,
    /// Per-source-IP limit on incoming requests.
    pub rate_limit: RateLimitSection,
}

/// `[rpc.rate_limit]`: `RateLimit` (completed from the defaults by the merge).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Sustained requests per second per source IP; 0: off.
    pub per_second: u32,
    /// Bucket capacity.
    pub burst: u32,
    /// Source addresses tracked (LRU beyond).
    pub max_tracked: usize,
    /// Exempt 127.0.0.0/8.
    pub exempt_loopback: bool,
}

impl Default for RpcSection {
    fn default() -> Self {
        let d = RpcConfig::default();
        // A public node runs with the recommended limit (the library default is off).
        let rate_limit = RateLimit::default();
        Self {
            request_timeout_ms: millis(d.request_timeout),
            retries: d.retries,
            max_ping_delay_ms: millis(d.max_ping_delay),
            // Like the rate limit: on for a public node, off in the library.
            max_reply_ratio: tern_rpc::RECOMMENDED_MAX_REPLY_RATIO,
            rate_limit: RateLimitSection {
                per_second: rate_limit.per_second,
                burst: rate_limit.burst,
                max_tracked: rate_limit.max_tracked,
                exempt_loopback: rate_limit.exempt_loopback,
            },
        }
    }
}

/// `[conn]`: every field of `ConnConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnSection {
    /// Listening key pairs.
    pub max_listeners: usize,
    /// Connect operations in flight.
    pub max_connecting: usize,
    /// Server-side handshakes remembered for de-duplication.
    pub max_answered: usize,
    /// Accepted connections waiting for the client's first packet.
    pub max_awaiting: usize,
    /// New handshakes answered per client IP per 10 s (loopback exempt).
    pub max_handshakes_per_ip: u32,
    /// Connections our listeners accepted, open at once.
    pub max_connections: usize,
    /// Of those, from one client IP (loopback exempt).
    pub max_connections_per_ip: u32,
    /// How long a connect may take end to end.
    pub connect_timeout_ms: u64,
    /// How long an accepted stream waits for its peer's first packet.
    pub first_packet_timeout_ms: u64,
    /// Heartbeat interval of idle connections; 0: off.
    pub keepalive_ms: u64,
    /// The LAN shortcut: offer and try interface addresses behind one NAT.
    pub lan: bool,
}

impl Default for ConnSection {
    fn default() -> Self {
        let d = ConnConfig::default();
        Self {
            max_listeners: d.max_listeners,
            max_connecting: d.max_connecting,
            max_answered: d.max_answered,
            max_awaiting: d.max_awaiting,
            max_handshakes_per_ip: d.max_handshakes_per_ip,
            max_connections: d.max_connections,
            max_connections_per_ip: d.max_connections_per_ip,
            connect_timeout_ms: millis(d.connect_timeout),
            first_packet_timeout_ms: millis(d.first_packet_timeout),
            keepalive_ms: d.keepalive.map_or(0, millis),
            lan: d.lan,
        }
    }
}

/// `[udx]`: the limits of `UdxConfig` (its MTU bounds are the protocol's, not settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UdxSection {
    /// Streams in the table at once (connections in both directions).
    pub max_streams: usize,
    /// Bytes written but not yet acknowledged, per stream.
    pub send_buffer: usize,
    /// Receive buffer and largest advertised window, per stream.
    pub recv_buffer: usize,
    /// Out-of-order bytes held across all streams.
    pub max_held_total: usize,
    /// In-order bytes waiting for their readers across all streams.
    pub max_unread_total: usize,
    /// Receive room every stream keeps whatever the others buffer.
    pub min_recv_window: usize,
}

impl Default for UdxSection {
    fn default() -> Self {
        let d = UdxConfig::default();
        Self {
            max_streams: d.max_streams,
            send_buffer: d.send_buffer,
            recv_buffer: d.recv_buffer,
            max_held_total: d.max_held_total,
            max_unread_total: d.max_unread_total,
            min_recv_window: d.min_recv_window,
        }
    }
}

/// `[store]`: every field of `StoreLimits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Largest mutable or immutable value accepted (≤ 2 048: no longer datagram arrives).
    pub max_value_bytes: usize,
    /// Announced topic records.
    pub topics: TopicSection,
    /// Server router entries.
    pub router: CacheSection,
    /// Refresh secrets.
    pub refreshes: CacheSection,
    /// Topic bumps.
    pub bumps: CacheSection,
    /// Mutable records.
    pub mutables: CacheSection,
    /// Immutable values.
    pub immutables: CacheSection,
}

impl Default for StoreSection {
    fn default() -> Self {
        let d = StoreLimits::default();
        Self {
            max_value_bytes: d.max_value_bytes,
            topics: TopicSection {
                max_records: d.topics.max_records,
                max_bytes: d.topics.max_bytes,
                max_per_topic: d.topics.max_per_topic,
                max_age_ms: millis(d.topics.max_age),
            },
            router: d.router.into(),
            refreshes: d.refreshes.into(),
            bumps: d.bumps.into(),
            mutables: d.mutables.into(),
            immutables: d.immutables.into(),
        }
    }
}

/// `[store.topics]`. No `serde(default)`: a partial section is completed from the
/// defaults by [`Settings::from_file`]'s merge, not with zeros.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSection {
    /// Records per generation.
    pub max_records: usize,
    /// Bytes per generation.
    pub max_bytes: usize,
    /// Records one topic may hold.
    pub max_per_topic: usize,
    /// Record lifetime.
    pub max_age_ms: u64,
}

/// `[store.router]`, `[store.mutables]` ...: one generational cache (completed from
/// the defaults like [`TopicSection`]; each cache has its own defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Entries per generation.
    pub max_entries: usize,
    /// Bytes per generation.
    pub max_bytes: usize,
    /// Entry lifetime.
    pub max_age_ms: u64,
}

impl From<CacheLimits> for CacheSection {
    fn from(c: CacheLimits) -> Self {
        Self { max_entries: c.max_entries, max_bytes: c.max_bytes, max_age_ms: millis(c.max_age) }
    }
}

impl From<CacheSection> for CacheLimits {
    fn from(c: CacheSection) -> Self {
        Self {
            max_entries: c.max_entries,
            max_bytes: c.max_bytes,
            max_age: Duration::from_millis(c.max_age_ms),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Flags (or their `TERN_*` variables) given on the command line; `None`: not given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NodeFlags {
    #[command(flatten)]
    pub peer: PeerFlags,
    /// How many nodes to run (consecutive ports when --port is set) [default: 1].
    #[arg(long, env = "TERN_NODES")]
    pub nodes: Option<u16>,
}

/// The node flags that also make sense for a single peer node (`tern listen`, `tern
/// connect`): everything of [`NodeFlags`] but the node count.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PeerFlags {
    /// TOML configuration file (see `tern config print` for every key).
    #[arg(long, env = "TERN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Bootstrap node(s), comma-separated in TERN_BOOTSTRAP; default: the public
    /// HyperDHT bootstrap list.
    #[arg(long, env = "TERN_BOOTSTRAP", value_name = "HOST:PORT", value_delimiter = ',')]
    pub bootstrap: Option<Vec<SocketAddrV4>>,
    /// Host to bind [default: 0.0.0.0].
    #[arg(long, env = "TERN_HOST")]
    pub host: Option<Ipv4Addr>,
    /// First server port (0: hyperdht's default 49737–49741, then any) [default: 0].
    #[arg(long, env = "TERN_PORT")]
    pub port: Option<u16>,
    /// Never become persistent (a pure client).
    #[arg(long, env = "TERN_EPHEMERAL", num_args = 0..=1, default_missing_value = "true")]
    pub ephemeral: Option<bool>,
    /// Assume a firewall: stay ephemeral until the adaptive firewall test passes.
    #[arg(long, env = "TERN_FIREWALLED", num_args = 0..=1, default_missing_value = "true")]
    pub firewalled: Option<bool>,
}

impl From<PeerFlags> for NodeFlags {
    fn from(peer: PeerFlags) -> Self {
        Self { peer, nodes: None }
    }
}

/// The global flags that also live in the file.
#[derive(Debug, Clone, Default)]
pub struct GlobalFlags {
    /// `--log` / `TERN_LOG`.
    pub log: Option<String>,
    /// `--log-format` / `TERN_LOG_FORMAT`.
    pub log_format: Option<String>,
    /// `--io` / `TERN_IO`.
    pub io: Option<IoMode>,
    /// `--cores` / `TERN_CORES`.
    pub cores: Option<usize>,
    /// `--shutdown-timeout` / `TERN_SHUTDOWN_TIMEOUT`, seconds.
    pub shutdown_timeout: Option<f64>,
    /// `--admin` / `TERN_ADMIN`.
    pub admin: Option<SocketAddr>,
    /// `--state-dir` / `TERN_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
}

impl Settings {
    /// Reads a TOML file over the defaults (unknown keys are errors). The file is
    /// merged key by key into the defaults as TOML before typing, so a section that
    /// sets one key keeps the defaults of its others (serde's per-struct defaults
    /// cannot: `[store.mutables]` and `[store.router]` have different ones).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        let file: toml::Table =
            text.parse().with_context(|| format!("parsing {}", path.display()))?;
        let mut merged =
            toml::Table::try_from(Self::default()).context("serializing the defaults")?;
        merge(&mut merged, file);
        merged.try_into().with_context(|| format!("in {}", path.display()))
    }

    /// Defaults < file < environment < flags.
    pub fn resolve(node: &NodeFlags, global: &GlobalFlags) -> anyhow::Result<Self> {
        let mut s = match &node.peer.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        let n = &mut s.node;
        let peer = &node.peer;
        set(&mut n.bootstrap, peer.bootstrap.clone());
        set(&mut n.host, peer.host);
        set(&mut n.port, peer.port);
        set(&mut n.nodes, node.nodes);
        set(&mut n.ephemeral, peer.ephemeral);
        set(&mut n.firewalled, peer.firewalled);
        set(&mut n.io, global.io.map(|m| m.to_string()));
        set(&mut n.cores, global.cores);
        if let Some(secs) = global.shutdown_timeout {
            let d = Duration::try_from_secs_f64(secs)
                .map_err(|e| anyhow::anyhow!("--shutdown-timeout {secs}: {e}"))?;
            n.shutdown_timeout_ms = millis(d);
        }
        set(&mut s.log.filter, global.log.clone());
        set(&mut s.log.format, global.log_format.clone());
        if global.admin.is_some() {
            s.admin.listen = global.admin;
        }
        if global.state_dir.is_some() {
            s.node.state_dir = global.state_dir.clone();
        }
        s.validate()?;
        Ok(s)
    }

    /// Checks what serde cannot: enumerated strings and non-zero limits.
    fn validate(&self) -> anyhow::Result<()> {
        self.io()?;
        anyhow::ensure!(
            matches!(self.log.format.as_str(), "text" | "json"),
            "log.format must be text or json, not {:?}",
            self.log.format
        );
        anyhow::ensure!(self.node.cores >= 1, "node.cores must be at least 1");
        anyhow::ensure!(
            self.store.max_value_bytes <= tern::MAX_DATAGRAM_LEN,
            "store.max_value_bytes = {} can never apply: no request carrying more than {} \
             bytes arrives (tern's and libudx's receive buffers are {} bytes)",
            self.store.max_value_bytes,
            tern::MAX_DATAGRAM_LEN,
            tern::MAX_DATAGRAM_LEN
        );
        anyhow::ensure!(self.rpc.request_timeout_ms > 0, "rpc.request_timeout_ms must be > 0");
        anyhow::ensure!(self.conn.connect_timeout_ms > 0, "conn.connect_timeout_ms must be > 0");
        // A buffer smaller than one packet's payload stalls every stream.
        for (key, v) in
            [("udx.send_buffer", self.udx.send_buffer), ("udx.recv_buffer", self.udx.recv_buffer)]
        {
            anyhow::ensure!(v >= 1500, "{key} = {v} is smaller than one packet (1500 bytes)");
        }
        anyhow::ensure!(self.udx.max_streams > 0, "udx.max_streams must be > 0");
        anyhow::ensure!(
            self.conn.first_packet_timeout_ms > 0,
            "conn.first_packet_timeout_ms must be > 0"
        );
        anyhow::ensure!(
            self.node.snapshot_interval_ms > 0,
            "node.snapshot_interval_ms must be > 0"
        );
        Ok(())
    }

    /// The driver backend.
    pub fn io(&self) -> anyhow::Result<IoMode> {
        self.node.io.parse().map_err(|e| anyhow::anyhow!("node.io: {e}"))
    }

    /// How often routing-table snapshots are written.
    pub fn snapshot_interval(&self) -> Duration {
        Duration::from_millis(self.node.snapshot_interval_ms)
    }

    /// The clean-stop deadline.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.node.shutdown_timeout_ms)
    }

    /// The store limits.
    pub fn store_limits(&self) -> StoreLimits {
        let st = &self.store;
        StoreLimits {
            topics: TopicLimits {
                max_records: st.topics.max_records,
                max_bytes: st.topics.max_bytes,
                max_per_topic: st.topics.max_per_topic,
                max_age: Duration::from_millis(st.topics.max_age_ms),
            },
            router: st.router.into(),
            refreshes: st.refreshes.into(),
            bumps: st.bumps.into(),
            mutables: st.mutables.into(),
            immutables: st.immutables.into(),
            max_value_bytes: st.max_value_bytes,
        }
    }

    /// The connection limits.
    pub fn conn_limits(&self) -> ConnConfig {
        let c = &self.conn;
        ConnConfig {
            max_listeners: c.max_listeners,
            max_connecting: c.max_connecting,
            max_answered: c.max_answered,
            max_awaiting: c.max_awaiting,
            max_handshakes_per_ip: c.max_handshakes_per_ip,
            max_connections: c.max_connections,
            max_connections_per_ip: c.max_connections_per_ip,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            first_packet_timeout: Duration::from_millis(c.first_packet_timeout_ms),
            keepalive: (c.keepalive_ms > 0).then(|| Duration::from_millis(c.keepalive_ms)),
            lan: c.lan,
        }
    }

    /// The UDX limits (the protocol's MTU bounds unchanged).
    pub fn udx_limits(&self) -> UdxConfig {
        let u = &self.udx;
        UdxConfig {
            max_streams: u.max_streams,
            send_buffer: u.send_buffer,
            recv_buffer: u.recv_buffer,
            max_held_total: u.max_held_total,
            max_unread_total: u.max_unread_total,
            min_recv_window: u.min_recv_window,
            ..UdxConfig::default()
        }
    }

    /// The configuration of the `i`-th node.
    pub fn node_config(&self, i: u16) -> NodeConfig {
        let n = &self.node;
        let rpc = RpcConfig {
            bootstrap: if n.bootstrap.is_empty() {
                tern::PUBLIC_BOOTSTRAP.iter().filter_map(|s| s.parse().ok()).collect()
            } else {
                n.bootstrap.clone()
            },
            firewalled: n.firewalled,
            ephemeral: if n.ephemeral {
                Some(true)
            } else if n.firewalled {
                None
            } else {
                Some(false)
            },
            ..self.rpc_limits()
        };
        let port = if n.port == 0 { 0 } else { n.port.saturating_add(i) };
        NodeConfig {
            rpc,
            store: self.store_limits(),
            conn: self.conn_limits(),
            udx: self.udx_limits(),
            host: n.host,
            port,
            ..NodeConfig::default()
        }
    }

    /// An `RpcConfig` carrying the `[rpc]` timers and limits (everything else default).
    pub fn rpc_limits(&self) -> RpcConfig {
        let r = &self.rpc;
        RpcConfig {
            request_timeout: Duration::from_millis(r.request_timeout_ms),
            retries: r.retries,
            max_ping_delay: Duration::from_millis(r.max_ping_delay_ms),
            max_reply_ratio: r.max_reply_ratio,
            rate_limit: RateLimit {
                per_second: r.rate_limit.per_second,
                burst: r.rate_limit.burst,
                max_tracked: r.rate_limit.max_tracked,
                exempt_loopback: r.rate_limit.exempt_loopback,
            },
            ..RpcConfig::default()
        }
    }

    /// The configuration as TOML. The `cores` line says what its default is, since
    /// the printed number is this host's, not a constant.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let text = toml::to_string_pretty(self).context("printing the configuration")?;
        let note = format!(
            "# Shards per node (one pinned thread each, one port); default: every available \
             core ({} here).\n",
            available_cores()
        );
        let mut out = String::with_capacity(text.len() + note.len());
        for line in text.lines() {
            if line.starts_with("cores = ") {
                out.push_str(&note);
            }
            out.push_str(line);
            out.push('\n');
        }
        Ok(out)
    }
}

/// Lays `over` onto `base`, recursing into tables present in both.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conn_section_is_conn_config_and_reaches_every_node() {
        // The defaults are the library's, field for field.
        let d = Settings::default();
        assert_eq!(format!("{:?}", d.conn_limits()), format!("{:?}", ConnConfig::default()));
        let mut s = d.clone();
        s.conn.max_connections_per_ip = 16;
        s.conn.keepalive_ms = 0;
        let c = s.node_config(0).conn;
        assert_eq!(c.max_connections_per_ip, 16);
        assert_eq!(c.keepalive, None, "0 turns the heartbeat off");
    }

    #[test]
    fn the_udx_section_is_udx_config_and_reaches_every_node() {
        let d = Settings::default();
        assert_eq!(d.udx_limits(), UdxConfig::default());
        let mut s = d.clone();
        s.udx.max_unread_total = 64 << 20;
        let u = s.node_config(0).udx;
        assert_eq!(u.max_unread_total, 64 << 20);
        assert_eq!((u.base_mtu, u.max_mtu), (1200, 1500), "the protocol's MTU bounds");
    }
}
