//! Benchmark rows 1 and 2 (`docs/BENCHMARKS.md`): one `looks_alive` round trip on a trivial
//! resource, beside its floors, all in one run and interleaved round by
//! round:
//!
//! - **ping-pong**: a bare Unix-socket ping-pong between two processes with
//!   the protocol's frame sizes (18 bytes out, 19 back);
//! - **monitor**: this process speaking the protocol to a real
//!   `clusterkit-monitor` (the smallest possible host);
//! - **full host**: a real [`clusterkit_host::Host`] polling one dummy
//!   resource every millisecond, latency from `last_check_latency`;
//! - **in-process**: a direct Rust trait call, and a call through the C ABI
//!   of the loaded library;
//! - **Pacemaker's model**: fork/exec of the OCF `Dummy` agent's `monitor`.
//!
//! Each placement pins this process to CPU 0 and the other process (pong,
//! monitor) to CPU 0 ("same core") or CPU 1 ("cross core").

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterkit::{Logger, Properties, Resource, ResourceContext, ResourceType, StopFlag};
use clusterkit_host::{
    HostBuilder, MonitorProgram, ProcessControl, ResourceConfig, SystemProcesses, Timing,
};
use serde_json::{Value, json};

use crate::link::{MonitorLink, spawn_on_fd3};
use crate::sys::{self, Summary, median};

/// The OCF agent Pacemaker would fork/exec.
pub(crate) const OCF_DUMMY: &str = "/usr/lib/ocf/resource.d/heartbeat/Dummy";
/// Its OCF root.
const OCF_ROOT: &str = "/usr/lib/ocf";

/// Request and reply sizes of a `looks_alive` call on the wire (length
/// prefix included), which the ping-pong copies.
const REQUEST_LEN: usize = 4 + 14;
const REPLY_LEN: usize = 4 + 15;

/// Options of the round-trip benchmark.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Round trips per measurement.
    #[arg(long, default_value_t = 20_000)]
    checks: usize,
    /// Health checks sampled from the full host per round.
    #[arg(long, default_value_t = 2_000)]
    host_checks: usize,
    /// Interleaved rounds; figures are medians over rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// fork/execs of the OCF agent per round.
    #[arg(long, default_value_t = 100)]
    execs: usize,
    /// Another monitor executable (say, a build from before a change) to
    /// measure beside the current one, same rounds, same placements.
    #[arg(long)]
    compare_monitor: Option<PathBuf>,
}

/// The other end of the ping-pong (`clusterkit-bench pong`): echoes fixed
/// frames on fd 3 until end-of-file.
pub(crate) fn pong() -> io::Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: the parent passed the socket as fd 3; nothing else owns it.
    let mut socket = unsafe { UnixStream::from_raw_fd(3) };
    let mut request = [0u8; REQUEST_LEN];
    let reply = [7u8; REPLY_LEN];
    loop {
        match socket.read_exact(&mut request) {
            Ok(()) => socket.write_all(&reply)?,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

struct Pong {
    child: Child,
    socket: UnixStream,
}

impl Pong {
    fn spawn(cpus: &[usize]) -> io::Result<Pong> {
        let (mine, theirs) = UnixStream::pair()?;
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("pong");
        let child = spawn_on_fd3(&mut command, theirs, Some(cpus))?;
        Ok(Pong {
            child,
            socket: mine,
        })
    }

    fn round_trip(&mut self) -> io::Result<()> {
        let request = [1u8; REQUEST_LEN];
        let mut reply = [0u8; REPLY_LEN];
        self.socket.write_all(&request)?;
        self.socket.read_exact(&mut reply)
    }

    fn finish(mut self) -> io::Result<()> {
        drop(self.socket);
        self.child.wait()?;
        Ok(())
    }
}

/// Times `n` calls of `f` one by one; returns the latencies and the CPU
/// time per call of this process plus `other` (a pid read through
/// schedstat), in nanoseconds.
fn timed(
    n: usize,
    other: Option<u32>,
    mut f: impl FnMut() -> io::Result<()>,
) -> io::Result<(Summary, f64)> {
    let mut samples = Vec::with_capacity(n);
    let other_cpu = || other.map_or(Ok(0), sys::sched_cpu_ns);
    let (self0, other0) = (sys::self_cpu_ns(), other_cpu()?);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed());
    }
    let (self1, other1) = (sys::self_cpu_ns(), other_cpu()?);
    let cpu = (self1 - self0 + other1 - other0) as f64 / n as f64;
    Ok((Summary::of_durations(&samples), cpu))
}

/// Process control that pins every monitor to `cpus`.
struct PinnedProcesses {
    cpus: Vec<usize>,
}

impl ProcessControl for PinnedProcesses {
    fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        // SAFETY: the closure only calls sched_setaffinity (async-signal-safe).
        unsafe { command.pre_exec(sys::pin_in_child(&self.cpus)) };
        command.spawn()
    }

    fn kill(&self, pid: u32) -> io::Result<()> {
        SystemProcesses.kill(pid)
    }
}

/// A full host polling one dummy resource every millisecond: the latency
/// of `n` checks as the host measured them (`last_check_latency`), and the
/// CPU time per check of host + monitor over two quiet seconds.
fn full_host(dir: &Path, monitor_cpu: usize, n: usize) -> io::Result<(Summary, f64)> {
    let state = dir.join(format!("host-{monitor_cpu}"));
    let workload = dir.join(format!("workload-{monitor_cpu}"));
    std::fs::create_dir_all(&workload)?;
    let mut timing = Timing {
        looks_alive_interval: Duration::from_millis(1),
        is_alive_interval: Duration::from_secs(3600),
        deadlock_timeout: Duration::from_secs(30),
        ..Timing::default()
    };
    timing.restart.delay = Duration::from_millis(50);
    let host = HostBuilder::new(&state, MonitorProgram::Path(sys::monitor_path()?))
        .defaults(timing)
        .process_control(Arc::new(PinnedProcesses {
            cpus: vec![monitor_cpu],
        }))
        .resource(
            ResourceConfig::new("r", sys::dummy_library()?, "dummy")
                .property("state_dir", workload.to_string_lossy().as_ref()),
        )
        .start()
        .map_err(io::Error::other)?;
    host.online("r").map_err(io::Error::other)?;
    host.wait_for_state(
        "r",
        clusterkit::ResourceState::Online,
        Duration::from_secs(30),
    )
    .map_err(io::Error::other)?;
    // Warm up, then sample each check's latency as the host measured it.
    std::thread::sleep(Duration::from_millis(200));
    let mut last = host.resource_status("r").map_err(io::Error::other)?;
    let mut samples = Vec::with_capacity(n);
    while samples.len() < n {
        let mut seen = last.health_checks;
        let mut latency = None;
        host.wait_for(Duration::from_secs(10), "a health check", |s| {
            if s[0].health_checks > seen {
                seen = s[0].health_checks;
                latency = s[0].last_check_latency;
                true
            } else {
                false
            }
        })
        .map_err(io::Error::other)?;
        last.health_checks = seen;
        samples.extend(latency);
    }
    // CPU per check, with this thread asleep.
    let pid = host.status()[0]
        .monitor_pid
        .ok_or_else(|| io::Error::other("no monitor pid"))?;
    let checks0 = host
        .resource_status("r")
        .map_err(io::Error::other)?
        .health_checks;
    let (self0, mon0) = (sys::self_cpu_ns(), sys::sched_cpu_ns(pid)?);
    std::thread::sleep(Duration::from_secs(2));
    let (self1, mon1) = (sys::self_cpu_ns(), sys::sched_cpu_ns(pid)?);
    let checks1 = host
        .resource_status("r")
        .map_err(io::Error::other)?
        .health_checks;
    host.shutdown();
    let cpu = (self1 - self0 + mon1 - mon0) as f64 / (checks1 - checks0).max(1) as f64;
    Ok((Summary::of_durations(&samples), cpu))
}

/// fork/exec of the OCF `Dummy` agent's `monitor`, `n` times, unpinned:
/// wall latency, and CPU time per exec (the agent and everything it ran).
pub(crate) fn pacemaker(state: &Path, n: usize) -> io::Result<(Summary, f64)> {
    let command = |action: &str| {
        let mut c = Command::new(OCF_DUMMY);
        c.arg(action)
            .env("OCF_ROOT", OCF_ROOT)
            .env("OCF_RESKEY_state", state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure only calls sched_setaffinity (async-signal-safe).
        unsafe { c.pre_exec(sys::pin_in_child(&[])) };
        c
    };
    if !state.exists() {
        let status = command("start").status()?;
        if !status.success() {
            return Err(io::Error::other(format!("{OCF_DUMMY} start: {status}")));
        }
    }
    let mut samples = Vec::with_capacity(n);
    let cpu0 = sys::children_cpu_ns();
    for _ in 0..n {
        let t = Instant::now();
        let status = command("monitor").status()?;
        samples.push(t.elapsed());
        if !status.success() {
            return Err(io::Error::other(format!("{OCF_DUMMY} monitor: {status}")));
        }
    }
    let cpu = (sys::children_cpu_ns() - cpu0) as f64 / n as f64;
    Ok((Summary::of_durations(&samples), cpu))
}

fn dummy_properties(dir: &Path) -> io::Result<Properties> {
    let mut raw = Properties::new();
    raw.insert("state_dir", dir.to_string_lossy().as_ref());
    let schema = clusterkit_dummy::DummyType::describe().schema;
    schema
        .coerce(&raw)
        .and_then(|typed| schema.validate(&typed))
        .map_err(|e| io::Error::other(e.to_string()))
}

#[derive(Default)]
struct Series {
    p50: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
    cpu_ns: Vec<f64>,
}

impl Series {
    fn push(&mut self, (s, cpu): (Summary, f64)) {
        self.p50.push(s.p50);
        self.p99.push(s.p99);
        self.max.push(s.max);
        self.cpu_ns.push(cpu);
    }

    fn json(&self) -> Value {
        json!({
            "p50_us": median(&self.p50),
            "p99_us": median(&self.p99),
            "max_us": median(&self.max),
            "cpu_per_call_us": median(&self.cpu_ns) / 1000.0,
            "rounds": {
                "p50_us": self.p50, "p99_us": self.p99,
                "cpu_per_call_ns": self.cpu_ns,
            },
        })
    }
}

#[derive(Default)]
struct PlacementSeries {
    pingpong: Series,
    monitor: Series,
    host: Series,
    /// The `--compare-monitor` executable.
    other: Series,
    other_ratio: Vec<f64>,
    /// Per round: monitor p50 / ping-pong p50.
    ratio: Vec<f64>,
    host_ratio: Vec<f64>,
}

/// Runs the benchmark; returns its JSON result.
pub(crate) fn run(opts: &Options) -> io::Result<Value> {
    let dir = sys::scratch_dir("roundtrip")?;
    let monitor = sys::monitor_path()?;
    let library = sys::dummy_library()?;
    let props = dummy_properties(&dir)?;
    let cpus = sys::online_cpus();
    let placements: Vec<(&str, usize)> = if cpus >= 2 {
        vec![("same_core", 0), ("cross_core", 1)]
    } else {
        vec![("same_core", 0)]
    };
    sys::pin_current_thread(&[0])?;

    let mut pongs = Vec::new();
    let mut links = Vec::new();
    let mut others = Vec::new();
    for &(_, cpu) in &placements {
        pongs.push(Pong::spawn(&[cpu])?);
        let mut link = MonitorLink::spawn(&monitor, Some(&[cpu]), &[])?;
        link.open_online(&library, "dummy", &format!("rt-{cpu}"), &props)?;
        links.push(link);
        if let Some(other) = &opts.compare_monitor {
            let mut link = MonitorLink::spawn(other, Some(&[cpu]), &[])?;
            link.open_online(&library, "dummy", &format!("rt-other-{cpu}"), &props)?;
            others.push(link);
        }
    }
    // In-process: the Rust trait directly, and the C ABI of the cdylib.
    let direct = clusterkit_dummy::DummyType
        .open(
            ResourceContext::new("direct", Logger::discard(), StopFlag::new()),
            &props,
            false,
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
    std::fs::write(dir.join("direct.state"), "direct")?;
    let loaded_library = clusterkit_loader::Library::load(&library, Logger::discard())
        .map_err(|e| io::Error::other(e.to_string()))?;
    let abi = loaded_library
        .resource_type("dummy")
        .ok_or_else(|| io::Error::other("no dummy type"))?
        .open("abi", &props, false, Logger::discard())
        .map_err(|e| io::Error::other(e.to_string()))?;
    std::fs::write(dir.join("abi.state"), "abi")?;
    let healthy = |h: clusterkit::Health| {
        if h == clusterkit::Health::Healthy {
            Ok(())
        } else {
            Err(io::Error::other(format!("unhealthy: {h:?}")))
        }
    };

    // Warm-up.
    for (pong, link) in pongs.iter_mut().zip(&mut links) {
        for _ in 0..1000 {
            pong.round_trip()?;
            link.looks_alive()?;
        }
    }
    for link in &mut others {
        for _ in 0..1000 {
            link.looks_alive()?;
        }
    }

    let mut series: Vec<PlacementSeries> = placements.iter().map(|_| Default::default()).collect();
    let (mut rust, mut cabi, mut ocf) = (Series::default(), Series::default(), Series::default());
    let ocf_state = dir.join("ocf-dummy.state");
    for round in 0..opts.rounds {
        eprintln!("round trip: round {}/{}", round + 1, opts.rounds);
        for (k, &(_, cpu)) in placements.iter().enumerate() {
            let pong_pid = pongs[k].child.id();
            let pp = timed(opts.checks, Some(pong_pid), || pongs[k].round_trip())?;
            let monitor_pid = links[k].pid;
            let mon = timed(opts.checks, Some(monitor_pid), || links[k].looks_alive())?;
            if let Some(link) = others.get_mut(k) {
                let pid = link.pid;
                let other = timed(opts.checks, Some(pid), || link.looks_alive())?;
                series[k].other_ratio.push(other.0.p50 / pp.0.p50);
                series[k].other.push(other);
            }
            let host = full_host(&dir, cpu, opts.host_checks)?;
            let s = &mut series[k];
            s.ratio.push(mon.0.p50 / pp.0.p50);
            s.host_ratio.push(host.0.p50 / pp.0.p50);
            s.pingpong.push(pp);
            s.monitor.push(mon);
            s.host.push(host);
        }
        rust.push(timed(opts.checks, None, || healthy(direct.looks_alive()))?);
        cabi.push(timed(opts.checks, None, || healthy(abi.looks_alive()))?);
        ocf.push(pacemaker(&ocf_state, opts.execs)?);
    }
    for pong in pongs {
        pong.finish()?;
    }
    for link in links.into_iter().chain(others) {
        link.shutdown()?;
    }
    drop(abi);
    drop(loaded_library);
    let _ = std::fs::remove_dir_all(&dir);

    let ocf_cpu = median(&ocf.cpu_ns);
    let mut by_placement = serde_json::Map::new();
    for (k, &(name, cpu)) in placements.iter().enumerate() {
        let s = &series[k];
        let compared = opts.compare_monitor.as_ref().map(|path| {
            json!({
                "path": path,
                "monitor": s.other.json(),
                "monitor_over_pingpong_p50": median(&s.other_ratio),
            })
        });
        by_placement.insert(
            name.into(),
            json!({
                "compare_monitor": compared,
                "host_cpu": 0,
                "monitor_cpu": cpu,
                "pingpong": s.pingpong.json(),
                "monitor": s.monitor.json(),
                "full_host": s.host.json(),
                "monitor_over_pingpong_p50": median(&s.ratio),
                "full_host_over_pingpong_p50": median(&s.host_ratio),
                "ocf_cpu_over_monitor_cpu": ocf_cpu / median(&s.monitor.cpu_ns),
                "ocf_cpu_over_full_host_cpu": ocf_cpu / median(&s.host.cpu_ns),
            }),
        );
    }
    Ok(json!({
        "checks_per_round": opts.checks,
        "host_checks_per_round": opts.host_checks,
        "execs_per_round": opts.execs,
        "rounds": opts.rounds,
        "placements": by_placement,
        "in_process_rust": rust.json(),
        "in_process_c_abi": cabi.json(),
        "pacemaker_fork_exec": ocf.json(),
    }))
}

/// For `profile`: the monitor under `wrapper`, `checks` round trips.
pub(crate) fn profile_loop(checks: usize, wrapper: &[String]) -> io::Result<Value> {
    let dir = sys::scratch_dir("profile")?;
    let props = dummy_properties(&dir)?;
    let mut link = MonitorLink::spawn(&sys::monitor_path()?, None, wrapper)?;
    link.open_online(&sys::dummy_library()?, "dummy", "p", &props)?;
    let t = Instant::now();
    for _ in 0..checks {
        link.looks_alive()?;
    }
    let elapsed = t.elapsed();
    link.shutdown()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({ "checks": checks, "elapsed_s": elapsed.as_secs_f64() }))
}

/// The artifacts this benchmark needs, for a clear error up front.
pub(crate) fn required() -> io::Result<Vec<PathBuf>> {
    Ok(vec![
        sys::monitor_path()?,
        sys::dummy_library()?,
        PathBuf::from(OCF_DUMMY),
    ])
}
