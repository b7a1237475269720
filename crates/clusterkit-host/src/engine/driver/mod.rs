//! The driver: the thin layer that carries out the core's actions. It owns
//! everything the core must not touch: the clock, the monitor processes and
//! their sockets, `/proc`, the state file, the event log, the published
//! statuses and the channels of waiting callers.
//!
//! The engine thread waits on its monitors itself: every monitor socket is
//! non-blocking and in one epoll set ([`poller`]), beside an eventfd that
//! senders of a [`Message`] (the [`Host`](crate::Host) handle, the spawner,
//! the waiter threads) write after queueing. The thread sleeps in one
//! `epoll_wait` whose timeout is the core's next deadline, so a reply costs
//! no thread hop: the bytes are read, every complete frame of the read is
//! decoded in place from the [`connection`]'s buffer and handed to the core
//! as a batch.
//!
//! What the core sends during a pass is appended to each monitor's output
//! buffer and written with one `write` per monitor at the end of the pass;
//! a call's deadline accounting uses the time its bytes went out. What the
//! socket does not take waits for `EPOLLOUT`; a monitor whose output makes
//! no progress for [`WRITE_TIMEOUT`] is stuck and reported as a failed write.
//!
//! Nothing slow runs on the engine thread: monitors are started by the
//! [`spawner`] thread (a fork/exec takes milliseconds), and a burst of
//! inputs is handled in slices of [`SLICE`] with the due timers fired
//! between slices, so a deadline is not held up by a thousand replies.

mod connection;
mod persister;
mod poller;
mod spawner;

use std::path::PathBuf;
use std::sync::mpsc::{Sender, SyncSender, TryRecvError};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::HostError;
use crate::escalation::{ESCALATION_EXIT_CODE, Escalation};
use crate::events::{Event, EventSink, Subscriber};
use crate::metrics::{CheckKind, CheckLatency};
use crate::process::{self, MonitorProgram, ProcessControl};
use crate::protocol::FromMonitor;
use crate::state_file::{ClockMark, StateFile, StateLock};
use crate::status::{ResourceStatus, StatusBoard};

use super::calls::CallKind;
use super::core::{Action, Command, Core, CoreConfig, Input};
use super::ids::{CallId, IdMap, MonitorId, RequestId, ResourceId};
use connection::{Connection, Flushed, Received};
pub(crate) use poller::{EngineSender, Inbox, channel};
use poller::{Events, Poller, Ready};

/// A monitor whose output takes no byte for this long is stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the engine sleeps with nothing scheduled.
const IDLE_WAIT: Duration = Duration::from_secs(3600);
/// Timers are fired on a grid of this step: those due within one step
/// fire together, so their frames share a `write` and the engine one
/// wake-up, at most this much late.
const TIMER_SLACK: Duration = Duration::from_micros(500);
/// Inputs handled between two looks at the clock for due timers.
const SLICE: usize = 256;
/// Channel messages taken in one pass; the rest wait for the next.
const MESSAGES_PER_PASS: usize = 4 * SLICE;

/// What reaches the engine thread over its channel.
pub(crate) enum Message {
    /// From a monitor's waiter thread.
    Monitor(Input),
    /// The spawner started a monitor (its pid and the host's end of its
    /// socket), or could not.
    Spawned(MonitorId, spawner::SpawnResult),
    /// An operator's request and where its answer goes.
    Request(Command, SyncSender<Result<Vec<u8>, HostError>>),
    /// A new event subscriber; answered once registered.
    Subscribe(Subscriber, SyncSender<()>),
    /// Is the engine thread responsive?
    Ping(SyncSender<()>),
    /// The persister wrote the state it was given (`None`), or could not.
    Persisted(Option<String>),
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
    inbox: Inbox,
    poller: Poller,
    spawner: Sender<MonitorId>,
    process: Arc<dyn ProcessControl>,
    escalation: Escalation,
    board: Arc<StatusBoard>,
    events: EventSink,
    persister: persister::Persister,
    /// A state is being written by the persister, and who waits for it.
    persisting: Option<Vec<RequestId>>,
    connections: IdMap<MonitorId, Connection>,
    /// Monitors with output queued in this pass.
    to_flush: Vec<MonitorId>,
    /// Monitors whose output waits for the socket to drain.
    blocked: Vec<MonitorId>,
    /// Inputs handled since the clock was last looked at for due timers.
    since_timers: usize,
    /// The origin of the [`TIMER_SLACK`] grid.
    epoch: Instant,
    /// Messages were left in the channel: do not sleep.
    inbox_left: bool,
    requests: IdMap<RequestId, SyncSender<Result<Vec<u8>, HostError>>>,
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
        inbox: Inbox,
        sender: EngineSender,
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
        let poller = Poller::new(&inbox)
            .map_err(|e| HostError::Monitor(format!("creating the engine's epoll set: {e}")))?;
        let persister = persister::Persister::start(state_file, sender.clone())
            .map_err(|e| HostError::Monitor(format!("starting the persister thread: {e}")))?;
        let spawner = spawner::start(config.program, config.process.clone(), sender)
            .map_err(|e| HostError::Monitor(format!("starting the spawner thread: {e}")))?;
        let core = Core::new(core_config, &persisted, Instant::now(), clock_mark());
        Ok(Driver {
            core,
            inbox,
            poller,
            spawner,
            process: config.process,
            escalation: config.escalation,
            board,
            events,
            persister,
            persisting: None,
            connections: IdMap::default(),
            to_flush: Vec::new(),
            blocked: Vec::new(),
            since_timers: 0,
            epoch: Instant::now(),
            inbox_left: false,
            requests: IdMap::default(),
            next_request: 0,
            unsaved: None,
            check_latency: config.check_latency,
            _lock: config.lock,
        })
    }

    /// Runs until the host has stopped.
    pub(crate) fn run(mut self) {
        let mut ready = Vec::new();
        let mut events = Events::new();
        loop {
            let now = Instant::now();
            self.core.handle_timeout(now);
            self.carry_out();
            self.save_state();
            self.publish();
            self.flush();
            if self.core.is_stopped() {
                break;
            }
            self.report_stuck(Instant::now());
            let wait = if self.inbox_left {
                Duration::ZERO
            } else {
                self.next_wake().map_or(IDLE_WAIT, |at| {
                    on_grid(self.epoch, at).saturating_duration_since(Instant::now())
                })
            };
            self.since_timers = 0;
            ready.clear();
            self.poller.wait(&mut events, wait, |r| ready.push(r));
            for &r in &ready {
                match r {
                    Ready::Inbox => self.inbox_left = true,
                    Ready::Monitor {
                        monitor,
                        readable,
                        writable,
                    } => {
                        if writable {
                            self.to_flush.push(monitor);
                        }
                        if readable {
                            self.read(monitor);
                        }
                    }
                }
            }
            if self.inbox_left && !self.drain_inbox() {
                break;
            }
        }
        self.events.sync();
    }

    /// The earliest of the core's next deadline and a blocked write's.
    fn next_wake(&self) -> Option<Instant> {
        let stuck = self
            .blocked
            .iter()
            .filter_map(|m| self.connections.get(m))
            .filter(|c| !c.write_failed)
            .filter_map(|c| c.blocked_since)
            .map(|since| since + WRITE_TIMEOUT)
            .min();
        match (self.core.next_deadline(), stuck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes up to [`MESSAGES_PER_PASS`] queued messages; false once every
    /// sender is gone.
    fn drain_inbox(&mut self) -> bool {
        for _ in 0..MESSAGES_PER_PASS {
            match self.inbox.messages.try_recv() {
                Ok(message) => self.receive(message),
                Err(TryRecvError::Empty) => {
                    self.inbox_left = false;
                    return true;
                }
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Reads once from a monitor's socket and hands every complete frame to
    /// the core, in slices with the due timers fired between them.
    fn read(&mut self, monitor: MonitorId) {
        let Some(connection) = self.connections.get_mut(&monitor) else {
            return;
        };
        if !connection.reading {
            return;
        }
        let received = connection.receive();
        let mut now = Instant::now();
        loop {
            let Some(connection) = self.connections.get_mut(&monitor) else {
                return;
            };
            let error = match connection.next_frame() {
                None => break,
                Some(Ok(payload)) => match FromMonitor::decode(payload) {
                    Ok(message) => {
                        if let FromMonitor::Reply { call, .. } = &message {
                            self.count_check_latency(monitor, CallId(*call), now);
                        }
                        self.core.handle(Input::Frame { monitor, message }, now);
                        if self.input_handled() {
                            now = Instant::now();
                        }
                        continue;
                    }
                    Err(e) => e.to_string(),
                },
                Some(Err(e)) => e.to_string(),
            };
            // Bytes that are not a frame end the connection, as a reader
            // would stop at them.
            self.disconnect(monitor, Some(error), now);
            return;
        }
        if received == Received::Closed {
            self.disconnect(monitor, None, now);
        }
        self.carry_out();
    }

    /// Counts one handled input; every [`SLICE`], fires the timers that are
    /// due and writes what they sent. True when it looked at the clock.
    fn input_handled(&mut self) -> bool {
        self.since_timers += 1;
        if self.since_timers < SLICE {
            return false;
        }
        self.since_timers = 0;
        self.carry_out();
        let now = Instant::now();
        if self.core.next_deadline().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now);
            self.carry_out();
            self.flush();
        }
        true
    }

    /// A monitor's socket ended (`error` none) or sent bytes that are not a
    /// frame: no more reading from it.
    fn disconnect(&mut self, monitor: MonitorId, error: Option<String>, now: Instant) {
        if let Some(connection) = self.connections.get_mut(&monitor) {
            connection.reading = false;
            if let Some(socket) = &connection.socket {
                self.poller.remove(socket);
            }
        }
        self.core
            .handle(Input::Disconnected { monitor, error }, now);
        self.carry_out();
    }

    fn receive(&mut self, message: Message) {
        match message {
            Message::Monitor(input) => self.core.handle(input, Instant::now()),
            Message::Spawned(monitor, result) => self.spawned(monitor, result),
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
            Message::Persisted(error) => {
                let replies = self.persisting.take().unwrap_or_default();
                self.persisted(replies, error);
                // What was asked for meanwhile goes next.
                self.save_state();
            }
        }
        self.carry_out();
        self.input_handled();
    }

    /// Writes each output buffer queued to in this pass, once.
    fn flush(&mut self) {
        let mut to_flush = std::mem::take(&mut self.to_flush);
        to_flush.sort_unstable();
        to_flush.dedup();
        for monitor in to_flush.drain(..) {
            self.flush_one(monitor);
        }
        self.to_flush = to_flush;
    }

    fn flush_one(&mut self, monitor: MonitorId) {
        let Some(connection) = self.connections.get_mut(&monitor) else {
            return;
        };
        if connection.socket.is_none() || !connection.has_output() {
            return;
        }
        let calls = &mut self.core.calls;
        let flushed = connection.flush(|call, at| calls.note_written(call, at));
        let waiting = matches!(flushed, Flushed::Partly);
        if waiting && connection.blocked_since.is_none() {
            connection.blocked_since = Some(Instant::now());
        }
        if !waiting {
            connection.blocked_since = None;
        }
        if waiting != connection.wants_write
            && connection.reading
            && let Some(socket) = &connection.socket
        {
            connection.wants_write = waiting;
            let _ = self.poller.modify(monitor, socket, true, waiting);
        }
        if waiting {
            if !self.blocked.contains(&monitor) {
                self.blocked.push(monitor);
            }
        } else {
            self.blocked.retain(|m| *m != monitor);
        }
        if let Flushed::Failed(error) = flushed {
            let input = Input::WriteFailed {
                monitor,
                error: error.to_string(),
            };
            self.core.handle(input, Instant::now());
            self.carry_out();
        }
    }

    /// A monitor whose output took no byte for [`WRITE_TIMEOUT`] is stuck:
    /// the core hears of a failed write (once).
    fn report_stuck(&mut self, now: Instant) {
        let stuck: Vec<MonitorId> = self
            .blocked
            .iter()
            .copied()
            .filter(|m| {
                self.connections.get(m).is_some_and(|c| {
                    !c.write_failed
                        && c.blocked_since.is_some_and(|since| {
                            now.saturating_duration_since(since) >= WRITE_TIMEOUT
                        })
                })
            })
            .collect();
        for monitor in stuck {
            if let Some(connection) = self.connections.get_mut(&monitor) {
                connection.write_failed = true;
            }
            let error = format!(
                "the monitor took no byte for {}s: it does not read its socket",
                WRITE_TIMEOUT.as_secs()
            );
            self.core.handle(Input::WriteFailed { monitor, error }, now);
            self.carry_out();
        }
        self.flush();
    }

    /// The spawner's answer: the socket joins the poller and whatever was
    /// queued for the monitor meanwhile goes out.
    fn spawned(&mut self, monitor: MonitorId, result: spawner::SpawnResult) {
        let now = Instant::now();
        let (pid, socket) = match result {
            Ok(started) => started,
            Err(error) => {
                self.connections.remove(&monitor);
                self.core.handle(Input::SpawnFailed { monitor, error }, now);
                return;
            }
        };
        let Some(connection) = self.connections.get_mut(&monitor) else {
            // Released meanwhile: dropping the socket ends the monitor.
            self.core.handle(Input::Spawned { monitor, pid }, now);
            return;
        };
        if let Err(e) = self.poller.add(monitor, &socket, false) {
            self.connections.remove(&monitor);
            let _ = self.process.kill(pid);
            let error = format!("watching the monitor's socket: {e}");
            self.core.handle(Input::SpawnFailed { monitor, error }, now);
            return;
        }
        connection.socket = Some(socket);
        self.to_flush.push(monitor);
        self.core.handle(Input::Spawned { monitor, pid }, now);
    }

    /// Carries out the core's actions in order; what they cause goes back
    /// into the core at once.
    fn carry_out(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Spawn { monitor } => {
                    self.connections.insert(monitor, Connection::pending());
                    if self.spawner.send(monitor).is_err() {
                        self.connections.remove(&monitor);
                        let error = "the spawner thread is gone".to_owned();
                        self.core
                            .handle(Input::SpawnFailed { monitor, error }, Instant::now());
                    }
                }
                Action::Send { monitor, message } => {
                    if let Some(connection) = self.connections.get_mut(&monitor) {
                        if !connection.has_output() {
                            self.to_flush.push(monitor);
                        }
                        connection.queue(&message);
                    }
                }
                Action::Release { monitor } => {
                    if let Some(connection) = self.connections.remove(&monitor)
                        && connection.reading
                        && let Some(socket) = &connection.socket
                    {
                        self.poller.remove(socket);
                    }
                    self.blocked.retain(|m| *m != monitor);
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
                            self.save_state_now();
                            self.events.sync();
                            std::process::exit(ESCALATION_EXIT_CODE);
                        }
                        Escalation::Hook(hook) => hook(&event),
                    }
                }
                Action::Stopped { request } => {
                    self.save_state_now();
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

    /// Hands the newest state asked for to the persister, unless it is
    /// still writing the one before (then it goes when that is done).
    fn save_state(&mut self) {
        if self.persisting.is_some() {
            return;
        }
        let Some((state, replies)) = self.unsaved.take() else {
            return;
        };
        match self.persister.write_later(state) {
            Ok(()) => self.persisting = Some(replies),
            Err(state) => {
                let error = self.persister.write_now(&state);
                self.persisted(replies, error);
            }
        }
    }

    /// Writes the newest state now, on this thread (a stop, an escalation):
    /// after the write in flight, whose waiters it answers too.
    fn save_state_now(&mut self) {
        let in_flight = self.persisting.take();
        let mut replies = Vec::new();
        let state = match (self.unsaved.take(), in_flight) {
            (Some((state, more)), in_flight) => {
                replies.extend(in_flight.into_iter().flatten());
                replies.extend(more);
                state
            }
            // Written again, after the write in flight: this process may
            // end before that one is done.
            (None, Some(waiting)) => {
                replies.extend(waiting);
                self.core.persisted_state()
            }
            (None, None) => return,
        };
        let error = self.persister.write_now(&state);
        self.persisted(replies, error);
    }

    /// Answers those who waited for a written state; the core hears how
    /// the write went.
    fn persisted(&mut self, replies: Vec<RequestId>, error: Option<String>) {
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

/// `at`, moved up to the next point of the [`TIMER_SLACK`] grid that
/// starts at `epoch`.
fn on_grid(epoch: Instant, at: Instant) -> Instant {
    let since = at.saturating_duration_since(epoch).as_nanos();
    let step = TIMER_SLACK.as_nanos();
    let up = (step - since % step) % step;
    at + Duration::from_nanos(u64::try_from(up).unwrap_or(0))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_on_the_next_point_of_the_grid() {
        let epoch = Instant::now();
        let step = TIMER_SLACK;
        assert_eq!(on_grid(epoch, epoch), epoch);
        assert_eq!(on_grid(epoch, epoch + step), epoch + step);
        let inside = epoch + step + Duration::from_nanos(1);
        assert_eq!(on_grid(epoch, inside), epoch + 2 * step);
        let before = epoch.checked_sub(Duration::from_millis(1));
        if let Some(before) = before {
            assert_eq!(on_grid(epoch, before), before, "a past time stays");
        }
    }
}
