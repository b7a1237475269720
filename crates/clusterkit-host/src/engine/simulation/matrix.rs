//! The recovery matrix in the simulation: every entry point × {hang,
//! panic, abort, error, slow within the deadline}, in milliseconds each.
//! The same table as the real-process matrix
//! (`crates/clusterkit-host/tests/recovery_matrix.rs`, which runs real
//! monitors and the fault-injection library): a faulty resource `x` shares
//! its monitor with three healthy re-attachable bystanders; the outcome
//! checked is x's isolation, restarts, workload starts and final state, and
//! that the bystanders were neither blamed nor restarted.

use std::time::Duration;

use clusterkit::{ControlCode, ResourceState};

use crate::engine::core::Command;
use crate::engine::ids::ResourceId;

use super::world::{Fault, World};

use ResourceState::{Failed, Offline, Online};

const X: ResourceId = ResourceId(0);
const BYSTANDERS: [ResourceId; 3] = [ResourceId(1), ResourceId(2), ResourceId(3)];
const SLOW: Duration = Duration::from_millis(300);
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Expect {
    isolated: bool,
    restarts: u64,
    starts: u64,
    state: ResourceState,
}

const fn isolated(restarts: u64, starts: u64, state: ResourceState) -> Expect {
    Expect {
        isolated: true,
        restarts,
        starts,
        state,
    }
}

const fn in_place(restarts: u64, starts: u64, state: ResourceState) -> Expect {
    Expect {
        isolated: false,
        restarts,
        starts,
        state,
    }
}

fn fault(name: &str) -> Fault {
    match name {
        "hang" => Fault::Hang,
        "panic" => Fault::Panic,
        "abort" => Fault::Abort,
        "error" => Fault::Fail,
        _ => Fault::Slow(SLOW),
    }
}

fn state(world: &World, i: ResourceId) -> ResourceState {
    world.core.res(i).phase.state()
}

fn all(world: &World, wanted: ResourceState) -> bool {
    (0..4).all(|i| state(world, ResourceId(i)) == wanted)
}

/// Runs one cell and returns what went wrong, if anything.
fn cell(entry: &'static str, fault_name: &str, expect: Expect) -> Result<(), String> {
    let mut world = World::scenario(&["x", "b0", "b1", "b2"], true);
    let fault = fault(fault_name);
    if entry == "open" {
        world.faults.insert((X, "open"), fault);
    }
    world.command(Command::Start);
    for i in 0..4 {
        world.command(Command::Online(ResourceId(i)));
    }
    if entry != "open" && !world.run_until(SETTLE, |w| all(w, Online)) {
        return Err("not everything came online".into());
    }
    if entry == "online" {
        world.command(Command::Offline(X));
        if !world.run_until(SETTLE, |w| state(w, X) == Offline) {
            return Err("x did not go offline".into());
        }
    }

    if entry != "open" {
        world.faults.insert((X, entry), fault);
    }
    match entry {
        "online" => drop(world.command(Command::Online(X))),
        "offline" => drop(world.command(Command::Offline(X))),
        "terminate" => drop(world.command(Command::Fail(X))),
        "control" => drop(world.command(Command::Control(X, ControlCode(1), vec![]))),
        "close" => {
            for i in 0..4 {
                world.command(Command::Offline(ResourceId(i)));
            }
            if !world.run_until(SETTLE, |w| all(w, Offline)) {
                return Err("not everything went offline".into());
            }
            world.faults.insert((X, "close"), fault);
            world.command(Command::CloseAll);
        }
        _ => {}
    }
    world.run_for(SETTLE);
    let x = world.core.res(X);
    let mut problems = Vec::new();
    // After a stop, a resource whose monitor died in `close` is unknown to
    // the stopped host: what counts is that no workload runs.
    let shown = |i: ResourceId| match world.core.res(i).phase.state() {
        ResourceState::Unknown if entry == "close" && !world.workloads[i.0].running => Offline,
        state => state,
    };
    let got = (
        x.separate_monitor,
        x.restarts.total,
        world.workloads[X.0].starts,
        shown(X),
    );
    let wanted = (
        expect.isolated,
        expect.restarts,
        expect.starts,
        expect.state,
    );
    if got != wanted {
        problems.push(format!(
            "x (isolated, restarts, starts, state): got {got:?}, expected {wanted:?}"
        ));
    }
    let bystanders_end = if entry == "close" { Offline } else { Online };
    for b in BYSTANDERS {
        let r = world.core.res(b);
        if r.separate_monitor || world.workloads[b.0].starts != 1 || shown(b) != bystanders_end {
            problems.push(format!(
                "{}: isolated {}, started {} times, {}",
                r.spec.name,
                r.separate_monitor,
                world.workloads[b.0].starts,
                shown(b)
            ));
        }
    }
    problems.extend(world.checker.violations.iter().cloned());
    if problems.is_empty() {
        Ok(())
    } else {
        let tail: Vec<_> = world.history.iter().rev().take(40).rev().cloned().collect();
        Err(format!("{}\n{}", problems.join("\n"), tail.join("\n")))
    }
}

macro_rules! cells {
    ($($name:ident: $entry:literal, $fault:literal => $expect:expr;)*) => {
        $(
            #[test]
            fn $name() {
                if let Err(problem) = cell($entry, $fault, $expect) {
                    panic!("{} × {}: {problem}", $entry, $fault);
                }
            }
        )*
    };
}

cells! {
    open_hang: "open", "hang" => isolated(1, 1, Online);
    open_panic: "open", "panic" => in_place(1, 1, Online);
    open_abort: "open", "abort" => isolated(1, 1, Online);
    open_error: "open", "error" => in_place(1, 1, Online);
    open_slow: "open", "slow" => in_place(0, 1, Online);
    close_hang: "close", "hang" => isolated(0, 1, Offline);
    close_panic: "close", "panic" => in_place(0, 1, Offline);
    close_abort: "close", "abort" => isolated(0, 1, Offline);
    close_error: "close", "error" => in_place(0, 1, Offline);
    close_slow: "close", "slow" => in_place(0, 1, Offline);
    online_hang: "online", "hang" => isolated(1, 2, Online);
    online_panic: "online", "panic" => in_place(1, 2, Online);
    online_abort: "online", "abort" => isolated(1, 2, Online);
    online_error: "online", "error" => in_place(1, 2, Online);
    online_slow: "online", "slow" => in_place(0, 2, Online);
    offline_hang: "offline", "hang" => isolated(0, 1, Offline);
    offline_panic: "offline", "panic" => in_place(0, 1, Offline);
    offline_abort: "offline", "abort" => isolated(0, 1, Offline);
    offline_error: "offline", "error" => in_place(0, 1, Offline);
    offline_slow: "offline", "slow" => in_place(0, 1, Offline);
    terminate_hang: "terminate", "hang" => isolated(1, 2, Online);
    terminate_panic: "terminate", "panic" => in_place(0, 1, Failed);
    terminate_abort: "terminate", "abort" => isolated(1, 2, Online);
    terminate_error: "terminate", "error" => in_place(0, 1, Failed);
    terminate_slow: "terminate", "slow" => in_place(1, 2, Online);
    looks_alive_hang: "looks_alive", "hang" => isolated(1, 2, Online);
    looks_alive_panic: "looks_alive", "panic" => in_place(0, 1, Online);
    looks_alive_abort: "looks_alive", "abort" => isolated(1, 2, Online);
    looks_alive_error: "looks_alive", "error" => in_place(0, 1, Online);
    looks_alive_slow: "looks_alive", "slow" => in_place(0, 1, Online);
    is_alive_hang: "is_alive", "hang" => isolated(1, 2, Online);
    is_alive_panic: "is_alive", "panic" => in_place(1, 2, Online);
    is_alive_abort: "is_alive", "abort" => isolated(1, 2, Online);
    is_alive_error: "is_alive", "error" => in_place(1, 2, Online);
    is_alive_slow: "is_alive", "slow" => in_place(0, 1, Online);
    control_hang: "control", "hang" => isolated(1, 2, Online);
    control_panic: "control", "panic" => in_place(0, 1, Online);
    control_abort: "control", "abort" => isolated(1, 2, Online);
    control_error: "control", "error" => in_place(0, 1, Online);
    control_slow: "control", "slow" => in_place(0, 1, Online);
}
