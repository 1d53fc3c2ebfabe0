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
//!
//! With GSO ([`SendBatch::send_segmented`]), a run of consecutive datagrams to the same
//! destination, all of one size except a shorter last one, becomes one message with a
//! UDP_SEGMENT cmsg: the kernel walks its UDP/IP path once for the run (up to 64
//! datagrams, 64 KB) and cuts it into ordinary datagrams as late as it can — on
//! loopback only at the receiving socket, or not at all if that socket has UDP_GRO.
//! Datagrams queued back to back in a `TxQueue` arena lie contiguously, so such a run
//! needs a single iovec; a datagram may also come in two parts ([`OutDatagram::tail`]:
//! a UDX header in the arena and its payload in the stream's send buffer), which the
//! kernel gathers: a run of those is two iovecs per datagram. Counts in [`SendOutcome`] stay in
//! datagrams, in load order, so callers cannot tell GSO from plain sends. A GSO message
//! the kernel refuses is re-sent one datagram at a time, and GSO is switched off on the
//! socket when the refusal says the route cannot segment (EIO, EINVAL).

use std::io;
use std::iter::Peekable;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::MAX_BATCH;
use crate::addr::{SOCKADDR_IN_LEN, to_sockaddr};
use crate::cmsg::{self, CtrlBuf};
use crate::socket::UdpSocket;

/// Most datagrams in one GSO message: the kernel's UDP_MAX_SEGMENTS (64 until Linux
/// 6.9, which raised it to 128; the lower value works everywhere).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// Most payload bytes in one GSO message: the UDP length field and the IPv4 total
/// length both cap it at 65 535 - 28.
const GSO_MAX_BYTES: usize = 65_507;

/// Largest datagram sent as part of a GSO run: a segment must fit the device MTU or
/// the kernel refuses the message (EINVAL), and 1472 is the UDP payload of a 1500-byte
/// Ethernet MTU, which every UDX packet fits (libudx probes up to 1500). Larger
/// datagrams (rare dht-rpc messages) go alone, as they would without GSO.
const GSO_MAX_SEGMENT_LEN: usize = 1472;

/// iovecs per message slot on average. A run from a `TxQueue` arena is contiguous and
/// needs one; runs from scattered buffers (a socket's backlog) need one per datagram,
/// runs of two-part datagrams two per datagram, and simply end when the pool is used up.
const IOVS_PER_MESSAGE: usize = 8;

/// Most iovecs one datagram of a GSO message can span when it is re-sent alone (two
/// parts, each possibly split across merged iovecs: 4 is plenty).
const MAX_IOVS_PER_DATAGRAM: usize = 4;

/// One datagram to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutDatagram<'a> {
    /// Where to.
    pub dest: SocketAddrV4,
    /// IP TTL for this datagram only; `None` keeps the socket's default.
    pub ttl: Option<u8>,
    /// The payload (its first part, when `tail` is not empty).
    pub data: &'a [u8],
    /// The rest of the payload, sent after `data` without copying it next to it
    /// (scatter-gather); usually empty.
    pub tail: &'a [u8],
}

impl<'a> OutDatagram<'a> {
    /// A one-part datagram.
    pub fn new(dest: SocketAddrV4, ttl: Option<u8>, data: &'a [u8]) -> Self {
        Self { dest, ttl, data, tail: &[] }
    }

    /// Payload length (both parts).
    pub fn len(&self) -> usize {
        self.data.len() + self.tail.len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    /// A GSO message was refused in a way that switched GSO off on the socket (its
    /// datagrams were re-sent one by one).
    pub gso_refused: bool,
}

impl SendOutcome {
    /// Loaded datagrams that were dealt with (sent or failed), in load order.
    pub fn done(&self) -> usize {
        self.sent + self.failed
    }
}

/// Reusable `sendmmsg` headers for up to [`SendBatch::capacity`] messages.
///
/// A message is one datagram, or with GSO a run of datagrams (`segs[i]` of them).
///
/// Invariant: between calls the pointers in `hdrs`/`iovs` are stale and never read;
/// [`SendBatch::send`] rewrites every header it passes to the kernel.
pub struct SendBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
    ctrls: Vec<CtrlBuf>,
    /// Datagrams in message `i` (1 without GSO).
    segs: Vec<u16>,
    /// Segment size of message `i` (its first datagram's length).
    seg_len: Vec<u16>,
    /// Messages filled by the last load.
    messages: usize,
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
    /// A batch sending up to `capacity` messages per call, clamped to
    /// `1..=`[`MAX_BATCH`].
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_BATCH);
        let empty_iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        // SAFETY: mmsghdr and sockaddr_in are plain C structs; all-zero is valid.
        let (hdr, addr) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        Self {
            hdrs: vec![hdr; capacity],
            iovs: vec![empty_iov; capacity * IOVS_PER_MESSAGE],
            addrs: vec![addr; capacity],
            ctrls: vec![CtrlBuf::ZERO; capacity],
            segs: vec![1; capacity],
            seg_len: vec![0; capacity],
            messages: 0,
        }
    }

    /// Most messages one [`SendBatch::send`] takes.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Fills headers for up to [`SendBatch::capacity`] datagrams from `items` without
    /// sending them, one datagram per message, and returns how many it took. For
    /// drivers that submit the messages themselves (io_uring SENDMSG): header
    /// `i < loaded` is then [`SendBatch::msghdr`]`(i)`.
    ///
    /// The headers point into this batch and into the payloads `items` lent, so they
    /// are valid only while both stay untouched: until the next `load`/`send` and no
    /// longer than the payloads' borrow.
    pub fn load<'a, I>(&mut self, items: &mut I) -> usize
    where
        I: Iterator<Item = OutDatagram<'a>>,
    {
        // With one segment per message nothing is ever peeked, so the adapter takes
        // exactly the items it loads.
        self.load_segmented(&mut items.by_ref().peekable(), 1)
    }

    /// Like [`SendBatch::load`], but a run of consecutive datagrams to one destination
    /// without a TTL, all as long as the first except a shorter last one, shares one
    /// message (at most `max_segments` of them, capped at [`GSO_MAX_SEGMENTS`]) that
    /// must be sent with its UDP_SEGMENT cmsg. Returns the datagrams taken; the
    /// messages are [`SendBatch::messages`], message `i` holding
    /// [`SendBatch::segments`]`(i)` of them.
    pub fn load_segmented<'a, I>(&mut self, items: &mut Peekable<I>, max_segments: usize) -> usize
    where
        I: Iterator<Item = OutDatagram<'a>>,
    {
        let max_segments = max_segments.clamp(1, GSO_MAX_SEGMENTS);
        let (mut loaded, mut msg, mut iov_at) = (0, 0, 0);
        // A datagram needs at most two iovecs (its two parts).
        while msg < self.hdrs.len() && iov_at + 2 <= self.iovs.len() {
            let Some(first) = items.next() else { break };
            let iov_start = iov_at;
            self.add_part(iov_start, &mut iov_at, first.data);
            self.add_part(iov_start, &mut iov_at, first.tail);
            if iov_at == iov_start {
                // An empty datagram still needs an iovec to be a message.
                self.iovs[iov_at] = iovec(first.data);
                iov_at += 1;
            }
            let (seg, mut total, mut count) = (first.len(), first.len(), 1);
            let can_run =
                max_segments > 1 && first.ttl.is_none() && (1..=GSO_MAX_SEGMENT_LEN).contains(&seg);
            while can_run && count < max_segments && iov_at + 2 <= self.iovs.len() {
                let Some(next) = items.peek() else { break };
                let len = next.len();
                if next.dest != first.dest
                    || next.ttl.is_some()
                    || len == 0
                    || len > seg
                    || total + len > GSO_MAX_BYTES
                {
                    break;
                }
                self.add_part(iov_start, &mut iov_at, next.data);
                self.add_part(iov_start, &mut iov_at, next.tail);
                items.next();
                count += 1;
                total += len;
                if len < seg {
                    break; // only the last segment may be short
                }
            }
            self.fill(msg, first.dest, first.ttl, iov_start, iov_at - iov_start, seg, count);
            loaded += count;
            msg += 1;
        }
        self.messages = msg;
        loaded
    }

    /// Appends `part` to the message whose iovecs start at `iov_start`: it extends the
    /// last iovec when it directly follows it in memory (datagrams back to back in one
    /// arena), else takes the next one (the caller checked there is room). Empty parts
    /// take none.
    fn add_part(&mut self, iov_start: usize, iov_at: &mut usize, part: &[u8]) {
        if part.is_empty() {
            return;
        }
        if *iov_at > iov_start {
            let last = &mut self.iovs[*iov_at - 1];
            // SAFETY: pointer arithmetic only, to compare addresses: the result is one
            // past the end of the previous part, never dereferenced.
            let end = unsafe { last.iov_base.cast::<u8>().add(last.iov_len) };
            if std::ptr::eq(end.cast_const(), part.as_ptr()) {
                last.iov_len += part.len();
                return;
            }
        }
        self.iovs[*iov_at] = iovec(part);
        *iov_at += 1;
    }

    /// Writes header `msg` for `iovs[iov_start..][..iov_count]`.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        msg: usize,
        dest: SocketAddrV4,
        ttl: Option<u8>,
        iov_start: usize,
        iov_count: usize,
        seg: usize,
        count: usize,
    ) {
        self.addrs[msg] = to_sockaddr(dest);
        self.segs[msg] = count as u16;
        self.seg_len[msg] = seg.min(usize::from(u16::MAX)) as u16;
        let h = &mut self.hdrs[msg].msg_hdr;
        h.msg_name = std::ptr::from_mut(&mut self.addrs[msg]).cast();
        h.msg_namelen = SOCKADDR_IN_LEN;
        h.msg_iov = std::ptr::from_mut(&mut self.iovs[iov_start]);
        h.msg_iovlen = iov_count as _;
        h.msg_flags = 0;
        match ttl {
            Some(ttl) => cmsg::set_ttl(h, &mut self.ctrls[msg], ttl),
            None if count > 1 => cmsg::set_segment(h, &mut self.ctrls[msg], seg as u16),
            None => {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
        }
        self.hdrs[msg].msg_len = 0;
    }

    /// Messages filled by the last load or send.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// Datagrams in loaded message `i` (more than one only for a GSO message).
    pub fn segments(&self, i: usize) -> usize {
        self.segs.get(i).map_or(0, |&n| usize::from(n))
    }

    /// The `msghdr` of loaded message `i` (see [`SendBatch::load`] for how long it
    /// stays valid), or `None` past the capacity.
    pub fn msghdr(&self, i: usize) -> Option<*const libc::msghdr> {
        self.hdrs.get(i).map(|h| std::ptr::from_ref(&h.msg_hdr))
    }

    /// Takes up to [`SendBatch::capacity`] datagrams from `items` and sends them from
    /// `fd` without blocking, one datagram per message. Call again while
    /// `loaded > 0 && !would_block` to drain a longer iterator.
    pub fn send<'a, I>(&mut self, fd: BorrowedFd<'_>, items: &mut I) -> SendOutcome
    where
        I: Iterator<Item = OutDatagram<'a>>,
    {
        let loaded = self.load(items);
        self.send_loaded(fd, None, loaded)
    }

    /// Like [`SendBatch::send`], from `socket`, with runs of datagrams sent as GSO
    /// messages while the socket allows it ([`UdpSocket::gso`]). Up to
    /// [`SendBatch::capacity`] messages per call.
    pub fn send_segmented<'a, I>(
        &mut self,
        socket: &UdpSocket,
        items: &mut Peekable<I>,
    ) -> SendOutcome
    where
        I: Iterator<Item = OutDatagram<'a>>,
    {
        let max = if socket.gso() { GSO_MAX_SEGMENTS } else { 1 };
        let loaded = self.load_segmented(items, max);
        self.send_loaded(socket.as_fd(), Some(socket), loaded)
    }

    /// `sendmmsg` of the loaded messages; GSO refusals go through `resend_split`.
    fn send_loaded(
        &mut self,
        fd: BorrowedFd<'_>,
        socket: Option<&UdpSocket>,
        loaded: usize,
    ) -> SendOutcome {
        let mut out = SendOutcome { loaded, ..SendOutcome::default() };
        let messages = self.messages;
        let mut at = 0;
        while at < messages {
            // The raw syscall: libc's wrapper is a cancellation point (see `RecvBatch`).
            // SAFETY: hdrs[at..messages] were initialised by the load with pointers to
            // `addrs`/`iovs`/`ctrls` of this batch and to payloads borrowed from the
            // caller's items (alive for this whole call); the kernel only reads them
            // (and writes msg_len). `at < messages <= hdrs.len()` keeps the pointer
            // arithmetic in bounds.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_sendmmsg,
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(at),
                    (messages - at) as libc::c_uint,
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
                    let n = n.min(messages - at);
                    out.sent += (at..at + n).map(|i| self.segments(i)).sum::<usize>();
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
                // The error belongs to the first unsent message: sendmmsg reports
                // an error only when it could send nothing.
                _ => {
                    let errno = err.raw_os_error().unwrap_or(0);
                    if !self.message_failed(fd, socket, at, errno, &mut out) {
                        break;
                    }
                    at += 1;
                }
            }
        }
        out
    }

    /// Accounts for message `i` failing with `errno`: a plain datagram is dropped and
    /// counted; a GSO message is re-sent one datagram at a time (switching GSO off on
    /// `socket` if the route cannot segment). False if that met a full send buffer.
    pub fn message_failed(
        &self,
        fd: BorrowedFd<'_>,
        socket: Option<&UdpSocket>,
        i: usize,
        errno: i32,
        out: &mut SendOutcome,
    ) -> bool {
        if self.segments(i) <= 1 {
            out.failed += 1;
            out.last_error = Some(errno);
            return true;
        }
        if matches!(errno, libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
            && let Some(s) = socket
        {
            s.disable_gso();
            out.gso_refused = true;
        }
        self.resend_split(fd, i, out)
    }

    /// Sends GSO message `i`'s datagrams one `sendmsg` each. False if the send
    /// buffer filled up part way (the rest of the message counts as not done).
    fn resend_split(&self, fd: BorrowedFd<'_>, i: usize, out: &mut SendOutcome) -> bool {
        let h = &self.hdrs[i].msg_hdr;
        let seg = usize::from(self.seg_len[i]).max(1);
        // SAFETY: msghdr is plain C data; all-zero (no name, no control) is valid.
        let mut one: libc::msghdr = unsafe { std::mem::zeroed() };
        one.msg_name = h.msg_name;
        one.msg_namelen = h.msg_namelen;
        // msg_iovlen is size_t on glibc and c_int on musl.
        #[allow(clippy::unnecessary_cast)]
        let iov_count = h.msg_iovlen as usize;
        // SAFETY: msg_iov/msg_iovlen of a loaded header describe `iovs` entries of
        // this batch, which are initialised.
        let iovs = unsafe { std::slice::from_raw_parts(h.msg_iov, iov_count) };
        let empty = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        let mut parts = [empty; MAX_IOVS_PER_DATAGRAM];
        // Cursor: iovec `k`, `off` bytes into it. Each datagram is the next `seg` bytes
        // (the last may be shorter), gathered from as many iovecs as it spans.
        let (mut k, mut off) = (0, 0);
        while k < iovs.len() {
            let (mut n, mut want, mut fits) = (0, seg, true);
            while want > 0 && k < iovs.len() {
                let iov = &iovs[k];
                let take = want.min(iov.iov_len - off);
                if take > 0 {
                    match parts.get_mut(n) {
                        Some(p) => {
                            // SAFETY: `off + take <= iov_len`: the pointer and length stay
                            // inside the payload the iovec describes.
                            let base = unsafe { iov.iov_base.cast::<u8>().add(off) };
                            *p = libc::iovec { iov_base: base.cast(), iov_len: take };
                            n += 1;
                        }
                        None => fits = false,
                    }
                }
                want -= take;
                off += take;
                if off == iov.iov_len {
                    k += 1;
                    off = 0;
                }
            }
            if n == 0 {
                break;
            }
            if !fits {
                // Not produced by `load_segmented` (a datagram is at most two parts).
                out.failed += 1;
                out.last_error = Some(libc::EMSGSIZE);
                continue;
            }
            one.msg_iov = parts.as_mut_ptr();
            one.msg_iovlen = n as _;
            loop {
                // SAFETY: `one` points at the loaded address and at `n` iovecs over
                // payloads the caller lent for this call; the kernel only reads.
                let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &one, libc::MSG_DONTWAIT) };
                if r >= 0 {
                    out.sent += 1;
                    break;
                }
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        out.would_block = true;
                        return false;
                    }
                    _ => {
                        out.failed += 1;
                        out.last_error = err.raw_os_error();
                        break;
                    }
                }
            }
        }
        true
    }
}

fn iovec(data: &[u8]) -> libc::iovec {
    // The kernel only reads from a send iovec; the cast to *mut is what the C struct
    // requires.
    libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() }
}
