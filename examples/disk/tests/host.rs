//! The `disk` resource through the host, in real monitor processes, on real
//! image files: the lifecycle, a second holder refused, re-attach after a
//! monitor kill and a host restart, bad properties, a stolen reservation.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clusterkit::{ControlCode, ErrorCode, Health, Logger, Properties, ResourceState};
use clusterkit_disk::{DiskLock, FORMAT, PROBE_MAGIC, RESERVATION, Record, read_record};
use clusterkit_host::{
    EventKind, HostError, ProcessControl, ResourceConfig, RestartAction, SystemProcesses,
};
use clusterkit_loader::Library;
use clusterkit_testkit::{TempDir, require_tool};
use common::*;

fn no_restart(config: ResourceConfig) -> ResourceConfig {
    config.timing(|t| t.restart_action = Some(RestartAction::None))
}

/// Waits until `name` is online and has passed `checks` more health checks,
/// the last one healthy, with an `is_alive` probe in block 1 of `image`.
fn wait_healthy(host: &clusterkit_host::Host, name: &str, image: &Path, checks: u64) {
    let start = host.resource_status(name).unwrap().health_checks;
    host.wait_for(PATIENCE, "health checks to pass", |s| {
        let r = s.iter().find(|r| r.name == name).unwrap();
        r.state == ResourceState::Online
            && r.health_checks >= start + checks
            && r.last_health == Some(Health::Healthy)
            && read_block(image, 1)[..8] == PROBE_MAGIC
    })
    .unwrap();
}

#[test]
fn a_full_lifecycle_through_the_host() {
    let dir = TempDir::new("disk-host-lifecycle");
    let image = blank_image(&dir, "data.img");
    let host = builder(&dir.path().join("host"))
        .resource(disk("data", &image).property("owner", "node-a/data"))
        .start()
        .unwrap();
    host.wait_for_state("data", ResourceState::Offline, PATIENCE)
        .unwrap();

    // FORMAT through the host (the image is blank), then online.
    assert!(read_record(&image).is_err());
    host.control("data", FORMAT, b"").unwrap();
    assert_eq!(read_record(&image).unwrap(), Record::free(0));
    host.online("data").unwrap();
    host.wait_for_state("data", ResourceState::Online, PATIENCE)
        .unwrap();
    assert_eq!(read_record(&image).unwrap(), Record::new("node-a/data", 1));
    wait_healthy(&host, "data", &image, 8);
    assert!(
        DiskLock::try_acquire(&image).unwrap().is_none(),
        "the monitor holds the lock"
    );
    let reservation = Properties::decode(&host.control("data", RESERVATION, b"").unwrap()).unwrap();
    assert!(reservation.bool("held").unwrap());
    assert_eq!(reservation.u64("generation").unwrap(), 1);
    let err = host.control("data", FORMAT, b"").unwrap_err();
    assert!(
        matches!(&err, HostError::Call(e) if e.code() == ErrorCode::InvalidState),
        "{err}"
    );
    assert!(
        host.control("data", ControlCode(77), b"").is_err(),
        "unknown codes are refused"
    );

    // Offline releases: another open of the file can lock it now.
    host.offline("data").unwrap();
    host.wait_for_state("data", ResourceState::Offline, PATIENCE)
        .unwrap();
    assert!(DiskLock::try_acquire(&image).unwrap().is_some());
    assert_eq!(read_record(&image).unwrap(), Record::free(1));
    let status = host.resource_status("data").unwrap();
    assert_eq!(status.restarts, 0);
    host.stop_all(PATIENCE).unwrap();
}

#[test]
fn a_second_holder_is_refused_with_busy_naming_the_holder() {
    let dir = TempDir::new("disk-host-busy");
    let image = formatted_image(&dir, "data.img");
    let host = builder(&dir.path().join("host"))
        .resource(disk("data", &image))
        .resource(no_restart(disk("intruder", &image)))
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("data").unwrap();
    host.wait_for_state("data", ResourceState::Online, PATIENCE)
        .unwrap();
    let holder = read_record(&image).unwrap();
    assert_eq!(holder.generation, 1);
    assert!(holder.owner.ends_with("/data"), "{holder}");
    let busy = format!(
        "disk {} is reserved by {} (generation 1)",
        image.display(),
        holder.owner
    );

    // The same host, and the same monitor process: OFD locks still conflict.
    let status = host.status();
    assert_eq!(status[0].monitor_pid, status[1].monitor_pid);
    host.online("intruder").unwrap();
    let (failed, _) = wait_event(
        &events,
        "the intruder's online failing",
        is(EventKind::CallFailed, "intruder"),
    );
    assert_eq!(failed.str_field("call"), Some("online"));
    assert_eq!(failed.str_field("code"), Some("busy"));
    assert_eq!(
        failed.str_field("error"),
        Some(format!("busy: {busy}").as_str())
    );
    let (resource_failed, _) = wait_event(
        &events,
        "the intruder failing",
        is(EventKind::ResourceFailed, "intruder"),
    );
    let reason = resource_failed.str_field("reason").unwrap();
    assert!(reason.contains(&busy), "{reason}");

    // A second host, with its own state directory and monitors.
    let other = builder(&dir.path().join("other-host"))
        .resource(no_restart(disk("remote", &image)).property("owner", "node-b/data"))
        .start()
        .unwrap();
    let other_events = other.subscribe();
    other.online("remote").unwrap();
    let (failed, _) = wait_event(
        &other_events,
        "the remote online failing",
        is(EventKind::CallFailed, "remote"),
    );
    assert_eq!(failed.str_field("code"), Some("busy"));
    assert_eq!(
        failed.str_field("error"),
        Some(format!("busy: {busy}").as_str())
    );
    other
        .wait_for_state("remote", ResourceState::Failed, PATIENCE)
        .unwrap();

    // The holder was never disturbed.
    assert_eq!(read_record(&image).unwrap(), holder);
    wait_healthy(&host, "data", &image, 3);
    assert_eq!(host.resource_status("data").unwrap().restarts, 0);
    other.shutdown();
    host.stop_all(PATIENCE).unwrap();
}

#[test]
fn a_killed_monitor_is_reattached_without_a_new_generation() {
    let dir = TempDir::new("disk-host-reattach");
    let state_dir = dir.path().join("host");
    let image = formatted_image(&dir, "data.img");
    let config = || disk("data", &image).property("owner", "node-a/data");
    let host = builder(&state_dir).resource(config()).start().unwrap();
    host.online("data").unwrap();
    host.wait_for_state("data", ResourceState::Online, PATIENCE)
        .unwrap();
    wait_healthy(&host, "data", &image, 2);
    let before = read_record(&image).unwrap();
    assert_eq!(before, Record::new("node-a/data", 1));

    let events = host.subscribe();
    let pid = host.resource_status("data").unwrap().monitor_pid.unwrap();
    SystemProcesses.kill(pid).unwrap();
    let (_, seen) = wait_event(
        &events,
        "the re-attach",
        is(EventKind::ResourceReattached, "data"),
    );
    assert!(
        seen.iter().any(|e| e.kind == EventKind::MonitorDied),
        "{seen:?}"
    );
    // `online` was not called: it would have logged "reserved disk ...".
    assert!(
        !seen.iter().any(|e| e.kind == EventKind::ResourceRestarted
            || e.str_field("message")
                .is_some_and(|m| m.starts_with("reserved disk"))),
        "re-attached without online: {seen:?}"
    );
    assert!(
        seen.iter().any(|e| e
            .str_field("message")
            .is_some_and(|m| m.starts_with("re-attached to disk"))),
        "{seen:?}"
    );
    assert_eq!(read_record(&image).unwrap(), before, "same generation");
    assert!(
        DiskLock::try_acquire(&image).unwrap().is_none(),
        "the new monitor holds the lock again"
    );
    let status = host.resource_status("data").unwrap();
    assert_ne!(status.monitor_pid, Some(pid));
    assert_eq!(status.restarts, 0);
    wait_healthy(&host, "data", &image, 3);

    // A host restart (its monitors exit with it) re-attaches the same way.
    host.shutdown();
    let host = builder(&state_dir).resource(config()).start().unwrap();
    host.wait_for_state("data", ResourceState::Online, PATIENCE)
        .unwrap();
    assert_eq!(read_record(&image).unwrap(), before, "same generation");
    assert!(DiskLock::try_acquire(&image).unwrap().is_none());
    wait_healthy(&host, "data", &image, 3);
    assert_eq!(host.resource_status("data").unwrap().restarts, 0);
    let reattached = logged_events(&state_dir)
        .iter()
        .filter(|e| e["kind"] == "resource_reattached" && e["resource"] == "data")
        .count();
    assert_eq!(reattached, 2, "after the kill and after the host restart");
    host.stop_all(PATIENCE).unwrap();
    assert_eq!(read_record(&image).unwrap(), Record::free(1));
}

#[test]
fn bad_properties_are_named() {
    let dir = TempDir::new("disk-host-bad");

    // Missing `path`: the host refuses the configuration.
    let err = builder(&dir.path().join("host-a"))
        .resource(ResourceConfig::new("data", library(), "disk"))
        .start()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "resource `data`: property `path`: required but not given"
    );
    let err = builder(&dir.path().join("host-b"))
        .resource(disk("data", Path::new("/srv/x.img")).property("io_timeout", "a while"))
        .start()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("resource `data`: property `io_timeout`:"),
        "{err}"
    );

    // A missing image: `open` fails, naming the property and the file.
    let missing = dir.path().join("missing.img");
    let state_dir = dir.path().join("host-c");
    let host = builder(&state_dir)
        .resource(no_restart(disk("ghost", &missing)))
        .start()
        .unwrap();
    host.wait_for_state("ghost", ResourceState::Failed, PATIENCE)
        .unwrap();
    // The host publishes a status before the event reporting it; a command's
    // round trip through the host's engine lets it finish writing the events.
    host.offline("ghost").unwrap();
    let expected = format!(
        "not found: property `path`: {} does not exist (expected a block device or an image file)",
        missing.display()
    );
    let logged = logged_events(&state_dir);
    let call_failed = logged
        .iter()
        .find(|e| e["kind"] == "call_failed" && e["resource"] == "ghost")
        .expect("call_failed is logged");
    assert_eq!(call_failed["call"], "open");
    assert_eq!(call_failed["code"], "not_found");
    assert_eq!(call_failed["error"], expected.as_str());
    let resource_failed = logged
        .iter()
        .find(|e| e["kind"] == "resource_failed" && e["resource"] == "ghost")
        .expect("resource_failed is logged");
    assert_eq!(
        resource_failed["reason"],
        format!("open failed: {expected}").as_str()
    );
    host.shutdown();
}

/// Waits until `name` is online and has passed `checks` more health checks,
/// the last one healthy.
fn wait_checks(host: &clusterkit_host::Host, name: &str, checks: u64) {
    let start = host.resource_status(name).unwrap().health_checks;
    host.wait_for(PATIENCE, "health checks to pass", |s| {
        let r = s.iter().find(|r| r.name == name).unwrap();
        r.state == ResourceState::Online
            && r.health_checks >= start + checks
            && r.last_health == Some(Health::Healthy)
    })
    .unwrap();
}

#[test]
fn a_stolen_reservation_fails_the_resource_and_the_host_restarts_it() {
    let dir = TempDir::new("disk-host-stolen");
    let image = formatted_image(&dir, "data.img");
    // is_alive only after a failed looks_alive: the cheap check finds it.
    // Renewals 2 s apart: the theft lands between two of them.
    let config = disk("data", &image)
        .property("owner", "node-a/data")
        .property("lease_renewal", Duration::from_secs(2))
        .property("lease_timeout", Duration::from_secs(6))
        .timing(|t| t.is_alive_interval = Some(Duration::from_secs(600)));
    let host = builder(&dir.path().join("host"))
        .resource(config)
        .start()
        .unwrap();
    host.online("data").unwrap();
    host.wait_for_state("data", ResourceState::Online, PATIENCE)
        .unwrap();
    wait_checks(&host, "data", 2);
    let record = read_record(&image).unwrap();
    let events = host.subscribe();

    // Another writer (a node honouring neither the lock nor the lease)
    // steals block 0.
    steal_after_a_renewal(&image, &stolen(&record));
    let (health_failed, _) = wait_event(
        &events,
        "a failed check",
        is(EventKind::HealthFailed, "data"),
    );
    assert_eq!(health_failed.str_field("check"), Some("looks_alive"));
    let taken_over = format!(
        "the reservation of disk {} was taken over: its record names node-x/thief (generation \
         6), not node-a/data (generation 1)",
        image.display()
    );
    assert_eq!(health_failed.str_field("reason"), Some(taken_over.as_str()));
    let (is_alive_failed, _) = wait_event(
        &events,
        "the thorough check failing too",
        is(EventKind::HealthFailed, "data"),
    );
    assert_eq!(is_alive_failed.str_field("check"), Some("is_alive"));
    let (resource_failed, _) = wait_event(
        &events,
        "the resource failing",
        is(EventKind::ResourceFailed, "data"),
    );
    assert_eq!(
        resource_failed.str_field("reason"),
        Some(format!("is_alive failed: {taken_over}").as_str())
    );
    wait_event(
        &events,
        "the restart",
        is(EventKind::ResourceRestarted, "data"),
    );
    wait_event(
        &events,
        "online again",
        is(EventKind::ResourceOnline, "data"),
    );
    // The restart's online waited the thief's lease out (nobody renews it)
    // and took the disk back with the next generation.
    assert_eq!(read_record(&image).unwrap(), Record::new("node-a/data", 7));
    assert_eq!(host.resource_status("data").unwrap().restarts, 1);
    wait_checks(&host, "data", 3);
    host.stop_all(PATIENCE).unwrap();
}

#[test]
fn a_qemu_img_raw_image_formatted_through_the_type() {
    let qemu_img = require_tool("qemu-img", "qemu-utils");
    let dir = TempDir::new("disk-host-qemu");
    let image = dir.path().join("vm-disk.raw");
    let output = Command::new(qemu_img)
        .args(["create", "-q", "-f", "raw"])
        .arg(&image)
        .arg("16M")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "qemu-img create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 16 << 20);

    // FORMAT on the type, before any resource exists (as a tool would).
    let library = Library::load(library(), Logger::discard()).unwrap();
    let ty = library.resource_type("disk").unwrap();
    let mut input = Properties::new();
    input.insert("path", image.to_str().unwrap());
    ty.control(FORMAT, &input.encode()).unwrap();
    assert_eq!(read_record(&image).unwrap(), Record::free(0));

    let host = builder(&dir.path().join("host"))
        .resource(disk("vm-disk", &image))
        .start()
        .unwrap();
    host.online("vm-disk").unwrap();
    host.wait_for_state("vm-disk", ResourceState::Online, PATIENCE)
        .unwrap();
    wait_healthy(&host, "vm-disk", &image, 4);
    assert_eq!(read_record(&image).unwrap().generation, 1);
    host.stop_all(PATIENCE).unwrap();
    assert!(DiskLock::try_acquire(&image).unwrap().is_some());
    // The workload's part of the image (past block 1) was never touched.
    let output = Command::new(require_tool("qemu-img", "qemu-utils"))
        .args(["info", "--output=json"])
        .arg(&image)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["format"], "raw");
    assert_eq!(info["virtual-size"], 16 << 20);
}
