//! [`SimNode`]: one node of the world and what the world knows about it — its host,
//! how it runs, where it sits, its life cycle — beside the protocol [`Node`] itself.

use std::net::SocketAddrV4;

use tern_base::{NodeId, Timestamp};
use tern_core::Node;
use tern_netsim::{HostId, NatId};

/// How a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A bootstrap node: fixed public address, persistent from the start.
    Bootstrap,
    /// Forced persistent (`ephemeral: false`): persistent once its address is sampled.
    Persistent,
    /// Adaptive (`ephemeral: None`): persistent only after ~20 minutes of stable address
    /// and a passed firewall test.
    Adaptive,
    /// Never persistent (`ephemeral: true`).
    Ephemeral,
}

/// Where a node's host sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Its own public address.
    Public,
    /// Behind a NAT box.
    Behind(NatId),
}

/// Life cycle of a simulated node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Created, not joined yet.
    Idle,
    /// Running.
    Running,
    /// Stopped (`SIGSTOP`): no timers, arrivals wait in a bounded backlog.
    Paused,
    /// Killed or crashed.
    Dead,
}

/// One node of the world and what the world knows about it.
pub struct SimNode {
    pub(super) node: Node,
    pub(super) host: HostId,
    pub(super) mode: Mode,
    pub(super) placement: Placement,
    pub(super) local: SocketAddrV4,
    pub(super) client_port: u16,
    /// Sockets the node opened at run time (birthday sockets): id and local port.
    pub(super) extra: Vec<(tern_base::SocketId, u16)>,
    pub(super) state: NodeState,
    pub(super) timer_at: Timestamp,
    /// Datagrams (slab slot, local port) that arrived while paused.
    pub(super) backlog: Vec<(u32, u16)>,
    pub(super) forger: bool,
    /// When it joined.
    pub started_at: Option<Timestamp>,
    /// When its bootstrap walk finished.
    pub bootstrapped_at: Option<Timestamp>,
    /// When it turned persistent, and with which id.
    pub persistent: Option<(Timestamp, NodeId)>,
}

impl SimNode {
    /// The protocol node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Its host.
    pub fn host(&self) -> HostId {
        self.host
    }

    /// How it runs.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Where it sits.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Its server socket's local address (private behind a NAT).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Its client socket's port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// Its state.
    pub fn state(&self) -> NodeState {
        self.state
    }

    /// Whether it runs (or is paused: alive but stopped).
    pub fn is_alive(&self) -> bool {
        matches!(self.state, NodeState::Running | NodeState::Paused)
    }

    /// Whether its writes are tampered with on the way out.
    pub fn is_forger(&self) -> bool {
        self.forger
    }

    /// The server address others can reach it at, if it has a public one.
    pub fn public_addr(&self) -> Option<SocketAddrV4> {
        matches!(self.placement, Placement::Public).then_some(self.local)
    }

    /// Whether it should end up persistent: bootstrap and forced nodes, and adaptive
    /// nodes with a public address (the firewall test must pass for them and fail
    /// behind any NAT).
    pub fn should_be_persistent(&self) -> bool {
        match self.mode {
            Mode::Bootstrap | Mode::Persistent => true,
            Mode::Adaptive => self.placement == Placement::Public,
            Mode::Ephemeral => false,
        }
    }
}
