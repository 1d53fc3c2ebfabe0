//! Minimal SVG charts: lines over a linear x axis (latency against offered load) and
//! grouped bars (CPU per request).
//!
//! Hand-written rather than plotters: plotters needs a font backend (system fonts or an
//! embedded TTF) to lay out any text, which a report generator on a bare CI machine
//! should not depend on. SVG text is laid out by the viewer instead.

use std::fmt::Write;

/// One line of a chart.
pub struct Line {
    /// Legend label.
    pub label: String,
    /// (x, y) points, in x order.
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A "nice" axis maximum at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|m| *m >= v).unwrap_or(10.0 * mag)
}

fn frame(out: &mut String, title: &str, x_label: &str, y_label: &str, x_max: f64, y_max: f64) {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + pw / 2.0,
        esc(title)
    );
    for i in 0..=5 {
        let f = f64::from(i) / 5.0;
        let y = TOP + ph - f * ph;
        let x = LEFT + f * pw;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##,
            LEFT + pw
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            fmt_num(f * y_max)
        );
        if x_max > 0.0 {
            let _ = write!(
                out,
                r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
                TOP + ph + 18.0,
                fmt_num(f * x_max)
            );
        }
    }
    let _ = write!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 14.0,
        esc(x_label)
    );
    let _ = write!(
        out,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(y_label)
    );
}

fn legend(out: &mut String, labels: &[String]) {
    for (i, l) in labels.iter().enumerate() {
        let y = TOP + 14.0 + 20.0 * i as f64;
        let x = W - RIGHT + 14.0;
        let c = COLORS[i % COLORS.len()];
        let _ = write!(out, r#"<rect x="{x}" y="{}" width="14" height="4" fill="{c}"/>"#, y - 4.0);
        let _ = write!(out, r#"<text x="{}" y="{y}">{}</text>"#, x + 20.0, esc(l));
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A line chart.
pub fn lines(title: &str, x_label: &str, y_label: &str, lines: &[Line]) -> String {
    let x_max = nice_max(lines.iter().flat_map(|l| &l.points).map(|p| p.0).fold(0.0, f64::max));
    let y_max = nice_max(lines.iter().flat_map(|l| &l.points).map(|p| p.1).fold(0.0, f64::max));
    let mut out = String::new();
    frame(&mut out, title, x_label, y_label, x_max, y_max);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    for (i, line) in lines.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<String> = line
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", LEFT + x / x_max * pw, TOP + ph - y / y_max * ph))
            .collect();
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{c}"/>"#);
        }
    }
    legend(&mut out, &lines.iter().map(|l| l.label.clone()).collect::<Vec<_>>());
    out.push_str("</svg>\n");
    out
}

/// A bar chart: one bar per (label, value).
pub fn bars(title: &str, y_label: &str, bars: &[(String, f64)]) -> String {
    let y_max = nice_max(bars.iter().map(|b| b.1).fold(0.0, f64::max));
    let mut out = String::new();
    frame(&mut out, title, "", y_label, 0.0, y_max);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let slot = pw / bars.len().max(1) as f64;
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = v / y_max * ph;
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let c = COLORS[i % COLORS.len()];
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{c}"/>"#,
            TOP + ph - h,
            slot * 0.7
        );
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.2}</text>"#,
            x + slot * 0.35,
            TOP + ph - h - 4.0,
            v
        );
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x + slot * 0.35,
            TOP + ph + 18.0,
            esc(label)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_wellformed_svg() {
        let l = lines(
            "t",
            "x",
            "y",
            &[Line { label: "a<b".into(), points: vec![(1.0, 2.0), (3.0, 4.0)] }],
        );
        assert!(l.starts_with("<svg") && l.trim_end().ends_with("</svg>"));
        assert!(l.contains("a&lt;b") && l.contains("<polyline"));
        let b = bars("t", "y", &[("tern".into(), 2.5), ("js".into(), 8.0)]);
        assert_eq!(b.matches("<rect x=").count(), 1 + 2, "plot frame + one per bar");
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(230.0), 250.0);
    }
}
