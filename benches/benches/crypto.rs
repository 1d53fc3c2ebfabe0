//! tern-crypto micro-benchmarks: the per-request, per-record and per-connection crypto costs
//! of a node.
//!
//! * `crypto/node_id`: `H32` of a 6-byte address, recomputed for nearly every request.
//! * `crypto/token`, `crypto/token_check`, `crypto/token_check_previous`: minting a
//!   round-trip token for a reply, and accepting one on a write (current epoch: one keyed
//!   hash; previous epoch: two, the worst case for a valid token).
//! * `crypto/ed25519_sign`, `crypto/ed25519_verify_single`: one signature over a 64-byte
//!   signable (the size hyperdht signs).
//! * `crypto/ed25519_verify_batch_64` and `crypto/ed25519_verify_64_single`: the same 64
//!   (key, signable, signature) triples, 64 distinct signers, verified as one batch and one
//!   by one. Both report `Throughput::Elements(64)`, so criterion's elem/s is the
//!   per-signature rate and time / 64 the per-signature cost. Target: batch < half of single.
//! * `crypto/noise_ik_handshake`: a whole HyperDHT Noise IK handshake, both sides in one
//!   thread: constructing initiator and responder from static key pairs derived once (as a
//!   node keeps its own), message 1 write + read, message 2 write + read, ~20-byte payloads
//!   each way (an encoded hyperdht `NoisePayload`).
//! * `crypto/secretstream_push_pull/{1KiB,64KiB}`: one message pushed then pulled (in place),
//!   `Throughput::Bytes(message size)`: bytes / (push + pull time), so about half of the
//!   per-direction rate. `crypto/secretstream_push/64KiB` and
//!   `crypto/secretstream_pull/64KiB` time one direction each. Target: >= 1 GB/s at 64 KiB.
//! * `crypto/secretstream_seal_copy_ring/64KiB` and `crypto/secretstream_seal_b2b/64KiB`:
//!   a writer's frame sealed by ring in place after a copy, or by ChaCha20 then Poly1305
//!   out of place; `crypto/chacha20_b2b/64KiB` and `crypto/poly1305/64KiB` time the
//!   latter's two passes apart.
//!
//! Every key, seed and nonce is fixed: the crate is sans-IO and the timings do not depend on
//! the values.
//!
//! Run: `cargo bench -p tern-benches --bench crypto -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use tern_crypto::secretstream::cipher::{ABYTES, HEADER_LEN, PullStream, PushStream, TAG_MESSAGE};
use tern_crypto::sign::{self, BatchItem};
use tern_crypto::{IkInitiator, IkResponder, KeyPair, PublicKey, Signature, TokenSecrets, node_id};

/// Signatures per batch: the batch verification target is stated for 64.
const BATCH: usize = 64;

/// Handshake payload size: a typical encoded hyperdht `NoisePayload` (version, firewall,
/// one IPv4 address, udx and secret-stream info) is about 20 bytes.
const PAYLOAD_LEN: usize = 20;

/// A 32-byte seed derived from a small number, distinct per `n`.
fn seed(n: u8) -> [u8; 32] {
    std::array::from_fn(|i| n.wrapping_mul(31) ^ u8::try_from(i).unwrap_or(0))
}

/// A 64-byte signable (hyperdht signs `H64`-sized signables), distinct per `n`.
fn signable(n: u8) -> [u8; 64] {
    std::array::from_fn(|i| n ^ u8::try_from(i).unwrap_or(0).wrapping_mul(7))
}

/// `(public key, signable, signature)` triples from `count` distinct signers.
fn signed(count: usize) -> Vec<(PublicKey, [u8; 64], Signature)> {
    (0..count)
        .map(|i| {
            let n = u8::try_from(i).unwrap_or(u8::MAX);
            let kp = KeyPair::from_seed(&seed(n));
            let msg = signable(n);
            (kp.public_key(), msg, kp.sign(&msg))
        })
        .collect()
}

fn bench_hash_token(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto");

    let addr = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 77), 49737);
    g.bench_function("node_id", |b| b.iter(|| node_id(black_box(addr))));

    let token_seed = seed(200);
    let secrets = TokenSecrets::for_epoch(&token_seed, 42);
    let host = Ipv4Addr::new(203, 0, 113, 77);
    g.bench_function("token", |b| b.iter(|| black_box(&secrets).token(black_box(host))));

    let current = secrets.token(host);
    let previous = TokenSecrets::for_epoch(&token_seed, 41).token(host);
    // Sanity, outside the timed loops: both tokens are accepted.
    assert!(secrets.check(host, &current) && secrets.check(host, &previous));
    g.bench_function("token_check", |b| {
        b.iter(|| black_box(&secrets).check(black_box(host), black_box(&current)))
    });
    g.bench_function("token_check_previous", |b| {
        b.iter(|| black_box(&secrets).check(black_box(host), black_box(&previous)))
    });

    g.finish();
}

fn bench_ed25519(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto");

    let kp = KeyPair::from_seed(&seed(1));
    let msg = signable(1);
    g.bench_function("ed25519_sign", |b| b.iter(|| black_box(&kp).sign(black_box(&msg))));

    let pk = kp.public_key();
    let sig = kp.sign(&msg);
    assert!(sign::verify(&pk, &msg, &sig).is_ok());
    g.bench_function("ed25519_verify_single", |b| {
        b.iter(|| sign::verify(black_box(&pk), black_box(&msg), black_box(&sig)))
    });

    let triples = signed(BATCH);
    let items: Vec<BatchItem<'_>> = triples
        .iter()
        .map(|(public_key, message, signature)| BatchItem { public_key, message, signature })
        .collect();
    let mut verdicts = Vec::with_capacity(BATCH);
    // Sanity: every item verifies, so the batch bench times the all-valid path (one
    // multiscalar multiplication, no bisection).
    assert_eq!(sign::verify_batch(&items, &mut verdicts), BATCH);

    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("ed25519_verify_batch_64", |b| {
        b.iter(|| sign::verify_batch(black_box(&items), black_box(&mut verdicts)))
    });
    g.bench_function("ed25519_verify_64_single", |b| {
        b.iter(|| {
            black_box(&triples)
                .iter()
                .filter(|(pk, msg, sig)| sign::verify(pk, msg, sig).is_ok())
                .count()
        })
    });

    g.finish();
}

fn bench_noise(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto");

    // Static key pairs derived once, as a node keeps its own.
    let client_key = KeyPair::from_seed(&seed(10));
    let server_key = KeyPair::from_seed(&seed(11));
    let server_pk = server_key.public_key();
    let client_eph = seed(12);
    let server_eph = seed(13);
    let client_payload = [0x5a; PAYLOAD_LEN];
    let server_payload = [0xa5; PAYLOAD_LEN];

    let handshake = |client_key: &KeyPair,
                     server_key: &KeyPair,
                     server_pk: &PublicKey,
                     client_eph: &[u8; 32],
                     server_eph: &[u8; 32]| {
        let mut initiator = IkInitiator::with_key_pair(client_key, server_pk, client_eph).ok()?;
        let mut responder = IkResponder::with_key_pair(server_key, server_eph).ok()?;
        let m1 = initiator.write_message_1(&client_payload).ok()?;
        let (client_pk, p1) = responder.read_message_1(&m1).ok()?;
        let (m2, server_result) = responder.write_message_2(&server_payload).ok()?;
        let (p2, client_result) = initiator.read_message_2(&m2).ok()?;
        Some((client_pk, p1, p2, server_result, client_result))
    };

    // Sanity: the handshake completes with matching keys and the payloads arrive.
    let done = handshake(&client_key, &server_key, &server_pk, &client_eph, &server_eph);
    assert!(done.is_some_and(|(_, p1, p2, s, c)| {
        p1 == client_payload && p2 == server_payload && s.tx == c.rx && s.hash == c.hash
    }));

    g.bench_function("noise_ik_handshake", |b| {
        b.iter(|| {
            handshake(
                black_box(&client_key),
                black_box(&server_key),
                black_box(&server_pk),
                black_box(&client_eph),
                black_box(&server_eph),
            )
        })
    });

    g.finish();
}

fn bench_secretstream(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto");

    let key = seed(20);
    let header: [u8; HEADER_LEN] = std::array::from_fn(|i| u8::try_from(i).unwrap_or(0) ^ 0x3c);

    for (name, len) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        // `[tag slot] [message] [MAC slot]`, encrypted and decrypted in place.
        let mut buf = vec![0xabu8; len + ABYTES];
        let mut push = PushStream::new(&key, &header);
        let mut pull = PullStream::new(&key, &header);
        // Sanity: the pair stays in lockstep.
        assert!(push.push_in_place(TAG_MESSAGE, &mut buf).is_ok());
        assert_eq!(pull.pull_in_place(&mut buf), Ok(TAG_MESSAGE));

        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("secretstream_push_pull/{name}"), |b| {
            b.iter(|| {
                let buf = black_box(&mut buf[..]);
                let pushed = push.push_in_place(TAG_MESSAGE, buf);
                let pulled = pull.pull_in_place(buf);
                black_box((pushed, pulled))
            })
        });
    }

    let len = 64 * 1024;
    g.throughput(Throughput::Bytes(len as u64));

    // Push only: the stream advances every iteration, as a sender's does.
    let mut push = PushStream::new(&key, &header);
    let mut buf = vec![0xabu8; len + ABYTES];
    g.bench_function("secretstream_push/64KiB", |b| {
        b.iter(|| black_box(push.push_in_place(TAG_MESSAGE, black_box(&mut buf[..]))))
    });

    // The two ways a writer's plaintext becomes a frame without a prior copy of its own:
    // ring's one-pass AEAD, which seals in place (so the plaintext is copied into the
    // frame first; what `SecureStream` writes use for full 64 KiB frames), and the
    // two-pass ChaCha20 + Poly1305 reading the plaintext and writing the frame directly.
    let plaintext = vec![0x5au8; len];
    let room = 64;
    let mut frame = vec![0u8; room + len + ABYTES];
    let mut push = PushStream::new(&key, &header);
    g.bench_function("secretstream_seal_copy_ring/64KiB", |b| {
        b.iter(|| {
            black_box(push.push_to_with_room(
                TAG_MESSAGE,
                black_box(&plaintext),
                black_box(&mut frame[..]),
                room,
            ))
        })
    });
    let mut push = PushStream::new(&key, &header);
    g.bench_function("secretstream_seal_b2b/64KiB", |b| {
        b.iter(|| {
            black_box(push.push_to(
                TAG_MESSAGE,
                black_box(&plaintext),
                black_box(&mut frame[room..]),
            ))
        })
    });

    // The two halves of the two-pass form, apart: which one costs (ChaCha20 has an
    // AVX-512 backend here, Poly1305 only AVX2).
    let mut out = vec![0u8; len];
    g.bench_function("chacha20_b2b/64KiB", |b| {
        b.iter(|| {
            let mut c = ChaCha20::new(&key.into(), &[7u8; 12].into());
            c.apply_keystream_b2b(black_box(&plaintext), &mut out[..]);
            black_box(&out);
        })
    });
    g.bench_function("poly1305/64KiB", |b| {
        b.iter(|| black_box(Poly1305::new(&key.into()).compute_unpadded(black_box(&plaintext))))
    });

    // Pull only: a pull advances the receiver's state, so every iteration pulls the same
    // first message into a fresh receiver. The untimed setup clones the receiver and copies
    // the ciphertext; it runs right before each pull (PerIteration), so the buffer is as hot
    // in cache as a just-received message and as the push bench's buffer.
    let mut ciphertext = vec![0xabu8; len + ABYTES];
    assert!(PushStream::new(&key, &header).push_in_place(TAG_MESSAGE, &mut ciphertext).is_ok());
    let receiver = PullStream::new(&key, &header);
    assert_eq!(receiver.clone().pull_in_place(&mut ciphertext.clone()), Ok(TAG_MESSAGE));
    g.bench_function("secretstream_pull/64KiB", |b| {
        b.iter_batched_ref(
            || (receiver.clone(), ciphertext.clone()),
            |(pull, buf)| black_box(pull.pull_in_place(black_box(&mut buf[..]))),
            BatchSize::PerIteration,
        )
    });

    g.finish();
}

criterion_group!(benches, bench_hash_token, bench_ed25519, bench_noise, bench_secretstream);
criterion_main!(benches);
