//! Where a round trip's microseconds go: system calls per check (`strace
//! -c -f`), context switches and CPU per check (`perf stat` software
//! counters; this VM exposes no hardware counters), instructions per check
//! and the hottest functions in the monitor (`valgrind --tool=callgrind`).
//!
//! Every figure is a difference of two runs (`long` minus `short` checks)
//! divided by the difference in checks, so start-up cancels out.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clusterkit_host::{HostBuilder, MonitorProgram, ResourceConfig, Timing};
use serde_json::{Value, json};

use crate::sys;

/// Options of the profile.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Round trips of the short run (the long run adds `--checks`).
    #[arg(long, default_value_t = 1000)]
    base: usize,
    /// Extra round trips of the long run.
    #[arg(long, default_value_t = 10_000)]
    checks: usize,
    /// Extra checks of the long full-host run (one per millisecond).
    #[arg(long, default_value_t = 2_000)]
    host_checks: usize,
    /// Skip callgrind (slow).
    #[arg(long)]
    no_callgrind: bool,
    /// Another monitor executable (a build from before a change): its
    /// monitor-only figures are measured too, in the same run.
    #[arg(long)]
    compare_monitor: Option<PathBuf>,
}

fn tool(program: &str) -> io::Result<()> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()?
        .status
        .success();
    if found {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{program}` is not installed (scripts/bench installs it: ensure_packages bench)"
        )))
    }
}

fn run_ok(command: &mut Command) -> io::Result<()> {
    let output = command.output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{command:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

fn me() -> io::Result<PathBuf> {
    std::env::current_exe()
}

/// The monitor alone (`monitor`, or the default one), under `wrapper`, for
/// `checks` round trips.
fn monitor_under(monitor: Option<&Path>, wrapper: &[&str], checks: usize) -> io::Result<()> {
    let mut c = Command::new(me()?);
    c.args(["profile-loop", "--checks", &checks.to_string(), "--wrapper"])
        .args(wrapper);
    if let Some(m) = monitor {
        c.env("CK_BENCH_MONITOR", m);
    }
    run_ok(&mut c)
}

/// A whole program (this binary with `args`) under `wrapper`, with the
/// monitor `monitor` (or the default one).
fn program_under(monitor: Option<&Path>, wrapper: &[&str], args: &[String]) -> io::Result<()> {
    let mut c = Command::new(wrapper[0]);
    c.args(&wrapper[1..]).arg(me()?).args(args);
    if let Some(m) = monitor {
        c.env("CK_BENCH_MONITOR", m);
    }
    run_ok(&mut c)
}

/// `strace -c` output: calls by system call.
fn parse_strace(path: &Path) -> io::Result<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path)?;
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
            continue;
        }
        let name = fields[fields.len() - 1];
        if name == "total" {
            continue;
        }
        if let Ok(n) = fields[3].parse::<f64>() {
            *calls.entry(name.to_owned()).or_insert(0.0) += n;
        }
    }
    Ok(calls)
}

/// Calls per check: (long − short) / checks, the busiest first.
fn per_check(
    short: &BTreeMap<String, f64>,
    long: &BTreeMap<String, f64>,
    checks: usize,
) -> (f64, Vec<(String, f64)>) {
    let mut rows: Vec<(String, f64)> = long
        .iter()
        .map(|(k, v)| {
            let d = (v - short.get(k).copied().unwrap_or(0.0)) / checks as f64;
            (k.clone(), (d * 100.0).round() / 100.0)
        })
        .filter(|(_, v)| *v >= 0.01)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    (rows.iter().map(|(_, v)| v).sum(), rows)
}

/// `perf stat -x,` output: value by event name.
fn parse_perf(path: &Path) -> io::Result<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path)?;
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() >= 3
            && let Ok(v) = fields[0].parse::<f64>()
        {
            values.insert(fields[2].to_owned(), v);
        }
    }
    Ok(values)
}

/// Total instructions (`Ir`) of a callgrind output file.
fn callgrind_total(path: &Path) -> io::Result<f64> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no totals in {}", path.display())))
}

/// The top functions (exclusive instructions) of a callgrind file.
fn callgrind_top(path: &Path, lines: usize) -> io::Result<Vec<String>> {
    let output = Command::new("callgrind_annotate")
        .args(["--threshold=100", "--inclusive=no"])
        .arg(path)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .skip_while(|l| !l.contains("file:function"))
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.starts_with("--"))
        .take(lines)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect())
}

/// Runs the profile; returns its JSON result.
pub(crate) fn run(opts: &Options) -> io::Result<Value> {
    tool("strace")?;
    tool("perf")?;
    if !opts.no_callgrind {
        tool("valgrind")?;
    }
    let dir = sys::scratch_dir("profile-out")?;
    let mut result = serde_json::Map::new();

    // 1. The monitor alone, over the protocol: system calls, context
    // switches, instructions per round trip (for a compared build too).
    let mut monitors: Vec<(&str, Option<&Path>)> = vec![("", None)];
    if let Some(other) = &opts.compare_monitor {
        monitors.push(("compare_", Some(other.as_path())));
    }
    for (prefix, monitor) in monitors {
        eprintln!(
            "profile: the monitor{}",
            monitor.map_or(String::new(), |m| format!(" {}", m.display()))
        );
        monitor_figures(opts, monitor, &dir, prefix, &mut result)?;
    }

    // 2. System calls, context switches and CPU of a full host + monitor
    // per health check.
    eprintln!("profile: a full host");
    let host_short = opts.host_checks / 4;
    let host_long = host_short + opts.host_checks;
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (h1, h2) = (p("strace-host-short"), p("strace-host-long"));
    let loop_args = |n: usize| vec!["host-loop".to_owned(), "--checks".into(), n.to_string()];
    program_under(
        None,
        &["strace", "-f", "-c", "-o", &h1],
        &loop_args(host_short),
    )?;
    program_under(
        None,
        &["strace", "-f", "-c", "-o", &h2],
        &loop_args(host_long),
    )?;
    let (total, rows) = per_check(
        &parse_strace(Path::new(&h1))?,
        &parse_strace(Path::new(&h2))?,
        opts.host_checks,
    );
    result.insert(
        "full_host_syscalls_per_check".into(),
        json!({"total": total, "by_call": rows, "note": "host + monitor processes, every thread"}),
    );
    let (f1, f2) = (
        perf(&dir, None, "perf-host-short", loop_args(host_short))?,
        perf(&dir, None, "perf-host-long", loop_args(host_long))?,
    );
    result.insert(
        "full_host_perf_per_check".into(),
        perf_per_check(&f1, &f2, opts.host_checks),
    );
    result.insert(
        "checks".into(),
        json!({
            "short": opts.base, "long": opts.base + opts.checks,
            "host_short": host_short, "host_long": host_long,
        }),
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Value::Object(result))
}

/// `perf stat` software counters of this binary run with `args`.
fn perf(
    dir: &Path,
    monitor: Option<&Path>,
    name: &str,
    args: Vec<String>,
) -> io::Result<BTreeMap<String, f64>> {
    let out = dir.join(name).to_string_lossy().into_owned();
    let events = "context-switches,cpu-migrations,task-clock";
    program_under(
        monitor,
        &["perf", "stat", "-x,", "-e", events, "-o", &out, "--"],
        &args,
    )?;
    parse_perf(Path::new(&out))
}

/// Per-check differences of two `perf stat` runs (task-clock in µs).
fn perf_per_check(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>, n: usize) -> Value {
    let diff =
        |k: &str| (b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0)) / n as f64;
    json!({
        "context_switches": diff("context-switches"),
        "cpu_migrations": diff("cpu-migrations"),
        // perf reports task-clock in milliseconds.
        "task_clock_us": diff("task-clock") * 1000.0,
    })
}

/// The monitor-only figures (`prefix` before each key): system calls,
/// context switches and CPU (with this client), instructions.
fn monitor_figures(
    opts: &Options,
    monitor: Option<&Path>,
    dir: &Path,
    prefix: &str,
    result: &mut serde_json::Map<String, Value>,
) -> io::Result<()> {
    let (short, long) = (opts.base, opts.base + opts.checks);
    let p = |name: &str| {
        dir.join(format!("{prefix}{name}"))
            .to_string_lossy()
            .into_owned()
    };
    let (s1, s2) = (p("strace-mon-short"), p("strace-mon-long"));
    monitor_under(monitor, &["strace", "-f", "-c", "-o", &s1], short)?;
    monitor_under(monitor, &["strace", "-f", "-c", "-o", &s2], long)?;
    let (total, rows) = per_check(
        &parse_strace(Path::new(&s1))?,
        &parse_strace(Path::new(&s2))?,
        opts.checks,
    );
    result.insert(
        format!("{prefix}monitor_syscalls_per_check"),
        json!({"total": total, "by_call": rows}),
    );
    let loop_mon = |n: usize| vec!["profile-loop".to_owned(), "--checks".into(), n.to_string()];
    let (m1, m2) = (
        perf(
            dir,
            monitor,
            &format!("{prefix}perf-mon-short"),
            loop_mon(short),
        )?,
        perf(
            dir,
            monitor,
            &format!("{prefix}perf-mon-long"),
            loop_mon(long),
        )?,
    );
    result.insert(
        format!("{prefix}monitor_perf_per_check"),
        perf_per_check(&m1, &m2, opts.checks),
    );
    if !opts.no_callgrind {
        let (c1, c2) = (p("callgrind-short"), p("callgrind-long"));
        let cg_short = short.min(1000);
        let cg_long = cg_short + opts.checks.min(4000);
        let arg = |f: &str| format!("--callgrind-out-file={f}");
        monitor_under(
            monitor,
            &["valgrind", "--tool=callgrind", &arg(&c1)],
            cg_short,
        )?;
        monitor_under(
            monitor,
            &["valgrind", "--tool=callgrind", &arg(&c2)],
            cg_long,
        )?;
        let per = (callgrind_total(Path::new(&c2))? - callgrind_total(Path::new(&c1))?)
            / (cg_long - cg_short) as f64;
        result.insert(
            format!("{prefix}monitor_instructions_per_check"),
            json!({
                "instructions": per.round(),
                "top_functions_long_run": callgrind_top(Path::new(&c2), 20)?,
            }),
        );
    }
    Ok(())
}

/// A full host polling one dummy resource every millisecond until it has
/// run `checks` checks.
pub(crate) fn host_loop(checks: u64) -> io::Result<Value> {
    let dir = sys::scratch_dir("host-loop")?;
    let workload = dir.join("workload");
    std::fs::create_dir_all(&workload)?;
    let timing = Timing {
        looks_alive_interval: Duration::from_millis(1),
        is_alive_interval: Duration::from_secs(3600),
        deadlock_timeout: Duration::from_secs(30),
        ..Timing::default()
    };
    let host = HostBuilder::new(dir.join("host"), MonitorProgram::Path(sys::monitor_path()?))
        .defaults(timing)
        .resource(
            ResourceConfig::new("r", sys::dummy_library()?, "dummy")
                .property("state_dir", workload.to_string_lossy().as_ref()),
        )
        .start()
        .map_err(io::Error::other)?;
    host.online("r").map_err(io::Error::other)?;
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let status = host.resource_status("r").map_err(io::Error::other)?;
        if status.health_checks >= checks {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            return Err(io::Error::other("the host stopped checking"));
        }
    }
    let elapsed = t.elapsed();
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({"checks": checks, "elapsed_s": elapsed.as_secs_f64()}))
}
