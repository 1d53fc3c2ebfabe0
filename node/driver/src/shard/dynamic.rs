//! Sockets an endpoint opens and closes while it runs ([`SocketOp`]).
//!
//! Holepunching behind a port-randomising NAT opens up to 256 extra sockets for one
//! connection ("birthday" sockets, ref: hyperdht lib/holepuncher.js) and closes all
//! but one of them a few seconds later, so the shard binds, registers and closes
//! sockets between turns. The ops of an endpoint are applied when it settles, after
//! its transmit queue was flushed, so a close never loses what the endpoint queued on
//! that socket. Each open is answered at once through `Endpoint::socket_opened`; a
//! failure (EMFILE, the cap [`MAX_RUNTIME_SOCKETS`]) is reported, never fatal.
//!
//! A run-time socket gets a token index (`Sock::key`) that no live socket of the
//! endpoint has; closing one moves others in `Live::sockets`, never their keys.

use tern_base::{Endpoint, OpenError, SocketId, SocketOp};
use tern_udp::{BindError, SocketOptions, UdpSocket};

use super::sockets::Sock;
use super::{Shard, token};
use crate::backend::Backend;

/// Most sockets one endpoint may have open at run time: hyperdht's 256 birthday
/// sockets (`BIRTHDAY_SOCKETS`) plus a few for other uses. Descriptors are a host-wide
/// resource; an endpoint must not take them all.
pub const MAX_RUNTIME_SOCKETS: usize = 264;

/// Socket ops one endpoint may apply per settle: a full set of birthday sockets
/// opened and closed, with room to spare. More wait for the endpoint's next input,
/// so a local bug that keeps asking cannot stall the thread.
const OPS_PER_SETTLE: usize = 2 * MAX_RUNTIME_SOCKETS + 64;

/// The options of run-time sockets: the node's, without port sharing. They bind port
/// 0 and must own their mappings alone: a socket sharing a port would split a punched
/// path's datagrams with a stranger.
pub(super) fn runtime_options(mut options: SocketOptions) -> SocketOptions {
    options.reuse_port = false;
    options.reuse_addr = false;
    options
}

fn errno(e: &BindError) -> i32 {
    let io = match e {
        BindError::Socket { error }
        | BindError::SetOption { error, .. }
        | BindError::Bind { error, .. }
        | BindError::LocalAddr { error } => error,
        // Non-exhaustive: a later kind still reports the failure.
        _ => return 0,
    };
    io.raw_os_error().unwrap_or(0)
}

impl<E: Endpoint, B: Backend> Shard<E, B> {
    /// Applies the socket ops `slot`'s endpoint has queued.
    pub(super) fn apply_socket_ops(&mut self, slot: u32) {
        for _ in 0..OPS_PER_SETTLE {
            let Some(live) = self.slots.get_mut(slot as usize).and_then(|s| s.live.as_mut()) else {
                return;
            };
            match live.endpoint.poll_socket_op() {
                None => return,
                Some(SocketOp::Open { id, bind }) => {
                    let now = self.clock.now();
                    let result = self.open_socket(slot, id, bind);
                    self.switch_tx(slot);
                    let Some(live) = self.slots[slot as usize].live.as_mut() else { return };
                    live.endpoint.socket_opened(now, id, result, &mut self.tx);
                }
                Some(SocketOp::Close(id)) => self.close_socket(slot, id),
            }
        }
        self.stats.socket_ops_limited += 1;
    }

    fn open_socket(
        &mut self,
        slot: u32,
        id: SocketId,
        bind: std::net::SocketAddrV4,
    ) -> Result<std::net::SocketAddrV4, OpenError> {
        let generation = self.slot_generation(slot);
        let Some(live) = self.slots.get_mut(slot as usize).and_then(|s| s.live.as_mut()) else {
            return Err(OpenError::Unsupported);
        };
        if live.sockets.iter().any(|s| s.id == id) {
            return Err(OpenError::Duplicate);
        }
        if live.sockets.iter().filter(|s| s.dynamic).count() >= MAX_RUNTIME_SOCKETS {
            self.stats.sockets_refused += 1;
            return Err(OpenError::Limit);
        }
        let socket = UdpSocket::bind(bind, &self.socket_options).map_err(|e| {
            self.stats.sockets_refused += 1;
            tracing::debug!(error = %e, socket = id.0, "cannot open a run-time socket");
            OpenError::Os(errno(&e))
        })?;
        // A token index no live socket of this endpoint has. At most 64 + 264 are
        // live, so this finds one within that many steps.
        let mut key = live.next_key;
        while live.sockets.iter().any(|s| s.key == key) {
            key = key.wrapping_add(1);
        }
        live.next_key = key.wrapping_add(1);
        let local = socket.local_addr();
        let sock = Sock::new(id, key, true, socket);
        if let Err(e) = self.backend.register(sock.fd(), token(slot, generation, key.into())) {
            self.stats.sockets_refused += 1;
            tracing::debug!(error = %e, "cannot watch a run-time socket");
            return Err(OpenError::Os(e.raw_os_error().unwrap_or(0)));
        }
        live.sockets.push(sock);
        self.stats.sockets_opened += 1;
        Ok(local)
    }

    fn close_socket(&mut self, slot: u32, id: SocketId) {
        // What the endpoint queued on it since the last flush leaves first.
        if self.tx_owner == Some(slot) {
            self.flush_tx();
        }
        let Some(live) = self.slots.get_mut(slot as usize).and_then(|s| s.live.as_mut()) else {
            return;
        };
        let Some(at) = live.sockets.iter().position(|s| s.id == id && s.dynamic) else { return };
        let sock = live.sockets.swap_remove(at);
        let _ = self.backend.deregister(sock.fd());
        self.stats.backlog_dropped += sock.backlog.len() as u64;
        self.stats.sockets_closed += 1;
        // Dropping `sock` closes the descriptor; the backend let go of it above.
    }
}
