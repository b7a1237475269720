//! Deadlock and crash recovery (`docs/RECOVERY.md`, steps 1–7): the seeds' outage, the
//! watchdog's escalation, and random monitor kills.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterkit::ResourceState;
use clusterkit_fault_injection::start_count;
use clusterkit_host::{Escalation, EventKind, ProcessControl, SystemProcesses};
use clusterkit_testkit::TempDir;
use common::*;

/// The seeds' outage: one of 20 resources sharing a monitor hangs in
/// `is_alive`. RHS killed every resource in the process; here the hung one
/// is found at its deadline, the others are re-attached without a restart,
/// and the culprit ends up alone in its own monitor, restarted.
#[test]
fn one_hung_is_alive_among_twenty_resources() {
    let dir = TempDir::new("host-outage");
    let control = dir.path().join("dns.control");
    let mut b = builder(dir.path())
        .resource(fault("dns", dir.path()).property("control_file", control.to_str().unwrap()));
    for i in 0..19 {
        b = b.resource(fault(&format!("app{i:02}"), dir.path()));
    }
    let host = b.start().unwrap();
    let events = host.subscribe();
    for s in host.status() {
        host.online(&s.name).unwrap();
    }
    host.wait_for(PATIENCE, "all online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .unwrap();
    let shared_pid = host.resource_status("dns").unwrap().monitor_pid.unwrap();
    assert!(
        host.status()
            .iter()
            .all(|s| s.monitor_pid == Some(shared_pid))
    );

    std::fs::write(&control, "hang is_alive\n").unwrap();
    let (timed_out, _) = wait_event(&events, "the deadline", is(EventKind::CallTimedOut, "dns"));
    std::fs::write(&control, "").unwrap();
    assert_eq!(timed_out.str_field("call"), Some("is_alive"));
    assert_eq!(timed_out.str_field("type"), Some("fault-injection"));
    let elapsed = timed_out.field("elapsed_ms").unwrap().as_u64().unwrap();
    assert!(
        (1000..3000).contains(&elapsed),
        "detected after {elapsed} ms"
    );
    // The diagnostics show a thread blocked in a system call (recvfrom).
    let threads = timed_out.field("threads").unwrap().as_array().unwrap();
    assert!(
        threads.iter().any(|t| t["state"] == "S"
            && t["syscall"]
                .as_str()
                .is_some_and(|s| !s.starts_with("running"))),
        "{threads:#?}"
    );
    let (killed, _) = wait_event(&events, "kill", |e| e.kind == EventKind::MonitorKilled);
    assert_eq!(killed.field("pid").unwrap(), shared_pid);
    wait_event(&events, "death", |e| e.kind == EventKind::MonitorDied);
    wait_event(&events, "isolation", is(EventKind::ResourceIsolated, "dns"));

    host.wait_for(PATIENCE, "all online again", |s| {
        s.iter().all(|r| {
            r.state == ResourceState::Online && r.monitor_pid.is_some_and(|p| p != shared_pid)
        })
    })
    .unwrap();
    let status = host.status();
    let dns = &status[0];
    assert!(dns.separate_monitor);
    assert!(
        status[1..].iter().all(|s| s.monitor_pid != dns.monitor_pid),
        "dns is alone"
    );
    assert_eq!(dns.restarts, 1);
    assert_eq!(
        start_count(dir.path(), "dns"),
        2,
        "the culprit was restarted"
    );
    for i in 0..19 {
        assert_eq!(
            start_count(dir.path(), &format!("app{i:02}")),
            1,
            "app{i:02} was restarted"
        );
        assert_eq!(status[i + 1].restarts, 0);
    }
}

/// Process control whose kill does nothing: a monitor that will not die.
struct Unkillable;

impl ProcessControl for Unkillable {
    fn kill(&self, _pid: u32) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_unkillable_monitor_escalates_at_four_deadlines() {
    let dir = TempDir::new("host-escalate");
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let host = builder(dir.path())
        .process_control(Arc::new(Unkillable))
        .escalation(Escalation::Hook(Arc::new(move |e| {
            let _ = tx.lock().unwrap().send(e.clone());
        })))
        .resource(fault("stuck", dir.path()).property("hang_in", "online"))
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("stuck").unwrap();
    let (killed, _) = wait_event(&events, "kill", |e| e.kind == EventKind::MonitorKilled);
    let pid = killed.field("pid").unwrap().as_u64().unwrap() as u32;
    let escalation = rx.recv_timeout(PATIENCE).expect("the hook runs");
    let waited = escalation.ts.duration_since(killed.ts).unwrap();
    assert!(
        waited >= Duration::from_millis(4000),
        "escalated after {waited:?}, before 4 x 1 s"
    );
    assert!(
        waited < Duration::from_millis(6000),
        "escalated late: {waited:?}"
    );
    assert_eq!(escalation.field("pid").unwrap(), pid);
    assert_eq!(escalation.resource.as_deref(), Some("stuck"));
    // Clean up the monitor the fake could not kill.
    SystemProcesses.kill(pid).unwrap();
}

/// Process control whose second start runs a program that exits at once,
/// as a monitor dying before it says hello would.
struct SecondStartFails(std::sync::atomic::AtomicU32);

impl ProcessControl for SecondStartFails {
    fn spawn(&self, command: &mut std::process::Command) -> std::io::Result<std::process::Child> {
        if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            return std::process::Command::new("true").spawn();
        }
        command.spawn()
    }

    fn kill(&self, pid: u32) -> std::io::Result<()> {
        SystemProcesses.kill(pid)
    }
}

#[test]
fn a_replacement_monitor_that_dies_before_hello_is_replaced_again() {
    let dir = TempDir::new("host-early-death");
    let host = builder(dir.path())
        .process_control(Arc::new(SecondStartFails(
            std::sync::atomic::AtomicU32::new(0),
        )))
        .resource(fault("r", dir.path()))
        .start()
        .unwrap();
    host.online("r").unwrap();
    host.wait_for_state("r", ResourceState::Online, PATIENCE)
        .unwrap();
    let first = host.resource_status("r").unwrap().monitor_pid.unwrap();
    SystemProcesses.kill(first).unwrap();
    host.wait_for(PATIENCE, "online in a third monitor", |s| {
        s[0].state == ResourceState::Online && s[0].monitor_pid.is_some_and(|p| p != first)
    })
    .unwrap();
    assert_eq!(
        start_count(dir.path(), "r"),
        1,
        "re-attached, not restarted"
    );
}

/// A monitor stopped from outside (SIGSTOP) hangs every call in it: its
/// diagnostics show every thread stopped, so nobody is blamed; it is killed
/// and its resources re-attach, none isolated or restarted.
#[test]
fn a_monitor_stopped_from_outside_blames_nobody() {
    let dir = TempDir::new("host-sigstop");
    let host = builder(dir.path())
        .resource(fault("a", dir.path()))
        .resource(fault("b", dir.path()))
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("a").unwrap();
    host.online("b").unwrap();
    host.wait_for(PATIENCE, "both online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .unwrap();
    let pid = host.resource_status("a").unwrap().monitor_pid.unwrap();
    // SAFETY: kill(2) with the pid of our own monitor.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let (timed_out, _) = wait_event(&events, "a check past its deadline", |e| {
        e.kind == EventKind::CallTimedOut
    });
    assert_eq!(
        timed_out.field("stopped"),
        Some(&serde_json::json!(true)),
        "{timed_out:?}"
    );
    let (died, seen) = wait_event(&events, "the monitor's death", |e| {
        e.kind == EventKind::MonitorDied
    });
    assert_eq!(
        died.field("suspects"),
        Some(&serde_json::json!([])),
        "{died:?}"
    );
    assert!(
        !seen.iter().any(|e| e.kind == EventKind::ResourceIsolated),
        "{seen:?}"
    );
    host.wait_for(PATIENCE, "both re-attached", |s| {
        s.iter()
            .all(|r| r.state == ResourceState::Online && r.monitor_pid.is_some_and(|p| p != pid))
    })
    .unwrap();
    for name in ["a", "b"] {
        let s = host.resource_status(name).unwrap();
        assert!(!s.separate_monitor, "{name} isolated");
        assert_eq!(s.restarts, 0, "{name} restarted");
        assert_eq!(
            start_count(dir.path(), name),
            1,
            "{name}'s workload restarted"
        );
    }
}
