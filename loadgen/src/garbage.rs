//! Malformed datagrams for the garbage flood (`tern-loadgen raw --malformed F`): what a
//! buggy or hostile peer sends a public node. Each kind aims at a different layer of the
//! receive path, so a flood exercises every early-exit of the decoders rather than one:
//!
//! - random bytes of random length (unknown message type);
//! - a valid dht-rpc type byte followed by noise (the header decoder);
//! - a valid request cut short at a random byte (every "truncated" path);
//! - a valid request with its value length claiming 4 GiB (length bombs: a decoder
//!   must check the length against what is left, never allocate it);
//! - a well-formed response whose tid matches nothing (the unmatched-response path);
//! - a UDX header for a stream that does not exist (the stream demultiplexer);
//! - datagrams longer than the node's receive slot (truncation by the driver).
//!
//! Some "flipped" requests stay valid by chance and get answered: the generator sends
//! garbage from sockets of its own, so such replies never count as answers to the
//! measured requests.

use std::net::SocketAddrV4;

use tern_base::Rng;
use tern_wire::Encode;
use tern_wire::rpc::{REQUEST_TYPE, RESPONSE_TYPE, Request};
use tern_wire::udx::{UDX_HEADER_LEN, UDX_MAGIC, UDX_VERSION};

/// The kinds of malformed datagram, in the order [`malformed`] cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Random bytes, 2..=1400 of them.
    Noise,
    /// A request or response type byte, then noise.
    BadHeader,
    /// A valid FIND_NODE or LOOKUP request missing its tail.
    Truncated,
    /// A valid request with its flags byte and a few others changed at random.
    Flipped,
    /// A request whose value length prefix claims 0xffff_ffff bytes.
    LengthBomb,
    /// A bare response (no fields) with a random tid: it decodes, and matches nothing.
    StrayResponse,
    /// A UDX DATA packet for a random stream id.
    UnknownStream,
    /// 2 049..=9 000 random bytes: longer than the node's 2 KiB receive slot.
    Oversize,
}

/// Every kind, cycled through by [`malformed`].
pub const KINDS: [Kind; 8] = [
    Kind::Noise,
    Kind::BadHeader,
    Kind::Truncated,
    Kind::Flipped,
    Kind::LengthBomb,
    Kind::StrayResponse,
    Kind::UnknownStream,
    Kind::Oversize,
];

/// One malformed datagram of a random kind for the node at `to`.
pub fn malformed(rng: &mut Rng, to: SocketAddrV4) -> Vec<u8> {
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    of_kind(rng, to, kind)
}

/// One malformed datagram of `kind`.
pub fn of_kind(rng: &mut Rng, to: SocketAddrV4, kind: Kind) -> Vec<u8> {
    match kind {
        Kind::Noise => {
            let mut d = noise(rng, 2, 1400);
            // Keep it noise: a first byte of a real message type would make it another kind.
            if matches!(d[0], REQUEST_TYPE | RESPONSE_TYPE | UDX_MAGIC) {
                d[0] = 0x42;
            }
            d
        }
        Kind::BadHeader => {
            let mut d = noise(rng, 1, 200);
            d.insert(0, if rng.below(2) == 0 { REQUEST_TYPE } else { RESPONSE_TYPE });
            d
        }
        Kind::Truncated => {
            let d = valid_request(rng, to, None);
            let keep = 1 + rng.below(d.len() as u64 - 1) as usize;
            d[..keep].to_vec()
        }
        Kind::Flipped => {
            // The flags byte decides which fields follow: changing it misaligns every
            // field after it; a few more bytes change anywhere.
            let mut d = valid_request(rng, to, None);
            d[1] ^= 1 + rng.below(255) as u8;
            for _ in 0..rng.below(4) {
                let i = rng.below(d.len() as u64) as usize;
                d[i] ^= 1 + rng.below(255) as u8;
            }
            d
        }
        Kind::LengthBomb => {
            // A request with a 1-byte value, whose length prefix is rewritten to the
            // compact-encoding u32 form (0xfe + 4 bytes) claiming 4 GiB.
            let mut d = valid_request(rng, to, Some(&[0x5a]));
            let len = d.len();
            d.truncate(len - 2);
            d.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff]);
            d.extend_from_slice(&noise(rng, 0, 32));
            d
        }
        Kind::StrayResponse => {
            let mut d = vec![RESPONSE_TYPE, 0];
            d.extend_from_slice(&(rng.next_u64() as u16).to_le_bytes());
            // The `to` address (6 bytes) and trailing noise the decoder ignores.
            d.extend_from_slice(&noise(rng, 6, 64));
            d
        }
        Kind::UnknownStream => {
            let mut d = vec![0u8; UDX_HEADER_LEN];
            rng.fill(&mut d);
            d[0] = UDX_MAGIC;
            d[1] = UDX_VERSION;
            d[2] = 0x01; // DATA
            d[3] = 0; // data offset
            d.extend_from_slice(&noise(rng, 0, 1180));
            d
        }
        Kind::Oversize => noise(rng, 2049, 9000),
    }
}

/// `min..=max` random bytes.
fn noise(rng: &mut Rng, min: usize, max: usize) -> Vec<u8> {
    let len = min + rng.below((max - min + 1) as u64) as usize;
    let mut d = vec![0u8; len];
    rng.fill(&mut d);
    d
}

/// A well-formed FIND_NODE (internal) or LOOKUP request, the raw material of the
/// truncated, flipped and length-bomb kinds.
fn valid_request(rng: &mut Rng, to: SocketAddrV4, value: Option<&[u8]>) -> Vec<u8> {
    let target = rng.bytes32();
    let internal = rng.below(2) == 0;
    Request {
        tid: rng.next_u64() as u16,
        to,
        id: None,
        token: None,
        internal,
        command: if internal { 2 } else { 3 },
        target: Some(&target),
        value,
    }
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_wire::Decode;
    use tern_wire::rpc::Message;

    const TO: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 49737);

    /// The kinds meant to be undecodable are (the stray response is well-formed): a generator that drifted into producing
    /// valid requests would flood the node with work instead of garbage.
    #[test]
    fn the_malformed_kinds_do_not_decode() {
        let mut rng = Rng::from_seed(7);
        for kind in KINDS {
            let mut decoded = 0;
            for _ in 0..500 {
                let d = of_kind(&mut rng, TO, kind);
                match kind {
                    // A valid type byte and noise, or a few changed bytes, can make a
                    // valid message by chance (the decoder ignores trailing bytes), but
                    // most must not.
                    Kind::BadHeader | Kind::Flipped => {
                        decoded += Message::decode(&d).is_ok() as u32
                    }
                    Kind::Oversize => assert!(d.len() > 2048),
                    Kind::StrayResponse => {
                        assert!(matches!(Message::decode(&d), Ok(Message::Response(_))));
                    }
                    Kind::UnknownStream => assert_eq!(&d[..3], &[UDX_MAGIC, UDX_VERSION, 1]),
                    _ => assert!(Message::decode(&d).is_err(), "{kind:?} decoded: {d:02x?}"),
                }
            }
            assert!(decoded < 250, "{kind:?}: {decoded} of 500 decoded");
        }
    }

    #[test]
    fn the_length_bomb_claims_four_gigabytes_where_the_value_length_was() {
        let mut rng = Rng::from_seed(1);
        let d = of_kind(&mut rng, TO, Kind::LengthBomb);
        let at = d.windows(5).position(|w| w == [0xfe, 0xff, 0xff, 0xff, 0xff]);
        assert!(at.is_some(), "no u32 length prefix in {d:02x?}");
        // Without the bomb (the 1-byte value restored) the same prefix is a valid request.
        let mut fixed = d[..at.unwrap_or(0)].to_vec();
        fixed.extend_from_slice(&[1, 0x5a]);
        assert!(Message::decode(&fixed).is_ok());
    }
}
