//! Operator commands: start, online/offline (with dependencies), a
//! simulated failure, control codes, the close of a stop, shutdown.

use clusterkit::{Error, ResourceState};

use crate::error::HostError;
use crate::events::{Event, EventKind};
use crate::protocol::Op;
use crate::state_file::Desired;

use super::calls::CallKind;
use super::core::{Closing, Command, Core};
use super::ids::{CallId, RequestId, ResourceId};
use super::lifecycle::{AfterTerminate, Phase, Then};

impl Core {
    pub(crate) fn on_command(&mut self, request: RequestId, command: Command) {
        match command {
            Command::Start => {
                self.emit(Event::of(EventKind::HostStarted, None).with("pid", self.host_pid));
                self.start_request = Some(request);
                for i in 0..self.resources.len() {
                    self.ensure_library(ResourceId(i));
                }
                self.check_validation();
            }
            Command::Online(i) => {
                self.want_online(i);
                // Answered once recorded: an outcome that cannot be
                // persisted is an error the operator sees.
                self.persist_then_reply(Some(request));
            }
            Command::OnlineMany(resources) => {
                for i in resources {
                    self.want_online(i);
                }
                self.persist_then_reply(Some(request));
            }
            Command::Offline(i) => {
                let mut chain = Vec::new();
                self.collect_dependents(i, &mut chain);
                for r in chain {
                    self.set_desired(r, Desired::Offline);
                    self.mark_dirty(r);
                }
                self.persist_then_reply(Some(request));
            }
            Command::Fail(i) => {
                let state = self.res(i).phase.state();
                let answer = if state == ResourceState::Online {
                    self.fail_resource(i, "failure simulated by the operator".into());
                    Ok(Vec::new())
                } else {
                    Err(HostError::InvalidState {
                        resource: self.name(i).to_owned(),
                        state,
                    })
                };
                self.reply(request, answer);
            }
            Command::Control(i, code, input) => {
                let r = self.res(i);
                match (r.phase.is_open() && r.is_idle(), r.monitor) {
                    (true, Some(m)) => {
                        let op = Op::Control {
                            code: code.0,
                            input,
                        };
                        let call = self.send_call(m, Some(i), op, CallKind::Control(request));
                        self.res_mut(i).control = call;
                    }
                    _ => {
                        let answer = Err(HostError::InvalidState {
                            resource: r.spec.name.clone(),
                            state: r.phase.state(),
                        });
                        self.reply(request, answer);
                    }
                }
            }
            Command::Cleanup(i) => self.cleanup(request, i),
            Command::Properties(i) => {
                let shown = self.shown_properties(i).encode();
                self.reply(request, Ok(shown));
            }
            Command::CloseAll => {
                let mut calls = Vec::new();
                let mut errors = Vec::new();
                for i in (0..self.resources.len()).map(ResourceId) {
                    let r = self.res(i);
                    if r.retired || !r.phase.is_open() {
                        continue;
                    }
                    match (r.is_idle(), r.monitor) {
                        (true, Some(m)) => {
                            let shown = r.phase.state();
                            if let Some(call) =
                                self.send_call(m, Some(i), Op::Close, CallKind::Close)
                            {
                                self.set_phase(i, Phase::Closing { call, shown });
                                calls.push(call);
                            }
                        }
                        // A call still runs: it cannot be closed under it.
                        (false, _) => errors.push(format!("`{}`: busy, not closed", r.spec.name)),
                        _ => {}
                    }
                }
                self.stopping = true;
                self.closing = Some(Closing {
                    request,
                    calls,
                    errors,
                });
                self.finish_closing(None, None);
            }
            Command::Check { resource, looks } => self.check_now(request, resource, looks),
            Command::Reconfigure(plan) => self.on_reconfigure(request, plan),
            Command::Shutdown => self.begin_shutdown(Some(request)),
        }
    }

    /// Lets a resource held failed (waiting for a restart or an operator)
    /// go: its history is cleared and it is driven to its desired state
    /// again.
    pub(crate) fn release_held(&mut self, r: ResourceId) {
        if let Phase::Held { open, next, .. } = self.res(r).phase {
            self.res_mut(r).restarts.reset();
            if open && next.then == Then::Restart {
                // Its workload may still run: stop it first.
                self.set_phase(r, Phase::Offline);
                self.send_terminate(r, AfterTerminate::Restart, ResourceState::Failed);
            } else {
                let shown = ResourceState::Unknown;
                self.set_phase(r, Phase::idle(open, next, shown));
            }
        }
    }

    /// Notes the end of one `close` of a stop; answers once all have ended.
    pub(crate) fn finish_closing(&mut self, call: Option<CallId>, error: Option<String>) {
        let Some(closing) = &mut self.closing else {
            return;
        };
        if let Some(call) = call {
            closing.calls.retain(|c| *c != call);
        }
        closing.errors.extend(error);
        if closing.calls.is_empty() {
            let closing = self.closing.take().expect("checked");
            let answer = if closing.errors.is_empty() {
                Ok(Vec::new())
            } else {
                Err(HostError::Call(Error::Failed(format!(
                    "close failed: {}",
                    closing.errors.join("; ")
                ))))
            };
            self.reply(closing.request, answer);
        }
    }

    /// Ends the start with an error and shuts down.
    pub(crate) fn fail_start(&mut self, error: HostError) {
        if let Some(request) = self.start_request.take() {
            self.reply(request, Err(error));
        }
        if self.shutdown.is_none() {
            self.begin_shutdown(None);
        }
    }

    /// Wants `i` online, with its dependencies.
    fn want_online(&mut self, i: ResourceId) {
        let mut chain = Vec::new();
        self.collect_dependencies(i, &mut chain);
        for r in chain {
            self.set_desired(r, Desired::Online);
            self.release_held(r);
            self.mark_dirty(r);
        }
    }

    fn collect_dependencies(&self, i: ResourceId, out: &mut Vec<ResourceId>) {
        if out.contains(&i) {
            return;
        }
        for &d in &self.res(i).spec.depends_on {
            self.collect_dependencies(ResourceId(d), out);
        }
        out.push(i);
    }

    fn collect_dependents(&self, i: ResourceId, out: &mut Vec<ResourceId>) {
        if out.contains(&i) {
            return;
        }
        out.push(i);
        for &d in &self.res(i).dependents {
            self.collect_dependents(d, out);
        }
    }

    fn set_desired(&mut self, i: ResourceId, desired: Desired) {
        self.res_mut(i).desired = desired;
        self.touch(i);
    }
}
