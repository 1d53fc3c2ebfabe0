//! Socket I/O of a [`Shard`]: reading ready sockets within the work limits, flushing
//! the transmit queue per socket with `sendmmsg`, and parking what a full send buffer
//! refused until the socket is writable again.
//!
//! Parked datagrams live in a per-socket [`Backlog`] bounded by
//! [`WorkLimits::backlog_datagrams`] and [`WorkLimits::backlog_bytes`]; past that they
//! are dropped and counted, like a full NIC queue would. While a socket has a backlog,
//! new datagrams for it queue behind the backlog so a socket's datagrams leave in the
//! order the endpoint produced them.

use std::collections::VecDeque;
use std::iter::Peekable;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, BorrowedFd};

use tern_base::{Endpoint, SocketId, TxQueue};
use tern_udp::{OutDatagram, SendBatch, UdpSocket};

use super::{Shard, token};
use crate::WorkLimits;
use crate::backend::{Backend, RecvSource};
use crate::stats::DriverStats;

/// One bound socket of an endpoint.
pub(super) struct Sock {
    pub(super) id: SocketId,
    /// The socket's index in its event token: stable for the socket's life (its
    /// position in `Live::sockets` is not, once run-time sockets close).
    pub(super) key: u16,
    /// Opened at run time ([`tern_base::SocketOp::Open`]), so it may be closed.
    pub(super) dynamic: bool,
    pub(super) socket: UdpSocket,
    pub(super) backlog: Backlog,
}

impl Sock {
    pub(super) fn new(id: SocketId, key: u16, dynamic: bool, socket: UdpSocket) -> Self {
        Self { id, key, dynamic, socket, backlog: Backlog::default() }
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// A datagram the kernel had no room for yet.
struct Parked {
    dest: SocketAddrV4,
    ttl: Option<u8>,
    data: Box<[u8]>,
}

/// Datagrams of one socket waiting for it to become writable. Allocates only when
/// used, which is rare: on loopback and real NICs a UDP send buffer fills only under
/// sustained overload.
#[derive(Default)]
pub(super) struct Backlog {
    queue: VecDeque<Parked>,
    bytes: usize,
}

impl Backlog {
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Parks a copy of `d` (both parts, joined); false (and nothing parked) if the
    /// limits are reached.
    fn push(&mut self, d: OutDatagram<'_>, limits: &WorkLimits) -> bool {
        if self.queue.len() >= limits.backlog_datagrams
            || self.bytes + d.len() > limits.backlog_bytes
        {
            return false;
        }
        self.bytes += d.len();
        let data = [d.data, d.tail].concat().into_boxed_slice();
        self.queue.push_back(Parked { dest: d.dest, ttl: d.ttl, data });
        true
    }

    /// The parked datagrams as send items (peekable, for GSO runs).
    fn items(&self) -> Peekable<impl Iterator<Item = OutDatagram<'_>>> {
        self.queue.iter().map(|p| OutDatagram::new(p.dest, p.ttl, &p.data)).peekable()
    }

    fn pop_front(&mut self, n: usize) {
        for p in self.queue.drain(..n.min(self.queue.len())) {
            self.bytes -= p.data.len();
        }
    }
}

/// The position in `sockets` of the socket whose token index is `key`. The sockets
/// from `Endpoint::sockets` sit at their key, so the common case is one comparison.
pub(super) fn position(sockets: &[Sock], key: usize) -> Option<usize> {
    if sockets.get(key).is_some_and(|s| usize::from(s.key) == key) {
        return Some(key);
    }
    sockets.iter().position(|s| usize::from(s.key) == key)
}

/// `tx`'s datagrams for socket `id`, as send items (a payload the queue references
/// goes as the datagram's second part: the kernel gathers it, nothing copies it here).
fn items_for(tx: &TxQueue, id: SocketId) -> impl Iterator<Item = OutDatagram<'_>> {
    tx.iter_parts().filter(move |(m, _, _)| m.socket == id).map(|(m, data, tail)| OutDatagram {
        dest: m.dest,
        ttl: m.ttl,
        data,
        tail,
    })
}

/// Everything the flush helpers need, borrowed field by field from the shard so an
/// endpoint's sockets can be borrowed at the same time.
struct Io<'s, B> {
    backend: &'s mut B,
    sender: &'s mut SendBatch,
    limits: &'s WorkLimits,
    stats: &'s mut DriverStats,
    /// Scratch list of the sockets one flush sends from (kept to avoid allocating).
    used: &'s mut Vec<SocketId>,
}

impl<B: Backend> Io<'_, B> {
    /// Sends `tx`'s datagrams from the endpoint's `sockets`; parks what does not fit.
    fn flush(&mut self, tx: &TxQueue, sockets: &mut [Sock], slot: u32, generation: u16) {
        // The sockets the queue names, in first-use order: an endpoint with hundreds
        // of birthday sockets must not cost every flush a pass per socket.
        let mut used = std::mem::take(self.used);
        used.clear();
        for (m, _, _) in tx.iter_parts() {
            if used.last() != Some(&m.socket) && !used.contains(&m.socket) {
                used.push(m.socket);
            }
        }
        for &id in &used {
            let Some(sock) = sockets.iter_mut().find(|s| s.id == id) else {
                self.stats.tx_unknown_socket +=
                    tx.iter_parts().filter(|(m, _, _)| m.socket == id).count() as u64;
                continue;
            };
            let index = usize::from(sock.key);
            let mut items = items_for(tx, sock.id).peekable();
            if !sock.backlog.is_empty() {
                // Keep order: queue behind the parked ones; the writable event that
                // is already requested will send them all.
                for d in items {
                    if !sock.backlog.push(d, self.limits) {
                        self.stats.backlog_dropped += 1;
                    }
                }
                continue;
            }
            let mut done = 0;
            loop {
                let out = self.backend.send(&sock.socket, self.sender, &mut items);
                self.stats.datagrams_sent += out.sent as u64;
                self.stats.send_failed += out.failed as u64;
                if out.loaded == 0 {
                    break;
                }
                if out.would_block {
                    self.stats.send_blocked += 1;
                    for d in items_for(tx, sock.id).skip(done + out.done()) {
                        if !sock.backlog.push(d, self.limits) {
                            self.stats.backlog_dropped += 1;
                        }
                    }
                    if !sock.backlog.is_empty() {
                        let t = token(slot, generation, index);
                        if self.backend.set_writable(sock.fd(), t, true).is_err() {
                            // Without a writable event the backlog would never
                            // drain; drop it rather than hold it forever.
                            self.stats.backlog_dropped += sock.backlog.len() as u64;
                            sock.backlog = Backlog::default();
                        }
                    }
                    break;
                }
                done += out.loaded;
            }
        }
        *self.used = used;
    }

    /// Sends parked datagrams of `sock` while the kernel takes them.
    fn drain_backlog(&mut self, sock: &mut Sock, t: u64) {
        while !sock.backlog.is_empty() {
            let out = self.backend.send(&sock.socket, self.sender, &mut sock.backlog.items());
            self.stats.datagrams_sent += out.sent as u64;
            self.stats.send_failed += out.failed as u64;
            sock.backlog.pop_front(out.done());
            if out.would_block || out.loaded == 0 {
                break;
            }
        }
        if sock.backlog.is_empty() {
            let _ = self.backend.set_writable(sock.fd(), t, false);
        }
    }
}

impl<E: Endpoint, B: Backend> Shard<E, B> {
    /// Sends the transmit queue from its owner's sockets and clears it.
    pub(super) fn flush_tx(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        let slot = self.tx_owner.unwrap_or(u32::MAX);
        let generation = self.slot_generation(slot);
        match self.slots.get_mut(slot as usize).and_then(|s| s.live.as_mut()) {
            Some(live) => {
                let mut io = Io {
                    backend: &mut self.backend,
                    sender: &mut self.sender,
                    limits: &self.limits,
                    stats: &mut self.stats,
                    used: &mut self.tx_sockets,
                };
                io.flush(&self.tx, &mut live.sockets, slot, generation);
            }
            None => self.stats.tx_unknown_socket += self.tx.len() as u64,
        }
        self.tx.clear();
    }

    /// A writable event: sends what socket `index` of `slot` has parked.
    pub(super) fn flush_backlog(&mut self, slot: u32, index: usize) {
        let generation = self.slot_generation(slot);
        let Some(live) = self.slots.get_mut(slot as usize).and_then(|s| s.live.as_mut()) else {
            return;
        };
        let Some(at) = position(&live.sockets, index) else { return };
        let sock = &mut live.sockets[at];
        let mut io = Io {
            backend: &mut self.backend,
            sender: &mut self.sender,
            limits: &self.limits,
            stats: &mut self.stats,
            used: &mut self.tx_sockets,
        };
        io.drain_backlog(sock, token(slot, generation, index));
    }

    /// A readable event: hands socket `index`'s datagrams to its endpoint, batch by
    /// batch, until the socket is drained or the work limits are reached.
    pub(super) fn read_socket(&mut self, slot: u32, index: usize) {
        self.switch_tx(slot);
        let generation = self.slot_generation(slot);
        let mut started = None;
        let high_water = (self.tx.max_datagrams() / 2).max(1);
        let mut taken = 0;
        let Some(live) = self.slots.get_mut(slot as usize).and_then(|s| s.live.as_mut()) else {
            return;
        };
        let Some(at) = position(&live.sockets, index) else { return };
        let id = live.sockets[at].id;
        loop {
            let t = token(slot, generation, index);
            let n = match self.rx.recv(t, &live.sockets[at].socket) {
                Ok(n) => n,
                Err(e) => {
                    self.stats.recv_errors += 1;
                    tracing::trace!(error = %e, "recv error");
                    break;
                }
            };
            if n == 0 {
                break;
            }
            // One clock read per batch: every datagram of it arrived "now" (the turn's
            // wake-up read serves the turn's first batch, on whichever socket).
            if self.batches > 0 {
                self.now = self.clock.now();
            }
            self.batches += 1;
            let now = self.now;
            let started = *started.get_or_insert(now);
            self.stats.recv_truncated += self.rx.truncated() as u64;
            for d in self.rx.datagrams() {
                if self.tx.len() >= high_water {
                    let mut io = Io {
                        backend: &mut self.backend,
                        sender: &mut self.sender,
                        limits: &self.limits,
                        stats: &mut self.stats,
                        used: &mut self.tx_sockets,
                    };
                    io.flush(&self.tx, &mut live.sockets, slot, generation);
                    self.tx.clear();
                }
                self.stats.datagrams_received += 1;
                self.stats.bytes_received += d.data.len() as u64;
                live.endpoint.handle_datagram(now, id, d.from, d.data, &mut self.tx);
            }
            taken += n;
            if live.endpoint.is_closed() {
                break; // settle removes it; the rest of its input is moot
            }
            // A short batch means the socket was empty a moment ago: skip the
            // EAGAIN round trip (the backend reports later arrivals).
            if n < self.rx.slots() {
                break;
            }
            if taken >= self.limits.datagrams_per_socket
                || now.saturating_since(started) >= self.limits.time_per_socket
            {
                self.stats.recv_limited += 1;
                break;
            }
        }
        Self::touch(&mut self.touched, live, slot);
    }
}
