//! The simulated world: a clock, monitors that answer calls the way real
//! ones do (or hang, fail, crash, stop or lie when told to), workloads that
//! run or not, and an operator. One seed decides everything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::config::{Placement, RestartPolicy, Timing};
use crate::engine::core::{Action, Command, Core, CoreConfig, Input, ResourceSpec};
use crate::engine::ids::{MonitorId, RequestId, ResourceId};
use crate::engine::lifecycle::Phase;
use crate::events::{Event, EventKind};
use crate::protocol::{FromMonitor, PROTOCOL_VERSION};
use crate::state_file::PersistedState;

use super::invariants::Checker;

/// A small, fast, seedable generator (xorshift64*): the simulation needs
/// no statistical quality, only the same numbers for the same seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `percent` %.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What a resource is told to do on its next call of one entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Never return.
    Hang,
    /// Return after this long.
    Slow(Duration),
    /// Return an error.
    Fail,
    /// Panic (an error the monitor reports as such).
    Panic,
    /// Abort the whole monitor.
    Abort,
    /// Write bytes that are not a frame, then carry on.
    Garbage,
}

/// A workload, as the machine sees it: running or not.
#[derive(Debug, Clone, Default)]
pub(crate) struct Workload {
    pub(crate) running: bool,
    /// It was stopped by force (a failure, a crash, a terminate): its next
    /// start is a restart and must be announced.
    pub(crate) restart_owed: bool,
    pub(crate) starts: u64,
    /// Since it last started, something went wrong with this resource
    /// itself (a fault in its calls, its workload died, it was blamed or
    /// failed, a transition of its own was cut short).
    pub(crate) own_trouble: bool,
    /// The host said its terminate failed: it may run on, by design.
    pub(crate) terminate_failed: bool,
}

/// A simulated monitor process.
#[derive(Debug, Default)]
pub(crate) struct SimMonitor {
    pub(crate) pid: u32,
    /// SIGSTOPped: it answers nothing until it is killed.
    pub(crate) stopped: bool,
    /// Its exit is on the way.
    pub(crate) dying: bool,
    pub(crate) open: BTreeSet<ResourceId>,
    pub(crate) online: BTreeSet<ResourceId>,
}

/// Bugs the project once had (see CHANGELOG.md), switched back on to show
/// that the simulation finds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reintroduced {
    /// A culprit is isolated without going through its restart policy.
    pub(crate) culprit_skips_policy: bool,
    /// A stop (`stop_all`) whose `close` killed a monitor starts a new one
    /// and re-opens what it was closing.
    pub(crate) stop_starts_monitors: bool,
    /// A monitor that dies while its resources are re-attached makes them
    /// forget they were online (they are started again, unannounced).
    pub(crate) reattach_forgotten_on_death: bool,
}

/// One simulated run.
pub(crate) struct World {
    pub(crate) core: Core,
    pub(crate) now: Instant,
    pub(crate) rng: Rng,
    pub(crate) specs: Vec<ResourceSpec>,
    pub(crate) reattach: Vec<bool>,
    pub(crate) monitors: BTreeMap<MonitorId, SimMonitor>,
    next_pid: u32,
    queue: BTreeMap<(Instant, u64), (MonitorId, Delivery)>,
    seq: u64,
    pub(crate) workloads: Vec<Workload>,
    pub(crate) faults: BTreeMap<(ResourceId, &'static str), Fault>,
    pub(crate) persisted: PersistedState,
    pub(crate) history: Vec<String>,
    pub(crate) checker: Checker,
    next_request: u64,
    pub(crate) bugs: Reintroduced,
    start: Instant,
    /// The host generation: a host restart starts a new core.
    pub(crate) generation: u32,
    violations_noted: usize,
    /// The next this many monitors exit before saying hello.
    pub(crate) broken_spawns: u32,
    /// The host stopped (it could not start): it is started again.
    host_stopped: bool,
    /// Print each step as it happens (`SIM_DEBUG`).
    echo: bool,
    /// The operator's answers.
    pub(crate) replies: BTreeMap<RequestId, Result<(), String>>,
    /// Faults that hit every call of an entry point, until removed.
    pub(crate) sticky_faults: BTreeMap<(ResourceId, &'static str), Fault>,
    /// The state file cannot be written until then (a full disk).
    pub(crate) disk_full_until: Option<Instant>,
    /// When each placement's monitors were started (the last 10 s).
    pub(crate) spawns: BTreeMap<crate::engine::monitors::MonitorKey, Vec<Instant>>,
    /// What the driver's status board would show: published statuses,
    /// with check counters updated in place.
    pub(crate) board: BTreeMap<ResourceId, crate::status::ResourceStatus>,
    /// How many whole statuses and counter-only updates were published.
    pub(crate) published: (u64, u64),
}

/// What the simulated kernel delivers to the core later.
#[derive(Debug)]
pub(crate) enum Delivery {
    Frame(FromMonitor),
    Disconnected(Option<String>),
    Exited(Option<i32>),
}

/// More monitor starts for one placement within the window is a tight
/// respawn loop.
const SPAWN_WINDOW: Duration = Duration::from_secs(10);
const MAX_SPAWNS_IN_WINDOW: usize = 40;

/// The fixed instant simulated time counts from.
const UNIX_MS: u64 = 1_800_000_000_000;

pub(crate) const TYPE_REATTACH: &str = "sim-reattach";
pub(crate) const TYPE_PLAIN: &str = "sim-plain";

fn timing() -> Timing {
    Timing {
        looks_alive_interval: Duration::from_millis(500),
        is_alive_interval: Duration::from_millis(2_000),
        deadlock_timeout: Duration::from_millis(1_000),
        pending_timeout: Duration::from_millis(1_500),
        restart: RestartPolicy {
            threshold: 3,
            period: Duration::from_secs(30),
            delay: Duration::from_millis(100),
            retry_period_on_failure: Duration::from_secs(20),
            ..RestartPolicy::default()
        },
    }
}

impl World {
    /// A world of 3–8 resources of random types, placements and
    /// dependencies, decided by `seed`.
    pub(crate) fn new(seed: u64, bugs: Reintroduced) -> World {
        let mut rng = Rng::new(seed);
        let count = 3 + rng.below(6) as usize;
        let mut specs = Vec::new();
        let mut reattach = Vec::new();
        for i in 0..count {
            let can = rng.chance(70);
            let placement =
                [Placement::Core, Placement::Storage, Placement::Default][rng.below(3) as usize];
            let depends_on = if i > 0 && rng.chance(30) {
                vec![rng.below(i as u64) as usize]
            } else {
                Vec::new()
            };
            specs.push(ResourceSpec {
                name: format!("r{i}"),
                library: "/sim/libsim.so".into(),
                type_name: if can { TYPE_REATTACH } else { TYPE_PLAIN }.into(),
                properties: clusterkit::Properties::new(),
                group: "g".into(),
                depends_on,
                timing: timing(),
                placement,
                separate_monitor: rng.chance(15),
            });
            reattach.push(can);
        }
        let mut world = World::build(specs, reattach, rng, bugs);
        for (i, spec) in world.specs.iter().enumerate() {
            let line = format!(
                "config: r{i} {} {:?}{} depends on {:?}",
                spec.type_name,
                spec.placement,
                if spec.separate_monitor {
                    " separate"
                } else {
                    ""
                },
                spec.depends_on
            );
            world.history.push(line);
        }
        world.command(Command::Start);
        for i in 0..count {
            if world.rng.chance(80) {
                world.command(Command::Online(ResourceId(i)));
            }
        }
        world
    }

    /// A world of named resources in one shared monitor, none yet wanted
    /// online: for scenarios such as the recovery matrix.
    pub(crate) fn scenario(names: &[&str], reattach: bool) -> World {
        let specs = names
            .iter()
            .map(|name| ResourceSpec {
                name: (*name).into(),
                library: "/sim/libsim.so".into(),
                type_name: if reattach { TYPE_REATTACH } else { TYPE_PLAIN }.into(),
                properties: clusterkit::Properties::new(),
                group: "g".into(),
                depends_on: Vec::new(),
                timing: timing(),
                placement: Placement::Default,
                separate_monitor: false,
            })
            .collect::<Vec<_>>();
        let count = specs.len();
        World::build(
            specs,
            vec![reattach; count],
            Rng::new(1),
            Reintroduced::default(),
        )
    }

    /// A world of `specs` at the start of simulated time, its host not yet
    /// started.
    fn build(specs: Vec<ResourceSpec>, reattach: Vec<bool>, rng: Rng, bugs: Reintroduced) -> World {
        let start = super::epoch();
        let persisted = PersistedState::default();
        let count = specs.len();
        World {
            core: new_core(&specs, &persisted, start, bugs),
            now: start,
            rng,
            reattach,
            specs,
            monitors: BTreeMap::new(),
            next_pid: 1000,
            queue: BTreeMap::new(),
            seq: 0,
            workloads: vec![Workload::default(); count],
            faults: BTreeMap::new(),
            persisted,
            history: Vec::new(),
            checker: Checker::new(count),
            next_request: 0,
            bugs,
            start,
            generation: 0,
            violations_noted: 0,
            broken_spawns: 0,
            host_stopped: false,
            echo: std::env::var_os("SIM_DEBUG").is_some(),
            replies: BTreeMap::new(),
            sticky_faults: BTreeMap::new(),
            spawns: BTreeMap::new(),
            disk_full_until: None,
            board: BTreeMap::new(),
            published: (0, 0),
        }
    }

    /// Runs for `span` of simulated time.
    pub(crate) fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end && self.advance(end) {}
    }

    /// Runs until `condition` holds, for at most `span`; whether it held.
    pub(crate) fn run_until(&mut self, span: Duration, condition: impl Fn(&World) -> bool) -> bool {
        let end = self.now + span;
        while !condition(self) {
            if self.now >= end || !self.advance(end) {
                return condition(self);
            }
        }
        true
    }

    fn ms(&self) -> u128 {
        self.now.saturating_duration_since(self.start).as_millis()
    }

    pub(crate) fn note(&mut self, line: impl AsRef<str>) {
        self.note_violations();
        let line = format!("{:>7} ms  {}", self.ms(), line.as_ref());
        if self.echo {
            eprintln!("{line}");
        }
        self.history.push(line);
    }

    /// Puts the violations found since the last note into the history, where
    /// they happened.
    fn note_violations(&mut self) {
        let ms = self.ms();
        for v in &self.checker.violations[self.violations_noted..] {
            self.history.push(format!("{ms:>7} ms  VIOLATION: {v}"));
        }
        self.violations_noted = self.checker.violations.len();
    }

    /// An operator's command; its answer lands in `replies`.
    pub(crate) fn command(&mut self, command: Command) -> RequestId {
        self.next_request += 1;
        self.note(format!("operator: {command:?}"));
        if let Command::Online(_) | Command::Cleanup(_) = command {
            // An operator online or cleanup clears a failed resource's history.
            for w in &mut self.workloads {
                w.restart_owed = false;
            }
        }
        let request = RequestId(self.next_request);
        self.core.handle(Input::Command(request, command), self.now);
        self.settle();
        request
    }

    pub(crate) fn deliver_later(
        &mut self,
        after: Duration,
        monitor: MonitorId,
        delivery: Delivery,
    ) {
        self.seq += 1;
        self.queue
            .insert((self.now + after, self.seq), (monitor, delivery));
    }

    pub(crate) fn latency(&mut self) -> Duration {
        Duration::from_micros(50 + self.rng.below(5_000))
    }

    /// Advances to the next moment anything happens (at most `limit`), and
    /// lets it happen. Returns false when nothing is left to happen.
    pub(crate) fn advance(&mut self, limit: Instant) -> bool {
        if std::mem::take(&mut self.host_stopped) {
            self.restart_host();
        }
        let next_delivery = self.queue.keys().next().map(|(at, _)| *at);
        let next = [next_delivery, self.core.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let Some(at) = next else {
            self.now = self.now.max(limit);
            return false;
        };
        if at > limit {
            self.now = self.now.max(limit);
            return true;
        }
        self.now = self.now.max(at);
        self.checker.before_inputs(&self.core, self.now);
        while let Some((&key, _)) = self.queue.iter().next() {
            if key.0 > self.now {
                break;
            }
            let (monitor, delivery) = self.queue.remove(&key).expect("present");
            if !matches!(delivery, Delivery::Frame(_)) {
                self.note_cut_short(monitor);
            }
            let input = match delivery {
                Delivery::Frame(message) => Input::Frame { monitor, message },
                Delivery::Disconnected(error) => Input::Disconnected { monitor, error },
                Delivery::Exited(signal) => {
                    self.monitors.remove(&monitor);
                    let status = match signal {
                        Some(s) => format!("signal: {s}"),
                        None => "exit status: 0".into(),
                    };
                    Input::Exited {
                        monitor,
                        status,
                        signal,
                    }
                }
            };
            self.core.handle(input, self.now);
            self.carry_out();
        }
        self.settle();
        true
    }

    /// A monitor is going: a transition under way in it is its resource's
    /// own trouble (it cannot be adopted half done).
    fn note_cut_short(&mut self, monitor: MonitorId) {
        for (index, r) in self.core.resources.iter().enumerate() {
            let cut = r.monitor == Some(monitor)
                && matches!(
                    r.phase,
                    Phase::GoingOnline { .. }
                        | Phase::GoingOffline { .. }
                        | Phase::Pending { .. }
                        | Phase::Terminating { .. }
                );
            if cut {
                self.workloads[index].own_trouble = true;
            }
        }
    }

    /// Lets the core act on time, then carries out what it asks for.
    pub(crate) fn settle(&mut self) {
        self.core.handle_timeout(self.now);
        self.carry_out();
        self.core.publish_changed();
        self.carry_out();
        self.check_board();
        Checker::after_step(self);
        self.note_violations();
    }

    fn carry_out(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Spawn { monitor } => {
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    self.monitors.insert(
                        monitor,
                        SimMonitor {
                            pid,
                            ..SimMonitor::default()
                        },
                    );
                    self.note(format!("spawn monitor {monitor} pid {pid}"));
                    if let Some(key) = self.core.monitors.get(&monitor).map(|m| m.key) {
                        let now = self.now;
                        let recent = self.spawns.entry(key).or_default();
                        recent.retain(|t| now.saturating_duration_since(*t) < SPAWN_WINDOW);
                        recent.push(now);
                        if recent.len() > MAX_SPAWNS_IN_WINDOW {
                            let n = recent.len();
                            self.checker.violation(format!(
                                "{key:?}: {n} monitors started within {SPAWN_WINDOW:?}: a tight respawn loop"
                            ));
                        }
                    }
                    self.core.handle(Input::Spawned { monitor, pid }, self.now);
                    if self.broken_spawns > 0 {
                        // A broken monitor binary: it exits before its hello.
                        self.broken_spawns -= 1;
                        self.note(format!("monitor {monitor} exits at once"));
                        self.die(monitor, None);
                        continue;
                    }
                    let latency = self.latency();
                    let hello = FromMonitor::Hello {
                        pid,
                        protocol: PROTOCOL_VERSION,
                    };
                    self.deliver_later(latency, monitor, Delivery::Frame(hello));
                }
                Action::Send { monitor, message } => self.receive(monitor, message),
                Action::Release { .. } => {}
                Action::Publish(statuses) => {
                    self.published.0 += statuses.len() as u64;
                    self.board.extend(statuses);
                }
                Action::PublishChecks(counters) => {
                    self.published.1 += counters.len() as u64;
                    for (i, c) in counters {
                        if let Some(status) = self.board.get_mut(&i) {
                            status.health_checks = c.health_checks;
                            status.last_check_latency = c.last_check_latency;
                            status.degraded_count = c.degraded_count;
                        }
                    }
                }
                Action::Forget(i) => {
                    self.board.remove(&i);
                }
                Action::Diagnose { monitor, call, .. } => {
                    let stopped = self.monitors.get(&monitor).is_some_and(|m| m.stopped);
                    let state = if stopped { "T" } else { "S" };
                    let input = Input::Diagnosed {
                        monitor,
                        call,
                        threads: serde_json::json!([{ "tid": 1, "state": state }]),
                        stopped,
                    };
                    self.core.handle(input, self.now);
                }
                Action::Kill { pid, event } => {
                    self.record(event);
                    let found = self
                        .monitors
                        .iter_mut()
                        .find(|(_, m)| m.pid == pid && !m.dying)
                        .map(|(id, m)| {
                            m.dying = true;
                            *id
                        });
                    if let Some(monitor) = found {
                        self.die(monitor, Some(libc::SIGKILL));
                    }
                }
                Action::Emit(event) => self.record(event),
                Action::Persist { state, reply } => {
                    let full = self.disk_full_until.is_some_and(|until| self.now < until);
                    let error = full.then(|| "state.json: No space left on device".to_owned());
                    if !full {
                        self.persisted = state;
                    }
                    if let Some(request) = reply {
                        let answer = match &error {
                            None => Ok(()),
                            Some(e) => Err(format!("done, but not recorded: {e}")),
                        };
                        self.note(format!("reply {}: {answer:?}", request.0));
                        self.replies.insert(request, answer);
                    }
                    self.core.handle(Input::Persisted { error }, self.now);
                }
                Action::Reply { request, answer } => {
                    let answer = answer.map(drop).map_err(|e| e.to_string());
                    self.note(format!("reply {}: {answer:?}", request.0));
                    self.replies.insert(request, answer);
                }
                Action::Escalate(event) => self.record(event),
                Action::Stopped { .. } => {
                    // As a service manager would: start it again.
                    self.note("host stopped");
                    self.host_stopped = true;
                }
            }
        }
    }

    fn record(&mut self, event: Event) {
        let mut line = format!("event {}", event.kind.name());
        if let Some(r) = &event.resource {
            let _ = write!(line, " {r}");
        }
        for (k, v) in &event.fields {
            let _ = write!(line, " {k}={v}");
        }
        self.note(line);
        if event.kind == EventKind::ResourceRestarted
            && let Some(i) = self.resource_named(event.resource.as_deref())
        {
            self.workloads[i.0].restart_owed = false;
        }
        if matches!(
            event.kind,
            EventKind::ResourceFailed | EventKind::HealthFailed | EventKind::ResourceIsolated
        ) && let Some(i) = self.resource_named(event.resource.as_deref())
        {
            self.workloads[i.0].own_trouble = true;
        }
        if event.field("terminate_failed").is_some()
            && let Some(i) = self.resource_named(event.resource.as_deref())
        {
            self.workloads[i.0].terminate_failed = true;
        }
        let suspects = event.field("suspects").and_then(|v| v.as_array());
        for name in suspects.into_iter().flatten() {
            if let Some(i) = self.resource_named(name.as_str()) {
                self.workloads[i.0].own_trouble = true;
            }
        }
        self.checker.on_event(&event);
    }

    pub(crate) fn resource_named(&self, name: Option<&str>) -> Option<ResourceId> {
        let name = name?;
        self.specs
            .iter()
            .position(|s| s.name == name)
            .map(ResourceId)
    }

    /// The monitor exits (killed, crashed, shut down): the kernel reports
    /// its exit and the end of its socket, in either order.
    pub(crate) fn die(&mut self, monitor: MonitorId, signal: Option<i32>) {
        if let Some(m) = self.monitors.get_mut(&monitor) {
            m.dying = true;
        }
        let (a, b) = (self.latency(), self.latency());
        self.deliver_later(a, monitor, Delivery::Exited(signal));
        self.deliver_later(b, monitor, Delivery::Disconnected(None));
    }

    /// The host process is killed and started again on the same state:
    /// its monitors die with it (parent-death signal), workloads go on.
    /// The board shows what the core would publish now: every resource's
    /// state, health result and check counters (a counter-only update must
    /// never leave a stale field behind).
    fn check_board(&mut self) {
        let mut stale = Vec::new();
        for (&i, shown) in &self.board {
            if self.core.res(i).retired {
                continue;
            }
            let now = self.core.status(i);
            let fields = |s: &crate::status::ResourceStatus| {
                (
                    s.state,
                    s.last_health.clone(),
                    s.health_checks,
                    s.last_check_latency,
                    s.degraded_count,
                    s.restarts,
                )
            };
            if fields(shown) != fields(&now) {
                stale.push(format!(
                    "{}: the board shows {:?}, the core {:?}",
                    now.name,
                    fields(shown),
                    fields(&now)
                ));
            }
        }
        for problem in stale {
            self.checker.violation(problem);
        }
    }

    pub(crate) fn restart_host(&mut self) {
        self.note("host killed and started again");
        self.board.clear();
        // A killed host's monitors die with it; their workloads run on.
        self.monitors.clear();
        self.queue.clear();
        self.generation += 1;
        self.core = new_core(&self.specs, &self.persisted, self.now, self.bugs);
        self.checker.on_host_restart(&self.core, &self.persisted);
        self.command(Command::Start);
    }
}

/// The simulated clocks at `now`: one boot, the wall clock in step.
fn mark_at(now: Instant) -> crate::state_file::ClockMark {
    let since =
        u64::try_from(now.saturating_duration_since(super::epoch()).as_millis()).unwrap_or(0);
    crate::state_file::ClockMark {
        boot_id: 1,
        boot_ms: since,
        unix_ms: UNIX_MS + since,
    }
}

fn new_core(
    specs: &[ResourceSpec],
    persisted: &PersistedState,
    now: Instant,
    bugs: Reintroduced,
) -> Core {
    let mut core = Core::new(
        CoreConfig {
            resources: specs.to_vec(),
            default_timing: timing(),
            host_pid: 1,
        },
        persisted,
        now,
        mark_at(now),
    );
    core.reintroduced = bugs;
    core
}
