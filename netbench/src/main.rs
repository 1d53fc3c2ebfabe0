//! `netbench`: macro-benchmark suites. Each plan runs scenarios against targets — tern,
//! the JS reference (hyperdht 6.34.0 from `interop/`) and a raw UDP echo (the physical
//! limit) — interleaved and repeated, with `tern-loadgen` as the load, and writes a
//! report whose every claim is a ratio measured in the same run. Connection scenarios
//! (time to open, stream MB/s) give tern and the JS reference each a loopback network,
//! a server and a client of their own implementation (`streams`); network scenarios
//! (lookup latency in a 1 000-node network, thousands of loadgen peers) give each a
//! large loopback network loaded by `tern-loadgen peers` (`network`).

mod cpu_report;
mod network;
mod network_report;
mod plan;
mod report;
mod run;
mod stream_report;
mod streams;
mod svg;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Benchmark suites for tern against the JS reference and a raw UDP echo.
#[derive(Debug, Parser)]
#[command(name = "netbench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a plan and write report.md, report.json and SVG plots to --out.
    Run {
        /// The plan (TOML), e.g. netbench/plans/quick.toml.
        plan: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Directory holding the `tern` and `tern-loadgen` binaries (default: netbench's own).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Repository root (for interop/); default: found from the plan's location.
        #[arg(long)]
        repo: Option<PathBuf>,
        /// First UDP port for targets (each target start uses the next one).
        #[arg(long, default_value_t = 27_000)]
        port: u16,
        /// First UDP port for the connect/stream scenarios' networks (they cycle through
        /// the 200 ports from here, a bootstrap node and its nodes per start).
        #[arg(long, default_value_t = 28_000)]
        stream_port: u16,
        /// First UDP port for the network scenarios' networks: a tern network of N nodes
        /// takes N consecutive ports from here (N ≤ 1000), a JS network only this one.
        #[arg(long, default_value_t = 30_000)]
        network_port: u16,
    },
    /// Re-render report.md and the plots of a finished run from its report.json (after
    /// the report code changed, or into another directory).
    Report {
        /// The run (report.json or its directory).
        run: PathBuf,
        /// Output directory (default: the run's own).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare two runs (report.json files or their directories); exits 1 on regression.
    Compare {
        /// The baseline run.
        old: PathBuf,
        /// The new run.
        new: PathBuf,
    },
    /// The raw echo baseline server (started by `run`; useful by hand too).
    Echo {
        /// UDP port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Threads, each with its own SO_REUSEPORT socket on the port (the baseline for
        /// a node with as many shards).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

fn load_results(p: &std::path::Path) -> anyhow::Result<run::Results> {
    let file = if p.is_dir() { p.join("report.json") } else { p.to_path_buf() };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    Ok(serde_json::from_str(&text)?)
}

#[allow(clippy::print_stdout)] // reports are the program's output
fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let result: anyhow::Result<bool> = match cli.command {
        Command::Run { plan, out, bin_dir, repo, port, stream_port, network_port } => (|| {
            let p = plan::Plan::load(&plan)?;
            let exe = std::env::current_exe()?;
            let bin_dir = bin_dir
                .or_else(|| exe.parent().map(PathBuf::from))
                .context("no binary directory")?;
            let abs_plan = std::fs::canonicalize(&plan)?;
            let repo = repo
                .or_else(|| target::find_repo(&abs_plan))
                .or_else(|| std::env::current_dir().ok().and_then(|d| target::find_repo(&d)))
                .context("cannot find the repository root (interop/); pass --repo")?;
            let tools = target::Tools { bin_dir, repo };
            let ports = run::Ports { target: port, stream: stream_port, network: network_port };
            let results = run::run(&p, &tools, ports)?;
            report::write(&results, &out)?;
            print!("{}", std::fs::read_to_string(out.join("report.md"))?);
            Ok(true)
        })(),
        Command::Report { run, out } => (|| {
            let results = load_results(&run)?;
            let dir = out.unwrap_or_else(|| {
                if run.is_dir() {
                    run.clone()
                } else {
                    run.parent().map(PathBuf::from).unwrap_or_default()
                }
            });
            report::write(&results, &dir)?;
            print!("{}", std::fs::read_to_string(dir.join("report.md"))?);
            Ok(true)
        })(),
        Command::Compare { old, new } => (|| {
            let (lines, regressed) = report::compare(&load_results(&old)?, &load_results(&new)?);
            for l in lines {
                println!("{l}");
            }
            Ok(!regressed)
        })(),
        Command::Echo { port, threads } => target::echo(port, threads).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
