//! Building and checking the Noise handshake payloads (spec §9.4) and the address rules
//! both sides apply when choosing a path (hyperdht lib/connect.js, lib/server.js).

use std::net::{Ipv4Addr, SocketAddrV4};

use tern_wire::handshake::{Firewall, HolepunchInfo, NoisePayload, PayloadError, UdxInfo};
use tern_wire::{AddrList, RelayPair};
use tern_wire::{Decode, Encode};

/// What this side tells the other in its handshake payload.
#[derive(Debug, Clone, Copy)]
pub struct LocalView<'a> {
    /// Our public address when we are reachable unsolicited (then we say OPEN).
    pub open_address: Option<SocketAddrV4>,
    /// Our own interface addresses, listed after the public one for peers behind the
    /// same NAT (the LAN shortcut, see `lan`).
    pub lan_addresses: &'a [SocketAddrV4],
    /// Our local UDX stream id (0 when the payload carries an error).
    pub udx_id: u32,
    /// The handshake slot a client names in PEER_HOLEPUNCH (servers only).
    pub holepunch_id: Option<u64>,
    /// Error to report.
    pub error: PayloadError,
    /// Our announce relays (servers only).
    pub relay_addresses: &'a [SocketAddrV4],
    /// The relays a client may send PEER_HOLEPUNCH through, with our address as each
    /// saw it (servers only; hyperdht's `announcer.relays`).
    pub holepunch_relays: &'a [RelayPair],
}

/// Encodes our payload: OPEN plus our address when reachable, else UNKNOWN (and then, for
/// a server, the holepunch slot), our LAN addresses, always `udx` and `secretStream`.
pub fn encode(view: &LocalView<'_>) -> Vec<u8> {
    let addrs: Vec<SocketAddrV4> =
        view.open_address.into_iter().chain(view.lan_addresses.iter().copied()).collect();
    let payload = NoisePayload {
        version: 1,
        error: view.error,
        firewall: if view.open_address.is_some() { Firewall::Open } else { Firewall::Unknown },
        holepunch: match (view.open_address, view.holepunch_id) {
            (None, Some(id)) => {
                Some(HolepunchInfo { id, relays: AddrPairs::Items(view.holepunch_relays) })
            }
            _ => None,
        },
        addresses4: AddrList::Items(&addrs),
        udx: Some(UdxInfo { version: 1, reusable_socket: false, id: view.udx_id, seq: 0 }),
        secret_stream: Some(1),
        relay_addresses: (!view.relay_addresses.is_empty())
            .then_some(AddrList::Items(view.relay_addresses)),
        ..NoisePayload::default()
    };
    let mut out = vec![0u8; payload.encoded_len()];
    match payload.encode(&mut out) {
        Ok(n) => out.truncate(n),
        Err(_) => out.clear(),
    }
    out
}

type AddrPairs<'a> = tern_wire::RelayPairList<'a>;

/// The parts of a peer's payload the connection logic uses, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteView {
    /// Payload version (1 is the only one understood).
    pub version: u64,
    /// The error the peer reported.
    pub error: PayloadError,
    /// The peer's NAT class.
    pub firewall: Firewall,
    /// Whether it offered holepunch relays.
    pub holepunchable: bool,
    /// Its holepunch slot and relays (a firewalled server's offer).
    pub holepunch: Option<(u64, Vec<RelayPair>)>,
    /// Its IPv4 addresses (public first, then LAN).
    pub addresses4: Vec<SocketAddrV4>,
    /// Its UDX stream id, when it sent one.
    pub udx_id: Option<u32>,
}

/// Most addresses kept from a peer's payload.
const MAX_ADDRESSES: usize = 16;
/// Most holepunch relays kept from a server's payload (hyperdht announces to 20 at most).
const MAX_HOLEPUNCH_RELAYS: usize = 20;

/// Decodes a peer's payload; `None` when it does not parse.
pub fn decode(bytes: &[u8]) -> Option<RemoteView> {
    let p = NoisePayload::decode(bytes).ok()?;
    Some(RemoteView {
        version: p.version,
        error: p.error,
        firewall: p.firewall,
        holepunchable: p.holepunch.is_some_and(|h| !h.relays.is_empty()),
        holepunch: p
            .holepunch
            .map(|h| (h.id, h.relays.iter().take(MAX_HOLEPUNCH_RELAYS).collect())),
        addresses4: p.addresses4.iter().take(MAX_ADDRESSES).collect(),
        udx_id: p.udx.map(|u| u.id),
    })
}

/// Addresses that are never a peer's public address (hyperdht's `bogon` list, IPv4).
pub fn is_bogon(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224
}

/// The address a client connects to when the server is reachable: its first public
/// address, else where the relay saw it (`getFirstRemoteAddress`).
pub fn first_remote_address(addrs: &[SocketAddrV4], server: SocketAddrV4) -> SocketAddrV4 {
    addrs.iter().copied().find(|a| !is_bogon(*a.ip()) && a.port() != 0).unwrap_or(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_open_and_unknown() {
        let me = SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 5);
        let open = LocalView {
            open_address: Some(me),
            lan_addresses: &[],
            udx_id: 77,
            holepunch_id: Some(3),
            error: PayloadError::None,
            relay_addresses: &[],
            holepunch_relays: &[],
        };
        let v = decode(&encode(&open)).unwrap();
        assert_eq!(v.firewall, Firewall::Open);
        assert_eq!(v.addresses4, vec![me]);
        assert_eq!(v.udx_id, Some(77));
        let closed = LocalView { open_address: None, ..open };
        let v = decode(&encode(&closed)).unwrap();
        assert_eq!(v.firewall, Firewall::Unknown);
        assert!(v.addresses4.is_empty());
        // LAN addresses follow the public one (hyperdht's order), or stand alone.
        let lan = [SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 5)];
        let v = decode(&encode(&LocalView { lan_addresses: &lan, ..open })).unwrap();
        assert_eq!(v.addresses4, vec![me, lan[0]]);
        let v = decode(&encode(&LocalView { lan_addresses: &lan, ..closed })).unwrap();
        assert_eq!(v.addresses4, lan.to_vec());
        assert!(decode(&[1, 0xff]).is_none());
    }

    #[test]
    fn bogons_are_skipped() {
        let server = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9);
        let lan = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 9);
        let public = SocketAddrV4::new(Ipv4Addr::new(8, 8, 8, 8), 9);
        assert_eq!(first_remote_address(&[lan], server), server);
        assert_eq!(first_remote_address(&[lan, public], server), public);
        assert!(is_bogon(Ipv4Addr::new(100, 64, 0, 1)));
        assert!(!is_bogon(Ipv4Addr::new(100, 128, 0, 1)));
    }
}
