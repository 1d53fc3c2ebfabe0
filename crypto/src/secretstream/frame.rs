//! secret-stream framing: `uint24le(body length) || body`, reassembled across arbitrary chunk
//! boundaries (spec `hyperswarm-transport.md` §2.1).
//!
//! Everything on a secret-stream's raw byte stream is a frame: the XX handshake messages, the
//! header frame and the encrypted messages. [`FrameDecoder`] is the receive side, usable for the
//! handshake frames and then handed to [`super::SecretStream`] with whatever it has buffered
//! (the peer may send its header right behind its last handshake message).
//!
//! Memory bound (DESIGN.md principle 4): the decoder holds at most one partial frame plus one
//! input chunk. The caller feeds a chunk with [`FrameDecoder::handle_data`] and drains every
//! complete frame with [`FrameDecoder::poll_frame`] before feeding the next; a peer cannot make
//! it buffer more than `3 + max_body` bytes beyond the current chunk, and a declared length
//! above `max_body` is refused as soon as its 3 length bytes arrive.

use core::ops::Range;

/// Length of the frame prefix.
pub const FRAME_PREFIX_LEN: usize = 3;
/// Largest frame body the 24-bit length can express (and secret-stream accepts).
pub const MAX_FRAME_BODY: usize = (1 << 24) - 1;
/// Default slack for one input chunk on top of one maximal frame (UDX hands over reads of at
/// most a few tens of KiB; 256 KiB leaves room for batched reads).
pub const DEFAULT_CHUNK_SLACK: usize = 256 * 1024;

/// Framing failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer declared a body longer than this decoder accepts (remote input).
    #[error("frame body of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// `handle_data` would exceed the buffer bound: frames were not drained between chunks, or
    /// a chunk is larger than the configured slack (local misuse).
    #[error("frame buffer full; drain frames before feeding more data")]
    BufferFull,
    /// A body to encode is longer than `2^24 - 1` bytes (local misuse).
    #[error("frame body of {0} bytes does not fit a 24-bit length")]
    BodyTooLong(usize),
}

/// Writes the 3-byte little-endian length prefix of a `body_len`-byte frame.
pub fn encode_prefix(body_len: usize) -> Result<[u8; FRAME_PREFIX_LEN], FrameError> {
    if body_len > MAX_FRAME_BODY {
        return Err(FrameError::BodyTooLong(body_len));
    }
    let [a, b, c, _] = (body_len as u32).to_le_bytes();
    Ok([a, b, c])
}

/// Appends `uint24le(body.len()) || body` to `out`.
pub fn encode_frame(body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let prefix = encode_prefix(body.len())?;
    out.reserve(FRAME_PREFIX_LEN + body.len());
    out.extend_from_slice(&prefix);
    out.extend_from_slice(body);
    Ok(())
}

/// Reassembles frames from a byte stream.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    /// `buf[..end]` holds received bytes; past `end` it keeps stale bytes, so that it is not
    /// zero-filled again when it grows back (and a buffer taken over by `handle_chunk`
    /// keeps its length).
    buf: Vec<u8>,
    /// Offset of the first unconsumed byte in `buf`.
    start: usize,
    /// End of the received bytes in `buf`.
    end: usize,
    max_body: usize,
    max_buffered: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// Accepts bodies up to [`MAX_FRAME_BODY`], chunks up to [`DEFAULT_CHUNK_SLACK`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_limits(MAX_FRAME_BODY, DEFAULT_CHUNK_SLACK)
    }

    /// Accepts bodies up to `max_body` (capped at [`MAX_FRAME_BODY`]) and input chunks up to
    /// `chunk_slack` bytes; buffered bytes never exceed `3 + max_body + chunk_slack`.
    #[must_use]
    pub fn with_limits(max_body: usize, chunk_slack: usize) -> Self {
        let max_body = max_body.min(MAX_FRAME_BODY);
        Self {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max_body,
            max_buffered: FRAME_PREFIX_LEN + max_body + chunk_slack,
        }
    }

    /// Buffers a received chunk. Drain [`FrameDecoder::poll_frame`] before the next call.
    pub fn handle_data(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if self.start > 0 {
            // Only the unconsumed tail (a partial frame) moves.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end + data.len() > self.max_buffered {
            return Err(FrameError::BufferFull);
        }
        let end = self.end + data.len();
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        self.buf[self.end..end].copy_from_slice(data);
        self.end = end;
        Ok(())
    }

    /// Like [`FrameDecoder::handle_data`] for the bytes at `data` in `chunk`, taking the
    /// chunk's buffer over instead of copying it when the bytes still held (a partial frame)
    /// fit in front of `data`: they are copied there and the buffers are swapped, so `chunk`
    /// comes back holding this decoder's old buffer (stale bytes, for reuse). A receiver that
    /// leaves room in front of what it reads into so avoids copying every received byte once
    /// more. A `data` range outside `chunk` is refused as [`FrameError::BufferFull`].
    pub fn handle_chunk(
        &mut self,
        chunk: &mut Vec<u8>,
        data: Range<usize>,
    ) -> Result<(), FrameError> {
        let held = self.end - self.start;
        if data.start > data.end || data.end > chunk.len() {
            return Err(FrameError::BufferFull);
        }
        if held + data.len() > self.max_buffered {
            return Err(FrameError::BufferFull);
        }
        if held > data.start {
            return self.handle_data(&chunk[data]);
        }
        let at = data.start - held;
        chunk[at..data.start].copy_from_slice(&self.buf[self.start..self.end]);
        std::mem::swap(&mut self.buf, chunk);
        self.start = at;
        self.end = data.end;
        Ok(())
    }

    /// The next complete frame's body, if one is buffered. The slice is mutable so that it
    /// can be decrypted in place; it stays valid until the next call on this decoder.
    pub fn poll_frame(&mut self) -> Result<Option<&mut [u8]>, FrameError> {
        match self.next_frame_range()? {
            Some(r) => Ok(Some(&mut self.buf[r])),
            None => Ok(None),
        }
    }

    /// Like [`FrameDecoder::poll_frame`], as a range into the internal buffer (valid until the
    /// next `handle_data`); lets callers that loop over frames return a borrow afterwards.
    pub(crate) fn next_frame_range(&mut self) -> Result<Option<Range<usize>>, FrameError> {
        let avail = &self.buf[self.start..self.end];
        let Some(prefix) = avail.first_chunk::<FRAME_PREFIX_LEN>() else {
            return Ok(None);
        };
        let len =
            usize::from(prefix[0]) | (usize::from(prefix[1]) << 8) | (usize::from(prefix[2]) << 16);
        if len > self.max_body {
            return Err(FrameError::TooLarge(len));
        }
        if avail.len() < FRAME_PREFIX_LEN + len {
            return Ok(None);
        }
        let body_start = self.start + FRAME_PREFIX_LEN;
        // The consumed prefix is dropped lazily by the next `handle_data`.
        self.start = body_start + len;
        Ok(Some(body_start..self.start))
    }

    /// The bytes of a range returned by `next_frame_range`, mutable, with up to `room`
    /// bytes in front of it: those (the frame's prefix, consumed frames, stale bytes)
    /// are free to overwrite once the caller is done with every earlier frame. Returns
    /// the slice and where the range starts in it (an out-of-bounds range gives an empty
    /// slice).
    pub(crate) fn range_with_room(&mut self, r: Range<usize>, room: usize) -> (&mut [u8], usize) {
        let lo = r.start.saturating_sub(room);
        let at = r.start - lo;
        (self.buf.get_mut(lo..r.end).unwrap_or_default(), at)
    }

    /// Buffer bytes of a range returned by `next_frame_range` (empty if out of bounds).
    pub(crate) fn range(&self, r: Range<usize>) -> &[u8] {
        self.buf.get(r).unwrap_or_default()
    }

    /// Bytes received but not yet returned as frames (a partial frame, or frames not yet
    /// polled).
    #[must_use]
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Largest body this decoder accepts.
    #[must_use]
    pub fn max_body(&self) -> usize {
        self.max_body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(d: &mut FrameDecoder, out: &mut Vec<Vec<u8>>) -> Result<(), FrameError> {
        while let Some(f) = d.poll_frame()? {
            out.push(f.to_vec());
        }
        Ok(())
    }

    #[test]
    fn prefix_limits() {
        assert_eq!(encode_prefix(0), Ok([0, 0, 0]));
        assert_eq!(encode_prefix(56), Ok([56, 0, 0]));
        assert_eq!(encode_prefix(MAX_FRAME_BODY), Ok([0xff, 0xff, 0xff]));
        assert_eq!(encode_prefix(MAX_FRAME_BODY + 1), Err(FrameError::BodyTooLong(1 << 24)));
    }

    #[test]
    fn oversized_declaration_refused_early() {
        let mut d = FrameDecoder::with_limits(100, 1000);
        d.handle_data(&[101, 0]).unwrap();
        assert_eq!(d.poll_frame().unwrap(), None);
        d.handle_data(&[0]).unwrap();
        assert_eq!(d.poll_frame(), Err(FrameError::TooLarge(101)));
    }

    #[test]
    fn buffer_is_bounded() {
        let mut d = FrameDecoder::with_limits(10, 20);
        assert_eq!(d.handle_data(&[0; 34]), Err(FrameError::BufferFull));
        d.handle_data(&[10, 0, 0]).unwrap();
        d.handle_data(&[1; 20]).unwrap(); // 23 buffered: one frame of 10 + 10 more bytes
        assert_eq!(d.handle_data(&[1; 11]), Err(FrameError::BufferFull));
        assert!(d.poll_frame().unwrap().is_some());
        // After draining, the consumed frame no longer counts.
        d.handle_data(&[1; 11]).unwrap();
    }

    #[test]
    fn handle_chunk_takes_the_buffer_over_or_copies() {
        let mut d = FrameDecoder::with_limits(100, 1000);
        // A whole frame and the start of the next, behind 4 bytes of headroom.
        let mut chunk = vec![0, 0, 0, 0, 2, 0, 0, 7, 8, 3, 0];
        d.handle_chunk(&mut chunk, 4..11).unwrap();
        assert!(chunk.is_empty(), "the decoder's empty buffer comes back");
        assert_eq!(d.poll_frame().unwrap().map(|f| f.to_vec()), Some(vec![7, 8]));
        assert_eq!(d.poll_frame().unwrap(), None);
        // The held 2-byte partial fits in the 4 bytes of headroom: moved there, no copy.
        let mut next = vec![9, 9, 9, 9, 0, 1, 2, 3];
        d.handle_chunk(&mut next, 4..8).unwrap();
        assert_eq!(next.len(), 11, "the old buffer comes back, stale bytes and all");
        assert_eq!(d.poll_frame().unwrap().map(|f| f.to_vec()), Some(vec![1, 2, 3]));
        // Without headroom for the held bytes it copies like handle_data.
        let mut tiny = vec![5, 0, 0, 1];
        d.handle_chunk(&mut tiny, 0..4).unwrap();
        let mut rest = vec![2, 3, 4, 5];
        d.handle_chunk(&mut rest, 1..4).unwrap();
        assert_eq!(rest, [2, 3, 4, 5], "copied, not taken over");
        assert_eq!(d.poll_frame().unwrap(), None);
        d.handle_data(&[6]).unwrap();
        assert_eq!(d.poll_frame().unwrap().map(|f| f.to_vec()), Some(vec![1, 3, 4, 5, 6]));
        // Bounds: a range outside the chunk, or more than the decoder may hold.
        assert_eq!(d.handle_chunk(&mut vec![0; 4], 2..5), Err(FrameError::BufferFull));
        let mut big = vec![0; 1300];
        assert_eq!(d.handle_chunk(&mut big, 100..1300), Err(FrameError::BufferFull));
    }

    proptest! {
        #[test]
        fn chunks_with_headroom_reassemble(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
            cuts in proptest::collection::vec((0usize..64, 0usize..80), 0..200),
        ) {
            let mut wire = Vec::new();
            for b in &bodies {
                encode_frame(b, &mut wire).unwrap();
            }
            let mut d = FrameDecoder::with_limits(1000, 64);
            let (mut got, mut spare) = (Vec::new(), Vec::new());
            let mut rest = &wire[..];
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let (n, headroom) = cuts.next().unwrap_or((64, 0));
                let n = n.min(rest.len());
                // Stale bytes everywhere but the data, as a reused buffer would hold.
                spare.clear();
                spare.resize(headroom, 0xee);
                spare.extend_from_slice(&rest[..n]);
                spare.extend_from_slice(&[0xdd; 3]);
                d.handle_chunk(&mut spare, headroom..headroom + n).unwrap();
                drain(&mut d, &mut got).unwrap();
                rest = &rest[n..];
            }
            prop_assert_eq!(got, bodies);
            prop_assert!(d.buffered().is_empty());
        }
    }

    proptest! {
        #[test]
        fn reassembles_across_any_chunking(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
            cuts in proptest::collection::vec(0usize..64, 0..200),
        ) {
            let mut wire = Vec::new();
            for b in &bodies {
                encode_frame(b, &mut wire).unwrap();
            }
            let mut d = FrameDecoder::with_limits(1000, 64);
            let mut got = Vec::new();
            let mut rest = &wire[..];
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(64).min(rest.len());
                d.handle_data(&rest[..n]).unwrap();
                drain(&mut d, &mut got).unwrap();
                rest = &rest[n..];
            }
            prop_assert_eq!(got, bodies);
            prop_assert!(d.buffered().is_empty());
        }
    }
}
