//! The call table: every call sent to a monitor and not yet answered, with
//! its deadline. Deadlines live in an ordered set and leave it with the
//! reply, so thousands of checks a second leave nothing behind.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::ids::{CallId, IdMap, LibraryId, MonitorId, RequestId, ResourceId};

/// What a call is for, which decides what its reply does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// Load a library and learn its types.
    LoadLibrary(LibraryId),
    /// `open`.
    Open,
    /// `online`.
    Online,
    /// `offline`.
    Offline,
    /// `terminate`.
    Terminate,
    /// A periodic `looks_alive`.
    LooksAlive,
    /// A periodic (or follow-up) `is_alive`.
    IsAlive,
    /// The `looks_alive` that decides whether a re-opened resource is re-attached.
    ReattachCheck,
    /// `close`.
    Close,
    /// An operator's control code; the answer goes to the request.
    Control(RequestId),
}

/// A call in flight.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The monitor it went to.
    pub(crate) monitor: MonitorId,
    /// The resource it is for (none: a library load).
    pub(crate) resource: Option<ResourceId>,
    /// The entry point's name, for events.
    pub(crate) op: &'static str,
    /// What its reply does.
    pub(crate) kind: CallKind,
    /// When it was sent: its deadline counts from here.
    pub(crate) started: Instant,
    /// When the driver finished writing it, if it said so: a health
    /// check's latency counts from here (the host's own share excluded).
    pub(crate) written: Option<Instant>,
    /// How long it may take.
    pub(crate) deadline: Duration,
}

/// Calls in flight, by id and by deadline.
#[derive(Default)]
pub(crate) struct CallTable {
    calls: IdMap<CallId, Call>,
    deadlines: BTreeSet<(Instant, CallId)>,
    next: u64,
}

impl CallTable {
    /// Records a new call and returns its id.
    pub(crate) fn insert(&mut self, call: Call) -> CallId {
        self.next += 1;
        let id = CallId(self.next);
        self.deadlines.insert((call.started + call.deadline, id));
        self.calls.insert(id, call);
        id
    }

    /// The call, if it is still in flight.
    pub(crate) fn get(&self, id: CallId) -> Option<&Call> {
        self.calls.get(&id)
    }

    /// The driver wrote the call's frame at `at`.
    pub(crate) fn note_written(&mut self, id: CallId, at: Instant) {
        if let Some(call) = self.calls.get_mut(&id) {
            call.written = Some(at);
        }
    }

    /// Removes a call (answered, or lost with its monitor).
    pub(crate) fn take(&mut self, id: CallId) -> Option<Call> {
        let call = self.calls.remove(&id)?;
        self.deadlines.remove(&(call.started + call.deadline, id));
        Some(call)
    }

    /// Takes every call that went to `monitor`, in the order they were sent.
    pub(crate) fn take_monitor(&mut self, monitor: MonitorId) -> Vec<(CallId, Call)> {
        let mut ids: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.monitor == monitor)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.take(id).map(|c| (id, c)))
            .collect()
    }

    /// When the earliest deadline passes.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Takes the earliest call whose deadline has passed by `now`, leaving
    /// the call itself in the table (its monitor is about to be killed).
    pub(crate) fn pop_overdue(&mut self, now: Instant) -> Option<CallId> {
        let &(at, id) = self.deadlines.first()?;
        if at > now {
            return None;
        }
        self.deadlines.pop_first();
        Some(id)
    }

    /// Every call in flight (for invariant checks).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&CallId, &Call)> {
        self.calls.iter()
    }
}

impl super::core::Core {
    /// Sends a call to `monitor` and records it with its deadline (the
    /// resource's `deadlock_timeout`, or the host default for library loads).
    pub(crate) fn send_call(
        &mut self,
        monitor: MonitorId,
        resource: Option<ResourceId>,
        op: crate::protocol::Op,
        kind: CallKind,
    ) -> Option<CallId> {
        if !self.monitors.contains_key(&monitor) {
            return None;
        }
        let deadline = resource.map_or(self.default_timing.deadlock_timeout, |i| {
            self.res(i).spec.timing.deadlock_timeout
        });
        let id = self.calls.insert(Call {
            monitor,
            resource,
            op: op.name(),
            kind,
            started: self.now,
            written: None,
            deadline,
        });
        let message = crate::protocol::ToMonitor::Call {
            call: id.0,
            resource: resource.map_or(0, ResourceId::wire),
            op,
        };
        self.actions
            .push_back(super::core::Action::Send { monitor, message });
        Some(id)
    }
}
