//! Health polling: `looks_alive` every `looks_alive_interval`, `is_alive`
//! every `is_alive_interval` and at once after a failed `looks_alive`; a
//! failed `is_alive` fails the resource. Checks run at a fixed rate
//! ([`decide::next_check_due`]) and one kind never overlaps itself.

use std::time::Duration;

use clusterkit::Health;

use crate::error::HostError;
use crate::events::{Event, EventKind};
use crate::protocol::Op;

use super::calls::CallKind;
use super::core::Core;
use super::decide;
use super::ids::{CallId, RequestId, ResourceId};
use super::lifecycle::{CheckPlan, Phase};
use super::timers::Timer;

impl Core {
    fn plan_mut(&mut self, i: ResourceId, looks: bool) -> Option<&mut CheckPlan> {
        match &mut self.res_mut(i).phase {
            Phase::Online { looks: l, is, .. } => Some(if looks { l } else { is }),
            _ => None,
        }
    }

    pub(crate) fn on_health_timer(&mut self, i: ResourceId, looks: bool) {
        let timing = self.res(i).spec.timing;
        let interval = if looks {
            timing.looks_alive_interval
        } else {
            timing.is_alive_interval
        };
        let now = self.now;
        let Some(plan) = self.plan_mut(i, looks) else {
            return;
        };
        plan.due = decide::next_check_due(plan.due, interval, now);
        let (due, idle) = (plan.due, plan.in_flight.is_none());
        self.timers.set(Timer::Health { resource: i, looks }, due);
        if idle {
            self.send_health_check(i, looks);
        }
    }

    fn send_health_check(&mut self, i: ResourceId, looks: bool) {
        let Some(m) = self.res(i).monitor else {
            return;
        };
        let (op, kind) = if looks {
            (Op::LooksAlive, CallKind::LooksAlive)
        } else {
            (Op::IsAlive, CallKind::IsAlive)
        };
        if let Some(call) = self.send_call(m, Some(i), op, kind)
            && let Some(plan) = self.plan_mut(i, looks)
        {
            plan.in_flight = Some(call);
        }
    }

    /// An operator's check: the next result of this kind answers it; one
    /// is sent now unless one is in flight already. Only an online
    /// resource is checked.
    pub(crate) fn check_now(&mut self, request: RequestId, i: ResourceId, looks: bool) {
        let Some(plan) = self.plan_mut(i, looks) else {
            let state = self.res(i).phase.state();
            let resource = self.name(i).to_owned();
            self.reply(request, Err(HostError::InvalidState { resource, state }));
            return;
        };
        let idle = plan.in_flight.is_none();
        self.check_waiters.push((i, looks, request));
        if idle {
            self.send_health_check(i, looks);
        }
    }

    /// Answers the checks of `i` waiting for `looks` (both kinds if `None`).
    pub(crate) fn answer_checks(
        &mut self,
        i: ResourceId,
        looks: Option<bool>,
        answer: impl Fn(&str) -> Result<Vec<u8>, HostError>,
    ) {
        if self.check_waiters.is_empty() {
            return;
        }
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.check_waiters)
            .into_iter()
            .partition(|&(r, l, _)| r == i && looks.is_none_or(|looks| looks == l));
        self.check_waiters = later;
        for (_, _, request) in now {
            let answer = answer(self.name(i));
            self.reply(request, answer);
        }
    }

    pub(crate) fn on_health(
        &mut self,
        i: ResourceId,
        looks: bool,
        call: CallId,
        health: Health,
        latency: Duration,
    ) {
        let now = self.now;
        if let Some(plan) = self.plan_mut(i, looks)
            && plan.in_flight == Some(call)
        {
            plan.in_flight = None;
        }
        let r = self.res_mut(i);
        r.last_latency = Some(latency);
        r.checks += 1;
        let same_result = r.last_health.as_ref() == Some(&health);
        if !same_result {
            r.last_health = Some(health.clone());
        }
        if self.check_waiters.iter().any(|&(w, _, _)| w == i) {
            let encoded = encode_health(&health);
            self.answer_checks(i, Some(looks), |_| Ok(encoded.clone()));
        }
        let r = self.res_mut(i);
        if let Health::Degraded(_) = health
            && matches!(r.phase, Phase::Online { .. })
        {
            r.degraded += 1;
        }
        // The status first: an event is never seen before what it reports.
        // The same result as last time changes only the counters.
        if same_result {
            self.touch_checks(i);
        } else {
            self.touch(i);
        }
        let r = self.res_mut(i);
        let Phase::Online { since, is, .. } = r.phase else {
            return;
        };
        let check = if looks { "looks_alive" } else { "is_alive" };
        match health {
            Health::Healthy => {
                let policy = r.spec.timing.restart;
                r.restarts
                    .note_stable(&policy, now.saturating_duration_since(since));
            }
            Health::Degraded(reason) => {
                let event = Event::of(EventKind::HealthDegraded, Some(&r.spec.name))
                    .with("check", check)
                    .with("reason", reason)
                    .with("count", r.degraded);
                self.emit(event);
            }
            Health::Failed(reason) => {
                let event = Event::of(EventKind::HealthFailed, Some(&r.spec.name))
                    .with("check", check)
                    .with("reason", reason.clone());
                self.emit(event);
                if looks {
                    // A failed cheap check asks for the thorough one at once.
                    if is.in_flight.is_none() {
                        self.send_health_check(i, false);
                    }
                } else {
                    self.fail_resource(i, format!("is_alive failed: {reason}"));
                }
            }
        }
    }
}

/// A check's result as an operator's check answer carries it.
fn encode_health(health: &Health) -> Vec<u8> {
    let (kind, reason) = match health {
        Health::Healthy => ("healthy", ""),
        Health::Degraded(r) => ("degraded", r.as_str()),
        Health::Failed(r) => ("failed", r.as_str()),
    };
    serde_json::to_vec(&serde_json::json!({ "health": kind, "reason": reason })).unwrap_or_default()
}

/// The result [`encode_health`] encoded.
pub(crate) fn decode_health(bytes: &[u8]) -> Option<Health> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let reason = v["reason"].as_str().unwrap_or_default().to_owned();
    Some(match v["health"].as_str()? {
        "healthy" => Health::Healthy,
        "degraded" => Health::Degraded(reason),
        _ => Health::Failed(reason),
    })
}
