//! The restart policy as a pure decision: given the policy, the history
//! and the time, what to do about a failure. No timers, no I/O: the engine
//! carries the decision out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{RestartAction, RestartPolicy};

/// Restart bookkeeping of one resource; persisted, so a host restart does
/// not reset the threshold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartCounters {
    /// Wall-clock times (ms since the Unix epoch) of restarts within the period.
    pub recent: Vec<u64>,
    /// Consecutive restarts, for backoff.
    pub backoff_step: u32,
    /// Workload restarts over the resource's life: one per
    /// `resource_restarted` event, whatever caused it (its own failure, or a
    /// restart forced on it by a monitor's death).
    pub total: u64,
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart after this delay.
    Restart {
        /// The wait before restarting.
        after: Duration,
    },
    /// The threshold is exceeded: emit `restart_threshold_exceeded`, then
    /// `failover_requested` if `failover`; try once more after `retry_after`.
    Exceeded {
        /// Whether to ask the cluster engine for failover.
        failover: bool,
        /// When to try again.
        retry_after: Duration,
    },
    /// Leave the resource failed (`restart_action = none`).
    StayFailed,
}

impl RestartCounters {
    /// Decides about a failure at `now_ms`, recording a restart within the
    /// period if one is chosen (the restart itself is counted by
    /// [`note_restart`](Self::note_restart) when it happens).
    pub fn decide(&mut self, policy: &RestartPolicy, now_ms: u64) -> Decision {
        let period_ms = u64::try_from(policy.period.as_millis()).unwrap_or(u64::MAX);
        self.recent
            .retain(|t| now_ms.saturating_sub(*t) < period_ms);
        if policy.action == RestartAction::None {
            return Decision::StayFailed;
        }
        if self.recent.len() >= policy.threshold as usize {
            return Decision::Exceeded {
                failover: policy.action == RestartAction::RestartThenFailover,
                retry_after: policy.retry_period_on_failure,
            };
        }
        self.recent.push(now_ms);
        let after = match policy.backoff {
            None => policy.delay,
            Some(b) => {
                let factor = u64::from(b.factor).saturating_pow(self.backoff_step);
                let ms = u64::try_from(policy.delay.as_millis())
                    .unwrap_or(u64::MAX)
                    .saturating_mul(factor);
                Duration::from_millis(ms).min(b.cap)
            }
        };
        self.backoff_step = self.backoff_step.saturating_add(1);
        Decision::Restart { after }
    }

    /// The resource has been online for `online_for`: resets the backoff once
    /// that reaches the policy's `reset_after`.
    pub fn note_stable(&mut self, policy: &RestartPolicy, online_for: Duration) {
        if let Some(b) = policy.backoff
            && online_for >= b.reset_after
        {
            self.backoff_step = 0;
        }
    }

    /// A restart happens now (announced by `resource_restarted`).
    pub fn note_restart(&mut self) {
        self.total += 1;
    }

    /// After the retry period: start counting afresh.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.backoff_step = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backoff;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            threshold: 2,
            period: Duration::from_secs(10),
            delay: Duration::from_millis(100),
            ..RestartPolicy::default()
        }
    }

    #[test]
    fn restarts_within_threshold_then_fails_over() {
        let mut c = RestartCounters::default();
        let p = policy();
        assert_eq!(
            c.decide(&p, 1_000),
            Decision::Restart {
                after: Duration::from_millis(100)
            }
        );
        assert_eq!(
            c.decide(&p, 2_000),
            Decision::Restart {
                after: Duration::from_millis(100)
            }
        );
        assert_eq!(
            c.decide(&p, 3_000),
            Decision::Exceeded {
                failover: true,
                retry_after: p.retry_period_on_failure
            }
        );
        // Outside the period, restarts are allowed again.
        assert!(matches!(c.decide(&p, 12_500), Decision::Restart { .. }));
        assert_eq!(c.recent, vec![12_500]);
        assert_eq!(c.total, 0, "decisions count no restart; note_restart does");
        c.note_restart();
        assert_eq!(c.total, 1);
    }

    #[test]
    fn restart_only_never_asks_for_failover_and_none_never_restarts() {
        let mut c = RestartCounters::default();
        let p = RestartPolicy {
            action: RestartAction::Restart,
            threshold: 0,
            ..policy()
        };
        assert!(matches!(
            c.decide(&p, 0),
            Decision::Exceeded {
                failover: false,
                ..
            }
        ));
        let p = RestartPolicy {
            action: RestartAction::None,
            ..policy()
        };
        assert_eq!(c.decide(&p, 0), Decision::StayFailed);
    }

    #[test]
    fn backoff_grows_to_the_cap_and_resets_when_stable() {
        let p = RestartPolicy {
            threshold: 100,
            backoff: Some(Backoff {
                factor: 2,
                cap: Duration::from_millis(500),
                reset_after: Duration::from_secs(60),
            }),
            ..policy()
        };
        let mut c = RestartCounters::default();
        let delays: Vec<u128> = (0..5)
            .map(|i| match c.decide(&p, i) {
                Decision::Restart { after } => after.as_millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        c.note_stable(&p, Duration::from_secs(59));
        assert_eq!(c.backoff_step, 5);
        c.note_stable(&p, Duration::from_secs(60));
        assert_eq!(
            c.decide(&p, 10),
            Decision::Restart {
                after: Duration::from_millis(100)
            }
        );
    }
}
