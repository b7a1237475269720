//! `static-host`: a custom host binary with four resource types linked in:
//! no shared object, no `dlopen`. It registers them, is its own monitor
//! executable, and runs the seeds' outage: four resources share one
//! monitor, one `looks_alive` hangs; the monitor is killed at the deadline,
//! the other three re-attach without a restart, and the culprit is isolated
//! in a monitor of its own and restarted.
//!
//! ```text
//! static-host WORK_DIR DNS_SERVER ZONE TSIG_KEY_NAME TSIG_SECRET
//! ```
//!
//! DNS_SERVER (`ip:port`) accepts updates of ZONE signed with the TSIG key.
//! Prints one `ok: …` line per check and `outage survived`; exits 1 with
//! `FAILED: …` lines otherwise.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clusterkit::{ControlCode, Logger, Properties, ResourceState};
use clusterkit_host::{
    EventKind, HostBuilder, MonitorProgram, Placement, ResourceConfig, Timing, static_library_path,
};

/// The longest any one step may take.
const STEP_LIMIT: Duration = Duration::from_secs(120);

fn text(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

fn run(args: &[String]) -> Result<Vec<(bool, String)>, String> {
    let [work_dir, dns_server, zone, key_name, secret] = args else {
        return Err(
            "usage: static-host WORK_DIR DNS_SERVER ZONE TSIG_KEY_NAME TSIG_SECRET".to_owned(),
        );
    };
    let work_dir = PathBuf::from(work_dir);
    for sub in ["state", "app", "dummy"] {
        std::fs::create_dir_all(work_dir.join(sub)).map_err(|e| format!("{sub}: {e}"))?;
    }
    let image = work_dir.join("data.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(16 << 20))
        .map_err(|e| format!("creating {}: {e}", image.display()))?;
    // Formatting runs the linked disk type in this process, through the
    // same C table a monitor uses.
    let disk = clusterkit_loader::Library::from_static(
        &clusterkit_disk::CLUSTERKIT_LIBRARY,
        Logger::discard(),
    )
    .map_err(|e| e.to_string())?;
    let mut format_input = Properties::new();
    format_input.insert("path", text(&image)?);
    disk.resource_type("disk")
        .ok_or("the linked disk crate has no `disk` type")?
        .control(ControlCode::type_specific(1), &format_input.encode())
        .map_err(|e| format!("formatting {}: {e}", image.display()))?;
    drop(disk);

    let control = work_dir.join("app/culprit.control");
    let timing = Timing {
        looks_alive_interval: Duration::from_millis(300),
        is_alive_interval: Duration::from_millis(1000),
        deadlock_timeout: Duration::from_millis(1500),
        pending_timeout: Duration::from_secs(30),
        ..Timing::default()
    };
    let core = |name: &str, library: &str, type_name: &str| {
        ResourceConfig::new(name, static_library_path(library), type_name)
            .placement(Placement::Core)
    };
    let host = HostBuilder::new(work_dir.join("state"), MonitorProgram::CurrentExe)
        .defaults(timing)
        .resource(
            core("web", "dummy", "dummy").property("state_dir", text(&work_dir.join("dummy"))?),
        )
        .resource(core("data", "disk", "disk").property("path", text(&image)?))
        .resource(
            core("name", "network-name", "network-name")
                .property("name", format!("web.{zone}"))
                .property("address", "127.0.0.1")
                .property("zone", zone.as_str())
                .property("servers", vec![dns_server.clone()])
                .property("tsig_key_name", key_name.as_str())
                .property("tsig_secret", secret.as_str()),
        )
        .resource(
            core("culprit", "fault-injection", "fault-injection")
                .property("state_dir", text(&work_dir.join("app"))?)
                .property("control_file", text(&control)?),
        )
        .start()
        .map_err(|e| e.to_string())?;
    let result = outage(&host, &control);
    let stopped = host.stop_all(STEP_LIMIT).map_err(|e| e.to_string());
    let mut checks = result?;
    checks.push((
        stopped.is_ok(),
        format!("every resource stopped and closed: {stopped:?}"),
    ));
    Ok(checks)
}

fn outage(host: &clusterkit_host::Host, control: &Path) -> Result<Vec<(bool, String)>, String> {
    let events = host.subscribe();
    for name in ["web", "data", "name", "culprit"] {
        host.online(name).map_err(|e| e.to_string())?;
    }
    host.wait_for(STEP_LIMIT, "every resource online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .map_err(|e| format!("{e}: {:?}", host.status()))?;
    let before = host.status();
    let shared_pid = before[0].monitor_pid;
    let shared = before.iter().all(|s| s.monitor_pid == shared_pid) && shared_pid.is_some();
    while events.try_recv().is_ok() {}

    std::fs::write(control, "hang looks_alive\n").map_err(|e| e.to_string())?;
    let deadline = Instant::now() + STEP_LIMIT;
    let mut timed_out_call = None;
    let mut reattached = BTreeSet::new();
    let mut culprit_back = false;
    while !(culprit_back && reattached.len() == 3) {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = events.recv_timeout(left).map_err(|_| {
            format!(
                "the recovery did not complete in time (timed out: {timed_out_call:?}, \
                 re-attached: {reattached:?}, culprit back: {culprit_back})"
            )
        })?;
        match e.kind {
            EventKind::CallTimedOut => {
                // Diagnosed: let the restarted culprit behave.
                std::fs::write(control, "").map_err(|e| e.to_string())?;
                timed_out_call = Some(format!(
                    "{} {}",
                    e.resource.clone().unwrap_or_default(),
                    e.str_field("call").unwrap_or_default()
                ));
            }
            EventKind::ResourceReattached => {
                reattached.extend(e.resource.clone());
            }
            EventKind::ResourceOnline if e.resource.as_deref() == Some("culprit") => {
                culprit_back = true;
            }
            _ => {}
        }
    }
    let after = host.status();
    let culprit = after
        .iter()
        .find(|s| s.name == "culprit")
        .ok_or("culprit missing")?;
    let others_restarted: u64 = after
        .iter()
        .filter(|s| s.name != "culprit")
        .map(|s| s.restarts)
        .sum();
    let others_together = after
        .iter()
        .filter(|s| s.name != "culprit")
        .all(|s| s.monitor_pid.is_some() && s.monitor_pid == after[0].monitor_pid);
    let alone = after
        .iter()
        .filter(|s| s.monitor_pid == culprit.monitor_pid)
        .count()
        == 1;
    Ok(vec![
        (
            shared,
            format!("four linked-in resources online in one monitor (pid {shared_pid:?})"),
        ),
        (
            timed_out_call.as_deref() == Some("culprit looks_alive"),
            format!("the hung call was found at its deadline: {timed_out_call:?}"),
        ),
        (
            reattached.iter().eq(["data", "name", "web"].iter()),
            format!("re-attached without a restart: {reattached:?}"),
        ),
        (
            others_restarted == 0 && others_together,
            format!(
                "the others share a new monitor and were never restarted (restarts: {others_restarted})"
            ),
        ),
        (
            culprit.separate_monitor && alone && culprit.monitor_pid != shared_pid,
            format!(
                "the culprit is isolated in a monitor of its own (pid {:?})",
                culprit.monitor_pid
            ),
        ),
        (
            after.iter().all(|s| s.state == ResourceState::Online),
            format!(
                "everything online again: {:?}",
                after
                    .iter()
                    .map(|s| (s.name.as_str(), s.state))
                    .collect::<Vec<_>>()
            ),
        ),
    ])
}

fn main() -> ExitCode {
    // First: register the linked-in types, which this binary's monitors
    // (the same binary, re-executed) resolve `static:NAME` against.
    clusterkit_host::register_static_library("dummy", &clusterkit_dummy::CLUSTERKIT_LIBRARY);
    clusterkit_host::register_static_library("disk", &clusterkit_disk::CLUSTERKIT_LIBRARY);
    clusterkit_host::register_static_library(
        "network-name",
        &clusterkit_network_name::CLUSTERKIT_LIBRARY,
    );
    clusterkit_host::register_static_library(
        "fault-injection",
        &clusterkit_fault_injection::CLUSTERKIT_LIBRARY,
    );
    clusterkit_host::run_if_monitor();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(checks) => {
            let mut ok = true;
            for (passed, text) in &checks {
                println!("{}: {text}", if *passed { "ok" } else { "FAILED" });
                ok &= passed;
            }
            if ok {
                println!("outage survived");
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
