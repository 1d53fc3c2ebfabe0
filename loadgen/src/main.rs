//! `tern-loadgen`: loads a HyperDHT network and measures it.
//!
//! * `raw`: dht-rpc request capacity of one node (PING / FIND_NODE / LOOKUP, and the
//!   signed writes ANNOUNCE / MUTABLE_PUT from a pre-signed pool: `signed`) at an
//!   offered rate (open loop, Poisson) or a fixed number in flight (closed loop).
//! * `peers`: thousands of real tern nodes, each with its own socket on 127.x
//!   addresses, bootstrapping into the target network and running DHT operations
//!   (over several processes when one's open-file limit cannot hold them: `split`),
//!   or the same peers and network in the deterministic simulator (`--sim`: `sim`).
//! * `serve`, `connect`, `stream`: encrypted connections: time to open, and one-way
//!   throughput of one or many streams (see `streams`; `interop/stream-bench.js` is the
//!   JS twin, so both implementations are measured alike).
//!
//! Output: a progress bar while running, a summary table at the end, and with `--json`
//! one JSON line per operation kind on stdout.

mod garbage;
mod peers;
mod plan;
mod raw;
mod signed;
mod sim;
mod split;
mod stats;
mod streams;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::raw::{Arrivals, RawCommand, RawConfig};
use crate::stats::{OpStats, table};

/// Load generator for HyperDHT networks (tern and the JS reference alike).
#[derive(Debug, Parser)]
#[command(name = "tern-loadgen", version, about)]
struct Cli {
    /// Print one JSON summary line per operation on stdout (the table goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Hide the progress bar.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fire dht-rpc requests at one node and measure how many it answers, how fast.
    Raw {
        /// The node under test.
        #[arg(long)]
        target: SocketAddrV4,
        /// What to ask.
        #[arg(long, value_enum, default_value = "ping")]
        command: RawCommand,
        /// Open loop: offered requests per second (Poisson arrivals).
        #[arg(long, conflicts_with = "inflight")]
        rate: Option<f64>,
        /// Closed loop: requests kept in flight.
        #[arg(long)]
        inflight: Option<usize>,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Sockets to spread requests over (each has 65 536 tids).
        #[arg(long, default_value_t = 16)]
        sockets: usize,
        /// Seconds after which an unanswered request counts as a timeout.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
        /// Local address to send from.
        #[arg(long, default_value = "127.0.0.1")]
        bind: Ipv4Addr,
        /// Seed for targets and arrival times.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Garbage flood: this fraction (0..1) of the offered datagrams is malformed
        /// (truncated, corrupted, length bombs, stray responses, unknown UDX streams,
        /// oversize), sent from separate sockets; the rest are the measured requests.
        /// Open loop only: `--rate 40000 --malformed 0.5` is 20 000 requests/s plus
        /// 20 000 malformed datagrams/s.
        #[arg(long, default_value_t = 0.0, conflicts_with = "inflight",
              value_parser = fraction)]
        malformed: f64,
    },
    /// Run many real tern peers against a network and measure DHT operations.
    Peers(peers::PeersArgs),
    /// Listen as a key pair and serve the sink protocol (for `connect` and `stream`);
    /// prints {"event":"listening","publicKey":HEX}, serves until stdin closes.
    Serve(streams::server::ServeArgs),
    /// Open connections to a server and measure time to open (p50/p90/p99).
    Connect(streams::client::ConnectArgs),
    /// Send bytes one way over one or many encrypted streams and measure MB/s.
    Stream(streams::client::StreamArgs),
    /// Run the steps of a TOML plan in order (see loadgen/plans/).
    Plan {
        /// The plan file.
        file: std::path::PathBuf,
    },
}

fn progress_bar(quiet: bool, total: Duration) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[allow(clippy::print_stdout)] // results are the program's output
fn print_results(json: bool, seconds: f64, stats: &[OpStats]) {
    let rows: Vec<_> = stats.iter().map(|s| s.summary(seconds)).collect();
    if json {
        for r in &rows {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    }
    eprint!("{}", table(&rows));
    for r in rows.iter().filter(|r| r.malformed > 0) {
        eprintln!("{}: {} malformed datagrams sent alongside", r.op, r.malformed);
    }
}

/// Parses a fraction in [0, 1).
fn fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..1.0).contains(&f) { Ok(f) } else { Err(format!("{f} is not in [0, 1)")) }
}

/// Prints full stats for a parent `peers --processes N` to merge (see `split`).
#[allow(clippy::print_stdout)] // the parent reads them from stdout
fn print_raw(stats: &[OpStats]) {
    for s in stats {
        println!("{}", serde_json::to_string(&s.to_raw()).unwrap_or_default());
    }
}

/// Prints a connect result: the JSON line (with every sample) and a percentile table.
#[allow(clippy::print_stdout)] // results are the program's output
fn print_connect(json: bool, out: &streams::ConnectOutput) {
    if json {
        println!("{}", serde_json::to_string(out).unwrap_or_default());
    }
    let mut open = OpStats::new("open");
    let mut reply = OpStats::new("reply");
    for (s, v) in [(&mut open, &out.open_us), (&mut reply, &out.reply_us)] {
        s.sent = out.ok + out.failed;
        s.timeouts = out.failed;
        v.iter().for_each(|&us| s.record_ok(us));
    }
    eprint!("{}", table(&[open.summary(out.seconds), reply.summary(out.seconds)]));
}

/// Prints a stream result: the JSON line and a one-row table.
#[allow(clippy::print_stdout)] // results are the program's output
fn print_stream(json: bool, out: &streams::StreamOutput) {
    if json {
        println!("{}", serde_json::to_string(out).unwrap_or_default());
    }
    let mut per = out.stream_mb_per_s.clone();
    per.sort_by(f64::total_cmp);
    let pick = |i: usize| per.get(i).copied().unwrap_or(0.0);
    eprintln!(
        "{:>7} {:>4} {:>6} {:>9} {:>12} {:>14} {:>14} {:>14} {:>8}",
        "streams", "ok", "failed", "MiB each", "aggregate", "slowest", "median", "fastest", "CPU s"
    );
    eprintln!(
        "{:>7} {:>4} {:>6} {:>9} {:>9.1} MB/s {:>9.1} MB/s {:>9.1} MB/s {:>9.1} MB/s {:>8.2}",
        out.ok + out.failed,
        out.ok,
        out.failed,
        out.bytes_per_stream >> 20,
        out.mb_per_s,
        pick(0),
        pick(per.len() / 2),
        pick(per.len().saturating_sub(1)),
        out.cpu_s
    );
}

/// Runs every step of a plan, printing each step's results as it ends.
fn run_plan(file: &std::path::Path, json: bool, quiet: bool) -> anyhow::Result<()> {
    let plan = plan::Plan::load(file)?;
    for step in &plan.steps {
        if let Some(cfg) = step.raw_config(plan.target) {
            let bar = progress_bar(quiet, cfg.duration);
            let stats = raw::run(&cfg, |e, _| bar.set_position(e.as_millis() as u64))?;
            bar.finish_and_clear();
            print_results(json, cfg.duration.as_secs_f64(), &[stats]);
        } else if let Some(args) = step.peers_args(plan.target) {
            let (secs, stats) = peers::run(&args, quiet)?;
            print_results(json, secs, &stats);
        } else if let Some(args) = step.connect_args(plan.target) {
            print_connect(json, &streams::client::connect(&args)?);
        } else if let Some(args) = step.stream_args(plan.target) {
            print_stream(json, &streams::client::stream(&args)?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.command {
        Command::Raw {
            target,
            command,
            rate,
            inflight,
            duration,
            sockets,
            timeout,
            bind,
            seed,
            malformed,
        } => {
            let arrivals = match (rate, inflight) {
                (_, Some(n)) => Arrivals::Closed(n),
                (Some(r), None) => Arrivals::Open(r),
                (None, None) => Arrivals::Open(10_000.0),
            };
            let cfg = RawConfig {
                target,
                command,
                arrivals,
                duration: Duration::from_secs_f64(duration),
                sockets,
                timeout: Duration::from_secs_f64(timeout),
                bind,
                seed,
                malformed,
            };
            let bar = progress_bar(cli.quiet, cfg.duration);
            let r = raw::run(&cfg, |elapsed, s| {
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_message(format!("sent {} ok {} timeouts {}", s.sent, s.ok, s.timeouts));
            });
            bar.finish_and_clear();
            r.map(|s| print_results(cli.json, duration, &[s]))
        }
        Command::Plan { file } => run_plan(&file, cli.json, cli.quiet),
        Command::Serve(args) => streams::server::run(&args),
        Command::Connect(args) => {
            streams::client::connect(&args).map(|out| print_connect(cli.json, &out))
        }
        Command::Stream(args) => {
            streams::client::stream(&args).map(|out| print_stream(cli.json, &out))
        }
        Command::Peers(args) => peers::run(&args, cli.quiet).map(|(secs, s)| {
            if args.raw_stats { print_raw(&s) } else { print_results(cli.json, secs, &s) }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
