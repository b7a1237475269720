//! Shared by the host's integration tests: library paths, a host builder
//! with short timings, event collection.
// Each test binary uses only some of these helpers, re-exported ones
// included.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::path::{Path, PathBuf};

use clusterkit_host::{HostBuilder, MonitorProgram, ResourceConfig, TimingOverrides};
use clusterkit_testkit::cdylib;

pub use clusterkit_host::testing::{PATIENCE, fast_timing, is, wait_event};

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
