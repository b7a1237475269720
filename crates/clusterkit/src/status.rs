//! Progress reports of pending `online`/`offline` operations.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Error, ResourceState};

/// The host's answer to a progress report.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Keep going.
    Continue = 0,
    /// Stop at once: the host is terminating the resource.
    Terminate = 1,
}

/// Receives the reports of one pending operation. The host implements this.
pub trait StatusSink: Send + Sync {
    /// A progress report: the operation is in `state` (a pending state), at
    /// `checkpoint`, and expects to report again within `wait_hint`.
    fn report(&self, state: ResourceState, checkpoint: u32, wait_hint: Duration) -> Reply;
    /// The operation ended: in `Ok(state)` (`Online` or `Offline`), or failed.
    fn complete(&self, outcome: Result<ResourceState, Error>);
}

/// The handle through which a pending `online` or `offline` reports progress
/// and its end; the equivalent of Windows' `SetResourceStatus`.
///
/// Each [`report`](StatusReporter::report) resets the host's pending
/// deadline. Cloneable and `Send`, so it can move to a worker thread.
///
/// ```
/// use clusterkit::{Reply, StatusReporter};
/// use std::time::Duration;
///
/// let status = StatusReporter::detached_online();
/// assert_eq!(status.report(1, Duration::from_secs(5)), Reply::Continue);
/// status.complete(Ok(()));
/// ```
#[derive(Clone)]
pub struct StatusReporter {
    sink: Arc<dyn StatusSink>,
    pending: ResourceState,
    target: ResourceState,
}

impl fmt::Debug for StatusReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusReporter")
            .field("pending", &self.pending)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

struct NullSink;

impl StatusSink for NullSink {
    fn report(&self, _: ResourceState, _: u32, _: Duration) -> Reply {
        Reply::Continue
    }
    fn complete(&self, _: Result<ResourceState, Error>) {}
}

impl StatusReporter {
    /// A reporter for an `online` operation, writing to `sink`.
    pub fn online(sink: Arc<dyn StatusSink>) -> StatusReporter {
        StatusReporter {
            sink,
            pending: ResourceState::OnlinePending,
            target: ResourceState::Online,
        }
    }

    /// A reporter for an `offline` operation, writing to `sink`.
    pub fn offline(sink: Arc<dyn StatusSink>) -> StatusReporter {
        StatusReporter {
            sink,
            pending: ResourceState::OfflinePending,
            target: ResourceState::Offline,
        }
    }

    /// An `online` reporter connected to nothing, for tests and examples:
    /// reports answer [`Reply::Continue`].
    pub fn detached_online() -> StatusReporter {
        StatusReporter::online(Arc::new(NullSink))
    }

    /// The state this operation reaches on success.
    pub fn target(&self) -> ResourceState {
        self.target
    }

    /// Reports progress: at `checkpoint`, next report within `wait_hint`.
    /// On [`Reply::Terminate`] the worker must stop at once.
    pub fn report(&self, checkpoint: u32, wait_hint: Duration) -> Reply {
        self.sink.report(self.pending, checkpoint, wait_hint)
    }

    /// Reports the end of the operation: `Ok(())` when the target state is
    /// reached, or the error that stopped it.
    pub fn complete(&self, outcome: Result<(), Error>) {
        self.sink.complete(outcome.map(|()| self.target))
    }
}
