//! `virtual-machine`, a clusterkit resource type for a QEMU virtual machine
//! controlled over QMP (the QEMU Machine Protocol).
//!
//! - **`online`** checks `run_dir` and `qemu_binary`, starts
//!   `qemu-system-x86_64 -daemonize -pidfile <run_dir>/<name>.pid -qmp
//!   unix:<run_dir>/<name>.qmp,server=on,wait=off …` (every argument its own
//!   argv entry, never through a shell) and returns pending; a [`Worker`]
//!   waits for QEMU to daemonize, adopts it through its pidfile and polls
//!   QMP `query-status` until it says `running`, reporting progress every
//!   100 ms.
//! - **`looks_alive`**: the QEMU process is alive (a pidfd held since
//!   online or re-attach; without pidfds, `kill(pid, 0)` and a look at
//!   `/proc/<pid>/cmdline`). **`is_alive`**: QMP `query-status` answers
//!   `running` within `qmp_timeout`.
//! - **`offline`** (pending, on a worker): QMP `system_powerdown`, up to
//!   `powerdown_grace` for the guest to power off, then QMP `quit`, then
//!   SIGKILL; the pidfile and socket are removed. **`terminate`**: SIGKILL
//!   at once.
//! - **Re-attach** ([`Characteristics::REATTACH`]): `open` with
//!   `recover = true` reads the pidfile and adopts the process only if it
//!   is alive *and* is this resource's QEMU (its command line names the
//!   binary and this resource's QMP socket). A stale pidfile (the process
//!   is gone, or the pid now belongs to another program) is logged and
//!   removed, never adopted: the resource comes up without a VM, its health
//!   checks fail, and the host starts a fresh one.
//!
//! QEMU is started with `-daemonize`, so it is not a child of the monitor
//! process and survives the monitor's death; it inherits no file
//! descriptor but its standard streams. The `README.md` next to this crate
//! gives the exact command line, every property and the limits. Built as a
//! `cdylib` (`libclusterkit_virtual_machine.so`).

use std::path::{Path, PathBuf};
use std::process::ChildStderr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clusterkit::{
    Characteristics, ControlCode, Error, Health, OperationTimeouts, Properties, PropertyError,
    PropertySpec, Reply, Resource, ResourceContext, ResourceType, Result, Schema, StartupContext,
    StatusReporter, StopFlag, Transition, TypeDescription, Worker,
};

mod config;
mod process;
mod qmp;

use config::{Config, check_run_dir};
use process::{Launcher, Vm, read_errors, read_pid_file, remove_file};
use qmp::{Qmp, QmpError};

/// The type's name, as hosts and configs refer to it.
pub const TYPE_NAME: &str = "virtual-machine";

/// How often a pending `online` or `offline` reports progress.
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// How often a worker looks at its launcher, its stop flag and the
/// resource's termination flag.
const POLL: Duration = Duration::from_millis(20);

/// How long `offline` waits for QEMU to exit after QMP `quit`, before
/// SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(2);

/// How long a SIGKILL'ed QEMU gets to exit (`terminate` must return within
/// 1 s, with the workload stopped).
const KILL_GRACE: Duration = Duration::from_millis(700);

/// The QMP budget of `open` when re-attaching (`open` must return within
/// 300 ms): `qmp_timeout` or this, whichever is smaller.
const OPEN_QMP_BUDGET: Duration = Duration::from_millis(150);

/// The pidfile of resource `name`: `<run_dir>/<name>.pid`, written by QEMU
/// (`-pidfile`) and holding its pid in decimal.
pub fn pid_file(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.pid"))
}

/// The QMP socket of resource `name`: `<run_dir>/<name>.qmp`, on which QEMU
/// listens (`-qmp unix:<path>,server=on,wait=off`).
pub fn qmp_socket(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.qmp"))
}

/// The `virtual-machine` type.
#[derive(Debug)]
pub struct VirtualMachineType;

/// What a resource knows of its QEMU, shared with its workers.
#[derive(Debug, Default)]
struct Tracked {
    /// The QEMU started or adopted, while it runs.
    vm: Option<Arc<Vm>>,
    /// A launch in progress: the process that daemonizes QEMU, until it is
    /// reaped by the online worker or abandoned.
    launcher: Option<Launcher>,
    /// Why there is no VM, when re-attach found none to adopt: for the
    /// health checks' reasons.
    not_adopted: Option<String>,
}

impl Tracked {
    /// A health check's result when no VM is tracked.
    fn no_vm(&self) -> Health {
        Health::failed(format!(
            "no QEMU process: {}",
            self.not_adopted
                .as_deref()
                .unwrap_or("none was started or adopted")
        ))
    }

    /// Tracks `vm` (or nothing), forgetting why there was none.
    fn set_vm(&mut self, vm: Option<Arc<Vm>>) {
        self.vm = vm;
        self.not_adopted = None;
    }
}

/// One `virtual-machine` resource.
#[derive(Debug)]
pub struct VirtualMachine {
    ctx: ResourceContext,
    config: Arc<Config>,
    tracked: Arc<Mutex<Tracked>>,
    worker: Mutex<Option<Worker>>,
}

impl ResourceType for VirtualMachineType {
    type Resource = VirtualMachine;

    fn describe() -> TypeDescription {
        TypeDescription {
            name: TYPE_NAME.into(),
            description: "A QEMU virtual machine controlled over QMP".into(),
            characteristics: Characteristics::REATTACH,
            schema: Schema::new(vec![
                PropertySpec::string("qemu_binary")
                    .describe("The QEMU system emulator: a name looked up on PATH, or a path")
                    .default("qemu-system-x86_64")
                    .min(1),
                PropertySpec::string("machine")
                    .describe("The -machine argument (QEMU machine type and options)")
                    .default("pc")
                    .min(1),
                PropertySpec::u32("memory_mb")
                    .describe("Guest memory in MiB (-m)")
                    .default(64u32)
                    .min(16),
                PropertySpec::multi_string("extra_args")
                    .describe(
                        "More QEMU arguments, appended after the resource's own; each entry is \
                         one argv entry, never seen by a shell",
                    )
                    .default(Vec::<String>::new()),
                PropertySpec::multi_string("secret_args")
                    .describe(
                        "QEMU arguments that carry secrets (say `-object \
                         secret,id=sec0,data=...`), appended after extra_args; never logged, \
                         shown as <secret>",
                    )
                    .secret(),
                PropertySpec::string("run_dir")
                    .describe(
                        "An existing directory for <name>.pid (QEMU's pidfile) and <name>.qmp \
                         (its QMP socket)",
                    )
                    .required()
                    .min(1),
                PropertySpec::duration("qmp_timeout")
                    .describe("Budget of one QMP exchange: connect, greeting, negotiation, command")
                    .default(Duration::from_millis(500))
                    .range(10, 60_000),
                PropertySpec::duration("powerdown_grace")
                    .describe(
                        "How long offline waits for the guest to power off after \
                         system_powerdown before sending quit",
                    )
                    .default(Duration::from_secs(5))
                    .max(3_600_000),
                PropertySpec::duration("start_timeout")
                    .describe("How long online waits for QEMU to start and report running")
                    .default(Duration::from_secs(30))
                    .range(100, 3_600_000),
            ]),
        }
    }

    fn startup(ctx: &StartupContext) -> Result<VirtualMachineType> {
        ctx.log.debug(format_args!("virtual-machine type started"));
        Ok(VirtualMachineType)
    }

    /// A guest can take minutes to boot or shut down, far past the
    /// defaults; `start_timeout` and `powerdown_grace` (30 s and 5 s by
    /// default) must fit inside these with room to spare.
    fn operation_timeouts() -> OperationTimeouts {
        OperationTimeouts::default()
            .start(Duration::from_secs(300))
            .stop(Duration::from_secs(180))
    }

    /// `VALIDATE_PROPERTIES`: the schema, then what `open` and `online`
    /// check (`run_dir`, `extra_args`, the QEMU binary), offline. The
    /// resource's name is not known here; a placeholder stands in for it.
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        match code {
            ControlCode::VALIDATE_PROPERTIES => {
                let valid = Self::describe()
                    .schema
                    .validate(&Properties::decode(input)?)?;
                Config::from_properties("validate", &valid)?.resolve_binary()?;
                Ok(Vec::new())
            }
            _ => Err(Error::unsupported(code)),
        }
    }

    fn open(
        &self,
        ctx: ResourceContext,
        properties: &Properties,
        recover: bool,
    ) -> Result<VirtualMachine> {
        let config = Config::from_properties(ctx.name(), properties)?;
        let resource = VirtualMachine {
            ctx,
            config: Arc::new(config),
            tracked: Arc::default(),
            worker: Mutex::new(None),
        };
        if recover {
            resource.reattach();
        }
        Ok(resource)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connects to `socket` and asks `query-status`; returns the status
/// (`"running"`, `"paused"`, …), everything within `budget`.
fn query_status(
    socket: &Path,
    budget: Duration,
    tick: &mut dyn FnMut() -> Result<()>,
) -> Result<String, QmpError<Error>> {
    let mut qmp = Qmp::connect(socket, budget, tick)?;
    let answer = qmp.execute("query-status", tick)?;
    answer
        .get("status")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| QmpError::Io(format!("query-status answered without a status: {answer}")))
}

/// Connects to `socket` and runs `command`, each step within `budget`.
fn qmp_command(
    socket: &Path,
    budget: Duration,
    command: &str,
    tick: &mut dyn FnMut() -> Result<()>,
) -> Result<(), QmpError<Error>> {
    let mut qmp = Qmp::connect(socket, budget, tick)?;
    qmp.restart_clock();
    qmp.execute(command, tick).map(drop)
}

/// A pending operation's side of its worker: progress reports, and the
/// three ways to be told to stop (the worker's flag, the resource's
/// termination flag, a `Terminate` reply).
struct Job {
    what: &'static str,
    status: StatusReporter,
    stop: StopFlag,
    termination: StopFlag,
    checkpoint: u32,
    last_report: Option<Instant>,
}

impl Job {
    fn new(
        what: &'static str,
        status: StatusReporter,
        stop: &StopFlag,
        termination: StopFlag,
    ) -> Job {
        Job {
            what,
            status,
            stop: stop.clone(),
            termination,
            checkpoint: 0,
            last_report: None,
        }
    }

    /// Fails if the job must stop; reports progress when one is due.
    fn check(&mut self) -> Result<()> {
        if self.stop.is_raised() || self.termination.is_raised() {
            return Err(Error::Terminated(format!(
                "the pending {} was stopped",
                self.what
            )));
        }
        if self
            .last_report
            .is_none_or(|at| at.elapsed() >= REPORT_EVERY)
        {
            self.checkpoint += 1;
            self.last_report = Some(Instant::now());
            if self.status.report(self.checkpoint, REPORT_EVERY * 3) == Reply::Terminate {
                return Err(Error::Terminated(
                    "the host answered a progress report with terminate".into(),
                ));
            }
        }
        Ok(())
    }

    /// Waits `how_long`, reporting and watching for a stop request.
    fn pause(&mut self, how_long: Duration) -> Result<()> {
        let deadline = Instant::now() + how_long;
        loop {
            self.check()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            self.stop.wait_timeout(left.min(POLL));
        }
    }
}

impl VirtualMachine {
    fn log(&self) -> &clusterkit::Logger {
        self.ctx.log()
    }

    fn stop_worker(&self) {
        let worker = lock(&self.worker).take();
        if let Some(worker) = worker {
            worker.stop_and_join();
        }
    }

    /// `open` with `recover = true`: adopt the QEMU named by the pidfile if
    /// it is alive and ours; otherwise log why not and clear the stale files.
    fn reattach(&self) {
        let outcome = self.adopt_from_pid_file();
        let mut tracked = lock(&self.tracked);
        match outcome {
            Ok(vm) => tracked.set_vm(Some(Arc::new(vm))),
            Err(why) => {
                tracked.set_vm(None);
                tracked.not_adopted = Some(why);
            }
        }
    }

    /// The body of [`reattach`](Self::reattach): the adopted QEMU, or why
    /// there is none.
    fn adopt_from_pid_file(&self) -> Result<Vm, String> {
        let config = &self.config;
        let pid_file = config.pid_file.display();
        let pid = match read_pid_file(&config.pid_file) {
            Ok(Some(pid)) => pid,
            Ok(None) => {
                self.log()
                    .info(format_args!("nothing to re-attach: no pidfile {pid_file}"));
                return Err(format!("re-attach found no pidfile {pid_file}"));
            }
            Err(e) => {
                self.log().warn(format_args!(
                    "stale pidfile {pid_file}: {e}; not adopting anything, removing it"
                ));
                self.remove_files();
                return Err(format!("re-attach found a stale pidfile {pid_file} ({e})"));
            }
        };
        match Vm::adopt(pid, config.identity()) {
            Ok(vm) => {
                let budget = config.qmp_timeout.min(OPEN_QMP_BUDGET);
                match query_status(&config.qmp_socket, budget, &mut || Ok(())) {
                    Ok(status) => self.log().info(format_args!(
                        "re-attached to QEMU pid {pid} (QMP status: {status})"
                    )),
                    Err(e) => self.log().warn(format_args!(
                        "re-attached to QEMU pid {pid}, but QMP does not answer ({e}); \
                         is_alive will tell"
                    )),
                }
                Ok(vm)
            }
            Err(probe) => {
                let why = probe.reason();
                self.log().warn(format_args!(
                    "stale pidfile {pid_file}: it names pid {pid}, but {why}, not this \
                     resource's QEMU; not adopting it (the pidfile and socket are removed)"
                ));
                self.remove_files();
                Err(format!(
                    "re-attach found a stale pidfile {pid_file} (pid {pid}: {why})"
                ))
            }
        }
    }

    /// The running QEMU of this resource: the one tracked, or else one
    /// found through the pidfile (alive and ours), which is then tracked.
    fn find_running(&self) -> Option<Arc<Vm>> {
        let mut tracked = lock(&self.tracked);
        if let Some(vm) = &tracked.vm {
            if !vm.has_exited() {
                return Some(vm.clone());
            }
            tracked.vm = None;
        }
        let pid = read_pid_file(&self.config.pid_file).ok().flatten()?;
        let vm = Arc::new(Vm::adopt(pid, self.config.identity()).ok()?);
        self.log().info(format_args!(
            "found QEMU pid {pid} of this resource through {}",
            self.config.pid_file.display()
        ));
        tracked.set_vm(Some(vm.clone()));
        Some(vm)
    }

    /// Ends a launch left behind by a stopped online worker: kills the
    /// launcher and, unless QEMU had finished starting, QEMU too.
    fn abandon_launch(&self) {
        let Some(launcher) = lock(&self.tracked).launcher.take() else {
            return;
        };
        let launcher_pid = launcher.pid();
        if launcher.abandon() {
            self.log().info(format_args!(
                "QEMU had finished starting when its online was stopped (launcher pid \
                 {launcher_pid})"
            ));
            return;
        }
        self.log().info(format_args!(
            "abandoned a QEMU launch (launcher pid {launcher_pid})"
        ));
        if let Some(vm) = self.find_running() {
            let _ = vm.kill();
            let _ = vm.wait_exit(KILL_GRACE, &mut || Ok::<(), ()>(()));
            lock(&self.tracked).set_vm(None);
        }
    }

    /// Removes the pidfile and the QMP socket, logging failures.
    fn remove_files(&self) {
        for path in [&self.config.pid_file, &self.config.qmp_socket] {
            if let Err(e) = remove_file(path) {
                self.log()
                    .warn(format_args!("removing {}: {e}", path.display()));
            }
        }
    }

    /// Starts QEMU (the launcher is tracked; the worker reaps it) and
    /// returns the launcher's stderr.
    fn launch(&self, binary: &Path) -> Result<ChildStderr> {
        let config = &self.config;
        for path in [&config.pid_file, &config.qmp_socket] {
            remove_file(path).map_err(|e| {
                Error::io(format_args!("removing the stale {}", path.display()), &e)
            })?;
        }
        self.log().info(format_args!(
            "starting QEMU: {}",
            config.describe_command(binary)
        ));
        let (launcher, stderr) =
            Launcher::spawn(binary, &config.qemu_args()).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    Error::from(PropertyError::invalid(
                        "qemu_binary",
                        format!("starting {}: {e}", binary.display()),
                    ))
                }
                _ => Error::io(format_args!("starting {}", binary.display()), &e),
            })?;
        lock(&self.tracked).launcher = Some(launcher);
        Ok(stderr)
    }

    fn spawn_worker(
        &self,
        name: &str,
        work: impl FnOnce(&StopFlag) + Send + 'static,
    ) -> Result<()> {
        let worker = Worker::spawn(name, work)
            .map_err(|e| Error::io(format_args!("starting the {name} worker"), &e))?;
        *lock(&self.worker) = Some(worker);
        Ok(())
    }
}

/// The online worker: waits for the launch (if any), adopts QEMU through
/// its pidfile, then waits for QMP to say `running`.
fn run_online(
    job: &mut Job,
    ctx: &ResourceContext,
    config: &Config,
    tracked: &Mutex<Tracked>,
    stderr: Option<ChildStderr>,
) -> Result<()> {
    let deadline = Instant::now() + config.start_timeout;
    let start_timeout_ms = config.start_timeout.as_millis();
    if let Some(mut stderr) = stderr {
        let mut errors = Vec::new();
        loop {
            job.check()?;
            read_errors(&mut stderr, &mut errors);
            let exited = {
                let mut tracked = lock(tracked);
                let Some(launcher) = tracked.launcher.as_mut() else {
                    return Err(Error::Terminated("the QEMU launch was abandoned".into()));
                };
                let status = launcher
                    .try_wait()
                    .map_err(|e| Error::io("waiting for the QEMU launcher", &e))?;
                if status.is_some() {
                    tracked.launcher = None;
                }
                status
            };
            if let Some(status) = exited {
                read_errors(&mut stderr, &mut errors);
                if !status.success() {
                    let text = String::from_utf8_lossy(&errors);
                    return Err(Error::Failed(format!(
                        "QEMU failed to start ({status}): {}",
                        text.trim()
                    )));
                }
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "QEMU did not finish starting within {start_timeout_ms} ms (start_timeout)"
                )));
            }
            job.pause(POLL)?;
        }
        let pid_file = config.pid_file.display();
        let pid = read_pid_file(&config.pid_file)
            .map_err(|e| Error::Failed(format!("QEMU started, but its pidfile {pid_file}: {e}")))?
            .ok_or_else(|| {
                Error::Failed(format!("QEMU started, but wrote no pidfile {pid_file}"))
            })?;
        let vm = Vm::adopt(pid, config.identity()).map_err(|probe| {
            Error::Failed(format!(
                "QEMU started, but its pidfile {pid_file} names pid {pid}, and {}",
                probe.reason()
            ))
        })?;
        ctx.log().info(format_args!("QEMU started: pid {pid}"));
        lock(tracked).set_vm(Some(Arc::new(vm)));
    }
    let vm = lock(tracked)
        .vm
        .clone()
        .ok_or_else(|| Error::Internal("no QEMU to wait for".into()))?;
    let pid = vm.pid();
    loop {
        job.check()?;
        if vm.has_exited() {
            return Err(Error::Failed(format!(
                "QEMU pid {pid} exited while starting"
            )));
        }
        let problem =
            match query_status(&config.qmp_socket, config.qmp_timeout, &mut || job.check()) {
                Ok(status) if status == "running" => {
                    ctx.log().info(format_args!("QEMU pid {pid} is running"));
                    return Ok(());
                }
                Ok(status) => format!("its status is {status:?}"),
                Err(QmpError::Stopped(e)) => return Err(e),
                Err(e) => e.to_string(),
            };
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "QEMU pid {pid} did not report running over QMP within {start_timeout_ms} ms \
                 (start_timeout): {problem}"
            )));
        }
        job.pause(REPORT_EVERY)?;
    }
}

/// The offline worker: `system_powerdown`, `powerdown_grace`, `quit`,
/// SIGKILL; then the files are removed.
fn run_offline(job: &mut Job, ctx: &ResourceContext, config: &Config, vm: &Vm) -> Result<()> {
    let pid = vm.pid();
    let log = ctx.log();
    let grace_ms = config.powerdown_grace.as_millis();
    let socket = &config.qmp_socket;
    let mut stopped = false;
    match qmp_command(socket, config.qmp_timeout, "system_powerdown", &mut || {
        job.check()
    }) {
        Ok(()) => log.info(format_args!(
            "asked QEMU pid {pid} to power down (system_powerdown); waiting up to {grace_ms} ms"
        )),
        Err(QmpError::Stopped(e)) => return Err(e),
        Err(e) => log.warn(format_args!(
            "system_powerdown to QEMU pid {pid} failed: {e}"
        )),
    }
    if vm.wait_exit(config.powerdown_grace, &mut || job.check())? {
        log.info(format_args!("QEMU pid {pid} powered down"));
        stopped = true;
    }
    if !stopped {
        log.info(format_args!(
            "QEMU pid {pid} did not power down within {grace_ms} ms (powerdown_grace): \
             sending quit"
        ));
        match qmp_command(socket, config.qmp_timeout, "quit", &mut || job.check()) {
            Ok(()) | Err(QmpError::Closed) => {}
            Err(QmpError::Stopped(e)) => return Err(e),
            Err(e) => log.warn(format_args!("quit to QEMU pid {pid} failed: {e}")),
        }
        stopped = vm.wait_exit(QUIT_GRACE, &mut || job.check())?;
    }
    if !stopped {
        log.warn(format_args!(
            "QEMU pid {pid} still runs {} ms after quit: killing it",
            QUIT_GRACE.as_millis()
        ));
        vm.kill()
            .map_err(|e| Error::io(format_args!("killing QEMU pid {pid}"), &e))?;
        if !vm.wait_exit(KILL_GRACE, &mut || job.check())? {
            return Err(Error::Failed(format!(
                "QEMU pid {pid} did not exit after SIGKILL"
            )));
        }
    }
    for path in [&config.pid_file, &config.qmp_socket] {
        remove_file(path)
            .map_err(|e| Error::io(format_args!("removing {}", path.display()), &e))?;
    }
    log.info(format_args!("QEMU pid {pid} stopped"));
    Ok(())
}

/// Logs how a pending operation ended badly: a stop request (terminate, a
/// newer call) at info level, a real failure at error level.
fn log_failure(ctx: &ResourceContext, what: &str, e: &Error) {
    if e.code() == clusterkit::ErrorCode::Terminated {
        ctx.log().info(format_args!("{what} ended early: {e}"));
    } else {
        ctx.log().error(format_args!("{what} failed: {e}"));
    }
}

impl Resource for VirtualMachine {
    fn online(&self, status: StatusReporter) -> Result<Transition> {
        self.stop_worker();
        self.abandon_launch();
        check_run_dir(&self.config.run_dir)?;
        let binary = self.config.resolve_binary()?;
        let stderr = match self.find_running() {
            Some(vm) => {
                self.log().info(format_args!(
                    "QEMU pid {} of this resource is running already: adopting it instead of \
                     starting another",
                    vm.pid()
                ));
                None
            }
            None => Some(self.launch(&binary)?),
        };
        let ctx = self.ctx.clone();
        let config = self.config.clone();
        let tracked = self.tracked.clone();
        self.spawn_worker("vm-online", move |stop| {
            let mut job = Job::new("online", status.clone(), stop, ctx.termination().clone());
            let outcome = run_online(&mut job, &ctx, &config, &tracked, stderr);
            if let Err(e) = &outcome {
                log_failure(&ctx, "online", e);
            }
            status.complete(outcome);
        })?;
        Ok(Transition::Pending)
    }

    fn offline(&self, status: StatusReporter) -> Result<Transition> {
        self.stop_worker();
        self.abandon_launch();
        let Some(vm) = self.find_running() else {
            self.log()
                .info(format_args!("no QEMU of this resource is running"));
            lock(&self.tracked).set_vm(None);
            self.remove_files();
            return Ok(Transition::Done);
        };
        let ctx = self.ctx.clone();
        let config = self.config.clone();
        let tracked = self.tracked.clone();
        self.spawn_worker("vm-offline", move |stop| {
            let mut job = Job::new("offline", status.clone(), stop, ctx.termination().clone());
            let outcome = run_offline(&mut job, &ctx, &config, &vm);
            match &outcome {
                Ok(()) => {
                    let mut tracked = lock(&tracked);
                    if tracked.vm.as_ref().is_some_and(|t| Arc::ptr_eq(t, &vm)) {
                        tracked.vm = None;
                    }
                }
                Err(e) => log_failure(&ctx, "offline", e),
            }
            status.complete(outcome);
        })?;
        Ok(Transition::Pending)
    }

    fn terminate(&self) -> Result<()> {
        // The termination flag is raised already: a worker sees it within
        // a few milliseconds, wherever it is waiting.
        self.stop_worker();
        self.abandon_launch();
        let killed = match self.find_running() {
            None => None,
            Some(vm) => {
                let pid = vm.pid();
                vm.kill()
                    .map_err(|e| Error::io(format_args!("killing QEMU pid {pid}"), &e))?;
                if !vm
                    .wait_exit(KILL_GRACE, &mut || Ok::<(), ()>(()))
                    .unwrap_or(false)
                {
                    // Still tracked: the next terminate tries again.
                    return Err(Error::Failed(format!(
                        "QEMU pid {pid} did not exit within {} ms of SIGKILL",
                        KILL_GRACE.as_millis()
                    )));
                }
                Some(pid)
            }
        };
        lock(&self.tracked).set_vm(None);
        self.remove_files();
        if let Some(pid) = killed {
            self.log().info(format_args!("killed QEMU pid {pid}"));
        }
        Ok(())
    }

    fn looks_alive(&self) -> Health {
        let tracked = lock(&self.tracked);
        match &tracked.vm {
            None => tracked.no_vm(),
            Some(vm) if vm.has_exited() => {
                Health::failed(format!("QEMU pid {} has exited", vm.pid()))
            }
            Some(_) => Health::Healthy,
        }
    }

    fn is_alive(&self) -> Health {
        let vm = {
            let tracked = lock(&self.tracked);
            match &tracked.vm {
                Some(vm) => vm.clone(),
                None => return tracked.no_vm(),
            }
        };
        if vm.has_exited() {
            return Health::failed(format!("QEMU pid {} has exited", vm.pid()));
        }
        let termination = self.ctx.termination();
        let mut tick = || {
            if termination.is_raised() {
                Err(Error::Terminated("terminate was called".into()))
            } else {
                Ok(())
            }
        };
        match query_status(&self.config.qmp_socket, self.config.qmp_timeout, &mut tick) {
            Ok(status) if status == "running" => Health::Healthy,
            Ok(status) => Health::failed(format!(
                "QMP query-status says {status:?}, not \"running\" (QEMU pid {})",
                vm.pid()
            )),
            Err(e) => Health::failed(format!(
                "QMP query-status on {} (QEMU pid {}): {e}",
                self.config.qmp_socket.display(),
                vm.pid()
            )),
        }
    }

    fn close(self) -> Result<()> {
        // A running VM keeps running (the host terminates first when it
        // must not); only a launch still in progress is abandoned.
        self.stop_worker();
        self.abandon_launch();
        Ok(())
    }
}

clusterkit::export_resource_types!(VirtualMachineType);
