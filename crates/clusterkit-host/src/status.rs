//! What the host shows of each resource.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

use clusterkit::{Health, ResourceState};

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

/// The statuses the engine publishes and the [`Host`](crate::Host) handle
/// reads; waiters are woken on every change.
pub(crate) struct StatusBoard {
    pub(crate) statuses: Mutex<Vec<ResourceStatus>>,
    pub(crate) changed: Condvar,
}
