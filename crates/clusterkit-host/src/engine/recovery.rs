//! Recovery from hung and crashed monitors:
//!
//! 1. a call passes its deadline: `call_timed_out`, with the monitor's
//!    thread diagnostics;
//! 2. the monitor is killed (`monitor_killed`) and a watchdog armed: a
//!    monitor still alive after 4 × `deadlock_timeout` escalates;
//! 3. once it has exited and its socket has ended, `monitor_died` names the
//!    culprit ([`decide::blame`]); every resource it hosted is re-opened in
//!    a new monitor with `recover = true`, re-attachable ones resume online
//!    without a restart ([`decide::after_monitor_death`]);
//! 4. the culprit is isolated in a monitor of its own and goes through its
//!    restart policy.
//!
//! `docs/RECOVERY.md` describes the whole sequence and its guarantees.

use crate::error::HostError;
use crate::events::{Event, EventKind};
use crate::protocol::millis;

use super::calls::CallKind;
use super::core::{Action, Core};
use super::decide::{self, Death};
use super::ids::{CallId, MonitorId, ResourceId};
use super::lifecycle::{AfterOpen, AfterTerminate, Phase, Then};
use super::timers::Timer;

/// How long after a monitor's exit its socket may stay open (a child that
/// inherited it) before recovery goes on without its last frames.
pub(crate) const READER_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

impl Core {
    pub(crate) fn on_call_deadline(&mut self, id: CallId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let monitor = call.monitor;
        let Some(m) = self.monitors.get_mut(&monitor) else {
            return;
        };
        if m.killing.is_some() || m.diagnosing {
            return;
        }
        // Diagnostics first: they say whether the resource hung, or the
        // whole monitor was stopped from outside.
        m.diagnosing = true;
        let pid = m.pid.unwrap_or(0);
        self.actions.push_back(Action::Diagnose {
            monitor,
            call: id,
            pid,
        });
    }

    /// The monitor's threads, read after `call` passed its deadline:
    /// `call_timed_out` with them, then the kill. A monitor whose threads
    /// are all stopped (SIGSTOP from outside) blames nobody.
    pub(crate) fn on_diagnosed(
        &mut self,
        monitor: MonitorId,
        id: CallId,
        threads: serde_json::Value,
        stopped: bool,
    ) {
        let Some(m) = self.monitors.get_mut(&monitor) else {
            return;
        };
        m.diagnosing = false;
        if m.killing.is_some() {
            return;
        }
        let pid = m.pid.unwrap_or(0);
        let Some(call) = self.calls.get(id) else {
            return; // answered after all
        };
        let (resource, op, elapsed, deadline, kind) = (
            call.resource,
            call.op,
            self.now.saturating_duration_since(call.started),
            call.deadline,
            call.kind,
        );
        if let Some(i) = resource
            && matches!(kind, CallKind::LooksAlive | CallKind::IsAlive)
        {
            // Whoever waits for this check hears why now, with the
            // diagnosis, not when the recovery is over.
            let why = format!(
                "{op} did not answer within its deadline of {} ms; the host kills its monitor \
                 (pid {pid}); threads: {}",
                millis(deadline),
                crate::process::summarize_threads(&threads)
            );
            self.answer_checks(i, Some(kind == CallKind::LooksAlive), |_| {
                Err(HostError::Call(clusterkit::Error::Timeout(why.clone())))
            });
        }
        let mut event = Event::of(EventKind::CallTimedOut, resource.map(|i| self.name(i)))
            .with("call", op)
            .with("elapsed_ms", millis(elapsed))
            .with("deadline_ms", millis(deadline))
            .with("pid", pid)
            .with("threads", threads);
        if let Some(i) = resource {
            event = event.with("type", self.res(i).spec.type_name.clone());
        }
        if stopped {
            event = event.with("stopped", true);
        }
        self.emit(event);
        if stopped {
            let reason = format!(
                "{op} passed its deadline in a monitor stopped from outside (every thread in \
                 state T): no resource is blamed"
            );
            self.kill_monitor(monitor, None, &reason);
        } else {
            if let Some(i) = resource {
                let reason = format!(
                    "{op} did not return within its {} ms deadline: its monitor was killed",
                    millis(deadline)
                );
                self.res_mut(i).last_failure = Some((self.now, reason));
                self.touch(i);
            }
            self.kill_monitor(monitor, resource, &format!("{op} passed its deadline"));
        }
    }

    pub(crate) fn on_watchdog(&mut self, monitor: MonitorId) {
        let now = self.now;
        let Some(m) = self.monitors.get_mut(&monitor) else {
            return;
        };
        let Some(killing) = m.killing else {
            return;
        };
        if m.escalated {
            return;
        }
        m.escalated = true;
        let pid = m.pid.unwrap_or(0);
        let event = Event::of(EventKind::Escalation, killing.culprit.map(|i| self.name(i)))
            .with("pid", pid)
            .with(
                "waited_ms",
                millis(now.saturating_duration_since(killing.since)),
            );
        let event = self.stamped(event);
        self.actions.push_back(Action::Escalate(event));
    }

    pub(crate) fn on_disconnected(&mut self, monitor: MonitorId, error: Option<String>) {
        let Some(m) = self.monitors.get_mut(&monitor) else {
            return;
        };
        m.disconnected = true;
        if let Some(reason) = error
            && m.killing.is_none()
        {
            self.protocol_error(monitor, reason);
        }
        self.maybe_dead(monitor);
    }

    pub(crate) fn on_exited(&mut self, monitor: MonitorId, status: String, signal: Option<i32>) {
        if let Some(m) = self.monitors.get_mut(&monitor) {
            m.exit = Some((status, signal));
            // The socket may still hold the frames the monitor sent before
            // dying (a crash report among them): recovery waits for its end
            // of file, or a grace period if a forked child kept it open.
            if !m.disconnected {
                self.timers
                    .set(Timer::ReaderGrace(monitor), self.now + READER_GRACE);
            }
        }
        self.maybe_dead(monitor);
    }

    /// A monitor is dead once its process has exited and its socket ended;
    /// then recovery runs.
    pub(crate) fn maybe_dead(&mut self, monitor: MonitorId) {
        let Some(m) = self.monitors.get(&monitor) else {
            return;
        };
        if m.exit.is_none() || !m.disconnected {
            return;
        }
        let m = self.monitors.remove(&monitor).expect("checked");
        self.actions.push_back(Action::Release { monitor });
        for timer in [
            Timer::Watchdog(monitor),
            Timer::Hello(monitor),
            Timer::ReaderGrace(monitor),
        ] {
            self.timers.cancel(timer);
        }
        if self.current.get(&m.key) == Some(&monitor) {
            self.current.remove(&m.key);
        }
        if self.shutdown.is_some() || m.retiring {
            return;
        }
        let lost_calls = self.calls.take_monitor(monitor);
        let (status, signal) = m.exit.clone().unwrap_or_default();
        let crashed_in = m.crash_call.and_then(|(call, _)| {
            lost_calls
                .iter()
                .find(|(id, _)| id.0 == call)
                .and_then(|(_, c)| c.resource)
        });
        let in_flight: Vec<ResourceId> =
            lost_calls.iter().filter_map(|(_, c)| c.resource).collect();
        let earlier_protocol_suspects = if m.protocol_error {
            self.protocol_suspects.remove(&m.key).unwrap_or_default()
        } else {
            Vec::new()
        };
        let suspects = decide::blame(&Death {
            killed_for: m.killing.map(|k| k.culprit),
            crashed_in,
            signal,
            in_flight: in_flight.clone(),
            protocol_error: m.protocol_error,
            earlier_protocol_suspects,
        });
        if m.protocol_error && suspects.is_empty() && crashed_in.is_none() {
            // Remembered for the next protocol error of this placement.
            self.protocol_suspects.insert(m.key, in_flight);
        }
        // A monitor that never said hello: start the next one later, and
        // say so; while starting, the host cannot go on without it.
        let retry = (!m.ready && m.killing.is_none_or(|k| k.culprit.is_none()))
            .then(|| self.back_off_respawn(m.key));
        let mut event = Event::of(EventKind::MonitorDied, None)
            .with("pid", m.pid.unwrap_or(0))
            .with("monitor", self.key_name(m.key))
            .with("status", status)
            .with("killed", m.killing.is_some())
            .with(
                "suspects",
                suspects
                    .iter()
                    .map(|&i| self.name(i).to_owned())
                    .collect::<Vec<_>>(),
            );
        if let Some((_, signal)) = m.crash_call {
            event = event.with("crash_signal", signal);
        }
        if let Some(delay) = retry {
            event = event
                .with("before_hello", true)
                .with("retry_in_ms", millis(delay));
        }
        self.emit(event);
        if retry.is_some() && !self.validated {
            let (status, _) = m.exit.clone().unwrap_or_default();
            self.fail_start(HostError::Monitor(format!(
                "the monitor process (pid {}) ended ({status}) before saying hello: is the \
                 configured monitor program a clusterkit monitor?",
                m.pid.unwrap_or(0)
            )));
            return;
        }

        for (id, call) in &lost_calls {
            match call.kind {
                CallKind::Close => {
                    let name = call.resource.map(|i| self.name(i).to_owned());
                    let error = format!(
                        "`{}`: the monitor died during close",
                        name.unwrap_or_default()
                    );
                    self.finish_closing(Some(*id), Some(error));
                }
                CallKind::Control(request) => {
                    let error = HostError::Call(clusterkit::Error::Failed(
                        "the monitor died during the call".into(),
                    ));
                    self.reply(request, Err(error));
                }
                CallKind::LoadLibrary(lib) if !self.validated => {
                    let path = self.libraries[lib.0].path.display().to_string();
                    self.fail_start(HostError::Library {
                        path,
                        problem:
                            "the monitor died while loading it (a crash or hang in its startup)"
                                .into(),
                    });
                    return;
                }
                _ => {}
            }
        }
        let mut lost_terminates = Vec::new();
        for i in (0..self.resources.len()).map(ResourceId) {
            if self.res(i).monitor != Some(monitor) {
                continue;
            }
            #[allow(unused_mut)]
            let (mut phase, lost) = decide::after_monitor_death(&self.res(i).phase);
            #[cfg(test)]
            if self.reintroduced.reattach_forgotten_on_death
                && let Phase::Closed { next, .. } = &mut phase
                && matches!(
                    self.res(i).phase,
                    Phase::Reattaching { .. } | Phase::Opening { .. }
                )
            {
                next.then = Then::Offline;
            }
            let r = self.res_mut(i);
            r.monitor = None;
            r.control = None;
            self.set_phase(i, phase);
            if let Some(then) = lost {
                lost_terminates.push((i, then));
            }
            self.mark_dirty(i);
        }
        // A terminate the death cut short: its resource still needs a
        // stopped workload (terminate again after the re-open) and, if it
        // failed, its restart policy.
        for (i, then) in lost_terminates {
            if then == AfterTerminate::ApplyPolicy
                && !suspects.contains(&i)
                && !self.res(i).phase.is_held()
            {
                self.apply_policy(i);
            }
        }
        for culprit in suspects {
            self.isolate_and_restart(culprit);
        }
        // Resources still waiting for this monitor (not yet opened in it)
        // need the next one too.
        let key = m.key;
        self.mark_all_dirty(|core, i| core.monitor_key(i) == key);
    }

    fn isolate_and_restart(&mut self, i: ResourceId) {
        // A culprit again after a cleanup: isolated again, for good.
        if !self.res(i).separate_monitor || self.res(i).lift_isolation {
            self.res_mut(i).separate_monitor = true;
            self.res_mut(i).lift_isolation = false;
            self.touch(i);
            let event = Event::of(EventKind::ResourceIsolated, Some(self.name(i)))
                .with("monitor", format!("separate:{}", self.name(i)));
            self.emit(event);
            self.persist();
        }
        let next = AfterOpen::recovering(Then::Restart);
        match self.res(i).phase {
            Phase::Held {
                until, reset, open, ..
            } => {
                // A restart is already scheduled: it restarts afresh.
                self.res_mut(i).phase = Phase::Held {
                    until,
                    reset,
                    open,
                    next,
                };
            }
            _ => {
                self.set_phase(
                    i,
                    Phase::Closed {
                        next,
                        shown: clusterkit::ResourceState::Failed,
                    },
                );
                // The culprit goes through its restart policy (its threshold
                // counts hung terminates too).
                #[cfg(test)]
                if self.reintroduced.culprit_skips_policy {
                    return;
                }
                self.apply_policy(i);
            }
        }
    }
}
