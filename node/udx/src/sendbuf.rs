//! The send buffer of one stream: the bytes written and not yet acknowledged, held as a
//! queue of chunks addressed by stream offset.
//!
//! A chunk is either a whole buffer the application handed over
//! ([`SendBuf::push_chunk`]: a secret-stream frame, taken without copying) or bytes
//! copied in by [`SendBuf::write`] (small writes are appended to the newest copied chunk,
//! so they still coalesce into full packets). Packets are offsets and lengths into this
//! buffer, so (re)sending reads straight from the chunks and acknowledging drops whole
//! chunks from the front. Before, every byte was first copied into a byte ring; on one
//! fast stream that copy was about half the sending node thread's user-space copying.
//!
//! Chunks are reference-counted so that a transmit queue can point at a packet's bytes
//! instead of copying them (a chunk stays alive until both the buffer and every queued
//! datagram let go). Handed-over buffers are given back once acknowledged
//! ([`SendBuf::take_spent`]), so the writer reuses them instead of allocating and
//! zero-filling a fresh 64 KiB buffer per frame.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;

/// Capacity of a chunk that `write` copies into: small writes share it. Large enough that
/// a copied chunk holds many packets, small enough not to matter per stream.
const COPY_CHUNK: usize = 16 * 1024;

/// One piece of the send buffer.
#[derive(Debug)]
struct Chunk {
    /// Stream offset of `data[start]`.
    off: u64,
    data: Arc<Vec<u8>>,
    /// Where the stream's bytes start in `data` (what is before is not sent).
    start: usize,
    /// Handed over by the application: give it back once acknowledged. Never appended to.
    owned: bool,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.off + (self.data.len() - self.start) as u64
    }
}

/// Unacknowledged stream bytes, `base..end` by stream offset.
///
/// Invariants: chunks are contiguous and in offset order; the first chunk contains
/// `base` (or the queue is empty and `base == end`); `spent` holds at most
/// `spent_cap` bytes of capacity.
#[derive(Debug)]
pub(crate) struct SendBuf {
    chunks: VecDeque<Chunk>,
    base: u64,
    end: u64,
    /// Acknowledged handed-over buffers, for the application to reuse.
    spent: Vec<Vec<u8>>,
    spent_bytes: usize,
    spent_cap: usize,
    /// Chunks dropped from the front so far: `chunks[i]` is chunk number `popped + i`.
    popped: u64,
    /// The number of the chunk the last lookup found. Packets are read in stream order
    /// almost always, so the next lookup lands in it or the one after, and skips the
    /// binary search (which was ~0.7 % of all CPU on one fast stream).
    hint: Cell<u64>,
}

impl SendBuf {
    /// An empty buffer that keeps at most `spent_cap` bytes of acknowledged buffers for
    /// [`SendBuf::take_spent`] (beyond that they are freed).
    pub(crate) fn new(spent_cap: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            base: 0,
            end: 0,
            spent: Vec::new(),
            spent_bytes: 0,
            spent_cap,
            popped: 0,
            hint: Cell::new(0),
        }
    }

    /// Stream offset one past the newest byte held.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        (self.end - self.base) as usize
    }

    /// Appends a copy of `data`.
    pub(crate) fn write(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // Append to the newest copied chunk while it has room and no transmit queue
        // points into it (`get_mut` proves the latter; appending within the capacity
        // never moves the bytes anyway).
        if let Some(last) = self.chunks.back_mut()
            && !last.owned
            && let Some(v) = Arc::get_mut(&mut last.data)
            && v.capacity() - v.len() >= data.len()
        {
            v.extend_from_slice(data);
            self.end += data.len() as u64;
            return;
        }
        let mut v = Vec::with_capacity(data.len().max(COPY_CHUNK));
        v.extend_from_slice(data);
        self.push(v, 0, false);
    }

    /// Appends `chunk[start..]` without copying it; the whole buffer comes back through
    /// [`SendBuf::take_spent`] once acknowledged.
    pub(crate) fn push_chunk(&mut self, chunk: Vec<u8>, start: usize) {
        if chunk.len() > start {
            self.push(chunk, start, true);
        }
    }

    fn push(&mut self, data: Vec<u8>, start: usize, owned: bool) {
        let off = self.end;
        self.end += (data.len() - start) as u64;
        self.chunks.push_back(Chunk { off, data: Arc::new(data), start, owned });
    }

    /// Forgets everything before stream offset `off` (acknowledged), dropping chunks that
    /// lie wholly before it.
    pub(crate) fn release_to(&mut self, off: u64) {
        let off = off.clamp(self.base, self.end);
        self.base = off;
        while self.chunks.front().is_some_and(|c| c.end() <= off) {
            let Some(c) = self.chunks.pop_front() else { break };
            self.popped += 1;
            // Give it back if this was the last reference (a queued datagram may still
            // hold one: the buffer is then simply freed once that datagram is sent).
            if c.owned
                && let Some(v) = Arc::into_inner(c.data)
                && self.spent_bytes + v.capacity() <= self.spent_cap
            {
                self.spent_bytes += v.capacity();
                self.spent.push(v);
            }
        }
    }

    /// An acknowledged handed-over buffer, if any. It keeps its old bytes: a writer
    /// overwrites them, and a buffer of the right length needs no zero-fill first.
    pub(crate) fn take_spent(&mut self) -> Option<Vec<u8>> {
        let v = self.spent.pop()?;
        self.spent_bytes -= v.capacity();
        Some(v)
    }

    /// Index of the chunk holding stream offset `off` (`base <= off < end`).
    fn find(&self, off: u64) -> usize {
        let holds = |i: usize| self.chunks.get(i).is_some_and(|c| c.off <= off && off < c.end());
        // A hint from before the front chunk was dropped wraps to a huge index: no match.
        let h = self.hint.get().wrapping_sub(self.popped) as usize;
        let i = if holds(h) {
            h
        } else if holds(h.wrapping_add(1)) {
            h.wrapping_add(1)
        } else {
            self.chunks.partition_point(|c| c.end() <= off)
        };
        self.hint.set(self.popped + i as u64);
        i
    }

    /// The chunk holding all of `off..off + len` and the range of it, when one does
    /// (most packets of a large frame); `None` when the bytes span chunks.
    pub(crate) fn slice(&self, off: u64, len: usize) -> Option<(&Arc<Vec<u8>>, usize)> {
        let c = self.chunks.get(self.find(off))?;
        let start = c.start + (off.checked_sub(c.off)?) as usize;
        (start + len <= c.data.len()).then_some((&c.data, start))
    }

    /// Copies the bytes at stream offset `off` into `out` (all of it must be held).
    pub(crate) fn copy_out(&self, off: u64, out: &mut [u8]) {
        let mut at = off;
        let mut done = 0;
        for c in self.chunks.range(self.find(off)..) {
            if done == out.len() {
                break;
            }
            let start = c.start + (at - c.off) as usize;
            let n = (c.data.len() - start).min(out.len() - done);
            out[done..done + n].copy_from_slice(&c.data[start..start + n]);
            done += n;
            at += n as u64;
        }
        debug_assert_eq!(done, out.len(), "copy_out past the buffered bytes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(b: &SendBuf, off: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        b.copy_out(off, &mut out);
        out
    }

    #[test]
    fn chunks_read_back_across_boundaries() {
        let mut b = SendBuf::new(1 << 20);
        b.write(b"hello ");
        b.push_chunk(b"##big frame".to_vec(), 2);
        b.write(b" and");
        b.write(b" more");
        assert_eq!(b.len(), 24);
        assert_eq!(read(&b, 0, 24), b"hello big frame and more");
        assert_eq!(read(&b, 4, 6), b"o big ");
        // Inside one chunk: borrowed, not copied.
        let (c, at) = b.slice(6, 3).unwrap();
        assert_eq!(&c[at..at + 3], b"big");
        assert!(b.slice(4, 6).is_none());
        // Small writes share one copied chunk.
        let (c, at) = b.slice(15, 9).unwrap();
        assert_eq!(&c[at..at + 9], b" and more");
    }

    #[test]
    fn released_frames_come_back_once_unreferenced() {
        let mut b = SendBuf::new(1 << 20);
        b.push_chunk(vec![1; 100], 0);
        b.push_chunk(vec![2; 100], 0);
        b.write(&[3; 10]);
        let held = b.slice(100, 50).map(|(c, _)| c.clone()).unwrap();
        b.release_to(150);
        assert_eq!((b.base, b.len()), (150, 60));
        // The first frame is back; the second is still needed.
        assert_eq!(b.take_spent(), Some(vec![1; 100]));
        assert!(b.take_spent().is_none());
        b.release_to(210);
        // The second frame is still referenced (a queued datagram): freed, not reused.
        assert!(b.take_spent().is_none());
        assert_eq!(held[0], 2);
        assert_eq!(b.len(), 0);
        // Copied chunks are never handed out.
        b.write(&[4; 10]);
        b.release_to(220);
        assert!(b.take_spent().is_none());
    }

    #[test]
    fn spent_buffers_are_bounded() {
        let mut b = SendBuf::new(250);
        for _ in 0..5 {
            b.push_chunk(vec![0; 100], 0);
        }
        b.release_to(500);
        let mut n = 0;
        while b.take_spent().is_some() {
            n += 1;
        }
        assert_eq!(n, 2);
    }

    /// Lookups in stream order, backwards, at random and across releases (which shift
    /// the chunks under the lookup hint) all read the right bytes.
    #[test]
    fn lookups_in_any_order_read_the_right_bytes() {
        let mut b = SendBuf::new(0);
        let mut model = Vec::new();
        for i in 0..40u32 {
            let len = 1 + (i as usize * 7919) % 300;
            let bytes: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
            if i % 3 == 0 {
                b.write(&bytes);
            } else {
                let mut framed = vec![0xee; 5];
                framed.extend_from_slice(&bytes);
                b.push_chunk(framed, 5);
            }
            model.extend_from_slice(&bytes);
        }
        let check = |b: &SendBuf, off: u64, len: usize| {
            let (o, l) = (off as usize, len);
            assert_eq!(read(b, off, len), model[o..o + l], "copy_out at {off}");
            if let Some((c, at)) = b.slice(off, len) {
                assert_eq!(&c[at..at + len], &model[o..o + l], "slice at {off}");
            }
        };
        let mut seed = 12345u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..4u64 {
            let base = b.base;
            let len = b.len() as u64;
            for off in (base..base + len - 8).step_by(13) {
                check(&b, off, 8);
            }
            for off in (base..base + len - 8).rev().step_by(29) {
                check(&b, off, 8);
            }
            for _ in 0..200 {
                let off = base + next(len - 1);
                let n = 1 + next((base + len - off).min(64)) as usize;
                check(&b, off, n);
            }
            b.release_to(base + len / (5 - round));
        }
        // The hint names the front chunk, which is then dropped: the next lookup's hint
        // wraps below zero, and the chunk after it is the new front.
        let first_end = b.chunks[0].end();
        check(&b, b.base, 1);
        b.release_to(first_end);
        check(&b, b.base, 1);
        check(&b, b.base + 1, 4);
    }
}
