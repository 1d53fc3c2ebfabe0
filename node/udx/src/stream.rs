//! One UDX stream: the receiver and sender halves glued to a remote, the lifecycle
//! rules (END/EOF, extra ACK, clean close, DESTROY), ACK/SACK/HEARTBEAT emission and
//! the edge-triggered Readable/Writable signals (spec §1.7, §1.8, §1.13).

use std::net::SocketAddrV4;

use tern_base::{SocketId, TxQueue};
use tern_wire::udx::UdxPacket;

use crate::engine::Events;
use crate::packet::{
    UDX_DATA, UDX_DESTROY, UDX_END, UDX_HEADER_LEN, UDX_HEARTBEAT, UDX_MAX_SACK_BLOCKS,
    UDX_MESSAGE, UDX_SACK, put_header, seq_le,
};
use crate::recv::{Accept, Recv};
use crate::send::{Ctx, NEVER, Send};
use crate::{CloseReason, StreamState, UdxConfig, UdxEvent};

/// Where a connected stream sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Remote {
    pub socket: SocketId,
    pub addr: SocketAddrV4,
    pub remote_id: u32,
}

/// One stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub id: u32,
    pub remote: Option<Remote>,
    /// `connect_on_first_packet`: remote id to bind with.
    pub fw_remote_id: Option<u32>,
    pub relay_to: Option<u32>,
    pub recv: Recv,
    pub send: Send,
    /// An ACK is owed: the answer to DATA/END/HEARTBEAT packets of the current batch
    /// of datagrams, a window update, or one a full queue refused. The engine sends it
    /// at the end of the batch (`pending`), so one ACK answers the whole batch.
    pub need_ack: bool,
    /// The next in-order data raises `Readable`.
    readable_armed: bool,
    /// The sink took bytes in this batch of datagrams: flush it and raise `Readable`
    /// at the end of the batch ([`Stream::end_batch`]).
    sink_owed: bool,
    /// A short write happened: raise `Writable` when room returns.
    pub writable_wanted: bool,
    read_ended_sent: bool,
    last_adv_rwnd: u32,
    recv_cap: usize,
    send_cap: usize,
    keepalive: u64,
    keepalive_at: u64,
    /// Earliest timer-heap entry queued for this stream (engine bookkeeping).
    pub heap_at: u64,
    /// Listed in the engine's pending-output queue.
    pub in_pending: bool,
    /// Zero-window probes sent.
    pub zero_window_probes: u64,
    /// DATA/END packets refused (no room, or too far ahead).
    pub packets_refused: u64,
    /// `recv.in_order()` when the engine last counted it into its in-order total.
    pub unread_seen: usize,
}

impl Stream {
    pub(crate) fn new(id: u32, cfg: &UdxConfig) -> Self {
        Self {
            id,
            remote: None,
            fw_remote_id: None,
            relay_to: None,
            recv: Recv::new(cfg.recv_buffer),
            send: Send::new(cfg.send_buffer, cfg.base_mtu, cfg.max_mtu),
            need_ack: false,
            readable_armed: true,
            sink_owed: false,
            writable_wanted: false,
            read_ended_sent: false,
            last_adv_rwnd: 0,
            recv_cap: cfg.recv_buffer,
            send_cap: cfg.send_buffer,
            keepalive: 0,
            keepalive_at: NEVER,
            heap_at: NEVER,
            in_pending: false,
            zero_window_probes: 0,
            packets_refused: 0,
            unread_seen: 0,
        }
    }

    pub(crate) fn ctx(&self) -> Option<Ctx> {
        let r = self.remote?;
        Some(Ctx {
            socket: r.socket,
            dest: r.addr,
            remote_id: r.remote_id,
            rwnd: self.recv.rwnd(),
            ack: self.recv.ack,
        })
    }

    /// Next timer deadline (ns).
    pub(crate) fn deadline(&self) -> u64 {
        if self.remote.is_none() || self.relay_to.is_some() {
            return NEVER;
        }
        self.send.deadline().min(self.keepalive_at)
    }

    pub(crate) fn state(&self) -> StreamState {
        if self.relay_to.is_some() {
            return StreamState::Relaying;
        }
        if self.remote.is_none() {
            return StreamState::Unconnected;
        }
        match (self.send.end_requested, self.recv.remote_end.is_some()) {
            (false, false) => StreamState::Open,
            (true, false) => StreamState::LocalEnded,
            (false, true) => StreamState::RemoteEnded,
            (true, true) => StreamState::Closing,
        }
    }

    pub(crate) fn set_keepalive(&mut self, now: u64, every: u64) {
        self.keepalive = every;
        self.keepalive_at = if every == 0 { NEVER } else { now.saturating_add(every) };
    }

    /// Sends an ACK (SACK while out-of-order packets are held). False if the queue is
    /// full; the ACK is then owed (`need_ack`).
    pub(crate) fn send_ack(&mut self, tx: &mut TxQueue) -> bool {
        let Some(ctx) = self.ctx() else { return true };
        let sack = self.recv.has_held();
        let flags = if sack { UDX_SACK } else { 0 };
        let hdr = ctx.hdr(flags, 0, self.send.next_seq);
        let recv = &self.recv;
        let max = UDX_HEADER_LEN + if sack { 8 * UDX_MAX_SACK_BLOCKS } else { 0 };
        let ok = tx.push_with(ctx.socket, ctx.dest, None, max, |out| {
            put_header(out, &hdr);
            let n = if sack { recv.write_sacks(&mut out[UDX_HEADER_LEN..]) } else { 0 };
            Some(UDX_HEADER_LEN + n)
        });
        self.need_ack = !ok;
        if ok {
            self.last_adv_rwnd = ctx.rwnd;
        }
        ok
    }

    fn send_bare(&mut self, flags: u8, tx: &mut TxQueue) -> bool {
        let Some(ctx) = self.ctx() else { return true };
        let hdr = ctx.hdr(flags, 0, self.send.next_seq);
        tx.push_with(ctx.socket, ctx.dest, None, UDX_HEADER_LEN, |out| {
            put_header(out, &hdr);
            Some(UDX_HEADER_LEN)
        })
    }

    /// Queues one DESTROY (never retransmitted); false if the queue is full.
    pub(crate) fn send_destroy(&mut self, tx: &mut TxQueue) -> bool {
        let ok = self.send_bare(UDX_DESTROY, tx);
        self.send.next_seq = self.send.next_seq.wrapping_add(1);
        ok
    }

    /// Queues one MESSAGE.
    pub(crate) fn send_message(&mut self, data: &[u8], tx: &mut TxQueue) -> bool {
        let Some(ctx) = self.ctx() else { return false };
        let hdr = ctx.hdr(UDX_MESSAGE, 0, self.send.next_seq);
        let total = UDX_HEADER_LEN + data.len();
        tx.push_with(ctx.socket, ctx.dest, None, total, |out| {
            put_header(out, &hdr);
            out[UDX_HEADER_LEN..total].copy_from_slice(data);
            Some(total)
        })
    }

    /// Processes one packet addressed to this (connected, non-relaying) stream;
    /// `held_room` is what the engine still lets its streams hold out of order.
    pub(crate) fn on_packet(
        &mut self,
        now: u64,
        pkt: &UdxPacket<'_>,
        held_room: usize,
        tx: &mut TxQueue,
        ev: &mut Events,
    ) -> Option<CloseReason> {
        let h = pkt.header;
        let t = h.type_flags;
        if t & UDX_HEARTBEAT != 0 {
            self.need_ack = true;
            return None;
        }
        let payload = pkt.payload().ok()?;
        let mut answer = false;
        if t & (UDX_DATA | UDX_END) != 0 {
            answer = true;
            // Bytes a sink took are announced at the end of the batch (`end_batch`: one
            // flush and one event for all the batch's packets); bytes buffered here at once.
            let accepted = self.recv.accept(h.seq, t, payload, held_room);
            if accepted == Accept::Dropped {
                self.packets_refused += 1;
            }
            if accepted == Accept::Advanced {
                self.sink_owed |= self.recv.take_sunk();
                if self.readable_armed && self.recv.readable() > 0 {
                    self.readable_armed = false;
                    ev.push(UdxEvent::Readable { id: self.id });
                }
            }
        }
        if t & UDX_DESTROY != 0 && seq_le(self.recv.ack, h.seq) {
            return Some(CloseReason::Reset);
        }
        if t & UDX_MESSAGE != 0 {
            ev.push_message(self.id, payload);
        }
        let was_ended = self.send.end_acked;
        let out = self.send.on_ack(now, h.seq, h.ack, h.rwnd, pkt.sack_ranges());
        // Spec §1.8 step 8 answers every DATA/END packet, and step 9 adds one extra ACK
        // when our END is acked first. Both are owed here and sent by the engine at
        // the end of the batch of datagrams this one arrived in (`Udx::handle_timeout`,
        // which `poll_timeout` makes due at once): one ACK then answers every packet
        // of the batch, carrying the newest cumulative ack and SACK blocks. The peer
        // cannot tell this from a lost ACK, which every UDX sender tolerates, and it
        // leaves in the same loop turn, so no timer of the peer notices a delay.
        if answer || (out.end_acked && !was_ended && self.recv.remote_end.is_none()) {
            self.need_ack = true;
        }
        self.check_writable(ev);
        if let Some(r) = self.check_end(ev) {
            // The stream closes: answer now (and let the sink hand on what it took), the
            // engine forgets it after this.
            self.end_batch(ev);
            if self.need_ack {
                self.send_ack(tx);
            }
            return Some(r);
        }
        self.flush_data(now, tx);
        None
    }

    fn check_writable(&mut self, ev: &mut Events) {
        if self.writable_wanted && self.send.buffered() <= self.send_cap / 2 {
            self.writable_wanted = false;
            ev.push(UdxEvent::Writable { id: self.id });
        }
    }

    /// The end of a batch of datagrams (the engine's pending output runs then): bytes a
    /// sink took in it are flushed and announced. Every DATA packet owes an ACK, so a
    /// stream that took any is in the engine's pending queue and gets this call.
    pub(crate) fn end_batch(&mut self, ev: &mut Events) {
        if std::mem::take(&mut self.sink_owed) {
            self.recv.flush_sink();
            if self.readable_armed {
                self.readable_armed = false;
                ev.push(UdxEvent::Readable { id: self.id });
            }
        }
    }

    /// EOF and clean close (spec §1.8 step 9).
    pub(crate) fn check_end(&mut self, ev: &mut Events) -> Option<CloseReason> {
        if !self.read_ended_sent && self.recv.remote_end.is_some() && self.recv.readable() == 0 {
            self.read_ended_sent = true;
            ev.push(UdxEvent::ReadEnded { id: self.id });
        }
        (self.read_ended_sent && self.send.end_acked).then_some(CloseReason::Clean)
    }

    /// Reads in-order bytes; may make a window update due.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = self.recv.read(out);
        if self.recv.readable() == 0 {
            self.readable_armed = true;
        }
        let rwnd = self.recv.rwnd();
        if self.remote.is_some()
            && (self.last_adv_rwnd as usize) < self.recv_cap / 2
            && rwnd as usize >= self.last_adv_rwnd as usize + self.recv_cap / 4
        {
            self.need_ack = true;
        }
        n
    }

    pub(crate) fn read_ended(&self) -> bool {
        self.read_ended_sent
    }

    /// Sends owed ACKs, retransmissions and new data. False if the queue filled up.
    pub(crate) fn flush(&mut self, now: u64, tx: &mut TxQueue) -> bool {
        if self.relay_to.is_some() || self.remote.is_none() {
            return true;
        }
        if self.need_ack && !self.send_ack(tx) {
            return false;
        }
        self.flush_data(now, tx)
    }

    /// Sends retransmissions and new data (and a zero-window probe), leaving an owed
    /// ACK for the end of the batch. False if the queue filled up.
    fn flush_data(&mut self, now: u64, tx: &mut TxQueue) -> bool {
        if self.relay_to.is_some() || self.remote.is_none() {
            return true;
        }
        if self.send.zwp_at <= now {
            if self.send.rwnd == 0 && self.send.has_unsent() {
                if !self.send_bare(UDX_HEARTBEAT, tx) {
                    return false;
                }
                self.zero_window_probes += 1;
                self.send.zwp_at = now + 2 * self.send.rtt.rto;
            } else {
                self.send.zwp_at = NEVER;
            }
        }
        if !self.send.has_work() {
            // Every DATA packet at a one-way receiver: no context to build.
            self.send.flush_idle(now);
            return true;
        }
        let Some(ctx) = self.ctx() else { return true };
        self.send.flush(now, &ctx, tx)
    }

    /// Runs expired timers.
    pub(crate) fn on_timeout(
        &mut self,
        now: u64,
        tx: &mut TxQueue,
        ev: &mut Events,
    ) -> Option<CloseReason> {
        let ctx = self.ctx()?;
        if self.relay_to.is_some() {
            return None;
        }
        if self.send.on_timeout(now, &ctx, tx) {
            return Some(CloseReason::TimedOut);
        }
        if self.keepalive_at <= now {
            self.keepalive_at = now.saturating_add(self.keepalive);
            if self.send.is_idle() && !self.send_bare(UDX_HEARTBEAT, tx) {
                self.keepalive_at = now;
            }
        }
        self.check_writable(ev);
        self.flush(now, tx);
        None
    }
}
