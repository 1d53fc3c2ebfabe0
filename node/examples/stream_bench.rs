//! One encrypted stream between two tern nodes on 127.0.0.1: time-to-open and one-way
//! throughput, each repeated and reported as min / median / max (the machine is noisy).
//!
//! ```sh
//! cargo run --release -p tern --example stream_bench -- [MIB_PER_RUN] [RUNS]
//! ```
//!
//! Every node runs on its own driver thread, as separate processes would; the writer and
//! reader are application threads doing the secret-stream encryption. Ports 27600–27610,
//! or from `TERN_BENCH_PORT` on (where another range is reserved for tests).

// The table on stdout is the output.
#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tern::{Dht, KeyPair, NodeConfig, RpcConfig};

/// First port used unless `TERN_BENCH_PORT` names another.
const DEFAULT_PORT: u16 = 27_600;

fn node(bootstrap: SocketAddrV4, port: u16, public: bool) -> anyhow::Result<Dht> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let rpc = if public {
        RpcConfig { public_addr: Some(addr), ..RpcConfig::default() }
    } else {
        RpcConfig {
            bootstrap: vec![bootstrap],
            ephemeral: Some(false),
            firewalled: false,
            ..RpcConfig::default()
        }
    };
    let config = NodeConfig { rpc, host: Ipv4Addr::LOCALHOST, port, ..NodeConfig::default() };
    Ok(Dht::start(config)?)
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(256), |a| a.parse()).context("MIB_PER_RUN")?;
    let runs: usize = args.next().map_or(Ok(5), |a| a.parse()).context("RUNS")?;
    if runs == 0 {
        bail!("RUNS must be at least 1");
    }
    let port: u16 =
        std::env::var("TERN_BENCH_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PORT);
    let boot_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let boot = node(boot_addr, port, true)?;
    boot.ready().wait()?;
    let relays: Vec<Dht> =
        (1..=3).map(|i| node(boot_addr, port + i, false)).collect::<Result<_, _>>()?;
    for r in &relays {
        r.ready().wait()?;
    }
    let server = node(boot_addr, port + 8, false)?;
    let client = node(boot_addr, port + 9, false)?;
    server.ready().wait()?;
    client.ready().wait()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !relays.iter().all(Dht::is_persistent) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let total = mib << 20;
    let (mut opens, mut rates) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let kp = KeyPair::from_seed(&[run as u8 + 1; 32]);
        let mut srv = server.listen(&kp).wait()?;
        let reader = std::thread::spawn(move || -> std::io::Result<(usize, Duration)> {
            let Some(mut s) = srv.accept_blocking() else { return Ok((0, Duration::ZERO)) };
            let mut buf = vec![0u8; 256 * 1024];
            let (mut got, start) = (0, Instant::now());
            while got < total {
                match s.read(&mut buf)? {
                    0 => break,
                    n => got += n,
                }
            }
            Ok((got, start.elapsed()))
        });
        let t0 = Instant::now();
        let mut c = client.connect(*kp.public_key().as_bytes()).wait()?;
        opens.push(t0.elapsed().as_secs_f64() * 1e3);
        let chunk = vec![0x5au8; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            c.write_all(&chunk)?;
            sent += chunk.len();
        }
        let (got, took) = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
        if got < total {
            bail!("run {run}: only {got} of {total} bytes arrived");
        }
        rates.push(got as f64 / took.as_secs_f64() / 1e6);
        c.close_blocking()?;
    }
    let (omin, omed, omax) = stats(opens);
    let (rmin, rmed, rmax) = stats(rates);
    println!("| metric | min | median | max |");
    println!("|---|---|---|---|");
    println!("| time to open (ms) | {omin:.2} | {omed:.2} | {omax:.2} |");
    println!("| one-way throughput, {mib} MiB (MB/s) | {rmin:.1} | {rmed:.1} | {rmax:.1} |");
    Ok(())
}
