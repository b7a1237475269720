//! The custom host binary with dummy, disk, network-name and
//! fault-injection linked in (`src/main.rs`) survives the seeds' outage:
//! types that were never shared objects run in monitor processes with the
//! same isolation and recovery as loaded ones.
//!
//! The binary is built here, with the `linked` feature, in a cargo
//! invocation and target directory of its own: that feature turns on
//! `clusterkit/no-startup-symbol`, and Cargo would otherwise apply it to
//! the cdylibs the rest of the workspace builds.

use std::path::PathBuf;
use std::process::Command;

use clusterkit_testkit::bind::{Bind, KEY_NAME, ZONE};
use clusterkit_testkit::{TempDir, require_tool, target_dir, workspace_root};

fn static_host() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let dir = target_dir().join("static-host");
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "-p",
            "clusterkit-example-static-host",
            "--features",
            "linked",
            "--bin",
            "static-host",
            "--target-dir",
        ])
        .arg(&dir)
        .output()
        .expect("running cargo build");
    assert!(
        output.status.success(),
        "building static-host failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir.join("debug/static-host")
}

#[test]
fn linked_in_types_survive_a_hung_looks_alive_in_a_shared_monitor() {
    let binary = static_host();
    // The binary defines no unmangled entry point: four crates' symbols
    // would have clashed.
    let symbols = Command::new(require_tool("nm", "binutils"))
        .arg(&binary)
        .output()
        .expect("running nm");
    let text = String::from_utf8_lossy(&symbols.stdout);
    assert!(symbols.status.success() && text.contains("__clusterkit_library_startup"));
    assert!(
        !text.lines().any(|l| l.ends_with(" clusterkit_startup")),
        "static-host defines clusterkit_startup"
    );
    let bind = Bind::start("static-host");
    let dir = TempDir::new("static-host");
    let output = Command::new(&binary)
        .arg(dir.path())
        .arg(bind.addr.to_string())
        .args([ZONE, KEY_NAME, bind.secret.as_str()])
        .output()
        .expect("running static-host");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "static-host failed:\n{stdout}\n{stderr}"
    );
    for line in [
        "ok: four linked-in resources online in one monitor",
        "ok: the hung call was found at its deadline: Some(\"culprit looks_alive\")",
        "ok: re-attached without a restart: {\"data\", \"name\", \"web\"}",
        "ok: the others share a new monitor and were never restarted (restarts: 0)",
        "ok: the culprit is isolated in a monitor of its own",
        "ok: everything online again",
        "ok: every resource stopped and closed",
        "outage survived",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The TSIG secret given on the command line never reached a log line.
    assert!(!stderr.contains(&bind.secret), "{stderr}");
}
