//! The 64-byte "signables" hyperdht signs: `namespace || H32(fields)` (spec `hyperdht-dht.md`
//! §8.3 announce/unannounce, §8.5 mutable put).
//!
//! The signed message is always 64 bytes, so signing cost does not grow with the record. The
//! fields are hashed in place (multi-part BLAKE2b); the one compact-encoding detail needed here,
//! the uint varint of a mutable record's `seq` and value length, is implemented locally so this
//! crate does not depend on `tern-wire`.

use crate::hash::hash32_parts;
use crate::ns::{NS_ANNOUNCE, NS_MUTABLE_PUT, NS_UNANNOUNCE};

/// Largest encoding of a compact-encoding uint: `0xff` + u64.
pub const MAX_UINT_LEN: usize = 9;

/// Writes the compact-encoding uint of `n` into a stack buffer; returns it and its length.
///
/// `<= 0xfc`: one byte; `<= 0xffff`: `0xfd` + u16le; `<= 0xffffffff`: `0xfe` + u32le; else
/// `0xff` + u64le (spec §1). Always the shortest form, as the JS encoder writes.
#[must_use]
pub fn encode_uint(n: u64) -> ([u8; MAX_UINT_LEN], usize) {
    let mut buf = [0u8; MAX_UINT_LEN];
    // The `as` casts below are range-checked by the match arms.
    let len = match n {
        0..=0xfc => {
            buf[0] = n as u8;
            1
        }
        0xfd..=0xffff => {
            buf[0] = 0xfd;
            buf[1..3].copy_from_slice(&(n as u16).to_le_bytes());
            3
        }
        0x1_0000..=0xffff_ffff => {
            buf[0] = 0xfe;
            buf[1..5].copy_from_slice(&(n as u32).to_le_bytes());
            5
        }
        _ => {
            buf[0] = 0xff;
            buf[1..9].copy_from_slice(&n.to_le_bytes());
            9
        }
    };
    (buf, len)
}

fn signable(ns: &[u8; 32], digest: [u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(ns);
    out[32..].copy_from_slice(&digest);
    out
}

fn announce_like(
    ns: &[u8; 32],
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer_record: &[u8],
    refresh: Option<&[u8; 32]>,
) -> [u8; 64] {
    let refresh: &[u8] = match refresh {
        Some(r) => r,
        None => &[],
    };
    signable(ns, hash32_parts(&[target, node_id, token, peer_record, refresh]))
}

/// ANNOUNCE signable: `NS_ANNOUNCE || H32(target || nodeId || token || peerRecord ||
/// refresh?)`.
///
/// `node_id` is the *storing* node's id and `token` the token it issued to the announcer;
/// `peer_record` is the encoded record (`publicKey || array<addr>`). `bump` is not signed.
#[must_use]
pub fn announce_signable(
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer_record: &[u8],
    refresh: Option<&[u8; 32]>,
) -> [u8; 64] {
    announce_like(&NS_ANNOUNCE, target, node_id, token, peer_record, refresh)
}

/// UNANNOUNCE signable: as [`announce_signable`] under `NS_UNANNOUNCE`.
#[must_use]
pub fn unannounce_signable(
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer_record: &[u8],
    refresh: Option<&[u8; 32]>,
) -> [u8; 64] {
    announce_like(&NS_UNANNOUNCE, target, node_id, token, peer_record, refresh)
}

/// MUTABLE_PUT signable: `NS_MUTABLE_PUT || H32(uint seq || buffer value)` where `buffer` is
/// `uint len || bytes` (spec §8.5).
#[must_use]
pub fn mutable_signable(seq: u64, value: &[u8]) -> [u8; 64] {
    let (seq_buf, seq_len) = encode_uint(seq);
    // usize -> u64 is lossless on every supported target (pointer width <= 64).
    let (len_buf, len_len) = encode_uint(value.len() as u64);
    signable(&NS_MUTABLE_PUT, hash32_parts(&[&seq_buf[..seq_len], &len_buf[..len_len], value]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_boundaries() {
        let cases: [(u64, &[u8]); 8] = [
            (0, &[0]),
            (0xfc, &[0xfc]),
            (0xfd, &[0xfd, 0xfd, 0]),
            (0xffff, &[0xfd, 0xff, 0xff]),
            (0x1_0000, &[0xfe, 0, 0, 1, 0]),
            (0xffff_ffff, &[0xfe, 0xff, 0xff, 0xff, 0xff]),
            (0x1_0000_0000, &[0xff, 0, 0, 0, 0, 1, 0, 0, 0]),
            (u64::MAX, &[0xff; 9]),
        ];
        for (n, want) in cases {
            let (buf, len) = encode_uint(n);
            assert_eq!(&buf[..len], want, "{n:#x}");
        }
    }

    #[test]
    fn refresh_changes_the_signable() {
        let a = announce_signable(&[1; 32], &[2; 32], &[3; 32], b"rec", None);
        let b = announce_signable(&[1; 32], &[2; 32], &[3; 32], b"rec", Some(&[4; 32]));
        let c = unannounce_signable(&[1; 32], &[2; 32], &[3; 32], b"rec", None);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a[..32], NS_ANNOUNCE);
        assert_eq!(c[..32], NS_UNANNOUNCE);
    }
}
