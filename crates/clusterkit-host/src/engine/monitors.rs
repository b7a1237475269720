//! Monitors: which resources share one, starting them, loading libraries
//! into them, validating resources against the types they report, and
//! killing them.

use std::collections::HashMap;
use std::time::Instant;

use clusterkit::{Characteristics, Properties};

use crate::config::Placement;
use crate::error::HostError;
use crate::events::{Event, EventKind};
use crate::protocol::{Op, Outcome};

use super::calls::CallKind;
use super::core::{Action, Core, ResourceSpec};
use super::ids::{LibraryId, MonitorId, ResourceId};
use super::timers::Timer;

/// The watchdog waits this many deadlock timeouts for a killed monitor to exit.
pub(crate) const WATCHDOG_FACTOR: u32 = 4;

/// Which monitor a resource belongs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum MonitorKey {
    /// The shared monitor of a placement group.
    Shared(Placement),
    /// A monitor of the resource's own (`separate_monitor`).
    Own(ResourceId),
}

/// How far a library has got in one monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LibState {
    Loading,
    Loaded,
    Failed,
}

/// A kill the host ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Killing {
    /// The resource whose call it was killed for, if one.
    pub(crate) culprit: Option<ResourceId>,
    /// When.
    pub(crate) since: Instant,
}

/// One monitor process as the core knows it.
#[derive(Debug)]
pub(crate) struct MonitorEntry {
    pub(crate) key: MonitorKey,
    /// Its process id, once spawned.
    pub(crate) pid: Option<u32>,
    /// It said hello.
    pub(crate) ready: bool,
    pub(crate) libraries: HashMap<LibraryId, LibState>,
    pub(crate) killing: Option<Killing>,
    /// Its socket ended.
    pub(crate) disconnected: bool,
    /// Its process exited: the status, and the signal if one ended it.
    pub(crate) exit: Option<(String, Option<i32>)>,
    /// The call a crashing thread was running (from the crash handler).
    pub(crate) crash_call: Option<(u64, u32)>,
    pub(crate) escalated: bool,
    /// It sent bytes that are not a frame.
    pub(crate) protocol_error: bool,
    /// Its thread diagnostics are being read before it is killed.
    pub(crate) diagnosing: bool,
    /// Asked to exit: its resources were removed or moved, and its end is
    /// no failure.
    pub(crate) retiring: bool,
}

impl MonitorEntry {
    /// Calls can be sent to it.
    pub(crate) fn is_usable(&self) -> bool {
        self.ready && self.killing.is_none()
    }
}

impl Core {
    pub(crate) fn monitor_key(&self, i: ResourceId) -> MonitorKey {
        let r = self.res(i);
        if r.separate_monitor {
            MonitorKey::Own(i)
        } else {
            MonitorKey::Shared(r.spec.placement)
        }
    }

    pub(crate) fn key_name(&self, key: MonitorKey) -> String {
        match key {
            MonitorKey::Shared(p) => p.name().to_owned(),
            MonitorKey::Own(i) => format!("separate:{}", self.name(i)),
        }
    }

    /// The live monitor for `key`, asking for one if there is none.
    pub(crate) fn ensure_monitor(&mut self, key: MonitorKey) -> Option<MonitorId> {
        if self.is_stopping() {
            return None;
        }
        if let Some(&id) = self.current.get(&key) {
            return Some(id);
        }
        // Its last monitors died before their hello: wait for the backoff.
        if self.timers.is_set(Timer::Respawn(key)) {
            return None;
        }
        let id = MonitorId(self.next_monitor);
        self.next_monitor += 1;
        self.monitors.insert(
            id,
            MonitorEntry {
                key,
                pid: None,
                ready: false,
                libraries: HashMap::new(),
                killing: None,
                disconnected: false,
                exit: None,
                crash_call: None,
                escalated: false,
                protocol_error: false,
                diagnosing: false,
                retiring: false,
            },
        );
        self.current.insert(key, id);
        self.actions.push_back(Action::Spawn { monitor: id });
        Some(id)
    }

    pub(crate) fn on_spawned(&mut self, monitor: MonitorId, pid: u32) {
        if let Some(m) = self.monitors.get_mut(&monitor) {
            m.pid = Some(pid);
            let at = self.now + self.default_timing.deadlock_timeout;
            self.timers.set(Timer::Hello(monitor), at);
        }
    }

    pub(crate) fn on_spawn_failed(&mut self, monitor: MonitorId, problem: String) {
        let Some(m) = self.monitors.remove(&monitor) else {
            return;
        };
        self.actions.push_back(Action::Release { monitor });
        if self.current.get(&m.key) == Some(&monitor) {
            self.current.remove(&m.key);
        }
        self.emit(
            Event::of(EventKind::MonitorDied, None)
                .with("monitor", self.key_name(m.key))
                .with("reason", problem.clone()),
        );
        if !self.validated {
            self.fail_start(HostError::Monitor(problem));
        } else {
            self.back_off_respawn(m.key);
        }
    }

    pub(crate) fn on_hello(&mut self, monitor: MonitorId, pid: u32, protocol: u32) {
        if protocol != crate::protocol::PROTOCOL_VERSION {
            let reason = format!(
                "monitor speaks protocol {protocol}, the host {}",
                crate::protocol::PROTOCOL_VERSION
            );
            self.protocol_error(monitor, reason);
            return;
        }
        let Some(m) = self.monitors.get_mut(&monitor) else {
            return;
        };
        m.ready = true;
        let key = m.key;
        self.early_deaths.remove(&key);
        self.timers.cancel(Timer::Hello(monitor));
        self.emit(
            Event::of(EventKind::MonitorStarted, None)
                .with("pid", pid)
                .with("monitor", self.key_name(key)),
        );
        self.mark_all_dirty(|core, i| core.monitor_key(i) == key);
    }

    pub(crate) fn protocol_error(&mut self, monitor: MonitorId, reason: String) {
        let Some(m) = self.monitors.get_mut(&monitor) else {
            return;
        };
        m.protocol_error = true;
        let m = &self.monitors[&monitor];
        let event = Event::of(EventKind::MonitorProtocolError, None)
            .with("pid", m.pid.unwrap_or(0))
            .with("monitor", self.key_name(m.key))
            .with("error", reason.clone());
        self.emit(event);
        self.kill_monitor(monitor, None, &reason);
    }

    pub(crate) fn kill_monitor(
        &mut self,
        monitor: MonitorId,
        culprit: Option<ResourceId>,
        reason: &str,
    ) {
        let now = self.now;
        let Some(m) = self.monitors.get_mut(&monitor) else {
            return;
        };
        if m.killing.is_some() {
            return;
        }
        m.killing = Some(Killing {
            culprit,
            since: now,
        });
        let (pid, key) = (m.pid, m.key);
        if self.current.get(&key) == Some(&monitor) {
            self.current.remove(&key);
        }
        let event = Event::of(EventKind::MonitorKilled, culprit.map(|i| self.name(i)))
            .with("pid", pid.unwrap_or(0))
            .with("monitor", self.key_name(key))
            .with("reason", reason);
        match pid {
            Some(pid) => {
                let event = self.stamped(event);
                self.actions.push_back(Action::Kill { pid, event });
            }
            None => self.emit(event),
        }
        let timeout = culprit.map_or(self.default_timing.deadlock_timeout, |i| {
            self.res(i).spec.timing.deadlock_timeout
        });
        self.timers
            .set(Timer::Watchdog(monitor), now + timeout * WATCHDOG_FACTOR);
    }

    /// Another monitor of `key` died before its hello: the next is started
    /// only after a delay that doubles each time. Returns the delay.
    pub(crate) fn back_off_respawn(&mut self, key: MonitorKey) -> std::time::Duration {
        let failures = self.early_deaths.entry(key).or_insert(0);
        *failures += 1;
        let delay = super::decide::respawn_delay(*failures);
        self.timers.set(Timer::Respawn(key), self.now + delay);
        delay
    }

    // ------------------------------------------------------------ libraries

    pub(crate) fn library_of(&self, i: ResourceId) -> LibraryId {
        let path = &self.res(i).spec.library;
        LibraryId(
            self.libraries
                .iter()
                .position(|l| l.path == *path)
                .expect("every library is registered"),
        )
    }

    pub(crate) fn ensure_library(&mut self, i: ResourceId) {
        let Some(m) = self.ensure_monitor(self.monitor_key(i)) else {
            return;
        };
        let lib = self.library_of(i);
        let monitor = &self.monitors[&m];
        if !monitor.is_usable() || monitor.libraries.contains_key(&lib) {
            return;
        }
        self.send_load(m, lib);
    }

    /// Asks monitor `m` to load `lib`; its reply reports the types.
    pub(crate) fn send_load(&mut self, m: MonitorId, lib: LibraryId) {
        let path = self.libraries[lib.0].path.to_string_lossy().into_owned();
        self.monitors
            .get_mut(&m)
            .expect("exists")
            .libraries
            .insert(lib, LibState::Loading);
        let op = Op::LoadLibrary {
            library: lib.wire(),
            path,
        };
        self.send_call(m, None, op, CallKind::LoadLibrary(lib));
    }

    pub(crate) fn on_library_loaded(
        &mut self,
        monitor: MonitorId,
        lib: LibraryId,
        outcome: Outcome,
    ) {
        let state = match outcome {
            Outcome::Types(types) => {
                if self.libraries[lib.0].types.is_none() {
                    self.libraries[lib.0].types = Some(types);
                }
                LibState::Loaded
            }
            Outcome::Failed(e) => {
                if !self.validated {
                    let path = self.libraries[lib.0].path.display().to_string();
                    self.fail_start(HostError::Library {
                        path,
                        problem: e.message(),
                    });
                }
                LibState::Failed
            }
            _ => LibState::Failed,
        };
        if let Some(m) = self.monitors.get_mut(&monitor) {
            m.libraries.insert(lib, state);
        }
        if !self.validated {
            self.check_validation();
        }
        self.mark_all_dirty(|core, i| core.library_of(i) == lib);
    }

    /// Once every library's types are known, checks every resource against
    /// its type and answers the start command.
    pub(crate) fn check_validation(&mut self) {
        if self.validated || self.start_request.is_none() {
            return;
        }
        if self.libraries.iter().any(|l| l.types.is_none()) {
            return;
        }
        let mut problems = Vec::new();
        for i in (0..self.resources.len()).map(ResourceId) {
            match self.validate_spec(&self.res(i).spec) {
                Ok((valid, characteristics)) => {
                    let r = self.res_mut(i);
                    r.validated = valid;
                    r.characteristics = characteristics;
                    // Only the validated list is used from here on (a
                    // reconfiguration compares validated lists).
                    r.spec.properties = Properties::new();
                }
                Err(problem) => problems.push(problem),
            }
        }
        let kinds: Vec<_> = self
            .resources
            .iter()
            .map(|r| (&r.spec, r.characteristics))
            .collect();
        problems.extend(single_group_instance_problems(&kinds));
        if let Some(first) = problems.into_iter().next() {
            self.fail_start(first);
            return;
        }
        self.validated = true;
        self.mark_all_dirty(|_, _| true);
        if let Some(request) = self.start_request.take() {
            self.reply(request, Ok(Vec::new()));
        }
    }

    /// Checks `spec` against its type (the library's types must be known):
    /// its validated properties and the type's characteristics, or the
    /// problem, naming the resource.
    pub(crate) fn validate_spec(
        &self,
        spec: &ResourceSpec,
    ) -> Result<(Properties, Characteristics), HostError> {
        let library = self
            .libraries
            .iter()
            .find(|l| l.path == spec.library)
            .and_then(|l| l.types.as_ref());
        let Some(types) = library else {
            return Err(HostError::Library {
                path: spec.library.display().to_string(),
                problem: format!("{}: its types are not known", spec.library.display()),
            });
        };
        let Some(ty) = types.iter().find(|t| t.name == spec.type_name) else {
            return Err(HostError::UnknownType {
                resource: spec.name.clone(),
                type_name: spec.type_name.clone(),
                library: spec.library.display().to_string(),
                available: types.iter().map(|t| t.name.to_string()).collect(),
            });
        };
        ty.schema
            .coerce(&spec.properties)
            .and_then(|typed| ty.schema.validate(&typed))
            .map(|valid| (valid, ty.characteristics))
            .map_err(|errors| HostError::Properties {
                resource: spec.name.clone(),
                errors,
            })
    }
}

/// A SINGLE_GROUP_INSTANCE type allows one resource per group: a problem
/// for each second one.
pub(crate) fn single_group_instance_problems(
    resources: &[(&ResourceSpec, Characteristics)],
) -> Vec<HostError> {
    let mut problems = Vec::new();
    for (i, (r, characteristics)) in resources.iter().enumerate() {
        if !characteristics.contains(Characteristics::SINGLE_GROUP_INSTANCE) {
            continue;
        }
        if let Some((other, _)) = resources[..i]
            .iter()
            .find(|(o, _)| o.group == r.group && o.type_name == r.type_name)
        {
            problems.push(HostError::Config(format!(
                "resources `{}` and `{}` are both of type `{}` in group `{}`, which allows one \
                 (SINGLE_GROUP_INSTANCE)",
                other.name, r.name, r.type_name, r.group
            )));
        }
    }
    problems
}
