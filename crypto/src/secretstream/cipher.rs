//! libsodium `crypto_secretstream_xchacha20poly1305`, push and pull, byte-compatible.
//!
//! State: `k = HChaCha20(key, header[0..16])`, 12-byte nonce `counter(u32le, starts at 1) ||
//! inonce (header[16..24])`. One message (`push`): Poly1305 key = ChaCha20-IETF block 0; the
//! tag byte is encrypted as the first byte of block 1 and the whole 64-byte block 1 is MACed;
//! the message is encrypted from block 2; MAC input = block 1 || ciphertext || `mlen & 15` zero
//! bytes (libsodium's padding quirk: it pads with `(16 - 64 + mlen) & 15`, not to a multiple
//! of 16) || u64le(adlen = 0) || u64le(64 + mlen). Output `enc tag (1) || c || mac (16)`.
//! Afterwards `inonce ^= mac[0..8]`, the counter increments, and a `REKEY` tag or a wrapped
//! counter rekeys. secret-stream never sends associated data, so there is no AD parameter.
//!
//! Backend choice: this module, on chacha20 0.10 + poly1305 0.9, rather than RustCrypto's
//! `crypto_secretstream` 0.2. A scratch comparison (not committed; both produce identical bytes
//! for 600 message sizes) on this 2-core Xeon @ 2.5 GHz (AVX2 + AVX-512F, no IFMA), release
//! build, 64 KiB messages, one core, machine shared with other builds:
//!
//! | implementation | push | pull | push then pull |
//! |---|---|---|---|
//! | this module | 0.92 GB/s | 0.92 GB/s | 0.46 GB/s |
//! | this module, `--cfg chacha20_avx512` | 1.30 GB/s | 1.30 GB/s | 0.65 GB/s |
//! | `crypto_secretstream` 0.2 | 0.87 GB/s | 0.87 GB/s | 0.43 GB/s |
//!
//! It is faster because it works in place with one ChaCha20 instance per message (no seeks,
//! no whole-buffer `rotate_right`/`rotate_left` to make room for the tag byte) and can use
//! chacha20 0.10's AVX-512 backend (`crypto_secretstream` pins chacha20 0.9). What remains is
//! ChaCha20 (1.3 GB/s AVX2, 2.6 GB/s AVX-512) plus Poly1305 (2.1 GB/s AVX2); fusing the two
//! passes in 16 KiB chunks measured +5 % and was left out. Messages whose length is 0 or 8
//! mod 16 (full 64 KiB frames) can instead go through ring's one-pass ChaCha20-Poly1305
//! AEAD, whose MAC input matches secretstream's for exactly those lengths
//! (`push_to_with_room`, `pull_in_place_with_room`). See `crypto/README.md`.

use chacha20::cipher::inout::InOutBuf;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::{ChaCha20, R20, hchacha};
use poly1305::Poly1305;
use poly1305::universal_hash::{KeyInit, UniversalHash};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of the header that starts a stream (`init_push` output).
pub const HEADER_LEN: usize = 24;
/// Bytes a message grows by: encrypted tag byte + 16-byte MAC.
pub const ABYTES: usize = 17;
/// Tag of an ordinary message (the only one secret-stream sends).
pub const TAG_MESSAGE: u8 = 0;
/// Tag marking the end of a set of messages.
pub const TAG_PUSH: u8 = 1;
/// Tag that makes both sides rekey after this message.
pub const TAG_REKEY: u8 = 2;
/// Tag of the last message (`PUSH | REKEY`).
pub const TAG_FINAL: u8 = 3;

/// Why a message did not decrypt. Remote input: the stream is destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// Shorter than the 17 bytes of tag + MAC.
    #[error("secretstream message shorter than 17 bytes")]
    TooShort,
    /// The MAC does not authenticate the message.
    #[error("secretstream message failed authentication")]
    Forged,
}

/// Key and nonce shared by both directions' logic.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct State {
    k: [u8; 32],
    /// `counter (u32le) || inonce (8)`.
    nonce: [u8; 12],
}

impl State {
    fn new(key: &[u8; 32], header: &[u8; HEADER_LEN]) -> Self {
        let mut input = [0u8; 16];
        input.copy_from_slice(&header[..16]);
        let k: [u8; 32] = hchacha::<R20>(&(*key).into(), &input.into()).into();
        let mut nonce = [0u8; 12];
        nonce[0] = 1;
        nonce[4..].copy_from_slice(&header[16..]);
        Self { k, nonce }
    }

    /// A ChaCha20-IETF keystream at block 0 for this message, plus the Poly1305 state keyed
    /// from block 0; the cipher is left at block 1.
    fn begin(&self) -> (ChaCha20, Poly1305) {
        let mut cipher = ChaCha20::new(&self.k.into(), &self.nonce.into());
        let mut block0 = [0u8; 64];
        cipher.apply_keystream(&mut block0);
        let mut poly_key = [0u8; 32];
        poly_key.copy_from_slice(&block0[..32]);
        let mac = Poly1305::new(&poly_key.into());
        block0.zeroize();
        poly_key.zeroize();
        (cipher, mac)
    }

    /// MAC over `block1 || c || pad || lengths` (the finishing part of push and pull).
    fn mac(mut mac: Poly1305, block1: &[u8; 64], c: &[u8]) -> [u8; 16] {
        let (blocks, _) = poly1305::Block::slice_as_chunks(block1);
        mac.update(blocks);
        let (blocks, tail) = poly1305::Block::slice_as_chunks(c);
        mac.update(blocks);
        // tail (r < 16 bytes) || r zero bytes (libsodium's pad quirk) || u64le(0) || u64le(64+mlen)
        let r = tail.len();
        let mut last = [0u8; 48];
        last[..r].copy_from_slice(tail);
        let lens_at = 2 * r;
        let mlen = 64u64.wrapping_add(c.len() as u64);
        last[lens_at + 8..lens_at + 16].copy_from_slice(&mlen.to_le_bytes());
        mac.compute_unpadded(&last[..lens_at + 16]).into()
    }

    /// After a message: `inonce ^= mac[0..8]`, counter += 1, rekey on `REKEY` or wrap.
    fn advance(&mut self, mac: &[u8; 16], tag: u8) {
        for (n, m) in self.nonce[4..].iter_mut().zip(mac) {
            *n ^= m;
        }
        let mut ctr = [0u8; 4];
        ctr.copy_from_slice(&self.nonce[..4]);
        let next = u32::from_le_bytes(ctr).wrapping_add(1);
        self.nonce[..4].copy_from_slice(&next.to_le_bytes());
        if tag & TAG_REKEY != 0 || next == 0 {
            self.rekey();
        }
    }

    /// libsodium `crypto_secretstream_xchacha20poly1305_rekey`: `(k, inonce) ^= keystream`,
    /// counter = 1.
    fn rekey(&mut self) {
        let mut buf = [0u8; 40];
        buf[..32].copy_from_slice(&self.k);
        buf[32..].copy_from_slice(&self.nonce[4..]);
        let mut cipher = ChaCha20::new(&self.k.into(), &self.nonce.into());
        cipher.apply_keystream(&mut buf);
        self.k.copy_from_slice(&buf[..32]);
        self.nonce[4..].copy_from_slice(&buf[32..]);
        self.nonce[..4].copy_from_slice(&1u32.to_le_bytes());
        buf.zeroize();
    }
}

/// Sending half (`init_push` with a caller-chosen header, then `push`).
#[derive(Clone, ZeroizeOnDrop)]
pub struct PushStream {
    state: State,
}

impl PushStream {
    /// Starts a stream with `key` and the 24-byte `header` (random, from the caller; sent to
    /// the peer before the first message).
    #[must_use]
    pub fn new(key: &[u8; 32], header: &[u8; HEADER_LEN]) -> Self {
        Self { state: State::new(key, header) }
    }

    /// Encrypts in place. `buf` is `[tag slot (1)] [plaintext] [MAC slot (16)]`; the slots'
    /// contents are ignored and overwritten. Returns [`CipherError::TooShort`] if
    /// `buf.len() < 17`.
    pub fn push_in_place(&mut self, tag: u8, buf: &mut [u8]) -> Result<(), CipherError> {
        let len = buf.len();
        if len < ABYTES {
            return Err(CipherError::TooShort);
        }
        self.seal(tag, buf, |cipher, body| {
            cipher.apply_keystream(body);
            Ok(())
        })
    }

    /// Encrypts `plaintext` into `out`, which must be exactly `plaintext.len() + 17` bytes
    /// (else [`CipherError::TooShort`]): the keystream is applied buffer to buffer, so a
    /// sender saves the copy of the plaintext that `push_in_place` needs first.
    pub fn push_to(
        &mut self,
        tag: u8,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<(), CipherError> {
        if out.len() != plaintext.len() + ABYTES {
            return Err(CipherError::TooShort);
        }
        self.seal(tag, out, |cipher, body| {
            let inout = InOutBuf::new(plaintext, body).map_err(|_| CipherError::TooShort)?;
            cipher.apply_keystream_inout(inout);
            Ok(())
        })
    }

    /// One message into `out` (`tag byte ‖ body ‖ MAC`, at least 17 bytes): the tag
    /// block, then `encrypt_body` fills the body with ciphertext, then the MAC and the
    /// state's advance. Both push forms differ only in where the body's plaintext is.
    fn seal(
        &mut self,
        tag: u8,
        out: &mut [u8],
        encrypt_body: impl FnOnce(&mut ChaCha20, &mut [u8]) -> Result<(), CipherError>,
    ) -> Result<(), CipherError> {
        let (head, mac_slot) = out.split_at_mut(out.len() - 16);
        let (tag_slot, body) = head.split_at_mut(1);
        let (mut cipher, poly) = self.state.begin();
        let mut block1 = [0u8; 64];
        block1[0] = tag;
        cipher.apply_keystream(&mut block1);
        tag_slot[0] = block1[0];
        encrypt_body(&mut cipher, body)?;
        let mac = State::mac(poly, &block1, body);
        mac_slot.copy_from_slice(&mac);
        self.state.advance(&mac, tag);
        Ok(())
    }

    /// Like [`PushStream::push_to`] into `out[at..]` (exactly `plaintext.len() + 17`
    /// bytes), with the `at` bytes before it free to overwrite. When `at >= 63` and the
    /// plaintext length is ≡ 0 or 8 mod 16 (every full 64 KiB frame), the message is
    /// sealed with ring's stitched ChaCha20-Poly1305 in one pass: the IETF AEAD over
    /// `block1 ‖ m` with no AD gives secretstream's ciphertext and MAC for those lengths
    /// (see [`PullStream::pull_in_place_with_room`]); block 1 is encrypted in the room in
    /// front, and only its first byte (the encrypted tag) is kept. The plaintext is copied
    /// into place first (ring seals in place only). Otherwise this is `push_to`.
    pub fn push_to_with_room(
        &mut self,
        tag: u8,
        plaintext: &[u8],
        out: &mut [u8],
        at: usize,
    ) -> Result<(), CipherError> {
        let mlen = plaintext.len();
        if out.len().checked_sub(at) != Some(mlen + ABYTES) {
            return Err(CipherError::TooShort);
        }
        if at < 63 || !matches!(mlen % 16, 0 | 8) {
            return self.push_to(tag, plaintext, &mut out[at..]);
        }
        let (head, mac_slot) = out.split_at_mut(out.len() - 16);
        // `region` = block 1 (its last byte is the tag slot) followed by the message.
        let region = &mut head[at - 63..];
        region[0] = tag;
        region[1..64].fill(0);
        region[64..].copy_from_slice(plaintext);
        let Ok(key) = UnboundKey::new(&CHACHA20_POLY1305, &self.state.k) else {
            return Err(CipherError::TooShort);
        };
        let key = LessSafeKey::new(key);
        let nonce = Nonce::assume_unique_for_key(self.state.nonce);
        let Ok(mac) = key.seal_in_place_separate_tag(nonce, Aad::empty(), region) else {
            return Err(CipherError::TooShort);
        };
        region[63] = region[0];
        let mut mac_bytes = [0u8; 16];
        mac_bytes.copy_from_slice(mac.as_ref());
        mac_slot.copy_from_slice(&mac_bytes);
        self.state.advance(&mac_bytes, tag);
        Ok(())
    }

    /// Appends `push(plaintext)` (`plaintext.len() + 17` bytes) to `out`.
    pub fn push(&mut self, plaintext: &[u8], tag: u8, out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(plaintext.len() + ABYTES);
        out.push(0);
        out.extend_from_slice(plaintext);
        out.extend_from_slice(&[0; 16]);
        // Cannot fail: the region is at least 17 bytes.
        let _ = self.push_in_place(tag, &mut out[start..]);
    }
}

/// Receiving half (`init_pull` with the peer's header, then `pull`).
#[derive(Clone, ZeroizeOnDrop)]
pub struct PullStream {
    state: State,
}

impl PullStream {
    /// Starts pulling the stream the peer began with `header`.
    #[must_use]
    pub fn new(key: &[u8; 32], header: &[u8; HEADER_LEN]) -> Self {
        Self { state: State::new(key, header) }
    }

    /// Authenticates and decrypts in place; returns the tag. On success the plaintext is
    /// `buf[1..buf.len() - 16]`. On failure neither `buf` nor the stream state change (as in
    /// libsodium), so the caller may drop the stream or the message.
    pub fn pull_in_place(&mut self, buf: &mut [u8]) -> Result<u8, CipherError> {
        let len = buf.len();
        if len < ABYTES {
            return Err(CipherError::TooShort);
        }
        let (head, stored_mac) = buf.split_at_mut(len - 16);
        let (tag_slot, body) = head.split_at_mut(1);
        let (mut cipher, poly) = self.state.begin();
        let mut block1 = [0u8; 64];
        block1[0] = tag_slot[0];
        cipher.apply_keystream(&mut block1);
        let tag = block1[0];
        block1[0] = tag_slot[0];
        let mac = State::mac(poly, &block1, body);
        if !bool::from(mac.ct_eq(stored_mac)) {
            return Err(CipherError::Forged);
        }
        cipher.apply_keystream(body);
        tag_slot[0] = tag;
        self.state.advance(&mac, tag);
        Ok(tag)
    }

    /// Like [`PullStream::pull_in_place`] for the message at `buf[at..]`, with the `at`
    /// bytes before it free to overwrite. When `at >= 63` and the plaintext length is
    /// ≡ 0 or 8 mod 16 (every full 64 KiB frame), the message is opened with ring's
    /// stitched ChaCha20-Poly1305 in one pass, about a quarter faster: secretstream's MAC
    /// input `block1 ‖ c ‖ (mlen & 15 zeros) ‖ le64(0) ‖ le64(64 + mlen)` is then exactly
    /// the IETF AEAD's over the ciphertext `block1 ‖ c` with no AD (its padding
    /// `-(64 + mlen) mod 16` equals `mlen & 15` for those lengths), and the AEAD's
    /// keystream from block 1 is secretstream's. The encrypted block 1, of which the
    /// wire carries only the first byte, is rebuilt from the keystream in front of `c`.
    /// Otherwise, or with less room, this is `pull_in_place(&mut buf[at..])`. On
    /// success `buf[at]` holds the tag and `buf[at + 1..len - 16]` the plaintext; on
    /// failure the state is unchanged and the bytes are unspecified.
    pub fn pull_in_place_with_room(
        &mut self,
        buf: &mut [u8],
        at: usize,
    ) -> Result<u8, CipherError> {
        let len = buf.len().saturating_sub(at);
        if len < ABYTES {
            return Err(CipherError::TooShort);
        }
        let mlen = len - ABYTES;
        if at < 63 || !matches!(mlen % 16, 0 | 8) {
            return self.pull_in_place(&mut buf[at..]);
        }
        // Block 1 of the keystream: its first byte decrypts the tag, and the encrypted
        // block 1 is that keystream with the wire's tag byte in front.
        let mut cipher = ChaCha20::new(&self.state.k.into(), &self.state.nonce.into());
        let mut block1 = [0u8; 128];
        cipher.apply_keystream(&mut block1);
        let enc_tag = buf[at];
        let tag = enc_tag ^ block1[64];
        block1[64] = enc_tag;
        let mut mac = [0u8; 16];
        mac.copy_from_slice(&buf[buf.len() - 16..]);
        let region = &mut buf[at - 63..];
        region[..64].copy_from_slice(&block1[64..]);
        block1.zeroize();
        let Ok(key) = UnboundKey::new(&CHACHA20_POLY1305, &self.state.k) else {
            return Err(CipherError::Forged);
        };
        let key = LessSafeKey::new(key);
        let nonce = Nonce::assume_unique_for_key(self.state.nonce);
        if key.open_in_place(nonce, Aad::empty(), region).is_err() {
            return Err(CipherError::Forged);
        }
        buf[at] = tag;
        self.state.advance(&mac, tag);
        Ok(tag)
    }

    /// Decrypts `ciphertext` and appends the plaintext to `out` (unchanged on error).
    pub fn pull(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<u8, CipherError> {
        if ciphertext.len() < ABYTES {
            return Err(CipherError::TooShort);
        }
        let start = out.len();
        out.extend_from_slice(ciphertext);
        match self.pull_in_place(&mut out[start..]) {
            Ok(tag) => {
                // Drop the tag byte and the MAC around the plaintext.
                out.truncate(out.len() - 16);
                out.remove(start);
                Ok(tag)
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tampering_and_short_input() {
        let mut push = PushStream::new(&[1; 32], &[2; 24]);
        let mut ct = Vec::new();
        push.push(b"hello", TAG_MESSAGE, &mut ct);
        assert_eq!(ct.len(), 5 + ABYTES);
        for i in 0..ct.len() {
            let mut pull = PullStream::new(&[1; 32], &[2; 24]);
            let mut bad = ct.clone();
            bad[i] ^= 1;
            let before = bad.clone();
            assert_eq!(pull.pull_in_place(&mut bad), Err(CipherError::Forged), "byte {i}");
            assert_eq!(bad, before, "failed pull leaves the buffer alone");
            // ...and the state: the genuine message still decrypts.
            let mut out = Vec::new();
            assert_eq!(pull.pull(&ct, &mut out), Ok(TAG_MESSAGE));
            assert_eq!(out, b"hello");
        }
        let mut pull = PullStream::new(&[1; 32], &[2; 24]);
        assert_eq!(pull.pull(&ct[..16], &mut Vec::new()), Err(CipherError::TooShort));
        assert_eq!(push.push_in_place(0, &mut [0; 16]), Err(CipherError::TooShort));
    }

    #[test]
    fn push_to_matches_push() {
        for len in [0usize, 1, 15, 16, 63, 64, 65, 1000, 65_536] {
            let m: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (mut a, mut b) =
                (PushStream::new(&[3; 32], &[4; 24]), PushStream::new(&[3; 32], &[4; 24]));
            for _ in 0..2 {
                let mut want = Vec::new();
                a.push(&m, TAG_MESSAGE, &mut want);
                let mut got = vec![0xaa; len + ABYTES];
                assert_eq!(b.push_to(TAG_MESSAGE, &m, &mut got), Ok(()));
                assert_eq!(got, want, "len {len}");
            }
            assert_eq!(b.push_to(0, &m, &mut vec![0; len + 16]), Err(CipherError::TooShort));
        }
    }

    #[test]
    fn order_matters() {
        let mut push = PushStream::new(&[1; 32], &[2; 24]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        push.push(b"one", TAG_MESSAGE, &mut a);
        push.push(b"two", TAG_MESSAGE, &mut b);
        let mut pull = PullStream::new(&[1; 32], &[2; 24]);
        assert!(pull.pull(&b, &mut Vec::new()).is_err());
    }

    #[test]
    fn counter_wrap_rekeys_like_explicit_rekey() {
        // Force the counter to u32::MAX: the next message wraps it to 0, which rekeys.
        let mut push = PushStream::new(&[5; 32], &[6; 24]);
        let mut pull = PullStream::new(&[5; 32], &[6; 24]);
        push.state.nonce[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        pull.state.nonce[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let k_before = push.state.k;
        let mut ct = Vec::new();
        push.push(b"x", TAG_MESSAGE, &mut ct);
        assert_ne!(push.state.k, k_before);
        assert_eq!(push.state.nonce[..4], [1, 0, 0, 0]);
        let mut out = Vec::new();
        assert_eq!(pull.pull(&ct, &mut out), Ok(TAG_MESSAGE));
        assert_eq!(pull.state.k, push.state.k);
    }

    proptest! {
        #[test]
        fn push_pull_round_trip(
            key: [u8; 32],
            header: [u8; 24],
            msgs in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..300), 0u8..4), 1..8),
        ) {
            let mut push = PushStream::new(&key, &header);
            let mut pull = PullStream::new(&key, &header);
            for (m, tag) in msgs {
                let mut ct = Vec::new();
                push.push(&m, tag, &mut ct);
                prop_assert_eq!(ct.len(), m.len() + ABYTES);
                let mut out = Vec::new();
                prop_assert_eq!(pull.pull(&ct, &mut out), Ok(tag));
                prop_assert_eq!(out, m);
            }
        }
    }

    /// Pulls `ct` with `room` scratch bytes in front; returns the tag and plaintext.
    fn pull_with_room(
        pull: &mut PullStream,
        ct: &[u8],
        room: usize,
    ) -> Result<(u8, Vec<u8>), CipherError> {
        let mut buf = vec![0x5a; room];
        buf.extend_from_slice(ct);
        let tag = pull.pull_in_place_with_room(&mut buf, room)?;
        Ok((tag, buf[room + 1..buf.len() - 16].to_vec()))
    }

    /// Plaintext lengths around both AEAD-compatible residues (0 and 8 mod 16) and others.
    const ROOM_TEST_LENS: [usize; 15] =
        [0, 1, 8, 15, 16, 24, 40, 63, 64, 65, 72, 1000, 1008, 65_536, 65_544];

    #[test]
    fn pull_with_room_matches_pull_for_every_length_and_tag() {
        // Lengths around both AEAD-compatible residues (0 and 8 mod 16) and others, with
        // room for the one-pass path, too little room, and a rekey in the sequence.
        for room in [0usize, 62, 63, 200] {
            let mut push = PushStream::new(&[5; 32], &[6; 24]);
            let mut want_pull = PullStream::new(&[5; 32], &[6; 24]);
            let mut pull = PullStream::new(&[5; 32], &[6; 24]);
            for (i, &len) in ROOM_TEST_LENS.iter().enumerate() {
                let m: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
                let tag = if i == 7 { TAG_REKEY } else { TAG_MESSAGE };
                let mut ct = Vec::new();
                push.push(&m, tag, &mut ct);
                let mut want = Vec::new();
                assert_eq!(want_pull.pull(&ct, &mut want), Ok(tag));
                assert_eq!(
                    pull_with_room(&mut pull, &ct, room),
                    Ok((tag, want)),
                    "len {len} room {room}"
                );
            }
        }
    }

    #[test]
    fn pull_with_room_refuses_tampering_and_keeps_its_state() {
        for len in [64usize, 72] {
            let mut push = PushStream::new(&[1; 32], &[2; 24]);
            let mut ct = Vec::new();
            push.push(&vec![9u8; len], TAG_MESSAGE, &mut ct);
            for i in 0..ct.len() {
                let mut pull = PullStream::new(&[1; 32], &[2; 24]);
                let mut bad = ct.clone();
                bad[i] ^= 1;
                assert_eq!(
                    pull_with_room(&mut pull, &bad, 63),
                    Err(CipherError::Forged),
                    "byte {i}"
                );
                assert_eq!(pull_with_room(&mut pull, &ct, 63), Ok((TAG_MESSAGE, vec![9u8; len])));
            }
        }
    }

    #[test]
    fn push_to_with_room_matches_push_for_every_length_and_tag() {
        for room in [0usize, 62, 63, 200] {
            let mut a = PushStream::new(&[7; 32], &[8; 24]);
            let mut b = PushStream::new(&[7; 32], &[8; 24]);
            for (i, &len) in ROOM_TEST_LENS.iter().enumerate() {
                let m: Vec<u8> = (0..len).map(|j| (i * 17 + j) as u8).collect();
                let tag = if i == 5 { TAG_REKEY } else { TAG_MESSAGE };
                let mut want = Vec::new();
                a.push(&m, tag, &mut want);
                let mut out = vec![0xa5; room + len + ABYTES];
                assert_eq!(b.push_to_with_room(tag, &m, &mut out, room), Ok(()));
                assert_eq!(&out[room..], &want[..], "len {len} room {room}");
            }
        }
        let mut p = PushStream::new(&[7; 32], &[8; 24]);
        assert_eq!(p.push_to_with_room(0, &[0; 16], &mut [0; 100], 63), Err(CipherError::TooShort));
    }
}
