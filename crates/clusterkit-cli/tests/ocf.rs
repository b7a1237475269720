//! The OCF adapter, run by Pacemaker's own `ocf-tester` (Debian's
//! resource-agents) and checked against `ra-api-1.dtd` with `xmllint`.

use std::path::{Path, PathBuf};
use std::process::Command;

use clusterkit_testkit::{TempDir, cdylib, require_tool};

/// Installs the wrappers for `libraries` under `dir` and returns the agents' directory.
fn install(dir: &TempDir, libraries: &[PathBuf]) -> PathBuf {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clusterkit"));
    cmd.args(["ocf", "install", "--root"])
        .arg(dir.path().join("root"));
    for l in libraries {
        cmd.arg("--library").arg(l);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.path().join("root/usr/lib/ocf/resource.d/clusterkit")
}

/// Runs ocf-tester on `agent` with `params`; asserts it passes.
pub fn ocf_tester(dir: &TempDir, agent: &Path, name: &str, params: &[String]) {
    let tester = require_tool("ocf-tester", "resource-agents");
    require_tool("xmllint", "libxml2-utils");
    let mut cmd = Command::new(tester);
    cmd.arg("-n")
        .arg(name)
        .env("HA_RSCTMP", dir.path().join("rsctmp"));
    for p in params {
        cmd.arg("-o").arg(p);
    }
    let out = cmd.arg(agent).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("passed all tests"),
        "ocf-tester failed for {}:\n{stdout}\n{}",
        agent.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn agent_run(agent: &Path, action: &str, env: &[(&str, &str)], rsctmp: &Path) -> (i32, String) {
    let out = Command::new(agent)
        .arg(action)
        .env("HA_RSCTMP", rsctmp)
        .env("OCF_RESOURCE_INSTANCE", "probe")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dummy_and_fault_injection_pass_ocf_tester() {
    let dir = TempDir::new("ocf-tester");
    let agents = install(
        &dir,
        &[
            cdylib("clusterkit-example-dummy", "clusterkit_dummy"),
            cdylib(
                "clusterkit-example-fault-injection",
                "clusterkit_fault_injection",
            ),
        ],
    );
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let state_dir = format!("state_dir={}", work.display());
    ocf_tester(
        &dir,
        &agents.join("dummy"),
        "web",
        std::slice::from_ref(&state_dir),
    );
    ocf_tester(
        &dir,
        &agents.join("fault-injection"),
        "faults",
        &[state_dir],
    );
}

#[test]
fn meta_data_is_valid_and_exit_codes_follow_ocf() {
    let dir = TempDir::new("ocf-codes");
    let agents = install(
        &dir,
        &[cdylib("clusterkit-example-dummy", "clusterkit_dummy")],
    );
    let agent = agents.join("dummy");
    let rsctmp = dir.path().join("rsctmp");

    let meta = Command::new(&agent).arg("meta-data").output().unwrap();
    assert!(meta.status.success());
    let xml = String::from_utf8(meta.stdout).unwrap();
    assert!(
        xml.contains("<parameter name=\"state_dir\" unique=\"0\" required=\"1\">"),
        "{xml}"
    );
    assert!(
        xml.contains("<content type=\"time\" default=\"0s\"/>"),
        "online_delay's default: {xml}"
    );
    let xmllint = require_tool("xmllint", "libxml2-utils");
    let check = Command::new(xmllint)
        .args([
            "--noout",
            "--dtdvalid",
            "/usr/share/resource-agents/ra-api-1.dtd",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(xml.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // validate-all: missing, unknown and malformed parameters are "not configured" (6).
    let (code, err) = agent_run(&agent, "validate-all", &[], &rsctmp);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("property `state_dir`: required but not given"),
        "{err}"
    );
    let (code, err) = agent_run(
        &agent,
        "validate-all",
        &[
            ("OCF_RESKEY_state_dir", "/tmp"),
            ("OCF_RESKEY_online_delay", "later"),
        ],
        &rsctmp,
    );
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("property `online_delay`: \"later\" is not a duration"),
        "{err}"
    );
    // A state directory that does not exist fails at start as "not installed" (5).
    let (code, err) = agent_run(
        &agent,
        "start",
        &[("OCF_RESKEY_state_dir", "/nonexistent/dir")],
        &rsctmp,
    );
    assert_eq!(code, 5, "{err}");
    // monitor of a never-started instance: not running (7); unknown actions: 3.
    let (code, _) = agent_run(
        &agent,
        "monitor",
        &[("OCF_RESKEY_state_dir", "/tmp")],
        &rsctmp,
    );
    assert_eq!(code, 7);
    let (code, _) = agent_run(
        &agent,
        "promote",
        &[("OCF_RESKEY_state_dir", "/tmp")],
        &rsctmp,
    );
    assert_eq!(code, 3);

    // A started instance whose workload vanished: monitor says failed (1), at both depths.
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let env = [("OCF_RESKEY_state_dir", work.to_str().unwrap())];
    assert_eq!(agent_run(&agent, "start", &env, &rsctmp).0, 0);
    assert_eq!(agent_run(&agent, "monitor", &env, &rsctmp).0, 0);
    std::fs::remove_file(work.join("probe.state")).unwrap();
    assert_eq!(agent_run(&agent, "monitor", &env, &rsctmp).0, 1);
    let deep = [env[0], ("OCF_CHECK_LEVEL", "10")];
    assert_eq!(agent_run(&agent, "monitor", &deep, &rsctmp).0, 1);
    assert_eq!(agent_run(&agent, "stop", &env, &rsctmp).0, 0);
    assert_eq!(agent_run(&agent, "monitor", &env, &rsctmp).0, 7);
}

#[test]
fn the_disk_agent_passes_ocf_tester() {
    let dir = TempDir::new("ocf-disk");
    let library = cdylib("clusterkit-example-disk", "clusterkit_disk");
    let agents = install(&dir, std::slice::from_ref(&library));
    let image = dir.path().join("data.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    // FORMAT, a type-level control code of the disk type, before any start.
    let loaded = clusterkit_loader::Library::load(&library, clusterkit::Logger::discard()).unwrap();
    let mut input = clusterkit::Properties::new();
    input.insert("path", image.to_str().unwrap());
    loaded
        .resource_type("disk")
        .unwrap()
        .control(clusterkit::ControlCode::type_specific(1), &input.encode())
        .unwrap();
    ocf_tester(
        &dir,
        &agents.join("disk"),
        "data",
        &[format!("path={}", image.display())],
    );
}

#[test]
fn the_virtual_machine_agent_passes_ocf_tester() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let dir = TempDir::new("ocf-vm");
    let agents = install(
        &dir,
        &[cdylib(
            "clusterkit-example-virtual-machine",
            "clusterkit_virtual_machine",
        )],
    );
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    ocf_tester(
        &dir,
        &agents.join("virtual-machine"),
        "vm",
        &[
            format!("run_dir={}", run_dir.display()),
            "powerdown_grace=300ms".into(),
        ],
    );
    // The last action was a stop: no QEMU is left behind.
    assert!(!run_dir.join("vm.pid").exists(), "the VM was stopped");
}

#[test]
fn the_network_name_agent_passes_ocf_tester() {
    let dir = TempDir::new("ocf-dns");
    let bind = clusterkit_testkit::bind::Bind::start("ocf");
    let agents = install(
        &dir,
        &[cdylib(
            "clusterkit-example-network-name",
            "clusterkit_network_name",
        )],
    );
    let zone = clusterkit_testkit::bind::ZONE;
    ocf_tester(
        &dir,
        &agents.join("network-name"),
        "web-name",
        &[
            format!("name=web.{zone}"),
            "address=127.0.0.1".into(),
            format!("zone={zone}"),
            format!("servers={}", bind.addr),
            format!("tsig_key_name={}", clusterkit_testkit::bind::KEY_NAME),
            format!("tsig_secret={}", bind.secret),
        ],
    );
    // The last action was a stop: the record is gone.
    assert!(bind.dig(&format!("web.{zone}"), "A").is_empty());
}
