//! The two traits a resource author implements.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Characteristics, ControlCode, Error, Health, Logger, Properties, Result, Schema,
    StatusReporter, StopFlag, Transition,
};

/// What a resource type says about itself: returned once, at `startup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeDescription {
    /// The type's name, unique within a cluster (`"network-name"`).
    pub name: Cow<'static, str>,
    /// One line for people.
    pub description: Cow<'static, str>,
    /// What the type can do.
    pub characteristics: Characteristics,
    /// The properties its resources accept.
    pub schema: Schema,
}

impl TypeDescription {
    /// A description with no characteristics and an empty schema.
    pub fn new(name: impl Into<Cow<'static, str>>) -> TypeDescription {
        TypeDescription {
            name: name.into(),
            description: Cow::Borrowed(""),
            characteristics: Characteristics::empty(),
            schema: Schema::default(),
        }
    }
}

/// The timeouts a type advises for its operations: what a cluster manager
/// should allow each one (OCF meta-data advertises them; Pacemaker
/// operations default to them in tools such as `pcs`).
///
/// A type declares its own with
/// [`ResourceType::operation_timeouts`]; the defaults suit a type whose
/// operations finish within seconds. Built from the defaults:
///
/// ```
/// use clusterkit::OperationTimeouts;
/// use std::time::Duration;
///
/// let vm = OperationTimeouts::default()
///     .start(Duration::from_secs(300))
///     .stop(Duration::from_secs(180));
/// assert_eq!(vm.monitor, Duration::from_secs(20));
/// let back = OperationTimeouts::from_properties(&vm.to_properties());
/// assert_eq!(back, vm);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperationTimeouts {
    /// Bringing a resource online (default 60 s).
    pub start: Duration,
    /// Taking it offline, `terminate` included (default 60 s).
    pub stop: Duration,
    /// The cheap health check, `looks_alive` (default 20 s).
    pub monitor: Duration,
    /// The thorough health check, `is_alive` (default 30 s).
    pub deep_monitor: Duration,
}

impl Default for OperationTimeouts {
    fn default() -> OperationTimeouts {
        OperationTimeouts {
            start: Duration::from_secs(60),
            stop: Duration::from_secs(60),
            monitor: Duration::from_secs(20),
            deep_monitor: Duration::from_secs(30),
        }
    }
}

impl OperationTimeouts {
    /// Sets the start timeout.
    pub fn start(mut self, timeout: Duration) -> OperationTimeouts {
        self.start = timeout;
        self
    }

    /// Sets the stop timeout.
    pub fn stop(mut self, timeout: Duration) -> OperationTimeouts {
        self.stop = timeout;
        self
    }

    /// Sets the cheap health check's timeout.
    pub fn monitor(mut self, timeout: Duration) -> OperationTimeouts {
        self.monitor = timeout;
        self
    }

    /// Sets the thorough health check's timeout.
    pub fn deep_monitor(mut self, timeout: Duration) -> OperationTimeouts {
        self.deep_monitor = timeout;
        self
    }

    /// As the property list [`ControlCode::GET_OPERATION_TIMEOUTS`] outputs:
    /// durations `start`, `stop`, `monitor`, `deep_monitor`.
    pub fn to_properties(&self) -> Properties {
        let mut p = Properties::new();
        p.insert("start", self.start);
        p.insert("stop", self.stop);
        p.insert("monitor", self.monitor);
        p.insert("deep_monitor", self.deep_monitor);
        p
    }

    /// Reads [`to_properties`](Self::to_properties)' list; missing or
    /// mistyped entries keep their defaults, unknown ones are ignored (a
    /// newer library may advise more).
    pub fn from_properties(p: &Properties) -> OperationTimeouts {
        let d = OperationTimeouts::default();
        let get = |name: &str, default: Duration| p.duration(name).unwrap_or(default);
        OperationTimeouts {
            start: get("start", d.start),
            stop: get("stop", d.stop),
            monitor: get("monitor", d.monitor),
            deep_monitor: get("deep_monitor", d.deep_monitor),
        }
    }
}

/// What `startup` receives from the host.
#[derive(Debug, Clone)]
pub struct StartupContext {
    /// Lines logged here are attributed to the resource type.
    pub log: Logger,
}

/// What `open` receives: the resource's identity and its handles to the host.
#[derive(Debug, Clone)]
pub struct ResourceContext {
    name: Arc<str>,
    log: Logger,
    termination: StopFlag,
}

impl ResourceContext {
    /// A context for the resource `name`. Hosts and tests build these; the
    /// export glue raises [`termination`](Self::termination) on `terminate`.
    pub fn new(name: &str, log: Logger, termination: StopFlag) -> ResourceContext {
        ResourceContext {
            name: name.into(),
            log,
            termination,
        }
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resource's logging handle.
    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// Raised when the host calls `terminate`, and lowered again when the
    /// next `online` or `offline` starts. A long call (or a pending worker)
    /// waits on this flag instead of sleeping, so `terminate` can make it
    /// return promptly.
    pub fn termination(&self) -> &StopFlag {
        &self.termination
    }
}

/// A resource type: a factory of [`Resource`]s, living once per monitor.
///
/// See the [crate documentation](crate) for a complete example.
pub trait ResourceType: Send + Sync + Sized + 'static {
    /// The resources this type opens.
    type Resource: Resource;

    /// The type's name, characteristics and property schema.
    fn describe() -> TypeDescription;

    /// The timeouts the type advises for its operations; the defaults unless
    /// overridden. Answered across the C ABI as
    /// [`ControlCode::GET_OPERATION_TIMEOUTS`] by the export glue.
    fn operation_timeouts() -> OperationTimeouts {
        OperationTimeouts::default()
    }

    /// Called once when the library is loaded in a monitor (budget: 300 ms).
    fn startup(ctx: &StartupContext) -> Result<Self>;

    /// Creates the resource `ctx.name()` with `properties`, already
    /// validated against the schema with defaults filled in (budget: 300 ms).
    ///
    /// With `recover = true` the workload may already be running (the monitor
    /// was restarted): adopt it rather than start a new one. If it is running
    /// and healthy, the host resumes the resource online without calling
    /// `online` (only for [`Characteristics::REATTACH`] types).
    fn open(
        &self,
        ctx: ResourceContext,
        properties: &Properties,
        recover: bool,
    ) -> Result<Self::Resource>;

    /// Type-level control codes (no resource needed). Return
    /// [`Error::Unsupported`] for codes the type does not handle.
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        let _ = input;
        Err(Error::unsupported(code))
    }
}

/// One resource: the entry points the host calls on it.
///
/// Calls to one resource are serialized, except [`terminate`](Self::terminate),
/// which may arrive while any other call but `open`/`close` runs; so entry
/// points take `&self` and keep mutable state behind a lock.
pub trait Resource: Send + Sync + 'static {
    /// Brings the resource online. Return [`Transition::Done`] within 300 ms,
    /// or [`Transition::Pending`] and finish on a worker that reports through
    /// `status`.
    fn online(&self, status: StatusReporter) -> Result<Transition>;

    /// Takes the resource offline gracefully; like [`online`](Self::online).
    fn offline(&self, status: StatusReporter) -> Result<Transition>;

    /// Stops the workload forcefully, at any time, within 1 s; it must be
    /// stopped when this returns. In-flight calls see
    /// [`ResourceContext::termination`] raised.
    fn terminate(&self) -> Result<()>;

    /// The cheap, frequent check (typically under 50 ms).
    fn looks_alive(&self) -> Health;

    /// The thorough, rarer check (a few hundred ms).
    fn is_alive(&self) -> Health;

    /// Quorum types only: try to win ownership. `lost` must be called if
    /// ownership is lost later.
    fn arbitrate(&self, lost: LostOwnership) -> Result<()> {
        let _ = lost;
        Err(Error::unsupported("arbitrate"))
    }

    /// Quorum types only: give up ownership.
    fn release(&self) -> Result<()> {
        Err(Error::unsupported("release"))
    }

    /// Resource-level control codes. Return [`Error::Unsupported`] for codes
    /// the resource does not handle; the host then applies its default.
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        let _ = input;
        Err(Error::unsupported(code))
    }

    /// Releases everything; called once, last (budget: 300 ms). The host
    /// calls `terminate` first if the resource may still be online.
    fn close(self) -> Result<()>
    where
        Self: Sized,
    {
        Ok(())
    }
}

/// The callback a quorum resource calls when it loses ownership.
#[derive(Clone)]
pub struct LostOwnership {
    notify: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for LostOwnership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LostOwnership").finish_non_exhaustive()
    }
}

impl LostOwnership {
    /// A callback that runs `notify`.
    pub fn new(notify: impl Fn() + Send + Sync + 'static) -> LostOwnership {
        LostOwnership {
            notify: Arc::new(notify),
        }
    }

    /// Tells the host that ownership was lost.
    pub fn notify(&self) {
        (self.notify)()
    }
}
