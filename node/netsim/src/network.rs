//! [`Network`]: hosts, sites, NAT boxes, partitions and the per-datagram decisions.
//!
//! A *site* is one public address: a host that owns it, or a NAT box with hosts behind
//! it. Latency, region, partition group and the uplink (bandwidth queue, burst-loss
//! state) belong to sites; hosts behind a NAT share their box's. The one-way delay of a
//! path is `access(src) + access(dst) + core(region src, region dst) + link latency +
//! jitter`, with the region matrix and access latencies drawn from the seed.
//!
//! The caller owns time and payloads: [`Network::send`] is asked when a host sends,
//! [`Network::arrive`] when a copy reaches the destination address. Host death and pause
//! are recorded here so both ends see them; what a paused host does with arrivals is the
//! caller's business (tern-sim queues them like a socket buffer).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{Rng, Timestamp};

use crate::addr;
use crate::hash::FxHashMap;
use crate::link::{Bandwidth, Jitter, LinkConfig, Loss};
use crate::nat::{NatBox, NatConfig};

/// A host (one machine running one node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(pub u32);

/// A NAT box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NatId(pub u32);

/// A public address: a public host or a NAT box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(pub u32);

/// Why a datagram did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The sender is dead or paused.
    SenderDown,
    /// The destination is not an address of the plan, or a private address elsewhere.
    Unroutable,
    /// Sent to the sender's own NAT box, which does not hairpin.
    NoHairpin,
    /// The sender's NAT box has no free mapping.
    NatFull,
    /// A partition separates the sites.
    Partition,
    /// The loss model dropped it.
    Loss,
    /// The sender's uplink queue was full.
    Queue,
    /// The destination host is dead.
    HostDown,
    /// No live mapping on the destination NAT box for that port.
    NoMapping,
    /// The destination NAT box's filtering refused the sender.
    Filtered,
}

impl DropReason {
    /// Every reason, in [`NetStats::dropped`] order.
    pub const ALL: [Self; 10] = [
        Self::SenderDown,
        Self::Unroutable,
        Self::NoHairpin,
        Self::NatFull,
        Self::Partition,
        Self::Loss,
        Self::Queue,
        Self::HostDown,
        Self::NoMapping,
        Self::Filtered,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams handed to [`Network::send`].
    pub sent: u64,
    /// Copies handed to [`Network::arrive`] that were delivered.
    pub delivered: u64,
    /// Drops by reason ([`DropReason::ALL`] order).
    pub dropped: [u64; 10],
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Copies held back for reordering.
    pub reordered: u64,
    /// Copies with a flipped bit.
    pub corrupted: u64,
}

impl NetStats {
    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

/// One copy of a sent datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy {
    /// When it reaches the destination address (then call [`Network::arrive`]).
    pub at: Timestamp,
    /// Flip this bit of the payload (bit `i` is bit `i % 8` of byte `i / 8`).
    pub corrupt_bit: Option<u32>,
}

/// What [`Network::send`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// The datagram is on its way.
    Sent {
        /// The source address the receiver will see (after NAT translation).
        from: SocketAddrV4,
        /// One copy, or two when duplicated.
        copies: [Option<Copy>; 2],
    },
    /// It never left, or was lost on the way.
    Dropped(DropReason),
}

/// What [`Network::arrive`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Deliver to `host` at local `port`.
    Deliver {
        /// The receiving host.
        host: HostId,
        /// The local port (after NAT translation).
        port: u16,
    },
    /// Dropped at the destination.
    Dropped(DropReason),
}

/// Network-wide settings; everything per site is drawn from the seed within these ranges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetConfig {
    /// What every path does unless [`Network::set_link`] overrides it.
    pub link: LinkConfig,
    /// Number of regions (≥ 1); sites are spread uniformly.
    pub regions: u8,
    /// Core one-way latency within a region.
    pub local_latency: Duration,
    /// Range of core one-way latency between two regions.
    pub region_latency: (Duration, Duration),
    /// Range of a site's access-link one-way latency.
    pub access_latency: (Duration, Duration),
    /// One-way latency between hosts behind the same NAT.
    pub lan_latency: Duration,
    /// Every site's uplink, `None` for unlimited.
    pub uplink: Option<Bandwidth>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            link: LinkConfig {
                jitter: Jitter::Uniform(Duration::from_millis(2)),
                ..LinkConfig::default()
            },
            regions: 4,
            local_latency: Duration::from_millis(2),
            region_latency: (Duration::from_millis(15), Duration::from_millis(90)),
            access_latency: (Duration::from_millis(1), Duration::from_millis(15)),
            lan_latency: Duration::from_micros(200),
            uplink: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum SiteKind {
    Host(HostId),
    Nat(NatId),
}

#[derive(Debug)]
struct Site {
    ip: Ipv4Addr,
    kind: SiteKind,
    region: u8,
    access: Duration,
    group: u8,
    /// Gilbert-Elliott state of the uplink.
    burst: bool,
    uplink: Option<Bandwidth>,
    /// When the uplink has serialised everything queued so far.
    uplink_free: Timestamp,
}

#[derive(Debug)]
struct Host {
    site: SiteId,
    /// The NAT box and private address of a host behind one.
    private: Option<(NatId, Ipv4Addr)>,
    up: bool,
    paused: bool,
}

/// The simulated network.
#[derive(Debug)]
pub struct Network {
    cfg: NetConfig,
    rng: Rng,
    sites: Vec<Site>,
    hosts: Vec<Host>,
    /// Private host index → host.
    private_hosts: Vec<HostId>,
    nats: Vec<NatBox>,
    /// `regions × regions` core latencies.
    core: Vec<Duration>,
    /// Bit `from * 256 + to` set: groups `from` → `to` cannot communicate.
    blocked: Vec<u64>,
    any_blocked: bool,
    links: FxHashMap<(SiteId, SiteId), LinkConfig>,
    /// Counters.
    pub stats: NetStats,
}

fn between(rng: &mut Rng, (lo, hi): (Duration, Duration)) -> Duration {
    let span = u64::try_from(hi.saturating_sub(lo).as_nanos()).unwrap_or(u64::MAX);
    lo + Duration::from_nanos(rng.below(span.saturating_add(1)))
}

impl Network {
    /// An empty network whose every random choice derives from `seed`.
    pub fn new(cfg: NetConfig, seed: u64) -> Self {
        let mut rng = Rng::from_seed(seed);
        let regions = usize::from(cfg.regions.max(1));
        let mut core = vec![cfg.local_latency; regions * regions];
        for a in 0..regions {
            for b in a + 1..regions {
                let d = between(&mut rng, cfg.region_latency);
                core[a * regions + b] = d;
                core[b * regions + a] = d;
            }
        }
        Self {
            cfg,
            rng,
            sites: Vec::new(),
            hosts: Vec::new(),
            private_hosts: Vec::new(),
            nats: Vec::new(),
            core,
            blocked: vec![0; 256 * 256 / 64],
            any_blocked: false,
            links: FxHashMap::default(),
            stats: NetStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    fn add_site(&mut self, kind: SiteKind) -> SiteId {
        let id = SiteId(self.sites.len() as u32);
        let region = self.rng.below(u64::from(self.cfg.regions.max(1))) as u8;
        let access = between(&mut self.rng, self.cfg.access_latency);
        self.sites.push(Site {
            ip: addr::public_ip(id.0),
            kind,
            region,
            access,
            group: 0,
            burst: false,
            uplink: self.cfg.uplink,
            uplink_free: Timestamp::ZERO,
        });
        id
    }

    /// A host with its own public address.
    pub fn add_public_host(&mut self) -> HostId {
        let id = HostId(self.hosts.len() as u32);
        let site = self.add_site(SiteKind::Host(id));
        self.hosts.push(Host { site, private: None, up: true, paused: false });
        id
    }

    /// A NAT box with its own public address and no hosts yet.
    pub fn add_nat(&mut self, cfg: NatConfig) -> NatId {
        let id = NatId(self.nats.len() as u32);
        let site = self.add_site(SiteKind::Nat(id));
        let ip = self.sites[site.0 as usize].ip;
        self.nats.push(NatBox::new(cfg, ip, &mut self.rng));
        id
    }

    /// A host behind `nat` with a fresh private address.
    pub fn add_private_host(&mut self, nat: NatId) -> HostId {
        let id = HostId(self.hosts.len() as u32);
        let ip = addr::private_ip(self.private_hosts.len() as u32);
        let site = self.nat_site(nat);
        self.private_hosts.push(id);
        self.hosts.push(Host { site, private: Some((nat, ip)), up: true, paused: false });
        id
    }

    fn nat_site(&self, nat: NatId) -> SiteId {
        let ip = self.nats.get(nat.0 as usize).map_or(Ipv4Addr::UNSPECIFIED, |n| n.ip);
        SiteId(addr::public_index(ip).unwrap_or(0))
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// The address a host binds its sockets to (public, or private behind a NAT).
    pub fn host_ip(&self, host: HostId) -> Ipv4Addr {
        match self.hosts.get(host.0 as usize) {
            Some(Host { private: Some((_, ip)), .. }) => *ip,
            Some(h) => self.sites[h.site.0 as usize].ip,
            None => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The public address of the host's site (its own, or its NAT box's).
    pub fn public_ip(&self, host: HostId) -> Ipv4Addr {
        self.hosts
            .get(host.0 as usize)
            .map_or(Ipv4Addr::UNSPECIFIED, |h| self.sites[h.site.0 as usize].ip)
    }

    /// The host's site.
    pub fn site_of(&self, host: HostId) -> SiteId {
        self.hosts.get(host.0 as usize).map_or(SiteId(0), |h| h.site)
    }

    /// The NAT box a host sits behind.
    pub fn nat_of(&self, host: HostId) -> Option<NatId> {
        self.hosts.get(host.0 as usize).and_then(|h| h.private.map(|p| p.0))
    }

    /// A NAT box's behaviour.
    pub fn nat_config(&self, nat: NatId) -> Option<&NatConfig> {
        self.nats.get(nat.0 as usize).map(|n| &n.cfg)
    }

    /// Mappings a NAT box currently holds.
    pub fn nat_mappings(&self, nat: NatId) -> usize {
        self.nats.get(nat.0 as usize).map_or(0, NatBox::mappings)
    }

    /// Puts a site in partition group `group` (all sites start in group 0).
    pub fn set_group(&mut self, site: SiteId, group: u8) {
        if let Some(s) = self.sites.get_mut(site.0 as usize) {
            s.group = group;
        }
    }

    /// A site's partition group.
    pub fn group(&self, site: SiteId) -> u8 {
        self.sites.get(site.0 as usize).map_or(0, |s| s.group)
    }

    /// Datagrams from group `from` to group `to` are dropped (a one-way partition; call
    /// twice for a symmetric one).
    pub fn block(&mut self, from: u8, to: u8) {
        let bit = usize::from(from) * 256 + usize::from(to);
        self.blocked[bit / 64] |= 1 << (bit % 64);
        self.any_blocked = true;
    }

    /// Removes every partition (groups stay as they are).
    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|w| *w = 0);
        self.any_blocked = false;
    }

    fn is_blocked(&self, from: u8, to: u8) -> bool {
        let bit = usize::from(from) * 256 + usize::from(to);
        self.blocked[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// Overrides the path from site `from` to site `to` (one direction).
    pub fn set_link(&mut self, from: SiteId, to: SiteId, link: LinkConfig) {
        self.links.insert((from, to), link);
    }

    /// Replaces the default link of every path without an override.
    pub fn set_default_link(&mut self, link: LinkConfig) {
        self.cfg.link = link;
    }

    /// Sets a site's uplink (`None`: unlimited).
    pub fn set_uplink(&mut self, site: SiteId, uplink: Option<Bandwidth>) {
        if let Some(s) = self.sites.get_mut(site.0 as usize) {
            s.uplink = uplink;
        }
    }

    /// Kills (`false`) or revives a host: a dead host neither sends nor receives.
    pub fn set_up(&mut self, host: HostId, up: bool) {
        if let Some(h) = self.hosts.get_mut(host.0 as usize) {
            h.up = up;
        }
    }

    /// Whether the host is alive.
    pub fn is_up(&self, host: HostId) -> bool {
        self.hosts.get(host.0 as usize).is_some_and(|h| h.up)
    }

    /// Pauses or resumes a host (a stopped process: it does not send; arrivals wait).
    pub fn set_paused(&mut self, host: HostId, paused: bool) {
        if let Some(h) = self.hosts.get_mut(host.0 as usize) {
            h.paused = paused;
        }
    }

    /// Whether the host is paused.
    pub fn is_paused(&self, host: HostId) -> bool {
        self.hosts.get(host.0 as usize).is_some_and(|h| h.paused)
    }

    fn drop(&mut self, reason: DropReason) -> Outbound {
        self.stats.dropped[reason.index()] += 1;
        Outbound::Dropped(reason)
    }

    /// `host` sends `len` bytes from local port `src_port` to `dst` at `now`.
    pub fn send(
        &mut self,
        now: Timestamp,
        host: HostId,
        src_port: u16,
        dst: SocketAddrV4,
        len: usize,
    ) -> Outbound {
        self.stats.sent += 1;
        let Some(h) = self.hosts.get(host.0 as usize) else {
            return self.drop(DropReason::SenderDown);
        };
        if !h.up || h.paused {
            return self.drop(DropReason::SenderDown);
        }
        let (src_site, private) = (h.site, h.private);
        if let Some(pi) = addr::private_index(*dst.ip()) {
            return self.send_lan(now, host, src_port, pi);
        }
        let Some(dst_site) =
            addr::public_index(*dst.ip()).filter(|i| (*i as usize) < self.sites.len())
        else {
            return self.drop(DropReason::Unroutable);
        };
        let dst_site = SiteId(dst_site);
        let from = match private {
            Some((nat, ip)) => {
                let Some(nb) = self.nats.get_mut(nat.0 as usize) else {
                    return self.drop(DropReason::Unroutable);
                };
                if dst_site == src_site && !nb.cfg.hairpin {
                    return self.drop(DropReason::NoHairpin);
                }
                let private_src = SocketAddrV4::new(ip, src_port);
                match nb.outbound(now, host, private_src, dst, &mut self.rng) {
                    Ok(port) => SocketAddrV4::new(nb.ip, port),
                    Err(reason) => return self.drop(reason),
                }
            }
            None => SocketAddrV4::new(self.sites[src_site.0 as usize].ip, src_port),
        };
        let (s, d) = (&self.sites[src_site.0 as usize], &self.sites[dst_site.0 as usize]);
        if self.any_blocked && self.is_blocked(s.group, d.group) {
            return self.drop(DropReason::Partition);
        }
        let regions = usize::from(self.cfg.regions.max(1));
        let base = s.access
            + d.access
            + self.core[usize::from(s.region) * regions + usize::from(d.region)];
        let link = if self.links.is_empty() {
            self.cfg.link
        } else {
            self.links.get(&(src_site, dst_site)).copied().unwrap_or(self.cfg.link)
        };
        let site = &mut self.sites[src_site.0 as usize];
        let lost = match link.loss {
            Loss::None => false,
            Loss::Uniform(p) => p.sample(&mut self.rng),
            Loss::GilbertElliott(ge) => ge.step(&mut site.burst, &mut self.rng),
        };
        if lost {
            return self.drop(DropReason::Loss);
        }
        let mut depart = now;
        if let Some(bw) = site.uplink {
            let start = now.max(site.uplink_free);
            if start.saturating_since(now) > bw.queue {
                return self.drop(DropReason::Queue);
            }
            depart = start + bw.serialise(len);
            site.uplink_free = depart;
        }
        let arrive = depart + base + link.latency;
        let first = self.copy(arrive, &link, len);
        let second = if link.duplicate.sample(&mut self.rng) {
            self.stats.duplicated += 1;
            Some(self.copy(arrive, &link, len))
        } else {
            None
        };
        Outbound::Sent { from, copies: [Some(first), second] }
    }

    /// A datagram between two hosts behind the same NAT box, straight over the LAN.
    fn send_lan(
        &mut self,
        now: Timestamp,
        host: HostId,
        src_port: u16,
        dst_index: u32,
    ) -> Outbound {
        let src_nat = self.nat_of(host);
        let dst_nat = self.private_hosts.get(dst_index as usize).and_then(|d| self.nat_of(*d));
        match (src_nat, dst_nat) {
            (Some(a), Some(b)) if a == b => {
                let from = SocketAddrV4::new(self.host_ip(host), src_port);
                let copy = Copy { at: now + self.cfg.lan_latency, corrupt_bit: None };
                Outbound::Sent { from, copies: [Some(copy), None] }
            }
            _ => self.drop(DropReason::Unroutable),
        }
    }

    fn copy(&mut self, at: Timestamp, link: &LinkConfig, len: usize) -> Copy {
        let mut at = at + link.jitter.sample(&mut self.rng);
        if link.reorder.sample(&mut self.rng) {
            at = at + link.reorder_delay;
            self.stats.reordered += 1;
        }
        let corrupt_bit = if len > 0 && link.corrupt.sample(&mut self.rng) {
            self.stats.corrupted += 1;
            Some(self.rng.below(len as u64 * 8) as u32)
        } else {
            None
        };
        Copy { at, corrupt_bit }
    }

    /// A copy sent from `from` reaches address `to` at `now`: who gets it?
    pub fn arrive(&mut self, now: Timestamp, from: SocketAddrV4, to: SocketAddrV4) -> Inbound {
        let target = if let Some(pi) = addr::private_index(*to.ip()) {
            self.private_hosts.get(pi as usize).map(|h| Ok((*h, to.port())))
        } else {
            let site = addr::public_index(*to.ip()).and_then(|i| self.sites.get(i as usize));
            site.map(|s| match s.kind {
                SiteKind::Host(h) => Ok((h, to.port())),
                SiteKind::Nat(n) => match self.nats.get_mut(n.0 as usize) {
                    Some(nb) => nb.inbound(now, from, to.port()).map(|(h, a)| (h, a.port())),
                    None => Err(DropReason::Unroutable),
                },
            })
        };
        let result = match target {
            None => Err(DropReason::Unroutable),
            Some(Ok((host, _))) if !self.is_up(host) => Err(DropReason::HostDown),
            Some(r) => r,
        };
        match result {
            Ok((host, port)) => {
                self.stats.delivered += 1;
                Inbound::Deliver { host, port }
            }
            Err(reason) => {
                self.stats.dropped[reason.index()] += 1;
                Inbound::Dropped(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests;
