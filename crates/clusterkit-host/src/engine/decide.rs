//! The engine's decisions as pure functions, each with a table of tests:
//! who is blamed when a monitor dies, what a resource does after its
//! monitor died and after it is re-opened, when the next health check is
//! due, and what a resource should do next. The restart policy's decision
//! lives in [`crate::policy`].

use std::time::{Duration, Instant};

use clusterkit::ResourceState;

use super::ids::ResourceId;
use super::lifecycle::{AfterOpen, AfterTerminate, Phase, Then};

/// How a monitor ended, as far as blame goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Death {
    /// The host killed it for this resource's call.
    pub(crate) killed_for: Option<Option<ResourceId>>,
    /// A crashing thread was running this resource's call.
    pub(crate) crashed_in: Option<ResourceId>,
    /// The signal that ended it, if one did.
    pub(crate) signal: Option<i32>,
    /// Resources with a call in flight when it died.
    pub(crate) in_flight: Vec<ResourceId>,
    /// It was killed for bytes that are not a frame (a library writing to
    /// its monitor's socket).
    pub(crate) protocol_error: bool,
    /// Who had a call in flight when the previous monitor of its placement
    /// died of a protocol error.
    pub(crate) earlier_protocol_suspects: Vec<ResourceId>,
}

/// Signals that come from outside (an operator, the OOM killer), not from a
/// resource's own fault.
fn external(signal: Option<i32>) -> bool {
    matches!(
        signal,
        Some(libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGHUP)
    )
}

/// Who is blamed for a monitor's death: the resource the host killed it
/// for, else the one whose call a crashing thread ran; for a second protocol
/// error in a row, whoever had a call in flight both times; else nobody
/// when it was killed from outside or by the host without a culprit, else
/// every resource with a call in flight.
pub(crate) fn blame(death: &Death) -> Vec<ResourceId> {
    match (death.killed_for, death.crashed_in) {
        (Some(Some(culprit)), _) => vec![culprit],
        (_, Some(culprit)) => vec![culprit],
        // One protocol error blames nobody (the garbage names no call);
        // the same resource in flight at the next one is the culprit.
        (_, None) if death.protocol_error => {
            let mut suspects: Vec<ResourceId> = death
                .in_flight
                .iter()
                .copied()
                .filter(|r| death.earlier_protocol_suspects.contains(r))
                .collect();
            suspects.sort_unstable();
            suspects.dedup();
            suspects
        }
        (_, None) if external(death.signal) => Vec::new(),
        (Some(None), None) => Vec::new(),
        (None, None) => {
            let mut suspects = Vec::new();
            for &r in &death.in_flight {
                if !suspects.contains(&r) {
                    suspects.push(r);
                }
            }
            suspects
        }
    }
}

/// How long to wait before starting a placement's monitor again after its
/// `failures`-th monitor in a row died before saying hello: doubling from
/// 100 ms, at most 30 s, so a broken monitor never spins.
pub(crate) fn respawn_delay(failures: u32) -> Duration {
    let doubled = 100u64.saturating_mul(1 << failures.saturating_sub(1).min(16));
    Duration::from_millis(doubled.min(30_000))
}

/// A resource's phase once its monitor has died, and the `terminate` the
/// death cut short, if one was in flight.
pub(crate) fn after_monitor_death(phase: &Phase) -> (Phase, Option<AfterTerminate>) {
    let closed = |then, shown| Phase::Closed {
        next: AfterOpen::recovering(then),
        shown,
    };
    match *phase {
        Phase::Held { until, reset, .. } => (
            Phase::Held {
                until,
                reset,
                open: false,
                next: AfterOpen::recovering(Then::Restart),
            },
            None,
        ),
        Phase::Terminating { then, shown, .. } => {
            let shown = if shown == ResourceState::Failed {
                shown
            } else {
                ResourceState::Unknown
            };
            (closed(Then::Restart, shown), Some(then))
        }
        Phase::Online { .. } | Phase::GoingOffline { .. } => {
            (closed(Then::Resume, ResourceState::Unknown), None)
        }
        // An `online` under way may have started the workload: stop it, then
        // start afresh.
        Phase::Pending { .. } | Phase::GoingOnline { .. } => {
            (closed(Then::Restart, ResourceState::Unknown), None)
        }
        Phase::Closed { shown, .. } | Phase::Opening { shown, .. }
            if shown == ResourceState::Failed =>
        {
            (closed(Then::Restart, shown), None)
        }
        // Not open yet: what it was opened for still holds (a resource
        // being re-attached stays one to re-attach).
        Phase::Closed { next, .. } | Phase::Opening { next, .. } => {
            (closed(next.then, ResourceState::Unknown), None)
        }
        // Its workload was found running: adopt it again.
        Phase::Reattaching { adopt, .. } => {
            let then = if adopt {
                Then::Resume
            } else {
                Then::StopIfRunning
            };
            (closed(then, ResourceState::Unknown), None)
        }
        Phase::Offline | Phase::Closing { .. } => {
            (closed(Then::Offline, ResourceState::Unknown), None)
        }
    }
}

/// What follows a successful open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterOpened {
    /// `terminate`, then online afresh.
    Restart,
    /// One `looks_alive` decides whether to adopt the running workload.
    CheckBeforeReattach,
    /// One `looks_alive` decides whether a workload runs that must stop.
    CheckBeforeStopping,
    /// `terminate`, then offline.
    Stop,
    /// Offline; the desired state decides what comes next.
    Offline,
}

/// What follows a successful open, given what it was for and whether the
/// type can adopt a running workload.
pub(crate) fn after_opened(next: AfterOpen, can_reattach: bool) -> AfterOpened {
    match (next.then, next.recover, can_reattach) {
        (Then::Restart, _, _) | (Then::Resume, true, false) => AfterOpened::Restart,
        (Then::Resume, true, true) => AfterOpened::CheckBeforeReattach,
        (Then::StopIfRunning, true, true) => AfterOpened::CheckBeforeStopping,
        (Then::StopIfRunning, true, false) => AfterOpened::Stop,
        _ => AfterOpened::Offline,
    }
}

/// When a fixed-rate check is due next: one interval after the last due
/// time, so latency never makes it drift, but never in the past, so a stall
/// never makes checks pile up.
pub(crate) fn next_check_due(previous_due: Instant, interval: Duration, now: Instant) -> Instant {
    let next = previous_due + interval;
    if next <= now { now + interval } else { next }
}

/// What a resource with no call in flight should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Open it in its monitor.
    Open,
    /// Call `online`.
    GoOnline,
    /// Call `offline`.
    GoOffline,
    /// It must go offline, but its dependents first.
    WaitForDependents,
    /// Nothing to do.
    Stay,
}

/// What a resource sees of itself and its neighbours, for [`next_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    /// Whether it is open in its monitor.
    pub(crate) open: bool,
    /// Its state.
    pub(crate) state: ResourceState,
    /// The operator wants it online.
    pub(crate) wants_online: bool,
    /// Every dependency is online.
    pub(crate) dependencies_online: bool,
    /// Every dependent is down and idle.
    pub(crate) dependents_down: bool,
}

/// What a resource with no call in flight should do next.
pub(crate) fn next_step(view: View) -> Step {
    if !view.open {
        return Step::Open;
    }
    let should_be_online = view.wants_online && view.dependencies_online;
    match view.state {
        ResourceState::Offline if should_be_online => Step::GoOnline,
        ResourceState::Online if !should_be_online && view.dependents_down => Step::GoOffline,
        ResourceState::Online if !should_be_online => Step::WaitForDependents,
        _ => Step::Stay,
    }
}

/// Whether a dependent counts as down (so its dependency may go offline).
pub(crate) fn is_down(state: ResourceState, idle: bool) -> bool {
    idle && matches!(
        state,
        ResourceState::Offline
            | ResourceState::Failed
            | ResourceState::Initializing
            | ResourceState::Unknown
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ids::CallId;
    use crate::engine::lifecycle::{CheckPlan, Transition};

    const A: ResourceId = ResourceId(0);
    const B: ResourceId = ResourceId(1);

    fn death(
        killed_for: Option<Option<ResourceId>>,
        crashed_in: Option<ResourceId>,
        signal: Option<i32>,
    ) -> Death {
        Death {
            killed_for,
            crashed_in,
            signal,
            in_flight: vec![A, B, A],
            protocol_error: false,
            earlier_protocol_suspects: Vec::new(),
        }
    }

    #[test]
    fn blame_table() {
        let cases: &[(Death, Vec<ResourceId>)] = &[
            // Killed by the host for A's hung call: A, whatever else ran.
            (death(Some(Some(A)), None, Some(libc::SIGKILL)), vec![A]),
            // A crashing thread ran B's call: B.
            (death(None, Some(B), Some(libc::SIGSEGV)), vec![B]),
            // Killed for A, although B's call crashed first: A.
            (death(Some(Some(A)), Some(B), Some(libc::SIGKILL)), vec![A]),
            // A protocol error (killed without culprit) that crashed in B: B.
            (death(Some(None), Some(B), Some(libc::SIGKILL)), vec![B]),
            // Killed from outside: nobody.
            (death(None, None, Some(libc::SIGKILL)), vec![]),
            (death(None, None, Some(libc::SIGTERM)), vec![]),
            // Killed by the host without culprit: nobody.
            (death(Some(None), None, Some(libc::SIGKILL)), vec![]),
            // Died on its own without a crash report: every call in flight.
            (death(None, None, Some(libc::SIGSEGV)), vec![A, B]),
            (death(None, None, None), vec![A, B]),
        ];
        for (d, expected) in cases {
            assert_eq!(&blame(d), expected, "{d:?}");
        }
    }

    #[test]
    fn protocol_errors_blame_who_was_in_flight_both_times() {
        let garbage = |in_flight: Vec<ResourceId>, earlier: Vec<ResourceId>| Death {
            killed_for: Some(None),
            crashed_in: None,
            signal: Some(libc::SIGKILL),
            in_flight,
            protocol_error: true,
            earlier_protocol_suspects: earlier,
        };
        const C: ResourceId = ResourceId(2);
        // The first error: nobody.
        assert_eq!(blame(&garbage(vec![A, B], vec![])), vec![]);
        // The second: the one in flight both times.
        assert_eq!(blame(&garbage(vec![A, C], vec![A, B])), vec![A]);
        assert_eq!(blame(&garbage(vec![C], vec![A, B])), vec![]);
        // A crash report still wins.
        let mut crashed = garbage(vec![A, B], vec![A, B]);
        crashed.crashed_in = Some(B);
        assert_eq!(blame(&crashed), vec![B]);
    }

    #[test]
    fn respawns_back_off_and_stay_bounded() {
        let delays: Vec<u128> = (1..=12).map(|n| respawn_delay(n).as_millis()).collect();
        assert_eq!(&delays[..5], &[100, 200, 400, 800, 1_600]);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*delays.last().unwrap(), 30_000);
    }

    #[test]
    fn after_opened_table() {
        use AfterOpened::*;
        let open = |recover, then| AfterOpen { recover, then };
        let cases = [
            (open(false, Then::Offline), true, Offline),
            (open(true, Then::Offline), true, Offline),
            (open(true, Then::Resume), true, CheckBeforeReattach),
            (open(true, Then::Resume), false, Restart),
            (open(true, Then::Restart), true, Restart),
            (open(false, Then::Restart), false, Restart),
            (open(true, Then::StopIfRunning), true, CheckBeforeStopping),
            (open(true, Then::StopIfRunning), false, Stop),
        ];
        for (next, can, expected) in cases {
            assert_eq!(after_opened(next, can), expected, "{next:?} reattach={can}");
        }
    }

    #[test]
    fn death_keeps_what_an_online_resource_needs() {
        let now = crate::engine::simulation::epoch();
        let plan = CheckPlan {
            due: now,
            in_flight: None,
        };
        let online = Phase::Online {
            since: now,
            looks: plan,
            is: plan,
        };
        let cases = [
            (online, Then::Resume, None),
            (
                Phase::Pending {
                    transition: Transition::Online,
                    call: CallId(1),
                    until: now,
                    checkpoint: 0,
                },
                Then::Restart,
                None,
            ),
            (Phase::Offline, Then::Offline, None),
            (
                Phase::Reattaching {
                    call: CallId(3),
                    adopt: true,
                    shown: ResourceState::Unknown,
                },
                Then::Resume,
                None,
            ),
            (
                Phase::Opening {
                    call: CallId(4),
                    next: AfterOpen::recovering(Then::Resume),
                    shown: ResourceState::Initializing,
                },
                Then::Resume,
                None,
            ),
            (
                Phase::Terminating {
                    call: Some(CallId(2)),
                    then: AfterTerminate::ApplyPolicy,
                    shown: ResourceState::Failed,
                },
                Then::Restart,
                Some(AfterTerminate::ApplyPolicy),
            ),
        ];
        for (phase, then, lost) in cases {
            let (after, terminate) = after_monitor_death(&phase);
            assert_eq!(after.next_open().then, then, "{phase:?}");
            assert!(after.next_open().recover, "{phase:?}");
            assert!(!after.is_open(), "{phase:?}");
            assert_eq!(terminate, lost, "{phase:?}");
        }
    }

    #[test]
    fn checks_keep_a_fixed_rate_and_never_pile_up() {
        let t0 = crate::engine::simulation::epoch();
        let s = Duration::from_secs(1);
        // On time: one interval after the previous due time.
        assert_eq!(next_check_due(t0, s, t0 + s / 2), t0 + s);
        // Late by less than an interval: still on the grid.
        assert_eq!(next_check_due(t0, s, t0 + s / 2 + s / 4), t0 + s);
        // Stalled past the next slot: one interval from now, no burst.
        assert_eq!(next_check_due(t0, s, t0 + 3 * s), t0 + 4 * s);
    }

    #[test]
    fn next_step_table() {
        use ResourceState::*;
        use Step::*;
        let v = |open, state, wants, deps, down| View {
            open,
            state,
            wants_online: wants,
            dependencies_online: deps,
            dependents_down: down,
        };
        let cases = [
            (v(false, Unknown, true, true, true), Open),
            (v(true, Offline, true, true, true), GoOnline),
            (v(true, Offline, true, false, true), Stay),
            (v(true, Offline, false, true, true), Stay),
            (v(true, Online, false, true, true), GoOffline),
            (v(true, Online, true, false, true), GoOffline),
            (v(true, Online, false, true, false), WaitForDependents),
            (v(true, Online, true, true, false), Stay),
            (v(true, Failed, true, true, true), Stay),
        ];
        for (view, expected) in cases {
            assert_eq!(next_step(view), expected, "{view:?}");
        }
    }
}
