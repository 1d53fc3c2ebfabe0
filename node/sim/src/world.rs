//! [`World`]: N tern [`Node`]s on a [`Network`] with virtual time and one event heap.
//!
//! The world is the third driver of DESIGN.md ("one core, three drivers"): it owns the
//! clock (a [`Timestamp`] that jumps from event to event), the sockets (two per node, a
//! server port and a client port, on the host's address from the netsim plan) and the
//! randomness (every node seed, key and network decision derives from
//! [`WorldConfig::seed`]). Events live in one [`EventQueue`] ordered by (time, seq):
//!
//! * `Timer(n)` — node `n`'s [`Node::poll_timeout`] came due. A node has at most one live
//!   timer entry; when its deadline moves earlier a new entry is pushed and the old one
//!   is recognised as stale when popped. Nodes are never ticked needlessly.
//! * `Deliver(slot)` — a datagram copy reaches its destination address. Payloads are
//!   copied once, from the sender's [`TxQueue`] into a pooled buffer of the slab, and
//!   handed to the receiver by reference; buffers are reused, so the steady state
//!   allocates nothing per datagram.
//! * `Start(n)`, `Resume(n)` — a node joins (bootstrap walk) or wakes from a pause.
//!
//! After every input the node's outputs are drained (DESIGN.md principle 1): datagrams
//! go to the network, events to the op tracker and the trace, and its timer is
//! rescheduled. A panic inside a node is caught, recorded as a safety violation and the
//! node is killed, so one run reports every failure instead of aborting.

use std::net::SocketAddrV4;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use tern_base::{Endpoint, OpenError, Rng, SocketId, SocketOp, Timestamp, TxQueue};
use tern_core::{ConnEvent, Node, NodeCommand, NodeConfig, NodeEvent, Origin};
use tern_dht::{DhtEvent, OpId};
use tern_netsim::{
    EventQueue, FxHashMap, HostId, Inbound, NatConfig, NatId, NetConfig, Network, Outbound,
};
use tern_rpc::RpcConfig;

use crate::check::Violation;
use crate::ops::{Ledger, OpKind, OpRecord, Outcome};
use crate::trace::{Trace, TraceLevel};

mod node;
mod slab;

pub use node::{Mode, NodeState, Placement, SimNode};
use slab::Slab;

/// hyperdht's default server port (tern-core `DEFAULT_PORT`); every simulated node
/// listens on it.
pub const SERVER_PORT: u16 = 49_737;
/// Datagrams a paused node's socket buffers hold before dropping (a small rcvbuf).
const BACKLOG_MAX: usize = 256;
/// Datagrams one node input may queue; tern nodes stay far below it.
const TX_CAPACITY: usize = 8192;

/// Settings of a world.
#[derive(Debug, Clone, Copy)]
pub struct WorldConfig {
    /// Every random choice derives from it.
    pub seed: u64,
    /// The network model.
    pub net: NetConfig,
    /// What the trace records.
    pub trace: TraceLevel,
    /// Stop (with a violation) after this many events: a livelock guard.
    pub max_events: u64,
}

impl WorldConfig {
    /// Defaults with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed, net: NetConfig::default(), trace: TraceLevel::Meta, max_events: u64::MAX }
    }
}

/// Counters of a world.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorldStats {
    /// Events processed.
    pub events: u64,
    /// Datagram copies handed to nodes.
    pub delivered: u64,
    /// Timers handled.
    pub timers: u64,
    /// Heap entries found stale (the node's deadline had moved).
    pub stale_timers: u64,
    /// Timers whose node still reported a due deadline right after handling it.
    pub stuck_timers: u64,
    /// Datagrams to a port no socket is bound to.
    pub port_unreachable: u64,
    /// Datagrams dropped from a paused node's full backlog.
    pub backlog_dropped: u64,
    /// Datagrams rewritten by the forger.
    pub forged: u64,
    /// Commands run.
    pub commands: u64,
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    Start(u32),
    Timer(u32),
    Deliver(u32),
    Resume(u32),
}

/// Trace tags.
const TAG_DELIVER: u8 = 1;
const TAG_TIMER: u8 = 2;
const TAG_EVENT: u8 = 3;
const TAG_COMMAND: u8 = 4;

/// The simulated world.
pub struct World {
    cfg: WorldConfig,
    now: Timestamp,
    net: Network,
    queue: EventQueue<Ev>,
    nodes: Vec<SimNode>,
    /// Host index → node index.
    host_node: Vec<u32>,
    slab: Slab,
    tx: TxQueue,
    rng: Rng,
    trace: Trace,
    ops: FxHashMap<(u32, u64), OpRecord>,
    ledger: Ledger,
    bootstrap: Vec<SocketAddrV4>,
    violations: Vec<Violation>,
    stats: WorldStats,
    scratch: Vec<u8>,
    fmt: String,
}

impl World {
    /// An empty world.
    pub fn new(cfg: WorldConfig) -> Self {
        let mut rng = Rng::from_seed(cfg.seed);
        let net = Network::new(cfg.net, rng.next_u64());
        Self {
            now: Timestamp::ZERO,
            net,
            queue: EventQueue::new(),
            nodes: Vec::new(),
            host_node: Vec::new(),
            slab: Slab::default(),
            tx: TxQueue::new(TX_CAPACITY),
            rng,
            trace: Trace::new(cfg.trace),
            ops: FxHashMap::default(),
            ledger: Ledger::default(),
            bootstrap: Vec::new(),
            violations: Vec::new(),
            stats: WorldStats::default(),
            scratch: Vec::new(),
            fmt: String::new(),
            cfg,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &WorldConfig {
        &self.cfg
    }

    /// Virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The network (read).
    pub fn net(&self) -> &Network {
        &self.net
    }

    /// The network (faults: partitions, links, NAT boxes).
    pub fn net_mut(&mut self) -> &mut Network {
        &mut self.net
    }

    /// The world's own random stream (workloads draw from it so runs replay).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Every node, by index.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, i: usize) -> Option<&SimNode> {
        self.nodes.get(i)
    }

    /// The bootstrap nodes' addresses.
    pub fn bootstrap_addrs(&self) -> &[SocketAddrV4] {
        &self.bootstrap
    }

    /// The ledger of honest writes.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Violations recorded while running (panics, livelocks).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Records a violation found by a checker.
    pub fn report(&mut self, v: Violation) {
        self.violations.push(v);
    }

    /// Counters.
    pub fn stats(&self) -> &WorldStats {
        &self.stats
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Events waiting in the heap.
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    /// Adds `n` bootstrap nodes that know each other, started at once.
    pub fn add_bootstrappers(&mut self, n: usize) -> Vec<usize> {
        let hosts: Vec<HostId> = (0..n).map(|_| self.net.add_public_host()).collect();
        let addrs: Vec<SocketAddrV4> =
            hosts.iter().map(|h| SocketAddrV4::new(self.net.host_ip(*h), SERVER_PORT)).collect();
        self.bootstrap.extend(&addrs);
        let mut out = Vec::with_capacity(n);
        for (k, host) in hosts.into_iter().enumerate() {
            let others: Vec<SocketAddrV4> =
                addrs.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, a)| *a).collect();
            let rpc = RpcConfig {
                public_addr: Some(addrs[k]),
                bootstrap: others,
                ..RpcConfig::default()
            };
            let i = self.push_node(host, Mode::Bootstrap, Placement::Public, rpc, self.now);
            self.queue.push(self.now, Ev::Start(i as u32));
            out.push(i);
        }
        out
    }

    /// Adds a NAT box.
    pub fn add_nat(&mut self, cfg: NatConfig) -> NatId {
        self.net.add_nat(cfg)
    }

    /// Adds a node that bootstraps from the bootstrap nodes added so far and joins at
    /// `start` (not before now). The node is created for that instant, as a real driver
    /// creates it when it binds: created earlier, its first tick would see a long gap and
    /// take it for a machine that slept.
    pub fn add_node(&mut self, mode: Mode, placement: Placement, start: Timestamp) -> usize {
        let host = match placement {
            Placement::Public => self.net.add_public_host(),
            Placement::Behind(nat) => self.net.add_private_host(nat),
        };
        let bootstrap = self.bootstrap.clone();
        let rpc = match mode {
            Mode::Bootstrap | Mode::Persistent => RpcConfig {
                bootstrap,
                ephemeral: Some(false),
                firewalled: false,
                ..RpcConfig::default()
            },
            Mode::Adaptive => RpcConfig { bootstrap, ..RpcConfig::default() },
            Mode::Ephemeral => {
                RpcConfig { bootstrap, ephemeral: Some(true), ..RpcConfig::default() }
            }
        };
        let start = start.max(self.now);
        let i = self.push_node(host, mode, placement, rpc, start);
        self.queue.push(start, Ev::Start(i as u32));
        i
    }

    fn push_node(
        &mut self,
        host: HostId,
        mode: Mode,
        placement: Placement,
        rpc: RpcConfig,
        start: Timestamp,
    ) -> usize {
        let ip = self.net.host_ip(host);
        // An OS-style ephemeral port (Linux: 32768–60999) for the client socket, never
        // the server port.
        let client_port = match 32_768 + self.rng.below(28_232) as u16 {
            SERVER_PORT => SERVER_PORT + 1,
            p => p,
        };
        let rpc = RpcConfig { server_port: SERVER_PORT, ..rpc };
        let config = NodeConfig { rpc, host: ip, port: SERVER_PORT, ..NodeConfig::default() };
        let seed = self.rng.next_u64();
        let secret = self.rng.bytes32();
        let mut node = Node::new(config, start, seed, secret);
        node.set_server_port(SERVER_PORT);
        let i = self.nodes.len();
        let h = host.0 as usize;
        if self.host_node.len() <= h {
            self.host_node.resize(h + 1, u32::MAX);
        }
        self.host_node[h] = i as u32;
        self.nodes.push(SimNode {
            node,
            host,
            mode,
            placement,
            local: SocketAddrV4::new(ip, SERVER_PORT),
            client_port,
            extra: Vec::new(),
            state: NodeState::Idle,
            timer_at: Timestamp::NEVER,
            backlog: Vec::new(),
            forger: false,
            started_at: None,
            bootstrapped_at: None,
            persistent: None,
        });
        i
    }

    /// Makes node `i` a forger: its writes are tampered with on the way out.
    pub fn set_forger(&mut self, i: usize, forger: bool) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.forger = forger;
        }
    }

    /// Kills node `i`: it stops and its host vanishes from the network.
    pub fn kill(&mut self, i: usize) {
        let Some(n) = self.nodes.get_mut(i) else { return };
        n.state = NodeState::Dead;
        self.net.set_up(n.host, false);
        for (slot, _) in std::mem::take(&mut n.backlog) {
            self.slab.free(slot);
        }
    }

    /// Pauses node `i` for `d`: no timers, no sends; arrivals wait in a bounded backlog
    /// and are handled on resume, when the node also notices the time jump.
    pub fn pause(&mut self, i: usize, d: Duration) {
        let Some(n) = self.nodes.get_mut(i) else { return };
        if n.state != NodeState::Running {
            return;
        }
        n.state = NodeState::Paused;
        self.net.set_paused(n.host, true);
        self.queue.push(self.now + d, Ev::Resume(i as u32));
    }

    /// Runs `command` on node `i` now and tracks the operation it starts.
    pub fn command(&mut self, i: usize, command: NodeCommand) -> Option<OpId> {
        let n = self.nodes.get_mut(i)?;
        if n.state != NodeState::Running {
            return None;
        }
        self.stats.commands += 1;
        self.ledger.note(&command, n.forger);
        let kind = OpKind::of(&command);
        if self.trace.is_on() {
            self.trace.event(TAG_COMMAND, self.now.as_nanos(), i as u32);
        }
        let now = self.now;
        let result =
            catch_unwind(AssertUnwindSafe(|| n.node.handle_command(now, command, &mut self.tx)));
        let op = match result {
            Ok(op) => op,
            Err(panic) => {
                self.crashed(i, panic);
                return None;
            }
        };
        if let (Some(op), Some(kind)) = (op, kind) {
            self.ops.insert((i as u32, op.0), OpRecord::new(kind, now));
        }
        self.after_input(i);
        op
    }

    /// A tracked operation.
    pub fn op(&self, i: usize, op: OpId) -> Option<&OpRecord> {
        self.ops.get(&(i as u32, op.0))
    }

    /// Stops tracking an operation and returns its record.
    pub fn take_op(&mut self, i: usize, op: OpId) -> Option<OpRecord> {
        self.ops.remove(&(i as u32, op.0))
    }

    /// Runs every event up to and including `t`, then sets the clock to `t`. Returns
    /// false if the event budget ran out (a violation is recorded).
    pub fn run_until(&mut self, t: Timestamp) -> bool {
        while let Some(at) = self.queue.peek_time() {
            if at > t {
                break;
            }
            if self.stats.events >= self.cfg.max_events {
                if self.stats.events == self.cfg.max_events {
                    // Recorded once: later calls find the budget still spent.
                    self.stats.events += 1;
                    let what =
                        format!("event budget of {} exhausted (livelock?)", self.cfg.max_events);
                    self.violations.push(Violation::new(self.now, None, what));
                }
                return false;
            }
            self.step();
        }
        self.now = self.now.max(t);
        true
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) -> bool {
        self.run_until(self.now + d)
    }

    fn step(&mut self) {
        let Some((at, ev)) = self.queue.pop() else { return };
        self.now = at;
        self.stats.events += 1;
        match ev {
            Ev::Start(i) => self.on_start(i as usize),
            Ev::Timer(i) => self.on_timer(i as usize, at),
            Ev::Deliver(slot) => self.on_deliver(slot),
            Ev::Resume(i) => self.on_resume(i as usize),
        }
    }

    fn on_start(&mut self, i: usize) {
        let Some(n) = self.nodes.get_mut(i) else { return };
        if n.state != NodeState::Idle {
            return;
        }
        n.state = NodeState::Running;
        n.started_at = Some(self.now);
        self.command(i, NodeCommand::Bootstrap);
    }

    fn on_timer(&mut self, i: usize, at: Timestamp) {
        let Some(n) = self.nodes.get_mut(i) else { return };
        if n.timer_at != at || n.state != NodeState::Running {
            self.stats.stale_timers += 1;
            return;
        }
        n.timer_at = Timestamp::NEVER;
        if n.node.poll_timeout() <= at {
            self.stats.timers += 1;
            if self.trace.is_on() {
                self.trace.event(TAG_TIMER, at.as_nanos(), i as u32);
            }
            let result = catch_unwind(AssertUnwindSafe(|| n.node.handle_timeout(at, &mut self.tx)));
            if let Err(panic) = result {
                return self.crashed(i, panic);
            }
            let Some(n) = self.nodes.get(i) else { return };
            if n.node.poll_timeout() <= at {
                // The node says a timer is due right after handling it: a livelock in
                // the making. Back off a millisecond so time advances, and count it.
                self.stats.stuck_timers += 1;
                self.flush(i);
                self.drain_events(i);
                return self.schedule(i, at + Duration::from_millis(1));
            }
        }
        self.after_input(i);
    }

    fn on_deliver(&mut self, slot: u32) {
        let (from, to) = self.slab.addrs(slot);
        let (host, port) = match self.net.arrive(self.now, from, to) {
            Inbound::Deliver { host, port } => (host, port),
            Inbound::Dropped(_) => return self.slab.free(slot),
        };
        let i = self.host_node.get(host.0 as usize).copied().unwrap_or(u32::MAX) as usize;
        let Some(n) = self.nodes.get_mut(i) else { return self.slab.free(slot) };
        match n.state {
            NodeState::Running => self.deliver(i, slot, port),
            NodeState::Paused if n.backlog.len() < BACKLOG_MAX => n.backlog.push((slot, port)),
            NodeState::Paused => {
                self.stats.backlog_dropped += 1;
                self.slab.free(slot);
            }
            NodeState::Idle | NodeState::Dead => self.slab.free(slot),
        }
    }

    /// Hands datagram `slot` (addressed to local `port`) to running node `i`.
    fn deliver(&mut self, i: usize, slot: u32, port: u16) {
        let Some(n) = self.nodes.get_mut(i) else { return self.slab.free(slot) };
        let socket = if port == SERVER_PORT {
            SocketId::SERVER
        } else if port == n.client_port {
            SocketId::CLIENT
        } else if let Some(&(id, _)) = n.extra.iter().find(|(_, p)| *p == port) {
            id
        } else {
            self.stats.port_unreachable += 1;
            return self.slab.free(slot);
        };
        let (from, _) = self.slab.addrs(slot);
        let buf = self.slab.take(slot);
        self.stats.delivered += 1;
        if self.trace.is_on() {
            self.trace.event(TAG_DELIVER, self.now.as_nanos(), i as u32);
            self.trace.word(u64::from(u32::from(*from.ip())) << 16 | u64::from(from.port()));
            self.trace.word(u64::from(socket.0));
            if self.trace.is_full() {
                self.trace.bytes(&buf);
            } else {
                self.trace.word(buf.len() as u64);
            }
        }
        let now = self.now;
        let result = catch_unwind(AssertUnwindSafe(|| {
            n.node.handle_datagram(now, socket, from, &buf, &mut self.tx)
        }));
        self.slab.release(slot, buf);
        if let Err(panic) = result {
            return self.crashed(i, panic);
        }
        self.after_input(i);
    }

    fn on_resume(&mut self, i: usize) {
        let Some(n) = self.nodes.get_mut(i) else { return };
        if n.state != NodeState::Paused {
            return;
        }
        n.state = NodeState::Running;
        self.net.set_paused(n.host, false);
        // The node may have a long-overdue deadline: drop stale timer bookkeeping so
        // `after_input` schedules it afresh.
        n.timer_at = Timestamp::NEVER;
        let backlog = std::mem::take(&mut n.backlog);
        for (slot, port) in backlog {
            if self.nodes.get(i).is_some_and(|n| n.state == NodeState::Running) {
                self.deliver(i, slot, port);
            } else {
                // It crashed on an earlier datagram of the backlog.
                self.slab.free(slot);
            }
        }
        self.after_input(i);
    }

    fn crashed(&mut self, i: usize, panic: Box<dyn std::any::Any + Send>) {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        self.tx.clear();
        self.violations.push(Violation::new(self.now, Some(i), format!("node panicked: {msg}")));
        self.kill(i);
    }

    /// Drains node `i`'s outputs after an input and reschedules its timer.
    fn after_input(&mut self, i: usize) {
        self.flush(i);
        self.socket_ops(i);
        self.drain_events(i);
        let Some(n) = self.nodes.get(i) else { return };
        if n.state == NodeState::Running {
            let d = n.node.poll_timeout();
            self.schedule(i, d);
        }
    }

    fn schedule(&mut self, i: usize, deadline: Timestamp) {
        let Some(n) = self.nodes.get_mut(i) else { return };
        if deadline == Timestamp::NEVER || deadline >= n.timer_at {
            return;
        }
        let at = deadline.max(self.now);
        n.timer_at = at;
        self.queue.push(at, Ev::Timer(i as u32));
    }

    /// Opens and closes the sockets node `i` asks for, as the driver does: a fresh
    /// ephemeral port per open (bounded like the driver's per-endpoint cap).
    fn socket_ops(&mut self, i: usize) {
        const MAX_EXTRA: usize = 264;
        for _ in 0..2 * MAX_EXTRA + 64 {
            let Some(n) = self.nodes.get_mut(i) else { return };
            let Some(op) = n.node.poll_socket_op() else { return };
            match op {
                SocketOp::Close(id) => n.extra.retain(|(s, _)| *s != id),
                SocketOp::Open { id, .. } => {
                    let result = if n.extra.len() >= MAX_EXTRA {
                        Err(OpenError::Limit)
                    } else {
                        let port = loop {
                            let p = 32_768 + self.rng.below(28_232) as u16;
                            let taken = p == SERVER_PORT
                                || p == n.client_port
                                || n.extra.iter().any(|(_, q)| *q == p);
                            if !taken {
                                break p;
                            }
                        };
                        n.extra.push((id, port));
                        Ok(SocketAddrV4::new(*n.local.ip(), port))
                    };
                    let now = self.now;
                    n.node.socket_opened(now, id, result, &mut self.tx);
                    self.flush(i);
                }
            }
        }
    }

    /// Sends what node `i` queued.
    fn flush(&mut self, i: usize) {
        if self.tx.is_empty() {
            return;
        }
        let Some(n) = self.nodes.get(i) else { return self.tx.clear() };
        let (host, client_port, forger) = (n.host, n.client_port, n.forger);
        let extra = &n.extra;
        let placement_port = |s: SocketId| match s {
            SocketId::SERVER => Some(SERVER_PORT),
            SocketId::CLIENT => Some(client_port),
            _ => extra.iter().find(|(id, _)| *id == s).map(|(_, p)| *p),
        };
        for (meta, bytes) in self.tx.iter() {
            let Some(src_port) = placement_port(meta.socket) else { continue };
            let payload = if forger && crate::tamper::tamper(&bytes, &mut self.scratch) {
                self.stats.forged += 1;
                &self.scratch[..]
            } else {
                &bytes[..]
            };
            let Outbound::Sent { from, copies } =
                self.net.send(self.now, host, src_port, meta.dest, payload.len())
            else {
                continue;
            };
            for copy in copies.into_iter().flatten() {
                let slot = self.slab.alloc(from, meta.dest, payload);
                if let Some(bit) = copy.corrupt_bit {
                    self.slab.flip(slot, bit);
                }
                self.queue.push(copy.at, Ev::Deliver(slot));
            }
        }
        self.tx.clear();
    }

    /// Routes node `i`'s events to the op tracker and the trace.
    fn drain_events(&mut self, i: usize) {
        loop {
            let Some(n) = self.nodes.get_mut(i) else { return };
            let Some(event) = n.node.poll_event() else { return };
            if self.trace.is_on() {
                self.trace_event(i, &event);
            }
            let now = self.now;
            let n = &mut self.nodes[i];
            match event {
                NodeEvent::Bootstrapped => {
                    n.bootstrapped_at.get_or_insert(now);
                }
                NodeEvent::Persistent(id) => {
                    n.persistent.get_or_insert((now, id));
                }
                NodeEvent::Ping { op, answered, .. } => {
                    if let Some(r) = self.ops.get_mut(&(i as u32, op.0)) {
                        r.done = Some((now, Outcome::Ping(answered)));
                    }
                }
                NodeEvent::Dht(DhtEvent::LookupReply { op, peers, .. }) => {
                    if let Some(r) = self.ops.get_mut(&(i as u32, op.0)) {
                        r.add_found(peers.iter().map(|p| p.public_key));
                    }
                }
                NodeEvent::Dht(DhtEvent::Done { op, result }) => {
                    if let Some(r) = self.ops.get_mut(&(i as u32, op.0)) {
                        r.done = Some((now, Outcome::Dht(result)));
                    }
                }
                NodeEvent::Conn(ConnEvent::Connection(c)) => {
                    if let Origin::Client(op) = c.origin
                        && let Some(r) = self.ops.get_mut(&(i as u32, op.0))
                    {
                        r.done = Some((now, Outcome::Connect(Ok(c.stream))));
                    }
                }
                NodeEvent::Conn(ConnEvent::ConnectFailed { op, error }) => {
                    if let Some(r) = self.ops.get_mut(&(i as u32, op.0)) {
                        r.done = Some((now, Outcome::Connect(Err(error))));
                    }
                }
                // Listen completes through its announce's Done; stream progress is not
                // tracked by the simulator (nothing reads simulated streams yet).
                NodeEvent::Listening { .. } | NodeEvent::Stream(_) => {}
            }
        }
    }

    fn trace_event(&mut self, i: usize, event: &NodeEvent) {
        use std::fmt::Write;
        self.trace.event(TAG_EVENT, self.now.as_nanos(), i as u32);
        if self.trace.is_full() {
            self.fmt.clear();
            // Writing to a String cannot fail.
            let _ = write!(self.fmt, "{event:?}");
            self.trace.bytes(self.fmt.as_bytes());
        } else {
            let kind = match event {
                NodeEvent::Dht(DhtEvent::LookupReply { .. }) => 1,
                NodeEvent::Dht(DhtEvent::Done { .. }) => 2,
                NodeEvent::Ping { .. } => 3,
                NodeEvent::Bootstrapped => 4,
                NodeEvent::Persistent(_) => 5,
                NodeEvent::Conn(_) => 6,
                NodeEvent::Listening { .. } => 7,
                NodeEvent::Stream(_) => 8,
            };
            self.trace.word(kind);
        }
    }
}
