//! The server's side (ref: hyperdht lib/server.js `_addHandshake` punch set-up and
//! `_onpeerholepunch`): a session per firewalled handshake, answers to the client's
//! rounds relayed back through the relay, and the punch start the client asks for.

use std::net::SocketAddrV4;

use tern_base::{SocketId, Timestamp, TxQueue};
use tern_crypto::noise::HandshakeResult;
use tern_rpc::{IncomingRequest, Responder};
use tern_wire::handshake::{Firewall, Holepunch, HolepunchPayload, Mode, PayloadError};
use tern_wire::{AddrList, Encode};

use super::{
    LocalNat, MAX_SESSIONS, PROBE, RESPONDER_WAIT, Received, ResponderSeed, Session, consistent,
    seal,
};
use crate::conn::{Connections, NetView, Origin};

impl Connections {
    /// Starts the responder side for a handshake a firewalled listener accepted: the
    /// stream binds on the client's first packet, probes from the client are echoed.
    pub(crate) fn start_responder(
        &mut self,
        now: Timestamp,
        slot: u64,
        stream: u32,
        remote_stream: u32,
        handshake: HandshakeResult,
        seed: ResponderSeed,
    ) -> bool {
        let net = seed.net;
        if self.punches.len() >= MAX_SESSIONS {
            return false;
        }
        let mut s = Session::new(Origin::Server(seed.listener), stream, remote_stream, handshake);
        s.socket = net.socket;
        s.token_secret = self.ephemerals.next();
        s.deadline = now + RESPONDER_WAIT;
        s.know_host(*seed.client.ip());
        s.local = LocalNat::from_net(&net);
        s.our_relays = seed.relays;
        s.slot = Some(slot);
        self.punch_slots.insert(slot, stream);
        self.punches.insert(stream, s);
        self.stats.holepunches += 1;
        true
    }

    /// The responder's stream got the client's first packet: the punch worked.
    pub(crate) fn on_responder_connected(
        &mut self,
        now: Timestamp,
        stream: u32,
        socket: SocketId,
        remote: SocketAddrV4,
    ) -> bool {
        let Some(s) = self.punches.remove(&stream) else { return false };
        self.forget_session(&s);
        // The first UDX packet came in on `socket`: the stream stays there.
        self.release_sockets(stream, Some(socket));
        if s.punching.as_ref().is_some_and(|p| p.random) {
            self.last_random_punch = Some(now);
        }
        self.stats.holepunched += 1;
        self.established(now, s.origin, stream, remote, s.handshake);
        true
    }

    /// A PEER_HOLEPUNCH from a relay for one of our listeners (spec §10.1, server row).
    pub(crate) fn on_holepunch_request(
        &mut self,
        now: Timestamp,
        req: &IncomingRequest<'_>,
        out: &mut Responder<'_>,
        hp: &Holepunch<'_>,
        net: NetView,
    ) {
        if hp.mode != Mode::FromRelay {
            return;
        }
        let Some(client) = hp.peer_address else { return };
        let Some(&stream) = self.punch_slots.get(&hp.id) else { return };
        let Some(s) = self.punches.get(&stream) else { return };
        let Some(p) = Received::open(&s.secret, hp.payload) else { return };
        let from_our_relay = s.our_relays.contains(&req.from);
        let random_ok = self.random_punch_allowed(now);
        let Some(s) = self.punches.get_mut(&stream) else { return };
        let token = s.token(*client.ip());
        let mut answer = HolepunchPayload {
            error: PayloadError::None,
            round: s.round,
            ..HolepunchPayload::default()
        };
        if p.error != PayloadError::None {
            s.round = s.round.max(p.round);
            answer.error = PayloadError::Aborted;
            answer.round = s.round;
            self.reply_holepunch(req, out, hp, stream, &answer);
            self.pending_ends.push(stream);
            return;
        }
        let echoed = from_our_relay && p.remote_token == Some(token);
        if p.round >= s.round {
            s.round = p.round;
            s.update_remote(&p.as_payload(), echoed.then_some(*client.ip()));
        }
        s.know_host(*client.ip());
        if s.punching.is_none() {
            // Our view can change until we tell the client we punch.
            s.local = LocalNat::from_net(&net);
        }
        if s.local.firewall == Firewall::Unknown {
            answer.error = PayloadError::Aborted;
            self.reply_holepunch(req, out, hp, stream, &answer);
            self.pending_ends.push(stream);
            return;
        }
        // Fast mode: the client opened a session to an address of ours; answer it now.
        if consistent(s.local.firewall)
            && p.remote_address.is_some_and(|a| s.local.addresses.contains(&a))
        {
            self.pending_probes.push((s.socket, client));
        }
        if s.remote_punching && s.punching.is_none() {
            let random = !consistent(s.remote_firewall) || !consistent(s.local.firewall);
            if random && !random_ok {
                // TRY_LATER needs relay-through, which tern does not offer: abort.
                answer.error = PayloadError::TryLater;
                self.reply_holepunch(req, out, hp, stream, &answer);
                self.pending_ends.push(stream);
                return;
            }
            if s.strategy(random_ok).is_none() {
                answer.error = PayloadError::Aborted;
                self.reply_holepunch(req, out, hp, stream, &answer);
                self.pending_ends.push(stream);
                return;
            }
            self.pending_punches.push(stream);
        }
        let Some(s) = self.punches.get(&stream) else { return };
        let will_punch = s.punching.is_some() || self.pending_punches.contains(&stream);
        let local = s.local.clone();
        let answer = HolepunchPayload {
            firewall: local.firewall,
            round: s.round,
            punching: will_punch,
            addresses: Some(AddrList::Items(&local.addresses)),
            token: from_our_relay.then_some(&token),
            remote_token: p.token.as_ref(),
            ..answer
        };
        self.reply_holepunch(req, out, hp, stream, &answer);
    }

    pub(super) fn reply_holepunch(
        &mut self,
        req: &IncomingRequest<'_>,
        out: &mut Responder<'_>,
        hp: &Holepunch<'_>,
        stream: u32,
        answer: &HolepunchPayload<'_>,
    ) {
        let Some(secret) = self.punches.get(&stream).map(|s| s.secret) else { return };
        let sealed = seal(&secret, &self.nonce(), answer);
        let msg = Holepunch {
            mode: Mode::FromServer,
            id: 0,
            payload: &sealed,
            peer_address: hp.peer_address,
        };
        let mut buf = vec![0u8; msg.encoded_len()];
        if let Ok(n) = msg.encode(&mut buf) {
            out.relay(req.from, &req.request, &buf[..n]);
        }
    }

    /// Work a request handler queued (it has no transmit queue): probes, punch starts,
    /// aborted sessions.
    pub(crate) fn punch_after_input(&mut self, now: Timestamp, tx: &mut TxQueue) {
        for (socket, to) in std::mem::take(&mut self.pending_probes) {
            tx.push(socket, to, &PROBE);
            self.stats.probes_sent += 1;
        }
        for stream in std::mem::take(&mut self.pending_punches) {
            if !self.start_punching(now, stream, tx) {
                self.end_session(now, stream, None, tx);
            }
        }
        for stream in std::mem::take(&mut self.pending_ends) {
            self.end_session(now, stream, None, tx);
        }
    }
}
