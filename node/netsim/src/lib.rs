//! tern-netsim: a sans-IO model of an IPv4 UDP network for tern's deterministic simulator
//! (DESIGN.md "One core, three drivers", driver (c); the idea of str0m's netem and
//! TigerBeetle's VOPR).
//!
//! It decides the fate of datagrams and nothing else: it never holds payload bytes, reads
//! a clock or draws OS randomness. A simulator (tern-sim's `World`, or a two-party `Pair`
//! harness) owns the payloads and the event order; for every datagram it asks
//! [`Network::send`] what happens on the way out (NAT translation, partition, loss,
//! queueing, latency, duplication, corruption) and, when a copy's time comes,
//! [`Network::arrive`] what happens on the way in (NAT filtering and mapping expiry, dead
//! hosts). Every random choice comes from one [`tern_base::Rng`] seeded at construction,
//! and decisions depend only on the order of calls, so a run replays exactly.
//!
//! * [`addr`]: the address plan — public endpoints in `10.0.0.0/9`, hosts behind NATs in
//!   `10.128.0.0/9`, each address computed from an index (no lookup tables).
//! * [`link`]: per-path latency with jitter, uniform and Gilbert-Elliott burst loss,
//!   duplication, reordering, corruption, uplink bandwidth.
//! * [`nat`]: NAT boxes in HyperDHT's vocabulary — endpoint-independent mapping
//!   (CONSISTENT), endpoint-dependent mapping (RANDOM), open / address-restricted /
//!   port-restricted filtering, mapping timeouts.
//! * [`network`]: hosts, sites, partitions (symmetric and one-way), host pause and death.
//! * [`queue`]: the event heap ordered by (time, sequence number) that simulators share.

pub mod addr;
mod hash;
pub mod link;
pub mod nat;
pub mod network;
pub mod queue;

pub use addr::{private_ip, public_ip};
pub use hash::{FxBuildHasher, FxHashMap};
pub use link::{Bandwidth, GilbertElliott, Jitter, LinkConfig, Loss, Prob};
pub use nat::{Filtering, Mapping, NatConfig};
pub use network::{
    Copy, DropReason, HostId, Inbound, NatId, NetConfig, NetStats, Network, Outbound, SiteId,
};
pub use queue::EventQueue;
