//! The host's engine: one thread that owns all state and reacts to inputs
//! (monitor frames, monitor deaths, operator commands) and timers.
//!
//! Policy lives elsewhere ([`crate::policy`] decides restarts); this module
//! is the mechanism: it sends calls, tracks their deadlines, drives
//! resources toward their desired state in dependency order, and recovers
//! from hung or crashed monitors (SPEC §5 steps 1–7).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clusterkit::{
    Characteristics, ControlCode, Error, Health, Level, Properties, ResourceState, TypeDescription,
};

use crate::config::{Placement, Timing};
use crate::events::{Event, EventKind, EventSink};
use crate::host::{ESCALATION_EXIT_CODE, Escalation, HostError, ResourceStatus, Shared};
use crate::policy::{Decision, RestartCounters};
use crate::process::{self, MonitorProgram, ProcessControl};
use crate::protocol::{self, FromMonitor, Op, Outcome, ToMonitor};
use crate::state_file::{Desired, PersistedResource, PersistedState, StateFile};

/// The watchdog waits this many deadlock timeouts for a killed monitor to exit.
const WATCHDOG_FACTOR: u32 = 4;
/// How long a shutdown waits for monitors to exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long after a monitor's exit its socket may stay open (a child
/// that inherited it) before recovery goes on without its last frames.
const READER_GRACE: Duration = Duration::from_millis(500);
/// A host's socket write that blocks this long means the monitor is stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Something for the engine to react to.
pub(crate) enum Input {
    Frame {
        monitor: u64,
        message: FromMonitor,
    },
    Disconnected {
        monitor: u64,
        error: Option<String>,
    },
    Exited {
        monitor: u64,
        status: String,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
    },
    Command(Command),
}

/// What the [`Host`](crate::Host) handle asks for.
pub(crate) enum Command {
    Start(SyncSender<Result<(), HostError>>),
    Online(usize, SyncSender<Result<(), HostError>>),
    Offline(usize, SyncSender<Result<(), HostError>>),
    Fail(usize, SyncSender<Result<(), HostError>>),
    Control(
        usize,
        ControlCode,
        Vec<u8>,
        SyncSender<Result<Vec<u8>, HostError>>,
    ),
    Subscribe(Sender<Event>, SyncSender<Result<(), HostError>>),
    CloseAll(SyncSender<Result<(), HostError>>),
    Ping(SyncSender<Result<(), HostError>>),
    Shutdown(SyncSender<()>),
}

/// A resource as configured, resolved against defaults.
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

/// Everything the engine starts from.
pub(crate) struct EngineConfig {
    pub(crate) state_dir: PathBuf,
    pub(crate) program: MonitorProgram,
    pub(crate) process: Arc<dyn ProcessControl>,
    pub(crate) escalation: Escalation,
    pub(crate) resources: Vec<ResourceSpec>,
    pub(crate) default_timing: Timing,
    pub(crate) subscribers: Vec<Sender<Event>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum MonitorKey {
    Shared(Placement),
    Own(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LibState {
    Loading,
    Loaded,
    Failed,
}

struct Monitor {
    key: MonitorKey,
    pid: u32,
    writer: UnixStream,
    ready: bool,
    libraries: HashMap<usize, LibState>,
    /// Set when the host kills it: the culprit, if one, and when.
    killing: Option<(Option<usize>, Instant)>,
    disconnected: bool,
    exit_status: Option<String>,
    exit_signal: Option<i32>,
    /// The call a crashing thread was running (from the crash handler).
    crash_call: Option<(u64, u32)>,
    escalated: bool,
}

/// What to do when a `terminate` call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterTerminate {
    /// The resource failed: apply the restart policy.
    ApplyPolicy,
    /// Restart it (re-opened after recovery without re-attach).
    Restart,
    /// Offline failed or stopped: mark it offline.
    MarkOffline,
}

enum CallKind {
    LoadLibrary(usize),
    Open,
    Online,
    Offline,
    Terminate(AfterTerminate),
    LooksAlive,
    IsAlive,
    /// The check that decides whether a re-opened resource is re-attached.
    ReattachCheck,
    Close,
    Control(SyncSender<Result<Vec<u8>, HostError>>),
}

struct Call {
    monitor: u64,
    resource: Option<usize>,
    op: &'static str,
    kind: CallKind,
    started: Instant,
    deadline: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Health {
        resource: usize,
        looks: bool,
        seq: u64,
    },
    Pending {
        resource: usize,
        seq: u64,
    },
    Restart {
        resource: usize,
        seq: u64,
        reset: bool,
    },
    Watchdog(u64),
    Hello(u64),
    ReaderGrace(u64),
    Respawn(MonitorKey),
}

struct Resource {
    spec: ResourceSpec,
    dependents: Vec<usize>,
    characteristics: Characteristics,
    validated: Properties,
    desired: Desired,
    separate_monitor: bool,
    restarts: RestartCounters,
    monitor: Option<u64>,
    opened: bool,
    /// The serialized call in flight (open, online, offline, close, control).
    busy: Option<u64>,
    state: ResourceState,
    /// The next open adopts a running workload.
    recover: bool,
    /// It was online when its monitor died: re-attach if the type can.
    resume_online: bool,
    /// After the next open: terminate, then online (a restart).
    restart_after_open: bool,
    /// Waiting for a restart timer or an operator command.
    held: bool,
    /// The next online is a restart (for `resource_restarted`).
    restarting: bool,
    health_seq: u64,
    pending_seq: u64,
    /// The `online`/`offline` call whose operation is pending.
    pending_call: Option<u64>,
    /// When the pending operation fails without another report.
    pending_until: Instant,
    /// A pending timer is set for the current operation.
    pending_armed: bool,
    restart_seq: u64,
    looks_inflight: bool,
    is_inflight: bool,
    next_looks: Instant,
    next_is: Instant,
    online_since: Option<Instant>,
    last_latency: Option<Duration>,
    last_health: Option<Health>,
    degraded: u64,
    checks: u64,
    /// Its index, and the engine's list of resources whose status changed.
    index: usize,
    changed: Arc<std::sync::Mutex<Vec<usize>>>,
    status_changed: bool,
}

impl Resource {
    /// Marks the published status stale; `publish` copies only these.
    fn touch(&mut self) {
        if !self.status_changed {
            self.status_changed = true;
            self.changed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.index);
        }
    }
}

/// A stop's `close` calls: the reply, the calls still out, the errors so far.
type Closing = (SyncSender<Result<(), HostError>>, Vec<u64>, Vec<String>);

pub(crate) struct Engine {
    inputs: Receiver<Input>,
    sender: SyncSender<Input>,
    program: MonitorProgram,
    process: Arc<dyn ProcessControl>,
    escalation: Escalation,
    shared: Arc<Shared>,
    events: EventSink,
    state_file: StateFile,
    resources: Vec<Resource>,
    libraries: Vec<(PathBuf, Option<Vec<TypeDescription>>)>,
    monitors: HashMap<u64, Monitor>,
    current: HashMap<MonitorKey, u64>,
    next_monitor: u64,
    calls: HashMap<u64, Call>,
    next_call: u64,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    /// Deadlines of calls in flight.
    deadlines: std::collections::BTreeSet<(Instant, u64)>,
    timer_seq: u64,
    dirty: Vec<bool>,
    dirty_list: Vec<usize>,
    changed: Arc<std::sync::Mutex<Vec<usize>>>,
    default_timing: Timing,
    validated: bool,
    start_reply: Option<SyncSender<Result<(), HostError>>>,
    /// `close` calls of a stop: the reply, and the calls still out.
    closing: Option<Closing>,
    /// Set by a stop: nothing is opened or brought online any more.
    stopping: bool,
    shutdown: Option<(SyncSender<()>, Instant)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    protocol::millis(d)
}

impl Engine {
    pub(crate) fn new(
        config: EngineConfig,
        shared: Arc<Shared>,
        inputs: Receiver<Input>,
        sender: SyncSender<Input>,
    ) -> Result<Engine, HostError> {
        let state_file = StateFile::new(&config.state_dir);
        let persisted = state_file
            .load()
            .map_err(|problem| HostError::StateFile { problem })?;
        let mut events = EventSink::open(&config.state_dir).map_err(|e| HostError::StateFile {
            problem: format!("{}: {e}", config.state_dir.join("events.jsonl").display()),
        })?;
        for subscriber in config.subscribers {
            events.subscribe(subscriber);
        }
        let mut libraries: Vec<(PathBuf, Option<Vec<TypeDescription>>)> = Vec::new();
        let mut resources = Vec::with_capacity(config.resources.len());
        let changed = Arc::new(std::sync::Mutex::new(
            (0..config.resources.len()).collect::<Vec<usize>>(),
        ));
        let now = Instant::now();
        for spec in config.resources {
            let saved = persisted
                .resources
                .get(&spec.name)
                .cloned()
                .unwrap_or_default();
            if !libraries.iter().any(|(p, _)| *p == spec.library) {
                libraries.push((spec.library.clone(), None));
            }
            let resume = saved.desired == Desired::Online;
            resources.push(Resource {
                separate_monitor: spec.separate_monitor || saved.separate_monitor,
                desired: saved.desired,
                restarts: saved.restarts,
                spec,
                dependents: Vec::new(),
                characteristics: Characteristics::empty(),
                validated: Properties::new(),
                monitor: None,
                opened: false,
                busy: None,
                state: ResourceState::Initializing,
                recover: resume,
                resume_online: resume,
                restart_after_open: false,
                held: false,
                restarting: false,
                health_seq: 0,
                pending_seq: 0,
                pending_call: None,
                pending_until: now,
                pending_armed: false,
                restart_seq: 0,
                looks_inflight: false,
                is_inflight: false,
                next_looks: now,
                next_is: now,
                online_since: None,
                last_latency: None,
                last_health: None,
                degraded: 0,
                checks: 0,
                index: resources.len(),
                changed: changed.clone(),
                status_changed: true,
            });
        }
        for i in 0..resources.len() {
            for d in resources[i].spec.depends_on.clone() {
                resources[d].dependents.push(i);
            }
        }
        let count = resources.len();
        Ok(Engine {
            inputs,
            sender,
            program: config.program,
            process: config.process,
            escalation: config.escalation,
            shared,
            events,
            state_file,
            resources,
            libraries,
            monitors: HashMap::new(),
            current: HashMap::new(),
            next_monitor: 1,
            calls: HashMap::new(),
            next_call: 1,
            timers: BinaryHeap::new(),
            deadlines: std::collections::BTreeSet::new(),
            timer_seq: 0,
            dirty: vec![false; count],
            dirty_list: Vec::new(),
            changed,
            default_timing: config.default_timing,
            validated: false,
            start_reply: None,
            closing: None,
            stopping: false,
            shutdown: None,
        })
    }

    /// Runs until shut down.
    pub(crate) fn run(mut self) {
        loop {
            self.fire_due_timers();
            self.reconcile_dirty();
            self.publish();
            if let Some((_, since)) = &self.shutdown
                && (self.monitors.is_empty() || since.elapsed() >= SHUTDOWN_GRACE)
            {
                break;
            }
            let next_timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
            let next_deadline = self.deadlines.first().map(|(at, _)| *at);
            let wait = next_timer
                .into_iter()
                .chain(next_deadline)
                .min()
                .map_or(Duration::from_secs(3600), |at| {
                    at.saturating_duration_since(Instant::now())
                });
            match self.inputs.recv_timeout(wait) {
                Ok(input) => {
                    self.handle(input);
                    // Drain what else is queued before the bookkeeping above.
                    while let Ok(input) = self.inputs.try_recv() {
                        self.handle(input);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.emit(Event::new(EventKind::HostStopped, None));
        self.events.sync();
        if let Some((reply, _)) = self.shutdown.take() {
            let _ = reply.send(());
        }
    }

    // ---------------------------------------------------------------- inputs

    fn handle(&mut self, input: Input) {
        match input {
            Input::Frame { monitor, message } => self.on_frame(monitor, message),
            Input::Disconnected { monitor, error } => self.on_disconnected(monitor, error),
            Input::Exited {
                monitor,
                status,
                signal,
            } => {
                if let Some(m) = self.monitors.get_mut(&monitor) {
                    m.exit_status = Some(status);
                    m.exit_signal = signal;
                    // The reader still has the frames the monitor sent before
                    // dying (a crash report among them): recovery waits for its
                    // end of file, or a grace period if a forked child kept
                    // the socket open.
                    if !m.disconnected {
                        self.schedule(Instant::now() + READER_GRACE, Timer::ReaderGrace(monitor));
                    }
                }
                self.maybe_dead(monitor);
            }
            Input::Command(command) => self.on_command(command),
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Start(reply) => {
                self.emit(Event::new(EventKind::HostStarted, None).with("pid", std::process::id()));
                self.start_reply = Some(reply);
                for i in 0..self.resources.len() {
                    self.ensure_library(i);
                }
                self.check_validation();
            }
            Command::Online(i, reply) => {
                let mut chain = Vec::new();
                self.collect_dependencies(i, &mut chain);
                for r in chain {
                    self.set_desired(r, Desired::Online);
                    let res = &mut self.resources[r];
                    if res.state == ResourceState::Failed && res.held {
                        // An operator online clears a failed resource's history.
                        res.held = false;
                        res.restarts.reset();
                        res.state = if res.opened {
                            ResourceState::Offline
                        } else {
                            ResourceState::Unknown
                        };
                        res.touch();
                    }
                    self.mark_dirty(r);
                }
                self.persist();
                let _ = reply.send(Ok(()));
            }
            Command::Offline(i, reply) => {
                let mut chain = Vec::new();
                self.collect_dependents(i, &mut chain);
                for r in chain {
                    self.set_desired(r, Desired::Offline);
                    self.mark_dirty(r);
                }
                self.persist();
                let _ = reply.send(Ok(()));
            }
            Command::Fail(i, reply) => {
                let result = if self.resources[i].state == ResourceState::Online {
                    self.fail_resource(i, "failure simulated by the operator".into());
                    Ok(())
                } else {
                    Err(HostError::InvalidState {
                        resource: self.resources[i].spec.name.clone(),
                        state: self.resources[i].state,
                    })
                };
                let _ = reply.send(result);
            }
            Command::Control(i, code, input, reply) => {
                let r = &self.resources[i];
                match (r.opened, r.busy, r.monitor) {
                    (true, None, Some(m)) => {
                        let call = self.send_call(
                            m,
                            Some(i),
                            Op::Control {
                                code: code.0,
                                input,
                            },
                            CallKind::Control(reply),
                        );
                        self.resources[i].busy = call;
                    }
                    _ => {
                        let _ = reply.send(Err(HostError::InvalidState {
                            resource: r.spec.name.clone(),
                            state: r.state,
                        }));
                    }
                }
            }
            Command::Subscribe(tx, registered) => {
                self.events.subscribe(tx);
                let _ = registered.send(Ok(()));
            }
            Command::Ping(reply) => {
                let _ = reply.send(Ok(()));
            }
            Command::CloseAll(reply) => {
                let mut calls = Vec::new();
                let mut skipped = Vec::new();
                for i in 0..self.resources.len() {
                    let r = &self.resources[i];
                    match (r.opened, r.busy, r.monitor) {
                        (true, None, Some(m)) => {
                            if let Some(call) =
                                self.send_call(m, Some(i), Op::Close, CallKind::Close)
                            {
                                calls.push(call);
                            }
                        }
                        // A call still runs: it cannot be closed under it.
                        (true, Some(_), _) => {
                            skipped.push(format!("`{}`: busy, not closed", r.spec.name));
                        }
                        _ => {}
                    }
                }
                self.stopping = true;
                self.closing = Some((reply, calls, skipped));
                self.finish_closing(None, None);
            }
            Command::Shutdown(reply) => {
                for m in self.monitors.values_mut() {
                    let _ = protocol::write_frame(&mut m.writer, &ToMonitor::Shutdown.encode());
                }
                self.shutdown = Some((reply, Instant::now()));
            }
        }
    }

    /// Notes the end of one `close` of a stop; answers once all have ended.
    fn finish_closing(&mut self, call: Option<u64>, error: Option<String>) {
        let Some((_, calls, errors)) = &mut self.closing else {
            return;
        };
        if let Some(call) = call {
            calls.retain(|c| *c != call);
        }
        errors.extend(error);
        if calls.is_empty() {
            let (reply, _, errors) = self.closing.take().expect("checked");
            let result = if errors.is_empty() {
                Ok(())
            } else {
                Err(HostError::Call(Error::Failed(format!(
                    "close failed: {}",
                    errors.join("; ")
                ))))
            };
            let _ = reply.send(result);
        }
    }

    fn collect_dependencies(&self, i: usize, out: &mut Vec<usize>) {
        if out.contains(&i) {
            return;
        }
        for &d in &self.resources[i].spec.depends_on {
            self.collect_dependencies(d, out);
        }
        out.push(i);
    }

    fn collect_dependents(&self, i: usize, out: &mut Vec<usize>) {
        if out.contains(&i) {
            return;
        }
        out.push(i);
        for &d in &self.resources[i].dependents {
            self.collect_dependents(d, out);
        }
    }

    fn set_desired(&mut self, i: usize, desired: Desired) {
        self.resources[i].desired = desired;
        self.resources[i].touch();
    }

    fn on_frame(&mut self, monitor: u64, message: FromMonitor) {
        if !self.monitors.contains_key(&monitor) {
            return;
        }
        match message {
            FromMonitor::Hello { pid, protocol } => {
                let m = self.monitors.get_mut(&monitor).expect("checked");
                if protocol != protocol::PROTOCOL_VERSION {
                    let reason = format!(
                        "monitor speaks protocol {protocol}, the host {}",
                        protocol::PROTOCOL_VERSION
                    );
                    self.protocol_error(monitor, reason);
                    return;
                }
                m.ready = true;
                let key = m.key;
                self.emit(
                    Event::new(EventKind::MonitorStarted, None)
                        .with("pid", pid)
                        .with("monitor", self.key_name(key)),
                );
                for i in 0..self.resources.len() {
                    if self.monitor_key(i) == key {
                        self.mark_dirty(i);
                    }
                }
            }
            FromMonitor::Reply { call, outcome } => {
                // A library can write to its monitor's socket: a reply is
                // only taken from the monitor the call went to.
                if self.calls.get(&call).is_some_and(|c| c.monitor == monitor) {
                    self.on_reply(call, outcome);
                }
            }
            // Reports and completions count only for the operation pending
            // now: a stale worker of an earlier attempt is ignored.
            FromMonitor::Report { call, resource, .. } => {
                let Some(i) = self.resource_by_wire_id(resource, monitor) else {
                    return;
                };
                if self.resources[i].state.is_pending()
                    && self.resources[i].pending_call == Some(call)
                {
                    self.arm_pending(i);
                }
            }
            FromMonitor::Complete {
                call,
                resource,
                outcome,
            } => {
                let Some(i) = self.resource_by_wire_id(resource, monitor) else {
                    return;
                };
                if self.resources[i].pending_call == Some(call) {
                    self.on_complete(i, outcome);
                }
            }
            FromMonitor::Log {
                resource,
                level,
                message,
            } => {
                let name = self
                    .resource_by_wire_id(resource, monitor)
                    .map(|i| self.resources[i].spec.name.clone());
                let level = Level::from_u32(level).unwrap_or(Level::Info);
                let event = Event::new(EventKind::ResourceLog, name.as_deref())
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

    /// Resource ids on the wire are index + 1; 0 is "no resource".
    fn resource_by_wire_id(&self, id: u32, monitor: u64) -> Option<usize> {
        let i = (id as usize).checked_sub(1)?;
        (self.resources.get(i)?.monitor == Some(monitor)).then_some(i)
    }

    fn on_reply(&mut self, call_id: u64, outcome: Outcome) {
        let Some(call) = self.take_call(call_id) else {
            return; // late reply to a call already given up on
        };
        let elapsed = call.started.elapsed();
        if let Some(i) = call.resource
            && self.resources[i].busy == Some(call_id)
        {
            self.resources[i].busy = None;
            self.mark_dirty(i);
        }
        if let (Outcome::Failed(e), Some(i)) = (&outcome, call.resource)
            && !matches!(call.kind, CallKind::Control(_))
        {
            let event = Event::new(EventKind::CallFailed, Some(&self.resources[i].spec.name))
                .with("call", call.op)
                .with("code", e.code().name())
                .with("error", e.to_string());
            self.emit(event);
        }
        match call.kind {
            CallKind::LoadLibrary(lib) => self.on_library_loaded(call.monitor, lib, outcome),
            CallKind::Open => self.on_opened(call.resource.expect("open has a resource"), outcome),
            CallKind::Online => {
                let i = call.resource.expect("online");
                self.resources[i].pending_call = Some(call_id);
                self.on_online_reply(i, outcome);
            }
            CallKind::Offline => {
                let i = call.resource.expect("offline");
                self.resources[i].pending_call = Some(call_id);
                self.on_offline_reply(i, outcome);
            }
            CallKind::Terminate(then) => {
                self.on_terminated(call.resource.expect("terminate"), then)
            }
            CallKind::ReattachCheck => {
                let i = call.resource.expect("re-attach check");
                self.on_reattach_check(i, outcome);
            }
            CallKind::Close => {
                let i = call.resource.expect("close");
                self.resources[i].opened = false;
                self.resources[i].state = ResourceState::Offline;
                self.resources[i].touch();
                let error = match outcome {
                    Outcome::Failed(e) => Some(format!("`{}`: {e}", self.resources[i].spec.name)),
                    _ => None,
                };
                self.finish_closing(Some(call_id), error);
            }
            CallKind::LooksAlive | CallKind::IsAlive => {
                let i = call.resource.expect("health check");
                let looks = matches!(call.kind, CallKind::LooksAlive);
                let health = match outcome {
                    Outcome::Health(h) => h,
                    Outcome::Failed(e) => Health::Failed(e.to_string()),
                    other => Health::Failed(format!("unexpected reply {other:?}")),
                };
                self.on_health(i, looks, health, elapsed);
            }
            CallKind::Control(reply) => {
                let result = match outcome {
                    Outcome::Bytes(b) => Ok(b),
                    Outcome::Failed(e) => Err(HostError::Call(e)),
                    other => Err(HostError::Call(Error::Internal(format!(
                        "unexpected reply {other:?}"
                    )))),
                };
                let _ = reply.send(result);
            }
        }
    }

    // ------------------------------------------------------------ libraries

    fn ensure_library(&mut self, i: usize) {
        let Some(m) = self.ensure_monitor(self.monitor_key(i)) else {
            return;
        };
        let lib = self.library_index(i);
        let monitor = &self.monitors[&m];
        if !monitor.ready || monitor.killing.is_some() || monitor.libraries.contains_key(&lib) {
            return;
        }
        let path = self.libraries[lib].0.to_string_lossy().into_owned();
        self.monitors
            .get_mut(&m)
            .expect("exists")
            .libraries
            .insert(lib, LibState::Loading);
        self.send_call(
            m,
            None,
            Op::LoadLibrary {
                library: lib as u32 + 1,
                path,
            },
            CallKind::LoadLibrary(lib),
        );
    }

    fn library_index(&self, i: usize) -> usize {
        let path = &self.resources[i].spec.library;
        self.libraries
            .iter()
            .position(|(p, _)| p == path)
            .expect("every library is registered")
    }

    fn on_library_loaded(&mut self, monitor: u64, lib: usize, outcome: Outcome) {
        let state = match outcome {
            Outcome::Types(types) => {
                if self.libraries[lib].1.is_none() {
                    self.libraries[lib].1 = Some(types);
                }
                LibState::Loaded
            }
            Outcome::Failed(e) => {
                if !self.validated {
                    let path = self.libraries[lib].0.display().to_string();
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
        for i in 0..self.resources.len() {
            if self.library_index(i) == lib {
                self.mark_dirty(i);
            }
        }
    }

    /// Once every library's types are known, checks every resource against
    /// its type and answers the start command.
    fn check_validation(&mut self) {
        if self.validated || self.start_reply.is_none() {
            return;
        }
        if self.libraries.iter().any(|(_, types)| types.is_none()) {
            return;
        }
        let mut problems = Vec::new();
        for i in 0..self.resources.len() {
            let lib = self.library_index(i);
            let spec = &self.resources[i].spec;
            let types = self.libraries[lib].1.as_ref().expect("loaded");
            let Some(ty) = types.iter().find(|t| t.name == spec.type_name) else {
                problems.push(HostError::UnknownType {
                    resource: spec.name.clone(),
                    type_name: spec.type_name.clone(),
                    library: spec.library.display().to_string(),
                    available: types.iter().map(|t| t.name.to_string()).collect(),
                });
                continue;
            };
            let checked = ty
                .schema
                .coerce(&spec.properties)
                .and_then(|typed| ty.schema.validate(&typed));
            match checked {
                Ok(valid) => {
                    let characteristics = ty.characteristics;
                    let r = &mut self.resources[i];
                    r.validated = valid;
                    r.characteristics = characteristics;
                }
                Err(errors) => problems.push(HostError::Properties {
                    resource: spec.name.clone(),
                    errors,
                }),
            }
        }
        // A SINGLE_GROUP_INSTANCE type allows one resource per group.
        for i in 0..self.resources.len() {
            let r = &self.resources[i];
            if !r
                .characteristics
                .contains(Characteristics::SINGLE_GROUP_INSTANCE)
            {
                continue;
            }
            if let Some(other) = self.resources[..i]
                .iter()
                .find(|o| o.spec.group == r.spec.group && o.spec.type_name == r.spec.type_name)
            {
                problems.push(HostError::Config(format!(
                    "resources `{}` and `{}` are both of type `{}` in group `{}`, which allows one \
                     (SINGLE_GROUP_INSTANCE)",
                    other.spec.name, r.spec.name, r.spec.type_name, r.spec.group
                )));
            }
        }
        if let Some(first) = problems.into_iter().next() {
            self.fail_start(first);
            return;
        }
        self.validated = true;
        for i in 0..self.resources.len() {
            self.mark_dirty(i);
        }
        if let Some(reply) = self.start_reply.take() {
            let _ = reply.send(Ok(()));
        }
    }

    fn fail_start(&mut self, error: HostError) {
        if let Some(reply) = self.start_reply.take() {
            let _ = reply.send(Err(error));
        }
        let (tx, _rx) = mpsc::sync_channel(1);
        self.on_command(Command::Shutdown(tx));
    }

    // -------------------------------------------------------------- monitors

    fn monitor_key(&self, i: usize) -> MonitorKey {
        let r = &self.resources[i];
        if r.separate_monitor {
            MonitorKey::Own(i)
        } else {
            MonitorKey::Shared(r.spec.placement)
        }
    }

    fn key_name(&self, key: MonitorKey) -> String {
        match key {
            MonitorKey::Shared(p) => p.name().to_owned(),
            MonitorKey::Own(i) => format!("separate:{}", self.resources[i].spec.name),
        }
    }

    /// The live monitor for `key`, starting one if there is none.
    fn ensure_monitor(&mut self, key: MonitorKey) -> Option<u64> {
        if self.shutdown.is_some() || self.stopping {
            return None;
        }
        if let Some(&id) = self.current.get(&key) {
            return Some(id);
        }
        let id = self.next_monitor;
        self.next_monitor += 1;
        let spawned = match process::spawn_monitor(&self.program, self.process.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                let problem = e.to_string();
                self.emit(
                    Event::new(EventKind::MonitorDied, None)
                        .with("monitor", self.key_name(key))
                        .with("reason", problem.clone()),
                );
                if !self.validated {
                    self.fail_start(HostError::Monitor(problem));
                } else {
                    let retry = Instant::now() + self.default_timing.restart.delay;
                    self.schedule(retry, Timer::Respawn(key));
                }
                return None;
            }
        };
        let pid = spawned.child.id();
        let _ = spawned.socket.set_write_timeout(Some(WRITE_TIMEOUT));
        let reader = match spawned.socket.try_clone() {
            Ok(r) => r,
            Err(e) => {
                if !self.validated {
                    self.fail_start(HostError::Monitor(e.to_string()));
                }
                return None;
            }
        };
        let tx = self.sender.clone();
        let _ = std::thread::Builder::new()
            .name(format!("ck-monitor-{id}-reader"))
            .spawn(move || read_monitor(id, reader, tx));
        let tx = self.sender.clone();
        let mut child = spawned.child;
        let _ = std::thread::Builder::new()
            .name(format!("ck-monitor-{id}-waiter"))
            .spawn(move || {
                use std::os::unix::process::ExitStatusExt;
                let (status, signal) = match child.wait() {
                    Ok(s) => (s.to_string(), s.signal()),
                    Err(e) => (format!("wait failed: {e}"), None),
                };
                let _ = tx.send(Input::Exited {
                    monitor: id,
                    status,
                    signal,
                });
            });
        self.monitors.insert(
            id,
            Monitor {
                key,
                pid,
                writer: spawned.socket,
                ready: false,
                libraries: HashMap::new(),
                killing: None,
                disconnected: false,
                exit_status: None,
                exit_signal: None,
                crash_call: None,
                escalated: false,
            },
        );
        self.current.insert(key, id);
        let hello_deadline = self.default_timing.deadlock_timeout;
        self.schedule(Instant::now() + hello_deadline, Timer::Hello(id));
        Some(id)
    }

    fn on_disconnected(&mut self, monitor: u64, error: Option<String>) {
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

    fn protocol_error(&mut self, monitor: u64, reason: String) {
        let Some(m) = self.monitors.get(&monitor) else {
            return;
        };
        let pid = m.pid;
        self.emit(
            Event::new(EventKind::MonitorProtocolError, None)
                .with("pid", pid)
                .with("monitor", self.key_name(m.key))
                .with("error", reason.clone()),
        );
        self.kill_monitor(monitor, None, &reason);
    }

    fn kill_monitor(&mut self, monitor: u64, culprit: Option<usize>, reason: &str) {
        let Some(m) = self.monitors.get_mut(&monitor) else {
            return;
        };
        if m.killing.is_some() {
            return;
        }
        m.killing = Some((culprit, Instant::now()));
        let (pid, key) = (m.pid, m.key);
        if self.current.get(&key) == Some(&monitor) {
            self.current.remove(&key);
        }
        let result = self.process.kill(pid);
        let mut event = Event::new(
            EventKind::MonitorKilled,
            culprit.map(|i| self.resources[i].spec.name.as_str()),
        )
        .with("pid", pid)
        .with("monitor", self.key_name(key))
        .with("reason", reason);
        if let Err(e) = result {
            event = event.with("kill_error", e.to_string());
        }
        self.emit(event);
        let timeout = culprit.map_or(self.default_timing.deadlock_timeout, |i| {
            self.resources[i].spec.timing.deadlock_timeout
        });
        self.schedule(
            Instant::now() + timeout * WATCHDOG_FACTOR,
            Timer::Watchdog(monitor),
        );
    }

    /// A monitor is dead once its process has exited; then recovery runs.
    fn maybe_dead(&mut self, monitor: u64) {
        let Some(m) = self.monitors.get(&monitor) else {
            return;
        };
        if m.exit_status.is_none() || !m.disconnected {
            return;
        }
        let m = self.monitors.remove(&monitor).expect("checked");
        if self.current.get(&m.key) == Some(&monitor) {
            self.current.remove(&m.key);
        }
        if self.shutdown.is_some() {
            return;
        }
        // The culprit: the one the host killed it for, the call a crashing
        // thread was running, or else every resource with a call in flight.
        let mut suspects: Vec<usize> = Vec::new();
        let mut lost_calls = Vec::new();
        let call_ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.monitor == monitor)
            .map(|(id, _)| *id)
            .collect();
        for id in call_ids {
            let call = self.take_call(id).expect("listed");
            lost_calls.push((id, call));
        }
        let crash = m.crash_call.and_then(|(call, signal)| {
            lost_calls
                .iter()
                .find(|(id, _)| *id == call)
                .and_then(|(_, c)| c.resource)
                .map(|r| (r, signal))
        });
        // Killed from outside (an operator, the OOM killer): no resource to blame.
        let external = matches!(
            m.exit_signal,
            Some(libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGHUP)
        );
        // Killed by a signal from outside or by the host without a culprit
        // (a protocol error): no resource to blame, unless it crashed first.
        match (m.killing, crash) {
            (Some((Some(culprit), _)), _) => suspects.push(culprit),
            (_, Some((culprit, _))) => suspects.push(culprit),
            (_, None) if external => {}
            (Some((None, _)), None) => {}
            (None, None) => {
                for (_, call) in &lost_calls {
                    if let Some(r) = call.resource
                        && !suspects.contains(&r)
                    {
                        suspects.push(r);
                    }
                }
            }
        }
        let mut event = Event::new(EventKind::MonitorDied, None)
            .with("pid", m.pid)
            .with("monitor", self.key_name(m.key))
            .with("status", m.exit_status.clone().unwrap_or_default())
            .with("killed", m.killing.is_some())
            .with(
                "suspects",
                suspects
                    .iter()
                    .map(|&i| self.resources[i].spec.name.clone())
                    .collect::<Vec<_>>(),
            );
        if let Some((_, signal)) = m.crash_call {
            event = event.with("crash_signal", signal);
        }
        self.emit(event);

        let mut lost_terminates = Vec::new();
        for (id, call) in lost_calls {
            match call.kind {
                CallKind::Terminate(then) => {
                    if let Some(i) = call.resource {
                        lost_terminates.push((i, then));
                    }
                }
                CallKind::Close => {
                    let name = call
                        .resource
                        .map(|i| self.resources[i].spec.name.clone())
                        .unwrap_or_default();
                    self.finish_closing(
                        Some(id),
                        Some(format!("`{name}`: the monitor died during close")),
                    );
                }
                CallKind::Control(reply) => {
                    let _ = reply.send(Err(HostError::Call(Error::Failed(
                        "the monitor died during the call".into(),
                    ))));
                }
                CallKind::LoadLibrary(lib) if !self.validated => {
                    let path = self.libraries[lib].0.display().to_string();
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
        for i in 0..self.resources.len() {
            if self.resources[i].monitor != Some(monitor) {
                continue;
            }
            let r = &mut self.resources[i];
            r.monitor = None;
            r.opened = false;
            r.busy = None;
            r.looks_inflight = false;
            r.is_inflight = false;
            r.health_seq += 1;
            r.pending_seq += 1;
            r.recover = true;
            r.touch();
            if r.state != ResourceState::Failed {
                r.resume_online = r.state == ResourceState::Online;
                r.restart_after_open = matches!(
                    r.state,
                    ResourceState::OnlinePending | ResourceState::OfflinePending
                );
                r.state = ResourceState::Unknown;
            } else {
                r.restart_after_open = true;
            }
            self.mark_dirty(i);
        }
        // A terminate the death cut short: its resource still needs a
        // stopped workload (terminate again after the re-open) and, if it
        // failed, its restart policy.
        for (i, then) in lost_terminates {
            self.resources[i].restart_after_open = true;
            self.resources[i].resume_online = false;
            if then == AfterTerminate::ApplyPolicy
                && !suspects.contains(&i)
                && !self.resources[i].held
            {
                self.apply_policy(i);
            }
        }
        for culprit in suspects {
            self.isolate_and_restart(culprit);
        }
        // Resources still waiting for this monitor (not yet opened in it)
        // need the next one too.
        for i in 0..self.resources.len() {
            if self.monitor_key(i) == m.key {
                self.mark_dirty(i);
            }
        }
    }

    fn isolate_and_restart(&mut self, i: usize) {
        if !self.resources[i].separate_monitor {
            self.resources[i].separate_monitor = true;
            let event = Event::new(
                EventKind::ResourceIsolated,
                Some(&self.resources[i].spec.name),
            )
            .with(
                "monitor",
                format!("separate:{}", self.resources[i].spec.name),
            );
            self.emit(event);
            self.persist();
        }
        let r = &mut self.resources[i];
        r.resume_online = false;
        r.restart_after_open = true;
        r.state = ResourceState::Failed;
        r.online_since = None;
        r.touch();
        // Unless a restart is already scheduled, the culprit goes through
        // its restart policy (its threshold counts hung terminates too).
        if !r.held {
            self.apply_policy(i);
        }
    }

    // ----------------------------------------------------------------- calls

    fn send_call(
        &mut self,
        monitor: u64,
        resource: Option<usize>,
        op: Op,
        kind: CallKind,
    ) -> Option<u64> {
        let id = self.next_call;
        self.next_call += 1;
        let deadline = resource.map_or(self.default_timing.deadlock_timeout, |i| {
            self.resources[i].spec.timing.deadlock_timeout
        });
        let op_name = op.name();
        let wire_resource = resource.map_or(0, |i| i as u32 + 1);
        let payload = ToMonitor::Call {
            call: id,
            resource: wire_resource,
            op,
        }
        .encode();
        let m = self.monitors.get_mut(&monitor)?;
        let written = protocol::write_frame(&mut m.writer, &payload);
        let started = Instant::now();
        self.calls.insert(
            id,
            Call {
                monitor,
                resource,
                op: op_name,
                kind,
                started,
                deadline,
            },
        );
        match written {
            Ok(()) => {
                // Deadlines live in an ordered set, removed when the reply
                // comes: thousands of checks a second leave nothing behind.
                self.deadlines.insert((started + deadline, id));
            }
            // The monitor closed its end: it is exiting. Its exit (and the
            // crash report it may have sent) drives the recovery.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => self.kill_monitor(monitor, None, &format!("writing to the monitor: {e}")),
        }
        Some(id)
    }

    fn take_call(&mut self, id: u64) -> Option<Call> {
        let call = self.calls.remove(&id)?;
        self.deadlines.remove(&(call.started + call.deadline, id));
        Some(call)
    }

    fn on_call_deadline(&mut self, id: u64) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(m) = self.monitors.get(&call.monitor) else {
            return;
        };
        if m.killing.is_some() {
            return;
        }
        let (monitor, pid, resource, op, elapsed, deadline) = (
            call.monitor,
            m.pid,
            call.resource,
            call.op,
            call.started.elapsed(),
            call.deadline,
        );
        let threads = process::thread_diagnostics(pid);
        let mut event = Event::new(
            EventKind::CallTimedOut,
            resource.map(|i| self.resources[i].spec.name.as_str()),
        )
        .with("call", op)
        .with("elapsed_ms", ms(elapsed))
        .with("deadline_ms", ms(deadline))
        .with("pid", pid)
        .with("threads", threads);
        if let Some(i) = resource {
            event = event.with("type", self.resources[i].spec.type_name.clone());
        }
        self.emit(event);
        self.kill_monitor(monitor, resource, &format!("{op} passed its deadline"));
    }

    fn on_watchdog(&mut self, monitor: u64) {
        let Some(m) = self.monitors.get_mut(&monitor) else {
            return;
        };
        let Some((culprit, since)) = m.killing else {
            return;
        };
        if m.escalated {
            return;
        }
        m.escalated = true;
        let pid = m.pid;
        let event = Event::new(
            EventKind::Escalation,
            culprit.map(|i| self.resources[i].spec.name.as_str()),
        )
        .with("pid", pid)
        .with("waited_ms", ms(since.elapsed()))
        .with(
            "action",
            match self.escalation {
                Escalation::ExitProcess => "exit",
                Escalation::Hook(_) => "hook",
            },
        );
        self.emit(event.clone());
        match &self.escalation {
            Escalation::ExitProcess => {
                self.events.sync();
                std::process::exit(ESCALATION_EXIT_CODE);
            }
            Escalation::Hook(hook) => hook(&event),
        }
    }

    // ---------------------------------------------------------- reconciling

    fn mark_dirty(&mut self, i: usize) {
        if !self.dirty[i] {
            self.dirty[i] = true;
            self.dirty_list.push(i);
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
                self.dirty[i] = false;
                self.reconcile(i);
            }
        }
    }

    fn reconcile(&mut self, i: usize) {
        if self.shutdown.is_some() || self.stopping {
            return;
        }
        if !self.validated {
            // Before validation, only load the libraries to learn the types.
            if self.start_reply.is_some() {
                self.ensure_library(i);
            }
            return;
        }
        let r = &self.resources[i];
        if r.busy.is_some() || r.held {
            return;
        }
        if !r.opened {
            self.open(i);
            return;
        }
        let deps_online = r
            .spec
            .depends_on
            .iter()
            .all(|&d| self.resources[d].state == ResourceState::Online);
        let dependents_down = r.dependents.iter().all(|&d| {
            let dep = &self.resources[d];
            dep.busy.is_none()
                && matches!(
                    dep.state,
                    ResourceState::Offline
                        | ResourceState::Failed
                        | ResourceState::Initializing
                        | ResourceState::Unknown
                )
        });
        let wants_online = r.desired == Desired::Online;
        let Some(monitor) = r.monitor else { return };
        match r.state {
            ResourceState::Offline if wants_online && deps_online => {
                if self.resources[i].restarting {
                    self.resources[i].restarting = false;
                    let event = Event::new(
                        EventKind::ResourceRestarted,
                        Some(&self.resources[i].spec.name),
                    )
                    .with("restarts", self.resources[i].restarts.total);
                    self.emit(event);
                }
                let call = self.send_call(monitor, Some(i), Op::Online, CallKind::Online);
                self.resources[i].busy = call;
            }
            ResourceState::Online if (!wants_online || !deps_online) && dependents_down => {
                self.stop_health(i);
                let call = self.send_call(monitor, Some(i), Op::Offline, CallKind::Offline);
                self.resources[i].busy = call;
            }
            ResourceState::Online if !wants_online || !deps_online => {
                for d in self.resources[i].dependents.clone() {
                    self.mark_dirty(d);
                }
            }
            _ => {}
        }
    }

    fn open(&mut self, i: usize) {
        let key = self.monitor_key(i);
        let Some(m) = self.ensure_monitor(key) else {
            return;
        };
        let lib = self.library_index(i);
        let monitor = &self.monitors[&m];
        if !monitor.ready || monitor.killing.is_some() {
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
                if self.resources[i].state != ResourceState::Failed {
                    self.fail_resource(i, "its resource library failed to load".into());
                }
                return;
            }
            Some(LibState::Loaded) => {}
        }
        let r = &mut self.resources[i];
        r.monitor = Some(m);
        let op = Op::Open {
            library: lib as u32 + 1,
            type_name: r.spec.type_name.clone(),
            name: r.spec.name.clone(),
            properties: r.validated.encode(),
            recover: r.recover,
        };
        let call = self.send_call(m, Some(i), op, CallKind::Open);
        self.resources[i].busy = call;
    }

    fn on_opened(&mut self, i: usize, outcome: Outcome) {
        if let Outcome::Failed(e) = outcome {
            self.resources[i].monitor = None;
            self.fail_resource(i, format!("open failed: {e}"));
            return;
        }
        let r = &mut self.resources[i];
        r.opened = true;
        r.touch();
        let recovered = std::mem::take(&mut r.recover);
        let resume = std::mem::take(&mut r.resume_online);
        let restart = std::mem::take(&mut r.restart_after_open);
        let can_reattach = r.characteristics.contains(Characteristics::REATTACH);
        if restart || (recovered && resume && !can_reattach) {
            // Stop whatever may still run, then bring it online afresh.
            r.state = ResourceState::Failed;
            self.send_terminate(i, AfterTerminate::Restart);
        } else if recovered && resume {
            // Adopt only a workload that answers: one cheap check first.
            let monitor = r.monitor.expect("opened in a monitor");
            let call = self.send_call(monitor, Some(i), Op::LooksAlive, CallKind::ReattachCheck);
            self.resources[i].busy = call;
        } else {
            r.state = ResourceState::Offline;
            self.mark_dirty(i);
        }
    }

    fn on_reattach_check(&mut self, i: usize, outcome: Outcome) {
        let health = match outcome {
            Outcome::Health(h) => h,
            Outcome::Failed(e) => Health::Failed(e.to_string()),
            other => Health::Failed(format!("unexpected reply {other:?}")),
        };
        let name = self.resources[i].spec.name.clone();
        if health.is_failed() {
            // Nothing (or something else) to adopt: stop what may be left,
            // then bring it online afresh.
            let event = Event::new(EventKind::HealthFailed, Some(&name))
                .with("check", "looks_alive")
                .with("reason", format!("not re-attached: {}", health.reason()));
            self.emit(event);
            self.resources[i].state = ResourceState::Failed;
            self.resources[i].touch();
            self.send_terminate(i, AfterTerminate::Restart);
            return;
        }
        let event = Event::new(EventKind::ResourceReattached, Some(&name))
            .with("type", self.resources[i].spec.type_name.clone());
        self.emit(event);
        self.set_online(i, false);
    }

    fn send_terminate(&mut self, i: usize, then: AfterTerminate) {
        let r = &self.resources[i];
        match (r.opened, r.monitor) {
            (true, Some(m)) if self.monitors.get(&m).is_some_and(|m| m.killing.is_none()) => {
                self.send_call(m, Some(i), Op::Terminate, CallKind::Terminate(then));
            }
            _ => self.on_terminated(i, then),
        }
    }

    fn on_terminated(&mut self, i: usize, then: AfterTerminate) {
        match then {
            AfterTerminate::ApplyPolicy => self.apply_policy(i),
            AfterTerminate::Restart => {
                let r = &mut self.resources[i];
                r.state = ResourceState::Offline;
                r.restarting = r.desired == Desired::Online;
                r.touch();
                self.mark_dirty(i);
            }
            AfterTerminate::MarkOffline => self.set_offline(i),
        }
    }

    fn on_online_reply(&mut self, i: usize, outcome: Outcome) {
        match outcome {
            Outcome::State(s) if s == ResourceState::Online as u32 => self.set_online(i, false),
            Outcome::State(s) if s == ResourceState::OnlinePending as u32 => {
                self.set_pending(i, ResourceState::OnlinePending)
            }
            Outcome::Failed(e) => self.fail_resource(i, format!("online failed: {e}")),
            other => self.fail_resource(i, format!("online returned {other:?}")),
        }
    }

    fn on_offline_reply(&mut self, i: usize, outcome: Outcome) {
        match outcome {
            Outcome::State(s) if s == ResourceState::Offline as u32 => self.set_offline(i),
            Outcome::State(s) if s == ResourceState::OfflinePending as u32 => {
                self.set_pending(i, ResourceState::OfflinePending)
            }
            // A graceful offline that fails is finished forcefully.
            _ => {
                self.resources[i].state = ResourceState::OfflinePending;
                self.send_terminate(i, AfterTerminate::MarkOffline);
            }
        }
    }

    fn on_complete(&mut self, i: usize, outcome: Result<u32, Error>) {
        let state = self.resources[i].state;
        if !state.is_pending() {
            return;
        }
        self.resources[i].pending_seq += 1;
        match (state, outcome) {
            (ResourceState::OnlinePending, Ok(s)) if s == ResourceState::Online as u32 => {
                self.set_online(i, false)
            }
            (ResourceState::OfflinePending, Ok(s)) if s == ResourceState::Offline as u32 => {
                self.set_offline(i)
            }
            (ResourceState::OnlinePending, Err(e)) => {
                self.fail_resource(i, format!("pending online failed: {e}"))
            }
            (ResourceState::OnlinePending, Ok(s)) => {
                self.fail_resource(i, format!("pending online completed with state {s}"))
            }
            (_, _) => self.send_terminate(i, AfterTerminate::MarkOffline),
        }
    }

    fn set_pending(&mut self, i: usize, state: ResourceState) {
        let r = &mut self.resources[i];
        r.state = state;
        // A new operation: timers of earlier ones no longer count.
        r.pending_seq += 1;
        r.pending_armed = false;
        r.touch();
        let event =
            Event::new(EventKind::ResourcePending, Some(&r.spec.name)).with("state", state.name());
        self.emit(event);
        self.arm_pending(i);
    }

    /// Moves the pending deadline on (a report came). One timer per
    /// operation: when it fires early, it is set again for the new deadline.
    fn arm_pending(&mut self, i: usize) {
        let r = &mut self.resources[i];
        r.pending_until = Instant::now() + r.spec.timing.effective_pending_timeout();
        if !r.pending_armed {
            r.pending_armed = true;
            let (at, seq) = (r.pending_until, r.pending_seq);
            self.schedule(at, Timer::Pending { resource: i, seq });
        }
    }

    fn arm_pending_at(&mut self, i: usize) {
        let r = &mut self.resources[i];
        r.pending_armed = true;
        let (at, seq) = (r.pending_until, r.pending_seq);
        self.schedule(at, Timer::Pending { resource: i, seq });
    }

    fn set_online(&mut self, i: usize, check_now: bool) {
        let now = Instant::now();
        let r = &mut self.resources[i];
        r.state = ResourceState::Online;
        r.online_since = Some(now);
        r.touch();
        r.health_seq += 1;
        r.next_looks = if check_now {
            now
        } else {
            now + r.spec.timing.looks_alive_interval
        };
        r.next_is = now + r.spec.timing.is_alive_interval;
        let (seq, looks_at, is_at) = (r.health_seq, r.next_looks, r.next_is);
        let event = Event::new(EventKind::ResourceOnline, Some(&r.spec.name));
        self.emit(event);
        self.schedule(
            looks_at,
            Timer::Health {
                resource: i,
                looks: true,
                seq,
            },
        );
        self.schedule(
            is_at,
            Timer::Health {
                resource: i,
                looks: false,
                seq,
            },
        );
        self.mark_neighbours(i);
    }

    fn set_offline(&mut self, i: usize) {
        self.stop_health(i);
        let r = &mut self.resources[i];
        r.state = ResourceState::Offline;
        r.online_since = None;
        r.touch();
        let event = Event::new(EventKind::ResourceOffline, Some(&r.spec.name));
        self.emit(event);
        self.mark_neighbours(i);
    }

    fn mark_neighbours(&mut self, i: usize) {
        self.mark_dirty(i);
        for d in self.resources[i].dependents.clone() {
            self.mark_dirty(d);
        }
        for d in self.resources[i].spec.depends_on.clone() {
            self.mark_dirty(d);
        }
    }

    fn stop_health(&mut self, i: usize) {
        self.resources[i].health_seq += 1;
    }

    // ---------------------------------------------------------------- health

    fn on_health_timer(&mut self, i: usize, looks: bool, seq: u64) {
        let r = &mut self.resources[i];
        if r.health_seq != seq || r.state != ResourceState::Online {
            return;
        }
        let now = Instant::now();
        let interval = if looks {
            r.spec.timing.looks_alive_interval
        } else {
            r.spec.timing.is_alive_interval
        };
        // Fixed-rate schedule: next = previous due + interval, never in the
        // past (no pile-up after a stall), never drifting with latency.
        let due = if looks {
            &mut r.next_looks
        } else {
            &mut r.next_is
        };
        let mut next = *due + interval;
        if next <= now {
            next = now + interval;
        }
        *due = next;
        let inflight = if looks {
            r.looks_inflight
        } else {
            r.is_inflight
        };
        self.schedule(
            next,
            Timer::Health {
                resource: i,
                looks,
                seq,
            },
        );
        if !inflight {
            self.send_health_check(i, looks);
        }
    }

    fn send_health_check(&mut self, i: usize, looks: bool) {
        let Some(m) = self.resources[i].monitor else {
            return;
        };
        if !self.resources[i].opened {
            return;
        }
        let (op, kind) = if looks {
            (Op::LooksAlive, CallKind::LooksAlive)
        } else {
            (Op::IsAlive, CallKind::IsAlive)
        };
        if self.send_call(m, Some(i), op, kind).is_some() {
            let r = &mut self.resources[i];
            if looks {
                r.looks_inflight = true;
            } else {
                r.is_inflight = true;
            }
        }
    }

    fn on_health(&mut self, i: usize, looks: bool, health: Health, latency: Duration) {
        let r = &mut self.resources[i];
        if looks {
            r.looks_inflight = false;
        } else {
            r.is_inflight = false;
        }
        r.last_latency = Some(latency);
        r.checks += 1;
        r.last_health = Some(health.clone());
        r.touch();
        if r.state != ResourceState::Online {
            return;
        }
        let check = if looks { "looks_alive" } else { "is_alive" };
        match health {
            Health::Healthy => {
                if let Some(since) = r.online_since {
                    let policy = r.spec.timing.restart;
                    r.restarts.note_stable(&policy, since.elapsed());
                }
            }
            Health::Degraded(reason) => {
                r.degraded += 1;
                let event = Event::new(EventKind::HealthDegraded, Some(&r.spec.name))
                    .with("check", check)
                    .with("reason", reason)
                    .with("count", r.degraded);
                self.emit(event);
            }
            Health::Failed(reason) => {
                let event = Event::new(EventKind::HealthFailed, Some(&r.spec.name))
                    .with("check", check)
                    .with("reason", reason.clone());
                self.emit(event);
                if looks {
                    // A failed cheap check asks for the thorough one at once.
                    if !self.resources[i].is_inflight {
                        self.send_health_check(i, false);
                    }
                } else {
                    self.fail_resource(i, format!("is_alive failed: {reason}"));
                }
            }
        }
    }

    // --------------------------------------------------------------- failure

    fn fail_resource(&mut self, i: usize, reason: String) {
        let r = &mut self.resources[i];
        if r.state == ResourceState::Failed {
            return;
        }
        r.state = ResourceState::Failed;
        r.online_since = None;
        r.health_seq += 1;
        r.pending_seq += 1;
        r.touch();
        let event = Event::new(EventKind::ResourceFailed, Some(&r.spec.name))
            .with("type", r.spec.type_name.clone())
            .with("reason", reason);
        self.emit(event);
        self.mark_neighbours(i);
        self.send_terminate(i, AfterTerminate::ApplyPolicy);
    }

    fn apply_policy(&mut self, i: usize) {
        let r = &mut self.resources[i];
        let policy = r.spec.timing.restart;
        let decision = r.restarts.decide(&policy, now_ms());
        r.held = true;
        r.restart_seq += 1;
        let (seq, name) = (r.restart_seq, r.spec.name.clone());
        match decision {
            Decision::Restart { after } => {
                self.schedule(
                    Instant::now() + after,
                    Timer::Restart {
                        resource: i,
                        seq,
                        reset: false,
                    },
                );
            }
            Decision::Exceeded {
                failover,
                retry_after,
            } => {
                let threshold = policy.threshold;
                self.emit(
                    Event::new(EventKind::RestartThresholdExceeded, Some(&name))
                        .with("threshold", threshold)
                        .with("period_ms", ms(policy.period))
                        .with("retry_after_ms", ms(retry_after)),
                );
                if failover {
                    self.emit(Event::new(EventKind::FailoverRequested, Some(&name)));
                }
                self.schedule(
                    Instant::now() + retry_after,
                    Timer::Restart {
                        resource: i,
                        seq,
                        reset: true,
                    },
                );
            }
            Decision::StayFailed => {}
        }
        self.persist();
    }

    fn on_restart_timer(&mut self, i: usize, seq: u64, reset: bool) {
        let r = &mut self.resources[i];
        if r.restart_seq != seq || !r.held {
            return;
        }
        r.held = false;
        if reset {
            r.restarts.reset();
        }
        r.restarting = r.desired == Desired::Online;
        if r.opened && !r.restart_after_open {
            r.state = ResourceState::Offline;
        } else {
            r.state = ResourceState::Unknown;
        }
        r.touch();
        self.mark_dirty(i);
    }

    // ---------------------------------------------------------------- timers

    fn schedule(&mut self, at: Instant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.push(Reverse((at, self.timer_seq, timer)));
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            self.on_call_deadline(id);
        }
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, _, timer)) = self.timers.pop().expect("peeked");
            match timer {
                Timer::Health {
                    resource,
                    looks,
                    seq,
                } => self.on_health_timer(resource, looks, seq),
                Timer::Pending { resource, seq } => {
                    let r = &mut self.resources[resource];
                    if r.pending_seq != seq || !r.state.is_pending() {
                        continue;
                    }
                    r.pending_armed = false;
                    if now < r.pending_until {
                        // A report moved the deadline since this was set.
                        self.arm_pending_at(resource);
                        continue;
                    }
                    let r = &self.resources[resource];
                    {
                        let reason = format!(
                            "no progress report for {} ms while {}",
                            ms(r.spec.timing.effective_pending_timeout()),
                            r.state
                        );
                        if r.state == ResourceState::OnlinePending {
                            self.fail_resource(resource, reason);
                        } else {
                            self.send_terminate(resource, AfterTerminate::MarkOffline);
                        }
                    }
                }
                Timer::Restart {
                    resource,
                    seq,
                    reset,
                } => self.on_restart_timer(resource, seq, reset),
                Timer::Watchdog(monitor) => self.on_watchdog(monitor),
                Timer::Respawn(key) => {
                    for i in 0..self.resources.len() {
                        if self.monitor_key(i) == key {
                            self.mark_dirty(i);
                        }
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

    // ------------------------------------------------------------ bookkeeping

    fn emit(&mut self, event: Event) {
        // Subscribers must never see an event before the status it reports.
        self.publish();
        self.events.emit(event);
    }

    fn persist(&mut self) {
        let state = PersistedState {
            version: 1,
            resources: self
                .resources
                .iter()
                .map(|r| {
                    (
                        r.spec.name.clone(),
                        PersistedResource {
                            desired: r.desired,
                            separate_monitor: r.separate_monitor,
                            restarts: r.restarts.clone(),
                        },
                    )
                })
                .collect(),
        };
        if let Err(e) = self.state_file.save(&state) {
            let path = self.state_file.path().display().to_string();
            tracing::error!(target: "clusterkit::host", "cannot write {path}: {e}");
        }
    }

    fn publish(&mut self) {
        let changed_list =
            std::mem::take(&mut *self.changed.lock().unwrap_or_else(PoisonError::into_inner));
        if changed_list.is_empty() {
            return;
        }
        let mut changed = false;
        let mut statuses = self
            .shared
            .statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for i in changed_list {
            let r = &mut self.resources[i];
            if !std::mem::take(&mut r.status_changed) {
                continue;
            }
            changed = true;
            let pid = r
                .monitor
                .and_then(|m| self.monitors.get(&m))
                .filter(|m| r.opened && m.ready)
                .map(|m| m.pid);
            statuses[i] = ResourceStatus {
                name: r.spec.name.clone(),
                type_name: r.spec.type_name.clone(),
                group: r.spec.group.clone(),
                state: r.state,
                desired: r.desired,
                monitor_pid: pid,
                separate_monitor: r.separate_monitor,
                restarts: r.restarts.total,
                degraded_count: r.degraded,
                health_checks: r.checks,
                last_check_latency: r.last_latency,
                last_health: r.last_health.clone(),
            };
        }
        drop(statuses);
        if changed {
            self.shared.changed.notify_all();
        }
    }
}

/// The reader thread of one monitor: frames in, inputs out.
fn read_monitor(monitor: u64, socket: UnixStream, tx: SyncSender<Input>) {
    let mut reader = BufReader::with_capacity(64 << 10, socket);
    let mut buf = Vec::new();
    loop {
        let error = match protocol::read_frame(&mut reader, &mut buf) {
            Ok(()) => match FromMonitor::decode(&buf) {
                Ok(message) => {
                    if tx.send(Input::Frame { monitor, message }).is_err() {
                        return;
                    }
                    continue;
                }
                Err(e) => Some(e.to_string()),
            },
            // The peer vanishing (end of file, a reset) is a disconnect; only
            // bytes that are not a valid frame are a protocol error.
            Err(protocol::FrameError::Closed | protocol::FrameError::Io(_)) => None,
            Err(e) => Some(e.to_string()),
        };
        let _ = tx.send(Input::Disconnected { monitor, error });
        return;
    }
}
