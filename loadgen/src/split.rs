//! `peers` over several processes: when one process's open-file limit cannot hold every
//! peer's sockets (10 000 peers need 20 000+ descriptors; a container's hard limit is
//! often exactly 20 000 and cannot be raised without CAP_SYS_RESOURCE), the parent
//! re-runs itself as N children, each with its share of peers (on addresses after the
//! previous child's), topics, join rate and offered rate, and merges their full stats
//! (counts and latency histograms, see `stats::RawStats`) into one table.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::peers::{PeersArgs, Workload, files_needed};
use crate::stats::{OpStats, RawStats};

/// Processes needed for `peers` peers under this process's open-file hard limit.
pub fn processes_for(peers: usize) -> usize {
    let wanted = files_needed(peers);
    // Raising the soft limit to the hard one is what each child does anyway.
    let limit = tern_udp::raise_open_file_limit(wanted);
    if limit >= wanted || limit <= 512 {
        return 1;
    }
    let per_process = ((limit - 256) / 2).max(1) as usize;
    peers.div_ceil(per_process)
}

/// The share of `total` that child `i` of `n` takes (the first ones take the remainder).
fn share(total: usize, i: usize, n: usize) -> usize {
    total / n + usize::from(i < total % n)
}

/// The command line of child `i` of `n`.
fn child_args(args: &PeersArgs, i: usize, n: usize) -> Vec<String> {
    let first_peer: usize = (0..i).map(|j| share(args.peers, j, n)).sum();
    let workload = match args.workload {
        Workload::Lookup => "lookup",
        Workload::Announce => "announce",
        Workload::Mutable => "mutable",
        Workload::Immutable => "immutable",
        Workload::Bootstrap => "bootstrap",
    };
    let mut v: Vec<String> = vec![
        "--quiet".into(),
        "peers".into(),
        "--peers".into(),
        share(args.peers, i, n).to_string(),
        "--threads".into(),
        (args.threads / n).max(1).to_string(),
        "--join-rate".into(),
        (args.join_rate / n as f64).to_string(),
        "--workload".into(),
        workload.into(),
        "--rate".into(),
        (args.rate / n as f64).to_string(),
        "--duration".into(),
        args.duration.to_string(),
        "--topics".into(),
        share(args.topics, i, n).max(1).to_string(),
        "--timeout".into(),
        args.timeout.to_string(),
        "--seed".into(),
        (args.seed.wrapping_add(i as u64 * 0x9e37_79b9)).to_string(),
        "--processes".into(),
        "1".into(),
        "--first-peer".into(),
        (args.first_peer + first_peer).to_string(),
        "--raw-stats".into(),
    ];
    if let Some(target) = args.target {
        v.extend(["--target".into(), target.to_string()]);
    }
    if args.persistent {
        v.push("--persistent".into());
    }
    v
}

/// Runs the peers as `n` child processes and merges what they report.
pub fn run(args: &PeersArgs, n: usize, quiet: bool) -> anyhow::Result<(f64, Vec<OpStats>)> {
    let exe = std::env::current_exe().context("locating tern-loadgen")?;
    tracing::info!(processes = n, peers = args.peers, "spreading the peers over processes");
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let child = Command::new(&exe)
            .args(child_args(args, i, n))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting peers process {i}"))?;
        children.push(child);
    }
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("{} peers in {n} processes", args.peers));
    bar.enable_steady_tick(Duration::from_millis(200));
    // Each child's stdout is read on its own thread so none blocks on a full pipe.
    let readers: Vec<_> = children
        .iter_mut()
        .map(|c| {
            let out = c.stdout.take();
            std::thread::spawn(move || -> Vec<RawStats> {
                let Some(out) = out else { return Vec::new() };
                BufReader::new(out)
                    .lines()
                    .map_while(Result::ok)
                    .filter_map(|l| serde_json::from_str(&l).ok())
                    .collect()
            })
        })
        .collect();
    let mut merged: Vec<OpStats> = Vec::new();
    for (i, (reader, mut child)) in readers.into_iter().zip(children).enumerate() {
        let lines = reader.join().unwrap_or_default();
        let status = child.wait()?;
        anyhow::ensure!(status.success(), "peers process {i} failed ({status})");
        for raw in lines {
            match merged.iter_mut().find(|s| s.name == raw.op) {
                Some(s) => s.absorb(&raw),
                None => {
                    let mut s = OpStats::new(&raw.op);
                    s.absorb(&raw);
                    merged.push(s);
                }
            }
        }
    }
    bar.finish_and_clear();
    anyhow::ensure!(!merged.is_empty(), "the peers processes reported nothing");
    Ok((args.duration, merged))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    fn args(peers: usize) -> PeersArgs {
        PeersArgs {
            target: Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1)),
            peers,
            threads: 2,
            join_rate: 500.0,
            workload: Workload::Lookup,
            rate: 100.0,
            duration: 5.0,
            topics: 3,
            timeout: 10.0,
            persistent: false,
            seed: 1,
            processes: 2,
            sim: false,
            sim_nodes: 100,
            first_peer: 0,
            raw_stats: false,
        }
    }

    fn value<'a>(v: &'a [String], flag: &str) -> &'a str {
        let i = v.iter().position(|a| a == flag).expect("flag present");
        &v[i + 1]
    }

    #[test]
    fn children_split_peers_rates_and_addresses_without_overlap() {
        let a = args(10_001);
        let (c0, c1) = (child_args(&a, 0, 2), child_args(&a, 1, 2));
        assert_eq!((value(&c0, "--peers"), value(&c1, "--peers")), ("5001", "5000"));
        assert_eq!((value(&c0, "--first-peer"), value(&c1, "--first-peer")), ("0", "5001"));
        assert_eq!(value(&c1, "--rate"), "50");
        assert_eq!(value(&c1, "--join-rate"), "250");
        // 3 topics over 2 children: 2 + 1, and every child announces at least one.
        assert_eq!((value(&c0, "--topics"), value(&c1, "--topics")), ("2", "1"));
        assert_ne!(value(&c0, "--seed"), value(&c1, "--seed"));
        assert!(c0.iter().any(|x| x == "--raw-stats"));
        // The children parse as the same command line.
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[arg(long)]
            quiet: bool,
            #[command(subcommand)]
            cmd: Sub,
        }
        #[derive(clap::Subcommand)]
        enum Sub {
            Peers(PeersArgs),
        }
        let parsed = Cli::try_parse_from(std::iter::once("x".to_owned()).chain(c1)).unwrap();
        let Sub::Peers(p) = parsed.cmd;
        assert!(parsed.quiet);
        assert_eq!((p.peers, p.first_peer, p.processes), (5000, 5001, 1));
    }
}
