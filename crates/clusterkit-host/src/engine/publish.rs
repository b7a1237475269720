//! What the core shows the world: each resource's status (derived from its
//! phase) and the persisted state (desired state, isolation, restart
//! counters).

use crate::state_file::{PersistedResource, PersistedState};
use crate::status::ResourceStatus;

use super::core::{Action, Core};
use super::ids::ResourceId;

impl Core {
    /// The state to persist now.
    pub(crate) fn persisted_state(&self) -> PersistedState {
        PersistedState {
            version: 1,
            resources: self
                .resources
                .iter()
                .map(|r| {
                    (
                        r.spec.name.clone(),
                        PersistedResource {
                            desired: r.desired,
                            separate_monitor: r.separate_monitor,
                            restarts: r.restarts.clone(),
                        },
                    )
                })
                .collect(),
            clock: Some(self.clock.mark_at(self.now)),
        }
    }

    pub(crate) fn persist(&mut self) {
        let state = self.persisted_state();
        self.actions.push_back(Action::Persist(state));
    }

    /// A resource's status as the host API shows it.
    pub(crate) fn status(&self, i: ResourceId) -> ResourceStatus {
        let r = self.res(i);
        let pid = r
            .monitor
            .and_then(|m| self.monitors.get(&m))
            .filter(|m| r.phase.is_open() && m.ready)
            .and_then(|m| m.pid);
        ResourceStatus {
            name: r.spec.name.clone(),
            type_name: r.spec.type_name.clone(),
            group: r.spec.group.clone(),
            state: r.phase.state(),
            desired: r.desired,
            monitor_pid: pid,
            separate_monitor: r.separate_monitor,
            restarts: r.restarts.total,
            degraded_count: r.degraded,
            health_checks: r.checks,
            last_check_latency: r.last_latency,
            last_health: r.last_health.clone(),
        }
    }
}
