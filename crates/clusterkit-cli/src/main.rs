//! `clusterkit`: runs a clusterkit host from a TOML config, controls it,
//! runs the demo, and acts as a Pacemaker OCF resource agent.
//!
//! `docs/CONFIG.md` documents the config file; `clusterkit --help` the
//! commands. The binary is also its own monitor process: a host started by
//! `clusterkit run` re-executes it for each monitor.

mod config;
mod control;
mod demo;
mod generate_docs;
mod notify;
mod ocf;
mod type_control;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use clusterkit_host::{HostBuilder, MonitorProgram, PersistedState};
use serde_json::{Value, json};

use config::Config;

/// Runs and controls clusterkit hosts.
#[derive(Parser)]
#[command(name = "clusterkit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// The config file.
    #[arg(long, short, default_value = config::DEFAULT_CONFIG)]
    config: PathBuf,
    /// The control socket (default: the config's `control_socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl Target {
    fn socket(&self) -> Result<PathBuf, String> {
        match &self.socket {
            Some(s) => Ok(s.clone()),
            None => Config::load(&self.config)
                .map(|c| c.control_socket)
                .map_err(|e| e.to_string()),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Runs a host from a config file until SIGTERM or SIGINT.
    Run {
        /// The config file.
        #[arg(long, short, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Checks a config file: syntax, keys, libraries, types, properties, dependencies.
    Validate {
        /// The config file.
        #[arg(default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Internal: check the libraries in this process (validate runs
        /// itself so, so that a damaged library cannot crash it).
        #[arg(long, hide = true)]
        libraries_only: bool,
    },
    /// Shows every resource of the running host.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints the event log; with --follow, keeps printing new events.
    Events {
        #[command(flatten)]
        target: Target,
        /// Keep printing new events.
        #[arg(long, short)]
        follow: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Brings a resource (and its dependencies) online.
    Online {
        /// The resource.
        resource: String,
        #[command(flatten)]
        target: Target,
    },
    /// Takes a resource (and its dependents) offline.
    Offline {
        /// The resource.
        resource: String,
        #[command(flatten)]
        target: Target,
    },
    /// Simulates a failure of an online resource.
    Fail {
        /// The resource.
        resource: String,
        #[command(flatten)]
        target: Target,
    },
    /// Reproduces the IsAlive outage on real backends and shows the recovery.
    Demo(demo::DemoArgs),
    /// Runs a control code of a resource type (or of one resource, with
    /// --resource) in this process, without a host: e.g. a disk's FORMAT
    /// before the cluster sees it.
    TypeControl(type_control::TypeControlArgs),
    /// Pacemaker OCF resource agent.
    Ocf {
        #[command(subcommand)]
        command: ocf::OcfCommand,
    },
    /// Writes the man pages and shell completions (for packaging).
    #[command(hide = true)]
    GenerateDocs(generate_docs::GenerateDocsArgs),
}

fn main() -> ExitCode {
    // First: when started as a monitor of `clusterkit run`, be one.
    clusterkit_host::run_if_monitor();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Status { .. } | Command::Events { .. }) {
        // A reader that goes away (`clusterkit status | head -2`) ends these
        // commands quietly, as it ends any filter; never the host (`run`),
        // whose control clients may vanish mid-answer.
        // SAFETY: setting a signal's disposition to the default is always
        // sound; no handler runs.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Validate {
            config,
            libraries_only: false,
        } => validate(&config),
        Command::Validate {
            config,
            libraries_only: true,
        } => check_libraries_here(&config),
        Command::Status { target, json } => status(&target, json),
        Command::Events {
            target,
            follow,
            json,
        } => events(&target, follow, json),
        Command::Online { resource, target } => simple(&target, "online", &resource),
        Command::Offline { resource, target } => simple(&target, "offline", &resource),
        Command::Fail { resource, target } => simple(&target, "fail", &resource),
        Command::Demo(args) => demo::run(&args),
        Command::TypeControl(args) => type_control::run(&args),
        Command::Ocf { command } => return ocf::main(command),
        Command::GenerateDocs(args) => generate_docs::run(&args, Cli::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clusterkit: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A host builder for `config`.
pub(crate) fn builder(config: &Config) -> HostBuilder {
    let program = match &config.monitor {
        Some(p) => MonitorProgram::Path(p.clone()),
        None => MonitorProgram::CurrentExe,
    };
    let mut b = HostBuilder::new(&config.state_dir, program).defaults(config.defaults);
    for (name, overrides) in &config.type_timing {
        b = b.type_timing(name.clone(), *overrides);
    }
    for r in config.resource_configs() {
        b = b.resource(r);
    }
    b
}

/// Blocks the signals `run` waits for, in this thread and every thread it starts.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn run(path: &Path) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let signals = block_signals();
    let persisted: PersistedState = std::fs::read_to_string(config.state_dir.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let host = Arc::new(builder(&config).start().map_err(|e| e.to_string())?);
    let events = host.subscribe();
    let status_line = Arc::new(notify::StatusLine::default());
    status_line.follow(&host);
    let line = status_line.clone();
    std::thread::spawn(move || {
        for e in events {
            line.update(&e);
            eprintln!("{}", human_event(&e.to_json()));
        }
    });
    for r in &config.resources {
        let name = r.name.get_ref();
        if r.autostart && !persisted.resources.contains_key(name) {
            host.online(name).map_err(|e| e.to_string())?;
        }
    }
    control::serve(
        &config.control_socket,
        host.clone(),
        config.state_dir.join("events.jsonl"),
    )
    .map_err(|e| format!("control socket {}: {e}", config.control_socket.display()))?;
    notify::ready(host.clone(), &status_line);
    let mut signal = 0;
    // SAFETY: waits for one of the blocked signals.
    unsafe { libc::sigwait(&signals, &mut signal) };
    notify::stopping();
    eprintln!("clusterkit: signal {signal}: stopping (workloads keep running)");
    let _ = std::fs::remove_file(&config.control_socket);
    // Control connections may still hold the host: stop it through them.
    host.shutdown_shared();
    Ok(())
}

fn validate(path: &Path) -> Result<(), String> {
    // Structural problems of the file: all of them, located.
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let mut problems: Vec<String> = builder(&config)
        .problems()
        .iter()
        .map(|e| format!("{}: {e}", path.display()))
        .collect();
    // Libraries, types, properties and each type's own validation, in a
    // child process: a damaged library (a truncated file: SIGBUS) ends the
    // child, and this process reports it.
    problems.extend(check_libraries_in_child(path)?);
    if problems.is_empty() {
        println!(
            "{}: ok ({} resources, {} libraries)",
            path.display(),
            config.resources.len(),
            config.libraries.len()
        );
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Runs `validate --libraries-only` as a child and collects its problems.
fn check_libraries_in_child(path: &Path) -> Result<Vec<String>, String> {
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let out = std::process::Command::new(exe)
        .args(["validate", "--libraries-only"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("starting the library check: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut problems: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("problem: "))
        .map(str::to_owned)
        .collect();
    if let Some(signal) = out.status.signal() {
        let last = stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("loading: "))
            .unwrap_or("a library");
        let name = match signal {
            libc::SIGBUS => "SIGBUS".to_owned(),
            libc::SIGSEGV => "SIGSEGV".to_owned(),
            libc::SIGABRT => "SIGABRT".to_owned(),
            libc::SIGILL => "SIGILL".to_owned(),
            other => format!("signal {other}"),
        };
        problems.push(format!(
            "{}: loading {last} crashed the check ({name}): the file is damaged or truncated, \
             or its startup crashes",
            path.display()
        ));
    } else if !out.status.success() && problems.is_empty() {
        problems.push(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(problems)
}

/// `validate --libraries-only`: loads each library, checks each resource's
/// type, properties and the type's own validation, and prints one
/// `problem: ` line each (and `loading: PATH` before each library, so that
/// the parent can name the library that crashed it).
fn check_libraries_here(path: &Path) -> Result<(), String> {
    use std::io::Write as _;
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut problem = |text: String| {
        let _ = writeln!(out, "problem: {}", text.replace('\n', " "));
        let _ = out.flush();
    };
    let mut libraries = std::collections::BTreeMap::new();
    for (key, lib) in &config.libraries {
        println!("loading: [libraries] `{key}` ({})", lib.display());
        let _ = std::io::stdout().flush();
        match clusterkit_loader::Library::load(lib, clusterkit::Logger::discard()) {
            Ok(loaded) => {
                libraries.insert(key.clone(), loaded);
            }
            Err(e) => problem(format!("{}: [libraries] `{key}`: {e}", path.display())),
        }
    }
    for r in &config.resources {
        let name = r.name.get_ref();
        let Some(library) = libraries.get(r.library.get_ref()) else {
            continue; // reported above
        };
        let Some(ty) = library.resource_type(r.type_name.get_ref()) else {
            problem(
                config
                    .error_at(
                        r.type_name.span().start,
                        format!(
                            "resource `{name}`: key `type`: {} exports no type `{}` (it exports: {})",
                            library.path().display(),
                            r.type_name.get_ref(),
                            library.types().map(|t| t.name().to_owned()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .to_string(),
            );
            continue;
        };
        let checked = ty
            .schema()
            .coerce(&config.properties(r))
            .and_then(|typed| ty.schema().validate(&typed));
        match checked {
            Err(errors) => {
                for e in errors.iter() {
                    let at = r
                        .properties
                        .get(&e.property)
                        .map_or(r.name.span().start, |v| v.span().start);
                    problem(
                        config
                            .error_at(at, format!("resource `{name}`: {e}"))
                            .to_string(),
                    );
                }
            }
            // What `open` would refuse (a VM's `extra_args` with its own
            // `--pidfile`), asked of the type without opening anything.
            Ok(valid) => {
                if let Err(e) = ocf::validate(&ty, &valid) {
                    let at = r.name.span().start;
                    problem(
                        config
                            .error_at(at, format!("resource `{name}`: {e}"))
                            .to_string(),
                    );
                }
            }
        }
    }
    Ok(())
}

fn status(target: &Target, as_json: bool) -> Result<(), String> {
    let reply = control::call(&target.socket()?, json!({"command": "status"}))
        .map_err(|e| e.to_string())?;
    let resources = reply["resources"].as_array().cloned().unwrap_or_default();
    if as_json {
        println!("{}", Value::Array(resources));
        return Ok(());
    }
    println!(
        "{:<20} {:<18} {:<10} {:<16} {:>8} {:>8} {:>12}",
        "RESOURCE", "TYPE", "GROUP", "STATE", "MONITOR", "RESTARTS", "LAST CHECK"
    );
    for r in resources {
        let latency = r["last_check_latency_us"]
            .as_u64()
            .map_or("-".to_owned(), |us| format!("{:.2} ms", us as f64 / 1000.0));
        let pid = r["monitor_pid"]
            .as_u64()
            .map_or("-".to_owned(), |p| p.to_string());
        println!(
            "{:<20} {:<18} {:<10} {:<16} {:>8} {:>8} {:>12}",
            r["name"].as_str().unwrap_or_default(),
            r["type"].as_str().unwrap_or_default(),
            r["group"].as_str().unwrap_or_default(),
            r["state"].as_str().unwrap_or_default(),
            pid,
            r["restarts"].to_string(),
            latency
        );
    }
    Ok(())
}

/// One event as a line for people: time, kind, resource, fields.
pub(crate) fn human_event(e: &Value) -> String {
    let mut line = format!(
        "{} {:<26} {}",
        e["ts"].as_str().unwrap_or_default(),
        e["kind"].as_str().unwrap_or_default(),
        e["resource"].as_str().unwrap_or("-")
    );
    if let Some(map) = e.as_object() {
        for (k, v) in map {
            if matches!(k.as_str(), "ts" | "id" | "kind" | "resource" | "threads") {
                continue;
            }
            match v {
                Value::String(s) => line.push_str(&format!(" {k}={s:?}")),
                other => line.push_str(&format!(" {k}={other}")),
            }
        }
    }
    line
}

fn events(target: &Target, follow: bool, as_json: bool) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    control::request(
        &target.socket()?,
        json!({"command": "events", "follow": follow}),
        |line| {
            use std::io::Write;
            let text = if as_json {
                line.to_owned()
            } else {
                serde_json::from_str::<Value>(line)
                    .map_or_else(|_| line.to_owned(), |v| human_event(&v))
            };
            writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
        },
    )
    .map_err(|e| e.to_string())
}

fn simple(target: &Target, command: &str, resource: &str) -> Result<(), String> {
    control::call(
        &target.socket()?,
        json!({"command": command, "resource": resource}),
    )
    .map(drop)
    .map_err(|e| e.to_string())
}
