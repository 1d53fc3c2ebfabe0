//! The address plan: every simulated address is computed from an index, so routing a
//! datagram needs no hash lookup.
//!
//! * Public endpoints (hosts with their own address, and NAT boxes) live in
//!   `10.0.0.0/9`: site `i` is `10.0.0.0 + i + 1` (`10.0.0.1` ... `10.127.255.254`).
//! * Hosts behind a NAT live in `10.128.0.0/9`: private host `j` is `10.128.0.0 + j + 1`.
//!
//! Both halves are far larger than any simulated world (8 million each), and no address
//! of the plan collides with loopback, so the simulator can never deliver to a real host.

use std::net::Ipv4Addr;

const PUBLIC_BASE: u32 = 10 << 24;
const PRIVATE_BASE: u32 = (10 << 24) | (128 << 16);
/// Indices available in each half (one address of each end is kept unused).
pub const MAX_INDEX: u32 = (1 << 23) - 2;

/// The public address of site `index` (`index < MAX_INDEX`; larger values wrap inside the
/// public half rather than leaking into the private one).
pub fn public_ip(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(PUBLIC_BASE + (index % MAX_INDEX) + 1)
}

/// The private address of private host `index`.
pub fn private_ip(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(PRIVATE_BASE + (index % MAX_INDEX) + 1)
}

/// The site index of a public address of the plan.
pub fn public_index(ip: Ipv4Addr) -> Option<u32> {
    let v = u32::from(ip);
    (v > PUBLIC_BASE && v <= PUBLIC_BASE + MAX_INDEX).then(|| v - PUBLIC_BASE - 1)
}

/// The private host index of a private address of the plan.
pub fn private_index(ip: Ipv4Addr) -> Option<u32> {
    let v = u32::from(ip);
    (v > PRIVATE_BASE && v <= PRIVATE_BASE + MAX_INDEX).then(|| v - PRIVATE_BASE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trips_and_halves_do_not_overlap() {
        for i in [0, 1, 255, 256, 65_535, 1 << 20, MAX_INDEX - 1] {
            assert_eq!(public_index(public_ip(i)), Some(i));
            assert_eq!(private_index(private_ip(i)), Some(i));
            assert_eq!(private_index(public_ip(i)), None);
            assert_eq!(public_index(private_ip(i)), None);
        }
        assert_eq!(public_ip(0), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(private_ip(0), Ipv4Addr::new(10, 128, 0, 1));
        assert_eq!(public_index(Ipv4Addr::new(10, 0, 0, 0)), None);
        assert_eq!(public_index(Ipv4Addr::LOCALHOST), None);
    }
}
