//! The host's own IPv4 addresses, for the LAN shortcut of encrypted connections: a
//! server lists them in its handshake payload (hyperdht's `addresses4` after the public
//! address) so that a client behind the same NAT can reach it without the NAT, which
//! most home routers do not loop back ("hairpin").

use std::net::Ipv4Addr;

/// Most addresses reported (a handshake payload carries a handful; hosts with hundreds
/// of addresses, e.g. a router with many VLANs, list the first ones).
pub const MAX_INTERFACE_ADDRESSES: usize = 16;

/// The IPv4 addresses of the host's interfaces that are up, loopback excluded, in the
/// kernel's order (as libuv's `uv_interface_addresses`, which udx-native reports to
/// hyperdht), at most [`MAX_INTERFACE_ADDRESSES`]. Empty when the host has none or the
/// query fails: a missing LAN shortcut is never an error.
pub fn ipv4_interface_addresses() -> Vec<Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head it allocated into `head`; on failure it
    // returns -1 and we never read `head`.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() && out.len() < MAX_INTERFACE_ADDRESSES {
        // SAFETY: `cur` is a non-null node of the list getifaddrs built; the list stays
        // valid until the freeifaddrs below.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        let flags = ifa.ifa_flags;
        if ifa.ifa_addr.is_null()
            || flags & libc::IFF_UP as u32 == 0
            || flags & libc::IFF_LOOPBACK as u32 != 0
        {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points at a sockaddr whose family field
        // every sockaddr shares.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: the family is AF_INET, so the kernel stored a sockaddr_in there.
        let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        if !ip.is_unspecified() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once; no
    // reference into the list outlives this call (addresses were copied out).
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every address reported can be bound: it is really one of ours, and loopback is
    /// left out (a LAN peer cannot reach it).
    #[test]
    fn interface_addresses_are_bindable_and_not_loopback() {
        let addrs = ipv4_interface_addresses();
        assert!(addrs.len() <= MAX_INTERFACE_ADDRESSES);
        for ip in addrs {
            assert!(!ip.is_loopback(), "{ip}");
            let bound = std::net::UdpSocket::bind((ip, 0));
            assert!(bound.is_ok(), "cannot bind {ip}: {bound:?}");
        }
    }
}
