//! BBR v1-style congestion control counting in packets (spec §1.12).
//!
//! Modelled on Linux `tcp_bbr.c` as libudx is: a windowed-max bandwidth filter over 10
//! rounds, a 10 s min-RTT filter with PROBE_RTT, STARTUP/DRAIN/PROBE_BW with the gain
//! cycle, and packet conservation during recovery. Only the sender is affected, so any
//! deviation here is wire-compatible. Bandwidth is kept in packets per nanosecond.

use crate::rtt::MS;

const STARTUP_GAIN: f64 = 2.885_39;
const DRAIN_GAIN: f64 = 1.0 / STARTUP_GAIN;
const PROBE_BW_CWND_GAIN: f64 = 2.0;
const CYCLE: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// Rounds of the bandwidth max filter.
const BW_WINDOW: usize = 10;
/// Lifetime of a min-RTT sample before PROBE_RTT.
const MIN_RTT_WINDOW: u64 = 10_000 * MS;
/// Time spent in PROBE_RTT.
const PROBE_RTT_TIME: u64 = 200 * MS;
/// The smallest cwnd target.
const MIN_CWND: u32 = 4;
/// Initial cwnd.
pub(crate) const INITIAL_CWND: u32 = 10;
/// Full-bandwidth detection: growth below 25 % for 3 rounds.
const FULL_BW_THRESH: f64 = 1.25;
const FULL_BW_ROUNDS: u32 = 3;
/// ACK-aggregation estimate: windowed max over this many rounds (Linux: 5).
const EXTRA_ACKED_WIN_ROUNDS: u32 = 5;
/// ACK-aggregation allowance is capped at this much time at the estimated bandwidth.
const EXTRA_ACKED_MAX: u64 = 100 * MS;
/// An aggregation epoch that has counted this many packets starts over (Linux: 2^20).
const ACK_EPOCH_RESET: u64 = 1 << 20;
/// Linux's quantization budget for one-segment sends: three packets on top of the
/// target, so a stream is never starved by a target that rounds to a few packets.
const QUANTIZATION_BUDGET: u32 = 3;
/// Hard ceiling on cwnd so a bad sample can never size a window beyond memory limits.
const MAX_CWND: u32 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// A delivery-rate sample (Linux `rate_sample`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateSample {
    /// Delivered count when the newest acked packet was sent.
    pub prior_delivered: u64,
    /// Delivery rate in packets/ns, if the interval was long enough.
    pub bw: Option<f64>,
    /// The sample came from an application-limited period.
    pub app_limited: bool,
    /// Packets newly acked or sacked.
    pub acked: u32,
    /// Packets newly marked lost.
    pub losses: u32,
    /// RTT sample (ns), if any.
    pub rtt: Option<u64>,
}

/// BBR state of one stream.
#[derive(Debug, Clone)]
pub(crate) struct Bbr {
    mode: Mode,
    bw_slots: [(u64, f64); BW_WINDOW],
    min_rtt: u64,
    min_rtt_at: u64,
    round: u64,
    next_round_delivered: u64,
    round_start: bool,
    full_bw: f64,
    full_bw_cnt: u32,
    full_bw_reached: bool,
    cycle_idx: usize,
    cycle_at: u64,
    pacing_gain: f64,
    cwnd_gain: f64,
    probe_rtt_done_at: u64,
    probe_rtt_round_done: bool,
    prior_cwnd: u32,
    conservation: bool,
    conservation_round_end: u64,
    /// ACK aggregation (Linux `bbr_update_ack_aggregation`): the most packets acked
    /// beyond what the bandwidth estimate predicts, in two alternating windows.
    extra_acked: [u32; 2],
    extra_acked_idx: usize,
    extra_acked_rounds: u32,
    ack_epoch_at: u64,
    ack_epoch_acked: u64,
    /// Congestion window in packets.
    pub cwnd: u32,
    /// Pacing rate in bytes per ns.
    pub pacing_rate: f64,
}

impl Bbr {
    pub(crate) fn new(mss: usize) -> Self {
        let mut b = Self {
            mode: Mode::Startup,
            bw_slots: [(0, 0.0); BW_WINDOW],
            min_rtt: u64::MAX,
            min_rtt_at: 0,
            round: 0,
            next_round_delivered: 0,
            round_start: false,
            full_bw: 0.0,
            full_bw_cnt: 0,
            full_bw_reached: false,
            cycle_idx: 0,
            cycle_at: 0,
            pacing_gain: STARTUP_GAIN,
            cwnd_gain: STARTUP_GAIN,
            probe_rtt_done_at: 0,
            probe_rtt_round_done: false,
            prior_cwnd: 0,
            conservation: false,
            conservation_round_end: 0,
            extra_acked: [0; 2],
            extra_acked_idx: 0,
            extra_acked_rounds: 0,
            ack_epoch_at: 0,
            ack_epoch_acked: 0,
            cwnd: INITIAL_CWND,
            pacing_rate: 0.0,
        };
        b.init_pacing(mss, None);
        b
    }

    /// Initial pacing: cwnd / srtt (1 ms if unknown) with the startup gain.
    fn init_pacing(&mut self, mss: usize, srtt: Option<u64>) {
        let srtt = srtt.unwrap_or(MS).max(1) as f64;
        self.pacing_rate = f64::from(self.cwnd) / srtt * mss as f64 * STARTUP_GAIN;
    }

    fn max_bw(&self) -> f64 {
        self.bw_slots
            .iter()
            .filter(|(r, _)| self.round.saturating_sub(*r) < BW_WINDOW as u64)
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
    }

    /// Packets for `gain` times the estimated BDP.
    fn bdp(&self, gain: f64) -> u32 {
        if self.min_rtt == u64::MAX {
            return INITIAL_CWND;
        }
        let bdp = self.max_bw() * self.min_rtt as f64 * gain;
        (bdp.ceil() as u32).clamp(1, MAX_CWND)
    }

    /// Processes one ACK. `delivered` is the stream's total delivered count after it.
    pub(crate) fn on_ack(
        &mut self,
        now: u64,
        rs: &RateSample,
        delivered: u64,
        inflight: u32,
        mss: usize,
    ) {
        // Round tracking.
        self.round_start = false;
        if rs.acked > 0 && rs.prior_delivered >= self.next_round_delivered {
            self.next_round_delivered = delivered;
            self.round += 1;
            self.round_start = true;
        }
        if let Some(bw) = rs.bw
            && (!rs.app_limited || bw >= self.max_bw())
        {
            let slot = &mut self.bw_slots[(self.round % BW_WINDOW as u64) as usize];
            if slot.0 != self.round {
                *slot = (self.round, 0.0);
            }
            slot.1 = slot.1.max(bw);
        }
        // Gain cycling.
        if self.mode == Mode::ProbeBw && self.next_phase(now, rs, inflight) {
            self.cycle_idx = (self.cycle_idx + 1) % CYCLE.len();
            self.cycle_at = now;
            self.pacing_gain = CYCLE[self.cycle_idx];
        }
        // Full bandwidth.
        if !self.full_bw_reached && self.round_start && !rs.app_limited {
            let bw = self.max_bw();
            if bw >= self.full_bw * FULL_BW_THRESH {
                self.full_bw = bw;
                self.full_bw_cnt = 0;
            } else {
                self.full_bw_cnt += 1;
                self.full_bw_reached = self.full_bw_cnt >= FULL_BW_ROUNDS;
            }
        }
        if self.mode == Mode::Startup && self.full_bw_reached {
            self.mode = Mode::Drain;
            self.pacing_gain = DRAIN_GAIN;
            self.cwnd_gain = STARTUP_GAIN;
        }
        if self.mode == Mode::Drain && inflight <= self.bdp(1.0) {
            self.enter_probe_bw(now);
        }
        // Min RTT and PROBE_RTT.
        let expired = now > self.min_rtt_at.saturating_add(MIN_RTT_WINDOW);
        if let Some(r) = rs.rtt
            && (r < self.min_rtt || expired)
        {
            self.min_rtt = r;
            self.min_rtt_at = now;
        }
        if expired && self.mode != Mode::ProbeRtt && self.min_rtt != u64::MAX {
            self.mode = Mode::ProbeRtt;
            self.pacing_gain = 1.0;
            self.cwnd_gain = 1.0;
            self.prior_cwnd = self.prior_cwnd.max(self.cwnd);
            self.probe_rtt_done_at = 0;
        }
        if self.mode == Mode::ProbeRtt {
            if self.probe_rtt_done_at == 0 && inflight <= MIN_CWND {
                self.probe_rtt_done_at = now + PROBE_RTT_TIME;
                self.probe_rtt_round_done = false;
                self.next_round_delivered = delivered;
            } else if self.probe_rtt_done_at != 0 {
                if self.round_start {
                    self.probe_rtt_round_done = true;
                }
                if self.probe_rtt_round_done && now > self.probe_rtt_done_at {
                    self.min_rtt_at = now;
                    self.cwnd = self.cwnd.max(self.prior_cwnd);
                    self.prior_cwnd = 0;
                    if self.full_bw_reached {
                        self.enter_probe_bw(now);
                    } else {
                        self.mode = Mode::Startup;
                        self.pacing_gain = STARTUP_GAIN;
                        self.cwnd_gain = STARTUP_GAIN;
                    }
                }
            }
        }
        self.update_ack_aggregation(now, rs);
        self.set_pacing(mss);
        self.set_cwnd(rs, delivered, inflight);
    }

    /// Estimates how many packets arrive in bursts beyond the delivery rate (receivers
    /// and schedulers batch ACKs; on a busy host or loopback the bursts dwarf the
    /// tiny BDP) so that cwnd leaves room for them (spec §1.12, Linux BBR).
    fn update_ack_aggregation(&mut self, now: u64, rs: &RateSample) {
        if rs.acked == 0 {
            return;
        }
        if self.round_start {
            self.extra_acked_rounds = (self.extra_acked_rounds + 1).min(31);
            if self.extra_acked_rounds >= EXTRA_ACKED_WIN_ROUNDS {
                self.extra_acked_rounds = 0;
                self.extra_acked_idx ^= 1;
                self.extra_acked[self.extra_acked_idx] = 0;
            }
        }
        let epoch = now.saturating_sub(self.ack_epoch_at) as f64;
        let mut expected = (self.max_bw() * epoch) as u64;
        if self.ack_epoch_acked <= expected
            || self.ack_epoch_acked + u64::from(rs.acked) >= ACK_EPOCH_RESET
        {
            self.ack_epoch_acked = 0;
            self.ack_epoch_at = now;
            expected = 0;
        }
        self.ack_epoch_acked = (self.ack_epoch_acked + u64::from(rs.acked)).min(0xF_FFFF);
        let extra = self.ack_epoch_acked.saturating_sub(expected).min(u64::from(self.cwnd)) as u32;
        let slot = &mut self.extra_acked[self.extra_acked_idx];
        *slot = (*slot).max(extra);
    }

    /// The ACK-aggregation allowance, once the bandwidth estimate is settled.
    fn aggregation_cwnd(&self) -> u32 {
        if !self.full_bw_reached {
            return 0;
        }
        let cap = (self.max_bw() * EXTRA_ACKED_MAX as f64) as u64;
        let extra = u64::from(self.extra_acked[0].max(self.extra_acked[1]));
        extra.min(cap).min(u64::from(MAX_CWND)) as u32
    }

    fn enter_probe_bw(&mut self, now: u64) {
        self.mode = Mode::ProbeBw;
        self.cwnd_gain = PROBE_BW_CWND_GAIN;
        // Spec: entering PROBE_BW starts at index 3 and advances at once.
        self.cycle_idx = 4;
        self.cycle_at = now;
        self.pacing_gain = CYCLE[self.cycle_idx];
    }

    fn next_phase(&self, now: u64, rs: &RateSample, inflight: u32) -> bool {
        let full = self.min_rtt != u64::MAX && now.saturating_sub(self.cycle_at) > self.min_rtt;
        let gain = self.pacing_gain;
        if gain > 1.0 {
            full && (rs.losses > 0 || inflight >= self.bdp(gain))
        } else if gain < 1.0 {
            full || inflight <= self.bdp(1.0)
        } else {
            full
        }
    }

    fn set_pacing(&mut self, mss: usize) {
        let bw = self.max_bw();
        if bw <= 0.0 {
            return;
        }
        let rate = (bw * mss as f64 * self.pacing_gain * 0.99).max(1e-6);
        if self.full_bw_reached || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
    }

    fn set_cwnd(&mut self, rs: &RateSample, delivered: u64, inflight: u32) {
        if rs.losses > 0 {
            self.cwnd = self.cwnd.saturating_sub(rs.losses).max(1);
        }
        if self.conservation {
            if delivered >= self.conservation_round_end {
                self.conservation = false;
            } else {
                self.cwnd = self.cwnd.max(inflight + rs.acked);
                return;
            }
        }
        let mut target = self.bdp(self.cwnd_gain).saturating_add(self.aggregation_cwnd());
        target = (target + QUANTIZATION_BUDGET).max(MIN_CWND);
        if self.mode == Mode::ProbeBw && self.cycle_idx == 0 {
            target += 2;
        }
        if self.full_bw_reached {
            self.cwnd = (self.cwnd + rs.acked).min(target);
        } else if self.cwnd < target || delivered < u64::from(INITIAL_CWND) {
            self.cwnd += rs.acked;
        }
        self.cwnd = self.cwnd.clamp(MIN_CWND, MAX_CWND);
        if self.mode == Mode::ProbeRtt {
            self.cwnd = self.cwnd.min(MIN_CWND);
        }
    }

    /// OPEN -> RECOVERY: packet conservation for one round.
    pub(crate) fn on_enter_recovery(&mut self, inflight: u32, delivered: u64) {
        self.prior_cwnd = self.cwnd;
        self.cwnd = inflight.max(1);
        self.conservation = true;
        self.conservation_round_end = delivered + u64::from(inflight.max(1));
    }

    /// RECOVERY/LOSS -> OPEN: restore the saved window.
    pub(crate) fn on_exit_recovery(&mut self) {
        self.cwnd = self.cwnd.max(self.prior_cwnd);
        self.prior_cwnd = 0;
        self.conservation = false;
    }

    /// An RTO: restart from one packet, forget the full-bandwidth estimate, new round.
    pub(crate) fn on_rto(&mut self, delivered: u64) {
        if self.prior_cwnd == 0 {
            self.prior_cwnd = self.cwnd;
        }
        self.cwnd = 1;
        self.full_bw = 0.0;
        self.full_bw_cnt = 0;
        self.next_round_delivered = delivered;
        self.conservation = false;
    }

    /// Re-derive the initial pacing rate once the first RTT sample exists.
    pub(crate) fn on_first_rtt(&mut self, mss: usize, srtt: u64) {
        if self.max_bw() <= 0.0 {
            self.init_pacing(mss, Some(srtt));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_grows_cwnd_by_acked() {
        let mut b = Bbr::new(1152);
        assert_eq!(b.cwnd, 10);
        let rs = RateSample {
            prior_delivered: 0,
            bw: Some(0.00001),
            app_limited: false,
            acked: 5,
            losses: 0,
            rtt: Some(10 * MS),
        };
        b.on_ack(10 * MS, &rs, 5, 5, 1152);
        assert!(b.cwnd >= 10);
        assert!(b.pacing_rate > 0.0);
    }
}
