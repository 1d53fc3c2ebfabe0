//! The iterative Kademlia query (spec §7; ref: dht-rpc lib/query.js).
//!
//! A query walks towards `target`: it keeps a LIFO stack of candidates, asks up to
//! `concurrency` of them at once, keeps the k XOR-closest nodes that answered with a
//! valid id, and follows each reply's closer nodes until nothing closer is left. This
//! type is pure bookkeeping: [`crate::Rpc`] sends the requests it picks and feeds back
//! replies and timeouts, so the algorithm is testable without a network.

use std::collections::HashMap;
use std::net::SocketAddrV4;

use tern_base::NodeId;

use crate::table::K;

/// What a query asks every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySpec {
    /// The key to walk towards.
    pub target: NodeId,
    /// Whether `command` is a dht-rpc internal command (FIND_NODE) or an application one.
    pub internal: bool,
    /// The command sent to every node.
    pub command: u64,
    /// The value sent with it.
    pub value: Option<Vec<u8>>,
    /// Nodes to ask first, in order (e.g. the closest nodes of an earlier query).
    pub nodes: Vec<SocketAddrV4>,
    /// Parallel requests (dht-rpc: 10; background queries 2).
    pub concurrency: usize,
    /// Retransmissions per request (queries: 5).
    pub retries: u8,
}

impl QuerySpec {
    /// A query for `command` towards `target` with the reference defaults.
    pub fn new(target: NodeId, internal: bool, command: u64, value: Option<Vec<u8>>) -> Self {
        Self { target, internal, command, value, nodes: Vec::new(), concurrency: 10, retries: 5 }
    }
}

/// A response as the query and the caller see it (owned: it outlives the datagram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Who answered.
    pub from: SocketAddrV4,
    /// The responder's id, only if it matched `H32(from)`.
    pub from_id: Option<NodeId>,
    /// Our address as the responder saw it.
    pub to: SocketAddrV4,
    /// A token for our host, valid at the responder for 7.5–15 s.
    pub token: Option<[u8; 32]>,
    /// The response's error code (0 = ok).
    pub error: u64,
    /// The response value.
    pub value: Option<Vec<u8>>,
    /// Nodes the responder knows closer to the target.
    pub closer_nodes: Vec<SocketAddrV4>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Queued or asked; the nodes that told us about it (for DOWN_HINTs).
    Pending(Vec<SocketAddrV4>),
    Done,
    Down,
}

/// Most referrers remembered per candidate (only used to address DOWN_HINTs).
const MAX_REFERRERS: usize = 4;

/// The state of one query.
#[derive(Debug)]
pub struct Query {
    spec: QuerySpec,
    stack: Vec<(SocketAddrV4, NodeId)>,
    seen: HashMap<SocketAddrV4, Seen>,
    closest: Vec<Reply>,
    inflight: usize,
    slow: usize,
    /// Successful (error 0) replies.
    pub successes: usize,
    /// Error replies and timeouts.
    pub errors: usize,
    from_table: bool,
    topped_up: bool,
    /// While seeded with ≥ k explicit nodes, start at 3 until `concurrency` answers came.
    warmup_left: usize,
}

impl Query {
    /// A query seeded with the spec's explicit nodes; the caller then adds table and
    /// bootstrap nodes with [`Query::seed_from_table`] / [`Query::add_seed`].
    pub fn new(spec: QuerySpec) -> Self {
        let explicit = spec.nodes.clone();
        let warmup_left = if explicit.len() >= K { spec.concurrency } else { 0 };
        let mut q = Self {
            spec,
            stack: Vec::new(),
            seen: HashMap::new(),
            closest: Vec::new(),
            inflight: 0,
            slow: 0,
            successes: 0,
            errors: 0,
            from_table: false,
            topped_up: false,
            warmup_left,
        };
        // Pushed in reverse so that they pop in the given order.
        for addr in explicit.into_iter().rev() {
            q.push_candidate(addr, None, NodeId::default());
        }
        q
    }

    /// The spec.
    pub fn spec(&self) -> &QuerySpec {
        &self.spec
    }

    /// Number of seeds so far (explicit + added).
    pub fn seeds(&self) -> usize {
        self.stack.len()
    }

    /// Adds a seed candidate (table or bootstrap node) below the explicit ones.
    pub fn add_seed(&mut self, addr: SocketAddrV4, id: NodeId) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.seen.entry(addr) {
            e.insert(Seen::Pending(Vec::new()));
            self.stack.insert(0, (addr, id));
        }
    }

    /// Marks the query as seeded from the routing table.
    pub fn seed_from_table(&mut self) {
        self.from_table = true;
    }

    fn push_candidate(&mut self, addr: SocketAddrV4, referrer: Option<SocketAddrV4>, id: NodeId) {
        match self.seen.get_mut(&addr) {
            Some(Seen::Pending(refs)) => {
                if let Some(r) = referrer
                    && refs.len() < MAX_REFERRERS
                {
                    refs.push(r);
                }
            }
            Some(_) => {}
            None => {
                self.seen.insert(addr, Seen::Pending(referrer.into_iter().collect()));
                self.stack.push((addr, id));
            }
        }
    }

    /// True while fewer than k closest replies are held or `id` beats the k-th.
    pub fn is_closer(&self, id: &NodeId) -> bool {
        self.closest.len() < K
            || self.closest.last().and_then(|r| r.from_id).is_some_and(|last| {
                self.spec.target.cmp_distance(id, &last) == std::cmp::Ordering::Less
            })
    }

    fn concurrency(&self) -> usize {
        let base = if self.warmup_left > 0 { 3 } else { self.spec.concurrency };
        base + self.slow
    }

    /// The next node to ask, if the concurrency allows one. Ids of explicit seeds are
    /// unknown (zero) and always tried.
    pub fn next_node(&mut self) -> Option<SocketAddrV4> {
        while self.inflight < self.concurrency() {
            let (addr, id) = self.stack.pop()?;
            if id != NodeId::default() && !self.is_closer(&id) {
                continue;
            }
            self.inflight += 1;
            return Some(addr);
        }
        None
    }

    /// A request of this query got its first timeout and is retrying ("slow").
    pub fn on_slow(&mut self) {
        self.slow += 1;
    }

    /// Feeds a reply. `id_of` computes a node id from an address (`H32(addr)`);
    /// `own` is our table id (never added as a candidate). `was_slow` says whether the
    /// request had been counted slow.
    pub fn on_reply(
        &mut self,
        reply: Reply,
        was_slow: bool,
        own: &NodeId,
        id_of: impl Fn(&SocketAddrV4) -> NodeId,
    ) {
        self.finish_request(was_slow);
        self.seen.insert(reply.from, Seen::Done);
        if reply.error == 0 {
            self.successes += 1;
        } else {
            self.errors += 1;
        }
        for addr in &reply.closer_nodes {
            let id = id_of(addr);
            if id == *own {
                continue;
            }
            if !self.is_closer(&id) {
                break;
            }
            self.push_candidate(*addr, Some(reply.from), id);
        }
        if reply.error == 0
            && let Some(id) = reply.from_id
            && self.is_closer(&id)
            && !self.closest.iter().any(|r| r.from_id == Some(id))
        {
            let target = self.spec.target;
            let pos = self.closest.partition_point(|r| {
                r.from_id.is_some_and(|c| target.cmp_distance(&c, &id).is_lt())
            });
            self.closest.insert(pos, reply);
            self.closest.truncate(K);
        }
    }

    /// Feeds a timeout; returns the nodes that referred us to the dead one (to be sent
    /// DOWN_HINTs).
    pub fn on_timeout(&mut self, addr: SocketAddrV4, was_slow: bool) -> Vec<SocketAddrV4> {
        self.finish_request(was_slow);
        self.errors += 1;
        match self.seen.insert(addr, Seen::Down) {
            Some(Seen::Pending(refs)) => refs,
            _ => Vec::new(),
        }
    }

    fn finish_request(&mut self, was_slow: bool) {
        self.inflight = self.inflight.saturating_sub(1);
        if was_slow {
            self.slow = self.slow.saturating_sub(1);
        }
        self.warmup_left = self.warmup_left.saturating_sub(1);
    }

    /// True when the walk is over (spec §7 step 7). If the query was not seeded from the
    /// table and got fewer than k/4 successes, the caller should top it up from the
    /// table once ([`Query::wants_top_up`]) before finishing.
    pub fn is_done(&self) -> bool {
        self.stack.is_empty()
            && (self.inflight == 0 || (self.inflight == self.slow && self.closest.len() >= K))
    }

    /// Whether a finished walk should be topped up from the table once.
    pub fn wants_top_up(&mut self) -> bool {
        if !self.from_table && !self.topped_up && self.successes < K / 4 {
            self.topped_up = true;
            self.from_table = true;
            return true;
        }
        false
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// The closest replies with valid ids, nearest first (at most k).
    pub fn closest(&self) -> &[Reply] {
        &self.closest
    }

    /// Takes the closest replies out (when the query finishes).
    pub fn take_closest(&mut self) -> Vec<Reply> {
        std::mem::take(&mut self.closest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(i: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i), 1000)
    }
    fn id(i: u8) -> NodeId {
        NodeId([i; 32])
    }
    fn id_of(a: &SocketAddrV4) -> NodeId {
        id(a.ip().octets()[3])
    }
    fn reply(i: u8, closer: &[u8]) -> Reply {
        Reply {
            from: addr(i),
            from_id: Some(id(i)),
            to: addr(99),
            token: None,
            error: 0,
            value: None,
            closer_nodes: closer.iter().map(|c| addr(*c)).collect(),
        }
    }

    #[test]
    fn walks_closer_nodes_and_keeps_the_closest() {
        let mut q = Query::new(QuerySpec::new(id(0), true, 2, None));
        q.add_seed(addr(9), id(9));
        let own = id(200);
        assert_eq!(q.next_node(), Some(addr(9)));
        assert_eq!(q.next_node(), None);
        q.on_reply(reply(9, &[3, 5]), false, &own, id_of);
        // LIFO: the last added candidate is asked first.
        assert_eq!(q.next_node(), Some(addr(5)));
        assert_eq!(q.next_node(), Some(addr(3)));
        q.on_reply(reply(5, &[9]), false, &own, id_of);
        let refs = q.on_timeout(addr(3), false);
        assert_eq!(refs, [addr(9)], "the referrer gets a DOWN_HINT");
        assert!(q.is_done());
        let closest: Vec<_> = q.closest().iter().map(|r| r.from).collect();
        assert_eq!(closest, [addr(5), addr(9)], "XOR order, nearest first");
        assert_eq!((q.successes, q.errors), (2, 1));
    }

    #[test]
    fn explicit_nodes_pop_in_order_and_top_up_once() {
        let mut spec = QuerySpec::new(id(0), true, 2, None);
        spec.nodes = vec![addr(1), addr(2)];
        let mut q = Query::new(spec);
        assert_eq!(q.next_node(), Some(addr(1)));
        assert_eq!(q.next_node(), Some(addr(2)));
        q.on_timeout(addr(1), false);
        q.on_timeout(addr(2), false);
        assert!(q.is_done());
        assert!(q.wants_top_up());
        assert!(!q.wants_top_up());
    }
}
