//! Birthday sockets: punching from behind a port-randomising (RANDOM) NAT towards a
//! CONSISTENT one (ref: hyperdht lib/holepuncher.js `_openBirthdaySockets`,
//! `_keepAliveRandomNat`).
//!
//! Our NAT gives every socket a fresh random public port, so the peer cannot guess
//! ours; instead we open up to [`BIRTHDAY_SOCKETS`] sockets (the session's own socket
//! counts as one), each sending a probe with IP TTL 5 to the peer's verified address
//! (opening a mapping in our NAT that lets the peer's packets in, without reaching the
//! peer's NAT, which would not let it through yet). We then cycle probes over all of
//! them, one every 20 ms for about 35 s, the first cycle still at TTL 5. Meanwhile the
//! peer sprays probes at random ports of our public host (`Strategy::RandomPorts` on
//! its side); with 256 open mappings and ~1750 probes a hit is all but certain. The
//! socket a peer probe (client) or first UDX packet (server) arrives on carries the
//! stream for its whole life; the others close at once, and all of them close when
//! the session fails.
//!
//! The driver opens the sockets ([`tern_base::SocketOp`]); this module only asks and
//! keeps the books: which session or stream owns each run-time socket, so every one is
//! closed exactly when its owner ends. Ids come from a wrapping counter above the
//! node's fixed sockets and skip ids still owned, so an id is never reused while the
//! driver may still hold it.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{OpenError, SocketId, SocketOp, Timestamp, TxQueue};

use super::{OPEN_SESSION_TTL, PROBE, Punching, RANDOM_INTERVAL, RANDOM_PROBES, Strategy};
use crate::conn::Connections;

/// Sockets one session probes from, its own included (hyperdht `BIRTHDAY_SOCKETS`).
pub(super) const BIRTHDAY_SOCKETS: usize = 256;
/// The pause between the opening burst and the first cycle (reference: 100 ms).
pub(super) const BURST_PAUSE: Duration = Duration::from_millis(100);
/// The first run-time socket id: ids below are the node's fixed sockets.
const FIRST_ID: u16 = 16;
/// Socket ops waiting for the driver. Each open is matched by one close, and owners
/// are bounded (one random punch at a time, streams by the UDX limit), so this only
/// guards against a driver that never drains.
const MAX_QUEUED_OPS: usize = 4 * BIRTHDAY_SOCKETS;

/// Who a run-time socket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// A punching session (keyed by its stream id); open or still being opened.
    Session(u32),
    /// An established stream that runs on it.
    Stream(u32),
}

/// The run-time sockets of a node and the ops the driver has yet to apply.
#[derive(Debug, Default)]
pub(crate) struct BirthdaySockets {
    owners: HashMap<SocketId, Owner>,
    ops: VecDeque<SocketOp>,
    next_id: u16,
    /// The host the sockets bind (the node's own bind host).
    host: Option<Ipv4Addr>,
}

impl BirthdaySockets {
    /// Sockets bind `host` (port 0), like the node's own.
    pub(crate) fn set_host(&mut self, host: Ipv4Addr) {
        self.host = Some(host);
    }

    /// The next op for the driver.
    pub(crate) fn poll_op(&mut self) -> Option<SocketOp> {
        self.ops.pop_front()
    }

    /// Run-time sockets owned now (open, or asked for).
    pub(crate) fn len(&self) -> usize {
        self.owners.len()
    }

    /// Asks for a socket for `session`; `None` when the queue is full.
    fn open(&mut self, session: u32) -> Option<SocketId> {
        if self.ops.len() >= MAX_QUEUED_OPS || self.owners.len() >= u16::MAX as usize / 2 {
            return None;
        }
        let mut id = SocketId(self.next_id.max(FIRST_ID));
        while self.owners.contains_key(&id) {
            id = SocketId(id.0.checked_add(1).unwrap_or(FIRST_ID));
        }
        self.next_id = id.0.checked_add(1).unwrap_or(FIRST_ID);
        let bind = SocketAddrV4::new(self.host.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
        self.owners.insert(id, Owner::Session(session));
        self.ops.push_back(SocketOp::Open { id, bind });
        Some(id)
    }

    fn close(&mut self, id: SocketId) {
        if self.owners.remove(&id).is_some() {
            self.ops.push_back(SocketOp::Close(id));
        }
    }

    /// Closes every socket `session` owns except `keep`, which passes to the stream.
    fn settle_session(&mut self, session: u32, keep: Option<SocketId>) {
        let owned: Vec<SocketId> = self
            .owners
            .iter()
            .filter(|(_, o)| **o == Owner::Session(session))
            .map(|(id, _)| *id)
            .collect();
        for id in owned {
            if Some(id) == keep {
                self.owners.insert(id, Owner::Stream(session));
            } else {
                self.close(id);
            }
        }
    }
}

/// A session's birthday sockets and where its probe cycle is.
#[derive(Debug)]
pub(super) struct Birthday {
    /// The peer's verified address every probe goes to.
    pub(super) target: SocketAddrV4,
    /// Opened sockets, in opening order (the session's own socket is probed first).
    pub(super) sockets: Vec<SocketId>,
    /// Position of the next probe in the cycle (0: the session's own socket).
    next: usize,
    /// Cycles still sent at TTL 5 (the reference's `lowTTLRounds`).
    low_ttl_cycles: u8,
}

impl Connections {
    /// Starts a birthday punch for `stream`: asks for the sockets and fires the
    /// session socket's opening probe. Each socket's own probe leaves when it opens.
    pub(super) fn start_birthday(
        &mut self,
        now: Timestamp,
        stream: u32,
        target: SocketAddrV4,
        tx: &mut TxQueue,
    ) {
        let Some(s) = self.punches.get_mut(&stream) else { return };
        tx.push_with(s.socket, target, Some(OPEN_SESSION_TTL), PROBE.len(), |b| {
            b.copy_from_slice(&PROBE);
            Some(PROBE.len())
        });
        self.stats.probes_sent += 1;
        s.birthday = Some(Birthday { target, sockets: Vec::new(), next: 0, low_ttl_cycles: 1 });
        if let Some(p) = s.punching.as_mut() {
            p.next = now + BURST_PAUSE;
        }
        for _ in 1..BIRTHDAY_SOCKETS {
            if self.sockets.open(stream).is_none() {
                break;
            }
        }
    }

    /// The driver's answer to an open.
    pub(crate) fn socket_opened(
        &mut self,
        id: SocketId,
        result: Result<SocketAddrV4, OpenError>,
        tx: &mut TxQueue,
    ) {
        let owner = self.sockets.owners.get(&id).copied();
        let Some(Owner::Session(stream)) = owner else {
            // Its session ended while the open was queued (the close follows it in the
            // queue), or an answer we never asked for.
            return;
        };
        let Ok(_) = result else {
            // Out of descriptors or over the driver's cap: punch with fewer sockets.
            self.sockets.owners.remove(&id);
            self.stats.birthday_sockets_failed += 1;
            return;
        };
        let Some(b) = self.punches.get_mut(&stream).and_then(|s| s.birthday.as_mut()) else {
            self.sockets.close(id);
            return;
        };
        b.sockets.push(id);
        let target = b.target;
        self.stats.birthday_sockets_opened += 1;
        tx.push_with(id, target, Some(OPEN_SESSION_TTL), PROBE.len(), |buf| {
            buf.copy_from_slice(&PROBE);
            Some(PROBE.len())
        });
        self.stats.probes_sent += 1;
    }

    /// One probe of the keep-alive cycle (`Strategy::Birthday`), from the next socket.
    pub(super) fn drive_birthday(&mut self, now: Timestamp, stream: u32, tx: &mut TxQueue) {
        let Some(s) = self.punches.get_mut(&stream) else { return };
        let own = s.socket;
        let (Some(p), Some(b)) = (s.punching.as_mut(), s.birthday.as_mut()) else { return };
        if p.sent >= RANDOM_PROBES {
            p.next = Timestamp::NEVER;
            return;
        }
        p.sent += 1;
        if b.next > b.sockets.len() {
            b.next = 0;
            b.low_ttl_cycles = b.low_ttl_cycles.saturating_sub(1);
        }
        let socket = if b.next == 0 { own } else { b.sockets[b.next - 1] };
        b.next += 1;
        let ttl = (b.low_ttl_cycles > 0).then_some(OPEN_SESSION_TTL);
        tx.push_with(socket, b.target, ttl, PROBE.len(), |buf| {
            buf.copy_from_slice(&PROBE);
            Some(PROBE.len())
        });
        self.stats.probes_sent += 1;
        p.next = now + RANDOM_INTERVAL;
    }

    /// A session ended: its stream keeps `keep` (the socket its path was found on),
    /// every other socket it opened closes.
    pub(super) fn release_sockets(&mut self, stream: u32, keep: Option<SocketId>) {
        self.sockets.settle_session(stream, keep);
    }

    /// A stream left the table: the run-time socket it ran on closes.
    pub(crate) fn stream_gone(&mut self, stream: u32) {
        let owned = self.sockets.owners.iter().find(|(_, o)| **o == Owner::Stream(stream));
        if let Some((&id, _)) = owned {
            self.sockets.close(id);
        }
    }

    /// The next socket op for the driver.
    pub(crate) fn poll_socket_op(&mut self) -> Option<SocketOp> {
        self.sockets.poll_op()
    }

    /// Sockets bind the node's host (set once bound).
    pub(crate) fn set_socket_host(&mut self, host: Ipv4Addr) {
        self.sockets.set_host(host);
    }

    /// Run-time sockets owned (open or being opened).
    pub fn runtime_sockets(&self) -> usize {
        self.sockets.len()
    }
}

/// The strategy is the birthday one.
pub(super) fn is_birthday(p: &Punching) -> bool {
    matches!(p.strategy, Strategy::Birthday(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_keeps_one_socket_for_its_stream_and_closes_the_rest() {
        let mut b = BirthdaySockets::default();
        b.set_host(Ipv4Addr::new(10, 0, 0, 2));
        let ids: Vec<SocketId> = (0..4).filter_map(|_| b.open(7)).collect();
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|id| id.0 >= FIRST_ID), "clear of the fixed sockets");
        let opens: Vec<SocketOp> = std::iter::from_fn(|| b.poll_op()).collect();
        assert_eq!(opens.len(), 4);
        assert!(opens.iter().all(|op| matches!(op,
            SocketOp::Open { bind, .. } if *bind == SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 0))));
        // The probe came in on ids[2]: the stream keeps it, the others close.
        b.settle_session(7, Some(ids[2]));
        let mut closes: Vec<SocketOp> = std::iter::from_fn(|| b.poll_op()).collect();
        closes.sort_by_key(|op| match op {
            SocketOp::Close(id) => id.0,
            SocketOp::Open { id, .. } => id.0,
        });
        assert_eq!(closes, [ids[0], ids[1], ids[3]].map(SocketOp::Close));
        assert_eq!(b.len(), 1);
        // A new session never gets the id the stream still holds.
        b.next_id = ids[2].0;
        let fresh = b.open(8).unwrap();
        assert_ne!(fresh, ids[2]);
    }

    #[test]
    fn ids_wrap_without_touching_the_fixed_sockets_and_the_queue_is_bounded() {
        let mut b = BirthdaySockets { next_id: u16::MAX, ..Default::default() };
        assert_eq!(b.open(1), Some(SocketId(u16::MAX)));
        assert_eq!(b.open(1), Some(SocketId(FIRST_ID)));
        let mut n = 2;
        while b.open(1).is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_QUEUED_OPS, "the driver must drain before more are asked for");
    }
}
