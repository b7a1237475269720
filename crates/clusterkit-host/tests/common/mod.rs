//! Shared by the host's integration tests: library paths, a host builder
//! with short timings, event collection.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use clusterkit_host::{
    Event, EventKind, HostBuilder, MonitorProgram, ResourceConfig, Timing, TimingOverrides,
};
use clusterkit_testkit::cdylib;

/// The guard on every wait: far above what any step takes, so a failure
/// shows as a clear timeout rather than a hang.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn monitor_program() -> MonitorProgram {
    MonitorProgram::Path(PathBuf::from(env!("CARGO_BIN_EXE_clusterkit-monitor")))
}

pub fn dummy_library() -> PathBuf {
    cdylib("clusterkit-example-dummy", "clusterkit_dummy")
}

pub fn fault_library() -> PathBuf {
    cdylib(
        "clusterkit-example-fault-injection",
        "clusterkit_fault_injection",
    )
}

/// Short timings for tests: checks every 100 ms / 500 ms, 1 s deadlines
/// (the minimum), restarts after 50 ms.
pub fn fast_timing() -> Timing {
    let mut t = Timing {
        looks_alive_interval: Duration::from_millis(100),
        is_alive_interval: Duration::from_millis(500),
        deadlock_timeout: Duration::from_millis(1000),
        pending_timeout: Duration::from_millis(1000),
        ..Timing::default()
    };
    t.restart.delay = Duration::from_millis(50);
    t
}

pub fn builder(state_dir: &Path) -> HostBuilder {
    HostBuilder::new(state_dir.join("host"), monitor_program()).defaults(fast_timing())
}

pub fn dummy(name: &str, state_dir: &Path) -> ResourceConfig {
    ResourceConfig::new(name, dummy_library(), "dummy")
        .property("state_dir", state_dir.to_str().unwrap())
}

pub fn fault(name: &str, state_dir: &Path) -> ResourceConfig {
    ResourceConfig::new(name, fault_library(), "fault-injection")
        .property("state_dir", state_dir.to_str().unwrap())
}

pub fn overrides(edit: impl FnOnce(&mut TimingOverrides)) -> TimingOverrides {
    let mut o = TimingOverrides::default();
    edit(&mut o);
    o
}

/// Waits for the first event matching `pred`, returning it and every event
/// seen before it.
pub fn wait_event(
    events: &Receiver<Event>,
    what: &str,
    mut pred: impl FnMut(&Event) -> bool,
) -> (Event, Vec<Event>) {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if pred(&e) => return (e, seen),
            Ok(e) => seen.push(e),
            Err(_) => panic!(
                "no event {what} within {PATIENCE:?}; saw: {:#?}",
                seen.iter().map(|e| e.to_string()).collect::<Vec<_>>()
            ),
        }
    }
}

pub fn is(kind: EventKind, resource: &str) -> impl FnMut(&Event) -> bool + '_ {
    move |e| e.kind == kind && e.resource.as_deref() == Some(resource)
}
