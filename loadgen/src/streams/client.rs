//! `tern-loadgen connect` and `tern-loadgen stream`: the client side of the connection
//! workloads (see the parent module for the protocol and what is timed).
//!
//! Blocking tern API on plain threads: a connect is `dht.connect(key).wait()`, a stream
//! is written and read through `std::io`. Every wait is bounded: results come back over
//! a channel that the calling thread reads with a deadline, and whatever has not
//! answered by then counts as failed (its thread is left to the process exit).

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tern::{Dht, SecureStream};

use super::{
    BLOCK, CHUNK, ConnectOutput, HEADER_COUNT, REPORT_BYTES, Report, StreamOutput, UdxCounters,
    Verify, cpu_seconds, expected_crc, parse_key, pattern_block, server, start_node,
};

/// Where the client connects: an external server, or one started in this process.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Bootstrap node of the network (tern testnet, JS testnet, any HyperDHT network).
    #[arg(long)]
    pub bootstrap: SocketAddrV4,
    /// Public key (hex) of a server speaking the sink protocol (`tern-loadgen serve`,
    /// `node interop/stream-bench.js serve`). Without it, a tern server node is started in
    /// this process on its own driver thread.
    #[arg(long)]
    pub public_key: Option<String>,
}

/// Arguments of `tern-loadgen connect`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Measured connects.
    #[arg(long, default_value_t = 100)]
    pub connects: usize,
    /// Connects in flight at once (1 = sequential).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Unrecorded connects first (one at a time).
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Seconds after which a connect that has not got its reply counts as failed.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

/// Arguments of `tern-loadgen stream`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Payload per stream, MiB.
    #[arg(long, default_value_t = 256)]
    pub mib: u64,
    /// Streams sending at once (each on its own writer thread).
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Payload check by the server.
    #[arg(long, value_enum, default_value = "count")]
    pub verify: Verify,
    /// Unrecorded transfer first, MiB (0 = none).
    #[arg(long, default_value_t = 8)]
    pub warmup_mib: u64,
    /// Seconds after which an unfinished transfer counts as failed.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
}

/// The client node and the server's key (plus the in-process server, kept alive).
struct Setup {
    client: Arc<Dht>,
    public_key: [u8; 32],
    _server: Option<Dht>,
}

fn setup(args: &ServerArgs) -> anyhow::Result<Setup> {
    let (public_key, server) = match &args.public_key {
        Some(k) => (parse_key(k)?, None),
        None => {
            let node = start_node(args.bootstrap)?;
            let (key, _accept) = server::listen(&node, [0x42; 32], 256)?;
            (key, Some(node))
        }
    };
    let client = Arc::new(start_node(args.bootstrap)?);
    Ok(Setup { client, public_key, _server: server })
}

/// Reads until EOF (at most `REPORT_BYTES + 1`) and parses the server's report.
fn read_report(stream: &mut SecureStream) -> anyhow::Result<Report> {
    let mut buf = [0u8; REPORT_BYTES + 1];
    let mut got = 0;
    loop {
        let n = stream.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
        if got > REPORT_BYTES {
            bail!("the server sent more than a report");
        }
    }
    Report::decode(&buf[..got]).with_context(|| format!("bad report ({got} bytes)"))
}

/// One connect: open, header + END, wait for the report. Returns (open, reply) in µs.
fn one_connect(dht: &Dht, public_key: [u8; 32]) -> anyhow::Result<(u64, u64)> {
    let start = Instant::now();
    let mut stream = dht.connect(public_key).wait().context("connect")?;
    let open = start.elapsed();
    stream.write_all(&[HEADER_COUNT])?;
    stream.close_blocking()?;
    let report = read_report(&mut stream)?;
    let reply = start.elapsed();
    if report.bytes != 0 {
        bail!("the server counted {} bytes that were not sent", report.bytes);
    }
    Ok((open.as_micros() as u64, reply.as_micros() as u64))
}

/// Runs `total` connects with `concurrency` worker threads; each result arrives on the
/// returned channel.
fn spawn_connects(
    dht: &Arc<Dht>,
    public_key: [u8; 32],
    total: usize,
    concurrency: usize,
) -> Receiver<anyhow::Result<(u64, u64)>> {
    let (tx, rx) = channel();
    let next = Arc::new(AtomicUsize::new(0));
    for _ in 0..concurrency.clamp(1, total.max(1)) {
        let (dht, tx, next) = (dht.clone(), tx.clone(), next.clone());
        std::thread::spawn(move || {
            while next.fetch_add(1, Ordering::AcqRel) < total {
                if tx.send(one_connect(&dht, public_key)).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// `tern-loadgen connect`.
pub fn connect(args: &ConnectArgs) -> anyhow::Result<ConnectOutput> {
    let s = setup(&args.server)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let warm = spawn_connects(&s.client, s.public_key, args.warmup, 1);
    for _ in 0..args.warmup {
        if warm.recv_timeout(timeout).is_err() {
            break;
        }
    }
    let cpu = cpu_seconds();
    let start = Instant::now();
    let rx = spawn_connects(&s.client, s.public_key, args.connects, args.concurrency);
    let mut out = ConnectOutput {
        op: "connect",
        implementation: "tern",
        ok: 0,
        failed: 0,
        open_us: Vec::with_capacity(args.connects),
        reply_us: Vec::with_capacity(args.connects),
        seconds: 0.0,
        cpu_s: 0.0,
    };
    for _ in 0..args.connects {
        match rx.recv_timeout(timeout) {
            Ok(Ok((open, reply))) => {
                out.ok += 1;
                out.open_us.push(open);
                out.reply_us.push(reply);
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %format!("{e:#}"), "connect failed");
                out.failed += 1;
            }
            // Nothing finished within a whole timeout: the rest will not either.
            Err(_) => {
                out.failed = args.connects as u64 - out.ok;
                break;
            }
        }
    }
    out.seconds = start.elapsed().as_secs_f64();
    out.cpu_s = cpu_seconds() - cpu;
    Ok(out)
}

/// Sends `total` payload bytes after `header`, ends, and reads the report.
fn send_payload(
    stream: &mut SecureStream,
    block: &[u8],
    header: u8,
    total: u64,
) -> anyhow::Result<Report> {
    stream.write_all(&[header])?;
    let mut sent = 0u64;
    while sent < total {
        let at = (sent % BLOCK as u64) as usize;
        let n = (CHUNK as u64).min(total - sent).min((BLOCK - at) as u64) as usize;
        stream.write_all(&block[at..at + n])?;
        sent += n as u64;
    }
    stream.close_blocking()?;
    read_report(stream)
}

/// Opens `n` streams at once; fails if any does not open within `timeout`.
fn open_streams(s: &Setup, n: usize, timeout: Duration) -> anyhow::Result<Vec<SecureStream>> {
    let (tx, rx) = channel();
    for _ in 0..n {
        let pending = s.client.connect(s.public_key);
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(pending.wait());
        });
    }
    let deadline = Instant::now() + timeout;
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        streams.push(rx.recv_timeout(left).context("a stream did not open in time")??);
    }
    Ok(streams)
}

/// `tern-loadgen stream`.
pub fn stream(args: &StreamArgs) -> anyhow::Result<StreamOutput> {
    let s = setup(&args.server)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let block = Arc::new(pattern_block());
    let total = args.mib << 20;
    let want_crc = match args.verify {
        Verify::Crc32 => expected_crc(&block, total),
        Verify::Count => 0,
    };
    if args.warmup_mib > 0 {
        for mut stream in open_streams(&s, 1, timeout)? {
            send_payload(&mut stream, &block, HEADER_COUNT, args.warmup_mib << 20)
                .context("warm-up transfer")?;
        }
    }
    let streams = open_streams(&s, args.streams.max(1), timeout)?;
    let count = streams.len();
    // Every writer starts at once: the threads wait on the barrier with the main thread.
    let barrier = Arc::new(Barrier::new(count + 1));
    let (tx, rx) = channel();
    for mut stream in streams {
        let (block, barrier, tx) = (block.clone(), barrier.clone(), tx.clone());
        let header = args.verify.header();
        std::thread::spawn(move || {
            barrier.wait();
            let r = send_payload(&mut stream, &block, header, total);
            let _ = tx.send(r.map(|rep| (rep, Instant::now())));
        });
    }
    let udx_before = udx_totals(&s.client);
    let cpu = cpu_seconds();
    barrier.wait();
    let start = Instant::now();
    let deadline = start + timeout;
    let (mut good, mut last) = (Vec::new(), start);
    for _ in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok((rep, at))) if rep.bytes == total && rep.crc == want_crc => {
                good.push(total as f64 / at.duration_since(start).as_secs_f64() / 1e6);
                last = last.max(at);
            }
            Ok(Ok((rep, _))) => tracing::warn!(?rep, total, want_crc, "wrong report"),
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "transfer failed"),
            Err(_) => break,
        }
    }
    let seconds = last.duration_since(start).as_secs_f64();
    let cpu_s = cpu_seconds() - cpu;
    let udx = UdxCounters::since(&udx_totals(&s.client), &udx_before);
    if udx.rto_timeouts > 0 {
        tracing::info!(?udx, seconds, "retransmission timeouts during the transfer");
    }
    Ok(StreamOutput {
        op: "stream",
        implementation: "tern",
        ok: good.len() as u64,
        failed: (count - good.len()) as u64,
        verify: args.verify,
        bytes_per_stream: total,
        mb_per_s: if seconds > 0.0 {
            (good.len() as u64 * total) as f64 / seconds / 1e6
        } else {
            0.0
        },
        stream_mb_per_s: good,
        seconds,
        cpu_s,
        udx,
    })
}

/// The node's UDX counters (zero if it cannot answer: they only annotate the result).
fn udx_totals(dht: &Dht) -> tern::UdxTotals {
    dht.stats().wait().map(|s| s.conn.udx).unwrap_or_default()
}
