//! The sending half of a stream (spec §1.9, §1.11): the send buffer, per-packet
//! metadata, ACK/SACK processing, RACK/TLP/RTO loss detection and recovery, pacing, and
//! emission of DATA/END packets straight into the transmit queue.
//!
//! Unacknowledged payload lives once in the send buffer (`SendBuf`, chunks the
//! application handed over or bytes it copied in); a packet is only an offset and a
//! length into it, so sending and retransmitting read from it and acknowledging drops
//! whole chunks. Packets are indexed by `seq - base`, which makes a cumulative ACK
//! O(acked packets).

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use tern_base::{SocketId, TxQueue};
use tern_wire::udx::SackRange;

use crate::bbr::{Bbr, RateSample};
use crate::mtu::Mtu;
use crate::packet::{
    Hdr, IPV4_OVERHEAD, UDX_DATA, UDX_END, UDX_HEADER_LEN, put_header, seq_diff, seq_le, seq_lt,
};
use crate::rtt::{MS, Rtt};
use crate::sendbuf::SendBuf;

mod loss;

/// "No deadline".
pub(crate) const NEVER: u64 = u64::MAX;
/// RTO marks after which a packet closes the stream (the 7th timeout).
const MAX_RTO_MARKS: u8 = 7;
/// How much sending time the pacing bucket may bank. libudx refills to 1 ms; a driver
/// that wakes late (a busy core, timer slack) then loses the rest of the gap for good,
/// which on loopback capped a stream at about half its rate. A few ms of credit keeps
/// bursts small next to any real queue while absorbing wake-up jitter.
const PACING_BURST_MS: u64 = 4;
/// Initial pacing bucket (libudx: 25000 bytes).
const INITIAL_TOKENS: f64 = 25_000.0;
/// Shortest payload a packet references in the send buffer rather than copying: below
/// this the copy costs less than the extra iovec and reference count.
const MIN_SHARED_PAYLOAD: usize = 256;

/// Where and how to address outgoing packets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub socket: SocketId,
    pub dest: SocketAddrV4,
    /// The peer's stream id (header id field).
    pub remote_id: u32,
    /// Our advertised receive window.
    pub rwnd: u32,
    /// Our cumulative ack.
    pub ack: u32,
}

impl Ctx {
    pub(crate) fn hdr(&self, flags: u8, off: u8, seq: u32) -> Hdr {
        Hdr { flags, off, id: self.remote_id, rwnd: self.rwnd, seq, ack: self.ack }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Pkt {
    off: u64,
    len: u32,
    flags: u8,
    pad: u8,
    sent: u64,
    first_tx: u64,
    delivered: u64,
    delivered_time: u64,
    app_limited: bool,
    retransmitted: bool,
    sacked: bool,
    lost: bool,
    in_flight: bool,
    rto_marks: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecoveryState {
    Open,
    Fast,
    Loss,
}

/// What an ACK did, for the stream's lifecycle logic.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AckOutcome {
    /// Our END packet was cumulatively acknowledged by this ACK.
    pub end_acked: bool,
}

/// Rate-sample accumulator over the packets one ACK delivers.
#[derive(Debug, Default)]
struct Acc {
    has: bool,
    prior_delivered: u64,
    prior_time: u64,
    send_elapsed: u64,
    app_limited: bool,
    acked: u32,
    rtt: Option<u64>,
    end_acked: bool,
}

/// Send state of one stream.
#[derive(Debug)]
pub(crate) struct Send {
    buf: SendBuf,
    unsent: u64,
    cap: usize,
    /// `end()` was called.
    pub end_requested: bool,
    /// Sequence number of our END packet once sent.
    pub end_seq: Option<u32>,
    /// Our END was acknowledged.
    pub end_acked: bool,
    pkts: VecDeque<Pkt>,
    /// Oldest unacknowledged sequence number (the peer's cumulative ack).
    pub base: u32,
    /// Next sequence number to assign.
    pub next_seq: u32,
    /// Packets in flight (sent, not acked/sacked/lost).
    pub inflight: u32,
    sacked: u32,
    lost: VecDeque<u32>,
    /// The peer's advertised window.
    pub rwnd: u32,
    wl1: u32,
    wl2: u32,
    pub rtt: Rtt,
    pub bbr: Bbr,
    pub mtu: Mtu,
    delivered: u64,
    delivered_time: u64,
    first_tx_time: u64,
    app_limited: u64,
    recovery: RecoveryState,
    high_seq: u32,
    rack_xmit: u64,
    rack_rtt: u64,
    rack_seq: u32,
    rack_fack: u32,
    reordering_seen: bool,
    rto_at: u64,
    tlp_at: u64,
    rack_at: u64,
    pace_at: u64,
    /// Zero-window probe deadline.
    pub zwp_at: u64,
    tlp_allowed: bool,
    tokens: f64,
    refill_at: u64,
    /// Probing is suspended until everything sent before a change of remote is acked.
    pub change_seq: Option<u32>,
    /// Payload bytes sent for the first time.
    pub bytes_sent: u64,
    /// Packets retransmitted.
    pub retransmits: u64,
    /// RTOs fired with packets outstanding.
    pub rto_timeouts: u64,
    /// Tail loss probes sent.
    pub tail_loss_probes: u64,
    /// Fast recoveries entered.
    pub fast_recoveries: u64,
    /// The valid SACK ranges of the last ACK, sorted: every packet in them is marked
    /// sacked, so the next ACK (which repeats them, usually extended) only walks what is
    /// new, and the RACK scan jumps over them. Without it, each ACK during a recovery
    /// walked every packet of the window twice (one stream at ~600 MB/s on loopback
    /// spent 3 % of its CPU there after a few socket-buffer drops).
    sack_applied: Vec<(u32, u32)>,
    /// Reused buffer of `Send::applied_indices`.
    sack_scratch: Vec<(usize, usize)>,
}

impl Send {
    pub(crate) fn new(cap: usize, base_mtu: u16, max_mtu: u16) -> Self {
        let mtu = Mtu::new(base_mtu, max_mtu);
        let bbr = Bbr::new(mtu.max_payload());
        Self {
            // Acknowledged frames come back for reuse, up to the buffer's size.
            buf: SendBuf::new(cap),
            unsent: 0,
            cap,
            end_requested: false,
            end_seq: None,
            end_acked: false,
            pkts: VecDeque::new(),
            base: 0,
            next_seq: 0,
            inflight: 0,
            sacked: 0,
            lost: VecDeque::new(),
            rwnd: crate::packet::MAX_ADVERTISED_RWND,
            wl1: 0,
            wl2: 0,
            rtt: Rtt::new(),
            bbr,
            mtu,
            delivered: 0,
            delivered_time: 0,
            first_tx_time: 0,
            app_limited: 0,
            recovery: RecoveryState::Open,
            high_seq: 0,
            rack_xmit: 0,
            rack_rtt: 0,
            rack_seq: 0,
            rack_fack: 0,
            reordering_seen: false,
            rto_at: NEVER,
            tlp_at: NEVER,
            rack_at: NEVER,
            pace_at: NEVER,
            zwp_at: NEVER,
            tlp_allowed: true,
            tokens: INITIAL_TOKENS,
            refill_at: 0,
            change_seq: None,
            bytes_sent: 0,
            retransmits: 0,
            rto_timeouts: 0,
            tail_loss_probes: 0,
            fast_recoveries: 0,
            sack_applied: Vec::new(),
            sack_scratch: Vec::new(),
        }
    }

    /// Bytes `write` may still accept.
    pub(crate) fn free_space(&self) -> usize {
        self.cap.saturating_sub(self.buf.len())
    }

    /// Bytes held (unsent or unacknowledged).
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Queues as much of `data` as fits (a copy).
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free_space());
        self.buf.write(&data[..n]);
        n
    }

    /// Queues all of `chunk[start..]` without copying while the buffer is not full (so it may
    /// exceed its capacity by one chunk, which the caller sizes); gives it back if full.
    pub(crate) fn write_chunk(&mut self, chunk: Vec<u8>, start: usize) -> Result<(), Vec<u8>> {
        if self.free_space() == 0 {
            return Err(chunk);
        }
        self.buf.push_chunk(chunk, start);
        Ok(())
    }

    /// An acknowledged chunk from [`Send::write_chunk`], for reuse.
    pub(crate) fn take_spent(&mut self) -> Option<Vec<u8>> {
        self.buf.take_spent()
    }

    fn end_offset(&self) -> u64 {
        self.buf.end()
    }

    /// Unsent data or an unsent END.
    pub(crate) fn has_unsent(&self) -> bool {
        self.unsent < self.end_offset() || (self.end_requested && self.end_seq.is_none())
    }

    /// Nothing unsent and nothing unacknowledged.
    pub(crate) fn is_idle(&self) -> bool {
        self.pkts.is_empty() && !self.has_unsent()
    }

    /// The earliest sender deadline.
    pub(crate) fn deadline(&self) -> u64 {
        self.rto_at.min(self.tlp_at).min(self.rack_at).min(self.pace_at).min(self.zwp_at)
    }

    fn reo_wnd(&self) -> u64 {
        if !self.reordering_seen && (self.recovery != RecoveryState::Open || self.sacked >= 3) {
            0
        } else {
            self.rtt.reo_wnd()
        }
    }

    /// Processes the ack, rwnd and SACK fields of any packet from the peer.
    pub(crate) fn on_ack(
        &mut self,
        now: u64,
        seq: u32,
        ack: u32,
        rwnd: u32,
        sacks: impl Iterator<Item = SackRange>,
    ) -> AckOutcome {
        if seq_lt(self.next_seq, ack) {
            return AckOutcome::default();
        }
        if seq_lt(self.wl1, seq) || (self.wl1 == seq && !seq_lt(ack, self.wl2)) {
            self.rwnd = rwnd;
            self.wl1 = seq;
            self.wl2 = ack;
            if rwnd > 0 {
                self.zwp_at = NEVER;
            }
        }
        let mut sacks = sacks.peekable();
        if ack == self.base && self.sacked == 0 && sacks.peek().is_none() {
            // Nothing delivered and no loss to look for: every DATA packet of a one-way
            // transfer lands here on the receiving side, so it must stay cheap.
            self.check_progress();
            return AckOutcome::default();
        }
        let mut acc = Acc::default();
        while seq_lt(self.base, ack) {
            let Some(p) = self.pkts.pop_front() else {
                self.base = ack;
                break;
            };
            let s = self.base;
            self.base = self.base.wrapping_add(1);
            if p.sacked {
                self.sacked -= 1;
            } else {
                self.delivered_one(&p, s, now, &mut acc);
            }
            if p.flags & UDX_END != 0 {
                acc.end_acked = true;
            }
        }
        let keep_from = self.pkts.front().map_or(self.unsent, |p| p.off);
        self.buf.release_to(keep_from);
        let applied = self.applied_indices();
        let mut valid = std::mem::take(&mut self.sack_applied);
        valid.clear();
        for r in sacks {
            if !(seq_le(self.base, r.start)
                && seq_lt(r.start, r.end)
                && seq_le(r.end, self.next_seq))
            {
                continue;
            }
            let from = seq_diff(r.start, self.base) as usize;
            let to = (seq_diff(r.end, self.base) as usize).min(self.pkts.len());
            // Only the parts the last ACK's ranges did not cover can hold news.
            let mut cur = from;
            for &(af, at) in &applied {
                if at <= cur {
                    continue;
                }
                if af >= to {
                    break;
                }
                self.mark_sacked(cur..af.max(cur), now, &mut acc);
                cur = at;
                if cur >= to {
                    break;
                }
            }
            self.mark_sacked(cur..to, now, &mut acc);
            if valid.len() < crate::packet::UDX_MAX_SACK_BLOCKS {
                valid.push((r.start, r.end));
            }
        }
        // Ranges overlapping or out of order (a peer's whim) only cost the walk again.
        valid.sort_unstable_by_key(|&(start, _)| seq_diff(start, self.base));
        self.sack_applied = valid;
        self.sack_scratch = applied;
        if acc.acked > 0 {
            self.delivered_time = now;
            if self.app_limited != 0 && self.delivered > self.app_limited {
                self.app_limited = 0;
            }
        }
        if let Some(r) = acc.rtt {
            let first = !self.rtt.has_sample;
            self.rtt.sample(now, r);
            self.tlp_allowed = true;
            if first {
                self.bbr.on_first_rtt(self.mtu.max_payload(), self.rtt.srtt);
            }
        }
        self.check_progress();
        let losses = if self.sacked > 0 { self.detect_losses(now) } else { 0 };
        let interval = acc.send_elapsed.max(now.saturating_sub(acc.prior_time));
        let bw =
            (acc.has && interval > 0 && (interval >= self.rtt.min_rtt || !self.rtt.has_sample))
                .then(|| (self.delivered - acc.prior_delivered) as f64 / interval as f64);
        let rs = RateSample {
            prior_delivered: acc.prior_delivered,
            bw,
            app_limited: acc.app_limited,
            acked: acc.acked,
            losses,
            rtt: acc.rtt,
        };
        if acc.acked > 0 || losses > 0 {
            self.bbr.on_ack(now, &rs, self.delivered, self.inflight, self.mtu.max_payload());
        }
        if acc.acked > 0 {
            self.tlp_at = NEVER;
            self.rto_at = if self.pkts.is_empty() { NEVER } else { now + self.rtt.rto };
        }
        if acc.end_acked {
            self.end_acked = true;
        }
        AckOutcome { end_acked: acc.end_acked }
    }

    fn delivered_one(&mut self, p: &Pkt, seq: u32, now: u64, acc: &mut Acc) {
        if p.in_flight {
            self.inflight = self.inflight.saturating_sub(1);
        }
        self.delivered += 1;
        acc.acked += 1;
        if !acc.has || p.delivered >= acc.prior_delivered {
            acc.has = true;
            acc.prior_delivered = p.delivered;
            acc.prior_time = p.delivered_time;
            acc.send_elapsed = p.sent.saturating_sub(p.first_tx);
            acc.app_limited = p.app_limited;
            self.first_tx_time = p.sent;
        }
        let rtt = now.saturating_sub(p.sent);
        if !p.retransmitted {
            acc.rtt = Some(acc.rtt.map_or(rtt, |r: u64| r.min(rtt)));
            if seq_lt(seq, self.rack_fack) {
                self.reordering_seen = true;
            }
        }
        if (p.sent > self.rack_xmit || (p.sent == self.rack_xmit && seq_lt(self.rack_seq, seq)))
            && (!p.retransmitted || rtt >= self.rtt.min_rtt)
        {
            self.rack_xmit = p.sent;
            self.rack_rtt = rtt;
            self.rack_seq = seq;
        }
        if seq_le(self.rack_fack, seq) {
            self.rack_fack = seq.wrapping_add(1);
        }
        self.mtu.on_ack();
        if p.pad > 0 {
            self.mtu.on_probe_acked(p.len as usize + usize::from(p.pad) + IPV4_OVERHEAD);
        }
    }

    /// Ends what everything sent before a mark being acknowledged ends: the wait after
    /// a change of remote, and a recovery episode.
    fn check_progress(&mut self) {
        if self.change_seq.is_some_and(|c| seq_le(c, self.base)) {
            self.change_seq = None;
        }
        if self.recovery != RecoveryState::Open && seq_le(self.high_seq, self.base) {
            self.recovery = RecoveryState::Open;
            self.bbr.on_exit_recovery();
        }
    }

    fn pace(&mut self, now: u64, bytes: usize) -> bool {
        let rate = self.bbr.pacing_rate.max(1e-6);
        let burst = (rate * (PACING_BURST_MS * MS) as f64).max(INITIAL_TOKENS);
        let elapsed = now.saturating_sub(self.refill_at) as f64;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.refill_at = now;
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            return true;
        }
        let wait = ((bytes as f64 - self.tokens) / rate).ceil().max(1.0);
        self.pace_at = now + (wait as u64).min(1000 * MS);
        false
    }

    /// Unsent data (or END), or packets waiting for retransmission: what [`Send::flush`]
    /// needs a context for.
    pub(crate) fn has_work(&self) -> bool {
        self.has_unsent() || !self.lost.is_empty()
    }

    /// [`Send::flush`] with nothing to send (`!has_work()`): only its bookkeeping, and
    /// no context for the caller to build. A one-way receiver does this for every DATA
    /// packet.
    pub(crate) fn flush_idle(&mut self, now: u64) {
        if self.pacing_due(now) {
            self.mark_app_limited();
        }
    }

    /// False while the pacing timer holds sends back; once due, clears it.
    fn pacing_due(&mut self, now: u64) -> bool {
        if self.pace_at != NEVER && self.pace_at > now {
            return false;
        }
        self.pace_at = NEVER;
        true
    }

    /// Nothing left to send and room in the window: the application limits the rate.
    fn mark_app_limited(&mut self) {
        if !self.has_unsent() && self.inflight < self.bbr.cwnd {
            self.app_limited = (self.delivered + u64::from(self.inflight)).max(1);
        }
    }

    /// Sends retransmissions, then new data, as the windows and pacing allow. Returns
    /// false if the transmit queue filled up with work left.
    pub(crate) fn flush(&mut self, now: u64, ctx: &Ctx, tx: &mut TxQueue) -> bool {
        if !self.pacing_due(now) {
            return true;
        }
        while let Some(&seq) = self.lost.front() {
            let i = seq_diff(seq, self.base);
            let valid = i >= 0
                && (i as usize) < self.pkts.len()
                && self.pkts[i as usize].lost
                && !self.pkts[i as usize].sacked;
            if !valid {
                self.lost.pop_front();
                continue;
            }
            let i = i as usize;
            if self.inflight >= self.bbr.cwnd {
                return true;
            }
            if tx.is_full() {
                return false;
            }
            if !self.pace(now, self.pkts[i].len as usize + UDX_HEADER_LEN) {
                return true;
            }
            self.lost.pop_front();
            self.stamp_send(i, now);
            let p = &mut self.pkts[i];
            p.lost = false;
            p.retransmitted = true;
            self.retransmits += 1;
            self.emit(i, ctx, tx);
        }
        while self.has_unsent() {
            let payload = self.mtu.max_payload();
            let rwnd_pkts = if self.rwnd == 0 { 0 } else { (self.rwnd as usize / payload).max(1) };
            let limit = (self.bbr.cwnd as usize).min(rwnd_pkts);
            if self.inflight as usize >= limit {
                if self.rwnd == 0 && self.zwp_at == NEVER {
                    // Zero-window probe: now, then every 2 x RTO (spec §1.11).
                    self.zwp_at = now;
                }
                break;
            }
            if tx.is_full() {
                return false;
            }
            let left = (self.end_offset() - self.unsent) as usize;
            if !self.pace(now, left.min(payload) + UDX_HEADER_LEN) {
                return true;
            }
            self.send_new(now, ctx, tx, true);
        }
        self.mark_app_limited();
        true
    }

    /// Packetizes and sends one new packet (caller checked windows and queue space).
    fn send_new(&mut self, now: u64, ctx: &Ctx, tx: &mut TxQueue, may_probe: bool) {
        let payload = self.mtu.max_payload();
        let left = (self.end_offset() - self.unsent) as usize;
        let len = left.min(payload);
        let mut flags = if len > 0 { UDX_DATA } else { 0 };
        if self.end_requested && len == left {
            flags |= UDX_END;
        }
        if flags == 0 {
            return;
        }
        let pad = if may_probe && len == payload && self.change_seq.is_none() {
            self.mtu.probe_pad(len).unwrap_or(0)
        } else {
            0
        };
        let seq = self.next_seq;
        self.pkts.push_back(Pkt {
            off: self.unsent,
            len: len as u32,
            flags,
            pad,
            ..Pkt::default()
        });
        let i = self.pkts.len() - 1;
        self.stamp_send(i, now);
        self.next_seq = seq.wrapping_add(1);
        self.unsent += len as u64;
        self.bytes_sent += len as u64;
        if flags & UDX_END != 0 {
            self.end_seq = Some(seq);
        }
        self.emit(i, ctx, tx);
        if self.recovery == RecoveryState::Open && self.sacked == 0 && self.tlp_allowed {
            let pto = if self.rtt.has_sample {
                2 * self.rtt.srtt + if self.inflight == 1 { 2 * MS } else { 0 }
            } else {
                1000 * MS
            };
            self.tlp_at = (now + pto).min(self.rto_at);
        }
    }

    /// Records a (re)transmission of packet `i` for rate sampling and timers.
    fn stamp_send(&mut self, i: usize, now: u64) {
        if self.inflight == 0 {
            self.first_tx_time = now;
            self.delivered_time = now;
        }
        let (delivered, delivered_time, first_tx, app) =
            (self.delivered, self.delivered_time, self.first_tx_time, self.app_limited != 0);
        let p = &mut self.pkts[i];
        p.sent = now;
        p.first_tx = first_tx;
        p.delivered = delivered;
        p.delivered_time = delivered_time;
        p.app_limited = app;
        if !p.in_flight {
            p.in_flight = true;
            self.inflight += 1;
        }
        if self.rto_at == NEVER {
            self.rto_at = now + self.rtt.rto;
        }
    }

    /// Encodes packet `i` into the queue with the current ack and window.
    fn emit(&self, i: usize, ctx: &Ctx, tx: &mut TxQueue) -> bool {
        let p = self.pkts[i];
        let seq = self.base.wrapping_add(i as u32);
        let pad = usize::from(p.pad);
        let len = p.len as usize;
        let head = UDX_HEADER_LEN + pad;
        let hdr = ctx.hdr(p.flags, p.pad, seq);
        let fill_head = |out: &mut [u8]| {
            put_header(out, &hdr);
            out[UDX_HEADER_LEN..head].fill(0);
            Some(head)
        };
        // A payload inside one chunk of the send buffer goes by reference (no copy on a
        // zero-copy queue); one spanning chunks, or too short to be worth an iovec of
        // its own, is copied.
        if len >= MIN_SHARED_PAYLOAD
            && let Some((chunk, at)) = self.buf.slice(p.off, len)
        {
            return tx.push_shared(ctx.socket, ctx.dest, head, fill_head, chunk, at..at + len);
        }
        let buf = &self.buf;
        tx.push_with(ctx.socket, ctx.dest, None, head + len, |out| {
            fill_head(out)?;
            buf.copy_out(p.off, &mut out[head..head + len]);
            Some(head + len)
        })
    }

    /// Called after a change of remote: probing waits until the old path drained.
    pub(crate) fn on_change_remote(&mut self) {
        self.sack_applied.clear();
        self.mtu.restart();
        self.change_seq = Some(self.next_seq);
    }
}
