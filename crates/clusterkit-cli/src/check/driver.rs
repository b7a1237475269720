//! The checks that run inside a check process, one scenario per process.
//!
//! Each scenario loads the library afresh and reports on its stdout (as
//! [`Line`]s): before every call into the library, which call and how long
//! it may take; after it, the check's result. The supervisor
//! ([`super::supervise`]) turns a process that dies or stops answering
//! into the failure of the call in flight.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::FromRawFd as _;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use clusterkit::{
    ControlCode, Error, ErrorCode, Health, Level, Logger, Properties, Reply, Resource,
    ResourceState, StatusReporter, StatusSink, Transition,
};
use clusterkit_loader::{Library, LoadedResource, ResourceTypeHandle};

use super::report::{CheckLine, Line, Outcome, PREFIX, human};
use super::{Budgets, CheckArgs, Scenario};

mod load;

/// Check names shared with the supervisor.
pub(crate) mod names {
    pub(crate) const LOADS: &str = "library loads";
    pub(crate) const TABLE: &str = "ABI version and table";
    pub(crate) const TYPE: &str = "type";
    pub(crate) const PROPERTIES: &str = "properties";
    pub(crate) const OPEN: &str = "open";
    pub(crate) const ONLINE: &str = "online";
    pub(crate) const LOOKS_ALIVE: &str = "looks_alive";
    pub(crate) const IS_ALIVE: &str = "is_alive";
    pub(crate) const CONTROL: &str = "control";
    pub(crate) const OFFLINE: &str = "offline";
    pub(crate) const STOPPED: &str = "offline stops the workload";
    pub(crate) const CLOSE: &str = "close";
    pub(crate) const TERMINATE: &str = "terminate";
    pub(crate) const TERMINATE_PENDING: &str = "terminate ends a pending online";
    pub(crate) const REATTACH: &str = "reattach";
    pub(crate) const PANICS: &str = "panics come back as errors";
}

use names::*;

/// Where protocol lines go: the supervisor's pipe, moved off stdout.
static PROTOCOL: OnceLock<Mutex<File>> = OnceLock::new();

/// Moves the supervisor's pipe from stdout to a descriptor closed on exec,
/// and points stdout at stderr. A process the library starts (a daemon,
/// a VM) would otherwise inherit the pipe and hold it open after this
/// process ends; and what the library prints on stdout stays out of the
/// protocol.
fn take_protocol_pipe() -> std::io::Result<()> {
    // SAFETY: duplicates descriptor 1 into a new descriptor this process
    // owns from here on; closed on exec. Above the low numbers a library
    // may assume are its host's (a monitor's socket is descriptor 3).
    let mut fd = unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 100) };
    if fd < 0 {
        // A descriptor limit under 100: the lowest free one will do.
        // SAFETY: as above.
        fd = unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: replaces descriptor 1 with a copy of descriptor 2; the
    // protocol no longer uses 1.
    if unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let _ = PROTOCOL.set(Mutex::new(file));
    Ok(())
}

/// Writes one protocol line (flushed: the supervisor times the next one).
pub(crate) fn emit(line: &Line) {
    let text = serde_json::to_string(line).expect("protocol lines serialize");
    let text = format!("{PREFIX}{text}\n");
    match PROTOCOL.get() {
        Some(pipe) => {
            let mut pipe = pipe.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = pipe.write_all(text.as_bytes());
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

fn check(line: CheckLine) {
    emit(&Line::Check(line));
}

/// A logger that forwards the library's lines to the supervisor.
fn forwarding_logger() -> Logger {
    Logger::from_fn(|level: Level, message: &str| {
        emit(&Line::Log {
            level: level.to_string(),
            message: message.to_owned(),
        })
    })
}

/// Runs `scenario` in this process; the exit code means nothing to the
/// supervisor, which reads the lines.
pub(crate) fn run(scenario: Scenario, args: &CheckArgs) -> std::process::ExitCode {
    if let Err(e) = take_protocol_pipe() {
        eprintln!("clusterkit check: moving the protocol off stdout: {e}");
        return std::process::ExitCode::from(2);
    }
    let driver = Driver {
        args,
        budgets: args.budgets(),
    };
    match scenario {
        Scenario::Load => driver.load(),
        Scenario::Lifecycle => driver.lifecycle(),
        Scenario::Terminate => driver.terminate(),
        Scenario::ReattachStart => driver.reattach_start(),
        Scenario::ReattachAdopt => driver.reattach_adopt(),
        Scenario::Cleanup => driver.cleanup(),
    }
    std::process::ExitCode::SUCCESS
}

/// What a pending operation sends back.
enum Progress {
    Report,
    Complete(Result<ResourceState, Error>),
}

struct ProgressSink(Mutex<Sender<Progress>>);

impl StatusSink for ProgressSink {
    fn report(&self, _: ResourceState, _: u32, _: Duration) -> Reply {
        let _ = self.0.lock().map(|s| s.send(Progress::Report));
        Reply::Continue
    }
    fn complete(&self, outcome: Result<ResourceState, Error>) {
        let _ = self.0.lock().map(|s| s.send(Progress::Complete(outcome)));
    }
}

fn reporter(going_online: bool) -> (StatusReporter, Receiver<Progress>) {
    let (sender, receiver) = mpsc::channel();
    let sink = Arc::new(ProgressSink(Mutex::new(sender)));
    let status = if going_online {
        StatusReporter::online(sink)
    } else {
        StatusReporter::offline(sink)
    };
    (status, receiver)
}

/// Announces the library's `shutdown` (and unload) when dropped, so that a
/// library that hangs or crashes there is not blamed on the call before.
struct UnloadNotice {
    check: String,
    limit: Duration,
}

impl Drop for UnloadNotice {
    fn drop(&mut self) {
        emit(&Line::Call {
            what: "shutdown".to_owned(),
            check: self.check.clone(),
            limit_ms: millis(self.limit),
        });
    }
}

/// The check a call is made for, and whether it reports its own line.
#[derive(Debug, Clone, Copy)]
enum As<'a> {
    /// The call is the check: its result is reported as this line.
    Reported(&'a str),
    /// The call serves this check, which reports (or not) by itself.
    OnBehalfOf(&'a str),
}

impl<'a> As<'a> {
    fn name(self) -> &'a str {
        match self {
            As::Reported(name) | As::OnBehalfOf(name) => name,
        }
    }

    fn is_reported(self) -> bool {
        matches!(self, As::Reported(_))
    }
}

struct Driver<'a> {
    args: &'a CheckArgs,
    budgets: Budgets,
}

impl Driver<'_> {
    fn hang(&self) -> Duration {
        self.args.hang_timeout
    }

    /// Announces a call, runs it and measures it.
    fn call<T>(
        &self,
        what: &str,
        check: &str,
        limit: Duration,
        f: impl FnOnce() -> T,
    ) -> (T, Duration) {
        emit(&Line::Call {
            what: what.to_owned(),
            check: check.to_owned(),
            limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        });
        let started = Instant::now();
        let value = f();
        (value, started.elapsed())
    }

    /// The library, the type and the validated properties, for the
    /// resource scenarios (the load scenario reported their problems).
    /// The last of the three is dropped first: it announces the library's
    /// `shutdown`, which runs when the type handle goes.
    fn prepare(&self, check: &str) -> Option<(ResourceTypeHandle, Properties, UnloadNotice)> {
        let (loaded, _) = self.call("startup", check, self.hang(), || {
            Library::load(&self.args.library, forwarding_logger())
        });
        let library = loaded.ok()?;
        let ty = library.resource_type(self.args.type_name.as_deref().unwrap_or_default())?;
        let props = self.properties(&ty).ok()?;
        let notice = UnloadNotice {
            check: check.to_owned(),
            limit: self.hang(),
        };
        Some((ty, props, notice))
    }

    /// Parses and validates the `name=value` arguments: by the schema, then
    /// by the type's own `VALIDATE_PROPERTIES`.
    fn properties(&self, ty: &ResourceTypeHandle) -> Result<Properties, String> {
        let mut pairs = Vec::new();
        for a in &self.args.properties {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| format!("argument {a:?}: expected name=value"))?;
            pairs.push((k, v));
        }
        let typed = crate::ocf::parse_assignments(ty.schema(), pairs).map_err(|e| e.to_string())?;
        let valid = ty.schema().validate(&typed).map_err(|e| {
            let mut text = e.to_string();
            for missing in e
                .iter()
                .filter(|e| e.problem == clusterkit::Problem::Missing)
            {
                if let Some(spec) = ty.schema().spec(&missing.property) {
                    text.push_str(&format!(" ({}: {})", spec.name, spec.description));
                }
            }
            text
        })?;
        crate::ocf::validate(ty, &valid)
            .map_err(|e| format!("the type's own validation (VALIDATE_PROPERTIES): {e}"))?;
        Ok(valid)
    }

    /// Opens the resource; reports the line when `as_check` says so, and
    /// returns the error's text.
    fn open(
        &self,
        ty: &ResourceTypeHandle,
        props: &Properties,
        recover: bool,
        as_check: As<'_>,
    ) -> Result<LoadedResource, String> {
        let check_name = as_check.name();
        let (opened, elapsed) = self.call("open", check_name, self.hang(), || {
            ty.open(&self.args.name, props, recover, forwarding_logger())
        });
        let problem = opened
            .as_ref()
            .err()
            .map(|e| format!("open returned an error: {e}"));
        if as_check.is_reported() {
            check(CheckLine::timed(
                check_name,
                elapsed,
                self.budgets.open,
                problem.clone(),
                format!("recover = {recover}"),
            ));
        }
        opened.map_err(|_| problem.unwrap_or_default())
    }

    /// Runs `online` or `offline` to its end, reporting it as `name`
    /// (nothing is reported when `name` is `None`); whether it reached
    /// its target state.
    fn transition(&self, r: &LoadedResource, going_online: bool, as_check: As<'_>) -> bool {
        let what = if going_online { ONLINE } else { OFFLINE };
        let check_name = as_check.name();
        let budget = if going_online {
            self.budgets.online
        } else {
            self.budgets.offline
        };
        let timeouts = r.resource_type().operation_timeouts();
        let advised = if going_online {
            timeouts.start
        } else {
            timeouts.stop
        };
        let (status, progress) = reporter(going_online);
        let (returned, elapsed) = self.call(what, check_name, self.hang(), || {
            if going_online {
                r.online(status)
            } else {
                r.offline(status)
            }
        });
        let report = |problem: Option<String>, detail: String| {
            if as_check.is_reported() {
                check(CheckLine::timed(
                    check_name, elapsed, budget, problem, detail,
                ));
            }
        };
        match returned {
            Err(e) => {
                report(
                    Some(format!("{what} returned an error: {e}")),
                    String::new(),
                );
                false
            }
            Ok(Transition::Done) => {
                report(None, "completed at once".into());
                true
            }
            Ok(Transition::Pending) => {
                let (problem, detail) = self.await_pending(what, check_name, &progress, advised);
                if problem.is_some() {
                    // What a host does with a pending call that fails or stalls.
                    let _ = self.call("terminate", check_name, self.hang(), || r.terminate());
                }
                let reached = problem.is_none();
                report(
                    problem,
                    format!("returned pending in {}; {detail}", human(elapsed)),
                );
                reached
            }
        }
    }

    /// Waits for a pending operation's end: reports must come within the
    /// pending timeout, the end within the type's advised timeout.
    fn await_pending(
        &self,
        what: &str,
        check_name: &str,
        progress: &Receiver<Progress>,
        advised: Duration,
    ) -> (Option<String>, String) {
        let pending_timeout = self.args.pending_timeout;
        emit(&Line::Call {
            what: format!("{what} (pending)"),
            check: check_name.to_owned(),
            limit_ms: millis(advised + self.hang()),
        });
        let started = Instant::now();
        let mut last = started;
        let mut reports = 0u32;
        let mut longest = Duration::ZERO;
        loop {
            let left = advised.saturating_sub(started.elapsed());
            let wait = left.min(pending_timeout.saturating_sub(last.elapsed()));
            let gap_detail = |reports: u32, longest: Duration| {
                format!(
                    "{reports} progress reports (longest gap {}; pending timeout {})",
                    human(longest),
                    human(pending_timeout)
                )
            };
            match progress.recv_timeout(wait) {
                Ok(Progress::Report) => {
                    reports += 1;
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
                Ok(Progress::Complete(outcome)) => {
                    longest = longest.max(last.elapsed());
                    let detail = format!(
                        "completed in {} after {}",
                        human(started.elapsed()),
                        gap_detail(reports, longest)
                    );
                    return match outcome {
                        Ok(_) => (None, detail),
                        Err(e) => (Some(format!("the pending {what} failed: {e}")), detail),
                    };
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let problem = if left <= wait {
                        format!(
                            "the pending {what} did not complete within the type's advised \
                             timeout ({}) after {}",
                            human(advised),
                            gap_detail(reports, longest)
                        )
                    } else {
                        format!(
                            "the pending {what} sent no progress report for {} (the pending \
                             timeout; {reports} reports before): a host would terminate it",
                            human(pending_timeout)
                        )
                    };
                    return (Some(problem), String::new());
                }
            }
        }
    }

    fn health(&self, r: &LoadedResource, deep: bool, as_check: As<'_>) -> Health {
        let what = if deep { IS_ALIVE } else { LOOKS_ALIVE };
        let budget = if deep {
            self.budgets.is_alive
        } else {
            self.budgets.looks_alive
        };
        let check_name = as_check.name();
        let (health, elapsed) = self.call(what, check_name, self.hang(), || {
            if deep { r.is_alive() } else { r.looks_alive() }
        });
        if as_check.is_reported() {
            let problem = match &health {
                Health::Failed(_) => Some(format!(
                    "{what} says {}: a resource just brought online should be healthy",
                    health_text(&health)
                )),
                _ => None,
            };
            let mut line =
                CheckLine::timed(check_name, elapsed, budget, problem, health_text(&health));
            // Serving, but not well: reported, never recovered; worth a look.
            if matches!(health, Health::Degraded(_)) && line.outcome == Outcome::Pass {
                line.outcome = Outcome::Warn;
            }
            check(line);
        }
        health
    }

    /// Sends a code no clusterkit version defines: the answer must be
    /// `Unsupported`, on which a host applies its default handling.
    fn unknown_control(&self, r: &LoadedResource) {
        let code = ControlCode(ControlCode::TYPE_SPECIFIC_BASE.0 - 1);
        let (answer, elapsed) = self.call(CONTROL, CONTROL, self.hang(), || r.control(code, &[]));
        let problem = match answer {
            Err(e) if e.code() == ErrorCode::Unsupported => None,
            Err(e) => Some(format!(
                "{code}, a code no clusterkit version defines, returned `{e}`: unknown codes \
                 must return Unsupported, on which a host applies its default handling"
            )),
            Ok(output) => Some(format!(
                "{code}, a code no clusterkit version defines, succeeded ({} bytes): unknown \
                 codes must return Unsupported, on which a host applies its default handling",
                output.len()
            )),
        };
        check(CheckLine::timed(
            CONTROL,
            elapsed,
            self.budgets.control,
            problem,
            format!("{code} (unknown) returned Unsupported"),
        ));
    }

    fn close(&self, r: LoadedResource, as_check: As<'_>) {
        let check_name = as_check.name();
        let (closed, elapsed) = self.call("close", check_name, self.hang(), || r.close());
        if as_check.is_reported() {
            check(CheckLine::timed(
                check_name,
                elapsed,
                self.budgets.close,
                closed
                    .err()
                    .map(|e| format!("close returned an error: {e}")),
                "",
            ));
        }
    }

    fn lifecycle(&self) {
        let plan = [
            OPEN,
            ONLINE,
            LOOKS_ALIVE,
            IS_ALIVE,
            CONTROL,
            OFFLINE,
            STOPPED,
            CLOSE,
        ];
        emit(&Line::Plan {
            checks: plan.iter().map(|s| (*s).to_owned()).collect(),
        });
        let skip_from = |first: usize, why: &str| {
            for name in &plan[first..] {
                check(CheckLine::skip(name, why));
            }
        };
        let Some((ty, props, _unload)) = self.prepare(OPEN) else {
            return skip_from(0, "the library, type or properties are not usable");
        };
        let Ok(r) = self.open(&ty, &props, false, As::Reported(OPEN)) else {
            return skip_from(1, "open failed");
        };
        if !self.transition(&r, true, As::Reported(ONLINE)) {
            let _ = self.call("terminate", CLOSE, self.hang(), || r.terminate());
            skip_from(2, "online failed");
            return self.close(r, As::OnBehalfOf(CLOSE));
        }
        self.health(&r, false, As::Reported(LOOKS_ALIVE));
        self.health(&r, true, As::Reported(IS_ALIVE));
        self.unknown_control(&r);
        if self.transition(&r, false, As::Reported(OFFLINE)) {
            let after = self.health(&r, true, As::OnBehalfOf(STOPPED));
            check(match after {
                Health::Healthy => CheckLine::fail(
                    STOPPED,
                    "is_alive still says healthy after offline completed",
                ),
                other => CheckLine::pass(STOPPED, format!("is_alive: {}", health_text(&other))),
            });
        } else {
            let _ = self.call("terminate", STOPPED, self.hang(), || r.terminate());
            check(CheckLine::skip(STOPPED, "offline failed"));
        }
        self.close(r, As::Reported(CLOSE));
    }

    fn terminate(&self) {
        emit(&Line::Plan {
            checks: vec![TERMINATE_PENDING.into(), TERMINATE.into()],
        });
        let skip_both = |why: String| {
            check(CheckLine::skip(TERMINATE_PENDING, why.clone()));
            check(CheckLine::skip(TERMINATE, why));
        };
        let Some((ty, props, _unload)) = self.prepare(TERMINATE) else {
            return skip_both("the library, type or properties are not usable".into());
        };
        let r = match self.open(&ty, &props, false, As::OnBehalfOf(TERMINATE_PENDING)) {
            Ok(r) => r,
            Err(e) => return skip_both(e),
        };
        let (status, progress) = reporter(true);
        let (returned, _) = self.call(ONLINE, TERMINATE_PENDING, self.hang(), || r.online(status));
        let pending = match returned {
            Err(e) => {
                skip_both(format!("online returned an error: {e}"));
                return self.close(r, As::OnBehalfOf(TERMINATE));
            }
            Ok(Transition::Done) => {
                check(CheckLine::skip(
                    TERMINATE_PENDING,
                    "online completed at once with these properties: give properties that \
                     make it pending to check this",
                ));
                false
            }
            Ok(Transition::Pending) => true,
        };
        let (terminated, elapsed) = self.call(TERMINATE, TERMINATE, self.hang(), || r.terminate());
        let budget = self.budgets.terminate;
        if pending {
            // Measured from when terminate was called; reports do not
            // extend the wait.
            let called = Instant::now() - elapsed;
            let deadline = called + budget;
            let line = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match progress.recv_timeout(left) {
                    Ok(Progress::Report) => continue,
                    Ok(Progress::Complete(outcome)) => {
                        let with = match outcome {
                            Ok(_) => "success".to_owned(),
                            Err(e) => e.to_string(),
                        };
                        break CheckLine::pass(
                            TERMINATE_PENDING,
                            format!(
                                "the pending online ended {} after terminate was called \
                                 (budget {}; with: {with})",
                                human(called.elapsed()),
                                human(budget)
                            ),
                        );
                    }
                    Err(_) => {
                        break CheckLine::fail(
                            TERMINATE_PENDING,
                            format!(
                                "the pending online had not ended {} after terminate was called",
                                human(budget)
                            ),
                        );
                    }
                }
            };
            check(line);
        }
        let problem = terminated
            .err()
            .map(|e| format!("terminate returned an error: {e}"));
        let ok = problem.is_none();
        let mut line = CheckLine::timed(
            TERMINATE,
            elapsed,
            budget,
            problem,
            "the workload is stopped",
        );
        // A type may leave part of its workload behind on purpose (a DNS
        // record that would take waiting on servers to remove): a warning,
        // not a failure; and whether it is left can depend on timing.
        if ok
            && matches!(
                self.health(&r, true, As::OnBehalfOf(TERMINATE)),
                Health::Healthy
            )
        {
            line.warn(
                "is_alive still says healthy after terminate: the workload was left running \
                 (the contract wants it stopped, unless the type documents why not)",
            );
        }
        check(line);
        self.close(r, As::OnBehalfOf(TERMINATE));
    }

    /// Starts the workload and leaves it running, as a monitor that dies.
    fn reattach_start(&self) {
        let Some((ty, props, _unload)) = self.prepare(REATTACH) else {
            return check(CheckLine::skip(
                REATTACH,
                "the library, type or properties are not usable",
            ));
        };
        let r = match self.open(&ty, &props, false, As::OnBehalfOf(REATTACH)) {
            Ok(r) => r,
            Err(e) => return check(CheckLine::skip(REATTACH, e)),
        };
        if !self.transition(&r, true, As::OnBehalfOf(REATTACH)) {
            return check(CheckLine::skip(REATTACH, "online failed"));
        }
        if !matches!(
            self.health(&r, false, As::OnBehalfOf(REATTACH)),
            Health::Healthy
        ) {
            return check(CheckLine::skip(
                REATTACH,
                "looks_alive is not healthy after online",
            ));
        }
        // Ends like a killed monitor: no offline, no close, no destructor.
        // SAFETY: _exit ends the process at once; nothing runs after it.
        unsafe { libc::_exit(0) }
    }

    /// Adopts the workload `reattach_start` left running.
    fn reattach_adopt(&self) {
        emit(&Line::Plan {
            checks: vec![REATTACH.into()],
        });
        let Some((ty, props, _unload)) = self.prepare(REATTACH) else {
            return check(CheckLine::skip(
                REATTACH,
                "the library, type or properties are not usable",
            ));
        };
        let (opened, elapsed) = self.call("open", REATTACH, self.hang(), || {
            ty.open(&self.args.name, &props, true, forwarding_logger())
        });
        let r = match opened {
            Ok(r) => r,
            Err(e) => {
                return check(CheckLine::fail(
                    REATTACH,
                    format!("open with recover = true returned an error: {e}"),
                ));
            }
        };
        let quick = self.health(&r, false, As::OnBehalfOf(REATTACH));
        let deep = self.health(&r, true, As::OnBehalfOf(REATTACH));
        // Degraded is adopted too: the host resumes such a resource online.
        let problem = match (&quick, &deep) {
            (Health::Failed(_), _) | (_, Health::Failed(_)) => Some(format!(
                "open with recover = true did not adopt the running workload: looks_alive says \
                 {}, is_alive says {}",
                health_text(&quick),
                health_text(&deep)
            )),
            _ => None,
        };
        check(CheckLine::timed(
            REATTACH,
            elapsed,
            self.budgets.open,
            problem,
            "open with recover = true adopted the running workload: its health checks pass without online",
        ));
        if !self.transition(&r, false, As::OnBehalfOf(REATTACH)) {
            let _ = self.call("terminate", REATTACH, self.hang(), || r.terminate());
        }
        self.close(r, As::OnBehalfOf(REATTACH));
    }

    /// Stops whatever a process that died left running.
    fn cleanup(&self) {
        if let Some((ty, props, _unload)) = self.prepare("cleanup")
            && let Ok(r) = self.open(&ty, &props, true, As::OnBehalfOf("cleanup"))
        {
            let _ = self.call("terminate", "cleanup", self.hang(), || r.terminate());
            self.close(r, As::OnBehalfOf("cleanup"));
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn health_text(h: &Health) -> String {
    match h {
        Health::Healthy => "healthy".into(),
        Health::Degraded(why) => format!("degraded ({why})"),
        Health::Failed(why) => format!("failed ({why})"),
    }
}
