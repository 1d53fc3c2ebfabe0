//! The syscall seam between the backend-independent loop (`shard`) and an OS event
//! mechanism.
//!
//! The loop turn — deliver received batches, run due timers, flush transmit queues —
//! lives in `shard` and is written once. A [`Backend`] answers "what is ready" and
//! "send this batch"; its [`RecvSource`] hands out received datagrams of one socket,
//! batch by batch. The two shapes of kernel interface fit behind it like this:
//!
//! - readiness ([`epoll::Epoll`]): `wait` reports readable sockets, and the source — a
//!   plain [`RecvBatch`] — fills each batch with one `recvmmsg` when asked;
//! - completion ([`uring::Uring`]): the kernel has already received datagrams into
//!   provided buffers when `wait` returns; `wait` files them per socket into the
//!   source ([`uring::UringRx`]), reports those sockets readable, and the source's
//!   batches are views of the filled buffers (no syscall, no copy).
//!
//! Either way the shard reads a readable socket in batches within its work limits and
//! stops at a short batch, so the turn code cannot tell which backend it runs on.
//! The receive source is a separate value from the backend so the shard can hand a
//! batch's datagrams to an endpoint while flushing replies through the backend.

use std::io;
use std::iter::Peekable;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use tern_udp::{OutDatagram, RecvBatch, RxDatagram, SendBatch, SendOutcome, UdpSocket};

pub(crate) mod epoll;
pub(crate) mod uring;

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

/// Where a shard's received datagrams come from: one batch at a time, per socket.
pub(crate) trait RecvSource {
    /// Replaces the current batch with up to [`RecvSource::slots`] datagrams of
    /// `socket` (registered as `token`); `Ok(0)` when nothing is waiting. The previous
    /// batch's datagrams are gone after this call.
    fn recv(&mut self, token: u64, socket: &UdpSocket) -> io::Result<usize>;

    /// The whole datagrams of the current batch, in arrival order (truncated ones are
    /// counted in [`RecvSource::truncated`] and skipped).
    fn datagrams(&self) -> impl Iterator<Item = RxDatagram<'_>>;

    /// Datagrams of the current batch that were longer than a slot.
    fn truncated(&self) -> usize;

    /// Most datagrams one batch holds: a batch shorter than this means the socket had
    /// nothing more a moment ago.
    fn slots(&self) -> usize;
}

/// The readiness backend's source: one `recvmmsg` per batch.
impl RecvSource for RecvBatch {
    fn recv(&mut self, _token: u64, socket: &UdpSocket) -> io::Result<usize> {
        RecvBatch::recv(self, socket.as_fd())
    }

    fn datagrams(&self) -> impl Iterator<Item = RxDatagram<'_>> {
        self.iter()
    }

    fn truncated(&self) -> usize {
        RecvBatch::truncated(self)
    }

    fn slots(&self) -> usize {
        RecvBatch::slots(self)
    }
}

/// The OS-facing half of a driver thread.
pub(crate) trait Backend {
    /// Where received datagrams are read from.
    type Rx: RecvSource;

    /// Starts watching the mailbox's eventfd `fd`; its wake-ups are reported as
    /// readable `token`.
    fn register_waker(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()>;

    /// Starts receiving on socket `fd`; its events carry `token`.
    fn register(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()>;

    /// Starts or stops also watching `fd` for writability (only while a socket has
    /// parked datagrams: asking for it always would wake the loop constantly). While
    /// on, every wait in which the socket is writable reports it (level-triggered).
    fn set_writable(&mut self, fd: BorrowedFd<'_>, token: u64, on: bool) -> io::Result<()>;

    /// Stops watching `fd`. When it returns, the backend holds no reference to the
    /// socket any more, so closing `fd` really closes it (the port is free again).
    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()>;

    /// Sleeps until something is ready or `timeout` passes (`None`: no timeout) and
    /// appends what is ready to `ready`, leaving received data in `rx`. Never returns
    /// earlier than an event or the timeout, except on a signal (EINTR), which yields
    /// no events. A socket whose data the shard left unread (work limiter) is reported
    /// again without sleeping.
    fn wait(
        &mut self,
        timeout: Option<Duration>,
        rx: &mut Self::Rx,
        ready: &mut Vec<Ready>,
    ) -> io::Result<()>;

    /// Sends up to one batch of `items` from `socket`, runs of equal datagrams to one
    /// peer as GSO messages where the socket allows (see
    /// [`SendBatch::send_segmented`]). The payloads are no longer referenced when it
    /// returns; items peeked but not sent stay in `items`.
    fn send<'a, I>(
        &mut self,
        socket: &UdpSocket,
        batch: &mut SendBatch,
        items: &mut Peekable<I>,
    ) -> SendOutcome
    where
        I: Iterator<Item = OutDatagram<'a>>;
}
