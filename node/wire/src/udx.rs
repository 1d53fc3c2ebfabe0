//! The UDX packet header and SACK blocks (transport spec §1.1–§1.4).
//!
//! Every UDX datagram starts with a 20-byte header whose first two bytes (`0xff 0x01`)
//! distinguish it from dht-rpc (`0x03`/`0x13`) and holepunch probes on the same socket.
//! Sequence numbers count packets; all integers are little-endian.

use crate::cursor::{Encode, Reader, Writer};
use crate::error::DecodeError;

/// Byte 0 of every UDX packet.
pub const UDX_MAGIC: u8 = 0xff;
/// Byte 1: the only UDX version.
pub const UDX_VERSION: u8 = 0x01;
/// Size of the fixed header.
pub const UDX_HEADER_LEN: usize = 20;
/// The most SACK blocks a packet carries (libudx's limit).
pub const UDX_MAX_SACK_BLOCKS: usize = 50;

/// Packet type bit: stream data, consumes a sequence number.
pub const UDX_DATA: u8 = 0x01;
/// Type bit: the sender finished writing; consumes a sequence number.
pub const UDX_END: u8 = 0x02;
/// Type bit: SACK blocks follow the header.
pub const UDX_SACK: u8 = 0x04;
/// Type bit: an unreliable message.
pub const UDX_MESSAGE: u8 = 0x08;
/// Type bit: the sender destroyed the stream.
pub const UDX_DESTROY: u8 = 0x10;
/// Type bit: please acknowledge (keepalive / zero-window probe).
pub const UDX_HEARTBEAT: u8 = 0x20;

/// The fixed UDX header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdxHeader {
    /// Type bit flags (`UDX_*`); 0 is a pure ACK.
    pub type_flags: u8,
    /// Bytes between the header and the payload (MTU-probe padding; SACK area size).
    pub data_offset: u8,
    /// The receiver's stream id.
    pub id: u32,
    /// The sender's receive window in bytes.
    pub rwnd: u32,
    /// Packet sequence number.
    pub seq: u32,
    /// Cumulative ack: the next sequence number the sender expects.
    pub ack: u32,
}

impl UdxHeader {
    /// True for datagrams that look like UDX: long enough, magic and version right.
    /// Used to demultiplex a shared socket by its first bytes.
    pub fn is_udx(datagram: &[u8]) -> bool {
        datagram.len() >= UDX_HEADER_LEN && datagram[0] == UDX_MAGIC && datagram[1] == UDX_VERSION
    }
}

impl Encode for UdxHeader {
    fn encoded_len(&self) -> usize {
        UDX_HEADER_LEN
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.u8(UDX_MAGIC);
        w.u8(UDX_VERSION);
        w.u8(self.type_flags);
        w.u8(self.data_offset);
        w.u32(self.id);
        w.u32(self.rwnd);
        w.u32(self.seq);
        w.u32(self.ack);
    }
}

/// A decoded UDX datagram: the header and everything after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdxPacket<'a> {
    /// The header.
    pub header: UdxHeader,
    /// All bytes after the 20-byte header (padding or SACK blocks, then payload).
    pub body: &'a [u8],
}

impl<'a> UdxPacket<'a> {
    /// Decodes the header of a UDX datagram.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(datagram);
        if r.u8()? != UDX_MAGIC || r.u8()? != UDX_VERSION {
            return Err(DecodeError::UnknownType);
        }
        let header = UdxHeader {
            type_flags: r.u8()?,
            data_offset: r.u8()?,
            id: r.u32()?,
            rwnd: r.u32()?,
            seq: r.u32()?,
            ack: r.u32()?,
        };
        Ok(Self { header, body: r.rest() })
    }

    /// The payload after `data_offset` bytes of padding. A data offset beyond the end of
    /// the datagram is an error (libudx drops such packets).
    pub fn payload(&self) -> Result<&'a [u8], DecodeError> {
        self.body.get(usize::from(self.header.data_offset)..).ok_or(DecodeError::Truncated)
    }

    /// The SACK blocks, when the SACK bit is set (otherwise none).
    ///
    /// Receiver rule (§1.4): the block area is `data_offset` bytes when
    /// `0 < data_offset < body length`, else the whole body; blocks are 8 bytes each and
    /// a partial block at the end is ignored. At most [`UDX_MAX_SACK_BLOCKS`]… are
    /// *sent*; a receiver reads whatever whole blocks there are.
    pub fn sack_ranges(&self) -> SackRanges<'a> {
        if self.header.type_flags & UDX_SACK == 0 {
            return SackRanges { area: &[] };
        }
        let off = usize::from(self.header.data_offset);
        let area = if off > 0 && off < self.body.len() { &self.body[..off] } else { self.body };
        SackRanges { area }
    }
}

/// A half-open range `[start, end)` of received sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SackRange {
    /// First sequence number received.
    pub start: u32,
    /// One past the last sequence number received.
    pub end: u32,
}

impl Encode for SackRange {
    fn encoded_len(&self) -> usize {
        8
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.u32(self.start);
        w.u32(self.end);
    }
}

/// Iterator over the SACK blocks of a packet.
#[derive(Debug, Clone)]
pub struct SackRanges<'a> {
    area: &'a [u8],
}

impl Iterator for SackRanges<'_> {
    type Item = SackRange;
    fn next(&mut self) -> Option<SackRange> {
        let (block, rest) = self.area.split_first_chunk::<8>()?;
        self.area = rest;
        let start = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        let end = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
        Some(SackRange { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sack_example_from_spec() {
        let bytes: [u8; 28] = [
            0xff, 0x01, 0x04, 0x00, 3, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
            2, 0, 0, 0,
        ];
        let p = UdxPacket::decode(&bytes).unwrap();
        assert_eq!(p.header.id, 3);
        assert_eq!(p.header.rwnd, 4_194_304);
        let ranges: Vec<_> = p.sack_ranges().collect();
        assert_eq!(ranges, [SackRange { start: 1, end: 2 }]);
        assert_eq!(p.header.to_vec(), bytes[..20]);
    }

    #[test]
    fn data_offset_past_end_is_an_error() {
        let mut bytes = [0u8; 22];
        bytes[0] = 0xff;
        bytes[1] = 0x01;
        bytes[2] = UDX_DATA;
        bytes[3] = 5;
        assert_eq!(UdxPacket::decode(&bytes).unwrap().payload(), Err(DecodeError::Truncated));
        assert_eq!(UdxPacket::decode(&bytes[..19]), Err(DecodeError::Truncated));
        assert!(!UdxHeader::is_udx(&bytes[..19]));
    }
}
