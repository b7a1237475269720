//! The scaling curve of `docs/bench/scaling.svg`, written by hand as SVG
//! (docs/decisions/0097): two panels over the number of resources (log
//! scale), CPU per check and check latency p50/p99 (log scale, µs), the
//! real `clusterkit run` beside fork/exec of OCF `Dummy monitor` measured
//! in the same invocation.

use std::fmt::Write as _;

/// One `run-scale` result, as the curve needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ScalePoint {
    /// Resources.
    pub(crate) resources: f64,
    /// Checks answered per second (below resources / interval when the
    /// host cannot keep up).
    pub(crate) checks_per_s: f64,
    /// CPU per check of host + monitors, µs.
    pub(crate) cpu_per_check_us: f64,
    /// Check latency percentiles, µs.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// fork/exec of OCF `Dummy monitor` in the same invocation.
    pub(crate) fork_exec_cpu_us: f64,
    pub(crate) fork_exec_p50_us: f64,
    pub(crate) fork_exec_p99_us: f64,
}

const WIDTH: f64 = 980.0;
const HEIGHT: f64 = 480.0;
/// Plot area of a panel: left edge of each, top, width, height.
const PANEL_X: [f64; 2] = [80.0, 570.0];
const TOP: f64 = 90.0;
const PLOT_W: f64 = 360.0;
const PLOT_H: f64 = 260.0;
const OURS: &str = "#1f5fbf";
const FORK_EXEC: &str = "#c0392b";

/// A log₁₀ axis over whole decades covering `values`.
#[derive(Debug, Clone, Copy)]
struct LogAxis {
    low: f64,
    high: f64,
}

impl LogAxis {
    fn covering(values: impl Iterator<Item = f64>) -> LogAxis {
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| v.is_finite() && *v > 0.0) {
            low = low.min(v.log10());
            high = high.max(v.log10());
        }
        if !low.is_finite() {
            return LogAxis {
                low: 0.0,
                high: 1.0,
            };
        }
        let (low, high) = (low.floor(), high.ceil());
        LogAxis {
            low,
            high: if high > low { high } else { low + 1.0 },
        }
    }

    /// Where `value` falls, 0 (low end) to 1 (high end).
    fn fraction(self, value: f64) -> f64 {
        (value.log10() - self.low) / (self.high - self.low)
    }

    fn decades(self) -> impl Iterator<Item = f64> {
        (self.low as i32..=self.high as i32).map(|e| 10f64.powi(e))
    }
}

/// `100000` as `100 000`.
pub(crate) fn grouped(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A series: its name, colour, dash pattern, and (resources, value) points.
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    dash: &'a str,
    points: Vec<(f64, f64)>,
}

fn panel(
    svg: &mut String,
    left: f64,
    title: &str,
    x: LogAxis,
    series: &[Series],
    checks_per_s: &[f64],
) {
    let y = LogAxis::covering(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let px = |v: f64| left + 20.0 + x.fraction(v) * (PLOT_W - 40.0);
    let py = |v: f64| TOP + PLOT_H - y.fraction(v) * PLOT_H;
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"##,
        left + PLOT_W / 2.0,
        TOP - 14.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#444"/>"##
    );
    for d in y.decades() {
        let yy = py(d);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="12">{}</text>"##,
            left + PLOT_W,
            left - 6.0,
            yy + 4.0,
            grouped(d)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="12" transform="rotate(-90 {} {})">µs (log scale)</text>"##,
        left - 52.0,
        TOP + PLOT_H / 2.0,
        left - 52.0,
        TOP + PLOT_H / 2.0
    );
    let resources: Vec<f64> = series.first().map_or(Vec::new(), |s| {
        s.points.iter().map(|p| p.0).collect::<Vec<_>>()
    });
    for (i, n) in resources.iter().enumerate() {
        let xx = px(*n);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle" font-size="12">{}</text>"##,
            TOP + PLOT_H,
            TOP + PLOT_H + 16.0,
            grouped(*n)
        );
        // Inside the plot, at its foot: what was checked, which says when
        // the host fell behind its schedule.
        if let Some(rate) = checks_per_s.get(i).filter(|r| r.is_finite()) {
            let _ = writeln!(
                svg,
                r##"<text x="{xx:.1}" y="{}" text-anchor="middle" font-size="10" fill="#666">{}/s</text>"##,
                TOP + PLOT_H - 5.0,
                grouped(*rate)
            );
        }
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="12">resources (log scale)</text>"##,
        left + PLOT_W / 2.0,
        TOP + PLOT_H + 34.0
    );
    for (i, s) in series.iter().enumerate() {
        let drawn: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite() && p.1 > 0.0)
            .collect();
        let path: Vec<String> = drawn
            .iter()
            .map(|&(n, v)| format!("{:.1},{:.1}", px(n), py(v)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{}"/>"##,
            path.join(" "),
            s.colour,
            s.dash
        );
        for &(n, v) in &drawn {
            let _ = writeln!(
                svg,
                r##"<circle class="point" data-series="{}" data-resources="{n}" data-value="{v:.3}" cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}: {} at {} resources</title></circle>"##,
                escape(s.name),
                px(n),
                py(v),
                s.colour,
                escape(s.name),
                crate::report::x(v),
                grouped(n)
            );
        }
        // The legend, under the axis title.
        let ly = TOP + PLOT_H + 54.0 + 16.0 * i as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2" stroke-dasharray="{}"/><text x="{}" y="{}" font-size="12">{}</text>"##,
            left + 28.0,
            s.colour,
            s.dash,
            left + 34.0,
            ly + 4.0,
            escape(s.name)
        );
    }
}

/// The whole picture; `subtitle` says where and when it was measured.
pub(crate) fn render(points: &[ScalePoint], subtitle: &str) -> String {
    let x = LogAxis::covering(points.iter().map(|p| p.resources));
    let series = |name, colour, dash, value: fn(&ScalePoint) -> f64| Series {
        name,
        colour,
        dash,
        points: points.iter().map(|p| (p.resources, value(p))).collect(),
    };
    let rates: Vec<f64> = points.iter().map(|p| p.checks_per_s).collect();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"##
    );
    let _ = writeln!(
        svg,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="16" font-weight="bold">clusterkit run: N dummy resources, looks_alive every interval, beside fork/exec of OCF Dummy</text><text x="{}" y="56" text-anchor="middle" font-size="11" fill="#666">(grey at the foot of each size: checks answered per second; below N per interval, the host fell behind)</text><text x="{}" y="40" text-anchor="middle" font-size="12" fill="#555">{}</text>"##,
        WIDTH / 2.0,
        WIDTH / 2.0,
        WIDTH / 2.0,
        escape(subtitle),
    );
    panel(
        &mut svg,
        PANEL_X[0],
        "CPU per health check (host + monitors)",
        x,
        &[
            series("clusterkit run", OURS, "none", |p| p.cpu_per_check_us),
            series("fork/exec OCF Dummy monitor", FORK_EXEC, "6 4", |p| {
                p.fork_exec_cpu_us
            }),
        ],
        &rates,
    );
    panel(
        &mut svg,
        PANEL_X[1],
        "Health check latency",
        x,
        &[
            series("clusterkit run p50", OURS, "none", |p| p.p50_us),
            series("clusterkit run p99", OURS, "2 3", |p| p.p99_us),
            series("fork/exec p50 (wall)", FORK_EXEC, "6 4", |p| {
                p.fork_exec_p50_us
            }),
            series("fork/exec p99 (wall)", FORK_EXEC, "2 3", |p| {
                p.fork_exec_p99_us
            }),
        ],
        &rates,
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(1000.0), "1 000");
        assert_eq!(grouped(100_000.0), "100 000");
        assert_eq!(grouped(10.0), "10");
    }

    #[test]
    fn a_log_axis_covers_whole_decades() {
        let axis = LogAxis::covering([3.0, 2500.0, f64::NAN, 0.0].into_iter());
        assert_eq!((axis.low, axis.high), (0.0, 4.0));
        assert!((axis.fraction(100.0) - 0.5).abs() < 1e-9);
    }
}
