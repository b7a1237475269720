//! Resources come online in real monitor processes, are checked on
//! schedule, and go offline.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use clusterkit::ResourceState;
use clusterkit_host::{EventKind, Placement};
use clusterkit_testkit::TempDir;
use common::*;

#[test]
fn a_hundred_resources_across_three_monitors() {
    let dir = TempDir::new("host-hundred");
    let mut b = builder(dir.path());
    let placements = [Placement::Core, Placement::Storage, Placement::Default];
    for i in 0..100 {
        b = b.resource(dummy(&format!("r{i:03}"), dir.path()).placement(placements[i % 3]));
    }
    let host = b.start().expect("host starts");
    let events = host.subscribe();
    for i in 0..100 {
        host.online(&format!("r{i:03}")).unwrap();
    }
    host.wait_for(PATIENCE, "all online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .unwrap();
    let status = host.status();
    let pids: HashSet<u32> = status
        .iter()
        .map(|s| s.monitor_pid.expect("placed"))
        .collect();
    assert_eq!(pids.len(), 3, "one monitor per placement");
    for i in 0..100 {
        assert!(dir.path().join(format!("r{i:03}.state")).exists());
    }
    // Checked on schedule: every resource gets looks_alive results.
    host.wait_for(PATIENCE, "a health check of every resource", |s| {
        s.iter().all(|r| r.last_check_latency.is_some())
    })
    .unwrap();
    for i in 0..100 {
        host.offline(&format!("r{i:03}")).unwrap();
    }
    host.wait_for(PATIENCE, "all offline", |s| {
        s.iter().all(|r| r.state == ResourceState::Offline)
    })
    .unwrap();
    for i in 0..100 {
        assert!(!dir.path().join(format!("r{i:03}.state")).exists());
    }
    let (_, seen) = wait_event(
        &events,
        "last offline",
        is(EventKind::ResourceOffline, "r099"),
    );
    assert!(seen.iter().any(|e| e.kind == EventKind::ResourceOnline));
    host.shutdown();
}

#[test]
fn pending_online_reports_and_completes() {
    let dir = TempDir::new("host-pending");
    let host = builder(dir.path())
        .resource(dummy("slow", dir.path()).property("online_delay", Duration::from_millis(2500)))
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("slow").unwrap();
    // 2.5 s in total is past the 1 s pending timeout: the reports keep it alive.
    wait_event(&events, "pending", is(EventKind::ResourcePending, "slow"));
    let (_, seen) = wait_event(&events, "online", is(EventKind::ResourceOnline, "slow"));
    assert!(
        !seen.iter().any(|e| e.kind == EventKind::ResourceFailed),
        "{seen:?}"
    );
    assert_eq!(
        host.resource_status("slow").unwrap().state,
        ResourceState::Online
    );
}

#[test]
fn stop_all_takes_everything_offline_and_closes() {
    let dir = TempDir::new("host-stop-all");
    let host = builder(dir.path())
        .resource(dummy("a", dir.path()))
        .resource(dummy("b", dir.path()).depends_on("a"))
        .start()
        .unwrap();
    host.online("b").unwrap();
    host.wait_for(PATIENCE, "both online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .unwrap();
    host.stop_all(PATIENCE).unwrap();
    assert!(!dir.path().join("a.state").exists());
    assert!(!dir.path().join("b.state").exists());
    let events = std::fs::read_to_string(dir.path().join("host/events.jsonl")).unwrap();
    assert!(
        events
            .lines()
            .last()
            .unwrap()
            .contains("\"kind\":\"host_stopped\"")
    );
}
