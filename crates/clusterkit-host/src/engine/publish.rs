//! What the core shows the world: each resource's status (derived from its
//! phase) and the persisted state (desired state, isolation, restart
//! counters).

use crate::state_file::{PersistedResource, PersistedState};
use crate::status::ResourceStatus;

use super::core::{Action, Core};
use super::ids::{RequestId, ResourceId};
use super::timers::Timer;
use crate::events::{Event, EventKind};
use crate::protocol::millis;

/// How soon a failed state write is tried again.
const PERSIST_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Core {
    /// The state to persist now.
    pub(crate) fn persisted_state(&self) -> PersistedState {
        PersistedState {
            version: 1,
            resources: self
                .resources
                .iter()
                .filter(|r| !r.retired)
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
        self.persist_then_reply(None);
    }

    /// Persists, and answers `reply` once the state is written (or says
    /// it could not be).
    pub(crate) fn persist_then_reply(&mut self, reply: Option<RequestId>) {
        let state = self.persisted_state();
        self.actions.push_back(Action::Persist { state, reply });
    }

    /// The outcome of the last write: a failure is reported once and
    /// retried every second until the file is written again.
    pub(crate) fn on_persisted(&mut self, error: Option<String>) {
        match (error, self.persist_failing.take()) {
            (Some(error), before) => {
                if before.is_none() {
                    let event = Event::of(EventKind::StateNotSaved, None)
                        .with("error", error.clone())
                        .with("retry_in_ms", millis(PERSIST_RETRY));
                    self.emit(event);
                }
                self.persist_failing = Some(error);
                self.timers
                    .set(Timer::PersistRetry, self.now + PERSIST_RETRY);
            }
            (None, Some(error)) => {
                self.timers.cancel(Timer::PersistRetry);
                self.emit(Event::of(EventKind::StateSaved, None).with("after", error));
            }
            (None, None) => {}
        }
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
