//! The connection part of a report: a table per connect scenario (time-to-open
//! percentiles) and per stream scenario (MB/s), each with its ratio to the JS
//! reference, the P5/P6 goal lines, and SVG plots (time-to-open CDF, MB/s bars).
//!
//! Percentiles are computed here, with hdrhistogram, from the raw samples both clients
//! print, so tern and JS rows come out of the same code. A row's figures are medians
//! over the repeats of each repeat's own percentile (or MB/s).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::report::median;
use crate::run::Results;
use crate::streams::StreamRun;
use crate::svg;

/// P5: one encrypted stream at least this many times the JS reference's MB/s.
const P5_MIN_RATIO: f64 = 5.0;
/// P6: connect time-to-open p50 at most this fraction of the JS reference's.
const P6_MAX_RATIO: f64 = 0.5;
/// A reply slower than this is counted as a stall.
const SLOW_REPLY_US: u64 = 500_000;
/// Samples are µs from 1 µs to 60 s.
const MAX_US: u64 = 60_000_000;

/// Quantiles of `samples` (µs) at `qs`, through an hdrhistogram (3 significant digits).
fn quantiles(samples: &[u64], qs: &[f64]) -> Vec<f64> {
    let Ok(mut h) = Histogram::<u64>::new_with_bounds(1, MAX_US, 3) else {
        return vec![0.0; qs.len()];
    };
    for &s in samples {
        let _ = h.record(s.clamp(1, MAX_US));
    }
    qs.iter().map(|&q| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 }).collect()
}

/// One target's summary for a connect scenario.
#[derive(Debug, Clone, Default)]
pub struct ConnectRow {
    /// Median over repeats of time-to-open p50, p90, p99 (µs).
    pub open: [f64; 3],
    /// Smallest and largest per-repeat p50.
    pub p50_range: (f64, f64),
    /// Median over repeats of time-to-reply p50 and p99 (µs).
    pub reply_p50: f64,
    /// See `reply_p50`.
    pub reply_p99: f64,
    /// Replies that took at least [`SLOW_REPLY_US`], over every repeat (a stalled first
    /// data exchange, e.g. a first packet lost and resent after the 1 s initial RTO).
    pub slow_replies: usize,
    /// Successful / all connects, over every repeat.
    pub ok: u64,
    /// Failed connects, over every repeat.
    pub failed: u64,
    /// Median client and server CPU ms per connect.
    pub cpu_ms: (f64, f64),
    /// Repeats measured.
    pub repeats: usize,
}

/// One target's summary for a stream scenario.
#[derive(Debug, Clone, Default)]
pub struct StreamRow {
    /// Median aggregate MB/s over repeats.
    pub mb_per_s: f64,
    /// Smallest and largest aggregate MB/s.
    pub range: (f64, f64),
    /// Median over repeats of the median stream's MB/s.
    pub stream_median: f64,
    /// Streams per repeat and MiB per stream.
    pub shape: (usize, u64),
    /// Good and failed streams over every repeat.
    pub ok: u64,
    /// See `ok`.
    pub failed: u64,
    /// Median client and server CPU seconds per GB (10⁹ B) carried.
    pub cpu_s_per_gb: (f64, f64),
    /// Repeats measured.
    pub repeats: usize,
}

fn grouped(results: &Results, op: &str) -> BTreeMap<String, Vec<(String, Vec<StreamRun>)>> {
    let mut out: BTreeMap<String, Vec<(String, Vec<StreamRun>)>> = BTreeMap::new();
    for r in results.stream_runs.iter().filter(|r| r.op == op) {
        let targets = out.entry(r.scenario.clone()).or_default();
        match targets.iter_mut().find(|(t, _)| *t == r.target) {
            Some((_, runs)) => runs.push(r.clone()),
            None => targets.push((r.target.clone(), vec![r.clone()])),
        }
    }
    out
}

/// Connect rows by scenario, targets in order of appearance.
pub fn connect_rows(results: &Results) -> BTreeMap<String, Vec<(String, ConnectRow)>> {
    grouped(results, "connect")
        .into_iter()
        .map(|(scenario, targets)| {
            let rows = targets
                .into_iter()
                .map(|(t, runs)| {
                    let q: Vec<Vec<f64>> =
                        runs.iter().map(|r| quantiles(&r.open_us, &[0.5, 0.9, 0.99])).collect();
                    let col = |i: usize| median(q.iter().map(|v| v[i]).collect());
                    let p50s: Vec<f64> = q.iter().map(|v| v[0]).collect();
                    let per = |cpu: f64, r: &StreamRun| cpu * 1e3 / r.ok.max(1) as f64;
                    let row = ConnectRow {
                        open: [col(0), col(1), col(2)],
                        p50_range: (
                            p50s.iter().copied().fold(f64::INFINITY, f64::min),
                            p50s.iter().copied().fold(0.0, f64::max),
                        ),
                        reply_p50: median(
                            runs.iter().map(|r| quantiles(&r.reply_us, &[0.5])[0]).collect(),
                        ),
                        reply_p99: median(
                            runs.iter().map(|r| quantiles(&r.reply_us, &[0.99])[0]).collect(),
                        ),
                        slow_replies: runs
                            .iter()
                            .map(|r| r.reply_us.iter().filter(|&&v| v >= SLOW_REPLY_US).count())
                            .sum(),
                        ok: runs.iter().map(|r| r.ok).sum(),
                        failed: runs.iter().map(|r| r.failed).sum(),
                        cpu_ms: (
                            median(runs.iter().map(|r| per(r.client_cpu_s, r)).collect()),
                            median(runs.iter().map(|r| per(r.server_cpu_s, r)).collect()),
                        ),
                        repeats: runs.len(),
                    };
                    (t, row)
                })
                .collect();
            (scenario, rows)
        })
        .collect()
}

/// Stream rows by scenario, targets in order of appearance.
pub fn stream_rows(results: &Results) -> BTreeMap<String, Vec<(String, StreamRow)>> {
    grouped(results, "stream")
        .into_iter()
        .map(|(scenario, targets)| {
            let rows = targets
                .into_iter()
                .map(|(t, runs)| {
                    let rates: Vec<f64> = runs.iter().map(|r| r.mb_per_s).collect();
                    let gb = |r: &StreamRun| (r.ok * r.bytes_per_stream) as f64 / 1e9;
                    let per_gb =
                        |cpu: f64, r: &StreamRun| if gb(r) > 0.0 { cpu / gb(r) } else { 0.0 };
                    let row = StreamRow {
                        mb_per_s: median(rates.clone()),
                        range: (
                            rates.iter().copied().fold(f64::INFINITY, f64::min),
                            rates.iter().copied().fold(0.0, f64::max),
                        ),
                        stream_median: median(
                            runs.iter().map(|r| median(r.stream_mb_per_s.clone())).collect(),
                        ),
                        shape: (
                            runs.first().map_or(0, |r| (r.ok + r.failed) as usize),
                            runs.first().map_or(0, |r| r.bytes_per_stream >> 20),
                        ),
                        ok: runs.iter().map(|r| r.ok).sum(),
                        failed: runs.iter().map(|r| r.failed).sum(),
                        cpu_s_per_gb: (
                            median(runs.iter().map(|r| per_gb(r.client_cpu_s, r)).collect()),
                            median(runs.iter().map(|r| per_gb(r.server_cpu_s, r)).collect()),
                        ),
                        repeats: runs.len(),
                    };
                    (t, row)
                })
                .collect();
            (scenario, rows)
        })
        .collect()
}

fn js_of<R: Clone>(rows: &[(String, R)]) -> Option<R> {
    rows.iter().find(|(t, _)| t.contains("js")).map(|(_, r)| r.clone())
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.2}", a / b) } else { "–".into() }
}

fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1e3)
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_alphanumeric() { c } else { '-' }).collect()
}

/// The P5 / P6 verdicts: one line per (applicable scenario, non-JS target).
pub fn goals(results: &Results) -> Vec<String> {
    let mut out = Vec::new();
    for (scenario, rows) in connect_rows(results) {
        // P6 is about one connect at a time; concurrent scenarios are reported, not judged.
        let sequential =
            results.stream_runs.iter().any(|r| r.scenario == scenario && r.concurrency == 1);
        let Some(js) = js_of(&rows).filter(|_| sequential) else { continue };
        for (t, r) in rows.iter().filter(|(t, _)| !t.contains("js")) {
            if js.open[0] <= 0.0 {
                continue;
            }
            let x = r.open[0] / js.open[0];
            let verdict = if x <= P6_MAX_RATIO {
                "**met**".to_owned()
            } else {
                format!(
                    "**missed**: needs p50 ≤ {} ({:.0} % lower than now)",
                    ms(js.open[0] * P6_MAX_RATIO),
                    (1.0 - js.open[0] * P6_MAX_RATIO / r.open[0]) * 100.0
                )
            };
            out.push(format!(
                "P6 ({scenario}, {t}): time-to-open p50 {} vs js {} = {x:.2}× (goal ≤ {P6_MAX_RATIO}×) — {verdict}",
                ms(r.open[0]),
                ms(js.open[0])
            ));
        }
    }
    for (scenario, rows) in stream_rows(results) {
        let Some(js) = js_of(&rows) else { continue };
        for (t, r) in rows.iter().filter(|(t, r)| !t.contains("js") && r.shape.0 == 1) {
            if js.mb_per_s <= 0.0 {
                continue;
            }
            let x = r.mb_per_s / js.mb_per_s;
            let verdict = if x >= P5_MIN_RATIO {
                "**met**".to_owned()
            } else {
                format!(
                    "**missed**: needs {:.0} MB/s, {:.1}× the current figure",
                    js.mb_per_s * P5_MIN_RATIO,
                    js.mb_per_s * P5_MIN_RATIO / r.mb_per_s.max(1e-9)
                )
            };
            out.push(format!(
                "P5 ({scenario}, {t}): one stream {:.1} MB/s vs js {:.1} MB/s = {x:.2}× (goal ≥ {P5_MIN_RATIO}×) — {verdict}",
                r.mb_per_s, js.mb_per_s
            ));
        }
    }
    out
}

/// Appends the connection sections to `md` and writes their plots into `dir`.
pub fn write(results: &Results, dir: &Path, md: &mut String) -> anyhow::Result<()> {
    if results.stream_runs.is_empty() {
        return Ok(());
    }
    let _ = writeln!(md, "## Encrypted connections\n");
    let _ = writeln!(
        md,
        "Each target gets a loopback network of its own implementation (bootstrap + nodes, one \
         process), a server process and a client process. **Time to open** = from the connect \
         call until the client holds an open stream (tern: `connect` returns it; JS: the \
         socket's `'open'` event): Noise IK through a relay done on both sides, UDX stream \
         connected, no application byte sent yet. **Reply** = until the server's 12-byte \
         report after the client's 1-byte header and END (one data round trip more). \
         Figures are medians over repeats of each repeat's percentile / rate; MB/s = 10⁶ B/s \
         of payload; CPU is the client's own and the server process's.\n"
    );
    crate::report::write_goals(md, &goals(results));
    for (scenario, rows) in connect_rows(results) {
        let _ = writeln!(md, "### {scenario}\n");
        let _ = writeln!(
            md,
            "| target | runs | open p50 | p50 range | open p90 | open p99 | reply p50 | reply p99 | replies ≥ 0.5 s | ok / failed | client CPU ms/conn | server CPU ms/conn | p50 vs js |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let js = js_of(&rows);
        for (t, r) in &rows {
            let _ = writeln!(
                md,
                "| {t} | {} | {} | {:.2}–{:.2} | {} | {} | {} | {} | {} | {} / {} | {:.2} | {:.2} | {} |",
                r.repeats,
                ms(r.open[0]),
                r.p50_range.0 / 1e3,
                r.p50_range.1 / 1e3,
                ms(r.open[1]),
                ms(r.open[2]),
                ms(r.reply_p50),
                ms(r.reply_p99),
                r.slow_replies,
                r.ok,
                r.failed,
                r.cpu_ms.0,
                r.cpu_ms.1,
                js.as_ref().map_or("–".into(), |j| ratio(r.open[0], j.open[0])),
            );
        }
        let lines: Vec<svg::Line> = rows
            .iter()
            .map(|(t, _)| {
                let samples: Vec<u64> = results
                    .stream_runs
                    .iter()
                    .filter(|r| r.scenario == scenario && &r.target == t)
                    .flat_map(|r| r.open_us.iter().copied())
                    .collect();
                let qs: Vec<f64> = (1..=99).map(|p| f64::from(p) / 100.0).collect();
                let points = quantiles(&samples, &qs)
                    .into_iter()
                    .zip(1..=99)
                    .map(|(us, p)| (us / 1e3, f64::from(p)))
                    .collect();
                svg::Line { label: t.clone(), points }
            })
            .collect();
        let file = format!("{}-open-cdf.svg", slug(&scenario));
        std::fs::write(
            dir.join(&file),
            svg::lines(
                &format!("{scenario}: time to open (all repeats, to p99)"),
                "time to open, ms",
                "percentile",
                &lines,
            ),
        )?;
        let _ = writeln!(md, "\n![{scenario} time to open]({file})\n");
    }
    for (scenario, rows) in stream_rows(results) {
        let _ = writeln!(md, "### {scenario}\n");
        let _ = writeln!(
            md,
            "| target | runs | streams × MiB | aggregate MB/s | range | median stream MB/s | ok / failed | client CPU s/GB | server CPU s/GB | vs js |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let js = js_of(&rows);
        for (t, r) in &rows {
            let _ = writeln!(
                md,
                "| {t} | {} | {} × {} | {:.1} | {:.1}–{:.1} | {:.1} | {} / {} | {:.2} | {:.2} | {} |",
                r.repeats,
                r.shape.0,
                r.shape.1,
                r.mb_per_s,
                r.range.0,
                r.range.1,
                r.stream_median,
                r.ok,
                r.failed,
                r.cpu_s_per_gb.0,
                r.cpu_s_per_gb.1,
                js.as_ref().map_or("–".into(), |j| ratio(r.mb_per_s, j.mb_per_s)),
            );
        }
        let bars: Vec<(String, f64)> = rows.iter().map(|(t, r)| (t.clone(), r.mb_per_s)).collect();
        let file = format!("{}-throughput.svg", slug(&scenario));
        std::fs::write(
            dir.join(&file),
            svg::bars(&format!("{scenario}: aggregate MB/s (median)"), "MB/s", &bars),
        )?;
        let _ = writeln!(md, "\n![{scenario} throughput]({file})\n");
    }
    Ok(())
}

/// Regressions between two runs' connection rows: MB/s down, or time-to-open p50 up,
/// by more than 10 % and outside the old run's range.
pub fn compare(old: &Results, new: &Results) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut regressed = false;
    let (old_s, new_s) = (stream_rows(old), stream_rows(new));
    for (scenario, rows) in &new_s {
        for (t, n) in rows {
            let Some(o) = old_s.get(scenario).and_then(|r| r.iter().find(|(x, _)| x == t)) else {
                continue;
            };
            let o = &o.1;
            let change =
                if o.mb_per_s > 0.0 { (n.mb_per_s / o.mb_per_s - 1.0) * 100.0 } else { 0.0 };
            let bad = change < -10.0 && n.mb_per_s < o.range.0;
            regressed |= bad;
            lines.push(format!(
                "{}{scenario:<24} {t:<20} {:>10.1} -> {:>10.1} MB/s ({change:+.1} %)",
                if bad { "REGRESSION " } else { "" },
                o.mb_per_s,
                n.mb_per_s
            ));
        }
    }
    let (old_c, new_c) = (connect_rows(old), connect_rows(new));
    for (scenario, rows) in &new_c {
        for (t, n) in rows {
            let Some(o) = old_c.get(scenario).and_then(|r| r.iter().find(|(x, _)| x == t)) else {
                continue;
            };
            let o = &o.1;
            let change = if o.open[0] > 0.0 { (n.open[0] / o.open[0] - 1.0) * 100.0 } else { 0.0 };
            let bad = change > 10.0 && n.open[0] > o.p50_range.1;
            regressed |= bad;
            lines.push(format!(
                "{}{scenario:<24} {t:<20} {:>10} -> {:>10} open p50 ({change:+.1} %)",
                if bad { "REGRESSION " } else { "" },
                ms(o.open[0]),
                ms(n.open[0])
            ));
        }
    }
    (lines, regressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, op: &str, repeat: usize, open_ms: u64, mbps: f64) -> StreamRun {
        StreamRun {
            scenario: op.into(),
            target: target.into(),
            repeat,
            op: op.into(),
            concurrency: 1,
            ok: if op == "stream" { 1 } else { 100 },
            failed: 0,
            open_us: (1..=100).map(|i| open_ms * 1000 + i).collect(),
            reply_us: (1..=100).map(|i| open_ms * 2000 + i).collect(),
            bytes_per_stream: if op == "stream" { 256 << 20 } else { 0 },
            mb_per_s: mbps,
            stream_mb_per_s: vec![mbps],
            seconds: 1.0,
            client_cpu_s: 0.5,
            server_cpu_s: 0.25,
            testnet_cpu_s: 0.0,
        }
    }

    #[test]
    fn rows_goals_and_plots() {
        let mut results = Results::default();
        for rep in 0..3 {
            results.stream_runs.push(run("tern", "connect", rep, 2 + rep as u64, 0.0));
            results.stream_runs.push(run("js", "connect", rep, 4, 0.0));
            results.stream_runs.push(run("tern", "stream", rep, 0, 140.0 + rep as f64));
            results.stream_runs.push(run("js", "stream", rep, 0, 100.0));
        }
        let c = connect_rows(&results);
        let tern = &c["connect"][0].1;
        assert!((tern.open[0] - 3050.0).abs() < 5.0, "{tern:?}");
        assert_eq!(tern.p50_range.0.round() as u64 / 100, 20);
        let s = stream_rows(&results);
        assert_eq!(s["stream"][0].1.mb_per_s, 141.0);
        assert_eq!(s["stream"][0].1.shape, (1, 256));
        let g = goals(&results);
        assert!(g.iter().any(|l| l.starts_with("P6") && l.contains("missed")), "{g:?}");
        assert!(g.iter().any(|l| l.starts_with("P5") && l.contains("1.41×")), "{g:?}");
        let dir = std::env::temp_dir().join(format!("netbench-streams-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut md = String::new();
        write(&results, &dir, &mut md).unwrap();
        assert!(md.contains("| tern | 3 | 1 × 256 | 141.0 |"), "{md}");
        assert!(dir.join("connect-open-cdf.svg").is_file());
        assert!(dir.join("stream-throughput.svg").is_file());
        assert!(!compare(&results, &results).1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
