//! A host written in C (`examples/c-host/c_host.c`) drives Rust resource
//! libraries through the C table: lifecycle, pending operations with status
//! reports, `terminate` from a second thread, panics as error codes; and
//! valgrind finds no invalid access and no leak.

use std::path::PathBuf;
use std::process::{Command, Output};

use clusterkit_testkit::{TempDir, cdylib, compile_c_program, require_tool, workspace_root};

fn c_host(dir: &TempDir) -> PathBuf {
    let out = dir.path().join("c_host");
    compile_c_program(&workspace_root().join("examples/c-host/c_host.c"), &out);
    out
}

fn run(program: &[&std::ffi::OsStr]) -> (Output, String) {
    let output = Command::new(program[0])
        .args(&program[1..])
        .output()
        .expect("running the C host");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, text)
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
fn drives_the_dummy_library_through_its_lifecycle() {
    let dir = TempDir::new("c-host-dummy");
    let host = c_host(&dir);
    let lib = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    let state_dir = format!("state_dir={}", dir.path().display());
    let (output, text) = run(&[
        host.as_os_str(),
        lib.as_os_str(),
        os("dummy"),
        os("web"),
        os(&state_dir),
        os("online_delay=250"),
    ]);
    assert!(output.status.success(), "{text}");
    for line in [
        "loaded ",
        ": ABI 1.2, library clusterkit-example-dummy ",
        "type dummy: Online while <state_dir>/<name>.state exists (characteristics 0x2)",
        "  state_dir string required min 1: Directory of the state file",
        "open: ok",
        "online: pending",
        "  report: online_pending checkpoint 1, next within 200 ms",
        "online: completed: online after ",
        "looks_alive: healthy",
        "is_alive: healthy",
        "offline: ok state=offline",
        "close: ok",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn terminate_from_a_second_thread_ends_a_pending_online() {
    let dir = TempDir::new("c-host-terminate");
    let host = c_host(&dir);
    let lib = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    let state_dir = format!("state_dir={}", dir.path().display());
    let (output, text) = run(&[
        host.as_os_str(),
        lib.as_os_str(),
        os("--terminate-after"),
        os("150"),
        os("dummy"),
        os("slow"),
        os(&state_dir),
        os("online_delay=30000"),
    ]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("terminate (second thread): ok"), "{text}");
    assert!(text.contains("online: completed: failed after "), "{text}");
    assert!(
        text.contains("reports: error 7: online was stopped"),
        "{text}"
    );
}

#[test]
fn a_panic_in_a_rust_entry_point_reaches_the_c_host_as_an_error_code() {
    let dir = TempDir::new("c-host-panic");
    let host = c_host(&dir);
    let lib = cdylib(
        "clusterkit-example-fault-injection",
        "clusterkit_fault_injection",
    );
    let state_dir = format!("state_dir={}", dir.path().display());
    let (output, text) = run(&[
        host.as_os_str(),
        lib.as_os_str(),
        os("fault-injection"),
        os("p"),
        os(&state_dir),
        os("panic_in=looks_alive,online"),
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the C host survives and reports: {text}"
    );
    assert!(
        text.contains("online: error 10: fault-injection: told to panic in online"),
        "{text}"
    );
    assert!(
        text.contains("looks_alive: error 10: fault-injection: told to panic in looks_alive"),
        "{text}"
    );
    assert!(text.contains("close: ok"), "{text}");
}

fn valgrind(args: &[&std::ffi::OsStr]) -> String {
    let valgrind = require_tool("valgrind", "valgrind");
    let mut full: Vec<&std::ffi::OsStr> = vec![
        valgrind.as_os_str(),
        os("--leak-check=full"),
        os("--errors-for-leak-kinds=definite"),
        os("--error-exitcode=99"),
    ];
    full.extend_from_slice(args);
    // With RUST_BACKTRACE=1: a panic inside a boundary call captures no
    // backtrace, so std's symbolizer cache (globals of the library, lost at
    // dlclose) is never filled.
    let output = Command::new(full[0])
        .args(&full[1..])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_ne!(
        output.status.code(),
        Some(99),
        "valgrind found errors:\n{stderr}"
    );
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(
        stderr.contains("definitely lost: 0 bytes")
            || stderr.contains("All heap blocks were freed"),
        "{stderr}"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn valgrind_finds_no_invalid_access_and_no_leak() {
    let dir = TempDir::new("c-host-valgrind");
    let host = c_host(&dir);
    let state_dir = format!("state_dir={}", dir.path().display());
    let dummy = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    let text = valgrind(&[
        host.as_os_str(),
        dummy.as_os_str(),
        os("--terminate-after"),
        os("100"),
        os("dummy"),
        os("v"),
        os(&state_dir),
        os("online_delay=5000"),
    ]);
    assert!(text.contains("terminate (second thread): ok"), "{text}");
    let faults = cdylib(
        "clusterkit-example-fault-injection",
        "clusterkit_fault_injection",
    );
    let text = valgrind(&[
        host.as_os_str(),
        faults.as_os_str(),
        os("fault-injection"),
        os("p"),
        os(&state_dir),
        os("panic_in=is_alive"),
    ]);
    assert!(text.contains("is_alive: error 10"), "{text}");
}

#[test]
fn drives_the_disk_library_after_formatting_through_a_control_code() {
    let dir = TempDir::new("c-host-disk");
    let host = c_host(&dir);
    let lib = cdylib("clusterkit-example-disk", "clusterkit_disk");
    let image = dir.path().join("data.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let path = format!("path={}", image.display());
    // 0x80000001 is the disk type's FORMAT, run on the offline resource.
    let (output, text) = run(&[
        host.as_os_str(),
        lib.as_os_str(),
        os("--control"),
        os("0x80000001"),
        os("disk"),
        os("data"),
        os(&path),
    ]);
    assert!(output.status.success(), "{text}");
    for line in [
        "control: ok",
        // The disk claims its on-disk lease on a worker, reporting progress.
        "online: pending",
        "online: completed: online after",
        "looks_alive: healthy",
        "is_alive: healthy",
        "offline: ok",
        "close: ok",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn the_c_host_lists_secret_properties_as_secret() {
    let dir = TempDir::new("c-host-secret");
    let host = c_host(&dir);
    let lib = cdylib("clusterkit-example-network-name", "clusterkit_network_name");
    let (output, text) = run(&[host.as_os_str(), lib.as_os_str()]);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("  tsig_secret string required secret min 1: "),
        "{text}"
    );
    assert!(text.contains("  zone string required min 1"), "{text}");
}
