//! Strategies for the wire property tests: leaf values, and owned models of every wire
//! type (the wire types borrow, so the tests generate owned data and take a view).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use tern_wire::handshake::{
    Firewall, Handshake, Holepunch, HolepunchInfo, HolepunchPayload, Mode, NoisePayload,
    PayloadError, RelayThrough, UdxInfo,
};
use tern_wire::hyperdht::{
    Announce, LookupReply, MutablePut, MutableRecord, PeerRecord, PeerRecords, PluginRequest,
};
use tern_wire::rpc::{Request, Response};
use tern_wire::udx::UdxHeader;
use tern_wire::{Addr6List, AddrList, Encode, RelayPair, RelayPairList};

pub(crate) type Key = [u8; 32];
pub(crate) type Sig = [u8; 64];
// ---------------------------------------------------------------------------------------
// Leaf strategies
// ---------------------------------------------------------------------------------------

/// A `uint` that hits every width of the compact-encoding form (1, 3, 5, 9 bytes) and
/// its boundaries, not just the 9-byte values a uniform `u64` would almost always be.
pub(crate) fn uint() -> impl Strategy<Value = u64> {
    prop_oneof![
        select(vec![
            0u64,
            1,
            0xfc,
            0xfd,
            0xfe,
            0xff,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX
        ]),
        0..=0xfcu64,
        0xfd..=0xffffu64,
        0x1_0000..=0xffff_ffffu64,
        any::<u64>(),
    ]
}

pub(crate) fn addr4() -> impl Strategy<Value = SocketAddrV4> {
    (any::<[u8; 4]>(), any::<u16>()).prop_map(|(o, p)| SocketAddrV4::new(Ipv4Addr::from(o), p))
}

/// IPv6 addresses carry no flow info or scope on the wire, so those are always 0.
pub(crate) fn addr6() -> impl Strategy<Value = SocketAddrV6> {
    (any::<[u8; 16]>(), any::<u16>())
        .prop_map(|(o, p)| SocketAddrV6::new(Ipv6Addr::from(o), p, 0, 0))
}

pub(crate) fn relay_pair() -> impl Strategy<Value = RelayPair> {
    (addr4(), addr4())
        .prop_map(|(relay_address, peer_address)| RelayPair { relay_address, peer_address })
}

/// Byte strings, mostly short, sometimes straddling 0xfc/0xfd where the length prefix
/// grows from one byte to three.
pub(crate) fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![6 => vec(any::<u8>(), 0..48), 1 => vec(any::<u8>(), 0xf8..0x104)]
}

/// Address lists: up to 20 (a full FIND_NODE reply), sometimes past the one-byte count.
pub(crate) fn addrs() -> impl Strategy<Value = Vec<SocketAddrV4>> {
    prop_oneof![8 => vec(addr4(), 0..=20), 1 => vec(addr4(), 0xfa..0x101)]
}

pub(crate) fn mode() -> impl Strategy<Value = Mode> {
    select(vec![
        Mode::FromClient,
        Mode::FromServer,
        Mode::FromRelay,
        Mode::FromSecondRelay,
        Mode::Reply,
    ])
}

pub(crate) fn firewall() -> impl Strategy<Value = Firewall> {
    select(vec![Firewall::Unknown, Firewall::Open, Firewall::Consistent, Firewall::Random])
}

pub(crate) fn payload_error() -> impl Strategy<Value = PayloadError> {
    select(vec![
        PayloadError::None,
        PayloadError::Aborted,
        PayloadError::VersionMismatch,
        PayloadError::TryLater,
    ])
}

// ---------------------------------------------------------------------------------------
// Owned models: the wire types borrow, so tests generate owned data and take a view.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) struct RequestData {
    pub(crate) tid: u16,
    pub(crate) to: SocketAddrV4,
    pub(crate) id: Option<Key>,
    pub(crate) token: Option<Key>,
    pub(crate) internal: bool,
    pub(crate) command: u64,
    pub(crate) target: Option<Key>,
    pub(crate) value: Option<Vec<u8>>,
}

impl RequestData {
    pub(crate) fn view(&self) -> Request<'_> {
        Request {
            tid: self.tid,
            to: self.to,
            id: self.id.as_ref(),
            token: self.token.as_ref(),
            internal: self.internal,
            command: self.command,
            target: self.target.as_ref(),
            value: self.value.as_deref(),
        }
    }
}

pub(crate) fn request() -> impl Strategy<Value = RequestData> {
    (
        any::<u16>(),
        addr4(),
        any::<Option<Key>>(),
        any::<Option<Key>>(),
        any::<bool>(),
        uint(),
        any::<Option<Key>>(),
        proptest::option::of(bytes()),
    )
        .prop_map(|(tid, to, id, token, internal, command, target, value)| RequestData {
            tid,
            to,
            id,
            token,
            internal,
            command,
            target,
            value,
        })
}

#[derive(Debug, Clone)]
pub(crate) struct ResponseData {
    pub(crate) tid: u16,
    pub(crate) to: SocketAddrV4,
    pub(crate) id: Option<Key>,
    pub(crate) token: Option<Key>,
    pub(crate) closer_nodes: Vec<SocketAddrV4>,
    pub(crate) error: u64,
    pub(crate) value: Option<Vec<u8>>,
}

impl ResponseData {
    pub(crate) fn view(&self) -> Response<'_> {
        Response {
            tid: self.tid,
            to: self.to,
            id: self.id.as_ref(),
            token: self.token.as_ref(),
            closer_nodes: AddrList::Items(&self.closer_nodes),
            error: self.error,
            value: self.value.as_deref(),
        }
    }
}

pub(crate) fn response() -> impl Strategy<Value = ResponseData> {
    (
        any::<u16>(),
        addr4(),
        any::<Option<Key>>(),
        any::<Option<Key>>(),
        addrs(),
        uint(),
        proptest::option::of(bytes()),
    )
        .prop_map(|(tid, to, id, token, closer_nodes, error, value)| ResponseData {
            tid,
            to,
            id,
            token,
            closer_nodes,
            error,
            value,
        })
}

#[derive(Debug, Clone)]
pub(crate) struct PeerRecordData {
    pub(crate) public_key: Key,
    pub(crate) relay_addresses: Vec<SocketAddrV4>,
}

impl PeerRecordData {
    pub(crate) fn view(&self) -> PeerRecord<'_> {
        PeerRecord {
            public_key: &self.public_key,
            relay_addresses: AddrList::Items(&self.relay_addresses),
        }
    }
}

pub(crate) fn peer_record() -> impl Strategy<Value = PeerRecordData> {
    (any::<Key>(), vec(addr4(), 0..=5))
        .prop_map(|(public_key, relay_addresses)| PeerRecordData { public_key, relay_addresses })
}

#[derive(Debug, Clone)]
pub(crate) struct AnnounceData {
    pub(crate) peer: Option<PeerRecordData>,
    pub(crate) refresh: Option<Key>,
    pub(crate) signature: Option<Sig>,
    pub(crate) bump: u64,
}

impl AnnounceData {
    pub(crate) fn view(&self) -> Announce<'_> {
        Announce {
            peer: self.peer.as_ref().map(PeerRecordData::view),
            refresh: self.refresh.as_ref(),
            signature: self.signature.as_ref(),
            bump: self.bump,
        }
    }
}

pub(crate) fn announce() -> impl Strategy<Value = AnnounceData> {
    (proptest::option::of(peer_record()), any::<Option<Key>>(), any::<Option<Sig>>(), uint())
        .prop_map(|(peer, refresh, signature, bump)| AnnounceData {
            peer,
            refresh,
            signature,
            bump,
        })
}

#[derive(Debug, Clone)]
pub(crate) struct LookupReplyData {
    pub(crate) peers: Vec<PeerRecordData>,
    pub(crate) bump: u64,
}

impl LookupReplyData {
    /// The borrowed records a `LookupReply` view points at.
    pub(crate) fn records(&self) -> Vec<PeerRecord<'_>> {
        self.peers.iter().map(PeerRecordData::view).collect()
    }
}

pub(crate) fn lookup_reply() -> impl Strategy<Value = LookupReplyData> {
    (vec(peer_record(), 0..=20), uint()).prop_map(|(peers, bump)| LookupReplyData { peers, bump })
}

#[derive(Debug, Clone)]
pub(crate) struct MutablePutData {
    pub(crate) public_key: Key,
    pub(crate) seq: u64,
    pub(crate) value: Vec<u8>,
    pub(crate) signature: Sig,
}

impl MutablePutData {
    pub(crate) fn view(&self) -> MutablePut<'_> {
        MutablePut {
            public_key: &self.public_key,
            seq: self.seq,
            value: &self.value,
            signature: &self.signature,
        }
    }
    pub(crate) fn record(&self) -> MutableRecord<'_> {
        MutableRecord { seq: self.seq, value: &self.value, signature: &self.signature }
    }
}

pub(crate) fn mutable_put() -> impl Strategy<Value = MutablePutData> {
    (any::<Key>(), uint(), bytes(), any::<Sig>()).prop_map(|(public_key, seq, value, signature)| {
        MutablePutData { public_key, seq, value, signature }
    })
}

#[derive(Debug, Clone)]
pub(crate) struct PluginRequestData {
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) command: u64,
    pub(crate) value: Option<Vec<u8>>,
}

impl PluginRequestData {
    pub(crate) fn view(&self) -> PluginRequest<'_> {
        PluginRequest {
            name: &self.name,
            version: self.version,
            command: self.command,
            value: self.value.as_deref(),
        }
    }
}

pub(crate) fn plugin_request() -> impl Strategy<Value = PluginRequestData> {
    // Any Unicode, so multi-byte UTF-8 sequences are split by the truncation checks.
    ("\\PC{0,24}", uint(), uint(), proptest::option::of(bytes())).prop_map(
        |(name, version, command, value)| PluginRequestData { name, version, command, value },
    )
}

#[derive(Debug, Clone)]
pub(crate) struct HandshakeData {
    pub(crate) mode: Mode,
    pub(crate) noise: Vec<u8>,
    pub(crate) peer_address: Option<SocketAddrV4>,
    pub(crate) relay_address: Option<SocketAddrV4>,
}

impl HandshakeData {
    pub(crate) fn view(&self) -> Handshake<'_> {
        Handshake {
            mode: self.mode,
            noise: &self.noise,
            peer_address: self.peer_address,
            relay_address: self.relay_address,
        }
    }
}

pub(crate) fn handshake() -> impl Strategy<Value = HandshakeData> {
    (mode(), bytes(), proptest::option::of(addr4()), proptest::option::of(addr4())).prop_map(
        |(mode, noise, peer_address, relay_address)| HandshakeData {
            mode,
            noise,
            peer_address,
            relay_address,
        },
    )
}

#[derive(Debug, Clone)]
pub(crate) struct HolepunchData {
    pub(crate) mode: Mode,
    pub(crate) id: u64,
    pub(crate) payload: Vec<u8>,
    pub(crate) peer_address: Option<SocketAddrV4>,
}

impl HolepunchData {
    pub(crate) fn view(&self) -> Holepunch<'_> {
        Holepunch {
            mode: self.mode,
            id: self.id,
            payload: &self.payload,
            peer_address: self.peer_address,
        }
    }
}

pub(crate) fn holepunch() -> impl Strategy<Value = HolepunchData> {
    (mode(), uint(), bytes(), proptest::option::of(addr4())).prop_map(
        |(mode, id, payload, peer_address)| HolepunchData { mode, id, payload, peer_address },
    )
}

#[derive(Debug, Clone)]
pub(crate) struct NoisePayloadData {
    pub(crate) error: PayloadError,
    pub(crate) firewall: Firewall,
    pub(crate) holepunch: Option<(u64, Vec<RelayPair>)>,
    pub(crate) addresses4: Vec<SocketAddrV4>,
    pub(crate) addresses6: Vec<SocketAddrV6>,
    pub(crate) udx: Option<UdxInfo>,
    pub(crate) secret_stream: Option<u64>,
    pub(crate) relay_through: Option<(u64, u64, Key, Key)>,
    pub(crate) relay_addresses: Option<Vec<SocketAddrV4>>,
}

impl NoisePayloadData {
    pub(crate) fn view(&self) -> NoisePayload<'_> {
        NoisePayload {
            version: 1,
            error: self.error,
            firewall: self.firewall,
            holepunch: self.holepunch.as_ref().map(|(id, relays)| HolepunchInfo {
                id: *id,
                relays: RelayPairList::Items(relays),
            }),
            addresses4: AddrList::Items(&self.addresses4),
            addresses6: Addr6List::Items(&self.addresses6),
            udx: self.udx,
            secret_stream: self.secret_stream,
            relay_through: self.relay_through.as_ref().map(
                |(version, flags, public_key, token)| RelayThrough {
                    version: *version,
                    flags: *flags,
                    public_key,
                    token,
                },
            ),
            relay_addresses: self.relay_addresses.as_deref().map(AddrList::Items),
        }
    }
}

pub(crate) fn udx_info() -> impl Strategy<Value = UdxInfo> {
    (uint(), any::<bool>(), any::<u32>(), any::<u32>()).prop_map(
        |(version, reusable_socket, id, seq)| UdxInfo { version, reusable_socket, id, seq },
    )
}

pub(crate) fn noise_payload() -> impl Strategy<Value = NoisePayloadData> {
    (
        payload_error(),
        firewall(),
        proptest::option::of((uint(), vec(relay_pair(), 0..=4))),
        vec(addr4(), 0..=4),
        vec(addr6(), 0..=3),
        proptest::option::of(udx_info()),
        proptest::option::of(uint()),
        proptest::option::of((uint(), uint(), any::<Key>(), any::<Key>())),
        proptest::option::of(vec(addr4(), 0..=3)),
    )
        .prop_map(
            |(
                error,
                firewall,
                holepunch,
                addresses4,
                addresses6,
                udx,
                secret_stream,
                relay_through,
                relay_addresses,
            )| NoisePayloadData {
                error,
                firewall,
                holepunch,
                addresses4,
                addresses6,
                udx,
                secret_stream,
                relay_through,
                relay_addresses,
            },
        )
}

#[derive(Debug, Clone)]
pub(crate) struct HolepunchPayloadData {
    pub(crate) error: PayloadError,
    pub(crate) firewall: Firewall,
    pub(crate) round: u64,
    pub(crate) connected: bool,
    pub(crate) punching: bool,
    pub(crate) addresses: Option<Vec<SocketAddrV4>>,
    pub(crate) remote_address: Option<SocketAddrV4>,
    pub(crate) token: Option<Key>,
    pub(crate) remote_token: Option<Key>,
}

impl HolepunchPayloadData {
    pub(crate) fn view(&self) -> HolepunchPayload<'_> {
        HolepunchPayload {
            error: self.error,
            firewall: self.firewall,
            round: self.round,
            connected: self.connected,
            punching: self.punching,
            addresses: self.addresses.as_deref().map(AddrList::Items),
            remote_address: self.remote_address,
            token: self.token.as_ref(),
            remote_token: self.remote_token.as_ref(),
        }
    }
}

pub(crate) fn holepunch_payload() -> impl Strategy<Value = HolepunchPayloadData> {
    (
        payload_error(),
        firewall(),
        uint(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(vec(addr4(), 0..=4)),
        proptest::option::of(addr4()),
        any::<Option<Key>>(),
        any::<Option<Key>>(),
    )
        .prop_map(
            |(
                error,
                firewall,
                round,
                connected,
                punching,
                addresses,
                remote_address,
                token,
                remote_token,
            )| HolepunchPayloadData {
                error,
                firewall,
                round,
                connected,
                punching,
                addresses,
                remote_address,
                token,
                remote_token,
            },
        )
}

pub(crate) fn udx_header() -> impl Strategy<Value = UdxHeader> {
    (any::<u8>(), any::<u8>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(type_flags, data_offset, id, rwnd, seq, ack)| UdxHeader {
            type_flags,
            data_offset,
            id,
            rwnd,
            seq,
            ack,
        },
    )
}

/// The encoding of an arbitrary valid value of any wire type: the seeds that mutation
/// tests start from.
pub(crate) fn valid_encoding() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        request().prop_map(|d| d.view().to_vec()),
        response().prop_map(|d| d.view().to_vec()),
        peer_record().prop_map(|d| d.view().to_vec()),
        announce().prop_map(|d| d.view().to_vec()),
        lookup_reply().prop_map(|d| {
            let records = d.records();
            LookupReply { peers: PeerRecords::Items(&records), bump: d.bump }.to_vec()
        }),
        mutable_put().prop_map(|d| d.view().to_vec()),
        mutable_put().prop_map(|d| d.record().to_vec()),
        plugin_request().prop_map(|d| d.view().to_vec()),
        handshake().prop_map(|d| d.view().to_vec()),
        holepunch().prop_map(|d| d.view().to_vec()),
        noise_payload().prop_map(|d| d.view().to_vec()),
        holepunch_payload().prop_map(|d| d.view().to_vec()),
        (udx_header(), vec(any::<u8>(), 0..64)).prop_map(|(h, body)| {
            let mut out = h.to_vec();
            out.extend_from_slice(&body);
            out
        }),
    ]
}
