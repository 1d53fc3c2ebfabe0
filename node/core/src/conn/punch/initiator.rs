//! The client's rounds (ref: hyperdht lib/connect.js `holepunch`, `probeRound`,
//! `roundPunch`): the probe round through the server's relay, the grace second for an
//! UNKNOWN server, one retry, then the punch round with address tokens.

use std::net::SocketAddrV4;

use tern_base::{Timestamp, TxQueue};
use tern_crypto::secretbox;
use tern_rpc::{ReqId, Rpc};
use tern_wire::handshake::{Firewall, Holepunch, HolepunchPayload, Mode, PayloadError};
use tern_wire::hyperdht::Command;
use tern_wire::{AddrList, Decode, Encode};

use super::{
    ClientSide, InitiatorSeed, LocalNat, MAX_SESSIONS, OPEN_SESSION_TTL, PROBE, Received, Session,
    Stage, UNKNOWN_WAIT, consistent, seal,
};
use crate::conn::{ConnectError, Connections, NetView, Origin};

impl Connections {
    /// Starts the client side: the probe round through the server's relay.
    pub(crate) fn start_initiator(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        seed: InitiatorSeed,
        net: NetView,
        tx: &mut TxQueue,
    ) -> Result<(), ConnectError> {
        if self.punches.len() >= MAX_SESSIONS {
            return Err(ConnectError::Local("too many holepunches in progress"));
        }
        // The relay the server listed that matches ours, else its first (`pickServerRelay`).
        let Some(server_relay) = seed
            .relays
            .iter()
            .find(|r| r.relay_address == seed.relay)
            .or(seed.relays.first())
            .copied()
        else {
            return Err(ConnectError::HolepunchFailed("the server offered no relays"));
        };
        let origin = Origin::Client(seed.op);
        let mut s = Session::new(origin, seed.stream, seed.remote_stream, seed.handshake);
        s.socket = net.socket;
        s.token_secret = self.ephemerals.next();
        s.deadline = now + self.config.connect_timeout;
        s.know_host(*seed.server_address.ip());
        s.local = LocalNat::from_net(&net);
        s.client = Some(ClientSide {
            target: seed.target,
            hp_id: seed.hp_id,
            relay: seed.relay,
            server_address: seed.server_address,
            server_relay,
            stage: Stage::Probe,
            inflight: None,
            remote_token: None,
            retry: true,
            wake: Timestamp::NEVER,
        });
        self.punches.insert(seed.stream, s);
        self.stats.holepunches += 1;
        self.probe_round(rpc, now, seed.stream, tx);
        Ok(())
    }

    /// Probe round: open our NAT towards the server, tell it our view, learn its.
    pub(super) fn probe_round(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        stream: u32,
        tx: &mut TxQueue,
    ) {
        let nonce = self.nonce();
        let Some(s) = self.punches.get_mut(&stream) else { return };
        let Some(c) = s.client.as_mut() else { return };
        open_session(tx, s.socket, c.server_address);
        self.stats.probes_sent += 1;
        c.stage = Stage::Probe;
        let payload = HolepunchPayload {
            firewall: s.local.firewall,
            round: s.round,
            addresses: Some(AddrList::Items(&s.local.addresses)),
            remote_address: Some(c.server_address),
            ..HolepunchPayload::default()
        };
        s.round += 1;
        let (peer, relay) = (c.server_relay.peer_address, c.server_relay.relay_address);
        let sealed = seal(&s.secret, &nonce, &payload);
        self.send_holepunch(rpc, now, stream, &sealed, peer, relay, tx);
    }

    /// Punch round: freeze our view, send our token, and start punching on the answer.
    pub(super) fn punch_round(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        stream: u32,
        tx: &mut TxQueue,
    ) {
        let Some(s) = self.punches.get(&stream) else { return };
        let random = !consistent(s.remote_firewall) || !consistent(s.local.firewall);
        if random && !self.random_punch_allowed(now) {
            // The reference waits 10-20 s and retries only with a relay-through token,
            // which tern does not offer: without one it aborts too.
            return self.abort_initiator(rpc, now, stream, "random punch throttled", tx);
        }
        let nonce = self.nonce();
        let Some(s) = self.punches.get_mut(&stream) else { return };
        let Some(c) = s.client.as_mut() else { return };
        c.stage = Stage::Punch;
        let token = secretbox::holepunch_token(*c.server_address.ip(), &s.token_secret);
        let payload = HolepunchPayload {
            firewall: s.local.firewall,
            round: s.round,
            punching: true,
            addresses: Some(AddrList::Items(&s.local.addresses)),
            token: Some(&token),
            remote_token: c.remote_token.as_ref(),
            ..HolepunchPayload::default()
        };
        s.round += 1;
        let (peer, relay) = (c.server_address, c.relay);
        let sealed = seal(&s.secret, &nonce, &payload);
        self.send_holepunch(rpc, now, stream, &sealed, peer, relay, tx);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_holepunch(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        stream: u32,
        sealed: &[u8],
        peer_address: SocketAddrV4,
        relay: SocketAddrV4,
        tx: &mut TxQueue,
    ) {
        let Some(c) = self.punches.get_mut(&stream).and_then(|s| s.client.as_mut()) else {
            return;
        };
        let msg = Holepunch {
            mode: Mode::FromClient,
            id: c.hp_id,
            payload: sealed,
            peer_address: Some(peer_address),
        };
        let mut value = vec![0u8; msg.encoded_len()];
        let Ok(n) = msg.encode(&mut value) else { return };
        let cmd = Command::PeerHolepunch as u64;
        let target = c.target.0;
        if let Some(req) =
            rpc.request(now, relay, false, cmd, Some(&target), None, Some(&value[..n]), tx)
        {
            c.inflight = Some((req, relay));
            self.punch_owner.insert(req, stream);
        }
    }

    /// Tells the server we give up (error ABORTED, not awaited) and fails the connect.
    pub(super) fn abort_initiator(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        stream: u32,
        why: &'static str,
        tx: &mut TxQueue,
    ) {
        let nonce = self.nonce();
        if let Some(s) = self.punches.get(&stream)
            && let Some(c) = s.client.as_ref()
        {
            let payload = HolepunchPayload {
                error: PayloadError::Aborted,
                round: s.round,
                ..HolepunchPayload::default()
            };
            let (peer, relay) = (c.server_relay.peer_address, c.server_relay.relay_address);
            let sealed = seal(&s.secret, &nonce, &payload);
            self.send_holepunch(rpc, now, stream, &sealed, peer, relay, tx);
        }
        self.end_session(now, stream, Some(ConnectError::HolepunchFailed(why)), tx);
    }

    /// A PEER_HOLEPUNCH response for one of our client sessions; false if not ours.
    pub(crate) fn on_holepunch_response(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        req: ReqId,
        reply: Option<&tern_rpc::Reply>,
        tx: &mut TxQueue,
    ) -> bool {
        let Some(stream) = self.punch_owner.remove(&req) else { return false };
        let Some(s) = self.punches.get_mut(&stream) else { return true };
        let Some(c) = s.client.as_mut() else { return true };
        let Some((_, relay)) = c.inflight.take() else { return true };
        let stage = c.stage;
        // The answer must come from the relay we asked, in mode REPLY, and decrypt.
        let got = reply.filter(|r| r.from == relay).and_then(|r| {
            let hp = Holepunch::decode(r.value.as_deref()?).ok()?;
            (hp.mode == Mode::Reply).then_some(())?;
            Some((Received::open(&s.secret, hp.payload)?, hp.peer_address))
        });
        let Some((p, peer_address)) = got else {
            return if stage == Stage::Punching {
                true
            } else {
                self.abort_initiator(rpc, now, stream, "no holepunch answer", tx);
                true
            };
        };
        if p.error != PayloadError::None {
            self.end_session(
                now,
                stream,
                Some(ConnectError::HolepunchFailed("remote aborted")),
                tx,
            );
            return true;
        }
        let Some(s) = self.punches.get_mut(&stream) else { return true };
        let Some(c) = s.client.as_mut() else { return true };
        let sent_token = secretbox::holepunch_token(*c.server_address.ip(), &s.token_secret);
        let echoed = stage == Stage::Punch && p.remote_token == Some(sent_token);
        let verified = echoed.then(|| peer_address.map(|a| *a.ip())).flatten();
        if p.token.is_some() {
            c.remote_token = p.token;
        }
        s.update_remote(&p.as_payload(), verified);
        match stage {
            Stage::Probe => {
                // The server answered from another socket through our own relay: use it.
                if let (Some(c), Some(peer)) = (s.client.as_mut(), peer_address)
                    && c.server_relay.relay_address == c.relay
                    && peer != c.server_address
                {
                    c.server_address = peer;
                    open_session(tx, s.socket, peer);
                    self.stats.probes_sent += 1;
                    s.know_host(*peer.ip());
                }
                if s.remote_firewall == Firewall::Unknown {
                    if let Some(c) = s.client.as_mut() {
                        c.stage = Stage::WaitUnknown;
                        c.wake = now + UNKNOWN_WAIT;
                    }
                } else {
                    self.after_probe(rpc, now, stream, tx);
                }
            }
            Stage::Punch => {
                if !s.remote_punching {
                    self.end_session(
                        now,
                        stream,
                        Some(ConnectError::HolepunchFailed("remote not punching")),
                        tx,
                    );
                } else if !self.start_punching(now, stream, tx) {
                    self.end_session(now, stream, Some(ConnectError::HolepunchUnsupported), tx);
                }
            }
            Stage::WaitUnknown | Stage::Punching => {}
        }
        true
    }

    /// After the probe round (and the grace second for an UNKNOWN server): retry once,
    /// abort, or go on to the punch round (lib/connect.js `probeRound`).
    pub(super) fn after_probe(
        &mut self,
        rpc: &mut Rpc,
        now: Timestamp,
        stream: u32,
        tx: &mut TxQueue,
    ) {
        let Some(s) = self.punches.get_mut(&stream) else { return };
        let Some(c) = s.client.as_mut() else { return };
        c.wake = Timestamp::NEVER;
        if (s.remote_firewall == Firewall::Unknown || c.remote_token.is_none()) && c.retry {
            c.retry = false;
            return self.probe_round(rpc, now, stream, tx);
        }
        let (local, remote) = (s.local.firewall, s.remote_firewall);
        if local == Firewall::Unknown || remote == Firewall::Unknown {
            return self.abort_initiator(rpc, now, stream, "NAT type unknown", tx);
        }
        if !consistent(local) && !consistent(remote) {
            return self.abort_initiator(rpc, now, stream, "both NATs randomise ports", tx);
        }
        self.punch_round(rpc, now, stream, tx);
    }
}

/// The opening probe towards where we believe the server is (hyperdht `openSession`):
/// with an IP TTL of [`OPEN_SESSION_TTL`] it creates the mapping in our own NAT and
/// dies on the way, before the server's NAT sees an unsolicited packet it might answer
/// by blocking or remapping that flow. Where the path is shorter (a LAN, loopback) it
/// arrives and the server echoes it, which connects at once.
fn open_session(tx: &mut TxQueue, socket: tern_base::SocketId, to: SocketAddrV4) {
    tx.push_with(socket, to, Some(OPEN_SESSION_TTL), PROBE.len(), |buf| {
        buf.copy_from_slice(&PROBE);
        Some(PROBE.len())
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use tern_base::SocketId;
    use tern_crypto::noise::{IkInitiator, IkResponder};
    use tern_crypto::{KeyPair, PublicKey};
    use tern_dht::OpId;
    use tern_rpc::RpcConfig;
    use tern_udx::{Udx, UdxConfig};
    use tern_wire::RelayPair;

    use super::*;
    use crate::conn::ConnConfig;

    fn handshake() -> tern_crypto::noise::HandshakeResult {
        let server = KeyPair::from_seed(&[2; 32]);
        let mut init =
            IkInitiator::new(&[1; 32], &PublicKey(*server.public_key().as_bytes()), &[3; 32])
                .unwrap();
        let mut resp = IkResponder::new(&[2; 32], &[4; 32]).unwrap();
        let m1 = init.write_message_1(b"").unwrap();
        resp.read_message_1(&m1).unwrap();
        let (m2, _) = resp.write_message_2(b"").unwrap();
        init.read_message_2(&m2).unwrap().1
    }

    /// The probe round opens our NAT towards the server with a short-lived probe (IP
    /// TTL 5, as hyperdht's `openSession`) and asks the server's relay to pass on our
    /// view; only the opening probe is low-TTL.
    #[test]
    fn the_opening_probe_is_low_ttl() {
        let now = Timestamp::ZERO;
        let mut rpc = Rpc::new(RpcConfig::default(), now, 1, [9; 32]);
        let mut conns =
            Connections::new(ConnConfig::default(), Udx::new(UdxConfig::default()), 1, &[7; 32]);
        let server = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 4000);
        let relay = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 49737);
        let seed = InitiatorSeed {
            op: OpId(1),
            target: tern_base::NodeId([5; 32]),
            stream: 11,
            remote_stream: 12,
            handshake: handshake(),
            hp_id: 0,
            relays: vec![RelayPair { relay_address: relay, peer_address: server }],
            relay,
            server_address: server,
        };
        let net = NetView {
            open_address: None,
            socket: SocketId::CLIENT,
            nat: Some(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 5000)),
        };
        let mut tx = TxQueue::new(64);
        assert!(conns.start_initiator(&mut rpc, now, seed, net, &mut tx).is_ok());
        let sent: Vec<(SocketAddrV4, Option<u8>, usize)> =
            tx.iter().map(|(m, d)| (m.dest, m.ttl, d.len())).collect();
        assert!(sent.contains(&(server, Some(OPEN_SESSION_TTL), 1)), "{sent:?}");
        // The PEER_HOLEPUNCH to the relay goes out with the default TTL.
        assert!(
            sent.iter().any(|&(to, ttl, len)| to == relay && ttl.is_none() && len > 1),
            "{sent:?}"
        );
    }
}
