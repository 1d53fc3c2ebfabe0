//! Ancillary data (cmsg) for per-datagram IP TTL.
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

/// `msg_controllen` as usize: it is `size_t` on glibc but `socklen_t` on musl, so the
/// cast is a no-op on one and needed on the other.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn controllen(hdr: &libc::msghdr) -> usize {
    hdr.msg_controllen as usize
}

/// The IP_TTL a received message carried, if the socket asked for it (IP_RECVTTL).
pub(crate) fn ttl(hdr: &libc::msghdr) -> Option<u8> {
    if hdr.msg_control.is_null() || controllen(hdr) < size_of::<libc::cmsghdr>() {
        return None;
    }
    // SAFETY: the kernel wrote msg_controllen bytes of well-formed cmsgs into the
    // buffer msg_control points at (a CtrlBuf owned by the caller and alive for this
    // call); CMSG_FIRSTHDR/CMSG_NXTHDR never step past msg_controllen, and a data
    // read happens only for an IP_TTL message, whose payload is one c_int.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_TTL {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return u8::try_from(v).ok();
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
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
