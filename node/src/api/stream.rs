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

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};
use tern_crypto::noise::HandshakeResult;
use tern_crypto::secretstream::SecretStream;
use tern_crypto::secretstream::{
    ENVELOPE_OVERHEAD, FRAME_ROOM, UnorderedReceiver, UnorderedSender, frame_len,
};
use tern_driver::{EndpointHandle, SendError};

use crate::api::endpoint::{ApiCommand, ApiNode};
use crate::api::pipe::{
    Closed, Inbound, MAX_FRAME_PLAINTEXT, MAX_QUEUED_MESSAGES, PIPE_CAPACITY, Pipe,
};

/// The largest unordered message that fits one datagram at UDX's base MTU (1200 bytes
/// less the 20-byte header and the envelope's counter and tag).
pub const MAX_UNORDERED_MESSAGE_LEN: usize = 1200 - 20 - ENVELOPE_OVERHEAD;

/// An end-to-end encrypted, reliable byte stream to a peer (hyperdht connection:
/// Noise IK handshake, UDX stream, secret-stream framing).
///
/// Read and write it through [`futures_io::AsyncRead`] / [`futures_io::AsyncWrite`]
/// (any executor; tokio users wrap it with `tokio_util::compat`) or through the blocking
/// [`std::io::Read`] / [`std::io::Write`] implementations; [`std::io::BufRead`] and
/// [`futures_io::AsyncBufRead`] lend the decrypted bytes in place instead of copying
/// them. Each write becomes one secret-stream message (split at 64 KiB). `close` ends our direction (UDX END, the
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
    fn fail_invalid<T>(&mut self) -> Poll<io::Result<T>> {
        self.failed = Some(io::ErrorKind::InvalidData);
        self.destroy();
        Poll::Ready(Err(io::ErrorKind::InvalidData.into()))
    }

    /// Reads plaintext into `buf`: as much as the frames buffered once some is there
    /// ([`Self::poll_fill`]), decrypted in place in the secret-stream's buffer and copied
    /// from there straight into `buf` (no staging buffer in between).
    fn read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.poll_fill(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        match self.secret.read_plaintext(buf) {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(_) => self.fail_invalid(),
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
                Err(_) => return self.fail_invalid(),
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
            return self.fail_invalid();
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
