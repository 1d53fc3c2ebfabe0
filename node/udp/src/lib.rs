//! tern-udp: the UDP sockets tern's drivers use (DESIGN.md "One core, three drivers").
//!
//! Sans-IO cores never see a socket; drivers do, through this crate. It owns every
//! `unsafe` socket call in tern besides the drivers' event loops, so the rest of the
//! workspace can keep `unsafe_code = "deny"`. What it provides:
//!
//! - [`UdpSocket`]: an IPv4, non-blocking, close-on-exec UDP socket bound with the
//!   options tern needs ([`SocketOptions`]: SO_REUSEPORT for thread-per-core shards,
//!   buffer sizing that reports what the kernel granted, IP_PMTUDISC_PROBE like
//!   udx-native, optional IP_RECVTTL), and [`UdpSocket::bind_spec`], which walks a
//!   [`tern_base::SocketSpec`]'s fallback ports like hyperdht does.
//! - [`RecvBatch`]: one `recvmmsg` into a reusable pool of fixed-size slots; datagrams
//!   longer than a slot are detected with MSG_TRUNC, counted and dropped. With UDP_GRO
//!   a slot may hold a run of datagrams, which it hands out one by one.
//! - [`SendBatch`]: `sendmmsg` of many datagrams from one socket, each with its own
//!   destination and optional IP TTL (a cmsg), reporting partial sends and EAGAIN so
//!   the caller can keep the rest for the next writable event; per-datagram errors are
//!   counted, never returned. [`SendBatch::load`] fills the same headers without
//!   sending, for drivers that submit them through io_uring. With
//!   [`SendBatch::send_segmented`] runs of equal datagrams to one peer leave as one
//!   UDP GSO message each (the receiver sees ordinary datagrams).
//! - [`sockaddr_from_bytes`] and [`ttl_from_control`]: read the source address and
//!   TTL out of a buffer io_uring's multishot RECVMSG filled.
//! - [`ipv4_interface_addresses`]: the host's own IPv4 addresses (getifaddrs), which a
//!   node offers peers behind the same NAT.
//!
//! Everything is Linux-only (recvmmsg, sendmmsg, IP_PMTUDISC_PROBE); IPv6 is not
//! supported because HyperDHT's wire format is IPv4-only.
//!
//! The crate uses `libc` directly rather than `socket2` or `nix`: the hot paths
//! (`recvmmsg`/`sendmmsg` with per-message control data) are not covered by `socket2`,
//! and `nix`'s owned-iterator wrappers allocate per call; with raw `libc` in one place
//! every syscall, buffer and `// SAFETY:` argument is visible side by side.

#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod addr;
mod cmsg;
mod ifaddrs;
mod raw;
mod recv;
mod send;
mod socket;

pub use ifaddrs::{MAX_INTERFACE_ADDRESSES, ipv4_interface_addresses};
pub use raw::{
    RECV_CONTROL_LEN, RECV_NAME_LEN, segment_from_control, segments, sockaddr_from_bytes,
    ttl_from_control,
};
pub use recv::{RecvBatch, RxDatagram};
pub use send::{GSO_MAX_SEGMENTS, OutDatagram, SendBatch, SendOutcome};
pub use socket::{BindError, BufferSizes, SocketOptions, UdpSocket, raise_open_file_limit};

/// Receive buffer sizes tried in order, largest first. udx-native tries 1 MiB, 512 KiB,
/// 256 KiB and 208 KiB; we start at 4 MiB, the UDX receive window: a buffer smaller
/// than the window lets a burst the window allows overflow the socket while the shard
/// thread is off the CPU. On one loopback stream at ~600 MB/s, 1 MiB (2 MiB as the
/// kernel doubles it) dropped ~250 packets per 128 MiB, each burst a fast recovery;
/// 4 MiB dropped none and ran ~7 % faster (QUIC stacks ask for similar: quic-go 7 MiB).
/// Linux silently clamps a request to `net.core.rmem_max`, so the first one normally
/// "succeeds"; the smaller ones matter on systems that reject oversize requests
/// instead. [`UdpSocket::buffer_sizes`] reports what the kernel actually granted.
pub const RECV_BUFFER_SIZES: &[usize] = &[4 << 20, 1 << 20, 512 << 10, 256 << 10, 208 << 10];

/// Send buffer sizes tried in order; the same ladder as receive, because a shard
/// answering a burst of requests emits about as much as it takes in.
pub const SEND_BUFFER_SIZES: &[usize] = RECV_BUFFER_SIZES;

/// Default receive slot size: 2048 bytes like libudx. A UDX packet is at most ~1500
/// bytes (path MTU) and the largest dht-rpc message (a mutable put with a 1000-byte
/// value and its signature) stays well under 2048; longer datagrams are not tern
/// traffic and are dropped as truncated.
pub const DEFAULT_SLOT_LEN: usize = 2048;

/// Largest receive slot without GRO: the largest UDP payload over IPv4.
pub const MAX_SLOT_LEN: usize = 65_507;

/// Receive slot size a socket with UDP_GRO needs ([`SocketOptions::gro`]): the kernel
/// coalesces up to 64 KiB of one flow's datagrams into one buffer, and a buffer that
/// does not fit is truncated whole. Slots this large cost address space, not memory,
/// until filled: a small datagram touches one page of its slot.
pub const GRO_SLOT_LEN: usize = 65_536;

/// Default number of datagrams per `recvmmsg`/`sendmmsg` call: enough to amortise the
/// syscall (returns diminish past ~32-64 on loopback and 10G NICs) while keeping the
/// receive pool at 128 KiB, small enough to stay in L2 cache.
pub const DEFAULT_BATCH: usize = 64;

/// Most datagrams one batch may hold; Linux caps `vlen` at UIO_MAXIOV (1024).
pub const MAX_BATCH: usize = 1024;
