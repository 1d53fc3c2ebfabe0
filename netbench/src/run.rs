//! Running a plan: each scenario against each target, repeats interleaved so drift in
//! the machine's load hits every target alike; loadgen runs as its own process while
//! the target's CPU time and RSS are sampled from /proc.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::network::{self, NetworkRun};
use crate::plan::{Mode, Plan, Scenario, Target, TargetKind};
use crate::streams::{self, StreamRun};
use crate::target::{self, Running, Tools};

/// Ports the connection scenarios' networks cycle through, from `--stream-port`: each
/// start takes the next block of `nodes + 1`, wrapping inside the span.
const STREAM_PORT_SPAN: u16 = 200;

/// Length of the unrecorded warm-up before each (scenario, repeat, target).
const WARM_UP_SECONDS: f64 = 1.0;

/// One loadgen measurement at one offered rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Scenario name.
    pub scenario: String,
    /// Target name.
    pub target: String,
    /// Repeat index.
    pub repeat: usize,
    /// Request kind (`tern-loadgen raw --command`).
    #[serde(default)]
    pub command: String,
    /// Offered rate (req/s).
    pub offered: f64,
    /// Sent requests.
    pub sent: u64,
    /// Answered within the timeout, without error.
    pub ok: u64,
    /// ok / sent.
    pub ok_ratio: f64,
    /// Answered per second.
    pub rate: f64,
    /// Latency percentiles (µs).
    pub p50_us: u64,
    /// 90th.
    pub p90_us: u64,
    /// 99th.
    pub p99_us: u64,
    /// 99.9th.
    pub p999_us: u64,
    /// Target CPU seconds during the measurement.
    pub cpu_s: f64,
    /// Target CPU µs per answered request.
    pub cpu_us_per_req: f64,
    /// Target CPU utilisation (%) over the measurement.
    pub cpu_percent: f64,
    /// Peak target RSS during the measurement (KiB).
    pub rss_kib: u64,
}

/// The capacity found in one repeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capacity {
    /// Scenario.
    pub scenario: String,
    /// Target.
    pub target: String,
    /// Repeat index.
    pub repeat: usize,
    /// Highest offered rate that passed (0 if none did).
    pub capacity: f64,
}

/// Everything a run produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// Plan name.
    pub plan: String,
    /// When (UTC, RFC 3339-ish, from `date`).
    pub date: String,
    /// Machine description.
    pub machine: String,
    /// Every measurement.
    pub measurements: Vec<Measurement>,
    /// Capacity search outcomes.
    pub capacities: Vec<Capacity>,
    /// Connect and stream scenario runs.
    #[serde(default)]
    pub stream_runs: Vec<StreamRun>,
    /// Network scenario runs.
    #[serde(default)]
    pub network_runs: Vec<NetworkRun>,
    /// Each target's raw echo baseline, where the plan named one.
    #[serde(default)]
    pub baselines: std::collections::BTreeMap<String, String>,
    /// Scenarios whose rates must also keep p99 within a bound (ms).
    #[serde(default)]
    pub max_p99_ms: std::collections::BTreeMap<String, f64>,
}

/// The JSON line `tern-loadgen --json` prints.
#[derive(Debug, Deserialize)]
struct LoadgenLine {
    sent: u64,
    ok: u64,
    ok_ratio: f64,
    rate: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
}

/// First ports of the three kinds of target process (see `netbench run --help`).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Request scenarios' targets: each start takes the next port.
    pub target: u16,
    /// Connection scenarios' networks: cycling through `STREAM_PORT_SPAN` ports.
    pub stream: u16,
    /// Network scenarios' networks: `nodes` ports from here, reused by every start.
    pub network: u16,
}

/// Whether `target` can serve `scenario` at all: the raw echo holds no connections,
/// stores nothing (network scenarios) and issues no tokens (signed writes).
fn applicable(scenario: &Scenario, target: &Target) -> bool {
    if scenario.skip.contains(&target.name) {
        return false;
    }
    let signed = matches!(scenario.command.as_str(), "announce" | "mutable_put");
    target.kind != TargetKind::Echo
        || !(scenario.mode.is_connection() || scenario.mode.is_network() || signed)
}

/// Runs the plan.
pub fn run(plan: &Plan, tools: &Tools, ports: Ports) -> anyhow::Result<Results> {
    let (mut base_port, first_stream_port) = (ports.target, ports.stream);
    let mut results = Results {
        plan: plan.name.clone(),
        date: shell("date -u +%Y-%m-%dT%H:%MZ"),
        machine: format!(
            "{} cores, {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").trim()
        ),
        baselines: plan
            .targets
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.baseline.clone()?)))
            .collect(),
        max_p99_ms: plan
            .scenarios
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.max_p99_ms?)))
            .collect(),
        ..Results::default()
    };
    let bar = ProgressBar::new((plan.scenarios.len() * plan.repeats * plan.targets.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if plan.scenarios.iter().any(|s| s.mode.is_connection())
        && plan.targets.iter().any(|t| t.kind == TargetKind::Js)
    {
        streams::check_js(&tools.repo)?;
    }
    let stream_ports = first_stream_port..first_stream_port.saturating_add(STREAM_PORT_SPAN);
    let mut stream_port = stream_ports.start;
    for scenario in &plan.scenarios {
        for repeat in 0..plan.repeats {
            for target in &plan.targets {
                bar.inc(1);
                if !applicable(scenario, target) {
                    continue;
                }
                if scenario.mode.is_network() {
                    bar.set_message(format!(
                        "{} · {} · repeat {}",
                        scenario.name,
                        target.name,
                        repeat + 1
                    ));
                    let r = network::measure(scenario, target, repeat, ports.network, tools)?;
                    results.network_runs.push(r);
                    continue;
                }
                if let Mode::Connect { nodes, .. } | Mode::Stream { nodes, .. } = scenario.mode {
                    bar.set_message(format!(
                        "{} · {} · repeat {}",
                        scenario.name,
                        target.name,
                        repeat + 1
                    ));
                    let block = nodes as u16 + 1;
                    if stream_port.saturating_add(block) > stream_ports.end {
                        stream_port = stream_ports.start;
                    }
                    let r = streams::measure(scenario, target, repeat, stream_port, tools)?;
                    stream_port += block;
                    results.stream_runs.push(r);
                    continue;
                }
                bar.set_message(format!(
                    "{} · {} · repeat {}",
                    scenario.name,
                    target.name,
                    repeat + 1
                ));
                base_port = base_port.wrapping_add(1).max(20_000);
                let running = target::start(target, base_port, tools)?;
                let r =
                    measure_scenario(plan, scenario, target, repeat, &running, tools, &mut results);
                running.stop();
                r?;
            }
        }
    }
    bar.finish_and_clear();
    Ok(results)
}

fn measure_scenario(
    plan: &Plan,
    scenario: &Scenario,
    target: &Target,
    repeat: usize,
    running: &Running,
    tools: &Tools,
    results: &mut Results,
) -> anyhow::Result<()> {
    // An unrecorded warm-up at the scenario's lowest rate: a JS target's first second
    // runs cold (V8 compiles its hot paths under the load), and every target gets the
    // same treatment so the comparison stays fair.
    let warm_rate = match &scenario.mode {
        Mode::Rates { rates } => rates.iter().copied().fold(f64::INFINITY, f64::min),
        Mode::Capacity { start, .. } => *start,
        Mode::Connect { .. } | Mode::Stream { .. } | Mode::Network { .. } => return Ok(()),
    };
    let warm_plan = Plan { duration: WARM_UP_SECONDS, ..plan.clone() };
    measure(&warm_plan, scenario, target, repeat, warm_rate.min(1e6), running, tools)?;
    std::thread::sleep(Duration::from_millis(300));
    match &scenario.mode {
        Mode::Rates { rates } => {
            for &rate in rates {
                let m = measure(plan, scenario, target, repeat, rate, running, tools)?;
                results.measurements.push(m);
            }
        }
        Mode::Capacity { start, factor, max, refine } => {
            let mut rate = *start;
            let mut capacity = 0.0;
            let mut failed = None;
            while rate <= *max {
                let m = measure(plan, scenario, target, repeat, rate, running, tools)?;
                let pass = scenario.passes(&m);
                results.measurements.push(m);
                // Let the target drain before the next step.
                std::thread::sleep(Duration::from_millis(300));
                if !pass {
                    failed = Some(rate);
                    break;
                }
                capacity = rate;
                rate *= factor;
            }
            if let Some(mut high) = failed.filter(|_| capacity > 0.0) {
                for _ in 0..*refine {
                    let mid = (capacity * high).sqrt().round();
                    let m = measure(plan, scenario, target, repeat, mid, running, tools)?;
                    let pass = scenario.passes(&m);
                    results.measurements.push(m);
                    std::thread::sleep(Duration::from_millis(300));
                    if pass {
                        capacity = mid;
                    } else {
                        high = mid;
                    }
                }
            }
            results.capacities.push(Capacity {
                scenario: scenario.name.clone(),
                target: target.name.clone(),
                repeat,
                capacity,
            });
        }
        Mode::Connect { .. } | Mode::Stream { .. } | Mode::Network { .. } => {}
    }
    Ok(())
}

fn measure(
    plan: &Plan,
    scenario: &Scenario,
    target: &Target,
    repeat: usize,
    rate: f64,
    running: &Running,
    tools: &Tools,
) -> anyhow::Result<Measurement> {
    let pid = running.pid();
    let cpu_before = target::cpu_seconds(pid).unwrap_or(0.0);
    let started = Instant::now();
    let mut child = Command::new(tools.bin("tern-loadgen"))
        .args(["--json", "--quiet", "raw", "--target", &running.addr.to_string()])
        .args(["--command", &scenario.command, "--rate", &rate.to_string()])
        .args(["--duration", &plan.duration.to_string(), "--sockets", "32"])
        .args(["--malformed", &scenario.malformed.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tern-loadgen")?;
    let mut rss = 0;
    // Sample RSS while the load runs; bounded by the load's own duration + timeout.
    let limit = Duration::from_secs_f64(plan.duration + 30.0);
    while child.try_wait()?.is_none() && started.elapsed() < limit {
        rss = rss.max(target::rss_kib(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    let cpu_s = target::cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let wall = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let line: LoadgenLine =
        serde_json::from_str(text.lines().next().unwrap_or("")).with_context(|| {
            format!(
                "tern-loadgen ({}, {} at {rate} req/s against {}) printed no result: {}",
                out.status,
                scenario.command,
                target.name,
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            )
        })?;
    Ok(Measurement {
        scenario: scenario.name.clone(),
        target: target.name.clone(),
        repeat,
        command: scenario.command.clone(),
        offered: rate,
        sent: line.sent,
        ok: line.ok,
        ok_ratio: line.ok_ratio,
        rate: line.rate,
        p50_us: line.p50_us,
        p90_us: line.p90_us,
        p99_us: line.p99_us,
        p999_us: line.p999_us,
        cpu_s,
        cpu_us_per_req: if line.ok > 0 { cpu_s * 1e6 / line.ok as f64 } else { 0.0 },
        cpu_percent: cpu_s / wall * 100.0,
        rss_kib: rss,
    })
}

fn shell(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
