//! The OCF adapter: any clusterkit resource type acts as a Pacemaker OCF
//! resource agent (`docs/PACEMAKER.md`).
//!
//! `clusterkit ocf agent --library L --type T ACTION` implements `start`,
//! `stop`, `monitor` (`OCF_CHECK_LEVEL` 0 → `looks_alive`, ≥ 10 →
//! `is_alive`), `meta-data`, `validate-all` (the schema, then the type's
//! own checks through its `VALIDATE_PROPERTIES` control code) and, for
//! types with live properties, `reload-agent`. Parameters come from
//! `OCF_RESKEY_<property>`; Pacemaker's own (`crm_feature_set`,
//! `CRM_meta_*`) are ignored. Each action runs in its own short-lived
//! process, as OCF wants: it loads the library, opens the resource with
//! `recover = true` (adopting the running workload), acts and exits; a
//! marker file under `$HA_RSCTMP` remembers that the instance was started,
//! so `monitor` tells "stopped" (7) from "failed" (1). Every non-zero exit
//! writes an `ocf-exit-reason:` line; logging follows `HA_LOGFILE`,
//! `HA_LOGFACILITY` and `HA_debug` (see [`log`]).
//! `clusterkit ocf install` writes one wrapper script per type under
//! `/usr/lib/ocf/resource.d/clusterkit/`.

mod delegate;
mod log;
mod meta;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use clusterkit::{
    ControlCode, Error, ErrorCode, Health, Level, Logger, Properties, PropertyErrors, PropertyKind,
    Reply, Resource, ResourceState, Schema, StatusReporter, StatusSink, Transition,
};
use clusterkit_loader::{Library, ResourceTypeHandle};

use log::AgentLog;

/// OCF exit codes.
const OCF_SUCCESS: u8 = 0;
const OCF_ERR_GENERIC: u8 = 1;
const OCF_ERR_ARGS: u8 = 2;
const OCF_ERR_UNIMPLEMENTED: u8 = 3;
const OCF_ERR_INSTALLED: u8 = 5;
const OCF_ERR_CONFIGURED: u8 = 6;
const OCF_NOT_RUNNING: u8 = 7;
const OCF_DEGRADED: u8 = 190;

/// `OCF_RESKEY_` names Pacemaker sets for every agent, never parameters of
/// the agent's own.
const PACEMAKER_PARAMETERS: [&str; 2] = ["crm_feature_set", "OCF_CHECK_LEVEL"];

/// `clusterkit ocf …`.
#[derive(clap::Subcommand)]
pub(crate) enum OcfCommand {
    /// Runs one OCF action for a resource of TYPE from LIBRARY.
    Agent {
        /// The resource library.
        #[arg(long)]
        library: PathBuf,
        /// The resource type.
        #[arg(long = "type")]
        type_name: String,
        /// start, stop, monitor, reload-agent, meta-data or validate-all.
        action: String,
    },
    /// Writes an agent wrapper for every type of each library.
    Install {
        /// Resource libraries (repeatable).
        #[arg(long, required = true)]
        library: Vec<PathBuf>,
        /// Install under this root instead of `/`; a library under this
        /// root is named in the wrappers by its path from the root.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The clusterkit binary the wrappers run (default: this one).
        #[arg(long)]
        clusterkit: Option<PathBuf>,
    },
}

pub(crate) fn main(command: OcfCommand) -> ExitCode {
    match command {
        OcfCommand::Agent {
            library,
            type_name,
            action,
        } => ExitCode::from(agent(&library, &type_name, &action)),
        OcfCommand::Install {
            library,
            root,
            clusterkit,
        } => match install(&library, &root, clusterkit) {
            Ok(paths) => {
                for p in paths {
                    println!("{}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("clusterkit ocf install: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

pub(crate) use meta::text as value_text;

/// The OCF exit code for a clusterkit error.
fn exit_code(e: &Error) -> u8 {
    match e.code() {
        ErrorCode::InvalidProperties | ErrorCode::InvalidInput => OCF_ERR_CONFIGURED,
        ErrorCode::NotFound => OCF_ERR_INSTALLED,
        ErrorCode::Unsupported => OCF_ERR_UNIMPLEMENTED,
        _ => OCF_ERR_GENERIC,
    }
}

/// One action's outcome: the exit code and, when it is not 0, why. The
/// only code without a reason is 7 for an instance never started here.
struct Outcome {
    code: u8,
    reason: String,
}

impl Outcome {
    fn success() -> Outcome {
        Outcome {
            code: OCF_SUCCESS,
            reason: String::new(),
        }
    }

    fn fail(code: u8, reason: impl Into<String>) -> Outcome {
        Outcome {
            code,
            reason: reason.into(),
        }
    }

    fn error(context: &str, e: &Error) -> Outcome {
        Outcome::fail(exit_code(e), format!("{context}: {e}"))
    }
}

/// Writes the exit reason Pacemaker shows (`crm_mon`'s `exitreason`): one
/// line on stderr after `$OCF_EXIT_REASON_PREFIX`.
fn exit_reason(reason: &str) {
    let prefix = std::env::var("OCF_EXIT_REASON_PREFIX")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "ocf-exit-reason:".into());
    let one_line = reason.trim().replace('\n', "; ");
    eprintln!("{prefix}{one_line}");
}

/// The instance name Pacemaker gives (`OCF_RESOURCE_INSTANCE`).
fn instance_name() -> String {
    std::env::var("OCF_RESOURCE_INSTANCE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// The marker remembering that `type_name`'s instance (from
/// `OCF_RESOURCE_INSTANCE`) was started. Characters other than letters,
/// digits and `-` are hex-escaped, so distinct instances never share one.
fn marker_path(type_name: &str) -> PathBuf {
    let mut safe = String::new();
    for c in instance_name().chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            safe.push(c);
        } else {
            for b in c.to_string().bytes() {
                let _ = write!(safe, "_{b:02x}");
            }
        }
    }
    let dir = std::env::var_os("HA_RSCTMP")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/run/resource-agents"), PathBuf::from);
    dir.join(format!("clusterkit-{type_name}-{safe}.started"))
}

fn agent(library: &Path, type_name: &str, action: &str) -> u8 {
    let log = AgentLog::from_env(type_name);
    let outcome = run_action(library, type_name, action, &log);
    if outcome.code == OCF_NOT_RUNNING && outcome.reason.is_empty() {
        // A probe of an instance never started here: the expected answer,
        // given silently (Pacemaker logs any output of every probe).
        log.write(Level::Debug, &format!("{action}: not running"));
    } else if outcome.code != OCF_SUCCESS {
        let reason = if outcome.reason.is_empty() {
            format!("{action} failed")
        } else {
            outcome.reason
        };
        // Not running is a monitor's answer, not a fault: logged at info.
        let level = if outcome.code == OCF_NOT_RUNNING {
            Level::Info
        } else {
            Level::Error
        };
        log.write_quietly(
            level,
            &format!("{action}: {reason} (exit {})", outcome.code),
        );
        exit_reason(&reason);
    } else {
        log.write(Level::Debug, &format!("{action}: ok"));
    }
    outcome.code
}

fn run_action(library: &Path, type_name: &str, action: &str, log: &Arc<AgentLog>) -> Outcome {
    if action.is_empty() {
        return Outcome::fail(OCF_ERR_ARGS, "no action given");
    }
    let library_path = library;
    let library = match Library::load(library, log.logger()) {
        Ok(l) => l,
        Err(e) => return unusable(type_name, action, OCF_ERR_INSTALLED, e.to_string()),
    };
    let Some(ty) = library.resource_type(type_name) else {
        let reason = format!("{} exports no type `{type_name}`", library.path().display());
        return unusable(type_name, action, OCF_ERR_INSTALLED, reason);
    };
    match action {
        "meta-data" => {
            print!(
                "{}",
                meta::meta_data(ty.description(), &ty.operation_timeouts())
            );
            Outcome::success()
        }
        "validate-all" => match properties(&ty).and_then(|p| validate(&ty, &p)) {
            Ok(()) => Outcome::success(),
            Err(e) => Outcome::error("invalid configuration", &e),
        },
        "start" | "stop" | "monitor" | "reload-agent" => {
            if action == "reload-agent" && !meta::reloadable(ty.description()) {
                return Outcome::fail(
                    OCF_ERR_UNIMPLEMENTED,
                    format!("type `{type_name}` has no property that applies live"),
                );
            }
            if let Some(socket) = delegate::host_for(type_name) {
                // A node-local host keeps the resource between operations.
                return match properties(&ty) {
                    Ok(props) => delegate::run(&socket, action, library_path, type_name, &props),
                    Err(_) if matches!(action, "stop" | "monitor") => {
                        delegate::run(&socket, action, library_path, type_name, &Properties::new())
                    }
                    Err(e) => Outcome::error("invalid configuration", &e),
                };
            }
            let opened = properties(&ty).and_then(|props| Instance::new(&ty, props, log));
            match (opened, action) {
                (Ok(i), "start") => i.start(),
                (Ok(i), "stop") => i.stop(),
                (Ok(i), "monitor") => i.monitor(),
                (Ok(i), _) => i.reload(),
                (Err(e), _) => cannot_open(type_name, action, &e, log),
            }
        }
        "usage" | "help" => {
            println!(
                "usage: {type_name} {{start|stop|monitor|reload-agent|meta-data|validate-all}}"
            );
            Outcome::success()
        }
        _ => Outcome::fail(
            OCF_ERR_UNIMPLEMENTED,
            format!("action `{action}` is not implemented"),
        ),
    }
}

/// What an action answers when the library, type or configuration is
/// unusable: a stop or a probe of an instance never started here succeeds
/// or says "not running", so Pacemaker does not fence a node over a library
/// it never ran there.
fn unusable(type_name: &str, action: &str, code: u8, reason: String) -> Outcome {
    let started = marker_path(type_name).exists();
    match action {
        "stop" if !started => Outcome::success(),
        "monitor" if !started => Outcome::fail(OCF_NOT_RUNNING, ""),
        _ => Outcome::fail(code, reason),
    }
}

/// What an action answers when the resource cannot be opened. A target
/// that is gone (`NotFound`: the disk image, the state directory) means
/// the resource is not running: its monitor says so (7) and its stop
/// succeeds, as with any agent whose workload vanished; anything else is
/// an error except for a never-started instance (see [`unusable`]).
fn cannot_open(type_name: &str, action: &str, e: &Error, log: &AgentLog) -> Outcome {
    if e.code() == ErrorCode::NotFound {
        match action {
            "stop" => {
                log.write(
                    Level::Info,
                    &format!("stop: nothing to stop, the target is gone: {e}"),
                );
                let _ = std::fs::remove_file(marker_path(type_name));
                return Outcome::success();
            }
            "monitor" if marker_path(type_name).exists() => {
                return Outcome::fail(OCF_NOT_RUNNING, format!("not running: {e}"));
            }
            _ => {}
        }
    }
    unusable(type_name, action, exit_code(e), format!("{action}: {e}"))
}

/// The resource's properties from `OCF_RESKEY_*`, validated against the
/// schema. Pacemaker's own variables are skipped unless the schema
/// declares a property of that name; anything else unknown is an error, so
/// a misspelt parameter is never ignored.
fn properties(ty: &ResourceTypeHandle) -> Result<Properties, Error> {
    let schema = ty.schema();
    let vars: Vec<(String, String)> = std::env::vars()
        .filter_map(|(k, v)| Some((k.strip_prefix("OCF_RESKEY_")?.to_owned(), v)))
        .filter(|(k, _)| schema.spec(k).is_some() || !is_pacemaker_parameter(k))
        .collect();
    let parsed = parse_assignments(schema, vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    Ok(schema.validate(&parsed)?)
}

fn is_pacemaker_parameter(name: &str) -> bool {
    name.starts_with("CRM_meta_") || PACEMAKER_PARAMETERS.contains(&name)
}

/// [`Schema::parse_assignments`], where a multi-string value may also be a
/// JSON array of strings, so an entry can hold a comma
/// (`["-drive", "file=/srv/vm.img,if=virtio"]`).
pub(crate) fn parse_assignments<'a>(
    schema: &Schema,
    assignments: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Properties, PropertyErrors> {
    let mut plain = Vec::new();
    let mut lists = Properties::new();
    let mut errors = Vec::new();
    for (name, text) in assignments {
        let is_list = schema
            .spec(name)
            .is_some_and(|s| s.kind == PropertyKind::MultiString);
        if is_list && text.trim_start().starts_with('[') {
            match serde_json::from_str::<Vec<String>>(text) {
                Ok(list) => {
                    let value = clusterkit::Value::MultiString(list);
                    match schema.spec(name).map(|s| s.check(&value)) {
                        Some(Err(problem)) => {
                            errors.push(clusterkit::PropertyError::new(name, problem));
                        }
                        _ => {
                            lists.insert(name, value);
                        }
                    }
                }
                Err(e) => errors.push(clusterkit::PropertyError::invalid(
                    name,
                    format!("{text:?} is not a JSON array of strings: {e}"),
                )),
            }
        } else {
            plain.push((name, text));
        }
    }
    let mut parsed = match schema.parse_assignments(plain) {
        Ok(p) => p,
        Err(PropertyErrors(more)) => {
            errors.extend(more);
            Properties::new()
        }
    };
    if !errors.is_empty() {
        return Err(PropertyErrors(errors));
    }
    for (name, value) in lists.iter() {
        parsed.insert(name, value.clone());
    }
    Ok(parsed)
}

/// The type's own validation (what `open` would refuse), through its
/// type-level `VALIDATE_PROPERTIES` control code; a type that does not
/// answer it is checked by its schema only. Nothing is opened or started.
pub(crate) fn validate(ty: &ResourceTypeHandle, props: &Properties) -> Result<(), Error> {
    match ty.control(ControlCode::VALIDATE_PROPERTIES, &props.encode()) {
        Ok(_) => Ok(()),
        Err(e) if e.code() == ErrorCode::Unsupported => Ok(()),
        Err(e) => Err(e),
    }
}

/// Waits for a pending operation's completion.
struct Completion(Mutex<mpsc::Sender<Result<ResourceState, Error>>>);

impl StatusSink for Completion {
    fn report(&self, _: ResourceState, _: u32, _: Duration) -> Reply {
        Reply::Continue
    }
    fn complete(&self, outcome: Result<ResourceState, Error>) {
        let _ = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(outcome);
    }
}

/// One OCF resource instance.
struct Instance<'a> {
    resource: clusterkit_loader::LoadedResource,
    properties: Properties,
    marker: PathBuf,
    timeout: Duration,
    log: &'a AgentLog,
}

impl<'a> Instance<'a> {
    fn new(
        ty: &ResourceTypeHandle,
        properties: Properties,
        log: &'a Arc<AgentLog>,
    ) -> Result<Instance<'a>, Error> {
        let marker = marker_path(ty.name());
        if let Some(dir) = marker.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format_args!("creating {}", dir.display()), &e))?;
        }
        // Pacemaker's operation timeout, less a margin to answer in time.
        let timeout = std::env::var("OCF_RESKEY_CRM_meta_timeout")
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .map_or(Duration::from_secs(20), |ms| {
                Duration::from_millis(ms.saturating_sub(2000).max(1000))
            });
        let logger: Logger = log.logger();
        let resource = ty.open(&instance_name(), &properties, true, logger)?;
        Ok(Instance {
            resource,
            properties,
            marker,
            timeout,
            log,
        })
    }

    fn transition(&self, online: bool) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel();
        let sink = Arc::new(Completion(Mutex::new(tx)));
        let outcome = if online {
            self.resource.online(StatusReporter::online(sink))
        } else {
            self.resource.offline(StatusReporter::offline(sink))
        }?;
        if outcome == Transition::Pending {
            rx.recv_timeout(self.timeout).map_err(|_| {
                Error::Timeout(format!(
                    "no completion within {} (the operation's timeout less 2 s)",
                    meta::ocf_duration(self.timeout)
                ))
            })??;
        }
        Ok(())
    }

    fn start(self) -> Outcome {
        if self.marker.exists() && self.resource.looks_alive() == Health::Healthy {
            return self.finish(Outcome::success()); // already running
        }
        match self.transition(true) {
            Ok(()) => {
                if let Err(e) = std::fs::write(&self.marker, b"started\n") {
                    let reason = format!("writing {}: {e}", self.marker.display());
                    return self.finish(Outcome::fail(OCF_ERR_GENERIC, reason));
                }
                self.log.write(Level::Info, "started");
                self.finish(Outcome::success())
            }
            Err(e) => {
                // A half-started workload must not stay behind a failed start.
                if let Err(t) = self.resource.terminate() {
                    self.log
                        .write(Level::Warn, &format!("terminate after a failed start: {t}"));
                }
                self.finish(Outcome::error("start", &e))
            }
        }
    }

    fn stop(self) -> Outcome {
        if let Err(e) = self.transition(false) {
            self.log
                .write(Level::Warn, &format!("stop: {e}; terminating"));
            if let Err(e) = self.resource.terminate() {
                return self.finish(Outcome::error("stop: terminate", &e));
            }
        }
        let _ = std::fs::remove_file(&self.marker);
        self.log.write(Level::Info, "stopped");
        self.finish(Outcome::success())
    }

    fn monitor(self) -> Outcome {
        if !self.marker.exists() {
            return self.finish(Outcome::fail(OCF_NOT_RUNNING, ""));
        }
        let health = if check_level() >= 10 {
            self.resource.is_alive()
        } else {
            self.resource.looks_alive()
        };
        let outcome = match health {
            Health::Healthy => Outcome::success(),
            Health::Degraded(reason) => Outcome::fail(OCF_DEGRADED, format!("degraded: {reason}")),
            Health::Failed(reason) => Outcome::fail(OCF_ERR_GENERIC, format!("failed: {reason}")),
        };
        self.finish(outcome)
    }

    /// Applies new live parameters to the running resource: it was opened
    /// with them; `SET_PROPERTIES` lets the type act on them now. A type
    /// that does not answer it picks them up at its next action.
    fn reload(self) -> Outcome {
        if !self.marker.exists() {
            return self.finish(Outcome::success());
        }
        let outcome = match self
            .resource
            .control(ControlCode::SET_PROPERTIES, &self.properties.encode())
        {
            Ok(_) => Outcome::success(),
            Err(e) if e.code() == ErrorCode::Unsupported => Outcome::success(),
            Err(e) => Outcome::error("reload-agent", &e),
        };
        self.finish(outcome)
    }

    /// Closes the resource (its workload keeps running).
    fn finish(self, outcome: Outcome) -> Outcome {
        if let Err(e) = self.resource.close() {
            self.log.write(Level::Warn, &format!("close: {e}"));
        }
        outcome
    }
}

/// The monitor depth: Pacemaker passes `OCF_CHECK_LEVEL` without the
/// `OCF_RESKEY_` prefix; accept both.
fn check_level() -> u32 {
    ["OCF_CHECK_LEVEL", "OCF_RESKEY_OCF_CHECK_LEVEL"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `<root>/usr/lib/ocf/resource.d/clusterkit/<type>` for every type.
fn install(
    libraries: &[PathBuf],
    root: &Path,
    clusterkit: Option<PathBuf>,
) -> Result<Vec<PathBuf>, String> {
    use std::os::unix::fs::PermissionsExt;
    let binary = match clusterkit {
        Some(p) => p,
        None => std::env::current_exe().map_err(|e| format!("locating clusterkit: {e}"))?,
    };
    let dir = root.join("usr/lib/ocf/resource.d/clusterkit");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let staging = std::fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut written = Vec::new();
    for lib in libraries {
        let lib = std::fs::canonicalize(lib).map_err(|e| format!("{}: {e}", lib.display()))?;
        let library = Library::load(&lib, Logger::discard()).map_err(|e| e.to_string())?;
        // A library staged under the root (a package being built) is named
        // where it will be installed.
        let installed = match lib.strip_prefix(&staging) {
            Ok(rest) if staging != Path::new("/") => Path::new("/").join(rest),
            _ => lib.clone(),
        };
        for ty in library.types() {
            let path = dir.join(ty.name());
            let script = format!(
                "#!/bin/sh\n# OCF resource agent for the clusterkit type `{name}`.\n\
                 # Generated by `clusterkit ocf install`; see `{binary} ocf agent --help`.\n\
                 exec '{binary}' ocf agent --library '{lib}' --type '{name}' \"$@\"\n",
                name = ty.name(),
                binary = binary.display(),
                lib = installed.display(),
            );
            std::fs::write(&path, script)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}
