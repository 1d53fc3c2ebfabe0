//! [`Shard`]: one driver thread's loop, independent of the OS event mechanism.
//!
//! A shard owns a set of endpoints (thousands, for loadgen), their sockets, one
//! receive batch, one send batch and one transmit queue, and runs turns:
//!
//! 1. wait on the [`Backend`] until a socket or the mailbox is ready or the earliest
//!    deadline in [`Timers`] passes;
//! 2. read each ready socket in batches from the backend's receive source (`recvmmsg`,
//!    or completed io_uring receives) — each batch stamped once with the clock — and
//!    hand every datagram to its endpoint, within the [`WorkLimits`] so one busy
//!    socket cannot starve the others;
//! 3. drain the mailbox (commands, new endpoints) in a bounded batch;
//! 4. call `handle_timeout` on endpoints whose deadline passed;
//! 5. flush transmit queues (`sendmmsg` or batched SENDMSG), re-arm deadlines, drop
//!    closed endpoints.
//!
//! One [`TxQueue`] serves all endpoints: it belongs to whichever endpoint last got
//! input (`tx_owner`) and is flushed when another endpoint's turn comes, when it gets
//! half full, and at the end of the turn. Consecutive inputs to one endpoint (a whole
//! receive batch) thus share one `sendmmsg`, and memory stays one queue per thread
//! rather than one per endpoint.
//!
//! Sockets an endpoint opens or closes while it runs (`dynamic`) are applied when it
//! settles, after its transmit queue is flushed.

mod dynamic;
mod sockets;

pub use dynamic::MAX_RUNTIME_SOCKETS;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Receiver;
use tern_base::{Endpoint, Timestamp, TxQueue};
use tern_udp::SendBatch;

use crate::WorkLimits;
use crate::backend::{Backend, Ready};
use crate::clock::Clock;
use crate::shared::{Msg, NewEndpoint, ThreadShared};
use crate::stats::DriverStats;
use crate::timers::{Entry, Timers};
use sockets::Sock;

/// Token of the mailbox's eventfd; endpoint slots never reach `u32::MAX`.
const WAKER_TOKEN: u64 = u64::MAX;

/// Sizes of a shard's buffers, and how it opens run-time sockets.
#[derive(Debug, Clone)]
pub(crate) struct ShardConfig {
    pub(crate) recv_slots: usize,
    pub(crate) slot_len: usize,
    /// Longest datagram delivered: the configured slot length, which UDP_GRO's larger
    /// slots must not raise.
    pub(crate) max_datagram: usize,
    pub(crate) send_batch: usize,
    pub(crate) tx_capacity: usize,
    pub(crate) limits: WorkLimits,
    /// Options of sockets opened at run time ([`tern_base::SocketOp::Open`]).
    pub(crate) socket_options: tern_udp::SocketOptions,
}

/// A running endpoint and its sockets.
struct Live<E> {
    id: u64,
    endpoint: E,
    sockets: Vec<Sock>,
    /// The token index the next run-time socket tries first (indices of live sockets
    /// are skipped; wrapping, so a long-lived endpoint never runs out).
    next_key: u16,
    /// The deadline this endpoint has in the timer heap (`NEVER`: none).
    armed: Timestamp,
    /// Already in `Shard::touched` this turn.
    touched: bool,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

/// A slab slot. `generation` changes whenever the slot is vacated, so epoll tokens and
/// timer entries of a removed endpoint never reach its successor.
struct Slot<E> {
    generation: u16,
    live: Option<Live<E>>,
}

/// The epoll token of socket `index` of the endpoint in `slot`.
fn token(slot: u32, generation: u16, index: usize) -> u64 {
    (u64::from(slot) << 32) | (u64::from(generation) << 16) | (index as u64 & 0xffff)
}

/// Inverse of [`token`].
fn untoken(t: u64) -> (u32, u16, usize) {
    ((t >> 32) as u32, (t >> 16) as u16, (t & 0xffff) as usize)
}

/// One driver thread's endpoints and loop state.
pub(crate) struct Shard<E: Endpoint, B: Backend> {
    backend: B,
    clock: Clock,
    /// The clock as of this turn's wake-up, re-read for every receive batch after the
    /// turn's first: one read serves a light turn's only batch, its mailbox and its
    /// timers, and no stamp is older than one batch's work.
    now: Timestamp,
    /// Receive batches handed out this turn.
    batches: u32,
    shared: Arc<ThreadShared>,
    mailbox: Receiver<Msg<E>>,
    slots: Vec<Slot<E>>,
    free: Vec<u32>,
    by_id: HashMap<u64, u32>,
    live: usize,
    timers: Timers,
    rx: B::Rx,
    sender: SendBatch,
    tx: TxQueue,
    /// The endpoint whose datagrams `tx` holds.
    tx_owner: Option<u32>,
    /// Endpoints that got input this turn: flush, re-arm, maybe remove.
    touched: Vec<u32>,
    ready: Vec<Ready>,
    /// The mailbox limit stopped a drain; drain again without waiting for a wake-up.
    mailbox_pending: bool,
    limits: WorkLimits,
    stats: DriverStats,
    /// Options of run-time sockets.
    socket_options: tern_udp::SocketOptions,
    /// Scratch list for `flush_tx`: the sockets a queue names.
    tx_sockets: Vec<tern_base::SocketId>,
}

impl<E: Endpoint, B: Backend> Shard<E, B> {
    pub(crate) fn new(
        mut backend: B,
        rx: B::Rx,
        clock: Clock,
        shared: Arc<ThreadShared>,
        mailbox: Receiver<Msg<E>>,
        config: ShardConfig,
    ) -> io::Result<Self> {
        backend.register_waker(shared.waker.fd(), WAKER_TOKEN)?;
        Ok(Self {
            backend,
            now: clock.now(),
            batches: 0,
            clock,
            shared,
            mailbox,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            live: 0,
            timers: Timers::default(),
            rx,
            sender: SendBatch::new(config.send_batch),
            // Zero-copy: the flush sends referenced payloads by scatter-gather.
            tx: TxQueue::with_zero_copy(config.tx_capacity.max(1)),
            tx_owner: None,
            touched: Vec::new(),
            ready: Vec::with_capacity(64),
            mailbox_pending: false,
            limits: config.limits,
            stats: DriverStats::default(),
            socket_options: dynamic::runtime_options(config.socket_options),
            tx_sockets: Vec::new(),
        })
    }

    /// Runs turns until the stop flag is set, then drops every endpoint.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut busy = false;
        let result = loop {
            if self.shared.stop.load(Ordering::Acquire) {
                break Ok(());
            }
            // Work left by a limiter: look at the sockets again, but don't sleep.
            let timeout = if busy { Some(Duration::ZERO) } else { self.sleep_for() };
            self.ready.clear();
            if let Err(e) = self.backend.wait(timeout, &mut self.rx, &mut self.ready) {
                break Err(e);
            }
            self.now = self.clock.now();
            self.batches = 0;
            busy = self.turn();
            self.shared.stats.publish(&self.stats);
        };
        self.close_all();
        self.shared.stats.publish(&self.stats);
        result
    }

    /// How long the wait may sleep: until the earliest armed deadline.
    fn sleep_for(&self) -> Option<Duration> {
        let next = self.timers.next()?;
        Some(next.saturating_since(self.clock.now()))
    }

    /// One turn after a wait. Returns true if a limiter left work behind.
    fn turn(&mut self) -> bool {
        self.stats.turns += 1;
        let ready = std::mem::take(&mut self.ready);
        let mut mailbox = self.mailbox_pending;
        for r in &ready {
            if r.token == WAKER_TOKEN {
                mailbox = true;
                continue;
            }
            let (slot, generation, index) = untoken(r.token);
            if self.slots.get(slot as usize).is_none_or(|s| s.generation != generation) {
                continue;
            }
            if r.writable {
                self.flush_backlog(slot, index);
            }
            if r.readable {
                self.read_socket(slot, index);
            }
        }
        self.ready = ready;
        if self.batches > 1 {
            // Several batches took their time: the mailbox and timers get a fresh now.
            self.now = self.clock.now();
        }
        if mailbox {
            self.mailbox_pending = self.drain_mailbox();
        }
        self.settle();
        let timers_left = self.fire_timers();
        self.settle();
        self.mailbox_pending || timers_left
    }

    /// Hands the transmit queue to `slot`, flushing the previous owner's datagrams.
    fn switch_tx(&mut self, slot: u32) {
        if self.tx_owner != Some(slot) {
            self.flush_tx();
            self.tx_owner = Some(slot);
        }
    }

    /// Marks `slot` for flushing, re-arming and the closed check at settle time.
    fn touch(touched: &mut Vec<u32>, live: &mut Live<E>, slot: u32) {
        if !live.touched {
            live.touched = true;
            touched.push(slot);
        }
    }

    /// Flushes the queue, then re-arms or removes every touched endpoint.
    fn settle(&mut self) {
        self.flush_tx();
        for i in 0..self.touched.len() {
            let slot = self.touched[i];
            let generation = self.slot_generation(slot);
            let Some(live) = self.slots.get_mut(slot as usize).and_then(|s| s.live.as_mut()) else {
                continue;
            };
            live.touched = false;
            self.apply_socket_ops(slot);
            let Some(live) = self.slots.get_mut(slot as usize).and_then(|s| s.live.as_mut()) else {
                continue;
            };
            if live.endpoint.is_closed() {
                self.remove(slot);
                continue;
            }
            let want = live.endpoint.poll_timeout();
            if want < live.armed {
                live.armed = want;
                self.timers.push(Entry { at: want, slot, generation });
            }
        }
        self.touched.clear();
        // Datagrams `socket_opened` queued.
        self.flush_tx();
        // Stale entries accumulate when deadlines keep moving earlier; rebuilding
        // from the slots keeps the heap within a small multiple of the endpoints.
        if self.timers.len() > 4 * self.live + 1024 {
            let current = self.slots.iter().enumerate().filter_map(|(i, s)| {
                let live = s.live.as_ref()?;
                Some(Entry { at: live.armed, slot: i as u32, generation: s.generation })
            });
            self.timers.compact(current);
        }
    }

    fn slot_generation(&self, slot: u32) -> u16 {
        self.slots.get(slot as usize).map_or(0, |s| s.generation)
    }

    /// Calls `handle_timeout` on endpoints whose deadline passed, at most
    /// `timeouts_per_turn` of them. Returns true if due ones are left.
    fn fire_timers(&mut self) -> bool {
        let now = self.now;
        let mut fired = 0;
        while fired < self.limits.timeouts_per_turn {
            let Some(entry) = self.timers.pop_due(now) else { return false };
            let Some(s) = self.slots.get_mut(entry.slot as usize) else { continue };
            if s.generation != entry.generation {
                continue;
            }
            let Some(live) = s.live.as_mut() else { continue };
            if live.armed != entry.at {
                continue; // superseded by an earlier entry
            }
            live.armed = Timestamp::NEVER;
            Self::touch(&mut self.touched, live, entry.slot);
            if live.endpoint.poll_timeout() > now {
                continue; // moved later since it was armed; settle re-arms it
            }
            if self.tx_owner != Some(entry.slot) {
                self.switch_tx(entry.slot);
            }
            let Some(live) = self.slots[entry.slot as usize].live.as_mut() else { continue };
            live.endpoint.handle_timeout(now, &mut self.tx);
            self.stats.timeouts += 1;
            fired += 1;
        }
        self.timers.next().is_some_and(|t| t <= now)
    }

    /// Delivers up to `commands_per_turn` mailbox messages. Returns true if the limit
    /// stopped it (more may be waiting).
    fn drain_mailbox(&mut self) -> bool {
        // Re-arm wake-ups before draining, so a message sent after the drain wakes
        // the next wait (see `Waker`).
        self.shared.waker.reset();
        let now = self.now;
        for _ in 0..self.limits.commands_per_turn {
            match self.mailbox.try_recv() {
                Ok(Msg::Command { id, command }) => {
                    let Some(&slot) = self.by_id.get(&id) else {
                        self.stats.commands_dropped += 1;
                        continue;
                    };
                    self.switch_tx(slot);
                    let Some(live) = self.slots[slot as usize].live.as_mut() else { continue };
                    live.endpoint.handle_command(now, command, &mut self.tx);
                    Self::touch(&mut self.touched, live, slot);
                    self.stats.commands += 1;
                }
                Ok(Msg::Add(new)) => self.add(now, *new),
                Err(_) => return false,
            }
        }
        true
    }

    /// Starts an endpoint whose sockets are bound: registers them, calls `bound`.
    fn add(&mut self, now: Timestamp, new: NewEndpoint<E>) {
        let NewEndpoint { id, endpoint, sockets, alive } = new;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot { generation: 0, live: None });
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.slot_generation(slot);
        let socks: Vec<Sock> = sockets
            .into_iter()
            .enumerate()
            .map(|(i, (id, s))| Sock::new(id, i as u16, false, s))
            .collect();
        let next_key = socks.len() as u16;
        for (i, sock) in socks.iter().enumerate() {
            if let Err(e) = self.backend.register(sock.fd(), token(slot, generation, i)) {
                tracing::warn!(error = %e, "cannot watch an endpoint's socket; endpoint dropped");
                for s in &socks[..i] {
                    let _ = self.backend.deregister(s.fd());
                }
                alive.store(false, Ordering::Release);
                self.shared.endpoints.fetch_sub(1, Ordering::AcqRel);
                self.stats.endpoints_failed += 1;
                self.free.push(slot);
                return;
            }
        }
        let local: Vec<SocketAddrV4> = socks.iter().map(|s| s.socket.local_addr()).collect();
        for s in &socks {
            let buffers = s.socket.buffer_sizes();
            tracing::debug!(endpoint = id, local = %s.socket.local_addr(), socket = s.id.0,
                recv_buffer = buffers.recv, send_buffer = buffers.send, "socket bound");
        }
        self.switch_tx(slot);
        let mut live = Live {
            id,
            endpoint,
            sockets: socks,
            next_key,
            armed: Timestamp::NEVER,
            touched: false,
            alive,
        };
        live.endpoint.bound(now, &local, &mut self.tx);
        Self::touch(&mut self.touched, &mut live, slot);
        self.slots[slot as usize].live = Some(live);
        self.by_id.insert(id, slot);
        self.live += 1;
        self.stats.endpoints_added += 1;
    }

    /// Drops a closed endpoint: its sockets close, its handles see it gone.
    fn remove(&mut self, slot: u32) {
        if self.tx_owner == Some(slot) {
            self.flush_tx();
            self.tx_owner = None;
        }
        let Some(s) = self.slots.get_mut(slot as usize) else { return };
        let Some(live) = s.live.take() else { return };
        s.generation = s.generation.wrapping_add(1);
        for sock in &live.sockets {
            let _ = self.backend.deregister(sock.fd());
            self.stats.backlog_dropped += sock.backlog.len() as u64;
        }
        live.alive.store(false, Ordering::Release);
        self.by_id.remove(&live.id);
        self.free.push(slot);
        self.live -= 1;
        self.shared.endpoints.fetch_sub(1, Ordering::AcqRel);
        self.stats.endpoints_closed += 1;
    }

    /// Shutdown: sends what is queued, then drops every endpoint and pending message.
    fn close_all(&mut self) {
        self.flush_tx();
        for slot in 0..self.slots.len() as u32 {
            if let Some(live) = self.slots[slot as usize].live.take() {
                for sock in &live.sockets {
                    let _ = self.backend.deregister(sock.fd());
                }
                live.alive.store(false, Ordering::Release);
            }
        }
        self.by_id.clear();
        self.live = 0;
        while let Ok(msg) = self.mailbox.try_recv() {
            match msg {
                Msg::Add(new) => new.alive.store(false, Ordering::Release),
                Msg::Command { .. } => self.stats.commands_dropped += 1,
            }
        }
    }
}

impl<E: Endpoint, B: Backend> Drop for Shard<E, B> {
    /// Also runs when an endpoint panicked and unwound the thread: handles must then
    /// see their endpoints gone rather than alive forever.
    fn drop(&mut self) {
        for live in self.slots.iter().filter_map(|s| s.live.as_ref()) {
            live.alive.store(false, Ordering::Release);
        }
    }
}
