//! tern-wire micro-benchmarks: the per-datagram codec costs on a node's hot paths.
//!
//! The headline is `wire/find_node_request_decode_plus_reply_encode`: what a DHT node
//! spends in the codec to answer one FIND_NODE (decode the request, encode a reply with
//! its id and 20 closer nodes), the most common request a public node serves. Target:
//! under 1 µs. The others split that cost and cover the LOOKUP reply a client reads per
//! queried node and the UDX header every stream packet goes through.
//!
//! Run: `cargo bench -p tern-benches --bench wire -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{Criterion, criterion_group, criterion_main};
use tern_wire::hyperdht::{LookupReply, PeerRecord, PeerRecords};
use tern_wire::rpc::{InternalCommand, Message, Request, Response};
use tern_wire::udx::{UDX_DATA, UdxHeader, UdxPacket};
use tern_wire::{AddrList, Decode, Encode};

/// Vector `find-node-request` of testdata/vectors/dht/dht-rpc-messages.json, made by the
/// JS reference: FIND_NODE (internal command 2) with a 32-byte target.
const FIND_NODE_REQUEST_HEX: &str =
    "030c00307f00000149c202fbe9639a6dcda704974294b03f74fd6cb6026d16da6f329887f980ffe6d5a089";
const FIND_NODE_REQUEST: [u8; FIND_NODE_REQUEST_HEX.len() / 2] = unhex(FIND_NODE_REQUEST_HEX);

/// Hex to bytes at compile time, so the benchmark embeds the vector verbatim without a
/// runtime decode step or a dependency.
#[allow(clippy::panic)] // Only ever const-evaluated: a bad literal fails the build.
const fn unhex<const N: usize>(s: &str) -> [u8; N] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let s = s.as_bytes();
    assert!(s.len() == 2 * N, "hex length mismatch");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// The replying node's id.
const OUR_ID: [u8; 32] = [0x42; 32];

/// The requester's address as the socket reported it (the reply's `to`).
const REQUESTER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000);

/// 20 distinct closer nodes: a full k-bucket's worth, as a node returns them.
fn closer_nodes() -> [SocketAddrV4; 20] {
    std::array::from_fn(|i| {
        let i = u8::try_from(i).unwrap_or(u8::MAX);
        SocketAddrV4::new(Ipv4Addr::new(10, 1, i, i.wrapping_mul(7)), 49737 + u16::from(i))
    })
}

/// The FIND_NODE reply: id plus 20 closer nodes, no token, no value.
fn reply<'a>(q: &Request<'_>, nodes: &'a [SocketAddrV4]) -> Response<'a> {
    Response {
        tid: q.tid,
        to: REQUESTER,
        id: Some(&OUR_ID),
        token: None,
        closer_nodes: AddrList::Items(nodes),
        error: 0,
        value: None,
    }
}

fn decode_request(bytes: &[u8]) -> Option<Request<'_>> {
    match Message::decode(bytes) {
        Ok(Message::Request(q)) => Some(q),
        _ => None,
    }
}

fn bench_wire(c: &mut Criterion) {
    let nodes = closer_nodes();
    // Sanity, outside the timed loops: the vector is the request the benches claim.
    let q = decode_request(&FIND_NODE_REQUEST);
    assert!(q.is_some_and(|q| q.internal_command() == Some(InternalCommand::FindNode)));
    let Some(q) = q else { return };
    // A node's send buffer: one MTU-sized stack array, reused for every reply.
    let mut buf = [0u8; 1500];

    let mut g = c.benchmark_group("wire");

    g.bench_function("find_node_request_decode_plus_reply_encode", |b| {
        b.iter(|| {
            let Some(q) = decode_request(black_box(&FIND_NODE_REQUEST)) else { return 0 };
            let n = reply(&q, black_box(&nodes)).encode(&mut buf).unwrap_or(0);
            black_box(&buf);
            n
        })
    });

    g.bench_function("request_decode", |b| {
        b.iter(|| decode_request(black_box(&FIND_NODE_REQUEST)))
    });

    g.bench_function("response_encode", |b| {
        b.iter(|| {
            let n = reply(black_box(&q), black_box(&nodes)).encode(&mut buf).unwrap_or(0);
            black_box(&buf);
            n
        })
    });

    // 20 records of 3 relays each: a full LOOKUP reply, encoded once outside the loop.
    let keys: Vec<[u8; 32]> =
        (0u8..20).map(|i| std::array::from_fn(|j| i ^ u8::try_from(j).unwrap_or(0))).collect();
    let relays: Vec<[SocketAddrV4; 3]> = (0u8..20)
        .map(|i| {
            std::array::from_fn(|j| {
                SocketAddrV4::new(Ipv4Addr::new(10, 2, i, u8::try_from(j).unwrap_or(0)), 49737)
            })
        })
        .collect();
    let records: Vec<PeerRecord<'_>> = keys
        .iter()
        .zip(&relays)
        .map(|(k, r)| PeerRecord { public_key: k, relay_addresses: AddrList::Items(r) })
        .collect();
    let lookup =
        LookupReply { peers: PeerRecords::Items(&records), bump: 1_700_000_000_000 }.to_vec();
    g.bench_function("lookup_reply_decode_20_records", |b| {
        b.iter(|| {
            let Ok(reply) = LookupReply::decode(black_box(&lookup)) else { return 0 };
            let mut relays = 0;
            for peer in reply.peers.iter() {
                black_box(peer.public_key);
                for addr in peer.relay_addresses.iter() {
                    black_box(addr);
                    relays += 1;
                }
            }
            black_box(reply.bump);
            relays
        })
    });

    // A full-size data packet: the header decode must not depend on the payload size.
    let header = UdxHeader {
        type_flags: UDX_DATA,
        data_offset: 0,
        id: 7,
        rwnd: 4 << 20,
        seq: 12_345,
        ack: 678,
    };
    let mut packet = header.to_vec();
    packet.resize(1200, 0xab);
    g.bench_function("udx_header_decode", |b| {
        b.iter(|| UdxPacket::decode(black_box(&packet)).map(|p| p.header))
    });

    g.finish();
}

criterion_group!(benches, bench_wire);
criterion_main!(benches);
