//! `--state-dir`: the routing-table snapshots of the long-running commands. At start
//! each node's snapshot (`routing-table-N.bin`, N = the node's index in the process)
//! is read and its addresses appended to the node's bootstrap list; while running, and
//! once more at a clean stop, the tables are written back (see [`tern::snapshot`] for
//! the format and the atomic write).
//!
//! A snapshot only ever helps: a missing file is a first start, and an unreadable,
//! damaged or foreign one is logged and ignored — the node then starts from its
//! configured bootstrap nodes as without `--state-dir`. An empty table is never
//! written over a snapshot, so a node restarted while the network was unreachable
//! keeps the contacts it had.

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tern::snapshot;
use tern::{Dht, RpcConfig};

/// Where and how often snapshots are kept.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// The directory (created at start if missing).
    pub dir: PathBuf,
    /// Time between writes while running.
    pub interval: Duration,
}

impl StateDir {
    /// The `--state-dir` of `settings`, if one was given.
    pub fn from_settings(settings: &crate::cli::config::Settings) -> Option<Self> {
        let dir = settings.node.state_dir.clone()?;
        Some(Self { dir, interval: settings.snapshot_interval() })
    }

    /// Creates the directory (a start-up error if that fails: the operator asked for
    /// state and would otherwise silently lose it).
    pub fn prepare(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating the state directory {}", self.dir.display()))
    }

    /// Adds node `index`'s snapshot to `rpc`'s bootstrap contacts, after the configured
    /// ones (which the operator chose and so come first). Problems are logged.
    pub fn load_into(&self, index: usize, rpc: &mut RpcConfig) {
        let path = snapshot::path_in(&self.dir, index);
        match snapshot::read(&path) {
            Ok(None) => tracing::info!(path = %path.display(), "no routing-table snapshot yet"),
            Ok(Some(nodes)) => {
                let before = rpc.bootstrap.len();
                for n in nodes {
                    if !rpc.bootstrap.contains(&n) {
                        rpc.bootstrap.push(n);
                    }
                }
                tracing::info!(
                    path = %path.display(),
                    contacts = rpc.bootstrap.len() - before,
                    "routing-table snapshot loaded as bootstrap contacts"
                );
            }
            Err(e) => tracing::warn!(error = %e, "ignoring the routing-table snapshot"),
        }
    }

    /// Writes every node's snapshot; failures are logged, never fatal.
    pub fn save(&self, dhts: &[Dht]) {
        for (index, dht) in dhts.iter().enumerate() {
            let nodes: Vec<SocketAddrV4> = match dht.monitor().table_nodes(snapshot::MAX_NODES) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(index, error = %e, "no table to snapshot");
                    continue;
                }
            };
            if nodes.is_empty() {
                continue;
            }
            let path = snapshot::path_in(&self.dir, index);
            match snapshot::write(&path, &nodes) {
                Ok(n) => tracing::debug!(path = %path.display(), nodes = n, "snapshot written"),
                Err(e) => tracing::warn!(error = %e, "writing the routing-table snapshot"),
            }
        }
    }
}
