//! The embedded API: [`HostBuilder`] configures, [`Host`] runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clusterkit::{ControlCode, ResourceState};

use crate::config::{ResourceConfig, Timing, TimingOverrides};
use crate::engine::core::{Command, CoreConfig, ResourceSpec};
use crate::engine::driver::{self, Driver, DriverConfig, EngineSender, Message};
use crate::engine::ids::ResourceId;
use crate::engine::reconfigure::{Reconfiguration, Reconfigured};
use crate::error::HostError;
use crate::escalation::Escalation;
use crate::events::{Event, EventLogLimits, Subscriber};
use crate::metrics::{CheckKind, CheckLatency, LatencySnapshot};
use crate::process::{MonitorProgram, ProcessControl, SystemProcesses};
use crate::state_file::{Desired, StateLock};
use crate::status::{Board, ResourceStatus, StateCounts, StatusBoard};

/// Inputs (monitor frames, commands) queued for the engine at most.
const INPUT_QUEUE: usize = 16 * 1024;

/// Configures a host. See the [crate documentation](crate) for an example.
pub struct HostBuilder {
    state_dir: PathBuf,
    program: MonitorProgram,
    defaults: Timing,
    type_timing: HashMap<String, TimingOverrides>,
    resources: Vec<ResourceConfig>,
    process: Arc<dyn ProcessControl>,
    escalation: Escalation,
    subscribers: Vec<mpsc::Sender<Event>>,
    event_log: EventLogLimits,
}

impl std::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("state_dir", &self.state_dir)
            .field("program", &self.program)
            .field("resources", &self.resources.len())
            .finish_non_exhaustive()
    }
}

impl HostBuilder {
    /// A host keeping its state and event log in `state_dir` (created if
    /// missing) and starting monitors with `program`.
    pub fn new(state_dir: impl Into<PathBuf>, program: MonitorProgram) -> HostBuilder {
        HostBuilder {
            state_dir: state_dir.into(),
            program,
            defaults: Timing::default(),
            type_timing: HashMap::new(),
            resources: Vec::new(),
            process: Arc::new(SystemProcesses),
            escalation: Escalation::ExitProcess,
            subscribers: Vec::new(),
            event_log: EventLogLimits::default(),
        }
    }

    /// Sets when the event log is rotated (default:
    /// [`EventLogLimits::default`]).
    pub fn event_log(mut self, limits: EventLogLimits) -> HostBuilder {
        self.event_log = limits;
        self
    }

    /// Every event from the very start, including those of `start` itself
    /// (library loading, the first opens), before a [`Host`] exists.
    pub fn subscribe(&mut self) -> Receiver<Event> {
        let (tx, rx) = mpsc::channel();
        self.subscribers.push(tx);
        rx
    }

    /// Replaces the host-wide timing defaults.
    pub fn defaults(mut self, timing: Timing) -> HostBuilder {
        self.defaults = timing;
        self
    }

    /// Timing overrides for every resource of a type.
    pub fn type_timing(
        mut self,
        type_name: impl Into<String>,
        overrides: TimingOverrides,
    ) -> HostBuilder {
        self.type_timing.insert(type_name.into(), overrides);
        self
    }

    /// Adds a resource.
    pub fn resource(mut self, resource: ResourceConfig) -> HostBuilder {
        self.resources.push(resource);
        self
    }

    /// Replaces process control (tests inject processes that will not die).
    pub fn process_control(mut self, control: Arc<dyn ProcessControl>) -> HostBuilder {
        self.process = control;
        self
    }

    /// Sets the escalation action (default: exit the host).
    pub fn escalation(mut self, escalation: Escalation) -> HostBuilder {
        self.escalation = escalation;
        self
    }

    fn resolve(&self) -> Result<Vec<ResourceSpec>, HostError> {
        crate::resolve::resolve(&self.resources, &self.defaults, &self.type_timing)
    }

    /// Every problem of the configuration, without starting anything:
    /// names, dependencies (unknown, cross-group, cycles) and timing; empty
    /// when [`check`](Self::check) passes.
    pub fn problems(&self) -> Vec<HostError> {
        let mut problems = Vec::new();
        if let Err(problem) = self.defaults.check() {
            problems.push(HostError::Config(format!("host defaults: {problem}")));
        }
        if let Err(more) =
            crate::resolve::resolve_all(&self.resources, &self.defaults, &self.type_timing)
        {
            problems.extend(more);
        }
        problems
    }

    /// Checks the configuration without starting anything: names,
    /// dependencies (unknown, cross-group, cycles) and timing.
    pub fn check(&self) -> Result<(), HostError> {
        self.defaults
            .check()
            .map_err(|problem| HostError::Config(format!("host defaults: {problem}")))?;
        self.resolve().map(drop)
    }

    /// Checks the configuration, starts the monitors, loads every library,
    /// validates every resource against its type, then returns while the
    /// host opens resources and brings the desired ones online.
    pub fn start(mut self) -> Result<Host, HostError> {
        self.defaults
            .check()
            .map_err(|problem| HostError::Config(format!("host defaults: {problem}")))?;
        let specs = self.resolve()?;
        std::fs::create_dir_all(&self.state_dir).map_err(|e| HostError::StateFile {
            problem: format!("creating {}: {e}", self.state_dir.display()),
        })?;
        // One host per state directory: a second would fight the first over
        // the control socket, the state file and the workloads.
        let lock = StateLock::acquire(&self.state_dir)
            .map_err(|problem| HostError::StateFile { problem })?;
        let placeholder = |s: &ResourceSpec| ResourceStatus {
            name: s.name.clone(),
            type_name: s.type_name.clone(),
            group: s.group.clone(),
            state: ResourceState::Initializing,
            desired: Desired::Offline,
            monitor_pid: None,
            separate_monitor: s.separate_monitor,
            restarts: 0,
            degraded_count: 0,
            health_checks: 0,
            last_check_latency: None,
            last_health: None,
            since: std::time::SystemTime::now(),
            restarts_in_period: 0,
            monitor: std::borrow::Cow::Borrowed(""),
            last_failure: None,
            next_restart: None,
            isolation_lifted_at_next_open: false,
        };
        let board = Arc::new(StatusBoard::new(specs.iter().map(placeholder).collect()));
        // Moved, not copied: at 100 000 resources a copy is tens of
        // megabytes more at the start's peak.
        let mut set = ResourceSet {
            defaults: self.defaults,
            type_timing: std::mem::take(&mut self.type_timing),
            resources: std::mem::take(&mut self.resources),
        };
        set.resources.shrink_to_fit();
        let longest_deadline = specs
            .iter()
            .map(|s| s.timing.deadlock_timeout)
            .chain([self.defaults.deadlock_timeout])
            .max()
            .unwrap_or_default();
        // Bounded: a monitor flooding the host (a library logging in a loop)
        // is slowed down at its socket instead of growing the host's memory.
        let (tx, rx) = driver::channel(INPUT_QUEUE)
            .map_err(|e| HostError::Monitor(format!("creating the engine's wake-up fd: {e}")))?;
        let check_latency = Arc::new(CheckLatency::default());
        let driver = Driver::new(
            DriverConfig {
                lock,
                state_dir: self.state_dir,
                program: self.program,
                process: self.process,
                escalation: self.escalation,
                subscribers: self.subscribers,
                check_latency: check_latency.clone(),
                event_log: self.event_log,
            },
            CoreConfig {
                resources: specs,
                default_timing: self.defaults,
                host_pid: std::process::id(),
            },
            board.clone(),
            rx,
            tx.clone(),
        )?;
        let thread = std::thread::Builder::new()
            .name("clusterkit-host".into())
            .spawn(move || driver.run())
            .map_err(|e| HostError::Monitor(format!("starting the host thread: {e}")))?;
        let host = Host {
            tx,
            board,
            set: Mutex::new(set),
            check_latency,
            thread: Mutex::new(Some(thread)),
        };
        let (reply, answer) = mpsc::sync_channel(1);
        host.send(Message::Request(Command::Start, reply))?;
        // Loading waits at most for one hung library's deadline, twice.
        match answer.recv_timeout(longest_deadline * 2 + Duration::from_secs(10)) {
            Ok(Ok(_)) => Ok(host),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(HostError::Monitor(
                "the resource libraries did not load within twice the deadlock timeout".into(),
            )),
        }
    }
}

/// A running host. Dropping it shuts it down, leaving workloads running.
pub struct Host {
    tx: EngineSender,
    board: Arc<StatusBoard>,
    /// The resources as last configured; held through a reconfiguration,
    /// so reconfigurations run one at a time.
    set: Mutex<ResourceSet>,
    check_latency: Arc<CheckLatency>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("resources", &self.board().statuses.len())
            .finish_non_exhaustive()
    }
}

/// The resources a running host is to have, with the timing they fall back
/// to: what [`Host::reconfigure`] takes and [`Host::resources`] gives.
#[derive(Debug, Clone, Default)]
pub struct ResourceSet {
    /// Host-wide timing defaults.
    pub defaults: Timing,
    /// Timing overrides by type name.
    pub type_timing: HashMap<String, TimingOverrides>,
    /// The resources, in order.
    pub resources: Vec<ResourceConfig>,
}

impl Host {
    fn send(&self, message: Message) -> Result<(), HostError> {
        self.tx.send(message).map_err(|_| HostError::Stopped)
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board
            .board
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn index(&self, name: &str) -> Result<ResourceId, HostError> {
        self.board()
            .id(name)
            .ok_or_else(|| HostError::UnknownResource(name.to_owned()))
    }

    fn ask(&self, command: Command) -> Result<Vec<u8>, HostError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Message::Request(command, reply))?;
        answer.recv().map_err(|_| HostError::Stopped)?
    }

    /// Wants `name` online: it and its dependencies come online, in
    /// dependency order. Returns at once; see [`wait_for_state`](Self::wait_for_state).
    pub fn online(&self, name: &str) -> Result<(), HostError> {
        let i = self.index(name)?;
        self.ask(Command::Online(i)).map(drop)
    }

    /// Wants every resource of `names` online, as [`online`](Self::online)
    /// does for one, with one write of the state for all: how a host
    /// brings thousands of resources online at start.
    pub fn online_many(&self, names: &[&str]) -> Result<(), HostError> {
        let resources = names
            .iter()
            .map(|name| self.index(name))
            .collect::<Result<Vec<_>, _>>()?;
        self.ask(Command::OnlineMany(resources)).map(drop)
    }

    /// Wants `name` offline: its dependents go offline first, then it.
    pub fn offline(&self, name: &str) -> Result<(), HostError> {
        let i = self.index(name)?;
        self.ask(Command::Offline(i)).map(drop)
    }

    /// Simulates a failure of an online resource: terminate, restart policy.
    pub fn fail(&self, name: &str) -> Result<(), HostError> {
        let i = self.index(name)?;
        self.ask(Command::Fail(i)).map(drop)
    }

    /// Sends a control code to an open resource and returns its output.
    pub fn control(
        &self,
        name: &str,
        code: ControlCode,
        input: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        let i = self.index(name)?;
        self.ask(Command::Control(i, code, input.to_vec()))
    }

    /// Runs a health check of the online resource `name` now
    /// (`looks_alive`, or `is_alive` when `deep`) and returns its result:
    /// a check already in flight answers for both. A check that passes
    /// its deadline is answered at once with [`Error::Timeout`](clusterkit::Error::Timeout),
    /// naming what the monitor's threads wait in, while the host recovers.
    /// A resource that is not online is [`HostError::InvalidState`].
    pub fn check(&self, name: &str, deep: bool) -> Result<clusterkit::Health, HostError> {
        let resource = self.index(name)?;
        let answer = self.ask(Command::Check {
            resource,
            looks: !deep,
        })?;
        crate::engine::health::decode_health(&answer)
            .ok_or_else(|| HostError::Config("the engine's check answer does not decode".into()))
    }

    /// Cleans `name` up after failures: its restart counters start over,
    /// an isolation in a monitor of its own is lifted (it goes back to its
    /// group's monitor the next time it is opened; persisted), and a
    /// failure it is held in is cleared, so it is brought to its desired
    /// state again. Emits `resource_cleaned_up`.
    pub fn cleanup(&self, name: &str) -> Result<(), HostError> {
        let i = self.index(name)?;
        self.ask(Command::Cleanup(i)).map(drop)
    }

    /// The validated properties of `name` as an operator may see them:
    /// each secret's value is `<secret>`; empty until the resource's type
    /// has validated them.
    pub fn properties(&self, name: &str) -> Result<clusterkit::Properties, HostError> {
        let i = self.index(name)?;
        let encoded = self.ask(Command::Properties(i))?;
        clusterkit::Properties::decode(&encoded)
            .map_err(|e| HostError::Monitor(format!("decoding the properties: {e}")))
    }

    /// Whether the engine answers within `timeout`: a liveness probe for a
    /// service watchdog (systemd's `WatchdogSec=`).
    pub fn is_responsive(&self, timeout: Duration) -> bool {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Message::Ping(reply)).is_ok() && answer.recv_timeout(timeout).is_ok()
    }

    /// The status of every resource, in configuration order (resources
    /// added later come after those configured at start).
    pub fn status(&self) -> Vec<ResourceStatus> {
        self.board().statuses.clone()
    }

    /// The status of `name`.
    pub fn resource_status(&self, name: &str) -> Result<ResourceStatus, HostError> {
        self.board()
            .get(name)
            .cloned()
            .ok_or_else(|| HostError::UnknownResource(name.to_owned()))
    }

    /// The resources as last configured (at start, or by the last
    /// [`reconfigure`](Self::reconfigure)).
    pub fn resources(&self) -> ResourceSet {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the host's resources to `set`, while it runs: resources not
    /// in the host yet are added (offline: bring them online as wanted),
    /// those missing from `set` are taken offline, closed and removed,
    /// changed ones apply their change (timing and dependencies at once,
    /// the rest when nothing of the resource runs: now if it is offline,
    /// else at its next online), and the others are not touched at all.
    ///
    /// `set` is checked whole first, each resource against its type (a
    /// library new to the host is loaded for that): any problem refuses it
    /// whole ([`HostError::Refused`], with every problem) and nothing
    /// changes.
    pub fn reconfigure(&self, set: ResourceSet) -> Result<Reconfigured, HostError> {
        let mut current = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        let mut problems = Vec::new();
        if let Err(problem) = set.defaults.check() {
            problems.push(HostError::Config(format!("host defaults: {problem}")));
        }
        let specs =
            match crate::resolve::resolve_all(&set.resources, &set.defaults, &set.type_timing) {
                Ok(specs) => specs,
                Err(more) => {
                    problems.extend(more);
                    Vec::new()
                }
            };
        if !problems.is_empty() {
            return Err(HostError::Refused(problems));
        }
        let answer = self.ask(Command::Reconfigure(Reconfiguration {
            resources: specs,
            default_timing: set.defaults,
        }))?;
        let report = serde_json::from_slice(&answer)
            .map_err(|e| HostError::Config(format!("the engine's answer: {e}")))?;
        *current = set;
        Ok(report)
    }

    /// Adds `resource` to the running host (offline); see
    /// [`reconfigure`](Self::reconfigure).
    pub fn add_resource(&self, resource: ResourceConfig) -> Result<Reconfigured, HostError> {
        let mut set = self.resources();
        if set.resources.iter().any(|r| r.name == resource.name) {
            return Err(HostError::Config(format!(
                "resource `{}` exists already",
                resource.name
            )));
        }
        set.resources.push(resource);
        self.reconfigure(set)
    }

    /// Replaces the configuration of the resource of the same name; see
    /// [`reconfigure`](Self::reconfigure) for when the change applies.
    pub fn update_resource(&self, resource: ResourceConfig) -> Result<Reconfigured, HostError> {
        let mut set = self.resources();
        let Some(slot) = set.resources.iter_mut().find(|r| r.name == resource.name) else {
            return Err(HostError::UnknownResource(resource.name));
        };
        *slot = resource;
        self.reconfigure(set)
    }

    /// Removes `name` from the running host: it goes offline, is closed
    /// and forgotten. A resource others depend on is refused.
    pub fn remove_resource(&self, name: &str) -> Result<Reconfigured, HostError> {
        let mut set = self.resources();
        let before = set.resources.len();
        set.resources.retain(|r| r.name != name);
        if set.resources.len() == before {
            return Err(HostError::UnknownResource(name.to_owned()));
        }
        self.reconfigure(set)
    }

    /// The latencies of every `kind` health check since the host started
    /// (host → monitor → resource → host), as a histogram over
    /// [`CHECK_LATENCY_BUCKETS_US`](crate::CHECK_LATENCY_BUCKETS_US).
    ///
    /// ```no_run
    /// # fn show(host: &clusterkit_host::Host) {
    /// use clusterkit_host::CheckKind;
    /// let looks = host.check_latency(CheckKind::LooksAlive);
    /// let within_1ms = looks.buckets.iter().find(|(le_us, _)| *le_us == 1_000).unwrap().1;
    /// println!("{within_1ms} of {} looks_alive checks answered within 1 ms", looks.count);
    /// # }
    /// ```
    pub fn check_latency(&self, kind: CheckKind) -> LatencySnapshot {
        self.check_latency.snapshot(kind)
    }

    /// Every event from now on. The receiver may be dropped at any time.
    pub fn subscribe(&self) -> Receiver<Event> {
        let (tx, rx) = mpsc::channel();
        self.register(Subscriber::Unbounded(tx));
        rx
    }

    /// Events from now on, at most `capacity` waiting: a subscriber that
    /// falls further behind is dropped (its receiver then ends), so a reader
    /// that stopped reading costs the host a bounded amount of memory. For
    /// subscribers outside the host's control (the control socket's
    /// `events --follow`).
    pub fn subscribe_bounded(&self, capacity: usize) -> Receiver<Event> {
        let (tx, rx) = mpsc::sync_channel(capacity);
        self.register(Subscriber::Bounded(tx));
        rx
    }

    fn register(&self, subscriber: Subscriber) {
        let (registered, answer) = mpsc::sync_channel(1);
        // Registered before this returns: no event falls between a caller's
        // look at the event log and the subscription.
        if self
            .send(Message::Subscribe(subscriber, registered))
            .is_ok()
        {
            let _ = answer.recv();
        }
    }

    /// Waits until `condition` holds for the statuses, or `timeout` passes.
    /// Wakes on every status change, a health check's counters included:
    /// no polling.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&[ResourceStatus]) -> bool,
    ) -> Result<(), HostError> {
        self.wait_on(&self.board.changed, timeout, what, |board| {
            condition(&board.statuses).then_some(Ok(()))
        })
    }

    /// Like [`wait_for`](Host::wait_for), but woken only when a status
    /// changes other than by a health check's counters (`health_checks`,
    /// `last_check_latency`, `degraded_count`): for a condition on states,
    /// restarts or health results, it does not look at every resource after
    /// every check. The condition is also tested at the start and when
    /// `timeout` passes.
    ///
    /// ```no_run
    /// # fn f(host: &clusterkit_host::Host) -> Result<(), clusterkit_host::HostError> {
    /// use std::time::Duration;
    /// use clusterkit::ResourceState;
    /// host.wait_for_states(Duration::from_secs(30), "every resource online", |statuses| {
    ///     statuses.iter().all(|s| s.state == ResourceState::Online)
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn wait_for_states(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&[ResourceStatus]) -> bool,
    ) -> Result<(), HostError> {
        self.wait_on(&self.board.states_changed, timeout, what, |board| {
            condition(&board.statuses).then_some(Ok(()))
        })
    }

    /// Waits until `condition` holds for `name`'s status, or `timeout`
    /// passes; woken like [`wait_for_states`](Host::wait_for_states), and
    /// looks at this one resource only. Returns its status.
    ///
    /// ```no_run
    /// # fn f(host: &clusterkit_host::Host) -> Result<(), clusterkit_host::HostError> {
    /// use std::time::Duration;
    /// let status = host.wait_for_resource("web", Duration::from_secs(30), "web settled", |s| {
    ///     !s.state.is_pending()
    /// })?;
    /// println!("web is {}", status.state);
    /// # Ok(()) }
    /// ```
    pub fn wait_for_resource(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&ResourceStatus) -> bool,
    ) -> Result<ResourceStatus, HostError> {
        self.wait_on(
            &self.board.states_changed,
            timeout,
            what,
            |board| match board.get(name) {
                None => Some(Err(HostError::UnknownResource(name.to_owned()))),
                Some(status) => condition(status).then(|| Ok(status.clone())),
            },
        )
    }

    /// How many resources are in each state now.
    pub fn state_counts(&self) -> StateCounts {
        self.board().counts
    }

    /// Waits until `condition` holds for the counts of resources by state,
    /// or `timeout` passes; woken like [`wait_for_states`](Host::wait_for_states),
    /// and costs nothing per resource however many there are.
    ///
    /// ```no_run
    /// # fn f(host: &clusterkit_host::Host) -> Result<(), clusterkit_host::HostError> {
    /// use std::time::Duration;
    /// use clusterkit::ResourceState;
    /// host.wait_for_counts(Duration::from_secs(30), "nothing pending", |counts| {
    ///     counts.pending() == 0
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn wait_for_counts(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&StateCounts) -> bool,
    ) -> Result<(), HostError> {
        self.wait_on(&self.board.states_changed, timeout, what, |board| {
            condition(&board.counts).then_some(Ok(()))
        })
    }

    /// Looks at the board at once and after each `signal`, until `look`
    /// has an answer or `timeout` passes.
    fn wait_on<T>(
        &self,
        signal: &Condvar,
        timeout: Duration,
        what: &str,
        mut look: impl FnMut(&Board) -> Option<Result<T, HostError>>,
    ) -> Result<T, HostError> {
        let deadline = Instant::now() + timeout;
        let mut board = self.board();
        loop {
            if let Some(answer) = look(&board) {
                return answer;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HostError::Timeout(timeout, what.to_owned()));
            }
            board = signal
                .wait_timeout(board, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until `name` is in `state`.
    pub fn wait_for_state(
        &self,
        name: &str,
        state: ResourceState,
        timeout: Duration,
    ) -> Result<(), HostError> {
        self.wait_for_resource(name, timeout, &format!("`{name}` to be {state}"), |r| {
            r.state == state
        })
        .map(drop)
    }

    /// Stops everything: takes every resource offline (dependents first),
    /// closes them (`close` runs in each), then shuts down. For node
    /// maintenance; [`shutdown`](Self::shutdown) leaves workloads running.
    pub fn stop_all(self, timeout: Duration) -> Result<(), HostError> {
        let names: Vec<String> = self.status().into_iter().map(|s| s.name).collect();
        for name in &names {
            self.offline(name)?;
        }
        self.wait_for(timeout, "every resource offline", |s| {
            s.iter().all(|r| {
                matches!(
                    r.state,
                    ResourceState::Offline | ResourceState::Failed | ResourceState::Initializing
                )
            })
        })?;
        let result = self.ask(Command::CloseAll).map(drop);
        self.shutdown();
        result
    }

    /// Stops the host: monitors exit, workloads keep running (a host started
    /// again on the same state directory re-attaches to them). Take
    /// resources offline first for a full stop.
    pub fn shutdown(self) {
        self.stop();
    }

    /// Stops the host as [`shutdown`](Self::shutdown) does, through a shared
    /// reference: for a host that other threads hold too (a control socket's
    /// clients), whose later requests get [`HostError::Stopped`]. The engine
    /// emits `host_stopped` and syncs the event log before this returns.
    pub fn shutdown_shared(&self) {
        self.stop();
    }

    fn stop(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(thread) = thread else {
            return;
        };
        let (reply, answer) = mpsc::sync_channel(1);
        if self
            .send(Message::Request(Command::Shutdown, reply))
            .is_ok()
        {
            let _ = answer.recv();
        }
        let _ = thread.join();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
    }
}
