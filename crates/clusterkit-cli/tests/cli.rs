//! The real `clusterkit` binary: validate, run, status, online/offline/fail,
//! events, the control socket's permissions, systemd notifications.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clusterkit_testkit::{TempDir, cdylib};
use serde_json::Value;
use support::cli::*;

fn write_config(dir: &TempDir, extra: &str) -> PathBuf {
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let text = format!(
        r#"{head}[[resource]]
name = "web"
library = "dummy"
type = "dummy"
[resource.properties]
state_dir = "{work}"
[[resource]]
name = "app"
library = "dummy"
type = "dummy"
depends_on = ["web"]
[resource.properties]
state_dir = "{work}"
{extra}"#,
        head = config_head(dir.path(), &[]),
        work = work.display(),
    );
    write_config_file(dir.path(), &text)
}

#[test]
fn validate_accepts_a_good_config_and_names_every_problem() {
    let dir = TempDir::new("cli-validate");
    let good = write_config(&dir, "");
    let (ok, out, err) = output(clusterkit().arg("validate").arg(&good));
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!("{}: ok (2 resources, 1 library)", good.display())
    );

    // Each extra text is appended after the 21 lines of the good config;
    // (line within the extra text, column, message).
    let cases: &[(&str, usize, usize, &str)] = &[
        (
            "colour = \"red\"\n",
            1,
            10,
            "resource `app`: property `colour`: unknown property",
        ),
        (
            "[[resource]]\nname = \"x\"\nlibrary = \"nope\"\ntype = \"dummy\"\n",
            3,
            11,
            "resource `x`: key `library`: `nope` is not in [libraries] (known: dummy)",
        ),
        (
            "[[resource]]\nname = \"x\"\nlibrary = \"dummy\"\ntype = \"ghost\"\n",
            4,
            8,
            "resource `x`: key `type`: ",
        ),
        (
            "[[resource]]\nname = \"x\"\nlibrary = \"dummy\"\ntype = \"dummy\"\n[resource.properties]\nstate_dir = \"/tmp\"\nonline_delay = \"forever\"\n",
            7,
            16,
            "resource `x`: property `online_delay`: \"forever\" is not a duration",
        ),
        (
            "[[resource]]\nname = \"x\"\nlibrary = \"dummy\"\ntype = \"dummy\"\n",
            2,
            8,
            "resource `x`: property `state_dir`: required but not given",
        ),
        (
            "[[resource]]\nname = \"web\"\nlibrary = \"dummy\"\ntype = \"dummy\"\n",
            2,
            8,
            "resource `web` is already declared at line 10",
        ),
        (
            "[[resource]]\nname = \"x\"\nlibrary = \"dummy\"\ntype = \"dummy\"\nspeed = 3\n",
            5,
            1,
            "unknown field `speed`",
        ),
    ];
    for (extra, line, column, expected) in cases {
        let bad = write_config(&dir, extra);
        let (ok, _, err) = output(clusterkit().arg("validate").arg(&bad));
        assert!(!ok, "accepted: {extra}");
        let at = format!("{}:{}:{column}: {expected}", bad.display(), 21 + line);
        assert!(
            err.contains(&at),
            "for {extra:?}\nexpected {at:?}\nin {err}"
        );
    }
    let cycle = write_config(
        &dir,
        "[[resource]]\nname = \"x\"\nlibrary = \"dummy\"\ntype = \"dummy\"\ndepends_on = [\"x\"]\n[resource.properties]\nstate_dir = \"/tmp\"\n",
    );
    let (ok, _, err) = output(clusterkit().arg("validate").arg(&cycle));
    assert!(!ok);
    assert!(
        err.contains("configuration: dependency cycle: x -> x"),
        "{err}"
    );
    let (ok, _, err) = output(clusterkit().arg("validate").arg("/nonexistent.toml"));
    assert!(!ok);
    assert!(
        err.contains("/nonexistent.toml: no such config file (given with -c); name yours with -c"),
        "{err}"
    );
}

#[test]
fn run_status_online_offline_fail_and_events_end_to_end() {
    let dir = TempDir::new("cli-run");
    let config = write_config(&dir, "");
    let host = Running::start(&config, &[]);
    let status = host.status().unwrap();
    assert_eq!(status[0]["name"], "web");
    assert!(status[0]["monitor_pid"].as_u64().is_some());

    let (ok, table, _) = host.cli(&["status"]);
    assert!(ok);
    assert!(table.starts_with("RESOURCE"), "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("web "), "{table}");

    // A reader that is gone (`clusterkit status | head -2`): a quiet end,
    // no panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let gone = clusterkit()
        .args(["status", "--config"])
        .arg(&config)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(gone.status.code(), Some(101), "{err}");

    // One host per state directory: a second `run` is refused, naming the
    // first, and the first goes on.
    let (ok, _, err) = output(clusterkit().args(["run", "--config"]).arg(&config));
    assert!(!ok);
    assert!(
        err.contains(&format!("held by process {}", host.child.id())),
        "{err}"
    );
    assert!(host.status().is_some(), "the first host still answers");

    assert!(host.cli(&["offline", "web"]).0);
    host.wait_status(|s| s.iter().all(|r| r["state"] == "offline"));
    assert!(
        host.cli(&["online", "app"]).0,
        "online brings the dependency too"
    );
    host.wait_status(|s| s.iter().all(|r| r["state"] == "online"));
    assert!(host.cli(&["fail", "app"]).0);
    host.wait_status(|s| s[1]["restarts"] == 1 && s[1]["state"] == "online");
    let (ok, _, err) = host.cli(&["online", "ghost"]);
    assert!(!ok);
    assert!(err.contains("no resource named `ghost`"), "{err}");

    let (ok, events, _) = host.cli(&["events", "--json"]);
    assert!(ok);
    let kinds: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for kind in [
        "host_started",
        "monitor_started",
        "resource_online",
        "resource_offline",
        "resource_failed",
        "resource_restarted",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    let on_disk = std::fs::read_to_string(dir.path().join("state/events.jsonl")).unwrap();
    assert_eq!(
        events.lines().count(),
        on_disk.lines().count(),
        "events prints the log once"
    );

    // --follow streams new events as they happen.
    let mut follow = clusterkit()
        .args(["events", "--follow", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert!(host.cli(&["offline", "app"]).0);
    let found = lines.any(|l| {
        let l = l.unwrap();
        l.contains("resource_offline") && l.contains(" app") && !on_disk.contains(&l[..24])
    });
    assert!(found);
    follow.kill().unwrap();
    follow.wait().unwrap();

    let status = host.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        dir.path().join("work/web.state").exists(),
        "workloads keep running after a stop"
    );
    // SIGTERM shuts the host down properly, control clients or not.
    let log = std::fs::read_to_string(dir.path().join("state").join("events.jsonl")).unwrap();
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains("\"host_stopped\""), "{last}");
    assert!(!dir.path().join("state/control.sock").exists());
}

#[test]
fn the_control_socket_refuses_another_uid() {
    let dir = TempDir::new("cli-uid");
    let config = write_config(&dir, "");
    // The state directory must be reachable for uid 65534 to even try.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let host = Running::start(&config, &[]);
    let socket = dir.path().join("state/control.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::set_permissions(
        dir.path().join("state"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let as_nobody = |cmd: &mut Command| output(cmd.uid(65534).gid(65534));
    let (ok, _, err) = as_nobody(clusterkit().args(["status", "--socket"]).arg(&socket));
    assert!(!ok);
    assert!(
        err.contains("Permission denied"),
        "mode 0600 refuses: {err}"
    );
    // Even with the mode opened up, the peer-uid check refuses.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (ok, _, err) = as_nobody(clusterkit().args(["status", "--socket"]).arg(&socket));
    assert!(!ok);
    assert!(err.contains("uid 65534 may not control this host"), "{err}");
    assert!(host.stop().success());
}

/// What a service manager hears on its notify socket: the messages, and
/// the status line as it stands.
struct Notifications {
    socket: UnixDatagram,
    seen: Vec<String>,
    status: Option<String>,
}

impl Notifications {
    /// Listens on a notify socket in `dir`, as systemd's would be; returns its path too.
    fn bind(dir: &TempDir) -> (Notifications, PathBuf) {
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        let listener = Notifications {
            socket,
            seen: Vec::new(),
            status: None,
        };
        (listener, path)
    }

    /// Receives messages until `done` holds for the listener.
    fn until(&mut self, what: &str, done: impl Fn(&Notifications) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 4096];
        while !done(self) {
            // Watchdog pings keep coming: the deadline, not a quiet socket, ends the wait.
            assert!(Instant::now() < deadline, "no {what}; got {:?}", self.seen);
            let n = self
                .socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {what} ({e}); got {:?}", self.seen));
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Some(line) = message
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("STATUS="))
            {
                self.status = Some(line.to_owned());
            }
            self.seen.push(message);
        }
    }

    /// Waits for a message with this line (`READY=1`), from now on.
    fn await_line(&mut self, line: &str) {
        let from = self.seen.len();
        self.until(line, |n| {
            n.seen[from..].iter().any(|m| m.lines().any(|l| l == line))
        });
    }

    /// Waits for the status line to read `expected` (it may already).
    fn await_status(&mut self, expected: &str) {
        self.until(&format!("STATUS={expected}"), |n| {
            n.status.as_deref() == Some(expected)
        });
    }
}

/// `clusterkit run` started through a shell that names its own pid (the
/// one `exec` keeps) in `WATCHDOG_PID`, as systemd does.
fn run_as_watched_main_process(config: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", r#"WATCHDOG_PID=$$ exec "$0" run --config "$1""#])
        .arg(env!("CARGO_BIN_EXE_clusterkit"))
        .arg(config);
    cmd
}

#[test]
fn systemd_readiness_watchdog_and_a_status_line_counting_resources() {
    let dir = TempDir::new("cli-notify");
    // `app` stays failed when failed: the line has a failure to count.
    let config = write_config(&dir, "[resource.timing]\nrestart_action = \"none\"\n");
    let (mut notifications, notify) = Notifications::bind(&dir);
    let host = Running::spawn(
        run_as_watched_main_process(&config),
        &config,
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    notifications.await_line("READY=1");
    let ready = notifications.seen.last().unwrap();
    assert!(
        ready.contains("\nSTATUS="),
        "READY=1 comes with a status line: {ready:?}"
    );
    notifications.await_status("2 online, 0 pending, 0 failed (of 2 resources)");
    notifications.await_line("WATCHDOG=1");
    let (ok, _, err) = host.cli(&["fail", "app"]);
    assert!(ok, "{err}");
    notifications.await_status("1 online, 0 pending, 1 failed (of 2 resources)");
    let (ok, _, err) = host.cli(&["offline", "web"]);
    assert!(ok, "{err}");
    // A failed dependent stays failed: its failure is still counted.
    notifications.await_status("0 online, 0 pending, 1 failed (of 2 resources)");
    assert!(host.stop().success());
    notifications.await_line("STOPPING=1");
    let readies = notifications.seen.iter().filter(|m| m.contains("READY=1"));
    assert_eq!(readies.count(), 1, "{:?}", notifications.seen);
}

#[test]
fn no_watchdog_pings_when_watchdog_pid_names_another_process() {
    let dir = TempDir::new("cli-notify-pid");
    let config = write_config(&dir, "");
    let (mut notifications, notify) = Notifications::bind(&dir);
    let host = Running::start(
        &config,
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            // Pings every 10 ms if they were (wrongly) sent.
            ("WATCHDOG_USEC", "20000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    notifications.await_line("READY=1");
    notifications.await_status("2 online, 0 pending, 0 failed (of 2 resources)");
    // What arrives in the next 20 would-be periods: none of it a ping.
    notifications
        .socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(n) = notifications.socket.recv(&mut buf) {
        notifications
            .seen
            .push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let seen = &notifications.seen;
    assert!(seen.iter().all(|m| !m.contains("WATCHDOG=1")), "{seen:?}");
    assert!(host.stop().success());
}

#[test]
fn the_demo_recovers_from_the_outage_and_leaves_nothing_running() {
    let mut libs = None;
    for (package, lib) in [
        ("clusterkit-example-ip-address", "clusterkit_ip_address"),
        ("clusterkit-example-network-name", "clusterkit_network_name"),
        ("clusterkit-example-disk", "clusterkit_disk"),
        (
            "clusterkit-example-virtual-machine",
            "clusterkit_virtual_machine",
        ),
        (
            "clusterkit-example-fault-injection",
            "clusterkit_fault_injection",
        ),
    ] {
        libs = cdylib(package, lib).parent().map(Path::to_owned);
    }
    let (ok, out, err) = output(
        clusterkit()
            .arg("demo")
            .arg("--libraries")
            .arg(libs.unwrap()),
    );
    assert!(ok, "{out}\n{err}");
    for line in [
        "legacy-app: `is_alive` still running after",
        "<- the hung call",
        "web-ip: re-attached to its running workload, no restart",
        "web-name: re-attached to its running workload, no restart",
        "data-disk: re-attached to its running workload, no restart",
        "vm: re-attached to its running workload, no restart",
        "legacy-app: isolated in a monitor of its own",
        "legacy-app: restarted by its restart policy",
        "[ok] the VM kept running",
        "[ok] co-hosted resources restarted: 0",
        "every resource offline and closed, QEMU and BIND stopped, temp dir removed",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("[FAILED]"), "{out}");
}

#[test]
fn a_monitor_program_that_is_no_monitor_fails_the_start_at_once_saying_why() {
    let dir = TempDir::new("cli-bad-monitor");
    let good = write_config(&dir, "");
    let text = std::fs::read_to_string(&good).unwrap();
    let bad = dir.path().join("bad-monitor.toml");
    std::fs::write(&bad, format!("monitor = \"/bin/true\"\n{text}")).unwrap();
    let (ok, _, err) = output(clusterkit().args(["run", "--config"]).arg(&bad));
    assert!(!ok);
    assert!(
        err.contains("ended (exit status: 0) before saying hello"),
        "{err}"
    );
    assert!(err.contains("clusterkit monitor"), "{err}");
    // Not thousands of spawns: one per placement, then the start fails.
    let events =
        std::fs::read_to_string(dir.path().join("state").join("events.jsonl")).unwrap_or_default();
    let died = events.matches("\"monitor_died\"").count();
    assert!(died <= 3, "{died} monitor deaths\n{events}");
}

/// `validate` checks what `run` would trip over, reports every problem in
/// one run, and survives a damaged library.
#[test]
fn validate_reports_every_problem_and_survives_a_damaged_library() {
    let dir = TempDir::new("cli-validate-all");
    let good = write_config(&dir, "");
    let text = std::fs::read_to_string(&good).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    // Several problems at once: all reported, each located.
    let many = write(
        "many.toml",
        format!(
            "monitor = \"/nonexistent/monitor\"\ncontrol_socket = \"/tmp/{}.sock\"\n{text}\
             [[resource]]\nname = \"a/b\"\nlibrary = \"nope\"\ntype = \"dummy\"\n\
             [[resource]]\nname = \"c\"\nlibrary = \"dummy\"\ntype = \"dummy\"\ndepends_on = [\"ghost\"]\n\
             [resource.properties]\nstate_dir = \"/tmp\"\ncolour = \"red\"\n",
            "s".repeat(120)
        ),
    );
    let (ok, _, err) = output(clusterkit().arg("validate").arg(&many));
    assert!(!ok);
    for wanted in [
        "key `monitor`: /nonexistent/monitor: No such file",
        "longer than a Unix socket allows (107)",
        "key `name`: invalid input: resource name \"a/b\"",
        "key `library`: `nope` is not in [libraries]",
        // The later stages too, in the same run.
        "`ghost`",
        "resource `c`: property `colour`: unknown property",
    ] {
        assert!(err.contains(wanted), "missing {wanted:?} in\n{err}");
    }
    // What `open` would refuse, asked of the type: a VM's `extra_args`
    // cannot set the `-pidfile` the type manages itself.
    let vm = write(
        "vm.toml",
        format!(
            "state_dir = \"{state}\"\n[libraries]\nvm = \"{lib}\"\n[[resource]]\nname = \"guest\"\n\
             library = \"vm\"\ntype = \"virtual-machine\"\n[resource.properties]\n\
             run_dir = \"{run}\"\nextra_args = [\"-pidfile\", \"/tmp/other.pid\"]\n",
            state = dir.path().join("vm-state").display(),
            lib = cdylib(
                "clusterkit-example-virtual-machine",
                "clusterkit_virtual_machine"
            )
            .display(),
            run = dir.path().display(),
        ),
    );
    let (ok, _, err) = output(clusterkit().arg("validate").arg(&vm));
    assert!(!ok);
    assert!(
        err.contains("resource `guest`") && err.contains("-pidfile"),
        "{err}"
    );

    // `run` refuses the same config before starting anything.
    let (ok, _, run_err) = output(clusterkit().args(["run", "--config"]).arg(&many));
    assert!(!ok);
    assert!(run_err.contains("key `monitor`"), "{run_err}");

    // A library cut short: validate reports it, it does not crash.
    let dummy = text
        .lines()
        .find_map(|l| l.strip_prefix("dummy = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the dummy library's line")
        .to_owned();
    let bytes = std::fs::read(&dummy).unwrap();
    let truncated = dir.path().join("libtruncated.so");
    std::fs::write(&truncated, &bytes[..bytes.len() / 20]).unwrap();
    let damaged = write(
        "damaged.toml",
        text.replace(&dummy, truncated.to_str().unwrap()),
    );
    let (ok, out, err) = output(clusterkit().arg("validate").arg(&damaged));
    assert!(!ok, "{out}");
    assert!(err.contains("libtruncated.so"), "{err}");
    assert!(err.contains("crashed the check (SIGBUS)"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
