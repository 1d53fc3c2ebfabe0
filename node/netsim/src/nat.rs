//! NAT boxes in HyperDHT's vocabulary (ref: hyperdht lib/constants.js `FIREWALL`,
//! RFC 4787 for the behaviours).
//!
//! * Mapping: [`Mapping::EndpointIndependent`] reuses one public port per private
//!   address whatever the destination (HyperDHT's CONSISTENT firewall: others see a
//!   stable port); [`Mapping::EndpointDependent`] allocates a fresh random port per
//!   destination (RANDOM: every peer sees a different port — a symmetric NAT).
//! * Filtering of inbound datagrams on a mapping: [`Filtering::Open`] accepts anyone,
//!   [`Filtering::AddressRestricted`] only hosts the mapping has sent to,
//!   [`Filtering::PortRestricted`] only the exact addresses it has sent to.
//! * Mappings and filter entries expire `timeout` after their last use in either
//!   direction; inbound datagrams to an expired or unknown port are dropped. An unsolicited
//!   datagram to the box's address (a PING_NAT reply aimed at a server port) therefore
//!   never reaches a host behind it, which is exactly what dht-rpc's firewall test probes.
//!
//! Tables are bounded ([`NatConfig::max_mappings`], four filter entries per mapping on
//! average): a full box sweeps expired entries and then refuses new flows, like a full
//! conntrack table.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{Rng, Timestamp};

use crate::hash::FxHashMap;
use crate::network::{DropReason, HostId};

/// How a NAT picks the public port of an outgoing flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// One port per private address (HyperDHT CONSISTENT).
    EndpointIndependent,
    /// One random port per (private address, destination) (HyperDHT RANDOM).
    EndpointDependent,
}

/// Which inbound datagrams a mapping lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone who knows the public port (full cone).
    Open,
    /// Hosts the mapping has sent to.
    AddressRestricted,
    /// Exact addresses the mapping has sent to.
    PortRestricted,
}

/// One NAT box's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Port allocation.
    pub mapping: Mapping,
    /// Inbound filtering.
    pub filtering: Filtering,
    /// Idle lifetime of mappings and filter entries (Linux conntrack: 30 s unreplied,
    /// 120 s once both directions were seen; home routers 30 s – 5 min).
    pub timeout: Duration,
    /// Whether a host may reach another host behind the same box via the box's public
    /// address.
    pub hairpin: bool,
    /// Most simultaneous mappings (a port range of 64 512 at most).
    pub max_mappings: usize,
}

impl NatConfig {
    /// An endpoint-independent NAT with the given filtering, 120 s timeout.
    pub fn consistent(filtering: Filtering) -> Self {
        Self {
            mapping: Mapping::EndpointIndependent,
            filtering,
            timeout: Duration::from_secs(120),
            hairpin: false,
            max_mappings: 16_384,
        }
    }

    /// A symmetric NAT (endpoint-dependent mapping, port-restricted), 120 s timeout.
    pub fn random() -> Self {
        Self {
            mapping: Mapping::EndpointDependent,
            filtering: Filtering::PortRestricted,
            ..Self::consistent(Filtering::PortRestricted)
        }
    }

    /// A short label for reports.
    pub fn label(&self) -> &'static str {
        match (self.mapping, self.filtering) {
            (Mapping::EndpointIndependent, Filtering::Open) => "consistent/open",
            (Mapping::EndpointIndependent, Filtering::AddressRestricted) => "consistent/addr",
            (Mapping::EndpointIndependent, Filtering::PortRestricted) => "consistent/port",
            (Mapping::EndpointDependent, Filtering::Open) => "random/open",
            (Mapping::EndpointDependent, Filtering::AddressRestricted) => "random/addr",
            (Mapping::EndpointDependent, Filtering::PortRestricted) => "random/port",
        }
    }
}

/// Lowest public port a box hands out.
const FIRST_PORT: u16 = 1024;
/// Filter entries allowed per mapping on average before new ones are refused.
const FILTERS_PER_MAPPING: usize = 4;
/// Tables are not swept below this size (sweeping tiny tables often is wasted work).
const MIN_SWEEP: usize = 256;

#[derive(Debug, Clone, Copy)]
struct MapEntry {
    host: HostId,
    private: SocketAddrV4,
    /// The destination part of the outbound key (unspecified for endpoint-independent).
    remote_key: SocketAddrV4,
    last_used: Timestamp,
}

/// The state of one NAT box.
#[derive(Debug)]
pub(crate) struct NatBox {
    pub(crate) cfg: NatConfig,
    pub(crate) ip: Ipv4Addr,
    out: FxHashMap<(SocketAddrV4, SocketAddrV4), u16>,
    ports: FxHashMap<u16, MapEntry>,
    filters: FxHashMap<(u16, SocketAddrV4), Timestamp>,
    next_port: u16,
    sweep_mappings_at: usize,
    sweep_filters_at: usize,
}

const UNSPECIFIED: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);

impl NatBox {
    pub(crate) fn new(cfg: NatConfig, ip: Ipv4Addr, rng: &mut Rng) -> Self {
        let span = u64::from(u16::MAX - FIRST_PORT);
        Self {
            cfg,
            ip,
            out: FxHashMap::default(),
            ports: FxHashMap::default(),
            filters: FxHashMap::default(),
            next_port: FIRST_PORT + rng.below(span) as u16,
            sweep_mappings_at: MIN_SWEEP,
            sweep_filters_at: MIN_SWEEP,
        }
    }

    /// Live mappings (including expired ones not yet swept).
    pub(crate) fn mappings(&self) -> usize {
        self.ports.len()
    }

    fn live(&self, last_used: Timestamp, now: Timestamp) -> bool {
        now < last_used + self.cfg.timeout
    }

    fn filter_key(&self, port: u16, remote: SocketAddrV4) -> Option<(u16, SocketAddrV4)> {
        match self.cfg.filtering {
            Filtering::Open => None,
            Filtering::AddressRestricted => Some((port, SocketAddrV4::new(*remote.ip(), 0))),
            Filtering::PortRestricted => Some((port, remote)),
        }
    }

    /// Translates an outgoing datagram's source; returns the public port.
    pub(crate) fn outbound(
        &mut self,
        now: Timestamp,
        host: HostId,
        private: SocketAddrV4,
        remote: SocketAddrV4,
        rng: &mut Rng,
    ) -> Result<u16, DropReason> {
        let remote_key = match self.cfg.mapping {
            Mapping::EndpointIndependent => UNSPECIFIED,
            Mapping::EndpointDependent => remote,
        };
        let key = (private, remote_key);
        let existing = self.out.get(&key).copied();
        let port = match existing.and_then(|p| self.ports.get(&p).map(|e| (p, e.last_used))) {
            Some((port, last)) if self.live(last, now) => port,
            _ => {
                if let Some(old) = existing {
                    // Expired: a real box forgets it and allocates afresh, usually on
                    // another port, so peers see our address change.
                    self.ports.remove(&old);
                    self.out.remove(&key);
                }
                let port = self.allocate(now, rng)?;
                let entry = MapEntry { host, private, remote_key, last_used: now };
                self.ports.insert(port, entry);
                self.out.insert(key, port);
                port
            }
        };
        if let Some(e) = self.ports.get_mut(&port) {
            e.last_used = now;
        }
        if let Some(fk) = self.filter_key(port, remote) {
            if self.filters.len() >= self.sweep_filters_at {
                self.sweep_filters(now);
            }
            if self.filters.len() < self.cfg.max_mappings * FILTERS_PER_MAPPING
                || self.filters.contains_key(&fk)
            {
                self.filters.insert(fk, now);
            }
        }
        Ok(port)
    }

    /// Finds the host an incoming datagram to public `port` from `from` goes to.
    pub(crate) fn inbound(
        &mut self,
        now: Timestamp,
        from: SocketAddrV4,
        port: u16,
    ) -> Result<(HostId, SocketAddrV4), DropReason> {
        let Some(entry) = self.ports.get(&port).copied() else {
            return Err(DropReason::NoMapping);
        };
        if !self.live(entry.last_used, now) {
            return Err(DropReason::NoMapping);
        }
        if let Some(fk) = self.filter_key(port, from) {
            match self.filters.get(&fk).copied() {
                Some(t) if self.live(t, now) => {
                    self.filters.insert(fk, now);
                }
                _ => return Err(DropReason::Filtered),
            }
        }
        if let Some(e) = self.ports.get_mut(&port) {
            e.last_used = now;
        }
        Ok((entry.host, entry.private))
    }

    /// A free public port: sequential for endpoint-independent boxes, random for
    /// endpoint-dependent ones (so peers cannot predict it).
    fn allocate(&mut self, now: Timestamp, rng: &mut Rng) -> Result<u16, DropReason> {
        if self.ports.len() >= self.sweep_mappings_at || self.ports.len() >= self.cfg.max_mappings {
            self.sweep_mappings(now);
        }
        if self.ports.len() >= self.cfg.max_mappings.min(usize::from(u16::MAX - FIRST_PORT)) {
            return Err(DropReason::NatFull);
        }
        let span = u64::from(u16::MAX - FIRST_PORT) + 1;
        // Bounded: fewer ports are taken than exist, so a free one is found within `span`
        // sequential steps; random probing falls back to sequential after 64 tries.
        for attempt in 0..span + 64 {
            let candidate = if self.cfg.mapping == Mapping::EndpointDependent && attempt < 64 {
                FIRST_PORT + rng.below(span) as u16
            } else {
                let p = self.next_port;
                self.next_port = if p == u16::MAX { FIRST_PORT } else { p + 1 };
                p
            };
            if !self.ports.contains_key(&candidate) {
                return Ok(candidate);
            }
        }
        Err(DropReason::NatFull)
    }

    fn sweep_mappings(&mut self, now: Timestamp) {
        let timeout = self.cfg.timeout;
        let out = &mut self.out;
        self.ports.retain(|_, e| {
            let live = now < e.last_used + timeout;
            if !live {
                out.remove(&(e.private, e.remote_key));
            }
            live
        });
        self.sweep_mappings_at = (2 * self.ports.len()).max(MIN_SWEEP);
    }

    fn sweep_filters(&mut self, now: Timestamp) {
        let timeout = self.cfg.timeout;
        self.filters.retain(|_, t| now < *t + timeout);
        self.sweep_filters_at = (2 * self.filters.len()).max(MIN_SWEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, a), port)
    }

    fn nat(cfg: NatConfig) -> (NatBox, Rng) {
        let mut rng = Rng::from_seed(1);
        (NatBox::new(cfg, Ipv4Addr::new(10, 0, 0, 99), &mut rng), rng)
    }

    const T0: Timestamp = Timestamp::ZERO;

    #[test]
    fn consistent_mapping_keeps_one_port_random_does_not() {
        let private = SocketAddrV4::new(Ipv4Addr::new(10, 128, 0, 1), 5000);
        let (mut n, mut rng) = nat(NatConfig::consistent(Filtering::PortRestricted));
        let p1 = n.outbound(T0, HostId(0), private, addr(1, 1), &mut rng).unwrap();
        let p2 = n.outbound(T0, HostId(0), private, addr(2, 1), &mut rng).unwrap();
        assert_eq!(p1, p2);
        let (mut n, mut rng) = nat(NatConfig::random());
        let p1 = n.outbound(T0, HostId(0), private, addr(1, 1), &mut rng).unwrap();
        let p2 = n.outbound(T0, HostId(0), private, addr(2, 1), &mut rng).unwrap();
        assert_ne!(p1, p2);
        assert_eq!(n.mappings(), 2);
    }

    #[test]
    fn filtering_levels() {
        let private = SocketAddrV4::new(Ipv4Addr::new(10, 128, 0, 1), 5000);
        for (filtering, same_host_other_port, stranger) in [
            (Filtering::Open, true, true),
            (Filtering::AddressRestricted, true, false),
            (Filtering::PortRestricted, false, false),
        ] {
            let (mut n, mut rng) = nat(NatConfig::consistent(filtering));
            let port = n.outbound(T0, HostId(3), private, addr(1, 1000), &mut rng).unwrap();
            assert_eq!(n.inbound(T0, addr(1, 1000), port), Ok((HostId(3), private)));
            assert_eq!(n.inbound(T0, addr(1, 2000), port).is_ok(), same_host_other_port);
            assert_eq!(n.inbound(T0, addr(7, 1000), port).is_ok(), stranger);
            assert_eq!(
                n.inbound(T0, addr(1, 1000), port.wrapping_add(1)),
                Err(DropReason::NoMapping)
            );
        }
    }

    #[test]
    fn mappings_expire_and_are_reallocated() {
        let private = SocketAddrV4::new(Ipv4Addr::new(10, 128, 0, 1), 5000);
        let mut cfg = NatConfig::consistent(Filtering::Open);
        cfg.timeout = Duration::from_secs(30);
        let (mut n, mut rng) = nat(cfg);
        let port = n.outbound(T0, HostId(0), private, addr(1, 1), &mut rng).unwrap();
        let t29 = Timestamp::from_millis(29_000);
        assert!(n.inbound(t29, addr(5, 5), port).is_ok(), "inbound use refreshes");
        let t58 = Timestamp::from_millis(58_000);
        assert!(n.inbound(t58, addr(5, 5), port).is_ok());
        let late = Timestamp::from_millis(100_000);
        assert_eq!(n.inbound(late, addr(5, 5), port), Err(DropReason::NoMapping));
        let again = n.outbound(late, HostId(0), private, addr(1, 1), &mut rng).unwrap();
        assert_ne!(again, port, "a fresh mapping on the next port");
    }

    #[test]
    fn a_full_box_refuses_new_flows_then_recovers() {
        let mut cfg = NatConfig::random();
        cfg.max_mappings = 300;
        cfg.timeout = Duration::from_secs(10);
        let (mut n, mut rng) = nat(cfg);
        let private = SocketAddrV4::new(Ipv4Addr::new(10, 128, 0, 1), 5000);
        for i in 0..300u16 {
            assert!(n.outbound(T0, HostId(0), private, addr(1, i + 1), &mut rng).is_ok());
        }
        assert_eq!(
            n.outbound(T0, HostId(0), private, addr(2, 1), &mut rng),
            Err(DropReason::NatFull)
        );
        let later = Timestamp::from_millis(11_000);
        assert!(n.outbound(later, HostId(0), private, addr(2, 1), &mut rng).is_ok());
        assert_eq!(n.mappings(), 1, "expired mappings were swept");
    }
}
