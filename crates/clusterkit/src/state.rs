//! Resource states, health-check results and operation outcomes.

use std::fmt;

/// The state of a resource as the host tracks it.
///
/// The numeric values are stable and cross the C ABI.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceState {
    /// Opened, not yet brought online or offline.
    Initializing = 1,
    /// Online and serving.
    Online = 2,
    /// Offline.
    Offline = 3,
    /// Coming online on a worker; progress is reported through a [`StatusReporter`](crate::StatusReporter).
    OnlinePending = 4,
    /// Going offline on a worker.
    OfflinePending = 5,
    /// Failed; the host applies its restart policy.
    Failed = 6,
    /// Not known (for example, while the host re-attaches).
    Unknown = 7,
}

impl ResourceState {
    /// All states, in numeric order.
    pub const ALL: [ResourceState; 7] = [
        ResourceState::Initializing,
        ResourceState::Online,
        ResourceState::Offline,
        ResourceState::OnlinePending,
        ResourceState::OfflinePending,
        ResourceState::Failed,
        ResourceState::Unknown,
    ];

    /// The state for its numeric value.
    pub fn from_u32(value: u32) -> Option<ResourceState> {
        Self::ALL.into_iter().find(|s| *s as u32 == value)
    }

    /// A stable lower-case name (`"online_pending"`).
    pub const fn name(self) -> &'static str {
        match self {
            ResourceState::Initializing => "initializing",
            ResourceState::Online => "online",
            ResourceState::Offline => "offline",
            ResourceState::OnlinePending => "online_pending",
            ResourceState::OfflinePending => "offline_pending",
            ResourceState::Failed => "failed",
            ResourceState::Unknown => "unknown",
        }
    }

    /// Whether this is one of the two pending states.
    pub const fn is_pending(self) -> bool {
        matches!(
            self,
            ResourceState::OnlinePending | ResourceState::OfflinePending
        )
    }
}

impl fmt::Display for ResourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of a health check (`looks_alive` or `is_alive`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Health {
    /// Serving normally.
    Healthy,
    /// Serving, but not well: reported and counted, no recovery.
    Degraded(String),
    /// Not serving: the host starts recovery.
    Failed(String),
}

impl Health {
    /// A [`Health::Degraded`] with a reason.
    pub fn degraded(reason: impl Into<String>) -> Health {
        Health::Degraded(reason.into())
    }

    /// A [`Health::Failed`] with a reason.
    pub fn failed(reason: impl Into<String>) -> Health {
        Health::Failed(reason.into())
    }

    /// Whether the host must start recovery.
    pub fn is_failed(&self) -> bool {
        matches!(self, Health::Failed(_))
    }

    /// The reason, empty when healthy.
    pub fn reason(&self) -> &str {
        match self {
            Health::Healthy => "",
            Health::Degraded(r) | Health::Failed(r) => r,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Healthy => f.write_str("healthy"),
            Health::Degraded(r) => write!(f, "degraded: {r}"),
            Health::Failed(r) => write!(f, "failed: {r}"),
        }
    }
}

/// How `online` or `offline` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The target state is reached.
    Done,
    /// The operation goes on on a worker, which reports progress and the end
    /// through the [`StatusReporter`](crate::StatusReporter) it was given.
    Pending,
}
