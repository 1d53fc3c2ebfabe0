//! [`RecvBatch`]: many datagrams per syscall with `recvmmsg`, into reusable slots.
//!
//! A driver thread owns one batch and reuses it for every socket it reads (the
//! endpoint consumes each datagram before the next read), so memory is
//! `slots * slot_len` per thread, not per socket — loadgen runs thousands of sockets
//! per thread. A datagram longer than its slot is flagged MSG_TRUNC by the kernel; it
//! is counted in [`RecvBatch::truncated`] and never handed out, because a cut datagram
//! would only decode wrongly further up.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::addr::{SOCKADDR_IN_LEN, from_sockaddr};
use crate::cmsg::{self, CTRL_LEN, CtrlBuf};
use crate::{GRO_SLOT_LEN, MAX_BATCH};

/// One received datagram, borrowed from a [`RecvBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxDatagram<'a> {
    /// The sender.
    pub from: SocketAddrV4,
    /// The payload (never truncated: truncated datagrams are not handed out).
    pub data: &'a [u8],
    /// The IP TTL it arrived with, when the socket has IP_RECVTTL
    /// ([`crate::SocketOptions::recv_ttl`]).
    pub ttl: Option<u8>,
}

/// A reusable pool of receive slots filled by one `recvmmsg` call.
///
/// Invariant: `hdrs[i]` describes slot `i` (`bufs[i * slot_len..][..slot_len]`,
/// `addrs[i]`, `ctrls[i]`) through `iovs[i]`. The pointers are set once, in `new`: they
/// point into heap buffers this value owns and never resizes, so they stay valid when
/// the batch moves. Before each call only the lengths and flags the kernel wrote back
/// last time are reset, and only in the slots it may have written (`dirty`): rewriting
/// every header of a 64-slot batch for the few datagrams a turn usually brings was 2 %
/// of a bootstrap node's CPU.
pub struct RecvBatch {
    slot_len: usize,
    /// Longest datagram handed out; longer ones count as truncated. Equal to
    /// `slot_len` unless UDP_GRO made the slots larger than tern's datagrams need.
    max_datagram: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_in>,
    ctrls: Vec<CtrlBuf>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Headers `0..dirty` may hold lengths or flags the kernel wrote back.
    dirty: usize,
    filled: usize,
    truncated: usize,
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` only ever point into heap buffers
// owned by this same value (`bufs`, `addrs`, `ctrls`, `iovs`), which move with it and
// are never shared; nothing is thread-affine. So moving a batch to another thread is
// as safe as moving the Vecs themselves.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.slots())
            .field("slot_len", &self.slot_len)
            .field("filled", &self.filled)
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl RecvBatch {
    /// A batch of `slots` slots of `slot_len` bytes each, clamped to
    /// `1..=`[`MAX_BATCH`] and `1..=`[`GRO_SLOT_LEN`] (sockets with UDP_GRO need
    /// slots of [`GRO_SLOT_LEN`]).
    pub fn new(slots: usize, slot_len: usize) -> Self {
        let slots = slots.clamp(1, MAX_BATCH);
        let slot_len = slot_len.clamp(1, GRO_SLOT_LEN);
        let empty_iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        // SAFETY: mmsghdr and sockaddr_in are plain C structs of integers and raw
        // pointers; all-zero (null pointers, zero lengths) is a valid value.
        let (hdr, addr) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        let mut batch = Self {
            slot_len,
            max_datagram: slot_len,
            bufs: vec![0; slots * slot_len],
            addrs: vec![addr; slots],
            ctrls: vec![CtrlBuf::ZERO; slots],
            iovs: vec![empty_iov; slots],
            hdrs: vec![hdr; slots],
            dirty: 0,
            filled: 0,
            truncated: 0,
        };
        let parts = batch.bufs.chunks_exact_mut(slot_len).zip(&mut batch.iovs);
        let places = batch.addrs.iter_mut().zip(&mut batch.ctrls);
        for (((buf, iov), (addr, ctrl)), hdr) in parts.zip(places).zip(&mut batch.hdrs) {
            *iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            let h = &mut hdr.msg_hdr;
            h.msg_name = std::ptr::from_mut(addr).cast();
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            h.msg_control = ctrl.0.as_mut_ptr().cast();
            Self::reset(hdr);
        }
        batch
    }

    /// Restores what the kernel writes back into a header (the name and control
    /// lengths it used, the flags, the datagram's length).
    fn reset(hdr: &mut libc::mmsghdr) {
        hdr.msg_hdr.msg_namelen = SOCKADDR_IN_LEN;
        hdr.msg_hdr.msg_controllen = CTRL_LEN as _;
        hdr.msg_hdr.msg_flags = 0;
        hdr.msg_len = 0;
    }

    /// Keeps dropping datagrams longer than `max` (counting them as truncated) even
    /// though the slots are larger: a socket with UDP_GRO needs 64 KiB slots for runs
    /// of small datagrams, which must not let single large datagrams through that the
    /// small slots used to refuse.
    pub fn max_datagram(mut self, max: usize) -> Self {
        self.max_datagram = max.clamp(1, self.slot_len);
        self
    }

    /// Number of slots: the most datagrams one [`RecvBatch::recv`] returns.
    pub fn slots(&self) -> usize {
        self.hdrs.len()
    }

    /// Bytes per slot; longer datagrams are counted as truncated and dropped.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Receives up to [`RecvBatch::slots`] messages from `fd` without blocking,
    /// replacing the previous contents. Returns how many arrived (truncated ones
    /// included; with UDP_GRO one message may hold several datagrams); `Ok(0)` means the socket had nothing (EAGAIN). Errors are the
    /// socket's (e.g. a pending ICMP error); the caller counts them and moves on.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.filled = 0;
        self.truncated = 0;
        let slots = self.slots();
        for hdr in &mut self.hdrs[..self.dirty] {
            Self::reset(hdr);
        }
        // A failed call may still have written the first header back.
        self.dirty = 1;
        let n = loop {
            // The raw syscall rather than libc's wrapper: the wrapper is a thread
            // cancellation point, which in a multi-threaded process costs two extra
            // calls around every receive (~1 % of a lightly loaded shard's CPU), and
            // tern never cancels threads.
            // SAFETY: `hdrs` holds `slots` initialised mmsghdrs whose name, iovec and
            // control pointers were set in `new` to this batch's heap buffers (never
            // resized, so still live), and whose lengths are the full sizes of those
            // buffers (reset above wherever the kernel wrote them back); the kernel
            // writes at most those lengths. A null timeout
            // is allowed and MSG_DONTWAIT makes the call non-blocking.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_recvmmsg,
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    slots as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut::<libc::timespec>(),
                )
            };
            if let Ok(n) = usize::try_from(r) {
                break n.min(slots);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(err),
            }
        };
        self.filled = n;
        self.dirty = (n + 1).min(slots);
        self.truncated = (0..n).filter(|&i| self.message(i).is_none()).count();
        Ok(n)
    }

    /// Datagrams the last [`RecvBatch::recv`] returned, truncated ones included.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// True when the last [`RecvBatch::recv`] returned nothing.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Messages of the last [`RecvBatch::recv`] that were longer than a slot (or
    /// than [`RecvBatch::max_datagram`]); they are skipped by [`RecvBatch::get`] and [`RecvBatch::iter`].
    pub fn truncated(&self) -> usize {
        self.truncated
    }

    /// Message `i` of the last receive — one datagram, or with UDP_GRO possibly a
    /// run of them (see [`RecvBatch::iter`]) — or `None` if out of range, truncated,
    /// or (impossible on an AF_INET socket) not from an IPv4 address.
    pub fn get(&self, i: usize) -> Option<RxDatagram<'_>> {
        self.message(i).map(|(d, _)| d)
    }

    /// Message `i` and its GRO segment size.
    fn message(&self, i: usize) -> Option<(RxDatagram<'_>, Option<usize>)> {
        if i >= self.filled {
            return None;
        }
        let hdr = &self.hdrs[i];
        if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let from = from_sockaddr(&self.addrs[i], hdr.msg_hdr.msg_namelen)?;
        let len = (hdr.msg_len as usize).min(self.slot_len);
        let start = i * self.slot_len;
        let data = self.bufs.get(start..start + len)?;
        let info = cmsg::recv_info(&hdr.msg_hdr);
        if info.segment.unwrap_or(len) > self.max_datagram {
            return None;
        }
        Some((RxDatagram { from, data, ttl: info.ttl }, info.segment))
    }

    /// The whole datagrams of the last receive, in arrival order; a buffer UDP_GRO
    /// filled with a run of datagrams yields each of them.
    pub fn iter(&self) -> impl Iterator<Item = RxDatagram<'_>> {
        (0..self.filled).filter_map(|i| self.message(i)).flat_map(|(d, segment)| {
            crate::segments(d.data, segment).map(move |data| RxDatagram { data, ..d })
        })
    }
}
