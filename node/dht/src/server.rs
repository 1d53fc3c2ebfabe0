//! The storage and routing side of hyperdht: how a node answers application commands
//! (spec §8.1–§8.7, §9.2 relay side, §10.1; ref: hyperdht index.js `onrequest`,
//! lib/persistent.js, lib/router.js).
//!
//! The rules that matter for interop are the silent drops: a storage request missing
//! its target, token or value, with an undecodable value, a wrong hash or a bad
//! signature gets **no reply** (the requester times out), while an ephemeral node answers
//! storage commands with UNKNOWN_COMMAND so queries keep walking.

use std::net::SocketAddrV4;

use tern_base::{NodeId, Timestamp};
use tern_crypto::{PublicKey, Signature, sign, signable};
use tern_rpc::{Handler, IncomingRequest, ReplyFields, Responder};
use tern_wire::handshake::{Handshake, Holepunch, Mode};
use tern_wire::hyperdht::{
    Announce, Command, LookupReply, MutablePut, MutableRecord, PeerRecord, PeerRecords,
};
use tern_wire::rpc::{Request, error_code};
use tern_wire::{Decode, Encode};

use crate::relay_guard::RelayGuard;
use crate::store::{Bump, RefreshEntry, RouterEntry, Store};

/// Records per LOOKUP reply (hyperdht: 20).
pub const MAX_LOOKUP_RECORDS: usize = 20;
/// Relay addresses kept per stored record (hyperdht: 3).
pub const MAX_RELAY_ADDRESSES: usize = 3;
/// A bump may be at most this far in the future (hyperdht: 60 s).
const BUMP_DRIFT_MS: u64 = 60_000;
/// Largest encoded record: key + count + 3 addresses.
const MAX_RECORD_LEN: usize = 32 + 1 + MAX_RELAY_ADDRESSES * 6;

/// The handler a hyperdht node plugs into its [`tern_rpc::Rpc`].
#[derive(Debug)]
pub struct DhtServer {
    /// The stores.
    pub store: Store,
    /// Wall-clock milliseconds at `Timestamp::ZERO`, for bump drift checks (the only
    /// wall-clock fact hyperdht uses); set by the driver.
    pub wall_clock_offset_ms: u64,
    /// Reused encode buffer for relayed messages (no allocation once warm).
    scratch: Vec<u8>,
    /// Relayed client requests awaiting the server's answer (hyperdht issue 296).
    relays: RelayGuard,
}

impl DhtServer {
    /// A server around `store`.
    pub fn new(store: Store) -> Self {
        Self { store, wall_clock_offset_ms: 0, scratch: Vec::new(), relays: RelayGuard::default() }
    }

    /// A scratch buffer able to hold `value_len` plus routing fields.
    fn scratch(&mut self, value_len: usize) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.resize(value_len + 64, 0);
        buf
    }
}

/// The record re-encoded with at most 3 relay addresses, into a stack buffer.
fn truncated_record(peer: &PeerRecord<'_>, buf: &mut [u8; MAX_RECORD_LEN]) -> usize {
    let rec = PeerRecord {
        public_key: peer.public_key,
        relay_addresses: peer.relay_addresses.truncated(MAX_RELAY_ADDRESSES),
    };
    rec.encode(buf).unwrap_or(0)
}

impl Handler for DhtServer {
    fn on_request(&mut self, now: Timestamp, req: &IncomingRequest<'_>, out: &mut Responder<'_>) {
        let q = &req.request;
        let Some(cmd) = Command::from_u64(q.command) else {
            return out.error(error_code::UNKNOWN_COMMAND);
        };
        match cmd {
            Command::PeerHandshake => return self.route_handshake(now, req, out),
            Command::PeerHolepunch => return self.route_holepunch(now, req, out),
            _ => {}
        }
        // Storage is served only by persistent nodes (spec §8.1).
        let Some(own_id) = out.own_id().copied() else {
            return out.error(error_code::UNKNOWN_COMMAND);
        };
        let Some(target) = q.target.map(|t| NodeId(*t)) else {
            self.store.stats.malformed += 1;
            return;
        };
        match cmd {
            // Stored values are borrowed into the reply, never cloned (no allocation).
            Command::FindPeer => {
                let value = self.store.router.get(&target).map(|r| r.record.as_slice());
                out.reply(value);
            }
            Command::Lookup => self.lookup(&target, out),
            Command::Announce => self.announce(now, req, &target, &own_id, out),
            Command::Unannounce => self.unannounce(req, &target, &own_id, out),
            Command::MutablePut => self.mutable_put(req, &target, out),
            Command::MutableGet => self.mutable_get(q, &target, out),
            Command::ImmutablePut => self.immutable_put(q, &target, out),
            Command::ImmutableGet => {
                let value = self.store.immutables.get(&target).map(Vec::as_slice);
                out.reply(value);
            }
            // No plugins are registered: the reference stays silent.
            Command::Plugin => {}
            Command::PeerHandshake | Command::PeerHolepunch => {}
        }
    }
}

impl DhtServer {
    fn lookup(&mut self, target: &NodeId, out: &mut Responder<'_>) {
        let mut slots: [&[u8]; MAX_LOOKUP_RECORDS + 1] = [&[]; MAX_LOOKUP_RECORDS + 1];
        let store = &mut self.store;
        let mut n = store.topics.sample(target, &mut store.rng, &mut slots[..MAX_LOOKUP_RECORDS]);
        let router = store.router.peek(target);
        if n < MAX_LOOKUP_RECORDS
            && let Some(r) = router
        {
            slots[n] = &r.record;
            n += 1;
        }
        if n == 0 {
            return out.reply(None);
        }
        // An unauthenticated request's reply budget (tern_rpc::RECOMMENDED_MAX_REPLY_RATIO)
        // is met by sending fewer peers — a shorter list is a valid reply — rather than
        // none; the last record goes first (the router entry when present).
        let budget = out.value_budget(ReplyFields::GENERIC);
        let bump = store.bumps.peek(target).map_or(0, |b| b.0);
        let mut raw = [0u8; (MAX_LOOKUP_RECORDS + 1) * MAX_RECORD_LEN];
        let mut buf = [0u8; (MAX_LOOKUP_RECORDS + 1) * MAX_RECORD_LEN + 20];
        let mut trimmed = false;
        // At most MAX_LOOKUP_RECORDS + 1 rounds: n shrinks every time round.
        let encoded = loop {
            let mut len = 0;
            for rec in &slots[..n] {
                raw[len..len + rec.len()].copy_from_slice(rec);
                len += rec.len();
            }
            let peers = PeerRecords::Raw { count: n, bytes: &raw[..len] };
            let Ok(encoded) = (LookupReply { peers, bump }).encode(&mut buf) else { break None };
            match budget {
                Some(b) if encoded > b && n > 1 => {
                    n -= 1;
                    trimmed = true;
                }
                _ => break Some(encoded),
            }
        };
        if trimmed {
            out.count_trimmed();
        }
        match encoded {
            Some(len) => out.reply(Some(&buf[..len])),
            None => out.reply(None),
        }
    }

    fn announce(
        &mut self,
        now: Timestamp,
        req: &IncomingRequest<'_>,
        target: &NodeId,
        own_id: &NodeId,
        out: &mut Responder<'_>,
    ) {
        let q = &req.request;
        let (Some(token), Some(value)) = (q.token, q.value) else {
            self.store.stats.malformed += 1;
            return;
        };
        let Ok(msg) = Announce::decode(value) else {
            self.store.stats.malformed += 1;
            return;
        };
        let Some(peer) = msg.peer else {
            return self.refresh_only(&msg, req.from, out);
        };
        let Some(sig) = msg.signature else {
            self.store.stats.malformed += 1;
            return;
        };
        let mut full = [0u8; 32 + 10 + 6 * 64];
        let Ok(full_len) = peer.encode(&mut full) else {
            self.store.stats.too_large += 1;
            return;
        };
        let signable = signable::announce_signable(
            target.as_bytes(),
            own_id.as_bytes(),
            token,
            &full[..full_len],
            msg.refresh,
        );
        if sign::verify(&PublicKey(*peer.public_key), &signable, &Signature(*sig)).is_err() {
            self.store.stats.bad_signatures += 1;
            return;
        }
        let mut rec = [0u8; MAX_RECORD_LEN];
        let rec_len = truncated_record(&peer, &mut rec);
        let self_announce = self.store_record(target, peer.public_key, &rec[..rec_len], req.from);
        // hyperdht keeps bumps for topic records only, never for a self-announce.
        if msg.bump != 0 && !self_announce {
            let wall_now = self.wall_clock_offset_ms + now.as_millis();
            let stored = self.store.bumps.peek(target).map_or(0, |b| b.0);
            if msg.bump > stored && msg.bump <= wall_now + BUMP_DRIFT_MS {
                self.store.bumps.insert(*target, Bump(msg.bump));
            }
        }
        if let Some(refresh) = msg.refresh {
            let entry = RefreshEntry { target: *target, record: rec[..rec_len].to_vec() };
            self.store.refreshes.insert(*refresh, entry);
        }
        out.reply_with(None, error_code::OK, ReplyFields::BARE);
    }

    /// A self-announce (target = H32(pk)) becomes a router entry; anything else a topic
    /// record. Returns true for a self-announce.
    fn store_record(
        &mut self,
        target: &NodeId,
        pk: &[u8; 32],
        record: &[u8],
        from: SocketAddrV4,
    ) -> bool {
        if tern_crypto::hash32(pk) == target.0 {
            let entry = RouterEntry { relay: from, record: record.to_vec() };
            self.store.router.insert(*target, entry);
            self.store.topics.remove(target, pk);
            true
        } else {
            use crate::topics::InsertOutcome::*;
            match self.store.topics.insert(*target, *pk, record) {
                TopicFull => self.store.stats.topic_full += 1,
                TooLarge => self.store.stats.too_large += 1,
                Added | Refreshed | KeptFresh => {}
            }
            false
        }
    }

    /// A refresh-only announce: the announcer proves it knows the preimage of a refresh
    /// hash it sent before, and the node re-stores that record under the target it was
    /// announced for. Like hyperdht `_onrefresh`, the request's own target (required,
    /// like the token) plays no part: knowing the preimage is the whole proof.
    fn refresh_only(&mut self, msg: &Announce<'_>, from: SocketAddrV4, out: &mut Responder<'_>) {
        let Some(refresh) = msg.refresh else {
            self.store.stats.malformed += 1;
            return;
        };
        let key = tern_crypto::hash32(refresh);
        let Some(entry) = self.store.refreshes.remove(&key) else { return };
        let Ok(peer) = PeerRecord::decode(&entry.record) else { return };
        let pk = *peer.public_key;
        self.store_record(&entry.target, &pk, &entry.record, from);
        self.store.refreshes.insert(*refresh, entry);
        out.reply_with(None, error_code::OK, ReplyFields::BARE);
    }

    fn unannounce(
        &mut self,
        req: &IncomingRequest<'_>,
        target: &NodeId,
        own_id: &NodeId,
        out: &mut Responder<'_>,
    ) {
        let q = &req.request;
        let (Some(token), Some(value)) = (q.token, q.value) else {
            self.store.stats.malformed += 1;
            return;
        };
        let Ok(Announce { peer: Some(peer), signature: Some(sig), refresh, .. }) =
            Announce::decode(value)
        else {
            self.store.stats.malformed += 1;
            return;
        };
        let mut full = [0u8; 32 + 10 + 6 * 64];
        let Ok(full_len) = peer.encode(&mut full) else { return };
        let signable = signable::unannounce_signable(
            target.as_bytes(),
            own_id.as_bytes(),
            token,
            &full[..full_len],
            refresh,
        );
        if sign::verify(&PublicKey(*peer.public_key), &signable, &Signature(*sig)).is_err() {
            self.store.stats.bad_signatures += 1;
            return;
        }
        if tern_crypto::hash32(peer.public_key) == target.0 {
            self.store.router.remove(target);
        }
        self.store.topics.remove(target, peer.public_key);
        out.reply_with(None, error_code::OK, ReplyFields::BARE);
    }

    fn mutable_put(&mut self, req: &IncomingRequest<'_>, target: &NodeId, out: &mut Responder<'_>) {
        let q = &req.request;
        let (Some(_token), Some(value)) = (q.token, q.value) else {
            self.store.stats.malformed += 1;
            return;
        };
        let Ok(put) = MutablePut::decode(value) else {
            self.store.stats.malformed += 1;
            return;
        };
        if put.value.len() > self.store.limits.max_value_bytes {
            self.store.stats.too_large += 1;
            return;
        }
        if tern_crypto::hash32(put.public_key) != target.0 {
            self.store.stats.malformed += 1;
            return;
        }
        let signable = signable::mutable_signable(put.seq, put.value);
        if sign::verify(&PublicKey(*put.public_key), &signable, &Signature(*put.signature)).is_err()
        {
            self.store.stats.bad_signatures += 1;
            return;
        }
        if let Some(existing) = self.store.mutables.get(target)
            && let Ok(old) = MutableRecord::decode(existing)
        {
            if old.seq == put.seq && old.value != put.value {
                self.store.stats.seq_refused += 1;
                return out.error(error_code::SEQ_REUSED);
            }
            if put.seq < old.seq {
                self.store.stats.seq_refused += 1;
                return out.error(error_code::SEQ_TOO_LOW);
            }
        }
        let record = MutableRecord { seq: put.seq, value: put.value, signature: put.signature };
        if !self.store.mutables.insert(*target, record.to_vec()) {
            self.store.stats.too_large += 1;
            return;
        }
        out.reply(None);
    }

    fn mutable_get(&mut self, q: &Request<'_>, target: &NodeId, out: &mut Responder<'_>) {
        let Some(min_seq) = q.value.and_then(|v| tern_wire::Reader::new(v).uint().ok()) else {
            self.store.stats.malformed += 1;
            return;
        };
        let stored = self
            .store
            .mutables
            .get(target)
            .filter(|bytes| MutableRecord::decode(bytes).is_ok_and(|r| r.seq >= min_seq));
        out.reply(stored.map(Vec::as_slice));
    }

    fn immutable_put(&mut self, q: &Request<'_>, target: &NodeId, out: &mut Responder<'_>) {
        let (Some(_token), Some(value)) = (q.token, q.value) else {
            self.store.stats.malformed += 1;
            return;
        };
        if value.len() > self.store.limits.max_value_bytes {
            self.store.stats.too_large += 1;
            return;
        }
        if tern_crypto::hash32(value) != target.0 {
            self.store.stats.malformed += 1;
            return;
        }
        if !self.store.immutables.insert(*target, value.to_vec()) {
            self.store.stats.too_large += 1;
            return;
        }
        out.reply(None);
    }

    /// PEER_HANDSHAKE at a node that is not the server (spec §9.2).
    fn route_handshake(
        &mut self,
        now: Timestamp,
        req: &IncomingRequest<'_>,
        out: &mut Responder<'_>,
    ) {
        let q = &req.request;
        let (Some(target), Some(value)) = (q.target, q.value) else {
            self.store.stats.malformed += 1;
            return;
        };
        let Ok(hs) = Handshake::decode(value) else {
            self.store.stats.malformed += 1;
            return;
        };
        if hs.noise.is_empty() {
            self.store.stats.malformed += 1;
            return;
        }
        let router = self.store.router.get(&NodeId(*target)).map(|r| r.relay);
        let mut buf = self.scratch(value.len());
        self.route_handshake_mode(now, req, out, &hs, router, &mut buf);
        self.scratch = buf;
    }

    fn route_handshake_mode(
        &mut self,
        now: Timestamp,
        req: &IncomingRequest<'_>,
        out: &mut Responder<'_>,
        hs: &Handshake<'_>,
        router: Option<SocketAddrV4>,
        buf: &mut [u8],
    ) {
        let q = &req.request;
        match hs.mode {
            Mode::FromClient => {
                // Only to the registered server: a client-named relayAddress (which JS
                // clients never send) would let anyone aim us at any address.
                let Some(to) = router else {
                    if hs.relay_address.is_some() {
                        self.store.stats.relay_refused += 1;
                    }
                    // Not routing for this server: an empty reply lets the client move on.
                    return out.reply_with(None, error_code::OK, ReplyFields::CLOSER);
                };
                self.relays.remember(now, req.from, q.tid);
                let fwd = Handshake {
                    mode: Mode::FromRelay,
                    noise: hs.noise,
                    peer_address: Some(req.from),
                    relay_address: None,
                };
                self.relay(out, to, q, &fwd, buf);
            }
            Mode::FromRelay => {
                let Some(to) = router else { return };
                let fwd = Handshake {
                    mode: Mode::FromSecondRelay,
                    noise: hs.noise,
                    peer_address: hs.peer_address,
                    relay_address: Some(req.from),
                };
                self.relay(out, to, q, &fwd, buf);
            }
            Mode::FromServer => {
                let Some(client) = hs.peer_address else { return };
                if !self.relays.take(now, client, q.tid) {
                    self.store.stats.relay_refused += 1;
                    return;
                }
                let reply = Handshake {
                    mode: Mode::Reply,
                    noise: hs.noise,
                    peer_address: Some(req.from),
                    relay_address: None,
                };
                if let Ok(len) = reply.encode(buf) {
                    self.store.stats.relayed += 1;
                    out.respond_to(client, &buf[..len]);
                }
            }
            Mode::FromSecondRelay | Mode::Reply => {}
        }
    }

    fn relay(
        &mut self,
        out: &mut Responder<'_>,
        to: SocketAddrV4,
        q: &Request<'_>,
        msg: &impl Encode,
        buf: &mut [u8],
    ) {
        if let Ok(len) = msg.encode(buf) {
            self.store.stats.relayed += 1;
            out.relay(to, q, &buf[..len]);
        }
    }

    /// PEER_HOLEPUNCH at a relay (spec §10.1).
    fn route_holepunch(
        &mut self,
        now: Timestamp,
        req: &IncomingRequest<'_>,
        out: &mut Responder<'_>,
    ) {
        let q = &req.request;
        let (Some(target), Some(value)) = (q.target, q.value) else {
            self.store.stats.malformed += 1;
            return;
        };
        let Ok(hp) = Holepunch::decode(value) else {
            self.store.stats.malformed += 1;
            return;
        };
        let mut buf = self.scratch(value.len());
        let router = self.store.router.get(&NodeId(*target)).map(|r| r.relay);
        self.route_holepunch_mode(now, req, out, &hp, router, &mut buf);
        self.scratch = buf;
    }

    fn route_holepunch_mode(
        &mut self,
        now: Timestamp,
        req: &IncomingRequest<'_>,
        out: &mut Responder<'_>,
        hp: &Holepunch<'_>,
        router: Option<SocketAddrV4>,
        buf: &mut [u8],
    ) {
        let q = &req.request;
        match hp.mode {
            Mode::FromClient => {
                // peerAddress is the server's address as this relay saw it: followed
                // only on the registered server's host (its port may have been remapped).
                let to = match (router, hp.peer_address) {
                    (Some(r), Some(p)) if p.ip() == r.ip() => p,
                    (Some(r), None) => r,
                    (None, None) => return,
                    _ => {
                        self.store.stats.relay_refused += 1;
                        return;
                    }
                };
                self.relays.remember(now, req.from, q.tid);
                let fwd = Holepunch {
                    mode: Mode::FromRelay,
                    id: hp.id,
                    payload: hp.payload,
                    peer_address: Some(req.from),
                };
                self.relay(out, to, q, &fwd, buf);
            }
            Mode::FromServer => {
                let Some(client) = hp.peer_address else { return };
                if !self.relays.take(now, client, q.tid) {
                    self.store.stats.relay_refused += 1;
                    return;
                }
                let reply = Holepunch {
                    mode: Mode::Reply,
                    id: hp.id,
                    payload: hp.payload,
                    peer_address: Some(req.from),
                };
                if let Ok(len) = reply.encode(buf) {
                    self.store.stats.relayed += 1;
                    out.respond_to(client, &buf[..len]);
                }
            }
            Mode::FromRelay | Mode::FromSecondRelay | Mode::Reply => {}
        }
    }
}
