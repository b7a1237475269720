//! `fault-injection`, a clusterkit resource type for tests, demos and
//! benchmarks: it can be told to **hang**, **panic**, **abort**, **fail**,
//! **degrade** or be **slow** in any entry point, by properties or at run
//! time through a control file, and it counts how many times its workload
//! was started, so a test can prove that a resource was *not* restarted.
//!
//! The "workload" is the file `<state_dir>/<name>.running` (it holds the
//! resource's name): `online` creates it and increments the decimal count in
//! `<state_dir>/<name>.starts`; `offline` and `terminate` remove it.
//! `looks_alive` is healthy while the file exists, `is_alive` while it also
//! holds the name. `open` with `recover = true` adopts a running workload
//! without counting a start. Tests read the count with [`start_count`] (or
//! the control code [`START_COUNT`]) and the workload with [`is_running`].
//!
//! Faults are checked at the very start of each entry point, in this order:
//! `slow` (sleep `slow_for`), `hang` (block forever in `recvfrom` on a UDP
//! socket, ignoring `terminate`), `abort` (`std::process::abort`), `panic`,
//! `fail` (an [`Error::Failed`], or [`Health::Failed`] from a health check),
//! `degrade` (health checks only: [`Health::Degraded`]).
//!
//! With `pending_online` above zero, `online` returns pending and a
//! [`Worker`] reports progress every `report_every` until it completes; with
//! `stall_reports` it never reports nor completes until stopped, to exercise
//! a host's pending timeout.
//!
//! Built as a `cdylib` (`libclusterkit_fault_injection.so`); the `README.md`
//! next to this crate lists every property and the control-file syntax.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use clusterkit::{
    Characteristics, ControlCode, Error, Health, Properties, PropertySpec, Reply, Resource,
    ResourceContext, ResourceType, Result, Schema, StartupContext, StatusReporter, StopFlag,
    Transition, TypeDescription, Worker,
};

mod faults;

use faults::{Action, ControlFile, EntryPoint, Faults, Injected, inject};

/// The type's name, as hosts and configs refer to it.
pub const TYPE_NAME: &str = "fault-injection";

/// The resource control code answering the workload's start count, as
/// decimal text (`b"3"`).
pub const START_COUNT: ControlCode = ControlCode::type_specific(1);

/// The entry-point names the `*_in` properties and the control file accept.
pub const ENTRY_POINTS: [&str; 8] = [
    "open",
    "close",
    "online",
    "offline",
    "terminate",
    "looks_alive",
    "is_alive",
    "control",
];

/// How often a waiting worker looks at the resource's termination flag.
const POLL: Duration = Duration::from_millis(20);

/// The workload file of resource `name`: it exists while the workload runs
/// and holds the resource's name.
pub fn running_file(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!("{name}.running"))
}

/// The file counting the starts of resource `name`'s workload, in decimal.
pub fn starts_file(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!("{name}.starts"))
}

/// How many times resource `name`'s workload was started (by `online`, or
/// by a pending online's worker), read from `<state_dir>/<name>.starts`;
/// 0 when the file is missing. Re-attaching (`open` with `recover = true`)
/// does not count, so a test proves a resource was not restarted by seeing
/// this number unchanged.
///
/// # Panics
/// If the file exists but cannot be read or does not hold a decimal count:
/// this is a test helper, and a corrupt counter must not pass for "0".
///
/// ```
/// use clusterkit_fault_injection::{is_running, start_count};
///
/// let dir = std::env::temp_dir().join(format!("fi-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// assert_eq!(start_count(&dir, "web"), 0); // never started
/// std::fs::write(dir.join("web.starts"), "2").unwrap(); // as `online` leaves it
/// assert_eq!(start_count(&dir, "web"), 2);
/// assert!(!is_running(&dir, "web"));
/// # std::fs::remove_dir_all(dir).unwrap();
/// ```
pub fn start_count(state_dir: &Path, name: &str) -> u32 {
    read_count(&starts_file(state_dir, name)).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether resource `name`'s workload is running: whether
/// `<state_dir>/<name>.running` exists.
pub fn is_running(state_dir: &Path, name: &str) -> bool {
    running_file(state_dir, name).exists()
}

fn read_count(path: &Path) -> Result<u32> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            Error::Failed(format!(
                "{} holds {text:?}, not a decimal start count",
                path.display()
            ))
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(format_args!("reading {}", path.display()), &e)),
    }
}

/// The `fault-injection` type.
#[derive(Debug)]
pub struct FaultInjectionType;

/// The workload of one resource: its two files.
#[derive(Debug, Clone)]
struct Workload {
    name: String,
    running: PathBuf,
    starts: PathBuf,
}

impl Workload {
    fn new(state_dir: &Path, name: &str) -> Workload {
        Workload {
            name: name.to_owned(),
            running: running_file(state_dir, name),
            starts: starts_file(state_dir, name),
        }
    }

    /// Starts the workload: creates the running file and counts the start.
    fn start(&self) -> Result<()> {
        fs::write(&self.running, &self.name)
            .map_err(|e| Error::io(format_args!("creating {}", self.running.display()), &e))?;
        let count = read_count(&self.starts)?.saturating_add(1);
        // Written aside and renamed, so a reader (or a crash) never sees a
        // half-written count.
        let temporary = self.starts.with_extension("starts.tmp");
        fs::write(&temporary, count.to_string())
            .and_then(|()| fs::rename(&temporary, &self.starts))
            .map_err(|e| Error::io(format_args!("writing {}", self.starts.display()), &e))
    }

    /// Stops the workload: removes the running file.
    fn stop(&self) -> Result<()> {
        match fs::remove_file(&self.running) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(
                format_args!("removing {}", self.running.display()),
                &e,
            )),
            _ => Ok(()),
        }
    }
}

/// How a pending online behaves.
#[derive(Debug, Clone, Copy)]
struct Pending {
    duration: Duration,
    report_every: Duration,
    stall: bool,
}

/// One `fault-injection` resource.
#[derive(Debug)]
pub struct FaultInjection {
    ctx: ResourceContext,
    workload: Workload,
    configured: Faults,
    control_file: Option<ControlFile>,
    slow_for: Duration,
    pending: Option<Pending>,
    worker: Mutex<Option<Worker>>,
}

fn entry_point_list(action: &str) -> String {
    format!(
        "Entry points that {action}: any of {}",
        ENTRY_POINTS.join(", ")
    )
}

impl ResourceType for FaultInjectionType {
    type Resource = FaultInjection;

    fn describe() -> TypeDescription {
        let no_entry_points = Vec::<String>::new;
        TypeDescription {
            name: TYPE_NAME.into(),
            description: "Hangs, panics, aborts, fails, degrades or is slow in any entry point on \
                          command; counts workload starts"
                .into(),
            characteristics: Characteristics::REATTACH,
            schema: Schema::new(vec![
                PropertySpec::string("state_dir")
                    .describe(
                        "Directory of <name>.running (exists while the workload runs) and \
                         <name>.starts (how many times it was started)",
                    )
                    .required()
                    .min(1),
                PropertySpec::multi_string(Action::Hang.property())
                    .describe(entry_point_list(
                        "block forever in a system call, ignoring terminate",
                    ))
                    .default(no_entry_points()),
                PropertySpec::multi_string(Action::Panic.property())
                    .describe(entry_point_list("panic"))
                    .default(no_entry_points()),
                PropertySpec::multi_string(Action::Abort.property())
                    .describe(entry_point_list("abort the monitor process"))
                    .default(no_entry_points()),
                PropertySpec::multi_string(Action::Fail.property())
                    .describe(entry_point_list("return a failure (health checks: Failed)"))
                    .default(no_entry_points()),
                PropertySpec::multi_string(Action::Slow.property())
                    .describe(entry_point_list("sleep slow_for before doing their work"))
                    .default(no_entry_points()),
                PropertySpec::multi_string(Action::Garbage.property())
                    .describe(entry_point_list(
                        "write garbage to the monitor's host socket (file descriptor 3), then \
                         go on normally",
                    ))
                    .default(no_entry_points()),
                PropertySpec::multi_string(Action::Degrade.property())
                    .describe("Health checks that report Degraded: looks_alive, is_alive")
                    .default(no_entry_points()),
                PropertySpec::duration("slow_for")
                    .describe("How long a slow entry point sleeps")
                    .default(Duration::from_millis(200))
                    .max(600_000),
                PropertySpec::duration("pending_online")
                    .describe(
                        "When above 0, online returns pending and a worker completes it after \
                         this long",
                    )
                    .default(Duration::ZERO)
                    .max(3_600_000),
                PropertySpec::duration("report_every")
                    .describe("How often a pending online reports progress")
                    .default(Duration::from_millis(100))
                    .range(1, 60_000),
                PropertySpec::bool("stall_reports")
                    .describe(
                        "A pending online never reports nor completes until stopped or \
                         terminated",
                    )
                    .default(false),
                PropertySpec::string("control_file")
                    .describe(
                        "A file of `<action> <entry point>` lines adding faults at run time, \
                         re-read when it changes (empty: none)",
                    )
                    .default(""),
            ]),
        }
    }

    fn startup(ctx: &StartupContext) -> Result<FaultInjectionType> {
        ctx.log.debug(format_args!("fault-injection type started"));
        Ok(FaultInjectionType)
    }

    fn open(
        &self,
        ctx: ResourceContext,
        properties: &Properties,
        recover: bool,
    ) -> Result<FaultInjection> {
        let configured = Faults::from_properties(properties)?;
        let control_file = match properties.str("control_file")? {
            "" => None,
            path => Some(ControlFile::new(PathBuf::from(path))),
        };
        let pending_online = properties.duration("pending_online")?;
        let pending = if pending_online.is_zero() {
            None
        } else {
            Some(Pending {
                duration: pending_online,
                report_every: properties.duration("report_every")?,
                stall: properties.bool("stall_reports")?,
            })
        };
        let resource = FaultInjection {
            workload: Workload::new(Path::new(properties.str("state_dir")?), ctx.name()),
            configured,
            control_file,
            slow_for: properties.duration("slow_for")?,
            pending,
            worker: Mutex::new(None),
            ctx,
        };
        resource.enter(EntryPoint::Open)?;

        let state_dir = Path::new(properties.str("state_dir")?);
        if !state_dir.is_dir() {
            return Err(Error::NotFound(format!(
                "property `state_dir`: {} is not a directory",
                state_dir.display()
            )));
        }
        if recover {
            let running = &resource.workload.running;
            if running.exists() {
                resource.ctx.log().info(format_args!(
                    "re-attached to the running workload {}",
                    running.display()
                ));
            } else {
                resource.ctx.log().info(format_args!(
                    "nothing to re-attach: {} does not exist",
                    running.display()
                ));
            }
        }
        Ok(resource)
    }
}

impl FaultInjection {
    /// The faults in force now: the configured ones plus the control file's.
    fn faults(&self) -> Faults {
        match &self.control_file {
            None => self.configured,
            Some(file) => self.configured.union(file.faults(self.ctx.log())),
        }
    }

    fn inject(&self, entry_point: EntryPoint) -> Injected {
        inject(self.faults(), entry_point, self.slow_for, self.ctx.log())
    }

    /// Applies the faults of a non-health entry point.
    fn enter(&self, entry_point: EntryPoint) -> Result<()> {
        match self.inject(entry_point) {
            Injected::Fail(why) => Err(Error::Failed(why)),
            // Rejected for these entry points by `open` and the control file.
            Injected::Degrade(_) | Injected::Nothing => Ok(()),
        }
    }

    /// Applies the faults of a health check: `Some` health overrides the
    /// real check.
    fn enter_health(&self, entry_point: EntryPoint) -> Option<Health> {
        match self.inject(entry_point) {
            Injected::Nothing => None,
            Injected::Fail(why) => Some(Health::Failed(why)),
            Injected::Degrade(why) => Some(Health::Degraded(why)),
        }
    }

    fn stop_worker(&self) {
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(worker) = worker {
            worker.stop_and_join();
        }
    }

    fn start_pending(&self, pending: Pending, status: StatusReporter) -> Result<()> {
        let workload = self.workload.clone();
        let termination = self.ctx.termination().clone();
        let worker = Worker::spawn("fi-online", move |stop| {
            let outcome = run_pending(pending, &status, stop, &termination, &workload);
            status.complete(outcome);
        })
        .map_err(|e| Error::io("starting the pending-online worker", &e))?;
        *self.worker.lock().unwrap_or_else(PoisonError::into_inner) = Some(worker);
        Ok(())
    }
}

/// Waits up to `timeout` for the worker's `stop` flag or the resource's
/// `termination` flag; returns whether either was raised.
fn wait(stop: &StopFlag, termination: &StopFlag, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if termination.is_raised() {
            return true;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return stop.is_raised();
        };
        if left.is_zero() {
            return stop.is_raised();
        }
        if stop.wait_timeout(left.min(POLL)) {
            return true;
        }
    }
}

/// The body of a pending online's worker: its outcome.
fn run_pending(
    pending: Pending,
    status: &StatusReporter,
    stop: &StopFlag,
    termination: &StopFlag,
    workload: &Workload,
) -> Result<()> {
    let stopped = || Err(Error::Terminated("the pending online was stopped".into()));
    if pending.stall {
        while !wait(stop, termination, Duration::from_secs(3600)) {}
        return stopped();
    }
    let started = Instant::now();
    let mut checkpoint = 0;
    while let Some(left) = pending.duration.checked_sub(started.elapsed()) {
        if left.is_zero() {
            break;
        }
        checkpoint += 1;
        if status.report(checkpoint, pending.report_every.saturating_mul(2)) == Reply::Terminate {
            return Err(Error::Terminated(
                "the host answered a progress report with terminate".into(),
            ));
        }
        if wait(stop, termination, left.min(pending.report_every)) {
            return stopped();
        }
    }
    if stop.is_raised() || termination.is_raised() {
        return stopped();
    }
    workload.start()
}

impl Resource for FaultInjection {
    fn online(&self, status: StatusReporter) -> Result<Transition> {
        self.enter(EntryPoint::Online)?;
        self.stop_worker();
        match self.pending {
            None => {
                self.workload.start()?;
                Ok(Transition::Done)
            }
            Some(pending) => {
                self.start_pending(pending, status)?;
                Ok(Transition::Pending)
            }
        }
    }

    fn offline(&self, _status: StatusReporter) -> Result<Transition> {
        self.enter(EntryPoint::Offline)?;
        self.stop_worker();
        self.workload.stop()?;
        Ok(Transition::Done)
    }

    fn terminate(&self) -> Result<()> {
        self.enter(EntryPoint::Terminate)?;
        // The termination flag is raised already: a pending worker sees it.
        self.stop_worker();
        self.workload.stop()
    }

    fn looks_alive(&self) -> Health {
        if let Some(health) = self.enter_health(EntryPoint::LooksAlive) {
            return health;
        }
        if self.workload.running.exists() {
            Health::Healthy
        } else {
            Health::failed(format!(
                "{} does not exist",
                self.workload.running.display()
            ))
        }
    }

    fn is_alive(&self) -> Health {
        if let Some(health) = self.enter_health(EntryPoint::IsAlive) {
            return health;
        }
        let running = &self.workload.running;
        match fs::read_to_string(running) {
            Ok(owner) if owner == self.workload.name => Health::Healthy,
            Ok(owner) => Health::failed(format!(
                "{} names {owner:?}, not {:?}",
                running.display(),
                self.workload.name
            )),
            Err(e) => Health::failed(format!("reading {}: {e}", running.display())),
        }
    }

    fn control(&self, code: ControlCode, _input: &[u8]) -> Result<Vec<u8>> {
        self.enter(EntryPoint::Control)?;
        match code {
            START_COUNT => Ok(read_count(&self.workload.starts)?.to_string().into_bytes()),
            _ => Err(Error::unsupported(code)),
        }
    }

    fn close(self) -> Result<()> {
        // On an early return the worker is stopped anyway, when `self` drops.
        self.enter(EntryPoint::Close)?;
        self.stop_worker();
        Ok(())
    }
}

clusterkit::export_resource_types!(FaultInjectionType);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_point_names_match() {
        assert_eq!(ENTRY_POINTS, EntryPoint::ALL.map(EntryPoint::name));
    }
}
