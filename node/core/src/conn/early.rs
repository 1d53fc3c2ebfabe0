//! UDX packets that arrive for a connecting stream before its handshake reply.
//!
//! A client allocates its stream id and sends it in the first Noise message; the
//! reply comes back through the relay (two hops) while a reachable server, having
//! answered, connects straight to the client and sends its secret-stream header at
//! once (one hop). On a fast network the direct packet wins the race, finds no stream
//! (the client creates it when the reply names the server's id) and is lost; the
//! server only resends it after its retransmission timeout, a second later (about
//! one connect in a hundred on loopback).
//!
//! So packets for the id of a connect in flight are kept, a few per stream, and handed
//! to the stream once the reply has created it. Bounded: [`PER_STREAM`] packets per
//! connect and [`TOTAL`] over all of them (a peer can only aim at ids it was told, but
//! it may send many), each at most one receive slot long.

use std::collections::HashMap;
use std::net::SocketAddrV4;

use tern_base::SocketId;
use tern_wire::udx::{UDX_HEADER_LEN, UDX_MAGIC, UDX_VERSION};

/// Packets kept per connecting stream: a server's first flight is its header and
/// perhaps the first data packets.
pub(crate) const PER_STREAM: usize = 8;
/// Packets kept over all connecting streams.
pub(crate) const TOTAL: usize = 512;
/// Longest packet kept (the driver's receive slot).
const MAX_LEN: usize = 2048;

/// One packet kept for later.
#[derive(Debug)]
pub(crate) struct EarlyPacket {
    pub socket: SocketId,
    pub from: SocketAddrV4,
    pub data: Vec<u8>,
}

/// The streams of connects in flight and the packets that came for them too early.
#[derive(Debug, Default)]
pub(crate) struct EarlyPackets {
    by_stream: HashMap<u32, Vec<EarlyPacket>>,
    total: usize,
}

impl EarlyPackets {
    /// Starts keeping packets for `stream` (a connect was sent with this id).
    pub(crate) fn watch(&mut self, stream: u32) {
        self.by_stream.entry(stream).or_default();
    }

    /// Stops watching `stream`; the packets kept for it, oldest first.
    pub(crate) fn take(&mut self, stream: u32) -> Vec<EarlyPacket> {
        let kept = self.by_stream.remove(&stream).unwrap_or_default();
        self.total -= kept.len();
        kept
    }

    /// Offers a datagram no stream claimed: true when it is a UDX packet for a watched
    /// stream (kept, or dropped over the bounds: either way it is not dht-rpc's).
    pub(crate) fn offer(&mut self, socket: SocketId, from: SocketAddrV4, data: &[u8]) -> bool {
        if data.len() < UDX_HEADER_LEN || data[0] != UDX_MAGIC || data[1] != UDX_VERSION {
            return false;
        }
        let Some(id) = data.get(4..8).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
        else {
            return false;
        };
        let Some(kept) = self.by_stream.get_mut(&id) else { return false };
        if kept.len() < PER_STREAM && self.total < TOTAL && data.len() <= MAX_LEN {
            kept.push(EarlyPacket { socket, from, data: data.to_vec() });
            self.total += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn packet(id: u32) -> Vec<u8> {
        let mut d = vec![0u8; UDX_HEADER_LEN + 10];
        d[0] = UDX_MAGIC;
        d[1] = UDX_VERSION;
        d[4..8].copy_from_slice(&id.to_le_bytes());
        d
    }

    const FROM: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);

    #[test]
    fn keeps_packets_of_watched_streams_only_and_within_bounds() {
        let mut e = EarlyPackets::default();
        assert!(!e.offer(SocketId::SERVER, FROM, &packet(7)), "unwatched: rpc's to judge");
        e.watch(7);
        for _ in 0..PER_STREAM + 3 {
            assert!(e.offer(SocketId::SERVER, FROM, &packet(7)));
        }
        assert!(!e.offer(SocketId::SERVER, FROM, b"\x03not udx at all, a dht-rpc request"));
        let kept = e.take(7);
        assert_eq!(kept.len(), PER_STREAM);
        assert!(kept.iter().all(|p| p.data == packet(7) && p.from == FROM));
        assert!(!e.offer(SocketId::SERVER, FROM, &packet(7)), "no longer watched");
        assert_eq!(e.total, 0);
    }

    #[test]
    fn the_total_bound_holds_over_many_streams() {
        let mut e = EarlyPackets::default();
        for id in 0..(TOTAL as u32) {
            e.watch(id);
            for _ in 0..PER_STREAM {
                e.offer(SocketId::SERVER, FROM, &packet(id));
            }
        }
        assert_eq!(e.total, TOTAL);
        let kept: usize = (0..(TOTAL as u32)).map(|id| e.take(id).len()).sum();
        assert_eq!(kept, TOTAL);
        assert_eq!(e.total, 0);
    }
}
