//! The contract between a sans-IO core and a driver (DESIGN.md "One core, three
//! drivers").
//!
//! A driver (the portable epoll driver, the io_uring shards, the simulator) owns the
//! sockets, the clock and the threads. For every [`Endpoint`] it binds the sockets the
//! endpoint asks for, stamps each received batch with one [`Timestamp`], feeds the
//! datagrams in, sends what the endpoint queued, and sleeps until the earliest of
//! [`Endpoint::poll_timeout`] and the next datagram. Commands from other threads reach
//! an endpoint through [`Endpoint::Command`] values delivered by the driver's mailbox.
//!
//! Besides the sockets bound at start ([`Endpoint::sockets`]), an endpoint may open and
//! close sockets while it runs ([`SocketOp`]; holepunching behind a port-randomising
//! NAT opens up to 256 "birthday" sockets for one connection). The driver drains
//! [`Endpoint::poll_socket_op`] after every input and answers each open through
//! [`Endpoint::socket_opened`]; a failed open (descriptor limit, the driver's cap) is
//! reported there, never fatal.

use std::net::SocketAddrV4;

use crate::{SocketId, Timestamp, TxQueue};

/// A socket an endpoint wants bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketSpec {
    /// How the endpoint names this socket in `handle_datagram` and in [`crate::TxMeta`].
    pub id: SocketId,
    /// Address to bind; port 0 lets the OS choose.
    pub bind: SocketAddrV4,
    /// Other ports to try, in order, if `bind`'s port is taken (hyperdht tries
    /// 49737–49741); the OS-chosen fallback applies when `any_port` is set.
    pub fallback_ports: &'static [u16],
    /// Fall back to an OS-chosen port if every listed port is taken.
    pub any_port: bool,
    /// For a SO_REUSEPORT group of this many shards (0 or 1: no steering): send each UDX
    /// datagram to the shard its stream id names (`id & 0xff` mod shards) in the
    /// kernel, instead of by flow hash (other datagrams keep the flow hash).
    pub steer_udx_shards: u8,
}

/// A change to an endpoint's sockets, asked for while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOp {
    /// Bind a new socket at `bind` (port 0: OS-chosen) and name it `id` (which must not
    /// name a live socket of the endpoint). Answered by [`Endpoint::socket_opened`];
    /// datagrams must not be queued from `id` before that answer.
    Open {
        /// The endpoint's name for the socket.
        id: SocketId,
        /// Where to bind.
        bind: SocketAddrV4,
    },
    /// Close a socket opened with [`SocketOp::Open`]; its queued datagrams are sent
    /// first (ops run after the transmit queue is flushed). Unknown ids and the sockets
    /// of [`Endpoint::sockets`] are ignored.
    Close(SocketId),
}

/// Why a [`SocketOp::Open`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The driver's per-endpoint cap on run-time sockets is reached.
    Limit,
    /// The id names a socket the endpoint already has.
    Duplicate,
    /// The OS refused (`errno`: EMFILE when out of descriptors, EADDRINUSE ...).
    Os(i32),
    /// The driver cannot open sockets at run time (the simulator without NAT support).
    Unsupported,
}

/// A sans-IO state machine a driver can run.
pub trait Endpoint {
    /// Messages other threads send to this endpoint (client calls).
    type Command: Send + 'static;

    /// The sockets to bind, in order; called once before the endpoint starts.
    fn sockets(&self) -> Vec<SocketSpec>;

    /// Tells the endpoint where its sockets ended up (same order as [`Endpoint::sockets`]).
    fn bound(&mut self, now: Timestamp, local: &[SocketAddrV4], tx: &mut TxQueue);

    /// One received datagram.
    fn handle_datagram(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
        tx: &mut TxQueue,
    );

    /// One command from another thread.
    fn handle_command(&mut self, now: Timestamp, command: Self::Command, tx: &mut TxQueue);

    /// Timers are due (called when `now >= poll_timeout()`, possibly earlier).
    fn handle_timeout(&mut self, now: Timestamp, tx: &mut TxQueue);

    /// The next instant `handle_timeout` must run.
    fn poll_timeout(&self) -> Timestamp;

    /// The next socket to open or close; the driver drains this after every input
    /// (datagram, command, timeout, `bound`, `socket_opened`).
    fn poll_socket_op(&mut self) -> Option<SocketOp> {
        None
    }

    /// The answer to a [`SocketOp::Open`]: the socket's local address, or why it could
    /// not be opened (the endpoint must then not use `id`).
    fn socket_opened(
        &mut self,
        now: Timestamp,
        id: SocketId,
        result: Result<SocketAddrV4, OpenError>,
        tx: &mut TxQueue,
    ) {
        let _ = (now, id, result, tx);
    }

    /// True once the endpoint has finished and can be dropped (after a destroy).
    fn is_closed(&self) -> bool {
        false
    }
}
