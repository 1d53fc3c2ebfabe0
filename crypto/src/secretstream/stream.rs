//! The secret-stream session after the handshake: header exchange and data frames, sans-IO
//! (spec `hyperswarm-transport.md` §2.4–2.5).
//!
//! Each side sends one header frame, `uint24le(56) || own stream id (32) || secretstream header
//! (24)`, then data frames `uint24le(len + 17) || push(plaintext)`. It does not wait for the
//! peer's header before sending. The first frame received must be the peer's header: 56 bytes
//! starting with the peer's stream id, else the stream is destroyed. Its 24-byte header starts
//! the pull state keyed with `rx`.
//!
//! Driving it: write [`SecretStream::header_frame`] once, then [`SecretStream::encrypt_frame`]
//! per message; feed received bytes to [`SecretStream::handle_data`] and drain
//! [`SecretStream::poll_message`] until it returns `None`. Any receive error is final, as in JS
//! where it destroys the stream. A byte-stream reader may use [`SecretStream::read_plaintext`]
//! instead of `poll_message`: it copies plaintext straight out of the decoder's buffer (where
//! frames are decrypted in place) into the caller's, with no staging copy in between.

use core::ops::Range;

use zeroize::Zeroizing;

use super::cipher::{ABYTES, CipherError, HEADER_LEN, PullStream, PushStream, TAG_MESSAGE};
use super::frame::{FRAME_PREFIX_LEN, FrameDecoder, FrameError, MAX_FRAME_BODY, encode_prefix};
use crate::noise::{HandshakeResult, stream_id};

/// Body length of a header frame: stream id + secretstream header.
pub const HEADER_BODY_LEN: usize = 32 + HEADER_LEN;
/// Total length of a header frame on the wire (59).
pub const HEADER_FRAME_LEN: usize = FRAME_PREFIX_LEN + HEADER_BODY_LEN;
/// Bytes a data frame adds to its plaintext: the length prefix, tag byte and MAC (20).
pub const FRAME_OVERHEAD: usize = FRAME_PREFIX_LEN + ABYTES;

/// Length on the wire of the data frame carrying `plaintext_len` bytes.
#[must_use]
pub const fn frame_len(plaintext_len: usize) -> usize {
    plaintext_len + FRAME_OVERHEAD
}

/// Largest plaintext one frame carries: `2^24 - 1 - 17` = 16777198 bytes.
pub const MAX_MESSAGE_LEN: usize = MAX_FRAME_BODY - ABYTES;
/// Room in front of a frame that lets [`SecretStream::encrypt_frame_with_room`] seal it in
/// one pass: the 64-byte block 1 ends at the frame's tag byte, 60 bytes before the frame.
pub const FRAME_ROOM: usize = 64 - 1 - FRAME_PREFIX_LEN;

/// Secret-stream failures. Receive-side variants are remote input and end the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The first frame was not a 56-byte header carrying the peer's stream id.
    #[error("invalid secret-stream header received")]
    InvalidHeader,
    /// A data frame body shorter than 17 bytes.
    #[error("secret-stream frame too short")]
    FrameTooShort,
    /// A data frame failed authentication.
    #[error("secret-stream frame failed to decrypt")]
    Decrypt,
    /// The peer declared a frame above the configured limit.
    #[error("secret-stream frame of {0} bytes too large")]
    FrameTooLarge(usize),
    /// `handle_data` without draining `poll_message` (local misuse).
    #[error("receive buffer full; drain messages first")]
    BufferFull,
    /// A message longer than [`MAX_MESSAGE_LEN`] (local misuse; JS fails the write too).
    #[error("message of {0} bytes too large for one frame")]
    MessageTooLarge(usize),
    /// An earlier receive error destroyed the stream.
    #[error("secret-stream already failed")]
    Destroyed,
}

impl From<FrameError> for StreamError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge(n) => StreamError::FrameTooLarge(n),
            FrameError::BodyTooLong(n) => StreamError::MessageTooLarge(n),
            _ => StreamError::BufferFull,
        }
    }
}

/// Receive state: waiting for the peer's header, running, or dead.
enum Rx {
    AwaitHeader { key: Zeroizing<[u8; 32]>, remote_id: [u8; 32] },
    Open(PullStream),
    Failed,
}

/// One side of an established secret-stream (both directions).
pub struct SecretStream {
    is_initiator: bool,
    push: PushStream,
    header_frame: [u8; HEADER_FRAME_LEN],
    rx: Rx,
    decoder: FrameDecoder,
    /// Plaintext of the last message decrypted by `read_plaintext` not yet copied out: a
    /// range in the decoder's buffer, valid until the next `handle_data` (which refuses to
    /// run while it is not empty).
    unread: Range<usize>,
}

impl SecretStream {
    /// Session keyed by a completed handshake (hyperdht's IK, or secret-stream's own XX);
    /// `header` is 24 random bytes from the caller for this side's secretstream header.
    #[must_use]
    pub fn new(handshake: &HandshakeResult, header: &[u8; HEADER_LEN]) -> Self {
        Self::with_decoder(handshake, header, FrameDecoder::new())
    }

    /// Like [`SecretStream::new`], continuing with the decoder that carried the handshake
    /// frames (secret-stream's XX): bytes it buffered behind the last handshake message, such
    /// as the peer's header frame, are processed by this stream.
    #[must_use]
    pub fn with_decoder(
        handshake: &HandshakeResult,
        header: &[u8; HEADER_LEN],
        decoder: FrameDecoder,
    ) -> Self {
        Self::from_keys(
            handshake.is_initiator,
            &handshake.tx,
            &handshake.rx,
            &handshake.hash,
            header,
            decoder,
        )
    }

    /// Session from raw keys (JS `opts.handshake = {tx, rx, hash}`), continuing with `decoder`
    /// (pass the handshake's decoder to keep bytes that arrived behind the last handshake
    /// message, or `FrameDecoder::new()`).
    #[must_use]
    pub fn from_keys(
        is_initiator: bool,
        tx: &[u8; 32],
        rx: &[u8; 32],
        hash: &[u8; 64],
        header: &[u8; HEADER_LEN],
        decoder: FrameDecoder,
    ) -> Self {
        let mut header_frame = [0u8; HEADER_FRAME_LEN];
        header_frame[..FRAME_PREFIX_LEN].copy_from_slice(&[HEADER_BODY_LEN as u8, 0, 0]);
        header_frame[FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + 32]
            .copy_from_slice(&stream_id(hash, is_initiator));
        header_frame[FRAME_PREFIX_LEN + 32..].copy_from_slice(header);
        Self {
            is_initiator,
            push: PushStream::new(tx, header),
            header_frame,
            rx: Rx::AwaitHeader {
                key: Zeroizing::new(*rx),
                remote_id: stream_id(hash, !is_initiator),
            },
            decoder,
            unread: 0..0,
        }
    }

    /// Whether this side initiated the handshake.
    #[must_use]
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// The 59-byte header frame to send first.
    #[must_use]
    pub fn header_frame(&self) -> [u8; HEADER_FRAME_LEN] {
        self.header_frame
    }

    /// Appends the data frame `uint24le(len + 17) || push(plaintext)` to `out`. An empty
    /// plaintext is a keepalive (a 20-byte frame).
    pub fn encrypt_frame(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), StreamError> {
        if plaintext.len() > MAX_MESSAGE_LEN {
            return Err(StreamError::MessageTooLarge(plaintext.len()));
        }
        let body_len = plaintext.len() + ABYTES;
        let prefix = encode_prefix(body_len)?;
        let start = out.len();
        out.reserve(FRAME_PREFIX_LEN + body_len);
        out.extend_from_slice(&prefix);
        out.push(0);
        out.extend_from_slice(plaintext);
        out.extend_from_slice(&[0; 16]);
        self.push
            .push_in_place(TAG_MESSAGE, &mut out[start + FRAME_PREFIX_LEN..])
            .map_err(|_| StreamError::FrameTooShort)
    }

    /// Writes the data frame `uint24le(len + 17) || push(plaintext)` into `out`, which must
    /// be exactly [`frame_len`]`(plaintext.len())` bytes; encrypts buffer to buffer (no copy
    /// of the plaintext first), so a sender can reuse frame buffers without zeroing them.
    pub fn encrypt_frame_into(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<(), StreamError> {
        if plaintext.len() > MAX_MESSAGE_LEN {
            return Err(StreamError::MessageTooLarge(plaintext.len()));
        }
        let body_len = plaintext.len() + ABYTES;
        let prefix = encode_prefix(body_len)?;
        if out.len() != FRAME_PREFIX_LEN + body_len {
            return Err(StreamError::FrameTooShort);
        }
        let (head, body) = out.split_at_mut(FRAME_PREFIX_LEN);
        head.copy_from_slice(&prefix);
        self.push.push_to(TAG_MESSAGE, plaintext, body).map_err(|_| StreamError::FrameTooShort)
    }

    /// Like [`SecretStream::encrypt_frame_into`] into `out[at..]` (exactly
    /// [`frame_len`]`(plaintext.len())` bytes), with the `at` bytes before it free to
    /// overwrite: with at least [`FRAME_ROOM`] of them, a full frame is sealed in one pass
    /// by ring's stitched ChaCha20-Poly1305 (see `PushStream::push_to_with_room`).
    pub fn encrypt_frame_with_room(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
        at: usize,
    ) -> Result<(), StreamError> {
        if plaintext.len() > MAX_MESSAGE_LEN {
            return Err(StreamError::MessageTooLarge(plaintext.len()));
        }
        let body_len = plaintext.len() + ABYTES;
        let prefix = encode_prefix(body_len)?;
        if out.len().checked_sub(at) != Some(FRAME_PREFIX_LEN + body_len) {
            return Err(StreamError::FrameTooShort);
        }
        // The prefix's bytes are room for the cipher too: written after it.
        self.push
            .push_to_with_room(TAG_MESSAGE, plaintext, out, at + FRAME_PREFIX_LEN)
            .map_err(|_| StreamError::FrameTooShort)?;
        out[at..at + FRAME_PREFIX_LEN].copy_from_slice(&prefix);
        Ok(())
    }

    /// Buffers received bytes. Drain [`SecretStream::poll_message`] (or
    /// [`SecretStream::read_plaintext`], until it returns 0) before the next call.
    pub fn handle_data(&mut self, data: &[u8]) -> Result<(), StreamError> {
        if matches!(self.rx, Rx::Failed) {
            return Err(StreamError::Destroyed);
        }
        // Buffering moves the decoder's bytes, which would invalidate `unread`.
        if !self.unread.is_empty() {
            return Err(StreamError::BufferFull);
        }
        self.decoder.handle_data(data).map_err(StreamError::from)
    }

    /// Like [`SecretStream::handle_data`] for the bytes at `data` in `chunk`, taking the
    /// chunk's buffer over instead of copying when it can (see
    /// [`FrameDecoder::handle_chunk`]); `chunk` comes back holding a buffer to reuse.
    pub fn handle_chunk(
        &mut self,
        chunk: &mut Vec<u8>,
        data: Range<usize>,
    ) -> Result<(), StreamError> {
        if matches!(self.rx, Rx::Failed) {
            return Err(StreamError::Destroyed);
        }
        if !self.unread.is_empty() {
            return Err(StreamError::BufferFull);
        }
        self.decoder.handle_chunk(chunk, data).map_err(StreamError::from)
    }

    /// Copies decrypted plaintext into `out`, decrypting buffered frames as needed, and
    /// returns how many bytes it copied: messages are concatenated into one byte stream
    /// (keepalives vanish), and 0 means no complete frame is buffered (feed more with
    /// [`SecretStream::handle_data`]), or `out` is empty. An error destroys the stream; when
    /// some bytes were copied before it, they are returned first and the next call fails.
    pub fn read_plaintext(&mut self, out: &mut [u8]) -> Result<usize, StreamError> {
        let mut n = 0;
        while n < out.len() {
            let avail = match self.fill_plaintext() {
                Ok(avail) => avail,
                Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
            };
            if avail.is_empty() {
                break;
            }
            let take = avail.len().min(out.len() - n);
            out[n..n + take].copy_from_slice(&avail[..take]);
            self.consume_plaintext(take);
            n += take;
        }
        Ok(n)
    }

    /// The decrypted plaintext not consumed yet, in place in the receive buffer (no copy:
    /// the `BufRead` way to read), decrypting the next buffered frame when none is left
    /// (keepalives are skipped). Empty when no complete frame is buffered. Mark what was
    /// used with [`SecretStream::consume_plaintext`]. An error destroys the stream.
    pub fn fill_plaintext(&mut self) -> Result<&[u8], StreamError> {
        while self.unread.is_empty() {
            match self.poll_inner() {
                Ok(Some(range)) => self.unread = range,
                Ok(None) => break,
                Err(e) => {
                    self.rx = Rx::Failed;
                    self.unread = 0..0;
                    return Err(e);
                }
            }
        }
        Ok(self.decoder.range(self.unread.clone()))
    }

    /// Marks `n` bytes of [`SecretStream::fill_plaintext`]'s slice as read (clamped to it).
    pub fn consume_plaintext(&mut self, n: usize) {
        self.unread.start += n.min(self.unread.len());
    }

    /// Whether the peer's header frame has been received and checked.
    #[must_use]
    pub fn is_open(&self) -> bool {
        matches!(self.rx, Rx::Open(_))
    }

    /// The next decrypted message (empty for a keepalive), or `None` when no complete frame is
    /// buffered. The peer's header frame is consumed here and not returned. The slice is valid
    /// until the next call on this stream. An error destroys the stream.
    pub fn poll_message(&mut self) -> Result<Option<&[u8]>, StreamError> {
        match self.poll_inner() {
            Ok(Some(range)) => Ok(Some(self.decoder.range(range))),
            Ok(None) => Ok(None),
            Err(e) => {
                self.rx = Rx::Failed;
                Err(e)
            }
        }
    }

    /// Processes frames until a message is decrypted; returns its plaintext's range in the
    /// decoder's buffer.
    fn poll_inner(&mut self) -> Result<Option<Range<usize>>, StreamError> {
        loop {
            if matches!(self.rx, Rx::Failed) {
                return Err(StreamError::Destroyed);
            }
            let Some(range) = self.decoder.next_frame_range()? else {
                return Ok(None);
            };
            // Nothing before this frame is needed any more (`unread` is empty): the
            // cipher may use the bytes in front of it (see `pull_in_place_with_room`).
            let (room, at) = self.decoder.range_with_room(range.clone(), 63);
            match &mut self.rx {
                Rx::AwaitHeader { key, remote_id } => {
                    let header = parse_header(&room[at..], remote_id)?;
                    let pull = PullStream::new(key, &header);
                    self.rx = Rx::Open(pull);
                }
                Rx::Open(pull) => {
                    pull.pull_in_place_with_room(room, at).map_err(|e| match e {
                        CipherError::TooShort => StreamError::FrameTooShort,
                        _ => StreamError::Decrypt,
                    })?;
                    // Plaintext sits between the tag byte and the MAC.
                    return Ok(Some(range.start + 1..range.end - 16));
                }
                Rx::Failed => return Err(StreamError::Destroyed),
            }
        }
    }
}

/// Checks a header frame body against the expected peer id; returns its secretstream header.
fn parse_header(body: &[u8], remote_id: &[u8; 32]) -> Result<[u8; HEADER_LEN], StreamError> {
    if body.len() != HEADER_BODY_LEN {
        return Err(StreamError::InvalidHeader);
    }
    let (id, header) = body.split_at(32);
    // Not secret (both ids derive from the public transcript hash); a plain compare suffices.
    if id != remote_id {
        return Err(StreamError::InvalidHeader);
    }
    let mut out = [0u8; HEADER_LEN];
    out.copy_from_slice(header);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair() -> (SecretStream, SecretStream) {
        let hash = [7u8; 64];
        let (a_tx, b_tx) = ([1u8; 32], [2u8; 32]);
        let a = SecretStream::from_keys(true, &a_tx, &b_tx, &hash, &[3; 24], FrameDecoder::new());
        let b = SecretStream::from_keys(false, &b_tx, &a_tx, &hash, &[4; 24], FrameDecoder::new());
        (a, b)
    }

    fn drain(s: &mut SecretStream) -> Result<Vec<Vec<u8>>, StreamError> {
        let mut out = Vec::new();
        while let Some(m) = s.poll_message()? {
            out.push(m.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn header_then_messages() {
        let (mut a, mut b) = pair();
        let mut wire = a.header_frame().to_vec();
        a.encrypt_frame(b"hi", &mut wire).unwrap();
        a.encrypt_frame(b"", &mut wire).unwrap();
        assert_eq!(wire.len(), 59 + 3 + 2 + 17 + 20);
        assert!(!b.is_open());
        b.handle_data(&wire).unwrap();
        assert_eq!(drain(&mut b).unwrap(), vec![b"hi".to_vec(), Vec::new()]);
        assert!(b.is_open());
    }

    #[test]
    fn wrong_header_id_destroys() {
        let (mut a, _) = pair();
        // The initiator's own header is not what the initiator expects from its peer.
        let own = a.header_frame();
        a.handle_data(&own).unwrap();
        assert_eq!(a.poll_message(), Err(StreamError::InvalidHeader));
        assert_eq!(a.poll_message(), Err(StreamError::Destroyed));
        assert_eq!(a.handle_data(&[0]), Err(StreamError::Destroyed));
        // A data frame where the header should be.
        let (mut a, mut b) = pair();
        let mut wire = Vec::new();
        a.encrypt_frame(&[0; 39], &mut wire).unwrap(); // 56-byte body, wrong content
        b.handle_data(&wire).unwrap();
        assert_eq!(b.poll_message(), Err(StreamError::InvalidHeader));
    }

    #[test]
    fn tampered_and_short_frames_destroy() {
        for flip in [3usize, 4, 10, 20] {
            let (mut a, mut b) = pair();
            b.handle_data(&a.header_frame()).unwrap();
            let mut wire = Vec::new();
            a.encrypt_frame(b"secret", &mut wire).unwrap();
            wire[flip] ^= 1;
            b.handle_data(&wire).unwrap();
            assert_eq!(b.poll_message(), Err(StreamError::Decrypt), "flip {flip}");
        }
        let (a, mut b) = pair();
        b.handle_data(&a.header_frame()).unwrap();
        b.handle_data(&[16, 0, 0]).unwrap();
        b.handle_data(&[0; 16]).unwrap();
        assert_eq!(b.poll_message(), Err(StreamError::FrameTooShort));
    }

    #[test]
    fn encrypt_frame_with_room_matches_encrypt_frame() {
        let (mut a, _) = pair();
        let (mut b, _) = pair();
        for len in [0usize, 5, 64, 65_536, 65_536, 70_000] {
            let m = vec![9u8; len];
            let mut want = Vec::new();
            a.encrypt_frame(&m, &mut want).unwrap();
            let mut got = vec![0x55; FRAME_ROOM + frame_len(len)];
            b.encrypt_frame_with_room(&m, &mut got, FRAME_ROOM).unwrap();
            assert_eq!(&got[FRAME_ROOM..], &want[..], "len {len}");
        }
    }

    #[test]
    fn encrypt_frame_into_matches_encrypt_frame() {
        let (mut a, _) = pair();
        let (mut b, _) = pair();
        for len in [0usize, 5, 64, 70_000] {
            let m = vec![9u8; len];
            let mut want = Vec::new();
            a.encrypt_frame(&m, &mut want).unwrap();
            let mut got = vec![0x55; frame_len(len)];
            b.encrypt_frame_into(&m, &mut got).unwrap();
            assert_eq!(got, want);
            let short = b.encrypt_frame_into(&m, &mut vec![0; frame_len(len) - 1]);
            assert_eq!(short, Err(StreamError::FrameTooShort));
        }
    }

    #[test]
    fn oversized_message_refused_locally() {
        let (mut a, _) = pair();
        let mut out = Vec::new();
        let err = a.encrypt_frame(&vec![0; MAX_MESSAGE_LEN + 1], &mut out);
        assert_eq!(err, Err(StreamError::MessageTooLarge(MAX_MESSAGE_LEN + 1)));
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn messages_survive_any_chunking(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
            cuts in proptest::collection::vec(1usize..97, 0..100),
        ) {
            let (mut a, mut b) = pair();
            let mut wire = a.header_frame().to_vec();
            for m in &msgs {
                a.encrypt_frame(m, &mut wire).unwrap();
            }
            let mut got = Vec::new();
            let mut rest = &wire[..];
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(97).min(rest.len());
                b.handle_data(&rest[..n]).unwrap();
                got.extend(drain(&mut b).unwrap());
                rest = &rest[n..];
            }
            prop_assert_eq!(got, msgs);
        }
    }

    #[test]
    fn fill_plaintext_lends_messages_in_place_and_skips_keepalives() {
        let (mut a, mut b) = pair();
        let mut wire = a.header_frame().to_vec();
        a.encrypt_frame(b"hello", &mut wire).unwrap();
        a.encrypt_frame(b"", &mut wire).unwrap();
        a.encrypt_frame(b"world", &mut wire).unwrap();
        // Nothing buffered yet: an empty slice, not an error.
        assert_eq!(b.fill_plaintext(), Ok(&[][..]));
        b.handle_data(&wire).unwrap();
        assert_eq!(b.fill_plaintext(), Ok(&b"hello"[..]));
        // Filling again without consuming lends the same bytes.
        assert_eq!(b.fill_plaintext(), Ok(&b"hello"[..]));
        b.consume_plaintext(2);
        assert_eq!(b.fill_plaintext(), Ok(&b"llo"[..]));
        // Consuming more than is lent stops at the message's end; the keepalive vanishes.
        b.consume_plaintext(100);
        assert_eq!(b.fill_plaintext(), Ok(&b"world"[..]));
        b.consume_plaintext(5);
        assert_eq!(b.fill_plaintext(), Ok(&[][..]));
        // A forged frame destroys the stream.
        let mut bad = Vec::new();
        a.encrypt_frame(b"x", &mut bad).unwrap();
        bad[4] ^= 1;
        b.handle_data(&bad).unwrap();
        assert_eq!(b.fill_plaintext(), Err(StreamError::Decrypt));
        assert_eq!(b.fill_plaintext(), Err(StreamError::Destroyed));
    }

    #[test]
    fn read_plaintext_refuses_data_while_unread_and_fails_after_bytes() {
        let (mut a, mut b) = pair();
        let mut wire = a.header_frame().to_vec();
        a.encrypt_frame(b"abcdef", &mut wire).unwrap();
        b.handle_data(&wire).unwrap();
        let mut out = [0u8; 4];
        assert_eq!(b.read_plaintext(&mut out), Ok(4));
        assert_eq!(&out, b"abcd");
        // Two bytes still sit in the decoder's buffer: buffering more would move them.
        assert_eq!(b.handle_data(&[0]), Err(StreamError::BufferFull));
        let mut wire = Vec::new();
        a.encrypt_frame(b"gh", &mut wire).unwrap();
        let mut bad = Vec::new();
        a.encrypt_frame(b"ij", &mut bad).unwrap();
        bad[5] ^= 1;
        assert_eq!(b.read_plaintext(&mut out), Ok(2));
        wire.extend_from_slice(&bad);
        b.handle_data(&wire).unwrap();
        // The good message comes out first; the forged one fails the next call.
        assert_eq!(b.read_plaintext(&mut out), Ok(2));
        assert_eq!(&out[..2], b"gh");
        assert_eq!(b.read_plaintext(&mut out), Err(StreamError::Destroyed));
    }

    proptest! {
        #[test]
        fn read_plaintext_concatenates_under_any_chunking(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
            cuts in proptest::collection::vec(1usize..97, 0..100),
            reads in proptest::collection::vec(1usize..200, 1..50),
        ) {
            let (mut a, mut b) = pair();
            let mut wire = a.header_frame().to_vec();
            for m in &msgs {
                a.encrypt_frame(m, &mut wire).unwrap();
            }
            let (mut got, mut buf) = (Vec::new(), [0u8; 200]);
            let mut rest = &wire[..];
            let (mut cuts, mut reads) = (cuts.into_iter(), reads.iter().cycle());
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(97).min(rest.len());
                b.handle_data(&rest[..n]).unwrap();
                loop {
                    let want = *reads.next().unwrap_or(&200);
                    let got_n = b.read_plaintext(&mut buf[..want]).unwrap();
                    if got_n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..got_n]);
                }
                rest = &rest[n..];
            }
            prop_assert_eq!(got, msgs.concat());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            with_header: bool,
            junk in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let (a, mut b) = pair();
            if with_header {
                b.handle_data(&a.header_frame()).unwrap();
            }
            for chunk in junk.chunks(50) {
                if b.handle_data(chunk).is_err() {
                    break;
                }
                while let Ok(Some(_)) = b.poll_message() {}
            }
        }
    }
}
