//! Scenarios the host reliability work asked for, each a regression test:
//! a resource that corrupts the protocol in every check is blamed and
//! isolated, and a monitor that cannot start is not respawned in a loop.

use std::time::Duration;

use clusterkit::ResourceState;

use crate::engine::core::Command;
use crate::engine::ids::ResourceId;

use super::world::{Fault, World};

const X: ResourceId = ResourceId(0);

fn all_online(world: &World) -> bool {
    (0..world.specs.len())
        .all(|i| world.core.res(ResourceId(i)).phase.state() == ResourceState::Online)
}

fn started(names: &[&str]) -> World {
    let mut world = World::scenario(names, true);
    world.command(Command::Start);
    for i in 0..names.len() {
        world.command(Command::Online(ResourceId(i)));
    }
    assert!(
        world.run_until(Duration::from_secs(10), all_online),
        "{}",
        world.history.join("\n")
    );
    world
}

#[test]
fn a_resource_that_corrupts_the_protocol_is_blamed_and_isolated() {
    let mut world = started(&["x", "b0", "b1", "b2"]);
    world
        .sticky_faults
        .insert((X, "looks_alive"), Fault::Garbage);
    world.run_for(Duration::from_secs(30));
    let text = world.history.join("\n");
    let x = world.core.res(X);
    assert!(x.separate_monitor, "x was never isolated\n{text}");
    for b in 1..4 {
        let r = world.core.res(ResourceId(b));
        assert!(!r.separate_monitor, "{} isolated\n{text}", r.spec.name);
        assert_eq!(
            world.workloads[b].starts, 1,
            "{} restarted\n{text}",
            r.spec.name
        );
    }
    // Isolated, x's own monitor keeps dying: its restart policy, not a
    // loop, decides how often (the spawn-rate invariant holds).
    assert!(
        world.checker.violations.is_empty(),
        "{:?}\n{text}",
        world.checker.violations
    );
    world.sticky_faults.clear();
    assert!(
        world.run_until(Duration::from_secs(120), all_online),
        "x did not come back once it stopped\n{}",
        world.history.join("\n")
    );
}

#[test]
fn a_monitor_that_cannot_start_is_retried_with_backoff() {
    let mut world = started(&["a", "b"]);
    // From now on every monitor exits before its hello.
    world.broken_spawns = u32::MAX;
    let shared = *world.monitors.keys().next().expect("one monitor");
    world.die(shared, Some(libc::SIGKILL));
    world.run_for(Duration::from_secs(20));
    let spawned = world
        .history
        .iter()
        .filter(|l| l.contains("exits at once"))
        .count();
    let text = world.history.join("\n");
    // 100 ms, 200 ms, ... doubling: about 8 attempts in 20 s, not thousands.
    assert!((5..=12).contains(&spawned), "{spawned} attempts\n{text}");
    assert!(
        world
            .history
            .iter()
            .any(|l| l.contains("before_hello=true") && l.contains("retry_in_ms")),
        "monitor_died says it died before its hello and when the next try is\n{text}"
    );
    world.broken_spawns = 0;
    assert!(
        world.run_until(Duration::from_secs(60), all_online),
        "{}",
        world.history.join("\n")
    );
    assert!(
        world.checker.violations.is_empty(),
        "{:?}",
        world.checker.violations
    );
}

#[test]
fn a_monitor_stopped_from_outside_blames_nobody() {
    let mut world = started(&["x", "b0", "b1", "b2"]);
    let shared = *world.monitors.keys().next().expect("one monitor");
    world.monitors.get_mut(&shared).expect("live").stopped = true;
    world.run_for(Duration::from_secs(10));
    let text = world.history.join("\n");
    assert!(
        world
            .history
            .iter()
            .any(|l| l.contains("call_timed_out") && l.contains("stopped=true")),
        "{text}"
    );
    assert!(
        world.run_until(Duration::from_secs(30), all_online),
        "{text}"
    );
    for i in 0..4 {
        let r = world.core.res(ResourceId(i));
        assert!(!r.separate_monitor, "{} isolated\n{text}", r.spec.name);
        assert_eq!(
            world.workloads[i].starts, 1,
            "{} restarted\n{text}",
            r.spec.name
        );
    }
    assert!(
        world.checker.violations.is_empty(),
        "{:?}",
        world.checker.violations
    );
}

#[test]
fn a_resource_whose_open_always_fails_is_opened_threshold_plus_one_times_and_fails_over_once() {
    let mut world = World::scenario(&["x"], true);
    world.sticky_faults.insert((X, "open"), Fault::Fail);
    world.command(Command::Start);
    world.command(Command::Online(X));
    // Within the retry period (20 s): the first open and three restarts.
    world.run_for(Duration::from_secs(15));
    let text = world.history.join("\n");
    let opens = world
        .history
        .iter()
        .filter(|l| l.contains(": open r0"))
        .count();
    let failovers = world
        .history
        .iter()
        .filter(|l| l.contains("event failover_requested x"))
        .count();
    assert_eq!(opens, 4, "{text}");
    assert_eq!(failovers, 1, "{text}");
}

#[test]
fn a_full_disk_fails_the_command_says_so_once_and_records_it_when_space_returns() {
    let mut world = started(&["x"]);
    world.disk_full_until = Some(world.now + Duration::from_secs(5));
    let request = world.command(Command::Offline(X));
    let text = world.history.join("\n");
    let answer = world.replies.get(&request).cloned();
    assert!(
        matches!(&answer, Some(Err(e)) if e.contains("not recorded") && e.contains("No space left")),
        "{answer:?}\n{text}"
    );
    world.run_for(Duration::from_secs(10));
    let text = world.history.join("\n");
    let count = |what: &str| world.history.iter().filter(|l| l.contains(what)).count();
    assert_eq!(count("event state_not_saved"), 1, "{text}");
    assert_eq!(count("event state_saved"), 1, "{text}");
    assert_eq!(
        world.persisted.resources["x"].desired,
        crate::state_file::Desired::Offline,
        "{text}"
    );
    assert!(
        world.checker.violations.is_empty(),
        "{:?}",
        world.checker.violations
    );
}

#[test]
fn a_check_with_the_same_result_publishes_only_its_counters() {
    let mut world = started(&["a", "b", "c"]);
    // The first result of each check is a change of health: a whole status.
    world.run_for(Duration::from_secs(5));
    let before = world.published;
    world.run_for(Duration::from_secs(30));
    let (whole, counters) = (world.published.0 - before.0, world.published.1 - before.1);
    let text = world.history.join("\n");
    // Healthy checks every second for 30 s: each is a counter update; no
    // whole status is copied for them.
    assert!(counters >= 3 * 20, "{counters} counter updates\n{text}");
    assert_eq!(whole, 0, "{whole} whole statuses published\n{text}");
    for i in 0..3 {
        let shown = &world.board[&ResourceId(i)];
        assert_eq!(shown.health_checks, world.core.res(ResourceId(i)).checks);
    }
    assert!(
        world.checker.violations.is_empty(),
        "{:?}\n{text}",
        world.checker.violations
    );
}
