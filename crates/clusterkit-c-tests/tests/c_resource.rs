//! A resource type written in C (`examples/c-resource/pidfile_resource.c`)
//! runs in the Rust host: lifecycle, health checks, and re-attach to the
//! same process after its monitor is killed.

use std::path::PathBuf;
use std::time::Duration;

use clusterkit::ResourceState;
use clusterkit_host::{
    EventKind, HostBuilder, MonitorProgram, ProcessControl, ResourceConfig, SystemProcesses, Timing,
};
use clusterkit_testkit::{TempDir, compile_c_file_library, monitor_binary, workspace_root};

const PATIENCE: Duration = Duration::from_secs(60);

fn pidfile_library(dir: &TempDir) -> PathBuf {
    let out = dir.path().join("libpidfile_resource.so");
    compile_c_file_library(
        &workspace_root().join("examples/c-resource/pidfile_resource.c"),
        &out,
    );
    out
}

fn read_pid(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.starts_with(" Z"))
    })
}

#[test]
fn the_c_resource_runs_and_is_reattached_after_a_monitor_kill() {
    let dir = TempDir::new("c-resource");
    let pidfile = dir.path().join("sleeper.pid");
    let timing = Timing {
        looks_alive_interval: Duration::from_millis(100),
        is_alive_interval: Duration::from_millis(300),
        deadlock_timeout: Duration::from_millis(1000),
        ..Timing::default()
    };
    let host = HostBuilder::new(
        dir.path().join("host"),
        MonitorProgram::Path(monitor_binary()),
    )
    .defaults(timing)
    .resource(
        ResourceConfig::new("sleeper", pidfile_library(&dir), "pidfile-process")
            .property("command", vec!["sleep".to_owned(), "1000".to_owned()])
            .property("pidfile", pidfile.to_str().unwrap()),
    )
    .start()
    .unwrap();
    let events = host.subscribe();
    host.online("sleeper").unwrap();
    host.wait_for_state("sleeper", ResourceState::Online, PATIENCE)
        .unwrap();
    let pid = read_pid(&pidfile);
    assert!(alive(pid));
    host.wait_for(PATIENCE, "health checks", |s| s[0].health_checks >= 3)
        .unwrap();
    assert_eq!(
        host.resource_status("sleeper").unwrap().last_health,
        Some(clusterkit::Health::Healthy)
    );

    let monitor = host
        .resource_status("sleeper")
        .unwrap()
        .monitor_pid
        .unwrap();
    SystemProcesses.kill(monitor).unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let e = events
            .recv_timeout(deadline - std::time::Instant::now())
            .expect("re-attach event");
        assert_ne!(e.kind, EventKind::ResourceRestarted, "{e}");
        if e.kind == EventKind::ResourceReattached {
            break;
        }
    }
    host.wait_for(PATIENCE, "online in a new monitor", |s| {
        s[0].state == ResourceState::Online && s[0].monitor_pid.is_some_and(|p| p != monitor)
    })
    .unwrap();
    assert_eq!(read_pid(&pidfile), pid, "the same process");
    assert!(alive(pid));

    host.offline("sleeper").unwrap();
    host.wait_for_state("sleeper", ResourceState::Offline, PATIENCE)
        .unwrap();
    assert!(!alive(pid), "offline stopped the process");
    assert!(!pidfile.exists());
}
