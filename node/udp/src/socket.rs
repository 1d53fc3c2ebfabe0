//! [`UdpSocket`]: an IPv4 UDP socket bound with tern's options.
//!
//! Sockets are created non-blocking and close-on-exec in one `socket(2)` call (no
//! window in which a forked child could inherit them), get their options before
//! `bind(2)` (SO_REUSEPORT must precede bind to join a port group), and remember the
//! address they ended up on and the buffer sizes the kernel granted, so a driver can
//! log both once instead of every caller asking the kernel again.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tern_base::SocketSpec;

use crate::addr::{SOCKADDR_IN_LEN, from_sockaddr, to_sockaddr};
use crate::cmsg::{self, CtrlBuf};
use crate::{RECV_BUFFER_SIZES, SEND_BUFFER_SIZES};

/// Options applied to a socket before it is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    /// SO_REUSEADDR. Off by default: on Linux it lets a second UDP socket bind the
    /// same port and silently steal part of its traffic, which must never happen by
    /// accident to a DHT node's advertised port.
    pub reuse_addr: bool,
    /// SO_REUSEPORT: lets the shards of one thread-per-core node bind the same
    /// ip:port, the kernel spreading datagrams over them by flow hash.
    pub reuse_port: bool,
    /// SO_RCVBUF sizes to try in order; the first the kernel accepts is kept (Linux
    /// accepts any and clamps to `net.core.rmem_max`). Empty keeps the OS default.
    pub recv_buffer_sizes: Vec<usize>,
    /// SO_SNDBUF sizes to try in order, as for `recv_buffer_sizes`.
    pub send_buffer_sizes: Vec<usize>,
    /// IP_MTU_DISCOVER = IP_PMTUDISC_PROBE: set DF on every datagram but ignore the
    /// kernel's path-MTU cache, as udx-native does, so UDX can run its own MTU probing
    /// and the kernel never fragments.
    pub pmtu_probe: bool,
    /// IP_RECVTTL: report each received datagram's TTL in [`crate::RxDatagram::ttl`].
    /// Off by default: it costs a cmsg per datagram and only tests and diagnostics
    /// need it.
    pub recv_ttl: bool,
    /// Send runs of equal-sized datagrams to one destination as one UDP GSO message
    /// (UDP_SEGMENT, Linux 4.18) when the kernel supports it ([`UdpSocket::gso`]).
    /// The receiver sees ordinary datagrams either way.
    pub gso: bool,
    /// UDP_GRO (Linux 5.0): let the kernel hand over runs of datagrams of one flow as
    /// one buffer plus their segment size. Off by default: it is only safe with
    /// receive buffers of [`crate::GRO_SLOT_LEN`] bytes (a coalesced buffer that does
    /// not fit is truncated, losing every datagram in it), and only a reader that
    /// splits the buffer ([`crate::RecvBatch`] does) may turn it on.
    pub gro: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            reuse_addr: false,
            reuse_port: false,
            recv_buffer_sizes: RECV_BUFFER_SIZES.to_vec(),
            send_buffer_sizes: SEND_BUFFER_SIZES.to_vec(),
            pmtu_probe: true,
            recv_ttl: false,
            gso: true,
            gro: false,
        }
    }
}

/// Socket buffer sizes as the kernel reports them after sizing. Linux reports twice
/// the usable size (it counts its bookkeeping overhead), so a 1 MiB request capped by
/// the default `rmem_max` of 208 KiB reads back as 425 984.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferSizes {
    /// SO_RCVBUF as read back.
    pub recv: usize,
    /// SO_SNDBUF as read back.
    pub send: usize,
}

/// Why a socket could not be created or bound. Local misuse or OS failure only:
/// nothing a remote peer sends can cause one (DESIGN.md principle 3).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// `socket(2)` failed (descriptor limit, no IPv4 support).
    #[error("creating a UDP socket: {error}")]
    Socket {
        /// The OS error.
        error: io::Error,
    },
    /// A socket option was refused.
    #[error("setting {option}: {error}")]
    SetOption {
        /// The option's C name, e.g. `"SO_REUSEPORT"`.
        option: &'static str,
        /// The OS error.
        error: io::Error,
    },
    /// `bind(2)` failed.
    #[error("binding {addr}: {error}")]
    Bind {
        /// The address tried last.
        addr: SocketAddrV4,
        /// The OS error.
        error: io::Error,
    },
    /// `getsockname(2)` failed or returned a non-IPv4 address.
    #[error("reading the bound address: {error}")]
    LocalAddr {
        /// The OS error.
        error: io::Error,
    },
}

impl BindError {
    /// True if the port was taken or not ours to bind, so another port may work
    /// (EADDRINUSE, EACCES for privileged ports).
    pub fn is_port_unavailable(&self) -> bool {
        match self {
            Self::Bind { error, .. } => {
                matches!(error.raw_os_error(), Some(libc::EADDRINUSE | libc::EACCES))
            }
            _ => false,
        }
    }
}

/// A bound, non-blocking IPv4 UDP socket. Closed on drop.
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    local: SocketAddrV4,
    buffers: BufferSizes,
    /// GSO sends may be tried: asked for, and the kernel knows UDP_SEGMENT. Cleared for
    /// good when a GSO send fails in a way that says the route cannot segment (see
    /// [`UdpSocket::disable_gso`]); atomic because a socket is shared by reference.
    gso: AtomicBool,
    /// UDP_GRO is on: received buffers may hold several datagrams.
    gro: bool,
}

impl UdpSocket {
    /// Creates a socket with `options` and binds it to `addr` (port 0: OS-chosen).
    pub fn bind(addr: SocketAddrV4, options: &SocketOptions) -> Result<Self, BindError> {
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::IPPROTO_UDP,
            )
        };
        if raw < 0 {
            return Err(BindError::Socket { error: io::Error::last_os_error() });
        }
        // SAFETY: `raw` is a descriptor socket(2) just returned to us and nothing else
        // owns it; OwnedFd takes over closing it (also on every error path below).
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let opt = |option, level, name, on: bool| {
            set_int(&fd, level, name, libc::c_int::from(on))
                .map_err(|error| BindError::SetOption { option, error })
        };
        if options.reuse_addr {
            opt("SO_REUSEADDR", libc::SOL_SOCKET, libc::SO_REUSEADDR, true)?;
        }
        if options.reuse_port {
            opt("SO_REUSEPORT", libc::SOL_SOCKET, libc::SO_REUSEPORT, true)?;
        }
        if options.recv_ttl {
            opt("IP_RECVTTL", libc::IPPROTO_IP, libc::IP_RECVTTL, true)?;
        }
        if options.pmtu_probe {
            set_int(&fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE)
                .map_err(|error| BindError::SetOption { option: "IP_MTU_DISCOVER", error })?;
        }
        // Probing GSO by reading the option back: kernels without UDP_SEGMENT refuse
        // it (ENOPROTOOPT), so no send ever carries a cmsg they would reject.
        let gso = options.gso && get_int(&fd, cmsg::SOL_UDP, cmsg::UDP_SEGMENT).is_ok();
        // GRO is an optimisation: a kernel that refuses it just delivers datagrams
        // one by one.
        let gro = options.gro && set_int(&fd, cmsg::SOL_UDP, cmsg::UDP_GRO, 1).is_ok();
        // A buffer size the kernel refuses outright is not worth failing a bind
        // over: the socket works with the default, and buffer_sizes() tells.
        try_sizes(&fd, libc::SO_RCVBUF, &options.recv_buffer_sizes);
        try_sizes(&fd, libc::SO_SNDBUF, &options.send_buffer_sizes);
        let sa = to_sockaddr(addr);
        // SAFETY: `sa` is a valid sockaddr_in and the length matches its size.
        let r =
            unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&sa).cast(), SOCKADDR_IN_LEN) };
        if r < 0 {
            return Err(BindError::Bind { addr, error: io::Error::last_os_error() });
        }
        let local = local_addr(&fd).map_err(|error| BindError::LocalAddr { error })?;
        let buffers = BufferSizes {
            recv: get_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0),
            send: get_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(0),
        };
        Ok(Self { fd, local, buffers, gso: AtomicBool::new(gso), gro })
    }

    /// Steers UDX datagrams over the SO_REUSEPORT group this socket belongs to: a
    /// classic BPF program (SO_ATTACH_REUSEPORT_CBPF, applied to the whole group) picks
    /// group member `id_low_byte % shards` for datagrams that start with the UDX magic
    /// byte, and returns an out-of-range index for everything else, which makes the
    /// kernel fall back to its flow hash. Group members are numbered in bind order.
    pub fn attach_udx_steering(&self, shards: u8) -> io::Result<()> {
        if shards < 2 {
            return Ok(());
        }
        // Offsets are into the UDP payload: the kernel pulls the UDP header first.
        let code =
            |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
        let (ld_b, jeq_k, mod_k, ret_a, ret_k) = (
            libc::BPF_LD | libc::BPF_B | libc::BPF_ABS,
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K,
            libc::BPF_RET | libc::BPF_A,
            libc::BPF_RET | libc::BPF_K,
        );
        let program = [
            code(ld_b, 0, 0, 0),                  // A = payload[0]
            code(jeq_k, 0, 3, 0xff),              // UDX magic? else fall back
            code(ld_b, 0, 0, 4),                  // A = low byte of the stream id
            code(mod_k, 0, 0, u32::from(shards)), // A %= shards
            code(ret_a, 0, 0, 0),                 // that group member
            code(ret_k, 0, 0, u32::MAX),          // out of range: flow hash
        ];
        let prog =
            libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
        // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies
        // the filter during setsockopt and keeps no pointer to it. The length matches.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_REUSEPORT_CBPF,
                std::ptr::from_ref(&prog).cast(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Binds the socket `spec` asks for: its port, then each of its fallback ports
    /// while the port is taken, then an OS-chosen port if `any_port` (ref: dht-rpc
    /// `bind()`, hyperdht's 49737-49741 ladder). Errors other than "port taken" stop
    /// the walk at once, since another port would not help.
    pub fn bind_spec(spec: &SocketSpec, options: &SocketOptions) -> Result<Self, BindError> {
        let ip: Ipv4Addr = *spec.bind.ip();
        let ports = std::iter::once(spec.bind.port()).chain(spec.fallback_ports.iter().copied());
        let mut last = None;
        for port in ports {
            match Self::bind(SocketAddrV4::new(ip, port), options) {
                Ok(socket) => return Ok(socket),
                Err(e) if e.is_port_unavailable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        match last {
            Some(_) if spec.any_port => Self::bind(SocketAddrV4::new(ip, 0), options),
            Some(e) => Err(e),
            // Unreachable: the iterator always yields the spec's own port first.
            None => Self::bind(spec.bind, options),
        }
    }

    /// The address the socket is bound to (with the OS-chosen port resolved).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The buffer sizes the kernel granted.
    pub fn buffer_sizes(&self) -> BufferSizes {
        self.buffers
    }

    /// True while sends may use UDP GSO ([`SocketOptions::gso`], kernel support, and
    /// no GSO send has failed for lack of route support yet).
    pub fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Stops GSO on this socket: a GSO send failed with EIO (the device cannot
    /// checksum-offload, so the kernel cannot segment) or EINVAL (segment larger than
    /// the device MTU, or the kernel refuses the cmsg). Later sends go one datagram
    /// per message.
    pub fn disable_gso(&self) {
        self.gso.store(false, Ordering::Relaxed);
    }

    /// True if UDP_GRO is on, so one received buffer may hold several datagrams.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Sends one datagram without blocking, with an optional per-datagram IP TTL.
    /// For bulk sending use [`crate::SendBatch`]; this is for tests and rare sends.
    pub fn send_to(&self, data: &[u8], dest: SocketAddrV4, ttl: Option<u8>) -> io::Result<usize> {
        let mut sa = to_sockaddr(dest);
        let mut iov =
            libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
        let mut ctrl = CtrlBuf::ZERO;
        // SAFETY: msghdr is plain C data; all-zero (no name, no control) is valid.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = std::ptr::from_mut(&mut sa).cast();
        hdr.msg_namelen = SOCKADDR_IN_LEN;
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        if let Some(ttl) = ttl {
            cmsg::set_ttl(&mut hdr, &mut ctrl, ttl);
        }
        loop {
            // SAFETY: every pointer in `hdr` refers to a local that outlives the
            // call (`sa`, `iov` -> `data`, `ctrl`) with the lengths given; the kernel
            // only reads them.
            let r = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &hdr, libc::MSG_DONTWAIT) };
            if let Ok(n) = usize::try_from(r) {
                return Ok(n);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Waits up to `timeout` (rounded up to whole milliseconds) for a datagram to be
    /// readable. For tests and simple clients; drivers use their event loop.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let ms = timeout.as_nanos().div_ceil(1_000_000);
        let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, count 1.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(err) };
        }
        Ok(r > 0 && pfd.revents & libc::POLLIN != 0)
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Tries `sizes` in order for buffer option `name`, stopping at the first accepted.
fn try_sizes(fd: &OwnedFd, name: libc::c_int, sizes: &[usize]) {
    for &size in sizes {
        let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        if set_int(fd, libc::SOL_SOCKET, name, size).is_ok() {
            return;
        }
    }
}

fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a live c_int and `len` its size, as every int option wants.
    let r = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, std::ptr::from_ref(&value).cast(), len)
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn get_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value`/`len` are live locals; the kernel writes at most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(value).unwrap_or(0))
}

fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddrV4> {
    // SAFETY: sockaddr_in is plain C data; all-zero is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = SOCKADDR_IN_LEN;
    // SAFETY: `sa`/`len` are live locals sized for an AF_INET address; the kernel
    // writes at most `len` bytes and updates `len`.
    let r =
        unsafe { libc::getsockname(fd.as_raw_fd(), std::ptr::from_mut(&mut sa).cast(), &mut len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    from_sockaddr(&sa, len).ok_or_else(|| io::Error::other("getsockname: not an IPv4 address"))
}

/// Raises this process's open-file soft limit towards `wanted` (capped at the hard
/// limit) and returns the soft limit now in force. Load generators and nodes running
/// thousands of endpoints hold two sockets per endpoint, far above the usual 1024.
pub fn raise_open_file_limit(wanted: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur < wanted {
        let raised = libc::rlimit { rlim_cur: wanted.min(lim.rlim_max), rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads one valid `rlimit`; raising the soft limit up to the hard
        // limit needs no privilege and cannot invalidate existing descriptors.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod limit_tests {
    #[test]
    fn open_file_limit_only_goes_up() {
        let before = super::raise_open_file_limit(0);
        assert!(before > 0);
        let after = super::raise_open_file_limit(before + 1);
        assert!(after >= before);
    }
}
