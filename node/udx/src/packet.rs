//! Outgoing UDX headers and modular sequence arithmetic (spec §1.1–§1.4).
//!
//! Headers are written straight into the transmit queue's arena, so this is a plain
//! byte writer rather than tern-wire's `Encode` (which wants its own `Writer`).

pub use tern_wire::udx::{
    UDX_DATA, UDX_DESTROY, UDX_END, UDX_HEADER_LEN, UDX_HEARTBEAT, UDX_MAGIC, UDX_MAX_SACK_BLOCKS,
    UDX_MESSAGE, UDX_SACK, UDX_VERSION,
};

/// IPv4 (20) + UDP (8) + UDX header (20): MTU minus this is the payload budget (§1.9).
pub(crate) const IPV4_OVERHEAD: usize = 48;

/// The receive window udx-native always advertises; we never advertise more.
pub(crate) const MAX_ADVERTISED_RWND: u32 = 4_194_304;

/// Signed distance `a - b` modulo 2^32.
pub(crate) fn seq_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// `a < b` modulo 2^32.
pub(crate) fn seq_lt(a: u32, b: u32) -> bool {
    seq_diff(a, b) < 0
}

/// `a <= b` modulo 2^32.
pub(crate) fn seq_le(a: u32, b: u32) -> bool {
    seq_diff(a, b) <= 0
}

/// The fields of an outgoing header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hdr {
    pub flags: u8,
    pub off: u8,
    pub id: u32,
    pub rwnd: u32,
    pub seq: u32,
    pub ack: u32,
}

/// Writes the 20-byte header into `buf[..20]`; `buf` must be at least that long.
pub(crate) fn put_header(buf: &mut [u8], h: &Hdr) {
    if buf.len() < UDX_HEADER_LEN {
        return;
    }
    buf[0] = UDX_MAGIC;
    buf[1] = UDX_VERSION;
    buf[2] = h.flags;
    buf[3] = h.off;
    buf[4..8].copy_from_slice(&h.id.to_le_bytes());
    buf[8..12].copy_from_slice(&h.rwnd.to_le_bytes());
    buf[12..16].copy_from_slice(&h.seq.to_le_bytes());
    buf[16..20].copy_from_slice(&h.ack.to_le_bytes());
}

/// Reads the id field (bytes 4..8) of a datagram already known to be >= 20 bytes.
pub(crate) fn read_id(data: &[u8]) -> Option<u32> {
    let b: [u8; 4] = data.get(4..8)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modular_compare() {
        assert!(seq_lt(u32::MAX, 0));
        assert!(seq_lt(5, 6));
        assert!(!seq_lt(6, 6));
        assert!(seq_le(6, 6));
        assert_eq!(seq_diff(1, u32::MAX), 2);
    }

    #[test]
    fn header_layout() {
        let mut b = [0u8; 20];
        put_header(&mut b, &Hdr { flags: 4, off: 0, id: 3, rwnd: 4_194_304, seq: 0, ack: 0 });
        assert_eq!(b[..12], [0xff, 1, 4, 0, 3, 0, 0, 0, 0, 0, 0x40, 0]);
    }
}
