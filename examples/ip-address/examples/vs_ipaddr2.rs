//! The benchmark of `docs/BENCHMARKS.md`'s "IP address" section: the
//! native `ip-address` type beside OCF's `IPaddr2` run through the `ocf`
//! type, in one run, on a veth pair in a network namespace of its own.
//!
//! Usage (`scripts/bench-ip-address` builds everything and runs it):
//! `vs_ipaddr2 MONITOR IP_ADDRESS_LIB OCF_LIB DUMMY_LIB [ROUNDS]`
//!
//! The `dummy` type (a state file) is measured the same way, as the floor:
//! what the host and a monitor cost per check at this rate, whatever the
//! resource.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use clusterkit::ResourceState;
use clusterkit_host::{HostBuilder, MonitorProgram, ResourceConfig, RestartAction, Timing};

const WINDOW: Duration = Duration::from_secs(4);
const INTERVAL: Duration = Duration::from_millis(100);
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: vs_ipaddr2 MONITOR IP_ADDRESS_LIB OCF_LIB DUMMY_LIB [ROUNDS]");
        std::process::exit(2);
    }
    let (monitor, native_lib, ocf_lib, dummy_lib) = (
        PathBuf::from(&args[1]),
        PathBuf::from(&args[2]),
        PathBuf::from(&args[3]),
        PathBuf::from(&args[4]),
    );
    let rounds: usize = args.get(5).and_then(|r| r.parse().ok()).unwrap_or(5);
    network();
    let rsc_tmp = std::env::temp_dir().join(format!("ck-bench-ip-{}", std::process::id()));
    let state = rsc_tmp.join("state");
    let dummy_dir = rsc_tmp.join("dummy");
    std::fs::create_dir_all(&dummy_dir).unwrap();
    let timing = Timing {
        looks_alive_interval: INTERVAL,
        is_alive_interval: Duration::from_secs(3600),
        deadlock_timeout: Duration::from_secs(20),
        pending_timeout: Duration::from_secs(20),
        ..Timing::default()
    };
    let native = |name: &str| {
        ResourceConfig::new(name, &native_lib, "ip-address")
            .property("address", "192.0.2.10")
            .property("prefix_length", 24u32)
            .property("interface", "ck0")
    };
    let resources = [
        (
            "dummy (floor)",
            ResourceConfig::new("dummy", &dummy_lib, "dummy")
                .property("state_dir", dummy_dir.to_str().unwrap()),
        ),
        ("native", native("native")),
        (
            "native-no-probe",
            native("native-no-probe")
                .property("probe_wait", Duration::ZERO)
                .property("announcements", 1u32),
        ),
        (
            "ipaddr2",
            ResourceConfig::new("ipaddr2", &ocf_lib, "ocf")
                .property("agent", "heartbeat/IPaddr2")
                .property("rsc_tmp", rsc_tmp.join("rsc").to_str().unwrap())
                .property(
                    "parameters",
                    vec![
                        "ip=192.0.2.10".to_owned(),
                        "cidr_netmask=24".into(),
                        "nic=ck0".into(),
                    ],
                ),
        ),
    ];
    let mut builder = HostBuilder::new(&state, MonitorProgram::Path(monitor)).defaults(timing);
    for (_, config) in &resources {
        builder = builder.resource(
            config
                .clone()
                .separate_monitor()
                .timing(|t| t.restart_action = Some(RestartAction::None)),
        );
    }
    let host = builder.start().expect("starting the host");
    let names: Vec<&str> = resources.iter().map(|(_, c)| c.name.as_str()).collect();

    let mut online_ms: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut cpu_us: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut host_us: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        for (i, name) in names.iter().enumerate() {
            let started = Instant::now();
            host.online(name).unwrap();
            host.wait_for_state(name, ResourceState::Online, PATIENCE)
                .unwrap();
            online_ms[i].push(started.elapsed().as_secs_f64() * 1e3);

            let status = host.resource_status(name).unwrap();
            let pid = status.monitor_pid.expect("a monitor");
            let (cpu0, host0, checks0) = (process_cpu(pid), self_cpu(), status.health_checks);
            std::thread::sleep(WINDOW);
            let status = host.resource_status(name).unwrap();
            let checks = (status.health_checks - checks0) as f64;
            cpu_us[i].push((process_cpu(pid) - cpu0).as_secs_f64() * 1e6 / checks);
            host_us[i].push((self_cpu() - host0).as_secs_f64() * 1e6 / checks);

            host.offline(name).unwrap();
            host.wait_for_state(name, ResourceState::Offline, PATIENCE)
                .unwrap();
        }
    }
    host.stop_all(PATIENCE).unwrap();
    let _ = std::fs::remove_dir_all(&rsc_tmp);

    println!(
        "| resource | time to online, median (runs) | CPU per `looks_alive`, monitor side incl. agent processes, median | host side |"
    );
    println!("|---|---|---|---|");
    for (i, (label, _)) in resources.iter().enumerate() {
        println!(
            "| {label} | {:.1} ms ({}) | {:.1} µs | {:.1} µs |",
            median(&online_ms[i]),
            online_ms[i]
                .iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            median(&cpu_us[i]),
            median(&host_us[i]),
        );
    }
    let (floor, native, ipaddr2) = (median(&cpu_us[0]), median(&cpu_us[1]), median(&cpu_us[3]));
    println!(
        "\nMonitor-side CPU per check: IPaddr2 through `ocf` {:.0}× the native type's; above the dummy floor, {:.0}× ({:.1} µs vs {:.1} µs). {rounds} interleaved rounds, {WINDOW:?} windows, a check every {INTERVAL:?}.",
        ipaddr2 / native,
        (ipaddr2 - floor) / (native - floor),
        ipaddr2 - floor,
        native - floor,
    );
}

/// Moves this thread (and the host and monitors it starts) to a new network
/// namespace with a veth pair `ck0`/`ck1`, both up.
fn network() {
    // SAFETY: unshare(2) changes the calling thread's namespace only.
    let unshared = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(unshared, 0, "unshare: {}", std::io::Error::last_os_error());
    for args in [
        &["link", "add", "ck0", "type", "veth", "peer", "name", "ck1"][..],
        &["link", "set", "ck0", "up"],
        &["link", "set", "ck1", "up"],
    ] {
        let ok = Command::new("ip").args(args).status().unwrap().success();
        assert!(ok, "ip {args:?}");
    }
}

/// CPU time of `pid`: its live threads (scheduler nanoseconds) plus the
/// children it has reaped (the agents and what they ran).
fn process_cpu(pid: u32) -> Duration {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            ns += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    // Fields 16 and 17 of proc(5), counted from `state` (field 3).
    let ticks: u64 = fields[13].parse::<u64>().unwrap() + fields[14].parse::<u64>().unwrap();
    // SAFETY: sysconf takes an integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_nanos(ns) + Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// CPU time of this process (the host), all threads.
fn self_cpu() -> Duration {
    // SAFETY: getrusage fills in the struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid rusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
