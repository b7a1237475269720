//! Health polling, restart policy, pending deadlines, concurrency and bad
//! monitor data, with the fault-injection type in real monitor processes.

mod common;

use std::time::Duration;

use clusterkit::ResourceState;
use clusterkit_fault_injection::start_count;
use clusterkit_host::{EventKind, RestartAction};
use clusterkit_testkit::TempDir;
use common::*;

fn control_file(dir: &TempDir, name: &str) -> std::path::PathBuf {
    dir.path().join(format!("{name}.control"))
}

#[test]
fn failing_checks_restart_then_fail_over() {
    let dir = TempDir::new("host-restart");
    let control = control_file(&dir, "f");
    let host = builder(dir.path())
        .resource(
            fault("f", dir.path())
                .property("control_file", control.to_str().unwrap())
                .timing(|t| t.restart_threshold = Some(2)),
        )
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("f").unwrap();
    wait_event(&events, "online", is(EventKind::ResourceOnline, "f"));
    assert_eq!(start_count(dir.path(), "f"), 1);

    std::fs::write(&control, "fail looks_alive\nfail is_alive\n").unwrap();
    let (looks, _) = wait_event(
        &events,
        "looks_alive failure",
        is(EventKind::HealthFailed, "f"),
    );
    assert_eq!(looks.str_field("check"), Some("looks_alive"));
    let (thorough, _) = wait_event(
        &events,
        "is_alive failure",
        is(EventKind::HealthFailed, "f"),
    );
    assert_eq!(thorough.str_field("check"), Some("is_alive"));
    let (failed, _) = wait_event(
        &events,
        "resource failure",
        is(EventKind::ResourceFailed, "f"),
    );
    let (restarted, _) = wait_event(&events, "restart", is(EventKind::ResourceRestarted, "f"));
    let waited = restarted.ts.duration_since(failed.ts).unwrap();
    assert!(
        waited >= Duration::from_millis(50),
        "restarted after {waited:?}, before restart_delay"
    );

    // The faults stay: the second failure restarts again, the third passes
    // the threshold of 2 and asks for failover.
    let (exceeded, seen) = wait_event(
        &events,
        "threshold",
        is(EventKind::RestartThresholdExceeded, "f"),
    );
    assert_eq!(exceeded.field("threshold").unwrap(), 2);
    assert_eq!(
        seen.iter()
            .filter(|e| e.kind == EventKind::ResourceRestarted)
            .count(),
        1
    );
    wait_event(&events, "failover", is(EventKind::FailoverRequested, "f"));
    let status = host.resource_status("f").unwrap();
    assert_eq!(status.state, ResourceState::Failed);
    assert_eq!(status.restarts, 2);
    assert_eq!(
        start_count(dir.path(), "f"),
        3,
        "started once, restarted twice"
    );

    // An operator online clears the failure; without faults it stays up.
    std::fs::write(&control, "").unwrap();
    host.online("f").unwrap();
    host.wait_for_state("f", ResourceState::Online, PATIENCE)
        .unwrap();
}

#[test]
fn degraded_is_reported_and_never_restarted() {
    let dir = TempDir::new("host-degraded");
    let host = builder(dir.path())
        .resource(fault("d", dir.path()).property("degrade_in", "looks_alive,is_alive"))
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("d").unwrap();
    for _ in 0..5 {
        let (e, seen) = wait_event(&events, "degraded", is(EventKind::HealthDegraded, "d"));
        assert!(e.str_field("reason").unwrap().contains("told to degrade"));
        assert!(
            !seen.iter().any(|e| e.kind == EventKind::ResourceFailed),
            "{seen:?}"
        );
    }
    let status = host.resource_status("d").unwrap();
    assert_eq!(status.state, ResourceState::Online);
    assert!(status.degraded_count >= 5);
    assert_eq!(status.restarts, 0);
    assert_eq!(start_count(dir.path(), "d"), 1);
}

#[test]
fn a_pending_online_whose_reports_stop_fails_at_the_gap() {
    let dir = TempDir::new("host-stall");
    let host = builder(dir.path())
        .resource(
            fault("s", dir.path())
                .property("pending_online", Duration::from_secs(30))
                .property("stall_reports", true)
                .timing(|t| t.restart_action = Some(RestartAction::None)),
        )
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("s").unwrap();
    let (pending, _) = wait_event(&events, "pending", is(EventKind::ResourcePending, "s"));
    let (failed, _) = wait_event(&events, "failure", is(EventKind::ResourceFailed, "s"));
    assert!(
        failed
            .str_field("reason")
            .unwrap()
            .starts_with("no progress report for 1000 ms"),
        "{failed:?}"
    );
    let gap = failed.ts.duration_since(pending.ts).unwrap();
    assert!(gap >= Duration::from_millis(1000), "failed after {gap:?}");
    host.wait_for_state("s", ResourceState::Failed, PATIENCE)
        .unwrap();
}

#[test]
fn a_slow_check_does_not_delay_the_others_in_its_monitor() {
    let dir = TempDir::new("host-slow");
    // `slow` spends 800 ms in every is_alive (under its 1 s deadline), which
    // is due every 500 ms: it is always busy.
    let mut b = builder(dir.path()).resource(
        fault("slow", dir.path())
            .property("slow_in", "is_alive")
            .property("slow_for", Duration::from_millis(800)),
    );
    for i in 0..5 {
        b = b.resource(dummy(&format!("quick{i}"), dir.path()));
    }
    let host = b.start().unwrap();
    host.online("slow").unwrap();
    for i in 0..5 {
        host.online(&format!("quick{i}")).unwrap();
    }
    host.wait_for(PATIENCE, "all online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .unwrap();
    let same_monitor = host
        .status()
        .iter()
        .map(|s| s.monitor_pid)
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(same_monitor.len(), 1, "all in one monitor");
    let before = host.status();
    // Over 3 s, each quick resource is due 30 looks_alive and 6 is_alive checks.
    let start = std::time::Instant::now();
    host.wait_for(PATIENCE, "3 s of checks", |_| {
        start.elapsed() >= Duration::from_secs(3)
    })
    .ok();
    let window = start.elapsed();
    let after = host.status();
    for (b, a) in before.iter().zip(&after) {
        let done = a.health_checks - b.health_checks;
        if a.name == "slow" {
            // One is_alive at a time, never piled up: at most 5 in 3 s, plus looks_alive.
            assert!(a.state == ResourceState::Online, "slow stays online");
            continue;
        }
        // Generous: at least half of the checks due in the window.
        let due = (window.as_millis() / 100) as u64;
        assert!(
            done >= due / 2,
            "{} completed {done} checks of {due} due",
            a.name
        );
        let latency = a.last_check_latency.unwrap();
        assert!(
            latency < Duration::from_millis(400),
            "{} last check took {latency:?}",
            a.name
        );
    }
}

#[test]
fn garbage_from_a_monitor_ends_that_monitor_and_the_host_lives() {
    let dir = TempDir::new("host-garbage");
    let control = control_file(&dir, "liar");
    let host = builder(dir.path())
        .resource(fault("liar", dir.path()).property("control_file", control.to_str().unwrap()))
        .resource(dummy("bystander", dir.path()))
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("liar").unwrap();
    host.online("bystander").unwrap();
    host.wait_for(PATIENCE, "both online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .unwrap();
    let old_pid = host.resource_status("liar").unwrap().monitor_pid.unwrap();
    std::fs::write(&control, "garbage looks_alive\n").unwrap();
    let (error, _) = wait_event(&events, "protocol error", |e| {
        e.kind == EventKind::MonitorProtocolError
    });
    std::fs::write(&control, "").unwrap();
    assert_eq!(error.field("pid").unwrap(), old_pid);
    assert!(
        error
            .str_field("error")
            .unwrap()
            .contains("exceeds the limit"),
        "{error:?}"
    );
    let (died, _) = wait_event(&events, "monitor death", |e| {
        e.kind == EventKind::MonitorDied
    });
    assert_eq!(died.field("pid").unwrap(), old_pid);
    // A new monitor takes over; both come back online; the host answers.
    host.wait_for(PATIENCE, "both online in a new monitor", |s| {
        s.iter().all(|r| {
            r.state == ResourceState::Online && r.monitor_pid.is_some_and(|p| p != old_pid)
        })
    })
    .unwrap();
}

#[test]
fn an_operator_check_answers_with_the_result_and_a_hung_one_with_the_diagnosis() {
    let dir = TempDir::new("host-check-now");
    let control = control_file(&dir, "f");
    let host = builder(dir.path())
        .resource(
            fault("f", dir.path())
                .property("control_file", control.to_str().unwrap())
                // Slow periodic checks: the answers below come from the
                // operator's own.
                .timing(|t| {
                    t.looks_alive_interval = Some(Duration::from_secs(60));
                    t.is_alive_interval = Some(Duration::from_secs(60));
                }),
        )
        .start()
        .unwrap();
    assert!(matches!(
        host.check("f", false),
        Err(clusterkit_host::HostError::InvalidState { .. })
    ));
    host.online("f").unwrap();
    host.wait_for_state("f", ResourceState::Online, PATIENCE)
        .unwrap();
    assert_eq!(host.check("f", false).unwrap(), clusterkit::Health::Healthy);
    std::fs::write(&control, "degrade is_alive\n").unwrap();
    assert!(matches!(
        host.check("f", true).unwrap(),
        clusterkit::Health::Degraded(_)
    ));
    std::fs::write(&control, "hang looks_alive\n").unwrap();
    let error = host.check("f", false).unwrap_err().to_string();
    assert!(
        error.contains("looks_alive did not answer within its deadline of 1000 ms"),
        "{error}"
    );
    assert!(error.contains("threads:"), "{error}");
}
