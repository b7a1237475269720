//! Renders the JSON results of one `scripts/bench` run into
//! `docs/BENCHMARKS.md`: the machine, one table (figure | target | measured
//! | command), then what the misses would take and the profile.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Options of the report.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// The directory of the JSON results.
    #[arg(long)]
    results: PathBuf,
    /// The Markdown file to write.
    #[arg(long)]
    markdown: PathBuf,
    /// Load averages when the run started.
    #[arg(long, default_value = "")]
    load_before: String,
    /// Load averages when the benchmarks ended (default: now).
    #[arg(long, default_value = "")]
    load_after: String,
    /// How long the run took, in seconds.
    #[arg(long, default_value_t = 0)]
    seconds: u64,
}

fn load(dir: &Path, name: &str) -> io::Result<Value> {
    let path = dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| io::Error::other(format!("{}: {e}", path.display())))
}

/// A number at a `/`-separated path (NaN when missing).
fn n(v: &Value, path: &str) -> f64 {
    let mut v = v;
    for key in path.split('/') {
        v = match v {
            Value::Object(m) => m.get(key).unwrap_or(&Value::Null),
            Value::Array(a) => key
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .unwrap_or(&Value::Null),
            _ => &Value::Null,
        };
    }
    v.as_f64().unwrap_or(f64::NAN)
}

/// A value with sensible precision.
fn x(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn machine(opts: &Options) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let clocksource =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .unwrap_or_default()
            .trim()
            .to_owned();
    format!(
        "nproc {}, CPU `{model}` (a VM; no hardware performance counters), kernel {kernel}, \
         clocksource {clocksource}, `{rustc}`, release build. Load average (1/5/15 min) {} at \
         the start of the run, {} at the end; the run took {} s.",
        crate::sys::online_cpus(),
        if opts.load_before.is_empty() {
            "n/a"
        } else {
            &opts.load_before
        },
        load_after(opts),
        opts.seconds,
    )
}

fn load_after(opts: &Options) -> String {
    if opts.load_after.is_empty() {
        crate::sys::loadavg()
    } else {
        opts.load_after.clone()
    }
}

/// Writes the report.
pub(crate) fn run(opts: &Options) -> io::Result<()> {
    let dir = &opts.results;
    let rt = load(dir, "roundtrip")?;
    let s1 = load(dir, "scale-1000")?;
    let s10 = load(dir, "scale-10000")?;
    let to = load(dir, "timeouts")?;
    let rec = load(dir, "recovery")?;
    let fp = load(dir, "footprint")?;
    let prof = load(dir, "profile")?;
    let compare = match (load(dir, "compare-before"), load(dir, "compare-after")) {
        (Ok(before), Ok(after)) => Some(serde_json::json!({"before": before, "after": after})),
        _ => None,
    };

    let same = &rt["placements"]["same_core"];
    let cross = &rt["placements"]["cross_core"];
    let ocf_cpu = n(&rt, "pacemaker_fork_exec/cpu_per_call_us");
    let rounds = n(&rt, "rounds");
    let checks = n(&rt, "checks_per_round");
    // "met", or by how much the value is over (or, `low`, under) the target.
    let miss = |value: f64, target: f64, low: bool| {
        let over = if low { target / value } else { value / target };
        if over <= 1.0 {
            "met".to_owned()
        } else {
            format!("**missed by {}×**", x(over))
        }
    };
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    // The 1-minute load before the run (other work only), and after it (this
    // run's own benchmarks add well under 1 on their own).
    let first = |s: &str| s.split(' ').next().and_then(|l| l.parse::<f64>().ok());
    let loaded = first(&opts.load_before).is_some_and(|l| l > 0.5)
        || first(&load_after(opts)).is_some_and(|l| l > 1.5);

    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Generated by `scripts/bench` (it builds in release mode, runs every benchmark of \
         `crates/clusterkit-bench` and rewrites this file). Performance is measured here, never \
         by timed assertions in tests.\n"
    );
    let _ = writeln!(w, "**Machine.** {}\n", machine(opts));
    if loaded {
        let _ = writeln!(
            w,
            "**Other work ran concurrently** during at least part of this run: the machine is \
             shared with other builds and test runs, and the load averages above say so (each \
             result's `loadavg_after` in `target/bench/results/` tells which benchmarks it \
             overlapped). Latencies, especially cross-core ones and tails, are noisier than on a \
             quiet machine; ratios are taken within one run, side by side, so both sides saw \
             the same load.\n"
        );
    }
    let _ = writeln!(
        w,
        "Placements: *same core* pins this benchmark (acting as the host) to CPU 0 and the other \
         process (monitor, ping-pong peer) to CPU 0 too; *cross core* pins the other process to \
         CPU 1. \"Median\" is the median over {rounds} interleaved rounds of {checks} round trips \
         each (figures of one round: p50/p99 over its samples).\n"
    );

    let _ = writeln!(
        w,
        "| figure | target | measured (median of runs) | command |"
    );
    let _ = writeln!(w, "|---|---|---|---|");
    let row = |w: &mut String, fig: &str, target: &str, measured: String, cmd: &str| {
        let _ = writeln!(w, "| {fig} | {target} | {measured} | `{cmd}` |");
    };
    let rt_cmd = "clusterkit-bench roundtrip";
    for (name, p) in [("same core", same), ("cross core", cross)] {
        let pp = n(p, "pingpong/p50_us");
        let mon = n(p, "monitor/p50_us");
        let ratio = n(p, "monitor_over_pingpong_p50");
        let host_ratio = n(p, "full_host_over_pingpong_p50");
        row(
            w,
            &format!("`looks_alive` round trip, dummy resource, {name}: p50 / p99"),
            "p50 ≤ 1.5 × ping-pong p50",
            format!(
                "host→monitor→resource→host over the protocol: **{} µs / {} µs = {}× ping-pong** \
                 ({} µs / {} µs) — {}; full `Host` (1 check/ms, `last_check_latency`): {} µs / \
                 {} µs = {}×",
                x(mon),
                x(n(p, "monitor/p99_us")),
                x(ratio),
                x(pp),
                x(n(p, "pingpong/p99_us")),
                miss(ratio, 1.5, false),
                x(n(p, "full_host/p50_us")),
                x(n(p, "full_host/p99_us")),
                x(host_ratio),
            ),
            rt_cmd,
        );
    }
    row(
        w,
        "floors: in-process call of the dummy's `looks_alive`: p50 / p99",
        "—",
        format!(
            "direct Rust trait call {} µs / {} µs; through the C ABI of the loaded `.so` {} µs / \
             {} µs",
            x(n(&rt, "in_process_rust/p50_us")),
            x(n(&rt, "in_process_rust/p99_us")),
            x(n(&rt, "in_process_c_abi/p50_us")),
            x(n(&rt, "in_process_c_abi/p99_us")),
        ),
        rt_cmd,
    );
    row(
        w,
        "Pacemaker's model: fork/exec of OCF `Dummy monitor`: wall p50 / p99, CPU per check",
        "(≈ 3 ms CPU)",
        format!(
            "{} µs / {} µs wall, **{} µs CPU** (agent and its children, `RUSAGE_CHILDREN`)",
            x(n(&rt, "pacemaker_fork_exec/p50_us")),
            x(n(&rt, "pacemaker_fork_exec/p99_us")),
            x(ocf_cpu),
        ),
        rt_cmd,
    );
    let cpu_scale = n(&s10, "cpu_per_check_us");
    row(
        w,
        "CPU time per health check, host + monitor",
        "≤ 10 µs at 10 000 checks/s, and ≥ 200× less than fork/exec",
        format!(
            "**{} µs at {} checks/s** (10 000 resources: host {} + monitor {}) = {}× less than \
             fork/exec — ≤ 10 µs {}, ≥ 200× {}; closed loop over the protocol (bench + \
             monitor): same core {} µs \
             ({}×), cross core {} µs ({}×); full `Host`, one resource at 1 000 checks/s (a timer \
             wake-up per check): same core {} µs ({}×), cross core {} µs ({}×)",
            x(cpu_scale),
            x(n(&s10, "checks_per_s")),
            x(n(&s10, "host_cpu_per_check_us")),
            x(n(&s10, "monitor_cpu_per_check_us")),
            x(ocf_cpu / cpu_scale),
            miss(cpu_scale, 10.0, false),
            miss(ocf_cpu / cpu_scale, 200.0, true),
            x(n(same, "monitor/cpu_per_call_us")),
            x(n(same, "ocf_cpu_over_monitor_cpu")),
            x(n(cross, "monitor/cpu_per_call_us")),
            x(n(cross, "ocf_cpu_over_monitor_cpu")),
            x(n(same, "full_host/cpu_per_call_us")),
            x(n(same, "ocf_cpu_over_full_host_cpu")),
            x(n(cross, "full_host/cpu_per_call_us")),
            x(n(cross, "ocf_cpu_over_full_host_cpu")),
        ),
        &format!("{rt_cmd}; clusterkit-bench scale --resources 10000"),
    );
    let share1 = n(&s1, "cpu_share_of_one_core_pct");
    let share10 = n(&s10, "cpu_share_of_one_core_pct");
    row(
        w,
        &format!(
            "N dummy resources, `looks_alive` every 1 s, {} s window, all in one monitor \
             (`default` placement), unpinned: CPU of host + monitors as a share of one core",
            x(n(&s10, "window_s"))
        ),
        "≤ 10 % for 10 000",
        format!(
            "1 000: {} % ({} µs/check); **10 000: {} %** ({} µs/check) — {}; 10× the resources \
             cost {}× the CPU. Check latency at 10 000 (each resource's last): p50 {} µs, p99 {} \
             µs; started (re-attached) in {} s",
            x(share1),
            x(n(&s1, "cpu_per_check_us")),
            x(share10),
            x(cpu_scale),
            miss(share10, 10.0, false),
            x(share10 / share1),
            x(n(&s10, "last_check_latency_us/p50")),
            x(n(&s10, "last_check_latency_us/p99")),
            x(n(&s10, "startup_s")),
        ),
        "clusterkit-bench scale --resources 1000 / 10000",
    );
    // Conservative: the host's whole-millisecond lateness + 1 ms.
    let late99 = n(&to, "event_elapsed_minus_deadline_ms/p99") + 1.0;
    row(
        w,
        &format!(
            "timeout detection: {} hanging `looks_alive` (own monitors, 1 s deadline) while {} \
             dummies are polled every 1 s; lateness of the kill past the deadline",
            n(&to, "hanging_resources"),
            n(&to, "polled_resources")
        ),
        "deadline + 5 ms (p99)",
        format!(
            "{} timeouts; `call_timed_out`'s `elapsed_ms − deadline_ms` (whole ms, truncated): \
             p50 **< {} ms**, p99 **< {} ms**, max < {} ms — {}. Finer estimate, deadline → \
             SIGKILL: p50 {} ms, p99 {} ms, max {} ms. Monitor spawns on the engine thread took \
             p50 {} / p99 {} / max {} ms",
            n(&to, "timeouts"),
            x(n(&to, "event_elapsed_minus_deadline_ms/p50") + 1.0),
            x(late99),
            x(n(&to, "event_elapsed_minus_deadline_ms/max") + 1.0),
            if late99 <= 5.0 {
                "met".to_owned()
            } else {
                format!("**missed by up to {} ms**", x(late99 - 5.0))
            },
            x(n(&to, "late_to_sigkill_ms/p50")),
            x(n(&to, "late_to_sigkill_ms/p99")),
            x(n(&to, "late_to_sigkill_ms/max")),
            x(n(&to, "monitor_spawn_ms/p50")),
            x(n(&to, "monitor_spawn_ms/p99")),
            x(n(&to, "monitor_spawn_ms/max")),
        ),
        "clusterkit-bench timeouts",
    );
    let rec_ms = n(&rec, "all_online_ms");
    let restarts = n(&rec, "workload_restarts");
    row(
        w,
        &format!(
            "monitor with {} re-attachable resources (fault-injection) SIGKILLed: until all are \
             online again",
            n(&rec, "resources")
        ),
        "≤ 200 ms, 0 workload restarts",
        format!(
            "**{} ms** (median of {} kills; runs: {}), **{} workload restarts** (start counters), \
             re-attached per kill: {} — {}",
            x(rec_ms),
            n(&rec, "runs"),
            rec["all_online_ms_runs"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|v| x(v.as_f64().unwrap_or(f64::NAN)))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            restarts,
            rec["reattached_per_run"],
            verdict(rec_ms <= 200.0 && restarts == 0.0),
        ),
        "clusterkit-bench recovery",
    );
    let idle = n(&fp, "idle/rss_kib");
    row(
        w,
        "idle monitor process: VmRSS (anonymous + file-backed)",
        "≤ 2 MiB RSS",
        format!(
            "no resources: **{} KiB** ({} anonymous + {} file-backed; by mapping: {}; PSS {} KiB) — {}; \
             dummy library loaded: {} KiB; one resource: \
             {} KiB; with 1 000 resources: {} KiB. Host with 1 000 resources: {} KiB",
            idle,
            n(&fp, "idle/anon_kib"),
            n(&fp, "idle/file_kib"),
            fp["idle_by_mapping_kib"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .take(5)
                        .map(|r| format!("{} {}", r[0].as_str().unwrap_or("?"), r[1]))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            n(&fp, "idle_pss_kib"),
            miss(idle, 2048.0, false),
            n(&fp, "library_loaded/rss_kib"),
            n(&fp, "one_resource/rss_kib"),
            n(&s1, "monitor_rss_kib/0"),
            n(&s1, "host_rss_kib"),
        ),
        "clusterkit-bench footprint; clusterkit-bench scale --resources 1000",
    );
    let by_call = |v: &Value| {
        v["by_call"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        format!(
                            "{} {}",
                            r[0].as_str().unwrap_or("?"),
                            x(r[1].as_f64().unwrap_or(f64::NAN))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    row(
        w,
        "profile of one round trip: system calls, context switches, instructions per check",
        "—",
        format!(
            "monitor: {} syscalls ({}), {} context switches (with this client), {} instructions; \
             full host + monitor: {} syscalls ({}), {} context switches",
            x(n(&prof, "monitor_syscalls_per_check/total")),
            by_call(&prof["monitor_syscalls_per_check"]),
            x(n(&prof, "monitor_perf_per_check/context_switches")),
            x(n(&prof, "monitor_instructions_per_check/instructions")),
            x(n(&prof, "full_host_syscalls_per_check/total")),
            by_call(&prof["full_host_syscalls_per_check"]),
            x(n(&prof, "full_host_perf_per_check/context_switches")),
        ),
        "clusterkit-bench profile",
    );
    if let Some(c) = &compare {
        let futex = |key: &str| {
            prof[key]["by_call"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r[0] == "futex"))
                .and_then(|r| r[1].as_f64())
                .unwrap_or(0.0)
        };
        row(
            w,
            "the one improvement (monitor pool: idle workers on a stack, one claimed and \
             unparked per ready resource; see below), before → after, same run",
            "—",
            format!(
                "10 000 resources ({} s each): monitor CPU per check {} → **{} µs**, host + \
                 monitors {} → **{} %** of a core, monitor threads {} → {}, check latency p50 \
                 {} → {} µs, p99 {} → {} µs. Round trip over the protocol: syscalls per check {} \
                 → {} (futex {} → {}), context switches {} → {}, monitor instructions {} → {}; \
                 p50 same core {} → {} µs, cross core {} → {} µs",
                x(n(c, "after/window_s")),
                x(n(c, "before/monitor_cpu_per_check_us")),
                x(n(c, "after/monitor_cpu_per_check_us")),
                x(n(c, "before/cpu_share_of_one_core_pct")),
                x(n(c, "after/cpu_share_of_one_core_pct")),
                n(c, "before/monitor_threads/0"),
                n(c, "after/monitor_threads/0"),
                x(n(c, "before/last_check_latency_us/p50")),
                x(n(c, "after/last_check_latency_us/p50")),
                x(n(c, "before/last_check_latency_us/p99")),
                x(n(c, "after/last_check_latency_us/p99")),
                x(n(&prof, "compare_monitor_syscalls_per_check/total")),
                x(n(&prof, "monitor_syscalls_per_check/total")),
                x(futex("compare_monitor_syscalls_per_check")),
                x(futex("monitor_syscalls_per_check")),
                x(n(&prof, "compare_monitor_perf_per_check/context_switches")),
                x(n(&prof, "monitor_perf_per_check/context_switches")),
                x(n(
                    &prof,
                    "compare_monitor_instructions_per_check/instructions"
                )),
                x(n(&prof, "monitor_instructions_per_check/instructions")),
                x(n(same, "compare_monitor/monitor/p50_us")),
                x(n(same, "monitor/p50_us")),
                x(n(cross, "compare_monitor/monitor/p50_us")),
                x(n(cross, "monitor/p50_us")),
            ),
            "CK_BENCH_BEFORE_POOL=6ff5ea9~1 scripts/bench",
        );
    }
    let _ = writeln!(w);
    let notes_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("NOTES.md");
    if let Ok(notes) = std::fs::read_to_string(&notes_path) {
        let _ = writeln!(w, "{}", notes.trim_end());
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "## Raw profile of this run\n");
    let _ = writeln!(
        w,
        "Hottest functions of the monitor (callgrind, exclusive instructions, long run):\n"
    );
    let _ = writeln!(w, "```");
    if let Some(lines) = prof["monitor_instructions_per_check"]["top_functions_long_run"].as_array()
    {
        for l in lines {
            let _ = writeln!(w, "{}", l.as_str().unwrap_or_default());
        }
    }
    let _ = writeln!(w, "```\n");
    let _ = writeln!(
        w,
        "Every result of this run is in `target/bench/results/*.json` (medians, every round, \
         every percentile)."
    );
    std::fs::write(&opts.markdown, md)
}
