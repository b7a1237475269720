//! A deterministic simulation of the whole host: the real [`Core`], with
//! simulated monitors, workloads, an operator and a simulated clock, driven
//! by one seed through random schedules of hangs, slow calls, panics,
//! aborts, monitor kills, SIGSTOPped monitors, garbage frames, forged
//! replies, operator commands and host restarts. The invariants of
//! [`invariants`] are checked after every step; a failing seed prints the
//! one command that replays its identical history.
//!
//! `scripts/test` runs [`FIXED_SEEDS`] seeds; `scripts/simulate --seeds N`
//! runs more. `docs/TESTING.md` lists the invariants and what the
//! simulation has found.
//!
//! [`Core`]: crate::engine::core::Core

mod invariants;
mod matrix;
mod monitor;
mod scenarios;
mod world;

use std::time::Duration;

use crate::engine::core::Command;
use crate::engine::ids::ResourceId;
use crate::engine::lifecycle::Phase;

pub(crate) use world::Reintroduced;
use world::{Fault, World};

/// Seeds run by every test run.
const FIXED_SEEDS: u64 = 300;
/// Steps one run may take: more means the host busy-loops (a tight
/// respawn loop, a timer that fires without moving on).
const MAX_STEPS: u64 = 100_000;
/// Simulated time with faults, then without.
const CHAOS: Duration = Duration::from_secs(60);
const QUIET: Duration = Duration::from_secs(90);

/// The instant simulated time (and the core's unit tests) count from: the
/// one place test code of the engine reads the clock.
pub(crate) fn epoch() -> std::time::Instant {
    std::time::Instant::now()
}

/// What one seed did.
pub(crate) struct Run {
    pub(crate) history: Vec<String>,
    pub(crate) violations: Vec<String>,
    /// Steps taken until the first violation (or in all).
    pub(crate) steps: u64,
}

/// Runs one seed to the end.
pub(crate) fn run(seed: u64, bugs: Reintroduced) -> Run {
    let mut world = World::new(seed, bugs);
    let chaos_end = world.now + CHAOS;
    let mut next_chaos = world.now + Duration::from_millis(world.rng.below(500));
    let mut steps = 0;
    let mut first_violation = None;
    while world.now < chaos_end {
        world.advance(next_chaos.min(chaos_end));
        steps += 1;
        if steps > MAX_STEPS {
            world.checker.violation(format!(
                "{MAX_STEPS} steps within {:?}: the host busy-loops",
                CHAOS
            ));
            break;
        }
        if world.now >= next_chaos && world.now < chaos_end {
            chaos(&mut world);
            next_chaos = world.now + Duration::from_millis(50 + world.rng.below(700));
        }
        if first_violation.is_none() && !world.checker.violations.is_empty() {
            first_violation = Some(steps);
        }
    }
    world.note("faults stop");
    world.faults.clear();
    world.disk_full_until = None;
    let quiet_end = world.now + QUIET;
    while world.now < quiet_end && world.advance(quiet_end) {
        steps += 1;
        if steps > 2 * MAX_STEPS {
            world
                .checker
                .violation("the host busy-loops once faults stopped".into());
            break;
        }
    }
    invariants::check_settled(&mut world);
    stop_everything(&mut world);
    Run {
        history: world.history,
        violations: world.checker.violations,
        steps: first_violation.unwrap_or(steps),
    }
}

/// The operator stops the node (`stop_all`): everything offline, then
/// closed, sometimes with a `close` that hangs. A stop stops every workload
/// whose terminate did not fail, and starts no monitor.
fn stop_everything(world: &mut World) {
    world.note("operator: stop everything");
    for i in 0..world.specs.len() {
        world.command(Command::Offline(ResourceId(i)));
    }
    let settle = Duration::from_secs(60);
    world.run_until(settle, |w| {
        w.core
            .resources
            .iter()
            .all(|r| r.is_idle() && !matches!(r.phase, Phase::Online { .. }))
    });
    if world.rng.chance(50) {
        let i = ResourceId(world.rng.below(world.specs.len() as u64) as usize);
        world.note(format!("chaos: r{} will Hang in close", i.0));
        world.faults.insert((i, "close"), Fault::Hang);
    }
    let spawned_before = world
        .history
        .iter()
        .filter(|l| l.contains("spawn monitor"))
        .count();
    world.command(Command::CloseAll);
    world.run_for(Duration::from_secs(10));
    let spawned_after = world
        .history
        .iter()
        .filter(|l| l.contains("spawn monitor"))
        .count();
    if spawned_after > spawned_before {
        world.checker.violation(format!(
            "{} monitors started after the stop began",
            spawned_after - spawned_before
        ));
    }
    for (i, w) in world.workloads.iter().enumerate() {
        if w.running && !w.terminate_failed {
            let name = &world.specs[i].name;
            world
                .checker
                .violations
                .push(format!("{name}'s workload runs after the stop"));
        }
    }
}

/// One random disturbance.
fn chaos(world: &mut World) {
    let count = world.specs.len() as u64;
    let i = ResourceId(world.rng.below(count) as usize);
    let monitors: Vec<_> = world
        .monitors
        .iter()
        .filter(|(_, m)| !m.dying)
        .map(|(id, _)| *id)
        .collect();
    let monitor =
        (!monitors.is_empty()).then(|| monitors[world.rng.below(monitors.len() as u64) as usize]);
    match world.rng.below(100) {
        0..=29 => {
            const OPS: [&str; 6] = [
                "open",
                "online",
                "offline",
                "looks_alive",
                "is_alive",
                "terminate",
            ];
            let op = OPS[world.rng.below(OPS.len() as u64) as usize];
            let fault = match world.rng.below(6) {
                0 => Fault::Hang,
                1 => Fault::Slow(Duration::from_millis(200 + world.rng.below(1_600))),
                2 => Fault::Fail,
                3 => Fault::Panic,
                4 => Fault::Abort,
                _ => Fault::Garbage,
            };
            world.note(format!("chaos: r{} will {fault:?} in {op}", i.0));
            world.faults.insert((i, op), fault);
        }
        30..=39 => {
            if let Some(m) = monitor {
                world.note(format!("chaos: monitor {m} killed from outside"));
                world.die(m, Some(libc::SIGKILL));
            }
        }
        40..=44 => {
            if let Some(m) = monitor {
                world.note(format!("chaos: monitor {m} SIGSTOPped"));
                world.monitors.get_mut(&m).expect("listed").stopped = true;
            }
        }
        45..=54 if world.workloads[i.0].running => {
            world.note(format!("chaos: workload r{} dies", i.0));
            let w = &mut world.workloads[i.0];
            w.running = false;
            w.restart_owed = true;
            w.own_trouble = true;
        }
        55..=69 => {
            world.command(Command::Online(i));
        }
        70..=79 => {
            world.command(Command::Offline(i));
        }
        80..=84 => {
            world.workloads[i.0].own_trouble = true;
            world.command(Command::Fail(i));
        }
        85..=89 => forge_reply(world),
        90..=92 => world.restart_host(),
        98..=99 => {
            world.command(Command::Cleanup(i));
        }
        96..=97 => {
            let span = Duration::from_millis(500 + world.rng.below(4_000));
            world.note(format!("chaos: the disk is full for {span:?}"));
            world.disk_full_until = Some(world.now + span);
        }
        93..=95 => {
            let count = 1 + world.rng.below(3) as u32;
            world.note(format!("chaos: the next {count} monitors exit at once"));
            world.broken_spawns = count;
        }
        _ => {}
    }
    world.settle();
}

/// A library writes a reply to its monitor's socket for a call that went
/// to another monitor: the host must ignore it.
fn forge_reply(world: &mut World) {
    let calls: Vec<_> = world
        .core
        .calls
        .iter()
        .map(|(id, c)| (*id, c.monitor))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let liars: Vec<_> = world.monitors.keys().copied().collect();
    if calls.is_empty() || liars.is_empty() {
        return;
    }
    let (call, target) = calls[world.rng.below(calls.len() as u64) as usize];
    let liar = liars[world.rng.below(liars.len() as u64) as usize];
    if liar == target {
        return;
    }
    world.note(format!(
        "chaos: monitor {liar} forges a reply to call {} of monitor {target}",
        call.0
    ));
    let message = crate::protocol::FromMonitor::Reply {
        call: call.0,
        outcome: crate::protocol::Outcome::State(clusterkit::ResourceState::Online),
    };
    let now = world.now;
    world.core.handle(
        crate::engine::core::Input::Frame {
            monitor: liar,
            message,
        },
        now,
    );
}

fn replay_command(seed: u64) -> String {
    format!(
        "SIM_SEED={seed} cargo test -p clusterkit-host --lib engine::simulation::tests::replay -- --exact --nocapture"
    )
}

/// Runs `seeds` and panics at the first that breaks an invariant, with its
/// history and the command that replays it.
pub(crate) fn check_seeds(seeds: impl Iterator<Item = u64>) {
    for seed in seeds {
        let run = run(seed, Reintroduced::default());
        if !run.violations.is_empty() {
            let tail: Vec<_> = run.history.iter().rev().take(60).rev().cloned().collect();
            panic!(
                "seed {seed} broke an invariant:\n  {}\nlast steps:\n{}\nreplay: {}",
                run.violations.join("\n  "),
                tail.join("\n"),
                replay_command(seed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_u64(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|v| v.parse().ok())
    }

    #[test]
    fn fixed_seeds_hold_every_invariant() {
        check_seeds(1..=FIXED_SEEDS);
    }

    /// `scripts/simulate --seeds N` runs this with `SIM_SEEDS=N`.
    #[test]
    #[ignore = "long: run by scripts/simulate"]
    fn many_seeds() {
        let first = env_u64("SIM_FIRST_SEED").unwrap_or(FIXED_SEEDS + 1);
        let count = env_u64("SIM_SEEDS").unwrap_or(10_000);
        check_seeds(first..first + count);
        println!("{count} seeds from {first}: every invariant held");
    }

    /// Replays one seed (`SIM_SEED`, default 1) and prints its history.
    #[test]
    fn replay() {
        let seed = env_u64("SIM_SEED").unwrap_or(1);
        let run = run(seed, Reintroduced::default());
        for line in &run.history {
            println!("{line}");
        }
        assert!(
            run.violations.is_empty(),
            "seed {seed}: {:?}",
            run.violations
        );
    }

    #[test]
    fn one_seed_gives_one_history() {
        let a = run(7, Reintroduced::default());
        let b = run(7, Reintroduced::default());
        assert!(a.history.len() > 100, "a run does something");
        assert_eq!(a.history, b.history);
        let c = run(8, Reintroduced::default());
        assert_ne!(a.history, c.history, "another seed, another history");
    }

    /// Bugs fixed earlier, switched back on: the simulation must find each
    /// within a few hundred seeds. `docs/TESTING.md` quotes what this prints.
    #[test]
    fn reintroduced_bugs_are_found() {
        let bugs = [
            (
                "a culprit isolated without its restart policy",
                Reintroduced {
                    culprit_skips_policy: true,
                    ..Reintroduced::default()
                },
            ),
            (
                "a stop whose close killed a monitor starts another",
                Reintroduced {
                    stop_starts_monitors: true,
                    ..Reintroduced::default()
                },
            ),
            (
                "a monitor dying during re-attach makes bystanders forget they were online",
                Reintroduced {
                    reattach_forgotten_on_death: true,
                    ..Reintroduced::default()
                },
            ),
        ];
        for (what, bug) in bugs {
            let found = (1..=FIXED_SEEDS).find_map(|seed| {
                let run = run(seed, bug);
                (!run.violations.is_empty()).then(|| (seed, run.steps, run.violations[0].clone()))
            });
            let (seed, steps, violation) =
                found.unwrap_or_else(|| panic!("the simulation did not find: {what}"));
            println!("{what}: found by seed {seed} after {steps} steps: {violation}");
        }
    }
}
