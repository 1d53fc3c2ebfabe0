//! The syscall seam between the backend-independent loop (`shard`) and an OS event
//! mechanism.
//!
//! The loop turn — deliver received batches, run due timers, flush transmit queues —
//! lives in `shard` and is written once. A [`Backend`] only answers "what is ready",
//! "give me a batch from this socket" and "send this batch". The portable backend is
//! [`epoll::Epoll`] (readiness + recvmmsg/sendmmsg); the io_uring backend (later)
//! implements the same trait by completing operations inside `wait` and handing out
//! finished batches from `recv`, so the shard never learns which one it runs on.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use tern_udp::{OutDatagram, RecvBatch, SendBatch, SendOutcome, UdpSocket};

pub(crate) mod epoll;

/// One ready source reported by [`Backend::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The token it was registered with.
    pub(crate) token: u64,
    /// Data (or a socket error, which a read consumes) is waiting.
    pub(crate) readable: bool,
    /// The send buffer has room again (only reported while asked for).
    pub(crate) writable: bool,
}

/// The OS-facing half of a driver thread.
pub(crate) trait Backend {
    /// Starts watching `fd` for readability; its events carry `token`.
    fn register(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()>;

    /// Starts or stops also watching `fd` for writability (only while a socket has
    /// parked datagrams: asking for it always would wake the loop constantly).
    fn set_writable(&mut self, fd: BorrowedFd<'_>, token: u64, on: bool) -> io::Result<()>;

    /// Stops watching `fd` (before it is closed).
    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()>;

    /// Sleeps until something is ready or `timeout` passes (`None`: no timeout) and
    /// appends what is ready to `ready`. Never returns earlier than an event or the
    /// timeout, except on a signal (EINTR), which yields no events.
    fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<Ready>) -> io::Result<()>;

    /// Fills `batch` from `socket`; `Ok(0)` when nothing is waiting.
    fn recv(&mut self, socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<usize>;

    /// Sends up to one batch of `items` from `socket` (see [`SendBatch::send`]).
    fn send<'a, I>(
        &mut self,
        socket: &UdpSocket,
        batch: &mut SendBatch,
        items: &mut I,
    ) -> SendOutcome
    where
        I: Iterator<Item = OutDatagram<'a>>;
}
