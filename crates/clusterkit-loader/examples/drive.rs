//! Loads a resource library, lists its types and schemas, and drives one
//! resource through its whole lifecycle, printing each result.
//!
//! ```text
//! cargo run -p clusterkit-loader --example drive -- LIBRARY.so [TYPE NAME [KEY=VALUE ...]]
//! ```
//!
//! Values are parsed by the property's kind (`PropertySpec::parse`).

use std::process::ExitCode;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use clusterkit::{
    Error, Level, Logger, Reply, Resource, ResourceState, StatusReporter, StatusSink, Transition,
};
use clusterkit_loader::{Library, ResourceTypeHandle};

/// The longest a pending operation may go without completing.
const PENDING_LIMIT: Duration = Duration::from_secs(300);

struct PrintingSink {
    done: Mutex<mpsc::Sender<Result<ResourceState, Error>>>,
}

impl StatusSink for PrintingSink {
    fn report(&self, state: ResourceState, checkpoint: u32, wait_hint: Duration) -> Reply {
        println!("      report: {state}, checkpoint {checkpoint}, next within {wait_hint:?}");
        Reply::Continue
    }
    fn complete(&self, outcome: Result<ResourceState, Error>) {
        let _ = self
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(outcome);
    }
}

fn print_type(ty: &ResourceTypeHandle) {
    let d = ty.description();
    println!(
        "type {:?}: {} [{:?}]",
        d.name, d.description, d.characteristics
    );
    for spec in d.schema.specs() {
        let mut notes = Vec::new();
        if spec.required {
            notes.push("required".to_owned());
        }
        if let Some(v) = &spec.default {
            notes.push(format!("default {v}"));
        }
        if let Some(min) = spec.min {
            notes.push(format!("min {min}"));
        }
        if let Some(max) = spec.max {
            notes.push(format!("max {max}"));
        }
        println!(
            "  {:<16} {:<12} {} ({})",
            spec.name,
            spec.kind,
            spec.description,
            notes.join(", ")
        );
    }
}

fn transition(
    what: &str,
    status: fn(Arc<dyn StatusSink>) -> StatusReporter,
    call: impl FnOnce(StatusReporter) -> clusterkit::Result<Transition>,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    let sink = Arc::new(PrintingSink {
        done: Mutex::new(tx),
    });
    let started = Instant::now();
    match call(status(sink)).map_err(|e| format!("{what}: {e}"))? {
        Transition::Done => println!("{what:<12} done in {:?}", started.elapsed()),
        Transition::Pending => {
            println!("{what:<12} pending");
            let outcome = rx
                .recv_timeout(PENDING_LIMIT)
                .map_err(|_| format!("{what}: no completion within {PENDING_LIMIT:?}"))?;
            let state = outcome.map_err(|e| format!("{what}: {e}"))?;
            println!(
                "{what:<12} completed: {state} after {:?}",
                started.elapsed()
            );
        }
    }
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    let Some(path) = args.first() else {
        return Err("usage: drive LIBRARY.so [TYPE NAME [KEY=VALUE ...]]".into());
    };
    let log = Logger::from_fn(|level: Level, msg: &str| println!("      log {level}: {msg}"));
    let library = Library::load(path, log.clone()).map_err(|e| e.to_string())?;
    println!("loaded {path}, ABI {:#x}", library.abi_version());
    for ty in library.types() {
        print_type(&ty);
    }
    let (Some(type_name), Some(name)) = (args.get(1), args.get(2)) else {
        return Ok(());
    };
    let ty = library
        .resource_type(type_name)
        .ok_or_else(|| format!("{path} has no type {type_name:?}"))?;
    let assignments = args[3..]
        .iter()
        .map(|a| {
            a.split_once('=')
                .ok_or_else(|| format!("{a:?} is not KEY=VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let props = ty
        .schema()
        .parse_assignments(assignments)
        .map_err(|e| e.to_string())?;

    let resource = ty
        .open(name, &props, false, log)
        .map_err(|e| format!("open: {e}"))?;
    println!("{:<12} {name}", "open");
    transition("online", StatusReporter::online, |s| resource.online(s))?;
    println!("{:<12} {}", "looks_alive", resource.looks_alive());
    println!("{:<12} {}", "is_alive", resource.is_alive());
    transition("offline", StatusReporter::offline, |s| resource.offline(s))?;
    println!("{:<12} {}", "looks_alive", resource.looks_alive());
    resource.close().map_err(|e| format!("close: {e}"))?;
    println!("{:<12} ok", "close");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
