//! Turning a run's results into `report.md` (tables with tern/JS and tern/raw-echo
//! ratios), `report.json` (everything) and SVG plots, and comparing two runs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::Context;

use crate::run::{Measurement, Results};
use crate::{cpu_report, network_report, stream_report, svg};

/// P3: signed-write capacity (ANNOUNCE, MUTABLE_PUT) at least this multiple of the JS
/// node's.
const P3_MIN_RATIO: f64 = 5.0;

/// The median of `v` (0 for empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Per (scenario, target): the summary the tables show.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Median capacity over repeats (req/s).
    pub capacity: f64,
    /// Smallest and largest capacity over repeats.
    pub range: (f64, f64),
    /// Median p50 / p99 latency at the capacity (µs).
    pub p50_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// Median CPU µs per request at the capacity.
    pub cpu_us: f64,
    /// Median CPU % at the capacity.
    pub cpu_percent: f64,
    /// Largest RSS seen (MiB).
    pub rss_mib: f64,
}

/// Summaries keyed by scenario, then target (in plan order of appearance).
pub fn rows(results: &Results) -> BTreeMap<String, Vec<(String, Row)>> {
    let mut out: BTreeMap<String, Vec<(String, Row)>> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for m in &results.measurements {
        let key = (m.scenario.clone(), m.target.clone());
        if !order.contains(&key) {
            order.push(key);
        }
    }
    for (scenario, target) in order {
        let caps: Vec<f64> = results
            .capacities
            .iter()
            .filter(|c| c.scenario == scenario && c.target == target)
            .map(|c| c.capacity)
            .collect();
        let ms: Vec<&Measurement> = results
            .measurements
            .iter()
            .filter(|m| m.scenario == scenario && m.target == target)
            .collect();
        // "At capacity" = each repeat's highest passing measurement (or its highest rate).
        let at_cap: Vec<&Measurement> = (0..=ms.iter().map(|m| m.repeat).max().unwrap_or(0))
            .filter_map(|r| {
                let cap = results
                    .capacities
                    .iter()
                    .find(|c| c.scenario == scenario && c.target == target && c.repeat == r)
                    .map(|c| c.capacity);
                let of_repeat = ms.iter().filter(|m| m.repeat == r);
                match cap {
                    Some(c) => of_repeat.filter(|m| (m.offered - c).abs() < 1e-6).copied().next(),
                    None => of_repeat.max_by(|a, b| a.offered.total_cmp(&b.offered)).copied(),
                }
            })
            .collect();
        // A rates-mode scenario has no capacity search: report what was answered at its
        // highest offered rate instead.
        let capacity = if caps.is_empty() {
            median(at_cap.iter().map(|m| m.rate).collect())
        } else {
            median(caps.clone())
        };
        let caps = if caps.is_empty() { vec![capacity] } else { caps };
        let row = Row {
            capacity,
            range: (
                caps.iter().copied().fold(f64::INFINITY, f64::min),
                caps.iter().copied().fold(0.0, f64::max),
            ),
            p50_us: median(at_cap.iter().map(|m| m.p50_us as f64).collect()),
            p99_us: median(at_cap.iter().map(|m| m.p99_us as f64).collect()),
            cpu_us: median(at_cap.iter().map(|m| m.cpu_us_per_req).collect()),
            cpu_percent: median(at_cap.iter().map(|m| m.cpu_percent).collect()),
            rss_mib: ms.iter().map(|m| m.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
        };
        out.entry(scenario).or_default().push((target, row));
    }
    out
}

/// A "### Goals" list of verdict lines (nothing when there are none).
pub fn write_goals(md: &mut String, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(md, "### Goals\n");
    for line in lines {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(md);
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.2}", a / b) } else { "–".into() }
}

/// Writes report.md, report.json and the SVG plots into `dir`.
pub fn write(results: &Results, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(results)?)?;
    let mut md = String::new();
    let _ = writeln!(md, "# netbench: {}\n", results.plan);
    let _ = writeln!(md, "{} · {}\n", results.date, results.machine);
    let _ = writeln!(
        md,
        "Capacity = highest offered rate with ≥ 99 % answered within 1 s (median of repeats, min–max); \
         for fixed-rate scenarios, the rate answered at the highest offered rate. Latency and CPU at \
         that rate; CPU µs/req = target CPU time / answered requests.\n"
    );
    for (scenario, targets) in rows(results) {
        let _ = writeln!(md, "## {scenario}\n");
        if let Some(b) = results.max_p99_ms.get(&scenario) {
            let _ = writeln!(md, "A rate passes only with p99 ≤ {b} ms as well.\n");
        }
        let _ = writeln!(
            md,
            "| target | capacity (req/s) | range | p50 | p99 | CPU µs/req | CPU % | RSS MiB | vs js | vs raw echo |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let find =
            |kind: &str| targets.iter().find(|(t, _)| t.contains(kind)).map(|(_, r)| r.clone());
        let js = find("js");
        let echo = find("echo");
        for (target, r) in &targets {
            let _ = writeln!(
                md,
                "| {target} | {:.0} | {:.0}–{:.0} | {:.0} µs | {:.0} µs | {:.2} | {:.0} | {:.1} | {} | {} |",
                r.capacity,
                r.range.0.min(r.capacity),
                r.range.1,
                r.p50_us,
                r.p99_us,
                r.cpu_us,
                r.cpu_percent,
                r.rss_mib,
                js.as_ref().map_or("–".into(), |j| ratio(r.capacity, j.capacity)),
                echo.as_ref().map_or("–".into(), |e| ratio(r.capacity, e.capacity)),
            );
        }
        let signed = results.measurements.iter().any(|m| {
            m.scenario == scenario && matches!(m.command.as_str(), "announce" | "mutable_put")
        });
        if let Some(j) = js.as_ref().filter(|j| signed && j.capacity > 0.0) {
            let _ = writeln!(md);
            for (target, r) in targets.iter().filter(|(t, _)| !t.contains("js")) {
                let x = r.capacity / j.capacity;
                let verdict = if x >= P3_MIN_RATIO {
                    "**met**".to_owned()
                } else {
                    format!("**missed**: needs {:.0} req/s", j.capacity * P3_MIN_RATIO)
                };
                let _ = writeln!(
                    md,
                    "- P3 ({scenario}, {target}): {:.0} vs js {:.0} req/s = {x:.2}× (goal ≥ {P3_MIN_RATIO}×); CPU µs/req {:.1} vs {:.1} — {verdict}",
                    r.capacity, j.capacity, r.cpu_us, j.cpu_us
                );
            }
        }
        let slug: String =
            scenario.chars().map(|c| if c.is_alphanumeric() { c } else { '-' }).collect();
        let lines: Vec<svg::Line> = targets
            .iter()
            .map(|(t, _)| {
                let mut by_rate: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
                for m in
                    results.measurements.iter().filter(|m| m.scenario == scenario && &m.target == t)
                {
                    by_rate.entry(m.offered as u64).or_default().push(m.p99_us as f64 / 1000.0);
                }
                svg::Line {
                    label: t.clone(),
                    points: by_rate.into_iter().map(|(r, v)| (r as f64, median(v))).collect(),
                }
            })
            .collect();
        let lat = format!("{slug}-latency.svg");
        std::fs::write(
            dir.join(&lat),
            svg::lines(&format!("{scenario}: p99 latency"), "offered req/s", "p99 ms", &lines),
        )?;
        let cpu = format!("{slug}-cpu.svg");
        let bars: Vec<(String, f64)> = targets.iter().map(|(t, r)| (t.clone(), r.cpu_us)).collect();
        std::fs::write(
            dir.join(&cpu),
            svg::bars(&format!("{scenario}: CPU per request"), "µs / request", &bars),
        )?;
        let _ = writeln!(md, "\n![p99 latency]({lat}) ![CPU per request]({cpu})\n");
    }
    cpu_report::write(results, dir, &mut md)?;
    stream_report::write(results, dir, &mut md)?;
    network_report::write(results, dir, &mut md)?;
    std::fs::write(dir.join("report.md"), md)?;
    Ok(())
}

/// Compares two runs' capacities; returns the lines to print and whether any target
/// regressed beyond noise (more than 10 % and outside the old run's min–max range).
pub fn compare(old: &Results, new: &Results) -> (Vec<String>, bool) {
    let (old_rows, new_rows) = (rows(old), rows(new));
    let mut lines = Vec::new();
    let mut regressed = false;
    for (scenario, targets) in &new_rows {
        for (target, n) in targets {
            let Some(o) = old_rows
                .get(scenario)
                .and_then(|t| t.iter().find(|(x, _)| x == target))
                .map(|(_, r)| r)
            else {
                continue;
            };
            let change =
                if o.capacity > 0.0 { (n.capacity - o.capacity) / o.capacity * 100.0 } else { 0.0 };
            let bad = change < -10.0 && n.capacity < o.range.0;
            regressed |= bad;
            lines.push(format!(
                "{}{scenario:<24} {target:<20} {:>10.0} -> {:>10.0} req/s ({change:+.1} %)",
                if bad { "REGRESSION " } else { "" },
                o.capacity,
                n.capacity
            ));
        }
    }
    let (more, worse) = stream_report::compare(old, new);
    lines.extend(more);
    (lines, regressed || worse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Capacity;

    fn m(target: &str, repeat: usize, offered: f64, p99: u64) -> Measurement {
        Measurement {
            scenario: "ping".into(),
            target: target.into(),
            repeat,
            command: "ping".into(),
            offered,
            sent: 100,
            ok: 100,
            ok_ratio: 1.0,
            rate: offered,
            p50_us: 10,
            p90_us: 20,
            p99_us: p99,
            p999_us: 40,
            cpu_s: 0.5,
            cpu_us_per_req: 2.0,
            cpu_percent: 50.0,
            rss_kib: 2048,
        }
    }

    #[test]
    fn medians_ratios_and_regressions() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let cap = |t: &str, r, c| Capacity {
            scenario: "ping".into(),
            target: t.into(),
            repeat: r,
            capacity: c,
        };
        let old = Results {
            measurements: vec![
                m("tern", 0, 100.0, 30),
                m("tern", 1, 120.0, 30),
                m("js", 0, 50.0, 90),
            ],
            capacities: vec![cap("tern", 0, 100.0), cap("tern", 1, 120.0), cap("js", 0, 50.0)],
            ..Results::default()
        };
        let r = rows(&old);
        let tern = &r["ping"].iter().find(|(t, _)| t == "tern").unwrap().1;
        assert_eq!(tern.capacity, 110.0);
        assert_eq!(tern.range, (100.0, 120.0));
        let mut worse = old.clone();
        worse.capacities = vec![cap("tern", 0, 50.0), cap("tern", 1, 60.0), cap("js", 0, 50.0)];
        let (lines, regressed) = compare(&old, &worse);
        assert!(regressed, "{lines:?}");
        assert!(!compare(&old, &old).1);
        let dir = std::env::temp_dir().join(format!("netbench-test-{}", std::process::id()));
        write(&old, &dir).unwrap();
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.contains("| tern | 110 |") && md.contains("2.20"), "{md}");
        assert!(dir.join("ping-latency.svg").is_file());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn signed_scenarios_get_a_p3_verdict_and_others_none() {
        let signed = |t: &str, c: f64| Measurement {
            scenario: "announce-capacity".into(),
            command: "announce".into(),
            ..m(t, 0, c, 30)
        };
        let cap = |t: &str, c| Capacity {
            scenario: "announce-capacity".into(),
            target: t.into(),
            repeat: 0,
            capacity: c,
        };
        let results = Results {
            measurements: vec![signed("tern", 12_000.0), signed("js", 4_000.0), m("js", 0, 9.0, 1)],
            capacities: vec![cap("tern", 12_000.0), cap("js", 4_000.0)],
            ..Results::default()
        };
        let dir = std::env::temp_dir().join(format!("netbench-p3-{}", std::process::id()));
        write(&results, &dir).unwrap();
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        let _ = std::fs::remove_dir_all(dir);
        assert!(
            md.contains("P3 (announce-capacity, tern): 12000 vs js 4000 req/s = 3.00×"),
            "{md}"
        );
        assert!(md.contains("**missed**: needs 20000 req/s"), "{md}");
        assert_eq!(md.matches("P3 (").count(), 1, "the ping scenario gets none: {md}");
    }
}
