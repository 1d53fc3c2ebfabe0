//! Long-running commands: a bootstrap node, N nodes, and the self-checking testnet.

#![allow(clippy::print_stdout)] // the testnet's self-check is printed for a person

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tern::{Dht, IoMode, KeyPair, NodeConfig, NodeDriver, RpcConfig};

use crate::cli::admin::{AdminServer, Observed};
use crate::cli::config::Settings;
use crate::cli::lifecycle::{self, StopSignal};
use crate::cli::state::StateDir;

/// How often long-running commands log their state.
const STATUS_EVERY: Duration = Duration::from_secs(30);

/// What every long-running command needs besides its nodes: how it stops.
pub struct Run {
    /// Set by SIGTERM / SIGINT.
    pub signal: StopSignal,
    /// How long a clean stop may take.
    pub shutdown_timeout: Duration,
    /// Where to serve /metrics, /healthz and /readyz (off when `None`).
    pub admin: Option<SocketAddr>,
    /// Where routing-table snapshots are kept (`--state-dir`; none when `None`).
    pub state: Option<StateDir>,
}

impl Run {
    /// Logs status until a stop signal, then stops `dhts` and `driver` cleanly.
    pub fn serve(&self, dhts: Vec<Dht>, driver: Option<NodeDriver>) -> anyhow::Result<()> {
        let admin = match self.admin {
            Some(addr) => {
                let nodes: Vec<_> = dhts.iter().map(Dht::monitor).collect();
                let backend = driver
                    .as_ref()
                    .map(NodeDriver::backend)
                    .or_else(|| nodes.first().and_then(tern::DhtMonitor::backend))
                    .map_or_else(|| "unknown".to_owned(), |b| b.to_string());
                Some(AdminServer::start(addr, Observed { nodes, backend })?)
            }
            None => None,
        };
        watch(&dhts, &self.signal, self.state.as_ref())?;
        // Before the nodes close: the tables are what the next start rejoins through.
        if let Some(state) = &self.state {
            state.save(&dhts);
        }
        let stopped = lifecycle::shutdown(&self.signal, dhts, driver, self.shutdown_timeout);
        // Health stays served until the nodes are down, so a checker sees the stop.
        if let Some(admin) = admin {
            admin.stop();
        }
        stopped
    }
}

/// `tern bootstrap`: persistent from the start with id H32(host:port), never moving to
/// another port (as `Dht::bootstrapper`), with the `[rpc]` and `[store]` limits of
/// `settings` — the per-IP rate limit on by default, as befits a public node. `peers`
/// are the other bootstrap nodes (queried at start, like any bootstrap contact).
pub fn bootstrap(
    host: Ipv4Addr,
    port: u16,
    peers: &[SocketAddrV4],
    settings: &Settings,
    run: &Run,
) -> anyhow::Result<()> {
    if host.is_unspecified() {
        bail!("a bootstrap node needs its public address as --host, not {host}");
    }
    let public = SocketAddrV4::new(host, port);
    let peers: Vec<_> = peers.iter().copied().filter(|p| *p != public).collect();
    let mut rpc =
        RpcConfig { public_addr: Some(public), bootstrap: peers, ..settings.rpc_limits() };
    if let Some(state) = &run.state {
        state.prepare()?;
        state.load_into(0, &mut rpc);
    }
    let config = NodeConfig {
        rpc,
        store: settings.store_limits(),
        conn: settings.conn_limits(),
        udx: settings.udx_limits(),
        host,
        port,
        ..NodeConfig::default()
    };
    let dht = Dht::start_sharded(config, settings.node.cores, settings.io()?)
        .context("starting the bootstrap node")?;
    dht.ready().wait()?;
    tracing::info!(addr = %SocketAddrV4::new(host, port), id = ?dht.id(), "bootstrap node up");
    run.serve(vec![dht], None)
}

/// `tern node`: the nodes `settings` asks for, on one shared driver thread (or each
/// sharded over `cores` threads).
pub fn nodes(settings: &Settings, run: &Run) -> anyhow::Result<()> {
    let (io, cores) = (settings.io()?, settings.node.cores);
    let driver = tern::node_driver_with(1, "tern-node", io)?;
    let mut dhts = Vec::new();
    if let Some(state) = &run.state {
        state.prepare()?;
    }
    for i in 0..settings.node.nodes.max(1) {
        let mut config = settings.node_config(i);
        if let Some(state) = &run.state {
            state.load_into(usize::from(i), &mut config.rpc);
        }
        dhts.push(if cores > 1 {
            Dht::start_sharded(config, cores, io)?
        } else {
            Dht::start_on(&driver, config)?
        });
    }
    for d in &dhts {
        d.ready().wait()?;
    }
    tracing::info!(nodes = dhts.len(), "nodes bootstrapped");
    run.serve(dhts, Some(driver))
}

/// Logs each node's state every [`STATUS_EVERY`], and writes the routing-table
/// snapshots every `state.interval`, until a stop signal arrives.
fn watch(dhts: &[Dht], signal: &StopSignal, state: Option<&StateDir>) -> anyhow::Result<()> {
    let mut next_status = Instant::now();
    let mut next_snapshot = state.map(|s| Instant::now() + s.interval);
    while !signal.received() {
        if let (Some(state), Some(at)) = (state, next_snapshot.as_mut())
            && Instant::now() >= *at
        {
            state.save(dhts);
            *at = Instant::now() + state.interval;
        }
        if Instant::now() < next_status {
            let wake = next_snapshot.map_or(next_status, |s| s.min(next_status));
            signal.sleep(wake.saturating_duration_since(Instant::now()));
            continue;
        }
        next_status = Instant::now() + STATUS_EVERY;
        for d in dhts {
            let stats = d.stats().wait()?;
            tracing::info!(
                addr = ?d.local_addr(),
                persistent = d.is_persistent(),
                table = stats.table_len,
                records = stats.records,
                requests = stats.rpc.app_requests + stats.rpc.internal_requests.iter().sum::<u64>(),
                "status"
            );
        }
    }
    Ok(())
}

/// Waits until `f` holds, polling, for at most `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

pub fn testnet(
    count: u16,
    host: Ipv4Addr,
    port: u16,
    io: IoMode,
    cores: usize,
    run: &Run,
) -> anyhow::Result<()> {
    if !host.is_loopback() {
        bail!("the testnet binds loopback addresses only (got {host})");
    }
    let driver = tern::node_driver_with(1, "tern-testnet", io)?;
    let boot_addr = SocketAddrV4::new(host, port);
    let boot_config = NodeConfig {
        rpc: RpcConfig { public_addr: Some(boot_addr), ..RpcConfig::default() },
        host,
        port,
        ..NodeConfig::default()
    };
    let boot = if cores > 1 {
        Dht::start_sharded(boot_config, cores, io)
    } else {
        Dht::start_on(&driver, boot_config)
    }
    .with_context(|| format!("starting the bootstrap node on {boot_addr}"))?;
    boot.ready().wait()?;
    println!("bootstrap node   {boot_addr}");
    let mut nodes = Vec::new();
    for i in 0..count.max(2) {
        let rpc = RpcConfig {
            bootstrap: vec![boot_addr],
            ephemeral: Some(false),
            firewalled: false,
            ..RpcConfig::default()
        };
        let config =
            NodeConfig { rpc, host, port: port.saturating_add(1 + i), ..NodeConfig::default() };
        nodes.push(Dht::start_on(&driver, config)?);
    }
    for n in &nodes {
        n.ready().wait()?;
    }
    if !wait_until(Duration::from_secs(30), || nodes.iter().all(Dht::is_persistent)) {
        bail!("not every node became persistent within 30 s");
    }
    println!(
        "nodes            {} persistent nodes on {host}:{}-{}",
        nodes.len(),
        port + 1,
        port + nodes.len() as u16
    );
    self_check(&nodes)?;
    println!();
    println!("join it from JavaScript:");
    println!("  const DHT = require('hyperdht')");
    println!("  const dht = new DHT({{ bootstrap: ['{boot_addr}'], host: '{host}' }})");
    println!("or from tern:");
    println!("  tern lookup <TOPIC_HEX> --bootstrap {boot_addr}");
    println!();
    println!("testnet up; Ctrl-C stops it");
    let mut all = vec![boot];
    all.extend(nodes);
    run.serve(all, Some(driver))
}

/// Announce + lookup, mutable put/get and immutable put/get across different nodes.
fn self_check(nodes: &[Dht]) -> anyhow::Result<()> {
    let (a, b) = (&nodes[0], &nodes[nodes.len() - 1]);
    let key_pair = KeyPair::from_seed(&[0x5e; 32]);
    let topic = tern_crypto::hash32(b"tern testnet self-check");
    let stored = a.announce(topic, &key_pair, &[]).wait()?;
    let found = b
        .lookup(topic)
        .flat_map(|r| r.peers)
        .any(|p| p.public_key == *key_pair.public_key().as_bytes());
    if !found {
        bail!("self-check: an announced peer was not found by lookup");
    }
    println!("check            announce on {stored} nodes + lookup from another node: ok");
    a.unannounce(topic, &key_pair).wait()?;

    let value = b"hello from the tern testnet";
    a.mutable_put(&key_pair, value, 1).wait()?;
    let got = b.mutable_get(*key_pair.public_key().as_bytes(), 0, true).wait()?;
    if got.as_ref().map(|v| v.value.as_slice()) != Some(&value[..]) {
        bail!("self-check: mutable_get did not return the value put");
    }
    println!("check            mutable put + get: ok");
    let hash = a.immutable_put(value).wait()?;
    if b.immutable_get(hash).wait()?.as_deref() != Some(&value[..]) {
        bail!("self-check: immutable_get did not return the value put");
    }
    println!("check            immutable put + get: ok");
    Ok(())
}
