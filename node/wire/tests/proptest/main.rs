//! Property tests for the tern-wire codecs. They prove, over generated inputs:
//!
//! * **Round trip.** For arbitrary valid values of every wire type (dht-rpc requests and
//!   responses with every combination of optional fields, every hyperdht value, every
//!   handshake value and the UDX header), `encoded_len()` is exactly the number of bytes
//!   written, a buffer one byte short fails cleanly, `decode_exact(encode(x)) == x`
//!   consumes everything, trailing bytes are ignored by `decode` and refused by
//!   `decode_exact`, and the decoded (borrowed) form re-encodes to the same bytes.
//! * **Truncation.** Every strict prefix of a valid encoding decodes to `Err` or a value,
//!   never a panic; for dht-rpc requests and responses it is always `Err`.
//! * **Panic freedom.** Every decoder, and every accessor on what it returns (list and
//!   record iteration, UDX payload and SACK blocks), survives arbitrary bytes and random
//!   mutations of valid encodings (which get past the first checks and reach deeper).
//!   Whatever decodes re-encodes to something that decodes to the same value.
//! * **Primitives.** Arbitrary sequences of `Reader` calls on arbitrary bytes never panic
//!   and consume exactly what they report; `Writer` sequences read back unchanged and
//!   report overflow exactly.
//!
//! Case counts are chosen so the whole file runs in a few seconds in a debug build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Debug;
use std::net::{Ipv4Addr, SocketAddrV4, SocketAddrV6};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use tern_wire::handshake::{Handshake, Holepunch, HolepunchPayload, NoisePayload};
use tern_wire::hyperdht::{
    Announce, LookupReply, MutablePut, MutableRecord, PeerRecord, PeerRecords, PluginRequest,
};
use tern_wire::rpc::{Message, Request, Response};
use tern_wire::udx::{UDX_HEADER_LEN, UDX_SACK, UdxHeader, UdxPacket};
use tern_wire::{
    Addr6List, AddrList, Decode, DecodeError, Encode, EncodeError, Reader, RelayPairList, Writer,
};

mod strategies;

use strategies::*;

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// Encodes `v` into a dirty oversized buffer, an exact buffer and a vector, checks all
/// three agree with `encoded_len`, and checks that a buffer one byte short is refused
/// with the right sizes rather than panicking or writing a partial value.
fn encode_checked<T: Encode + ?Sized>(v: &T) -> Result<Vec<u8>, TestCaseError> {
    let len = v.encoded_len();
    let mut big = vec![0xa5u8; len + 16];
    prop_assert_eq!(v.encode(&mut big), Ok(len), "encoded_len differs from bytes written");
    let out = big[..len].to_vec();
    let mut exact = vec![0u8; len];
    prop_assert_eq!(v.encode(&mut exact), Ok(len));
    prop_assert_eq!(&exact, &out);
    prop_assert_eq!(&v.to_vec(), &out);
    if len > 0 {
        let mut short = vec![0u8; len - 1];
        prop_assert_eq!(
            v.encode(&mut short),
            Err(EncodeError::BufferTooSmall { needed: len, available: len - 1 })
        );
    }
    Ok(out)
}

/// The full round-trip property for one value of a type with a `Decode` impl; evaluates
/// to the encoding. A macro rather than a function because the decoded value's lifetime
/// is the encoding's, not the input's, which a generic signature cannot express simply.
macro_rules! check_round_trip {
    ($ty:ident, $v:expr) => {{
        let v = $v;
        let bytes = encode_checked(&v)?;
        prop_assert_eq!($ty::decode_exact(&bytes), Ok(v));
        // Trailing bytes: ignored by `decode` (as the JS decoders do), refused by
        // `decode_exact`.
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert_eq!($ty::decode(&longer), Ok(v));
        prop_assert_eq!($ty::decode_exact(&longer), Err(DecodeError::TrailingBytes));
        // The decoded form (borrowed raw lists) re-encodes to the same bytes.
        let decoded = $ty::decode_exact(&bytes).map_err(|e| TestCaseError::fail(e.label()))?;
        prop_assert_eq!(encode_checked(&decoded)?, bytes.clone());
        // Truncation anywhere: an error or a value, never a panic.
        for cut in 0..bytes.len() {
            let _ = $ty::decode(&bytes[..cut]);
        }
        bytes
    }};
}

/// Every strict prefix of a dht-rpc datagram is an error: each kind ends in a field that
/// is always present (the command, or a flagged field after it).
fn check_truncations_fail(bytes: &[u8]) -> Result<(), TestCaseError> {
    for cut in 0..bytes.len() {
        prop_assert!(Message::decode(&bytes[..cut]).is_err(), "prefix of {} decoded", cut);
    }
    Ok(())
}

/// Decodes `$bytes` with `$ty`; if that succeeds, runs `$walk` over the value and checks
/// that re-encoding it yields something that decodes, exactly, to the same value.
macro_rules! decode_reencode {
    ($ty:ident, $bytes:expr, $walk:expr) => {
        if let Ok(v) = $ty::decode($bytes) {
            $walk(&v)?;
            let again = encode_checked(&v)?;
            prop_assert_eq!($ty::decode_exact(&again), Ok(v));
        }
    };
}

fn walk_list<T: tern_wire::FixedItem + PartialEq + Debug>(
    list: &tern_wire::List<'_, T>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(list.iter().count(), list.len());
    prop_assert_eq!(list.iter().len(), list.len());
    prop_assert!(list.get(list.len()).is_none());
    prop_assert_eq!(list.truncated(3).len(), list.len().min(3));
    if let Some(last) = list.len().checked_sub(1) {
        prop_assert_eq!(list.get(last), list.iter().last());
    }
    Ok(())
}

fn walk_message(m: &Message<'_>) -> Result<(), TestCaseError> {
    match m {
        Message::Request(q) => {
            let _ = q.internal_command();
            prop_assert!(q.flags() <= 0x1f);
        }
        Message::Response(r) => {
            walk_list(&r.closer_nodes)?;
            prop_assert!(r.flags() <= 0x1f);
        }
    }
    Ok(())
}

fn walk_lookup(l: &LookupReply<'_>) -> Result<(), TestCaseError> {
    // Raw records were validated at decode time, so iteration yields all of them.
    prop_assert_eq!(l.peers.iter().count(), l.peers.len());
    for p in l.peers.iter() {
        walk_list(&p.relay_addresses)?;
    }
    Ok(())
}

fn walk_noise(n: &NoisePayload<'_>) -> Result<(), TestCaseError> {
    if let Some(h) = &n.holepunch {
        walk_list(&h.relays)?;
    }
    walk_list(&n.addresses4)?;
    walk_list(&n.addresses6)?;
    if let Some(a) = &n.relay_addresses {
        walk_list(a)?;
    }
    Ok(())
}

fn ok<T>(_: &T) -> Result<(), TestCaseError> {
    Ok(())
}

/// Runs every decoder over `bytes`, walking and re-encoding whatever decodes.
fn decode_everything(bytes: &[u8]) -> Result<(), TestCaseError> {
    decode_reencode!(Message, bytes, walk_message);
    decode_reencode!(Request, bytes, ok);
    decode_reencode!(Response, bytes, |r: &Response<'_>| walk_list(&r.closer_nodes));
    decode_reencode!(PeerRecord, bytes, |p: &PeerRecord<'_>| walk_list(&p.relay_addresses));
    decode_reencode!(Announce, bytes, |a: &Announce<'_>| match &a.peer {
        Some(p) => walk_list(&p.relay_addresses),
        None => Ok(()),
    });
    decode_reencode!(LookupReply, bytes, walk_lookup);
    decode_reencode!(MutablePut, bytes, ok);
    decode_reencode!(MutableRecord, bytes, ok);
    decode_reencode!(PluginRequest, bytes, ok);
    decode_reencode!(Handshake, bytes, ok);
    decode_reencode!(Holepunch, bytes, ok);
    decode_reencode!(NoisePayload, bytes, walk_noise);
    decode_reencode!(HolepunchPayload, bytes, |h: &HolepunchPayload<'_>| match &h.addresses {
        Some(a) => walk_list(a),
        None => Ok(()),
    });
    decode_reencode!(AddrList, bytes, walk_list);
    decode_reencode!(Addr6List, bytes, walk_list);
    decode_reencode!(RelayPairList, bytes, walk_list);
    check_udx(bytes)
}

fn check_udx(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(p) = UdxPacket::decode(bytes) else {
        prop_assert!(!UdxHeader::is_udx(bytes));
        return Ok(());
    };
    prop_assert!(UdxHeader::is_udx(bytes));
    prop_assert_eq!(&p.header.to_vec()[..], &bytes[..UDX_HEADER_LEN]);
    prop_assert_eq!(p.body, &bytes[UDX_HEADER_LEN..]);
    match p.payload() {
        Ok(payload) => {
            prop_assert_eq!(payload.len(), p.body.len() - usize::from(p.header.data_offset))
        }
        Err(e) => {
            prop_assert_eq!(e, DecodeError::Truncated);
            prop_assert!(usize::from(p.header.data_offset) > p.body.len());
        }
    }
    let blocks = p.sack_ranges().count();
    prop_assert!(blocks <= p.body.len() / 8);
    if p.header.type_flags & UDX_SACK == 0 {
        prop_assert_eq!(blocks, 0);
    }
    Ok(())
}

/// A small edit to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    FlipBit(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        if bytes.is_empty() {
            // `Index::index(0)` panics; an empty input can only grow.
            if let Mutation::Insert(_, b) = m {
                bytes.push(*b);
            }
            continue;
        }
        match m {
            Mutation::Set(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::FlipBit(i, bit) => {
                let i = i.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            Mutation::Remove(i) => {
                bytes.remove(i.index(bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        }
    }
}

/// One call on a [`Reader`].
#[derive(Debug, Clone)]
enum ReadOp {
    U8,
    U16,
    U24,
    U32,
    U64,
    Uint,
    Uint32,
    Bytes(usize),
    Buffer,
    Utf8,
    ArrayLen(usize),
    Ipv4,
    Ipv6,
    Array32,
    Rest,
    Finish,
}

/// Sizes both small (often satisfiable) and huge (overflow paths).
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0..40usize, 1 => any::<usize>()]
}

fn read_op() -> impl Strategy<Value = ReadOp> {
    prop_oneof![
        Just(ReadOp::U8),
        Just(ReadOp::U16),
        Just(ReadOp::U24),
        Just(ReadOp::U32),
        Just(ReadOp::U64),
        Just(ReadOp::Uint),
        Just(ReadOp::Uint32),
        size().prop_map(ReadOp::Bytes),
        Just(ReadOp::Buffer),
        Just(ReadOp::Utf8),
        size().prop_map(ReadOp::ArrayLen),
        Just(ReadOp::Ipv4),
        Just(ReadOp::Ipv6),
        Just(ReadOp::Array32),
        Just(ReadOp::Rest),
        Just(ReadOp::Finish),
    ]
}

/// Runs one op and checks it consumed exactly what its result implies. Returns whether
/// it succeeded.
fn run_read_op(r: &mut Reader<'_>, op: &ReadOp) -> Result<bool, TestCaseError> {
    let before = r.remaining();
    let fixed = |res: Result<usize, DecodeError>, r: &Reader<'_>| -> Result<bool, TestCaseError> {
        match res {
            Ok(n) => {
                prop_assert_eq!(before - r.remaining(), n);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    };
    let uint_width = |consumed: usize| [1, 3, 5, 9].contains(&consumed);
    let ok = match op {
        ReadOp::U8 => fixed(r.u8().map(|_| 1), r)?,
        ReadOp::U16 => fixed(r.u16().map(|_| 2), r)?,
        ReadOp::U24 => {
            let res = r.u24();
            if let Ok(v) = res {
                prop_assert!(v <= 0xff_ffff);
            }
            fixed(res.map(|_| 3), r)?
        }
        ReadOp::U32 => fixed(r.u32().map(|_| 4), r)?,
        ReadOp::U64 => fixed(r.u64().map(|_| 8), r)?,
        ReadOp::Uint => {
            let ok = r.uint().is_ok();
            prop_assert!(!ok || uint_width(before - r.remaining()));
            ok
        }
        ReadOp::Uint32 => r.uint32().is_ok(),
        ReadOp::Bytes(n) => {
            let res = r.bytes(*n);
            if let Ok(b) = res {
                prop_assert_eq!(b.len(), *n);
            }
            fixed(res.map(|_| *n), r)?
        }
        ReadOp::Buffer => match r.buffer() {
            Ok(b) => {
                prop_assert!(uint_width(before - r.remaining() - b.len()));
                true
            }
            Err(_) => false,
        },
        ReadOp::Utf8 => r.utf8().is_ok(),
        ReadOp::ArrayLen(min) => match r.array_len(*min) {
            Ok(n) => {
                prop_assert!(uint_width(before - r.remaining()));
                // The count is bounded by the bytes left, so it can never drive an
                // allocation larger than the datagram.
                prop_assert!(n <= tern_wire::cursor::ARRAY_MAX as usize);
                prop_assert!(n.saturating_mul((*min).max(1)) <= r.remaining());
                true
            }
            Err(_) => false,
        },
        ReadOp::Ipv4 => fixed(r.ipv4().map(|_| 6), r)?,
        ReadOp::Ipv6 => fixed(r.ipv6().map(|_| 18), r)?,
        ReadOp::Array32 => fixed(r.array::<32>().map(|_| 32), r)?,
        ReadOp::Rest => {
            let rest = r.rest();
            prop_assert_eq!(rest.len(), before);
            prop_assert!(r.is_empty());
            true
        }
        ReadOp::Finish => {
            prop_assert_eq!(r.finish().is_ok(), before == 0);
            prop_assert_eq!(r.remaining(), before);
            true
        }
    };
    prop_assert!(r.remaining() <= before);
    Ok(ok)
}

/// One call on a [`Writer`], with its value.
#[derive(Debug, Clone)]
enum WriteOp {
    U8(u8),
    U16(u16),
    U24(u32),
    U32(u32),
    Uint(u64),
    Bytes(Vec<u8>),
    Buffer(Vec<u8>),
    Utf8(String),
    Ipv4(SocketAddrV4),
    Ipv6(SocketAddrV6),
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        any::<u8>().prop_map(WriteOp::U8),
        any::<u16>().prop_map(WriteOp::U16),
        (0..=0xff_ffffu32).prop_map(WriteOp::U24),
        any::<u32>().prop_map(WriteOp::U32),
        uint().prop_map(WriteOp::Uint),
        vec(any::<u8>(), 0..16).prop_map(WriteOp::Bytes),
        bytes().prop_map(WriteOp::Buffer),
        "\\PC{0,8}".prop_map(WriteOp::Utf8),
        addr4().prop_map(WriteOp::Ipv4),
        addr6().prop_map(WriteOp::Ipv6),
    ]
}

fn write(w: &mut Writer<'_>, op: &WriteOp) {
    match op {
        WriteOp::U8(v) => w.u8(*v),
        WriteOp::U16(v) => w.u16(*v),
        WriteOp::U24(v) => w.u24(*v),
        WriteOp::U32(v) => w.u32(*v),
        WriteOp::Uint(v) => w.uint(*v),
        WriteOp::Bytes(v) => w.bytes(v),
        WriteOp::Buffer(v) => w.buffer(v),
        WriteOp::Utf8(v) => w.utf8(v),
        WriteOp::Ipv4(v) => w.ipv4(v),
        WriteOp::Ipv6(v) => w.ipv6(v),
    }
}

fn read_back(r: &mut Reader<'_>, op: &WriteOp) -> Result<(), TestCaseError> {
    let e = |e: DecodeError| TestCaseError::fail(e.label());
    match op {
        WriteOp::U8(v) => prop_assert_eq!(r.u8().map_err(e)?, *v),
        WriteOp::U16(v) => prop_assert_eq!(r.u16().map_err(e)?, *v),
        WriteOp::U24(v) => prop_assert_eq!(r.u24().map_err(e)?, *v),
        WriteOp::U32(v) => prop_assert_eq!(r.u32().map_err(e)?, *v),
        WriteOp::Uint(v) => prop_assert_eq!(r.uint().map_err(e)?, *v),
        WriteOp::Bytes(v) => prop_assert_eq!(r.bytes(v.len()).map_err(e)?, &v[..]),
        WriteOp::Buffer(v) => prop_assert_eq!(r.buffer().map_err(e)?, &v[..]),
        WriteOp::Utf8(v) => prop_assert_eq!(r.utf8().map_err(e)?, &v[..]),
        WriteOp::Ipv4(v) => prop_assert_eq!(r.ipv4().map_err(e)?, *v),
        WriteOp::Ipv6(v) => prop_assert_eq!(r.ipv6().map_err(e)?, *v),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn request_round_trips(d in request()) {
        let v = d.view();
        let bytes = check_round_trip!(Request, v);
        prop_assert_eq!(Message::decode_exact(&bytes), Ok(Message::Request(v)));
        prop_assert_eq!(Response::decode(&bytes), Err(DecodeError::UnknownType));
        check_truncations_fail(&bytes)?;
    }

    #[test]
    fn response_round_trips(d in response()) {
        let v = d.view();
        let bytes = check_round_trip!(Response, v);
        prop_assert_eq!(Message::decode_exact(&bytes), Ok(Message::Response(v)));
        prop_assert_eq!(Request::decode(&bytes), Err(DecodeError::UnknownType));
        check_truncations_fail(&bytes)?;
        // The closer nodes come back in order, whether read by index or by iterator.
        let Ok(decoded) = Response::decode_exact(&bytes) else { unreachable!() };
        for (i, a) in d.closer_nodes.iter().enumerate() {
            prop_assert_eq!(decoded.closer_nodes.get(i), Some(*a));
        }
    }

    #[test]
    fn peer_record_round_trips(d in peer_record()) {
        check_round_trip!(PeerRecord, d.view());
    }

    #[test]
    fn announce_round_trips(d in announce()) {
        check_round_trip!(Announce, d.view());
    }

    #[test]
    fn lookup_reply_round_trips(d in lookup_reply()) {
        let records = d.records();
        let v = LookupReply { peers: PeerRecords::Items(&records), bump: d.bump };
        let bytes = check_round_trip!(LookupReply, v);
        let Ok(decoded) = LookupReply::decode_exact(&bytes) else { unreachable!() };
        let raw = matches!(decoded.peers, PeerRecords::Raw { .. });
        prop_assert!(raw, "decoded records borrow the datagram");
        prop_assert_eq!(decoded.peers.iter().collect::<Vec<_>>(), records);
    }

    #[test]
    fn mutable_put_and_record_round_trip(d in mutable_put()) {
        check_round_trip!(MutablePut, d.view());
        check_round_trip!(MutableRecord, d.record());
    }

    #[test]
    fn plugin_request_round_trips(d in plugin_request()) {
        check_round_trip!(PluginRequest, d.view());
    }

    #[test]
    fn handshake_round_trips(d in handshake()) {
        check_round_trip!(Handshake, d.view());
    }

    #[test]
    fn holepunch_round_trips(d in holepunch()) {
        check_round_trip!(Holepunch, d.view());
    }

    #[test]
    fn noise_payload_round_trips(d in noise_payload()) {
        check_round_trip!(NoisePayload, d.view());
    }

    /// A version other than 1 hides the rest of the payload: only the version survives,
    /// and everything after it is consumed (so trailing bytes are not an error).
    #[test]
    fn noise_payload_other_versions_keep_only_the_version(
        version in uint().prop_filter("not version 1", |v| *v != 1),
        tail in vec(any::<u8>(), 0..16),
    ) {
        let v = NoisePayload { version, ..NoisePayload::default() };
        let mut bytes = encode_checked(&v)?;
        prop_assert_eq!(NoisePayload::decode_exact(&bytes), Ok(v));
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(NoisePayload::decode_exact(&bytes), Ok(v));
    }

    #[test]
    fn holepunch_payload_round_trips(d in holepunch_payload()) {
        check_round_trip!(HolepunchPayload, d.view());
    }

    #[test]
    fn udx_header_round_trips(h in udx_header(), body in vec(any::<u8>(), 0..64)) {
        let mut bytes = encode_checked(&h)?;
        prop_assert_eq!(bytes.len(), UDX_HEADER_LEN);
        prop_assert_eq!(UdxPacket::decode(&bytes), Ok(UdxPacket { header: h, body: &[] }));
        for cut in 0..bytes.len() {
            prop_assert_eq!(UdxPacket::decode(&bytes[..cut]), Err(DecodeError::Truncated));
        }
        bytes.extend_from_slice(&body);
        let p = UdxPacket::decode(&bytes).map_err(|e| TestCaseError::fail(e.label()))?;
        prop_assert_eq!(p.header, h);
        prop_assert_eq!(p.body, &body[..]);
        check_udx(&bytes)?;
    }

    /// SACK blocks written into the data-offset area come back in order, and the payload
    /// after them is intact.
    #[test]
    fn udx_sack_blocks_round_trip(
        mut h in udx_header(),
        blocks in vec((any::<u32>(), any::<u32>()), 1..=31),
        payload in vec(any::<u8>(), 0..32),
    ) {
        h.type_flags |= UDX_SACK;
        h.data_offset = u8::try_from(blocks.len() * 8).map_err(|_| TestCaseError::reject("big"))?;
        let mut bytes = h.to_vec();
        for (start, end) in &blocks {
            bytes.extend_from_slice(&start.to_le_bytes());
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        bytes.extend_from_slice(&payload);
        let p = UdxPacket::decode(&bytes).map_err(|e| TestCaseError::fail(e.label()))?;
        let got: Vec<_> = p.sack_ranges().map(|r| (r.start, r.end)).collect();
        prop_assert_eq!(got, blocks);
        prop_assert_eq!(p.payload(), Ok(&payload[..]));
    }

    #[test]
    fn reader_and_writer_primitives_round_trip(
        ops in vec(write_op(), 0..24),
        cap in any::<Index>(),
    ) {
        let mut sizing = Writer::new(&mut []);
        ops.iter().for_each(|op| write(&mut sizing, op));
        let len = sizing.position();
        let mut buf = vec![0u8; len];
        let mut w = Writer::new(&mut buf);
        ops.iter().for_each(|op| write(&mut w, op));
        prop_assert_eq!(w.finish(), Ok(len));
        let mut r = Reader::new(&buf);
        for op in &ops {
            read_back(&mut r, op)?;
        }
        prop_assert_eq!(r.finish(), Ok(()));
        // A smaller buffer: reported once, at the end, with the full size needed.
        if len > 0 {
            let small = cap.index(len);
            let mut buf = vec![0u8; small];
            let mut w = Writer::new(&mut buf);
            ops.iter().for_each(|op| write(&mut w, op));
            prop_assert_eq!(
                w.finish(),
                Err(EncodeError::BufferTooSmall { needed: len, available: small })
            );
        }
    }
}

proptest! {
    // Cheap per case, and the main defence against panics: more cases.
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes)?;
    }

    /// Random bytes behind each valid first byte, so every decoder gets past its type or
    /// flags check.
    #[test]
    fn decoders_never_panic_behind_valid_prefixes(
        prefix in select(vec![
            vec![0x03u8],
            vec![0x13],
            vec![0xff, 0x01],
            vec![0x01],
            vec![0x00],
        ]),
        rest in vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = prefix;
        bytes.extend_from_slice(&rest);
        decode_everything(&bytes)?;
    }

    #[test]
    fn reader_calls_never_panic(bytes in vec(any::<u8>(), 0..128), ops in vec(read_op(), 0..24)) {
        let mut r = Reader::new(&bytes);
        for op in &ops {
            run_read_op(&mut r, op)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_mutated_encodings(
        mut bytes in valid_encoding(),
        mutations in vec(mutation(), 1..6),
    ) {
        decode_everything(&bytes)?;
        mutate(&mut bytes, &mutations);
        decode_everything(&bytes)?;
    }
}

/// Lengths whose `uint` prefix takes the 5-byte form (> 0xffff) are too slow to generate
/// per case; one deterministic value of each kind covers them.
#[test]
fn values_with_five_byte_length_prefixes_round_trip() {
    let big = vec![0x5au8; 0x1_0003];
    let key = [7u8; 32];
    let sig = [9u8; 64];
    let q = Request {
        tid: 1,
        to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
        id: None,
        token: Some(&key),
        internal: false,
        command: u64::MAX,
        target: Some(&key),
        value: Some(&big),
    };
    let bytes = q.to_vec();
    assert_eq!(bytes.len(), q.encoded_len());
    assert_eq!(Request::decode_exact(&bytes), Ok(q));
    let put = MutablePut { public_key: &key, seq: 0x1_0000_0000, value: &big, signature: &sig };
    let bytes = put.to_vec();
    assert_eq!(bytes.len(), put.encoded_len());
    assert_eq!(MutablePut::decode_exact(&bytes), Ok(put));
    let nodes = vec![SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000); 0x1_0001];
    let r = Response {
        tid: 2,
        to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2),
        id: Some(&key),
        token: None,
        closer_nodes: AddrList::Items(&nodes),
        error: 0xffff_ffff,
        value: None,
    };
    let bytes = r.to_vec();
    assert_eq!(bytes.len(), r.encoded_len());
    assert_eq!(Response::decode_exact(&bytes), Ok(r));
}
