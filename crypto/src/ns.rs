//! Protocol namespaces: the 32-byte domain separators that prefix every signable and key every
//! derived id.
//!
//! hyperdht builds them with hypercore-crypto's helper `namespace(name, i) = H32(H32(name) ||
//! byte i)`; for `"hyperswarm/dht"` the index is the command number (spec `hyperdht-dht.md`
//! §8.2), for `"hyperswarm/secret-stream"` it is 0/1/2 (spec `hyperswarm-transport.md` §2.4).
//! They are written out as constants so that no hashing happens at start-up or on a hot path;
//! the unit tests recompute each one with [`namespace`] and the vector tests compare them with
//! the JS reference.

use crate::hash::{hash32, hash32_parts};

/// Decodes 64 lowercase hex digits at compile time. Only used on the literals below, which the
/// tests recompute, so a bad digit decodes as 0 instead of needing a panic path.
const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => 0,
        }
    }
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 && 2 * i + 1 < b.len() {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// `H32("hyperswarm/dht")`: the base of the DHT namespaces.
pub const NS_BASE: [u8; 32] =
    hex32("d70d90f7efc42f93e1ad5837e682a6010cf551013c2d2d043f40d8fbe07dcb90");
/// ANNOUNCE signables (command 4).
pub const NS_ANNOUNCE: [u8; 32] =
    hex32("36386adddf9f6fd60db83a6f42fc159d1146aa8644037664230aaa1f0179d497");
/// UNANNOUNCE signables (command 5).
pub const NS_UNANNOUNCE: [u8; 32] =
    hex32("ded293cd93fb395e756ecf5fff426529e72c36eacc22e5ed944d9099a2561e32");
/// MUTABLE_PUT signables (command 6).
pub const NS_MUTABLE_PUT: [u8; 32] =
    hex32("668e823edd5ce7f5338d68bf1161f4a3c28ce437ee2ab49efd30d99366039b1e");
/// Noise IK prologue of PEER_HANDSHAKE (command 0).
pub const NS_PEER_HANDSHAKE: [u8; 32] =
    hex32("14d6d4b49214ab1033ed204976caa258bae9e1e8543b9ad1fd996a910b0c4e3a");
/// Message hashed under the handshake hash to get the holepunch secret (command 1).
pub const NS_PEER_HOLEPUNCH: [u8; 32] =
    hex32("f1191cd5e67b10b54a507033280ed1ff0e12278268d5679c8f93d417210d168b");
/// PLUGIN namespace (command 10).
pub const NS_PLUGIN: [u8; 32] =
    hex32("6b8a2a8623f28c6c02a1e22abe515ce31cafd9af61d4b69970639aa7eb96a8d5");

/// `H32("hyperswarm/secret-stream")`: the base of the secret-stream namespaces.
pub const NS_SECRET_STREAM_BASE: [u8; 32] =
    hex32("03b061a966a977301b7f4cd4132af0580e2d413a6860933999add2dcedd7c155");
/// secret-stream namespace 0: the initiator's stream id and unordered send key.
pub const NS_SS_INITIATOR: [u8; 32] =
    hex32("a931a0155b5c09e6d28628236af83c4b8a6af9af60986edeede9dc5d63192bf7");
/// secret-stream namespace 1: the responder's stream id and unordered send key.
pub const NS_SS_RESPONDER: [u8; 32] =
    hex32("742c9d833d430af4c48a8705e91631eecf295442bbca18996e597097723b1061");
/// secret-stream namespace 2: suffix of the unordered send-key messages.
pub const NS_SS_SEND: [u8; 32] =
    hex32("aab97d097471f56651b0460ffc8aaa7d3342f7377597d60b925a1dac689adcbf");

/// hypercore-crypto's `namespace(name, index)`: `H32(H32(utf8 name) || byte index)`.
///
/// Only needed to check the constants above or to build a namespace this crate does not list.
#[must_use]
pub fn namespace(name: &str, index: u8) -> [u8; 32] {
    let base = hash32(name.as_bytes());
    hash32_parts(&[&base, &[index]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_their_definition() {
        assert_eq!(hash32(b"hyperswarm/dht"), NS_BASE);
        assert_eq!(hash32(b"hyperswarm/secret-stream"), NS_SECRET_STREAM_BASE);
        let dht = [
            (NS_ANNOUNCE, 4),
            (NS_UNANNOUNCE, 5),
            (NS_MUTABLE_PUT, 6),
            (NS_PEER_HANDSHAKE, 0),
            (NS_PEER_HOLEPUNCH, 1),
            (NS_PLUGIN, 10),
        ];
        for (ns, cmd) in dht {
            assert_eq!(namespace("hyperswarm/dht", cmd), ns);
        }
        let ss = [(NS_SS_INITIATOR, 0), (NS_SS_RESPONDER, 1), (NS_SS_SEND, 2)];
        for (ns, i) in ss {
            assert_eq!(namespace("hyperswarm/secret-stream", i), ns);
        }
    }
}
