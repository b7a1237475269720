//! The call table: every call sent to a monitor and not yet answered, with
//! its deadline. Deadlines live in an ordered set and leave it with the
//! reply, so thousands of checks a second leave nothing behind.
//!
//! At most [`WINDOW`] calls are out at one monitor; more wait here, in
//! order, without a deadline, and go out as replies come back. A burst (ten
//! thousand `open`s at start) then never fills the monitor's socket (the
//! engine would block writing, and kill a monitor that is only busy), and
//! a call's deadline counts the time its monitor has it, not the time it
//! queued behind the others.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::protocol::ToMonitor;

use super::ids::{CallId, IdMap, LibraryId, MonitorId, RequestId, ResourceId};

/// Calls out at one monitor at most (`terminate` goes out regardless).
pub(crate) const WINDOW: usize = 512;

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
    /// When it was sent: its deadline counts from here. (Set when it goes
    /// out: a call waiting for the window has no deadline yet.)
    pub(crate) started: Instant,
    /// Sent to its monitor (not waiting for the window).
    pub(crate) sent: bool,
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
    /// Calls sent and not answered, per monitor.
    out: IdMap<MonitorId, usize>,
    /// Calls waiting for the window, per monitor, in order.
    waiting: IdMap<MonitorId, VecDeque<(CallId, ToMonitor)>>,
}

impl CallTable {
    /// Records a new call, not sent yet, and returns its id.
    pub(crate) fn insert(&mut self, call: Call) -> CallId {
        self.next += 1;
        let id = CallId(self.next);
        self.calls.insert(id, call);
        id
    }

    /// Whether `monitor` may be sent one more call now.
    pub(crate) fn has_room(&self, monitor: MonitorId) -> bool {
        self.out.get(&monitor).copied().unwrap_or(0) < WINDOW
    }

    /// The call goes out at `now`: its deadline starts.
    pub(crate) fn mark_sent(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.started = now;
        call.sent = true;
        self.deadlines.insert((now + call.deadline, id));
        *self.out.entry(call.monitor).or_insert(0) += 1;
    }

    /// The call waits for `monitor`'s window.
    pub(crate) fn hold(&mut self, monitor: MonitorId, id: CallId, message: ToMonitor) {
        self.waiting
            .entry(monitor)
            .or_default()
            .push_back((id, message));
    }

    /// The next waiting call `monitor` has room for.
    pub(crate) fn next_waiting(&mut self, monitor: MonitorId) -> Option<(CallId, ToMonitor)> {
        if !self.has_room(monitor) {
            return None;
        }
        let queue = self.waiting.get_mut(&monitor)?;
        let next = queue.pop_front();
        if queue.is_empty() {
            self.waiting.remove(&monitor);
        }
        next
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
        if call.sent {
            self.deadlines.remove(&(call.started + call.deadline, id));
            if let Some(out) = self.out.get_mut(&call.monitor) {
                *out = out.saturating_sub(1);
            }
        } else if let Some(queue) = self.waiting.get_mut(&call.monitor) {
            queue.retain(|(waiting, _)| *waiting != id);
        }
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
        self.waiting.remove(&monitor);
        let taken = ids
            .into_iter()
            .filter_map(|id| self.take(id).map(|c| (id, c)))
            .collect();
        self.out.remove(&monitor);
        taken
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
            sent: false,
            written: None,
            deadline,
        });
        let message = ToMonitor::Call {
            call: id.0,
            resource: resource.map_or(0, ResourceId::wire),
            op,
        };
        // A terminate ends work the window may be full of: it never waits.
        if self.calls.has_room(monitor) || kind == CallKind::Terminate {
            self.calls.mark_sent(id, self.now);
            self.actions
                .push_back(super::core::Action::Send { monitor, message });
        } else {
            self.calls.hold(monitor, id, message);
        }
        Some(id)
    }

    /// Sends what waited for `monitor`'s window, as far as it has room.
    pub(crate) fn send_waiting(&mut self, monitor: MonitorId) {
        while let Some((id, message)) = self.calls.next_waiting(monitor) {
            self.calls.mark_sent(id, self.now);
            self.actions
                .push_back(super::core::Action::Send { monitor, message });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Op;

    fn call(monitor: MonitorId, kind: CallKind, now: Instant) -> Call {
        Call {
            monitor,
            resource: Some(ResourceId(0)),
            op: "looks_alive",
            kind,
            started: now,
            sent: false,
            written: None,
            deadline: Duration::from_secs(1),
        }
    }

    fn message(id: CallId) -> ToMonitor {
        ToMonitor::Call {
            call: id.0,
            resource: 1,
            op: Op::LooksAlive,
        }
    }

    #[test]
    fn a_monitor_has_at_most_a_window_of_calls_and_deadlines_start_when_sent() {
        let (m, other) = (MonitorId(1), MonitorId(2));
        let t0 = crate::engine::simulation::epoch();
        let mut table = CallTable::default();
        let mut ids = Vec::new();
        for _ in 0..WINDOW + 3 {
            let id = table.insert(call(m, CallKind::LooksAlive, t0));
            if table.has_room(m) {
                table.mark_sent(id, t0);
            } else {
                table.hold(m, id, message(id));
            }
            ids.push(id);
        }
        // Another monitor is not held up by this one's window.
        assert!(table.has_room(other));
        // Only the sent ones have deadlines.
        assert_eq!(table.deadlines.len(), WINDOW);
        assert!(table.next_waiting(m).is_none(), "no room yet");
        // A reply makes room for the next in order, whose deadline starts then.
        let later = t0 + Duration::from_millis(800);
        table.take(ids[0]).unwrap();
        let (next, _) = table.next_waiting(m).unwrap();
        assert_eq!(next, ids[WINDOW]);
        table.mark_sent(next, later);
        assert_eq!(
            table.pop_overdue(t0 + Duration::from_millis(1_500)),
            Some(ids[1]),
            "the first sent are overdue first"
        );
        assert!(
            table
                .deadlines
                .contains(&(later + Duration::from_secs(1), next)),
            "a waiting call's deadline counts from its sending"
        );
        // A monitor's death takes the waiting calls too.
        let taken = table.take_monitor(m);
        assert_eq!(taken.len(), WINDOW + 2);
        assert!(table.next_waiting(m).is_none());
        assert!(table.has_room(m));
    }
}
