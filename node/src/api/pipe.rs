//! The pipe between a [`SecureStream`](crate::SecureStream) handle and the node thread:
//! one bounded buffer per direction and the shared state around them.
//!
//! Outbound, whole encrypted frames move from the writer into UDX's send buffer without a
//! copy and come back for reuse once acknowledged ([`Outbound`]). Inbound, UDX hands a
//! stream's in-order bytes to [`PipeSink`] as they arrive; the sink stages them on the
//! node thread and swaps whole buffers into the pipe ([`Inbound`]), which the handle takes
//! and the secret-stream decoder takes over.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use tern_crypto::secretstream::{SecretStream, StreamError, frame_len};

/// Encrypted bytes buffered per direction between the node thread and the handle.
pub(crate) const PIPE_CAPACITY: usize = 1 << 20;
/// Largest plaintext put in one frame by `write` (bigger writes are split).
pub(crate) const MAX_FRAME_PLAINTEXT: usize = 64 * 1024;
/// Unordered messages queued per direction (beyond, the newest is dropped: they are
/// unreliable by contract, and the queue is fed by the network).
pub(crate) const MAX_QUEUED_MESSAGES: usize = 256;

/// How a stream ended, as the handle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// Both directions finished cleanly.
    Clean,
    /// The peer reset it, it timed out, or the node is gone.
    Error(io::ErrorKind),
}

/// Frame buffers kept for reuse per stream (a fresh 64 KiB allocation per write costs
/// zero-filling and page faults, which showed in profiles of one stream at ~400 MB/s).
/// Buffers come back from UDX once the peer acknowledged them; as many are kept as the
/// pipe holds frames, since the writer then refills the pipe with them.
const SPARE_FRAMES: usize = PIPE_CAPACITY / WRITE_ROOM + 1;
/// Room a writer waits for in the outbound pipe: one largest frame, so that the node
/// wakes it once per frame UDX took, not for every few bytes.
const WRITE_ROOM: usize = frame_len(MAX_FRAME_PLAINTEXT);

/// Frames the handle wrote, not yet accepted by UDX. Each frame's buffer moves in whole
/// from the writer and on into UDX's send buffer (no copy on the way: UDX sends its
/// packets from it), and comes back once acknowledged for the writer to reuse.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    /// Each frame is `buf[start..]`; what is before is room its encryption used.
    frames: VecDeque<(Vec<u8>, usize)>,
    /// Bytes queued.
    len: usize,
    /// Buffers to reuse (at most `SPARE_FRAMES`).
    spare: Vec<Vec<u8>>,
}

impl Outbound {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a writer may queue another frame: the frames held leave room for a
    /// largest one.
    pub(crate) fn has_room(&self) -> bool {
        self.len + WRITE_ROOM <= PIPE_CAPACITY
    }

    /// Queues a whole frame (or several back to back): `buf[start..]`.
    pub(crate) fn push(&mut self, buf: Vec<u8>, start: usize) {
        if buf.len() > start {
            self.len += buf.len() - start;
            self.frames.push_back((buf, start));
        }
    }

    /// Takes the oldest frame (to hand it to UDX): its buffer and where it starts.
    pub(crate) fn pop(&mut self) -> Option<(Vec<u8>, usize)> {
        let (buf, start) = self.frames.pop_front()?;
        self.len -= buf.len() - start;
        Some((buf, start))
    }

    /// Puts back (the rest of) a frame [`Outbound::pop`] took (UDX had no room for it).
    pub(crate) fn unpop(&mut self, buf: Vec<u8>, start: usize) {
        if buf.len() > start {
            self.len += buf.len() - start;
            self.frames.push_front((buf, start));
        }
    }

    /// Keeps `buf` for a later frame, if fewer than `SPARE_FRAMES` are kept.
    pub(crate) fn give_spare(&mut self, buf: Vec<u8>) {
        if self.wants_spare() {
            self.spare.push(buf);
        }
    }

    /// Whether fewer than `SPARE_FRAMES` buffers are kept.
    pub(crate) fn wants_spare(&self) -> bool {
        self.spare.len() < SPARE_FRAMES
    }

    /// A buffer for the next frame: a reused one (holding an old frame's bytes, to be
    /// overwritten) when available.
    pub(crate) fn take_spare(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }
}

/// Room left in front of received bytes: the secret-stream decoder moves the partial frame
/// it still holds there and takes the whole buffer over instead of copying the bytes into
/// its own (`FrameDecoder::handle_chunk`). One frame of our own writes fits; a peer's
/// bigger frames only cost that copy.
const HEADROOM: usize = frame_len(MAX_FRAME_PLAINTEXT);

/// The room in front of the bytes in a buffer whose initialised part does not cover
/// [`HEADROOM`] yet (a fresh connection's): zero-filling a whole frame's room in front of
/// a connection's first few hundred bytes was ~5 % of a server's CPU per connect. The
/// partial frames of such a stream are small; a bigger one only costs the decoder's copy.
const SMALL_HEADROOM: usize = 4 * 1024;

/// Ciphertext the node thread received for the handle, at `head..head + filled` in
/// `buf`. The buffer's initialised length only grows (to at most `HEADROOM +
/// PIPE_CAPACITY`), so UDX reads straight into it without zero-filling first or going
/// through a scratch buffer; the handle swaps whole buffers with it.
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    buf: Vec<u8>,
    /// Where the bytes start: [`HEADROOM`] once the initialised part covers it (then it
    /// costs nothing), else [`SMALL_HEADROOM`]. Chosen whenever the buffer is empty.
    head: usize,
    filled: usize,
}

impl Inbound {
    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.filled
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// The bytes held.
    fn held(&self) -> &[u8] {
        &self.buf[self.head..self.head + self.filled]
    }

    /// Picks the room in front for the bytes about to come into an empty buffer.
    fn begin(&mut self) {
        self.head = if self.buf.len() >= HEADROOM { HEADROOM } else { SMALL_HEADROOM };
    }

    /// Appends up to `room` bytes produced by `read` (which fills a slice and says how much
    /// it wrote); returns that count.
    pub(crate) fn fill_with(
        &mut self,
        room: usize,
        read: impl FnOnce(&mut [u8]) -> usize,
    ) -> usize {
        if self.filled == 0 {
            self.begin();
        }
        let at = self.head + self.filled;
        if self.buf.len() < at + room {
            self.buf.resize(at + room, 0);
        }
        let n = read(&mut self.buf[at..at + room]).min(room);
        self.filled += n;
        n
    }

    /// Appends `data` (the sink's copy): written straight behind the bytes held, without
    /// zero-filling first what is about to be overwritten. A buffer that must grow while
    /// empty is replaced by a fresh one of at least the pipe's capacity (nothing to carry
    /// over, so no reallocation copies stale bytes); one that holds bytes doubles. On a
    /// fresh connection at ~600 MB/s the growth's reallocation, zero-filling and page
    /// faults were 3 % of the receiving process.
    fn append(&mut self, data: &[u8]) {
        if self.filled == 0 {
            self.begin();
            if self.buf.capacity() < self.head + data.len() {
                self.buf = Vec::with_capacity(HEADROOM + data.len().max(PIPE_CAPACITY));
                self.begin();
            }
        }
        let at = self.head + self.filled;
        let end = at + data.len();
        if self.buf.len() < at {
            self.buf.resize(at, 0);
        }
        // Bytes already initialised past `at` (stale, from earlier use) are overwritten;
        // the rest extends the buffer.
        let overlap = self.buf.len().min(end) - at;
        self.buf[at..at + overlap].copy_from_slice(&data[..overlap]);
        self.buf.extend_from_slice(&data[overlap..]);
        self.filled += data.len();
    }

    /// Hands the bytes held to `secret` (which may take the buffer over and leave another
    /// in its place) and empties this.
    pub(crate) fn feed(&mut self, secret: &mut SecretStream) -> Result<(), StreamError> {
        let data = self.head..self.head + self.filled;
        self.filled = 0;
        secret.handle_chunk(&mut self.buf, data)
    }
}

/// UDX's sink for a stream's in-order bytes (`Udx::set_sink`): it copies them straight
/// into a buffer bound for the pipe as they arrive, so they are copied once on the node
/// thread instead of twice (into UDX's buffer, then out of it by a read). The bytes it
/// holds count against UDX's receive window, so the window, not the pipe, bounds them;
/// bytes past `SINK_CAPACITY` (only with a receive buffer configured larger) wait in UDX
/// as before (`spilled`). A dropped handle's bytes are discarded.
///
/// Double-buffered, so that the node thread takes the pipe's lock once per batch of
/// datagrams instead of once per packet (the lock's cache line bounced between the two
/// threads ~100k times per 128 MiB): packets land in `stage`, which only the node thread
/// touches; a flush (end of batch, or a pump the reader asked for) swaps it into the
/// pipe whole when the reader has taken what was there before. While the pipe still
/// holds bytes the stage keeps growing, and the reader asks for a flush when it takes
/// them (`Pipe::staged_len`), so the two buffers alternate without a copy.
#[derive(Debug)]
pub(crate) struct PipeSink {
    pipe: Arc<Pipe>,
    stage: Inbound,
}

impl PipeSink {
    pub(crate) fn new(pipe: Arc<Pipe>) -> Self {
        Self { pipe, stage: Inbound::default() }
    }
}

impl tern_core::udx::RecvSink for PipeSink {
    fn deliver(&mut self, data: &[u8]) -> bool {
        if self.buffered() + data.len() > SINK_CAPACITY {
            self.pipe.lock().spilled = true;
            return false;
        }
        self.stage.append(data);
        self.pipe.staged_len.store(self.stage.len(), Ordering::Relaxed);
        true
    }

    fn flush(&mut self) {
        if self.stage.is_empty() {
            return;
        }
        let mut s = self.pipe.lock();
        if s.dropped {
            self.stage.filled = 0;
        } else if s.inbound.is_empty() {
            std::mem::swap(&mut self.stage, &mut s.inbound);
            self.pipe.set_inbound_len(s.inbound.len());
            if let Some(w) = s.read_waker.take() {
                w.wake();
            }
        } else {
            // The reader has not taken the last batch yet: it asks for a flush when it
            // does (it sees `staged_len`).
            return;
        }
        self.pipe.staged_len.store(0, Ordering::Relaxed);
    }

    fn buffered(&self) -> usize {
        self.stage.len() + self.pipe.inbound_len.load(Ordering::Relaxed)
    }
}

impl Drop for PipeSink {
    /// UDX drops the sink with its stream, before it reports the close: what is staged
    /// goes into the pipe now (a copy, once per stream) so the reader sees every byte
    /// before the end.
    fn drop(&mut self) {
        if self.stage.is_empty() {
            return;
        }
        let mut s = self.pipe.lock();
        if !s.dropped {
            let staged = std::mem::take(&mut self.stage);
            s.inbound.append(staged.held());
            self.pipe.set_inbound_len(s.inbound.len());
        }
        self.pipe.staged_len.store(0, Ordering::Relaxed);
    }
}

/// Most bytes the sink puts in the inbound pipe: UDX's default receive buffer, whose
/// window bounds them first.
const SINK_CAPACITY: usize = 4 << 20;

/// The state shared by a stream's handle and the node thread.
#[derive(Debug, Default)]
pub(crate) struct PipeState {
    /// Ciphertext received, not yet taken by the handle.
    pub inbound: Inbound,
    /// UDX's sink ([`PipeSink`]) refused bytes for lack of room: they wait in UDX
    /// until a pump moves them, which the handle asks for once it has made room.
    pub spilled: bool,
    /// The peer ended its side and everything before the END is in `inbound`.
    pub read_ended: bool,
    /// Ciphertext written by the handle, not yet accepted by UDX.
    pub outbound: Outbound,
    /// The handle asked to end its side once `outbound` is flushed.
    pub end_requested: bool,
    /// The handle asked to reset the stream.
    pub destroy_requested: bool,
    /// The stream is gone.
    pub closed: Option<Closed>,
    /// A `Pump` command is in the node's mailbox.
    pub pump_queued: bool,
    /// The handle is gone: the node discards what still arrives.
    pub dropped: bool,
    /// Node side: our END went to UDX.
    pub end_sent: bool,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
    /// Unordered messages sealed by the handle, not yet handed to UDX.
    pub messages_out: VecDeque<Vec<u8>>,
    /// Unordered envelopes received, not yet opened by the handle.
    pub messages_in: VecDeque<Vec<u8>>,
    pub message_waker: Option<Waker>,
}

/// The shared state of one stream.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    state: Mutex<PipeState>,
    /// `inbound.len()`, kept beside the lock (stored while holding it) for UDX's window
    /// computation ([`PipeSink`]), which runs on the node thread at times when the
    /// node already holds the lock.
    inbound_len: AtomicUsize,
    /// Bytes the node thread's [`PipeSink`] holds that the pipe could not take yet: the
    /// reader asks for a flush when it sees some after taking the pipe's bytes.
    staged_len: AtomicUsize,
}

impl Pipe {
    pub(crate) fn lock(&self) -> MutexGuard<'_, PipeState> {
        // Plain data: a panic elsewhere cannot leave it inconsistent in a harmful way.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes the node's sink holds for the pipe ([`PipeSink`]).
    pub(crate) fn staged_len(&self) -> usize {
        self.staged_len.load(Ordering::Relaxed)
    }

    /// Records the inbound length (call with the lock held, after changing it).
    pub(crate) fn set_inbound_len(&self, len: usize) {
        self.inbound_len.store(len, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(i: &Inbound) -> &[u8] {
        i.held()
    }

    #[test]
    fn append_overwrites_stale_bytes_and_extends_past_them() {
        let mut i = Inbound::default();
        i.append(b"hello");
        assert_eq!(held(&i), b"hello");
        assert!(i.buf.capacity() >= HEADROOM + PIPE_CAPACITY, "a fresh buffer is roomy");
        assert_eq!(i.buf.len(), SMALL_HEADROOM + 5, "only a small room in front is zeroed");
        i.append(b" world");
        assert_eq!(held(&i), b"hello world");
        // Emptied (as after a swap), the buffer keeps its stale bytes: a shorter append
        // overwrites some of them, a longer one also extends the buffer.
        i.filled = 0;
        i.append(b"abc");
        assert_eq!(held(&i), b"abc");
        assert_eq!(i.buf.len(), SMALL_HEADROOM + 11, "stale bytes kept, not re-zeroed");
        i.append(&[7; 20]);
        assert_eq!(i.len(), 23);
        assert_eq!(&held(&i)[3..], &[7; 20]);
        assert_eq!(i.buf.len(), SMALL_HEADROOM + 23);
        // Once the initialised part covers a whole frame's room, an emptied buffer
        // leaves that room in front (for the decoder's partial frame) at no cost.
        i.append(&vec![9; HEADROOM]);
        i.filled = 0;
        let len = i.buf.len();
        i.append(b"xyz");
        assert_eq!((i.head, held(&i)), (HEADROOM, &b"xyz"[..]));
        assert_eq!(i.buf.len(), len, "nothing zeroed");
        // The pump's path picks its room the same way.
        let mut j = Inbound::default();
        assert_eq!(
            j.fill_with(100, |b| {
                b[..2].copy_from_slice(b"hi");
                2
            }),
            2
        );
        assert_eq!((j.head, held(&j)), (SMALL_HEADROOM, &b"hi"[..]));
        assert_eq!(j.buf.len(), SMALL_HEADROOM + 100);
    }

    #[test]
    fn a_sink_stages_until_the_reader_took_the_last_batch() {
        use tern_core::udx::RecvSink;
        let pipe = Arc::new(Pipe::default());
        let mut sink = PipeSink::new(pipe.clone());
        assert!(sink.deliver(b"one"));
        assert_eq!((pipe.staged_len(), sink.buffered()), (3, 3));
        sink.flush();
        assert_eq!(pipe.lock().inbound.len(), 3, "an empty pipe takes the batch whole");
        assert_eq!(pipe.staged_len(), 0);
        assert!(sink.deliver(b"two"));
        sink.flush();
        assert_eq!(pipe.lock().inbound.len(), 3, "the reader has not taken the last batch");
        assert_eq!((pipe.staged_len(), sink.buffered()), (3, 6));
        // The reader takes the pipe's bytes; the next flush moves the stage in.
        let mut taken = Inbound::default();
        std::mem::swap(&mut taken, &mut pipe.lock().inbound);
        pipe.set_inbound_len(0);
        assert_eq!(held(&taken), b"one");
        sink.flush();
        assert_eq!(held(&pipe.lock().inbound), b"two");
        // What is staged when UDX drops the sink (the stream closed) is not lost.
        assert!(sink.deliver(b"three"));
        drop(sink);
        assert_eq!(held(&pipe.lock().inbound), b"twothree");
    }
}
