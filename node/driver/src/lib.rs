//! tern-driver: runs sans-IO endpoints on real UDP sockets (DESIGN.md "One core,
//! three drivers").
//!
//! Two backends run the same loop: io_uring (multishot RECVMSG on a provided-buffer
//! ring, batched SENDMSG, one submit-and-wait per turn) and the portable one —
//! level-triggered epoll with recvmmsg/sendmmsg batches — for hosts where io_uring is
//! unavailable (Docker's default seccomp profile blocks it). [`IoMode::Auto`] probes
//! io_uring once and falls back with one warning naming the cause; the choice is in
//! the startup log line and [`Driver::backend`]. Each driver thread runs many
//! [`tern_base::Endpoint`]s (one DHT node, or
//! thousands of loadgen peers): it binds their sockets, stamps each received batch
//! once with the driver's clock, feeds datagrams, commands and timeouts in, and sends
//! what they queue. Other threads reach an endpoint only through its bounded mailbox
//! ([`EndpointHandle::send`]).
//!
//! Layout: `shard` is the backend-independent loop turn (deliver batches → timers →
//! flush) and `backend` the small syscall seam it runs on (`Backend`: wait, send a
//! batch; `RecvSource`: the next received batch of a socket), with `epoll` and
//! `uring` behind it; `io` chooses between them.
//! `timers` keeps deadlines in a lazily-pruned min-heap so a turn never scans all
//! endpoints; `shared` has the mailbox message type and the eventfd waker.
//!
//! What it is not: no protocol logic (that is in the cores) and no sharding policy.
//! It offers the pieces — [`DriverBuilder::pin_threads`], `reuse_port` sockets,
//! [`Driver::spawn_endpoint_on`] a given thread, bounded mailboxes between threads —
//! and the `tern` crate builds the thread-per-core node from them (one endpoint per
//! pinned thread, all on one SO_REUSEPORT port).

#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod backend;
mod builder;
mod clock;
mod driver;
mod io;
mod shard;
mod shared;
mod stats;
mod timers;

pub use builder::{
    BACKLOG_BYTES, BACKLOG_DATAGRAMS, COMMANDS_PER_TURN, DATAGRAMS_PER_SOCKET, DriverBuilder,
    MAILBOX_CAPACITY, MAX_ENDPOINTS_PER_THREAD, TIME_PER_SOCKET, TIMEOUTS_PER_TURN, TX_CAPACITY,
    WorkLimits,
};
pub use driver::{
    Driver, DriverError, EndpointHandle, MAX_SOCKETS_PER_ENDPOINT, SendError, SpawnError,
};
pub use io::{IoBackend, IoMode, ParseIoModeError, UringUnavailable};
pub use shard::MAX_RUNTIME_SOCKETS;
pub use stats::DriverStats;
/// The receive slot length: the longest datagram a node built on this driver receives
/// whole (libudx, under the JS reference, receives into a buffer of the same size).
pub use tern_udp::DEFAULT_SLOT_LEN as MAX_DATAGRAM_LEN;
pub use tern_udp::SocketOptions;
