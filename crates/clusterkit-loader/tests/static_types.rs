//! Resource types linked into the host binary (`Library::from_static`):
//! the same table and checks as a loaded library, and a panic hook that
//! leaves the host's own hook in charge of the host's own panics.

use std::sync::atomic::{AtomicUsize, Ordering};

use clusterkit::{ErrorCode, Logger, Properties, Resource, StatusReporter};
use clusterkit_loader::Library;
use clusterkit_testkit::TempDir;

static HOST_HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn linked_types_run_through_the_c_table_and_the_host_keeps_its_panic_hook() {
    // The host's own hook, installed before the library starts.
    std::panic::set_hook(Box::new(|_| {
        HOST_HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    }));
    let library = Library::from_static(
        &clusterkit_fault_injection::CLUSTERKIT_LIBRARY,
        Logger::discard(),
    )
    .unwrap();
    assert_eq!(
        library.path().to_str(),
        Some("static:clusterkit-example-fault-injection")
    );
    let (name, _) = library.identity().unwrap();
    assert_eq!(name, "clusterkit-example-fault-injection");

    let dir = TempDir::new("static-panic");
    let mut props = Properties::new();
    props.insert("state_dir", dir.path().to_str().unwrap());
    props.insert("panic_in", vec!["online".to_owned()]);
    let resource = library
        .resource_type("fault-injection")
        .unwrap()
        .open("p", &props, false, Logger::discard())
        .unwrap();
    let err = resource
        .online(StatusReporter::detached_online())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Panicked);
    assert!(
        err.to_string()
            .contains("(at examples/fault-injection/src/"),
        "{err}"
    );
    // A panic inside a boundary call is not the host's business...
    assert_eq!(HOST_HOOK_CALLS.load(Ordering::SeqCst), 0);
    // ...but the host's own panics still reach its hook.
    let joined = std::thread::spawn(|| panic!("the host's own panic")).join();
    assert!(joined.is_err());
    assert_eq!(HOST_HOOK_CALLS.load(Ordering::SeqCst), 1);
    resource.close().unwrap();
}
