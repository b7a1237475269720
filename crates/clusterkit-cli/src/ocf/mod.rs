//! The OCF adapter (SPEC §8 "Out"): any clusterkit resource type acts as a
//! Pacemaker OCF resource agent.
//!
//! `clusterkit ocf agent --library L --type T ACTION` implements `start`,
//! `stop`, `monitor` (`OCF_CHECK_LEVEL` 0 → `looks_alive`, ≥ 10 →
//! `is_alive`), `meta-data` (generated from the property schema, valid
//! against `ra-api-1.dtd`) and `validate-all`; parameters come from
//! `OCF_RESKEY_<property>`. Each action runs in its own short-lived process,
//! as OCF wants: it loads the library, opens the resource with
//! `recover = true` (adopting the running workload), acts and exits; a
//! marker file under `$HA_RSCTMP` remembers that the instance was started,
//! so `monitor` tells "stopped" (7) from "failed" (1).
//! `clusterkit ocf install` writes one wrapper script per type under
//! `/usr/lib/ocf/resource.d/clusterkit/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use clusterkit::{
    Error, ErrorCode, Health, Level, Logger, Properties, PropertyKind, Reply, Resource,
    ResourceState, StatusReporter, StatusSink, Transition, Value,
};
use clusterkit_loader::{Library, ResourceTypeHandle};

/// OCF exit codes.
const OCF_SUCCESS: u8 = 0;
const OCF_ERR_GENERIC: u8 = 1;
const OCF_ERR_ARGS: u8 = 2;
const OCF_ERR_UNIMPLEMENTED: u8 = 3;
const OCF_ERR_INSTALLED: u8 = 5;
const OCF_ERR_CONFIGURED: u8 = 6;
const OCF_NOT_RUNNING: u8 = 7;
const OCF_DEGRADED: u8 = 190;

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
        /// start, stop, monitor, meta-data or validate-all.
        action: String,
    },
    /// Writes an agent wrapper for every type of each library.
    Install {
        /// Resource libraries (repeatable).
        #[arg(long, required = true)]
        library: Vec<PathBuf>,
        /// Install under this root instead of `/`.
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

/// The OCF exit code for a clusterkit error.
fn exit_code(e: &Error) -> u8 {
    match e.code() {
        ErrorCode::InvalidProperties | ErrorCode::InvalidInput => OCF_ERR_CONFIGURED,
        ErrorCode::NotFound => OCF_ERR_INSTALLED,
        ErrorCode::Unsupported => OCF_ERR_UNIMPLEMENTED,
        _ => OCF_ERR_GENERIC,
    }
}

fn stderr_logger() -> Logger {
    Logger::from_fn(|level: Level, message: &str| {
        if level <= Level::Info {
            eprintln!("clusterkit {level}: {message}");
        }
    })
}

/// The marker remembering that `type_name`'s instance (from
/// `OCF_RESOURCE_INSTANCE`) was started. Characters other than letters,
/// digits and `-` are hex-escaped, so distinct instances never share one.
fn marker_path(type_name: &str) -> PathBuf {
    let instance = std::env::var("OCF_RESOURCE_INSTANCE").unwrap_or_else(|_| "default".into());
    let mut safe = String::new();
    for c in instance.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            safe.push(c);
        } else {
            for b in c.to_string().bytes() {
                let _ = write!(safe, "_{b:02x}");
            }
        }
    }
    let dir = std::env::var_os("HA_RSCTMP")
        .map_or_else(|| PathBuf::from("/run/resource-agents"), PathBuf::from);
    dir.join(format!("clusterkit-{type_name}-{safe}.started"))
}

/// What an action answers when the library, type or configuration is
/// unusable: a stop or a probe of an instance never started here succeeds
/// or says "not running", so Pacemaker does not fence a node over a library
/// it never ran there.
fn unusable(type_name: &str, action: &str, code: u8) -> u8 {
    let started = marker_path(type_name).exists();
    match action {
        "stop" if !started => OCF_SUCCESS,
        "monitor" if !started => OCF_NOT_RUNNING,
        _ => code,
    }
}

fn agent(library: &Path, type_name: &str, action: &str) -> u8 {
    let library = match Library::load(library, stderr_logger()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("clusterkit: {e}");
            return unusable(type_name, action, OCF_ERR_INSTALLED);
        }
    };
    let Some(ty) = library.resource_type(type_name) else {
        eprintln!(
            "clusterkit: {} exports no type `{type_name}`",
            library.path().display()
        );
        return unusable(type_name, action, OCF_ERR_INSTALLED);
    };
    match action {
        "meta-data" => {
            print!("{}", meta_data(&ty));
            OCF_SUCCESS
        }
        "validate-all" => match properties(&ty) {
            Ok(_) => OCF_SUCCESS,
            Err(e) => {
                eprintln!("clusterkit: {e}");
                exit_code(&e)
            }
        },
        "start" | "stop" | "monitor" => {
            let result = properties(&ty)
                .and_then(|props| Instance::new(&ty, props))
                .map(|i| match action {
                    "start" => i.start(),
                    "stop" => i.stop(),
                    _ => i.monitor(),
                });
            match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("clusterkit: {e}");
                    unusable(type_name, action, exit_code(&e))
                }
            }
        }
        "usage" | "help" => {
            println!("usage: {type_name} {{start|stop|monitor|meta-data|validate-all}}");
            OCF_SUCCESS
        }
        "" => OCF_ERR_ARGS,
        _ => OCF_ERR_UNIMPLEMENTED,
    }
}

/// The resource's properties from `OCF_RESKEY_*`, validated.
fn properties(ty: &ResourceTypeHandle) -> Result<Properties, Error> {
    let vars: Vec<(String, String)> = std::env::vars()
        .filter_map(|(k, v)| Some((k.strip_prefix("OCF_RESKEY_")?.to_owned(), v)))
        .filter(|(k, _)| !k.starts_with("CRM_meta"))
        .collect();
    let parsed = ty
        .schema()
        .parse_assignments(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    Ok(ty.schema().validate(&parsed)?)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// OCF meta-data generated from the type's schema.
fn meta_data(ty: &ResourceTypeHandle) -> String {
    let d = ty.description();
    let mut x = String::new();
    let _ = writeln!(x, "<?xml version=\"1.0\"?>");
    let _ = writeln!(x, "<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">");
    let _ = writeln!(
        x,
        "<resource-agent name=\"{}\" version=\"{}\">",
        xml_escape(&d.name),
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(x, "<version>1.0</version>");
    let _ = writeln!(
        x,
        "<longdesc lang=\"en\">{} (a clusterkit resource type; characteristics: {:?})</longdesc>",
        xml_escape(&d.description),
        d.characteristics
    );
    let _ = writeln!(
        x,
        "<shortdesc lang=\"en\">{}</shortdesc>",
        xml_escape(&d.description)
    );
    let _ = writeln!(x, "<parameters>");
    for spec in d.schema.specs() {
        let (content_type, note) = match spec.kind {
            PropertyKind::Bool => ("boolean", String::new()),
            PropertyKind::U32 | PropertyKind::U64 | PropertyKind::I64 => ("integer", String::new()),
            PropertyKind::Duration => (
                "string",
                " Duration: milliseconds, or with ms, s, m, h.".into(),
            ),
            PropertyKind::MultiString => ("string", " A comma-separated list.".into()),
            PropertyKind::Bytes => ("string", " Hexadecimal bytes.".into()),
            PropertyKind::String => ("string", String::new()),
        };
        let mut bounds = String::new();
        if let Some(min) = spec.min {
            let _ = write!(bounds, " Minimum {min}.");
        }
        if let Some(max) = spec.max {
            let _ = write!(bounds, " Maximum {max}.");
        }
        let _ = writeln!(
            x,
            "<parameter name=\"{}\" unique=\"0\" required=\"{}\">",
            xml_escape(&spec.name),
            u8::from(spec.required)
        );
        let _ = writeln!(
            x,
            "<longdesc lang=\"en\">{} (kind {}).{note}{bounds}</longdesc>",
            xml_escape(&spec.description),
            spec.kind
        );
        let _ = writeln!(
            x,
            "<shortdesc lang=\"en\">{}</shortdesc>",
            xml_escape(&spec.description)
        );
        match &spec.default {
            Some(v) => {
                let _ = writeln!(
                    x,
                    "<content type=\"{content_type}\" default=\"{}\"/>",
                    xml_escape(&ocf_text(v))
                );
            }
            None => {
                let _ = writeln!(x, "<content type=\"{content_type}\"/>");
            }
        }
        let _ = writeln!(x, "</parameter>");
    }
    let _ = writeln!(x, "</parameters>");
    let _ = writeln!(x, "<actions>");
    for line in [
        "<action name=\"start\" timeout=\"60s\"/>",
        "<action name=\"stop\" timeout=\"60s\"/>",
        "<action name=\"monitor\" timeout=\"20s\" interval=\"10s\" depth=\"0\"/>",
        "<action name=\"monitor\" timeout=\"30s\" interval=\"60s\" depth=\"10\"/>",
        "<action name=\"meta-data\" timeout=\"5s\"/>",
        "<action name=\"validate-all\" timeout=\"20s\"/>",
    ] {
        let _ = writeln!(x, "{line}");
    }
    let _ = writeln!(x, "</actions>");
    let _ = writeln!(x, "</resource-agent>");
    x
}

/// A value as OCF parameter text (what `PropertySpec::parse` reads back).
fn ocf_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::MultiString(list) => list.join(","),
        Value::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Value::Duration(d) => d.as_millis().to_string(),
        Value::Bool(b) => b.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
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
struct Instance {
    resource: clusterkit_loader::LoadedResource,
    marker: PathBuf,
    timeout: Duration,
}

impl Instance {
    fn new(ty: &ResourceTypeHandle, props: Properties) -> Result<Instance, Error> {
        let instance = std::env::var("OCF_RESOURCE_INSTANCE").unwrap_or_else(|_| "default".into());
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
        let resource = ty.open(&instance, &props, true, stderr_logger())?;
        Ok(Instance {
            resource,
            marker,
            timeout,
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
                Error::Timeout(format!("no completion within {:?}", self.timeout))
            })??;
        }
        Ok(())
    }

    fn start(self) -> u8 {
        if self.marker.exists() && self.resource.looks_alive() == Health::Healthy {
            return self.finish(OCF_SUCCESS); // already running
        }
        match self.transition(true) {
            Ok(()) => {
                if let Err(e) = std::fs::write(&self.marker, b"started\n") {
                    eprintln!("clusterkit: writing {}: {e}", self.marker.display());
                    return self.finish(OCF_ERR_GENERIC);
                }
                self.finish(OCF_SUCCESS)
            }
            Err(e) => {
                eprintln!("clusterkit: start: {e}");
                let _ = self.resource.terminate();
                let code = exit_code(&e);
                self.finish(code)
            }
        }
    }

    fn stop(self) -> u8 {
        if let Err(e) = self.transition(false) {
            eprintln!("clusterkit: stop: {e}; terminating");
            if let Err(e) = self.resource.terminate() {
                eprintln!("clusterkit: terminate: {e}");
                return self.finish(OCF_ERR_GENERIC);
            }
        }
        let _ = std::fs::remove_file(&self.marker);
        self.finish(OCF_SUCCESS)
    }

    fn monitor(self) -> u8 {
        if !self.marker.exists() {
            return self.finish(OCF_NOT_RUNNING);
        }
        let level: u32 = std::env::var("OCF_CHECK_LEVEL")
            .ok()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let health = if level >= 10 {
            self.resource.is_alive()
        } else {
            self.resource.looks_alive()
        };
        let code = match health {
            Health::Healthy => OCF_SUCCESS,
            Health::Degraded(reason) => {
                eprintln!("clusterkit: degraded: {reason}");
                OCF_DEGRADED
            }
            Health::Failed(reason) => {
                eprintln!("clusterkit: failed: {reason}");
                OCF_ERR_GENERIC
            }
        };
        self.finish(code)
    }

    /// Closes the resource (its workload keeps running) and returns `code`.
    fn finish(self, code: u8) -> u8 {
        if let Err(e) = self.resource.close() {
            eprintln!("clusterkit: close: {e}");
        }
        code
    }
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
    let mut written = Vec::new();
    for lib in libraries {
        let lib = std::fs::canonicalize(lib).map_err(|e| format!("{}: {e}", lib.display()))?;
        let library = Library::load(&lib, Logger::discard()).map_err(|e| e.to_string())?;
        for ty in library.types() {
            let path = dir.join(ty.name());
            let script = format!(
                "#!/bin/sh\n# OCF resource agent for the clusterkit type `{name}`.\n\
                 # Generated by `clusterkit ocf install`; see `{binary} ocf agent --help`.\n\
                 exec '{binary}' ocf agent --library '{lib}' --type '{name}' \"$@\"\n",
                name = ty.name(),
                binary = binary.display(),
                lib = lib.display(),
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
