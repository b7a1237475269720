//! `clusterkit check` through the real binary: it passes every example
//! library (on its real backend: a temp disk image, BIND, QEMU, the C
//! resource's process) and fails the fault-injection type where its faults
//! are.
//!
//! The passing runs give `--slack 5`: room for a loaded test machine, so
//! that no verdict depends on the scheduler. The budgets themselves are
//! checked by the `slow` fault, which is over its budget however fast the
//! machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use clusterkit_testkit::bind::{Bind, KEY_NAME, ZONE};
use clusterkit_testkit::{TempDir, cdylib, compile_c_file_library, require_tool, workspace_root};
use serde_json::Value;

fn clusterkit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clusterkit"))
}

/// Runs `clusterkit check ARGS`: the exit code and stdout.
fn check(args: &[&str]) -> (i32, String) {
    let out = clusterkit()
        .arg("check")
        .args(args)
        .output()
        .expect("running clusterkit check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or_else(|| {
        panic!(
            "clusterkit check died: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, stdout)
}

/// The report's line for check `name`: `(outcome, detail)`.
fn line<'a>(report: &'a str, name: &str) -> (&'a str, &'a str) {
    report
        .lines()
        .find_map(|l| {
            let (outcome, rest) = l.split_once("  ")?;
            let rest = rest.strip_prefix(name)?;
            rest.starts_with("  ").then(|| (outcome, rest.trim()))
        })
        .unwrap_or_else(|| panic!("no line `{name}` in the report:\n{report}"))
}

fn assert_outcome(report: &str, name: &str, outcome: &str, detail: &str) {
    let (got, text) = line(report, name);
    assert_eq!(got, outcome, "`{name}`: {text}\n{report}");
    assert!(
        text.contains(detail),
        "`{name}` should say {detail:?}: {text}\n{report}"
    );
}

/// Asserts a passing report: exit 0, the verdict, and a pass (or a skip
/// among `skipped`, a pass or a warning among `may_warn`) for every check.
fn assert_passes(code: i32, report: &str, skipped: &[&str], may_warn: &[&str]) {
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("\nverdict: PASS"), "{report}");
    for name in [
        "library loads",
        "ABI version and table",
        "properties",
        "open",
        "online",
        "looks_alive",
        "is_alive",
        "control",
        "offline",
        "offline stops the workload",
        "close",
        "terminate ends a pending online",
        "terminate",
        "reattach",
        "panics come back as errors",
    ] {
        let outcome = line(report, name).0;
        if skipped.contains(&name) {
            assert_eq!(outcome, "skip", "`{name}`\n{report}");
        } else if may_warn.contains(&name) {
            assert!(matches!(outcome, "pass" | "WARN"), "`{name}`\n{report}");
        } else {
            assert_eq!(outcome, "pass", "`{name}`\n{report}");
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp paths")
}

#[test]
fn check_passes_the_dummy_with_every_check_and_a_json_report() {
    let dir = TempDir::new("check-dummy");
    let dummy = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    let state_dir = format!("state_dir={}", path(dir.path()));
    // A pending online, so that terminate has something pending to end.
    let args = [
        path(&dummy),
        "dummy",
        &state_dir,
        "online_delay=300ms",
        "--slack=5",
    ];
    let (code, report) = check(&args);
    assert_passes(code, &report, &[], &[]);
    assert_outcome(&report, "online", "pass", "returned pending in");
    assert_outcome(
        &report,
        "terminate ends a pending online",
        "pass",
        "terminated",
    );
    assert_outcome(&report, "reattach", "pass", "adopted the running workload");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the check leaves no workload behind"
    );

    let (code, json) = check(&[&args[..], &["--json"]].concat());
    assert_eq!(code, 0, "{json}");
    let json: Value = serde_json::from_str(&json).expect("a JSON report");
    assert_eq!(json["type"], "dummy");
    let checks = json["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["outcome"] == "pass"), "{json:#}");
    let open = checks.iter().find(|c| c["name"] == "open").unwrap();
    assert_eq!(open["budget_ms"], 1500.0, "open's 300 ms, times the slack");
    assert!(json["verdict"].as_str().unwrap().starts_with("PASS"));
}

#[test]
fn check_passes_the_disk_on_a_formatted_temp_image() {
    let dir = TempDir::new("check-disk");
    let disk = cdylib("clusterkit-example-disk", "clusterkit_disk");
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(8 << 20))
        .unwrap();
    let image_property = format!("path={}", path(&image));
    let formatted = clusterkit()
        .args(["type-control", path(&disk), "disk", "type_specific(1)"])
        .arg(&image_property)
        .output()
        .unwrap();
    assert!(formatted.status.success(), "{formatted:?}");
    let (code, report) = check(&[
        path(&disk),
        "disk",
        &image_property,
        "io_timeout=1s",
        "--slack=5",
    ]);
    assert_passes(code, &report, &[], &[]);
    // Its online claims the on-disk lease on a worker: a pending online
    // that terminate ends.
    assert_outcome(
        &report,
        "terminate ends a pending online",
        "pass",
        "the claim of disk",
    );
}

#[test]
fn check_passes_the_network_name_against_a_real_bind() {
    let bind = Bind::start("check");
    let library = cdylib("clusterkit-example-network-name", "clusterkit_network_name");
    let servers = format!("servers=[\"{}\"]", bind.addr);
    let secret = format!("tsig_secret={}", bind.secret);
    let (code, report) = check(&[
        path(&library),
        "network-name",
        &format!("name=check.{ZONE}"),
        "address=127.0.0.1",
        &format!("zone={ZONE}"),
        &servers,
        &format!("tsig_key_name={KEY_NAME}"),
        &secret,
        "--slack=5",
    ]);
    // Its terminate leaves the record registered on purpose (removing it
    // would wait on DNS servers): a warning when the pending online had
    // registered it before terminate came, which is a matter of timing.
    assert_passes(code, &report, &[], &["terminate"]);
    assert!(
        !report.contains(&bind.secret),
        "the secret stays out of the report"
    );
    assert!(
        bind.dig(&format!("check.{ZONE}"), "A").is_empty(),
        "the record is gone after the check"
    );
}

#[test]
fn check_passes_a_virtual_machine_under_qemu() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let dir = TempDir::new("check-vm");
    let library = cdylib(
        "clusterkit-example-virtual-machine",
        "clusterkit_virtual_machine",
    );
    let (code, report) = check(&[
        path(&library),
        "virtual-machine",
        &format!("run_dir={}", path(dir.path())),
        "powerdown_grace=300ms",
        "--slack=5",
    ]);
    assert_passes(code, &report, &[], &[]);
    assert!(
        !dir.path().join("clusterkit-check.pid").exists(),
        "no QEMU left running"
    );
}

#[test]
fn check_passes_the_c_resource() {
    let dir = TempDir::new("check-c");
    let library = dir.path().join("libpidfile_resource.so");
    compile_c_file_library(
        &workspace_root().join("examples/c-resource/pidfile_resource.c"),
        &library,
    );
    let pidfile = dir.path().join("sleeper.pid");
    let (code, report) = check(&[
        path(&library),
        "pidfile-process",
        r#"command=["sleep","600"]"#,
        &format!("pidfile={}", path(&pidfile)),
        "--slack=5",
    ]);
    assert_passes(
        code,
        &report,
        &[
            "terminate ends a pending online",
            "panics come back as errors",
        ],
        &[],
    );
    assert_outcome(
        &report,
        "panics come back as errors",
        "skip",
        "not built by rustc",
    );
    assert!(!pidfile.exists(), "the process was stopped");

    // A command that cannot run fails online, saying why.
    let (code, report) = check(&[
        path(&library),
        r#"command=["/nonexistent/program"]"#,
        &format!("pidfile={}", path(&pidfile)),
    ]);
    assert_eq!(code, 1, "{report}");
    assert_outcome(
        &report,
        "online",
        "FAIL",
        "running /nonexistent/program: No such file or directory",
    );
}

/// Checks the fault-injection type with `faults` (and a 1 s hang timeout).
fn check_faults(dir: &TempDir, faults: &[&str]) -> (i32, String) {
    let library = fault_injection();
    let state_dir = format!("state_dir={}", path(dir.path()));
    let mut args = vec![
        path(&library),
        "fault-injection",
        &state_dir,
        "--hang-timeout=1s",
        "--pending-timeout=500ms",
    ];
    args.extend_from_slice(faults);
    check(&args)
}

fn fault_injection() -> PathBuf {
    cdylib(
        "clusterkit-example-fault-injection",
        "clusterkit_fault_injection",
    )
}

#[test]
fn check_fails_a_hang_in_looks_alive_and_cleans_up_after_it() {
    let dir = TempDir::new("check-hang");
    let (code, report) = check_faults(&dir, &["hang_in=looks_alive"]);
    assert_eq!(code, 1, "{report}");
    assert_outcome(
        &report,
        "looks_alive",
        "FAIL",
        "looks_alive: no return after 1 s: hung",
    );
    assert_outcome(
        &report,
        "is_alive",
        "skip",
        "not reached: the process died in looks_alive",
    );
    assert_outcome(&report, "open", "pass", "");
    assert_outcome(&report, "online", "pass", "");
    assert!(
        report.contains("note: after `looks_alive: no return"),
        "{report}"
    );
    assert!(report.contains("\nverdict: FAIL"), "{report}");
    assert!(
        !fault_injection_runs(&dir),
        "the cleanup stopped the workload\n{report}"
    );
}

#[test]
fn check_fails_a_panic_in_online_and_cites_it_as_caught() {
    let dir = TempDir::new("check-panic");
    let (code, report) = check_faults(&dir, &["panic_in=online"]);
    assert_eq!(code, 1, "{report}");
    assert_outcome(
        &report,
        "online",
        "FAIL",
        "online returned an error: panicked: fault-injection: told to panic in online",
    );
    assert_outcome(
        &report,
        "panics come back as errors",
        "pass",
        "the panics seen in `online` came back as `panicked` errors",
    );
}

#[test]
fn check_fails_an_abort_in_online() {
    let dir = TempDir::new("check-abort");
    let (code, report) = check_faults(&dir, &["abort_in=online"]);
    assert_eq!(code, 1, "{report}");
    assert_outcome(
        &report,
        "online",
        "FAIL",
        "online: the process died of SIGABRT during the call",
    );
    assert_outcome(&report, "reattach", "FAIL", "SIGABRT");
    assert!(!fault_injection_runs(&dir), "{report}");
}

#[test]
fn check_fails_a_slow_open_saying_by_how_much() {
    let dir = TempDir::new("check-slow");
    // However fast the machine, a 500 ms sleep is over a 300 ms budget.
    let (code, report) = check_faults(&dir, &["slow_in=open", "slow_for=500ms"]);
    assert_eq!(code, 1, "{report}");
    assert_outcome(&report, "open", "FAIL", "over its 300 ms budget by");
    assert_outcome(&report, "close", "pass", "");
}

#[test]
fn check_fails_a_slow_terminate_against_its_own_budget() {
    let dir = TempDir::new("check-slow-terminate");
    let (code, report) = check_faults(&dir, &["slow_in=terminate", "slow_for=1200ms"]);
    assert_eq!(code, 1, "{report}");
    assert_outcome(&report, "terminate", "FAIL", "over its 1 s budget by");
    assert_outcome(&report, "open", "pass", "");
    assert!(!fault_injection_runs(&dir), "{report}");
}

#[test]
fn check_fails_a_pending_online_that_stops_reporting() {
    let dir = TempDir::new("check-stall");
    let (code, report) = check_faults(&dir, &["pending_online=10s", "stall_reports=true"]);
    assert_eq!(code, 1, "{report}");
    assert_outcome(
        &report,
        "online",
        "FAIL",
        "the pending online sent no progress report for 500 ms (the pending timeout",
    );
    assert_outcome(&report, "terminate ends a pending online", "pass", "");
}

#[test]
fn check_fails_an_unhealthy_is_alive() {
    let dir = TempDir::new("check-fail");
    let (code, report) = check_faults(&dir, &["fail_in=is_alive"]);
    assert_eq!(code, 1, "{report}");
    assert_outcome(&report, "is_alive", "FAIL", "is_alive says failed");
    assert_outcome(&report, "looks_alive", "pass", "healthy");
    assert!(!fault_injection_runs(&dir), "{report}");
}

#[test]
fn check_warns_about_a_degraded_is_alive_without_failing() {
    let dir = TempDir::new("check-degrade");
    let (code, report) = check_faults(&dir, &["degrade_in=is_alive"]);
    assert_eq!(code, 0, "{report}");
    assert_outcome(
        &report,
        "is_alive",
        "WARN",
        "degraded (fault-injection: told to degrade in is_alive)",
    );
    assert_outcome(&report, "reattach", "pass", "adopted the running workload");
    assert!(
        report.contains("\nverdict: PASS: 14 checks passed, 1 with warnings, 1 skipped"),
        "{report}"
    );
}

fn fault_injection_runs(dir: &TempDir) -> bool {
    dir.path().join("clusterkit-check.running").exists()
}

#[test]
fn check_says_why_a_library_cannot_be_checked() {
    let dir = TempDir::new("check-bad");
    let not_a_library = dir.path().join("libnot.so");
    std::fs::write(&not_a_library, "not ELF").unwrap();
    let (code, report) = check(&[path(&not_a_library)]);
    assert_eq!(code, 2, "{report}");
    assert_outcome(
        &report,
        "library loads",
        "FAIL",
        "not a loadable shared library",
    );

    // A truncated library crashes its loader: the check survives it.
    let dummy = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    let bytes = std::fs::read(&dummy).unwrap();
    let truncated = dir.path().join("libtruncated.so");
    std::fs::write(&truncated, &bytes[..bytes.len() / 20]).unwrap();
    let (code, report) = check(&[path(&truncated)]);
    assert_eq!(code, 2, "{report}");
    assert_outcome(
        &report,
        "library loads",
        "FAIL",
        "startup: the process died of SIGBUS during the call",
    );

    let (code, report) = check(&[path(&dummy), "dumy"]);
    assert_eq!(code, 2, "{report}");
    assert_outcome(
        &report,
        "type",
        "FAIL",
        "exports no type `dumy` (it exports: `dummy`)",
    );

    // The type left out (the library has one), a required property missing.
    let (code, report) = check(&[path(&dummy), "online_delay=1s"]);
    assert_eq!(code, 1, "{report}");
    assert_outcome(
        &report,
        "properties",
        "FAIL",
        "property `state_dir`: required but not given (state_dir: Directory of the state file)",
    );
    assert_outcome(&report, "open", "skip", "the properties are not valid");

    let (code, _) = check(&[path(&dummy), "--budget=opne=1s"]);
    assert_eq!(code, 2, "a usage error");

    // A startup that panics: the boundary returns it, the library does not load.
    let panicky = cdylib("clusterkit-fixtures", "clusterkit_fixtures");
    let out = clusterkit()
        .args(["check", path(&panicky)])
        .env("CLUSTERKIT_FIXTURE_STARTUP", "panic")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert_outcome(
        &report,
        "library loads",
        "FAIL",
        "startup failed: panicked: panicky: told to panic in startup",
    );
}

#[test]
fn check_passes_the_ip_address_in_a_network_namespace_of_its_own() {
    require_tool("unshare", "util-linux");
    require_tool("ip", "iproute2");
    let library = cdylib("clusterkit-example-ip-address", "clusterkit_ip_address");
    // A fresh network namespace with a veth pair: nothing on the machine
    // changes.
    let script = format!(
        "set -e; ip link set lo up; ip link add ckchk0 type veth peer name ckchk1; \
         ip link set ckchk0 up; ip link set ckchk1 up; exec '{}' check '{}' \
         address=192.0.2.77 interface=ckchk0 --slack=5",
        env!("CARGO_BIN_EXE_clusterkit"),
        path(&library)
    );
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .output()
        .expect("running unshare");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code().is_some(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_passes(out.status.code().unwrap(), &report, &[], &[]);
    assert_outcome(
        &report,
        "offline stops the workload",
        "pass",
        "192.0.2.77/24 on ckchk0 is not there",
    );
}
