//! The engine's core: every decision of the host, and no I/O.
//!
//! The core is a state machine in the manner of quinn-proto's connection.
//! Inputs arrive with the time as an argument ([`Core::handle`],
//! [`Core::handle_timeout`]); the core answers when it next needs to be
//! woken ([`Core::next_deadline`]) and hands out [`Action`]s (send a frame,
//! spawn or kill a monitor, emit an event, persist, reply) for the driver
//! to carry out. It never reads a clock, touches a file, a socket, a
//! process or a thread, so the simulation in `engine/simulation` drives it
//! with a simulated clock and simulated monitors, one seed one history.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clusterkit::{Characteristics, ControlCode, Health, Properties, TypeDescription};

use crate::config::{Placement, Timing};
use crate::error::HostError;
use crate::events::{Event, EventKind};
use crate::policy::RestartCounters;
use crate::protocol::{FromMonitor, ToMonitor};
use crate::state_file::{ClockMark, Desired, PersistedState};

use super::calls::CallTable;
use super::ids::{CallId, MonitorId, RequestId, ResourceId};
use super::lifecycle::{AfterOpen, Phase, Then};
use super::monitors::{MonitorEntry, MonitorKey};
use super::timers::{Timer, TimerTable};

/// How long a shutdown waits for monitors to exit.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A resource as configured, resolved against defaults. No `Debug`: its
/// raw properties may hold secrets.
#[derive(Clone)]
pub(crate) struct ResourceSpec {
    pub(crate) name: String,
    pub(crate) library: PathBuf,
    pub(crate) type_name: String,
    pub(crate) properties: Properties,
    pub(crate) group: String,
    pub(crate) depends_on: Vec<usize>,
    pub(crate) timing: Timing,
    pub(crate) placement: Placement,
    pub(crate) separate_monitor: bool,
}

/// What the core is built from.
pub(crate) struct CoreConfig {
    pub(crate) resources: Vec<ResourceSpec>,
    pub(crate) default_timing: Timing,
    /// The host's process id, for `host_started`.
    pub(crate) host_pid: u32,
}

/// Something for the core to react to.
#[derive(Debug)]
pub(crate) enum Input {
    /// A monitor asked for by [`Action::Spawn`] runs.
    Spawned { monitor: MonitorId, pid: u32 },
    /// It could not be started.
    SpawnFailed { monitor: MonitorId, error: String },
    /// A decoded frame from a monitor.
    Frame {
        monitor: MonitorId,
        message: FromMonitor,
    },
    /// A monitor's socket ended: at its end of file (`error` none), or on
    /// bytes that are not a frame.
    Disconnected {
        monitor: MonitorId,
        error: Option<String>,
    },
    /// A monitor process exited.
    Exited {
        monitor: MonitorId,
        status: String,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
    },
    /// The thread diagnostics asked for by [`Action::Diagnose`].
    Diagnosed {
        monitor: MonitorId,
        call: CallId,
        /// What each thread was doing (`process::thread_diagnostics`).
        threads: serde_json::Value,
        /// Every thread is stopped (state `T`): the monitor was stopped
        /// from outside (SIGSTOP), not hung by its resource.
        stopped: bool,
    },
    /// How the last [`Action::Persist`] went: `None` written, else why not.
    Persisted { error: Option<String> },
    /// Writing to a monitor failed other than by its going away.
    WriteFailed { monitor: MonitorId, error: String },
    /// An operator's request.
    Command(RequestId, Command),
}

/// What the [`Host`](crate::Host) handle asks for.
#[derive(Debug)]
pub(crate) enum Command {
    Start,
    Online(ResourceId),
    /// Several at once: one state write for all.
    OnlineMany(Vec<ResourceId>),
    Offline(ResourceId),
    Fail(ResourceId),
    Control(ResourceId, ControlCode, Vec<u8>),
    /// Run a health check now (`looks_alive` if `looks`, else `is_alive`)
    /// and answer with its result.
    Check {
        resource: ResourceId,
        looks: bool,
    },
    /// Change the resources to this set: add, change, remove.
    Reconfigure(super::reconfigure::Reconfiguration),
    /// Reset restart counters, lift an isolation, clear a held failure.
    Cleanup(ResourceId),
    /// The validated properties, secrets masked.
    Properties(ResourceId),
    CloseAll,
    Shutdown,
}

/// Timers one [`Core::handle_timeout`] fires at most.
pub(crate) const TIMERS_PER_PASS: usize = 256;

/// What the driver is to do, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start a monitor process; answer with [`Input::Spawned`] or [`Input::SpawnFailed`].
    Spawn { monitor: MonitorId },
    /// Send a message; a failed write other than a closed peer is [`Input::WriteFailed`].
    Send {
        monitor: MonitorId,
        message: ToMonitor,
    },
    /// The monitor is gone: close the host's end of its socket.
    Release { monitor: MonitorId },
    /// Show these statuses.
    Publish(Vec<(ResourceId, crate::status::ResourceStatus)>),
    /// Update these resources' health-check counters in place: a check
    /// that changed nothing else costs no status copy.
    PublishChecks(Vec<(ResourceId, crate::status::CheckCounters)>),
    /// Read the thread diagnostics of `pid` (a call of `monitor` passed
    /// its deadline); answer with [`Input::Diagnosed`].
    Diagnose {
        monitor: MonitorId,
        call: CallId,
        pid: u32,
    },
    /// SIGKILL `pid`, then emit `event` (with `kill_error` if the kill failed).
    Kill { pid: u32, event: Event },
    /// Emit an event.
    Emit(Event),
    /// A removed resource is gone: drop its status and free its name.
    Forget(ResourceId),
    /// Write the state file, then answer `reply` (if any): Ok when written,
    /// else an error saying the outcome is not recorded. Either way, tell
    /// the core: [`Input::Persisted`].
    Persist {
        state: PersistedState,
        reply: Option<RequestId>,
    },
    /// Answer a request.
    Reply {
        request: RequestId,
        answer: Result<Vec<u8>, HostError>,
    },
    /// A killed monitor did not die: emit the event, then escalate.
    Escalate(Event),
    /// The host has stopped: `host_stopped` is emitted; answer the shutdown.
    Stopped { request: Option<RequestId> },
}

/// A library's path and, once loaded somewhere, its types.
pub(crate) struct Library {
    pub(crate) path: PathBuf,
    pub(crate) types: Option<Vec<TypeDescription>>,
}

/// One resource as the core tracks it.
pub(crate) struct ResourceEntry {
    pub(crate) spec: ResourceSpec,
    pub(crate) dependents: Vec<ResourceId>,
    pub(crate) characteristics: Characteristics,
    pub(crate) validated: Properties,
    pub(crate) desired: Desired,
    pub(crate) separate_monitor: bool,
    pub(crate) restarts: RestartCounters,
    /// The monitor it is open (or opening) in.
    pub(crate) monitor: Option<MonitorId>,
    pub(crate) phase: Phase,
    /// An operator's control call in flight.
    pub(crate) control: Option<CallId>,
    /// The next `online` is a restart (it emits `resource_restarted`).
    pub(crate) restart_due: bool,
    pub(crate) last_latency: Option<Duration>,
    pub(crate) last_health: Option<Health>,
    pub(crate) degraded: u64,
    pub(crate) checks: u64,
    /// When its shown state last changed.
    pub(crate) since: Instant,
    /// When and why it last failed.
    pub(crate) last_failure: Option<(Instant, String)>,
    /// A cleanup lifted its isolation: its next open is in its group's
    /// monitor (`separate_monitor` stays set until then, so that the
    /// monitor it runs in keeps matching its placement).
    pub(crate) lift_isolation: bool,
    /// Its status changed since the last publish.
    pub(crate) status_changed: bool,
    /// Only its health-check counters changed since the last publish.
    pub(crate) checks_changed: bool,
    /// A changed configuration that needs a re-open, applied once nothing
    /// runs (see `reconfigure`).
    pub(crate) staged: Option<Box<super::reconfigure::Staged>>,
    /// Removed from the configuration: it goes offline, closes, retires.
    pub(crate) removing: bool,
    /// Removed and closed: its id stays taken, nothing refers to it.
    pub(crate) retired: bool,
}

impl ResourceEntry {
    /// A resource not opened yet, its next open doing `next`: offline by
    /// default, no history, its status to be published.
    pub(crate) fn new(spec: ResourceSpec, next: AfterOpen, now: Instant) -> ResourceEntry {
        ResourceEntry {
            separate_monitor: spec.separate_monitor,
            desired: Desired::Offline,
            restarts: RestartCounters::default(),
            spec,
            dependents: Vec::new(),
            characteristics: Characteristics::empty(),
            validated: Properties::new(),
            monitor: None,
            phase: Phase::Closed {
                next,
                shown: clusterkit::ResourceState::Initializing,
            },
            control: None,
            restart_due: false,
            last_latency: None,
            last_health: None,
            degraded: 0,
            checks: 0,
            since: now,
            last_failure: None,
            lift_isolation: false,
            status_changed: true,
            checks_changed: false,
            staged: None,
            removing: false,
            retired: false,
        }
    }

    /// No serialized call (nor control call) is in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.phase.serial_call().is_none() && self.control.is_none()
    }
}

/// The answer to a `CloseAll`: the request, the `close` calls still out,
/// the errors so far.
pub(crate) struct Closing {
    pub(crate) request: RequestId,
    pub(crate) calls: Vec<CallId>,
    pub(crate) errors: Vec<String>,
}

/// Wall-clock milliseconds derived from the monotonic input time, so a
/// clock step never moves a decision (the restart window).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) start: Instant,
    /// The same moment on the wall and boot clocks.
    pub(crate) mark: ClockMark,
}

impl Clock {
    pub(crate) fn system_time(&self, now: Instant) -> std::time::SystemTime {
        std::time::UNIX_EPOCH
            + Duration::from_millis(self.mark.unix_ms)
            + now.saturating_duration_since(self.start)
    }

    fn since_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn unix_ms(&self, now: Instant) -> u64 {
        self.mark.unix_ms.saturating_add(self.since_ms(now))
    }

    /// `now` on both clocks, for the state file.
    pub(crate) fn mark_at(&self, now: Instant) -> ClockMark {
        ClockMark {
            boot_id: self.mark.boot_id,
            boot_ms: self.mark.boot_ms.saturating_add(self.since_ms(now)),
            unix_ms: self.unix_ms(now),
        }
    }
}

/// The host's state machine. See the [module documentation](self).
pub(crate) struct Core {
    pub(crate) resources: Vec<ResourceEntry>,
    pub(crate) libraries: Vec<Library>,
    pub(crate) monitors: BTreeMap<MonitorId, MonitorEntry>,
    pub(crate) current: BTreeMap<MonitorKey, MonitorId>,
    pub(crate) next_monitor: u64,
    pub(crate) calls: CallTable,
    pub(crate) timers: TimerTable,
    /// Monitors of a placement that died in a row before their hello.
    pub(crate) early_deaths: BTreeMap<MonitorKey, u32>,
    /// Who had calls in flight when a placement's monitor last died of a
    /// protocol error.
    pub(crate) protocol_suspects: BTreeMap<MonitorKey, Vec<ResourceId>>,
    pub(crate) dirty: Vec<bool>,
    dirty_list: Vec<ResourceId>,
    changed_list: Vec<ResourceId>,
    /// Resources whose health-check counters changed since the last publish.
    checked_list: Vec<ResourceId>,
    pub(crate) default_timing: Timing,
    pub(crate) validated: bool,
    pub(crate) start_request: Option<RequestId>,
    pub(crate) closing: Option<Closing>,
    /// Set by a stop: nothing is opened or brought online any more.
    pub(crate) stopping: bool,
    pub(crate) shutdown: Option<(Option<RequestId>, Instant)>,
    stopped: bool,
    pub(crate) actions: VecDeque<Action>,
    pub(crate) clock: Clock,
    pub(crate) host_pid: u32,
    /// The time of the input being handled.
    pub(crate) now: Instant,
    /// Why the state file cannot be written now, while it cannot.
    pub(crate) persist_failing: Option<String>,
    /// Requests waiting for a resource's next check result (`looks`).
    pub(crate) check_waiters: Vec<(ResourceId, bool, RequestId)>,
    /// A reconfiguration waiting for its libraries' types.
    pub(crate) reconfiguring: Option<super::reconfigure::Waiting>,
    /// Old bugs switched back on, for the simulation to find.
    #[cfg(test)]
    pub(crate) reintroduced: super::simulation::Reintroduced,
}

impl Core {
    /// A core for `config`, continuing from `persisted` (desired states,
    /// isolation, restart counters); `now` and `mark` are the same moment.
    pub(crate) fn new(
        config: CoreConfig,
        persisted: &PersistedState,
        now: Instant,
        mark: ClockMark,
    ) -> Core {
        let mut libraries: Vec<Library> = Vec::new();
        let mut resources = Vec::with_capacity(config.resources.len());
        for spec in config.resources {
            let mut saved = persisted
                .resources
                .get(&spec.name)
                .cloned()
                .unwrap_or_default();
            // Restart times keep their age whatever the wall clock did
            // while the host was down.
            ClockMark::rebase(persisted.clock, mark, &mut saved.restarts.recent);
            if !libraries.iter().any(|l| l.path == spec.library) {
                libraries.push(Library {
                    path: spec.library.clone(),
                    types: None,
                });
            }
            // A resource this state directory knows may have a workload
            // running: adopt it if it is wanted online, else stop it.
            let known = persisted.resources.contains_key(&spec.name);
            let next = match (known, saved.desired) {
                (_, Desired::Online) => AfterOpen::recovering(Then::Resume),
                (true, Desired::Offline) => AfterOpen::recovering(Then::StopIfRunning),
                (false, Desired::Offline) => AfterOpen::FRESH,
            };
            let mut entry = ResourceEntry::new(spec, next, now);
            entry.separate_monitor |= saved.separate_monitor;
            entry.desired = saved.desired;
            entry.restarts = saved.restarts;
            resources.push(entry);
        }
        for i in 0..resources.len() {
            for d in resources[i].spec.depends_on.clone() {
                resources[d].dependents.push(ResourceId(i));
            }
        }
        let count = resources.len();
        Core {
            resources,
            libraries,
            monitors: BTreeMap::new(),
            current: BTreeMap::new(),
            next_monitor: 1,
            calls: CallTable::default(),
            timers: TimerTable::default(),
            early_deaths: BTreeMap::new(),
            protocol_suspects: BTreeMap::new(),
            dirty: vec![false; count],
            dirty_list: Vec::new(),
            changed_list: (0..count).map(ResourceId).collect(),
            checked_list: Vec::new(),
            default_timing: config.default_timing,
            validated: false,
            start_request: None,
            closing: None,
            stopping: false,
            shutdown: None,
            stopped: false,
            actions: VecDeque::new(),
            clock: Clock { start: now, mark },
            host_pid: config.host_pid,
            now,
            persist_failing: None,
            reconfiguring: None,
            check_waiters: Vec::new(),
            #[cfg(test)]
            reintroduced: super::simulation::Reintroduced::default(),
        }
    }

    // ------------------------------------------------------------ interface

    /// Reacts to one input at `now`.
    pub(crate) fn handle(&mut self, input: Input, now: Instant) {
        self.now = now;
        match input {
            Input::Spawned { monitor, pid } => self.on_spawned(monitor, pid),
            Input::SpawnFailed { monitor, error } => self.on_spawn_failed(monitor, error),
            Input::Frame { monitor, message } => self.on_frame(monitor, message),
            Input::Disconnected { monitor, error } => self.on_disconnected(monitor, error),
            Input::Exited {
                monitor,
                status,
                signal,
            } => self.on_exited(monitor, status, signal),
            Input::Diagnosed {
                monitor,
                call,
                threads,
                stopped,
            } => self.on_diagnosed(monitor, call, threads, stopped),
            Input::Persisted { error } => self.on_persisted(error),
            Input::WriteFailed { monitor, error } => {
                self.kill_monitor(monitor, None, &format!("writing to the monitor: {error}"))
            }
            Input::Command(request, command) => self.on_command(request, command),
        }
        if self.reconfiguring.is_some() {
            // Any input may be the one it waits for (a library loaded, or
            // its monitor died).
            self.continue_reconfigure();
        }
    }

    /// Fires what is due by `now`, then drives every resource whose
    /// situation changed toward its desired state. Call it after a batch of
    /// inputs, and whenever [`next_deadline`](Self::next_deadline) passes.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        while let Some(call) = self.calls.pop_overdue(now) {
            self.on_call_deadline(call);
        }
        // A slice at a time: ten thousand checks due together would hold
        // up a call's deadline that passes meanwhile for as long as they
        // take. What is left is due at once: `next_deadline` says so, and
        // the next pass looks at the deadlines first again.
        for _ in 0..TIMERS_PER_PASS {
            let Some(timer) = self.timers.pop_due(now) else {
                break;
            };
            self.on_timer(timer);
        }
        self.reconcile_dirty();
        if let Some((request, since)) = self.shutdown
            && !self.stopped
            && (self.monitors.is_empty() || now.saturating_duration_since(since) >= SHUTDOWN_GRACE)
        {
            self.stopped = true;
            self.emit(Event::of(EventKind::HostStopped, None));
            self.actions.push_back(Action::Stopped { request });
        }
    }

    /// When the core next needs [`handle_timeout`](Self::handle_timeout)
    /// (now, if it left due timers for the next pass).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        let shutdown = self.shutdown.map(|(_, since)| since + SHUTDOWN_GRACE);
        [self.calls.next_deadline(), self.timers.next_due(), shutdown]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next action for the driver.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether the host has stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// A stop or shutdown has begun: nothing is opened or started any more.
    pub(crate) fn is_stopping(&self) -> bool {
        #[cfg(test)]
        if self.reintroduced.stop_starts_monitors {
            return self.shutdown.is_some();
        }
        self.shutdown.is_some() || self.stopping
    }

    /// Asks every monitor to exit, and the host to stop once they have
    /// (answering `request`, if any).
    pub(crate) fn begin_shutdown(&mut self, request: Option<RequestId>) {
        let monitors: Vec<_> = self.monitors.keys().copied().collect();
        for monitor in monitors {
            self.actions.push_back(Action::Send {
                monitor,
                message: ToMonitor::Shutdown,
            });
        }
        self.shutdown = Some((request, self.now));
    }

    // ----------------------------------------------------------- shared bits

    pub(crate) fn emit(&mut self, event: Event) {
        let event = self.stamped(event);
        self.actions.push_back(Action::Emit(event));
    }

    /// The event, timed now, after the statuses it reports: subscribers
    /// never see an event before its status, nor a status before the
    /// events that led to it.
    pub(crate) fn stamped(&mut self, mut event: Event) -> Event {
        event.ts = self.clock.system_time(self.now);
        self.publish_changed();
        event
    }

    /// Publishes the statuses that changed since the last publish.
    pub(crate) fn publish_changed(&mut self) {
        let changed = self.take_changed();
        let statuses: Vec<_> = changed
            .into_iter()
            .filter(|&i| !self.res(i).retired)
            .map(|i| (i, self.status(i)))
            .collect();
        if !statuses.is_empty() {
            self.actions.push_back(Action::Publish(statuses));
        }
        let mut checked = Vec::new();
        for i in std::mem::take(&mut self.checked_list) {
            let r = &mut self.resources[i.0];
            // A resource whose whole status was published above is current.
            if std::mem::replace(&mut r.checks_changed, false) && !r.retired {
                let counters = crate::status::CheckCounters {
                    health_checks: r.checks,
                    last_check_latency: r.last_latency,
                    degraded_count: r.degraded,
                };
                checked.push((i, counters));
            }
        }
        if !checked.is_empty() {
            self.actions.push_back(Action::PublishChecks(checked));
        }
    }

    pub(crate) fn reply(&mut self, request: RequestId, answer: Result<Vec<u8>, HostError>) {
        self.actions.push_back(Action::Reply { request, answer });
    }

    pub(crate) fn name(&self, i: ResourceId) -> &str {
        &self.resources[i.0].spec.name
    }

    pub(crate) fn res(&self, i: ResourceId) -> &ResourceEntry {
        &self.resources[i.0]
    }

    pub(crate) fn res_mut(&mut self, i: ResourceId) -> &mut ResourceEntry {
        &mut self.resources[i.0]
    }

    /// Marks the published status stale; publishing copies only these.
    pub(crate) fn touch(&mut self, i: ResourceId) {
        let r = &mut self.resources[i.0];
        r.checks_changed = false;
        if !r.status_changed {
            r.status_changed = true;
            self.changed_list.push(i);
        }
    }

    /// Marks only the health-check counters of the published status stale
    /// (a check whose result is the same as the last one's).
    pub(crate) fn touch_checks(&mut self, i: ResourceId) {
        let r = &mut self.resources[i.0];
        if !r.status_changed && !r.checks_changed {
            r.checks_changed = true;
            self.checked_list.push(i);
        }
    }

    /// Moves a resource to `phase`: the timers of the phase it leaves are
    /// cancelled and those of the phase it enters are set, so no timer
    /// outlives its phase.
    pub(crate) fn set_phase(&mut self, i: ResourceId, phase: Phase) {
        let old = std::mem::replace(&mut self.resources[i.0].phase, phase);
        if old.state() != self.resources[i.0].phase.state() {
            self.resources[i.0].since = self.now;
        }
        let health = |looks| Timer::Health { resource: i, looks };
        match old {
            Phase::Online { .. } => {
                self.timers.cancel(health(true));
                self.timers.cancel(health(false));
                if !matches!(self.resources[i.0].phase, Phase::Online { .. }) {
                    let state = self.resources[i.0].phase.state();
                    self.answer_checks(i, None, |name| {
                        Err(HostError::InvalidState {
                            resource: name.to_owned(),
                            state,
                        })
                    });
                }
            }
            Phase::Pending { .. } => self.timers.cancel(Timer::Pending(i)),
            Phase::Held { .. } => self.timers.cancel(Timer::Restart(i)),
            _ => {}
        }
        match self.resources[i.0].phase {
            Phase::Online { looks, is, .. } => {
                self.timers.set(health(true), looks.due);
                self.timers.set(health(false), is.due);
            }
            Phase::Pending { until, .. } => self.timers.set(Timer::Pending(i), until),
            Phase::Held {
                until: Some(at), ..
            } => self.timers.set(Timer::Restart(i), at),
            _ => {}
        }
        self.touch(i);
    }

    pub(crate) fn mark_dirty(&mut self, i: ResourceId) {
        if !self.dirty[i.0] {
            self.dirty[i.0] = true;
            self.dirty_list.push(i);
        }
    }

    pub(crate) fn mark_all_dirty(&mut self, filter: impl Fn(&Core, ResourceId) -> bool) {
        for i in 0..self.resources.len() {
            if !self.resources[i].retired && filter(self, ResourceId(i)) {
                self.mark_dirty(ResourceId(i));
            }
        }
    }

    pub(crate) fn mark_neighbours(&mut self, i: ResourceId) {
        self.mark_dirty(i);
        // Dependents all the way up: whether one may stay online depends on
        // every dependency below it (`stays_online`), not only the next.
        let mut up = self.resources[i.0].dependents.clone();
        // (Dependencies are acyclic: the walk ends.)
        while let Some(d) = up.pop() {
            up.extend(self.resources[d.0].dependents.iter().copied());
            self.mark_dirty(d);
        }
        for d in self.resources[i.0].spec.depends_on.clone() {
            self.mark_dirty(ResourceId(d));
        }
    }

    fn reconcile_dirty(&mut self) {
        // Each pass may dirty others (dependents, dependencies); passes go on
        // until nothing is dirty. Work is proportional to what changed.
        while !self.dirty_list.is_empty() {
            let mut batch = std::mem::take(&mut self.dirty_list);
            // Configuration order keeps dependency chains settling in one pass.
            batch.sort_unstable();
            for i in batch {
                self.dirty[i.0] = false;
                self.reconcile(i);
            }
        }
    }

    /// The resources whose status changed since the last call.
    pub(crate) fn take_changed(&mut self) -> Vec<ResourceId> {
        let list = std::mem::take(&mut self.changed_list);
        for i in &list {
            self.resources[i.0].status_changed = false;
        }
        list
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Health { resource, looks } => self.on_health_timer(resource, looks),
            Timer::Pending(resource) => self.on_pending_timeout(resource),
            Timer::Restart(resource) => self.on_restart_timer(resource),
            Timer::Watchdog(monitor) => self.on_watchdog(monitor),
            Timer::PersistRetry => self.persist(),
            Timer::Respawn(key) => {
                self.mark_all_dirty(|core, i| core.monitor_key(i) == key);
                if !self.validated && self.start_request.is_some() {
                    // Starting: the libraries are loaded through this key.
                    self.ensure_monitor(key);
                }
            }
            Timer::ReaderGrace(monitor) => {
                if let Some(m) = self.monitors.get_mut(&monitor) {
                    m.disconnected = true;
                }
                self.maybe_dead(monitor);
            }
            Timer::Hello(monitor) => {
                if self
                    .monitors
                    .get(&monitor)
                    .is_some_and(|m| !m.ready && m.killing.is_none())
                {
                    self.kill_monitor(monitor, None, "no hello within the deadlock timeout");
                }
            }
        }
    }
}
