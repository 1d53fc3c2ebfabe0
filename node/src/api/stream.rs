//! [`SecureStream`]: an encrypted connection to a peer, for applications.
//!
//! The node's thread owns the UDX stream; this handle owns the secret-stream state. Bytes
//! cross between them through a [`Pipe`], one bounded buffer per direction, so that
//! encryption and decryption run on the application's thread (in parallel with the
//! network thread) and a slow reader or writer pushes back through the pipe into UDX
//! flow control instead of growing memory. The node is nudged with a `Pump` command only
//! when a buffer changes from a state it could be waiting on (empty outbound, full
//! inbound), so a busy stream costs one mailbox message per batch, not per write.
//!
//! Bytes are copied as few times as the layers allow (one stream is CPU-bound: issue 8
//! goal P5): a write encrypts buffer to buffer into a reused frame buffer that moves into
//! the pipe whole ([`Outbound`]); the node thread reads UDX straight into the inbound
//! buffer, which the handle swaps out and the secret-stream decoder takes over (its
//! headroom receives the partial frame the decoder held); frames are decrypted in place
//! and copied once, into the caller's buffer, or not at all when the caller reads them in
//! place through `BufRead` / `AsyncBufRead`.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};
use tern_crypto::noise::HandshakeResult;
use tern_crypto::secretstream::{
    ENVELOPE_OVERHEAD, FRAME_ROOM, UnorderedReceiver, UnorderedSender, frame_len,
};
use tern_crypto::secretstream::{SecretStream, StreamError};
use tern_driver::{EndpointHandle, SendError};

use crate::api::endpoint::{ApiCommand, ApiNode};

/// Encrypted bytes buffered per direction between the node thread and the handle.
pub(crate) const PIPE_CAPACITY: usize = 1 << 20;
/// Largest plaintext put in one frame by `write` (bigger writes are split).
const MAX_FRAME_PLAINTEXT: usize = 64 * 1024;
/// Unordered messages queued per direction (beyond, the newest is dropped: they are
/// unreliable by contract, and the queue is fed by the network).
pub(crate) const MAX_QUEUED_MESSAGES: usize = 256;
/// The largest unordered message that fits one datagram at UDX's base MTU (1200 bytes
/// less the 20-byte header and the envelope's counter and tag).
pub const MAX_UNORDERED_MESSAGE_LEN: usize = 1200 - 20 - ENVELOPE_OVERHEAD;

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

/// Ciphertext the node thread received for the handle, at `HEADROOM..HEADROOM + filled`
/// in `buf`. The buffer's initialised length only grows (to at most `HEADROOM +
/// PIPE_CAPACITY`), so UDX reads straight into it without zero-filling first or going
/// through a scratch buffer; the handle swaps whole buffers with it.
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    buf: Vec<u8>,
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

    /// Appends up to `room` bytes produced by `read` (which fills a slice and says how much
    /// it wrote); returns that count.
    pub(crate) fn fill_with(
        &mut self,
        room: usize,
        read: impl FnOnce(&mut [u8]) -> usize,
    ) -> usize {
        let at = HEADROOM + self.filled;
        if self.buf.len() < at + room {
            self.buf.resize(at + room, 0);
        }
        let n = read(&mut self.buf[at..at + room]).min(room);
        self.filled += n;
        n
    }

    /// Hands the bytes held to `secret` (which may take the buffer over and leave another
    /// in its place) and empties this.
    fn feed(&mut self, secret: &mut SecretStream) -> Result<(), StreamError> {
        let data = HEADROOM..HEADROOM + self.filled;
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
        self.stage.fill_with(data.len(), |buf| {
            buf.copy_from_slice(data);
            data.len()
        });
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
            let data = &staged.buf[HEADROOM..HEADROOM + staged.filled];
            s.inbound.fill_with(data.len(), |buf| {
                buf.copy_from_slice(data);
                data.len()
            });
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

/// An end-to-end encrypted, reliable byte stream to a peer (hyperdht connection:
/// Noise IK handshake, UDX stream, secret-stream framing).
///
/// Read and write it through [`futures_io::AsyncRead`] / [`futures_io::AsyncWrite`]
/// (any executor; tokio users wrap it with `tokio_util::compat`) or through the blocking
/// [`std::io::Read`] / [`std::io::Write`] implementations; [`std::io::BufRead`] and
/// [`futures_io::AsyncBufRead`] lend the decrypted bytes in place instead of copying them. Each write becomes one
/// secret-stream message (split at 64 KiB). `close` ends our direction (UDX END, the
/// peer reads EOF); [`SecureStream::destroy`] resets both.
pub struct SecureStream {
    pipe: Arc<Pipe>,
    node: EndpointHandle<ApiNode>,
    stream: u32,
    secret: SecretStream,
    handshake: HandshakeResult,
    /// Ciphertext taken from the pipe, not yet decrypted.
    scratch: Inbound,
    failed: Option<io::ErrorKind>,
    unordered_tx: UnorderedSender,
    unordered_rx: UnorderedReceiver,
}

impl std::fmt::Debug for SecureStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureStream")
            .field("stream", &self.stream)
            .field("remote_public_key", &self.handshake.remote_public_key)
            .finish_non_exhaustive()
    }
}

impl SecureStream {
    /// A stream over the pipe of UDX stream `stream`; queues our header frame.
    pub(crate) fn new(
        pipe: Arc<Pipe>,
        node: EndpointHandle<ApiNode>,
        stream: u32,
        handshake: HandshakeResult,
        header: [u8; 24],
    ) -> Self {
        let secret = SecretStream::new(&handshake, &header);
        pipe.lock().outbound.push(secret.header_frame().to_vec(), 0);
        // The unordered counter starts at 8 random bytes (from the header's, which are).
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&header[16..24]);
        let unordered_tx = UnorderedSender::new(&handshake.hash, handshake.is_initiator, counter);
        let unordered_rx = UnorderedReceiver::new(&handshake.hash, handshake.is_initiator);
        Self {
            unordered_tx,
            unordered_rx,
            pipe,
            node,
            stream,
            secret,
            handshake,
            scratch: Inbound::default(),
            failed: None,
        }
    }

    /// The peer's authenticated static public key.
    pub fn remote_public_key(&self) -> [u8; 32] {
        *self.handshake.remote_public_key.as_bytes()
    }

    /// Our static public key on this connection.
    pub fn public_key(&self) -> [u8; 32] {
        *self.handshake.local_public_key.as_bytes()
    }

    /// The Noise handshake hash, identical on both ends (channel binding).
    pub fn handshake_hash(&self) -> [u8; 64] {
        self.handshake.hash
    }

    /// Whether we opened the connection.
    pub fn is_initiator(&self) -> bool {
        self.handshake.is_initiator
    }

    /// Sends one unordered message: a UDX MESSAGE datagram sealed as secret-stream's
    /// unordered envelope, so it may arrive out of order or not at all (secret-stream's
    /// `send`/`trySend`). At most [`MAX_UNORDERED_MESSAGE_LEN`] bytes; when 256 are already
    /// waiting for the node, the message is dropped like a lost datagram.
    pub fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
        if let Some(kind) = self.failed {
            return Err(kind.into());
        }
        if message.len() > MAX_UNORDERED_MESSAGE_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "message too large"));
        }
        let mut envelope = Vec::with_capacity(message.len() + ENVELOPE_OVERHEAD);
        self.unordered_tx
            .seal(message, &mut envelope)
            .map_err(|e| io::Error::other(e.to_string()))?;
        {
            let mut s = self.pipe.lock();
            if let Some(c) = s.closed {
                let kind = match c {
                    Closed::Clean => io::ErrorKind::BrokenPipe,
                    Closed::Error(kind) => kind,
                };
                return Err(kind.into());
            }
            if s.messages_out.len() < MAX_QUEUED_MESSAGES {
                s.messages_out.push_back(envelope);
            }
        }
        self.nudge();
        Ok(())
    }

    /// The next unordered message received, if one is waiting (forged or corrupted
    /// envelopes are skipped).
    pub fn try_recv_message(&mut self) -> Option<Vec<u8>> {
        loop {
            let envelope = self.pipe.lock().messages_in.pop_front()?;
            let mut out = Vec::new();
            if self.unordered_rx.open(&envelope, &mut out).is_ok() {
                return Some(out);
            }
        }
    }

    /// Waits for the next unordered message; `None` once the stream is closed and
    /// nothing is left.
    pub fn poll_recv_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        if let Some(m) = self.try_recv_message() {
            return Poll::Ready(Some(m));
        }
        let mut s = self.pipe.lock();
        if !s.messages_in.is_empty() {
            drop(s);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if s.closed.is_some() {
            return Poll::Ready(None);
        }
        s.message_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Resets the connection at once (UDX DESTROY; the peer sees an error).
    pub fn destroy(&mut self) {
        let mut s = self.pipe.lock();
        s.destroy_requested = true;
        drop(s);
        self.nudge();
        self.failed = Some(io::ErrorKind::ConnectionAborted);
    }

    /// Asks the node thread to move this stream's bytes; false when its mailbox was full
    /// (it drains within a loop turn: a caller about to wait must poll again, see
    /// [`Self::nudge_or_repoll`]).
    fn nudge(&self) -> bool {
        let mut s = self.pipe.lock();
        if s.pump_queued || s.closed.is_some() {
            return true;
        }
        s.pump_queued = true;
        drop(s);
        match self.node.send(ApiCommand::Pump(self.stream)) {
            Ok(()) => true,
            Err(SendError::Full(_)) => {
                self.pipe.lock().pump_queued = false;
                false
            }
            Err(_) => {
                self.pipe.lock().closed = Some(Closed::Error(io::ErrorKind::NotConnected));
                true
            }
        }
    }

    /// Nudges before returning `Pending`: if the nudge did not get through, the pump
    /// that would wake this task will not run, so the task is woken at once to try again
    /// instead of waiting for ever.
    fn nudge_or_repoll(&self, cx: &Context<'_>) {
        if !self.nudge() {
            cx.waker().wake_by_ref();
        }
    }

    /// Fails the stream after a decryption or framing error (remote input: reset it).
    fn fail_invalid(&mut self) -> Poll<io::Result<usize>> {
        self.failed = Some(io::ErrorKind::InvalidData);
        self.destroy();
        Poll::Ready(Err(io::ErrorKind::InvalidData.into()))
    }

    /// Reads plaintext into `buf`: decrypts frames already buffered, else takes what the
    /// pipe holds. Frames are decrypted in place in the secret-stream's buffer and copied
    /// from there straight into `buf` (no staging buffer in between).
    fn read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            if let Some(kind) = self.failed {
                return Poll::Ready(Err(kind.into()));
            }
            match self.secret.read_plaintext(buf) {
                Ok(0) => {}
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(_) => return self.fail_invalid(),
            }
            match self.take_pipe(cx) {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Makes decrypted plaintext available in place ([`SecretStream::fill_plaintext`]):
    /// `Ready(Ok(()))` once some is, or at the end of the stream (then none is).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if let Some(kind) = self.failed {
                return Poll::Ready(Err(kind.into()));
            }
            match self.secret.fill_plaintext() {
                Ok([]) => {}
                Ok(_) => return Poll::Ready(Ok(())),
                Err(_) => {
                    let _ = self.fail_invalid();
                    return Poll::Ready(Err(io::ErrorKind::InvalidData.into()));
                }
            }
            match self.take_pipe(cx) {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => return Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Hands the ciphertext the pipe holds to the secret-stream decoder: `Ready(Ok(true))`
    /// when it did, `Ready(Ok(false))` at the end of the stream, `Pending` (the waker
    /// registered) while the pipe is empty.
    fn take_pipe(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let (was_full, unsent, ended, closed) = {
            let mut s = self.pipe.lock();
            // Taking a full pipe reopens UDX's window: the pump tells the peer. Bytes the
            // node staged behind these can move in now: the pump flushes them.
            let was_full =
                s.inbound.len() >= PIPE_CAPACITY || s.spilled || self.pipe.staged_len() > 0;
            std::mem::swap(&mut self.scratch, &mut s.inbound);
            self.pipe.set_inbound_len(s.inbound.len());
            let (ended, closed) = (s.read_ended, s.closed);
            if self.scratch.is_empty() && !ended && closed.is_none() {
                s.read_waker = Some(cx.waker().clone());
            }
            // Written bytes or an END the node was never told about (a nudge that
            // met a full mailbox): the answer we are about to wait for needs them.
            let unsent =
                !s.pump_queued && (!s.outbound.is_empty() || (s.end_requested && !s.end_sent));
            (was_full, unsent, ended, closed)
        };
        if was_full || (unsent && self.scratch.is_empty()) {
            self.nudge_or_repoll(cx);
        }
        if self.scratch.is_empty() {
            return match (ended, closed) {
                (true, _) | (_, Some(Closed::Clean)) => Poll::Ready(Ok(false)),
                (_, Some(Closed::Error(kind))) => Poll::Ready(Err(kind.into())),
                _ => Poll::Pending,
            };
        }
        if self.scratch.feed(&mut self.secret).is_err() {
            let _ = self.fail_invalid();
            return Poll::Ready(Err(io::ErrorKind::InvalidData.into()));
        }
        Poll::Ready(Ok(true))
    }
}

impl AsyncRead for SecureStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.read_into(cx, buf)
    }
}

/// Reading without a copy: the slice lent is the plaintext decrypted in place in the
/// receive buffer (one message at most per call).
impl AsyncBufRead for SecureStream {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        match this.poll_fill(cx) {
            Poll::Ready(Ok(())) => {
                // Ready means plaintext is buffered (or the stream ended): this lends it
                // without decrypting anything again.
                Poll::Ready(
                    this.secret.fill_plaintext().map_err(|_| io::ErrorKind::InvalidData.into()),
                )
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().secret.consume_plaintext(amt);
    }
}

impl AsyncWrite for SecureStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(kind) = this.failed {
            return Poll::Ready(Err(kind.into()));
        }
        // An empty write is a no-op, as for a socket (an empty frame would be a
        // secret-stream keepalive).
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut frame = {
            let mut s = this.pipe.lock();
            if let Some(c) = s.closed {
                let kind = match c {
                    Closed::Clean => io::ErrorKind::BrokenPipe,
                    Closed::Error(kind) => kind,
                };
                return Poll::Ready(Err(kind.into()));
            }
            if s.end_requested {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if !s.outbound.has_room() {
                s.write_waker = Some(cx.waker().clone());
                drop(s);
                this.nudge_or_repoll(cx);
                return Poll::Pending;
            }
            s.outbound.take_spare()
        };
        let n = buf.len().min(MAX_FRAME_PLAINTEXT);
        // A reused buffer keeps its old bytes (overwritten below): resizing only grows it,
        // so it is not zero-filled again for every frame.
        // Room in front lets a full frame be sealed in one pass (FRAME_ROOM); the frame
        // is what follows it, and only that is sent.
        frame.resize(FRAME_ROOM + frame_len(n), 0);
        if this.secret.encrypt_frame_with_room(&buf[..n], &mut frame, FRAME_ROOM).is_err() {
            return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
        }
        this.pipe.lock().outbound.push(frame, FRAME_ROOM);
        this.nudge();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut s = this.pipe.lock();
        if s.outbound.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if let Some(Closed::Error(kind)) = s.closed {
            return Poll::Ready(Err(kind.into()));
        }
        s.write_waker = Some(cx.waker().clone());
        drop(s);
        this.nudge_or_repoll(cx);
        Poll::Pending
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut s = this.pipe.lock();
        s.end_requested = true;
        // Done once the node thread has handed the END to UDX (after every byte written
        // before it). Waiting for that, not for an empty outbound buffer, matters: when
        // the node has already moved every byte, nothing else would make it pump again
        // and send the END — the peer would wait for our EOF forever.
        if s.end_sent || s.closed.is_some() {
            return Poll::Ready(Ok(()));
        }
        s.write_waker = Some(cx.waker().clone());
        drop(s);
        this.nudge_or_repoll(cx);
        Poll::Pending
    }
}

impl io::Read for SecureStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        futures_executor::block_on(std::future::poll_fn(|cx| {
            Pin::new(&mut *self).poll_read(cx, buf)
        }))
    }
}

impl io::BufRead for SecureStream {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        futures_executor::block_on(std::future::poll_fn(|cx| self.poll_fill(cx)))?;
        self.secret.fill_plaintext().map_err(|_| io::ErrorKind::InvalidData.into())
    }

    fn consume(&mut self, amt: usize) {
        self.secret.consume_plaintext(amt);
    }
}

impl io::Write for SecureStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        futures_executor::block_on(std::future::poll_fn(|cx| {
            Pin::new(&mut *self).poll_write(cx, buf)
        }))
    }

    fn flush(&mut self) -> io::Result<()> {
        futures_executor::block_on(std::future::poll_fn(|cx| Pin::new(&mut *self).poll_flush(cx)))
    }
}

impl SecureStream {
    /// Ends our direction (UDX END after everything written), blocking until it is
    /// handed to UDX. The peer reads EOF; we can keep reading.
    pub fn close_blocking(&mut self) -> io::Result<()> {
        futures_executor::block_on(std::future::poll_fn(|cx| Pin::new(&mut *self).poll_close(cx)))
    }
}

impl Drop for SecureStream {
    fn drop(&mut self) {
        // Like dropping a TCP socket: what was written is still delivered, then our side
        // ends; whatever the peer still sends is discarded by the node.
        let mut s = self.pipe.lock();
        s.dropped = true;
        s.end_requested = true;
        s.read_waker = None;
        s.write_waker = None;
        s.message_waker = None;
        s.messages_in.clear();
        drop(s);
        self.nudge();
    }
}

/// The reading half of a [`SecureStream`] (see [`SecureStream::split`]).
#[derive(Debug)]
pub struct ReadHalf(Arc<Mutex<SecureStream>>);

/// The writing half of a [`SecureStream`] (see [`SecureStream::split`]).
#[derive(Debug)]
pub struct WriteHalf(Arc<Mutex<SecureStream>>);

impl SecureStream {
    /// Splits the stream so that one thread or task reads while another writes. The
    /// halves share the stream behind a lock held only for the duration of one poll.
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        let shared = Arc::new(Mutex::new(self));
        (ReadHalf(shared.clone()), WriteHalf(shared))
    }
}

fn lock_stream(s: &Mutex<SecureStream>) -> MutexGuard<'_, SecureStream> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock_stream(&self.0)).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock_stream(&self.0)).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock_stream(&self.0)).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock_stream(&self.0)).poll_close(cx)
    }
}

impl io::Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        futures_executor::block_on(std::future::poll_fn(|cx| {
            Pin::new(&mut *self).poll_read(cx, buf)
        }))
    }
}

impl io::Write for WriteHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        futures_executor::block_on(std::future::poll_fn(|cx| {
            Pin::new(&mut *self).poll_write(cx, buf)
        }))
    }

    fn flush(&mut self) -> io::Result<()> {
        futures_executor::block_on(std::future::poll_fn(|cx| Pin::new(&mut *self).poll_flush(cx)))
    }
}

impl WriteHalf {
    /// Ends our direction, blocking until it is handed to UDX.
    pub fn close_blocking(&mut self) -> io::Result<()> {
        futures_executor::block_on(std::future::poll_fn(|cx| Pin::new(&mut *self).poll_close(cx)))
    }
}
