//! Driving a resource toward its desired state: open, online, offline,
//! pending operations, terminate, failure and the restart policy.

use std::time::Instant;

use clusterkit::{Characteristics, Error, Health, ResourceState};

use crate::events::{Event, EventKind};
use crate::policy::Decision;
use crate::protocol::{Op, Outcome, millis};
use crate::state_file::Desired;

use super::calls::CallKind;
use super::core::Core;
use super::decide::{self, AfterOpened, Step, View};
use super::ids::{CallId, ResourceId};
use super::lifecycle::{AfterOpen, AfterTerminate, CheckPlan, Phase, Then, Transition};
use super::monitors::LibState;
use super::timers::Timer;

impl Core {
    pub(crate) fn reconcile(&mut self, i: ResourceId) {
        if self.is_stopping() {
            return;
        }
        if !self.validated {
            // Before validation, only load the libraries to learn the types.
            if self.start_request.is_some() {
                self.ensure_library(i);
            }
            return;
        }
        if self.res(i).retired || self.settle_change(i) {
            return;
        }
        let r = self.res(i);
        if !r.is_idle() || r.phase.is_held() || matches!(r.phase, Phase::Terminating { .. }) {
            return;
        }
        let view = View {
            open: r.phase.is_open(),
            state: r.phase.state(),
            wants_online: r.desired == Desired::Online,
            dependencies_online: r
                .spec
                .depends_on
                .iter()
                .all(|&d| self.stays_online(ResourceId(d))),
            dependents_down: r.dependents.iter().all(|&d| {
                let dep = self.res(d);
                decide::is_down(dep.phase.state(), dep.is_idle())
            }),
        };
        let step = decide::next_step(view);
        let monitor = r.monitor;
        match (step, monitor) {
            (Step::Open, _) => self.open(i),
            (Step::GoOnline, Some(monitor)) => {
                if std::mem::take(&mut self.res_mut(i).restart_due) {
                    // Every workload restart is an event and a counted restart.
                    self.res_mut(i).restarts.note_restart();
                    self.touch(i);
                    let event = Event::of(EventKind::ResourceRestarted, Some(self.name(i)))
                        .with("restarts", self.res(i).restarts.total);
                    self.emit(event);
                    self.persist();
                }
                if let Some(call) = self.send_call(monitor, Some(i), Op::Online, CallKind::Online) {
                    self.set_phase(i, Phase::GoingOnline { call });
                }
            }
            (Step::GoOffline, Some(monitor)) => {
                if let Some(call) = self.send_call(monitor, Some(i), Op::Offline, CallKind::Offline)
                {
                    self.set_phase(i, Phase::GoingOffline { call });
                }
            }
            (Step::WaitForDependents, _) => {
                for d in self.res(i).dependents.clone() {
                    self.mark_dirty(d);
                }
            }
            _ => {}
        }
    }

    /// Online, wanted online, and so is every dependency, all the way down:
    /// a failure deep in a chain takes every resource above it offline,
    /// the top first.
    fn stays_online(&self, i: ResourceId) -> bool {
        let r = self.res(i);
        r.phase.state() == ResourceState::Online
            && r.desired == Desired::Online
            && r.spec
                .depends_on
                .iter()
                .all(|&d| self.stays_online(ResourceId(d)))
    }

    fn open(&mut self, i: ResourceId) {
        // A cleanup lifted its isolation: this open is in its group's monitor.
        let r = self.res_mut(i);
        if r.lift_isolation && r.monitor.is_none() {
            r.lift_isolation = false;
            r.separate_monitor = r.spec.separate_monitor;
            self.touch(i);
        }
        let key = self.monitor_key(i);
        let Some(m) = self.ensure_monitor(key) else {
            return;
        };
        let lib = self.library_of(i);
        let monitor = &self.monitors[&m];
        if !monitor.is_usable() {
            return;
        }
        match monitor.libraries.get(&lib) {
            None => {
                self.ensure_library(i);
                return;
            }
            Some(LibState::Loading) => return,
            Some(LibState::Failed) => {
                // Forget the failure: the restart policy's next attempt loads
                // the library again (its startup may have failed transiently).
                self.monitors
                    .get_mut(&m)
                    .expect("exists")
                    .libraries
                    .remove(&lib);
                if self.res(i).phase.state() != ResourceState::Failed {
                    self.fail_resource(i, "its resource library failed to load".into());
                }
                return;
            }
            Some(LibState::Loaded) => {}
        }
        let (next, shown) = match self.res(i).phase {
            Phase::Closed { next, shown } => (next, shown),
            _ => return,
        };
        let r = self.res_mut(i);
        r.monitor = Some(m);
        let op = Op::Open {
            library: lib.wire(),
            type_name: r.spec.type_name.clone(),
            name: r.spec.name.clone(),
            properties: r.validated.encode(),
            recover: next.recover,
        };
        if let Some(call) = self.send_call(m, Some(i), op, CallKind::Open) {
            self.set_phase(i, Phase::Opening { call, next, shown });
        }
    }

    pub(crate) fn on_opened(&mut self, i: ResourceId, outcome: Outcome) {
        let Phase::Opening { next, .. } = self.res(i).phase else {
            return;
        };
        if let Outcome::Failed(e) = outcome {
            self.res_mut(i).monitor = None;
            self.set_phase(
                i,
                Phase::Closed {
                    next,
                    shown: self.res(i).phase.state(),
                },
            );
            self.fail_resource(i, format!("open failed: {e}"));
            return;
        }
        let can_reattach = self
            .res(i)
            .characteristics
            .contains(Characteristics::REATTACH);
        match decide::after_opened(next, can_reattach) {
            AfterOpened::Restart => {
                // Stop whatever may still run, then bring it online afresh.
                self.set_phase(i, Phase::Offline);
                self.send_terminate(i, AfterTerminate::Restart, ResourceState::Failed);
            }
            step @ (AfterOpened::CheckBeforeReattach | AfterOpened::CheckBeforeStopping) => {
                // Adopt (or stop) only a workload that answers: one cheap check first.
                let adopt = step == AfterOpened::CheckBeforeReattach;
                let shown = self.res(i).phase.state();
                let monitor = self.res(i).monitor.expect("opened in a monitor");
                let sent =
                    self.send_call(monitor, Some(i), Op::LooksAlive, CallKind::ReattachCheck);
                if let Some(call) = sent {
                    self.set_phase(i, Phase::Reattaching { call, adopt, shown });
                }
            }
            AfterOpened::Stop => {
                self.set_phase(i, Phase::Offline);
                self.send_terminate(i, AfterTerminate::MarkOffline, ResourceState::Unknown);
            }
            AfterOpened::Offline => {
                self.set_phase(i, Phase::Offline);
                self.mark_dirty(i);
            }
        }
    }

    pub(crate) fn on_reattach_check(&mut self, i: ResourceId, outcome: Outcome) {
        let Phase::Reattaching { adopt, .. } = self.res(i).phase else {
            return;
        };
        if !adopt {
            // Offline is wanted: a workload that may still run is stopped;
            // only a check that answered "failed" says nothing runs.
            self.set_phase(i, Phase::Offline);
            if matches!(outcome, Outcome::Health(Health::Failed(_))) {
                self.mark_dirty(i);
            } else {
                self.send_terminate(i, AfterTerminate::MarkOffline, ResourceState::Unknown);
            }
            return;
        }
        let health = super::frames::health_of(outcome);
        if health.is_failed() {
            // Nothing (or something else) to adopt: stop what may be left,
            // then bring it online afresh.
            let event = Event::of(EventKind::HealthFailed, Some(self.name(i)))
                .with("check", "looks_alive")
                .with("reason", format!("not re-attached: {}", health.reason()));
            self.emit(event);
            self.set_phase(i, Phase::Offline);
            self.send_terminate(i, AfterTerminate::Restart, ResourceState::Failed);
            return;
        }
        let event = Event::of(EventKind::ResourceReattached, Some(self.name(i)))
            .with("type", self.res(i).spec.type_name.clone());
        self.emit(event);
        self.set_online(i, false);
    }

    /// Sends `terminate` (showing `shown` meanwhile), or goes straight on
    /// with `then` when there is nothing open to terminate.
    pub(crate) fn send_terminate(
        &mut self,
        i: ResourceId,
        then: AfterTerminate,
        shown: ResourceState,
    ) {
        let r = self.res(i);
        let Some(monitor) = r.monitor.filter(|_| r.phase.is_open()) else {
            // Not open anywhere: nothing runs under this host to stop.
            self.on_terminated(i, then);
            return;
        };
        let killing = self
            .monitors
            .get(&monitor)
            .is_none_or(|m| m.killing.is_some());
        let call = if killing {
            // Its monitor is being killed: the terminate happens after the
            // re-open, which the death of the monitor arranges.
            None
        } else {
            self.send_call(monitor, Some(i), Op::Terminate, CallKind::Terminate)
        };
        self.set_phase(i, Phase::Terminating { call, then, shown });
    }

    pub(crate) fn on_terminated(&mut self, i: ResourceId, then: AfterTerminate) {
        match then {
            AfterTerminate::ApplyPolicy => self.apply_policy(i),
            AfterTerminate::Restart => {
                let open = self.res(i).phase.is_open();
                let next = AfterOpen::recovering(Then::Offline);
                self.set_phase(i, Phase::idle(open, next, ResourceState::Offline));
                let r = self.res_mut(i);
                r.restart_due = r.desired == Desired::Online;
                self.mark_dirty(i);
            }
            AfterTerminate::MarkOffline => self.set_offline(i),
        }
    }

    /// A `terminate` that failed may have left the workload running: the
    /// resource stays failed and is not restarted on this node; the cluster
    /// engine is asked to move it (and may fence the node), or an operator
    /// brings it online again.
    pub(crate) fn on_terminate_failed(&mut self, i: ResourceId, error: Error) {
        let name = self.name(i).to_owned();
        self.set_phase(
            i,
            Phase::Held {
                until: None,
                reset: false,
                open: true,
                next: AfterOpen::recovering(Then::Restart),
            },
        );
        self.res_mut(i).restart_due = false;
        let reason = format!("terminate failed: {error}");
        self.res_mut(i).last_failure = Some((self.now, reason));
        self.emit(
            Event::of(EventKind::ResourceFailed, Some(&name))
                .with("type", self.res(i).spec.type_name.clone())
                .with(
                    "reason",
                    format!(
                        "terminate failed: {error}; the workload may still run, so it is not \
                         restarted on this node"
                    ),
                )
                .with("terminate_failed", true),
        );
        self.emit(
            Event::of(EventKind::FailoverRequested, Some(&name)).with("reason", "terminate failed"),
        );
        self.mark_neighbours(i);
        self.persist();
    }

    pub(crate) fn on_online_reply(&mut self, i: ResourceId, call: CallId, outcome: Outcome) {
        match outcome {
            Outcome::State(ResourceState::Online) => self.set_online(i, false),
            Outcome::State(ResourceState::OnlinePending) => {
                self.set_pending(i, Transition::Online, call)
            }
            Outcome::Failed(e) => self.fail_resource(i, format!("online failed: {e}")),
            other => self.fail_resource(i, format!("online returned {other:?}")),
        }
    }

    pub(crate) fn on_offline_reply(&mut self, i: ResourceId, call: CallId, outcome: Outcome) {
        match outcome {
            Outcome::State(ResourceState::Offline) => self.set_offline(i),
            Outcome::State(ResourceState::OfflinePending) => {
                self.set_pending(i, Transition::Offline, call)
            }
            // A graceful offline that fails is finished forcefully.
            _ => self.send_terminate(
                i,
                AfterTerminate::MarkOffline,
                ResourceState::OfflinePending,
            ),
        }
    }

    /// Progress of a pending operation: its deadline moves on, and a new
    /// checkpoint is an event (`resource_pending` with `checkpoint`), so an
    /// operator sees how far it got.
    pub(crate) fn on_report(&mut self, i: ResourceId, call: CallId, reported: u32) {
        let timeout = self.res(i).spec.timing.effective_pending_timeout();
        let now = self.now;
        let mut advanced = None;
        if let Phase::Pending {
            call: pending,
            until,
            checkpoint,
            ..
        } = &mut self.res_mut(i).phase
            && *pending == call
        {
            *until = now + timeout;
            if reported != *checkpoint {
                *checkpoint = reported;
                advanced = Some(reported);
            }
            self.timers.set(Timer::Pending(i), now + timeout);
        }
        if let Some(checkpoint) = advanced {
            let state = self.res(i).phase.state();
            let event = Event::of(EventKind::ResourcePending, Some(self.name(i)))
                .with("state", state.name())
                .with("checkpoint", checkpoint);
            self.emit(event);
        }
    }

    pub(crate) fn on_complete(
        &mut self,
        i: ResourceId,
        call: CallId,
        outcome: Result<ResourceState, Error>,
    ) {
        let Phase::Pending {
            transition,
            call: pending,
            ..
        } = self.res(i).phase
        else {
            return;
        };
        if pending != call {
            return;
        }
        match (transition, outcome) {
            (Transition::Online, Ok(ResourceState::Online)) => self.set_online(i, false),
            (Transition::Offline, Ok(ResourceState::Offline)) => self.set_offline(i),
            (Transition::Online, Err(e)) => {
                self.fail_resource(i, format!("pending online failed: {e}"))
            }
            (Transition::Online, Ok(s)) => {
                self.fail_resource(i, format!("pending online completed with state {s}"))
            }
            (Transition::Offline, _) => self.send_terminate(
                i,
                AfterTerminate::MarkOffline,
                ResourceState::OfflinePending,
            ),
        }
        self.mark_dirty(i);
    }

    fn set_pending(&mut self, i: ResourceId, transition: Transition, call: CallId) {
        let until = self.now + self.res(i).spec.timing.effective_pending_timeout();
        self.set_phase(
            i,
            Phase::Pending {
                transition,
                call,
                until,
                checkpoint: 0,
            },
        );
        let state = self.res(i).phase.state();
        let event =
            Event::of(EventKind::ResourcePending, Some(self.name(i))).with("state", state.name());
        self.emit(event);
    }

    pub(crate) fn on_pending_timeout(&mut self, i: ResourceId) {
        let Phase::Pending { transition, .. } = self.res(i).phase else {
            return;
        };
        let r = self.res(i);
        let reason = format!(
            "no progress report for {} ms while {}",
            millis(r.spec.timing.effective_pending_timeout()),
            r.phase.state()
        );
        match transition {
            Transition::Online => self.fail_resource(i, reason),
            Transition::Offline => self.send_terminate(
                i,
                AfterTerminate::MarkOffline,
                ResourceState::OfflinePending,
            ),
        }
    }

    pub(crate) fn set_online(&mut self, i: ResourceId, check_now: bool) {
        let now = self.now;
        let timing = self.res(i).spec.timing;
        let looks_due = if check_now {
            now
        } else {
            now + timing.looks_alive_interval
        };
        let is_due = now + timing.is_alive_interval;
        let plan = |due: Instant| CheckPlan {
            due,
            in_flight: None,
        };
        self.set_phase(
            i,
            Phase::Online {
                since: now,
                looks: plan(looks_due),
                is: plan(is_due),
            },
        );
        self.emit(Event::of(EventKind::ResourceOnline, Some(self.name(i))));
        self.mark_neighbours(i);
    }

    pub(crate) fn set_offline(&mut self, i: ResourceId) {
        let phase = &self.res(i).phase;
        let phase = Phase::idle(phase.is_open(), phase.next_open(), ResourceState::Offline);
        self.set_phase(i, phase);
        self.emit(Event::of(EventKind::ResourceOffline, Some(self.name(i))));
        self.mark_neighbours(i);
    }

    // --------------------------------------------------------------- failure

    pub(crate) fn fail_resource(&mut self, i: ResourceId, reason: String) {
        if self.res(i).phase.state() == ResourceState::Failed {
            return;
        }
        self.res_mut(i).last_failure = Some((self.now, reason.clone()));
        let event = Event::of(EventKind::ResourceFailed, Some(self.name(i)))
            .with("type", self.res(i).spec.type_name.clone())
            .with("reason", reason);
        // Leave the phase (and its timers) before anything else happens.
        let open = self.res(i).phase.is_open();
        let next = self.res(i).phase.next_open();
        self.set_phase(i, Phase::idle(open, next, ResourceState::Failed));
        self.emit(event);
        self.mark_neighbours(i);
        self.send_terminate(i, AfterTerminate::ApplyPolicy, ResourceState::Failed);
    }

    pub(crate) fn apply_policy(&mut self, i: ResourceId) {
        let now = self.now;
        let wall = self.clock.unix_ms(now);
        let r = self.res_mut(i);
        let policy = r.spec.timing.restart;
        let decision = r.restarts.decide(&policy, wall);
        let (open, next) = (r.phase.is_open(), r.phase.next_open());
        let held = |until, reset| Phase::Held {
            until,
            reset,
            open,
            next,
        };
        match decision {
            Decision::Restart { after } => self.set_phase(i, held(Some(now + after), false)),
            Decision::Exceeded {
                failover,
                retry_after,
            } => {
                let name = self.name(i).to_owned();
                self.emit(
                    Event::of(EventKind::RestartThresholdExceeded, Some(&name))
                        .with("threshold", policy.threshold)
                        .with("period_ms", millis(policy.period))
                        .with("retry_after_ms", millis(retry_after)),
                );
                if failover {
                    self.emit(Event::of(EventKind::FailoverRequested, Some(&name)));
                }
                self.set_phase(i, held(Some(now + retry_after), true));
            }
            Decision::StayFailed => self.set_phase(i, held(None, false)),
        }
        self.persist();
    }

    pub(crate) fn on_restart_timer(&mut self, i: ResourceId) {
        let Phase::Held {
            reset, open, next, ..
        } = self.res(i).phase
        else {
            return;
        };
        let r = self.res_mut(i);
        if reset {
            r.restarts.reset();
        }
        r.restart_due = r.desired == Desired::Online;
        let reopen = next.then == Then::Restart;
        self.set_phase(
            i,
            Phase::idle(open && !reopen, next, ResourceState::Unknown),
        );
        self.mark_dirty(i);
    }
}
