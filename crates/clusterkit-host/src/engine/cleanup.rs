//! An operator's cleanup after failures (Pacemaker's `crm_resource
//! --cleanup`): the restart counters of the current period start over, an
//! isolation is lifted, a held failure is cleared.

use crate::events::{Event, EventKind};

use super::core::Core;
use super::ids::{RequestId, ResourceId};

impl Core {
    /// Cleans `i` up and answers `request` once the result is persisted.
    ///
    /// The isolation is lifted for the next open (and in the persisted
    /// state at once): a resource open in a monitor of its own stays there
    /// until it is next (re)opened, so nothing running is disturbed by the
    /// cleanup itself, and the monitor it runs in keeps matching its
    /// placement meanwhile.
    pub(crate) fn cleanup(&mut self, request: RequestId, i: ResourceId) {
        let r = self.res_mut(i);
        let restarts_cleared = r.restarts.recent.len();
        r.restarts.reset();
        let isolation_lifted = r.separate_monitor && !r.spec.separate_monitor;
        if isolation_lifted {
            if r.monitor.is_some() {
                r.lift_isolation = true;
            } else {
                r.separate_monitor = false;
            }
        }
        let held = r.phase.is_held();
        self.release_held(i);
        self.touch(i);
        self.mark_neighbours(i);
        let event = Event::of(EventKind::ResourceCleanedUp, Some(self.name(i)))
            .with("restarts_cleared", restarts_cleared)
            .with("isolation_lifted", isolation_lifted)
            .with("failure_cleared", held);
        self.emit(event);
        self.persist_then_reply(Some(request));
    }
}
