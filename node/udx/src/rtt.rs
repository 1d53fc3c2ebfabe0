//! RTT estimation (spec §1.11): RFC 6298 smoothing in integer milliseconds like libudx,
//! an outlier clamp, and the windowed minimum RTT that RACK's reordering window uses.

/// Nanoseconds per millisecond.
pub(crate) const MS: u64 = 1_000_000;
/// Initial RTO and its floor.
const RTO_MIN_MS: u64 = 1000;
/// RTO ceiling.
const RTO_MAX_MS: u64 = 30_000;
/// Outlier threshold (spec: samples above srtt + 5*rttvar and 5000 ms are clamped).
const OUTLIER_MS: u64 = 5000;
/// Window of the minimum-RTT filter used for RACK (300 s).
const MIN_RTT_WINDOW: u64 = 300_000 * MS;

/// RTT estimator of one stream.
#[derive(Debug, Clone)]
pub(crate) struct Rtt {
    /// Smoothed RTT in ns (0 before the first sample).
    pub srtt: u64,
    rttvar: u64,
    /// Retransmission timeout in ns.
    pub rto: u64,
    /// Windowed minimum RTT in ns (`u64::MAX` before the first sample).
    pub min_rtt: u64,
    min_rtt_at: u64,
    /// At least one sample was taken.
    pub has_sample: bool,
}

impl Rtt {
    pub(crate) fn new() -> Self {
        Self {
            srtt: 0,
            rttvar: 0,
            rto: RTO_MIN_MS * MS,
            min_rtt: u64::MAX,
            min_rtt_at: 0,
            has_sample: false,
        }
    }

    /// Feeds one sample (ns) from a never-retransmitted packet (Karn).
    pub(crate) fn sample(&mut self, now: u64, r: u64) {
        // libudx keeps whole milliseconds; we keep ns but apply its rules. Sub-ms
        // loopback RTTs therefore stay visible to BBR and RACK.
        let mut r = r.max(1);
        if self.has_sample {
            let bound = self.srtt + 5 * self.rttvar;
            if r > bound && r > OUTLIER_MS * MS {
                r = bound.min(RTO_MAX_MS * MS);
            }
            let diff = self.srtt.abs_diff(r);
            self.rttvar = (3 * self.rttvar + diff) / 4;
            self.srtt = (7 * self.srtt + r) / 8;
        } else {
            self.srtt = r;
            self.rttvar = r / 2;
            self.has_sample = true;
        }
        self.rto = (self.srtt + 4 * self.rttvar).clamp(RTO_MIN_MS * MS, RTO_MAX_MS * MS);
        if r <= self.min_rtt || now.saturating_sub(self.min_rtt_at) > MIN_RTT_WINDOW {
            self.min_rtt = r;
            self.min_rtt_at = now;
        }
    }

    /// RACK's reordering window: `min(min_rtt/4, srtt)`, zero without samples.
    pub(crate) fn reo_wnd(&self) -> u64 {
        if self.has_sample { (self.min_rtt / 4).min(self.srtt) } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_and_floor() {
        let mut r = Rtt::new();
        assert_eq!(r.rto, 1000 * MS);
        r.sample(0, 100 * MS);
        assert_eq!(r.srtt, 100 * MS);
        assert_eq!(r.rto, 1000 * MS);
        r.sample(0, 900 * MS);
        assert_eq!(r.srtt, 200 * MS);
        assert_eq!(r.rto, 1150 * MS);
        assert_eq!(r.min_rtt, 100 * MS);
    }
}
