//! The UDX engine: the stream table, demultiplexing of datagrams (spec §1.5), firewall
//! binding and relaying (§1.7), the timer heap behind `poll_timeout`, the pending-output
//! list, and the event queue.
//!
//! The pending list holds streams with output owed: ACKs for the packets of the
//! current batch of datagrams (coalesced: one ACK per stream per batch, not one per
//! packet), and output a full transmit queue refused. While it is non-empty
//! `poll_timeout` is "now", so a driver calls `handle_timeout` right after the batch —
//! in tern's driver, at the end of the loop turn that read it — and that sends them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

use tern_base::{SocketId, Timestamp, TxQueue};
use tern_wire::udx::UdxPacket;

use crate::idmap::IdMap;
use crate::packet::{
    Hdr, UDX_DATA, UDX_DESTROY, UDX_END, UDX_HEADER_LEN, UDX_MAGIC, UDX_VERSION, put_header,
    read_id,
};
use crate::recv::RecvSink;
use crate::rtt::MS;
use crate::send::NEVER;
use crate::stream::{Remote, Stream};
use crate::{CloseReason, StreamStats, UdxConfig, UdxError, UdxEvent, UdxTotals};

/// Most MESSAGE events queued and not yet polled: messages are unreliable, so a flood
/// beyond this is dropped rather than buffered.
const MAX_QUEUED_MESSAGES: usize = 4096;
/// How long a cleanly closed stream keeps answering retransmitted END/DATA with an ACK
/// (our last ACK may have been lost; libudx has no such state, so its peer would time
/// out instead). TCP's TIME_WAIT plays the same role.
const LINGER: u64 = 5_000 * MS;

/// The engine's event queue with its message bound.
#[derive(Debug, Default)]
pub(crate) struct Events {
    q: VecDeque<UdxEvent>,
    messages: usize,
    /// MESSAGE packets dropped because too many were queued.
    pub dropped_messages: u64,
}

impl Events {
    pub(crate) fn push(&mut self, e: UdxEvent) {
        self.q.push_back(e);
    }

    pub(crate) fn push_message(&mut self, id: u32, data: &[u8]) {
        if self.messages >= MAX_QUEUED_MESSAGES {
            self.dropped_messages += 1;
            return;
        }
        self.messages += 1;
        self.q.push_back(UdxEvent::Message { id, data: data.to_vec() });
    }

    fn pop(&mut self) -> Option<UdxEvent> {
        let e = self.q.pop_front()?;
        if matches!(e, UdxEvent::Message { .. }) {
            self.messages -= 1;
        }
        Some(e)
    }
}

/// A closed stream still acknowledging its peer's retransmissions.
#[derive(Debug, Clone, Copy)]
struct Linger {
    remote: Remote,
    seq: u32,
    ack: u32,
    until: u64,
}

/// The UDX engine of one node: all streams on all its sockets.
#[derive(Debug)]
pub struct Udx {
    cfg: UdxConfig,
    streams: IdMap<Stream>,
    lingering: IdMap<Linger>,
    events: Events,
    /// (deadline, stream id); stale entries are skipped when popped.
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    /// Streams with output left over because the transmit queue was full.
    pending: VecDeque<u32>,
    /// DESTROY packets that did not fit into the transmit queue.
    pending_raw: VecDeque<(SocketId, SocketAddrV4, [u8; UDX_HEADER_LEN])>,
    last_now: u64,
    /// Counters of the streams that closed ([`Udx::totals`]).
    closed_totals: UdxTotals,
    /// Out-of-order bytes all streams hold (each stream's `held_cost`), against
    /// `UdxConfig::max_held_total`.
    held_total: usize,
    /// In-order bytes the streams buffer for their readers, as last counted (the sum of
    /// each stream's `unread_seen`), against `UdxConfig::max_unread_total`. Readers
    /// consume on other threads, so a stream's share is recounted whenever the engine
    /// works on it, and all of them when the budget looks spent (`recount_unread`).
    unread_total: usize,
    /// When `unread_total` was last recounted over every stream.
    unread_counted_at: u64,
}

/// How stale the in-order total may be before a squeezed stream recounts every stream's
/// share (readers drain on their own threads; the engine only sees it when it looks).
const UNREAD_RECOUNT_NS: u64 = 50_000_000;

/// Brings stream `s`'s share of the engine's in-order total up to date (its reader may
/// have consumed, or new bytes arrived, since it was last counted).
fn note_unread(total: &mut usize, s: &mut Stream) {
    let unread = s.recv.in_order();
    *total = *total - s.unread_seen + unread;
    s.unread_seen = unread;
}

/// One stream's counters, as summed into [`UdxTotals`].
fn counters(s: &Stream) -> UdxTotals {
    UdxTotals {
        bytes_sent: s.send.bytes_sent,
        bytes_received: s.recv.bytes_received,
        retransmits: s.send.retransmits,
        rto_timeouts: s.send.rto_timeouts,
        tail_loss_probes: s.send.tail_loss_probes,
        fast_recoveries: s.send.fast_recoveries,
        zero_window_probes: s.zero_window_probes,
        packets_refused: s.packets_refused,
        // Gauges, not counters: `Udx::totals` sets them from the engine's own sums.
        held_bytes: 0,
        unread_bytes: 0,
    }
}

impl Udx {
    /// An engine with no streams.
    pub fn new(config: UdxConfig) -> Self {
        let mut cfg = config;
        cfg.base_mtu = cfg.base_mtu.max(UDX_HEADER_LEN as u16 + 48);
        cfg.max_mtu = cfg.max_mtu.max(cfg.base_mtu);
        Self {
            cfg,
            streams: IdMap::default(),
            lingering: IdMap::default(),
            events: Events::default(),
            heap: BinaryHeap::new(),
            pending: VecDeque::new(),
            pending_raw: VecDeque::new(),
            last_now: 0,
            closed_totals: UdxTotals::default(),
            held_total: 0,
            unread_total: 0,
            unread_counted_at: 0,
        }
    }

    /// Registers a stream with a caller-chosen local id.
    pub fn create_stream(&mut self, now: Timestamp, id: u32) -> Result<(), UdxError> {
        self.touch(now);
        if self.streams.contains_key(&id) {
            return Err(UdxError::IdInUse(id));
        }
        if self.streams.len() >= self.cfg.max_streams {
            return Err(UdxError::TableFull);
        }
        self.lingering.remove(&id);
        self.streams.insert(id, Stream::new(id, &self.cfg));
        Ok(())
    }

    fn touch(&mut self, now: Timestamp) {
        self.last_now = self.last_now.max(now.as_nanos());
    }

    fn get(&mut self, id: u32) -> Result<&mut Stream, UdxError> {
        self.streams.get_mut(&id).ok_or(UdxError::UnknownStream(id))
    }

    /// Stream `id`, if the application may still write to it or end it: not relaying,
    /// not ended.
    fn writable_stream(&mut self, now: Timestamp, id: u32) -> Result<&mut Stream, UdxError> {
        self.touch(now);
        let s = self.get(id)?;
        if s.relay_to.is_some() {
            return Err(UdxError::Relaying(id));
        }
        if s.send.end_requested {
            return Err(UdxError::Ended(id));
        }
        Ok(s)
    }

    /// Binds the remote of a stream. Sends nothing except an ACK owed for data that
    /// arrived before (and any data written before connect).
    pub fn connect(
        &mut self,
        now: Timestamp,
        id: u32,
        socket: SocketId,
        remote_id: u32,
        remote: SocketAddrV4,
        tx: &mut TxQueue,
    ) -> Result<(), UdxError> {
        let s = self.stream_for_remote(now, id, remote)?;
        if s.remote.is_some() {
            return Err(UdxError::AlreadyConnected(id));
        }
        s.remote = Some(Remote { socket, addr: remote, remote_id });
        s.fw_remote_id = None;
        if s.recv.ack != 0 {
            s.need_ack = true;
        }
        self.after(now.as_nanos(), id, tx, |s, now, tx, _| {
            s.flush(now, tx);
            None
        });
        Ok(())
    }

    /// The stream `connect` / `change_remote` point at `remote` (port 0 is no address).
    fn stream_for_remote(
        &mut self,
        now: Timestamp,
        id: u32,
        remote: SocketAddrV4,
    ) -> Result<&mut Stream, UdxError> {
        self.touch(now);
        if remote.port() == 0 {
            return Err(UdxError::InvalidRemote);
        }
        self.get(id)
    }

    /// The stream binds to the socket and source address of the first packet that
    /// arrives for it, with peer id `remote_id` (hyperdht's firewall hook).
    pub fn connect_on_first_packet(&mut self, id: u32, remote_id: u32) -> Result<(), UdxError> {
        let s = self.get(id)?;
        if s.remote.is_some() {
            return Err(UdxError::AlreadyConnected(id));
        }
        s.fw_remote_id = Some(remote_id);
        Ok(())
    }

    /// Offers a datagram; true if UDX consumed it (spec §1.5), false if it belongs to
    /// dht-rpc or holepunching.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
        tx: &mut TxQueue,
    ) -> bool {
        if data.len() < UDX_HEADER_LEN || data[0] != UDX_MAGIC || data[1] != UDX_VERSION {
            return false;
        }
        let Some(id) = read_id(data) else { return false };
        self.touch(now);
        let now = now.as_nanos();
        if let Some(l) = self.lingering.get(&id).copied() {
            self.linger_reply(id, l, data, tx);
            return true;
        }
        let Some(s) = self.streams.get_mut(&id) else { return false };
        let Ok(pkt) = UdxPacket::decode(data) else { return true };
        if let Some(other) = s.relay_to {
            self.relay(id, other, &pkt, data, tx);
            return true;
        }
        match s.remote {
            Some(r) if r.socket == socket => {}
            _ => {
                // Firewall (§1.7): only an armed connect_on_first_packet lets it in.
                let Some(remote_id) = s.fw_remote_id.take() else { return true };
                let moved = s.remote.is_some();
                s.remote = Some(Remote { socket, addr: from, remote_id });
                if moved {
                    s.send.on_change_remote();
                }
                self.events.push(UdxEvent::Connected { id, socket, remote: from });
            }
        }
        let held_room = self.cfg.max_held_total.saturating_sub(self.held_total);
        self.after(now, id, tx, |s, now, tx, ev| s.on_packet(now, &pkt, held_room, tx, ev));
        true
    }

    fn linger_reply(&mut self, id: u32, l: Linger, data: &[u8], tx: &mut TxQueue) {
        let t = data[2];
        if t & UDX_DESTROY != 0 {
            self.lingering.remove(&id);
            return;
        }
        if t & (UDX_DATA | UDX_END) == 0 {
            return;
        }
        let hdr = Hdr {
            flags: 0,
            off: 0,
            id: l.remote.remote_id,
            rwnd: crate::packet::MAX_ADVERTISED_RWND,
            seq: l.seq,
            ack: l.ack,
        };
        tx.push_with(l.remote.socket, l.remote.addr, None, UDX_HEADER_LEN, |out| {
            put_header(out, &hdr);
            Some(UDX_HEADER_LEN)
        });
    }

    /// relayTo (§1.7): forward unchanged except the id; relaying streams never ACK.
    fn relay(&mut self, id: u32, other: u32, pkt: &UdxPacket<'_>, data: &[u8], tx: &mut TxQueue) {
        if let Some(r) = self.streams.get(&other).and_then(|o| o.remote) {
            tx.push_with(r.socket, r.addr, None, data.len(), |out| {
                out.copy_from_slice(data);
                out[4..8].copy_from_slice(&r.remote_id.to_le_bytes());
                Some(data.len())
            });
        }
        if pkt.header.type_flags & UDX_DESTROY != 0 {
            self.close(id, CloseReason::Reset);
        }
    }

    /// Runs `f` on stream `id`, then handles a close, pending output and the timer.
    fn after(
        &mut self,
        now: u64,
        id: u32,
        tx: &mut TxQueue,
        f: impl FnOnce(&mut Stream, u64, &mut TxQueue, &mut Events) -> Option<CloseReason>,
    ) {
        self.grant_unread(id);
        let Some(s) = self.streams.get_mut(&id) else { return };
        let held_before = s.recv.held_cost();
        let closing = f(s, now, tx, &mut self.events);
        // Out-of-order bytes change only here (packets in, gaps filled); `close` then
        // returns whatever the stream still held.
        self.held_total = self.held_total - held_before + s.recv.held_cost();
        note_unread(&mut self.unread_total, s);
        if let Some(reason) = closing {
            self.close(id, reason);
            return;
        }
        self.reschedule(id);
    }

    /// Counts stream `id`'s in-order bytes afresh and grants it the receive room the
    /// in-order budget leaves: what the other streams do not use, and never less than
    /// `min_recv_window`. When the others seem to use it all, every stream is recounted
    /// first (at most every `UNREAD_RECOUNT_NS`): their readers may have drained since.
    fn grant_unread(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        note_unread(&mut self.unread_total, s);
        let budget = self.cfg.max_unread_total;
        if (self.unread_total - s.unread_seen).saturating_add(self.cfg.recv_buffer) > budget
            && self.last_now.saturating_sub(self.unread_counted_at) >= UNREAD_RECOUNT_NS
        {
            self.recount_unread();
        }
        let Some(s) = self.streams.get_mut(&id) else { return };
        let others = self.unread_total - s.unread_seen;
        s.recv.set_limit(budget.saturating_sub(others).max(self.cfg.min_recv_window));
    }

    /// Recounts every stream's in-order bytes (a walk over the live streams).
    fn recount_unread(&mut self) {
        let mut total = 0;
        for s in self.streams.values_mut() {
            s.unread_seen = s.recv.in_order();
            total += s.unread_seen;
        }
        self.unread_total = total;
        self.unread_counted_at = self.last_now;
    }

    fn reschedule(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        let d = s.deadline();
        if d < s.heap_at {
            s.heap_at = d;
            self.heap.push(Reverse((d, id)));
        }
        let blocked = s.need_ack
            || (s.remote.is_some()
                && s.relay_to.is_none()
                && s.send.has_unsent()
                && s.send.deadline() == NEVER
                && s.send.inflight < s.send.bbr.cwnd
                && s.send.rwnd > 0);
        if blocked && !s.in_pending {
            s.in_pending = true;
            self.pending.push_back(id);
        }
        if self.heap.len() > 2 * (self.streams.len() + self.lingering.len()) + 1024 {
            self.rebuild_heap();
        }
    }

    fn rebuild_heap(&mut self) {
        self.heap.clear();
        for (id, s) in &mut self.streams {
            s.heap_at = s.deadline();
            if s.heap_at != NEVER {
                self.heap.push(Reverse((s.heap_at, *id)));
            }
        }
        for (id, l) in &self.lingering {
            self.heap.push(Reverse((l.until, *id)));
        }
    }

    fn close(&mut self, id: u32, reason: CloseReason) {
        let Some(s) = self.streams.remove(&id) else { return };
        self.held_total -= s.recv.held_cost();
        self.unread_total -= s.unread_seen;
        self.closed_totals.accumulate(&counters(&s));
        if reason == CloseReason::Clean
            && let Some(remote) = s.remote
            && self.lingering.len() < self.cfg.max_streams
        {
            let until = self.last_now + LINGER;
            let l = Linger { remote, seq: s.send.next_seq, ack: s.recv.ack, until };
            self.lingering.insert(id, l);
            self.heap.push(Reverse((until, id)));
        }
        self.events.push(UdxEvent::Closed { id, reason });
    }

    /// Queues bytes; returns how many were accepted (0 when the send buffer is full: a
    /// `Writable` event follows once there is room).
    pub fn write(
        &mut self,
        now: Timestamp,
        id: u32,
        data: &[u8],
        tx: &mut TxQueue,
    ) -> Result<usize, UdxError> {
        let s = self.writable_stream(now, id)?;
        let n = s.send.write(data);
        if n < data.len() {
            s.writable_wanted = true;
        }
        self.after(now.as_nanos(), id, tx, |s, now, tx, _| {
            s.flush(now, tx);
            None
        });
        Ok(n)
    }

    /// Queues all of `chunk[start..]` without copying it (a whole frame of the
    /// application's; the bytes before `start` are not sent),
    /// unless the send buffer is full: then it is handed back (`Ok(Some)`) and a
    /// `Writable` event follows once there is room. A buffer that is not full takes a
    /// whole chunk, so it may exceed `send_buffer` by one chunk. Acknowledged chunks come
    /// back through [`Udx::take_spent`] for reuse.
    pub fn write_chunk(
        &mut self,
        now: Timestamp,
        id: u32,
        chunk: Vec<u8>,
        start: usize,
        tx: &mut TxQueue,
    ) -> Result<Option<Vec<u8>>, UdxError> {
        let s = self.writable_stream(now, id)?;
        let refused = s.send.write_chunk(chunk, start).err();
        if refused.is_some() {
            s.writable_wanted = true;
        }
        self.after(now.as_nanos(), id, tx, |s, now, tx, _| {
            s.flush(now, tx);
            None
        });
        Ok(refused)
    }

    /// A chunk given to [`Udx::write_chunk`] that the peer has acknowledged, for the
    /// caller to reuse (its old bytes kept, so that refilling it needs no zero-fill). At most `send_buffer` bytes of them wait
    /// per stream; more are freed.
    pub fn take_spent(&mut self, id: u32) -> Option<Vec<u8>> {
        self.streams.get_mut(&id)?.send.take_spent()
    }

    /// Copies in-order received bytes into `buf`. `Ok(0)` with a non-empty `buf` means
    /// nothing is available now (see [`Udx::is_read_ended`]).
    pub fn read(&mut self, id: u32, buf: &mut [u8]) -> Result<usize, UdxError> {
        let s = self.streams.get_mut(&id).ok_or(UdxError::UnknownStream(id))?;
        let n = s.read(buf);
        note_unread(&mut self.unread_total, s);
        let closed = s.check_end(&mut self.events);
        if let Some(r) = closed {
            self.close(id, r);
        } else {
            self.reschedule(id);
        }
        Ok(n)
    }

    /// Sends stream `id`'s in-order bytes to `sink` as they arrive, from now on (bytes
    /// already buffered, and any the sink refuses, are read with [`Udx::read`] first).
    /// At the end of each batch of datagrams that brought it bytes the sink is flushed
    /// and `Readable` raised, as for buffered bytes; a read (even of nothing) re-arms it.
    pub fn set_sink(&mut self, id: u32, sink: Box<dyn RecvSink>) -> Result<(), UdxError> {
        self.get(id)?.recv.set_sink(sink);
        Ok(())
    }

    /// Flushes stream `id`'s sink now ([`RecvSink::flush`]), e.g. when its reader made
    /// room for what the sink still holds.
    pub fn flush_sink(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.recv.flush_sink();
        }
    }

    /// In-order received bytes waiting to be read (0 for an unknown stream).
    pub fn readable(&self, id: u32) -> usize {
        self.streams.get(&id).map_or(0, |s| s.recv.readable())
    }

    /// True once the peer's END arrived and every byte before it was read.
    pub fn is_read_ended(&self, id: u32) -> bool {
        self.streams.get(&id).is_some_and(Stream::read_ended)
    }

    /// Half-closes after the queued data (END on the last packet, or an empty END).
    pub fn end(&mut self, now: Timestamp, id: u32, tx: &mut TxQueue) -> Result<(), UdxError> {
        let s = self.writable_stream(now, id)?;
        s.send.end_requested = true;
        self.after(now.as_nanos(), id, tx, |s, now, tx, ev| {
            s.flush(now, tx);
            s.check_end(ev)
        });
        Ok(())
    }

    /// Sends one DESTROY (if connected) and removes the stream (`Closed { Destroyed }`).
    pub fn destroy(&mut self, now: Timestamp, id: u32, tx: &mut TxQueue) {
        self.touch(now);
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.relay_to.is_none()
            && let Some(ctx) = s.ctx()
            && !s.send_destroy(tx)
            && self.pending_raw.len() < self.cfg.max_streams
        {
            let mut b = [0u8; UDX_HEADER_LEN];
            put_header(&mut b, &ctx.hdr(UDX_DESTROY, 0, s.send.next_seq.wrapping_sub(1)));
            self.pending_raw.push_back((ctx.socket, ctx.dest, b));
        }
        self.close(id, CloseReason::Destroyed);
    }

    /// Sends one unreliable MESSAGE (at most MTU - 48 bytes). Dropped silently if the
    /// transmit queue is full, as an unreliable datagram may be.
    pub fn send_message(
        &mut self,
        now: Timestamp,
        id: u32,
        data: &[u8],
        tx: &mut TxQueue,
    ) -> Result<(), UdxError> {
        self.touch(now);
        let s = self.get(id)?;
        if s.remote.is_none() {
            return Err(UdxError::NotConnected(id));
        }
        let max = s.send.mtu.max_payload();
        if data.len() > max {
            return Err(UdxError::MessageTooLarge { len: data.len(), max });
        }
        s.send_message(data, tx);
        Ok(())
    }

    /// relayTo (§1.7): every packet for `id` is forwarded to `other`'s remote with the
    /// id rewritten; `id` itself stops acknowledging.
    pub fn relay_to(&mut self, id: u32, other: u32) -> Result<(), UdxError> {
        if !self.streams.contains_key(&other) {
            return Err(UdxError::UnknownStream(other));
        }
        let s = self.get(id)?;
        s.relay_to = Some(other);
        Ok(())
    }

    /// Switches socket, address and peer id (relayed -> direct upgrade). MTU discovery
    /// restarts; probing waits until everything sent before the change is acked.
    pub fn change_remote(
        &mut self,
        now: Timestamp,
        id: u32,
        socket: SocketId,
        remote_id: u32,
        remote: SocketAddrV4,
        tx: &mut TxQueue,
    ) -> Result<(), UdxError> {
        let s = self.stream_for_remote(now, id, remote)?;
        if s.remote.is_none() {
            return Err(UdxError::NotConnected(id));
        }
        s.remote = Some(Remote { socket, addr: remote, remote_id });
        s.send.on_change_remote();
        self.after(now.as_nanos(), id, tx, |s, now, tx, _| {
            s.flush(now, tx);
            None
        });
        Ok(())
    }

    /// Sends a HEARTBEAT every `every` while the stream is idle; `None` turns it off.
    pub fn set_keepalive(
        &mut self,
        now: Timestamp,
        id: u32,
        every: Option<Duration>,
    ) -> Result<(), UdxError> {
        self.touch(now);
        let s = self.get(id)?;
        let ns = every.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1));
        s.set_keepalive(now.as_nanos(), ns);
        self.reschedule(id);
        Ok(())
    }

    /// Runs expired timers and retries output left over from a full transmit queue.
    pub fn handle_timeout(&mut self, now: Timestamp, tx: &mut TxQueue) {
        self.touch(now);
        let now = now.as_nanos();
        while let Some(&(socket, dest, b)) = self.pending_raw.front() {
            if !tx.push(socket, dest, &b) {
                return;
            }
            self.pending_raw.pop_front();
        }
        for _ in 0..self.pending.len() {
            if tx.is_full() {
                break;
            }
            let Some(id) = self.pending.pop_front() else { break };
            if let Some(s) = self.streams.get_mut(&id) {
                s.in_pending = false;
            }
            self.after(now, id, tx, |s, now, tx, ev| {
                s.flush(now, tx);
                s.end_batch(ev);
                None
            });
        }
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if t > now || tx.is_full() {
                break;
            }
            self.heap.pop();
            if let Some(l) = self.lingering.get(&id) {
                if l.until <= now {
                    self.lingering.remove(&id);
                }
                continue;
            }
            let Some(s) = self.streams.get_mut(&id) else { continue };
            if s.heap_at == t {
                s.heap_at = NEVER;
            }
            self.after(now, id, tx, |s, now, tx, ev| s.on_timeout(now, tx, ev));
        }
    }

    /// The next time `handle_timeout` wants to run; `Timestamp::NEVER` when idle. While
    /// output is pending this is the latest time seen (i.e. "now").
    pub fn poll_timeout(&self) -> Timestamp {
        if !self.pending.is_empty() || !self.pending_raw.is_empty() {
            return Timestamp::from_nanos(self.last_now);
        }
        self.heap.peek().map_or(Timestamp::NEVER, |Reverse((t, _))| Timestamp::from_nanos(*t))
    }

    /// Whether [`Udx::poll_event`] has anything.
    pub fn has_events(&self) -> bool {
        !self.events.q.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<UdxEvent> {
        self.events.pop()
    }

    /// Transport statistics of a stream.
    pub fn stream_stats(&self, id: u32) -> Option<StreamStats> {
        let s = self.streams.get(&id)?;
        Some(StreamStats {
            srtt: Duration::from_nanos(s.send.rtt.srtt),
            rto: Duration::from_nanos(s.send.rtt.rto),
            cwnd: s.send.bbr.cwnd,
            mtu: s.send.mtu.current,
            inflight: s.send.inflight,
            bytes_sent: s.send.bytes_sent,
            bytes_received: s.recv.bytes_received,
            retransmits: s.send.retransmits,
            pacing_rate: (s.send.bbr.pacing_rate * 1e9) as u64,
            state: s.state(),
            rto_timeouts: s.send.rto_timeouts,
            tail_loss_probes: s.send.tail_loss_probes,
            fast_recoveries: s.send.fast_recoveries,
            zero_window_probes: s.zero_window_probes,
            packets_refused: s.packets_refused,
        })
    }

    /// Out-of-order bytes (with their bookkeeping charge) held across all streams:
    /// never more than `UdxConfig::max_held_total`.
    pub fn held_bytes(&self) -> usize {
        self.held_total
    }

    /// Transport counters over every stream this engine had: the closed ones' sums plus
    /// the live ones' current values (a walk over the live streams).
    pub fn totals(&self) -> UdxTotals {
        let mut t = self.closed_totals;
        for s in self.streams.values() {
            t.accumulate(&counters(s));
        }
        t.held_bytes = self.held_total as u64;
        t.unread_bytes = self.unread_total as u64;
        t
    }

    /// In-order bytes the streams buffer for their readers, as the engine last counted
    /// them (see `UdxConfig::max_unread_total`).
    pub fn unread_bytes(&self) -> usize {
        self.unread_total
    }

    /// True if a stream with this id is in the table.
    pub fn contains(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    /// Number of streams in the table.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// MESSAGE packets dropped because too many message events were queued.
    pub fn dropped_messages(&self) -> u64 {
        self.events.dropped_messages
    }
}
