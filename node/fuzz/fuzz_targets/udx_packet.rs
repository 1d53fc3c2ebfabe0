//! UDX datagrams: `UdxPacket::decode`, `payload()` and the SACK block iterator must never
//! panic, and the header must re-encode to exactly the bytes it was decoded from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_fuzz::encode_exact;
use tern_wire::DecodeError;
use tern_wire::udx::{UDX_HEADER_LEN, UDX_SACK, UdxHeader, UdxPacket};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = UdxPacket::decode(data) else {
        assert!(!UdxHeader::is_udx(data), "demux says UDX but the decoder refuses it");
        return;
    };
    assert!(UdxHeader::is_udx(data), "decoder accepts what demux would not route to it");
    // The header is fixed-size and lossless, so encode(decode(x)) is byte-exact.
    let mut again = encode_exact(&p.header);
    assert_eq!(again.len(), UDX_HEADER_LEN);
    again.extend_from_slice(p.body);
    assert_eq!(again, data, "header re-encoding differs");
    assert_eq!(UdxPacket::decode(&again), Ok(p));

    let offset = usize::from(p.header.data_offset);
    match p.payload() {
        Ok(payload) => assert_eq!(payload.len() + offset, p.body.len()),
        Err(e) => {
            assert_eq!(e, DecodeError::Truncated);
            assert!(offset > p.body.len());
        }
    }
    let blocks = p.sack_ranges().count();
    assert!(blocks <= p.body.len() / 8);
    if p.header.type_flags & UDX_SACK == 0 {
        assert_eq!(blocks, 0);
    }
});
