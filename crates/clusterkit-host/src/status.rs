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

/// How many resources the host has in each state, kept up to date as
/// statuses change (reading it costs nothing per resource).
///
/// ```
/// use clusterkit::ResourceState;
/// let counts = clusterkit_host::StateCounts::default();
/// assert_eq!(counts.total(), 0);
/// assert_eq!(counts.in_state(ResourceState::Online), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// By `ResourceState`'s number (1 to 7).
    by_state: [usize; 8],
}

impl StateCounts {
    /// How many resources there are.
    pub fn total(&self) -> usize {
        self.by_state.iter().sum()
    }

    /// How many are in `state`.
    pub fn in_state(&self, state: ResourceState) -> usize {
        self.by_state.get(state as usize).copied().unwrap_or(0)
    }

    /// How many are in one of the two pending states.
    pub fn pending(&self) -> usize {
        self.in_state(ResourceState::OnlinePending) + self.in_state(ResourceState::OfflinePending)
    }

    fn add(&mut self, state: ResourceState) {
        if let Some(n) = self.by_state.get_mut(state as usize) {
            *n += 1;
        }
    }

    fn remove(&mut self, state: ResourceState) {
        if let Some(n) = self.by_state.get_mut(state as usize) {
            *n = n.saturating_sub(1);
        }
    }
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
    pub(crate) counts: StateCounts,
}

impl Board {
    /// A board showing `statuses`, resource `i` at index `i`.
    pub(crate) fn new(statuses: Vec<ResourceStatus>) -> Board {
        let mut counts = StateCounts::default();
        for status in &statuses {
            counts.add(status.state);
        }
        Board {
            counts,
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
            Some(Some(p)) => {
                self.counts.remove(self.statuses[*p].state);
                self.counts.add(status.state);
                self.statuses[*p] = status;
            }
            // Removed: a late status is not shown.
            Some(None) => {}
            None => {
                self.positions.resize(i.0 + 1, None);
                self.positions[i.0] = Some(self.statuses.len());
                self.names.insert(status.name.clone(), i);
                self.counts.add(status.state);
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
        self.counts.remove(status.state);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, state: ResourceState) -> ResourceStatus {
        ResourceStatus {
            name: name.into(),
            type_name: "t".into(),
            group: "g".into(),
            state,
            desired: Desired::Offline,
            monitor_pid: None,
            separate_monitor: false,
            restarts: 0,
            degraded_count: 0,
            health_checks: 0,
            last_check_latency: None,
            last_health: None,
            since: SystemTime::UNIX_EPOCH,
            restarts_in_period: 0,
            monitor: "default".into(),
            last_failure: None,
            next_restart: None,
            isolation_lifted_at_next_open: false,
        }
    }

    fn recount(board: &Board) -> StateCounts {
        let mut counts = StateCounts::default();
        for s in &board.statuses {
            counts.add(s.state);
        }
        counts
    }

    #[test]
    fn the_counts_by_state_follow_every_show_and_forget() {
        use ResourceState::*;
        let mut board = Board::new(vec![status("a", Initializing), status("b", Online)]);
        assert_eq!(board.counts, recount(&board));
        let steps = [
            (0, Some(OnlinePending)),
            (0, Some(Online)),
            (2, Some(Failed)),
            (1, Some(Offline)),
            (1, None),
            (2, Some(OfflinePending)),
            (0, None),
        ];
        for (i, state) in steps {
            match state {
                Some(state) => board.show(ResourceId(i), status(&format!("r{i}"), state)),
                None => board.forget(ResourceId(i)),
            }
            assert_eq!(board.counts, recount(&board), "after {i} → {state:?}");
        }
        assert_eq!(board.counts.total(), 1);
        assert_eq!(board.counts.pending(), 1);
        // Check counters change no count.
        let counters = CheckCounters {
            health_checks: 5,
            last_check_latency: Some(Duration::from_micros(30)),
            degraded_count: 0,
        };
        board.count_checks(ResourceId(2), counters);
        assert_eq!(board.counts, recount(&board));
        assert_eq!(board.get("r2").map(|s| s.health_checks), Some(5));
    }
}
