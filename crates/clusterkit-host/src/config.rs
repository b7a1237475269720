//! What a host is told to run: resources, their timing, placement and
//! restart policy, with the defaults `docs/CONFIG.md` lists.

use std::path::PathBuf;
use std::time::Duration;

use clusterkit::{Properties, Value};
use serde::{Deserialize, Serialize};

/// Which shared monitor a resource runs in (unless it has its own).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Core cluster resources (names, addresses).
    Core,
    /// Storage resources (disks).
    Storage,
    /// Everything else.
    #[default]
    Default,
}

impl Placement {
    /// The placement's name (`"core"`).
    pub fn name(self) -> &'static str {
        match self {
            Placement::Core => "core",
            Placement::Storage => "storage",
            Placement::Default => "default",
        }
    }
}

/// What the host does when a resource fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartAction {
    /// Leave it failed.
    None,
    /// Restart it, within the threshold; never ask for failover.
    Restart,
    /// Restart it within the threshold, then emit `failover_requested`.
    #[default]
    RestartThenFailover,
}

/// Exponential backoff of the restart delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Each consecutive restart multiplies the delay by this.
    pub factor: u32,
    /// The longest delay.
    pub cap: Duration,
    /// Online this long without failing resets the delay to its base.
    pub reset_after: Duration,
}

/// When and how often a failed resource is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// See [`RestartAction`]; default `restart_then_failover`.
    pub action: RestartAction,
    /// Restarts allowed within `period` (default 3).
    pub threshold: u32,
    /// The window for the threshold (default 15 min).
    pub period: Duration,
    /// Wait before a restart (default 500 ms).
    pub delay: Duration,
    /// Optional exponential backoff of `delay`.
    pub backoff: Option<Backoff>,
    /// After the threshold is exceeded, one more attempt after this long
    /// (default 1 h).
    pub retry_period_on_failure: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            action: RestartAction::RestartThenFailover,
            threshold: 3,
            period: Duration::from_millis(900_000),
            delay: Duration::from_millis(500),
            backoff: None,
            retry_period_on_failure: Duration::from_millis(3_600_000),
        }
    }
}

/// The smallest allowed `deadlock_timeout`.
pub const MIN_DEADLOCK_TIMEOUT: Duration = Duration::from_millis(1_000);

/// Timing of one resource: health-check periods, deadlines, restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Period of the cheap check (default 5 s).
    pub looks_alive_interval: Duration,
    /// Period of the thorough check (default 60 s).
    pub is_alive_interval: Duration,
    /// Any single call taking longer is a deadlock (default 5 min, min 1 s).
    pub deadlock_timeout: Duration,
    /// Longest gap between progress reports of a pending operation
    /// (default 3 min); the effective value is `min(pending, deadlock)`.
    pub pending_timeout: Duration,
    /// What happens on failure.
    pub restart: RestartPolicy,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            looks_alive_interval: Duration::from_millis(5_000),
            is_alive_interval: Duration::from_millis(60_000),
            deadlock_timeout: Duration::from_millis(300_000),
            pending_timeout: Duration::from_millis(180_000),
            restart: RestartPolicy::default(),
        }
    }
}

impl Timing {
    /// The gap between progress reports after which a pending operation fails.
    pub fn effective_pending_timeout(&self) -> Duration {
        self.pending_timeout.min(self.deadlock_timeout)
    }

    /// Checks the values; the error names the offending setting.
    pub fn check(&self) -> Result<(), String> {
        if self.deadlock_timeout < MIN_DEADLOCK_TIMEOUT {
            return Err(format!(
                "deadlock_timeout is {} ms, the minimum is {} ms",
                self.deadlock_timeout.as_millis(),
                MIN_DEADLOCK_TIMEOUT.as_millis()
            ));
        }
        for (name, value) in [
            ("looks_alive_interval", self.looks_alive_interval),
            ("is_alive_interval", self.is_alive_interval),
            ("pending_timeout", self.pending_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be above zero"));
            }
        }
        if let Some(b) = self.restart.backoff
            && b.factor < 1
        {
            return Err("restart backoff factor must be at least 1".into());
        }
        Ok(())
    }
}

/// Per-resource or per-type overrides of [`Timing`]; unset fields fall
/// back (resource → type → host defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingOverrides {
    /// See [`Timing::looks_alive_interval`].
    pub looks_alive_interval: Option<Duration>,
    /// See [`Timing::is_alive_interval`].
    pub is_alive_interval: Option<Duration>,
    /// See [`Timing::deadlock_timeout`].
    pub deadlock_timeout: Option<Duration>,
    /// See [`Timing::pending_timeout`].
    pub pending_timeout: Option<Duration>,
    /// See [`RestartPolicy::action`].
    pub restart_action: Option<RestartAction>,
    /// See [`RestartPolicy::threshold`].
    pub restart_threshold: Option<u32>,
    /// See [`RestartPolicy::period`].
    pub restart_period: Option<Duration>,
    /// See [`RestartPolicy::delay`].
    pub restart_delay: Option<Duration>,
    /// See [`RestartPolicy::backoff`].
    pub restart_backoff: Option<Backoff>,
    /// See [`RestartPolicy::retry_period_on_failure`].
    pub retry_period_on_failure: Option<Duration>,
}

impl TimingOverrides {
    /// `base` with every set field replaced.
    pub fn apply(&self, base: &Timing) -> Timing {
        let r = &base.restart;
        Timing {
            looks_alive_interval: self
                .looks_alive_interval
                .unwrap_or(base.looks_alive_interval),
            is_alive_interval: self.is_alive_interval.unwrap_or(base.is_alive_interval),
            deadlock_timeout: self.deadlock_timeout.unwrap_or(base.deadlock_timeout),
            pending_timeout: self.pending_timeout.unwrap_or(base.pending_timeout),
            restart: RestartPolicy {
                action: self.restart_action.unwrap_or(r.action),
                threshold: self.restart_threshold.unwrap_or(r.threshold),
                period: self.restart_period.unwrap_or(r.period),
                delay: self.restart_delay.unwrap_or(r.delay),
                backoff: self.restart_backoff.or(r.backoff),
                retry_period_on_failure: self
                    .retry_period_on_failure
                    .unwrap_or(r.retry_period_on_failure),
            },
        }
    }
}

/// One resource for the host to run.
///
/// ```
/// use clusterkit_host::{Placement, ResourceConfig};
/// use std::time::Duration;
///
/// let web = ResourceConfig::new("web-name", "/usr/lib/clusterkit/libnetname.so", "network-name")
///     .property("name", "web.example.test")
///     .group("web")
///     .depends_on("web-ip")
///     .placement(Placement::Core)
///     .timing(|t| t.looks_alive_interval = Some(Duration::from_secs(1)));
/// assert_eq!(web.depends_on, ["web-ip"]);
/// ```
///
/// Its `Debug` output names the properties but shows none of their values:
/// which are secret is known only once the type's schema is (a
/// `tsig_secret`), and a configuration is often printed before that.
#[derive(Clone, PartialEq)]
pub struct ResourceConfig {
    /// Unique name.
    pub name: String,
    /// The resource library exporting its type.
    pub library: PathBuf,
    /// The type's name in that library.
    pub type_name: String,
    /// Its properties (validated against the type's schema at start).
    pub properties: Properties,
    /// Its group (default `"default"`); dependencies stay within a group.
    pub group: String,
    /// Resources in the same group that must be online first.
    pub depends_on: Vec<String>,
    /// Timing overrides.
    pub timing: TimingOverrides,
    /// Which shared monitor it runs in.
    pub placement: Placement,
    /// Run it in a monitor of its own.
    pub separate_monitor: bool,
}

impl std::fmt::Debug for ResourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<&str> = self.properties.iter().map(|(name, _)| name).collect();
        f.debug_struct("ResourceConfig")
            .field("name", &self.name)
            .field("library", &self.library)
            .field("type_name", &self.type_name)
            .field("properties", &properties)
            .field("group", &self.group)
            .field("depends_on", &self.depends_on)
            .field("timing", &self.timing)
            .field("placement", &self.placement)
            .field("separate_monitor", &self.separate_monitor)
            .finish()
    }
}

impl ResourceConfig {
    /// A resource `name` of `type_name` from `library`.
    pub fn new(
        name: impl Into<String>,
        library: impl Into<PathBuf>,
        type_name: impl Into<String>,
    ) -> ResourceConfig {
        ResourceConfig {
            name: name.into(),
            library: library.into(),
            type_name: type_name.into(),
            properties: Properties::new(),
            group: "default".into(),
            depends_on: Vec::new(),
            timing: TimingOverrides::default(),
            placement: Placement::Default,
            separate_monitor: false,
        }
    }

    /// Sets a property.
    pub fn property(mut self, name: &str, value: impl Into<Value>) -> ResourceConfig {
        self.properties.insert(name, value);
        self
    }

    /// Sets the group.
    pub fn group(mut self, group: impl Into<String>) -> ResourceConfig {
        self.group = group.into();
        self
    }

    /// Adds a dependency.
    pub fn depends_on(mut self, other: impl Into<String>) -> ResourceConfig {
        self.depends_on.push(other.into());
        self
    }

    /// Sets the placement.
    pub fn placement(mut self, placement: Placement) -> ResourceConfig {
        self.placement = placement;
        self
    }

    /// Gives it a monitor of its own.
    pub fn separate_monitor(mut self) -> ResourceConfig {
        self.separate_monitor = true;
        self
    }

    /// Edits the timing overrides.
    pub fn timing(mut self, edit: impl FnOnce(&mut TimingOverrides)) -> ResourceConfig {
        edit(&mut self.timing);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_debug_shows_property_names_but_no_values() {
        let r = ResourceConfig::new("web-name", "/lib/nn.so", "network-name")
            .property("tsig_secret", "c2VjcmV0LWtleQ==")
            .property("name", "web");
        let text = format!("{r:?}");
        assert!(
            text.contains("tsig_secret") && text.contains("web-name"),
            "{text}"
        );
        assert!(!text.contains("c2VjcmV0LWtleQ=="), "{text}");
    }
}
