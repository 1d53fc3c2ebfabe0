//! Monotonic time as a value.
//!
//! A [`Timestamp`] is a count of nanoseconds since an arbitrary epoch chosen by the
//! driver (process start for real drivers, zero for the simulator). Only differences
//! between timestamps of the same driver mean anything. Arithmetic saturates instead of
//! panicking, so a clock that jumps or a huge timeout can never crash a core.

use std::time::Duration;

/// A point on a driver's monotonic clock, in nanoseconds since the driver's epoch.
///
/// Invariant: only comparable with timestamps from the same driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The driver's epoch.
    pub const ZERO: Self = Self(0);
    /// A point later than any real deadline; used for "no deadline".
    pub const NEVER: Self = Self(u64::MAX);

    /// A timestamp `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// A timestamp `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// `self + d`, saturating at [`Timestamp::NEVER`].
    pub fn saturating_add(self, d: Duration) -> Self {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(nanos))
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        self.saturating_add(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(5);
        assert_eq!(t + Duration::from_millis(3), Timestamp::from_millis(8));
        assert_eq!(Timestamp::NEVER + Duration::from_secs(1), Timestamp::NEVER);
        assert_eq!(t + Duration::MAX, Timestamp::NEVER);
        assert_eq!(t.saturating_since(Timestamp::from_millis(9)), Duration::ZERO);
        assert_eq!(Timestamp::from_millis(9).saturating_since(t), Duration::from_millis(4));
        assert_eq!(Timestamp::from_millis(u64::MAX), Timestamp::NEVER);
    }
}
