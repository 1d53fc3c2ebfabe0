//! `tern-sim`: the seeded swarm runner and the simulator benchmark.
//!
//! `tern-sim --seed N [--nodes N] [--minutes M]` draws fault and workload knobs from the
//! seed, runs the world, checks safety and liveness, prints the report and exits non-zero
//! on failure, ending with the one-line command that replays the run. Without `--seed` a
//! fresh seed is drawn and printed first. `--bench` runs fixed clean knobs without checks
//! and reports simulated seconds per wall-clock second.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tern_sim::TraceLevel;
use tern_sim::swarm::{self, SwarmConfig};

/// Deterministic HyperDHT network simulator: seeded swarm runs and the speed benchmark.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Seed of the run (default: a fresh one, printed first).
    #[arg(long)]
    seed: Option<u64>,
    /// Ordinary nodes (besides the 3 bootstrap nodes).
    #[arg(long, default_value_t = 300)]
    nodes: usize,
    /// Simulated minutes before the final checks.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Benchmark mode: fixed clean knobs, no faults or checks; prints simulated seconds
    /// per wall second.
    #[arg(long)]
    bench: bool,
    /// How much the event trace digests.
    #[arg(long, value_enum, default_value = "meta")]
    trace: Trace,
    /// Adds a deliberately broken liveness check (demonstrates the failure report).
    #[arg(long, hide = true)]
    break_checker: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Trace {
    Off,
    Meta,
    Full,
}

/// A fresh seed from std's OS-seeded hasher keys (only when none was given).
fn fresh_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x7e57_u64)
}

/// Runs `f` and measures its wall-clock time. The one clock read of this crate: the
/// simulation itself never sees it.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// Writes `text` to stdout; a closed pipe (`tern-sim ... | head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Peak resident set size in MiB, from /proc (Linux), if readable.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(fresh_seed);
    let trace = match args.trace {
        Trace::Off => TraceLevel::Off,
        Trace::Meta => TraceLevel::Meta,
        Trace::Full => TraceLevel::Full,
    };
    let cfg = SwarmConfig {
        seed,
        nodes: args.nodes,
        minutes: args.minutes,
        break_checker: args.break_checker,
        bench: args.bench,
        trace,
    };
    if args.seed.is_none() {
        emit(&format!("fresh seed {seed}\n"))?;
    }
    tracing::info!(seed, nodes = cfg.nodes, minutes = cfg.minutes, bench = cfg.bench, "run");
    let (report, wall) = timed(|| swarm::run(cfg));
    if cfg.bench {
        emit(&report.to_string())?;
        let sim = report.simulated.as_secs_f64();
        let speed = sim / wall.as_secs_f64().max(1e-9);
        return emit(&format!(
            "bench: {} nodes, {:.0} simulated s in {:.1} wall s = {:.1} simulated s per wall s \
             ({:.0} node-s per wall s); {:.2} M events/s; peak RSS {} MiB\n",
            cfg.nodes + 3,
            sim,
            wall.as_secs_f64(),
            speed,
            speed * (cfg.nodes + 3) as f64,
            report.events as f64 / wall.as_secs_f64().max(1e-9) / 1e6,
            peak_rss_mib().map_or_else(|| "?".to_owned(), |m| m.to_string()),
        ));
    }
    // The report goes last: on failure its last line is the reproduction command.
    emit(&format!("wall time {:.1} s\n{report}", wall.as_secs_f64()))?;
    if !report.passed() {
        // The report above already ends with the reproduction line; exit non-zero
        // without an error chain (or backtrace) burying it.
        std::process::exit(1);
    }
    Ok(())
}
