//! The `fault-injection` library, loaded through the C table and driven
//! through every fault it can inject except `hang` and `abort`, which would
//! hang or kill this test process (the host's tests run those in real
//! monitor processes).

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use clusterkit::{
    Characteristics, ControlCode, Error, ErrorCode, Health, Level, Logger, Properties,
    PropertyKind, Reply, Resource, ResourceState, StatusReporter, Transition, Value,
};
use clusterkit_fault_injection::{ENTRY_POINTS, START_COUNT, TYPE_NAME, is_running, start_count};
use clusterkit_loader::{Library, LoadedResource, ResourceTypeHandle};
use clusterkit_testkit::{TempDir, cdylib};

/// How long a test waits for an event that should come in milliseconds,
/// before failing instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

fn fault_type() -> ResourceTypeHandle {
    let path = cdylib(
        "clusterkit-example-fault-injection",
        "clusterkit_fault_injection",
    );
    let library = Library::load(&path, Logger::discard()).expect("loading the library");
    library
        .resource_type(TYPE_NAME)
        .expect("fault-injection is exported")
}

fn props(dir: &TempDir) -> Properties {
    let mut props = Properties::new();
    props.insert("state_dir", dir.path().to_str().unwrap());
    props
}

fn with_fault(dir: &TempDir, property: &str, entry_points: &[&str]) -> Properties {
    let mut props = props(dir);
    props.insert(
        property,
        entry_points
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
    );
    props
}

fn open(props: &Properties, name: &str) -> LoadedResource {
    fault_type()
        .open(name, props, false, Logger::discard())
        .unwrap()
}

/// A logger that keeps its lines as `"<level> <message>"`.
fn recording_logger() -> (Logger, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let log = Logger::from_fn(move |level: Level, msg: &str| {
        sink.lock().unwrap().push(format!("{level} {msg}"))
    });
    (log, lines)
}

fn online_now(resource: &LoadedResource) {
    assert_eq!(
        resource.online(StatusReporter::detached_online()).unwrap(),
        Transition::Done
    );
}

fn count_via_control(resource: &LoadedResource) -> u32 {
    let bytes = resource.control(START_COUNT, b"").unwrap();
    String::from_utf8(bytes).unwrap().parse().unwrap()
}

use clusterkit_testkit::status::recorder;

#[test]
fn describes_itself_with_a_documented_schema() {
    let ty = fault_type();
    assert_eq!(ty.name(), "fault-injection");
    assert_eq!(ty.characteristics(), Characteristics::REATTACH);
    let schema = ty.schema();
    let state_dir = schema.spec("state_dir").expect("state_dir declared");
    assert_eq!(state_dir.kind, PropertyKind::String);
    assert!(state_dir.required);
    assert_eq!(state_dir.min, Some(1));
    for name in [
        "hang_in",
        "panic_in",
        "abort_in",
        "fail_in",
        "slow_in",
        "degrade_in",
    ] {
        let spec = schema
            .spec(name)
            .unwrap_or_else(|| panic!("{name} declared"));
        assert_eq!(spec.kind, PropertyKind::MultiString, "{name}");
        assert_eq!(spec.default, Some(Value::MultiString(Vec::new())), "{name}");
    }
    let duration = |name: &str| schema.spec(name).unwrap().default.clone();
    assert_eq!(
        duration("slow_for"),
        Some(Duration::from_millis(200).into())
    );
    assert_eq!(duration("pending_online"), Some(Duration::ZERO.into()));
    assert_eq!(
        duration("report_every"),
        Some(Duration::from_millis(100).into())
    );
    assert_eq!(
        schema.spec("stall_reports").unwrap().default,
        Some(false.into())
    );
    assert_eq!(
        schema.spec("control_file").unwrap().default,
        Some("".into())
    );
    for spec in schema.specs() {
        assert!(!spec.description.is_empty(), "{} is described", spec.name);
    }
}

#[test]
fn a_full_lifecycle_starts_the_workload_exactly_once() {
    let dir = TempDir::new("fi-lifecycle");
    let resource = open(&props(&dir), "web");
    assert_eq!(start_count(dir.path(), "web"), 0);
    assert!(!is_running(dir.path(), "web"));
    assert!(resource.looks_alive().is_failed(), "not running yet");
    assert!(resource.is_alive().is_failed(), "not running yet");
    assert_eq!(count_via_control(&resource), 0);

    online_now(&resource);
    assert!(is_running(dir.path(), "web"));
    assert_eq!(start_count(dir.path(), "web"), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("web.running")).unwrap(),
        "web"
    );
    assert_eq!(resource.looks_alive(), Health::Healthy);
    assert_eq!(resource.is_alive(), Health::Healthy);
    assert_eq!(count_via_control(&resource), 1);

    // is_alive looks inside; looks_alive only at existence.
    std::fs::write(dir.path().join("web.running"), "intruder").unwrap();
    assert_eq!(resource.looks_alive(), Health::Healthy);
    match resource.is_alive() {
        Health::Failed(reason) => assert!(reason.contains("names \"intruder\""), "{reason}"),
        other => panic!("is_alive should fail, got {other:?}"),
    }
    std::fs::write(dir.path().join("web.running"), "web").unwrap();

    assert_eq!(
        resource.offline(StatusReporter::detached_online()).unwrap(),
        Transition::Done
    );
    assert!(!is_running(dir.path(), "web"));
    assert!(resource.looks_alive().is_failed());
    assert_eq!(start_count(dir.path(), "web"), 1, "offline is no start");

    let err = resource.control(ControlCode(77), b"").unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unsupported);
    let err = resource
        .control(ControlCode::type_specific(2), b"")
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unsupported);
    resource.close().unwrap();
    assert_eq!(start_count(dir.path(), "web"), 1);

    // Each online is one more start; terminate stops the workload.
    let resource = open(&props(&dir), "web");
    online_now(&resource);
    assert_eq!(start_count(dir.path(), "web"), 2);
    resource.terminate().unwrap();
    assert!(!is_running(dir.path(), "web"));
    resource.close().unwrap();
    assert_eq!(start_count(dir.path(), "web"), 2);
}

#[test]
fn reopening_with_recover_adopts_the_workload_without_a_start() {
    let dir = TempDir::new("fi-recover");
    let resource = open(&props(&dir), "db");
    online_now(&resource);
    // The monitor "dies": the resource is closed without offline.
    resource.close().unwrap();
    assert!(is_running(dir.path(), "db"));

    let (log, lines) = recording_logger();
    let adopted = fault_type().open("db", &props(&dir), true, log).unwrap();
    assert_eq!(adopted.looks_alive(), Health::Healthy);
    assert_eq!(adopted.is_alive(), Health::Healthy);
    assert_eq!(count_via_control(&adopted), 1);
    assert_eq!(start_count(dir.path(), "db"), 1, "re-attach is no restart");
    adopted.close().unwrap();
    let lines = lines.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("info re-attached") && l.ends_with("db.running")),
        "{lines:?}"
    );
}

fn assert_panicked<T: std::fmt::Debug>(result: Result<T, Error>, entry_point: &str) {
    let err = result.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Panicked, "{entry_point}: {err}");
    // The message, then where the panic happened.
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "panicked: fault-injection: told to panic in {entry_point} (at examples/fault-injection/src/faults.rs:"
        )),
        "{text}"
    );
}

#[test]
fn a_panic_in_each_entry_point_comes_back_as_panicked() {
    let dir = TempDir::new("fi-panic");
    let panicking = |ep: &str| open(&with_fault(&dir, "panic_in", &[ep]), "p");

    assert_panicked(
        fault_type().open(
            "p",
            &with_fault(&dir, "panic_in", &["open"]),
            false,
            Logger::discard(),
        ),
        "open",
    );
    assert_panicked(
        panicking("online").online(StatusReporter::detached_online()),
        "online",
    );
    assert_eq!(start_count(dir.path(), "p"), 0, "no start after a panic");
    assert_panicked(
        panicking("offline").offline(StatusReporter::detached_online()),
        "offline",
    );
    assert_panicked(panicking("terminate").terminate(), "terminate");
    assert_panicked(panicking("control").control(START_COUNT, b""), "control");
    assert_panicked(panicking("close").close(), "close");
    for entry_point in ["looks_alive", "is_alive"] {
        let resource = panicking(entry_point);
        let health = match entry_point {
            "looks_alive" => resource.looks_alive(),
            _ => resource.is_alive(),
        };
        match health {
            Health::Failed(reason) => assert!(
                reason.contains("panicked")
                    && reason.contains(&format!("told to panic in {entry_point}")),
                "{reason}"
            ),
            other => panic!("{entry_point} should fail, got {other:?}"),
        }
    }

    // The library is still usable after all those panics, and a fault
    // in one entry point leaves the others alone.
    let calm = panicking("close");
    online_now(&calm);
    assert_eq!(calm.looks_alive(), Health::Healthy);
    assert_eq!(calm.is_alive(), Health::Healthy);
    assert_eq!(start_count(dir.path(), "p"), 1);
    assert_panicked(calm.close(), "close");
}

#[test]
fn fail_and_degrade_report_what_they_were_told() {
    let dir = TempDir::new("fi-fail");
    let failing = |ep: &str| open(&with_fault(&dir, "fail_in", &[ep]), "f");
    let assert_failed = |result: Result<(), Error>, ep: &str| {
        let err = result.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Failed, "{ep}: {err}");
        assert_eq!(
            err.message(),
            format!("fault-injection: told to fail in {ep}")
        );
    };

    assert_failed(
        fault_type()
            .open(
                "f",
                &with_fault(&dir, "fail_in", &["open"]),
                false,
                Logger::discard(),
            )
            .map(drop),
        "open",
    );
    assert_failed(
        failing("online")
            .online(StatusReporter::detached_online())
            .map(drop),
        "online",
    );
    assert_eq!(
        start_count(dir.path(), "f"),
        0,
        "a failed online starts nothing"
    );
    assert_failed(
        failing("offline")
            .offline(StatusReporter::detached_online())
            .map(drop),
        "offline",
    );
    assert_failed(failing("terminate").terminate(), "terminate");
    assert_failed(
        failing("control").control(START_COUNT, b"").map(drop),
        "control",
    );
    assert_failed(failing("close").close(), "close");

    // Health checks fail (or degrade) even while the workload runs.
    let resource = open(
        &with_fault(&dir, "fail_in", &["looks_alive", "is_alive"]),
        "f",
    );
    online_now(&resource);
    assert_eq!(
        resource.looks_alive(),
        Health::failed("fault-injection: told to fail in looks_alive")
    );
    assert_eq!(
        resource.is_alive(),
        Health::failed("fault-injection: told to fail in is_alive")
    );
    resource.close().unwrap();

    let resource = open(&with_fault(&dir, "degrade_in", &["is_alive"]), "d");
    online_now(&resource);
    assert_eq!(resource.looks_alive(), Health::Healthy);
    assert_eq!(
        resource.is_alive(),
        Health::degraded("fault-injection: told to degrade in is_alive")
    );
    resource.close().unwrap();

    // Fail wins over degrade.
    let mut both = with_fault(&dir, "degrade_in", &["looks_alive"]);
    both.insert("fail_in", vec!["looks_alive".to_owned()]);
    let resource = open(&both, "d");
    assert!(resource.looks_alive().is_failed());
    resource.close().unwrap();
}

#[test]
fn slow_entry_points_take_at_least_slow_for_then_work() {
    let dir = TempDir::new("fi-slow");
    let slow_for = Duration::from_millis(100);
    let mut props = with_fault(&dir, "slow_in", &["online", "looks_alive", "control"]);
    props.insert("slow_for", slow_for);
    let resource = open(&props, "s");

    let started = Instant::now();
    online_now(&resource);
    assert!(started.elapsed() >= slow_for, "{:?}", started.elapsed());
    assert_eq!(start_count(dir.path(), "s"), 1);

    let started = Instant::now();
    assert_eq!(resource.looks_alive(), Health::Healthy);
    assert!(started.elapsed() >= slow_for, "{:?}", started.elapsed());

    let started = Instant::now();
    assert_eq!(count_via_control(&resource), 1);
    assert!(started.elapsed() >= slow_for, "{:?}", started.elapsed());
    resource.close().unwrap();
}

#[test]
fn a_pending_online_reports_progress_then_starts_the_workload() {
    let dir = TempDir::new("fi-pending");
    let mut props = props(&dir);
    props.insert("pending_online", Duration::from_millis(100));
    props.insert("report_every", Duration::from_millis(10));
    let resource = open(&props, "pend");
    let (sink, done) = recorder(Reply::Continue);

    assert_eq!(
        resource
            .online(StatusReporter::online(sink.clone()))
            .unwrap(),
        Transition::Pending
    );
    let outcome = done.recv_timeout(PATIENCE).expect("the worker completes");
    assert_eq!(outcome.unwrap(), ResourceState::Online);
    assert!(is_running(dir.path(), "pend"));
    assert_eq!(start_count(dir.path(), "pend"), 1);
    assert_eq!(resource.is_alive(), Health::Healthy);

    let reports = sink.reports.lock().unwrap().clone();
    assert!(!reports.is_empty(), "progress was reported");
    assert!(
        reports
            .iter()
            .all(|(s, _)| *s == ResourceState::OnlinePending)
    );
    assert!(
        reports.windows(2).all(|w| w[0].1 < w[1].1),
        "checkpoints rise: {reports:?}"
    );
    resource.close().unwrap();
}

#[test]
fn a_terminate_reply_ends_a_pending_online_without_a_start() {
    let dir = TempDir::new("fi-reply");
    let mut props = props(&dir);
    props.insert("pending_online", Duration::from_secs(600));
    let resource = open(&props, "told");
    let (sink, done) = recorder(Reply::Terminate);
    assert_eq!(
        resource.online(StatusReporter::online(sink)).unwrap(),
        Transition::Pending
    );
    let outcome = done.recv_timeout(PATIENCE).expect("the worker stops");
    assert_eq!(outcome.unwrap_err().code(), ErrorCode::Terminated);
    assert_eq!(start_count(dir.path(), "told"), 0);
    assert!(!is_running(dir.path(), "told"));
    resource.close().unwrap();
}

#[test]
fn stalled_reports_never_come_and_terminate_ends_the_online() {
    let dir = TempDir::new("fi-stall");
    let mut props = props(&dir);
    props.insert("pending_online", Duration::from_millis(20));
    props.insert("report_every", Duration::from_millis(5));
    props.insert("stall_reports", true);
    let resource = open(&props, "stall");
    let (sink, done) = recorder(Reply::Continue);
    assert_eq!(
        resource
            .online(StatusReporter::online(sink.clone()))
            .unwrap(),
        Transition::Pending
    );
    // Well past `pending_online`, it has neither reported nor completed.
    assert_eq!(
        done.recv_timeout(Duration::from_millis(300)),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
    assert!(sink.reports.lock().unwrap().is_empty());

    resource.terminate().unwrap();
    let outcome = done
        .recv_timeout(PATIENCE)
        .expect("the worker ends after terminate");
    assert_eq!(outcome.unwrap_err().code(), ErrorCode::Terminated);
    assert!(sink.reports.lock().unwrap().is_empty(), "no report, ever");
    assert_eq!(start_count(dir.path(), "stall"), 0);
    assert!(!is_running(dir.path(), "stall"));
    resource.close().unwrap();
}

#[test]
fn close_stops_a_pending_online() {
    let dir = TempDir::new("fi-close-pending");
    let mut props = props(&dir);
    props.insert("pending_online", Duration::from_secs(600));
    props.insert("stall_reports", true);
    let resource = open(&props, "closing");
    let (sink, done) = recorder(Reply::Continue);
    resource.online(StatusReporter::online(sink)).unwrap();
    resource.close().unwrap();
    let outcome = done.recv_timeout(PATIENCE).expect("close ended the worker");
    assert_eq!(outcome.unwrap_err().code(), ErrorCode::Terminated);
    assert_eq!(start_count(dir.path(), "closing"), 0);
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn control_file_directives_take_effect_at_the_next_call() {
    let dir = TempDir::new("fi-control");
    let control = dir.path().join("faults.ctl");
    let mut props = props(&dir);
    props.insert("control_file", control.to_str().unwrap());
    let (log, lines) = recording_logger();
    let resource = fault_type().open("ctl", &props, false, log).unwrap();
    online_now(&resource);
    assert_eq!(
        resource.looks_alive(),
        Health::Healthy,
        "no file, no faults"
    );

    write(&control, "fail looks_alive\n");
    assert_eq!(
        resource.looks_alive(),
        Health::failed("fault-injection: told to fail in looks_alive")
    );
    assert_eq!(resource.is_alive(), Health::Healthy, "only looks_alive");

    write(
        &control,
        "# a comment, then a blank line\n\ndegrade is_alive   # trailing comment\n\
         explode looks_alive\n",
    );
    assert_eq!(resource.looks_alive(), Health::Healthy, "directive removed");
    assert_eq!(
        resource.is_alive(),
        Health::degraded("fault-injection: told to degrade in is_alive")
    );
    // Unchanged file: the bad line is not logged again.
    assert!(resource.is_alive().reason().contains("degrade"));

    write(&control, "panic control\nfail offline\nfail online\n");
    assert_panicked(resource.control(START_COUNT, b""), "control");
    let err = resource
        .offline(StatusReporter::detached_online())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Failed);
    assert!(
        is_running(dir.path(), "ctl"),
        "a failed offline stops nothing"
    );

    std::fs::remove_file(&control).unwrap();
    assert_eq!(count_via_control(&resource), 1, "no file, no faults again");
    assert_eq!(
        resource.offline(StatusReporter::detached_online()).unwrap(),
        Transition::Done
    );
    resource.close().unwrap();

    // Directives add to the configured faults, and apply to open and close.
    write(&control, "fail open\n");
    let mut configured = props.clone();
    configured.insert("slow_in", vec!["close".to_owned()]);
    configured.insert("slow_for", Duration::ZERO);
    let err = fault_type()
        .open("ctl", &configured, false, Logger::discard())
        .unwrap_err();
    assert_eq!(err.message(), "fault-injection: told to fail in open");
    write(&control, "fail close\n");
    let resource = open(&configured, "ctl");
    let err = resource.close().unwrap_err();
    assert_eq!(err.message(), "fault-injection: told to fail in close");

    let lines = lines.lock().unwrap();
    let warnings: Vec<_> = lines.iter().filter(|l| l.starts_with("warn ")).collect();
    assert_eq!(warnings.len(), 1, "one bad line, logged once: {lines:?}");
    assert!(
        warnings[0].contains("line 4: unknown action \"explode\"")
            && warnings[0].contains("faults.ctl"),
        "{warnings:?}"
    );
}

#[test]
fn bad_entry_point_names_are_rejected_naming_the_property() {
    let dir = TempDir::new("fi-bad");
    let ty = fault_type();

    let err = ty
        .open(
            "x",
            &with_fault(&dir, "panic_in", &["online", "onlien"]),
            false,
            Logger::discard(),
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidProperties);
    let Error::InvalidProperties(errors) = &err else {
        panic!("{err:?}")
    };
    let problem = errors
        .for_property("panic_in")
        .expect("panic_in is named")
        .to_string();
    assert!(problem.contains("\"onlien\""), "{problem}");
    assert!(
        problem.contains(&ENTRY_POINTS.join(", ")),
        "the valid names are listed: {problem}"
    );

    // Every bad property is named; degrade applies to health checks only.
    let mut props = with_fault(&dir, "hang_in", &["arbitrate"]);
    props.insert("degrade_in", vec!["online".to_owned()]);
    props.insert("fail_in", vec!["is_alive".to_owned()]);
    let err = ty.open("x", &props, false, Logger::discard()).unwrap_err();
    let Error::InvalidProperties(errors) = &err else {
        panic!("{err:?}")
    };
    let named: Vec<_> = errors.iter().map(|e| e.property.as_str()).collect();
    assert_eq!(named, ["hang_in", "degrade_in"], "{err}");
    assert!(err.to_string().contains("health checks only"), "{err}");

    // The schema's own checks still apply.
    let err = ty
        .open("x", &Properties::new(), false, Logger::discard())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "property `state_dir`: required but not given"
    );
    let mut missing = Properties::new();
    missing.insert("state_dir", "/nonexistent/clusterkit");
    let err = ty
        .open("x", &missing, false, Logger::discard())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}
