//! The transmit queue a core fills and a driver drains.
//!
//! Cores encode datagrams straight into the queue's arena (no per-datagram allocation
//! once it has grown to its working size) and the driver sends them in one batch
//! (sendmmsg / io_uring) and then clears the queue. The queue is bounded: a core that
//! would exceed [`TxQueue::max_datagrams`] gets `false` back and counts a drop, so one
//! loop turn can never buffer unbounded output.
//!
//! A zero-copy queue ([`TxQueue::set_zero_copy`], which a driver that sends with
//! scatter-gather turns on) also holds datagrams whose payload stays where it is: a
//! UDX stream's packet is its header in the arena plus a reference-counted slice of the
//! stream's send buffer ([`TxQueue::push_shared`]), read with [`TxQueue::iter_parts`].
//! On one fast stream copying every payload into the arena was about 6 % of all CPU.

use std::borrow::Cow;
use std::net::SocketAddrV4;
use std::ops::Range;
use std::sync::Arc;

/// Which local socket a datagram uses or arrived on.
///
/// dht-rpc nodes own a server socket (the advertised port) and a client socket (a
/// random port used while firewalled); holepunching adds more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u16);

impl SocketId {
    /// The advertised socket.
    pub const SERVER: Self = Self(0);
    /// The random-port socket used to send while firewalled.
    pub const CLIENT: Self = Self(1);
}

/// One queued datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxMeta {
    /// The socket to send from.
    pub socket: SocketId,
    /// Where to.
    pub dest: SocketAddrV4,
    /// IP TTL to set for this datagram (holepunch probes use 5), `None` for default.
    pub ttl: Option<u8>,
    start: usize,
    len: usize,
    /// 1 + index into `TxQueue::shared` of the payload that follows the arena bytes,
    /// or 0 for none.
    shared: u32,
}

/// A payload a datagram references instead of copying: `buf[range]`.
#[derive(Debug)]
struct Shared {
    buf: Arc<Vec<u8>>,
    range: Range<usize>,
}

/// A bounded queue of datagrams backed by one reusable byte arena.
#[derive(Debug)]
pub struct TxQueue {
    /// Datagram bytes at `..used`. Past `used` the arena keeps stale bytes instead of
    /// being truncated, so that a datagram's slot is not zero-filled before `fill`
    /// overwrites it (that memset was ~3 % of a sending node's CPU on one fast stream).
    arena: Vec<u8>,
    used: usize,
    metas: Vec<TxMeta>,
    /// Referenced payloads of a zero-copy queue (at most one per datagram).
    shared: Vec<Shared>,
    zero_copy: bool,
    max_datagrams: usize,
}

impl TxQueue {
    /// A queue that holds at most `max_datagrams` datagrams.
    pub fn new(max_datagrams: usize) -> Self {
        Self {
            arena: Vec::with_capacity(max_datagrams.min(1024) * 256),
            used: 0,
            metas: Vec::with_capacity(max_datagrams.min(1024)),
            shared: Vec::new(),
            zero_copy: false,
            max_datagrams,
        }
    }

    /// A zero-copy queue (see [`TxQueue::set_zero_copy`]).
    pub fn with_zero_copy(max_datagrams: usize) -> Self {
        let mut q = Self::new(max_datagrams);
        q.zero_copy = true;
        q
    }

    /// Lets [`TxQueue::push_shared`] queue payloads by reference. Only for a reader that
    /// uses [`TxQueue::iter_parts`] (a driver sending with scatter-gather); off by
    /// default, so that [`TxQueue::iter`] sees every datagram whole.
    pub fn set_zero_copy(&mut self, on: bool) {
        self.zero_copy = on;
    }

    /// The bound given at construction.
    pub fn max_datagrams(&self) -> usize {
        self.max_datagrams
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// True when no further datagram fits.
    pub fn is_full(&self) -> bool {
        self.metas.len() >= self.max_datagrams
    }

    /// Queues a datagram of at most `max_len` bytes written by `fill`, which returns the
    /// number of bytes it wrote (or `None` to cancel). Returns `false` if the queue is
    /// full or `fill` cancelled.
    pub fn push_with(
        &mut self,
        socket: SocketId,
        dest: SocketAddrV4,
        ttl: Option<u8>,
        max_len: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let start = self.used;
        if self.arena.len() < start + max_len {
            self.arena.resize(start + max_len, 0);
        }
        match fill(&mut self.arena[start..start + max_len]) {
            Some(len) if len <= max_len => {
                self.used = start + len;
                self.metas.push(TxMeta { socket, dest, ttl, start, len, shared: 0 });
                true
            }
            _ => false,
        }
    }

    /// Queues a datagram made of a head of at most `head_max` bytes written by `fill`
    /// (as in [`TxQueue::push_with`]) followed by `payload[range]`. On a zero-copy queue
    /// the payload is referenced, not copied (the queue keeps `payload` alive until
    /// [`TxQueue::clear`]); otherwise it is copied after the head. Returns `false` if the
    /// queue is full, `fill` cancelled or `range` is not within `payload`.
    #[allow(clippy::too_many_arguments)]
    pub fn push_shared(
        &mut self,
        socket: SocketId,
        dest: SocketAddrV4,
        head_max: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
        payload: &Arc<Vec<u8>>,
        range: Range<usize>,
    ) -> bool {
        let Some(body) = payload.get(range.clone()) else { return false };
        if !self.zero_copy {
            return self.push_with(socket, dest, None, head_max + body.len(), |out| {
                let n = fill(&mut out[..head_max])?;
                out[n..n + body.len()].copy_from_slice(body);
                Some(n + body.len())
            });
        }
        if !self.push_with(socket, dest, None, head_max, fill) {
            return false;
        }
        self.shared.push(Shared { buf: payload.clone(), range });
        if let Some(m) = self.metas.last_mut() {
            m.shared = self.shared.len() as u32;
        }
        true
    }

    /// Queues a copy of `payload`.
    pub fn push(&mut self, socket: SocketId, dest: SocketAddrV4, payload: &[u8]) -> bool {
        self.push_with(socket, dest, None, payload.len(), |buf| {
            buf.copy_from_slice(payload);
            Some(payload.len())
        })
    }

    /// The queued datagrams in order, each whole: borrowed from the arena, or (for a
    /// datagram of a zero-copy queue that references its payload) its two parts joined
    /// into a new buffer. Drivers send the parts as they are with
    /// [`TxQueue::iter_parts`]; this form is for simulators and tests.
    pub fn iter(&self) -> impl Iterator<Item = (&TxMeta, Cow<'_, [u8]>)> {
        self.iter_parts().map(|(m, head, tail)| {
            let bytes = if tail.is_empty() {
                Cow::Borrowed(head)
            } else {
                Cow::Owned([head, tail].concat())
            };
            (m, bytes)
        })
    }

    /// The queued datagrams in order, each as its bytes in the arena followed by its
    /// referenced payload (empty for most).
    pub fn iter_parts(&self) -> impl Iterator<Item = (&TxMeta, &[u8], &[u8])> {
        self.metas.iter().map(|m| {
            let tail = match (m.shared as usize).checked_sub(1).and_then(|i| self.shared.get(i)) {
                Some(s) => &s.buf[s.range.clone()],
                None => &[],
            };
            (m, &self.arena[m.start..m.start + m.len], tail)
        })
    }

    /// Forgets every queued datagram (and lets go of referenced payloads), keeping the
    /// memory for the next turn.
    pub fn clear(&mut self) {
        self.used = 0;
        self.metas.clear();
        self.shared.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn bounded_and_reusable() {
        let dest = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
        let mut q = TxQueue::new(2);
        assert!(q.push(SocketId::SERVER, dest, b"one"));
        assert!(!q.push_with(SocketId::SERVER, dest, None, 8, |_| None));
        assert!(q.push_with(SocketId::CLIENT, dest, Some(5), 8, |b| {
            b[..3].copy_from_slice(b"two");
            Some(3)
        }));
        assert!(!q.push(SocketId::SERVER, dest, b"three"));
        let got: Vec<_> = q.iter().map(|(m, p)| (m.socket, m.ttl, p.to_vec())).collect();
        assert_eq!(
            got,
            [
                (SocketId::SERVER, None, b"one".to_vec()),
                (SocketId::CLIENT, Some(5), b"two".to_vec())
            ]
        );
        q.clear();
        assert!(q.is_empty());
        assert!(q.push(SocketId::SERVER, dest, b"again"));
    }

    #[test]
    fn reused_arena_holds_only_what_fill_wrote() {
        let dest = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
        let mut q = TxQueue::new(4);
        assert!(q.push(SocketId::SERVER, dest, &[0xaa; 100]));
        q.clear();
        // The slot holds stale bytes now: a datagram is exactly what `fill` wrote and
        // reported, and a cancelled fill leaves no trace.
        assert!(!q.push_with(SocketId::SERVER, dest, None, 50, |b| {
            b[0] = 1;
            None
        }));
        assert!(q.push_with(SocketId::SERVER, dest, None, 50, |b| {
            b[..2].copy_from_slice(b"hi");
            Some(2)
        }));
        assert!(q.push(SocketId::SERVER, dest, b"next"));
        let got: Vec<_> = q.iter().map(|(_, p)| p.to_vec()).collect();
        assert_eq!(got, [b"hi".to_vec(), b"next".to_vec()]);
    }

    #[test]
    fn shared_payloads_by_reference_or_copy() {
        let dest = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
        let payload = Arc::new(b"0123456789".to_vec());
        let head = |b: &mut [u8]| {
            b[..2].copy_from_slice(b"h:");
            Some(2)
        };
        // Without zero-copy the payload is copied after the head.
        let mut q = TxQueue::new(4);
        assert!(q.push_shared(SocketId::SERVER, dest, 4, head, &payload, 2..5));
        assert!(!q.push_shared(SocketId::SERVER, dest, 4, head, &payload, 8..12));
        let got: Vec<_> = q.iter().map(|(_, p)| p.to_vec()).collect();
        assert_eq!(got, [b"h:234".to_vec()]);
        // With it the payload stays referenced until `clear`.
        let mut q = TxQueue::new(4);
        q.set_zero_copy(true);
        assert!(q.push(SocketId::SERVER, dest, b"plain"));
        assert!(q.push_shared(SocketId::SERVER, dest, 4, head, &payload, 5..10));
        assert_eq!(Arc::strong_count(&payload), 2);
        let got: Vec<_> = q.iter_parts().map(|(_, h, t)| (h.to_vec(), t.to_vec())).collect();
        assert_eq!(got, [(b"plain".to_vec(), vec![]), (b"h:".to_vec(), b"56789".to_vec())]);
        // Whole datagrams: the plain one borrowed, the referencing one joined.
        let whole: Vec<_> =
            q.iter().map(|(_, p)| (matches!(p, Cow::Borrowed(_)), p.to_vec())).collect();
        assert_eq!(whole, [(true, b"plain".to_vec()), (false, b"h:56789".to_vec())]);
        q.clear();
        assert_eq!(Arc::strong_count(&payload), 1);
        assert!(q.is_empty());
    }
}
