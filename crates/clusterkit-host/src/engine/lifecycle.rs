//! A resource's lifecycle as one enum: each phase carries its own data (the
//! call in flight, its deadline, what follows), so no combination of flags
//! can contradict another. The public [`ResourceState`] is derived from it.
//!
//! ```text
//!  Closed ──open──▶ Opening ──ok──▶ (decide::after_opened)
//!    ▲                 │ failed        ├─▶ Offline                  (fresh, or nothing to adopt)
//!    │                 ▼               ├─▶ Reattaching ─healthy─▶ Online   (adopt)
//!    │               Held              │        └─failed─▶ Terminating ─▶ Offline (restart)
//!    │                                 └─▶ Terminating ─▶ Offline        (restart)
//!    │
//!  Offline ──online──▶ GoingOnline ──▶ Online
//!                           └─pending─▶ Pending(online) ──complete──▶ Online
//!  Online ──offline──▶ GoingOffline ──▶ Offline
//!                           └─pending─▶ Pending(offline) ──complete──▶ Offline
//!  Online / Pending ──failure──▶ Terminating(apply policy) ──▶ Held ──timer──▶ Offline or Closed
//!  any open phase ──its monitor died──▶ Closed (decide::after_monitor_death)
//!  Terminating ──terminate failed──▶ Held (no timer: failed until an operator acts)
//!  Offline ──stop──▶ Closing ──▶ Closed
//! ```
//!
//! Timers belong to phases: `Core::set_phase` cancels the timers of the
//! phase left (health checks, a progress deadline, a restart) and sets those
//! of the phase entered, so no timer outlives its phase.

use std::time::Instant;

use clusterkit::ResourceState;

use super::ids::CallId;

/// What the next `open` does after it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AfterOpen {
    /// Open with `recover = true`: a workload may already be running.
    pub(crate) recover: bool,
    /// What follows the open.
    pub(crate) then: Then,
}

/// What follows a successful `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Stay offline until the desired state says otherwise.
    Offline,
    /// The resource was online: re-attach if the type can, else restart.
    Resume,
    /// Stop whatever may still run (`terminate`), then come online afresh.
    Restart,
    /// Offline is wanted, but a workload may still run (the host was
    /// restarted): stop it if it does.
    StopIfRunning,
}

impl AfterOpen {
    /// A first open, nothing to adopt.
    pub(crate) const FRESH: AfterOpen = AfterOpen {
        recover: false,
        then: Then::Offline,
    };

    /// An open after the resource's monitor died while it was `then`.
    pub(crate) const fn recovering(then: Then) -> AfterOpen {
        AfterOpen {
            recover: true,
            then,
        }
    }
}

/// What to do when a `terminate` call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterTerminate {
    /// The resource failed: apply the restart policy.
    ApplyPolicy,
    /// Restart it (re-opened after recovery without re-attach).
    Restart,
    /// Offline failed or stopped: mark it offline.
    MarkOffline,
}

/// Which transition a pending operation completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// `online` went pending.
    Online,
    /// `offline` went pending.
    Offline,
}

/// When the next health check of one kind is due, and the one in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckPlan {
    /// When the next check is due (fixed rate, never in the past).
    pub(crate) due: Instant,
    /// The check in flight, if one is.
    pub(crate) in_flight: Option<CallId>,
}

/// Where a resource is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not open in any monitor; the next open does `next`.
    Closed {
        /// What follows the open.
        next: AfterOpen,
        /// The state shown meanwhile.
        shown: ResourceState,
    },
    /// `open` is in flight.
    Opening {
        /// The call.
        call: CallId,
        /// What follows it.
        next: AfterOpen,
        /// The state shown meanwhile.
        shown: ResourceState,
    },
    /// Open, offline, idle.
    Offline,
    /// `online` is in flight.
    GoingOnline {
        /// The call.
        call: CallId,
    },
    /// `online` or `offline` went pending: a worker finishes it, reporting
    /// progress before `until`.
    Pending {
        /// Which transition.
        transition: Transition,
        /// The `online`/`offline` call that went pending.
        call: CallId,
        /// The progress deadline.
        until: Instant,
        /// The last checkpoint reported (0: none yet).
        checkpoint: u32,
    },
    /// Online, health checked.
    Online {
        /// Since when.
        since: Instant,
        /// The cheap check.
        looks: CheckPlan,
        /// The thorough check.
        is: CheckPlan,
    },
    /// `offline` is in flight.
    GoingOffline {
        /// The call.
        call: CallId,
    },
    /// Re-opened after a monitor or host restart: one `looks_alive` decides
    /// whether a running workload is adopted (`adopt`) or stopped.
    Reattaching {
        /// The check.
        call: CallId,
        /// Adopt a running workload (it was online); else stop it.
        adopt: bool,
        /// The state shown meanwhile.
        shown: ResourceState,
    },
    /// `terminate` is in flight; `then` follows.
    Terminating {
        /// The call; none while its monitor is being killed (the terminate
        /// is sent again after the re-open).
        call: Option<CallId>,
        /// What follows.
        then: AfterTerminate,
        /// The state shown meanwhile.
        shown: ResourceState,
    },
    /// Failed and waiting: for the restart timer (`until`), or, with no
    /// timer, for an operator.
    Held {
        /// When the restart is due.
        until: Option<Instant>,
        /// The restart also resets the restart counters (after a failover
        /// request's retry period).
        reset: bool,
        /// Still open in its monitor.
        open: bool,
        /// What the next open does, when it is not open.
        next: AfterOpen,
    },
    /// `close` is in flight (the host is stopping).
    Closing {
        /// The call.
        call: CallId,
        /// The state shown meanwhile.
        shown: ResourceState,
    },
}

impl Phase {
    /// The state the host shows for this phase.
    pub(crate) fn state(&self) -> ResourceState {
        match *self {
            Phase::Closed { shown, .. }
            | Phase::Opening { shown, .. }
            | Phase::Reattaching { shown, .. }
            | Phase::Terminating { shown, .. }
            | Phase::Closing { shown, .. } => shown,
            Phase::Offline | Phase::GoingOnline { .. } => ResourceState::Offline,
            Phase::Pending {
                transition: Transition::Online,
                ..
            } => ResourceState::OnlinePending,
            Phase::Pending {
                transition: Transition::Offline,
                ..
            } => ResourceState::OfflinePending,
            Phase::Online { .. } | Phase::GoingOffline { .. } => ResourceState::Online,
            Phase::Held { .. } => ResourceState::Failed,
        }
    }

    /// Whether the resource is open in its monitor.
    pub(crate) fn is_open(&self) -> bool {
        match self {
            Phase::Closed { .. } | Phase::Opening { .. } => false,
            Phase::Held { open, .. } => *open,
            _ => true,
        }
    }

    /// The serialized call in flight (open, online, offline, the re-attach
    /// check, close): while one runs, nothing else is started.
    pub(crate) fn serial_call(&self) -> Option<CallId> {
        match *self {
            Phase::Opening { call, .. }
            | Phase::GoingOnline { call }
            | Phase::GoingOffline { call }
            | Phase::Reattaching { call, .. }
            | Phase::Closing { call, .. } => Some(call),
            _ => None,
        }
    }

    /// What the next open does, for a phase that is not open.
    pub(crate) fn next_open(&self) -> AfterOpen {
        match *self {
            Phase::Closed { next, .. } | Phase::Opening { next, .. } | Phase::Held { next, .. } => {
                next
            }
            _ => AfterOpen::recovering(Then::Offline),
        }
    }

    /// Idle with no call in flight: `Offline` if the resource is open in its
    /// monitor, else `Closed`, showing `shown` until the next open does
    /// `next`.
    pub(crate) fn idle(open: bool, next: AfterOpen, shown: ResourceState) -> Phase {
        if open {
            Phase::Offline
        } else {
            Phase::Closed { next, shown }
        }
    }

    /// Waiting for a restart timer or an operator.
    pub(crate) fn is_held(&self) -> bool {
        matches!(self, Phase::Held { .. })
    }
}
