//! Echo through the driver: how many request/reply pairs one driver thread serves,
//! and its CPU per pair, on each backend — the floor any endpoint's cost adds to.
//!
//! ```text
//! cargo run --release -p tern-driver --example echo_bench -- [SECONDS] [PAYLOAD] [ROUNDS]
//! ```
//!
//! One driver thread runs an endpoint that echoes every datagram; one client thread
//! keeps a window of requests in flight with sendmmsg/recvmmsg over loopback. Each
//! round measures io_uring and epoll back to back (interleaved, so drift on a shared
//! machine hits both alike); the summary is the median over rounds. CPU is the driver
//! thread's own (utime + stime from /proc), so it excludes the client. With two cores
//! the client needs about as much CPU as the server, so the pair rate can be
//! client-bound: the utilisation column says how busy the driver thread was.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use tern_base::{Endpoint, SocketId, SocketSpec, Timestamp, TxQueue};
use tern_driver::{DriverBuilder, IoMode};
use tern_udp::{OutDatagram, RecvBatch, SendBatch, SocketOptions, UdpSocket};

/// Requests in flight: enough to keep the server's batches full, far below what the
/// socket buffers hold.
const WINDOW: usize = 256;
const WARMUP: Duration = Duration::from_millis(500);

/// Echoes every datagram back to its sender.
struct Echo;

impl Endpoint for Echo {
    type Command = ();
    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec {
            id: SocketId::SERVER,
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            fallback_ports: &[],
            any_port: false,
            steer_udx_shards: 0,
        }]
    }
    fn bound(&mut self, _: Timestamp, _: &[SocketAddrV4], _: &mut TxQueue) {}
    fn handle_datagram(
        &mut self,
        _: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
        tx: &mut TxQueue,
    ) {
        tx.push(socket, from, data);
    }
    fn handle_command(&mut self, _: Timestamp, _: (), _: &mut TxQueue) {}
    fn handle_timeout(&mut self, _: Timestamp, _: &mut TxQueue) {}
    fn poll_timeout(&self) -> Timestamp {
        Timestamp::NEVER
    }
}

/// CPU time (user + system) of this process's thread named `name`.
fn thread_cpu(name: &str) -> Duration {
    // Clock ticks (USER_HZ) are 100 per second on every Linux tern runs on.
    let ticks_per_s = 100.0;
    for entry in std::fs::read_dir("/proc/self/task").unwrap().map_while(Result::ok) {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap();
        // Fields after the ")" that closes the command name: state is field 3,
        // utime 14, stime 15 (1-based over the whole line).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        return Duration::from_secs_f64(ticks / ticks_per_s);
    }
    Duration::ZERO
}

/// One measurement: pairs per second and driver CPU per pair.
struct Run {
    rate: f64,
    cpu_per_pair: Duration,
    utilisation: f64,
}

fn run(io: IoMode, seconds: f64, payload: usize) -> Run {
    let name = format!("echo-{io}");
    let driver = DriverBuilder::new().io(io).name(&name).start::<Echo>().unwrap();
    let server = driver.spawn_endpoint(Echo).unwrap().local_addrs()[0];
    let thread_name = format!("{name}-0");
    let socket =
        UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &SocketOptions::default())
            .unwrap();
    let (mut rx, mut tx) = (RecvBatch::new(64, 2048), SendBatch::new(64));
    let data = vec![0x5a; payload];
    let send = |n: usize, tx: &mut SendBatch| {
        let mut items =
            (0..n).map(|_| OutDatagram { dest: server, ttl: None, data: &data, tail: &[] });
        while tx.send(socket.as_fd(), &mut items).loaded > 0 {}
    };
    send(WINDOW, &mut tx);
    let started = Instant::now();
    let mut measuring: Option<(Instant, Duration)> = None;
    let mut pairs = 0u64;
    let total = WARMUP + Duration::from_secs_f64(seconds);
    while started.elapsed() < total {
        if measuring.is_none() && started.elapsed() >= WARMUP {
            measuring = Some((Instant::now(), thread_cpu(&thread_name)));
            pairs = 0;
        }
        if !socket.wait_readable(Duration::from_millis(20)).unwrap() {
            send(WINDOW / 4, &mut tx); // replace what loopback dropped
            continue;
        }
        let n = rx.recv(socket.as_fd()).unwrap();
        pairs += n as u64;
        send(n, &mut tx);
    }
    let (since, cpu0) = measuring.expect("measured");
    let wall = since.elapsed();
    let cpu = thread_cpu(&thread_name).saturating_sub(cpu0);
    driver.shutdown().unwrap();
    Run {
        rate: pairs as f64 / wall.as_secs_f64(),
        cpu_per_pair: cpu.checked_div(pairs.max(1) as u32).unwrap_or_default(),
        utilisation: cpu.as_secs_f64() / wall.as_secs_f64(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let payload: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let modes = [IoMode::Uring, IoMode::Epoll];
    let mut results: Vec<Vec<Run>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, &io) in modes.iter().enumerate() {
            let r = run(io, seconds, payload);
            println!(
                "round {round} {io:<5} {:>9.0} pairs/s  {:>6.2} us CPU/pair  {:>4.0} % busy",
                r.rate,
                r.cpu_per_pair.as_secs_f64() * 1e6,
                r.utilisation * 100.0
            );
            results[i].push(r);
        }
    }
    println!("\nmedian of {rounds} ({payload}-byte payload, {seconds} s each, window {WINDOW}):");
    for (i, io) in modes.iter().enumerate() {
        let rate = median(results[i].iter().map(|r| r.rate).collect());
        let cpu = median(results[i].iter().map(|r| r.cpu_per_pair.as_secs_f64() * 1e6).collect());
        let busy = median(results[i].iter().map(|r| r.utilisation * 100.0).collect());
        println!("{io:<5} {rate:>9.0} pairs/s  {cpu:>6.2} us CPU/pair  {busy:>4.0} % busy");
    }
}
