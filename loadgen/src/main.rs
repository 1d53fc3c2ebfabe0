//! `tern-loadgen`: loads a HyperDHT network and measures it.
//!
//! * `raw`: dht-rpc request capacity of one node (PING / FIND_NODE / LOOKUP) at an
//!   offered rate (open loop, Poisson) or a fixed number in flight (closed loop).
//! * `peers`: thousands of real tern nodes, each with its own socket on 127.x
//!   addresses, bootstrapping into the target network and running DHT operations.
//!
//! Output: a progress bar while running, a summary table at the end, and with `--json`
//! one JSON line per operation kind on stdout.

mod peers;
mod plan;
mod raw;
mod stats;

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
    },
    /// Run many real tern peers against a network and measure DHT operations.
    Peers(peers::PeersArgs),
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
        Command::Peers(args) => {
            peers::run(&args, cli.quiet).map(|(secs, s)| print_results(cli.json, secs, &s))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
