//! Chaos: 200 monitor kills while resources are checked, brought online and
//! taken offline. Afterwards every resource is in its desired state, none is
//! stuck pending, and the event log accounts for every kill.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use clusterkit::ResourceState;
use clusterkit_host::{Desired, EventKind, Placement, ProcessControl, SystemProcesses};
use clusterkit_testkit::{TempDir, XorShift};
use common::*;

#[test]
fn two_hundred_monitor_kills() {
    let dir = TempDir::new("host-chaos");
    let mut rng = XorShift::from_clock();
    let seed = rng.seed();
    let placements = [Placement::Core, Placement::Storage, Placement::Default];
    let mut b = builder(dir.path());
    let mut names = Vec::new();
    for i in 0..12 {
        let name = format!("c{i:02}");
        let resource = if i % 3 == 0 {
            // Some come online through a pending operation.
            fault(&name, dir.path()).property("pending_online", Duration::from_millis(150))
        } else if i % 3 == 1 {
            fault(&name, dir.path())
        } else {
            dummy(&name, dir.path())
        };
        b = b.resource(resource.placement(placements[i % 3]));
        names.push(name);
    }
    let host = b.start().unwrap();
    let events = host.subscribe();
    let mut desired = vec![Desired::Online; names.len()];
    for n in &names {
        host.online(n).unwrap();
    }
    host.wait_for(PATIENCE, "all online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .unwrap();

    let mut killed: Vec<u32> = Vec::new();
    let mut died: HashSet<u32> = HashSet::new();
    while killed.len() < 200 {
        // Turn some resources on or off between kills.
        for _ in 0..rng.below(3) {
            let r = rng.below(names.len());
            desired[r] = if rng.next_u64().is_multiple_of(3) {
                Desired::Offline
            } else {
                Desired::Online
            };
            match desired[r] {
                Desired::Online => host.online(&names[r]).unwrap(),
                Desired::Offline => host.offline(&names[r]).unwrap(),
            }
        }
        // Kill a live monitor, chosen at random among those in use.
        host.wait_for(PATIENCE, "a live monitor", |s| {
            s.iter().any(|r| r.monitor_pid.is_some())
        })
        .unwrap();
        let pids: Vec<u32> = host
            .status()
            .iter()
            .filter_map(|s| s.monitor_pid)
            .filter(|p| !killed.contains(p))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if pids.is_empty() {
            continue;
        }
        let pid = pids[rng.below(pids.len())];
        if SystemProcesses.kill(pid).is_err() {
            continue; // it died on its own an instant ago
        }
        killed.push(pid);
        // The host notices each death before the next kill.
        while !died.contains(&pid) {
            let (e, _) = wait_event(&events, "a monitor death", |e| {
                e.kind == EventKind::MonitorDied
            });
            died.insert(e.field("pid").unwrap().as_u64().unwrap() as u32);
        }
    }

    // Settle: every resource reaches its desired state, none stuck pending.
    host.wait_for(PATIENCE, "every resource in its desired state", |s| {
        s.iter().zip(&desired).all(|(r, d)| match d {
            Desired::Online => r.state == ResourceState::Online,
            Desired::Offline => r.state == ResourceState::Offline,
        })
    })
    .unwrap_or_else(|e| panic!("seed {seed}: {e}: {:#?}", host.status()));
    assert!(host.status().iter().all(|r| !r.state.is_pending()));

    // The event log on disk accounts for every kill.
    let log = std::fs::read_to_string(dir.path().join("host/events.jsonl")).unwrap();
    let logged: HashSet<u64> = log
        .lines()
        .filter(|l| l.contains("\"kind\":\"monitor_died\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["pid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    for pid in &killed {
        assert!(
            logged.contains(&u64::from(*pid)),
            "kill of {pid} is not in events.jsonl"
        );
    }
    // External kills blame nobody: nothing was isolated.
    assert!(
        host.status().iter().all(|r| !r.separate_monitor),
        "{:#?}",
        host.status()
    );
}
