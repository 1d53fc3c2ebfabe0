//! A two-party virtual-time harness: two `Udx` engines joined by a link model with
//! one-way delay, loss, reordering, duplication, a bandwidth limit with a bounded queue,
//! and an MTU. Time jumps to the next event; every loop is bounded.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};

use tern_base::{Rng, SocketId, Timestamp, TxQueue};
use tern_udx::{CloseReason, Udx, UdxConfig, UdxEvent};

pub const MS: u64 = 1_000_000;

/// One direction of the path.
#[derive(Debug, Clone)]
pub struct Link {
    pub delay: u64,
    pub loss: f64,
    pub reorder: f64,
    pub dup: f64,
    /// Bytes per second; 0 = unlimited.
    pub bandwidth: u64,
    /// Most queueing delay before tail drop (ns).
    pub queue_limit: u64,
    /// Largest IP packet (UDP payload + 28) that passes.
    pub mtu: usize,
    pub busy_until: u64,
    pub delivered_bytes: u64,
    pub dropped: u64,
    /// Drops every datagram (black hole).
    pub down: bool,
    /// When non-zero, arrivals are rounded up to a multiple of this (ns): a receiver
    /// that reads its socket once per interval, getting what arrived as one batch.
    pub batch: u64,
}

impl Link {
    pub fn new(delay_ms: u64) -> Self {
        Self {
            delay: delay_ms * MS,
            loss: 0.0,
            reorder: 0.0,
            dup: 0.0,
            bandwidth: 0,
            queue_limit: 200 * MS,
            mtu: 1500,
            busy_until: 0,
            delivered_bytes: 0,
            dropped: 0,
            down: false,
            batch: 0,
        }
    }
}

struct Packet {
    to: usize,
    socket: SocketId,
    from: SocketAddrV4,
    data: Vec<u8>,
}

/// Two engines, side 0 ("A") and side 1 ("B").
pub struct Net {
    pub udx: [Udx; 2],
    pub addr: [SocketAddrV4; 2],
    /// links[0]: A -> B, links[1]: B -> A.
    pub links: [Link; 2],
    pub now: u64,
    pub rng: Rng,
    pub events: [Vec<UdxEvent>; 2],
    /// Raw copies of every datagram a side sent (only while `capture` is set).
    pub capture: bool,
    pub sent: [Vec<Vec<u8>>; 2],
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    packets: std::collections::HashMap<u64, Packet>,
    next_pkt: u64,
    pub tx: TxQueue,
}

impl Net {
    pub fn new(cfg: UdxConfig, link: Link, seed: u64) -> Self {
        Self {
            udx: [Udx::new(cfg), Udx::new(cfg)],
            addr: [
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1000),
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 2000),
            ],
            links: [link.clone(), link],
            now: 0,
            rng: Rng::from_seed(seed),
            events: [Vec::new(), Vec::new()],
            capture: false,
            sent: [Vec::new(), Vec::new()],
            queue: BinaryHeap::new(),
            packets: std::collections::HashMap::new(),
            next_pkt: 0,
            tx: TxQueue::new(256),
        }
    }

    pub fn t(&self) -> Timestamp {
        Timestamp::from_nanos(self.now)
    }

    /// Creates stream `ida` on A and `idb` on B and connects them to each other.
    pub fn pair(&mut self, ida: u32, idb: u32) {
        let now = self.t();
        self.udx[0].create_stream(now, ida).unwrap();
        self.udx[1].create_stream(now, idb).unwrap();
        let (a, b) = (self.addr[0], self.addr[1]);
        self.udx[0].connect(now, ida, SocketId::SERVER, idb, b, &mut self.tx).unwrap();
        self.drain(0);
        self.udx[1].connect(now, idb, SocketId::SERVER, ida, a, &mut self.tx).unwrap();
        self.drain(1);
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    /// Makes the transmit queue reference payloads instead of copying them, as the
    /// driver's does (`drain` joins the parts, as the kernel's scatter-gather does).
    pub fn zero_copy(mut self) -> Self {
        self.tx.set_zero_copy(true);
        self
    }

    /// Moves side `from`'s queued datagrams onto the link.
    pub fn drain(&mut self, from: usize) {
        let out: Vec<(tern_base::TxMeta, Vec<u8>)> =
            self.tx.iter_parts().map(|(m, h, t)| (*m, [h, t].concat())).collect();
        self.tx.clear();
        for (m, data) in out {
            if self.capture {
                self.sent[from].push(data.clone());
            }
            let to = if m.dest == self.addr[0] { 0 } else { 1 };
            if to == from {
                continue;
            }
            let copies = if self.chance(self.links[from].dup) { 2 } else { 1 };
            for _ in 0..copies {
                self.send_on_link(from, to, m.socket, data.clone());
            }
        }
    }

    fn send_on_link(&mut self, from: usize, to: usize, socket: SocketId, data: Vec<u8>) {
        let loss = self.links[from].loss;
        let reorder = self.links[from].reorder;
        let lost = self.chance(loss);
        let l = &mut self.links[from];
        if l.down || lost || data.len() + 28 > l.mtu {
            l.dropped += 1;
            return;
        }
        let mut depart = self.now;
        if let Some(ser) = ((data.len() as u64 + 28) * 1_000_000_000).checked_div(l.bandwidth) {
            let start = l.busy_until.max(self.now);
            if start - self.now > l.queue_limit {
                l.dropped += 1;
                return;
            }
            l.busy_until = start + ser;
            depart = l.busy_until;
        }
        let mut at = depart + l.delay;
        l.delivered_bytes += data.len() as u64;
        if self.chance(reorder) {
            at += self.rng.below(self.links[from].delay.max(MS) + 1);
        }
        if let Some(b) = std::num::NonZeroU64::new(self.links[from].batch) {
            at = at.div_ceil(b.get()) * b.get();
        }
        let key = self.next_pkt;
        self.next_pkt += 1;
        let from_addr = self.addr[from];
        self.packets.insert(key, Packet { to, socket, from: from_addr, data });
        self.queue.push(Reverse((at, key)));
    }

    /// Advances to the next event and processes everything due. Returns false when
    /// nothing at all is scheduled.
    pub fn step(&mut self) -> bool {
        let t0 = self.udx[0].poll_timeout().as_nanos();
        let t1 = self.udx[1].poll_timeout().as_nanos();
        let tq = self.queue.peek().map_or(u64::MAX, |Reverse((t, _))| *t);
        let next = t0.min(t1).min(tq);
        if next == u64::MAX {
            return false;
        }
        self.now = self.now.max(next);
        while let Some(&Reverse((t, key))) = self.queue.peek() {
            if t > self.now {
                break;
            }
            self.queue.pop();
            let Some(p) = self.packets.remove(&key) else { continue };
            let now = self.t();
            let consumed =
                self.udx[p.to].handle_datagram(now, p.socket, p.from, &p.data, &mut self.tx);
            let _ = consumed;
            self.drain(p.to);
        }
        for side in 0..2 {
            if self.udx[side].poll_timeout().as_nanos() <= self.now {
                let now = self.t();
                self.udx[side].handle_timeout(now, &mut self.tx);
                self.drain(side);
            }
        }
        self.collect();
        true
    }

    pub fn collect(&mut self) {
        for side in 0..2 {
            while let Some(e) = self.udx[side].poll_event() {
                self.events[side].push(e);
            }
        }
    }

    pub fn closed(&self, side: usize, id: u32) -> Option<CloseReason> {
        self.events[side].iter().find_map(|e| match e {
            UdxEvent::Closed { id: i, reason } if *i == id => Some(*reason),
            _ => None,
        })
    }
}

/// FNV-1a, to compare large transfers cheaply.
pub fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One direction of an application transfer.
pub struct App {
    pub data: Vec<u8>,
    pub written: usize,
    pub ended: bool,
    pub received: Vec<u8>,
    pub read_ended: bool,
    /// Writes hand whole buffers over (`write_chunk`) instead of copying (`write`).
    pub chunked: bool,
    /// Handed-over buffers that came back acknowledged (`take_spent`).
    pub spent: usize,
}

impl App {
    pub fn new(rng: &mut Rng, len: usize) -> Self {
        let mut data = vec![0u8; len];
        rng.fill(&mut data);
        Self {
            data,
            written: 0,
            ended: false,
            received: Vec::new(),
            read_ended: false,
            chunked: false,
            spent: 0,
        }
    }
}

/// Runs a bidirectional transfer on a connected pair until both sides closed or the
/// virtual-time / iteration budget runs out. Returns the virtual end time.
pub fn run_transfer(net: &mut Net, ids: [u32; 2], apps: &mut [App; 2], limit_ns: u64) -> u64 {
    let mut buf = vec![0u8; 65536];
    for _ in 0..5_000_000 {
        for side in 0..2 {
            let id = ids[side];
            if !net.udx[side].contains(id) {
                continue;
            }
            let app = &mut apps[side];
            while app.written < app.data.len() {
                let chunk = 1 + net.rng.below(20_000) as usize;
                let end = (app.written + chunk).min(app.data.len());
                let now = net.t();
                let bytes = &app.data[app.written..end];
                let n = if app.chunked {
                    let refused = net.udx[side].write_chunk(
                        now,
                        id,
                        [&[0xee; 7], bytes].concat(),
                        7,
                        &mut net.tx,
                    );
                    if refused.unwrap().is_some() { 0 } else { bytes.len() }
                } else {
                    net.udx[side].write(now, id, bytes, &mut net.tx).unwrap()
                };
                net.drain(side);
                app.written += n;
                if n == 0 {
                    break;
                }
            }
            while net.udx[side].take_spent(id).is_some() {
                app.spent += 1;
            }
            if app.written == app.data.len() && !app.ended {
                let now = net.t();
                net.udx[side].end(now, id, &mut net.tx).unwrap();
                net.drain(side);
                app.ended = true;
            }
            loop {
                let n = net.udx[side].read(id, &mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                app.received.extend_from_slice(&buf[..n]);
            }
            net.drain(side);
            if net.udx[side].is_read_ended(id) {
                app.read_ended = true;
            }
        }
        net.collect();
        if net.closed(0, ids[0]).is_some() && net.closed(1, ids[1]).is_some() {
            return net.now;
        }
        if net.now > limit_ns || !net.step() {
            break;
        }
    }
    net.now
}
