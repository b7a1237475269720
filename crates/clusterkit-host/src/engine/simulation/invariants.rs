//! The invariants the simulation checks after every step. They are listed,
//! with what each guards against, in `docs/TESTING.md`.

use std::time::Instant;

use clusterkit::ResourceState;

use crate::engine::core::Core;
use crate::engine::ids::ResourceId;
use crate::engine::lifecycle::Phase;
use crate::events::{Event, EventKind};
use crate::state_file::{Desired, PersistedState};

use super::world::World;

/// Collects violations, and what it needs to judge the next step.
pub(crate) struct Checker {
    pub(crate) violations: Vec<String>,
    states: Vec<ResourceState>,
    step_events: Vec<(EventKind, Option<String>, Vec<String>)>,
}

impl Checker {
    pub(crate) fn new(count: usize) -> Checker {
        Checker {
            violations: Vec::new(),
            states: vec![ResourceState::Initializing; count],
            step_events: Vec::new(),
        }
    }

    pub(crate) fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    pub(crate) fn on_event(&mut self, event: &Event) {
        let suspects = event
            .field("suspects")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        self.step_events
            .push((event.kind, event.resource.clone(), suspects));
    }

    fn saw(&self, kind: EventKind, name: &str) -> bool {
        self.step_events
            .iter()
            .any(|(k, r, _)| *k == kind && r.as_deref() == Some(name))
    }

    fn saw_kind(&self, kind: EventKind) -> bool {
        self.step_events.iter().any(|(k, _, _)| *k == kind)
    }

    /// Before a batch of inputs at `now`: nothing the core promised to
    /// handle earlier is still waiting.
    pub(crate) fn before_inputs(&mut self, core: &Core, now: Instant) {
        if let Some(at) = core.next_deadline()
            && at < now
        {
            self.violations.push(format!(
                "the core's deadline passed unhandled by {:?}",
                now - at
            ));
        }
    }

    pub(crate) fn after_step(world: &mut World) {
        let now = world.now;
        let core = &world.core;
        let checker = &mut world.checker;
        // A call never outlives its deadline: the monitor is being killed.
        for (id, call) in core.calls.iter() {
            let killing = core
                .monitors
                .get(&call.monitor)
                .is_none_or(|m| m.killing.is_some());
            if !killing && call.started + call.deadline < now {
                checker.violations.push(format!(
                    "call {} ({}) outlived its deadline by {:?}",
                    id.0,
                    call.op,
                    now - (call.started + call.deadline)
                ));
            }
        }
        for (index, r) in core.resources.iter().enumerate() {
            let name = r.spec.name.clone();
            // Nothing stays pending past its pending timeout.
            if let Phase::Pending { until, .. } = r.phase
                && until < now
            {
                checker
                    .violations
                    .push(format!("{name} stayed pending past its progress deadline"));
            }
            // The restart policy's counts are respected.
            if r.restarts.recent.len() > r.spec.timing.restart.threshold as usize {
                checker.violations.push(format!(
                    "{name} has {} restarts in its period, over the threshold of {}",
                    r.restarts.recent.len(),
                    r.spec.timing.restart.threshold
                ));
            }
            // The persisted state, read back, gives the same desired states
            // (while the disk is full, once it is written again).
            let persisted = world
                .persisted
                .resources
                .get(&name)
                .map_or(Desired::Offline, |p| p.desired);
            if persisted != r.desired && core.persist_failing.is_none() {
                checker.violations.push(format!(
                    "{name}: desired {:?} but {:?} persisted",
                    r.desired, persisted
                ));
            }
            // Every state change has its event.
            let (before, after) = (checker.states[index], r.phase.state());
            if before != after {
                checker.states[index] = after;
                let explained = match after {
                    ResourceState::Online => checker.saw(EventKind::ResourceOnline, &name),
                    ResourceState::OnlinePending => checker.saw(EventKind::ResourcePending, &name),
                    // A graceful offline that failed is finished by terminate.
                    ResourceState::OfflinePending => {
                        checker.saw(EventKind::ResourcePending, &name)
                            || checker.saw(EventKind::CallFailed, &name)
                    }
                    ResourceState::Failed => {
                        matches!(before, ResourceState::Unknown | ResourceState::Initializing)
                            || checker.saw(EventKind::ResourceFailed, &name)
                            || checker.saw(EventKind::HealthFailed, &name)
                            || checker.saw_kind(EventKind::MonitorDied)
                    }
                    _ if before == ResourceState::Online => {
                        checker.saw(EventKind::ResourceOffline, &name)
                            || checker.saw(EventKind::CallFailed, &name)
                            || checker.saw_kind(EventKind::MonitorDied)
                    }
                    _ => true,
                };
                if !explained {
                    checker.violations.push(format!(
                        "{name} went from {before} to {after} without an event saying so"
                    ));
                }
            }
        }
        // A blamed resource is isolated and held by its restart policy.
        let blamed: Vec<String> = checker
            .step_events
            .iter()
            .filter(|(k, _, _)| *k == EventKind::MonitorDied)
            .flat_map(|(_, _, s)| s.clone())
            .collect();
        for name in blamed {
            let Some(r) = core.resources.iter().find(|r| r.spec.name == name) else {
                continue;
            };
            if !r.separate_monitor || !r.phase.is_held() {
                checker.violations.push(format!(
                    "{name} was blamed but is not isolated and held by its restart policy \
                     (separate_monitor={}, phase={:?})",
                    r.separate_monitor, r.phase
                ));
            }
        }
        checker.step_events.clear();
    }

    pub(crate) fn on_host_restart(&mut self, core: &Core, persisted: &PersistedState) {
        for r in &core.resources {
            let saved = persisted
                .resources
                .get(&r.spec.name)
                .map_or(Desired::Offline, |p| p.desired);
            if saved != r.desired {
                self.violations.push(format!(
                    "{} restarted with desired {:?}, persisted {:?}",
                    r.spec.name, r.desired, saved
                ));
            }
        }
        for s in &mut self.states {
            *s = ResourceState::Initializing;
        }
    }
}

/// Once faults stop, every resource the operator wants online (with its
/// dependencies) comes online, and nothing is left in between.
pub(crate) fn check_settled(world: &mut World) {
    let core = &world.core;
    let mut problems = Vec::new();
    for i in (0..core.resources.len()).map(ResourceId) {
        let r = core.res(i);
        let wanted = chain_wants_online(core, i);
        let state = r.phase.state();
        let expected = if stays_failed(core, i) {
            ResourceState::Failed
        } else if wanted {
            ResourceState::Online
        } else {
            ResourceState::Offline
        };
        if state != expected {
            problems.push(format!(
                "{} is {state} after the faults stopped, not {expected} (phase {:?})",
                r.spec.name, r.phase
            ));
        }
    }
    world.checker.violations.extend(problems);
}

/// Held with no restart due: its terminate failed, until an operator acts.
fn stays_failed(core: &Core, i: ResourceId) -> bool {
    matches!(core.res(i).phase, Phase::Held { until: None, .. })
}

fn chain_wants_online(core: &Core, i: ResourceId) -> bool {
    let r = core.res(i);
    r.desired == Desired::Online
        && !stays_failed(core, i)
        && r.spec
            .depends_on
            .iter()
            .all(|&d| chain_wants_online(core, ResourceId(d)))
}
