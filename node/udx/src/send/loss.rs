//! Loss detection and recovery of the sending half (spec §1.9, RFC 8985): SACK
//! marking, the RACK scan, the retransmission timeout and the tail loss probe. A child
//! module of `send`, so it works on `Send`'s fields directly.

use tern_base::TxQueue;

use super::{Acc, Ctx, MAX_RTO_MARKS, NEVER, Pkt, RecoveryState, Send};
use crate::packet::{IPV4_OVERHEAD, seq_diff, seq_lt};

impl Send {
    /// Marks packets `range` (indices) sacked, counting the newly delivered ones.
    pub(super) fn mark_sacked(&mut self, range: std::ops::Range<usize>, now: u64, acc: &mut Acc) {
        for i in range {
            let p = self.pkts[i];
            if !p.sacked {
                self.pkts[i].sacked = true;
                self.pkts[i].in_flight = false;
                self.sacked += 1;
                self.delivered_one(&p, self.base.wrapping_add(i as u32), now, acc);
            }
        }
    }

    /// The last ACK's SACK ranges as packet indices, clipped to what is still held, in
    /// a reused buffer (give it back with `self.sack_scratch = ...` when done).
    pub(super) fn applied_indices(&mut self) -> Vec<(usize, usize)> {
        let n = self.pkts.len();
        let base = self.base;
        let index = |seq: u32| (seq_diff(seq, base).max(0) as usize).min(n);
        let mut out = std::mem::take(&mut self.sack_scratch);
        out.clear();
        out.extend(
            self.sack_applied.iter().map(|&(a, b)| (index(a), index(b))).filter(|(a, b)| a < b),
        );
        out
    }

    /// Whether packet `i` (sequence `seq`) was sent after the most recently delivered one:
    /// RACK cannot judge it yet.
    fn after_rack(&self, p: &Pkt, seq: u32) -> bool {
        p.sent > self.rack_xmit || (p.sent == self.rack_xmit && !seq_lt(seq, self.rack_seq))
    }

    /// RACK: marks packets sent before the most recently delivered one as lost once
    /// `rack_rtt + reo_wnd` has passed; arms the reorder timer for the rest.
    ///
    /// Bounded by the holes, not the window: the scan jumps over the ranges the last
    /// ACK sacked, and stops at the first packet never retransmitted that was sent
    /// after the most recently delivered one: first transmissions go out in sequence
    /// order and a retransmission only makes a packet's send time later, so every
    /// packet behind it was sent later still.
    pub(super) fn detect_losses(&mut self, now: u64) -> u32 {
        let reo = self.reo_wnd();
        self.rack_at = NEVER;
        let mut losses = 0;
        let sacked = self.applied_indices();
        let mut next_range = sacked.iter().peekable();
        let mut i = 0;
        while i < self.pkts.len() {
            if let Some(&&(from, to)) = next_range.peek() {
                if to <= i {
                    next_range.next();
                    continue;
                }
                if from <= i {
                    i = to;
                    next_range.next();
                    continue;
                }
            }
            let p = self.pkts[i];
            let seq = self.base.wrapping_add(i as u32);
            i += 1;
            let after = self.after_rack(&p, seq);
            if after && !p.retransmitted {
                break;
            }
            if p.sacked || p.lost || after {
                continue;
            }
            let deadline = p.sent + self.rack_rtt + reo;
            if now >= deadline {
                if self.mark_lost(i - 1) {
                    losses += 1;
                }
            } else {
                self.rack_at = self.rack_at.min(deadline);
            }
        }
        self.sack_scratch = sacked;
        if losses > 0 && self.recovery == RecoveryState::Open {
            self.fast_recoveries += 1;
            self.recovery = RecoveryState::Fast;
            self.high_seq = self.next_seq;
            self.bbr.on_enter_recovery(self.inflight, self.delivered);
        }
        losses
    }

    /// Marks packet `i` lost and queues it for retransmission. Returns false for MTU
    /// probes, whose loss says nothing about congestion (spec §1.10 step 4).
    fn mark_lost(&mut self, i: usize) -> bool {
        let seq = self.base.wrapping_add(i as u32);
        let p = &mut self.pkts[i];
        if p.lost {
            return false;
        }
        p.lost = true;
        if p.in_flight {
            p.in_flight = false;
            self.inflight = self.inflight.saturating_sub(1);
        }
        self.lost.push_back(seq);
        if p.pad > 0 {
            p.pad = 0;
            self.mtu.on_probe_lost();
            return false;
        }
        true
    }

    /// Runs expired sender timers. Returns true if the stream timed out (7th RTO).
    pub(crate) fn on_timeout(&mut self, now: u64, ctx: &Ctx, tx: &mut TxQueue) -> bool {
        if self.rto_at <= now {
            if self.on_rto(now) {
                return true;
            }
        } else if self.tlp_at <= now {
            self.on_tlp(now, ctx, tx);
        }
        if self.rack_at <= now {
            self.rack_at = NEVER;
            self.detect_losses(now);
        }
        if self.pace_at <= now {
            self.pace_at = NEVER;
        }
        false
    }

    fn on_rto(&mut self, now: u64) -> bool {
        self.tlp_at = NEVER;
        if self.pkts.is_empty() {
            self.rto_at = NEVER;
            return false;
        }
        self.rto_timeouts += 1;
        let threshold = self.rack_rtt + self.reo_wnd();
        let mut oldest = true;
        for i in 0..self.pkts.len() {
            let p = self.pkts[i];
            if p.sacked {
                continue;
            }
            if oldest || now.saturating_sub(p.sent) >= threshold {
                if oldest
                    && p.rto_marks >= 1
                    && p.len as usize + IPV4_OVERHEAD > usize::from(self.mtu.base)
                {
                    // Two timeouts of a large packet: maybe an MTU black hole. New packets
                    // use the base MTU (sent packets cannot be re-segmented).
                    self.mtu.fall_back();
                }
                oldest = false;
                self.pkts[i].rto_marks += 1;
                if self.pkts[i].rto_marks >= MAX_RTO_MARKS {
                    return true;
                }
                self.mark_lost(i);
            }
        }
        self.recovery = RecoveryState::Loss;
        self.high_seq = self.next_seq;
        self.bbr.on_rto(self.delivered);
        // libudx restarts the timer at twice the RTO without doubling the RTO itself.
        self.rto_at = now + 2 * self.rtt.rto;
        false
    }

    fn on_tlp(&mut self, now: u64, ctx: &Ctx, tx: &mut TxQueue) {
        self.tlp_at = NEVER;
        if !self.tlp_allowed || self.recovery != RecoveryState::Open || tx.is_full() {
            return;
        }
        self.tlp_allowed = false;
        if self.unsent < self.end_offset() && self.rwnd > 0 {
            self.tail_loss_probes += 1;
            self.send_new(now, ctx, tx, false);
            return;
        }
        if let Some(i) = self.pkts.iter().rposition(|p| !p.sacked) {
            self.tail_loss_probes += 1;
            self.pkts[i].retransmitted = true;
            self.pkts[i].sent = now;
            self.retransmits += 1;
            self.emit(i, ctx, tx);
        }
    }
}
