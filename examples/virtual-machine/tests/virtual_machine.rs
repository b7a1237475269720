//! The `virtual-machine` type driven through the host, in real monitor
//! processes, against real QEMU (TCG, no boot disk: SeaBIOS runs forever,
//! which is a fine running VM). Every test kills the QEMUs it started when
//! it ends, pass or fail.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clusterkit::{Health, ResourceState};
use clusterkit_host::testing::{fast_timing_with_deadlines, is, wait_event_within};
use clusterkit_host::{
    Event, EventKind, HostBuilder, HostError, MonitorProgram, ProcessControl, ResourceConfig,
    RestartAction, SystemProcesses,
};
use clusterkit_testkit::{TempDir, cdylib, monitor_binary, require_tool};
use clusterkit_virtual_machine::{TYPE_NAME, pid_file, qmp_socket};
use serde_json::Value;

/// The guard on every wait: far above what any step takes, so a failure
/// shows as a clear timeout rather than a hang.
const PATIENCE: Duration = Duration::from_secs(30);

/// One test's directories, and the cleanup of everything it started.
struct Fixture {
    /// Kills leftovers on drop: after the host, which a test declares after
    /// its fixture, and before the directory is removed.
    cleanup: Cleanup,
    dir: TempDir,
    run_dir: PathBuf,
    state_dir: PathBuf,
}

impl Fixture {
    fn new(label: &str) -> Fixture {
        require_tool("qemu-system-x86_64", "qemu-system-x86");
        let dir = TempDir::new(label);
        let run_dir = dir.path().join("run");
        std::fs::create_dir(&run_dir).unwrap();
        Fixture {
            cleanup: Cleanup {
                marker: run_dir.as_os_str().as_encoded_bytes().to_vec(),
                children: Vec::new(),
            },
            state_dir: dir.path().join("host"),
            run_dir,
            dir,
        }
    }

    /// A host with the host tests' short timings, but deadlines of a few
    /// seconds: QEMU under TCG on a busy machine is slow to start.
    fn builder(&self) -> HostBuilder {
        HostBuilder::new(&self.state_dir, MonitorProgram::Path(monitor_binary()))
            .defaults(fast_timing_with_deadlines(Duration::from_secs(5)))
    }

    /// A `virtual-machine` resource in this fixture's run_dir, powering off
    /// quickly (SeaBIOS ignores the ACPI power button: offline goes on to
    /// `quit` after the grace).
    fn vm(&self, name: &str) -> ResourceConfig {
        vm_config(name)
            .property("run_dir", self.run_dir.to_str().unwrap())
            .property("powerdown_grace", Duration::from_millis(300))
    }

    /// The pid in the resource's pidfile.
    fn qemu_pid(&self, name: &str) -> i32 {
        let path = pid_file(&self.run_dir, name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        text.trim().parse().unwrap()
    }

    /// Whether `pid` is running and is the QEMU of resource `name`.
    fn is_qemu_of(&self, pid: i32, name: &str) -> bool {
        let socket = qmp_socket(&self.run_dir, name);
        let needle = format!("unix:{},", socket.display());
        running(pid) && cmdline(pid).iter().any(|a| a.starts_with(&needle))
    }

    /// Starts a process that has nothing to do with QEMU; killed at the end.
    fn unrelated_process(&mut self) -> u32 {
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting `sleep 1000`");
        let pid = child.id();
        self.cleanup.children.push(child);
        pid
    }

    /// Every event of `events.jsonl` so far.
    fn logged_events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state_dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn vm_config(name: &str) -> ResourceConfig {
    ResourceConfig::new(
        name,
        cdylib(
            "clusterkit-example-virtual-machine",
            "clusterkit_virtual_machine",
        ),
        TYPE_NAME,
    )
}

/// Kills, when dropped, every process whose command line mentions the
/// test's run_dir (its QEMUs, wherever their pidfiles went) and the
/// children it was given.
struct Cleanup {
    marker: Vec<u8>,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left: Vec<i32> = processes_mentioning(&self.marker);
            if left.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in left {
                let _ = SystemProcesses.kill(pid as u32);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The pids whose command line contains `marker` (zombies have none).
fn processes_mentioning(marker: &[u8]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != std::process::id() as i32)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker))
        })
        .collect()
}

/// The arguments of `pid`; empty when it is gone or a zombie.
fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// What file descriptor `fd` of `pid` refers to (`/dev/null`, `socket:[…]`).
fn fd_target(pid: i32, fd: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap_or_else(|e| panic!("fd {fd} of pid {pid}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Every open file descriptor of `pid`, with what it refers to.
fn open_fds(pid: i32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        // One QEMU closed since the listing is no longer open: skip it.
        .filter_map(|fd: i32| {
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds
}

/// Whether `pid` exists and is not a zombie (QEMU daemonizes, so its parent
/// is init, which may be slow to reap it).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(_) => false,
    }
}

/// Waits until `condition` holds, looking every 10 ms, for at most PATIENCE.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn log_says(e: &Event, text: &str) -> bool {
    e.kind == EventKind::ResourceLog && e.str_field("message").is_some_and(|m| m.contains(text))
}

#[test]
fn full_lifecycle_against_real_qemu() {
    let t = Fixture::new("vm-lifecycle");
    let canary = t.dir.path().join("shell-was-here");
    let name_arg = format!("guest one; touch {}", canary.display());
    let host = t
        .builder()
        .resource(
            t.vm("vm")
                .property("extra_args", vec!["-name".to_owned(), name_arg.clone()])
                // Every health check is an is_alive: QMP query-status.
                .timing(|o| {
                    o.looks_alive_interval = Some(Duration::from_secs(600));
                    o.is_alive_interval = Some(Duration::from_millis(200));
                }),
        )
        .start()
        .unwrap();
    let events = host.subscribe();

    host.online("vm").unwrap();
    let (pending, seen) = wait_event_within(
        &events,
        PATIENCE,
        "online pending",
        is(EventKind::ResourcePending, "vm"),
    );
    assert_eq!(pending.str_field("state"), Some("online_pending"));
    assert!(
        seen.iter().any(|e| log_says(e, "starting QEMU: ")),
        "the command line is logged"
    );
    wait_event_within(
        &events,
        PATIENCE,
        "online",
        is(EventKind::ResourceOnline, "vm"),
    );
    let pid = t.qemu_pid("vm");
    assert!(t.is_qemu_of(pid, "vm"), "pid {pid}: {:?}", cmdline(pid));

    // The exact command line; extra_args are separate argv entries that no
    // shell ever interpreted.
    let argv = cmdline(pid);
    let run_dir = t.run_dir.display();
    let expected = [
        "-daemonize".to_owned(),
        "-pidfile".to_owned(),
        format!("{run_dir}/vm.pid"),
        "-qmp".to_owned(),
        format!("unix:{run_dir}/vm.qmp,server=on,wait=off"),
        "-display".to_owned(),
        "none".to_owned(),
        "-nodefaults".to_owned(),
        "-no-user-config".to_owned(),
        "-machine".to_owned(),
        "pc".to_owned(),
        "-accel".to_owned(),
        "tcg".to_owned(),
        "-m".to_owned(),
        "64".to_owned(),
        "-name".to_owned(),
        name_arg,
    ];
    assert_eq!(argv[1..], expected, "{argv:?}");
    assert!(argv[0].ends_with("/qemu-system-x86_64"), "{argv:?}");
    assert!(!canary.exists(), "extra_args went through a shell");

    // QEMU holds neither the monitor's host socket nor the test's output.
    let monitor = host.resource_status("vm").unwrap().monitor_pid.unwrap();
    let monitor_socket = fd_target(monitor as i32, 3);
    assert!(monitor_socket.starts_with("socket:"), "{monitor_socket}");
    let qemu_fds = open_fds(pid);
    assert!(
        !qemu_fds.iter().any(|(_, target)| *target == monitor_socket),
        "QEMU inherited the monitor's socket: {qemu_fds:?}"
    );
    for fd in 0..3 {
        assert_eq!(fd_target(pid, fd), "/dev/null", "fd {fd}: {qemu_fds:?}");
    }

    // is_alive (QMP query-status) passes, again and again.
    let before = host.resource_status("vm").unwrap().health_checks;
    host.wait_for(PATIENCE, "three more health checks", |s| {
        s[0].health_checks >= before + 3
    })
    .unwrap();
    let status = host.resource_status("vm").unwrap();
    assert_eq!(status.state, ResourceState::Online);
    assert_eq!(status.last_health, Some(Health::Healthy));
    let failures: Vec<String> = events
        .try_iter()
        .filter(|e| matches!(e.kind, EventKind::HealthFailed | EventKind::ResourceFailed))
        .map(|e| e.to_string())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");

    // Offline: pending, system_powerdown (ignored by SeaBIOS), quit.
    host.offline("vm").unwrap();
    let (pending, _) = wait_event_within(
        &events,
        PATIENCE,
        "offline pending",
        is(EventKind::ResourcePending, "vm"),
    );
    assert_eq!(pending.str_field("state"), Some("offline_pending"));
    let (_, seen) = wait_event_within(
        &events,
        PATIENCE,
        "offline",
        is(EventKind::ResourceOffline, "vm"),
    );
    assert!(
        seen.iter().any(|e| log_says(e, "system_powerdown")),
        "powerdown first"
    );
    assert!(
        seen.iter().any(|e| log_says(e, "sending quit")),
        "then quit"
    );
    assert!(!running(pid), "QEMU pid {pid} still runs after offline");
    assert!(
        !pid_file(&t.run_dir, "vm").exists(),
        "the pidfile is removed"
    );
    assert!(
        !qmp_socket(&t.run_dir, "vm").exists(),
        "the socket is removed"
    );
}

#[test]
fn killed_monitor_reattaches_to_the_same_qemu() {
    let t = Fixture::new("vm-reattach");
    let host = t.builder().resource(t.vm("vm")).start().unwrap();
    let events = host.subscribe();
    host.online("vm").unwrap();
    host.wait_for_state("vm", ResourceState::Online, PATIENCE)
        .unwrap();
    let pid = t.qemu_pid("vm");
    assert!(t.is_qemu_of(pid, "vm"));
    let monitor = host.resource_status("vm").unwrap().monitor_pid.unwrap();

    SystemProcesses.kill(monitor).unwrap();
    let (_, seen) = wait_event_within(
        &events,
        PATIENCE,
        "re-attach",
        is(EventKind::ResourceReattached, "vm"),
    );
    assert!(
        seen.iter().any(|e| e.kind == EventKind::MonitorDied),
        "the host saw the monitor die"
    );
    assert!(
        seen.iter()
            .any(|e| log_says(e, &format!("re-attached to QEMU pid {pid}"))),
        "{:#?}",
        seen.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    );

    // Online in a new monitor, healthy by pidfd and by QMP, same QEMU.
    let after = host.resource_status("vm").unwrap().health_checks;
    host.wait_for(PATIENCE, "healthy checks in the new monitor", |s| {
        s[0].state == ResourceState::Online
            && s[0].monitor_pid.is_some_and(|m| m != monitor)
            && s[0].health_checks >= after + 8
            && s[0].last_health == Some(Health::Healthy)
    })
    .unwrap();
    assert_eq!(t.qemu_pid("vm"), pid, "the pidfile names the same QEMU");
    assert!(t.is_qemu_of(pid, "vm"), "the same QEMU still runs");
    let trouble: Vec<String> = events
        .try_iter()
        .chain(seen)
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::ResourceRestarted | EventKind::ResourceFailed | EventKind::HealthFailed
            )
        })
        .map(|e| e.to_string())
        .collect();
    assert!(trouble.is_empty(), "{trouble:#?}");
    assert_eq!(host.resource_status("vm").unwrap().restarts, 0);

    // The adopted QEMU is stopped by offline like one started here.
    host.offline("vm").unwrap();
    host.wait_for_state("vm", ResourceState::Offline, PATIENCE)
        .unwrap();
    assert!(!running(pid), "QEMU pid {pid} still runs after offline");
}

/// Leaves a VM desired online in the state directory with its QEMU gone
/// and a bogus pidfile naming `bogus(dead QEMU pid)`; then a new host on
/// the same state must not adopt the bogus pid but start a fresh QEMU.
fn stale_pidfile_is_not_adopted(label: &str, bogus: impl FnOnce(&mut Fixture, i32) -> i32) {
    let mut t = Fixture::new(label);
    let first = t.builder().resource(t.vm("vm")).start().unwrap();
    first.online("vm").unwrap();
    first
        .wait_for_state("vm", ResourceState::Online, PATIENCE)
        .unwrap();
    let old = t.qemu_pid("vm");
    first.shutdown();
    assert!(t.is_qemu_of(old, "vm"), "QEMU outlives the host");

    // The VM dies while no host runs; the pidfile then names `bogus`.
    SystemProcesses.kill(old as u32).unwrap();
    wait_until("the old QEMU to die", || !running(old));
    let bogus = bogus(&mut t, old);
    let bogus_was_running = running(bogus);
    std::fs::write(pid_file(&t.run_dir, "vm"), format!("{bogus}\n")).unwrap();

    let second = t.builder().resource(t.vm("vm")).start().unwrap();
    second
        .wait_for(PATIENCE, "online again, through a restart", |s| {
            s[0].state == ResourceState::Online
        })
        .unwrap();
    // The host checks before it re-attaches: the stale pidfile fails that
    // check, so the VM is restarted instead of adopted.
    let events = std::fs::read_to_string(t.state_dir.join("events.jsonl")).unwrap();
    assert!(events.contains("not re-attached"), "{events}");
    assert!(
        !events.contains("\"kind\":\"resource_reattached\""),
        "{events}"
    );
    let new = t.qemu_pid("vm");
    assert_ne!(new, bogus, "the bogus pid was adopted");
    assert_ne!(new, old);
    assert!(
        t.is_qemu_of(new, "vm"),
        "a fresh QEMU runs: {:?}",
        cmdline(new)
    );
    assert_eq!(running(bogus), bogus_was_running, "pid {bogus} was touched");
    // The stale pidfile is logged, and is why the health checks of the
    // resource, which came up without a VM, failed.
    let says = |e: &Value, kind: &str, field: &str, text: &str| {
        e["kind"] == kind && e[field].as_str().is_some_and(|m| m.contains(text))
    };
    let stale = format!("stale pidfile {}", pid_file(&t.run_dir, "vm").display());
    wait_until("the stale pidfile to be logged", || {
        let events = t.logged_events();
        events.iter().any(|e| {
            says(e, "resource_log", "message", &stale)
                && says(
                    e,
                    "resource_log",
                    "message",
                    &format!("names pid {bogus}, but"),
                )
        }) && events.iter().any(|e| {
            says(
                e,
                "health_failed",
                "reason",
                "no QEMU process: re-attach found a",
            ) && says(e, "health_failed", "reason", &stale)
        })
    });
    second
        .wait_for(PATIENCE, "a healthy check of the fresh QEMU", |s| {
            s[0].last_health == Some(Health::Healthy)
        })
        .unwrap();
}

#[test]
fn stale_pidfile_naming_a_dead_pid_is_not_adopted() {
    // The dead QEMU's own pid: gone (or a zombie until init reaps it).
    stale_pidfile_is_not_adopted("vm-stale-dead", |_, old| old);
}

#[test]
fn stale_pidfile_naming_another_program_is_not_adopted() {
    stale_pidfile_is_not_adopted("vm-stale-other", |t, _| {
        let pid = t.unrelated_process();
        wait_until("`sleep` to run", || {
            cmdline(pid as i32).first().is_some_and(|a| a == "sleep")
        });
        pid as i32
    });
}

#[test]
fn bad_properties_name_the_property() {
    let t = Fixture::new("vm-bad-props");

    // run_dir is required: the host refuses the configuration.
    let err = t
        .builder()
        .resource(vm_config("no-run-dir"))
        .start()
        .unwrap_err();
    match &err {
        HostError::Properties { resource, errors } => {
            assert_eq!(resource, "no-run-dir");
            assert!(errors.for_property("run_dir").is_some(), "{err}");
        }
        other => panic!("expected a property error, got {other}"),
    }

    let no_restart = |r: ResourceConfig| r.timing(|o| o.restart_action = Some(RestartAction::None));
    let missing_dir = t.dir.path().join("not-there");
    let host = t
        .builder()
        .resource(no_restart(
            vm_config("absent-run-dir").property("run_dir", missing_dir.to_str().unwrap()),
        ))
        .resource(no_restart(
            t.vm("absent-path")
                .property("qemu_binary", "/nonexistent/qemu-system-x86_64"),
        ))
        .resource(no_restart(
            t.vm("absent-name")
                .property("qemu_binary", "qemu-system-nonexistent"),
        ))
        .resource(no_restart(
            t.vm("bad-machine").property("machine", "no-such-machine"),
        ))
        .resource(no_restart(t.vm("reserved-arg").property(
            "extra_args",
            vec!["-pidfile".to_owned(), "/tmp/x".to_owned()],
        )))
        .start()
        .unwrap();
    for name in [
        "absent-run-dir",
        "absent-path",
        "absent-name",
        "bad-machine",
        "reserved-arg",
    ] {
        host.online(name).unwrap();
    }
    host.wait_for(PATIENCE, "every resource failed", |s| {
        s.iter().all(|r| r.state == ResourceState::Failed)
    })
    .unwrap();
    // The reasons, from the event log (written just after the status).
    let reason = |name: &str| -> String {
        let mut reason = None;
        wait_until(
            &format!("resource_failed for {name} in events.jsonl"),
            || {
                reason = t
                    .logged_events()
                    .iter()
                    .find(|e| e["kind"] == "resource_failed" && e["resource"] == name)
                    .and_then(|e| e["reason"].as_str().map(str::to_owned));
                reason.is_some()
            },
        );
        reason.unwrap()
    };
    let absent_run_dir = reason("absent-run-dir");
    assert!(
        absent_run_dir.contains("property `run_dir`")
            && absent_run_dir.contains(missing_dir.to_str().unwrap()),
        "{absent_run_dir}"
    );
    let absent_path = reason("absent-path");
    assert!(
        absent_path.contains("property `qemu_binary`")
            && absent_path.contains("/nonexistent/qemu-system-x86_64: does not exist"),
        "{absent_path}"
    );
    let absent_name = reason("absent-name");
    assert!(
        absent_name.contains("property `qemu_binary`")
            && absent_name.contains("\"qemu-system-nonexistent\" is not an executable on PATH"),
        "{absent_name}"
    );
    // QEMU itself refuses: its own message is the reason.
    let bad_machine = reason("bad-machine");
    assert!(
        bad_machine.contains("QEMU failed to start (exit status: 1)")
            && bad_machine.contains("unsupported machine type"),
        "{bad_machine}"
    );
    let reserved = reason("reserved-arg");
    assert!(reserved.contains("property `extra_args`"), "{reserved}");
    assert!(
        processes_mentioning(t.run_dir.as_os_str().as_encoded_bytes()).is_empty(),
        "no QEMU was started"
    );
}

#[test]
fn terminate_kills_the_vm() {
    let t = Fixture::new("vm-terminate");
    let host = t
        .builder()
        .resource(
            t.vm("vm")
                .timing(|o| o.restart_action = Some(RestartAction::None)),
        )
        .start()
        .unwrap();
    let events = host.subscribe();
    host.online("vm").unwrap();
    host.wait_for_state("vm", ResourceState::Online, PATIENCE)
        .unwrap();
    let pid = t.qemu_pid("vm");
    assert!(t.is_qemu_of(pid, "vm"));

    // `fail` terminates the resource; with restart_action none it stays down.
    host.fail("vm").unwrap();
    let (_, seen) = wait_event_within(&events, PATIENCE, "the kill", |e| {
        log_says(e, &format!("killed QEMU pid {pid}"))
    });
    assert!(
        !seen.iter().any(|e| log_says(e, "system_powerdown")),
        "terminate is not graceful"
    );
    host.wait_for_state("vm", ResourceState::Failed, PATIENCE)
        .unwrap();
    assert!(!running(pid), "QEMU pid {pid} survived terminate");
    assert!(
        !pid_file(&t.run_dir, "vm").exists(),
        "the pidfile is removed"
    );
}
