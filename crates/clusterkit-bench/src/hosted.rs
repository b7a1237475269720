//! Benchmark rows 3–6 (`docs/BENCHMARKS.md`) with the real host ([`clusterkit_host::HostBuilder`],
//! `MonitorProgram::Path` to the release `clusterkit-monitor`): scale,
//! timeout accuracy, recovery after a monitor is killed, footprint.
//!
//! Many resources are brought online the way a restarted host finds them:
//! the state file says "online", the workload is already there (the
//! dummy's state file, the fault-injection's running file), and the host
//! re-attaches. That starts 10 000 resources in seconds, where 10 000
//! operator `online` commands would each rewrite the state file.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clusterkit::ResourceState;
use clusterkit_host::{
    Desired, Event, EventKind, Host, HostBuilder, MonitorProgram, PersistedResource,
    PersistedState, Placement, ProcessControl, ResourceConfig, ResourceStatus, SystemProcesses,
    Timing,
};
use serde_json::{Value, json};

use crate::link::MonitorLink;
use crate::sys::{self, Summary, median};

/// How long any start-up or recovery may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(300);

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Writes `<state>/state.json` saying every resource in `names` is wanted
/// online (as a host that ran before leaves it).
fn persist_online(state: &Path, names: impl Iterator<Item = String>) -> io::Result<()> {
    std::fs::create_dir_all(state)?;
    let resources = names
        .map(|n| {
            (
                n,
                PersistedResource {
                    desired: Desired::Online,
                    ..PersistedResource::default()
                },
            )
        })
        .collect();
    let persisted = PersistedState {
        version: 1,
        resources,
        clock: None,
    };
    std::fs::write(
        state.join("state.json"),
        serde_json::to_vec(&persisted).map_err(err)?,
    )
}

fn timing(looks_alive: Duration, deadlock: Duration) -> Timing {
    let mut t = Timing {
        looks_alive_interval: looks_alive,
        // Only looks_alive is measured: is_alive stays out of the window.
        is_alive_interval: Duration::from_secs(3600),
        deadlock_timeout: deadlock,
        pending_timeout: deadlock,
        ..Timing::default()
    };
    t.restart.delay = Duration::from_millis(50);
    t
}

fn all_online(s: &[ResourceStatus]) -> bool {
    s.iter()
        .all(|r| r.state == ResourceState::Online && r.monitor_pid.is_some())
}

fn monitor_pids(host: &Host) -> Vec<u32> {
    let mut pids: Vec<u32> = host.status().iter().filter_map(|s| s.monitor_pid).collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Options of the scale benchmark.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ScaleOptions {
    /// Dummy resources.
    #[arg(long, default_value_t = 1000)]
    resources: usize,
    /// Length of the measurement window in seconds (default: 60, the
    /// published figures, or `CK_BENCH_SCALE_SECONDS` for quick iterations).
    #[arg(long, default_value_t = default_scale_seconds())]
    seconds: u64,
    /// `one`: every resource in the default monitor; `spread`: over the
    /// core, storage and default placements (three monitors).
    #[arg(long, default_value = "one")]
    monitors: String,
}

fn default_scale_seconds() -> u64 {
    std::env::var("CK_BENCH_SCALE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// `looks_alive` every second on N dummy resources: CPU share of host +
/// monitors over the window, CPU per check, RSS.
pub(crate) fn scale(opts: &ScaleOptions) -> io::Result<Value> {
    let dir = sys::scratch_dir(&format!("scale-{}", opts.resources))?;
    let (state, workload) = (dir.join("host"), dir.join("workload"));
    std::fs::create_dir_all(&workload)?;
    let names: Vec<String> = (0..opts.resources).map(|i| format!("d{i:05}")).collect();
    for n in &names {
        std::fs::write(workload.join(format!("{n}.state")), n)?;
    }
    persist_online(&state, names.iter().cloned())?;
    let library = sys::dummy_library()?;
    let placements = [Placement::Default, Placement::Core, Placement::Storage];
    let mut builder = HostBuilder::new(&state, MonitorProgram::Path(sys::monitor_path()?))
        .defaults(timing(Duration::from_secs(1), Duration::from_secs(30)));
    for (i, n) in names.iter().enumerate() {
        let placement = if opts.monitors == "spread" {
            placements[i % 3]
        } else {
            Placement::Default
        };
        builder = builder.resource(
            ResourceConfig::new(n, &library, "dummy")
                .property("state_dir", workload.to_string_lossy().as_ref())
                .placement(placement),
        );
    }
    let started = Instant::now();
    let host = builder.start().map_err(err)?;
    host.wait_for(PATIENCE, "every resource online", all_online)
        .map_err(err)?;
    let startup = started.elapsed();
    // Let the schedule settle (the first checks follow the online burst).
    std::thread::sleep(Duration::from_secs(3));
    let pids = monitor_pids(&host);
    let checks = |host: &Host| host.status().iter().map(|s| s.health_checks).sum::<u64>();
    let checks0 = checks(&host);
    // (host, monitors) CPU time.
    let cpu = |pids: &[u32]| -> io::Result<(u64, u64)> {
        let mut monitors = 0;
        for &p in pids {
            monitors += sys::proc_cpu_ns(p)?;
        }
        Ok((sys::self_cpu_ns(), monitors))
    };
    let (t0, (host0, mon0)) = (Instant::now(), cpu(&pids)?);
    std::thread::sleep(Duration::from_secs(opts.seconds));
    let ((host1, mon1), wall) = (cpu(&pids)?, t0.elapsed());
    let threads: Vec<u64> = pids.iter().map(|&p| sys::threads(p)).collect();
    let checks1 = checks(&host);
    let statuses = host.status();
    let latencies: Vec<Duration> = statuses
        .iter()
        .filter_map(|s| s.last_check_latency)
        .collect();
    let unhealthy = statuses
        .iter()
        .filter(|s| s.last_health != Some(clusterkit::Health::Healthy))
        .count();
    let host_rss = sys::rss_kib(std::process::id())?;
    let monitor_rss: Vec<u64> = pids
        .iter()
        .map(|&p| sys::rss_kib(p).map(|r| r.0))
        .collect::<io::Result<_>>()?;
    let same_pids = monitor_pids(&host) == pids;
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let (host_ns, mon_ns) = ((host1 - host0) as f64, (mon1 - mon0) as f64);
    let cpu_ns = host_ns + mon_ns;
    let checks = (checks1 - checks0) as f64;
    Ok(json!({
        "resources": opts.resources,
        "monitors": pids.len(),
        "placement": opts.monitors,
        "window_s": wall.as_secs_f64(),
        "startup_s": startup.as_secs_f64(),
        "checks": checks,
        "checks_per_s": checks / wall.as_secs_f64(),
        "cpu_share_of_one_core_pct": 100.0 * cpu_ns / wall.as_nanos() as f64,
        "cpu_per_check_us": cpu_ns / checks.max(1.0) / 1000.0,
        "host_cpu_per_check_us": host_ns / checks.max(1.0) / 1000.0,
        "monitor_cpu_per_check_us": mon_ns / checks.max(1.0) / 1000.0,
        "monitor_threads": threads,
        "last_check_latency_us": Summary::of_durations(&latencies),
        "unhealthy_at_end": unhealthy,
        "monitors_unchanged": same_pids,
        "host_rss_kib": host_rss.0,
        "monitor_rss_kib": monitor_rss,
    }))
}

/// Process control that records when each pid was killed, and how long
/// each monitor took to spawn (the engine thread waits for it).
#[derive(Default)]
struct RecordingProcesses {
    kills: Mutex<Vec<(u32, Instant)>>,
    spawns: Mutex<Vec<Duration>>,
}

impl ProcessControl for RecordingProcesses {
    fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        let t = Instant::now();
        let child = command.spawn();
        self.spawns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(t.elapsed());
        child
    }

    fn kill(&self, pid: u32) -> io::Result<()> {
        self.kills
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((pid, Instant::now()));
        SystemProcesses.kill(pid)
    }
}

/// Options of the timeout benchmark.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TimeoutOptions {
    /// Healthy dummy resources polled every second meanwhile.
    #[arg(long, default_value_t = 1000)]
    resources: usize,
    /// fault-injection resources whose `looks_alive` hangs, each in its own
    /// monitor.
    #[arg(long, default_value_t = 8)]
    hanging: usize,
    /// How long to collect timeouts.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

/// Events received by a subscriber thread, each with the instant it arrived.
fn collect_events(rx: Receiver<Event>) -> Arc<Mutex<Vec<(Instant, Event)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        while let Ok(e) = rx.recv() {
            let now = Instant::now();
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((now, e));
        }
    });
    seen
}

/// Deadline accuracy: `hanging` resources hang in `looks_alive` (1 s
/// deadline, the minimum) again and again while `resources` dummies are
/// polled every second. For each timeout: the host's own `elapsed_ms −
/// deadline_ms` from `call_timed_out` (whole milliseconds, truncated: the
/// true lateness is below the value + 1 ms), and a finer estimate: when
/// SIGKILL was sent (the host's kill call) and when `call_timed_out`
/// arrived, measured from the arrival of the hang's log line (sent as the
/// hanging call starts) minus the deadline. That estimate is biased low by
/// however late the log line is handled (it can come out negative when the
/// engine was busy).
pub(crate) fn timeouts(opts: &TimeoutOptions) -> io::Result<Value> {
    let dir = sys::scratch_dir("timeouts")?;
    let (state, workload) = (dir.join("host"), dir.join("workload"));
    std::fs::create_dir_all(&workload)?;
    let polled: Vec<String> = (0..opts.resources).map(|i| format!("d{i:05}")).collect();
    let hanging: Vec<String> = (0..opts.hanging).map(|i| format!("hang{i:02}")).collect();
    for n in &polled {
        std::fs::write(workload.join(format!("{n}.state")), n)?;
    }
    persist_online(&state, polled.iter().chain(&hanging).cloned())?;
    let deadline = Duration::from_secs(1);
    let processes = Arc::new(RecordingProcesses::default());
    let mut builder = HostBuilder::new(&state, MonitorProgram::Path(sys::monitor_path()?))
        .defaults(timing(Duration::from_secs(1), Duration::from_secs(30)))
        .process_control(processes.clone());
    let dummy = sys::dummy_library()?;
    for n in &polled {
        builder = builder.resource(
            ResourceConfig::new(n, &dummy, "dummy")
                .property("state_dir", workload.to_string_lossy().as_ref()),
        );
    }
    let fault = sys::fault_library()?;
    for n in &hanging {
        builder = builder.resource(
            ResourceConfig::new(n, &fault, "fault-injection")
                .property("state_dir", workload.to_string_lossy().as_ref())
                .property("hang_in", vec!["looks_alive".to_owned()])
                .separate_monitor()
                .timing(|t| {
                    t.looks_alive_interval = Some(Duration::from_millis(100));
                    t.deadlock_timeout = Some(deadline);
                    t.restart_threshold = Some(1_000_000);
                    t.restart_delay = Some(Duration::from_millis(50));
                }),
        );
    }
    let host = builder.start().map_err(err)?;
    let events = collect_events(host.subscribe());
    host.wait_for(PATIENCE, "the polled resources online", |s| {
        all_online(&s[..polled.len()])
    })
    .map_err(err)?;
    std::thread::sleep(Duration::from_secs(opts.seconds));
    let polled_checks: u64 = host.status()[..polled.len()]
        .iter()
        .map(|s| s.health_checks)
        .sum();
    host.shutdown();
    let events = std::mem::take(&mut *events.lock().unwrap_or_else(PoisonError::into_inner));
    let spawns = std::mem::take(
        &mut *processes
            .spawns
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let kills = std::mem::take(
        &mut *processes
            .kills
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );

    let mut hang_started: HashMap<String, Instant> = HashMap::new();
    let (mut to_kill, mut to_event, mut by_event_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut polled_timeouts = 0;
    for (at, e) in &events {
        let Some(resource) = e.resource.clone() else {
            continue;
        };
        match e.kind {
            EventKind::ResourceLog
                if e.fields["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("told to hang")) =>
            {
                hang_started.insert(resource, *at);
            }
            EventKind::CallTimedOut => {
                if !resource.starts_with("hang") {
                    polled_timeouts += 1;
                    continue;
                }
                let (Some(elapsed), Some(limit), Some(pid)) = (
                    e.fields["elapsed_ms"].as_f64(),
                    e.fields["deadline_ms"].as_f64(),
                    e.fields["pid"].as_u64(),
                ) else {
                    continue;
                };
                by_event_ms.push(elapsed - limit);
                let Some(start) = hang_started.remove(&resource) else {
                    continue;
                };
                let late = |t: Instant| (t - start).as_secs_f64() * 1e3 - limit;
                to_event.push(late(*at));
                if let Some((_, killed)) =
                    kills.iter().find(|(p, k)| *p as u64 == pid && *k > start)
                {
                    to_kill.push(late(*killed));
                }
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "polled_resources": opts.resources,
        "hanging_resources": opts.hanging,
        "deadline_ms": deadline.as_millis() as u64,
        "window_s": opts.seconds,
        "timeouts": to_kill.len(),
        "polled_checks": polled_checks,
        "polled_timeouts": polled_timeouts,
        "late_to_sigkill_ms": Summary::of(&to_kill),
        "monitor_spawn_ms": Summary::of(
            &spawns.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>()
        ),
        "late_to_event_ms": Summary::of(&to_event),
        "event_elapsed_minus_deadline_ms": Summary::of(&by_event_ms),
    }))
}

/// Options of the recovery benchmark.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RecoveryOptions {
    /// Re-attachable fault-injection resources in the killed monitor.
    #[arg(long, default_value_t = 1000)]
    resources: usize,
    /// Kills, one after another; the figure is the median.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// A monitor holding N re-attachable resources is SIGKILLed: time until
/// every resource is online again in a new monitor, and workload restarts
/// (from the fault-injection start counters; must be 0).
pub(crate) fn recovery(opts: &RecoveryOptions) -> io::Result<Value> {
    let dir = sys::scratch_dir("recovery")?;
    let (state, workload) = (dir.join("host"), dir.join("workload"));
    std::fs::create_dir_all(&workload)?;
    let names: Vec<String> = (0..opts.resources).map(|i| format!("f{i:05}")).collect();
    // The workloads run already (started by an earlier host): running files
    // (`<name>.running`, holding the name) exist, start counters are 0.
    for n in &names {
        std::fs::write(workload.join(format!("{n}.running")), n.as_bytes())?;
    }
    persist_online(&state, names.iter().cloned())?;
    let fault = sys::fault_library()?;
    let mut builder = HostBuilder::new(&state, MonitorProgram::Path(sys::monitor_path()?))
        .defaults(timing(Duration::from_secs(1), Duration::from_secs(30)));
    for n in &names {
        builder = builder.resource(
            ResourceConfig::new(n, &fault, "fault-injection")
                .property("state_dir", workload.to_string_lossy().as_ref()),
        );
    }
    let host = builder.start().map_err(err)?;
    let events = collect_events(host.subscribe());
    host.wait_for(PATIENCE, "every resource online", all_online)
        .map_err(err)?;
    let mut times_ms = Vec::new();
    let mut reattached = Vec::new();
    for run in 0..opts.runs {
        std::thread::sleep(Duration::from_secs(2));
        let pids = monitor_pids(&host);
        let [old] = pids[..] else {
            return Err(err(format!("expected one monitor, found {pids:?}")));
        };
        events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let t0 = Instant::now();
        SystemProcesses.kill(old)?;
        host.wait_for(PATIENCE, "every resource back online", |s| {
            all_online(s) && s.iter().all(|r| r.monitor_pid != Some(old))
        })
        .map_err(err)?;
        let took = t0.elapsed();
        times_ms.push(took.as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(200));
        let count = events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, e)| e.kind == EventKind::ResourceReattached)
            .count();
        reattached.push(count);
        eprintln!("recovery run {}: {took:?}, {count} re-attached", run + 1);
    }
    // Workload starts, as the library counts them (its START_COUNT control
    // code, the same number as `clusterkit_fault_injection::start_count`;
    // that crate's rlib cannot be linked beside the dummy's, both export
    // `clusterkit_startup`).
    let mut restarts = 0u64;
    for n in &names {
        let text = host.control(n, START_COUNT, &[]).map_err(err)?;
        restarts += String::from_utf8_lossy(&text)
            .trim()
            .parse::<u64>()
            .map_err(err)?;
    }
    let restarted_events = events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(_, e)| e.kind == EventKind::ResourceRestarted)
        .count();
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "resources": opts.resources,
        "runs": opts.runs,
        "all_online_ms": median(&times_ms),
        "all_online_ms_runs": times_ms,
        "reattached_per_run": reattached,
        "workload_restarts": restarts,
        "restarted_events_last_run": restarted_events,
    }))
}

/// The fault-injection type's control code answering its start count.
const START_COUNT: clusterkit::ControlCode = clusterkit::ControlCode::type_specific(1);

/// RSS of a monitor: idle with nothing loaded, with the dummy library
/// loaded, with one dummy resource open and online.
pub(crate) fn footprint() -> io::Result<Value> {
    let dir = sys::scratch_dir("footprint")?;
    let settle = || std::thread::sleep(Duration::from_millis(300));
    let mut link = MonitorLink::spawn(&sys::monitor_path()?, None, &[])?;
    settle();
    let idle = sys::rss_kib(link.pid)?;
    let idle_by_mapping = sys::rss_by_mapping(link.pid)?;
    let idle_pss = sys::pss_kib(link.pid)?;
    link.load_library(&sys::dummy_library()?)?;
    settle();
    let loaded = sys::rss_kib(link.pid)?;
    link.shutdown()?;
    let mut link = MonitorLink::spawn(&sys::monitor_path()?, None, &[])?;
    let mut props = clusterkit::Properties::new();
    props.insert("state_dir", dir.to_string_lossy().as_ref());
    props.insert("online_delay", Duration::ZERO);
    link.open_online(&sys::dummy_library()?, "dummy", "fp", &props)?;
    for _ in 0..100 {
        link.looks_alive()?;
    }
    settle();
    let one = sys::rss_kib(link.pid)?;
    link.shutdown()?;
    let _ = std::fs::remove_dir_all(&dir);
    let kib = |r: (u64, u64, u64)| json!({"rss_kib": r.0, "anon_kib": r.1, "file_kib": r.2});
    Ok(json!({
        "idle": kib(idle),
        "idle_by_mapping_kib": idle_by_mapping,
        "idle_pss_kib": idle_pss,
        "library_loaded": kib(loaded),
        "one_resource": kib(one),
    }))
}

/// The artifacts the hosted benchmarks need.
pub(crate) fn required() -> io::Result<Vec<PathBuf>> {
    Ok(vec![
        sys::monitor_path()?,
        sys::dummy_library()?,
        sys::fault_library()?,
    ])
}
