//! What the host shows of each resource.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

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
}

/// The statuses the engine publishes and the [`Host`](crate::Host) handle
/// reads; waiters are woken on every change.
pub(crate) struct StatusBoard {
    pub(crate) statuses: Mutex<Vec<ResourceStatus>>,
    pub(crate) changed: Condvar,
}
