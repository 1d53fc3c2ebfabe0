//! In-flight datagram storage: a slab of reusable buffers addressed by `u32` slots.
//!
//! A payload is copied once, from the sender's transmit queue into a slot's buffer; the
//! event heap carries only the slot number, and the receiver reads the bytes in place.
//! Freed slots keep their buffer's capacity, so once the slab has grown to the number of
//! datagrams in flight nothing more is allocated.

use std::net::SocketAddrV4;

#[derive(Debug)]
struct Item {
    from: SocketAddrV4,
    to: SocketAddrV4,
    buf: Vec<u8>,
}

/// The slab.
#[derive(Debug, Default)]
pub(super) struct Slab {
    items: Vec<Item>,
    free: Vec<u32>,
}

impl Slab {
    /// Stores a copy of `bytes` sent from `from` to `to`.
    pub(super) fn alloc(&mut self, from: SocketAddrV4, to: SocketAddrV4, bytes: &[u8]) -> u32 {
        if let Some(slot) = self.free.pop() {
            let item = &mut self.items[slot as usize];
            item.from = from;
            item.to = to;
            item.buf.clear();
            item.buf.extend_from_slice(bytes);
            return slot;
        }
        self.items.push(Item { from, to, buf: bytes.to_vec() });
        (self.items.len() - 1) as u32
    }

    /// Sender and destination of a slot.
    pub(super) fn addrs(&self, slot: u32) -> (SocketAddrV4, SocketAddrV4) {
        let item = &self.items[slot as usize];
        (item.from, item.to)
    }

    /// Flips bit `bit` of the payload (corruption on the wire).
    pub(super) fn flip(&mut self, slot: u32, bit: u32) {
        let buf = &mut self.items[slot as usize].buf;
        if let Some(b) = buf.get_mut((bit / 8) as usize) {
            *b ^= 1 << (bit % 8);
        }
    }

    /// Borrows the payload out (so the receiver can be called while the slab is used
    /// for its replies); give it back with [`Slab::release`].
    pub(super) fn take(&mut self, slot: u32) -> Vec<u8> {
        std::mem::take(&mut self.items[slot as usize].buf)
    }

    /// Returns a taken buffer and frees the slot.
    pub(super) fn release(&mut self, slot: u32, buf: Vec<u8>) {
        self.items[slot as usize].buf = buf;
        self.free.push(slot);
    }

    /// Frees a slot whose datagram was dropped.
    pub(super) fn free(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// Slots in use.
    #[cfg(test)]
    pub(super) fn in_use(&self) -> usize {
        self.items.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn slots_and_buffers_are_reused() {
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1);
        let mut s = Slab::default();
        let x = s.alloc(a, a, b"hello");
        s.flip(x, 0);
        let buf = s.take(x);
        assert_eq!(buf, b"iello");
        s.release(x, buf);
        let y = s.alloc(a, a, b"hi");
        assert_eq!(x, y);
        assert_eq!(s.take(y), b"hi");
        assert_eq!(s.in_use(), 1);
    }
}
