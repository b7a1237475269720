//! `clusterkit`: runs a clusterkit host from a TOML config, controls it,
//! runs the demo, and acts as a Pacemaker OCF resource agent.
//!
//! `docs/CONFIG.md` documents the config file; `clusterkit --help` the
//! commands. The binary is also its own monitor process: a host started by
//! `clusterkit run` re-executes it for each monitor.

mod admin;
mod alerts;
mod check;
mod config;
mod control;
mod demo;
mod events;
mod generate_docs;
mod managed;
mod metrics;
mod notify;
mod observe;
mod ocf;
mod reload;
mod status_view;
mod timeline;
mod type_control;
mod wait;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use clusterkit_host::{HostBuilder, MonitorProgram, PersistedState};
use serde_json::json;

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
    #[command(flatten)]
    config: ConfigArg,
    /// The control socket (default: the config's `control_socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl Target {
    fn socket(&self) -> Result<PathBuf, String> {
        match &self.socket {
            Some(s) => Ok(s.clone()),
            None => self.config.load().map(|c| c.control_socket),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.config.path()
    }

    fn load_config(&self) -> Result<Config, String> {
        self.config.load()
    }
}

/// `-c/--config`, shared by every command that reads a config.
#[derive(clap::Args, Clone)]
struct ConfigArg {
    /// The config file [default: $CLUSTERKIT_CONFIG, else
    /// /etc/clusterkit/clusterkit.toml].
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> PathBuf {
        config::config_path(self.config.clone())
    }

    fn load(&self) -> Result<Config, String> {
        config::load_explained(self.config.clone())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Runs a host from a config file until SIGTERM or SIGINT.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Checks a config file: syntax, keys, libraries, types, properties,
    /// dependencies; every problem in one run.
    Validate {
        #[command(flatten)]
        config: ConfigArg,
        /// The config file, as -c gives it (kept for older scripts).
        #[arg(hide = true, conflicts_with = "config")]
        file: Option<PathBuf>,
        /// Internal: check the libraries in this process (validate runs
        /// itself so, so that a damaged library cannot crash it).
        #[arg(long, hide = true)]
        libraries_only: bool,
    },
    /// Shows every resource of the running host, or one in full.
    Status(status_view::StatusArgs),
    /// Prints the event log, of a running host or from its files when none
    /// runs; with --follow, keeps printing new events.
    Events(events::EventsArgs),
    /// Brings a resource (and its dependencies) online and waits for it.
    Online(wait::TransitionArgs),
    /// Takes a resource (and its dependents) offline and waits for it.
    Offline(wait::TransitionArgs),
    /// Makes the running host apply its config file again (as SIGHUP does):
    /// new resources start, removed ones stop, changed ones change, the
    /// others are not touched; a file with problems changes nothing.
    Reload {
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
    /// Cleans a resource up after failures: resets its restart counters,
    /// lifts its isolation, clears a held failure.
    Cleanup(admin::CleanupArgs),
    /// Sends a control code to a resource of the running host.
    Control(admin::ControlArgs),
    /// Describes every type of a resource library: properties, defaults,
    /// characteristics.
    Types(admin::TypesArgs),
    /// Reproduces the IsAlive outage on real backends and shows the recovery.
    Demo(demo::DemoArgs),
    /// Runs a control code of a resource type (or of one resource, with
    /// --resource) in this process, without a host: e.g. a disk's FORMAT
    /// before the cluster sees it.
    TypeControl(type_control::TypeControlArgs),
    /// Checks that a resource library keeps the contract: loads it, brings
    /// a resource online and offline, times every entry point against its
    /// budget, terminates, re-attaches; prints a report and a verdict.
    Check(check::CheckArgs),
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
            file,
            libraries_only,
        } => {
            let given = file.or(config.config);
            if libraries_only {
                check_libraries_here(&config::config_path(given))
            } else {
                config::check_exists(given).and_then(|path| validate(&path))
            }
        }
        Command::Status(args) => status_view::run(&args),
        Command::Events(args) => events::run(&args),
        Command::Online(args) => wait::run(&args, wait::Direction::Online),
        Command::Offline(args) => wait::run(&args, wait::Direction::Offline),
        Command::Fail { resource, target } => simple(&target, "fail", &resource),
        Command::Reload { target } => reload_command(&target),
        Command::Cleanup(args) => admin::cleanup(&args),
        Command::Control(args) => admin::control(&args),
        Command::Types(args) => admin::types(&args),
        Command::Demo(args) => demo::run(&args),
        Command::TypeControl(args) => type_control::run(&args),
        Command::Ocf { command } => return ocf::main(command),
        Command::Check(args) => return check::main(args),
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
    let mut b = HostBuilder::new(&config.state_dir, program)
        .defaults(config.defaults)
        .event_log(config.event_log);
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

fn run(config: &ConfigArg) -> Result<(), String> {
    // Parsed on a thread of its own, so the parse's memory (the config's
    // tree, freed after the start) comes from another malloc arena than
    // what the host keeps: handed back whole at the end of the start
    // instead of leaving the kept data scattered among its holes.
    let config = std::thread::scope(|s| s.spawn(|| config.load()).join())
        .map_err(|_| "reading the config failed".to_owned())??;
    let signals = block_signals();
    let persisted: PersistedState = std::fs::read_to_string(config.state_dir.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    // Resources Pacemaker manages here come back too, and re-attach.
    let managed = managed::load(&config.state_dir)?;
    // Subscribed before the start: the console shows `host_started` and
    // the first monitors too.
    let mut builder = builder(&config);
    for resource in managed::configs(&managed)? {
        builder = builder.resource(resource);
    }
    let events = builder.subscribe();
    // systemd's status line: resources online, pending and failed, and a
    // state file that cannot be written, until it is written again.
    let status_line = Arc::new(notify::StatusLine::default());
    let line = status_line.clone();
    std::thread::spawn(move || {
        for e in events {
            line.update(&e);
            let zone = timeline::Zone::Utc;
            eprintln!("{}", timeline::render(&e.to_json(), None, zone).join("\n"));
        }
    });
    let host = Arc::new(builder.start().map_err(|e| e.to_string())?);
    status_line.follow(&host);
    observe::start(&config, &host)?;
    // All at once: one state write, however many resources there are.
    let first_seen: Vec<&str> = config
        .resources
        .iter()
        .map(|r| (r, r.name.get_ref().as_str()))
        .filter(|(r, name)| r.autostart && !persisted.resources.contains_key(*name))
        .map(|(_, name)| name)
        .collect();
    host.online_many(&first_seen).map_err(|e| e.to_string())?;
    let control_socket = config.control_socket.clone();
    let events_file = config.state_dir.join("events.jsonl");
    let managed = managed::Managed::new(&config.state_dir, host.clone(), managed);
    let reloader = Arc::new(reload::Reloader::new(host.clone(), config, managed));
    control::serve(&control_socket, host.clone(), events_file, reloader.clone())
        .map_err(|e| format!("control socket {}: {e}", control_socket.display()))?;
    notify::ready(host.clone(), &status_line);
    release_start_up_memory();
    let mut signal = 0;
    loop {
        // SAFETY: waits for one of the blocked signals.
        unsafe { libc::sigwait(&signals, &mut signal) };
        if signal != libc::SIGHUP {
            break;
        }
        match reloader.reload() {
            Ok(report) => eprintln!("clusterkit: SIGHUP: {}", reload::human_report(&report)),
            Err(problems) => eprintln!("clusterkit: SIGHUP: {problems}"),
        }
    }
    notify::stopping();
    eprintln!("clusterkit: signal {signal}: stopping (workloads keep running)");
    let _ = std::fs::remove_file(&control_socket);
    // Control connections may still hold the host: stop it through them.
    host.shutdown_shared();
    Ok(())
}

/// Hands the memory the start used and freed (the config's parse tree, the
/// first state writes: megabytes for thousands of resources) back to the
/// system, so the host's resident size is what it keeps.
fn release_start_up_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory; no pointer changes.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn reload_command(target: &Target) -> Result<(), String> {
    let socket = target.socket()?;
    let answer = control::call(&socket, json!({"command": "reload"})).map_err(|e| e.to_string())?;
    println!("{}", reload::human_report(&answer));
    if answer["errors"].as_array().is_some_and(|e| !e.is_empty()) {
        return Err("reloaded, but some resources did not come online".into());
    }
    Ok(())
}

fn validate(path: &Path) -> Result<(), String> {
    // Structural problems of the file: all of them, located; then the
    // host's and the libraries', so that one run shows everything.
    let (config, structural) = Config::load_with_problems(path).map_err(|e| e.to_string())?;
    let mut problems: Vec<String> = structural.iter().map(ToString::to_string).collect();
    problems.extend(
        builder(&config)
            .problems()
            .iter()
            .map(|e| format!("{}: {e}", path.display())),
    );
    // Libraries, types, properties and each type's own validation, in a
    // child process: a damaged library (a truncated file: SIGBUS) ends the
    // child, and this process reports it.
    problems.extend(check_libraries_in_child(path)?);
    if problems.is_empty() {
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        println!(
            "{}: ok ({}, {})",
            path.display(),
            count(config.resources.len(), "resource", "resources"),
            count(config.libraries.len(), "library", "libraries")
        );
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Runs `validate --libraries-only` as a child and collects its problems.
pub(crate) fn check_libraries_in_child(path: &Path) -> Result<Vec<String>, String> {
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
    let (config, _) = Config::load_with_problems(path).map_err(|e| e.to_string())?;
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

fn simple(target: &Target, command: &str, resource: &str) -> Result<(), String> {
    control::call(
        &target.socket()?,
        json!({"command": command, "resource": resource}),
    )
    .map(drop)
    .map_err(|e| e.to_string())
}
