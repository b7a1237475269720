//! The engine thread's own I/O with real monitor processes: replies in
//! bursts, a monitor that stops reading its socket, and a monitor start
//! that takes long while another resource's deadline passes.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterkit::{ControlCode, ResourceState};
use clusterkit_host::{EventKind, ProcessControl, SystemProcesses};
use clusterkit_testkit::TempDir;
use common::*;

/// Hundreds of resources in one monitor: their replies reach the host many
/// to a read, and every one is handled (each resource counts checks).
#[test]
fn every_reply_of_a_burst_is_handled() {
    const RESOURCES: usize = 300;
    let dir = TempDir::new("host-burst");
    let mut builder = builder(dir.path());
    let names: Vec<String> = (0..RESOURCES).map(|i| format!("d{i}")).collect();
    for name in &names {
        builder = builder.resource(dummy(name, dir.path()));
    }
    let host = builder.start().unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    host.online_many(&refs).unwrap();
    host.wait_for(PATIENCE, "every resource checked twice", |s| {
        s.iter()
            .all(|r| r.state == ResourceState::Online && r.health_checks >= 2)
    })
    .unwrap();
    let pids: std::collections::HashSet<_> = host.status().iter().map(|s| s.monitor_pid).collect();
    assert_eq!(pids.len(), 1, "one monitor for all: {pids:?}");
}

/// A monitor that stops reading (stopped from outside) while the host has
/// more to write than its socket holds is stuck: after the write timeout
/// the host kills it and the resource comes back in a new monitor. Its
/// deadlines are far longer, so the kill is the write timeout's.
#[test]
fn a_monitor_that_stops_reading_is_killed_after_the_write_timeout() {
    let dir = TempDir::new("host-stuck-writer");
    let host = builder(dir.path())
        .resource(fault("f", dir.path()).timing(|t| {
            t.deadlock_timeout = Some(Duration::from_secs(60));
            t.pending_timeout = Some(Duration::from_secs(60));
        }))
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("f").unwrap();
    host.wait_for_state("f", ResourceState::Online, PATIENCE)
        .unwrap();
    let pid = host.resource_status("f").unwrap().monitor_pid.unwrap();
    // SAFETY: kill(2) with the pid of our own monitor.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    // Several MiB: far more than a socket buffer.
    let input = vec![0u8; 8 << 20];
    let answer = std::thread::scope(|s| {
        let control = s.spawn(|| host.control("f", ControlCode(0x1000), &input));
        let (killed, _) = wait_event(&events, "the stuck monitor killed", |e| {
            e.kind == EventKind::MonitorKilled
        });
        assert_eq!(killed.field("pid").unwrap(), pid);
        let reason = killed.str_field("reason").unwrap();
        assert!(
            reason.contains("writing to the monitor") && reason.contains("took no byte"),
            "{killed:?}"
        );
        control.join().unwrap()
    });
    assert!(answer.is_err(), "{answer:?}");
    host.wait_for(PATIENCE, "back online in a new monitor", |s| {
        s.iter()
            .all(|r| r.state == ResourceState::Online && r.monitor_pid.is_some_and(|p| p != pid))
    })
    .unwrap();
}

/// Process control whose second start waits until the test lets it go,
/// saying when it begins to wait: a fork/exec that takes long.
struct SlowSecondStart {
    starts: Mutex<u32>,
    waiting: Mutex<mpsc::Sender<()>>,
    go: Mutex<mpsc::Receiver<()>>,
}

impl ProcessControl for SlowSecondStart {
    fn spawn(&self, command: &mut std::process::Command) -> std::io::Result<std::process::Child> {
        let start = {
            let mut starts = self.starts.lock().unwrap();
            *starts += 1;
            *starts
        };
        if start == 2 {
            let _ = self.waiting.lock().unwrap().send(());
            let _ = self.go.lock().unwrap().recv();
        }
        command.spawn()
    }

    fn kill(&self, pid: u32) -> std::io::Result<()> {
        SystemProcesses.kill(pid)
    }
}

/// Lets [`SlowSecondStart`]'s waiting start go when dropped.
struct LetGo(mpsc::Sender<()>);

impl Drop for LetGo {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// While a monitor's start hangs, the engine still fires another
/// resource's deadline (the hung call is timed out and its monitor killed)
/// and answers; the slow monitor arrives later and its resource works.
#[test]
fn a_slow_monitor_start_does_not_hold_up_another_resources_deadline() {
    let dir = TempDir::new("host-slow-spawn");
    let (waiting_tx, waiting) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let control = Arc::new(SlowSecondStart {
        starts: Mutex::new(0),
        waiting: Mutex::new(waiting_tx),
        go: Mutex::new(go_rx),
    });
    let host = builder(dir.path())
        .process_control(control)
        .resource(fault("hung", dir.path()).property("hang_in", "online"))
        .start()
        .unwrap();
    let events = host.subscribe();
    std::thread::scope(|s| {
        // Lets the start go when this closure ends, even by a failed
        // assertion: the scope then joins a thread that can finish.
        let go = LetGo(go);
        // A resource in a monitor of its own: the second start.
        let added = s.spawn(|| host.add_resource(dummy("late", dir.path()).separate_monitor()));
        waiting
            .recv_timeout(PATIENCE)
            .expect("the second monitor start begins");
        // The whole deadline of its `online` passes while the start hangs.
        // Asked from a thread: an engine held up by the start would never
        // answer, and the wait below would then fail rather than hang.
        let online = s.spawn(|| host.online("hung"));
        let (timed_out, _) = wait_event(&events, "the hung online timed out", |e| {
            e.kind == EventKind::CallTimedOut && e.resource.as_deref() == Some("hung")
        });
        assert_eq!(timed_out.str_field("call"), Some("online"), "{timed_out:?}");
        wait_event(&events, "the hung resource's monitor killed", |e| {
            e.kind == EventKind::MonitorKilled
        });
        assert!(host.is_responsive(PATIENCE), "the engine answers");
        // The start was still waiting all along: let it finish.
        drop(go);
        online.join().unwrap().unwrap();
        added.join().unwrap().unwrap();
    });
    host.online("late").unwrap();
    host.wait_for_state("late", ResourceState::Online, PATIENCE)
        .unwrap();
}
