//! CPU per request at equal offered rates (fixed-rate scenarios, `mode = "rates"`).
//!
//! A capacity table quotes each target's CPU per request at its own capacity, so a
//! target that saturates later is measured with fuller syscall batches and looks
//! cheaper. Issue 5 asks for tern's CPU per request within 1.25× of the raw echo's;
//! the fair reading of that is at the same offered load, where both see the same
//! arrival pattern. This section puts every target's CPU per request side by side at
//! each offered rate, with the ratio to the raw echo, and gives the goal's verdict at
//! the rates every target kept up with.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use crate::report::{median, write_goals};
use crate::run::{Measurement, Results};
use crate::svg;

/// Issue 5: tern's CPU per request at most this multiple of the raw echo's.
pub const CPU_MAX_RATIO: f64 = 1.25;

/// A rate point counts only when the target answered at least this share of it: an
/// overloaded target's CPU per request measures its queueing, not its work.
const KEPT_UP: f64 = 0.99;

/// One target's median over repeats at one offered rate.
#[derive(Debug, Clone, Copy)]
struct Point {
    cpu_us: f64,
    ok_ratio: f64,
}

/// Per scenario (fixed-rate ones only), per target in plan order, per offered rate.
type Table = BTreeMap<String, Vec<(String, BTreeMap<u64, Point>)>>;

fn table(results: &Results) -> Table {
    let mut out = Table::new();
    let fixed_rate = |m: &Measurement| {
        !m.command.is_empty() && !results.capacities.iter().any(|c| c.scenario == m.scenario)
    };
    let mut grouped: BTreeMap<(String, String, u64), Vec<&Measurement>> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for m in results.measurements.iter().filter(|m| fixed_rate(m)) {
        let key = (m.scenario.clone(), m.target.clone());
        if !order.contains(&key) {
            order.push(key);
        }
        grouped
            .entry((m.scenario.clone(), m.target.clone(), m.offered as u64))
            .or_default()
            .push(m);
    }
    for (scenario, target) in order {
        let points: BTreeMap<u64, Point> = grouped
            .iter()
            .filter(|((s, t, _), _)| *s == scenario && *t == target)
            .map(|((_, _, rate), ms)| {
                let point = Point {
                    cpu_us: median(ms.iter().map(|m| m.cpu_us_per_req).collect()),
                    ok_ratio: median(ms.iter().map(|m| m.ok_ratio).collect()),
                };
                (*rate, point)
            })
            .collect();
        out.entry(scenario).or_default().push((target, points));
    }
    out
}

/// Appends the equal-rate CPU tables, plots and the issue 5 verdicts to `md`.
pub fn write(results: &Results, dir: &Path, md: &mut String) -> anyhow::Result<()> {
    for (scenario, targets) in table(results) {
        let Some(first_echo) =
            targets.iter().find(|(t, _)| t.contains("echo")).map(|(_, p)| p.clone())
        else {
            continue;
        };
        // Each target against its own baseline (a sharded node against an echo with as
        // many threads), else the first echo.
        let baseline = |t: &str| {
            results
                .baselines
                .get(t)
                .and_then(|b| targets.iter().find(|(n, _)| n == b))
                .map_or_else(|| first_echo.clone(), |(_, p)| p.clone())
        };
        let _ = writeln!(md, "## {scenario}: CPU per request at equal offered rates\n");
        let _ = writeln!(
            md,
            "CPU µs per answered request (median of repeats); in brackets the ratio to the \
             target's raw echo baseline at the same rate; * = fewer than {:.0} % answered (overloaded, not compared).\n",
            KEPT_UP * 100.0
        );
        let _ = write!(md, "| offered req/s |");
        for (t, _) in &targets {
            let _ = write!(md, " {t} |");
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "|---:|{}", "---:|".repeat(targets.len()));
        let rates: Vec<u64> = first_echo.keys().copied().collect();
        for rate in &rates {
            let _ = write!(md, "| {rate} |");
            for (t, points) in &targets {
                let echo = baseline(t);
                let cell = match (points.get(rate), echo.get(rate)) {
                    (Some(p), _) if p.ok_ratio < KEPT_UP => format!("{:.2}*", p.cpu_us),
                    (Some(p), Some(e)) if !t.contains("echo") && e.cpu_us > 0.0 => {
                        format!("{:.2} ({:.2}×)", p.cpu_us, p.cpu_us / e.cpu_us)
                    }
                    (Some(p), _) => format!("{:.2}", p.cpu_us),
                    (None, _) => "–".into(),
                };
                let _ = write!(md, " {cell} |");
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md);
        let mut goals = Vec::new();
        for (t, points) in targets.iter().filter(|(t, _)| t.starts_with("tern")) {
            let echo = baseline(t);
            let ratios: Vec<f64> = rates
                .iter()
                .filter_map(|r| Some((points.get(r)?, echo.get(r)?)))
                .filter(|(p, e)| p.ok_ratio >= KEPT_UP && e.ok_ratio >= KEPT_UP && e.cpu_us > 0.0)
                .map(|(p, e)| p.cpu_us / e.cpu_us)
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let worst = ratios.iter().copied().fold(0.0, f64::max);
            let mid = median(ratios.clone());
            let verdict = if mid <= CPU_MAX_RATIO { "**met**" } else { "**missed**" };
            let against = results.baselines.get(t).map_or("the raw echo", String::as_str);
            goals.push(format!(
                "issue 5 ({scenario}, {t}): CPU per request {mid:.2}× {against}'s (median over \
                 {} rates both kept up with; worst {worst:.2}×), goal ≤ {CPU_MAX_RATIO}× — {verdict}",
                ratios.len()
            ));
        }
        write_goals(md, &goals);
        let lines: Vec<svg::Line> = targets
            .iter()
            .map(|(t, points)| svg::Line {
                label: t.clone(),
                points: points
                    .iter()
                    .filter(|(_, p)| p.ok_ratio >= KEPT_UP)
                    .map(|(r, p)| (*r as f64, p.cpu_us))
                    .collect(),
            })
            .collect();
        let slug: String =
            scenario.chars().map(|c| if c.is_alphanumeric() { c } else { '-' }).collect();
        let file = format!("{slug}-cpu-by-rate.svg");
        std::fs::write(
            dir.join(&file),
            svg::lines(
                &format!("{scenario}: CPU per request by offered rate"),
                "offered req/s",
                "CPU µs / request",
                &lines,
            ),
        )?;
        let _ = writeln!(md, "![CPU per request by offered rate]({file})\n");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(target: &str, repeat: usize, offered: f64, cpu: f64, ok_ratio: f64) -> Measurement {
        Measurement {
            scenario: "ping-rates".into(),
            target: target.into(),
            repeat,
            command: "ping".into(),
            offered,
            sent: 100,
            ok: (100.0 * ok_ratio) as u64,
            ok_ratio,
            rate: offered * ok_ratio,
            p50_us: 100,
            p90_us: 200,
            p99_us: 300,
            p999_us: 400,
            cpu_s: 1.0,
            cpu_us_per_req: cpu,
            cpu_percent: 50.0,
            rss_kib: 4096,
        }
    }

    #[test]
    fn ratios_are_taken_at_equal_rates_and_overloaded_points_are_left_out() {
        let results = Results {
            plan: "t".into(),
            measurements: vec![
                m("tern-epoll-1core", 0, 50_000.0, 4.0, 1.0),
                m("tern-epoll-1core", 1, 50_000.0, 6.0, 1.0),
                m("raw-echo", 0, 50_000.0, 4.0, 1.0),
                m("raw-echo", 1, 50_000.0, 4.0, 1.0),
                m("tern-epoll-1core", 0, 100_000.0, 3.0, 1.0),
                m("raw-echo", 0, 100_000.0, 3.0, 1.0),
                // Overloaded: not compared, however cheap it looks.
                m("tern-epoll-1core", 0, 200_000.0, 0.5, 0.5),
                m("raw-echo", 0, 200_000.0, 2.0, 1.0),
                // A two-shard node against its own two-thread echo.
                m("tern-uring-2core", 0, 50_000.0, 8.0, 1.0),
                m("raw-echo-2", 0, 50_000.0, 6.4, 1.0),
            ],
            baselines: [("tern-uring-2core".to_owned(), "raw-echo-2".to_owned())].into(),
            ..Results::default()
        };
        let dir = std::env::temp_dir().join(format!("netbench-cpu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let mut md = String::new();
        assert!(write(&results, &dir, &mut md).is_ok());
        // 50k: median(4, 6) = 5 vs 4 → 1.25×; 100k: 1.00×; 200k overloaded.
        assert!(md.contains("| 50000 | 5.00 (1.25×) | 4.00 | 8.00 (1.25×) | 6.40 |"), "{md}");
        assert!(md.contains("| 200000 | 0.50* | 2.00 | – | – |"), "{md}");
        assert!(
            md.contains("(ping-rates, tern-uring-2core): CPU per request 1.25× raw-echo-2's"),
            "{md}"
        );
        assert!(md.contains("1.12× the raw echo's (median over 2 rates"), "{md}");
        assert!(md.contains("worst 1.25×"), "{md}");
        assert!(md.contains("**met**"), "{md}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
