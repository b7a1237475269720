//! `clusterkit demo`: the project's main job.
//!
//! Starts the example resources on real local backends in a temp dir (an IP
//! address on a veth pair in a network namespace of the demo's own, BIND on
//! a loopback port for a network name that depends on that address, a disk
//! image, a QEMU VM), plus a
//! fault-injection resource sharing their monitor; then reproduces the
//! seeds' outage (a health check that hangs) and prints the timeline:
//! detection at the deadline, diagnostics, the monitor killed, co-hosted
//! resources re-attached with zero restarts, the culprit isolated and
//! restarted. It ends with a summary and leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::timeline;
use clusterkit::{ControlCode, Logger, Properties, ResourceState};
use clusterkit_bind::{Named, Setup};
use clusterkit_host::{
    EventKind, Host, HostBuilder, MonitorProgram, Placement, ResourceConfig, Timing,
};

/// Options of `clusterkit demo`.
#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Where the example resource libraries are (default: next to this
    /// binary, as cargo builds them, or `../lib/clusterkit` from it, as the
    /// package installs them).
    #[arg(long)]
    libraries: Option<PathBuf>,
}

/// The longest any one step may take before the demo gives up.
const STEP_LIMIT: Duration = Duration::from_secs(120);
const ZONE: &str = "demo.test";
const KEY_NAME: &str = "clusterkit-demo";

mod network;

fn step(text: &str) {
    println!("\n== {text}");
}

/// A scratch directory removed at the end, whatever happens.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The path of `name` on `PATH` or in `/usr/sbin`, or an error naming the
/// package to install.
fn tool(name: &str, package: &str) -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!("`{name}` is not installed: `apt-get install {package}` (scripts/demo does)")
        })
}

/// A BIND `named` serving [`ZONE`] on a loopback port, its files in `dir`;
/// stopped on drop.
fn start_bind(dir: &Path) -> Result<Named, String> {
    let named = tool("named", "bind9")?;
    let tsig_keygen = tool("tsig-keygen", "bind9")?;
    Named::start(&Setup {
        named: &named,
        tsig_keygen: &tsig_keygen,
        dir,
        zone: ZONE,
        key_name: KEY_NAME,
        patience: STEP_LIMIT,
    })
}

fn dig(bind: &Named, name: &str) -> String {
    Command::new("dig")
        .args([
            "+short",
            "+time=1",
            "+tries=1",
            "-p",
            &bind.addr().port().to_string(),
            "@127.0.0.1",
            name,
            "A",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn qemu_pid(run_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(run_dir.join("vm.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn disk_generation(host: &Host) -> Option<u64> {
    let bytes = host
        .control("data-disk", ControlCode::type_specific(2), b"")
        .ok()?;
    Properties::decode(&bytes).ok()?.u64("generation").ok()
}

fn start_count(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("legacy-app.starts"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

fn library(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = dir.join(format!("lib{name}.so"));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build the examples first (scripts/demo does)",
            path.display()
        ))
    }
}

/// The example libraries' directory: beside this binary (a cargo build),
/// or `../lib/clusterkit` from it (installed: `/usr/bin/clusterkit` and
/// `/usr/lib/clusterkit`).
fn default_libraries() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating clusterkit: {e}"))?;
    let bin = exe
        .parent()
        .ok_or("no directory for the clusterkit binary")?;
    let candidates = [bin.to_owned(), bin.join("../lib/clusterkit")];
    candidates
        .iter()
        .find(|d| d.join("libclusterkit_disk.so").exists())
        .cloned()
        .ok_or_else(|| {
            format!(
                "the example libraries are neither beside {} nor in {}: build them \
                 (scripts/demo does), install the package, or name their directory with --libraries",
                bin.display(),
                candidates[1].display()
            )
        })
}

pub(crate) fn run(args: &DemoArgs) -> Result<(), String> {
    let libs = match &args.libraries {
        Some(d) => d.clone(),
        None => default_libraries()?,
    };
    let network_name = library(&libs, "clusterkit_network_name")?;
    let ip_address = library(&libs, "clusterkit_ip_address")?;
    let disk = library(&libs, "clusterkit_disk")?;
    let vm = library(&libs, "clusterkit_virtual_machine")?;
    let faults = library(&libs, "clusterkit_fault_injection")?;
    tool("qemu-system-x86_64", "qemu-system-x86")?;
    tool("dig", "bind9-dnsutils")?;

    println!("clusterkit demo: one hung health check, and why it no longer takes a cluster down.");
    println!(
        "In the seeds' outage, an IsAlive call blocked on a DNS registration; Windows' RHS killed the\n\
         shared process and every resource in it restarted. Here the same hang meets clusterkit."
    );
    let scratch =
        Scratch(std::env::temp_dir().join(format!("clusterkit-demo-{}", std::process::id())));
    let dir = scratch.0.clone();
    for sub in ["bind", "vm", "app", "state"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
    }

    step("Setting up real backends in a temp dir");
    network::enter()?;
    println!(
        "  a network namespace of the demo's own, with a veth pair ({} up)",
        network::INTERFACE
    );
    let bind = start_bind(&dir.join("bind"))?;
    println!(
        "  BIND 9 (named) serving {ZONE} on {}, updates signed with TSIG key {KEY_NAME}",
        bind.addr()
    );
    let image = dir.join("data.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(16 << 20))
        .map_err(|e| format!("creating {}: {e}", image.display()))?;
    let disk_library =
        clusterkit_loader::Library::load(&disk, Logger::discard()).map_err(|e| e.to_string())?;
    let mut format_input = Properties::new();
    format_input.insert("path", image.to_str().ok_or("non-UTF-8 temp path")?);
    disk_library
        .resource_type("disk")
        .ok_or("the disk library exports no `disk` type")?
        .control(ControlCode::type_specific(1), &format_input.encode())
        .map_err(|e| format!("formatting {}: {e}", image.display()))?;
    drop(disk_library);
    println!("  a 16 MiB disk image, formatted for clusterkit reservations");
    println!("  QEMU (TCG, 64 MiB, no disk) for a virtual machine");

    let timing = Timing {
        looks_alive_interval: Duration::from_millis(500),
        is_alive_interval: Duration::from_millis(1000),
        deadlock_timeout: Duration::from_millis(2000),
        pending_timeout: Duration::from_secs(30),
        ..Timing::default()
    };
    let control = dir.join("app/legacy-app.control");
    let dir_str = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or("non-UTF-8 temp path".to_owned())
    };
    let host = HostBuilder::new(dir.join("state"), MonitorProgram::CurrentExe)
        .defaults(timing)
        .type_timing(
            "virtual-machine",
            clusterkit_host::TimingOverrides {
                deadlock_timeout: Some(Duration::from_secs(30)),
                ..Default::default()
            },
        )
        .resource(
            ResourceConfig::new("web-ip", &ip_address, "ip-address")
                .placement(Placement::Core)
                .property("address", network::ADDRESS)
                .property("prefix_length", 24u32)
                .property("interface", network::INTERFACE),
        )
        .resource(
            // As in Windows' core cluster group: the name needs its address.
            ResourceConfig::new("web-name", &network_name, "network-name")
                .placement(Placement::Core)
                .depends_on("web-ip")
                .property("name", format!("web.{ZONE}").as_str())
                .property("address", network::ADDRESS)
                .property("zone", ZONE)
                .property("servers", vec![bind.addr().to_string()])
                .property("tsig_key_name", KEY_NAME)
                .property("tsig_secret", bind.secret()),
        )
        .resource(
            ResourceConfig::new("data-disk", &disk, "disk")
                .placement(Placement::Core)
                .property("path", dir_str(&image)?.as_str()),
        )
        .resource(
            ResourceConfig::new("vm", &vm, "virtual-machine")
                .placement(Placement::Core)
                .property("run_dir", dir_str(&dir.join("vm"))?.as_str())
                .property("powerdown_grace", Duration::from_millis(500)),
        )
        .resource(
            ResourceConfig::new("legacy-app", &faults, "fault-injection")
                .placement(Placement::Core)
                .property("state_dir", dir_str(&dir.join("app"))?.as_str())
                .property("control_file", dir_str(&control)?.as_str()),
        )
        .start()
        .map_err(|e| e.to_string())?;
    let result = outage(&host, &bind, &dir, &control);
    step("Cleaning up");
    let stopped = host.stop_all(STEP_LIMIT);
    drop(bind);
    let leftover = qemu_pid(&dir.join("vm")).filter(|p| Path::new(&format!("/proc/{p}")).exists());
    match (&stopped, leftover) {
        (Ok(()), None) => {
            println!("  every resource offline and closed, QEMU and BIND stopped, temp dir removed")
        }
        (Err(e), _) => println!("  stopping reported: {e}"),
        (_, Some(pid)) => println!("  QEMU {pid} still ran after offline"),
    }
    result
}

fn status_table(host: &Host) {
    println!(
        "  {:<12} {:<16} {:<8} {:>8} {:>9}",
        "RESOURCE", "TYPE", "STATE", "MONITOR", "RESTARTS"
    );
    for s in host.status() {
        println!(
            "  {:<12} {:<16} {:<8} {:>8} {:>9}",
            s.name,
            s.type_name,
            s.state.name(),
            s.monitor_pid.map_or("-".into(), |p| p.to_string()),
            s.restarts
        );
    }
}

fn outage(host: &Host, bind: &Named, dir: &Path, control: &Path) -> Result<(), String> {
    step("Bringing five resources online in one shared monitor (placement `core`)");
    let events = host.subscribe();
    for name in ["web-ip", "web-name", "data-disk", "vm", "legacy-app"] {
        host.online(name).map_err(|e| e.to_string())?;
    }
    host.wait_for_states(STEP_LIMIT, "every resource online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .map_err(|e| format!("{e}: {:?}", host.status()))?;
    status_table(host);
    let vm_dir = dir.join("vm");
    let qemu_before = qemu_pid(&vm_dir).ok_or("no QEMU pidfile")?;
    let generation_before = disk_generation(host).ok_or("no disk reservation")?;
    let dns_before = dig(bind, &format!("web.{ZONE}"));
    let shared_pid = host
        .resource_status("legacy-app")
        .map_err(|e| e.to_string())?
        .monitor_pid;
    println!(
        "  QEMU pid {qemu_before}; disk reservation generation {generation_before}; web.{ZONE} resolves to {dns_before}"
    );
    while events.try_recv().is_ok() {}

    step("Injecting the outage: legacy-app's is_alive now blocks forever in a system call");
    std::fs::write(control, "hang is_alive\n").map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut reattached = Vec::new();
    let mut culprit_back = false;
    let deadline = t0 + STEP_LIMIT;
    while !(culprit_back && reattached.len() == 4) {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = events
            .recv_timeout(left)
            .map_err(|_| "the recovery did not complete in time".to_owned())?;
        let json = e.to_json();
        if let Some(text) = timeline::highlight(&json) {
            println!("  {}  {text}", timeline::relative(t0.elapsed()));
        }
        match e.kind {
            EventKind::CallTimedOut => {
                // The hang is diagnosed: let the restarted culprit behave.
                std::fs::write(control, "").map_err(|e| e.to_string())?;
                for line in timeline::diagnostics(&json) {
                    println!("{line}");
                }
            }
            EventKind::ResourceReattached => reattached.extend(e.resource.clone()),
            EventKind::ResourceOnline if e.resource.as_deref() == Some("legacy-app") => {
                culprit_back = true
            }
            _ => {}
        }
    }

    step("Summary");
    status_table(host);
    let status = host.status();
    let qemu_after = qemu_pid(&vm_dir);
    let generation_after = disk_generation(host);
    let dns_after = dig(bind, &format!("web.{ZONE}"));
    let restarted_others: u64 = status
        .iter()
        .filter(|s| s.name != "legacy-app")
        .map(|s| s.restarts)
        .sum();
    let culprit = status
        .iter()
        .find(|s| s.name == "legacy-app")
        .ok_or("legacy-app missing")?;
    let alone = status
        .iter()
        .filter(|s| s.monitor_pid == culprit.monitor_pid)
        .count()
        == 1;
    let checks = [
        (
            qemu_after == Some(qemu_before),
            format!("the VM kept running: QEMU pid {qemu_before} → {qemu_after:?}"),
        ),
        (
            generation_after == Some(generation_before),
            format!(
                "the disk kept its reservation: generation {generation_before} → {generation_after:?}"
            ),
        ),
        (
            dns_after == dns_before && !dns_after.is_empty(),
            format!("web.{ZONE} still resolves: {dns_after}"),
        ),
        (
            restarted_others == 0,
            format!("co-hosted resources restarted: {restarted_others}"),
        ),
        (
            culprit.separate_monitor && alone && culprit.monitor_pid != shared_pid,
            format!(
                "legacy-app isolated in its own monitor (pid {:?})",
                culprit.monitor_pid
            ),
        ),
        (
            culprit.restarts == 1 && start_count(&dir.join("app")) == 2,
            format!(
                "legacy-app restarted once (workload starts: {})",
                start_count(&dir.join("app"))
            ),
        ),
    ];
    let mut ok = true;
    for (passed, text) in &checks {
        println!("  [{}] {text}", if *passed { "ok" } else { "FAILED" });
        ok &= passed;
    }
    println!(
        "\n  RHS would have restarted all {} resources and taken the VM down; clusterkit restarted 1,\n  \
         after {:.1} s, and recorded why.",
        status.len(),
        t0.elapsed().as_secs_f64()
    );
    if ok {
        Ok(())
    } else {
        Err("the demo's checks failed (see above)".into())
    }
}
