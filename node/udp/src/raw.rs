//! Parsers for received datagrams whose headers a driver's kernel interface laid out
//! itself rather than `recvmmsg` (io_uring's multishot RECVMSG writes the source
//! address and control data into the provided buffer, before the payload).
//!
//! They keep the byte-order and cmsg details in this crate, beside the `recvmmsg`
//! path that uses the same conventions. [`segments`] splits a buffer UDP_GRO filled
//! with several datagrams, for both receive paths.

use std::net::SocketAddrV4;

use crate::addr::{SOCKADDR_IN_LEN, from_sockaddr};
use crate::cmsg::{self, CTRL_LEN, CtrlBuf};

/// Bytes to reserve for a received datagram's source address (`sockaddr_in`).
pub const RECV_NAME_LEN: usize = SOCKADDR_IN_LEN as usize;

/// Bytes to reserve for a received datagram's control data: room for IP_TTL
/// ([`crate::SocketOptions::recv_ttl`]) and one more small option, as
/// [`crate::RecvBatch`] reserves.
pub const RECV_CONTROL_LEN: usize = CTRL_LEN;

/// The IPv4 address in `name`, the bytes of a `sockaddr_in` as the kernel wrote them
/// (`name.len()` is what it reported); `None` if short or not AF_INET.
pub fn sockaddr_from_bytes(name: &[u8]) -> Option<SocketAddrV4> {
    if name.len() < RECV_NAME_LEN {
        return None;
    }
    // SAFETY: sockaddr_in is plain C data (integers and padding); all-zero is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    // SAFETY: copies exactly size_of::<sockaddr_in>() bytes from a slice at least that
    // long into a local of that size; the regions cannot overlap and any byte pattern
    // is a valid sockaddr_in.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            std::ptr::from_mut(&mut sa).cast::<u8>(),
            RECV_NAME_LEN,
        );
    }
    from_sockaddr(&sa, SOCKADDR_IN_LEN)
}

/// The IP_TTL carried in `control`, the control data (a sequence of cmsgs) the kernel
/// wrote for one datagram; `None` if it holds none.
pub fn ttl_from_control(control: &[u8]) -> Option<u8> {
    info_from_control(control).ttl
}

/// The UDP_GRO segment size carried in `control`: the buffer holds datagrams of this
/// size, the last possibly shorter (split them with [`crate::segments`]); `None` for
/// a single datagram.
pub fn segment_from_control(control: &[u8]) -> Option<usize> {
    info_from_control(control).segment
}

fn info_from_control(control: &[u8]) -> cmsg::RecvInfo {
    if control.is_empty() {
        return cmsg::RecvInfo::default();
    }
    // Copy into an aligned buffer: CMSG_* need cmsghdr alignment, which a position
    // inside a provided buffer does not promise.
    let mut buf = CtrlBuf::ZERO;
    let len = control.len().min(CTRL_LEN);
    buf.0[..len].copy_from_slice(&control[..len]);
    // SAFETY: msghdr is plain C data; all-zero (no name, no iovec) is valid.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    hdr.msg_controllen = len as _;
    cmsg::recv_info(&hdr)
}

/// The datagrams in `data`, a buffer the kernel filled with datagrams of `segment`
/// bytes each, the last possibly shorter (UDP_GRO); the whole buffer as one datagram
/// when `segment` is `None` (or 0, which no kernel reports). Never yields an empty
/// datagram unless `data` itself is one.
pub fn segments(data: &[u8], segment: Option<usize>) -> impl Iterator<Item = &[u8]> {
    let size = segment.filter(|&s| s > 0).unwrap_or(data.len()).max(1);
    // An empty datagram is still one datagram (chunks() of an empty slice is empty).
    let empty = data.is_empty().then_some(data);
    data.chunks(size).chain(empty)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::addr::to_sockaddr;

    #[test]
    fn address_and_ttl_round_trip() {
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 49737);
        let sa = to_sockaddr(a);
        // SAFETY: reads the bytes of a live local sockaddr_in.
        let bytes = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(&sa).cast::<u8>(), RECV_NAME_LEN)
        };
        assert_eq!(sockaddr_from_bytes(bytes), Some(a));
        assert_eq!(sockaddr_from_bytes(&bytes[..4]), None);

        let mut buf = CtrlBuf::ZERO;
        // SAFETY: msghdr is plain C data; all-zero is valid.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        cmsg::set_ttl(&mut hdr, &mut buf, 7);
        let len = cmsg::controllen(&hdr);
        assert_eq!(ttl_from_control(&buf.0[..len]), Some(7));
        assert_eq!(ttl_from_control(&[]), None);
    }

    #[test]
    fn gro_buffers_split_into_datagrams() {
        let data: Vec<u8> = (0..10).collect();
        let got: Vec<&[u8]> = segments(&data, Some(4)).collect();
        assert_eq!(got, [&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]], "short last segment");
        let got: Vec<&[u8]> = segments(&data, Some(5)).collect();
        assert_eq!(got, [&[0, 1, 2, 3, 4][..], &[5, 6, 7, 8, 9]]);
        assert_eq!(segments(&data, None).collect::<Vec<_>>(), [&data[..]]);
        assert_eq!(segments(&data, Some(0)).collect::<Vec<_>>(), [&data[..]]);
        assert_eq!(segments(&data, Some(64)).collect::<Vec<_>>(), [&data[..]]);
        assert_eq!(segments(&[], Some(4)).count(), 1, "an empty datagram stays one");
    }
}
