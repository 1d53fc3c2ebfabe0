//! Holepunching (spec hyperdht §10; ref: hyperdht lib/holepuncher.js, the probe and punch
//! rounds of lib/connect.js, `_onpeerholepunch` in lib/server.js).
//!
//! When neither side is reachable, the client and the server exchange encrypted
//! PEER_HOLEPUNCH messages through a relay (NAT class, public addresses, address tokens),
//! then both send one-byte probes at each other until one arrives: the client (the
//! initiator) binds its UDX stream to the address the first probe came from, the server
//! (the responder) echoes every probe and binds on the client's first UDX packet.
//!
//! One deliberate difference from the reference: probes leave from the node's own
//! socket (the one its DHT requests leave from) rather than a fresh socket per
//! connection. That socket's NAT mapping is sampled by every DHT reply already (the rpc
//! NAT sampler), so the NAT class is known at once instead of after four extra pings,
//! and the stream ends up on a socket the driver already polls. Behind a
//! port-randomising (RANDOM) NAT towards a CONSISTENT one, the session also opens the
//! reference's "birthday" sockets through the driver (255 more, see `birthday`); the
//! stream then lives on whichever socket the peer's probe (client) or first UDX packet
//! (server) arrived on, and that socket closes with the stream. CONSISTENT here / RANDOM
//! there sprays the remote host's ports as in the reference; RANDOM / RANDOM is refused.
//! As in the reference, the client's opening probes (the probe round's, and the one
//! towards a server that answered from another address) and each birthday socket's
//! first probes go out with an IP TTL of 5, every other punching probe with the default.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{NodeId, SocketId, Timestamp, TxQueue};
use tern_crypto::noise::HandshakeResult;
use tern_crypto::secretbox;
use tern_dht::OpId;
use tern_rpc::{ReqId, Rpc};
use tern_wire::handshake::{Firewall, HolepunchPayload, PayloadError};
use tern_wire::{AddrList, Decode, Encode, RelayPair};

use super::{ConnectError, Connections, ListenerId, NetView, Origin};

mod birthday;
mod initiator;
mod responder;

pub(crate) use birthday::BirthdaySockets;

/// The probe datagram: one zero byte (datagrams of at most one byte are probes, §10.4).
pub(crate) const PROBE: [u8; 1] = [0];
/// IP TTL of the client's opening probes (hyperdht `HOLEPUNCH_TTL`): enough to leave our
/// NAT, too little to reach a peer across the internet.
const OPEN_SESSION_TTL: u8 = 5;
/// Consistent strategy: rounds of probes, one second apart (reference: 10 × 1 s).
const CONSISTENT_ROUNDS: u32 = 10;
const CONSISTENT_INTERVAL: Duration = Duration::from_secs(1);
/// Random strategy: probes to random ports of a verified host (reference: 1750 × 20 ms).
const RANDOM_PROBES: u32 = 1750;
const RANDOM_INTERVAL: Duration = Duration::from_millis(20);
/// How long a server waits for the client to start punching (reference: 10 s).
const RESPONDER_WAIT: Duration = Duration::from_secs(10);
/// How long a client gives an UNKNOWN server to classify its NAT (reference: 1 s).
const UNKNOWN_WAIT: Duration = Duration::from_secs(1);
/// After the last probe, how long a session waits for a late answer.
const LINGER: Duration = Duration::from_secs(2);
/// At most one punch involving a RANDOM NAT at a time, 20 s apart (reference:
/// `randomPunchLimit` 1, `randomPunchInterval` 20 s): spraying ports is loud.
const RANDOM_PUNCH_INTERVAL: Duration = Duration::from_secs(20);
/// Sessions in progress (each costs a stream and a few hundred bytes).
pub(crate) const MAX_SESSIONS: usize = 1024;
/// Remote addresses kept from one peer's holepunch payloads.
const MAX_REMOTE_ADDRESSES: usize = 8;
/// Probes a responder echoes per session: enough for every strategy's answers, and a
/// bound on what a spoofed source can make us send.
const ECHO_BUDGET: u32 = 64;
/// The largest holepunch payload we decrypt (a full one is under 200 bytes).
const MAX_PAYLOAD: usize = 1024;

/// Our side of the NAT as the punch logic sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalNat {
    pub firewall: Firewall,
    pub addresses: Vec<SocketAddrV4>,
}

impl LocalNat {
    /// From the rpc NAT sampler's view of the socket we send from: a stable port is a
    /// CONSISTENT NAT, a host without one a RANDOM NAT, no agreement yet UNKNOWN.
    pub(crate) fn from_net(net: &NetView) -> Self {
        match net.nat {
            None => Self { firewall: Firewall::Unknown, addresses: Vec::new() },
            Some(a) if a.port() == 0 => Self { firewall: Firewall::Random, addresses: vec![a] },
            Some(a) => Self { firewall: Firewall::Consistent, addresses: vec![a] },
        }
    }
}

/// OPEN counts as CONSISTENT for choosing a strategy (reference `coerceFirewall`).
fn consistent(f: Firewall) -> bool {
    matches!(f, Firewall::Open | Firewall::Consistent)
}

#[derive(Debug, Clone, Copy)]
struct RemoteAddr {
    addr: SocketAddrV4,
    verified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// Every remote address each round (unverified ones every 4th round).
    Consistent,
    /// Random ports of one verified remote host.
    RandomPorts(Ipv4Addr),
    /// From up to 256 sockets of ours to the remote's verified address (see
    /// `birthday`).
    Birthday(SocketAddrV4),
}

#[derive(Debug)]
struct Punching {
    strategy: Strategy,
    sent: u32,
    next: Timestamp,
    random: bool,
}

/// Where a client is in the rounds of lib/connect.js.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Probe round sent, waiting for the answer.
    Probe,
    /// The server said UNKNOWN: give it a second, then decide.
    WaitUnknown,
    /// Punch round sent.
    Punch,
    /// Both sides are punching.
    Punching,
}

/// The client's half of a session.
#[derive(Debug)]
struct ClientSide {
    target: NodeId,
    hp_id: u64,
    /// The relay our handshake went through (the punch round goes there).
    relay: SocketAddrV4,
    /// The server's address as that relay saw it.
    server_address: SocketAddrV4,
    /// The server's own relay we send the probe round through.
    server_relay: RelayPair,
    stage: Stage,
    inflight: Option<(ReqId, SocketAddrV4)>,
    remote_token: Option<[u8; 32]>,
    retry: bool,
    wake: Timestamp,
}

/// One holepunch in progress, keyed by our UDX stream id.
pub(crate) struct Session {
    origin: Origin,
    stream: u32,
    remote_stream: u32,
    socket: SocketId,
    handshake: HandshakeResult,
    secret: [u8; 32],
    token_secret: [u8; 32],
    round: u64,
    remote_firewall: Firewall,
    remote: Vec<RemoteAddr>,
    remote_punching: bool,
    /// Hosts probes are accepted from (and, for a responder, echoed to).
    known_hosts: Vec<Ipv4Addr>,
    local: LocalNat,
    punching: Option<Punching>,
    deadline: Timestamp,
    echoes_left: u32,
    client: Option<ClientSide>,
    /// A responder's handshake slot (the id clients name in PEER_HOLEPUNCH).
    slot: Option<u64>,
    /// A responder's announce relays: only holepunches they forward get address tokens.
    our_relays: Vec<SocketAddrV4>,
    /// The birthday sockets of a `Strategy::Birthday` punch.
    birthday: Option<birthday::Birthday>,
}

/// What a server needs to start a responder session for an accepted handshake.
pub(crate) struct ResponderSeed {
    pub listener: ListenerId,
    pub client: SocketAddrV4,
    pub relays: Vec<SocketAddrV4>,
    /// Our network view when the handshake was answered.
    pub net: NetView,
}

/// What a client needs to start punching after the handshake.
pub(crate) struct InitiatorSeed {
    pub op: OpId,
    pub target: NodeId,
    pub stream: u32,
    pub remote_stream: u32,
    pub handshake: HandshakeResult,
    pub hp_id: u64,
    pub relays: Vec<RelayPair>,
    pub relay: SocketAddrV4,
    pub server_address: SocketAddrV4,
}

impl Session {
    fn new(origin: Origin, stream: u32, remote_stream: u32, hs: HandshakeResult) -> Self {
        let secret = hs.holepunch_secret();
        Self {
            origin,
            stream,
            remote_stream,
            socket: SocketId::CLIENT,
            handshake: hs,
            secret,
            token_secret: [0; 32],
            round: 0,
            remote_firewall: Firewall::Unknown,
            remote: Vec::new(),
            remote_punching: false,
            known_hosts: Vec::new(),
            local: LocalNat { firewall: Firewall::Unknown, addresses: Vec::new() },
            punching: None,
            deadline: Timestamp::NEVER,
            echoes_left: ECHO_BUDGET,
            client: None,
            slot: None,
            our_relays: Vec::new(),
            birthday: None,
        }
    }

    fn know_host(&mut self, host: Ipv4Addr) {
        if !self.known_hosts.contains(&host) && self.known_hosts.len() < MAX_REMOTE_ADDRESSES * 2 {
            self.known_hosts.push(host);
        }
    }

    /// Takes the remote's view from a holepunch payload (`updateRemote`).
    fn update_remote(&mut self, p: &HolepunchPayload<'_>, verified: Option<Ipv4Addr>) {
        let was_verified: Vec<Ipv4Addr> =
            self.remote.iter().filter(|a| a.verified).map(|a| *a.addr.ip()).collect();
        self.remote.clear();
        for addr in p.addresses.iter().flat_map(|l| l.iter()).take(MAX_REMOTE_ADDRESSES) {
            let ok = verified == Some(*addr.ip()) || was_verified.contains(addr.ip());
            self.remote.push(RemoteAddr { addr, verified: ok });
            self.know_host(*addr.ip());
        }
        self.remote_firewall = p.firewall;
        self.remote_punching = p.punching;
    }

    fn token(&self, host: Ipv4Addr) -> [u8; 32] {
        secretbox::holepunch_token(host, &self.token_secret)
    }

    /// The strategy for both NAT classes (reference `_punch`), `None` when none fits:
    /// a RANDOM side needs a verified remote address and the random-punch throttle's
    /// permission; RANDOM / RANDOM has none.
    fn strategy(&self, random_ok: bool) -> Option<Strategy> {
        let (local, remote) = (self.local.firewall, self.remote_firewall);
        if consistent(local) && consistent(remote) {
            return Some(Strategy::Consistent);
        }
        let verified = self.remote.iter().find(|a| a.verified).map(|a| a.addr);
        match verified {
            Some(addr) if consistent(local) && remote == Firewall::Random && random_ok => {
                Some(Strategy::RandomPorts(*addr.ip()))
            }
            // Our NAT randomises, theirs does not: many sockets of ours, one port of
            // theirs (see `birthday`).
            Some(addr) if local == Firewall::Random && consistent(remote) && random_ok => {
                Some(Strategy::Birthday(addr))
            }
            _ => None,
        }
    }

    fn next_wake(&self) -> Timestamp {
        let punch = self.punching.as_ref().map_or(Timestamp::NEVER, |p| p.next);
        let wake = self.client.as_ref().map_or(Timestamp::NEVER, |c| c.wake);
        self.deadline.min(punch).min(wake)
    }
}

/// A decrypted PEER_HOLEPUNCH payload, owned.
struct Received {
    error: PayloadError,
    firewall: Firewall,
    round: u64,
    punching: bool,
    addresses: Vec<SocketAddrV4>,
    remote_address: Option<SocketAddrV4>,
    token: Option<[u8; 32]>,
    remote_token: Option<[u8; 32]>,
}

impl Received {
    fn open(secret: &[u8; 32], sealed: &[u8]) -> Option<Self> {
        if sealed.len() > MAX_PAYLOAD {
            return None;
        }
        let plain = secretbox::open_to_vec(secret, sealed).ok()?;
        let p = HolepunchPayload::decode(&plain).ok()?;
        Some(Self {
            error: p.error,
            firewall: p.firewall,
            round: p.round,
            punching: p.punching,
            addresses: p
                .addresses
                .iter()
                .flat_map(|l| l.iter())
                .take(MAX_REMOTE_ADDRESSES)
                .collect(),
            remote_address: p.remote_address,
            token: p.token.copied(),
            remote_token: p.remote_token.copied(),
        })
    }

    fn as_payload(&self) -> HolepunchPayload<'_> {
        HolepunchPayload {
            error: self.error,
            firewall: self.firewall,
            round: self.round,
            punching: self.punching,
            addresses: Some(AddrList::Items(&self.addresses)),
            ..HolepunchPayload::default()
        }
    }
}

/// `nonce || secretbox(payload)` under the session's holepunch secret (§10.2).
fn seal(
    secret: &[u8; 32],
    nonce: &[u8; secretbox::NONCE_LEN],
    p: &HolepunchPayload<'_>,
) -> Vec<u8> {
    let mut plain = vec![0u8; p.encoded_len()];
    let n = p.encode(&mut plain).unwrap_or(0);
    secretbox::seal_to_vec(secret, nonce, &plain[..n])
}

impl Connections {
    fn nonce(&mut self) -> [u8; secretbox::NONCE_LEN] {
        let mut n = [0u8; secretbox::NONCE_LEN];
        n.copy_from_slice(&self.ephemerals.next()[..secretbox::NONCE_LEN]);
        n
    }

    fn random_punch_allowed(&self, now: Timestamp) -> bool {
        self.random_punches == 0
            && self.last_random_punch.is_none_or(|t| now >= t + RANDOM_PUNCH_INTERVAL)
    }

    /// Ends a session without a connection; a client's connect fails with `error`.
    fn end_session(
        &mut self,
        now: Timestamp,
        stream: u32,
        error: Option<ConnectError>,
        tx: &mut TxQueue,
    ) {
        let Some(s) = self.punches.remove(&stream) else { return };
        self.forget_session(&s);
        self.release_sockets(stream, None);
        self.stats.holepunch_failures += 1;
        self.udx.destroy(now, stream, tx);
        if let (Origin::Client(op), Some(e)) = (s.origin, error) {
            self.fail(op, e);
        }
    }

    fn forget_session(&mut self, s: &Session) {
        if let Some((req, _)) = s.client.as_ref().and_then(|c| c.inflight) {
            self.punch_owner.remove(&req);
        }
        if let Some(slot) = s.slot {
            self.punch_slots.remove(&slot);
        }
        if s.punching.as_ref().is_some_and(|p| p.random) {
            self.random_punches = self.random_punches.saturating_sub(1);
        }
    }

    /// Chooses the strategy and starts probing; false when no strategy fits.
    fn start_punching(&mut self, now: Timestamp, stream: u32, tx: &mut TxQueue) -> bool {
        let random_ok = self.random_punch_allowed(now);
        let Some(s) = self.punches.get_mut(&stream) else { return false };
        if s.punching.is_some() {
            return true;
        }
        let Some(strategy) = s.strategy(random_ok) else { return false };
        let random = !consistent(s.local.firewall) || !consistent(s.remote_firewall);
        // The responder waits a second first: the initiator's first probes are already on
        // their way ("fast mode").
        let first = if s.client.is_none() && !random { now + CONSISTENT_INTERVAL } else { now };
        let (rounds, interval, pause) = match strategy {
            Strategy::Consistent => (CONSISTENT_ROUNDS, CONSISTENT_INTERVAL, Duration::ZERO),
            Strategy::RandomPorts(_) => (RANDOM_PROBES, RANDOM_INTERVAL, Duration::ZERO),
            Strategy::Birthday(_) => (RANDOM_PROBES, RANDOM_INTERVAL, birthday::BURST_PAUSE),
        };
        s.deadline = s.deadline.max(first + pause + interval * rounds + LINGER);
        s.punching = Some(Punching { strategy, sent: 0, next: first, random });
        if let Some(c) = s.client.as_mut() {
            c.stage = Stage::Punching;
        }
        if random {
            self.random_punches += 1;
        }
        match strategy {
            Strategy::Birthday(target) => self.start_birthday(now, stream, target, tx),
            _ => self.drive_punch(now, stream, tx),
        }
        true
    }

    /// Sends the probes that are due for one session.
    fn drive_punch(&mut self, now: Timestamp, stream: u32, tx: &mut TxQueue) {
        let Some(s) = self.punches.get_mut(&stream) else { return };
        let Some(p) = s.punching.as_mut() else { return };
        if p.next > now {
            return;
        }
        if birthday::is_birthday(p) {
            self.drive_birthday(now, stream, tx);
            return;
        }
        match p.strategy {
            Strategy::Birthday(_) => {}
            Strategy::Consistent => {
                if p.sent >= CONSISTENT_ROUNDS {
                    p.next = Timestamp::NEVER;
                    return;
                }
                p.sent += 1;
                let round = p.sent;
                for a in &s.remote {
                    if a.verified || round & 3 == 0 {
                        tx.push(s.socket, a.addr, &PROBE);
                        self.stats.probes_sent += 1;
                    }
                }
                p.next = now + CONSISTENT_INTERVAL;
            }
            Strategy::RandomPorts(host) => {
                if p.sent >= RANDOM_PROBES {
                    p.next = Timestamp::NEVER;
                    return;
                }
                p.sent += 1;
                self.stream_rng =
                    self.stream_rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                // Ports 1000..=65535, like the reference's `randomPort`.
                let port = 1000 + ((self.stream_rng >> 33) % 64_536) as u16;
                tx.push(s.socket, SocketAddrV4::new(host, port), &PROBE);
                self.stats.probes_sent += 1;
                p.next = now + RANDOM_INTERVAL;
            }
        }
    }

    /// A probe (a datagram of at most one byte) arrived. A client session whose peer it
    /// comes from is connected; a server session echoes it. False when no session knows
    /// the sender (the datagram is then the rpc layer's to count as too short).
    pub(crate) fn on_probe(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        tx: &mut TxQueue,
    ) -> bool {
        let host = *from.ip();
        let mut connected = None;
        let mut claimed = false;
        for s in self.punches.values_mut() {
            if !s.known_hosts.contains(&host) && !s.remote.iter().any(|a| *a.addr.ip() == host) {
                continue;
            }
            claimed = true;
            match s.origin {
                // The initiator takes the first probe from its peer: from an address the
                // peer told us or the relay saw, or any port of its host behind a
                // port-randomising NAT.
                Origin::Client(_) => {
                    let exact = s.client.as_ref().is_some_and(|c| c.server_address == from)
                        || s.remote.iter().any(|a| a.addr == from);
                    if exact || s.remote_firewall == Firewall::Random {
                        connected = Some(s.stream);
                        break;
                    }
                }
                Origin::Server(_) => {
                    if s.echoes_left > 0 {
                        s.echoes_left -= 1;
                        tx.push(socket, from, &PROBE);
                        self.stats.probes_sent += 1;
                    }
                }
            }
        }
        if claimed {
            self.stats.probes_received += 1;
        }
        let Some(stream) = connected else { return claimed };
        let Some(s) = self.punches.remove(&stream) else { return true };
        self.forget_session(&s);
        // The stream runs on the socket the probe came in on; the rest close.
        self.release_sockets(stream, Some(socket));
        if s.punching.as_ref().is_some_and(|p| p.random) {
            self.last_random_punch = Some(now);
        }
        if self.bind_session(now, s, socket, from, tx) {
            self.stats.holepunched += 1;
        }
        true
    }

    /// Ends the client session of `stream` with a path found outside the holepunch
    /// (the LAN shortcut): its stream connects to `to` from the session's socket.
    /// False when no client session is left (the holepunch won, or it ended).
    pub(super) fn finish_client_session(
        &mut self,
        now: Timestamp,
        stream: u32,
        to: SocketAddrV4,
        tx: &mut TxQueue,
    ) -> bool {
        if self.punches.get(&stream).is_none_or(|s| s.client.is_none()) {
            return false;
        }
        let Some(s) = self.punches.remove(&stream) else { return false };
        self.forget_session(&s);
        self.release_sockets(stream, None);
        let socket = s.socket;
        self.bind_session(now, s, socket, to, tx)
    }

    /// Connects a finished session's stream to `to` from `socket`; on failure a client's
    /// connect fails. True when connected.
    fn bind_session(
        &mut self,
        now: Timestamp,
        s: Session,
        socket: SocketId,
        to: SocketAddrV4,
        tx: &mut TxQueue,
    ) -> bool {
        if self.udx.connect(now, s.stream, socket, s.remote_stream, to, tx).is_ok() {
            self.established(now, s.origin, s.stream, to, s.handshake);
            return true;
        }
        if let Origin::Client(op) = s.origin {
            self.udx.destroy(now, s.stream, tx);
            self.fail(op, ConnectError::Local("stream connect failed"));
        }
        false
    }

    /// Timers of the sessions: probes due, the UNKNOWN grace second, deadlines.
    pub(crate) fn punch_timeout(&mut self, rpc: &mut Rpc, now: Timestamp, tx: &mut TxQueue) {
        if self.punches.is_empty() {
            return;
        }
        let due: Vec<u32> =
            self.punches.values().filter(|s| s.next_wake() <= now).map(|s| s.stream).collect();
        for stream in due {
            let Some(s) = self.punches.get(&stream) else { continue };
            if s.deadline <= now {
                let err = ConnectError::HolepunchFailed("no probe came through");
                self.end_session(now, stream, Some(err), tx);
                continue;
            }
            if s.client.as_ref().is_some_and(|c| c.stage == Stage::WaitUnknown && c.wake <= now) {
                self.after_probe(rpc, now, stream, tx);
            }
            self.drive_punch(now, stream, tx);
        }
    }

    /// The earliest session timer.
    pub(crate) fn punch_poll_timeout(&self) -> Timestamp {
        self.punches.values().map(Session::next_wake).min().unwrap_or(Timestamp::NEVER)
    }

    /// Sessions in progress.
    pub fn holepunches(&self) -> usize {
        self.punches.len()
    }
}
