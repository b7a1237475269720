//! The monitor process: loads resource libraries and runs entry points for
//! the resources the host places in it.
//!
//! A monitor reads calls from the host on the socket inherited as file
//! descriptor [`MONITOR_FD`] and runs them on the [`Dispatcher`]
//! (leader/follower threads: a call runs on the thread that read it,
//! serialized per resource, concurrent across resources once one is slow;
//! `terminate` on a thread of its own). It writes replies, progress reports
//! and log lines back on the same socket.
//!
//! Input is read in chunks of up to 64 KiB, each decoded into as many calls
//! as it holds. Replies are appended to one output buffer, reused, which is
//! written when the dispatcher's pass over the ready calls is done (or when a
//! call stalls): one `write` answers a whole batch. Frames the library sends
//! from its own threads (progress reports, completions, log lines) are
//! written at once, after the replies buffered before them, so the host sees
//! everything in the order it happened. A health check on the hot path
//! allocates nothing: the call is a plain value in its resource's queue, the
//! maps are keyed by an integer hash, and the reply is encoded into the
//! output buffer.
//!
//! It exits at once, leaving workloads running, when the host goes away: the
//! socket reaches end-of-file (whichever thread reads it; the dispatcher
//! always has a reader within a stall limit), a write fails, or the kernel's
//! parent-death signal kills it.
//!
//! If the monitor crashes (a segfault or abort in a library), a signal
//! handler first tells the host which call was running on the crashing
//! thread, so the host blames the right resource.

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use clusterkit::{
    Error, Health, Level, LogSink, Logger, Properties, Reply, Resource, ResourceState,
    StatusReporter, StatusSink, Transition,
};
use clusterkit_loader::{Library, LoadedResource};

use crate::id_hash::IdMap;
use crate::pool::{Arrivals, Dispatcher, STALL_LIMIT, Service};
use crate::protocol::{self, FromMonitor, Op, Outcome, ToMonitor};

/// The file descriptor a monitor's host socket is passed on.
pub const MONITOR_FD: RawFd = 3;
/// The descriptor a host passed the monitor's socket on, in a monitor's
/// environment, when not [`MONITOR_FD`]; the monitor moves it there.
pub const MONITOR_FD_ENV: &str = "CLUSTERKIT_MONITOR_FD";
/// Set (to any value) in a monitor's environment; see [`run_if_monitor`].
pub const MONITOR_ENV: &str = "CLUSTERKIT_MONITOR";
/// The host's pid, in a monitor's environment: a monitor whose parent is
/// already someone else exits at once.
pub const HOST_PID_ENV: &str = "CLUSTERKIT_HOST_PID";

/// If this process was started as a monitor ([`MONITOR_ENV`] is set), runs
/// the monitor and never returns; otherwise returns at once.
///
/// A custom host binary that re-executes itself as its monitors
/// ([`MonitorProgram::CurrentExe`](crate::MonitorProgram::CurrentExe)) calls
/// this first thing in `main`:
///
/// ```no_run
/// clusterkit_host::run_if_monitor();
/// // ... the host's own main goes on here ...
/// ```
pub fn run_if_monitor() {
    if std::env::var_os(MONITOR_ENV).is_some() {
        run_monitor();
    }
}

/// Runs the monitor on [`MONITOR_FD`] and never returns. The body of the
/// `clusterkit-monitor` binary.
pub fn run_monitor() -> ! {
    // SAFETY: prctl(PR_SET_PDEATHSIG) has no memory-safety preconditions.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if let Some(host_pid) = std::env::var(HOST_PID_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    {
        let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
        if parent != host_pid {
            exit_now(0); // the host died before the death signal was armed
        }
    }
    // A host may pass the socket on another descriptor and name it: it
    // goes on MONITOR_FD, where the crash handler and libraries expect it.
    if let Some(fd) = std::env::var(MONITOR_FD_ENV)
        .ok()
        .and_then(|fd| fd.parse::<RawFd>().ok())
        .filter(|&fd| fd != MONITOR_FD)
    {
        // SAFETY: dup2 and close on descriptors this process owns.
        if unsafe { libc::dup2(fd, MONITOR_FD) } == -1 {
            eprintln!(
                "clusterkit-monitor: moving the host socket {fd} to {MONITOR_FD}: {}",
                std::io::Error::last_os_error()
            );
            exit_now(1);
        }
        // SAFETY: the original descriptor is this process's and unused now.
        unsafe { libc::close(fd) };
    }
    // SAFETY: the host's socket is on MONITOR_FD now; nothing else owns it.
    let stream = unsafe { UnixStream::from_raw_fd(MONITOR_FD) };
    // Processes a library starts (QEMU, say) must not inherit the socket:
    // the host learns of this monitor's death from its end-of-file.
    let _ = rustix::io::fcntl_setfd(&stream, rustix::io::FdFlags::CLOEXEC);
    if let Err(e) = MonitorProcess::serve(stream) {
        fail(&e.to_string());
    }
    exit_now(0)
}

/// Ends the monitor on an error it cannot go on from.
fn fail(why: &str) -> ! {
    eprintln!("clusterkit-monitor: {why}");
    exit_now(1)
}

/// Exits without running destructors or atexit handlers: library code must
/// not get a chance to stop workloads on the way out.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

thread_local! {
    /// The call running on this thread (0: none), for the crash handler.
    static CURRENT_CALL: Cell<u64> = const { Cell::new(0) };
}

/// The socket, for the crash handler (-1: not yet set).
static CRASH_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_crash(signal: libc::c_int) {
    let call = CURRENT_CALL.with(Cell::get);
    let fd = CRASH_FD.load(Ordering::Relaxed);
    if call != 0 && fd >= 0 {
        let frame = protocol::crash_frame(call, signal as u32);
        // SAFETY: write(2) is async-signal-safe; `frame` is a valid buffer.
        unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
    }
    // SAFETY: restoring the default action and re-raising is the documented
    // way to die of the original signal from a handler.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

fn install_crash_handlers(fd: RawFd) {
    CRASH_FD.store(fd, Ordering::Relaxed);
    for signal in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGABRT,
        libc::SIGILL,
        libc::SIGFPE,
    ] {
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_crash as *const () as usize;
            action.sa_flags = libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// One open resource in this monitor.
struct Slot {
    resource: LoadedResource,
    /// The current operation's stop flag, set by `terminate`: its progress
    /// reports answer `Terminate`. A new `online`/`offline` sets the old
    /// operation's flag and starts a fresh one, so a stale worker stops.
    terminating: Mutex<Arc<AtomicBool>>,
}

/// What goes back to the host: the socket and the frames not yet written.
struct Output {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl Output {
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if (&self.stream).write_all(&self.pending).is_err() {
            exit_now(0); // the host is gone
        }
        self.pending.clear();
        if self.pending.capacity() > OUTPUT_KEPT {
            self.pending.shrink_to(OUTPUT_KEPT); // after a library's type list, say
        }
    }
}

/// The output buffer's capacity kept between flushes.
const OUTPUT_KEPT: usize = 64 << 10;

struct MonitorProcess {
    out: Mutex<Output>,
    libraries: RwLock<IdMap<Library>>,
    resources: RwLock<IdMap<Arc<Slot>>>,
}

/// One call from the host, queued as a plain value.
struct Call {
    call: u64,
    resource: u32,
    op: Op,
}

impl MonitorProcess {
    fn serve(stream: UnixStream) -> std::io::Result<()> {
        install_crash_handlers(stream.as_raw_fd());
        let input = HostInput::new(stream.try_clone()?);
        let monitor = Arc::new(MonitorProcess {
            out: Mutex::new(Output {
                stream,
                pending: Vec::new(),
            }),
            libraries: RwLock::default(),
            resources: RwLock::default(),
        });
        monitor.send(&FromMonitor::Hello {
            pid: std::process::id(),
            protocol: protocol::PROTOCOL_VERSION,
        });
        Dispatcher::new(monitor, input, STALL_LIMIT).serve();
        Ok(())
    }

    /// Sends `message` now, after the replies buffered before it.
    fn send(&self, message: &FromMonitor) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        message.append_frame(&mut out.pending);
        out.flush();
    }

    /// Buffers a reply until the dispatcher flushes.
    fn reply(&self, call: u64, outcome: Outcome) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        FromMonitor::Reply { call, outcome }.append_frame(&mut out.pending);
    }

    fn slot(&self, resource: u32) -> Result<Arc<Slot>, Error> {
        self.resources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&resource)
            .cloned()
            .ok_or_else(|| {
                Error::InvalidState(format!("resource #{resource} is not open in this monitor"))
            })
    }

    /// Runs one call; `None` when the call already sent its own reply.
    fn run_op(self: &Arc<Self>, call: u64, resource: u32, op: Op) -> Option<Outcome> {
        let result = match op {
            Op::LoadLibrary { library, path } => return Some(self.load_library(library, &path)),
            Op::Open {
                library,
                type_name,
                name,
                properties,
                recover,
            } => self.open(resource, library, &type_name, &name, &properties, recover),
            Op::Online | Op::Offline => {
                match self.slot(resource) {
                    Ok(slot) => self.transition(call, resource, &slot, matches!(op, Op::Online)),
                    Err(e) => return Some(Outcome::Failed(e)),
                }
                return None;
            }
            Op::Terminate => self.slot(resource).and_then(|slot| {
                slot.terminating
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .store(true, Ordering::Release);
                slot.resource.terminate()
            }),
            Op::LooksAlive | Op::IsAlive => {
                return Some(Outcome::Health(match self.slot(resource) {
                    Ok(slot) if matches!(op, Op::LooksAlive) => slot.resource.looks_alive(),
                    Ok(slot) => slot.resource.is_alive(),
                    Err(e) => Health::Failed(e.to_string()),
                }));
            }
            Op::Close => self.close(resource),
            Op::Control { code, input } => {
                return Some(
                    match self.slot(resource).and_then(|slot| {
                        slot.resource.control(clusterkit::ControlCode(code), &input)
                    }) {
                        Ok(bytes) => Outcome::Bytes(bytes),
                        Err(e) => Outcome::Failed(e),
                    },
                );
            }
        };
        Some(match result {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Failed(e),
        })
    }

    fn load_library(self: &Arc<Self>, id: u32, path: &str) -> Outcome {
        let log = self.logger(0);
        // `static:NAME` runs types linked into this binary, registered
        // before `run_if_monitor`; anything else is a shared object.
        let loaded = match crate::static_types::resolve(path) {
            Some(Ok(linked)) => Library::from_static(linked, log),
            Some(Err(unknown)) => return Outcome::Failed(Error::NotFound(unknown)),
            None => Library::load(path, log),
        };
        match loaded {
            Ok(library) => {
                let types = library.types().map(|t| t.description().clone()).collect();
                self.libraries
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id, library);
                Outcome::Types(types)
            }
            Err(e) => Outcome::Failed(Error::NotFound(e.to_string())),
        }
    }

    fn open(
        self: &Arc<Self>,
        resource: u32,
        library: u32,
        type_name: &str,
        name: &str,
        properties: &[u8],
        recover: bool,
    ) -> Result<(), Error> {
        let handle = self
            .libraries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&library)
            .and_then(|l| l.resource_type(type_name))
            .ok_or_else(|| {
                Error::NotFound(format!("type `{type_name}` is not loaded in this monitor"))
            })?;
        let properties = Properties::decode(properties)?;
        let opened = handle.open(name, &properties, recover, self.logger(resource))?;
        let slot = Arc::new(Slot {
            resource: opened,
            terminating: Mutex::new(Arc::new(AtomicBool::new(false))),
        });
        self.resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(resource, slot);
        Ok(())
    }

    fn close(&self, resource: u32) -> Result<(), Error> {
        let slot = self
            .resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&resource)
            .ok_or_else(|| Error::InvalidState(format!("resource #{resource} is not open")))?;
        match Arc::try_unwrap(slot) {
            Ok(slot) => slot.resource.close(),
            // A terminate still holds it: it closes when that finishes.
            Err(_) => Ok(()),
        }
    }

    /// Runs `online`/`offline` and sends the reply itself: a worker may
    /// complete the operation before `online` even returns, and the host
    /// must see the reply (pending) before the completion.
    fn transition(self: &Arc<Self>, call: u64, resource: u32, slot: &Slot, online: bool) {
        let terminating = {
            let mut current = slot
                .terminating
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            current.store(true, Ordering::Release);
            *current = Arc::new(AtomicBool::new(false));
            current.clone()
        };
        let sink = Arc::new(MonitorStatusSink {
            monitor: self.clone(),
            call,
            resource,
            terminating,
            gate: Mutex::default(),
        });
        let result = if online {
            slot.resource.online(StatusReporter::online(sink.clone()))
        } else {
            slot.resource.offline(StatusReporter::offline(sink.clone()))
        };
        let outcome = match result {
            Ok(Transition::Done) if online => Outcome::State(ResourceState::Online),
            Ok(Transition::Done) => Outcome::State(ResourceState::Offline),
            Ok(Transition::Pending) if online => Outcome::State(ResourceState::OnlinePending),
            Ok(Transition::Pending) => Outcome::State(ResourceState::OfflinePending),
            Err(e) => Outcome::Failed(e),
        };
        self.reply(call, outcome);
        sink.open_gate();
    }

    fn logger(self: &Arc<Self>, resource: u32) -> Logger {
        Logger::new(Arc::new(MonitorLogSink {
            monitor: self.clone(),
            resource,
        }))
    }
}

impl Service for Arc<MonitorProcess> {
    type Job = Call;
    type Input = HostInput;

    fn read(&self, input: &mut HostInput, arrivals: &mut Arrivals<Call>) -> bool {
        input.read_calls(arrivals);
        true // the end of the input ends the process
    }

    fn run(&self, Call { call, resource, op }: Call) {
        CURRENT_CALL.with(|c| c.set(call));
        let outcome = self.run_op(call, resource, op);
        CURRENT_CALL.with(|c| c.set(0));
        if let Some(outcome) = outcome {
            self.reply(call, outcome);
        }
    }

    fn flush(&self) {
        self.out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush();
    }
}

/// The reading end of the host socket, with the bytes read but not yet
/// decoded (a frame can straddle two reads).
struct HostInput {
    stream: UnixStream,
    buf: Vec<u8>,
    /// `buf[start..end]` is read and not yet decoded.
    start: usize,
    end: usize,
}

/// The input buffer's size at most (but for a frame bigger than this): one
/// `read` takes in up to this much.
const INPUT_CHUNK: usize = 64 << 10;
/// The input buffer's first size. It doubles, up to [`INPUT_CHUNK`], each
/// time a read fills it; an idle monitor keeps its memory small.
const INPUT_START: usize = 4 << 10;

impl HostInput {
    fn new(stream: UnixStream) -> HostInput {
        HostInput {
            stream,
            buf: vec![0; INPUT_START],
            start: 0,
            end: 0,
        }
    }

    /// Blocks until at least one call is in, and queues every whole frame
    /// read. End of input or `Shutdown` exits the monitor; a bad frame ends
    /// it with an error naming what is wrong.
    fn read_calls(&mut self, arrivals: &mut Arrivals<Call>) {
        loop {
            while let Some(frame) = self.next_frame() {
                match ToMonitor::decode(&self.buf[frame]) {
                    Ok(ToMonitor::Shutdown) => exit_now(0),
                    // `terminate` must not wait behind the call it is meant to end.
                    Ok(ToMonitor::Call {
                        call,
                        resource,
                        op: Op::Terminate,
                    }) => arrivals.alone(Call {
                        call,
                        resource,
                        op: Op::Terminate,
                    }),
                    Ok(ToMonitor::Call { call, resource, op }) => {
                        arrivals.queue(resource, Call { call, resource, op });
                    }
                    Err(e) => fail(&format!("bad frame from the host: {e}")),
                }
            }
            if !arrivals.is_empty() {
                return;
            }
            self.fill();
        }
    }

    /// The payload range of the next whole frame in the buffer, if any.
    fn next_frame(&mut self) -> Option<std::ops::Range<usize>> {
        let available = &self.buf[self.start..self.end];
        let prefix: [u8; 4] = available.get(..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(prefix) as usize;
        if len > protocol::MAX_FRAME_LEN {
            fail(&protocol::FrameError::Oversized(len).to_string());
        }
        if len == 0 {
            fail("bad frame from the host: malformed frame at byte 0: empty frame");
        }
        if available.len() - 4 < len {
            return None;
        }
        let payload = self.start + 4..self.start + 4 + len;
        self.start = payload.end;
        Some(payload)
    }

    /// Reads once, after making room; end-of-file exits the monitor.
    fn fill(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > INPUT_CHUNK {
                // A large frame (an `open` with big properties) is done.
                self.buf.truncate(INPUT_CHUNK);
                self.buf.shrink_to_fit();
            }
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // A frame bigger than the buffer: grow with the bytes actually
            // received, so a lying length prefix costs nothing.
            let grown = (self.buf.len() * 2).min(protocol::MAX_FRAME_LEN + 4);
            self.buf.resize(grown, 0);
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) if self.end == 0 => exit_now(0), // the host is gone
                Ok(0) => fail(&format!(
                    "monitor connection: the host closed the connection in the middle of a frame ({} bytes of it read)",
                    self.end
                )),
                Ok(n) => {
                    self.end += n;
                    if self.end == self.buf.len() && self.buf.len() < INPUT_CHUNK {
                        self.buf.resize(self.buf.len() * 2, 0); // busy: read more at once
                    }
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => fail(&format!("monitor connection: {e}")),
            }
        }
    }
}

struct MonitorLogSink {
    monitor: Arc<MonitorProcess>,
    resource: u32,
}

impl LogSink for MonitorLogSink {
    fn log(&self, level: Level, message: &str) {
        self.monitor.send(&FromMonitor::Log {
            resource: self.resource,
            level: level as u32,
            message: message.to_owned(),
        });
    }
}

struct MonitorStatusSink {
    monitor: Arc<MonitorProcess>,
    /// The operation's call: reports and the completion name it.
    call: u64,
    resource: u32,
    terminating: Arc<AtomicBool>,
    /// Closed until the call's reply is sent; reports and a completion
    /// before that wait (the host takes them only for an operation it
    /// knows is pending).
    gate: Mutex<Gate>,
}

#[derive(Default)]
struct Gate {
    open: bool,
    /// Reports made before the reply: checkpoint and wait hint (ms).
    reports: Vec<(u32, u64)>,
    deferred: Option<Result<ResourceState, Error>>,
}

impl MonitorStatusSink {
    fn send_complete(&self, outcome: Result<ResourceState, Error>) {
        self.monitor.send(&FromMonitor::Complete {
            call: self.call,
            resource: self.resource,
            outcome,
        });
    }

    fn send_report(&self, checkpoint: u32, wait_hint_ms: u64) {
        self.monitor.send(&FromMonitor::Report {
            call: self.call,
            resource: self.resource,
            checkpoint,
            wait_hint_ms,
        });
    }

    fn open_gate(&self) {
        // Sent under the gate's lock: a report made meanwhile on the
        // library's thread comes after these, in order.
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        for (checkpoint, wait_hint_ms) in std::mem::take(&mut gate.reports) {
            self.send_report(checkpoint, wait_hint_ms);
        }
        if let Some(outcome) = gate.deferred.take() {
            self.send_complete(outcome);
        }
        gate.open = true;
    }
}

impl StatusSink for MonitorStatusSink {
    fn report(&self, _state: ResourceState, checkpoint: u32, wait_hint: Duration) -> Reply {
        // The host's answer is its `terminate` call: while one has arrived,
        // reports answer Terminate. The report itself resets the host's
        // pending deadline.
        let wait_hint_ms = protocol::millis(wait_hint);
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        if gate.open {
            drop(gate);
            self.send_report(checkpoint, wait_hint_ms);
        } else {
            gate.reports.push((checkpoint, wait_hint_ms));
        }
        if self.terminating.load(Ordering::Acquire) {
            Reply::Terminate
        } else {
            Reply::Continue
        }
    }

    fn complete(&self, outcome: Result<ResourceState, Error>) {
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        if gate.open {
            drop(gate);
            self.send_complete(outcome);
        } else {
            gate.deferred = Some(outcome);
        }
    }
}

#[cfg(test)]
mod tests;
