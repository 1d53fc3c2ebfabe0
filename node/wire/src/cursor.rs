//! The compact-encoding cursor: a bounds-checked reader and an overflow-tracking writer.
//!
//! compact-encoding (spec §1) is the byte format of every HyperDHT value. The
//! [`Reader`] returns `Err(DecodeError)` instead of panicking on any malformed input and
//! borrows slices from the datagram, so decoding fixed-size fields allocates nothing.
//! The [`Writer`] writes into a caller-owned buffer; rather than checking a `Result` at
//! every field it records that it ran out of room and reports it once in
//! [`Writer::finish`], which keeps encoders straight-line and branch-light.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use crate::error::{DecodeError, EncodeError};

/// compact-encoding's cap on array element counts (`0x100000`); larger counts are
/// refused before anything is read, as the JS decoder does.
pub const ARRAY_MAX: u64 = 0x10_0000;

/// Bytes of an encoded IPv4 socket address: 4 octets + port (uint16 LE).
pub const IPV4_ADDR_LEN: usize = 6;
/// Bytes of an encoded IPv6 socket address: 16 octets + port (uint16 LE).
pub const IPV6_ADDR_LEN: usize = 18;

/// Bytes the compact-encoding `uint` form of `n` takes (always the shortest form).
pub const fn uint_len(n: u64) -> usize {
    if n <= 0xfc {
        1
    } else if n <= 0xffff {
        3
    } else if n <= 0xffff_ffff {
        5
    } else {
        9
    }
}

/// Bytes a length-prefixed `buffer` of `len` bytes takes.
pub const fn buffer_len(len: usize) -> usize {
    uint_len(len as u64) + len
}

/// A bounds-checked reader over one encoded value or datagram.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread rest of the input, consuming it (compact-encoding `raw`).
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        rest
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless everything was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() { Ok(()) } else { Err(DecodeError::TrailingBytes) }
    }

    /// The next `n` bytes, borrowed.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    /// The next `N` bytes as a borrowed fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], DecodeError> {
        let bytes = self.bytes(N)?;
        bytes.try_into().map_err(|_| DecodeError::Truncated)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian uint16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(*self.array()?))
    }

    /// A little-endian uint24 (secret-stream frame lengths).
    pub fn u24(&mut self) -> Result<u32, DecodeError> {
        let b = self.array::<3>()?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    /// A little-endian uint32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(*self.array()?))
    }

    /// A little-endian uint64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(*self.array()?))
    }

    /// A compact-encoding `uint`. Over-long forms are accepted, as in the JS decoder.
    pub fn uint(&mut self) -> Result<u64, DecodeError> {
        match self.u8()? {
            0xfd => self.u16().map(u64::from),
            0xfe => self.u32().map(u64::from),
            0xff => self.u64(),
            n => Ok(u64::from(n)),
        }
    }

    /// A `uint` that must fit a `u32` (stream ids, sequence numbers).
    pub fn uint32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.uint()?).map_err(|_| DecodeError::InvalidValue)
    }

    /// A `uint` used as a length or count of `unit`-byte items: checked against what is
    /// left so a hostile length can never make the caller reserve memory.
    fn len_of(&mut self, unit: usize) -> Result<usize, DecodeError> {
        let n = self.uint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::Truncated)?;
        match n.checked_mul(unit) {
            Some(total) if total <= self.remaining() => Ok(n),
            _ => Err(DecodeError::Truncated),
        }
    }

    /// A length-prefixed `buffer`, borrowed.
    pub fn buffer(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len_of(1)?;
        self.bytes(n)
    }

    /// A length-prefixed UTF-8 string, borrowed.
    pub fn utf8(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.buffer()?).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// An array count, checked against the compact-encoding cap and against the bytes
    /// left given that each element takes at least `min_item_len` (≥ 1) bytes.
    pub fn array_len(&mut self, min_item_len: usize) -> Result<usize, DecodeError> {
        let save = self.pos;
        if self.uint()? > ARRAY_MAX {
            return Err(DecodeError::ArrayTooLong);
        }
        self.pos = save;
        self.len_of(min_item_len.max(1))
    }

    /// A 6-byte IPv4 socket address (octets in order, port uint16 LE).
    pub fn ipv4(&mut self) -> Result<SocketAddrV4, DecodeError> {
        let b = self.array::<IPV4_ADDR_LEN>()?;
        Ok(ipv4_from_bytes(b))
    }

    /// An 18-byte IPv6 socket address (16 octets, port uint16 LE).
    pub fn ipv6(&mut self) -> Result<SocketAddrV6, DecodeError> {
        let b = self.array::<IPV6_ADDR_LEN>()?;
        Ok(ipv6_from_bytes(b))
    }
}

/// Decodes the 6-byte IPv4 address form; infallible once the length is right.
pub fn ipv4_from_bytes(b: &[u8; IPV4_ADDR_LEN]) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(b[0], b[1], b[2], b[3]), u16::from_le_bytes([b[4], b[5]]))
}

/// Decodes the 18-byte IPv6 address form.
pub fn ipv6_from_bytes(b: &[u8; IPV6_ADDR_LEN]) -> SocketAddrV6 {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[..16]);
    SocketAddrV6::new(Ipv6Addr::from(octets), u16::from_le_bytes([b[16], b[17]]), 0, 0)
}

/// The 6-byte wire form of an IPv4 socket address (also the node-id preimage).
pub fn ipv4_to_bytes(addr: &SocketAddrV4) -> [u8; IPV4_ADDR_LEN] {
    let o = addr.ip().octets();
    let p = addr.port().to_le_bytes();
    [o[0], o[1], o[2], o[3], p[0], p[1]]
}

/// A writer into a caller-owned buffer that never panics.
///
/// Writes past the end are dropped and remembered; [`Writer::finish`] then reports
/// [`EncodeError::BufferTooSmall`] with the size the encoding needed.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far (or that would have been, past the end of the buffer).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The number of bytes written, or the error if the buffer was too small.
    pub fn finish(self) -> Result<usize, EncodeError> {
        if self.pos <= self.buf.len() {
            Ok(self.pos)
        } else {
            Err(EncodeError::BufferTooSmall { needed: self.pos, available: self.buf.len() })
        }
    }

    /// Raw bytes with no prefix (`fixed32`, `fixed64`, `raw`).
    pub fn bytes(&mut self, data: &[u8]) {
        let end = self.pos.saturating_add(data.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(data);
        }
        self.pos = end;
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    /// A little-endian uint16.
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian uint24; the top byte of `v` is ignored.
    pub fn u24(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes()[..3]);
    }

    /// A little-endian uint32.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    /// A compact-encoding `uint` in its shortest form.
    pub fn uint(&mut self, n: u64) {
        if n <= 0xfc {
            self.u8(n as u8);
        } else if n <= 0xffff {
            self.u8(0xfd);
            self.u16(n as u16);
        } else if n <= 0xffff_ffff {
            self.u8(0xfe);
            self.u32(n as u32);
        } else {
            self.u8(0xff);
            self.bytes(&n.to_le_bytes());
        }
    }

    /// A length-prefixed `buffer`.
    pub fn buffer(&mut self, data: &[u8]) {
        self.uint(data.len() as u64);
        self.bytes(data);
    }

    /// A length-prefixed UTF-8 string.
    pub fn utf8(&mut self, s: &str) {
        self.buffer(s.as_bytes());
    }

    /// A 6-byte IPv4 socket address.
    pub fn ipv4(&mut self, addr: &SocketAddrV4) {
        self.bytes(&ipv4_to_bytes(addr));
    }

    /// An 18-byte IPv6 socket address.
    pub fn ipv6(&mut self, addr: &SocketAddrV6) {
        self.bytes(&addr.ip().octets());
        self.u16(addr.port());
    }
}

/// A value with a compact-encoding form.
///
/// `encoded_len` is exact, so callers can size a buffer (or a transmit slot) first and
/// encode once.
pub trait Encode {
    /// The exact number of bytes [`Encode::encode_to`] writes.
    fn encoded_len(&self) -> usize;

    /// Writes the encoding at the writer's position.
    fn encode_to(&self, w: &mut Writer<'_>);

    /// Encodes into the front of `out`, returning the number of bytes written.
    fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let mut w = Writer::new(out);
        self.encode_to(&mut w);
        w.finish()
    }

    /// Encodes into a new vector (for tests, tools and cold paths).
    fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.encoded_len()];
        let mut w = Writer::new(&mut out);
        self.encode_to(&mut w);
        let n = w.position();
        out.truncate(n);
        out
    }
}

/// A value decodable from compact-encoding, borrowing from the input.
pub trait Decode<'a>: Sized {
    /// Reads one value at the reader's position.
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError>;

    /// Decodes one value from the start of `buf`. Trailing bytes are ignored, as the
    /// JS decoders do (spec §14: be at least as lenient as the reference).
    fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Self::decode_from(&mut Reader::new(buf))
    }

    /// Decodes one value that must span all of `buf`.
    fn decode_exact(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let v = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_boundaries_round_trip() {
        for n in [0u64, 0xfc, 0xfd, 0xffff, 0x1_0000, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
            let mut buf = [0u8; 9];
            let mut w = Writer::new(&mut buf);
            w.uint(n);
            let len = w.finish().unwrap();
            assert_eq!(len, uint_len(n));
            assert_eq!(Reader::new(&buf[..len]).uint().unwrap(), n);
        }
    }

    #[test]
    fn overlong_uint_is_accepted_like_js() {
        assert_eq!(Reader::new(&[0xfd, 0x05, 0x00]).uint().unwrap(), 5);
    }

    #[test]
    fn truncated_inputs_error() {
        assert_eq!(Reader::new(&[0xfd, 0x05]).uint(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[0x05, 1, 2]).buffer(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[1, 2, 3]).ipv4(), Err(DecodeError::Truncated));
        // A length that would overflow usize arithmetic.
        let mut huge = vec![0xff];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(Reader::new(&huge).buffer(), Err(DecodeError::Truncated));
    }

    #[test]
    fn array_cap_is_enforced_before_length() {
        // 0x100001 elements: refused as too long even though the bytes are missing.
        assert_eq!(
            Reader::new(&[0xfe, 0x01, 0x00, 0x10, 0x00]).array_len(6),
            Err(DecodeError::ArrayTooLong)
        );
        assert_eq!(
            Reader::new(&[0x02, 0, 0, 0, 0, 0, 0]).array_len(6),
            Err(DecodeError::Truncated)
        );
        assert_eq!(Reader::new(&[0x00]).array_len(6), Ok(0));
    }

    #[test]
    fn writer_reports_overflow_once() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.buffer(b"hello");
        assert_eq!(w.finish(), Err(EncodeError::BufferTooSmall { needed: 6, available: 3 }));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert_eq!(Reader::new(&[2, 0xff, 0xfe]).utf8(), Err(DecodeError::InvalidUtf8));
    }
}
