//! The driver: the thin layer that carries out the core's actions. It owns
//! everything the core must not touch: the clock, the monitor processes and
//! their sockets (a reader and a waiter thread per monitor feed the input
//! queue), `/proc`, the state file, the event log, the published statuses
//! and the channels of waiting callers.

use std::collections::HashMap;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::HostError;
use crate::escalation::{ESCALATION_EXIT_CODE, Escalation};
use crate::events::{Event, EventSink, Subscriber};
use crate::metrics::{CheckKind, CheckLatency};
use crate::process::{self, MonitorProgram, ProcessControl};
use crate::protocol::{self, FromMonitor, ToMonitor};
use crate::state_file::{ClockMark, StateFile, StateLock};
use crate::status::{ResourceStatus, StatusBoard};

use super::calls::CallKind;
use super::core::{Action, Command, Core, CoreConfig, Input};
use super::ids::{CallId, MonitorId, RequestId, ResourceId};

/// A host's socket write that blocks this long means the monitor is stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the engine sleeps with nothing scheduled.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// What reaches the engine thread.
pub(crate) enum Message {
    /// From a monitor's reader or waiter thread.
    Monitor(Input),
    /// An operator's request and where its answer goes.
    Request(Command, SyncSender<Result<Vec<u8>, HostError>>),
    /// A new event subscriber; answered once registered.
    Subscribe(Subscriber, SyncSender<()>),
    /// Is the engine thread responsive?
    Ping(SyncSender<()>),
}

/// Everything the driver needs besides the core.
pub(crate) struct DriverConfig {
    /// The state directory's lock, held as long as the engine runs.
    pub(crate) lock: StateLock,
    pub(crate) state_dir: PathBuf,
    pub(crate) program: MonitorProgram,
    pub(crate) process: Arc<dyn ProcessControl>,
    pub(crate) escalation: Escalation,
    pub(crate) subscribers: Vec<Sender<Event>>,
    /// Where health-check latencies are counted.
    pub(crate) check_latency: Arc<CheckLatency>,
    /// When `events.jsonl` is rotated.
    pub(crate) event_log: crate::events::EventLogLimits,
}

/// The engine thread: the core plus the I/O it asks for.
pub(crate) struct Driver {
    core: Core,
    inputs: Receiver<Message>,
    sender: SyncSender<Message>,
    program: MonitorProgram,
    process: Arc<dyn ProcessControl>,
    escalation: Escalation,
    board: Arc<StatusBoard>,
    events: EventSink,
    state_file: StateFile,
    writers: HashMap<MonitorId, UnixStream>,
    requests: HashMap<RequestId, SyncSender<Result<Vec<u8>, HostError>>>,
    next_request: u64,
    /// The newest state to write, and who waits for it: a batch of inputs
    /// writes the state file once, however many changes it made.
    unsaved: Option<(crate::state_file::PersistedState, Vec<RequestId>)>,
    check_latency: Arc<CheckLatency>,
    _lock: StateLock,
}

impl Driver {
    pub(crate) fn new(
        config: DriverConfig,
        core_config: CoreConfig,
        board: Arc<StatusBoard>,
        inputs: Receiver<Message>,
        sender: SyncSender<Message>,
    ) -> Result<Driver, HostError> {
        let state_file = StateFile::new(&config.state_dir);
        let persisted = state_file
            .load()
            .map_err(|problem| HostError::StateFile { problem })?;
        let mut events = EventSink::open(&config.state_dir, config.event_log).map_err(|e| {
            HostError::StateFile {
                problem: format!("{}: {e}", config.state_dir.join("events.jsonl").display()),
            }
        })?;
        for subscriber in config.subscribers {
            events.subscribe(subscriber);
        }
        let core = Core::new(core_config, &persisted, Instant::now(), clock_mark());
        Ok(Driver {
            core,
            inputs,
            sender,
            program: config.program,
            process: config.process,
            escalation: config.escalation,
            board,
            events,
            state_file,
            writers: HashMap::new(),
            requests: HashMap::new(),
            next_request: 0,
            unsaved: None,
            check_latency: config.check_latency,
            _lock: config.lock,
        })
    }

    /// Runs until the host has stopped.
    pub(crate) fn run(mut self) {
        loop {
            self.core.handle_timeout(Instant::now());
            self.carry_out();
            self.save_state();
            self.publish();
            if self.core.is_stopped() {
                break;
            }
            let wait = self
                .core
                .next_deadline()
                .map_or(IDLE_WAIT, |at| at.saturating_duration_since(Instant::now()));
            match self.inputs.recv_timeout(wait) {
                Ok(message) => {
                    self.receive(message);
                    // Take what else is queued before the timers and the
                    // reconciling above: work per batch, not per frame.
                    while let Ok(message) = self.inputs.try_recv() {
                        self.receive(message);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.events.sync();
    }

    fn receive(&mut self, message: Message) {
        match message {
            Message::Monitor(input) => {
                let now = Instant::now();
                if let Input::Frame {
                    monitor,
                    message: FromMonitor::Reply { call, .. },
                } = &input
                {
                    self.count_check_latency(*monitor, CallId(*call), now);
                }
                self.core.handle(input, now)
            }
            Message::Request(command, reply) => {
                self.next_request += 1;
                let request = RequestId(self.next_request);
                self.requests.insert(request, reply);
                self.core
                    .handle(Input::Command(request, command), Instant::now());
            }
            Message::Subscribe(subscriber, registered) => {
                self.events.subscribe(subscriber);
                let _ = registered.send(());
            }
            Message::Ping(reply) => {
                let _ = reply.send(());
            }
        }
        self.carry_out();
    }

    /// Carries out the core's actions in order; what they cause goes back
    /// into the core at once.
    fn carry_out(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Spawn { monitor } => self.spawn(monitor),
                Action::Send { monitor, message } => {
                    let Some(writer) = self.writers.get_mut(&monitor) else {
                        continue;
                    };
                    match protocol::write_frame(writer, &message.encode()) {
                        Ok(()) => {
                            if let ToMonitor::Call { call, .. } = message {
                                let at = Instant::now();
                                self.core.calls.note_written(CallId(call), at);
                            }
                        }
                        // The monitor closed its end: it is exiting. Its exit
                        // (and the crash report it may have sent) drives recovery.
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::BrokenPipe
                                    | std::io::ErrorKind::ConnectionReset
                            ) => {}
                        Err(e) => self.core.handle(
                            Input::WriteFailed {
                                monitor,
                                error: e.to_string(),
                            },
                            Instant::now(),
                        ),
                    }
                }
                Action::Release { monitor } => {
                    self.writers.remove(&monitor);
                }
                Action::Diagnose { monitor, call, pid } => {
                    let threads = process::thread_diagnostics(pid);
                    let stopped = all_stopped(&threads);
                    let input = Input::Diagnosed {
                        monitor,
                        call,
                        threads,
                        stopped,
                    };
                    self.core.handle(input, Instant::now());
                }
                Action::Kill { pid, mut event } => {
                    if let Err(e) = self.process.kill(pid) {
                        event = event.with("kill_error", e.to_string());
                    }
                    self.emit(event);
                }
                Action::Emit(event) => self.emit(event),
                Action::Publish(statuses) => self.show(statuses),
                Action::PublishChecks(counters) => self.count_checks(counters),
                Action::Forget(i) => {
                    self.board
                        .board
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .forget(i);
                    self.board.changed.notify_all();
                    self.board.states_changed.notify_all();
                }
                Action::Persist { state, reply } => match &mut self.unsaved {
                    Some((newest, waiting)) => {
                        *newest = state;
                        waiting.extend(reply);
                    }
                    None => self.unsaved = Some((state, reply.into_iter().collect())),
                },
                Action::Reply { request, answer } => {
                    if let Some(reply) = self.requests.remove(&request) {
                        let _ = reply.send(answer);
                    }
                }
                Action::Escalate(event) => {
                    let action = match self.escalation {
                        Escalation::ExitProcess => "exit",
                        Escalation::Hook(_) => "hook",
                    };
                    let event = event.with("action", action);
                    self.emit(event.clone());
                    match &self.escalation {
                        Escalation::ExitProcess => {
                            self.save_state();
                            self.events.sync();
                            std::process::exit(ESCALATION_EXIT_CODE);
                        }
                        Escalation::Hook(hook) => hook(&event),
                    }
                }
                Action::Stopped { request } => {
                    self.save_state();
                    self.events.sync();
                    if let Some(reply) = request.and_then(|r| self.requests.remove(&r)) {
                        let _ = reply.send(Ok(Vec::new()));
                    }
                }
            }
        }
    }

    /// Counts a health check's latency as the core will see it (from the
    /// call's write to its reply), before the core takes the call; a reply
    /// from another monitor than the call's is not one (the core drops it).
    fn count_check_latency(&self, monitor: MonitorId, call: CallId, now: Instant) {
        let Some(call) = self.core.calls.get(call).filter(|c| c.monitor == monitor) else {
            return;
        };
        let kind = match call.kind {
            CallKind::LooksAlive => CheckKind::LooksAlive,
            CallKind::IsAlive => CheckKind::IsAlive,
            _ => return,
        };
        let since = call.written.unwrap_or(call.started);
        self.check_latency
            .record(kind, now.saturating_duration_since(since));
    }

    fn emit(&mut self, event: Event) {
        self.events.emit(event);
    }

    /// Writes the newest state asked for, then answers those who waited
    /// for it; the core hears how it went.
    fn save_state(&mut self) {
        let Some((state, replies)) = self.unsaved.take() else {
            return;
        };
        let error = self.state_file.save(&state).err().map(|e| {
            let path = self.state_file.path().display().to_string();
            tracing::error!(target: "clusterkit::host", "cannot write {path}: {e}");
            format!("{path}: {e}")
        });
        for reply in replies.into_iter().filter_map(|r| self.requests.remove(&r)) {
            let answer = match &error {
                None => Ok(Vec::new()),
                Some(problem) => Err(HostError::StateFile {
                    problem: format!(
                        "done, but not recorded: {problem}; the host retries every second, and \
                         a host restarted before it succeeds would not know"
                    ),
                }),
            };
            let _ = reply.send(answer);
        }
        self.core.handle(Input::Persisted { error }, Instant::now());
        self.carry_out();
    }

    fn spawn(&mut self, monitor: MonitorId) {
        let now = Instant::now();
        let spawned = match process::spawn_monitor(&self.program, self.process.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                let error = e.to_string();
                self.core.handle(Input::SpawnFailed { monitor, error }, now);
                return;
            }
        };
        let pid = spawned.child.id();
        let _ = spawned.socket.set_write_timeout(Some(WRITE_TIMEOUT));
        let reader = match spawned.socket.try_clone() {
            Ok(r) => r,
            Err(e) => {
                let error = format!("cloning the monitor's socket: {e}");
                self.core.handle(Input::SpawnFailed { monitor, error }, now);
                return;
            }
        };
        let tx = self.sender.clone();
        let _ = std::thread::Builder::new()
            .name(format!("ck-monitor-{monitor}-reader"))
            .spawn(move || read_monitor(monitor, reader, tx));
        let tx = self.sender.clone();
        let mut child = spawned.child;
        let _ = std::thread::Builder::new()
            .name(format!("ck-monitor-{monitor}-waiter"))
            .spawn(move || {
                use std::os::unix::process::ExitStatusExt;
                let (status, signal) = match child.wait() {
                    Ok(s) => (s.to_string(), s.signal()),
                    Err(e) => (format!("wait failed: {e}"), None),
                };
                let _ = tx.send(Message::Monitor(Input::Exited {
                    monitor,
                    status,
                    signal,
                }));
            });
        self.writers.insert(monitor, spawned.socket);
        self.core.handle(Input::Spawned { monitor, pid }, now);
    }

    /// Copies the statuses that changed since the last event to the board.
    fn publish(&mut self) {
        self.core.publish_changed();
        self.carry_out();
    }

    /// Puts statuses on the board and wakes its waiters.
    fn show(&self, changed: Vec<(ResourceId, ResourceStatus)>) {
        let mut board = self
            .board
            .board
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (i, status) in changed {
            board.show(i, status);
        }
        drop(board);
        self.board.changed.notify_all();
        self.board.states_changed.notify_all();
    }

    /// Updates health-check counters on the board; only those waiting for
    /// any change are woken.
    fn count_checks(&self, counters: Vec<(ResourceId, crate::status::CheckCounters)>) {
        let mut board = self
            .board
            .board
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (i, counters) in counters {
            board.count_checks(i, counters);
        }
        drop(board);
        self.board.changed.notify_all();
    }
}

/// Whether every thread of the diagnostics is stopped (`T`, or `t` when
/// traced): the process was stopped from outside.
fn all_stopped(threads: &serde_json::Value) -> bool {
    threads.as_array().is_some_and(|threads| {
        !threads.is_empty()
            && threads
                .iter()
                .all(|t| matches!(t["state"].as_str(), Some("T" | "t")))
    })
}

/// Now, on the wall clock and the boot clock, with the boot's id.
fn clock_mark() -> ClockMark {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let boot_ms = if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } == 0 {
        (ts.tv_sec as u64).saturating_mul(1000) + (ts.tv_nsec as u64) / 1_000_000
    } else {
        0
    };
    // Without a boot id, restart times are not re-based across a step.
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .and_then(|id| u128::from_str_radix(&id.trim().replace('-', ""), 16).ok())
        .unwrap_or(0);
    ClockMark {
        boot_id,
        boot_ms,
        unix_ms,
    }
}

/// The reader thread of one monitor: frames in, inputs out.
fn read_monitor(monitor: MonitorId, socket: UnixStream, tx: SyncSender<Message>) {
    let mut reader = BufReader::with_capacity(64 << 10, socket);
    let mut buf = Vec::new();
    loop {
        let error = match protocol::read_frame(&mut reader, &mut buf) {
            Ok(()) => match FromMonitor::decode(&buf) {
                Ok(message) => {
                    let input = Input::Frame { monitor, message };
                    if tx.send(Message::Monitor(input)).is_err() {
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
        let _ = tx.send(Message::Monitor(Input::Disconnected { monitor, error }));
        return;
    }
}
