//! The LAN shortcut (ref: hyperdht lib/connect.js `holepunch`, "Race the LAN shortcut
//! with normal holepunch"; lib/holepuncher.js `localAddresses`, `matchAddress`).
//!
//! Two peers behind the same NAT see the same public host in each other's handshake,
//! and holepunching between them needs the router to loop packets for its own public
//! address back inside ("hairpinning"), which most home routers and Linux masquerade do
//! not do. Every payload therefore lists the sender's own interface addresses after its
//! public one. When the relay saw client and server at the same public host and the
//! server has to be holepunched, the client pings the server's best-matching LAN
//! address (a plain dht-rpc PING, which any hyperdht node answers on its server socket)
//! while the holepunch runs; whichever answers first gives the stream its path. The
//! server needs nothing special: a stream waiting for its client's first packet takes it
//! from whatever address it comes.

use std::net::{Ipv4Addr, SocketAddrV4};

use tern_base::{Timestamp, TxQueue};
use tern_rpc::{Reply, ReqId, Rpc};

use super::Connections;

/// Most of our own addresses offered in a payload (the reference lists every interface;
/// a payload has room for many, but a peer keeps only the first 16 of all it gets).
pub(crate) const MAX_LAN_ADDRESSES: usize = 8;

/// The addresses we offer for the shortcut, from the server socket's bound address and
/// the host's interface addresses (hyperdht `localAddresses`): a socket bound to one
/// address offers that one; a wildcard socket offers every interface with its port, or
/// loopback when the host has no other interface.
pub(crate) fn local_addresses(bound: SocketAddrV4, hosts: &[Ipv4Addr]) -> Vec<SocketAddrV4> {
    let port = bound.port();
    if port == 0 {
        return Vec::new();
    }
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let mut out: Vec<SocketAddrV4> = hosts
        .iter()
        .filter(|h| !h.is_unspecified() && !h.is_loopback())
        .take(MAX_LAN_ADDRESSES)
        .map(|h| SocketAddrV4::new(*h, port))
        .collect();
    if out.is_empty() {
        out.push(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    }
    out
}

/// Addresses that are nobody's LAN address (the `bogon` package's `isReserved`, IPv4):
/// "this" network, IETF and documentation blocks, benchmarking, multicast and the
/// reserved 240/4. Private ranges and loopback are exactly what the shortcut is for.
fn is_reserved(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224
}

/// The server address to try: among its usable addresses, the one sharing the most
/// leading octets (up to three) with one of ours, else its first (`matchAddress(...) ||
/// serverAddresses[0]`). `None` when it offered none.
pub(crate) fn pick_address(ours: &[SocketAddrV4], theirs: &[SocketAddrV4]) -> Option<SocketAddrV4> {
    let usable = || theirs.iter().filter(|a| !is_reserved(*a.ip()) && a.port() != 0);
    let shared = |a: &SocketAddrV4, b: &SocketAddrV4| {
        a.ip().octets().iter().zip(b.ip().octets()).take(3).take_while(|(x, y)| **x == *y).count()
    };
    let mut best: Option<(usize, SocketAddrV4)> = None;
    for mine in ours {
        for theirs in usable() {
            let n = shared(mine, theirs);
            if n > 0 && best.is_none_or(|(m, _)| n > m) {
                best = Some((n, *theirs));
            }
        }
    }
    best.map(|(_, a)| a).or_else(|| usable().next().copied())
}

impl Connections {
    /// Our addresses for handshake payloads (see [`local_addresses`]).
    pub fn lan_addresses(&self) -> &[SocketAddrV4] {
        &self.lan_addresses
    }

    /// Sets the addresses we offer from the server socket's bound address and the
    /// host's interface addresses (see [`local_addresses`]).
    pub(crate) fn set_lan_addresses(&mut self, bound: SocketAddrV4, hosts: &[Ipv4Addr]) {
        self.lan_addresses =
            if self.config.lan { local_addresses(bound, hosts) } else { Vec::new() };
    }

    /// Starts the LAN ping for the client holepunch session of `stream`, when the relay
    /// saw us at the server's public host and the server offered a usable address.
    pub(crate) fn start_lan_shortcut(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        stream: u32,
        server_addresses: &[SocketAddrV4],
        tx: &mut TxQueue,
    ) {
        if !self.config.lan {
            return;
        }
        let Some(addr) = pick_address(&self.lan_addresses, server_addresses) else { return };
        if let Some(req) = rpc.ping(now, addr, tx) {
            self.lan_pings.insert(req, (stream, addr));
            self.stats.lan_pings += 1;
        }
    }

    /// The outcome of a LAN ping; false when `req` is not one. An answer from the
    /// address we pinged connects the stream there, unless the holepunch already won.
    pub(crate) fn on_lan_ping(
        &mut self,
        now: Timestamp,
        req: ReqId,
        reply: Option<&Reply>,
        tx: &mut TxQueue,
    ) -> bool {
        let Some((stream, addr)) = self.lan_pings.remove(&req) else { return false };
        if reply.is_none_or(|r| r.from != addr) {
            return true;
        }
        if self.finish_client_session(now, stream, addr, tx) {
            self.stats.lan_connects += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap_or_else(|_| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
    }

    #[test]
    fn offered_addresses_follow_the_bound_socket() {
        let hosts =
            [Ipv4Addr::new(192, 168, 1, 2), Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 0, 7)];
        assert_eq!(
            local_addresses(a("0.0.0.0:4000"), &hosts),
            [a("192.168.1.2:4000"), a("10.0.0.7:4000")]
        );
        assert_eq!(local_addresses(a("0.0.0.0:4000"), &[]), [a("127.0.0.1:4000")]);
        assert_eq!(local_addresses(a("127.0.0.1:4000"), &hosts), [a("127.0.0.1:4000")]);
        assert_eq!(local_addresses(a("192.168.1.2:4000"), &hosts), [a("192.168.1.2:4000")]);
        assert!(local_addresses(a("0.0.0.0:0"), &hosts).is_empty());
        let many: Vec<Ipv4Addr> = (1..=40).map(|i| Ipv4Addr::new(10, 1, 1, i)).collect();
        assert_eq!(local_addresses(a("0.0.0.0:1"), &many).len(), MAX_LAN_ADDRESSES);
    }

    #[test]
    fn the_best_matching_server_address_is_chosen() {
        let ours = [a("192.168.122.238:1"), a("10.5.0.2:1")];
        let theirs = [a("192.168.0.23:9"), a("192.168.122.1:9"), a("10.9.9.9:9")];
        assert_eq!(pick_address(&ours, &theirs), Some(a("192.168.122.1:9")));
        // No shared first octet: the server's first usable address.
        assert_eq!(pick_address(&[a("172.16.0.1:1")], &theirs), Some(a("192.168.0.23:9")));
        // Reserved and port-0 addresses are never tried.
        let junk = [a("224.0.0.1:9"), a("0.1.2.3:9"), a("192.0.2.1:9"), a("192.168.1.5:0")];
        assert_eq!(pick_address(&ours, &junk), None);
        assert_eq!(pick_address(&ours, &[]), None);
        // Loopback is a LAN address here (two processes on one host).
        assert_eq!(pick_address(&[a("127.0.0.1:1")], &[a("127.0.0.1:2")]), Some(a("127.0.0.1:2")));
    }
}
