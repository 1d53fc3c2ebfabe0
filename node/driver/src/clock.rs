//! The driver's monotonic clock.
//!
//! One `Instant` taken when the driver starts is the epoch of every [`Timestamp`] it
//! hands to endpoints, on every thread, so timestamps from different driver threads
//! (and from [`crate::Driver::now`], used to build endpoints before spawning them)
//! compare meaningfully.

use std::time::Instant;

use tern_base::Timestamp;

/// A monotonic clock whose epoch is the driver's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub(crate) fn new() -> Self {
        Self { epoch: Instant::now() }
    }

    /// Now, as a timestamp since the epoch (saturating after ~584 years).
    pub(crate) fn now(&self) -> Timestamp {
        let nanos = self.epoch.elapsed().as_nanos();
        Timestamp::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}
