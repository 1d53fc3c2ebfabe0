//! [`Epoll`]: the portable backend — level-triggered epoll plus recvmmsg/sendmmsg.
//!
//! Why level-triggered: the work limiter deliberately leaves a busy socket undrained
//! at the end of its share of a turn. With level triggering the next `epoll_wait`
//! reports it again by itself, so fairness costs no bookkeeping; edge triggering
//! would need a list of "still readable" sockets carried across turns, and forgetting
//! one would stall it forever. The price — one more report per ready socket per turn —
//! is nothing next to the recvmmsg that follows. Writability is only requested while a
//! socket has parked datagrams, so level triggering does not spin on EPOLLOUT.

use std::io;
use std::iter::Peekable;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tern_udp::{OutDatagram, RecvBatch, SendBatch, SendOutcome, UdpSocket};

use super::{Backend, Ready};

/// Most events one `epoll_wait` returns; more stay ready (level-triggered) for the
/// next turn, so this bounds a turn's fan-out, not correctness.
const MAX_EVENTS: usize = 1024;

/// An epoll instance with its event buffer.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A new epoll instance (close-on-exec).
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with a constant flag; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS] })
    }

    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: both descriptors are open (borrowed for the call) and `ev` is a
        // live epoll_event; the kernel copies it and keeps no pointer.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}

const READ: u32 = libc::EPOLLIN as u32;
const WRITE: u32 = libc::EPOLLOUT as u32;
/// Error and hang-up are reported even if not asked for; both mean "read to learn more".
const READ_LIKE: u32 = (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32;

impl Backend for Epoll {
    type Rx = RecvBatch;

    fn register_waker(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, READ, token)
    }

    fn register(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, READ, token)
    }

    fn set_writable(&mut self, fd: BorrowedFd<'_>, token: u64, on: bool) -> io::Result<()> {
        let events = if on { READ | WRITE } else { READ };
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn wait(
        &mut self,
        timeout: Option<Duration>,
        _rx: &mut RecvBatch,
        ready: &mut Vec<Ready>,
    ) -> io::Result<()> {
        // Round up: waking before the deadline would only make the loop spin through
        // sub-millisecond waits until it passes.
        let ms = match timeout {
            None => -1,
            Some(t) => {
                libc::c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
            }
        };
        // epoll_pwait with no signal mask is epoll_wait (which aarch64 lacks), called
        // raw because libc's wrapper is a thread cancellation point: it toggles
        // asynchronous cancellation around every wait, and tern never cancels threads.
        // SAFETY: `events` is a live buffer of MAX_EVENTS epoll_events and the count
        // passed is its length; the kernel writes at most that many. A null
        // signal mask leaves the thread's mask alone (the size argument is then unused).
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait,
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                ms,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        let Ok(n) = usize::try_from(n) else {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(err) };
        };
        ready.extend(self.events[..n.min(MAX_EVENTS)].iter().map(|ev| {
            // Copies out of a (on x86-64 packed) struct: no references are taken.
            let (events, token) = (ev.events, ev.u64);
            Ready { token, readable: events & READ_LIKE != 0, writable: events & WRITE != 0 }
        }));
        Ok(())
    }

    fn send<'a, I>(
        &mut self,
        socket: &UdpSocket,
        batch: &mut SendBatch,
        items: &mut Peekable<I>,
    ) -> SendOutcome
    where
        I: Iterator<Item = OutDatagram<'a>>,
    {
        batch.send_segmented(socket, items)
    }
}
