//! The provided-buffer ring and [`UringRx`], the io_uring backend's receive source.
//!
//! One ring of [`RING_BUFFERS`] buffers per driver thread serves every socket of the
//! thread: each multishot RECVMSG completion names the buffer the kernel filled. The
//! backend files completions per socket token into [`UringRx`]; the shard then takes
//! them batch by batch and reads the datagrams in place. A buffer returns to the
//! kernel when the shard asks for the next batch (or at the next wait), so buffers
//! are lent for exactly as long as an endpoint looks at them.
//!
//! With UDP_GRO on the sockets a buffer may hold a run of datagrams of one sender
//! (the control data gives their size); [`UringRx`] hands them out one by one, and
//! the driver then sizes buffers at `tern_udp::GRO_SLOT_LEN` so no run is truncated.
//!
//! Buffer layout, as multishot RECVMSG writes it (see `io_uring_recvmsg_out`):
//! `[16-byte header][source sockaddr_in][control data][payload]`, with fixed room for
//! the name and control parts so the payload always starts at [`PAYLOAD_AT`].

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

use tern_udp::{
    RECV_CONTROL_LEN, RECV_NAME_LEN, RxDatagram, UdpSocket, segment_from_control, segments,
    sockaddr_from_bytes, ttl_from_control,
};

use super::super::{Ready, RecvSource};

/// Buffers in the provided-buffer ring of one driver thread. Measured on the 2-vCPU
/// development VM (issue 5, echo at 1 200 B): 256 buffers kept multishot RECVMSG at
/// 459k req/s, while a ring of 4 096 lost 24 % — the larger ring's buffers no longer
/// stay in cache. 256 also bounds what the work limiter can leave pending: the default
/// per-socket limit (4 × 64 datagrams) is one ring's worth.
pub(crate) const RING_BUFFERS: u16 = 256;

/// The buffer group id of the ring (one group per io_uring, so always 0).
pub(crate) const BGID: u16 = 0;

/// Size of `struct io_uring_recvmsg_out` (namelen, controllen, payloadlen, flags).
const OUT_HEADER: usize = 16;
/// Where the payload starts in every buffer.
pub(crate) const PAYLOAD_AT: usize = OUT_HEADER + RECV_NAME_LEN + RECV_CONTROL_LEN;

/// One ring entry, laid out as the kernel's `struct io_uring_buf`. The `resv` field of
/// entry 0 doubles as the ring's tail.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// A received datagram's completion: the CQE result and the buffer it filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Done {
    /// The CQE result: bytes written, or a negated errno.
    pub(crate) res: i32,
    /// The buffer id, when the kernel picked one.
    pub(crate) bid: Option<u16>,
}

/// The ring's memory: the entry array the kernel reads and the buffers it writes.
///
/// Invariant: both allocations stay valid (and at the same address) until this value
/// drops, and it drops only after the ring stopped using them (the backend holds an
/// `Rc` too, and leaks it if it cannot confirm that).
pub(crate) struct BufMem {
    ring: NonNull<RingEntry>,
    ring_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    entries: u16,
    buf_len: usize,
}

impl BufMem {
    /// Allocates `entries` (a power of two) buffers of `buf_len` bytes and a
    /// page-aligned entry ring, as IORING_REGISTER_PBUF_RING requires.
    pub(crate) fn new(entries: u16, buf_len: usize) -> io::Result<Self> {
        let oom = || io::Error::from(io::ErrorKind::OutOfMemory);
        let ring_layout =
            Layout::from_size_align(usize::from(entries) * size_of::<RingEntry>(), 4096)
                .map_err(|_| oom())?;
        // Alignment 16, the allocator's own: `alloc_zeroed` is then `calloc`, whose large
        // blocks are fresh mmap pages the kernel zeroes on first touch. With a larger
        // alignment Rust zeroes the block itself, and a ring of 256 GRO-sized (64 KiB)
        // buffers cost 16 MiB of resident memory from the start instead of the pages
        // datagrams actually reach. io_uring puts no alignment demand on the buffers.
        let bufs_layout =
            Layout::from_size_align(usize::from(entries) * buf_len, 16).map_err(|_| oom())?;
        // SAFETY: both layouts have a non-zero size (entries >= 1, buf_len > PAYLOAD_AT).
        let ring: NonNull<RingEntry> =
            NonNull::new(unsafe { alloc_zeroed(ring_layout) }.cast()).ok_or_else(oom)?;
        // SAFETY: as above.
        let bufs = match NonNull::new(unsafe { alloc_zeroed(bufs_layout) }) {
            Some(b) => b,
            None => {
                // SAFETY: `ring` was allocated just above with `ring_layout`.
                unsafe { dealloc(ring.as_ptr().cast(), ring_layout) };
                return Err(oom());
            }
        };
        Ok(Self { ring, ring_layout, bufs, bufs_layout, entries, buf_len })
    }

    /// The ring's address, for registration.
    pub(crate) fn ring_addr(&self) -> u64 {
        self.ring.as_ptr() as u64
    }

    /// Entries in the ring.
    pub(crate) fn entries(&self) -> u16 {
        self.entries
    }

    /// Writes entry `at` (modulo the ring size) to describe buffer `bid`. Not visible
    /// to the kernel until [`BufMem::publish`] moves the tail past it.
    fn put(&self, at: u16, bid: u16) {
        let index = usize::from(at & (self.entries - 1));
        let addr = self.buf_ptr(bid) as u64;
        // SAFETY: `index < entries`, so the entry lies inside the ring allocation. The
        // kernel only reads entries between its head and the published tail; this one
        // is at or past the tail (the caller hands back only buffers the kernel gave
        // out, so the ring never holds more than `entries`), so nobody else accesses
        // these fields now. Fields are written one by one through raw pointers so the
        // `resv` of entry 0 — the tail, which the kernel does read — is not touched.
        unsafe {
            let e = self.ring.as_ptr().add(index);
            std::ptr::addr_of_mut!((*e).addr).write(addr);
            std::ptr::addr_of_mut!((*e).len).write(self.buf_len as u32);
            std::ptr::addr_of_mut!((*e).bid).write(bid);
        }
    }

    /// Makes every entry before `tail` visible to the kernel.
    fn publish(&self, tail: u16) {
        // SAFETY: the tail is the `resv` field of entry 0, a properly aligned u16 in the
        // ring allocation that lives as long as `self`. The kernel reads it with an
        // acquire load; all access from this side goes through this atomic.
        let t = unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*self.ring.as_ptr()).resv)) };
        t.store(tail, Ordering::Release);
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        // SAFETY: callers pass `bid < entries` (ids the kernel reports are ones this
        // side put in the ring), so the offset stays inside the buffer allocation.
        unsafe { self.bufs.as_ptr().add(usize::from(bid % self.entries) * self.buf_len) }
    }

    /// Buffer `bid`, which the kernel has handed over and not been given back.
    fn buf(&self, bid: u16) -> &[u8] {
        // SAFETY: the buffer lies inside the allocation (see `buf_ptr`) and was
        // initialised by `alloc_zeroed`. It is not in the ring, so the kernel does not
        // write to it until it is put back, which needs `&mut UringRx` and so ends
        // this borrow first.
        unsafe { std::slice::from_raw_parts(self.buf_ptr(bid), self.buf_len) }
    }
}

impl Drop for BufMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly these layouts, freed once here.
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}

/// One socket's completions not yet read.
#[derive(Default)]
struct Queue {
    items: VecDeque<Done>,
    /// Already in `UringRx::listed`.
    listed: bool,
}

/// Hashes the shard's own socket tokens (slot, generation, index: never chosen by a
/// remote, so no DoS-resistant hash is needed). SipHash was ~1 % of a lightly loaded
/// shard's CPU: every completion files itself under its token.
#[derive(Debug, Default, Clone, Copy)]
struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        // The table indexes by the low bits and tags by the top ones: fold the
        // product's well-mixed high half into both.
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` tokens use this hasher; anything else still hashes deterministically.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, token: u64) {
        let x = self.0 ^ token;
        self.0 = (x ^ (x >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The io_uring backend's [`RecvSource`]: completions filed per socket token, read in
/// place from the buffer ring.
pub(crate) struct UringRx {
    mem: Rc<BufMem>,
    /// Where the next returned buffer goes (published after each batch of returns).
    tail: u16,
    queues: HashMap<u64, Queue, BuildHasherDefault<TokenHasher>>,
    /// Tokens whose queue may hold completions.
    listed: Vec<u64>,
    /// Completions across all queues.
    pending: usize,
    /// The current batch: buffers lent to the shard.
    batch: Vec<Done>,
    truncated: usize,
    slots: usize,
    /// Longest datagram handed out; longer ones count as truncated (GRO-sized buffers
    /// must not let through what the configured slot size refuses).
    max_datagram: usize,
}

impl UringRx {
    /// A source over `mem` with every buffer in the ring, handing out batches of up
    /// to `slots` datagrams.
    pub(crate) fn new(mem: Rc<BufMem>, slots: usize, max_datagram: usize) -> Self {
        let mut rx = Self {
            tail: 0,
            queues: HashMap::default(),
            listed: Vec::new(),
            pending: 0,
            batch: Vec::with_capacity(slots),
            truncated: 0,
            slots: slots.max(1),
            max_datagram,
            mem,
        };
        for bid in 0..rx.mem.entries() {
            rx.give(bid);
        }
        rx.mem.publish(rx.tail);
        rx
    }

    fn give(&mut self, bid: u16) {
        self.mem.put(self.tail, bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Returns the current batch's buffers to the kernel.
    pub(crate) fn give_back_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        for i in 0..self.batch.len() {
            if let Some(bid) = self.batch[i].bid {
                self.give(bid);
            }
        }
        self.batch.clear();
        self.mem.publish(self.tail);
    }

    /// Files a completion for socket `token`, or returns its buffer at once if the
    /// socket is gone (`None`).
    pub(crate) fn absorb(&mut self, token: Option<u64>, done: Done) {
        match token {
            Some(t) => {
                let q = self.queues.entry(t).or_default();
                q.items.push_back(done);
                self.pending += 1;
                if !q.listed {
                    q.listed = true;
                    self.listed.push(t);
                }
            }
            None => {
                if let Some(bid) = done.bid {
                    self.give(bid);
                    self.mem.publish(self.tail);
                }
            }
        }
    }

    /// Forgets a deregistered socket, returning its unread buffers.
    pub(crate) fn drop_token(&mut self, token: u64) {
        let Some(q) = self.queues.remove(&token) else { return };
        self.pending -= q.items.len();
        for d in q.items {
            if let Some(bid) = d.bid {
                self.give(bid);
            }
        }
        self.mem.publish(self.tail);
    }

    /// True if some socket has completions not yet read.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending > 0
    }

    /// Reports every socket with unread completions as readable.
    pub(crate) fn report(&mut self, ready: &mut Vec<Ready>) {
        let queues = &mut self.queues;
        self.listed.retain(|t| match queues.get_mut(t) {
            Some(q) if !q.items.is_empty() => {
                ready.push(Ready { token: *t, readable: true, writable: false });
                true
            }
            Some(q) => {
                q.listed = false;
                false
            }
            None => false,
        });
    }

    /// The header fields and parts of a filled buffer: (flags, name, control, payload).
    fn parts(&self, bid: u16) -> (u32, &[u8], &[u8], &[u8]) {
        let buf = self.mem.buf(bid);
        let field = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&buf[i * 4..i * 4 + 4]);
            u32::from_ne_bytes(b) as usize
        };
        let (namelen, controllen, payloadlen, flags) = (field(0), field(1), field(2), field(3));
        let name = &buf[OUT_HEADER..OUT_HEADER + namelen.min(RECV_NAME_LEN)];
        let control_at = OUT_HEADER + RECV_NAME_LEN;
        let control = &buf[control_at..control_at + controllen.min(RECV_CONTROL_LEN)];
        let payload = &buf[PAYLOAD_AT..PAYLOAD_AT + payloadlen.min(buf.len() - PAYLOAD_AT)];
        (flags as u32, name, control, payload)
    }

    /// Cut by the kernel (MSG_TRUNC), or a datagram (GRO segment) longer than
    /// `max_datagram`.
    fn is_truncated(&self, d: &Done) -> bool {
        d.bid.is_some_and(|bid| {
            let (flags, _, control, payload) = self.parts(bid);
            flags & libc::MSG_TRUNC as u32 != 0
                || segment_from_control(control).unwrap_or(payload.len()) > self.max_datagram
        })
    }
}

impl RecvSource for UringRx {
    fn recv(&mut self, token: u64, _socket: &UdpSocket) -> io::Result<usize> {
        self.give_back_batch();
        self.truncated = 0;
        let Some(q) = self.queues.get_mut(&token) else { return Ok(0) };
        while self.batch.len() < self.slots {
            let Some(d) = q.items.pop_front() else { break };
            self.pending -= 1;
            if d.res >= 0 && d.bid.is_some() {
                self.batch.push(d);
                continue;
            }
            // An error completion: out of buffers and cancellation are the backend's
            // business; anything else is the socket's error, which a read reports
            // (like recvmmsg would) — but only at the start of a batch, so the
            // datagrams before it are delivered first.
            if matches!(-d.res, libc::ENOBUFS | libc::ECANCELED) || d.res >= 0 {
                continue;
            }
            if self.batch.is_empty() {
                return Err(io::Error::from_raw_os_error(-d.res));
            }
            q.items.push_front(d);
            self.pending += 1;
            break;
        }
        self.truncated = self.batch.iter().filter(|d| self.is_truncated(d)).count();
        Ok(self.batch.len())
    }

    fn datagrams(&self) -> impl Iterator<Item = RxDatagram<'_>> {
        self.batch
            .iter()
            .filter(|d| !self.is_truncated(d))
            .filter_map(|d| {
                let (_, name, control, payload) = self.parts(d.bid?);
                let from = sockaddr_from_bytes(name)?;
                let d = RxDatagram { from, data: payload, ttl: ttl_from_control(control) };
                Some((d, segment_from_control(control)))
            })
            // A buffer UDP_GRO filled with a run of datagrams yields each of them.
            .flat_map(|(d, segment)| {
                segments(d.data, segment).map(move |data| RxDatagram { data, ..d })
            })
    }

    fn truncated(&self) -> usize {
        self.truncated
    }

    fn slots(&self) -> usize {
        self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn tokens_spread_over_the_low_and_high_bits() {
        // Tokens as the shard makes them: slot << 32 | generation << 16 | index.
        let build = BuildHasherDefault::<TokenHasher>::default();
        let hashes: Vec<u64> = (0..256u64)
            .flat_map(|slot| (0..2u64).map(move |i| (slot << 32) | (3 << 16) | i))
            .map(|t| build.hash_one(t))
            .collect();
        let distinct = |f: &dyn Fn(u64) -> u64| {
            let mut v: Vec<u64> = hashes.iter().map(|&h| f(h)).collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        // 512 keys into 1024 buckets: a random hash fills ~400; a hash that left the
        // low bits to the index would fill 2.
        assert!(distinct(&|h| h & 1023) > 350, "{}", distinct(&|h| h & 1023));
        // hashbrown's 7-bit tags come from the top bits.
        assert!(distinct(&|h| h >> 57) > 100, "{}", distinct(&|h| h >> 57));
    }
}
