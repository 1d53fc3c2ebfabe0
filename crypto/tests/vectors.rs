//! Golden vectors from the JS reference (testdata/vectors, copied from shared/spec/vectors at
//! a pinned version). Every test loads one file, checks every vector in it that concerns
//! cryptography, and fails if the file is missing or any vector name went unchecked, so a
//! vector added upstream cannot be silently skipped.

// Helpers outside `#[test]` functions are test code too: a malformed vector file should fail
// loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use serde_json::Value;
use tern_crypto::hash::{hash32, hash32_keyed, host_token};
use tern_crypto::noise::dh::{dh_scalar, ed25519_dh};
use tern_crypto::noise::{holepunch_secret, stream_id, unordered_send_key};
use tern_crypto::ns;
use tern_crypto::secretbox;
use tern_crypto::secretstream::frame::{FrameDecoder, encode_frame};
use tern_crypto::secretstream::{SecretStream, UnorderedReceiver, UnorderedSender};
use tern_crypto::sign::verify;
use tern_crypto::signable::{announce_signable, mutable_signable, unannounce_signable};
use tern_crypto::{
    HandshakeResult, IkInitiator, IkResponder, KeyPair, PublicKey, Signature, TokenSecrets,
    XxInitiator, XxResponder, node_id,
};

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors").join(rel)
}

/// A loaded vector file plus the set of vector names a test has checked.
struct File {
    name: String,
    json: Value,
    checked: BTreeSet<String>,
}

impl File {
    fn load(rel: &str) -> Self {
        let p = path(rel);
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("vector file {} missing: {e}", p.display()));
        let json: Value = serde_json::from_str(&text).expect("vector file is JSON");
        Self { name: rel.to_owned(), json, checked: BTreeSet::new() }
    }

    fn vectors(&self) -> Vec<Value> {
        self.json["vectors"].as_array().expect("vectors array").clone()
    }

    fn get(&self, name: &str) -> Value {
        self.vectors()
            .into_iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{}: no vector {name}", self.name))
    }

    fn mark(&mut self, name: &str) {
        self.checked.insert(name.to_owned());
    }

    fn all_names(&self) -> BTreeSet<String> {
        self.vectors().iter().map(|v| v["name"].as_str().expect("name").to_owned()).collect()
    }

    /// For files wholly about crypto: every vector must have been checked.
    fn assert_all_checked(&self) {
        let all = self.all_names();
        assert!(!all.is_empty(), "{}: no vectors", self.name);
        let missed: Vec<_> = all.difference(&self.checked).collect();
        assert!(missed.is_empty(), "{}: unchecked vectors {missed:?}", self.name);
        eprintln!("{}: {} vectors checked", self.name, self.checked.len());
    }
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a hex string: {v}"))).expect("hex")
}

fn a32(v: &Value) -> [u8; 32] {
    hx(v).try_into().expect("32 bytes")
}

fn a64(v: &Value) -> [u8; 64] {
    hx(v).try_into().expect("64 bytes")
}

fn ip(v: &Value) -> Ipv4Addr {
    v.as_str().expect("host").parse().expect("ipv4")
}

#[test]
fn node_ids() {
    let mut f = File::load("dht/node-ids.json");
    for v in f.vectors() {
        let addr = SocketAddrV4::new(
            ip(&v["inputs"]["host"]),
            v["inputs"]["port"].as_u64().unwrap() as u16,
        );
        assert_eq!(tern_crypto::hash::encode_addr(addr).to_vec(), hx(&v["inputs"]["preimageHex"]));
        assert_eq!(node_id(addr), a32(&v["hex"]), "{}", v["name"]);
        f.mark(v["name"].as_str().unwrap());
    }
    f.assert_all_checked();
}

#[test]
fn tokens() {
    let mut f = File::load("dht/tokens.json");
    for v in f.vectors() {
        let name = v["name"].as_str().unwrap().to_owned();
        let inp = &v["inputs"];
        if name.starts_with("rotation-new-slot1") {
            let mut s = TokenSecrets::new(a32(&inp["oldSlot0Hex"]), a32(&inp["oldSlot1Hex"]));
            s.rotate();
            assert_eq!(s.current(), &a32(&v["hex"]));
            assert_eq!(s.previous(), &a32(&inp["newSlot0Hex"]));
        } else {
            let secret = a32(&inp["secretHex"]);
            let host = ip(&inp["host"]);
            let want = a32(&v["hex"]);
            assert_eq!(host_token(host, &secret), want, "{name}");
            // Through TokenSecrets: minted under slot 1, accepted under either slot.
            let current = TokenSecrets::new([0; 32], secret);
            assert_eq!(current.token(host), want);
            assert!(current.check(host, &want));
            let previous = TokenSecrets::new(secret, [0; 32]);
            assert!(previous.check(host, &want));
            assert!(!previous.check(Ipv4Addr::new(1, 2, 3, 4), &want));
        }
        f.mark(&name);
    }
    f.assert_all_checked();
}

#[test]
fn hyperdht_crypto() {
    let mut f = File::load("dht/hyperdht-crypto.json");
    for v in f.vectors() {
        let name = v["name"].as_str().unwrap().to_owned();
        let want = a32(&v["hex"]);
        let inp = &v["inputs"];
        match name.as_str() {
            "ns-base" => {
                assert_eq!(hash32(inp["string"].as_str().unwrap().as_bytes()), want);
                assert_eq!(ns::NS_BASE, want);
            }
            n if n.starts_with("ns-") => {
                let cmd = inp["command"].as_u64().unwrap() as u8;
                assert_eq!(ns::namespace("hyperswarm/dht", cmd), want);
                let constant = match &n[3..] {
                    "ANNOUNCE" => ns::NS_ANNOUNCE,
                    "UNANNOUNCE" => ns::NS_UNANNOUNCE,
                    "MUTABLE_PUT" => ns::NS_MUTABLE_PUT,
                    "PEER_HANDSHAKE" => ns::NS_PEER_HANDSHAKE,
                    "PEER_HOLEPUNCH" => ns::NS_PEER_HOLEPUNCH,
                    "PLUGIN" => ns::NS_PLUGIN,
                    other => panic!("unknown namespace {other}"),
                };
                assert_eq!(constant, want, "{n}");
            }
            n if n.starts_with("secret-stream-ns-") => {
                let i = inp["index"].as_u64().unwrap() as u8;
                assert_eq!(ns::namespace("hyperswarm/secret-stream", i), want);
                let constant =
                    [ns::NS_SS_INITIATOR, ns::NS_SS_RESPONDER, ns::NS_SS_SEND][i as usize];
                assert_eq!(constant, want, "{n}");
            }
            n if n.starts_with("keypair-seed-") => {
                let kp = KeyPair::from_seed(&a32(&inp["seedHex"]));
                assert_eq!(kp.public_key().0, want, "{n}");
                assert_eq!(kp.to_libsodium_secret_key().to_vec(), hx(&v["secretKeyHex"]));
                assert_eq!(kp.public_key().target(), a32(&v["targetHex"]));
                assert_eq!(*dh_scalar(kp.seed()), a32(&v["dhScalarHex"]));
            }
            "target-of-publickey-seed-1" => {
                assert_eq!(PublicKey(a32(&inp["publicKeyHex"])).target(), want);
            }
            "ed25519-dh-1-2" => {
                let seed = a32(&inp["secretSeedHex"]);
                assert_eq!(*dh_scalar(&seed), a32(&inp["scalarHex"]));
                let peer = a32(&inp["peerPublicKeyHex"]);
                assert_eq!(ed25519_dh(&seed, &peer), Ok(want));
                // Symmetric: the peer (seed 2) computes the same point.
                let me = KeyPair::from_seed(&seed).public_key();
                assert_eq!(ed25519_dh(&[2; 32], &me.0), Ok(want));
            }
            other => panic!("unexpected vector {other}"),
        }
        f.mark(&name);
    }
    f.assert_all_checked();
}

#[test]
fn hyperdht_messages_crypto() {
    const CRYPTO: [&str; 8] = [
        "announce-signable",
        "announce-signature",
        "announce-value-refresh-bump",
        "unannounce-value",
        "mutable-signable",
        "mutable-signature",
        "holepunch-payload-encrypted",
        "holepunch-token",
    ];
    let mut f = File::load("dht/hyperdht-messages.json");
    let seed1 = KeyPair::from_seed(&[1; 32]);

    let v = f.get("announce-signable");
    let inp = &v["inputs"];
    let target = a32(&inp["targetHex"]);
    let storing = SocketAddrV4::new(ip(&inp["storingNode"]["host"]), 49737);
    let id = a32(&inp["nodeIdHex"]);
    assert_eq!(node_id(storing), id);
    let token = a32(&inp["tokenHex"]);
    let record = hx(&inp["peerRecordHex"]);
    assert!(inp["refresh"].is_null());
    let signable = announce_signable(&target, &id, &token, &record, None);
    assert_eq!(signable.to_vec(), hx(&v["hex"]));
    f.mark("announce-signable");

    let v = f.get("announce-signature");
    assert_eq!(hx(&v["inputs"]["secretKeyHex"]), seed1.to_libsodium_secret_key().to_vec());
    let sig = seed1.sign(&signable);
    assert_eq!(sig.0.to_vec(), hx(&v["hex"]));
    assert_eq!(verify(&seed1.public_key(), &signable, &sig), Ok(()));
    f.mark("announce-signature");

    // Refresh + bump: same storing node and token, a record without relays, the refresh bytes
    // signed, the bump not.
    let v = f.get("announce-value-refresh-bump");
    let refresh = a32(&v["inputs"]["refreshHex"]);
    let mut bare_record = seed1.public_key().0.to_vec();
    bare_record.push(0); // empty relayAddresses array
    let s = announce_signable(&target, &id, &token, &bare_record, Some(&refresh));
    assert_eq!(s.to_vec(), hx(&v["inputs"]["signableHex"]));
    let sig = Signature(a64(&v["decoded"]["signature"]));
    assert_eq!(seed1.sign(&s), sig);
    assert_eq!(verify(&seed1.public_key(), &s, &sig), Ok(()));
    assert!(hex::encode(hx(&v["hex"])).contains(&hex::encode(sig.0)));
    f.mark("announce-value-refresh-bump");

    let v = f.get("unannounce-value");
    let inp = &v["inputs"];
    let s = unannounce_signable(
        &a32(&inp["targetHex"]),
        &a32(&inp["nodeIdHex"]),
        &a32(&inp["tokenHex"]),
        &bare_record,
        None,
    );
    assert_eq!(s.to_vec(), hx(&inp["signableHex"]));
    let sig = Signature(a64(&v["decoded"]["signature"]));
    assert_eq!(seed1.sign(&s), sig);
    assert_eq!(verify(&seed1.public_key(), &s, &sig), Ok(()));
    // Under the other namespace the same signature must not verify.
    let wrong_ns = announce_signable(
        &a32(&inp["targetHex"]),
        &a32(&inp["nodeIdHex"]),
        &a32(&inp["tokenHex"]),
        &bare_record,
        None,
    );
    assert!(verify(&seed1.public_key(), &wrong_ns, &sig).is_err());
    f.mark("unannounce-value");

    let inner = f.get("mutable-signable-inner");
    let seq = inner["inputs"]["seq"].as_u64().unwrap();
    let value = inner["inputs"]["valueUtf8"].as_str().unwrap().as_bytes().to_vec();
    let v = f.get("mutable-signable");
    let s = mutable_signable(seq, &value);
    assert_eq!(s.to_vec(), hx(&v["hex"]));
    assert_eq!(s[32..], hash32(&hx(&inner["hex"])));
    f.mark("mutable-signable");

    let v = f.get("mutable-signature");
    let sig = Signature(a64(&v["hex"]));
    assert_eq!(seed1.sign(&s), sig);
    assert_eq!(verify(&seed1.public_key(), &s, &sig), Ok(()));
    let mut tampered = sig;
    tampered.0[63] ^= 0x01;
    assert!(verify(&seed1.public_key(), &s, &tampered).is_err());
    f.mark("mutable-signature");

    let v = f.get("holepunch-payload-encrypted");
    let inp = &v["inputs"];
    let key = a32(&inp["holepunchSecretHex"]);
    let nonce: [u8; 24] = hx(&inp["nonceHex"]).try_into().unwrap();
    let plain = hx(&inp["plaintextHex"]);
    let boxed = secretbox::seal_to_vec(&key, &nonce, &plain);
    assert_eq!(boxed, hx(&v["hex"]));
    assert_eq!(secretbox::open_to_vec(&key, &boxed), Ok(plain));
    let mut bad = boxed.clone();
    bad[30] ^= 1;
    assert!(secretbox::open_to_vec(&key, &bad).is_err());
    f.mark("holepunch-payload-encrypted");

    let v = f.get("holepunch-token");
    let host = ip(&v["inputs"]["host"]);
    let secret = a32(&v["inputs"]["localSecretHex"]);
    assert_eq!(secretbox::holepunch_token(host, &secret), a32(&v["hex"]));
    assert_eq!(host_token(host, &secret), hash32_keyed(b"203.0.113.7", &secret));
    f.mark("holepunch-token");

    let checked: Vec<&str> = f.checked.iter().map(String::as_str).collect();
    let mut want = CRYPTO.to_vec();
    want.sort_unstable();
    assert_eq!(checked, want);
    let all = f.all_names();
    for name in CRYPTO {
        assert!(all.contains(name), "hyperdht-messages.json lost vector {name}");
    }
    eprintln!("{}: {} crypto vectors checked", f.name, f.checked.len());
}

/// Runs the IK handshake of `noise-ik.json`-shaped inputs; returns both messages and results.
fn run_ik(
    i_seed: &[u8; 32],
    r_seed: &[u8; 32],
    i_eph: &[u8; 32],
    r_eph: &[u8; 32],
    i_payload: &[u8],
    r_payload: &[u8],
) -> (Vec<u8>, Vec<u8>, HandshakeResult, HandshakeResult) {
    let server = KeyPair::from_seed(r_seed).public_key();
    let mut ini = IkInitiator::new(i_seed, &server, i_eph).unwrap();
    let mut res = IkResponder::new(r_seed, r_eph).unwrap();
    let m1 = ini.write_message_1(i_payload).unwrap();
    let (client, p1) = res.read_message_1(&m1).unwrap();
    assert_eq!(client, KeyPair::from_seed(i_seed).public_key());
    assert_eq!(p1, i_payload);
    let (m2, rr) = res.write_message_2(r_payload).unwrap();
    let (p2, ir) = ini.read_message_2(&m2).unwrap();
    assert_eq!(p2, r_payload);
    assert_eq!(ir.remote_public_key, server);
    (m1, m2, ir, rr)
}

#[test]
fn noise_ik() {
    let mut f = File::load("dht/noise-ik.json");
    let v1 = f.get("ik-message-1");
    let inp = &v1["inputs"];
    assert_eq!(inp["protocolName"], "Noise_IK_Ed25519_ChaChaPoly_BLAKE2b");
    assert_eq!(a32(&inp["prologueHex"]), ns::NS_PEER_HANDSHAKE);
    let i_seed = a32(&inp["initiatorStaticSeedHex"]);
    let r_seed = a32(&inp["responderStaticSeedHex"]);
    let i_eph = a32(&inp["initiatorEphemeralSeedHex"]);
    let r_eph = a32(&inp["responderEphemeralSeedHex"]);
    assert_eq!(
        KeyPair::from_seed(&i_seed).public_key().0,
        a32(&inp["initiatorStaticPublicKeyHex"])
    );
    assert_eq!(
        KeyPair::from_seed(&r_seed).public_key().0,
        a32(&inp["responderStaticPublicKeyHex"])
    );
    assert_eq!(
        KeyPair::from_seed(&i_eph).public_key().0,
        a32(&inp["initiatorEphemeralPublicKeyHex"])
    );
    assert_eq!(
        KeyPair::from_seed(&r_eph).public_key().0,
        a32(&inp["responderEphemeralPublicKeyHex"])
    );
    let (m1, m2, ir, rr) = run_ik(
        &i_seed,
        &r_seed,
        &i_eph,
        &r_eph,
        &hx(&inp["initiatorPayloadHex"]),
        &hx(&inp["responderPayloadHex"]),
    );
    assert_eq!(m1, hx(&v1["hex"]));

    // snow does not expose h/ck/k between operations. What the trace pins down is still
    // checked: every DH output of the trace (recomputed with our DH), every ciphertext of the
    // trace appears in the messages at its place, and the final h is the handshake hash.
    let check_trace = |trace: &Value, msgs: &[&[u8]]| {
        let all: Vec<u8> = msgs.concat();
        let (i_kp, r_kp) = (KeyPair::from_seed(&i_seed), KeyPair::from_seed(&r_seed));
        let (ie_kp, re_kp) = (KeyPair::from_seed(&i_eph), KeyPair::from_seed(&r_eph));
        let dhs = [
            ed25519_dh(&i_eph, &r_kp.public_key().0).unwrap(), // es
            ed25519_dh(&i_seed, &r_kp.public_key().0).unwrap(), // ss
            ed25519_dh(&r_eph, &ie_kp.public_key().0).unwrap(), // ee
            ed25519_dh(&r_eph, &i_kp.public_key().0).unwrap(), // se
        ];
        let _ = re_kp;
        let mut dh_i = 0;
        let mut last_h = Vec::new();
        for step in trace.as_array().unwrap() {
            match step["op"].as_str().unwrap() {
                "mixKey" => {
                    assert_eq!(a32(&step["dhHex"]), dhs[dh_i], "DH #{dh_i}");
                    dh_i += 1;
                }
                "encryptAndHash" | "decryptAndHash" => {
                    let ct = hex::encode(hx(&step["ciphertextHex"]));
                    assert!(hex::encode(&all).contains(&ct), "ciphertext not in messages");
                }
                "mixHash" => {}
                other => panic!("unknown op {other}"),
            }
            if let Some(h) = step.get("hHex") {
                last_h = hx(h);
            }
        }
        assert_eq!(dh_i, 4);
        assert_eq!(last_h, ir.hash.to_vec());
    };
    check_trace(&v1["traceInitiator"], &[&m1, &m2]);
    f.mark("ik-message-1");

    let v2 = f.get("ik-message-2");
    assert_eq!(m2, hx(&v2["hex"]));
    check_trace(&v2["traceResponder"], &[&m1, &m2]);
    f.mark("ik-message-2");

    let v = f.get("ik-handshake-hash");
    assert_eq!(ir.hash, a64(&v["hex"]));
    assert_eq!(rr.hash, ir.hash);
    f.mark("ik-handshake-hash");

    let v = f.get("ik-initiator-tx");
    assert_eq!(ir.tx, a32(&v["hex"]));
    assert_eq!(rr.rx, a32(&v["responderRxHex"]));
    f.mark("ik-initiator-tx");

    let v = f.get("ik-initiator-rx");
    assert_eq!(ir.rx, a32(&v["hex"]));
    assert_eq!(rr.tx, a32(&v["responderTxHex"]));
    f.mark("ik-initiator-rx");

    let v = f.get("ik-holepunch-secret");
    assert_eq!(ir.holepunch_secret(), a32(&v["hex"]));
    assert_eq!(holepunch_secret(&rr.hash), a32(&v["hex"]));
    f.mark("ik-holepunch-secret");

    let v = f.get("ik-stream-id-initiator");
    assert_eq!(ir.local_stream_id(), a32(&v["hex"]));
    assert_eq!(rr.remote_stream_id(), a32(&v["hex"]));
    f.mark("ik-stream-id-initiator");

    let v = f.get("ik-stream-id-responder");
    assert_eq!(stream_id(&ir.hash, false), a32(&v["hex"]));
    assert_eq!(rr.local_stream_id(), a32(&v["hex"]));
    f.mark("ik-stream-id-responder");

    f.assert_all_checked();
}

/// Compares each side's produced frames, in order, with the file's frame vectors (`from` =
/// "initiator" / "responder"); marks every frame vector it matched.
fn check_frames(f: &mut File, initiator: &[Vec<u8>], responder: &[Vec<u8>]) {
    let (mut i, mut r) = (initiator.iter(), responder.iter());
    for v in f.vectors() {
        let name = v["name"].as_str().unwrap().to_owned();
        let produced = match v["from"].as_str().unwrap() {
            "initiator" => i.next(),
            "responder" => r.next(),
            other => panic!("{name}: unknown side {other}"),
        };
        let produced = produced.unwrap_or_else(|| panic!("{name}: side produced too few frames"));
        let want = hx(&v["hex"]);
        assert_eq!(hex::encode(produced), hex::encode(&want), "{name}");
        assert_eq!(want.len() as u64, v["totalLength"].as_u64().unwrap());
        assert_eq!(want.len() as u64 - 3, v["declaredLength"].as_u64().unwrap());
        f.mark(&name);
    }
    assert!(i.next().is_none() && r.next().is_none(), "more frames produced than in the file");
}

/// Feeds `frames` to `stream` as one byte stream cut into 7-byte chunks, returning the
/// decrypted messages.
fn receive(stream: &mut SecretStream, frames: &[Vec<u8>]) -> Vec<String> {
    let wire = frames.concat();
    let mut got = Vec::new();
    for chunk in wire.chunks(7) {
        stream.handle_data(chunk).unwrap();
        while let Some(m) = stream.poll_message().unwrap() {
            got.push(hex::encode(m));
        }
    }
    got
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(body, &mut out).unwrap();
    out
}

#[test]
fn secret_stream_precompleted_ik() {
    let mut f = File::load("transport/secret-stream-precompleted-ik.json");
    let keys = f.json["keys"].clone();
    let (c, s) = (&keys["client"], &keys["server"]);
    let (c_seed, s_seed) = (a32(&c["seed"]), a32(&s["seed"]));
    let (c_eph, s_eph) = (a32(&c["ephemeralSeed"]), a32(&s["ephemeralSeed"]));
    assert_eq!(KeyPair::from_seed(&c_seed).public_key().0, a32(&c["publicKey"]));
    assert_eq!(KeyPair::from_seed(&s_seed).public_key().0, a32(&s["publicKey"]));
    assert_eq!(a32(&keys["noisePrologue"]), ns::NS_PEER_HANDSHAKE);
    let (m1_want, m2_want) = (hx(&keys["ikMessage1Hex"]), hx(&keys["ikMessage2Hex"]));

    // The payloads are not in the file: recover them by decrypting the real messages, then
    // check that our handshake with the pinned ephemerals writes exactly those bytes.
    let (_, p1) = IkResponder::new(&s_seed, &s_eph).unwrap().read_message_1(&m1_want).unwrap();
    let server = PublicKey(a32(&s["publicKey"]));
    let mut ini = IkInitiator::new(&c_seed, &server, &c_eph).unwrap();
    let m1 = ini.write_message_1(&p1).unwrap();
    assert_eq!(m1, m1_want);
    let mut res = IkResponder::new(&s_seed, &s_eph).unwrap();
    let (client, _) = res.read_message_1(&m1).unwrap();
    assert_eq!(client.0, a32(&c["publicKey"]));
    let (p2, ir) = ini.read_message_2(&m2_want).unwrap();
    let (m2, rr) = res.write_message_2(&p2).unwrap();
    assert_eq!(m2, m2_want);

    assert_eq!(ir.hash, a64(&keys["handshakeHash"]));
    assert_eq!(rr.hash, ir.hash);
    assert_eq!(ir.tx, a32(&keys["clientTx"]));
    assert_eq!(ir.rx, a32(&keys["clientRx"]));
    assert_eq!(rr.tx, a32(&keys["serverTx"]));
    assert_eq!(rr.rx, a32(&keys["serverRx"]));
    assert_eq!(ir.holepunch_secret(), a32(&keys["holepunchSecret"]));
    assert_eq!(ir.remote_stream_id(), a32(&keys["clientRemoteId"]));
    assert_eq!(rr.remote_stream_id(), a32(&keys["serverRemoteId"]));

    let header = |v: &Value| -> [u8; 24] { hx(v).try_into().unwrap() };
    let mut cs = SecretStream::new(&ir, &header(&c["secretstreamHeader"]));
    let mut ss = SecretStream::new(&rr, &header(&s["secretstreamHeader"]));
    let to_server = strings(&f.json["receivedByServer"]);
    let to_client = strings(&f.json["receivedByClient"]);
    let mut c_frames = vec![cs.header_frame().to_vec()];
    for m in &to_server {
        let mut out = Vec::new();
        cs.encrypt_frame(&hex::decode(m).unwrap(), &mut out).unwrap();
        c_frames.push(out);
    }
    let mut s_frames = vec![ss.header_frame().to_vec()];
    for m in &to_client {
        let mut out = Vec::new();
        ss.encrypt_frame(&hex::decode(m).unwrap(), &mut out).unwrap();
        s_frames.push(out);
    }
    check_frames(&mut f, &c_frames, &s_frames);
    assert_eq!(receive(&mut ss, &c_frames), to_server);
    assert_eq!(receive(&mut cs, &s_frames), to_client);
    f.assert_all_checked();
}

#[test]
fn secret_stream_xx_session() {
    let mut f = File::load("transport/secret-stream-xx-session.json");
    let keys = f.json["keys"].clone();
    let (ik, rk) = (&keys["initiator"], &keys["responder"]);
    assert_eq!(f.json["pins"]["initiator"]["ephemeralSeed"], ik["ephemeralSeed"]);
    assert_eq!(f.json["pins"]["responder"]["ephemeralSeed"], rk["ephemeralSeed"]);
    let (i_seed, r_seed) = (a32(&ik["seed"]), a32(&rk["seed"]));
    assert_eq!(
        KeyPair::from_seed(&i_seed).to_libsodium_secret_key().to_vec(),
        hx(&ik["secretKey"])
    );
    assert_eq!(
        KeyPair::from_seed(&r_seed).to_libsodium_secret_key().to_vec(),
        hx(&rk["secretKey"])
    );

    // Handshake, frame by frame.
    let mut xi = XxInitiator::new(&i_seed, &a32(&ik["ephemeralSeed"])).unwrap();
    let mut xr = XxResponder::new(&r_seed, &a32(&rk["ephemeralSeed"])).unwrap();
    let m1 = xi.write_message_1(&[]).unwrap();
    assert!(xr.read_message_1(&m1).unwrap().is_empty());
    let m2 = xr.write_message_2(&[]).unwrap();
    let (rs, p2) = xi.read_message_2(&m2).unwrap();
    assert!(p2.is_empty());
    assert_eq!(rs.0, a32(&keys["initiatorRemotePublicKey"]));
    let (m3, ir) = xi.write_message_3(&[]).unwrap();

    // The responder reads the initiator's byte stream through one FrameDecoder: message 1,
    // message 3 and the header frame right behind it, then hands the decoder to its stream.
    let header = |v: &Value| -> [u8; 24] { hx(v).try_into().unwrap() };
    let mut is = SecretStream::new(&ir, &header(&ik["secretstreamHeader"]));
    let mut dec = FrameDecoder::new();
    dec.handle_data(&frame(&m1)).unwrap();
    assert_eq!(dec.poll_frame().unwrap().map(|b| b.to_vec()), Some(m1.clone()));
    let mut tail = frame(&m3);
    tail.extend_from_slice(&is.header_frame());
    dec.handle_data(&tail).unwrap();
    let body3 = dec.poll_frame().unwrap().unwrap().to_vec();
    let (p3, rr) = xr.read_message_3(&body3).unwrap();
    assert!(p3.is_empty());
    assert_eq!(dec.buffered(), is.header_frame().as_slice());
    assert_eq!(rr.remote_public_key.0, a32(&keys["responderRemotePublicKey"]));
    assert_eq!(ir.hash, a64(&keys["handshakeHash"]));
    assert_eq!(rr.hash, ir.hash);
    assert_eq!(keys["responderHandshakeHashEqual"], true);
    assert_eq!(ir.local_stream_id(), a32(&keys["initiatorStreamId"]));
    assert_eq!(rr.local_stream_id(), a32(&keys["responderStreamId"]));

    let mut rs_stream = SecretStream::with_decoder(&rr, &header(&rk["secretstreamHeader"]), dec);

    // Data frames in the order of `writes`.
    let mut i_frames = vec![frame(&m1), frame(&m3), is.header_frame().to_vec()];
    let mut r_frames = vec![frame(&m2), rs_stream.header_frame().to_vec()];
    let mut i_data = Vec::new();
    let mut r_data = Vec::new();
    for w in f.json["writes"].as_array().unwrap().clone() {
        let mut out = Vec::new();
        let plain = hx(&w["plaintextHex"]);
        match w["side"].as_str().unwrap() {
            "initiator" => {
                is.encrypt_frame(&plain, &mut out).unwrap();
                i_data.push(out.clone());
                i_frames.push(out);
            }
            "responder" => {
                rs_stream.encrypt_frame(&plain, &mut out).unwrap();
                r_data.push(out.clone());
                r_frames.push(out);
            }
            other => panic!("unknown side {other}"),
        }
    }
    check_frames(&mut f, &i_frames, &r_frames);
    // The keepalive frame is the 20-byte one.
    assert!(i_frames.iter().any(|fr| fr.len() == 20 && fr[..3] == [17, 0, 0]));

    // The responder's decoder already holds the initiator's header frame.
    assert_eq!(receive(&mut rs_stream, &i_data), strings(&f.json["receivedByResponder"]));
    let mut r_wire = vec![rs_stream.header_frame().to_vec()];
    r_wire.extend(r_data);
    assert_eq!(receive(&mut is, &r_wire), strings(&f.json["receivedByInitiator"]));

    // Unordered messages.
    let uk = &keys["unorderedKeys"];
    assert_eq!(unordered_send_key(&ir.hash, true), a32(&uk["initiatorSendKey"]));
    assert_eq!(unordered_send_key(&ir.hash, false), a32(&uk["initiatorRecvKey"]));
    assert_eq!(unordered_send_key(&rr.hash, false), a32(&uk["responderSendKey"]));
    assert_eq!(unordered_send_key(&rr.hash, true), a32(&uk["responderRecvKey"]));
    let start: [u8; 8] = hx(&ik["unorderedCounterStart"]).try_into().unwrap();
    assert_eq!(
        hx(&f.json["pins"]["responder"]["unorderedCounterStart"]),
        hx(&rk["unorderedCounterStart"])
    );
    let mut sender = UnorderedSender::new(&ir.hash, true, start);
    let receiver = UnorderedReceiver::new(&rr.hash, false);
    let boxes = strings(&f.json["unorderedBoxes"]);
    let opened = strings(&f.json["unorderedOpenedByResponder"]);
    assert_eq!(boxes.len(), opened.len());
    for (b, o) in boxes.iter().zip(&opened) {
        let mut env = Vec::new();
        sender.seal(&hex::decode(o).unwrap(), &mut env).unwrap();
        assert_eq!(&hex::encode(&env), b);
        let mut out = Vec::new();
        receiver.open(&env, &mut out).unwrap();
        assert_eq!(&hex::encode(out), o);
    }
    f.assert_all_checked();
}
