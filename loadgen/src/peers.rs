//! Thousands of real tern peers against one network: each peer is a full `tern::Dht`
//! node with its own sockets on a 127.x.y.z address, multiplexed on a few driver
//! threads. Peers join at a bounded rate, then operations (lookup, announce, mutable and
//! immutable put/get) arrive open-loop at the offered rate across random peers, and each
//! result is checked: a lookup that misses a record known to be announced is *wrong*.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::ProgressBar;
use tern::{Dht, KeyPair, NodeConfig, RpcConfig};
use tern_base::Rng;

use crate::stats::OpStats;

/// What the peers do once joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Look up topics announced during set-up; a miss is a wrong answer.
    Lookup,
    /// Announce (and keep announced) random topics.
    Announce,
    /// mutable_put then mutable_get of the value just written.
    Mutable,
    /// immutable_put then immutable_get.
    Immutable,
    /// Only join (measures bootstrap).
    Bootstrap,
}

impl Workload {
    /// The operation's name in tables and JSON lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lookup => "lookup",
            Self::Announce => "announce",
            Self::Mutable => "mutable",
            Self::Immutable => "immutable",
            Self::Bootstrap => "bootstrap",
        }
    }
}

/// Arguments of `tern-loadgen peers`.
#[derive(Debug, Clone, clap::Args)]
pub struct PeersArgs {
    /// Bootstrap node of the network under test (not used with --sim).
    #[arg(long, required_unless_present = "sim")]
    pub target: Option<SocketAddrV4>,
    /// Number of peers.
    #[arg(long, default_value_t = 100)]
    pub peers: usize,
    /// Driver threads the peers share.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Peers started per second (a join storm would only measure the bootstrap node).
    #[arg(long, default_value_t = 500.0)]
    pub join_rate: f64,
    /// Workload after joining.
    #[arg(long, value_enum, default_value = "lookup")]
    pub workload: Workload,
    /// Offered operations per second over all peers (Poisson).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of workload.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Topics announced during set-up for the lookup workload.
    #[arg(long, default_value_t = 20)]
    pub topics: usize,
    /// Seconds after which an operation counts as a timeout.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Peers become persistent nodes (serve others) instead of ephemeral clients.
    #[arg(long)]
    pub persistent: bool,
    /// Seed for addresses, topics and arrivals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Processes to spread the peers over (0: as many as the open-file limit needs,
    /// two sockets per peer; 10 000 peers need 2 under a hard limit of 20 000). Each
    /// runs its share of peers, topics and rate; the parent merges their results.
    #[arg(long, default_value_t = 0)]
    pub processes: usize,
    /// Index of this process's first peer (its addresses follow the earlier ones').
    #[arg(long, default_value_t = 0, hide = true)]
    pub first_peer: usize,
    /// Run the peers and the network in the deterministic simulator (virtual time,
    /// netsim's latency model) instead of on real sockets; --target is then ignored.
    #[arg(long)]
    pub sim: bool,
    /// With --sim: nodes of the simulated network, its bootstrap node included.
    #[arg(long, default_value_t = 100)]
    pub sim_nodes: usize,
    /// Print full stats (histograms) as JSON lines for a parent process to merge.
    #[arg(long, hide = true)]
    pub raw_stats: bool,
}

/// Address of peer `i`: 127.1.x.y, 250 hosts per /24, so 10 000 peers use 40 subnets.
pub fn peer_host(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1 + (i / 62_500) as u8, ((i / 250) % 250) as u8, (i % 250) as u8 + 1)
}

type OpFuture = Pin<Box<dyn Future<Output = Result<bool, tern::DhtError>>>>;

struct InFlight {
    started: Instant,
    future: OpFuture,
}

/// Open files one process of `peers` peers needs: two sockets a peer, plus the driver's
/// and the runtime's own.
pub fn files_needed(peers: usize) -> u64 {
    peers as u64 * 2 + 256
}

/// Runs the peers (in several processes when one cannot hold them); returns (measured
/// seconds, stats per operation kind).
pub fn run(args: &PeersArgs, quiet: bool) -> anyhow::Result<(f64, Vec<OpStats>)> {
    if args.sim {
        return crate::sim::run(args);
    }
    let processes = match args.processes {
        0 => crate::split::processes_for(args.peers),
        n => n,
    };
    if processes > 1 {
        return crate::split::run(args, processes, quiet);
    }
    run_here(args, quiet)
}

/// Runs every peer of `args` in this process.
fn run_here(args: &PeersArgs, quiet: bool) -> anyhow::Result<(f64, Vec<OpStats>)> {
    let target = args.target.context("--target is required without --sim")?;
    let wanted = files_needed(args.peers);
    let limit = tern_udp::raise_open_file_limit(wanted);
    if limit < wanted {
        tracing::warn!(limit, wanted, "open-file limit below what the peers need");
    }
    let driver = tern::node_driver(args.threads.max(1), "loadgen")?;
    let mut rng = Rng::from_seed(args.seed);
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(args.peers as u64) };
    bar.set_message("joining");
    let mut join = OpStats::new("bootstrap");
    let mut peers = Vec::with_capacity(args.peers);
    let mut joining: Vec<(Instant, tern::Pending<()>)> = Vec::new();
    let start = Instant::now();
    let join_gap = Duration::from_secs_f64(1.0 / args.join_rate.max(1.0));
    for i in 0..args.peers {
        let rpc = RpcConfig {
            bootstrap: vec![target],
            ephemeral: Some(!args.persistent),
            firewalled: !args.persistent,
            ..RpcConfig::default()
        };
        let host = peer_host(args.first_peer + i);
        let config = NodeConfig { rpc, host, random_port: true, ..NodeConfig::default() };
        let dht = Dht::start_on(&driver, config).with_context(|| format!("starting peer {i}"))?;
        joining.push((Instant::now(), dht.ready()));
        peers.push(Arc::new(dht));
        join.sent += 1;
        poll_joins(&mut joining, &mut join, Duration::from_secs_f64(args.timeout));
        bar.set_position(i as u64 + 1);
        let due = start + join_gap * (i as u32 + 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    while !joining.is_empty() && Instant::now() < deadline {
        poll_joins(&mut joining, &mut join, Duration::from_secs_f64(args.timeout));
        std::thread::sleep(Duration::from_millis(5));
    }
    join.timeouts += joining.len() as u64;
    join.elapsed = Some(start.elapsed().as_secs_f64());
    bar.finish_and_clear();
    if args.workload == Workload::Bootstrap {
        return Ok((start.elapsed().as_secs_f64(), vec![join]));
    }

    // Set-up for lookups: topics announced by known keys.
    let announced: Vec<([u8; 32], KeyPair)> =
        (0..args.topics).map(|_| (rng.bytes32(), KeyPair::from_seed(&rng.bytes32()))).collect();
    if args.workload == Workload::Lookup {
        for (i, (topic, kp)) in announced.iter().enumerate() {
            let _ = peers[i % peers.len()].announce(*topic, kp, &[]).wait();
        }
    }

    let mut stats = OpStats::new(args.workload.name());
    let duration = Duration::from_secs_f64(args.duration);
    let timeout = Duration::from_secs_f64(args.timeout);
    let bar =
        if quiet { ProgressBar::hidden() } else { ProgressBar::new(duration.as_millis() as u64) };
    let run_start = Instant::now();
    let mut next = run_start;
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let now = Instant::now();
        let running = now < run_start + duration;
        if !running && in_flight.is_empty() {
            break;
        }
        while running && next <= now {
            let peer = &peers[rng.below(peers.len() as u64) as usize];
            let future = start_op(args.workload, peer, &announced, &mut rng);
            in_flight.push(InFlight { started: next, future });
            stats.sent += 1;
            let u = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            next += Duration::from_secs_f64(-u.ln() / args.rate.max(0.001));
        }
        in_flight.retain_mut(|op| match op.future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(true)) => {
                stats.record_ok(op.started.elapsed().as_micros() as u64);
                false
            }
            Poll::Ready(Ok(false)) => {
                stats.wrong += 1;
                false
            }
            Poll::Ready(Err(_)) => {
                stats.record_error(0);
                false
            }
            Poll::Pending if op.started.elapsed() > timeout => {
                stats.timeouts += 1;
                false
            }
            Poll::Pending => true,
        });
        bar.set_position(run_start.elapsed().as_millis().min(duration.as_millis()) as u64);
        bar.set_message(format!("in flight {} ok {}", in_flight.len(), stats.ok));
        std::thread::sleep(Duration::from_millis(1));
    }
    bar.finish_and_clear();
    let seconds = duration.as_secs_f64();
    drop(in_flight);
    for p in peers {
        if let Ok(p) = Arc::try_unwrap(p) {
            let _ = p.destroy();
        }
    }
    Ok((seconds, vec![join, stats]))
}

fn poll_joins(
    joining: &mut Vec<(Instant, tern::Pending<()>)>,
    join: &mut OpStats,
    timeout: Duration,
) {
    let mut cx = Context::from_waker(Waker::noop());
    joining.retain_mut(|(t, p)| match Pin::new(&mut *p).poll(&mut cx) {
        Poll::Ready(Ok(())) => {
            join.record_ok(t.elapsed().as_micros() as u64);
            false
        }
        Poll::Ready(Err(_)) => {
            join.record_error(0);
            false
        }
        Poll::Pending if t.elapsed() > timeout => {
            join.timeouts += 1;
            false
        }
        Poll::Pending => true,
    });
}

/// Starts one operation; the future resolves to whether the answer was right.
fn start_op(
    workload: Workload,
    peer: &Arc<Dht>,
    announced: &[([u8; 32], KeyPair)],
    rng: &mut Rng,
) -> OpFuture {
    match workload {
        Workload::Lookup => {
            let (topic, kp) = &announced[rng.below(announced.len() as u64) as usize];
            let want = *kp.public_key().as_bytes();
            let mut stream = peer.lookup(*topic);
            Box::pin(async move {
                let mut found = false;
                while let Some(r) = std::future::poll_fn(|cx| next_reply(&mut stream, cx)).await {
                    found |= r.peers.iter().any(|p| p.public_key == want);
                }
                Ok(found)
            })
        }
        Workload::Announce => {
            let kp = KeyPair::from_seed(&rng.bytes32());
            let p = peer.announce(rng.bytes32(), &kp, &[]);
            Box::pin(async move { p.await.map(|stored| stored > 0) })
        }
        Workload::Mutable => {
            let kp = KeyPair::from_seed(&rng.bytes32());
            let value = rng.bytes32().to_vec();
            let put = peer.mutable_put(&kp, &value, 1);
            let peer = peer.clone();
            Box::pin(async move {
                put.await?;
                let got = peer.mutable_get(*kp.public_key().as_bytes(), 1, false).await?;
                Ok(got.is_some_and(|v| v.value == value))
            })
        }
        Workload::Immutable => {
            let value = rng.bytes32().to_vec();
            let put = peer.immutable_put(&value);
            let peer = peer.clone();
            Box::pin(async move {
                let hash = put.await?;
                Ok(peer.immutable_get(hash).await? == Some(value))
            })
        }
        Workload::Bootstrap => Box::pin(std::future::ready(Ok(true))),
    }
}

fn next_reply(s: &mut tern::LookupStream, cx: &mut Context<'_>) -> Poll<Option<tern::LookupReply>> {
    use futures_core::Stream;
    Pin::new(s).poll_next(cx)
}
