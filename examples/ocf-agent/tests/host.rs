//! Real OCF agents from Debian's `resource-agents`, run by the `ocf` type in
//! real monitor processes of a real host: `Dummy`, `anything` managing a
//! `sleep` process, `IPaddr2` in a network namespace of the test's own, and
//! an agent whose monitor hangs, which must end in the host's deadline
//! handling with no agent process left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clusterkit::{ControlCode, Health, Logger, Properties, ResourceState};
use clusterkit_host::testing::{PATIENCE, fast_timing_with_deadlines, is, wait_event};
use clusterkit_host::{EventKind, HostBuilder, MonitorProgram, ResourceConfig, RestartAction};
use clusterkit_loader::Library;
use clusterkit_testkit::{TempDir, cdylib, monitor_binary, require_tool};

fn library() -> PathBuf {
    cdylib("clusterkit-example-ocf-agent", "clusterkit_ocf")
}

fn require_agents() {
    let dummy = Path::new("/usr/lib/ocf/resource.d/heartbeat/Dummy");
    assert!(
        dummy.exists(),
        "{} is missing: run `apt-get install resource-agents` (scripts/test does)",
        dummy.display()
    );
}

fn builder(state_dir: &Path, deadline: Duration) -> HostBuilder {
    HostBuilder::new(state_dir, MonitorProgram::Path(monitor_binary()))
        .defaults(fast_timing_with_deadlines(deadline))
}

fn ocf(name: &str, agent: &str, dir: &TempDir, parameters: &[String]) -> ResourceConfig {
    ResourceConfig::new(name, library(), "ocf")
        .property("agent", agent)
        .property("parameters", parameters.to_vec())
        .property("rsc_tmp", dir.path().join("rsc_tmp").to_str().unwrap())
        .timing(|t| t.restart_action = Some(RestartAction::None))
}

/// Polls `what` until it holds, for at most [`PATIENCE`].
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn process_exists(pid: i32) -> bool {
    // Zombies count as gone: their parent (init, here) reaps them.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn dummy_runs_through_the_host_and_its_failure_reason_is_the_agents() {
    require_agents();
    let dir = TempDir::new("ocf-dummy");
    let state = dir.path().join("dummy.state");
    let host = builder(&dir.path().join("host"), Duration::from_secs(5))
        .resource(ocf(
            "dummy",
            "heartbeat/Dummy",
            &dir,
            &[format!("state={}", state.display())],
        ))
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("dummy").unwrap();
    host.wait_for_state("dummy", ResourceState::Online, PATIENCE)
        .unwrap();
    assert!(state.exists(), "Dummy start creates its state file");
    let checks = host.resource_status("dummy").unwrap().health_checks;
    host.wait_for(PATIENCE, "health checks to pass", |s| {
        s[0].health_checks >= checks + 3 && s[0].last_health == Some(Health::Healthy)
    })
    .unwrap();
    host.offline("dummy").unwrap();
    host.wait_for_state("dummy", ResourceState::Offline, PATIENCE)
        .unwrap();
    assert!(!state.exists(), "Dummy stop removes its state file");
    host.online("dummy").unwrap();
    host.wait_for_state("dummy", ResourceState::Online, PATIENCE)
        .unwrap();

    // The workload vanishes behind the agent's back: monitor answers 7.
    std::fs::remove_file(&state).unwrap();
    let (failed, _) = wait_event(
        &events,
        "the health check failing",
        is(EventKind::HealthFailed, "dummy"),
    );
    let reason = failed.str_field("reason").unwrap_or_default().to_owned();
    // Dummy's `ocf-exit-reason:` line, then the code's meaning.
    assert!(
        reason.contains("No process state file found (not running, exit 7)"),
        "{failed}"
    );
    host.wait_for_state("dummy", ResourceState::Failed, PATIENCE)
        .unwrap();
    host.stop_all(PATIENCE).unwrap();
}

#[test]
fn parameters_are_checked_against_the_agents_meta_data() {
    require_agents();
    let library = Library::load(library(), Logger::discard()).unwrap();
    let ocf = library.resource_type("ocf").unwrap();
    let validate = |agent: &str, parameters: &[&str]| {
        let mut props = Properties::new();
        props.insert("agent", agent);
        props.insert(
            "parameters",
            parameters.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        );
        ocf.control(ControlCode::VALIDATE_PROPERTIES, &props.encode())
            .map(drop)
            .map_err(|e| e.to_string())
    };
    validate("heartbeat/IPaddr2", &["ip=192.0.2.7", "cidr_netmask=24"]).unwrap();
    let err = validate("ocf:heartbeat:IPaddr2", &["arp_count=many", "colour=red"]).unwrap_err();
    for needle in [
        "parameters",
        "arp_count = \"many\" is not an integer",
        "has no parameter \"colour\"",
        "requires parameter \"ip\"",
    ] {
        assert!(err.contains(needle), "{needle:?} missing in: {err}");
    }
    let err = validate("heartbeat/NoSuchAgent", &[]).unwrap_err();
    assert!(
        err.contains("/usr/lib/ocf/resource.d/heartbeat/NoSuchAgent"),
        "{err}"
    );

    // An agent whose meta-data is not XML.
    let dir = TempDir::new("ocf-bad-meta-data");
    let agent = write_agent(&dir, "Broken", "meta-data) echo 'usage: Broken'; exit 0 ;;");
    let err = validate(agent.to_str().unwrap(), &[]).unwrap_err();
    assert!(err.contains("meta-data is not XML"), "{err}");
}

#[test]
fn anything_manages_a_real_process() {
    require_agents();
    let dir = TempDir::new("ocf-anything");
    let pidfile = dir.path().join("sleep.pid");
    let host = builder(&dir.path().join("host"), Duration::from_secs(5))
        .resource(ocf(
            "sleeper",
            "heartbeat/anything",
            &dir,
            &[
                "binfile=/bin/sleep".into(),
                "cmdline_options=3600".into(),
                format!("pidfile={}", pidfile.display()),
            ],
        ))
        .start()
        .unwrap();
    host.online("sleeper").unwrap();
    host.wait_for_state("sleeper", ResourceState::Online, PATIENCE)
        .unwrap();
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_exists(pid), "sleep runs once online");
    let checks = host.resource_status("sleeper").unwrap().health_checks;
    host.wait_for(PATIENCE, "health checks to pass", |s| {
        s[0].health_checks >= checks + 2 && s[0].last_health == Some(Health::Healthy)
    })
    .unwrap();
    assert!(
        process_exists(pid),
        "the daemon outlives the start action and its guard"
    );
    host.offline("sleeper").unwrap();
    host.wait_for_state("sleeper", ResourceState::Offline, PATIENCE)
        .unwrap();
    wait_until("sleep to end after offline", || !process_exists(pid));
    host.stop_all(PATIENCE).unwrap();
}

/// Writes an executable agent `resource.d/test/<name>` under `dir` whose
/// `case "$1"` has `arms` before the defaults (a minimal meta-data, start
/// and stop succeed, monitor says not running).
fn write_agent(dir: &TempDir, name: &str, arms: &str) -> PathBuf {
    let agents = dir.path().join("ocf/resource.d/test");
    std::fs::create_dir_all(&agents).unwrap();
    let path = agents.join(name);
    let script = format!(
        r#"#!/bin/sh
case "$1" in
{arms}
meta-data) cat <<'XML'
<?xml version="1.0"?>
<resource-agent name="{name}" version="1.0">
<parameters><parameter name="dir" required="1"><content type="string"/></parameter></parameters>
<actions><action name="start" timeout="20s"/><action name="stop" timeout="20s"/>
<action name="monitor" timeout="30s" interval="10s"/></actions>
</resource-agent>
XML
exit 0 ;;
start) touch "$OCF_RESKEY_dir/running"; exit 0 ;;
stop) rm -f "$OCF_RESKEY_dir/running"; exit 0 ;;
monitor) [ -e "$OCF_RESKEY_dir/running" ] && exit 0; exit 7 ;;
*) exit 3 ;;
esac
"#
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_monitor_that_hangs_ends_in_the_hosts_deadline_and_leaves_no_process() {
    let dir = TempDir::new("ocf-hang");
    // While `hang` exists, monitor starts a child that sleeps forever (in
    // the agent's process group) and waits for it.
    write_agent(
        &dir,
        "Hang",
        r#"monitor) if [ -e "$OCF_RESKEY_dir/hang" ]; then
    sleep 100000 & echo $! > "$OCF_RESKEY_dir/sleep.pid"; echo $$ > "$OCF_RESKEY_dir/agent.pid"; wait; fi
  [ -e "$OCF_RESKEY_dir/running" ] && exit 0; exit 7 ;;"#,
    );
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    // The host's deadline (1 s) comes before the type's own (30 s, from the
    // meta-data): the host, not the type, must end the hang.
    let host = builder(&dir.path().join("host"), Duration::from_secs(1))
        .resource(
            ocf(
                "hang",
                "test/Hang",
                &dir,
                &[format!("dir={}", work.display())],
            )
            .property("ocf_root", dir.path().join("ocf").to_str().unwrap())
            .timing(|t| t.restart_action = Some(RestartAction::Restart)),
        )
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("hang").unwrap();
    host.wait_for_state("hang", ResourceState::Online, PATIENCE)
        .unwrap();
    let monitor_pid = host.resource_status("hang").unwrap().monitor_pid;

    std::fs::write(work.join("hang"), "").unwrap();
    let (timed_out, _) = wait_event(
        &events,
        "the health check timing out",
        is(EventKind::CallTimedOut, "hang"),
    );
    assert!(
        matches!(
            timed_out.str_field("call"),
            Some("looks_alive" | "is_alive")
        ),
        "{timed_out}"
    );
    let sleep_pid: i32 = std::fs::read_to_string(work.join("sleep.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let agent_pid: i32 = std::fs::read_to_string(work.join("agent.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::fs::remove_file(work.join("hang")).unwrap();
    wait_event(&events, "the monitor dying", |e| {
        e.kind == EventKind::MonitorDied
    });
    // The guard saw its monitor die and killed the agent's whole group.
    wait_until("the hung agent and its child to be killed", || {
        !process_exists(agent_pid) && !process_exists(sleep_pid)
    });
    // A new monitor, and the resource back online: re-attached (the state
    // file is still there) or restarted.
    host.wait_for(PATIENCE, "the resource online in a new monitor", |s| {
        s[0].state == ResourceState::Online && s[0].monitor_pid != monitor_pid
    })
    .unwrap();
    host.stop_all(PATIENCE).unwrap();
}

#[test]
fn the_types_own_deadline_kills_the_agents_group_and_fails_the_check() {
    let dir = TempDir::new("ocf-own-deadline");
    write_agent(
        &dir,
        "Slow",
        r#"monitor) if [ -e "$OCF_RESKEY_dir/hang" ]; then
    sleep 100000 & echo $! > "$OCF_RESKEY_dir/sleep.pid"; wait; fi
  [ -e "$OCF_RESKEY_dir/running" ] && exit 0; exit 7 ;;"#,
    );
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let host = builder(&dir.path().join("host"), Duration::from_secs(10))
        .resource(
            ocf(
                "slow",
                "test/Slow",
                &dir,
                &[format!("dir={}", work.display())],
            )
            .property("ocf_root", dir.path().join("ocf").to_str().unwrap())
            .property("monitor_timeout", Duration::from_millis(300)),
        )
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("slow").unwrap();
    host.wait_for_state("slow", ResourceState::Online, PATIENCE)
        .unwrap();
    std::fs::write(work.join("hang"), "").unwrap();
    let (failed, seen) = wait_event(
        &events,
        "the health check failing",
        is(EventKind::HealthFailed, "slow"),
    );
    let reason = failed.str_field("reason").unwrap_or_default();
    assert!(
        reason.contains("test/Slow monitor did not finish within"),
        "{failed}"
    );
    assert!(
        !seen.iter().any(|e| e.kind == EventKind::CallTimedOut),
        "the type's deadline came first"
    );
    let sleep_pid: i32 = std::fs::read_to_string(work.join("sleep.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the agent's child to be killed", || {
        !process_exists(sleep_pid)
    });
    host.stop_all(PATIENCE).unwrap();
}

#[test]
fn ipaddr2_brings_an_address_up_in_a_network_namespace_of_the_tests_own() {
    require_agents();
    let ip = require_tool("ip", "iproute2");
    // This thread, and the host's threads and monitors it starts, move to a
    // new network namespace: nothing on the machine changes.
    // SAFETY: unshare(2) changes the calling thread's namespace only.
    let unshared = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        unshared,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    let run = |args: &[&str]| {
        let out = Command::new(&ip).args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["link", "add", "ck0", "type", "veth", "peer", "name", "ck1"]);
    run(&["link", "set", "ck1", "up"]);
    run(&["link", "set", "ck0", "up"]);
    let dir = TempDir::new("ocf-ipaddr2");
    let host = builder(&dir.path().join("host"), Duration::from_secs(5))
        .resource(ocf(
            "vip",
            "heartbeat/IPaddr2",
            &dir,
            &[
                "ip=192.0.2.10".into(),
                "cidr_netmask=24".into(),
                "nic=ck0".into(),
            ],
        ))
        .start()
        .unwrap();
    host.online("vip").unwrap();
    host.wait_for_state("vip", ResourceState::Online, PATIENCE)
        .unwrap();
    assert!(run(&["-o", "addr", "show", "dev", "ck0"]).contains("192.0.2.10/24"));
    let checks = host.resource_status("vip").unwrap().health_checks;
    host.wait_for(PATIENCE, "health checks to pass", |s| {
        s[0].health_checks >= checks + 2 && s[0].last_health == Some(Health::Healthy)
    })
    .unwrap();
    host.offline("vip").unwrap();
    host.wait_for_state("vip", ResourceState::Offline, PATIENCE)
        .unwrap();
    assert!(!run(&["-o", "addr", "show", "dev", "ck0"]).contains("192.0.2.10"));
    host.stop_all(PATIENCE).unwrap();
}
