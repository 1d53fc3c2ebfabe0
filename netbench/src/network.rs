//! Network scenarios (`mode = "network"`): for a target, a loopback network of `nodes`
//! nodes of its own implementation in one process (`tern testnet` or
//! `interop/bench-net.js`), then `tern-loadgen peers` joining it with `peers` real tern
//! peers and running a workload open-loop (lookups of announced topics: latency and
//! wrong answers). The peers are the same tern client for every target, so the network
//! is the only thing that differs between rows (issue 6 goals P4 and P8).
//!
//! Measured besides the loadgen's own figures: how long the network took to come up,
//! its CPU time and peak RSS during the load, and the loadgen's peak RSS (all its
//! processes: `tern-loadgen peers` splits 10 000 peers over several when one process's
//! open-file limit cannot hold them).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::plan::{Mode, Scenario, Target, TargetKind};
use crate::streams::Proc;
use crate::target::{self, Tools};

/// One (scenario, target, repeat) of a network scenario.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkRun {
    /// Scenario name.
    pub scenario: String,
    /// Target name.
    pub target: String,
    /// Repeat index.
    pub repeat: usize,
    /// Nodes in the network.
    pub nodes: usize,
    /// Seconds from starting the network process until every node was up.
    pub network_up_s: f64,
    /// Loadgen peers started.
    pub peers: u64,
    /// Peers that joined (bootstrapped) within the timeout.
    pub joined: u64,
    /// Seconds from the first peer start until the last join ended.
    pub join_s: f64,
    /// Median and 99th percentile of one peer's join, µs.
    pub join_p50_us: u64,
    /// See `join_p50_us`.
    pub join_p99_us: u64,
    /// Workload operation name (lookup, announce ...).
    pub op: String,
    /// Operations started.
    pub sent: u64,
    /// Succeeded and right.
    pub ok: u64,
    /// Timed out.
    pub timeouts: u64,
    /// Failed with an error.
    pub errors: u64,
    /// Answered but wrong (a lookup that missed an announced record).
    pub wrong: u64,
    /// Successful operations per second.
    pub rate: f64,
    /// Latency percentiles of successful operations, µs.
    pub p50_us: u64,
    /// 90th.
    pub p90_us: u64,
    /// 99th.
    pub p99_us: u64,
    /// 99.9th.
    pub p999_us: u64,
    /// CPU seconds of the network process during the loadgen run.
    pub network_cpu_s: f64,
    /// Peak RSS of the network process during the loadgen run (KiB).
    pub network_rss_kib: u64,
    /// Peak RSS of the loadgen (all its processes) during the run (KiB).
    pub loadgen_rss_kib: u64,
}

/// A line of `tern-loadgen --json peers`.
#[derive(Debug, Deserialize)]
struct PeersLine {
    op: String,
    sent: u64,
    ok: u64,
    timeouts: u64,
    errors: u64,
    wrong: u64,
    rate: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    #[serde(default)]
    seconds: f64,
}

/// Starts the network of `target`'s implementation with its bootstrap node on `port`;
/// returns it and the seconds it took to be up.
fn start_network(
    target: &Target,
    nodes: usize,
    port: u16,
    tools: &Tools,
) -> anyhow::Result<(Proc, f64)> {
    // Joining is sequential-ish in both implementations: allow 0.2 s per node, ≥ 60 s.
    let limit = Duration::from_secs_f64((nodes as f64 * 0.2).max(60.0));
    let started = Instant::now();
    let proc = match target.kind {
        TargetKind::Tern => {
            let mut c = Command::new(tools.bin("tern"));
            c.args(["--log", "warn", "testnet", "--port", &port.to_string()]);
            c.args(["--nodes", &(nodes - 1).to_string()]).args(&target.args).envs(&target.env);
            let p = Proc::spawn(c, "tern testnet")?;
            p.wait_line("testnet up", limit)?;
            p
        }
        TargetKind::Js => {
            let dir = tools.repo.join("interop");
            anyhow::ensure!(
                dir.join("bench-net.js").is_file() && dir.join("node_modules/hyperdht").is_dir(),
                "{}: bench-net.js or node_modules missing (run `npm ci` there)",
                dir.display()
            );
            let opts = serde_json::json!({ "port": port, "nodes": nodes, "parallel": 32 });
            let mut c = Command::new("node");
            // A thousand nodes hold a few hundred MiB; room so V8's heap limit is not it.
            c.arg("--max-old-space-size=8192").arg("bench-net.js").arg(opts.to_string());
            c.current_dir(dir).envs(&target.env);
            let p = Proc::spawn(c, "the JS network")?;
            p.wait_line("\"ready\"", limit)?;
            p
        }
        TargetKind::Echo => anyhow::bail!("the raw echo is not a network"),
    };
    Ok((proc, started.elapsed().as_secs_f64()))
}

/// Peak RSS (KiB) of a process and its descendants right now.
fn tree_rss_kib(pid: u32) -> u64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    target::rss_kib(pid).unwrap_or(0)
        + children.split_whitespace().filter_map(|c| c.parse().ok()).map(tree_rss_kib).sum::<u64>()
}

/// Runs one (scenario, target, repeat): network up, peers join and work, all stopped.
pub fn measure(
    scenario: &Scenario,
    target: &Target,
    repeat: usize,
    port: u16,
    tools: &Tools,
) -> anyhow::Result<NetworkRun> {
    let Mode::Network { nodes, peers, ref workload, rate, seconds, topics, join_rate } =
        scenario.mode
    else {
        anyhow::bail!("{} is not a network scenario", scenario.name)
    };
    let (network, network_up_s) = start_network(target, nodes, port, tools)
        .with_context(|| format!("{}: starting {}'s network", scenario.name, target.name))?;
    let timeout = 10.0;
    let mut c = Command::new(tools.bin("tern-loadgen"));
    c.args(["--json", "--quiet", "peers", "--target", &format!("127.0.0.1:{port}")]);
    c.args(["--peers", &peers.to_string(), "--workload", workload]);
    c.args(["--rate", &rate.to_string(), "--duration", &seconds.to_string()]);
    c.args(["--topics", &topics.to_string(), "--join-rate", &join_rate.to_string()]);
    c.args(["--timeout", &timeout.to_string()]);
    let cpu_before = target::cpu_seconds(network.pid()).unwrap_or(0.0);
    let mut loadgen = Proc::spawn(c, "tern-loadgen peers")?;
    // Bounded: joining at join_rate, the workload, one timeout for stragglers, margin.
    let limit = peers as f64 / join_rate.max(1.0) + seconds + 3.0 * timeout + 120.0;
    let deadline = Instant::now() + Duration::from_secs_f64(limit);
    let (mut network_rss, mut loadgen_rss) = (0, 0);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        network_rss = network_rss.max(target::rss_kib(network.pid()).unwrap_or(0));
        loadgen_rss = loadgen_rss.max(tree_rss_kib(loadgen.pid()));
        match loadgen.next_line(Duration::from_millis(200)) {
            Ok(Some(line)) => lines.push(line),
            Ok(None) => {}
            Err(_) => break, // the loadgen closed its stdout: it is done
        }
    }
    let network_cpu_s = target::cpu_seconds(network.pid()).unwrap_or(0.0) - cpu_before;
    let status = loadgen.wait_exit()?;
    drop(network);
    let parsed: Vec<PeersLine> =
        lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let join = parsed.iter().find(|l| l.op == "bootstrap");
    let work = parsed.iter().find(|l| l.op != "bootstrap").or(join);
    let (Some(join), Some(work)) = (join, work) else {
        anyhow::bail!(
            "{} against {}: tern-loadgen peers ({status}) printed no results; stderr: {}",
            scenario.name,
            target.name,
            loadgen.stderr_tail()
        )
    };
    anyhow::ensure!(
        join.ok > 0,
        "{} against {}: no peer joined the network ({} tried)",
        scenario.name,
        target.name,
        join.sent
    );
    Ok(NetworkRun {
        scenario: scenario.name.clone(),
        target: target.name.clone(),
        repeat,
        nodes,
        network_up_s,
        peers: join.sent,
        joined: join.ok,
        join_s: join.seconds,
        join_p50_us: join.p50_us,
        join_p99_us: join.p99_us,
        op: work.op.clone(),
        sent: work.sent,
        ok: work.ok,
        timeouts: work.timeouts,
        errors: work.errors,
        wrong: work.wrong,
        rate: work.rate,
        p50_us: work.p50_us,
        p90_us: work.p90_us,
        p99_us: work.p99_us,
        p999_us: work.p999_us,
        network_cpu_s,
        network_rss_kib: network_rss,
        loadgen_rss_kib: loadgen_rss,
    })
}
