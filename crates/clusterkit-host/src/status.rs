//! What the host shows of each resource.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

use clusterkit::{Health, ResourceState};

use crate::engine::ids::ResourceId;
use crate::state_file::Desired;

/// A resource as the host sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceStatus {
    /// Its name.
    pub name: String,
    /// Its type.
    pub type_name: String,
    /// Its group.
    pub group: String,
    /// Its current state.
    pub state: ResourceState,
    /// What the operator wants.
    pub desired: Desired,
    /// The monitor process it runs in, once opened.
    pub monitor_pid: Option<u32>,
    /// Whether it has a monitor of its own.
    pub separate_monitor: bool,
    /// Restarts over its life.
    pub restarts: u64,
    /// Degraded health results seen.
    pub degraded_count: u64,
    /// Health checks completed.
    pub health_checks: u64,
    /// How long the last health check took, host → monitor → resource → host.
    pub last_check_latency: Option<Duration>,
    /// The last health check's result.
    pub last_health: Option<Health>,
    /// Since when it is in its current state.
    pub since: SystemTime,
    /// Restarts within the current restart period (what the restart
    /// threshold is compared with).
    pub restarts_in_period: u32,
    /// The monitor it runs in (or will be opened in): its placement
    /// group's name, or `separate:NAME` for a monitor of its own.
    pub monitor: std::borrow::Cow<'static, str>,
    /// Its last failure.
    pub last_failure: Option<FailureRecord>,
    /// Held failed, when the restart policy restarts it; `None` when it is
    /// not held, or held until an operator acts (`restart_action = none`).
    pub next_restart: Option<SystemTime>,
    /// A cleanup lifted its isolation: it is still in its own monitor, and
    /// goes back to its group's at its next open.
    pub isolation_lifted_at_next_open: bool,
}

/// When and why a resource failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRecord {
    /// When.
    pub at: SystemTime,
    /// Why: the health check's reason, the failed call's error, the
    /// operator's simulated failure, the monitor's death.
    pub reason: String,
}

/// A resource's health-check counters: what a check changes when its
/// result is the same as the last one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckCounters {
    pub(crate) health_checks: u64,
    pub(crate) last_check_latency: Option<Duration>,
    pub(crate) degraded_count: u64,
}

/// The statuses the engine publishes and the [`Host`](crate::Host) handle
/// reads; waiters are woken on every change.
pub(crate) struct StatusBoard {
    pub(crate) board: Mutex<Board>,
    /// Woken on every change, health-check counters included.
    pub(crate) changed: Condvar,
    /// Woken when a status changes other than by its check counters (a
    /// state, a restart, a health result): those waiting for a state need
    /// not look at every resource after every check.
    pub(crate) states_changed: Condvar,
}

impl StatusBoard {
    /// A board showing `statuses`, resource `i` at index `i`.
    pub(crate) fn new(statuses: Vec<ResourceStatus>) -> StatusBoard {
        StatusBoard {
            board: Mutex::new(Board::new(statuses)),
            changed: Condvar::new(),
            states_changed: Condvar::new(),
        }
    }
}

/// The statuses of the resources there are, in the order they were added,
/// and where each resource's is.
pub(crate) struct Board {
    pub(crate) statuses: Vec<ResourceStatus>,
    /// By resource id: its index in `statuses`; `None` once removed.
    positions: Vec<Option<usize>>,
    names: HashMap<String, ResourceId>,
}

impl Board {
    /// A board showing `statuses`, resource `i` at index `i`.
    pub(crate) fn new(statuses: Vec<ResourceStatus>) -> Board {
        Board {
            positions: (0..statuses.len()).map(Some).collect(),
            names: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.clone(), ResourceId(i)))
                .collect(),
            statuses,
        }
    }

    /// The resource named so.
    pub(crate) fn id(&self, name: &str) -> Option<ResourceId> {
        self.names.get(name).copied()
    }

    /// The status of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&ResourceStatus> {
        let i = self.id(name)?;
        self.positions[i.0].map(|p| &self.statuses[p])
    }

    /// Shows `status` for resource `i`; a resource not seen before is added.
    pub(crate) fn show(&mut self, i: ResourceId, status: ResourceStatus) {
        match self.positions.get(i.0) {
            Some(Some(p)) => self.statuses[*p] = status,
            // Removed: a late status is not shown.
            Some(None) => {}
            None => {
                self.positions.resize(i.0 + 1, None);
                self.positions[i.0] = Some(self.statuses.len());
                self.names.insert(status.name.clone(), i);
                self.statuses.push(status);
            }
        }
    }

    /// Updates the health-check counters of resource `i` in place.
    pub(crate) fn count_checks(&mut self, i: ResourceId, counters: CheckCounters) {
        if let Some(Some(p)) = self.positions.get(i.0) {
            let status = &mut self.statuses[*p];
            status.health_checks = counters.health_checks;
            status.last_check_latency = counters.last_check_latency;
            status.degraded_count = counters.degraded_count;
        }
    }

    /// Forgets resource `i` (removed).
    pub(crate) fn forget(&mut self, i: ResourceId) {
        let Some(p) = self.positions.get_mut(i.0).and_then(Option::take) else {
            return;
        };
        let status = self.statuses.remove(p);
        if self.names.get(&status.name) == Some(&i) {
            self.names.remove(&status.name);
        }
        for q in self.positions.iter_mut().flatten() {
            if *q > p {
                *q -= 1;
            }
        }
    }
}
