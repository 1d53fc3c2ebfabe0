//! Golden vectors made by the JS reference: every value decodes to the listed fields and
//! re-encodes to the same bytes. Each file's vectors are counted; a missing file or an
//! unchecked vector fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tern_vectors::*;
use tern_wire::handshake::{
    Firewall, Handshake, Holepunch, HolepunchInfo, HolepunchPayload, Mode, NoisePayload,
    PayloadError, RelayThrough, UdxInfo,
};
use tern_wire::hyperdht::{
    Announce, LookupReply, MutablePut, MutableRecord, PeerRecord, PeerRecords, PluginRequest,
};
use tern_wire::rpc::{Message, Request, Response};
use tern_wire::udx::{SackRange, UdxHeader, UdxPacket};
use tern_wire::{Addr6List, AddrList, Decode, Encode, Reader, RelayPair, RelayPairList, Writer};

/// Vectors of hyperdht-messages.json that are cryptographic outputs, checked byte for
/// byte by `crypto/tests/vectors.rs` (which asserts it checks each of them).
const CRYPTO_VECTORS: &[&str] = &[
    "announce-signable",
    "announce-signature",
    "mutable-signable",
    "mutable-signature",
    "immutable-target",
    "holepunch-payload-encrypted",
    "holepunch-token",
];

/// Encodes with `encode` into an exact-size buffer and checks the size prediction.
fn enc<T: Encode>(v: &T) -> Vec<u8> {
    let mut out = vec![0u8; v.encoded_len()];
    let n = v.encode(&mut out).expect("exact buffer suffices");
    assert_eq!(n, out.len(), "encoded_len is exact");
    // One byte short must fail cleanly, not panic.
    if !out.is_empty() {
        let mut short = vec![0u8; out.len() - 1];
        assert!(v.encode(&mut short).is_err());
    }
    out
}

#[test]
fn compact_encoding() {
    let mut f = VectorFile::load("dht/compact-encoding.json");
    for v in f.vectors() {
        let name = v["name"].as_str().unwrap();
        let bytes = unhex(&v["hex"]);
        let inputs = &v["inputs"];
        let mut buf = vec![0u8; bytes.len() + 8];
        let mut w = Writer::new(&mut buf);
        let mut r = Reader::new(&bytes);
        if name.starts_with("uint16") {
            let n = inputs["value"].as_u64().unwrap() as u16;
            w.u16(n);
            assert_eq!(r.u16().unwrap(), n);
        } else if name.starts_with("uint32") {
            let n = inputs["value"].as_u64().unwrap() as u32;
            w.u32(n);
            assert_eq!(r.u32().unwrap(), n);
        } else if name.starts_with("uint") {
            let n = inputs["value"].as_u64().unwrap();
            w.uint(n);
            assert_eq!(r.uint().unwrap(), n);
        } else if name.starts_with("buffer") {
            let data = match inputs.get("bytesHex") {
                Some(h) => unhex(h),
                None => vec![
                    inputs["fillByte"].as_u64().unwrap() as u8;
                    inputs["length"].as_u64().unwrap() as usize
                ],
            };
            w.buffer(&data);
            assert_eq!(r.buffer().unwrap(), &data[..]);
        } else if name.starts_with("fixed") {
            let data = unhex(&inputs["bytesHex"]);
            w.bytes(&data);
            assert_eq!(r.bytes(data.len()).unwrap(), &data[..]);
        } else if name.starts_with("ipv4Address-array") {
            let list = addrs(&inputs["addresses"]);
            AddrList::Items(&list).encode_to(&mut w);
            assert_eq!(AddrList::decode_from(&mut r).unwrap(), AddrList::Items(&list));
        } else if name.starts_with("ipv4Address") {
            let a = addr(&inputs["address"]);
            w.ipv4(&a);
            assert_eq!(r.ipv4().unwrap(), a);
        } else if name.starts_with("ipv6Address") {
            let a = addr6(&inputs["address"]);
            w.ipv6(&a);
            assert_eq!(r.ipv6().unwrap(), a);
        } else if name.starts_with("utf8") {
            let s = inputs["string"].as_str().unwrap();
            w.utf8(s);
            assert_eq!(r.utf8().unwrap(), s);
        } else {
            panic!("unhandled compact-encoding vector {name}");
        }
        let n = w.finish().unwrap();
        assert_eq!(&buf[..n], &bytes[..], "{name}: encoding");
        assert!(r.is_empty(), "{name}: decoder consumed everything");
        f.checked(name);
    }
    assert_eq!(f.assert_all_checked(&[]), 36);
}

fn request_from(
    d: &Value,
    id: &Option<[u8; 32]>,
    token: &Option<[u8; 32]>,
    target: &Option<[u8; 32]>,
    value: &Option<Vec<u8>>,
) -> Request<'static> {
    // Leak the small owned fields so the borrowed message can outlive this helper.
    let leak = |a: &Option<[u8; 32]>| a.map(|a| &*Box::leak(Box::new(a)));
    Request {
        tid: d["tid"].as_u64().unwrap() as u16,
        to: addr(&d["to"]),
        id: leak(id),
        token: leak(token),
        internal: d["internal"].as_bool().unwrap(),
        command: d["command"].as_u64().unwrap(),
        target: leak(target),
        value: value.clone().map(|v| &*Box::leak(v.into_boxed_slice())),
    }
}

fn opt_bytes(v: &Value) -> Option<Vec<u8>> {
    if v.is_null() { None } else { Some(unhex(v)) }
}

/// Checks one dht-rpc datagram against its `decoded` description, both ways.
fn check_rpc_datagram(name: &str, bytes: &[u8], d: &Value) {
    let msg = Message::decode_exact(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let id = opt_arr32(&d["id"]);
    let token = opt_arr32(&d["token"]);
    let value = opt_bytes(&d["value"]);
    let expected = match d["type"].as_str().unwrap() {
        "request" => {
            let target = opt_arr32(&d["target"]);
            Message::Request(request_from(d, &id, &token, &target, &value))
        }
        "response" => {
            let closer = Box::leak(addrs(&d["closerNodes"]).into_boxed_slice());
            Message::Response(Response {
                tid: d["tid"].as_u64().unwrap() as u16,
                to: addr(&d["to"]),
                id: id.as_ref(),
                token: token.as_ref(),
                closer_nodes: AddrList::Items(closer),
                error: d["error"].as_u64().unwrap(),
                value: value.as_deref(),
            })
        }
        t => panic!("{name}: unknown type {t}"),
    };
    assert_eq!(msg, expected, "{name}: decoded fields");
    let flags = match msg {
        Message::Request(q) => q.flags(),
        Message::Response(r) => r.flags(),
    };
    assert_eq!(flags, d["flags"].as_u64().unwrap(), "{name}: flags");
    assert_eq!(enc(&expected), bytes, "{name}: re-encoding");
}

#[test]
fn dht_rpc_messages() {
    let mut f = VectorFile::load("dht/dht-rpc-messages.json");
    for v in f.vectors() {
        let name = v["name"].as_str().unwrap();
        check_rpc_datagram(name, &unhex(&v["hex"]), &v["decoded"]);
        f.checked(name);
    }
    assert_eq!(f.assert_all_checked(&[]), 18);
}

fn peer_json<'a>(
    d: &Value,
    store: &'a mut Vec<std::net::SocketAddrV4>,
    pk: &'a mut [u8; 32],
) -> PeerRecord<'a> {
    *pk = arr32(&d["publicKey"]);
    *store = addrs(&d["relayAddresses"]);
    PeerRecord { public_key: pk, relay_addresses: AddrList::Items(store) }
}

fn check_announce(name: &str, bytes: &[u8], d: &Value) {
    let mut relays = Vec::new();
    let mut pk = [0u8; 32];
    let peer =
        if d["peer"].is_null() { None } else { Some(peer_json(&d["peer"], &mut relays, &mut pk)) };
    let refresh = opt_arr32(&d["refresh"]);
    let sig: Option<[u8; 64]> = opt_bytes(&d["signature"]).map(|s| s.try_into().unwrap());
    let expected = Announce {
        peer,
        refresh: refresh.as_ref(),
        signature: sig.as_ref(),
        bump: d["bump"].as_u64().unwrap(),
    };
    assert_eq!(Announce::decode_exact(bytes).unwrap(), expected, "{name}");
    assert_eq!(enc(&expected), bytes, "{name}");
}

fn check_noise_payload(name: &str, bytes: &[u8], d: &Value) {
    let decoded = NoisePayload::decode_exact(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let version = d["version"].as_u64().unwrap();
    if version != 1 {
        assert_eq!(decoded, NoisePayload { version, ..NoisePayload::default() });
        assert_eq!(enc(&decoded), bytes, "{name}");
        return;
    }
    let relay_pairs: Vec<RelayPair> = d["holepunch"]["relays"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| RelayPair {
                    relay_address: addr(&p["relayAddress"]),
                    peer_address: addr(&p["peerAddress"]),
                })
                .collect()
        })
        .unwrap_or_default();
    let a4 = addrs(&d["addresses4"]);
    let a6: Vec<_> = d["addresses6"].as_array().unwrap().iter().map(addr6).collect();
    let rt_pk = opt_arr32(&d["relayThrough"]["publicKey"]);
    let rt_token = opt_arr32(&d["relayThrough"]["token"]);
    let relay_addresses =
        if d["relayAddresses"].is_null() { None } else { Some(addrs(&d["relayAddresses"])) };
    let expected = NoisePayload {
        version,
        error: [
            PayloadError::None,
            PayloadError::Aborted,
            PayloadError::VersionMismatch,
            PayloadError::TryLater,
        ][d["error"].as_u64().unwrap() as usize],
        firewall: [Firewall::Unknown, Firewall::Open, Firewall::Consistent, Firewall::Random]
            [d["firewall"].as_u64().unwrap() as usize],
        holepunch: if d["holepunch"].is_null() {
            None
        } else {
            Some(HolepunchInfo {
                id: d["holepunch"]["id"].as_u64().unwrap(),
                relays: RelayPairList::Items(&relay_pairs),
            })
        },
        addresses4: AddrList::Items(&a4),
        addresses6: Addr6List::Items(&a6),
        udx: if d["udx"].is_null() {
            None
        } else {
            Some(UdxInfo {
                version: d["udx"]["version"].as_u64().unwrap(),
                reusable_socket: d["udx"]["reusableSocket"].as_bool().unwrap(),
                id: d["udx"]["id"].as_u64().unwrap() as u32,
                seq: d["udx"]["seq"].as_u64().unwrap() as u32,
            })
        },
        secret_stream: d["secretStream"]["version"].as_u64(),
        relay_through: rt_pk.as_ref().map(|pk| RelayThrough {
            version: d["relayThrough"]["version"].as_u64().unwrap(),
            flags: 0,
            public_key: pk,
            token: rt_token.as_ref().unwrap(),
        }),
        relay_addresses: relay_addresses.as_deref().map(AddrList::Items),
    };
    assert_eq!(decoded, expected, "{name}");
    assert_eq!(enc(&expected), bytes, "{name}");
}

fn check_holepunch_payload(name: &str, bytes: &[u8], p: &Value) {
    let a = if p["addresses"].is_null() { None } else { Some(addrs(&p["addresses"])) };
    let token = opt_arr32(&p["token"]);
    let remote_token = opt_arr32(&p["remoteToken"]);
    let expected = HolepunchPayload {
        error: [PayloadError::None, PayloadError::Aborted][p["error"].as_u64().unwrap() as usize],
        firewall: [Firewall::Unknown, Firewall::Open, Firewall::Consistent, Firewall::Random]
            [p["firewall"].as_u64().unwrap() as usize],
        round: p["round"].as_u64().unwrap(),
        connected: p["connected"].as_bool().unwrap(),
        punching: p["punching"].as_bool().unwrap(),
        addresses: a.as_deref().map(AddrList::Items),
        remote_address: opt_addr(&p["remoteAddress"]),
        token: token.as_ref(),
        remote_token: remote_token.as_ref(),
    };
    assert_eq!(HolepunchPayload::decode_exact(bytes).unwrap(), expected, "{name}");
    assert_eq!(enc(&expected), bytes, "{name}");
}

fn mode_of(d: &Value) -> Mode {
    [Mode::FromClient, Mode::FromServer, Mode::FromRelay, Mode::FromSecondRelay, Mode::Reply]
        [d["mode"].as_u64().unwrap() as usize]
}

#[test]
fn hyperdht_messages() {
    let mut f = VectorFile::load("dht/hyperdht-messages.json");
    for v in f.vectors() {
        let name = v["name"].as_str().unwrap();
        if CRYPTO_VECTORS.contains(&name) {
            continue;
        }
        let bytes = unhex(&v["hex"]);
        let d = &v["decoded"];
        match name {
            "peer-record" => {
                let mut relays = Vec::new();
                let mut pk = [0u8; 32];
                let i = &v["inputs"];
                pk.copy_from_slice(&unhex(&i["publicKeyHex"]));
                relays.extend(addrs(&i["relayAddresses"]));
                let rec = PeerRecord { public_key: &pk, relay_addresses: AddrList::Items(&relays) };
                assert_eq!(PeerRecord::decode_exact(&bytes).unwrap(), rec);
                assert_eq!(enc(&rec), bytes);
            }
            "find-peer-reply-value" => {
                let mut relays = Vec::new();
                let mut pk = [0u8; 32];
                let rec = peer_json(d, &mut relays, &mut pk);
                assert_eq!(PeerRecord::decode_exact(&bytes).unwrap(), rec);
                assert_eq!(enc(&rec), bytes);
            }
            "announce-value"
            | "announce-value-refresh-bump"
            | "announce-value-refresh-only"
            | "announce-value-server-self"
            | "unannounce-value" => check_announce(name, &bytes, d),
            "announce-packet" | "announce-accepted-reply" => check_rpc_datagram(name, &bytes, d),
            "lookup-reply-value" | "lookup-reply-value-bump0" => {
                let peers_json = d["peers"].as_array().unwrap();
                let mut stores: Vec<(Vec<_>, [u8; 32])> =
                    peers_json.iter().map(|_| (Vec::new(), [0u8; 32])).collect();
                let records: Vec<PeerRecord<'_>> = stores
                    .iter_mut()
                    .zip(peers_json)
                    .map(|((s, pk), p)| peer_json(p, s, pk))
                    .collect();
                let expected = LookupReply {
                    peers: PeerRecords::Items(&records),
                    bump: d["bump"].as_u64().unwrap(),
                };
                assert_eq!(LookupReply::decode_exact(&bytes).unwrap(), expected, "{name}");
                assert_eq!(enc(&expected), bytes, "{name}");
            }
            "mutable-signable-inner" => {
                // seq uint || value buffer: the bytes the mutable signature hashes.
                let i = &v["inputs"];
                let mut r = Reader::new(&bytes);
                assert_eq!(r.uint().unwrap(), i["seq"].as_u64().unwrap());
                assert_eq!(r.buffer().unwrap(), i["valueUtf8"].as_str().unwrap().as_bytes());
                r.finish().unwrap();
            }
            "mutable-put-value" => {
                let put = MutablePut::decode_exact(&bytes).unwrap();
                assert_eq!(put.seq, 3);
                assert_eq!(put.value, b"mutable value");
                assert_eq!(enc(&put), bytes);
            }
            "mutable-get-request-value" => {
                let mut r = Reader::new(&bytes);
                assert_eq!(r.uint().unwrap(), v["inputs"]["seq"].as_u64().unwrap());
                r.finish().unwrap();
            }
            "mutable-get-reply-value" => {
                let sig: [u8; 64] = unhex(&d["signature"]).try_into().unwrap();
                let value = unhex(&d["value"]);
                let rec = MutableRecord {
                    seq: d["seq"].as_u64().unwrap(),
                    value: &value,
                    signature: &sig,
                };
                assert_eq!(MutableRecord::decode_exact(&bytes).unwrap(), rec);
                assert_eq!(enc(&rec), bytes);
            }
            n if n.starts_with("handshake-") => {
                let noise = unhex(&d["noise"]);
                let hs = Handshake {
                    mode: mode_of(d),
                    noise: &noise,
                    peer_address: opt_addr(&d["peerAddress"]),
                    relay_address: opt_addr(&d["relayAddress"]),
                };
                assert_eq!(Handshake::decode_exact(&bytes).unwrap(), hs, "{name}");
                assert_eq!(enc(&hs), bytes, "{name}");
            }
            n if n.starts_with("holepunch-payload-") => {
                check_holepunch_payload(name, &bytes, &v["inputs"]["payload"])
            }
            n if n.starts_with("holepunch-") => {
                let payload = unhex(&d["payload"]);
                let hp = Holepunch {
                    mode: mode_of(d),
                    id: d["id"].as_u64().unwrap(),
                    payload: &payload,
                    peer_address: opt_addr(&d["peerAddress"]),
                };
                assert_eq!(Holepunch::decode_exact(&bytes).unwrap(), hp, "{name}");
                assert_eq!(enc(&hp), bytes, "{name}");
            }
            n if n.starts_with("noise-payload-") => check_noise_payload(name, &bytes, d),
            "plugin-request-value" => {
                let i = &v["inputs"];
                let value = unhex(&i["valueHex"]);
                let req = PluginRequest {
                    name: i["plugin"].as_str().unwrap(),
                    version: i["version"].as_u64().unwrap(),
                    command: i["command"].as_u64().unwrap(),
                    value: Some(&value),
                };
                assert_eq!(PluginRequest::decode_exact(&bytes).unwrap(), req);
                assert_eq!(enc(&req), bytes);
            }
            other => panic!("unhandled hyperdht vector {other}"),
        }
        f.checked(name);
    }
    assert_eq!(f.assert_all_checked(CRYPTO_VECTORS), 39 - CRYPTO_VECTORS.len());
}

/// Checks a UDX datagram against its `decoded` description and re-encodes the header.
fn check_udx(name: &str, bytes: &[u8], d: &Value) {
    let p = UdxPacket::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let h = UdxHeader {
        type_flags: d["type"].as_u64().unwrap() as u8,
        data_offset: d["dataOffset"].as_u64().unwrap() as u8,
        id: d["streamId"].as_u64().unwrap() as u32,
        rwnd: d["rwnd"].as_u64().unwrap() as u32,
        seq: d["seq"].as_u64().unwrap() as u32,
        ack: d["ack"].as_u64().unwrap() as u32,
    };
    assert_eq!(p.header, h, "{name}");
    assert_eq!(enc(&h), bytes[..20], "{name}");
    let sacks: Vec<SackRange> = p.sack_ranges().collect();
    let expected: Vec<SackRange> = d["sacks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| SackRange {
                    start: r[0].as_u64().unwrap() as u32,
                    end: r[1].as_u64().unwrap() as u32,
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(sacks, expected, "{name}: sack blocks");
    let payload = p.payload().unwrap();
    if sacks.is_empty() {
        assert_eq!(payload.len() as u64, d["payloadLength"].as_u64().unwrap(), "{name}: payload");
    } else {
        // Re-encode the SACK blocks too.
        let mut out = Vec::new();
        for s in &sacks {
            out.extend(enc(s));
        }
        assert_eq!(out, p.body, "{name}: sack encoding");
    }
    if let Some(pad) = d.get("paddingHex") {
        assert_eq!(&p.body[..usize::from(h.data_offset)], &unhex(pad)[..], "{name}: padding");
    }
}

#[test]
fn udx_headers() {
    let files = [
        "udx-basic-session",
        "udx-data-end",
        "udx-destroy",
        "udx-firewall",
        "udx-heartbeat",
        "udx-mtu-probe",
        "udx-relay",
        "udx-sack-retransmit",
        "udx-demux",
    ];
    let mut total = 0;
    for file in files {
        let mut f = VectorFile::load(&format!("transport/{file}.json"));
        for v in f.vectors() {
            let name = v["name"].as_str().unwrap();
            let bytes = unhex(&v["hex"]);
            if file == "udx-demux" {
                // Only datagrams that look like UDX can reach a stream; whether they do
                // depends on the stream table (tern-udx), not on the header codec.
                let looks_udx = UdxHeader::is_udx(&bytes);
                assert_eq!(looks_udx, name.ends_with("stream-id"), "{name}");
                if v["deliveredToStream"].as_bool().unwrap() {
                    assert!(looks_udx);
                }
            } else if v["decoded"].is_null() {
                // Firewall knocks: DATA seq 0 to the stream id named in the description.
                let p = UdxPacket::decode(&bytes).unwrap();
                assert_eq!(p.header.type_flags, tern_wire::udx::UDX_DATA);
                assert_eq!(p.payload().unwrap(), b"knock");
            } else {
                check_udx(name, &bytes, &v["decoded"]);
            }
            f.checked(name);
        }
        total += f.assert_all_checked(&[]);
    }
    assert_eq!(total, 61);
}
