//! Connection set-up values: PEER_HANDSHAKE and PEER_HOLEPUNCH messages, the Noise
//! handshake payload and the (decrypted) holepunch payload (spec §9.1, §9.4, §10.1,
//! §10.2).
//!
//! Relays only look at the outer messages; the payloads are read by the two endpoints
//! after decryption. Enum-like fields are decoded strictly: a value the reference never
//! sends is refused rather than carried along.

use std::net::SocketAddrV4;

use crate::cursor::{Decode, Encode, IPV4_ADDR_LEN, Reader, Writer, buffer_len, uint_len};
use crate::error::DecodeError;
use crate::list::{Addr6List, AddrList, RelayPairList};

/// Who sent a handshake or holepunch message, and so how a node routes it (§9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// Client to its chosen relay.
    FromClient = 0,
    /// Server back towards the client, through a relay.
    FromServer = 1,
    /// First relay to the server.
    FromRelay = 2,
    /// A relay that is not the server's own to the server's relay.
    FromSecondRelay = 3,
    /// The relay's answer to the client (sent as a response).
    Reply = 4,
}

impl Mode {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.uint()? {
            0 => Self::FromClient,
            1 => Self::FromServer,
            2 => Self::FromRelay,
            3 => Self::FromSecondRelay,
            4 => Self::Reply,
            _ => return Err(DecodeError::InvalidValue),
        })
    }
}

/// The value of a PEER_HANDSHAKE request or reply (§9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// Routing mode.
    pub mode: Mode,
    /// The Noise IK message.
    pub noise: &'a [u8],
    /// The other endpoint's address as the relay saw it.
    pub peer_address: Option<SocketAddrV4>,
    /// The first relay, for FROM_SECOND_RELAY.
    pub relay_address: Option<SocketAddrV4>,
}

impl Encode for Handshake<'_> {
    fn encoded_len(&self) -> usize {
        2 + buffer_len(self.noise.len())
            + self.peer_address.map_or(0, |_| IPV4_ADDR_LEN)
            + self.relay_address.map_or(0, |_| IPV4_ADDR_LEN)
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        let flags =
            u64::from(self.peer_address.is_some()) | (u64::from(self.relay_address.is_some()) << 1);
        w.uint(flags);
        w.uint(self.mode as u64);
        w.buffer(self.noise);
        self.peer_address.inspect(|a| w.ipv4(a));
        self.relay_address.inspect(|a| w.ipv4(a));
    }
}

impl<'a> Decode<'a> for Handshake<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let flags = r.uint()?;
        let mode = Mode::decode(r)?;
        let noise = r.buffer()?;
        let peer_address = if flags & 1 != 0 { Some(r.ipv4()?) } else { None };
        let relay_address = if flags & 2 != 0 { Some(r.ipv4()?) } else { None };
        Ok(Self { mode, noise, peer_address, relay_address })
    }
}

/// The value of a PEER_HOLEPUNCH request or reply (§10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holepunch<'a> {
    /// Routing mode.
    pub mode: Mode,
    /// The server's handshake slot this punch belongs to.
    pub id: u64,
    /// The encrypted holepunch payload.
    pub payload: &'a [u8],
    /// The other endpoint's address as the relay saw it.
    pub peer_address: Option<SocketAddrV4>,
}

impl Encode for Holepunch<'_> {
    fn encoded_len(&self) -> usize {
        2 + uint_len(self.id)
            + buffer_len(self.payload.len())
            + self.peer_address.map_or(0, |_| IPV4_ADDR_LEN)
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.uint(u64::from(self.peer_address.is_some()));
        w.uint(self.mode as u64);
        w.uint(self.id);
        w.buffer(self.payload);
        self.peer_address.inspect(|a| w.ipv4(a));
    }
}

impl<'a> Decode<'a> for Holepunch<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let flags = r.uint()?;
        let mode = Mode::decode(r)?;
        let id = r.uint()?;
        let payload = r.buffer()?;
        let peer_address = if flags & 1 != 0 { Some(r.ipv4()?) } else { None };
        Ok(Self { mode, id, payload, peer_address })
    }
}

/// A peer's NAT class as it reports it (§9.4, §10.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Firewall {
    /// Not yet known.
    #[default]
    Unknown = 0,
    /// Reachable unsolicited.
    Open = 1,
    /// Endpoint-independent mapping: the same public port for every destination.
    Consistent = 2,
    /// Endpoint-dependent mapping: a new public port per destination.
    Random = 3,
}

impl Firewall {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.uint()? {
            0 => Self::Unknown,
            1 => Self::Open,
            2 => Self::Consistent,
            3 => Self::Random,
            _ => return Err(DecodeError::InvalidValue),
        })
    }
}

/// Error codes inside handshake and holepunch payloads (hyperdht's ERROR table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum PayloadError {
    /// No error.
    #[default]
    None = 0,
    /// The other side gave up.
    Aborted = 1,
    /// Incompatible payload version.
    VersionMismatch = 2,
    /// Throttled: retry later (random-NAT punch limit).
    TryLater = 3,
}

impl PayloadError {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.uint()? {
            0 => Self::None,
            1 => Self::Aborted,
            2 => Self::VersionMismatch,
            3 => Self::TryLater,
            _ => return Err(DecodeError::InvalidValue),
        })
    }
}

/// `holepunch` section of a Noise payload: the server's handshake slot and relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolepunchInfo<'a> {
    /// Handshake slot index, echoed in PEER_HOLEPUNCH messages.
    pub id: u64,
    /// Relays the client may punch through.
    pub relays: RelayPairList<'a>,
}

/// `udx` section of a Noise payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdxInfo {
    /// UDX protocol version (1).
    pub version: u64,
    /// Feature bit 0: the sender can reuse its socket for the stream.
    pub reusable_socket: bool,
    /// The sender's local UDX stream id.
    pub id: u32,
    /// The sender's initial sequence number (0).
    pub seq: u32,
}

/// `relayThrough` section: pair the stream through a blind relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayThrough<'a> {
    /// Section version (1).
    pub version: u64,
    /// Reserved flags (0).
    pub flags: u64,
    /// The blind relay's public key.
    pub public_key: &'a [u8; 32],
    /// Random pairing token.
    pub token: &'a [u8; 32],
}

/// The plaintext carried inside Noise IK handshake messages (§9.4).
///
/// When `version != 1` nothing after it is parsed and every other field is empty, as
/// in the reference; the receiver treats the peer as incompatible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoisePayload<'a> {
    /// Payload version; 1 is the only one understood.
    pub version: u64,
    /// Error reported by the sender.
    pub error: PayloadError,
    /// The sender's NAT class.
    pub firewall: Firewall,
    /// Holepunch slot and relays (servers).
    pub holepunch: Option<HolepunchInfo<'a>>,
    /// IPv4 addresses the sender can be reached at (public and LAN).
    pub addresses4: AddrList<'a>,
    /// IPv6 addresses.
    pub addresses6: Addr6List<'a>,
    /// The sender's UDX stream.
    pub udx: Option<UdxInfo>,
    /// secret-stream version, present when the sender speaks it.
    pub secret_stream: Option<u64>,
    /// Blind-relay pairing offer.
    pub relay_through: Option<RelayThrough<'a>>,
    /// The sender's announce relays.
    pub relay_addresses: Option<AddrList<'a>>,
}

impl Default for NoisePayload<'_> {
    fn default() -> Self {
        Self {
            version: 1,
            error: PayloadError::None,
            firewall: Firewall::Unknown,
            holepunch: None,
            addresses4: AddrList::EMPTY,
            addresses6: Addr6List::EMPTY,
            udx: None,
            secret_stream: None,
            relay_through: None,
            relay_addresses: None,
        }
    }
}

const NP_HOLEPUNCH: u64 = 0x01;
const NP_ADDRESSES4: u64 = 0x02;
const NP_ADDRESSES6: u64 = 0x04;
const NP_UDX: u64 = 0x08;
const NP_SECRET_STREAM: u64 = 0x10;
const NP_RELAY_THROUGH: u64 = 0x20;
const NP_RELAY_ADDRESSES: u64 = 0x40;

impl NoisePayload<'_> {
    fn flags(&self) -> u64 {
        let bit = |set: bool, b: u64| if set { b } else { 0 };
        bit(self.holepunch.is_some(), NP_HOLEPUNCH)
            | bit(!self.addresses4.is_empty(), NP_ADDRESSES4)
            | bit(!self.addresses6.is_empty(), NP_ADDRESSES6)
            | bit(self.udx.is_some(), NP_UDX)
            | bit(self.secret_stream.is_some(), NP_SECRET_STREAM)
            | bit(self.relay_through.is_some(), NP_RELAY_THROUGH)
            | bit(self.relay_addresses.is_some(), NP_RELAY_ADDRESSES)
    }
}

impl Encode for NoisePayload<'_> {
    fn encoded_len(&self) -> usize {
        let mut n = uint_len(self.version) + uint_len(self.flags()) + 2;
        if let Some(h) = &self.holepunch {
            n += uint_len(h.id) + h.relays.encoded_len();
        }
        if !self.addresses4.is_empty() {
            n += self.addresses4.encoded_len();
        }
        if !self.addresses6.is_empty() {
            n += self.addresses6.encoded_len();
        }
        if let Some(u) = &self.udx {
            n += uint_len(u.version) + 1 + uint_len(u64::from(u.id)) + uint_len(u64::from(u.seq));
        }
        if let Some(v) = self.secret_stream {
            n += uint_len(v);
        }
        if let Some(t) = &self.relay_through {
            n += uint_len(t.version) + uint_len(t.flags) + 64;
        }
        if let Some(a) = &self.relay_addresses {
            n += a.encoded_len();
        }
        n
    }

    fn encode_to(&self, w: &mut Writer<'_>) {
        w.uint(self.version);
        w.uint(self.flags());
        w.uint(self.error as u64);
        w.uint(self.firewall as u64);
        if let Some(h) = &self.holepunch {
            w.uint(h.id);
            h.relays.encode_to(w);
        }
        if !self.addresses4.is_empty() {
            self.addresses4.encode_to(w);
        }
        if !self.addresses6.is_empty() {
            self.addresses6.encode_to(w);
        }
        if let Some(u) = &self.udx {
            w.uint(u.version);
            w.uint(u64::from(u.reusable_socket));
            w.uint(u64::from(u.id));
            w.uint(u64::from(u.seq));
        }
        if let Some(v) = self.secret_stream {
            w.uint(v);
        }
        if let Some(t) = &self.relay_through {
            w.uint(t.version);
            w.uint(t.flags);
            w.bytes(t.public_key);
            w.bytes(t.token);
        }
        if let Some(a) = &self.relay_addresses {
            a.encode_to(w);
        }
    }
}

impl<'a> Decode<'a> for NoisePayload<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let version = r.uint()?;
        if version != 1 {
            // An unknown version's layout is unknown: nothing after it is meaningful.
            r.rest();
            return Ok(Self { version, ..Self::default() });
        }
        let flags = r.uint()?;
        let error = PayloadError::decode(r)?;
        let firewall = Firewall::decode(r)?;
        let holepunch = if flags & NP_HOLEPUNCH != 0 {
            Some(HolepunchInfo { id: r.uint()?, relays: RelayPairList::decode_from(r)? })
        } else {
            None
        };
        let addresses4 =
            if flags & NP_ADDRESSES4 != 0 { AddrList::decode_from(r)? } else { AddrList::EMPTY };
        let addresses6 =
            if flags & NP_ADDRESSES6 != 0 { Addr6List::decode_from(r)? } else { Addr6List::EMPTY };
        let udx = if flags & NP_UDX != 0 {
            let version = r.uint()?;
            let features = r.uint()?;
            Some(UdxInfo {
                version,
                reusable_socket: features & 1 != 0,
                id: r.uint32()?,
                seq: r.uint32()?,
            })
        } else {
            None
        };
        let secret_stream = if flags & NP_SECRET_STREAM != 0 { Some(r.uint()?) } else { None };
        let relay_through = if flags & NP_RELAY_THROUGH != 0 {
            Some(RelayThrough {
                version: r.uint()?,
                flags: r.uint()?,
                public_key: r.array()?,
                token: r.array()?,
            })
        } else {
            None
        };
        let relay_addresses =
            if flags & NP_RELAY_ADDRESSES != 0 { Some(AddrList::decode_from(r)?) } else { None };
        Ok(Self {
            version,
            error,
            firewall,
            holepunch,
            addresses4,
            addresses6,
            udx,
            secret_stream,
            relay_through,
            relay_addresses,
        })
    }
}

/// The decrypted holepunch payload exchanged in PEER_HOLEPUNCH rounds (§10.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HolepunchPayload<'a> {
    /// Error reported by the sender.
    pub error: PayloadError,
    /// The sender's NAT class.
    pub firewall: Firewall,
    /// Round counter.
    pub round: u64,
    /// The sender already has a connection.
    pub connected: bool,
    /// The sender is punching now.
    pub punching: bool,
    /// The sender's sampled public addresses.
    pub addresses: Option<AddrList<'a>>,
    /// The address the sender believes the receiver has.
    pub remote_address: Option<SocketAddrV4>,
    /// Address token the sender issued for the receiver's host.
    pub token: Option<&'a [u8; 32]>,
    /// The receiver's token, echoed back to prove the sender receives there.
    pub remote_token: Option<&'a [u8; 32]>,
}

const HP_CONNECTED: u64 = 0x01;
const HP_PUNCHING: u64 = 0x02;
const HP_ADDRESSES: u64 = 0x04;
const HP_REMOTE_ADDRESS: u64 = 0x08;
const HP_TOKEN: u64 = 0x10;
const HP_REMOTE_TOKEN: u64 = 0x20;

impl HolepunchPayload<'_> {
    fn flags(&self) -> u64 {
        let bit = |set: bool, b: u64| if set { b } else { 0 };
        bit(self.connected, HP_CONNECTED)
            | bit(self.punching, HP_PUNCHING)
            | bit(self.addresses.is_some(), HP_ADDRESSES)
            | bit(self.remote_address.is_some(), HP_REMOTE_ADDRESS)
            | bit(self.token.is_some(), HP_TOKEN)
            | bit(self.remote_token.is_some(), HP_REMOTE_TOKEN)
    }
}

impl Encode for HolepunchPayload<'_> {
    fn encoded_len(&self) -> usize {
        uint_len(self.flags())
            + 2
            + uint_len(self.round)
            + self.addresses.map_or(0, |a| a.encoded_len())
            + self.remote_address.map_or(0, |_| IPV4_ADDR_LEN)
            + self.token.map_or(0, |_| 32)
            + self.remote_token.map_or(0, |_| 32)
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        w.uint(self.flags());
        w.uint(self.error as u64);
        w.uint(self.firewall as u64);
        w.uint(self.round);
        self.addresses.inspect(|a| a.encode_to(w));
        self.remote_address.inspect(|a| w.ipv4(a));
        self.token.inspect(|t| w.bytes(&t[..]));
        self.remote_token.inspect(|t| w.bytes(&t[..]));
    }
}

impl<'a> Decode<'a> for HolepunchPayload<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let flags = r.uint()?;
        let error = PayloadError::decode(r)?;
        let firewall = Firewall::decode(r)?;
        let round = r.uint()?;
        let addresses =
            if flags & HP_ADDRESSES != 0 { Some(AddrList::decode_from(r)?) } else { None };
        let remote_address = if flags & HP_REMOTE_ADDRESS != 0 { Some(r.ipv4()?) } else { None };
        let token = if flags & HP_TOKEN != 0 { Some(r.array()?) } else { None };
        let remote_token = if flags & HP_REMOTE_TOKEN != 0 { Some(r.array()?) } else { None };
        Ok(Self {
            error,
            firewall,
            round,
            connected: flags & HP_CONNECTED != 0,
            punching: flags & HP_PUNCHING != 0,
            addresses,
            remote_address,
            token,
            remote_token,
        })
    }
}
