//! What the core shows the world: each resource's status (derived from its
//! phase) and the persisted state (desired state, isolation, restart
//! counters).

use crate::state_file::{PersistedResource, PersistedState};
use crate::status::{FailureRecord, ResourceStatus};

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
                            separate_monitor: r.separate_monitor && !r.lift_isolation,
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
        let period_ms = u64::try_from(r.spec.timing.restart.period.as_millis()).unwrap_or(u64::MAX);
        let now_ms = self.clock.unix_ms(self.now);
        let restarts_in_period = r
            .restarts
            .recent
            .iter()
            .filter(|&&t| now_ms.saturating_sub(t) < period_ms)
            .count();
        // The monitor it is in, else the one it would be opened in.
        let key = r
            .monitor
            .and_then(|m| self.monitors.get(&m))
            .filter(|_| r.phase.is_open())
            .map_or_else(|| self.monitor_key(i), |m| m.key);
        let next_restart = match r.phase {
            super::lifecycle::Phase::Held { until, .. } => until.map(|t| self.clock.system_time(t)),
            _ => None,
        };
        ResourceStatus {
            isolation_lifted_at_next_open: r.lift_isolation,
            next_restart,
            since: self.clock.system_time(r.since),
            restarts_in_period: u32::try_from(restarts_in_period).unwrap_or(u32::MAX),
            // Borrowed for a shared monitor: no allocation per publish.
            monitor: match key {
                super::monitors::MonitorKey::Shared(p) => std::borrow::Cow::Borrowed(p.name()),
                own => std::borrow::Cow::Owned(self.key_name(own)),
            },
            last_failure: r.last_failure.as_ref().map(|(at, reason)| FailureRecord {
                at: self.clock.system_time(*at),
                reason: reason.clone(),
            }),
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

impl Core {
    /// The validated properties of `i` as an operator may see them: each
    /// secret's value replaced by `<secret>`; before validation, none.
    pub(crate) fn shown_properties(&self, i: ResourceId) -> clusterkit::Properties {
        let validated = &self.res(i).validated;
        let mut shown = clusterkit::Properties::new();
        for (name, value) in validated.iter() {
            if validated.is_secret(name) {
                shown.insert(name, clusterkit::Value::String(SECRET_SHOWN.into()));
            } else {
                shown.insert(name, value.clone());
            }
        }
        shown
    }
}

/// What a secret property's value is shown as.
pub(crate) const SECRET_SHOWN: &str = "<secret>";
