//! Signed write requests for `raw`: ANNOUNCE and MUTABLE_PUT at a fixed offered rate.
//!
//! A node stores a write only with a token it issued to the sender's host (a round trip
//! first) and a valid Ed25519 signature, and an ANNOUNCE's signature covers that token
//! and the storing node's id. So before the timed phase the generator asks the target
//! once (a LOOKUP: the generic reply of an application command carries the node's id and
//! a token for our host; dht-rpc's internal FIND_NODE reply has no token), then
//! signs a pool of distinct requests, so that the timed phase costs the generator an
//! encode per request, never a signature. The target verifies every request it gets:
//! neither tern nor hyperdht caches verdicts, and a re-sent pool entry is a valid
//! re-announce (the record is replaced) or a re-put of the same (seq, value), which
//! both accept after verifying.
//!
//! Tokens rotate every 7.5 s and stay valid for one more rotation (dht-rpc), so a token
//! fetched at the start is good for at least 7.5 s: [`MAX_SIGNED_SECONDS`] bounds a run.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tern_base::Rng;
use tern_crypto::{KeyPair, signable};
use tern_wire::hyperdht::{Announce, MutablePut, PeerRecord};
use tern_wire::rpc::{Message, Request};
use tern_wire::{AddrList, Decode, Encode};

/// Longest run (duration + reply timeout, seconds) a fetched token is sure to cover:
/// dht-rpc rotates secrets every 7.5 s and accepts the current and the previous one.
pub const MAX_SIGNED_SECONDS: f64 = 7.0;

/// Distinct signed requests per run: enough that no target can serve them from a cache
/// line, few enough that signing them (≈ 25–40 µs each here) takes a fraction of a second.
pub const POOL_SIZE: usize = 4096;

/// hyperdht command numbers (application space).
const CMD_LOOKUP: u64 = 3;
const CMD_ANNOUNCE: u64 = 4;
const CMD_MUTABLE_PUT: u64 = 6;

/// Which signed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedKind {
    /// ANNOUNCE of a peer record under a topic (signature binds token and node id).
    Announce,
    /// MUTABLE_PUT of a 32-byte value at seq 1 under H32(public key).
    MutablePut,
}

/// What the target told us in its first reply.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// The target's node id (the announce signable names the storing node).
    pub node_id: [u8; 32],
    /// The round-trip token for our host.
    pub token: [u8; 32],
}

/// One pre-signed request: its target and encoded value.
#[derive(Debug, Clone)]
pub struct Signed {
    /// Topic (announce) or H32(public key) (mutable put).
    pub target: [u8; 32],
    /// The encoded request value.
    pub value: Vec<u8>,
}

/// A pool of pre-signed requests and the grant they were signed under.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Command number of every entry.
    pub command: u64,
    /// Node id and token of the target.
    pub grant: Grant,
    /// The requests, sent round-robin.
    pub entries: Vec<Signed>,
}

impl Pool {
    /// The request for pool entry `i` (wrapping) with transaction id `tid`.
    pub fn request(&self, i: usize, tid: u16, to: SocketAddrV4) -> Vec<u8> {
        let e = &self.entries[i % self.entries.len()];
        Request {
            tid,
            to,
            id: None,
            token: Some(&self.grant.token),
            internal: false,
            command: self.command,
            target: Some(&e.target),
            value: Some(&e.value),
        }
        .to_vec()
    }
}

/// Asks `target` for its node id and a token for `bind`'s host (LOOKUP, retried every
/// 200 ms for up to 10 s).
pub fn fetch_grant(target: SocketAddrV4, bind: Ipv4Addr) -> anyhow::Result<Grant> {
    let sock = UdpSocket::bind((bind, 0)).with_context(|| format!("binding {bind}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let start = Instant::now();
    let mut tid = 1u16;
    let probe = [0x42u8; 32];
    while start.elapsed() < Duration::from_secs(10) {
        let req = Request {
            tid,
            to: target,
            id: None,
            token: None,
            internal: false,
            command: CMD_LOOKUP,
            target: Some(&probe),
            value: None,
        };
        sock.send_to(&req.to_vec(), target)?;
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            let Ok(Message::Response(res)) = Message::decode(&buf[..n]) else { continue };
            if res.tid != tid {
                continue;
            }
            match (res.id, res.token) {
                (Some(id), Some(token)) => return Ok(Grant { node_id: *id, token: *token }),
                (None, _) => bail!("{target} replied without a node id: it stores nothing"),
                (_, None) => bail!("{target} replied without a token"),
            }
        }
        tid = tid.wrapping_add(1);
    }
    bail!("{target} gave no token within 10 s")
}

/// Signs `n` distinct requests of `kind` under `grant`.
pub fn build_pool(kind: SignedKind, grant: Grant, n: usize, rng: &mut Rng) -> Pool {
    let entries = (0..n.max(1))
        .map(|_| {
            let kp = KeyPair::from_seed(&rng.bytes32());
            let pk = kp.public_key().0;
            match kind {
                SignedKind::Announce => announce(&kp, &pk, rng.bytes32(), &grant),
                SignedKind::MutablePut => mutable_put(&kp, &pk, &rng.bytes32()),
            }
        })
        .collect();
    let command = match kind {
        SignedKind::Announce => CMD_ANNOUNCE,
        SignedKind::MutablePut => CMD_MUTABLE_PUT,
    };
    Pool { command, grant, entries }
}

fn announce(kp: &KeyPair, pk: &[u8; 32], topic: [u8; 32], grant: &Grant) -> Signed {
    let peer = PeerRecord { public_key: pk, relay_addresses: AddrList::EMPTY };
    let record = peer.to_vec();
    let msg = signable::announce_signable(&topic, &grant.node_id, &grant.token, &record, None);
    let sig = kp.sign(&msg).0;
    let value =
        Announce { peer: Some(peer), refresh: None, signature: Some(&sig), bump: 0 }.to_vec();
    Signed { target: topic, value }
}

fn mutable_put(kp: &KeyPair, pk: &[u8; 32], value: &[u8; 32]) -> Signed {
    let sig = kp.sign(&signable::mutable_signable(1, value)).0;
    let put = MutablePut { public_key: pk, seq: 1, value, signature: &sig };
    Signed { target: tern_crypto::hash32(pk), value: put.to_vec() }
}

#[cfg(test)]
mod tests {
    use tern_crypto::sign::verify;
    use tern_crypto::{PublicKey, Signature};

    use super::*;

    fn grant() -> Grant {
        Grant { node_id: [7; 32], token: [9; 32] }
    }

    #[test]
    fn announce_entries_verify_against_the_grant_they_were_signed_for() {
        let pool = build_pool(SignedKind::Announce, grant(), 3, &mut Rng::from_seed(1));
        assert_eq!(pool.command, CMD_ANNOUNCE);
        for e in &pool.entries {
            let ann = Announce::decode(&e.value).expect("decodes");
            let peer = ann.peer.expect("has a record");
            let sig = ann.signature.expect("signed");
            let record = peer.to_vec();
            let good = signable::announce_signable(&e.target, &[7; 32], &[9; 32], &record, None);
            assert!(verify(&PublicKey(*peer.public_key), &good, &Signature(*sig)).is_ok());
            // The same request under another token must fail: the signature binds it.
            let other = signable::announce_signable(&e.target, &[7; 32], &[8; 32], &record, None);
            assert!(verify(&PublicKey(*peer.public_key), &other, &Signature(*sig)).is_err());
        }
        let targets: std::collections::HashSet<_> = pool.entries.iter().map(|e| e.target).collect();
        assert_eq!(targets.len(), 3, "every entry has its own topic");
    }

    #[test]
    fn mutable_entries_target_their_key_and_verify() {
        let pool = build_pool(SignedKind::MutablePut, grant(), 2, &mut Rng::from_seed(2));
        for e in &pool.entries {
            let put = MutablePut::decode(&e.value).expect("decodes");
            assert_eq!(e.target, tern_crypto::hash32(put.public_key));
            let msg = signable::mutable_signable(put.seq, put.value);
            assert!(verify(&PublicKey(*put.public_key), &msg, &Signature(*put.signature)).is_ok());
        }
    }

    #[test]
    fn requests_carry_the_token_and_wrap_around_the_pool() {
        let pool = build_pool(SignedKind::MutablePut, grant(), 2, &mut Rng::from_seed(3));
        let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        let bytes = pool.request(3, 77, to);
        let Ok(Message::Request(q)) = Message::decode(&bytes) else { panic!("not a request") };
        assert_eq!((q.tid, q.command, q.internal), (77, CMD_MUTABLE_PUT, false));
        assert_eq!(q.token, Some(&[9; 32]));
        assert_eq!(q.target, Some(&pool.entries[1].target));
    }
}
