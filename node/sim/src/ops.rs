//! Bookkeeping of client operations started through [`crate::World::command`], and the
//! ledger of every legitimate write — the ground truth the safety checker compares the
//! nodes' stores against.
//!
//! Only operations the world started are tracked; the periodic re-announces a node runs
//! on its own report under op ids nobody registered and are ignored.

use tern_base::{NodeId, Timestamp};
use tern_core::NodeCommand;
use tern_dht::{OpError, OpOutput};
use tern_netsim::FxHashMap;

/// Which command an operation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `NodeCommand::Lookup`.
    Lookup,
    /// `NodeCommand::Announce`.
    Announce,
    /// `NodeCommand::Unannounce`.
    Unannounce,
    /// `NodeCommand::FindPeer`.
    FindPeer,
    /// `NodeCommand::MutablePut`.
    MutablePut,
    /// `NodeCommand::MutableGet`.
    MutableGet,
    /// `NodeCommand::ImmutablePut`.
    ImmutablePut,
    /// `NodeCommand::ImmutableGet`.
    ImmutableGet,
    /// `NodeCommand::Ping`.
    Ping,
    /// `NodeCommand::Listen` (completes with its first announce).
    Listen,
    /// `NodeCommand::Unlisten` (completes with its unannounce).
    Unlisten,
    /// `NodeCommand::Connect`.
    Connect,
}

impl OpKind {
    /// The kind of a command (`None` for `Bootstrap`, which has no operation).
    pub fn of(command: &NodeCommand) -> Option<Self> {
        Some(match command {
            NodeCommand::Bootstrap => return None,
            NodeCommand::Ping(_) => Self::Ping,
            NodeCommand::Lookup(_) => Self::Lookup,
            NodeCommand::Announce { .. } => Self::Announce,
            NodeCommand::Unannounce { .. } => Self::Unannounce,
            NodeCommand::FindPeer(_) => Self::FindPeer,
            NodeCommand::MutablePut { .. } => Self::MutablePut,
            NodeCommand::MutableGet { .. } => Self::MutableGet,
            NodeCommand::ImmutablePut(_) => Self::ImmutablePut,
            NodeCommand::ImmutableGet(_) => Self::ImmutableGet,
            NodeCommand::Listen { .. } => Self::Listen,
            NodeCommand::Unlisten(_) => Self::Unlisten,
            NodeCommand::Connect { .. } => Self::Connect,
        })
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A DHT operation's result.
    Dht(Result<OpOutput, OpError>),
    /// A ping was answered (or not).
    Ping(bool),
    /// A connect established its stream (our UDX id) or failed.
    Connect(Result<u32, tern_core::ConnectError>),
}

/// Most distinct public keys remembered per lookup: far above the 20 records a reply
/// carries times the 20 nodes a lookup asks, so nothing realistic is cut off.
const MAX_FOUND: usize = 1024;

/// One tracked operation.
#[derive(Debug, Clone)]
pub struct OpRecord {
    /// What it runs.
    pub kind: OpKind,
    /// When it started.
    pub started: Timestamp,
    /// Public keys seen in its LOOKUP replies (lookup, announce, unannounce), distinct.
    pub found: Vec<[u8; 32]>,
    /// When and how it finished.
    pub done: Option<(Timestamp, Outcome)>,
}

impl OpRecord {
    /// A record of an operation started at `started`.
    pub fn new(kind: OpKind, started: Timestamp) -> Self {
        Self { kind, started, found: Vec::new(), done: None }
    }

    /// Notes the public keys of one LOOKUP reply.
    pub fn add_found(&mut self, keys: impl IntoIterator<Item = [u8; 32]>) {
        for k in keys {
            if self.found.len() < MAX_FOUND && !self.found.contains(&k) {
                self.found.push(k);
            }
        }
    }

    /// Whether the operation finished.
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// Whether it finished successfully (`Ok` result, or an answered ping).
    pub fn succeeded(&self) -> bool {
        matches!(
            self.done,
            Some((_, Outcome::Dht(Ok(_)) | Outcome::Ping(true) | Outcome::Connect(Ok(_))))
        )
    }

    /// How long it took, if finished.
    pub fn latency(&self) -> Option<std::time::Duration> {
        self.done.as_ref().map(|(at, _)| at.saturating_since(self.started))
    }
}

/// Every write the workload legitimately signed (or content-addressed), so a stored
/// record that is not here was forged or corrupted.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// Public keys announced under each topic by honest nodes.
    pub announces: FxHashMap<NodeId, Vec<[u8; 32]>>,
    /// Mutable records by target `H32(pk)`: the key and the highest seq put.
    pub mutables: FxHashMap<NodeId, ([u8; 32], u64)>,
    /// Immutable values' targets `H32(value)`.
    pub immutables: FxHashMap<NodeId, ()>,
}

impl Ledger {
    /// Records the write a command makes, if any, unless it comes from a forger.
    pub fn note(&mut self, command: &NodeCommand, forger: bool) {
        if forger {
            return;
        }
        match command {
            NodeCommand::Announce { topic, key_pair, .. } => {
                let pk = *key_pair.public_key().as_bytes();
                let keys = self.announces.entry(*topic).or_default();
                if !keys.contains(&pk) {
                    keys.push(pk);
                }
            }
            NodeCommand::MutablePut { key_pair, seq, .. } => {
                let pk = *key_pair.public_key().as_bytes();
                let target = NodeId(tern_crypto::hash32(&pk));
                let e = self.mutables.entry(target).or_insert((pk, *seq));
                e.1 = e.1.max(*seq);
            }
            NodeCommand::ImmutablePut(value) => {
                self.immutables.insert(NodeId(tern_crypto::hash32(value)), ());
            }
            _ => {}
        }
    }

    /// Whether `pk` was honestly announced under `topic`.
    pub fn announced(&self, topic: &NodeId, pk: &[u8; 32]) -> bool {
        self.announces.get(topic).is_some_and(|keys| keys.contains(pk))
    }
}
