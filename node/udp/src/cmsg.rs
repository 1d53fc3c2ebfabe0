//! Ancillary data (cmsg): per-datagram IP TTL, and the UDP segment size of GSO sends
//! (UDP_SEGMENT) and GRO receives (UDP_GRO).
//!
//! Holepunch probes go out with TTL 5 (ref: hyperdht lib/holepuncher.js, so a probe
//! opens our NAT mapping without reaching the peer's NAT and being counted as
//! unsolicited) while every other datagram of the same socket uses the default, so
//! the TTL is attached to each message as an IP_TTL control message instead of being
//! a socket option. On receive, sockets with IP_RECVTTL get the TTL back the same way.

use std::mem::size_of;

/// Control space reserved per message. IP_TTL needs `CMSG_SPACE(4)` = 16 bytes on
/// 64-bit Linux; the rest leaves room for one more small option (e.g. IP_PKTINFO,
/// 28 bytes) without re-layout.
pub(crate) const CTRL_LEN: usize = 64;

/// One message's control buffer, aligned like `cmsghdr` (size_t) as CMSG_* require.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct CtrlBuf(pub(crate) [u8; CTRL_LEN]);

impl CtrlBuf {
    pub(crate) const ZERO: Self = Self([0; CTRL_LEN]);
}

/// Bytes of control space one `c_int` option occupies.
fn int_space() -> usize {
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as libc::c_uint) as usize }
}

/// Points `hdr`'s control data at `buf` holding one IP_TTL message with `ttl`.
pub(crate) fn set_ttl(hdr: &mut libc::msghdr, buf: &mut CtrlBuf, ttl: u8) {
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    hdr.msg_controllen = int_space() as _;
    // SAFETY: msg_control points at CTRL_LEN (>= int_space()) bytes aligned for
    // cmsghdr, so CMSG_FIRSTHDR returns a non-null pointer to a header that lies
    // wholly inside `buf`, and CMSG_DATA of it has room for a c_int (that is what
    // CMSG_SPACE(sizeof(int)) reserved). The data pointer may be unaligned for c_int
    // on some ABIs, hence write_unaligned.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::IPPROTO_IP;
        (*cmsg).cmsg_type = libc::IP_TTL;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as libc::c_uint) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), ttl.into());
    }
}

/// `SOL_UDP` options, spelled out because the `libc` crate exports them only for some
/// Linux targets (values from `include/uapi/linux/udp.h`, stable since 4.18 / 5.0).
pub(crate) const SOL_UDP: libc::c_int = 17;
/// Socket option and cmsg type: the segment size of a GSO send (a `u16`).
pub(crate) const UDP_SEGMENT: libc::c_int = 103;
/// Socket option (an int, on/off) and cmsg type (an int, the segment size) of GRO.
pub(crate) const UDP_GRO: libc::c_int = 104;

/// Points `hdr`'s control data at `buf` holding one UDP_SEGMENT message: the kernel
/// cuts the message's payload into datagrams of `size` bytes (the last may be shorter).
pub(crate) fn set_segment(hdr: &mut libc::msghdr, buf: &mut CtrlBuf, size: u16) {
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as libc::c_uint) } as _;
    // SAFETY: as in `set_ttl`: msg_control points at CTRL_LEN (>= CMSG_SPACE(2))
    // bytes aligned for cmsghdr, so the first header and its 2 data bytes lie inside
    // `buf`; the write is unaligned-safe.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as libc::c_uint) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
    }
}

/// `msg_controllen` as usize: it is `size_t` on glibc but `socklen_t` on musl, so the
/// cast is a no-op on one and needed on the other.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn controllen(hdr: &libc::msghdr) -> usize {
    hdr.msg_controllen as usize
}

/// What the control data of one received message says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RecvInfo {
    /// IP_TTL, if the socket asked for it (IP_RECVTTL).
    pub(crate) ttl: Option<u8>,
    /// UDP_GRO: the kernel coalesced datagrams of this size (the last may be
    /// shorter) into one buffer; `None` for a single datagram.
    pub(crate) segment: Option<usize>,
}

/// The IP_TTL a received message carried, if the socket asked for it (IP_RECVTTL).
#[cfg(test)]
pub(crate) fn ttl(hdr: &libc::msghdr) -> Option<u8> {
    recv_info(hdr).ttl
}

/// Reads the IP_TTL and UDP_GRO messages of a received message's control data.
#[allow(clippy::unnecessary_cast)] // cmsg_len is size_t on glibc, socklen_t on musl
pub(crate) fn recv_info(hdr: &libc::msghdr) -> RecvInfo {
    let mut info = RecvInfo::default();
    if hdr.msg_control.is_null() || controllen(hdr) < size_of::<libc::cmsghdr>() {
        return info;
    }
    // SAFETY: the kernel wrote msg_controllen bytes of well-formed cmsgs into the
    // buffer msg_control points at (a CtrlBuf owned by the caller and alive for this
    // call); CMSG_FIRSTHDR/CMSG_NXTHDR never step past msg_controllen, and a data
    // read happens only for IP_TTL and UDP_GRO messages, whose payload is one c_int
    // (checked against cmsg_len before reading).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            let whole = (*cmsg).cmsg_len as usize
                >= libc::CMSG_LEN(size_of::<libc::c_int>() as libc::c_uint) as usize;
            if whole && (level, kind) == (libc::IPPROTO_IP, libc::IP_TTL) {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                info.ttl = u8::try_from(v).ok();
            } else if whole && (level, kind) == (SOL_UDP, UDP_GRO) {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                info.segment = usize::try_from(v).ok().filter(|&s| s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_round_trips_through_a_buffer() {
        let mut buf = CtrlBuf::ZERO;
        // SAFETY: msghdr is plain C data; all-zero is valid.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        assert_eq!(ttl(&hdr), None);
        set_ttl(&mut hdr, &mut buf, 5);
        assert!(controllen(&hdr) <= CTRL_LEN);
        assert_eq!(ttl(&hdr), Some(5));
    }
}
