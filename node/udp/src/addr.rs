//! Conversions between `std::net::SocketAddrV4` and the kernel's `sockaddr_in`.
//!
//! Kept in one place so byte-order handling (ports and addresses are big-endian in
//! `sockaddr_in`) is written once.

use std::net::{Ipv4Addr, SocketAddrV4};

/// The kernel form of `addr`.
pub(crate) fn to_sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is a plain C struct of integers (plus padding on some
    // targets); all-zero is a valid value and the portable way to fill `sin_zero`.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr = libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() };
    sa
}

/// The std form of a kernel address; `None` unless it is AF_INET.
pub(crate) fn from_sockaddr(sa: &libc::sockaddr_in, len: libc::socklen_t) -> Option<SocketAddrV4> {
    let full = size_of::<libc::sockaddr_in>();
    if (len as usize) < full || i32::from(sa.sin_family) != libc::AF_INET {
        return None;
    }
    let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
    Some(SocketAddrV4::new(ip, u16::from_be(sa.sin_port)))
}

/// `size_of::<sockaddr_in>()` as the kernel's length type.
pub(crate) const SOCKADDR_IN_LEN: libc::socklen_t =
    size_of::<libc::sockaddr_in>() as libc::socklen_t;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = SocketAddrV4::new(Ipv4Addr::new(127, 1, 2, 3), 49737);
        let sa = to_sockaddr(a);
        assert_eq!(from_sockaddr(&sa, SOCKADDR_IN_LEN), Some(a));
        assert_eq!(from_sockaddr(&sa, 2), None);
    }
}
