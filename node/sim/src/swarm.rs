//! The swarm runner: one seed → one randomized run (the idea of TigerBeetle's VOPR).
//!
//! [`Knobs::draw`] turns the seed into network conditions (loss model, jitter,
//! duplication, reordering, corruption), a population (NAT'd share and kinds, adaptive
//! vs forced-persistent nodes, forgers), workload rates and a fault schedule (kills,
//! churn, symmetric and one-way partitions, pauses, loss spikes) that heals before a
//! quiet period. The run then joins the population, drives a non-blocking workload
//! (announces, lookups, unannounces, mutable and immutable puts and gets) through the
//! faults, checks safety every five simulated minutes, and at the end checks safety again
//! and liveness: every topic whose announcer is alive is found by a lookup from a random
//! node within three attempts a minute apart.
//!
//! A failing run's [`Report`] ends with the one command line that replays it exactly.

use std::fmt;
use std::time::Duration;

use tern_base::{NodeId, Timestamp};
use tern_core::NodeCommand;
use tern_dht::{OpId, OpOutput};
use tern_netsim::{LinkConfig, Loss, NatId, Prob};

use crate::check::{Violation, safety};
use crate::ops::{OpRecord, Outcome};
use crate::trace::TraceLevel;
use crate::workload::{self, Announced, key_pair, pick};
use crate::world::{Mode, NodeState, Placement, World, WorldConfig};

mod knobs;

pub use knobs::{Fault, FaultKind, JOIN, Knobs, QUIET};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwarmConfig {
    /// The seed everything derives from.
    pub seed: u64,
    /// Ordinary nodes (besides the 3 bootstrap nodes).
    pub nodes: usize,
    /// Simulated minutes before the final checks.
    pub minutes: u64,
    /// Add a deliberately broken liveness check (demonstrates the failure report).
    pub break_checker: bool,
    /// Benchmark mode: fixed clean knobs, no faults, no checks.
    pub bench: bool,
    /// What the trace records.
    pub trace: TraceLevel,
}

impl SwarmConfig {
    /// A default run of `seed`: 300 nodes for 30 minutes.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            nodes: 300,
            minutes: 30,
            break_checker: false,
            bench: false,
            trace: TraceLevel::Meta,
        }
    }

    /// The command that replays this run.
    pub fn repro(&self) -> String {
        let broken = if self.break_checker { " --break-checker" } else { "" };
        format!(
            "cargo run --release -p tern-sim -- --seed {} --nodes {} --minutes {}{broken}",
            self.seed, self.nodes, self.minutes
        )
    }
}

/// Successes out of attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Succeeded.
    pub ok: usize,
    /// Attempted.
    pub total: usize,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        self.ok += usize::from(ok);
        self.total += 1;
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = if self.total == 0 { 100.0 } else { 100.0 * self.ok as f64 / self.total as f64 };
        write!(f, "{}/{} ({pct:.1} %)", self.ok, self.total)
    }
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// What ran.
    pub config: SwarmConfig,
    /// The knobs the seed drew.
    pub knobs: Knobs,
    /// The trace digest at the end (equal for equal seeds).
    pub trace_digest: u64,
    /// Events processed.
    pub events: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Simulated time at the end.
    pub simulated: Duration,
    /// Announces (honest nodes) stored somewhere.
    pub announces: Tally,
    /// Workload lookups that found the expected record (faults included).
    pub lookups: Tally,
    /// Mutable and immutable puts stored somewhere.
    pub puts: Tally,
    /// Gets that returned the value just put.
    pub gets: Tally,
    /// Unannounces that finished without error.
    pub unannounces: Tally,
    /// Topics the final liveness check looked for.
    pub liveness_topics: usize,
    /// The network's counters at the end.
    pub net: tern_netsim::NetStats,
    /// Every broken property.
    pub violations: Vec<Violation>,
}

impl Report {
    /// True when no property broke.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "seed {} nodes {} minutes {}", c.seed, c.nodes, c.minutes)?;
        write!(f, "{}", self.knobs)?;
        writeln!(
            f,
            "  ran {:?} simulated: {} events, {} datagrams delivered, trace {:016x}",
            self.simulated, self.events, self.delivered, self.trace_digest
        )?;
        writeln!(
            f,
            "  announces {}, lookups {}, puts {}, gets {}, unannounces {}, liveness over {} topics",
            self.announces,
            self.lookups,
            self.puts,
            self.gets,
            self.unannounces,
            self.liveness_topics
        )?;
        let n = &self.net;
        let drops: Vec<String> = tern_netsim::DropReason::ALL
            .iter()
            .filter(|r| n.dropped(**r) > 0)
            .map(|r| format!("{r:?} {}", n.dropped(*r)))
            .collect();
        writeln!(
            f,
            "  network: {} sent, {} duplicated, {} reordered, {} corrupted; dropped: {}",
            n.sent,
            n.duplicated,
            n.reordered,
            n.corrupted,
            if drops.is_empty() { "none".to_owned() } else { drops.join(", ") }
        )?;
        if self.passed() {
            return writeln!(f, "PASS");
        }
        writeln!(f, "FAIL: {} violation(s)", self.violations.len())?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        writeln!(f, "reproduce: {}", c.repro())
    }
}

/// Workload step (announces, lookups, writes and harvesting happen every step).
const STEP: Duration = Duration::from_secs(10);
/// Safety is checked this often during a run.
const SAFETY_EVERY: Duration = Duration::from_secs(5 * 60);
/// An operation not finished this long after it started counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug)]
enum Pending {
    Announce(Announced),
    Lookup([u8; 32]),
    Put { get: NodeCommand, value: Vec<u8> },
    Get(Vec<u8>),
    Unannounce,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Step,
    Safety,
    FaultStart(usize),
    FaultEnd(usize),
}

struct Run {
    cfg: SwarmConfig,
    knobs: Knobs,
    world: World,
    ordinary: Vec<usize>,
    active: Vec<Announced>,
    pending: Vec<(usize, OpId, Pending)>,
    nat: Option<(NatId, usize)>,
    report: Report,
    /// Fractional operations carried between steps.
    carry: [f64; 3],
    violations: Vec<Violation>,
}

/// Runs one seed.
pub fn run(cfg: SwarmConfig) -> Report {
    let knobs = if cfg.bench { Knobs::bench() } else { Knobs::draw(cfg.seed, cfg.minutes) };
    let mut wcfg = WorldConfig::new(cfg.seed);
    wcfg.trace = cfg.trace;
    // Livelock guard: runs use ~200 events per node-minute; 50 times that is a bug.
    wcfg.max_events = (cfg.nodes as u64 + 3) * cfg.minutes.max(1) * 10_000;
    wcfg.net.link = knobs.link;
    wcfg.net.uplink = knobs.uplink;
    let report = Report {
        config: cfg,
        knobs: knobs.clone(),
        trace_digest: 0,
        events: 0,
        delivered: 0,
        simulated: Duration::ZERO,
        announces: Tally::default(),
        lookups: Tally::default(),
        puts: Tally::default(),
        gets: Tally::default(),
        unannounces: Tally::default(),
        liveness_topics: 0,
        net: tern_netsim::NetStats::default(),
        violations: Vec::new(),
    };
    let mut run = Run {
        cfg,
        knobs,
        world: World::new(wcfg),
        ordinary: Vec::new(),
        active: Vec::new(),
        pending: Vec::new(),
        nat: None,
        report,
        carry: [0.0; 3],
        violations: Vec::new(),
    };
    run.populate();
    run.drive();
    run.finish()
}

impl Run {
    fn placement(&mut self) -> Placement {
        let k = &self.knobs;
        if !Prob::from_f64(k.nat_fraction).sample(self.world.rng()) {
            return Placement::Public;
        }
        match self.nat {
            Some((nat, hosts)) if hosts < self.knobs.hosts_per_nat => {
                self.nat = Some((nat, hosts + 1));
                Placement::Behind(nat)
            }
            _ => {
                let kinds = self.knobs.nat_kinds.clone();
                let kind =
                    pick(self.world.rng(), &kinds).unwrap_or_else(tern_netsim::NatConfig::random);
                let nat = self.world.add_nat(kind);
                self.nat = Some((nat, 1));
                Placement::Behind(nat)
            }
        }
    }

    fn add_ordinary(&mut self, start: Timestamp) -> usize {
        let placement = self.placement();
        let adaptive = Prob::from_f64(self.knobs.adaptive_fraction).sample(self.world.rng());
        let mode = match placement {
            Placement::Behind(_) => Mode::Adaptive,
            Placement::Public if adaptive => Mode::Adaptive,
            Placement::Public => Mode::Persistent,
        };
        let i = self.world.add_node(mode, placement, start);
        self.ordinary.push(i);
        i
    }

    fn populate(&mut self) {
        self.world.add_bootstrappers(3);
        let n = self.cfg.nodes;
        for k in 0..n {
            let start = Timestamp::ZERO + JOIN.mul_f64(k as f64 / n.max(1) as f64);
            self.add_ordinary(start);
        }
        let public: Vec<usize> = self
            .ordinary
            .iter()
            .copied()
            .filter(|i| self.world.nodes()[*i].placement() == Placement::Public)
            .collect();
        for _ in 0..self.knobs.forgers {
            if let Some(i) = pick(self.world.rng(), &public) {
                self.world.set_forger(i, true);
            }
        }
    }

    fn schedule(&self) -> Vec<(Duration, Action)> {
        let total = Duration::from_secs(self.cfg.minutes * 60);
        let mut actions = Vec::new();
        let mut t = JOIN;
        while t < total {
            actions.push((t, Action::Step));
            t += STEP;
        }
        if !self.cfg.bench {
            let mut t = SAFETY_EVERY;
            while t < total {
                actions.push((t, Action::Safety));
                t += SAFETY_EVERY;
            }
        }
        for (k, f) in self.knobs.faults.iter().enumerate() {
            actions.push((f.at, Action::FaultStart(k)));
            actions.push((f.at + f.duration, Action::FaultEnd(k)));
        }
        actions.sort_by_key(|(t, _)| *t);
        actions
    }

    fn drive(&mut self) {
        for (t, action) in self.schedule() {
            self.world.run_until(Timestamp::ZERO + t);
            match action {
                Action::Step => self.step(),
                Action::Safety => {
                    let v = safety(&self.world);
                    self.note(v);
                }
                Action::FaultStart(k) => self.fault(k, true),
                Action::FaultEnd(k) => self.fault(k, false),
            }
        }
        self.world.run_until(Timestamp::ZERO + Duration::from_secs(self.cfg.minutes * 60));
    }

    /// Adds violations, once each: a broken property found again by a later check (same
    /// node, same finding) is not repeated.
    fn note(&mut self, found: Vec<Violation>) {
        for v in found {
            if !self.violations.iter().any(|x| x.node == v.node && x.what == v.what) {
                self.violations.push(v);
            }
        }
    }

    fn alive_ordinary(&self) -> Vec<usize> {
        self.ordinary
            .iter()
            .copied()
            .filter(|i| self.world.nodes()[*i].state() == NodeState::Running)
            .collect()
    }

    /// `count` distinct random picks from `from`.
    fn sample(&mut self, from: &[usize], count: usize) -> Vec<usize> {
        let mut v = from.to_vec();
        let count = count.min(v.len());
        for k in 0..count {
            let j = k + self.world.rng().below((v.len() - k) as u64) as usize;
            v.swap(k, j);
        }
        v.truncate(count);
        v
    }

    fn fault(&mut self, k: usize, start: bool) {
        let Some(f) = self.knobs.faults.get(k).copied() else { return };
        match (f.kind, start) {
            (FaultKind::Kill(frac), true) => {
                let alive = self.alive_ordinary();
                let victims = (alive.len() as f64 * frac).round() as usize;
                for i in self.sample(&alive, victims) {
                    self.world.kill(i);
                }
            }
            (FaultKind::Churn(n), true) => {
                let alive = self.alive_ordinary();
                for i in self.sample(&alive, n) {
                    self.world.kill(i);
                }
                for _ in 0..n {
                    let now = self.world.now();
                    self.add_ordinary(now);
                }
            }
            (FaultKind::Partition { one_way }, true) => {
                for i in self.alive_ordinary() {
                    let site = self.world.net().site_of(self.world.nodes()[i].host());
                    let group = 1 + self.world.rng().below(2) as u8;
                    self.world.net_mut().set_group(site, group);
                }
                self.world.net_mut().block(1, 2);
                if !one_way {
                    self.world.net_mut().block(2, 1);
                }
            }
            (FaultKind::Partition { .. }, false) => self.world.net_mut().heal(),
            (FaultKind::Pause(n), true) => {
                let alive = self.alive_ordinary();
                for i in self.sample(&alive, n) {
                    self.world.pause(i, f.duration);
                }
            }
            (FaultKind::LossSpike(p), true) => {
                let link = LinkConfig { loss: Loss::Uniform(p), ..self.knobs.link };
                self.world.net_mut().set_default_link(link);
            }
            (FaultKind::LossSpike(_), false) => {
                self.world.net_mut().set_default_link(self.knobs.link)
            }
            (FaultKind::Kill(_) | FaultKind::Churn(_) | FaultKind::Pause(_), false) => {}
        }
    }

    /// How many operations at `rate` per minute fall into this step (fractions carry).
    fn quota(&mut self, which: usize, rate: usize) -> usize {
        self.carry[which] += rate as f64 * STEP.as_secs_f64() / 60.0;
        let n = self.carry[which].floor();
        self.carry[which] -= n;
        n as usize
    }

    fn step(&mut self) {
        self.harvest();
        let alive = self.alive_ordinary();
        if alive.is_empty() {
            return;
        }
        for _ in 0..self.quota(0, self.knobs.announces_per_min) {
            let Some(node) = pick(self.world.rng(), &alive) else { break };
            let topic = NodeId(self.world.rng().bytes32());
            let key_pair = key_pair(self.world.rng());
            let a = Announced { node, topic, key_pair };
            let c = NodeCommand::Announce {
                topic,
                key_pair: a.key_pair.clone(),
                relay_addresses: Vec::new(),
            };
            if let Some(op) = self.world.command(node, c) {
                self.pending.push((node, op, Pending::Announce(a)));
            }
        }
        for _ in 0..self.quota(1, self.knobs.lookups_per_min) {
            let (Some(node), Some(k)) = (pick(self.world.rng(), &alive), self.random_active())
            else {
                break;
            };
            let (topic, pk) = (self.active[k].topic, self.active[k].public_key());
            if let Some(op) = self.world.command(node, NodeCommand::Lookup(topic)) {
                self.pending.push((node, op, Pending::Lookup(pk)));
            }
        }
        for _ in 0..self.quota(2, self.knobs.writes_per_min) {
            let Some(node) = pick(self.world.rng(), &alive) else { break };
            self.put(node);
        }
        if self.knobs.unannounce.sample(self.world.rng())
            && let Some(k) = self.random_active()
        {
            let a = self.active.swap_remove(k);
            let c = NodeCommand::Unannounce { topic: a.topic, key_pair: a.key_pair };
            if let Some(op) = self.world.command(a.node, c) {
                self.pending.push((a.node, op, Pending::Unannounce));
            }
        }
    }

    fn random_active(&mut self) -> Option<usize> {
        let n = self.active.len() as u64;
        (n > 0).then(|| self.world.rng().below(n) as usize)
    }

    /// A mutable put (fresh key, seq 1) or an immutable put; its get follows on success.
    fn put(&mut self, node: usize) {
        let mut value = vec![0u8; 8 + self.world.rng().below(200) as usize];
        self.world.rng().fill(&mut value);
        let (put, get) = if self.world.rng().below(2) == 0 {
            let key_pair = key_pair(self.world.rng());
            let public_key = *key_pair.public_key().as_bytes();
            let put = NodeCommand::MutablePut { key_pair, value: value.clone(), seq: 1 };
            (put, NodeCommand::MutableGet { public_key, seq: 1, latest: false })
        } else {
            let hash = tern_crypto::hash32(&value);
            (NodeCommand::ImmutablePut(value.clone()), NodeCommand::ImmutableGet(hash))
        };
        if let Some(op) = self.world.command(node, put) {
            self.pending.push((node, op, Pending::Put { get, value }));
        }
    }

    /// Collects finished (or timed-out) workload operations.
    fn harvest(&mut self) {
        let now = self.world.now();
        let pending = std::mem::take(&mut self.pending);
        for (node, op, what) in pending {
            let done = self.world.op(node, op).map(OpRecord::is_done);
            let started = self.world.op(node, op).map_or(now, |r| r.started);
            if done == Some(false) && now.saturating_since(started) < OP_TIMEOUT {
                self.pending.push((node, op, what));
                continue;
            }
            let rec = self.world.take_op(node, op);
            self.record(node, rec, what);
        }
    }

    fn record(&mut self, node: usize, rec: Option<OpRecord>, what: Pending) {
        let ok = rec.as_ref().is_some_and(OpRecord::succeeded);
        let forger = self.world.node(node).is_some_and(|n| n.is_forger());
        match what {
            Pending::Announce(a) => {
                if !forger {
                    self.report.announces.add(ok);
                }
                if ok && !forger {
                    self.active.push(a);
                }
            }
            Pending::Lookup(pk) => {
                let found = rec.as_ref().is_some_and(|r| r.is_done() && r.found.contains(&pk));
                self.report.lookups.add(found);
            }
            Pending::Put { get, value } => {
                if !forger {
                    self.report.puts.add(ok);
                }
                // A forger's put is refused everywhere, so there is nothing to get.
                if ok
                    && !forger
                    && let Some(op) = self.world.command(node, get)
                {
                    self.pending.push((node, op, Pending::Get(value)));
                }
            }
            Pending::Get(value) => {
                let got = match rec.and_then(|r| r.done) {
                    Some((_, Outcome::Dht(Ok(OpOutput::Mutable(Some(m)))))) => m.value == value,
                    Some((_, Outcome::Dht(Ok(OpOutput::Immutable(Some(v)))))) => v == value,
                    _ => false,
                };
                self.report.gets.add(got);
            }
            Pending::Unannounce => self.report.unannounces.add(ok),
        }
    }

    fn finish(mut self) -> Report {
        if !self.cfg.bench {
            let v = safety(&self.world);
            self.note(v);
            let mut topics = self.active.clone();
            if self.cfg.break_checker {
                // The deliberately broken checker: it also demands a topic nobody announced.
                let node = self.alive_ordinary().first().copied().unwrap_or(0);
                let topic = NodeId(self.world.rng().bytes32());
                topics.push(Announced { node, topic, key_pair: key_pair(self.world.rng()) });
            }
            self.report.liveness_topics = topics.len();
            let live = workload::liveness(&mut self.world, &topics, 3, Duration::from_secs(60));
            self.note(live);
            let v = safety(&self.world);
            self.note(v);
        }
        let w = &self.world;
        self.report.trace_digest = w.trace().digest();
        self.report.events = w.stats().events;
        self.report.delivered = w.stats().delivered;
        self.report.simulated = w.now().saturating_since(Timestamp::ZERO);
        self.report.net = w.net().stats.clone();
        self.report.violations = self.violations;
        self.report
    }
}
