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
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

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
    /// The thread's OS thread id (0 until it runs), so observers can read its CPU time
    /// from the OS (`/proc/self/task/<tid>`) at no cost to the loop.
    pub(crate) os_tid: AtomicI32,
}

impl ThreadShared {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            waker: Waker::new()?,
            stop: AtomicBool::new(false),
            endpoints: AtomicUsize::new(0),
            stats: SharedStats::default(),
            os_tid: AtomicI32::new(0),
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

    /// Consumer side: clears the eventfd, then re-arms wake-ups. Call before draining.
    ///
    /// The order matters. Clearing `pending` first would let a producer's `wake` land
    /// between the two steps: it sets `pending` and writes, the read below swallows
    /// that write, and `pending` stays set with the counter at 0 — every later `wake`
    /// then skips its write and the thread never drains its mailbox again (a lost
    /// wake-up, seen as a hung `Dht::destroy`). Reading first means a write that races
    /// the re-arm is either consumed together with a message the drain will see, or
    /// lands after the re-arm and wakes the next wait.
    pub(crate) fn reset(&self) {
        self.clear_counter();
        self.rearm();
    }

    /// First half of [`Waker::reset`]: empties the eventfd counter.
    fn clear_counter(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads 8 bytes into a live 8-byte buffer. EAGAIN (counter already 0)
        // is fine and ignored.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    }

    /// Second half of [`Waker::reset`]: lets the next `wake` write again.
    fn rearm(&self) {
        self.pending.swap(false, Ordering::AcqRel);
    }

    /// Whether the eventfd counter is non-zero (a wait would return). Tests only.
    #[cfg(test)]
    fn is_signalled(&self) -> bool {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: polls one valid pollfd with a zero timeout.
        unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
    }

    fn write(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live 8-byte buffer. EAGAIN (counter at its
        // maximum) means a wake-up is pending anyway, so it is ignored.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::Waker;

    /// A producer's `wake` racing the consumer's reset must never leave the waker
    /// disarmed: after the consumer drains, the next `wake` has to signal the fd.
    #[test]
    fn a_wake_racing_the_reset_is_never_lost() {
        let w = Waker::new().unwrap();
        w.wake(); // a message arrived; the wait returns
        w.clear_counter(); // consumer, first half of reset
        w.wake(); // producer races in: already pending, skips its write
        w.rearm(); // consumer, second half; then it drains and sees that message
        assert!(!w.is_signalled());
        w.wake(); // the next message after the drain
        assert!(w.is_signalled(), "the next wake must reach the event loop");
        w.reset();
        assert!(!w.is_signalled());
        w.wake();
        assert!(w.is_signalled());

        // The order `reset` must not use: re-arming before clearing swallows the racing
        // write and leaves `pending` set, so the next wake is lost.
        let bad = Waker::new().unwrap();
        bad.wake();
        bad.rearm();
        bad.wake();
        bad.clear_counter();
        bad.wake();
        assert!(!bad.is_signalled(), "this interleaving is the bug the order prevents");
    }
}
