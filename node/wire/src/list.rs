//! Zero-copy arrays of fixed-size items (addresses, relay pairs).
//!
//! A decoded list keeps the borrowed bytes and decodes items lazily while iterating, so
//! decoding a FIND_NODE reply with 20 closer nodes allocates nothing. A list to be
//! encoded can borrow a slice of ready items instead, so a node encodes its routing
//! table's closest nodes straight from a stack array.

use std::fmt;
use std::net::{SocketAddrV4, SocketAddrV6};

use crate::cursor::{
    Decode, Encode, IPV4_ADDR_LEN, IPV6_ADDR_LEN, Reader, Writer, ipv4_from_bytes, ipv6_from_bytes,
    uint_len,
};
use crate::error::DecodeError;

/// An item with a fixed encoded size.
pub trait FixedItem: Copy {
    /// Encoded size in bytes.
    const LEN: usize;
    /// Decodes from exactly `LEN` bytes (the caller guarantees the length).
    fn read(bytes: &[u8]) -> Self;
    /// Encodes `LEN` bytes.
    fn write(&self, w: &mut Writer<'_>);
}

impl FixedItem for SocketAddrV4 {
    const LEN: usize = IPV4_ADDR_LEN;
    fn read(bytes: &[u8]) -> Self {
        let mut b = [0u8; IPV4_ADDR_LEN];
        b.copy_from_slice(&bytes[..IPV4_ADDR_LEN]);
        ipv4_from_bytes(&b)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.ipv4(self);
    }
}

impl FixedItem for SocketAddrV6 {
    const LEN: usize = IPV6_ADDR_LEN;
    fn read(bytes: &[u8]) -> Self {
        let mut b = [0u8; IPV6_ADDR_LEN];
        b.copy_from_slice(&bytes[..IPV6_ADDR_LEN]);
        ipv6_from_bytes(&b)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.ipv6(self);
    }
}

/// One entry of a server's holepunch relay list: the relay node and the server's
/// address as that relay sees it (spec §9.4 `holepunch.relays`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelayPair {
    /// The relay node's address.
    pub relay_address: SocketAddrV4,
    /// The server's address as observed by that relay.
    pub peer_address: SocketAddrV4,
}

impl FixedItem for RelayPair {
    const LEN: usize = 2 * IPV4_ADDR_LEN;
    fn read(bytes: &[u8]) -> Self {
        Self {
            relay_address: SocketAddrV4::read(&bytes[..IPV4_ADDR_LEN]),
            peer_address: SocketAddrV4::read(&bytes[IPV4_ADDR_LEN..]),
        }
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.ipv4(&self.relay_address);
        w.ipv4(&self.peer_address);
    }
}

/// A compact-encoding `array<T>` of fixed-size items, either borrowed encoded bytes
/// (after decoding) or borrowed items (before encoding).
#[derive(Clone, Copy)]
pub enum List<'a, T: FixedItem> {
    /// Encoded items back to back; the length is a multiple of `T::LEN`.
    Raw(&'a [u8]),
    /// Items to encode.
    Items(&'a [T]),
}

/// An array of IPv4 socket addresses (`closerNodes`, `relayAddresses`, `addresses4`).
pub type AddrList<'a> = List<'a, SocketAddrV4>;
/// An array of IPv6 socket addresses (`addresses6`).
pub type Addr6List<'a> = List<'a, SocketAddrV6>;
/// An array of holepunch relay pairs.
pub type RelayPairList<'a> = List<'a, RelayPair>;

impl<'a, T: FixedItem> List<'a, T> {
    /// An empty list.
    pub const EMPTY: Self = List::Items(&[]);

    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            List::Raw(b) => b.len() / T::LEN,
            List::Items(items) => items.len(),
        }
    }

    /// True when the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th item, if any.
    pub fn get(&self, i: usize) -> Option<T> {
        match self {
            List::Raw(b) => b.get(i * T::LEN..(i + 1) * T::LEN).map(T::read),
            List::Items(items) => items.get(i).copied(),
        }
    }

    /// Iterates over the items, decoding raw ones on the fly.
    pub fn iter(&self) -> ListIter<'a, T> {
        ListIter { list: *self, next: 0 }
    }

    /// The first `n` items (used to cap relay address lists at 3).
    pub fn truncated(&self, n: usize) -> Self {
        match *self {
            List::Raw(b) => List::Raw(&b[..n.min(self.len()) * T::LEN]),
            List::Items(items) => List::Items(&items[..n.min(items.len())]),
        }
    }

    /// The encoded items without the count prefix, if this list was decoded.
    pub fn raw_bytes(&self) -> Option<&'a [u8]> {
        match self {
            List::Raw(b) => Some(b),
            List::Items(_) => None,
        }
    }
}

/// Iterator over a [`List`].
#[derive(Clone)]
pub struct ListIter<'a, T: FixedItem> {
    list: List<'a, T>,
    next: usize,
}

impl<T: FixedItem> Iterator for ListIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        let item = self.list.get(self.next)?;
        self.next += 1;
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.len() - self.next;
        (left, Some(left))
    }
}

impl<T: FixedItem> ExactSizeIterator for ListIter<'_, T> {}

impl<'a, T: FixedItem> IntoIterator for List<'a, T> {
    type Item = T;
    type IntoIter = ListIter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: FixedItem + PartialEq> PartialEq for List<'_, T> {
    /// Lists are equal when they hold the same items, however they are stored.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: FixedItem + Eq> Eq for List<'_, T> {}

impl<T: FixedItem + fmt::Debug> fmt::Debug for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: FixedItem> Default for List<'_, T> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<T: FixedItem> Encode for List<'_, T> {
    fn encoded_len(&self) -> usize {
        let n = self.len();
        uint_len(n as u64) + n * T::LEN
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.uint(self.len() as u64);
        match self {
            List::Raw(b) => w.bytes(b),
            List::Items(items) => items.iter().for_each(|i| i.write(w)),
        }
    }
}

impl<'a, T: FixedItem> Decode<'a> for List<'a, T> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let n = r.array_len(T::LEN)?;
        Ok(List::Raw(r.bytes(n * T::LEN)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn raw_and_items_compare_and_encode_alike() {
        let items = [
            SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 49737),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000),
        ];
        let list = AddrList::Items(&items);
        let bytes = list.to_vec();
        assert_eq!(bytes, hex_bytes("027f00000149c20a0000018813"));
        let decoded = AddrList::decode_exact(&bytes).unwrap();
        assert_eq!(decoded, list);
        assert_eq!(decoded.get(1), Some(items[1]));
        assert_eq!(decoded.get(2), None);
        assert_eq!(decoded.truncated(1).len(), 1);
        assert_eq!(decoded.truncated(9).len(), 2);
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
