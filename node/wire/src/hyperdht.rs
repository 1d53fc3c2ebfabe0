//! hyperdht storage values: peer records, announces, lookups, mutable and immutable
//! records, plugin requests (spec §8).
//!
//! These ride in the `value` field of dht-rpc messages whose command is in the
//! application space. Every decoder borrows from the datagram.

use crate::cursor::{Decode, Encode, Reader, Writer, buffer_len, uint_len};
use crate::error::DecodeError;
use crate::list::AddrList;

/// hyperdht's application commands (internal flag clear), spec §8.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// Noise IK handshake routed through a relay to a listening server.
    PeerHandshake = 0,
    /// Holepunch coordination routed through a relay.
    PeerHolepunch = 1,
    /// Where does the server with this key announce itself?
    FindPeer = 2,
    /// Peers announced under a topic.
    Lookup = 3,
    /// Store a signed peer record under a topic (token required).
    Announce = 4,
    /// Remove a signed peer record (token required).
    Unannounce = 5,
    /// Store a signed mutable record (token required).
    MutablePut = 6,
    /// Fetch a mutable record.
    MutableGet = 7,
    /// Store a content-addressed value (token required).
    ImmutablePut = 8,
    /// Fetch a content-addressed value.
    ImmutableGet = 9,
    /// Dispatch to a registered plugin.
    Plugin = 10,
}

impl Command {
    /// The command with this number, if hyperdht defines one.
    pub const fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            0 => Self::PeerHandshake,
            1 => Self::PeerHolepunch,
            2 => Self::FindPeer,
            3 => Self::Lookup,
            4 => Self::Announce,
            5 => Self::Unannounce,
            6 => Self::MutablePut,
            7 => Self::MutableGet,
            8 => Self::ImmutablePut,
            9 => Self::ImmutableGet,
            10 => Self::Plugin,
            _ => return None,
        })
    }
}

/// A peer record: a public key and the relays through which it can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRecord<'a> {
    /// The peer's Ed25519 public key.
    pub public_key: &'a [u8; 32],
    /// Nodes that relay handshakes for it (stored truncated to 3 by the node).
    pub relay_addresses: AddrList<'a>,
}

impl Encode for PeerRecord<'_> {
    fn encoded_len(&self) -> usize {
        32 + self.relay_addresses.encoded_len()
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.bytes(self.public_key);
        self.relay_addresses.encode_to(w);
    }
}

impl<'a> Decode<'a> for PeerRecord<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self { public_key: r.array()?, relay_addresses: AddrList::decode_from(r)? })
    }
}

/// The value of ANNOUNCE and UNANNOUNCE requests (spec §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Announce<'a> {
    /// The record to store (absent in a refresh-only announce).
    pub peer: Option<PeerRecord<'a>>,
    /// A refresh secret; part of the signed hash.
    pub refresh: Option<&'a [u8; 32]>,
    /// Ed25519 signature over the announce signable.
    pub signature: Option<&'a [u8; 64]>,
    /// A millisecond timestamp hint for the topic, not signed; 0 when absent.
    pub bump: u64,
}

const ANNOUNCE_PEER: u64 = 0x01;
const ANNOUNCE_REFRESH: u64 = 0x02;
const ANNOUNCE_SIGNATURE: u64 = 0x04;
const ANNOUNCE_BUMP: u64 = 0x08;

impl Announce<'_> {
    fn flags(&self) -> u64 {
        (if self.peer.is_some() { ANNOUNCE_PEER } else { 0 })
            | (if self.refresh.is_some() { ANNOUNCE_REFRESH } else { 0 })
            | (if self.signature.is_some() { ANNOUNCE_SIGNATURE } else { 0 })
            | (if self.bump != 0 { ANNOUNCE_BUMP } else { 0 })
    }
}

impl Encode for Announce<'_> {
    fn encoded_len(&self) -> usize {
        uint_len(self.flags())
            + self.peer.map_or(0, |p| p.encoded_len())
            + self.refresh.map_or(0, |_| 32)
            + self.signature.map_or(0, |_| 64)
            + if self.bump != 0 { uint_len(self.bump) } else { 0 }
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.uint(self.flags());
        self.peer.inspect(|p| p.encode_to(w));
        self.refresh.inspect(|r| w.bytes(&r[..]));
        self.signature.inspect(|s| w.bytes(&s[..]));
        if self.bump != 0 {
            w.uint(self.bump);
        }
    }
}

impl<'a> Decode<'a> for Announce<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let flags = r.uint()?;
        let peer =
            if flags & ANNOUNCE_PEER != 0 { Some(PeerRecord::decode_from(r)?) } else { None };
        let refresh = if flags & ANNOUNCE_REFRESH != 0 { Some(r.array()?) } else { None };
        let signature = if flags & ANNOUNCE_SIGNATURE != 0 { Some(r.array()?) } else { None };
        let bump = if flags & ANNOUNCE_BUMP != 0 { r.uint()? } else { 0 };
        Ok(Self { peer, refresh, signature, bump })
    }
}

/// Minimum encoded size of a peer record (key + empty relay list); bounds counts.
const PEER_RECORD_MIN_LEN: usize = 33;

/// The records of a LOOKUP reply, either decoded (borrowed bytes, validated) or to be
/// encoded (borrowed records).
#[derive(Clone, Copy)]
pub enum PeerRecords<'a> {
    /// `count` encoded records back to back, already validated.
    Raw {
        /// Number of records in `bytes`.
        count: usize,
        /// The concatenated records.
        bytes: &'a [u8],
    },
    /// Records to encode.
    Items(&'a [PeerRecord<'a>]),
}

impl<'a> PeerRecords<'a> {
    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            PeerRecords::Raw { count, .. } => *count,
            PeerRecords::Items(items) => items.len(),
        }
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates over the records.
    pub fn iter(&self) -> impl Iterator<Item = PeerRecord<'a>> + 'a {
        let (raw, items): (Option<Reader<'a>>, &'a [PeerRecord<'a>]) = match *self {
            PeerRecords::Raw { bytes, .. } => (Some(Reader::new(bytes)), &[]),
            PeerRecords::Items(items) => (None, items),
        };
        let mut raw = raw;
        // Raw bytes were validated at decode time, so the `ok()` never stops early.
        std::iter::from_fn(move || match raw.as_mut() {
            Some(r) if !r.is_empty() => PeerRecord::decode_from(r).ok(),
            _ => None,
        })
        .chain(items.iter().copied())
    }
}

impl PartialEq for PeerRecords<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for PeerRecords<'_> {}

impl std::fmt::Debug for PeerRecords<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The value of a LOOKUP reply: up to 20 peer records and the topic's bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupReply<'a> {
    /// The records, concatenated without length prefixes on the wire.
    pub peers: PeerRecords<'a>,
    /// The topic's bump timestamp (ms), 0 when none; decoders accept it missing.
    pub bump: u64,
}

impl Encode for LookupReply<'_> {
    fn encoded_len(&self) -> usize {
        let records: usize = match self.peers {
            PeerRecords::Raw { bytes, .. } => bytes.len(),
            PeerRecords::Items(items) => items.iter().map(Encode::encoded_len).sum(),
        };
        uint_len(self.peers.len() as u64) + records + uint_len(self.bump)
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.uint(self.peers.len() as u64);
        match self.peers {
            PeerRecords::Raw { bytes, .. } => w.bytes(bytes),
            PeerRecords::Items(items) => items.iter().for_each(|p| p.encode_to(w)),
        }
        w.uint(self.bump);
    }
}

impl<'a> Decode<'a> for LookupReply<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let count = r.array_len(PEER_RECORD_MIN_LEN)?;
        let start = r.clone();
        for _ in 0..count {
            PeerRecord::decode_from(r)?;
        }
        let used = start.remaining() - r.remaining();
        let bytes = start.clone().bytes(used)?;
        let bump = if r.is_empty() { 0 } else { r.uint()? };
        Ok(Self { peers: PeerRecords::Raw { count, bytes }, bump })
    }
}

/// The value of a MUTABLE_PUT request (spec §8.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MutablePut<'a> {
    /// The signer; the target is H32 of it.
    pub public_key: &'a [u8; 32],
    /// Sequence number; higher replaces lower.
    pub seq: u64,
    /// The stored value (may be empty).
    pub value: &'a [u8],
    /// Ed25519 signature over the mutable signable.
    pub signature: &'a [u8; 64],
}

impl Encode for MutablePut<'_> {
    fn encoded_len(&self) -> usize {
        32 + uint_len(self.seq) + buffer_len(self.value.len()) + 64
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.bytes(self.public_key);
        w.uint(self.seq);
        w.buffer(self.value);
        w.bytes(self.signature);
    }
}

impl<'a> Decode<'a> for MutablePut<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            public_key: r.array()?,
            seq: r.uint()?,
            value: r.buffer()?,
            signature: r.array()?,
        })
    }
}

/// A stored mutable record, the value of a MUTABLE_GET reply: what MUTABLE_PUT carried
/// minus the public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MutableRecord<'a> {
    /// Sequence number.
    pub seq: u64,
    /// The value.
    pub value: &'a [u8],
    /// The signature made by the key the record is stored under.
    pub signature: &'a [u8; 64],
}

impl Encode for MutableRecord<'_> {
    fn encoded_len(&self) -> usize {
        uint_len(self.seq) + buffer_len(self.value.len()) + 64
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.uint(self.seq);
        w.buffer(self.value);
        w.bytes(self.signature);
    }
}

impl<'a> Decode<'a> for MutableRecord<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self { seq: r.uint()?, value: r.buffer()?, signature: r.array()? })
    }
}

/// The value of a PLUGIN request (spec §8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginRequest<'a> {
    /// Registered plugin name.
    pub name: &'a str,
    /// Plugin version; must match exactly.
    pub version: u64,
    /// Plugin-defined command.
    pub command: u64,
    /// Plugin-defined payload.
    pub value: Option<&'a [u8]>,
}

impl Encode for PluginRequest<'_> {
    fn encoded_len(&self) -> usize {
        buffer_len(self.name.len())
            + uint_len(self.version)
            + uint_len(self.command)
            + 1
            + self.value.map_or(0, |v| buffer_len(v.len()))
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.utf8(self.name);
        w.uint(self.version);
        w.uint(self.command);
        w.uint(u64::from(self.value.is_some()));
        self.value.inspect(|v| w.buffer(v));
    }
}

impl<'a> Decode<'a> for PluginRequest<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let name = r.utf8()?;
        let version = r.uint()?;
        let command = r.uint()?;
        let flags = r.uint()?;
        let value = if flags & 1 != 0 { Some(r.buffer()?) } else { None };
        Ok(Self { name, version, command, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_reply_count_cannot_exceed_bytes() {
        // Claims 5 records but carries one.
        let mut bytes = vec![5u8];
        bytes.extend_from_slice(&[7u8; 32]);
        bytes.push(0);
        assert_eq!(LookupReply::decode(&bytes), Err(DecodeError::Truncated));
    }

    #[test]
    fn lookup_reply_missing_bump_is_zero() {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&[7u8; 32]);
        bytes.push(0);
        let reply = LookupReply::decode_exact(&bytes).unwrap();
        assert_eq!(reply.bump, 0);
        assert_eq!(reply.peers.len(), 1);
        assert_eq!(reply.peers.iter().next().unwrap().public_key, &[7u8; 32]);
    }
}
