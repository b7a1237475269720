//! The two traits a resource author implements.

use std::borrow::Cow;
use std::sync::Arc;

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
