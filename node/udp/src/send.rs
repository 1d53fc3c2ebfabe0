//! [`SendBatch`]: many datagrams from one socket per syscall with `sendmmsg`.
//!
//! The caller (a driver flushing a `TxQueue`) feeds datagrams through an iterator; the
//! batch loads up to its capacity, each with its own destination and optional IP TTL
//! (a cmsg, see `cmsg.rs`), and calls `sendmmsg` until all are sent, one fails, or the
//! socket's send buffer is full. Per-datagram failures (EMSGSIZE past the path MTU with
//! IP_PMTUDISC_PROBE, EINVAL for port 0, ENETUNREACH ...) are counted in
//! [`SendOutcome::failed`] and skipped, never returned: one bad destination must not
//! stop the rest of the batch (DESIGN.md principle 3). EAGAIN stops the batch with
//! [`SendOutcome::would_block`] so the caller can keep the rest for the next writable
//! event.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::MAX_BATCH;
use crate::addr::{SOCKADDR_IN_LEN, to_sockaddr};
use crate::cmsg::{self, CtrlBuf};

/// One datagram to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutDatagram<'a> {
    /// Where to.
    pub dest: SocketAddrV4,
    /// IP TTL for this datagram only; `None` keeps the socket's default.
    pub ttl: Option<u8>,
    /// The payload.
    pub data: &'a [u8],
}

/// What one [`SendBatch::send`] did.
///
/// Invariant: `sent + failed <= loaded`; when `would_block` is false they are equal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Datagrams taken from the iterator (at most the batch capacity).
    pub loaded: usize,
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Datagrams dropped because the kernel rejected them.
    pub failed: usize,
    /// The send buffer filled up (EAGAIN): the loaded datagrams after the first
    /// `sent + failed` were not sent and are the caller's to keep.
    pub would_block: bool,
    /// The OS error code of the last failed datagram, for a log line.
    pub last_error: Option<i32>,
}

impl SendOutcome {
    /// Loaded datagrams that were dealt with (sent or failed), in load order.
    pub fn done(&self) -> usize {
        self.sent + self.failed
    }
}

/// Reusable `sendmmsg` headers for up to [`SendBatch::capacity`] datagrams.
///
/// Invariant: between calls the pointers in `hdrs`/`iovs` are stale and never read;
/// [`SendBatch::send`] rewrites every header it passes to the kernel.
pub struct SendBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
    ctrls: Vec<CtrlBuf>,
}

// SAFETY: the raw pointers in `hdrs`/`iovs` point into this value's own heap buffers
// or into caller data borrowed only for the duration of one `send` call; between calls
// they are never dereferenced. Moving the value to another thread is therefore sound.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").field("capacity", &self.capacity()).finish()
    }
}

impl SendBatch {
    /// A batch sending up to `capacity` datagrams per call, clamped to
    /// `1..=`[`MAX_BATCH`].
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_BATCH);
        let empty_iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        // SAFETY: mmsghdr and sockaddr_in are plain C structs; all-zero is valid.
        let (hdr, addr) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        Self {
            hdrs: vec![hdr; capacity],
            iovs: vec![empty_iov; capacity],
            addrs: vec![addr; capacity],
            ctrls: vec![CtrlBuf::ZERO; capacity],
        }
    }

    /// Most datagrams one [`SendBatch::send`] takes.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Fills headers for up to [`SendBatch::capacity`] datagrams from `items` without
    /// sending them, and returns how many it took. For drivers that submit the
    /// messages themselves (io_uring SENDMSG): header `i < loaded` is then
    /// [`SendBatch::msghdr`]`(i)`.
    ///
    /// The headers point into this batch and into the payloads `items` lent, so they
    /// are valid only while both stay untouched: until the next `load`/`send` and no
    /// longer than the payloads' borrow.
    pub fn load<'a, I>(&mut self, items: &mut I) -> usize
    where
        I: Iterator<Item = OutDatagram<'a>>,
    {
        let mut loaded = 0;
        let slots = self.hdrs.iter_mut().zip(&mut self.iovs).zip(&mut self.addrs);
        for (((hdr, iov), addr), ctrl) in slots.zip(&mut self.ctrls) {
            let Some(d) = items.next() else { break };
            *addr = to_sockaddr(d.dest);
            // The kernel only reads from a send iovec; the cast to *mut is what the
            // C struct requires.
            *iov =
                libc::iovec { iov_base: d.data.as_ptr().cast_mut().cast(), iov_len: d.data.len() };
            let h = &mut hdr.msg_hdr;
            h.msg_name = std::ptr::from_mut(addr).cast();
            h.msg_namelen = SOCKADDR_IN_LEN;
            h.msg_iov = std::ptr::from_mut(iov);
            h.msg_iovlen = 1;
            h.msg_flags = 0;
            match d.ttl {
                Some(ttl) => cmsg::set_ttl(h, ctrl, ttl),
                None => {
                    h.msg_control = std::ptr::null_mut();
                    h.msg_controllen = 0;
                }
            }
            hdr.msg_len = 0;
            loaded += 1;
        }
        loaded
    }

    /// The `msghdr` of loaded datagram `i` (see [`SendBatch::load`] for how long it
    /// stays valid), or `None` past the capacity.
    pub fn msghdr(&self, i: usize) -> Option<*const libc::msghdr> {
        self.hdrs.get(i).map(|h| std::ptr::from_ref(&h.msg_hdr))
    }

    /// Takes up to [`SendBatch::capacity`] datagrams from `items` and sends them from
    /// `fd` without blocking. Call again while `loaded > 0 && !would_block` to drain a
    /// longer iterator.
    pub fn send<'a, I>(&mut self, fd: BorrowedFd<'_>, items: &mut I) -> SendOutcome
    where
        I: Iterator<Item = OutDatagram<'a>>,
    {
        let mut out = SendOutcome { loaded: self.load(items), ..SendOutcome::default() };
        let mut at = 0;
        while at < out.loaded {
            // SAFETY: hdrs[at..loaded] were initialised by `load` with pointers to
            // `addrs`/`iovs`/`ctrls` of this batch and to payloads borrowed from
            // `items` (lifetime 'a, alive for this whole call); the kernel only reads
            // them (and writes msg_len). `at < loaded <= hdrs.len()` keeps the pointer
            // arithmetic in bounds.
            let r = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(at),
                    (out.loaded - at) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match usize::try_from(r) {
                Ok(0) => {
                    // Not expected for a non-empty vector; treat as "no room" so the
                    // caller keeps the rest rather than this loop spinning.
                    out.would_block = true;
                    break;
                }
                Ok(n) => {
                    let n = n.min(out.loaded - at);
                    out.sent += n;
                    at += n;
                    continue;
                }
                Err(_) => {}
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    out.would_block = true;
                    break;
                }
                // The error belongs to the first unsent datagram: sendmmsg reports
                // an error only when it could send nothing. Drop that one, go on.
                _ => {
                    out.failed += 1;
                    out.last_error = err.raw_os_error();
                    at += 1;
                }
            }
        }
        out
    }
}
