//! A simulated monitor process: it answers calls the way a real one does
//! (opening resources, starting and stopping their workloads, reporting
//! their health, finishing pending transitions on a worker), or hangs,
//! fails, panics, aborts or writes garbage when told to.

use std::time::Duration;

use clusterkit::{Characteristics, Error, Health, ResourceState, TypeDescription};

use crate::engine::ids::{MonitorId, ResourceId};
use crate::engine::lifecycle::{AfterTerminate, Phase};
use crate::protocol::{FromMonitor, Op, Outcome, ToMonitor};

use super::world::{Delivery, Fault, TYPE_PLAIN, TYPE_REATTACH, World};

impl World {
    /// A monitor receives a message.
    pub(crate) fn receive(&mut self, monitor: MonitorId, message: ToMonitor) {
        let Some(m) = self.monitors.get(&monitor) else {
            return;
        };
        if m.stopped || m.dying {
            return;
        }
        let ToMonitor::Call { call, resource, op } = message else {
            self.note(format!("monitor {monitor} shuts down"));
            self.die(monitor, None);
            return;
        };
        let name = op.name();
        let i = ResourceId::from_wire(resource);
        if let Some(i) = i {
            self.note(format!("monitor {monitor}: {name} r{} (call {call})", i.0));
        }
        let sticky = i.and_then(|i| self.sticky_faults.get(&(i, name)).copied());
        let fault = sticky.or_else(|| i.and_then(|i| self.faults.remove(&(i, name))));
        if let Some(f) = fault {
            self.note(format!("fault {f:?} in {name} of {:?}", i.map(|i| i.0)));
            if let Some(i) = i {
                self.workloads[i.0].own_trouble = true;
            }
        }
        let mut latency = self.latency();
        match fault {
            Some(Fault::Hang) => return,
            Some(Fault::Slow(d)) => latency = d,
            Some(Fault::Abort) => {
                let crash = FromMonitor::Crashing {
                    call,
                    signal: libc::SIGABRT as u32,
                };
                self.deliver_later(Duration::ZERO, monitor, Delivery::Frame(crash));
                self.die(monitor, Some(libc::SIGABRT));
                return;
            }
            Some(Fault::Garbage) => {
                let error = "frame of 2147483647 bytes exceeds the limit".to_owned();
                self.deliver_later(latency, monitor, Delivery::Disconnected(Some(error)));
                return;
            }
            _ => {}
        }
        let failed = match fault {
            Some(Fault::Fail) => Some(Error::Failed(format!("{name} failed (simulated)"))),
            Some(Fault::Panic) => Some(Error::Panicked(format!("{name} panicked (simulated)"))),
            _ => None,
        };
        let outcome = match (failed, i) {
            (Some(e), _) => Outcome::Failed(e),
            (None, None) => self.library_call(&op),
            (None, Some(i)) => self.resource_call(monitor, i, call, &op),
        };
        let reply = FromMonitor::Reply { call, outcome };
        self.deliver_later(latency, monitor, Delivery::Frame(reply));
    }

    fn library_call(&mut self, op: &Op) -> Outcome {
        match op {
            Op::LoadLibrary { .. } => {
                let mut reattach = TypeDescription::new(TYPE_REATTACH);
                reattach.characteristics = Characteristics::REATTACH;
                Outcome::Types(vec![reattach, TypeDescription::new(TYPE_PLAIN)])
            }
            _ => Outcome::Failed(Error::InvalidState("no resource".into())),
        }
    }

    fn resource_call(&mut self, monitor: MonitorId, i: ResourceId, call: u64, op: &Op) -> Outcome {
        let is_open = self.monitors[&monitor].open.contains(&i);
        if !is_open && !matches!(op, Op::Open { .. }) {
            return Outcome::Failed(Error::InvalidState(format!("{} is not open", i.0)));
        }
        match op {
            Op::Open { .. } => {
                self.monitors
                    .get_mut(&monitor)
                    .expect("live")
                    .open
                    .insert(i);
                Outcome::Done
            }
            Op::Online => {
                self.start_workload(monitor, i);
                if self.rng.chance(25) {
                    self.finish_later(monitor, i, call, ResourceState::Online);
                    Outcome::State(ResourceState::OnlinePending)
                } else {
                    Outcome::State(ResourceState::Online)
                }
            }
            Op::Offline => {
                self.stop_workload(monitor, i, false);
                if self.rng.chance(25) {
                    self.finish_later(monitor, i, call, ResourceState::Offline);
                    Outcome::State(ResourceState::OfflinePending)
                } else {
                    Outcome::State(ResourceState::Offline)
                }
            }
            Op::Terminate => {
                // A terminate that finishes an offline is no failure.
                let forced = !matches!(
                    self.core.res(i).phase,
                    Phase::Terminating {
                        then: AfterTerminate::MarkOffline,
                        ..
                    }
                );
                let w = &self.workloads[i.0];
                if forced && w.running && self.reattach[i.0] && !w.own_trouble {
                    self.checker.violation(format!(
                        "r{} (re-attachable) is terminated for another resource's fault",
                        i.0
                    ));
                }
                self.stop_workload(monitor, i, forced);
                Outcome::Done
            }
            Op::LooksAlive | Op::IsAlive => {
                if self.workloads[i.0].running {
                    Outcome::Health(Health::Healthy)
                } else {
                    Outcome::Health(Health::Failed("not running".into()))
                }
            }
            Op::Close => {
                self.monitors
                    .get_mut(&monitor)
                    .expect("live")
                    .open
                    .remove(&i);
                Outcome::Done
            }
            Op::Control { input, .. } => Outcome::Bytes(input.clone()),
            Op::LoadLibrary { .. } => Outcome::Failed(Error::InvalidState("not a library".into())),
        }
    }

    /// A pending transition's worker: a few progress reports, then the end.
    fn finish_later(&mut self, monitor: MonitorId, i: ResourceId, call: u64, state: ResourceState) {
        let reports = self.rng.below(3);
        let mut at = Duration::ZERO;
        for checkpoint in 0..reports {
            at += Duration::from_millis(100 + self.rng.below(600));
            let report = FromMonitor::Report {
                call,
                resource: i.wire(),
                checkpoint: checkpoint as u32,
                wait_hint_ms: 500,
            };
            self.deliver_at(at, monitor, report);
        }
        at += Duration::from_millis(100 + self.rng.below(600));
        let complete = FromMonitor::Complete {
            call,
            resource: i.wire(),
            outcome: Ok(state),
        };
        self.deliver_at(at, monitor, complete);
    }

    fn deliver_at(&mut self, after: Duration, monitor: MonitorId, frame: FromMonitor) {
        self.deliver_later(after, monitor, Delivery::Frame(frame));
    }

    fn start_workload(&mut self, monitor: MonitorId, i: ResourceId) {
        let elsewhere = self
            .monitors
            .iter()
            .any(|(id, m)| *id != monitor && m.online.contains(&i));
        if elsewhere {
            self.checker
                .violation(format!("r{} is brought online in two monitors", i.0));
        }
        self.monitors
            .get_mut(&monitor)
            .expect("live")
            .online
            .insert(i);
        let w = &mut self.workloads[i.0];
        if w.running {
            self.checker.violation(format!(
                "r{} is started while its workload runs: an unannounced restart",
                i.0
            ));
        } else if w.restart_owed {
            self.checker.violation(format!(
                "r{} is restarted without a resource_restarted event",
                i.0
            ));
        }
        let w = &mut self.workloads[i.0];
        w.running = true;
        w.own_trouble = false;
        w.starts += 1;
        let starts = w.starts;
        self.note(format!("workload r{} starts (start {starts})", i.0));
    }

    fn stop_workload(&mut self, monitor: MonitorId, i: ResourceId, forced: bool) {
        if let Some(m) = self.monitors.get_mut(&monitor) {
            m.online.remove(&i);
        }
        let w = &mut self.workloads[i.0];
        if !forced {
            // Taken offline on purpose: the next start is no restart.
            w.restart_owed = false;
        }
        if w.running {
            w.restart_owed |= forced;
            w.running = false;
            w.terminate_failed = false;
            self.note(format!("workload r{} stops (forced: {forced})", i.0));
        }
    }
}
