//! Dependency order, failed dependencies, and configuration errors.

mod common;

use clusterkit::ResourceState;
use clusterkit_host::{EventKind, HostError};
use clusterkit_testkit::TempDir;
use common::*;

fn order(events: &[clusterkit_host::Event], kind: EventKind) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == kind)
        .filter_map(|e| e.resource.clone())
        .collect()
}

#[test]
fn online_in_dependency_order_offline_in_reverse() {
    let dir = TempDir::new("host-deps");
    // disk <- ip <- name <- app, declared out of order.
    let host = builder(dir.path())
        .resource(dummy("app", dir.path()).group("web").depends_on("name"))
        .resource(dummy("name", dir.path()).group("web").depends_on("ip"))
        .resource(dummy("ip", dir.path()).group("web").depends_on("disk"))
        .resource(dummy("disk", dir.path()).group("web"))
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("app").unwrap();
    let (_, mut seen) = wait_event(&events, "app online", is(EventKind::ResourceOnline, "app"));
    seen.push(clusterkit_host::Event::new(
        EventKind::ResourceOnline,
        Some("app"),
    ));
    assert_eq!(
        order(&seen, EventKind::ResourceOnline),
        ["disk", "ip", "name", "app"]
    );

    host.offline("disk").unwrap();
    let (_, mut seen) = wait_event(
        &events,
        "disk offline",
        is(EventKind::ResourceOffline, "disk"),
    );
    seen.push(clusterkit_host::Event::new(
        EventKind::ResourceOffline,
        Some("disk"),
    ));
    assert_eq!(
        order(&seen, EventKind::ResourceOffline),
        ["app", "name", "ip", "disk"]
    );
}

#[test]
fn a_failed_dependency_takes_its_dependents_offline_and_back() {
    let dir = TempDir::new("host-dep-fail");
    let host = builder(dir.path())
        .resource(fault("storage", dir.path()))
        .resource(dummy("service", dir.path()).depends_on("storage"))
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("service").unwrap();
    host.wait_for(PATIENCE, "both online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .unwrap();
    host.fail("storage").unwrap();
    let (_, seen) = wait_event(
        &events,
        "service offline",
        is(EventKind::ResourceOffline, "service"),
    );
    assert!(
        seen.iter().any(
            |e| e.kind == EventKind::ResourceFailed && e.resource.as_deref() == Some("storage")
        )
    );
    // storage restarts, then service follows it back online.
    let (_, seen) = wait_event(
        &events,
        "service online",
        is(EventKind::ResourceOnline, "service"),
    );
    assert!(
        seen.iter().any(
            |e| e.kind == EventKind::ResourceOnline && e.resource.as_deref() == Some("storage")
        ),
        "storage comes back first: {seen:?}"
    );
}

#[test]
fn configuration_errors_name_the_resources() {
    let dir = TempDir::new("host-config");
    let err = builder(dir.path())
        .resource(dummy("a", dir.path()).depends_on("b"))
        .resource(dummy("b", dir.path()).depends_on("c"))
        .resource(dummy("c", dir.path()).depends_on("a"))
        .start()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: dependency cycle: a -> b -> c -> a"
    );

    let err = builder(dir.path())
        .resource(dummy("a", dir.path()).depends_on("ghost"))
        .start()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: resource `a` depends on `ghost`, which does not exist"
    );

    let err = builder(dir.path())
        .resource(dummy("a", dir.path()).group("g1"))
        .resource(dummy("b", dir.path()).group("g2").depends_on("a"))
        .start()
        .unwrap_err();
    assert!(
        err.to_string().contains("depends on `a` in another group"),
        "{err}"
    );

    let err = builder(dir.path())
        .resource(dummy("a", dir.path()))
        .resource(dummy("a", dir.path()))
        .start()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: resource `a` is declared twice"
    );

    let err = builder(dir.path())
        .resource(
            dummy("a", dir.path())
                .timing(|t| t.deadlock_timeout = Some(std::time::Duration::from_millis(10))),
        )
        .start()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: resource `a`: deadlock_timeout is 10 ms, the minimum is 1000 ms"
    );

    let err = builder(dir.path())
        .resource(
            dummy("a", dir.path())
                .property("online_delay", "soon")
                .property("colour", "red"),
        )
        .start()
        .unwrap_err();
    assert!(matches!(err, HostError::Properties { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("resource `a`: property `online_delay`: \"soon\" is not a duration"),
        "{err}"
    );

    let err = builder(dir.path())
        .resource(clusterkit_host::ResourceConfig::new(
            "x",
            dummy_library(),
            "nope",
        ))
        .start()
        .unwrap_err();
    assert!(
        err.to_string().contains("type `nope` is not exported"),
        "{err}"
    );
    assert!(err.to_string().ends_with("(it exports: dummy)"), "{err}");

    let err = builder(dir.path())
        .resource(clusterkit_host::ResourceConfig::new(
            "x",
            "/nonexistent/lib.so",
            "t",
        ))
        .start()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/lib.so: no such file"),
        "{err}"
    );
}
