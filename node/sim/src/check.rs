//! Checkers that run outside the code under test: they read a [`World`]'s nodes and
//! compare them with ground truth the world keeps (addresses from the netsim plan, the
//! [`crate::ops::Ledger`] of honest writes), never with anything a node says about itself.
//!
//! Safety (must hold at every instant):
//! * no node panicked (the world catches and records panics);
//! * a persistent node's id is `H32` of its real public server address, and no node
//!   behind a NAT is persistent;
//! * routing tables are well-formed: rows hold at most k nodes, sorted, each in the row
//!   its shared prefix says; no node holds itself; every entry's id is `H32(addr)` and
//!   `addr` is the server address of a node that really is persistent with that id;
//! * stores hold only honest writes: every topic record and router entry was announced
//!   by its key's owner, every mutable record carries a valid signature of a ledger key
//!   with a seq never above the highest put, every immutable value hashes to its key.
//!
//! Liveness (after faults heal, within a bound) lives in [`crate::workload::liveness`]
//! because it has to run lookups.

use std::fmt;
use std::net::SocketAddrV4;

use tern_base::{NodeId, Rng, Timestamp};
use tern_crypto::{PublicKey, Signature, sign, signable};
use tern_netsim::FxHashMap;
use tern_rpc::K;
use tern_wire::Decode;
use tern_wire::hyperdht::{MutableRecord, PeerRecord};

use crate::world::{Placement, SimNode, World};

/// A broken property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When it was found.
    pub at: Timestamp,
    /// The node concerned, if one.
    pub node: Option<usize>,
    /// What is wrong.
    pub what: String,
}

impl Violation {
    /// A violation found at `at`.
    pub fn new(at: Timestamp, node: Option<usize>, what: String) -> Self {
        Self { at, node, what }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.at.as_millis() as f64 / 1000.0;
        match self.node {
            Some(n) => write!(f, "[t={secs:.3}s] node {n}: {}", self.what),
            None => write!(f, "[t={secs:.3}s] {}", self.what),
        }
    }
}

/// Most violations one checker pass reports (the first few tell the story).
const MAX_REPORTED: usize = 50;

/// Runs every safety check; returns what is broken (the world's recorded panics and
/// livelocks included).
pub fn safety(world: &World) -> Vec<Violation> {
    let mut out: Vec<Violation> = world.violations().to_vec();
    let servers: FxHashMap<SocketAddrV4, usize> = world
        .nodes()
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.public_addr().map(|a| (a, i)))
        .collect();
    for (i, n) in world.nodes().iter().enumerate() {
        if out.len() >= MAX_REPORTED {
            break;
        }
        if !n.is_alive() {
            continue;
        }
        let mut v = |what: String| out.push(Violation::new(world.now(), Some(i), what));
        check_identity(n, &mut v);
        check_table(world, &servers, n, &mut v);
        check_stores(world, n, &mut v);
    }
    out.truncate(MAX_REPORTED);
    out
}

fn check_identity(n: &SimNode, v: &mut impl FnMut(String)) {
    let Some(id) = n.node().rpc().persistent_id() else { return };
    match n.placement() {
        Placement::Behind(_) => v(format!("persistent behind a NAT with id {id:?}")),
        Placement::Public => {
            let real = NodeId(tern_crypto::node_id(n.local_addr()));
            if id != real {
                v(format!("persistent id {id:?} is not H32 of its address {}", n.local_addr()));
            }
        }
    }
}

fn check_table(
    world: &World,
    servers: &FxHashMap<SocketAddrV4, usize>,
    n: &SimNode,
    v: &mut impl FnMut(String),
) {
    let table = n.node().rpc().table();
    let own = *table.id();
    let mut total = 0;
    for r in 0..256 {
        let row = table.row(r);
        total += row.len();
        if row.len() > K {
            v(format!("row {r} holds {} > k nodes", row.len()));
        }
        if row.windows(2).any(|w| w[0].id >= w[1].id) {
            v(format!("row {r} is not sorted by id"));
        }
        for e in row {
            if own.shared_prefix_len(&e.id) != r {
                v(format!(
                    "{:?} filed in row {r}, belongs in {}",
                    e.id,
                    own.shared_prefix_len(&e.id)
                ));
            }
            if e.id == own || Some(e.addr) == n.public_addr() {
                v(format!("holds itself ({})", e.addr));
            }
            if e.id.0 != tern_crypto::node_id(e.addr) {
                v(format!("holds {:?} at {}, which is not H32 of the address", e.id, e.addr));
            }
            match servers.get(&e.addr).and_then(|j| world.node(*j)) {
                None => v(format!("holds {}, which is no node's server address", e.addr)),
                Some(m) if m.node().rpc().persistent_id() != Some(e.id) => {
                    v(format!("holds {} which is not persistent with id {:?}", e.addr, e.id))
                }
                Some(_) => {}
            }
        }
    }
    if total != table.len() {
        v(format!("table length {} but rows hold {total}", table.len()));
    }
}

fn check_stores(world: &World, n: &SimNode, v: &mut impl FnMut(String)) {
    let store = n.node().store();
    let ledger = world.ledger();
    // Topic records and router entries under ledger topics must all be honest; counting
    // them proves nothing is stored under any other topic.
    let (mut topic_records, mut router_entries) = (0, 0);
    let mut rng = Rng::from_seed(0);
    for (topic, _) in ledger.announces.iter() {
        let len = store.topics.topic_len(topic);
        if len > 0 {
            topic_records += len;
            let mut slots = vec![&[][..]; len];
            let got = store.topics.sample(topic, &mut rng, &mut slots);
            for rec in &slots[..got] {
                match PeerRecord::decode(rec) {
                    Ok(p) if ledger.announced(topic, p.public_key) => {}
                    Ok(p) => v(format!(
                        "stores a forged record of {:02x?}… under {topic:?}",
                        &p.public_key[..4]
                    )),
                    Err(e) => v(format!("stores an undecodable record under {topic:?}: {e:?}")),
                }
            }
        }
        if let Some(entry) = store.router.peek(topic) {
            router_entries += 1;
            match PeerRecord::decode(&entry.record) {
                Ok(p) if ledger.announced(topic, p.public_key) => {}
                _ => v(format!("stores a forged router entry under {topic:?}")),
            }
        }
    }
    if topic_records != store.topics.len() {
        let extra = store.topics.len() - topic_records.min(store.topics.len());
        v(format!("stores {extra} topic records under topics nobody announced"));
    }
    if router_entries != store.router.len() {
        v(format!(
            "stores {} router entries nobody announced",
            store.router.len() - router_entries.min(store.router.len())
        ));
    }
    let mut mutables = 0;
    for (target, (pk, max_seq)) in ledger.mutables.iter() {
        let Some(bytes) = store.mutables.peek(target) else { continue };
        mutables += 1;
        let Ok(rec) = MutableRecord::decode(bytes) else {
            v(format!("stores an undecodable mutable record under {target:?}"));
            continue;
        };
        let msg = signable::mutable_signable(rec.seq, rec.value);
        if sign::verify(&PublicKey(*pk), &msg, &Signature(*rec.signature)).is_err() {
            v(format!("stores a badly signed mutable record under {target:?}"));
        }
        if rec.seq > *max_seq {
            v(format!("stores mutable seq {} above the highest put {max_seq}", rec.seq));
        }
    }
    if mutables != store.mutables.len() {
        v("stores mutable records under keys nobody put".to_owned());
    }
    let mut immutables = 0;
    for (target, ()) in ledger.immutables.iter() {
        let Some(value) = store.immutables.peek(target) else { continue };
        immutables += 1;
        if tern_crypto::hash32(value) != target.0 {
            v(format!("stores an immutable value that does not hash to {target:?}"));
        }
    }
    if immutables != store.immutables.len() {
        v("stores immutable values nobody put".to_owned());
    }
}
