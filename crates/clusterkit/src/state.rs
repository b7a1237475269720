//! Resource states, health-check results and operation outcomes.

use std::fmt;

crate::stable_enum! {
    /// The state of a resource as the host tracks it.
    ///
    /// The numeric values are stable and cross the C ABI; the names
    /// (`"online_pending"`) are stable too.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ResourceState: u32 {
        /// Opened, not yet brought online or offline.
        Initializing = 1, "initializing";
        /// Online and serving.
        Online = 2, "online";
        /// Offline.
        Offline = 3, "offline";
        /// Coming online on a worker; progress is reported through a [`StatusReporter`](crate::StatusReporter).
        OnlinePending = 4, "online_pending";
        /// Going offline on a worker.
        OfflinePending = 5, "offline_pending";
        /// Failed; the host applies its restart policy.
        Failed = 6, "failed";
        /// Not known (for example, while the host re-attaches).
        Unknown = 7, "unknown";
    }
}

impl ResourceState {
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
