//! Frames from monitors: hello, replies, progress reports, completions,
//! log lines and crash reports. A library can write to its monitor's
//! socket, so nothing here trusts a frame beyond what it can check: a reply
//! counts only from the monitor its call went to, a report or completion
//! only for the operation pending now.

use clusterkit::{Error, Health, Level, ResourceState};

use crate::error::HostError;
use crate::events::{Event, EventKind};
use crate::protocol::{FromMonitor, Outcome};

use super::calls::CallKind;
use super::core::Core;
use super::ids::{CallId, MonitorId, ResourceId};
use super::lifecycle::Phase;

impl Core {
    pub(crate) fn on_frame(&mut self, monitor: MonitorId, message: FromMonitor) {
        if !self.monitors.contains_key(&monitor) {
            return;
        }
        match message {
            FromMonitor::Hello { pid, protocol } => self.on_hello(monitor, pid, protocol),
            FromMonitor::Reply { call, outcome } => {
                let call = CallId(call);
                if self.calls.get(call).is_some_and(|c| c.monitor == monitor) {
                    self.on_reply(call, outcome);
                }
            }
            FromMonitor::Report {
                call,
                resource,
                checkpoint,
                ..
            } => {
                if let Some(i) = self.resource_in(resource, monitor) {
                    self.on_report(i, CallId(call), checkpoint);
                }
            }
            FromMonitor::Complete {
                call,
                resource,
                outcome,
            } => {
                if let Some(i) = self.resource_in(resource, monitor) {
                    self.on_complete(i, CallId(call), outcome);
                }
            }
            FromMonitor::Log {
                resource,
                level,
                message,
            } => {
                let name = self
                    .resource_in(resource, monitor)
                    .map(|i| self.name(i).to_owned());
                let level = Level::from_u32(level).unwrap_or(Level::Info);
                let event = Event::of(EventKind::ResourceLog, name.as_deref())
                    .with("level", level.to_string())
                    .with("message", message);
                self.emit(event);
            }
            FromMonitor::Crashing { call, signal } => {
                if let Some(m) = self.monitors.get_mut(&monitor) {
                    m.crash_call = Some((call, signal));
                }
            }
        }
    }

    /// The resource a monitor names, if it is placed in that monitor.
    fn resource_in(&self, wire: u32, monitor: MonitorId) -> Option<ResourceId> {
        let i = ResourceId::from_wire(wire)?;
        (self.resources.get(i.0)?.monitor == Some(monitor)).then_some(i)
    }

    fn on_reply(&mut self, id: CallId, outcome: Outcome) {
        if !self.calls.get(id).is_some_and(|c| c.sent) {
            // A late reply to a call given up on, or one to a call never
            // sent (still waiting for the window): forged.
            return;
        }
        let Some(call) = self.calls.take(id) else {
            return;
        };
        self.send_waiting(call.monitor);
        let elapsed = self
            .now
            .saturating_duration_since(call.written.unwrap_or(call.started));
        if let (Outcome::Failed(e), Some(i)) = (&outcome, call.resource)
            && !matches!(call.kind, CallKind::Control(_))
        {
            let event = Event::of(EventKind::CallFailed, Some(self.name(i)))
                .with("call", call.op)
                .with("code", e.code().name())
                .with("error", e.to_string());
            self.emit(event);
        }
        let Some(i) = call.resource else {
            if let CallKind::LoadLibrary(lib) = call.kind {
                self.on_library_loaded(call.monitor, lib, outcome);
            }
            return;
        };
        // Only the call the phase waits for moves the phase on.
        let expected = self.res(i).phase.serial_call() == Some(id);
        let serial = expected || self.res(i).control == Some(id);
        match call.kind {
            CallKind::LoadLibrary(_) => {}
            CallKind::Open if expected => self.on_opened(i, outcome),
            CallKind::Online if expected => self.on_online_reply(i, id, outcome),
            CallKind::Offline if expected => self.on_offline_reply(i, id, outcome),
            CallKind::ReattachCheck if expected => self.on_reattach_check(i, outcome),
            CallKind::Close if expected => {
                let error = match outcome {
                    Outcome::Failed(e) => Some(format!("`{}`: {e}", self.name(i))),
                    _ => None,
                };
                self.set_phase(
                    i,
                    Phase::Closed {
                        next: self.res(i).phase.next_open(),
                        shown: ResourceState::Offline,
                    },
                );
                self.finish_closing(Some(id), error);
            }
            CallKind::Terminate => {
                if let Phase::Terminating { call, then, .. } = self.res(i).phase
                    && call == Some(id)
                {
                    match outcome {
                        Outcome::Failed(e) => self.on_terminate_failed(i, e),
                        _ => self.on_terminated(i, then),
                    }
                }
            }
            CallKind::LooksAlive | CallKind::IsAlive => {
                let looks = call.kind == CallKind::LooksAlive;
                self.on_health(i, looks, id, health_of(outcome), elapsed);
            }
            CallKind::Control(request) => {
                if self.res(i).control == Some(id) {
                    self.res_mut(i).control = None;
                }
                let answer = match outcome {
                    Outcome::Bytes(b) => Ok(b),
                    Outcome::Failed(e) => Err(HostError::Call(e)),
                    other => Err(HostError::Call(Error::Internal(format!(
                        "unexpected reply {other:?}"
                    )))),
                };
                self.reply(request, answer);
            }
            CallKind::Open
            | CallKind::Online
            | CallKind::Offline
            | CallKind::ReattachCheck
            | CallKind::Close => {}
        }
        if serial {
            self.mark_dirty(i);
        }
    }
}

/// A health check's result from its reply; anything but a health value fails.
pub(crate) fn health_of(outcome: Outcome) -> Health {
    match outcome {
        Outcome::Health(h) => h,
        Outcome::Failed(e) => Health::Failed(e.to_string()),
        other => Health::Failed(format!("unexpected reply {other:?}")),
    }
}
