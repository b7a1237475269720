//! The report's rows for the real `clusterkit run` (`run-scale` results):
//! the headline row at 10 000 resources, the scaling curve (rows and
//! `docs/bench/scaling.svg`), and before → after of two builds.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde_json::Value;

use crate::report::{n, x};
use crate::scaling_svg::{self, ScalePoint, grouped as count};
use crate::sys::median;

/// The `run-scale` results of one run: the curve, and before → after.
#[derive(Debug, Default)]
pub(crate) struct RunResults {
    /// `run-scale-<N>.json`, ascending N.
    pub(crate) curve: Vec<Value>,
    /// `run-before-r<i>.json` and `run-after-r<i>.json`, by round.
    pub(crate) before: Vec<Value>,
    pub(crate) after: Vec<Value>,
}

impl RunResults {
    /// Whatever `run-scale` results `dir` has.
    pub(crate) fn load(dir: &Path) -> io::Result<RunResults> {
        let mut results = RunResults::default();
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|f| f.starts_with("run-") && f.ends_with(".json"))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
            if name.starts_with("run-scale-") {
                results.curve.push(value);
            } else if name.starts_with("run-before-") {
                results.before.push(value);
            } else if name.starts_with("run-after-") {
                results.after.push(value);
            }
        }
        results
            .curve
            .sort_by(|a, b| n(a, "resources").total_cmp(&n(b, "resources")));
        Ok(results)
    }

    /// The headline: the result at 10 000 resources, else the largest.
    pub(crate) fn headline(&self) -> Option<&Value> {
        self.curve
            .iter()
            .find(|v| n(v, "resources") == 10_000.0)
            .or(self.curve.last())
    }

    /// The curve's points for the picture.
    pub(crate) fn points(&self) -> Vec<ScalePoint> {
        self.curve.iter().map(point).collect()
    }
}

fn point(v: &Value) -> ScalePoint {
    ScalePoint {
        resources: n(v, "resources"),
        checks_per_s: n(v, "checks_per_s"),
        cpu_per_check_us: n(v, "cpu_per_check_us"),
        p50_us: n(v, "latency_us/p50"),
        p99_us: n(v, "latency_us/p99"),
        fork_exec_cpu_us: n(v, "fork_exec/cpu_per_check_us"),
        fork_exec_p50_us: n(v, "fork_exec/wall_us/p50"),
        fork_exec_p99_us: n(v, "fork_exec/wall_us/p99"),
    }
}

fn mib(kib: f64) -> String {
    x(kib / 1024.0)
}

/// "met", or by how much `value` misses `target` (`low`: must be above).
fn miss(value: f64, target: f64, low: bool) -> String {
    let over = if low { target / value } else { value / target };
    if over <= 1.0 {
        "met".to_owned()
    } else if over.is_nan() {
        "not measured".to_owned()
    } else {
        format!("**missed by {}×**", x(over))
    }
}

/// The bucket bounds, as the report states the latency's resolution.
fn resolution(v: &Value) -> String {
    v["latency_us"]["bucket_bounds_us"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(Value::as_f64)
                .map(|us| {
                    if us >= 1e6 {
                        format!("{} s", x(us / 1e6))
                    } else if us >= 1e3 {
                        format!("{} ms", x(us / 1e3))
                    } else {
                        format!("{} µs", x(us))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

type Row<'a> = &'a dyn Fn(&mut String, &str, &str, String, &str);

/// The headline row and the curve's rows, before the `HostBuilder` rows.
pub(crate) fn headline_rows(w: &mut String, runs: &RunResults, svg_link: &str, row: Row) {
    let Some(h) = runs.headline() else {
        return;
    };
    let cpu = n(h, "cpu_per_check_us");
    let fork = n(h, "fork_exec/cpu_per_check_us");
    let ratio = fork / cpu;
    let share = n(h, "cpu_share_of_one_core_pct");
    row(
        w,
        &format!(
            "**the real `clusterkit run`**: {} dummy resources from a config, one monitor, \
             `looks_alive` every {} s, {} s window: CPU per check (host + monitors, `/proc`), \
             share of one core, RSS, check latency",
            count(n(h, "resources")),
            x(n(h, "interval_s")),
            x(n(h, "window_s")),
        ),
        "≤ 5 µs per check and ≥ 500× below fork/exec; ≤ 5 % of a core at 10 000",
        format!(
            "**{} µs per check** (host {} + monitors {}) at {} checks/s = **{}× below \
             fork/exec** of OCF `Dummy monitor` in the same run ({} µs CPU, wall p50 {} / p99 {} µs) — ≤ 5 µs {}, ≥ 500× \
             {}; **{} % of one core** — {}; RSS host {} MiB (peak {}) + {} monitor(s) {} MiB \
             (peak {}); check latency p50 {} µs, p99 {} µs; cold start (command → all online) \
             {} s",
            x(cpu),
            x(n(h, "host_cpu_per_check_us")),
            x(n(h, "monitors_cpu_per_check_us")),
            x(n(h, "checks_per_s")),
            x(ratio),
            x(fork),
            x(n(h, "fork_exec/wall_us/p50")),
            x(n(h, "fork_exec/wall_us/p99")),
            miss(cpu, 5.0, false),
            miss(ratio, 500.0, true),
            x(share),
            miss(share, 5.0, false),
            mib(n(h, "memory/host_rss_kib")),
            mib(n(h, "memory/host_peak_rss_kib")),
            n(h, "monitors"),
            mib(n(h, "memory/monitors_rss_kib")),
            mib(n(h, "memory/monitors_peak_rss_kib")),
            x(n(h, "latency_us/p50")),
            x(n(h, "latency_us/p99")),
            x(n(h, "cold_start_s")),
        ),
        &format!(
            "clusterkit-bench run-scale --resources {:.0}",
            n(h, "resources")
        ),
    );
    if runs.curve.len() > 1 {
        let cells: Vec<String> = runs
            .curve
            .iter()
            .map(|v| {
                format!(
                    "{}: **{} µs** ({}× below fork/exec's {} µs), {} % of a core, {} checks/s of \
                     {} due, p50 {} / p99 {} µs, RSS {} MiB, cold start {} s",
                    count(n(v, "resources")),
                    x(n(v, "cpu_per_check_us")),
                    x(n(v, "fork_exec/cpu_per_check_us") / n(v, "cpu_per_check_us")),
                    x(n(v, "fork_exec/cpu_per_check_us")),
                    x(n(v, "cpu_share_of_one_core_pct")),
                    count(n(v, "checks_per_s")),
                    count(n(v, "resources") / n(v, "interval_s")),
                    x(n(v, "latency_us/p50")),
                    x(n(v, "latency_us/p99")),
                    mib(n(v, "memory/total_rss_kib")),
                    x(n(v, "cold_start_s")),
                )
            })
            .collect();
        let sizes: Vec<String> = runs
            .curve
            .iter()
            .map(|v| format!("{:.0}", n(v, "resources")))
            .collect();
        row(
            w,
            &format!(
                "scaling curve of `clusterkit run` ([picture]({svg_link})): CPU per check, \
                 share of a core, latency p50 / p99, RSS (host + monitors) by resources"
            ),
            "100 000: ≤ 50 % of a core, ≤ 200 MiB RSS",
            match large_verdict(runs) {
                Some(verdict) => format!("{} — {verdict}", cells.join("; ")),
                None => cells.join("; "),
            },
            &format!(
                "clusterkit-bench run-scale --resources {}",
                sizes.join(" / ")
            ),
        );
    }
}

/// The 100 000-resource verdicts, when the curve has that point.
pub(crate) fn large_verdict(runs: &RunResults) -> Option<String> {
    let big = runs.curve.iter().find(|v| n(v, "resources") == 100_000.0)?;
    let share = n(big, "cpu_share_of_one_core_pct");
    let rss = n(big, "memory/total_rss_kib") / 1024.0;
    Some(format!(
        "at 100 000: {} % of a core — {}; {} MiB RSS — {}",
        x(share),
        miss(share, 50.0, false),
        x(rss),
        miss(rss, 200.0, false)
    ))
}

/// Before → after of two builds at one size, rounds interleaved (medians).
pub(crate) fn before_after_row(w: &mut String, runs: &RunResults, row: Row) {
    if runs.before.is_empty() || runs.after.is_empty() {
        return;
    }
    let med =
        |side: &[Value], path: &str| median(&side.iter().map(|v| n(v, path)).collect::<Vec<_>>());
    let pair = |path: &str, unit: &str| {
        let (b, a) = (med(&runs.before, path), med(&runs.after, path));
        format!("{} → **{}**{unit} ({}×)", x(b), x(a), x(b / a))
    };
    let rev = runs.before[0]["label"]
        .as_str()
        .unwrap_or("the older build")
        .to_owned();
    row(
        w,
        &format!(
            "before → after: `clusterkit run` of {rev} and of this tree, {} resources, {} s \
             windows, round(s) interleaved: {} (medians; the ratio is before / after)",
            count(n(&runs.after[0], "resources")),
            x(n(&runs.after[0], "window_s")),
            runs.after.len().min(runs.before.len()),
        ),
        "—",
        format!(
            "CPU per check {}; share of a core {}; RSS host + monitors {}; latency p50 {}, p99 \
             {}; cold start {}; fork/exec in the same rounds {} µs CPU",
            pair("cpu_per_check_us", " µs"),
            pair("cpu_share_of_one_core_pct", " %"),
            pair("memory/total_rss_kib", " KiB"),
            pair("latency_us/p50", " µs"),
            pair("latency_us/p99", " µs"),
            pair("cold_start_s", " s"),
            x(med(
                &[runs.before.clone(), runs.after.clone()].concat(),
                "fork_exec/cpu_per_check_us"
            )),
        ),
        "CK_BENCH_BEFORE_REV=REV scripts/bench",
    );
}

/// Writes the picture (when there is a curve) and the paragraph that shows
/// it in the report.
pub(crate) fn scaling_section(
    w: &mut String,
    runs: &RunResults,
    svg: &Path,
    svg_link: &str,
    subtitle: &str,
) -> io::Result<()> {
    if runs.curve.is_empty() {
        return Ok(());
    }
    if let Some(parent) = svg.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(svg, scaling_svg::render(&runs.points(), subtitle))?;
    let _ = writeln!(w, "## Scaling curve of the real command\n");
    let _ = writeln!(w, "![scaling curve]({svg_link})\n");
    let _ = writeln!(
        w,
        "CPU per check and check latency of `clusterkit run` at each size, beside fork/exec of \
         OCF `Dummy monitor` timed in the same `run-scale` invocation (its CPU is the agent and \
         everything it ran; its latency is wall time). Latency percentiles are interpolated \
         inside the buckets of the host's `clusterkit_health_check_duration_seconds` histogram, \
         whose bounds set the resolution: {}.",
        runs.curve.first().map(resolution).unwrap_or_default()
    );
    if let Some(verdict) = large_verdict(runs) {
        let _ = writeln!(w, "\n{verdict}.");
    }
    let _ = writeln!(w);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(resources: u64, cpu: f64) -> Value {
        serde_json::json!({
            "resources": resources,
            "interval_s": 1.0,
            "window_s": 30.0,
            "checks_per_s": resources as f64,
            "cpu_per_check_us": cpu,
            "cpu_share_of_one_core_pct": cpu * resources as f64 / 1e4,
            "cold_start_s": 0.5,
            "monitors": 1,
            "memory": {"host_rss_kib": 10240, "host_peak_rss_kib": 11000,
                       "monitors_rss_kib": 4096, "monitors_peak_rss_kib": 4096,
                       "total_rss_kib": 14336},
            "latency_us": {"p50": 300.0, "p99": 4000.0,
                           "bucket_bounds_us": [100.0, 250.0, 500.0, 1000.0]},
            "fork_exec": {"cpu_per_check_us": 2500.0,
                          "wall_us": {"p50": 2700.0, "p99": 3500.0}},
        })
    }

    #[test]
    fn the_curve_renders_three_points_per_series_and_the_headline_is_10_000() {
        let dir = std::env::temp_dir().join(format!("ck-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (resources, cpu) in [(100_000, 60.0), (1000, 40.0), (10_000, 45.0)] {
            std::fs::write(
                dir.join(format!("run-scale-{resources}.json")),
                fixture(resources, cpu).to_string(),
            )
            .unwrap();
        }
        let runs = RunResults::load(&dir).unwrap();
        assert_eq!(n(runs.headline().unwrap(), "resources"), 10_000.0);

        let svg_path = dir.join("bench/scaling.svg");
        let mut md = String::new();
        scaling_section(&mut md, &runs, &svg_path, "bench/scaling.svg", "fixture").unwrap();
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(md.contains("![scaling curve](bench/scaling.svg)"), "{md}");
        assert!(md.contains("100 µs, 250 µs, 500 µs, 1.00 ms"), "{md}");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Two series in the CPU panel, four in the latency panel, three
        // sizes each.
        assert_eq!(svg.matches("class=\"point\"").count(), 6 * 3);
        for resources in ["1000", "10000", "100000"] {
            let at = format!("data-series=\"clusterkit run\" data-resources=\"{resources}\"");
            assert!(svg.contains(&at), "no CPU point at {resources}");
        }
        assert!(svg.contains("data-resources=\"100000\" data-value=\"60.000\""));
        assert!(svg.contains(">100 000</text>"));
    }
}
