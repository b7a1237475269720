//! Resources added, changed and removed while the host runs
//! (`Host::reconfigure`): untouched resources are untouched.

mod common;

use std::time::Duration;

use clusterkit::ResourceState;
use clusterkit_host::{Applies, Event, EventKind, HostError, ResourceChange};
use clusterkit_testkit::TempDir;
use common::*;

fn all_online(host: &clusterkit_host::Host) {
    host.wait_for(PATIENCE, "every resource online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .unwrap();
}

/// Every event about `name` in `events`.
fn about<'a>(events: &'a [Event], name: &'a str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.resource.as_deref() == Some(name))
        .collect()
}

#[test]
fn untouched_resources_are_untouched() {
    let dir = TempDir::new("reconf-untouched");
    let host = builder(dir.path())
        .resource(dummy("kept", dir.path()))
        .resource(dummy("retimed", dir.path()))
        .resource(dummy("old", dir.path()))
        .start()
        .unwrap();
    for name in ["kept", "retimed", "old"] {
        host.online(name).unwrap();
    }
    all_online(&host);
    let pid_before = host.resource_status("kept").unwrap().monitor_pid;
    let events = host.subscribe();

    let mut set = host.resources();
    set.resources.retain(|r| r.name != "old");
    let retimed = set
        .resources
        .iter_mut()
        .find(|r| r.name == "retimed")
        .unwrap();
    retimed.timing.looks_alive_interval = Some(Duration::from_millis(300));
    set.resources.push(dummy("added", dir.path()));
    set.resources
        .push(dummy("dependent", dir.path()).depends_on("kept"));
    let report = host.reconfigure(set).unwrap();

    assert_eq!(report.added, ["added", "dependent"]);
    assert_eq!(report.removed, ["old"]);
    assert_eq!(
        report.changed,
        [ResourceChange {
            name: "retimed".into(),
            what: vec!["timing".into()],
            applies: Applies::Now,
        }]
    );
    assert_eq!(report.unchanged, 1);
    // Added resources are known at once, offline until asked for.
    assert_eq!(
        host.resource_status("added").unwrap().desired,
        clusterkit_host::Desired::Offline
    );

    let (_, mut seen) = wait_event(
        &events,
        "old removed",
        is(EventKind::ResourceRemoved, "old"),
    );
    assert!(
        seen.iter()
            .any(|e| e.kind == EventKind::ResourceOffline && e.resource.as_deref() == Some("old")),
        "a removed resource goes offline first: {seen:#?}"
    );
    assert!(
        !dir.path().join("old.state").exists(),
        "its workload stopped"
    );
    assert!(matches!(
        host.resource_status("old"),
        Err(HostError::UnknownResource(_))
    ));
    host.online("dependent").unwrap();
    host.online("added").unwrap();
    all_online(&host);
    seen.extend(events.try_iter());

    // Zero restarts, zero transitions of what did not change.
    for name in ["kept", "retimed"] {
        let touched: Vec<_> = about(&seen, name)
            .into_iter()
            .filter(|e| e.kind != EventKind::ResourceChanged)
            .collect();
        assert!(touched.is_empty(), "{name} was touched: {touched:#?}");
        let status = host.resource_status(name).unwrap();
        assert_eq!(status.state, ResourceState::Online);
        assert_eq!(status.restarts, 0);
    }
    assert_eq!(
        host.resource_status("kept").unwrap().monitor_pid,
        pid_before
    );
    let names: Vec<String> = host.status().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["kept", "retimed", "added", "dependent"]);

    // The state file forgets the removed resource.
    let state = std::fs::read_to_string(dir.path().join("host/state.json")).unwrap();
    assert!(!state.contains("\"old\""), "{state}");
    assert!(state.contains("\"dependent\""), "{state}");
}

#[test]
fn changed_properties_apply_at_the_next_online() {
    let dir = TempDir::new("reconf-props");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    let host = builder(dir.path())
        .resource(dummy("running", &first))
        .resource(dummy("idle", &first))
        .start()
        .unwrap();
    host.online("running").unwrap();
    host.wait_for_state("running", ResourceState::Online, PATIENCE)
        .unwrap();
    let events = host.subscribe();

    let report = host
        .reconfigure(clusterkit_host::ResourceSet {
            resources: vec![dummy("running", &second), dummy("idle", &second)],
            ..host.resources()
        })
        .unwrap();
    let applies: Vec<(String, Applies)> = report
        .changed
        .iter()
        .map(|c| (c.name.clone(), c.applies))
        .collect();
    assert_eq!(
        applies,
        [
            ("running".to_owned(), Applies::NextOnline),
            ("idle".to_owned(), Applies::Now)
        ]
    );
    // The running resource keeps running as it was.
    assert_eq!(
        host.resource_status("running").unwrap().state,
        ResourceState::Online
    );
    assert!(first.join("running.state").exists());

    // The idle one takes its new properties now: online, it uses them.
    host.online("idle").unwrap();
    host.wait_for_state("idle", ResourceState::Online, PATIENCE)
        .unwrap();
    assert!(second.join("idle.state").exists());
    assert!(!first.join("idle.state").exists());

    // The running one, at its next online.
    host.offline("running").unwrap();
    host.wait_for_state("running", ResourceState::Offline, PATIENCE)
        .unwrap();
    host.online("running").unwrap();
    host.wait_for_state("running", ResourceState::Online, PATIENCE)
        .unwrap();
    assert!(second.join("running.state").exists());
    assert!(!first.join("running.state").exists());
    let seen: Vec<Event> = events.try_iter().collect();
    assert!(
        !seen.iter().any(|e| e.kind == EventKind::ResourceRestarted),
        "no restart: {seen:#?}"
    );
}

#[test]
fn a_bad_set_is_refused_whole_and_changes_nothing() {
    let dir = TempDir::new("reconf-refused");
    let host = builder(dir.path())
        .resource(dummy("a", dir.path()))
        .start()
        .unwrap();
    host.online("a").unwrap();
    host.wait_for_state("a", ResourceState::Online, PATIENCE)
        .unwrap();
    let events = host.subscribe();
    let mut set = host.resources();
    set.resources.push(dummy("fine", dir.path()));
    set.resources.push(clusterkit_host::ResourceConfig::new(
        "typo",
        dummy_library(),
        "dumy",
    ));
    set.resources.push(clusterkit_host::ResourceConfig::new(
        "noprops",
        dummy_library(),
        "dummy",
    ));
    let error = host.reconfigure(set.clone()).unwrap_err();
    let HostError::Refused(problems) = &error else {
        panic!("refused, not {error:?}");
    };
    let text = error.to_string();
    assert_eq!(problems.len(), 2, "{text}");
    assert!(text.contains("`typo`") && text.contains("dumy"), "{text}");
    assert!(
        text.contains("`noprops`") && text.contains("state_dir"),
        "{text}"
    );

    // A dependency on nothing is refused before the engine sees it.
    set.resources.truncate(1);
    set.resources
        .push(dummy("orphan", dir.path()).depends_on("missing"));
    let text = host.reconfigure(set).unwrap_err().to_string();
    assert!(text.contains("`missing`"), "{text}");

    let names: Vec<String> = host.status().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a"]);
    assert_eq!(host.resources().resources.len(), 1);
    assert!(
        events
            .try_iter()
            .all(|e| e.resource.as_deref() != Some("fine")),
        "nothing was added"
    );
}

#[test]
fn a_library_new_to_the_host_is_loaded_for_the_resource() {
    let dir = TempDir::new("reconf-library");
    let host = builder(dir.path())
        .resource(dummy("a", dir.path()))
        .start()
        .unwrap();
    let report = host.add_resource(fault("f", dir.path())).unwrap();
    assert_eq!(report.added, ["f"]);
    host.online("f").unwrap();
    host.wait_for_state("f", ResourceState::Online, PATIENCE)
        .unwrap();
    let report = host.remove_resource("f").unwrap();
    assert_eq!(report.removed, ["f"]);
    host.wait_for(PATIENCE, "f gone", |s| s.iter().all(|r| r.name != "f"))
        .unwrap();
    // Gone, the name can be used again.
    host.add_resource(dummy("f", dir.path())).unwrap();
    host.online("f").unwrap();
    host.wait_for_state("f", ResourceState::Online, PATIENCE)
        .unwrap();
}

#[test]
fn a_removed_resource_takes_its_own_monitor_along() {
    let dir = TempDir::new("reconf-own-monitor");
    let host = builder(dir.path())
        .resource(dummy("shared", dir.path()))
        .resource(dummy("alone", dir.path()).separate_monitor())
        .start()
        .unwrap();
    host.online("alone").unwrap();
    host.wait_for_state("alone", ResourceState::Online, PATIENCE)
        .unwrap();
    let pid = host.resource_status("alone").unwrap().monitor_pid.unwrap();
    let events = host.subscribe();
    host.remove_resource("alone").unwrap();
    wait_event(
        &events,
        "alone removed",
        is(EventKind::ResourceRemoved, "alone"),
    );
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    let deadline = std::time::Instant::now() + PATIENCE;
    // Its monitor exits (the host reaps it, so /proc loses it).
    while proc.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "monitor {pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after: Vec<Event> = events.try_iter().collect();
    assert!(
        !after.iter().any(|e| e.kind == EventKind::MonitorDied),
        "a retired monitor's exit is no death: {after:#?}"
    );
}
