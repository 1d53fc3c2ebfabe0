//! Outgoing requests: the transaction table, retransmission and the congestion window
//! (spec §3.5, §4; ref: dht-rpc lib/io.js).
//!
//! A request is encoded once; retransmissions resend the same bytes (same tid) every
//! `timeout` until it was sent `retries + 1` times. Responses are matched by tid alone,
//! whatever socket they arrive on (PING_NAT replies land on the server socket). Every
//! transmission — first or retry — passes the congestion window: at most 80 per 750 ms
//! slot and 160 over the last four slots; beyond that transmissions wait in a FIFO
//! drained on the 750 ms tick. The table is bounded by [`MAX_INFLIGHT`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

use tern_base::{NodeId, SocketId, Timestamp, TxQueue};

/// Most requests (in flight or waiting for the window) one node tracks. dht-rpc has no
/// bound; 16 384 is ~100× what its congestion window lets out in one timeout, so only
/// a runaway caller hits it, and gets an error instead of unbounded memory.
pub const MAX_INFLIGHT: usize = 16_384;
/// Transmissions allowed in one congestion slot (dht-rpc: 80).
pub const WINDOW_SLOT_MAX: u32 = 80;
/// Transmissions allowed over all four slots (dht-rpc: 160).
pub const WINDOW_TOTAL_MAX: u32 = 160;
/// Slot rotation period (dht-rpc: 750 ms, shared with the token-rotation timer).
pub const WINDOW_SLOT: Duration = Duration::from_millis(750);

/// Who is waiting for a request's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A caller of [`crate::Rpc::request`]; the outcome becomes an event.
    User(u64),
    /// A query; the outcome feeds the query.
    Query(u64),
    /// A liveness ping of a table node (full-row eviction or ping-some).
    Check(NodeId),
    /// A DOWN_HINT we sent; nobody waits for it.
    DownHint,
    /// A PING_NAT of the firewall test, tagged with the test's round.
    PingNat(u64),
}

/// One tracked request.
#[derive(Debug)]
pub struct Inflight {
    /// Transaction id.
    pub tid: u16,
    /// Destination.
    pub dest: SocketAddrV4,
    /// The destination's id when it was addressed as a table node (removed on timeout).
    pub dest_id: Option<NodeId>,
    /// Socket to send from.
    pub socket: SocketId,
    /// The encoded datagram, resent as is.
    pub bytes: Vec<u8>,
    /// Transmissions so far.
    pub sends: u8,
    /// Total transmissions allowed (`retries + 1`).
    pub max_sends: u8,
    /// Time to wait for a response after each transmission.
    pub timeout: Duration,
    /// When the current transmission times out (`NEVER` while waiting for the window).
    pub deadline: Timestamp,
    /// Who waits for it.
    pub owner: Owner,
    /// Bypass the congestion window (a query run with `force`).
    pub force: bool,
}

/// The four-slot congestion window.
#[derive(Debug, Default, Clone)]
pub struct CongestionWindow {
    slots: [u32; 4],
    current: usize,
    total: u32,
}

impl CongestionWindow {
    /// True when a transmission must wait.
    pub fn is_full(&self) -> bool {
        self.total >= WINDOW_TOTAL_MAX || self.slots[self.current] >= WINDOW_SLOT_MAX
    }

    /// Counts a transmission.
    pub fn send(&mut self) {
        self.slots[self.current] += 1;
        self.total += 1;
    }

    /// Counts a response or an abandoned request.
    pub fn recv(&mut self) {
        if self.slots[self.current] > 0 {
            self.slots[self.current] -= 1;
            self.total -= 1;
        }
    }

    /// Moves to the next slot, forgetting the oldest.
    pub fn rotate(&mut self) {
        self.current = (self.current + 1) % self.slots.len();
        self.total -= self.slots[self.current];
        self.slots[self.current] = 0;
    }
}

/// What happened to a request whose deadline passed.
#[derive(Debug)]
pub enum Expired {
    /// Resent; still in flight.
    Retried,
    /// Out of retries: removed and returned.
    TimedOut(Inflight),
}

/// The transaction table.
#[derive(Debug)]
pub struct Io {
    inflight: HashMap<u16, Inflight>,
    /// tids waiting for the congestion window, oldest first.
    waiting: VecDeque<u16>,
    window: CongestionWindow,
    next_tid: u16,
}

impl Io {
    /// An empty table whose tids start at `first_tid` (random in the reference).
    pub fn new(first_tid: u16) -> Self {
        Self {
            inflight: HashMap::new(),
            waiting: VecDeque::new(),
            window: CongestionWindow::default(),
            next_tid: first_tid,
        }
    }

    /// Requests tracked.
    pub fn len(&self) -> usize {
        self.inflight.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }

    /// Requests whose first transmission has gone out and that are still unanswered.
    pub fn in_flight(&self) -> usize {
        self.inflight.len() - self.waiting.len()
    }

    /// A fresh tid not in use (the counter wraps; used tids are skipped).
    pub fn alloc_tid(&mut self) -> Option<u16> {
        if self.inflight.len() >= MAX_INFLIGHT {
            return None;
        }
        loop {
            let tid = self.next_tid;
            self.next_tid = self.next_tid.wrapping_add(1);
            if !self.inflight.contains_key(&tid) {
                return Some(tid);
            }
        }
    }

    /// Tracks and (window permitting) sends a request whose tid came from `alloc_tid`.
    pub fn start(&mut self, now: Timestamp, mut req: Inflight, tx: &mut TxQueue) {
        let tid = req.tid;
        if !req.force && (self.window.is_full() || !self.waiting.is_empty()) {
            req.deadline = Timestamp::NEVER;
            self.waiting.push_back(tid);
        } else {
            self.transmit(now, &mut req, tx);
        }
        self.inflight.insert(tid, req);
    }

    fn transmit(&mut self, now: Timestamp, req: &mut Inflight, tx: &mut TxQueue) {
        if !req.force {
            self.window.send();
        }
        req.sends += 1;
        req.deadline = now + req.timeout;
        // A full driver queue loses this transmission; the retry timer covers it.
        tx.push(req.socket, req.dest, &req.bytes);
    }

    /// Removes and returns the request a response with `tid` answers.
    pub fn complete(&mut self, tid: u16) -> Option<Inflight> {
        let req = self.inflight.remove(&tid)?;
        if req.deadline == Timestamp::NEVER {
            self.waiting.retain(|t| *t != tid);
        }
        self.window.recv();
        Some(req)
    }

    /// Drops every request owned by `owner` (a query that finished or was cancelled).
    pub fn abandon(&mut self, owner: Owner) {
        let tids: Vec<u16> =
            self.inflight.values().filter(|r| r.owner == owner).map(|r| r.tid).collect();
        for tid in tids {
            self.complete(tid);
        }
    }

    /// The earliest retransmission deadline.
    pub fn next_deadline(&self) -> Timestamp {
        self.inflight.values().map(|r| r.deadline).min().unwrap_or(Timestamp::NEVER)
    }

    /// Handles every expired deadline: resend or time out. Timed-out requests are
    /// appended to `out`; owners of requests retransmitted for the first time (now
    /// "slow") to `first_retries`.
    pub fn expire(
        &mut self,
        now: Timestamp,
        tx: &mut TxQueue,
        out: &mut Vec<Inflight>,
        first_retries: &mut Vec<Owner>,
    ) {
        let mut due: Vec<(Timestamp, u16)> = self
            .inflight
            .values()
            .filter(|r| r.deadline <= now)
            .map(|r| (r.deadline, r.tid))
            .collect();
        // Earliest deadline first, not the map's (OS-seeded) iteration order: a run must
        // replay exactly from its seed.
        due.sort_unstable();
        for (_, tid) in due {
            let Some(mut req) = self.inflight.remove(&tid) else { continue };
            if req.sends >= req.max_sends {
                self.window.recv();
                out.push(req);
            } else if !req.force && self.window.is_full() {
                if req.sends == 1 {
                    first_retries.push(req.owner);
                }
                req.deadline = Timestamp::NEVER;
                self.waiting.push_back(tid);
                self.inflight.insert(tid, req);
            } else {
                if req.sends == 1 {
                    first_retries.push(req.owner);
                }
                self.transmit(now, &mut req, tx);
                self.inflight.insert(tid, req);
            }
        }
    }

    /// The 750 ms tick: rotate the window and send what now fits.
    pub fn rotate_window(&mut self, now: Timestamp, tx: &mut TxQueue) {
        self.window.rotate();
        while !self.window.is_full() {
            let Some(tid) = self.waiting.pop_front() else { break };
            if let Some(mut req) = self.inflight.remove(&tid) {
                self.transmit(now, &mut req, tx);
                self.inflight.insert(tid, req);
            }
        }
    }

    /// The request with this tid, if tracked.
    pub fn get(&self, tid: u16) -> Option<&Inflight> {
        self.inflight.get(&tid)
    }

    /// Whether the first transmission of `tid` already timed out once ("slow" in a query).
    pub fn is_slow(&self, tid: u16) -> bool {
        self.inflight.get(&tid).is_some_and(|r| r.sends > 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn req(io: &mut Io, max_sends: u8) -> Inflight {
        Inflight {
            tid: io.alloc_tid().unwrap(),
            dest: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
            dest_id: None,
            socket: SocketId::SERVER,
            bytes: vec![1, 2, 3],
            sends: 0,
            max_sends,
            timeout: Duration::from_secs(1),
            deadline: Timestamp::NEVER,
            owner: Owner::User(0),
            force: false,
        }
    }

    #[test]
    fn retries_then_times_out() {
        let mut io = Io::new(65535);
        let mut tx = TxQueue::new(100);
        let r = req(&mut io, 2);
        assert_eq!(r.tid, 65535);
        io.start(Timestamp::ZERO, r, &mut tx);
        assert_eq!(io.alloc_tid(), Some(0), "tids wrap");
        let (mut out, mut slow) = (Vec::new(), Vec::new());
        io.expire(Timestamp::from_millis(1000), &mut tx, &mut out, &mut slow);
        assert!(out.is_empty());
        assert_eq!(slow, [Owner::User(0)]);
        assert_eq!(tx.len(), 2, "first send plus one retry of the same bytes");
        io.expire(Timestamp::from_millis(2000), &mut tx, &mut out, &mut slow);
        assert_eq!(out.len(), 1);
        assert!(io.is_empty());
    }

    #[test]
    fn window_queues_beyond_80_per_slot() {
        let mut io = Io::new(0);
        let mut tx = TxQueue::new(1000);
        for _ in 0..100 {
            let r = req(&mut io, 1);
            io.start(Timestamp::ZERO, r, &mut tx);
        }
        assert_eq!(tx.len(), 80);
        assert_eq!(io.in_flight(), 80);
        io.rotate_window(Timestamp::ZERO, &mut tx);
        assert_eq!(tx.len(), 100, "the 20 waiting go out in the next slot");
        for _ in 0..70 {
            let r = req(&mut io, 1);
            io.start(Timestamp::ZERO, r, &mut tx);
        }
        // 80 + 80 in the last two slots reaches the total cap of 160.
        assert_eq!(tx.len(), 160);
        io.rotate_window(Timestamp::ZERO, &mut tx);
        io.rotate_window(Timestamp::ZERO, &mut tx);
        assert_eq!(tx.len(), 160, "still 160 over the last four slots");
        io.rotate_window(Timestamp::ZERO, &mut tx);
        assert_eq!(tx.len(), 170, "slot 0 expired: the remaining 10 go");
        let r = io.complete(5).unwrap();
        assert_eq!(r.tid, 5);
    }
}
