//! The on-disk lease between two "nodes": two hosts (each with its own state
//! directory, owner and real monitor processes) that see one image file
//! through two loop devices, as two machines see one shared LUN. The loop
//! devices are different inodes, so the node-local OFD lock does not fence
//! one host from the other: only the lease on the disk does.
//!
//! The image lives on tmpfs (`/dev/shm`): the lease's timing is under test,
//! not a loaded disk's `fdatasync`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Barrier;
use std::time::Duration;

use clusterkit::{Health, Properties, ResourceState};
use clusterkit_disk::{RESERVATION, Record, read_lease, read_record};
use clusterkit_host::{EventKind, Host, RestartAction};
use clusterkit_testkit::{TempDir, require_tool};
use common::*;

/// A loop device over an image file (direct I/O, so two of them over one
/// file stay coherent), detached on drop.
struct LoopDevice {
    path: PathBuf,
}

impl LoopDevice {
    fn attach(image: &Path) -> LoopDevice {
        let output = Command::new(require_tool("losetup", "mount"))
            .args(["--find", "--show", "--direct-io=on"])
            .arg(image)
            .output()
            .expect("running losetup");
        assert!(
            output.status.success(),
            "losetup --find --show --direct-io=on {}: {} (the lease tests need root and loop \
             devices, /dev/loop-control)",
            image.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let path = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        LoopDevice { path: path.into() }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// A formatted image on tmpfs, removed on drop.
struct ShmImage {
    path: PathBuf,
}

impl ShmImage {
    fn new(label: &str) -> ShmImage {
        let path = PathBuf::from(format!(
            "/dev/shm/clusterkit-{label}-{}.img",
            std::process::id()
        ));
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(IMAGE_SIZE))
            .unwrap_or_else(|e| panic!("creating {} (tmpfs on /dev/shm): {e}", path.display()));
        clusterkit_disk::format_image(&path).unwrap();
        ShmImage { path }
    }
}

impl Drop for ShmImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The lease timing of these tests: I/O within 500 ms (the default; a
/// claim waits 1 s for rivals), renewed every 100 ms, expired after 2 s (the
/// least allowed with that `io_timeout`).
const IO: Duration = Duration::from_millis(500);
const RENEWAL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(2);

/// One node: a host whose `data` disk names `owner`, on `device`.
fn node(dir: &TempDir, owner: &str, device: &LoopDevice) -> Host {
    let config = disk("data", &device.path)
        .property("owner", owner)
        .property("io_timeout", IO)
        .property("lease_renewal", RENEWAL)
        .property("lease_timeout", TIMEOUT)
        .timing(|t| t.restart_action = Some(RestartAction::None));
    builder(&dir.path().join(owner.replace('/', "-")))
        .resource(config)
        .start()
        .unwrap()
}

fn reservation(host: &Host) -> Properties {
    Properties::decode(&host.control("data", RESERVATION, b"").unwrap()).unwrap()
}

fn state(host: &Host) -> ResourceState {
    host.resource_status("data").unwrap().state
}

fn settled(state: ResourceState) -> bool {
    matches!(state, ResourceState::Online | ResourceState::Failed)
}

#[test]
fn two_nodes_racing_for_the_disk_never_both_hold_it() {
    let dir = TempDir::new("disk-lease-race");
    let shared = ShmImage::new("lease-race");
    let image = &shared.path;
    let (device_a, device_b) = (LoopDevice::attach(image), LoopDevice::attach(image));
    let a = node(&dir, "node-a/data", &device_a);
    let b = node(&dir, "node-b/data", &device_b);
    let nodes = [("node-a/data", &a), ("node-b/data", &b)];
    let mut wins = [0, 0];
    for round in 0..6u64 {
        let (events_a, events_b) = (a.subscribe(), b.subscribe());
        // Both at once, from two threads. The hosts' claims usually find
        // the first claim already written and watch it (a live lease);
        // claims that both find the disk free are the library test
        // `a_claim_overwritten_by_a_rival_loses_naming_it`.
        let start = Barrier::new(2);
        std::thread::scope(|s| {
            for (_, host) in nodes {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    host.online("data").unwrap();
                });
            }
        });
        // Never both online, at any status change until both settle.
        a.wait_for(PATIENCE, "both claims to end", |statuses| {
            let (sa, sb) = (statuses[0].state, state(&b));
            assert!(
                !(sa == ResourceState::Online && sb == ResourceState::Online),
                "round {round}: both nodes are online"
            );
            settled(sa) && settled(sb)
        })
        .unwrap();
        b.wait_for(PATIENCE, "both claims to end", |statuses| {
            settled(statuses[0].state)
        })
        .unwrap();
        let online: Vec<usize> = (0..2)
            .filter(|&i| state(nodes[i].1) == ResourceState::Online)
            .collect();
        if online.len() != 1 {
            let drained: Vec<_> = events_a.try_iter().chain(events_b.try_iter()).collect();
            panic!("round {round}: exactly one node wins, not {online:?}: {drained:#?}");
        }
        let (winner, loser) = (online[0], 1 - online[0]);
        wins[winner] += 1;
        let (winner_owner, winner_host) = nodes[winner];
        let loser_host = nodes[loser].1;

        // The record and both leases agree: the winner holds, the loser not.
        let (record, _) = read_lease(image).unwrap();
        assert_eq!(record.owner, winner_owner, "round {round}");
        let held = reservation(winner_host);
        assert!(held.bool("held").unwrap(), "round {round}: {held:?}");
        assert_eq!(held.str("lease").unwrap(), "held");
        let lost = reservation(loser_host);
        assert!(!lost.bool("held").unwrap(), "round {round}: {lost:?}");
        assert_eq!(lost.str("owner").unwrap(), winner_owner);
        // The winner's lease is being renewed: its counter moves.
        let before = read_lease(image).unwrap().1.renewals;
        winner_host
            .wait_for(PATIENCE, "renewals", |_| {
                read_lease(image).unwrap().1.renewals > before
            })
            .unwrap();

        // The loser failed naming the winner.
        let loser_events = if loser == 0 { &events_a } else { &events_b };
        let (failed, _) = wait_event(
            loser_events,
            "the loser failing",
            is(EventKind::ResourceFailed, "data"),
        );
        let reason = failed.str_field("reason").unwrap();
        assert!(
            reason.contains(&format!("is reserved by {winner_owner} (generation")),
            "round {round}: {reason}"
        );

        // Release for the next round: the winner's offline frees the record
        // (the loser stays failed; `online` retries it).
        winner_host.offline("data").unwrap();
        winner_host
            .wait_for_state("data", ResourceState::Offline, PATIENCE)
            .unwrap();
        assert!(read_record(image).unwrap().is_free());
    }
    // Each round took exactly one new generation: no claim was lost silently.
    assert_eq!(read_record(image).unwrap(), Record::free(6));
    assert_eq!(wins[0] + wins[1], 6);
    a.shutdown();
    b.shutdown();
}

/// Sends `signal` to `pid`.
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: plain system call.
    let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal})");
}

#[test]
fn a_stale_lease_is_waited_out_and_its_resumed_holder_fails() {
    let dir = TempDir::new("disk-lease-stale");
    let shared = ShmImage::new("lease-stale");
    let image = &shared.path;
    let [device_a, device_b, device_c] = [(); 3].map(|()| LoopDevice::attach(image));
    let a = node(&dir, "node-a/data", &device_a);
    let b = node(&dir, "node-b/data", &device_b);
    // A third node takes the stale lease: a failed resource's terminate
    // may still be under way when the next online arrives.
    let c = node(&dir, "node-c/data", &device_c);
    a.online("data").unwrap();
    a.wait_for_state("data", ResourceState::Online, PATIENCE)
        .unwrap();
    assert_eq!(read_record(image).unwrap(), Record::new("node-a/data", 1));

    // A live lease: the newcomer fails, naming the holder.
    let events_b = b.subscribe();
    b.online("data").unwrap();
    let (failed, _) = wait_event(
        &events_b,
        "the newcomer failing",
        is(EventKind::ResourceFailed, "data"),
    );
    let reason = failed.str_field("reason").unwrap();
    assert!(
        reason.contains(&format!(
            "disk {} is reserved by node-a/data (generation 1): its lease is live",
            device_b.path.display()
        )),
        "{reason}"
    );
    assert_eq!(read_record(image).unwrap(), Record::new("node-a/data", 1));

    // The holder's monitor stops (a hung node): its renewals stop, and a
    // newcomer takes the disk once the lease has stood still for its timeout.
    let events_a = a.subscribe();
    let events_c = c.subscribe();
    let monitor = a.resource_status("data").unwrap().monitor_pid.unwrap();
    signal(monitor, libc::SIGSTOP);
    c.online("data").unwrap();
    let (_, seen) = wait_event(
        &events_c,
        "the newcomer online",
        is(EventKind::ResourceOnline, "data"),
    );
    assert!(
        seen.iter()
            .any(|e| e.str_field("message").is_some_and(|m| m.contains(
                "held by node-a/data (generation 1) was not renewed for 2s: taking it over"
            ))),
        "{seen:?}"
    );
    assert_eq!(read_record(image).unwrap(), Record::new("node-c/data", 2));

    // The holder comes back: it sees the loss and fails, without writing.
    // Its first check after the stop finds the record naming the new holder,
    // or (when that check's I/O was cut by the stop) its own lease lapsed.
    signal(monitor, libc::SIGCONT);
    let (health_failed, _) = wait_event(
        &events_a,
        "the old holder's check failing",
        is(EventKind::HealthFailed, "data"),
    );
    assert_eq!(health_failed.str_field("check"), Some("looks_alive"));
    let reason = health_failed.str_field("reason").unwrap();
    let disk_a = device_a.path.display();
    let taken_over = format!(
        "the reservation of disk {disk_a} was taken over: its record names node-c/data \
         (generation 2), not node-a/data (generation 1)"
    );
    let lapsed = format!("the lease on disk {disk_a} ");
    assert!(
        reason == taken_over
            || (reason.starts_with(&lapsed) && reason.contains("than half the lease timeout (2s)")),
        "{reason}"
    );
    a.wait_for_state("data", ResourceState::Failed, PATIENCE)
        .unwrap();
    // The new holder keeps it, renewing, and stays healthy.
    let start = c.resource_status("data").unwrap().health_checks;
    c.wait_for(PATIENCE, "health checks to pass", |s| {
        s[0].health_checks >= start + 5 && s[0].last_health == Some(Health::Healthy)
    })
    .unwrap();
    assert_eq!(read_record(image).unwrap(), Record::new("node-c/data", 2));
    assert!(reservation(&c).bool("held").unwrap());
    assert!(!reservation(&a).bool("held").unwrap());
    a.shutdown();
    b.shutdown();
    c.stop_all(PATIENCE).unwrap();
    assert_eq!(read_record(image).unwrap(), Record::free(2));
}
