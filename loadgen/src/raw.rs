//! Raw request capacity: dht-rpc requests (PING, FIND_NODE, LOOKUP, and the signed
//! writes ANNOUNCE and MUTABLE_PUT, see `signed`) fired at one target at an offered
//! rate, matched to replies by (socket, tid), with latency measured from the
//! *scheduled* send time so a slow target cannot hide latency (no coordinated
//! omission).
//!
//! A real dht-rpc node could not do this: its congestion window allows 80 requests per
//! 750 ms. The generator instead drives many sockets from one thread with
//! `sendmmsg`/`recvmmsg` batches, each socket owning its 65 536 tids, which bounds the
//! requests in flight to `sockets × 65 536`.
//!
//! With `malformed` > 0 that fraction of the offered datagrams is garbage
//! ([`crate::garbage`]), sent from sockets of its own so that a garbage datagram that
//! happens to decode cannot answer a measured request; the measured requests are the
//! rest of the offered rate.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use tern_base::Rng;
use tern_udp::{OutDatagram, RecvBatch, SendBatch, SocketOptions, UdpSocket};
use tern_wire::rpc::{Message, Request};
use tern_wire::{Decode, Encode};

use crate::garbage;
use crate::signed::{self, MAX_SIGNED_SECONDS, POOL_SIZE, Pool, SignedKind};
use crate::stats::OpStats;

/// What each request asks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum RawCommand {
    /// Internal PING.
    Ping,
    /// Internal FIND_NODE for a random target.
    FindNode,
    /// hyperdht LOOKUP for one of a few topics.
    Lookup,
    /// hyperdht ANNOUNCE, pre-signed under the target's token (signature-bound).
    Announce,
    /// hyperdht MUTABLE_PUT, pre-signed (signature-bound).
    MutablePut,
}

impl RawCommand {
    /// Lower-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::FindNode => "find_node",
            Self::Lookup => "lookup",
            Self::Announce => "announce",
            Self::MutablePut => "mutable_put",
        }
    }

    /// The signed write this command is, if any.
    fn signed(self) -> Option<SignedKind> {
        match self {
            Self::Announce => Some(SignedKind::Announce),
            Self::MutablePut => Some(SignedKind::MutablePut),
            Self::Ping | Self::FindNode | Self::Lookup => None,
        }
    }
}

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrivals {
    /// Open loop: Poisson arrivals at this many requests per second.
    Open(f64),
    /// Closed loop: keep this many requests in flight.
    Closed(usize),
}

/// A raw-capacity run.
#[derive(Debug, Clone)]
pub struct RawConfig {
    /// The node under test.
    pub target: SocketAddrV4,
    /// What to ask.
    pub command: RawCommand,
    /// Arrival process.
    pub arrivals: Arrivals,
    /// Measured duration.
    pub duration: Duration,
    /// Sockets to spread requests over.
    pub sockets: usize,
    /// A request unanswered after this long is a timeout.
    pub timeout: Duration,
    /// Local host to bind (a 127.x address).
    pub bind: Ipv4Addr,
    /// Seed for targets and arrival times.
    pub seed: u64,
    /// Fraction (0..1) of the offered datagrams that are malformed.
    pub malformed: f64,
}

/// Sockets the malformed datagrams leave from.
const GARBAGE_SOCKETS: usize = 4;

const NO_REQUEST: u64 = 0;
/// Datagrams sent per `sendmmsg` and received per `recvmmsg`.
const BATCH: usize = 256;

/// One socket with its own tid space.
struct Lane {
    socket: UdpSocket,
    /// Scheduled send time (ns since start, +1 so 0 means free) per tid.
    pending: Vec<u64>,
    next_tid: u16,
    out: Vec<Vec<u8>>,
}

/// Runs the load; `progress` is called about every 100 ms with (elapsed, stats so far).
pub fn run(
    cfg: &RawConfig,
    mut progress: impl FnMut(Duration, &OpStats),
) -> anyhow::Result<OpStats> {
    let options = SocketOptions::default();
    let mut lanes = Vec::with_capacity(cfg.sockets);
    for _ in 0..cfg.sockets.max(1) {
        let socket = UdpSocket::bind(SocketAddrV4::new(cfg.bind, 0), &options)
            .with_context(|| format!("binding a load socket on {}", cfg.bind))?;
        lanes.push(Lane {
            socket,
            pending: vec![NO_REQUEST; 65_536],
            next_tid: 0,
            out: Vec::new(),
        });
    }
    let mut garbage_lanes = Vec::new();
    if cfg.malformed > 0.0 {
        for _ in 0..GARBAGE_SOCKETS {
            let socket = UdpSocket::bind(SocketAddrV4::new(cfg.bind, 0), &options)
                .with_context(|| format!("binding a garbage socket on {}", cfg.bind))?;
            garbage_lanes.push(socket);
        }
    }
    let mut garbage_out: Vec<Vec<u8>> = Vec::new();
    // P(malformed) as a threshold on 53 random bits.
    let malformed_cut = (cfg.malformed.clamp(0.0, 1.0) * (1u64 << 53) as f64) as u64;
    let mut rng = Rng::from_seed(cfg.seed);
    let pool = signed_pool(cfg, &mut rng)?;
    let mut stats = OpStats::new(cfg.command.name());
    let mut recv = RecvBatch::new(BATCH, 2048);
    let mut send = SendBatch::new(BATCH);
    let topics: Vec<[u8; 32]> = (0..16).map(|_| rng.bytes32()).collect();
    let start = Instant::now();
    let timeout_ns = cfg.timeout.as_nanos() as u64;
    let end_ns = cfg.duration.as_nanos() as u64;
    // Replies still arriving after the last send are waited for one timeout.
    let drain_end_ns = end_ns + timeout_ns;
    let mut next_arrival_ns = 0u64;
    let mut in_flight = 0usize;
    let mut lane_rr = 0usize;
    let mut last_sweep = 0u64;
    let mut last_progress = 0u64;
    loop {
        let now = start.elapsed().as_nanos() as u64;
        if now >= drain_end_ns || (now >= end_ns && in_flight == 0) {
            break;
        }
        // Issue what is due.
        let mut issued = 0;
        while now < end_ns && issued < BATCH * 4 {
            let due = match cfg.arrivals {
                Arrivals::Open(_) => next_arrival_ns <= now,
                Arrivals::Closed(n) => in_flight < n,
            };
            if !due {
                break;
            }
            let scheduled = match cfg.arrivals {
                Arrivals::Open(rate) => {
                    let t = next_arrival_ns;
                    next_arrival_ns += exp_interval_ns(&mut rng, rate);
                    t
                }
                Arrivals::Closed(_) => now,
            };
            if malformed_cut > 0 && (rng.next_u64() >> 11) < malformed_cut {
                garbage_out.push(garbage::malformed(&mut rng, cfg.target));
                stats.malformed += 1;
                issued += 1;
                continue;
            }
            let lane = &mut lanes[lane_rr % cfg.sockets.max(1)];
            lane_rr += 1;
            let tid = lane.next_tid;
            lane.next_tid = lane.next_tid.wrapping_add(1);
            if lane.pending[usize::from(tid)] != NO_REQUEST {
                // The tid wrapped onto a request never answered: it timed out.
                stats.timeouts += 1;
                in_flight -= 1;
            }
            lane.pending[usize::from(tid)] = scheduled + 1;
            if let Some(pool) = &pool {
                lane.out.push(pool.request(stats.sent as usize, tid, cfg.target));
            } else {
                lane.out.push(plain_request(cfg, tid, &topics, &mut rng));
            }
            stats.sent += 1;
            in_flight += 1;
            issued += 1;
        }
        for lane in &mut lanes {
            if lane.out.is_empty() {
                continue;
            }
            let mut items = lane.out.iter().map(|d| OutDatagram {
                dest: cfg.target,
                ttl: None,
                data: d,
                tail: &[],
            });
            while items.len() > 0 {
                let outcome = send.send(lane.socket.as_fd(), &mut items);
                if outcome.would_block || outcome.done() == 0 {
                    break;
                }
            }
            lane.out.clear();
        }
        if !garbage_out.is_empty() {
            let socket = &garbage_lanes[lane_rr % GARBAGE_SOCKETS];
            let mut items = garbage_out.iter().map(|d| OutDatagram {
                dest: cfg.target,
                ttl: None,
                data: d,
                tail: &[],
            });
            while items.len() > 0 {
                let outcome = send.send(socket.as_fd(), &mut items);
                if outcome.would_block || outcome.done() == 0 {
                    break;
                }
            }
            garbage_out.clear();
        }
        // Replies to garbage that decoded by chance are read and thrown away.
        for socket in &garbage_lanes {
            while recv.recv(socket.as_fd()).unwrap_or_default() == BATCH {}
        }
        // Collect replies.
        let mut received = 0;
        for lane in &mut lanes {
            loop {
                // EAGAIN (nothing queued) and real errors both end this socket's turn.
                let n = recv.recv(lane.socket.as_fd()).unwrap_or_default();
                if n == 0 {
                    break;
                }
                received += n;
                let now = start.elapsed().as_nanos() as u64;
                for d in recv.iter() {
                    let Ok(Message::Response(res)) = Message::decode(d.data) else { continue };
                    let slot = &mut lane.pending[usize::from(res.tid)];
                    if *slot == NO_REQUEST {
                        continue;
                    }
                    let scheduled = *slot - 1;
                    *slot = NO_REQUEST;
                    in_flight -= 1;
                    let latency = now.saturating_sub(scheduled);
                    if latency > timeout_ns {
                        stats.timeouts += 1;
                    } else if res.error != 0 {
                        stats.record_error(res.error);
                    } else {
                        stats.record_ok(latency / 1000);
                    }
                }
                if n < BATCH {
                    break;
                }
            }
        }
        // Expire requests older than the timeout (every 100 ms).
        if now - last_sweep > 100_000_000 {
            last_sweep = now;
            for lane in &mut lanes {
                for slot in lane.pending.iter_mut().filter(|s| **s != NO_REQUEST) {
                    if now.saturating_sub(*slot - 1) > timeout_ns {
                        *slot = NO_REQUEST;
                        stats.timeouts += 1;
                        in_flight -= 1;
                    }
                }
            }
        }
        if now - last_progress > 100_000_000 {
            last_progress = now;
            progress(Duration::from_nanos(now.min(end_ns)), &stats);
        }
        if issued == 0 && received == 0 {
            // Idle: sleep until the next arrival, but never long enough to delay replies.
            let until = match cfg.arrivals {
                Arrivals::Open(_) => next_arrival_ns.saturating_sub(now),
                Arrivals::Closed(_) => 50_000,
            };
            if until > 50_000 {
                std::thread::sleep(Duration::from_nanos(until.min(200_000)));
            } else {
                std::hint::spin_loop();
            }
        }
    }
    // Whatever is still pending never got an answer.
    stats.timeouts += lanes
        .iter()
        .map(|l| l.pending.iter().filter(|s| **s != NO_REQUEST).count() as u64)
        .sum::<u64>();
    Ok(stats)
}

/// A PING, FIND_NODE or LOOKUP request.
fn plain_request(cfg: &RawConfig, tid: u16, topics: &[[u8; 32]], rng: &mut Rng) -> Vec<u8> {
    let target_bytes = match cfg.command {
        RawCommand::Ping | RawCommand::Announce | RawCommand::MutablePut => None,
        RawCommand::FindNode => Some(rng.bytes32()),
        RawCommand::Lookup => Some(topics[rng.below(topics.len() as u64) as usize]),
    };
    let (internal, command) = match cfg.command {
        RawCommand::Ping | RawCommand::Announce | RawCommand::MutablePut => (true, 0),
        RawCommand::FindNode => (true, 2),
        RawCommand::Lookup => (false, 3),
    };
    Request {
        tid,
        to: cfg.target,
        id: None,
        token: None,
        internal,
        command,
        target: target_bytes.as_ref(),
        value: None,
    }
    .to_vec()
}

/// For a signed command: fetches the target's token and signs the request pool, before
/// the clock starts (the generator must not be what signatures bound).
fn signed_pool(cfg: &RawConfig, rng: &mut Rng) -> anyhow::Result<Option<Pool>> {
    let Some(kind) = cfg.command.signed() else { return Ok(None) };
    let span = (cfg.duration + cfg.timeout).as_secs_f64();
    anyhow::ensure!(
        span <= MAX_SIGNED_SECONDS,
        "{}: duration + timeout is {span:.1} s, but the target's token is only sure to \
         stay valid for {MAX_SIGNED_SECONDS} s (it rotates every 7.5 s); run shorter steps",
        cfg.command.name()
    );
    let grant = signed::fetch_grant(cfg.target, cfg.bind)?;
    // A short open-loop run needs no more entries than it sends (CI's tiny steps).
    let size = match cfg.arrivals {
        Arrivals::Open(rate) => POOL_SIZE.min((rate * cfg.duration.as_secs_f64()) as usize + 1),
        Arrivals::Closed(_) => POOL_SIZE,
    };
    let pool = signed::build_pool(kind, grant, size, rng);
    tracing::debug!(entries = pool.entries.len(), "signed request pool ready");
    Ok(Some(pool))
}

/// An exponential inter-arrival time for a Poisson process at `rate` per second.
fn exp_interval_ns(rng: &mut Rng, rate: f64) -> u64 {
    // 53 random bits as a uniform in (0, 1].
    let u = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    ((-u.ln()) / rate * 1e9) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_intervals_average_to_the_rate() {
        let mut rng = Rng::from_seed(1);
        let n = 100_000;
        let total: u64 = (0..n).map(|_| exp_interval_ns(&mut rng, 1000.0)).sum();
        let mean_ms = total as f64 / n as f64 / 1e6;
        assert!((mean_ms - 1.0).abs() < 0.02, "mean interval {mean_ms} ms");
    }
}
