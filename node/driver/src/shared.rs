//! What a driver thread shares with the threads that talk to it: the mailbox message
//! type, the eventfd [`Waker`] that interrupts its wait, its stop flag, its endpoint
//! count and its published stats.
//!
//! The mailbox itself is a bounded crossbeam channel (DESIGN.md "shards talk through
//! bounded crossbeam queues woken by an eventfd"); its capacity is the limit on
//! queued commands, so a flood of client calls turns into `SendError::Full` at the
//! caller instead of unbounded memory in the driver.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tern_base::{Endpoint, SocketId};
use tern_udp::UdpSocket;

use crate::stats::SharedStats;

/// A message to a driver thread.
pub(crate) enum Msg<E: Endpoint> {
    /// A command for the endpoint with this id.
    Command { id: u64, command: E::Command },
    /// A new endpoint whose sockets are already bound.
    Add(Box<NewEndpoint<E>>),
}

/// An endpoint on its way to a driver thread.
pub(crate) struct NewEndpoint<E> {
    pub(crate) id: u64,
    pub(crate) endpoint: E,
    /// Bound sockets in the order of `Endpoint::sockets`.
    pub(crate) sockets: Vec<(SocketId, UdpSocket)>,
    /// Cleared when the endpoint is gone, so handles can refuse commands early.
    pub(crate) alive: Arc<AtomicBool>,
}

/// State shared between one driver thread and everyone who talks to it.
#[derive(Debug)]
pub(crate) struct ThreadShared {
    pub(crate) waker: Waker,
    /// Set by `Driver::shutdown`/drop; the thread exits at the end of its turn.
    pub(crate) stop: AtomicBool,
    /// Endpoints on the thread, counted at spawn so the per-thread limit holds even
    /// while `Add` messages are still in flight.
    pub(crate) endpoints: AtomicUsize,
    pub(crate) stats: SharedStats,
}

impl ThreadShared {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            waker: Waker::new()?,
            stop: AtomicBool::new(false),
            endpoints: AtomicUsize::new(0),
            stats: SharedStats::default(),
        })
    }
}

/// An eventfd that wakes a driver thread out of its wait.
///
/// `pending` coalesces wake-ups: under load, thousands of commands per turn cost one
/// `write(2)`, not one each. Protocol: a producer sends into the channel, then
/// [`Waker::wake`]s; the consumer calls [`Waker::reset`] *before* draining the channel.
/// Both sides use read-modify-write swaps on `pending`, so a producer that saw
/// `pending == true` (and skipped the write) synchronises with the consumer's reset,
/// and the consumer's subsequent drain sees its message.
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant flags; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd, pending: AtomicBool::new(false) })
    }

    /// The descriptor the event loop watches for readability.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Wakes the thread unless a wake-up is already pending.
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.write();
        }
    }

    /// Wakes the thread unconditionally (stop requests).
    pub(crate) fn force_wake(&self) {
        self.pending.store(true, Ordering::Release);
        self.write();
    }

    /// Consumer side: re-arms wake-ups and clears the eventfd. Call before draining.
    pub(crate) fn reset(&self) {
        self.pending.swap(false, Ordering::AcqRel);
        let mut buf = [0u8; 8];
        // SAFETY: reads 8 bytes into a live 8-byte buffer. EAGAIN (counter already 0)
        // is fine and ignored.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    }

    fn write(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live 8-byte buffer. EAGAIN (counter at its
        // maximum) means a wake-up is pending anyway, so it is ignored.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
}
