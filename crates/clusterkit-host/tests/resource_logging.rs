//! A resource library's `tracing` macros reach the host as `resource_log`
//! events with their level: the README's `marker` crate, built as the cdylib
//! an author would ship, in real monitor processes.

mod common;

use clusterkit_host::{Event, EventKind, ResourceConfig};
use clusterkit_testkit::{TempDir, cdylib};
use common::*;

fn logged<'a>(level: &'a str, text: &'a str) -> impl FnMut(&Event) -> bool + 'a {
    move |e| {
        e.kind == EventKind::ResourceLog
            && e.resource.as_deref() == Some("m")
            && e.str_field("level") == Some(level)
            && e.str_field("message").is_some_and(|m| m.contains(text))
    }
}

#[test]
fn tracing_macros_in_entry_points_arrive_as_events_with_their_level() {
    let dir = TempDir::new("host-tracing");
    let marker = dir.path().join("m.marker");
    let library = cdylib("clusterkit-example-marker", "clusterkit_marker");
    let host = builder(dir.path())
        .resource(
            ResourceConfig::new("m", library, "marker").property("path", marker.to_str().unwrap()),
        )
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("m").unwrap();
    // `tracing::info!(path = %…, "online")` in `online`: its field follows.
    let (online, _) = wait_event(&events, "info from online", logged("info", "online path="));
    assert!(
        online.str_field("message").unwrap().contains("m.marker"),
        "{online:?}"
    );
    wait_event(&events, "online", is(EventKind::ResourceOnline, "m"));

    std::fs::remove_file(&marker).unwrap();
    // `tracing::warn!` in `looks_alive`, on the monitor's health thread.
    wait_event(
        &events,
        "warning from looks_alive",
        logged("warn", "marker file is gone"),
    );
    host.shutdown();
}
