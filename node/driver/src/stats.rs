//! Counters of one driver thread ([`DriverStats`]) and their shared, atomic mirror.
//!
//! The loop counts into a plain struct (no atomics on the hot path) and publishes a
//! copy into relaxed atomics once per turn, so any thread can read a recent snapshot
//! through [`crate::Driver::stats`] at the cost of a few stores per turn. Remote input
//! problems (truncated datagrams, send failures) end up here, never in `Err`s or logs
//! (DESIGN.md principle 3, "counters in Stats, not in logs").

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! stats {
    ($($(#[doc = $doc:literal])* $field:ident,)*) => {
        /// Counters of a driver thread, or their sum over threads.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct DriverStats {
            $($(#[doc = $doc])* pub $field: u64,)*
        }

        /// The atomic mirror of [`DriverStats`] a driver thread publishes into.
        #[derive(Debug, Default)]
        pub(crate) struct SharedStats {
            $($field: AtomicU64,)*
        }

        impl SharedStats {
            /// Stores `s` (relaxed: readers want a recent value, not a fence).
            pub(crate) fn publish(&self, s: &DriverStats) {
                $(self.$field.store(s.$field, Ordering::Relaxed);)*
            }

            /// The last published values.
            pub(crate) fn snapshot(&self) -> DriverStats {
                DriverStats { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }

        impl std::ops::AddAssign for DriverStats {
            fn add_assign(&mut self, o: Self) {
                $(self.$field = self.$field.saturating_add(o.$field);)*
            }
        }
    };
}

stats! {
    /// Loop turns (one wait each).
    turns,
    /// Whole datagrams handed to endpoints.
    datagrams_received,
    /// Payload bytes handed to endpoints.
    bytes_received,
    /// Datagrams longer than a receive slot, dropped.
    recv_truncated,
    /// Receive calls that failed (e.g. a pending socket error).
    recv_errors,
    /// Times the work limiter stopped reading a socket before it was drained.
    recv_limited,
    /// Datagrams the kernel accepted.
    datagrams_sent,
    /// Datagrams the kernel rejected (bad destination, EMSGSIZE ...), dropped.
    send_failed,
    /// Times a send buffer filled up and datagrams were parked until writable.
    send_blocked,
    /// Datagrams dropped because a socket's parked backlog was full or closed.
    backlog_dropped,
    /// Datagrams queued for a socket id the endpoint does not own, dropped.
    tx_unknown_socket,
    /// Commands delivered to endpoints.
    commands,
    /// Commands for endpoints that had already closed, dropped.
    commands_dropped,
    /// `handle_timeout` calls.
    timeouts,
    /// Endpoints started on this thread.
    endpoints_added,
    /// Endpoints removed after `is_closed()` turned true.
    endpoints_closed,
    /// Endpoints whose sockets could not be registered with the event loop.
    endpoints_failed,
    /// Sockets opened at run time (`SocketOp::Open`).
    sockets_opened,
    /// Run-time sockets closed (`SocketOp::Close`).
    sockets_closed,
    /// Run-time opens refused (the per-endpoint cap, EMFILE ...), reported to the
    /// endpoint.
    sockets_refused,
    /// Times an endpoint had more socket ops than one settle applies.
    socket_ops_limited,
}
