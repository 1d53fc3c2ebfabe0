//! The network scenarios' part of `report.md`: one table per scenario (medians over
//! repeats), the P4 verdict (lookup p99 of tern ≤ 0.5× the JS network's) and the P8
//! line (how many real-socket peers joined, how fast, at what memory), and a bar chart
//! of each target's p99.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use crate::network::NetworkRun;
use crate::report::median;
use crate::run::Results;
use crate::svg;

/// P4: tern's lookup p99 at most this fraction of the JS network's.
const P4_MAX_RATIO: f64 = 0.5;

/// P4 is about a network of at least this many nodes; smaller ones get no verdict.
const P4_NODES: usize = 1000;

/// P8: peers a run must hold to count.
const P8_PEERS: u64 = 10_000;

/// Per (scenario, target): medians over repeats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetRow {
    /// Repeats.
    pub repeats: usize,
    /// Nodes in the network.
    pub nodes: usize,
    /// Peers started (max over repeats).
    pub peers: u64,
    /// Peers joined (min over repeats: the worst run).
    pub joined: u64,
    /// Median seconds until the network was up.
    pub network_up_s: f64,
    /// Median seconds to join all peers.
    pub join_s: f64,
    /// Median of each repeat's join p99, µs.
    pub join_p99_us: f64,
    /// Workload operation.
    pub op: String,
    /// Sums over repeats.
    pub sent: u64,
    /// See `sent`.
    pub ok: u64,
    /// See `sent`.
    pub wrong: u64,
    /// Timeouts and errors summed over repeats.
    pub failed: u64,
    /// Median operations per second.
    pub rate: f64,
    /// Medians of each repeat's percentiles, µs.
    pub p50_us: f64,
    /// See `p50_us`.
    pub p90_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// Largest p99 of a repeat, µs.
    pub p99_max_us: f64,
    /// Peak RSS of the network process (MiB, max over repeats).
    pub network_rss_mib: f64,
    /// Peak RSS of the loadgen (MiB, max over repeats).
    pub loadgen_rss_mib: f64,
    /// Median CPU seconds of the network process during the loadgen run.
    pub network_cpu_s: f64,
}

/// Rows keyed by scenario, targets in order of appearance.
pub fn rows(results: &Results) -> BTreeMap<String, Vec<(String, NetRow)>> {
    let mut out: BTreeMap<String, Vec<(String, NetRow)>> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for r in &results.network_runs {
        let key = (r.scenario.clone(), r.target.clone());
        if !order.contains(&key) {
            order.push(key);
        }
    }
    for (scenario, target) in order {
        let runs: Vec<&NetworkRun> = results
            .network_runs
            .iter()
            .filter(|r| r.scenario == scenario && r.target == target)
            .collect();
        let med = |f: &dyn Fn(&NetworkRun) -> f64| median(runs.iter().map(|r| f(r)).collect());
        let row = NetRow {
            repeats: runs.len(),
            nodes: runs.first().map_or(0, |r| r.nodes),
            peers: runs.iter().map(|r| r.peers).max().unwrap_or(0),
            joined: runs.iter().map(|r| r.joined).min().unwrap_or(0),
            network_up_s: med(&|r| r.network_up_s),
            join_s: med(&|r| r.join_s),
            join_p99_us: med(&|r| r.join_p99_us as f64),
            op: runs.first().map_or_else(String::new, |r| r.op.clone()),
            sent: runs.iter().map(|r| r.sent).sum(),
            ok: runs.iter().map(|r| r.ok).sum(),
            wrong: runs.iter().map(|r| r.wrong).sum(),
            failed: runs.iter().map(|r| r.timeouts + r.errors).sum(),
            rate: med(&|r| r.rate),
            p50_us: med(&|r| r.p50_us as f64),
            p90_us: med(&|r| r.p90_us as f64),
            p99_us: med(&|r| r.p99_us as f64),
            p99_max_us: runs.iter().map(|r| r.p99_us as f64).fold(0.0, f64::max),
            network_rss_mib: runs.iter().map(|r| r.network_rss_kib).max().unwrap_or(0) as f64
                / 1024.0,
            loadgen_rss_mib: runs.iter().map(|r| r.loadgen_rss_kib).max().unwrap_or(0) as f64
                / 1024.0,
            network_cpu_s: med(&|r| r.network_cpu_s),
        };
        out.entry(scenario).or_default().push((target, row));
    }
    out
}

fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1e3)
}

/// The P4 and P8 lines.
pub fn goals(results: &Results) -> Vec<String> {
    let mut out = Vec::new();
    for (scenario, rows) in rows(results) {
        let js = rows.iter().find(|(t, _)| t.contains("js")).map(|(_, r)| r.clone());
        for (t, r) in rows.iter().filter(|(t, _)| !t.contains("js")) {
            let p4 = |j: &&NetRow| j.op == "lookup" && j.p99_us > 0.0 && r.nodes >= P4_NODES;
            if let Some(js) = js.as_ref().filter(p4) {
                let x = r.p99_us / js.p99_us;
                let verdict = if x <= P4_MAX_RATIO {
                    "**met**".to_owned()
                } else {
                    format!("**missed** by {:.0} %", (x / P4_MAX_RATIO - 1.0) * 100.0)
                };
                out.push(format!(
                    "P4 ({scenario}, {} nodes, {t}): lookup p99 {} vs js {} = {x:.2}× (goal ≤ {P4_MAX_RATIO}×), wrong answers {} vs {} — {verdict}",
                    r.nodes,
                    ms(r.p99_us),
                    ms(js.p99_us),
                    r.wrong,
                    js.wrong
                ));
            }
            if r.peers >= P8_PEERS {
                let verdict = if r.joined >= P8_PEERS { "**met**" } else { "**missed**" };
                out.push(format!(
                    "P8 ({scenario}, {t}): {} of {} real-socket peers joined in {:.1} s; {} {:.0}/s, p99 {}; loadgen RSS {:.0} MiB — {verdict}",
                    r.joined,
                    r.peers,
                    r.join_s,
                    r.op,
                    r.rate,
                    ms(r.p99_us),
                    r.loadgen_rss_mib
                ));
            }
        }
    }
    out
}

/// Appends the network sections to `md` and writes their plots into `dir`.
pub fn write(results: &Results, dir: &Path, md: &mut String) -> anyhow::Result<()> {
    if results.network_runs.is_empty() {
        return Ok(());
    }
    let _ = writeln!(md, "## Networks\n");
    let _ = writeln!(
        md,
        "Each target gets a loopback network of its own implementation in one process (tern: \
         `tern testnet`, one driver thread; JS: `interop/bench-net.js`, hyperdht 6.34.0), then \
         `tern-loadgen peers` joins it with real tern peers (own sockets on 127.x addresses) \
         and runs the workload open-loop. The peers are the same for every target: only the \
         network differs. Latency = from the scheduled start to the end of the operation; a \
         lookup that misses an announced record is *wrong*. Percentiles and rates are medians \
         over repeats; counts are sums.\n"
    );
    crate::report::write_goals(md, &goals(results));
    for (scenario, rows) in rows(results) {
        let _ = writeln!(md, "### {scenario}\n");
        let _ = writeln!(
            md,
            "| target | runs | nodes | network up | peers joined | join time | join p99 | op | ok / sent | wrong | failed | ok/s | p50 | p90 | p99 | p99 worst | network RSS MiB | network CPU s | loadgen RSS MiB | p99 vs js |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let js = rows.iter().find(|(t, _)| t.contains("js")).map(|(_, r)| r.p99_us);
        for (t, r) in &rows {
            let _ = writeln!(
                md,
                "| {t} | {} | {} | {:.2} s | {} / {} | {:.2} s | {} | {} | {} / {} | {} | {} | {:.1} | {} | {} | {} | {} | {:.0} | {:.1} | {:.0} | {} |",
                r.repeats,
                r.nodes,
                r.network_up_s,
                r.joined,
                r.peers,
                r.join_s,
                ms(r.join_p99_us),
                r.op,
                r.ok,
                r.sent,
                r.wrong,
                r.failed,
                r.rate,
                ms(r.p50_us),
                ms(r.p90_us),
                ms(r.p99_us),
                ms(r.p99_max_us),
                r.network_rss_mib,
                r.network_cpu_s,
                r.loadgen_rss_mib,
                js.filter(|j| *j > 0.0).map_or("–".into(), |j| format!("{:.2}", r.p99_us / j)),
            );
        }
        let slug: String =
            scenario.chars().map(|c| if c.is_alphanumeric() { c } else { '-' }).collect();
        let file = format!("{slug}-percentiles.svg");
        let lines: Vec<svg::Line> = rows
            .iter()
            .map(|(t, r)| svg::Line {
                label: t.clone(),
                points: vec![
                    (50.0, r.p50_us / 1e3),
                    (90.0, r.p90_us / 1e3),
                    (99.0, r.p99_us / 1e3),
                ],
            })
            .collect();
        std::fs::write(
            dir.join(&file),
            svg::lines(
                &format!("{scenario}: {} latency", rows[0].1.op),
                "percentile",
                "ms",
                &lines,
            ),
        )?;
        let _ = writeln!(md, "\n![latency percentiles]({file})\n");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, repeat: usize, p99: u64, wrong: u64) -> NetworkRun {
        NetworkRun {
            scenario: "lookup-1000".into(),
            target: target.into(),
            repeat,
            nodes: 1000,
            peers: 50,
            joined: 50,
            op: "lookup".into(),
            sent: 100,
            ok: 100 - wrong,
            wrong,
            p50_us: p99 / 4,
            p90_us: p99 / 2,
            p99_us: p99,
            ..NetworkRun::default()
        }
    }

    #[test]
    fn medians_sums_and_the_p4_verdict() {
        let results = Results {
            network_runs: vec![
                run("tern", 0, 10_000, 0),
                run("js", 0, 30_000, 1),
                run("tern", 1, 14_000, 1),
                run("js", 1, 50_000, 0),
                run("tern", 2, 12_000, 0),
                run("js", 2, 40_000, 0),
            ],
            ..Results::default()
        };
        let r = rows(&results);
        let tern = &r["lookup-1000"][0];
        assert_eq!(tern.0, "tern");
        assert_eq!((tern.1.p99_us, tern.1.p99_max_us), (12_000.0, 14_000.0));
        assert_eq!((tern.1.sent, tern.1.wrong, tern.1.ok), (300, 1, 299));
        let g = goals(&results);
        assert_eq!(g.len(), 1, "{g:?}");
        assert!(g[0].contains("0.30×") && g[0].contains("**met**"), "{}", g[0]);
        // A slower tern misses, and the line says by how much.
        let mut slow = results.clone();
        slow.network_runs.iter_mut().filter(|r| r.target == "tern").for_each(|r| r.p99_us *= 3);
        let g = goals(&slow);
        assert!(g[0].contains("**missed** by 80 %"), "{}", g[0]);
        let dir = std::env::temp_dir().join(format!("netbench-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut md = String::new();
        write(&results, &dir, &mut md).unwrap();
        assert!(md.contains("| tern | 3 | 1000 |") && md.contains("| 0.30 |"), "{md}");
        assert!(dir.join("lookup-1000-percentiles.svg").is_file());
        let _ = std::fs::remove_dir_all(dir);
    }
}
