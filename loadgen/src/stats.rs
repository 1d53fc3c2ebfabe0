//! Per-operation outcome counts and latency histograms, and their two renderings:
//! JSON lines for machines and a table for people.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, 1 µs .. 60 s, 3 significant digits.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Outcomes and latencies of one operation kind.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Operation name (`ping`, `lookup`...).
    pub name: String,
    /// Latency of successful operations, µs.
    pub latency: Histogram<u64>,
    /// Operations sent (or started).
    pub sent: u64,
    /// Answered without error within the timeout.
    pub ok: u64,
    /// Not answered within the timeout.
    pub timeouts: u64,
    /// Answered with an error code (code -> count).
    pub errors: BTreeMap<u64, u64>,
    /// Answered, but wrong (e.g. a lookup missing a record known to be announced).
    pub wrong: u64,
    /// Malformed datagrams sent alongside (`raw --malformed`); not operations.
    pub malformed: u64,
    /// Wall seconds this operation's phase took, when it is not the run's duration
    /// (peers joining); rates are per this many seconds.
    pub elapsed: Option<f64>,
}

impl OpStats {
    /// Empty stats for `name`.
    #[allow(clippy::expect_used)] // constant, valid bounds: creation cannot fail
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("1 µs..60 s at 3 significant digits is a valid histogram"),
            sent: 0,
            ok: 0,
            timeouts: 0,
            errors: BTreeMap::new(),
            wrong: 0,
            malformed: 0,
            elapsed: None,
        }
    }

    /// Records a success after `us` microseconds.
    pub fn record_ok(&mut self, us: u64) {
        self.ok += 1;
        let _ = self.latency.record(us.clamp(1, MAX_LATENCY_US));
    }

    /// Records an error reply.
    pub fn record_error(&mut self, code: u64) {
        *self.errors.entry(code).or_default() += 1;
    }

    /// Everything, histogram included, for merging runs of several processes.
    pub fn to_raw(&self) -> RawStats {
        RawStats {
            op: self.name.clone(),
            sent: self.sent,
            ok: self.ok,
            timeouts: self.timeouts,
            errors: self.errors.clone(),
            wrong: self.wrong,
            elapsed: self.elapsed,
            latency: self
                .latency
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        }
    }

    /// Adds another process's counts and latencies; the phase took the longer of both.
    pub fn absorb(&mut self, raw: &RawStats) {
        self.sent += raw.sent;
        self.ok += raw.ok;
        self.timeouts += raw.timeouts;
        self.wrong += raw.wrong;
        for (code, n) in &raw.errors {
            *self.errors.entry(*code).or_default() += n;
        }
        for &(us, n) in &raw.latency {
            let _ = self.latency.record_n(us.clamp(1, MAX_LATENCY_US), n);
        }
        self.elapsed = match (self.elapsed, raw.elapsed) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The machine-readable summary.
    pub fn summary(&self, seconds: f64) -> Summary {
        let seconds = self.elapsed.unwrap_or(seconds);
        let q =
            |p: f64| if self.latency.is_empty() { 0 } else { self.latency.value_at_quantile(p) };
        let errors: u64 = self.errors.values().sum();
        Summary {
            op: self.name.clone(),
            sent: self.sent,
            ok: self.ok,
            timeouts: self.timeouts,
            errors,
            wrong: self.wrong,
            malformed: self.malformed,
            ok_ratio: if self.sent == 0 { 0.0 } else { self.ok as f64 / self.sent as f64 },
            rate: if seconds > 0.0 { self.ok as f64 / seconds } else { 0.0 },
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.latency.max(),
            seconds,
        }
    }
}

/// An [`OpStats`] in full (latencies as (µs, count) buckets), as a child process of
/// `peers --processes N` prints it for its parent to merge.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RawStats {
    /// Operation.
    pub op: String,
    /// Sent or started.
    pub sent: u64,
    /// Succeeded.
    pub ok: u64,
    /// Timed out.
    pub timeouts: u64,
    /// Error code -> count.
    pub errors: BTreeMap<u64, u64>,
    /// Wrong answers.
    pub wrong: u64,
    /// Phase seconds, if not the run's duration.
    pub elapsed: Option<f64>,
    /// (latency µs, count) of every recorded histogram bucket.
    pub latency: Vec<(u64, u64)>,
}

/// One line of results.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    /// Operation.
    pub op: String,
    /// Sent or started.
    pub sent: u64,
    /// Succeeded within the timeout.
    pub ok: u64,
    /// Timed out.
    pub timeouts: u64,
    /// Error replies.
    pub errors: u64,
    /// Wrong answers.
    pub wrong: u64,
    /// Malformed datagrams sent alongside the operations (garbage flood).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub malformed: u64,
    /// ok / sent.
    pub ok_ratio: f64,
    /// Successful operations per second.
    pub rate: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Worst, µs.
    pub max_us: u64,
    /// Seconds the rate is over (the run's duration, or the phase's own length).
    #[serde(default)]
    pub seconds: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Renders summaries as a fixed-width table.
pub fn table(rows: &[Summary]) -> String {
    let mut out = format!(
        "{:<12} {:>10} {:>10} {:>8} {:>7} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "op",
        "sent",
        "ok",
        "timeout",
        "error",
        "wrong",
        "ok/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<12} {:>10} {:>10} {:>8} {:>7} {:>7} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            r.op,
            r.sent,
            r.ok,
            r.timeouts,
            r.errors,
            r.wrong,
            r.rate,
            fmt_us(r.p50_us),
            fmt_us(r.p90_us),
            fmt_us(r.p99_us),
            fmt_us(r.p999_us),
            fmt_us(r.max_us)
        ));
    }
    out
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000 { format!("{:.1}ms", us as f64 / 1000.0) } else { format!("{us}µs") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_quantiles() {
        let mut s = OpStats::new("ping");
        s.sent = 4;
        for us in [100, 200, 300] {
            s.record_ok(us);
        }
        s.timeouts = 1;
        let sum = s.summary(1.0);
        assert_eq!((sum.ok, sum.timeouts), (3, 1));
        assert!((sum.ok_ratio - 0.75).abs() < 1e-9);
        assert!(sum.p50_us >= 199 && sum.p50_us <= 201);
        assert!(table(&[sum]).contains("ping"));
    }

    #[test]
    fn merged_processes_add_up_and_keep_the_tail() {
        let mut a = OpStats::new("lookup");
        a.sent = 3;
        a.elapsed = Some(2.0);
        [100, 200, 300].into_iter().for_each(|us| a.record_ok(us));
        let mut b = OpStats::new("lookup");
        b.sent = 2;
        b.wrong = 1;
        b.record_error(16);
        b.record_ok(50_000);
        b.elapsed = Some(4.0);
        let mut merged = OpStats::new("lookup");
        merged.absorb(&a.to_raw());
        merged.absorb(&b.to_raw());
        let s = merged.summary(10.0);
        assert_eq!((s.sent, s.ok, s.wrong, s.errors), (5, 4, 1, 1));
        assert!(s.max_us >= 49_000, "the slow process's tail survives the merge");
        assert!((s.seconds - 4.0).abs() < 1e-9 && (s.rate - 1.0).abs() < 1e-9);
        let json = serde_json::to_string(&b.to_raw()).unwrap();
        assert_eq!(serde_json::from_str::<RawStats>(&json).unwrap(), b.to_raw());
    }
}
