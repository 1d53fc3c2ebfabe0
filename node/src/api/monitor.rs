//! [`DhtMonitor`]: a read-only, cloneable view of a running [`crate::Dht`] for
//! observers on other threads (the CLI's admin listener), so they can read counters
//! without owning the node — the owner keeps the `Dht` to destroy it on shutdown.

use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};

use tern_core::NodeStats;
use tern_driver::{EndpointHandle, IoBackend, SendError};

use crate::api::endpoint::{ApiCommand, ApiNode, Shared};
use crate::api::error::DhtError;
use crate::api::pending::Pending;
use crate::api::shard::{ShardCounters, ShardStats};

/// The load of one shard's driver thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardLoad {
    /// The driver thread's OS thread id (`None` until it runs): its CPU time is in
    /// `/proc/self/task/<id>/schedstat`. Nodes sharing one driver thread share it.
    pub os_thread: Option<i32>,
    /// Messages waiting in that thread's mailbox (API commands, datagrams forwarded
    /// by sibling shards), out of [`tern_driver::MAILBOX_CAPACITY`] by default.
    pub mailbox_len: usize,
    /// The driver thread's counters: loop turns, datagrams in and out, timer calls.
    /// Nodes sharing one driver thread share them.
    pub driver: tern_driver::DriverStats,
}

/// A cloneable, `Send` view of one node: counters and state, no operations. It stays
/// valid after the node is destroyed; its calls then fail with [`DhtError::Closed`].
#[derive(Clone)]
pub struct DhtMonitor {
    /// Every shard, first shard first (one entry for an unsharded node).
    pub(crate) handles: Vec<EndpointHandle<ApiNode>>,
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) counters: Option<Arc<ShardCounters>>,
    /// The driver backend, when the node owns its driver.
    pub(crate) backend: Option<IoBackend>,
}

impl std::fmt::Debug for DhtMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhtMonitor").field("shards", &self.handles.len()).finish_non_exhaustive()
    }
}

impl DhtMonitor {
    /// Counters of the whole node, every shard's summed, as [`crate::Dht::stats`].
    pub fn stats(&self) -> Pending<NodeStats> {
        node_stats_of(&self.handles)
    }

    /// Counters of every shard, first shard first.
    pub fn shard_stats(&self) -> Vec<Pending<NodeStats>> {
        self.handles.iter().map(stats_of).collect()
    }

    /// Up to `limit` addresses of the routing tables, most recently heard from first,
    /// gathered over every shard (each shard keeps its own table) without repeats —
    /// what a routing-table snapshot saves.
    pub fn table_nodes(&self, limit: usize) -> Result<Vec<SocketAddrV4>, DhtError> {
        let mut all: Vec<SocketAddrV4> = Vec::new();
        let mut last_error = None;
        for h in &self.handles {
            match table_nodes_of(h, limit).wait() {
                Ok(nodes) => {
                    for n in nodes {
                        if all.len() < limit && !all.contains(&n) {
                            all.push(n);
                        }
                    }
                }
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            Some(e) if all.is_empty() => Err(e),
            _ => Ok(all),
        }
    }

    /// The load of every shard's thread, first shard first.
    pub fn shard_load(&self) -> Vec<ShardLoad> {
        self.handles
            .iter()
            .map(|h| ShardLoad {
                os_thread: h.thread_os_id(),
                mailbox_len: h.mailbox_len(),
                driver: h.thread_stats(),
            })
            .collect()
    }

    /// What the shards passed between them (`None` for an unsharded node).
    pub fn forwarding_stats(&self) -> Option<ShardStats> {
        self.counters.as_ref().map(|c| c.snapshot())
    }

    /// Whether the node is persistent.
    pub fn is_persistent(&self) -> bool {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).persistent.is_some()
    }

    /// The server socket's local address (once bound).
    pub fn local_addr(&self) -> Option<SocketAddrV4> {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).local.first().copied()
    }

    /// The driver backend of a node that owns its driver (`None` on a shared driver:
    /// ask the driver).
    pub fn backend(&self) -> Option<IoBackend> {
        self.backend
    }
}

/// Asks one shard for its table (see [`DhtMonitor::table_nodes`]).
pub(crate) fn table_nodes_of(
    h: &EndpointHandle<ApiNode>,
    limit: usize,
) -> Pending<Vec<SocketAddrV4>> {
    let (tx, pending) = Pending::channel();
    match h.send(ApiCommand::TableNodes(limit, tx)) {
        Ok(()) => pending,
        Err(e) => Pending::ready(Err(if matches!(e, SendError::Full(_)) {
            DhtError::Busy
        } else {
            DhtError::Closed
        })),
    }
}

/// The counters of a whole node from its shards' handles: the one shard's, or every
/// shard's summed ([`NodeStats::absorb`]: records add up, the replicated table does
/// not) — what a caller of `stats` means by "the node", whichever shard did the work.
pub(crate) fn node_stats_of<'a>(
    handles: impl IntoIterator<Item = &'a EndpointHandle<ApiNode>>,
) -> Pending<NodeStats> {
    let mut parts: Vec<Pending<NodeStats>> = handles.into_iter().map(stats_of).collect();
    if parts.len() <= 1 {
        return parts.pop().unwrap_or_else(|| Pending::ready(Err(DhtError::Closed)));
    }
    Pending::from_future(async move {
        let mut total: Option<NodeStats> = None;
        for part in parts {
            let shard = part.await?;
            match total.as_mut() {
                Some(t) => t.absorb(&shard),
                None => total = Some(shard),
            }
        }
        total.ok_or(DhtError::Closed)
    })
}

pub(crate) fn stats_of(h: &EndpointHandle<ApiNode>) -> Pending<NodeStats> {
    let (tx, pending) = Pending::channel();
    match h.send(ApiCommand::Stats(tx)) {
        Ok(()) => pending,
        Err(e) => Pending::ready(Err(if matches!(e, SendError::Full(_)) {
            DhtError::Busy
        } else {
            DhtError::Closed
        })),
    }
}
