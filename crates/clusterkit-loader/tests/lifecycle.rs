//! The reference `dummy` library and the `panicky` fixture, loaded through
//! the C table and driven through their whole lifecycle.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterkit::{
    Characteristics, ControlCode, Error, ErrorCode, Health, Logger, LostOwnership, Properties,
    PropertyKind, Reply, Resource, ResourceState, StatusReporter, Transition,
};
use clusterkit_loader::{Library, ResourceTypeHandle};
use clusterkit_testkit::{TempDir, cdylib};

/// How long a test waits for an event that should come in milliseconds,
/// before failing instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

fn dummy_type() -> ResourceTypeHandle {
    let path = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    let library = Library::load(&path, Logger::discard()).expect("loading the dummy library");
    library.resource_type("dummy").expect("dummy is exported")
}

fn panicky_type() -> ResourceTypeHandle {
    let path = cdylib("clusterkit-fixtures", "clusterkit_fixtures");
    let library = Library::load(&path, Logger::discard()).expect("loading the fixtures library");
    library
        .resource_type("panicky")
        .expect("panicky is exported")
}

fn dummy_props(dir: &TempDir) -> Properties {
    let mut props = Properties::new();
    props.insert("state_dir", dir.path().to_str().unwrap());
    props
}

use clusterkit_testkit::status::recorder;

#[test]
fn dummy_library_describes_itself() {
    let path = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    let library = Library::load(&path, Logger::discard()).unwrap();
    assert_eq!(
        library.identity(),
        Some((
            "clusterkit-example-dummy".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned()
        ))
    );
    let dummy = dummy_type();
    assert_eq!(dummy.name(), "dummy");
    assert_eq!(dummy.characteristics(), Characteristics::REATTACH);
    let spec = dummy
        .schema()
        .spec("state_dir")
        .expect("state_dir declared");
    assert_eq!(spec.kind, PropertyKind::String);
    assert!(spec.required);
    let delay = dummy
        .schema()
        .spec("online_delay")
        .expect("online_delay declared");
    assert_eq!(delay.default, Some(Duration::ZERO.into()));
    assert_eq!(delay.max, Some(60_000));
}

#[test]
fn dummy_full_lifecycle_through_the_c_table() {
    let dir = TempDir::new("dummy-lifecycle");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let log =
        Logger::from_fn(move |level, msg| sink.lock().unwrap().push(format!("{level} {msg}")));
    let dummy = dummy_type();

    let resource = dummy
        .open("web", &dummy_props(&dir), false, log.clone())
        .unwrap();
    assert!(resource.looks_alive().is_failed(), "offline before online");
    assert_eq!(
        resource.online(StatusReporter::detached_online()).unwrap(),
        Transition::Done
    );
    let state_file = dir.path().join("web.state");
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), "web");
    assert_eq!(resource.looks_alive(), Health::Healthy);
    assert_eq!(resource.is_alive(), Health::Healthy);

    std::fs::write(&state_file, "intruder").unwrap();
    assert_eq!(resource.looks_alive(), Health::Healthy);
    match resource.is_alive() {
        Health::Failed(reason) => assert!(reason.contains("names \"intruder\""), "{reason}"),
        other => panic!("is_alive should fail, got {other:?}"),
    }

    assert_eq!(
        resource.offline(StatusReporter::detached_online()).unwrap(),
        Transition::Done
    );
    assert!(!state_file.exists());
    assert!(resource.looks_alive().is_failed());
    resource.close().unwrap();

    // Re-opening with recover = true adopts a running workload and logs it
    // (at debug: one-shot hosts such as the OCF agents re-open at every action).
    std::fs::write(&state_file, "web").unwrap();
    let again = dummy.open("web", &dummy_props(&dir), true, log).unwrap();
    assert_eq!(again.is_alive(), Health::Healthy);
    again.close().unwrap();
    let lines = lines.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("debug re-attached to ") && l.ends_with("web.state")),
        "{lines:?}"
    );
}

#[test]
fn pending_online_reports_progress_then_completes() {
    let dir = TempDir::new("dummy-pending");
    let mut props = dummy_props(&dir);
    props.insert("online_delay", Duration::from_millis(50));
    let resource = dummy_type()
        .open("db", &props, false, Logger::discard())
        .unwrap();
    let (sink, done) = recorder(Reply::Continue);

    let transition = resource
        .online(StatusReporter::online(sink.clone()))
        .unwrap();
    assert_eq!(transition, Transition::Pending);
    let outcome = done.recv_timeout(PATIENCE).expect("the worker completes");
    assert_eq!(outcome.unwrap(), ResourceState::Online);
    assert_eq!(resource.looks_alive(), Health::Healthy);
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
fn terminate_stops_a_pending_online() {
    let dir = TempDir::new("dummy-terminate");
    let mut props = dummy_props(&dir);
    props.insert("online_delay", Duration::from_secs(60));
    let resource = dummy_type()
        .open("slow", &props, false, Logger::discard())
        .unwrap();
    let (sink, done) = recorder(Reply::Continue);
    assert_eq!(
        resource.online(StatusReporter::online(sink)).unwrap(),
        Transition::Pending
    );
    resource.terminate().unwrap();
    let outcome = done
        .recv_timeout(PATIENCE)
        .expect("the worker ends after terminate");
    assert_eq!(outcome.unwrap_err().code(), ErrorCode::Terminated);
    assert!(!dir.path().join("slow.state").exists());
    resource.close().unwrap();
}

#[test]
fn a_terminate_reply_stops_the_worker() {
    let dir = TempDir::new("dummy-reply");
    let mut props = dummy_props(&dir);
    props.insert("online_delay", Duration::from_secs(60));
    let resource = dummy_type()
        .open("told", &props, false, Logger::discard())
        .unwrap();
    let (sink, done) = recorder(Reply::Terminate);
    resource.online(StatusReporter::online(sink)).unwrap();
    let outcome = done
        .recv_timeout(PATIENCE)
        .expect("the worker stops on the reply");
    assert_eq!(outcome.unwrap_err().code(), ErrorCode::Terminated);
    resource.close().unwrap();
}

#[test]
fn bad_properties_are_named() {
    let dummy = dummy_type();
    let err = dummy
        .open("x", &Properties::new(), false, Logger::discard())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "property `state_dir`: required but not given"
    );

    let mut props = Properties::new();
    props.insert("state_dir", 7u32);
    props.insert("colour", "red");
    props.insert("online_delay", Duration::from_secs(61));
    let err = dummy
        .open("x", &props, false, Logger::discard())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "property `colour`: unknown property\n\
         property `online_delay`: 61000 is above the maximum 60000\n\
         property `state_dir`: expected a string, found a u32"
    );

    let mut props = Properties::new();
    props.insert("state_dir", "/nonexistent/clusterkit");
    let err = dummy
        .open("x", &props, false, Logger::discard())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(err.to_string().contains("property `state_dir`"), "{err}");
}

fn panicky(panic_in: &str) -> clusterkit_loader::LoadedResource {
    let mut props = Properties::new();
    props.insert("panic_in", panic_in);
    panicky_type()
        .open("p", &props, false, Logger::discard())
        .unwrap()
}

fn assert_panicked<T: std::fmt::Debug>(result: Result<T, Error>, entry_point: &str) {
    let err = result.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Panicked, "{entry_point}: {err}");
    // The message, then where the panic happened.
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "panicked: panicky: told to panic in {entry_point} (at crates/clusterkit-fixtures/src/lib.rs:"
        )),
        "{text}"
    );
}

#[test]
fn a_panic_in_every_entry_point_comes_back_as_an_error_code() {
    let ty = panicky_type();
    let mut props = Properties::new();
    props.insert("panic_in", "open");
    assert_panicked(ty.open("p", &props, false, Logger::discard()), "open");

    assert_panicked(
        panicky("online").online(StatusReporter::detached_online()),
        "online",
    );
    assert_panicked(
        panicky("offline").offline(StatusReporter::detached_online()),
        "offline",
    );
    assert_panicked(panicky("terminate").terminate(), "terminate");
    assert_panicked(
        panicky("arbitrate").arbitrate(LostOwnership::new(|| ())),
        "arbitrate",
    );
    assert_panicked(panicky("release").release(), "release");
    assert_panicked(
        panicky("control").control(ControlCode::TYPE_SPECIFIC_BASE, b""),
        "control",
    );
    assert_panicked(panicky("close").close(), "close");
    for (entry_point, health) in [
        ("looks_alive", panicky("looks_alive").looks_alive()),
        ("is_alive", panicky("is_alive").is_alive()),
    ] {
        let Health::Failed(reason) = &health else {
            panic!("{entry_point}: {health:?}");
        };
        assert!(
            reason.starts_with(&format!(
                "{entry_point} returned an error: panicked: panicky: told to panic in {entry_point} (at "
            )),
            "{reason}"
        );
    }

    // The library is still usable after all those panics.
    let calm = panicky("");
    assert_eq!(calm.looks_alive(), Health::Healthy);
    assert_eq!(
        calm.is_alive(),
        Health::degraded("panicky is never quite well")
    );
    calm.close().unwrap();
}

#[test]
fn control_codes_and_arbitration_cross_the_table() {
    let ty = panicky_type();
    assert_eq!(
        ty.control(ControlCode::TYPE_SPECIFIC_BASE, b"abc").unwrap(),
        b"cba"
    );
    assert_eq!(
        ty.control(ControlCode::GET_PROPERTIES, b"")
            .unwrap_err()
            .code(),
        ErrorCode::Unsupported
    );
    let resource = panicky("");
    assert_eq!(
        resource
            .control(ControlCode::TYPE_SPECIFIC_BASE, b"xyz")
            .unwrap(),
        b"xyz"
    );
    let err = resource.control(ControlCode(77), b"").unwrap_err();
    assert_eq!(err.to_string(), "unsupported: control(77)");

    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    resource
        .arbitrate(LostOwnership::new(move || {
            tx.lock().unwrap().send(()).unwrap()
        }))
        .unwrap();
    rx.recv_timeout(PATIENCE)
        .expect("the lost-ownership callback ran");
    resource.release().unwrap();
    resource.close().unwrap();
}

#[test]
fn secret_properties_and_resource_names_cross_the_c_table() {
    let path = cdylib("clusterkit-example-network-name", "clusterkit_network_name");
    let library = Library::load(&path, Logger::discard()).unwrap();
    let schema = library
        .resource_type("network-name")
        .unwrap()
        .schema()
        .clone();
    assert!(schema.spec("tsig_secret").unwrap().is_secret());
    assert!(!schema.spec("zone").unwrap().is_secret());

    let dir = TempDir::new("loader-names");
    for bad in ["", "../../etc/evil", "a\0b", "-x"] {
        let err = dummy_type()
            .open(bad, &dummy_props(&dir), false, Logger::discard())
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput, "{bad:?}: {err}");
        assert!(err.to_string().contains("resource name"), "{err}");
    }
}
