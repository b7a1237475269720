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

/// Checks `xml` as ocf-tester does: `xmllint --valid` against the DTD it
/// names, resource-agents' `ra-api-1.dtd` (plus, for types with live
/// properties, the OCF 1.1 declarations in the document's internal subset).
fn check_meta_data(xml: &str) {
    let xmllint = require_tool("xmllint", "libxml2-utils");
    let dtd_dir = Path::new("/usr/share/resource-agents");
    assert!(
        dtd_dir.join("ra-api-1.dtd").exists(),
        "ra-api-1.dtd: run `apt-get install resource-agents`"
    );
    let check = Command::new(xmllint)
        .args(["--noout", "--valid", "-"])
        .current_dir(dtd_dir)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(xml.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        check.status.success(),
        "{}\n{xml}",
        String::from_utf8_lossy(&check.stderr)
    );
}

fn meta_data(agent: &Path) -> String {
    let meta = Command::new(agent).arg("meta-data").output().unwrap();
    assert!(meta.status.success());
    String::from_utf8(meta.stdout).unwrap()
}

/// The variables Pacemaker passes every agent, which ocf-tester does not.
const PACEMAKER_ENV: [(&str, &str); 5] = [
    ("OCF_RESKEY_crm_feature_set", "3.16.2"),
    ("OCF_RESKEY_CRM_meta_timeout", "20000"),
    ("OCF_RESKEY_CRM_meta_interval", "0"),
    ("OCF_RESKEY_CRM_meta_name", "monitor"),
    ("OCF_EXIT_REASON_PREFIX", "ocf-exit-reason:"),
];

#[test]
fn meta_data_is_valid_and_exit_codes_follow_ocf() {
    let dir = TempDir::new("ocf-codes");
    let agents = install(
        &dir,
        &[
            cdylib("clusterkit-example-dummy", "clusterkit_dummy"),
            cdylib("clusterkit-example-disk", "clusterkit_disk"),
            cdylib(
                "clusterkit-example-virtual-machine",
                "clusterkit_virtual_machine",
            ),
        ],
    );
    let agent = agents.join("dummy");
    let rsctmp = dir.path().join("rsctmp");

    let xml = meta_data(&agent);
    for expected in [
        "<version>1.1</version>",
        "<shortdesc lang=\"en\">Online while &lt;state_dir&gt;/&lt;name&gt;.state exists</shortdesc>",
        "<parameter name=\"state_dir\" unique=\"0\" required=\"1\">",
        "<shortdesc lang=\"en\">Directory of the state file</shortdesc>",
        "<parameter name=\"online_delay\" unique=\"0\" required=\"0\" reloadable=\"1\">",
        "<content type=\"time\" default=\"0s\"/>",
        "Maximum 1m.",
        "<action name=\"start\" timeout=\"60s\"/>",
        "<action name=\"reload-agent\" timeout=\"20s\"/>",
    ] {
        assert!(xml.contains(expected), "`{expected}` in:\n{xml}");
    }
    assert!(
        !xml.contains("Characteristics("),
        "no Rust debug text: {xml}"
    );
    check_meta_data(&xml);
    // Per type: the disk's path is unique; a VM advises long start and stop timeouts.
    let disk = meta_data(&agents.join("disk"));
    assert!(
        disk.contains("<parameter name=\"path\" unique=\"1\" required=\"1\">"),
        "{disk}"
    );
    assert!(!disk.contains("reload-agent"), "no live property: {disk}");
    check_meta_data(&disk);
    let vm = meta_data(&agents.join("virtual-machine"));
    assert!(
        vm.contains("<action name=\"start\" timeout=\"300s\"/>"),
        "{vm}"
    );
    assert!(
        vm.contains("<action name=\"stop\" timeout=\"180s\"/>"),
        "{vm}"
    );
    check_meta_data(&vm);

    // validate-all: missing, unknown and malformed parameters are "not
    // configured" (6), each with an exit reason; Pacemaker's own variables
    // are not parameters.
    let (code, err) = agent_run(&agent, "validate-all", &[], &rsctmp);
    assert_eq!(code, 6, "{err}");
    assert_eq!(
        err,
        "ocf-exit-reason:invalid configuration: property `state_dir`: required but not given\n"
    );
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let state_dir = ("OCF_RESKEY_state_dir", work.to_str().unwrap());
    let mut env = PACEMAKER_ENV.to_vec();
    env.push(state_dir);
    let (code, err) = agent_run(&agent, "validate-all", &env, &rsctmp);
    assert_eq!(
        (code, err.as_str()),
        (0, ""),
        "Pacemaker's variables are ignored"
    );
    let mut misspelt = env.clone();
    misspelt.push(("OCF_RESKEY_online_dealy", "1s"));
    misspelt.push(("OCF_EXIT_REASON_PREFIX", "REASON>"));
    let (code, err) = agent_run(&agent, "validate-all", &misspelt, &rsctmp);
    assert_eq!(code, 6, "{err}");
    assert_eq!(
        err,
        "REASON>invalid configuration: property `online_dealy`: unknown property\n"
    );
    let (code, err) = agent_run(
        &agent,
        "validate-all",
        &[state_dir, ("OCF_RESKEY_online_delay", "later")],
        &rsctmp,
    );
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("property `online_delay`: \"later\" is not a duration"),
        "{err}"
    );
    // The type's own check: a state directory that does not exist is
    // refused by validate-all, before any start.
    let missing = [("OCF_RESKEY_state_dir", "/nonexistent/dir")];
    let (code, err) = agent_run(&agent, "validate-all", &missing, &rsctmp);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("/nonexistent/dir is not a directory"), "{err}");
    let (code, err) = agent_run(&agent, "start", &missing, &rsctmp);
    assert_eq!(code, 5, "{err}");
    assert!(err.starts_with("ocf-exit-reason:start: "), "{err}");
    // monitor of a never-started instance: not running (7), silently;
    // unknown actions: 3.
    let (code, err) = agent_run(&agent, "monitor", &[state_dir], &rsctmp);
    assert_eq!((code, err.as_str()), (7, ""));
    let (code, err) = agent_run(&agent, "promote", &[state_dir], &rsctmp);
    assert_eq!(code, 3);
    assert_eq!(err, "ocf-exit-reason:action `promote` is not implemented\n");

    // Quiet: a start, monitors at both depths, a reload and a stop write
    // nothing on stderr; with HA_LOGFILE, the log goes there.
    let logfile = dir.path().join("ha.log");
    let logfile_env = ("HA_LOGFILE", logfile.to_str().unwrap());
    let deep = ("OCF_CHECK_LEVEL", "10");
    for (action, extra) in [
        ("start", None),
        ("monitor", None),
        ("monitor", Some(deep)),
        ("reload-agent", Some(("OCF_RESKEY_online_delay", "2s"))),
        ("stop", None),
        ("start", None),
    ] {
        let mut env = env.clone();
        env.push(logfile_env);
        env.extend(extra);
        let (code, err) = agent_run(&agent, action, &env, &rsctmp);
        assert_eq!((code, err.as_str()), (0, ""), "{action} {extra:?}");
    }
    let log = std::fs::read_to_string(&logfile).unwrap();
    assert!(log.contains("clusterkit-dummy(probe)["), "{log}");
    assert!(log.contains("]: info: started\n"), "{log}");
    assert!(log.contains("]: info: stopped\n"), "{log}");
    assert!(!log.contains("debug"), "debug only with HA_debug: {log}");
    let (code, err) = agent_run(&agent, "monitor", &[state_dir, ("HA_debug", "1")], &rsctmp);
    assert_eq!(code, 0);
    assert!(err.contains("debug: monitor: ok"), "HA_debug: {err}");

    // A started instance whose workload vanished: monitor says failed (1),
    // at both depths, and says why.
    std::fs::remove_file(work.join("probe.state")).unwrap();
    let (code, err) = agent_run(&agent, "monitor", &[state_dir], &rsctmp);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "ocf-exit-reason:failed: {} does not exist\n",
            work.join("probe.state").display()
        )
    );
    assert_eq!(
        agent_run(&agent, "monitor", &[state_dir, deep], &rsctmp).0,
        1
    );
    assert_eq!(agent_run(&agent, "stop", &[state_dir], &rsctmp).0, 0);
    assert_eq!(agent_run(&agent, "monitor", &[state_dir], &rsctmp).0, 7);

    // A started instance whose target vanished (the state directory): not
    // running (7, with a reason), and its stop succeeds; then it is simply
    // stopped.
    assert_eq!(agent_run(&agent, "start", &[state_dir], &rsctmp).0, 0);
    std::fs::remove_dir_all(&work).unwrap();
    let (code, err) = agent_run(&agent, "monitor", &[state_dir], &rsctmp);
    assert_eq!(code, 7, "{err}");
    assert!(err.starts_with("ocf-exit-reason:not running: "), "{err}");
    let (code, err) = agent_run(&agent, "stop", &[state_dir], &rsctmp);
    assert_eq!((code, err.as_str()), (0, ""));
    let (code, err) = agent_run(&agent, "monitor", &[state_dir], &rsctmp);
    assert_eq!((code, err.as_str()), (7, ""));
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
    let rsctmp = dir.path().join("rsctmp");
    let path = ("OCF_RESKEY_path", image.to_str().unwrap());
    let agent = agents.join("disk");
    // An unformatted disk fails validate-all, saying what to run.
    let (code, err) = agent_run(&agent, "validate-all", &[path], &rsctmp);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("run the FORMAT control code"), "{err}");
    // FORMAT, a type-level control code, from the command line, before
    // any start.
    let out = Command::new(env!("CARGO_BIN_EXE_clusterkit"))
        .arg("type-control")
        .arg(&library)
        .args(["disk", "type_specific(1)"])
        .arg(format!("path={}", image.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, err) = agent_run(&agent, "validate-all", &[path], &rsctmp);
    assert_eq!((code, err.as_str()), (0, ""));
    // The disk's own codes on a resource: its reservation, read by a
    // one-shot open that adopts nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_clusterkit"))
        .arg("type-control")
        .arg(&library)
        .args(["disk", "type_specific(2)", "--resource", "data", "-p"])
        .arg(format!("path={}", image.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("formatted=true"), "{text}");
    ocf_tester(
        &dir,
        &agents.join("disk"),
        "data",
        &[format!("path={}", image.display())],
    );

    // A started disk whose image vanished: not running (7, saying why),
    // and its stop succeeds instead of leaving the resource blocked.
    assert_eq!(
        agent_run(&agent, "start", &[path], &rsctmp),
        (0, String::new())
    );
    std::fs::remove_file(&image).unwrap();
    let (code, err) = agent_run(&agent, "monitor", &[path], &rsctmp);
    assert_eq!(code, 7, "{err}");
    assert!(
        err.starts_with("ocf-exit-reason:not running: ") && err.contains("does not exist"),
        "{err}"
    );
    assert_eq!(
        agent_run(&agent, "stop", &[path], &rsctmp),
        (0, String::new())
    );
    assert_eq!(
        agent_run(&agent, "monitor", &[path], &rsctmp),
        (7, String::new())
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
            // One argument holding commas, which must reach QEMU whole.
            r#"extra_args=["-smp", "1,sockets=1,cores=1"]"#.into(),
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
