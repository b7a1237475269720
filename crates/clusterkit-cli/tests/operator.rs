//! The operator's commands through the real binary: online/offline waiting
//! with progress and failures, `status` explaining a failure, `cleanup`
//! lifting an isolation across a host restart, `control`, `types`, the
//! event log of a stopped host (filters, rotation), and the config's
//! naming (`-c`, `CLUSTERKIT_CONFIG`, a missing file).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clusterkit_testkit::{TempDir, cdylib};
use serde_json::Value;
use support::cli::{PATIENCE, clusterkit, config_head, output as out, write_config_file};

/// `clusterkit` with the config named by the environment, as an operator
/// would set it once.
fn ck(config: &Path) -> Command {
    let mut c = clusterkit();
    c.env("CLUSTERKIT_CONFIG", config);
    c
}

/// A config of `web` (dummy, online pending for 300 ms), `app`
/// (fault-injection, depends on `web`, faults from `app.faults`) and
/// `bad` (fault-injection whose online fails, never restarted); none
/// started automatically.
fn write_config(dir: &TempDir, extra: &str) -> PathBuf {
    let faults = cdylib(
        "clusterkit-example-fault-injection",
        "clusterkit_fault_injection",
    );
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let text = format!(
        r#"{head}[[resource]]
name = "web"
library = "dummy"
type = "dummy"
autostart = false
[resource.properties]
state_dir = "{work}"
online_delay = "300ms"
[[resource]]
name = "app"
library = "faults"
type = "fault-injection"
depends_on = ["web"]
autostart = false
[resource.properties]
state_dir = "{work}"
control_file = "{work}/app.faults"
[[resource]]
name = "bad"
library = "faults"
type = "fault-injection"
autostart = false
[resource.properties]
state_dir = "{work}"
fail_in = ["online"]
[resource.timing]
restart_action = "none"
{extra}"#,
        head = config_head(dir.path(), &[("faults", &faults)]),
        work = work.display(),
    );
    write_config_file(dir.path(), &text)
}

/// A `clusterkit run`, its console in `console`; stopped with SIGTERM.
struct Host {
    child: Child,
    config: PathBuf,
    console: PathBuf,
}

impl Host {
    fn start(config: &Path) -> Host {
        let console = config.with_extension("console");
        let child = ck(config)
            .arg("run")
            .stderr(std::fs::File::create(&console).unwrap())
            .spawn()
            .unwrap();
        let host = Host {
            child,
            config: config.to_owned(),
            console,
        };
        host.wait(|s| {
            s.iter()
                .all(|r| r["state"] == "offline" || r["state"] == "online")
        });
        host
    }

    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        out(ck(&self.config).args(args))
    }

    fn status(&self) -> Option<Vec<Value>> {
        let (ok, text, _) = self.cli(&["status", "--json"]);
        let v: Value = serde_json::from_str(&text).ok().filter(|_| ok)?;
        assert_eq!(v["schema"], 1, "{v}");
        v["resources"].as_array().cloned()
    }

    fn one(&self, name: &str) -> Value {
        let (ok, text, err) = self.cli(&["status", name, "--json"]);
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema"], 1, "{v}");
        v["resource"].clone()
    }

    /// Waits for a condition on `status --json`; the CLI is the probe.
    fn wait(&self, mut pred: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(s) = self.status()
                && pred(&s)
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "not reached: {:?}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(20)); // polling another process
        }
    }

    fn stop(mut self) -> String {
        // SAFETY: kill(2) with a valid pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert!(self.child.wait().unwrap().success());
        std::fs::read_to_string(&self.console).unwrap()
    }
}

impl Drop for Host {
    /// A failed test leaves no host behind (a stopped one is reaped already).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) with a valid pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// The line of `text` that ends with `needle`.
fn at_in(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.ends_with(needle))
        .unwrap_or_else(|| panic!("{needle:?} missing from\n{text}"))
}

fn by_name<'a>(statuses: &'a [Value], name: &str) -> &'a Value {
    statuses.iter().find(|s| s["name"] == name).unwrap()
}

#[test]
fn online_and_offline_wait_show_progress_and_end_with_the_outcome() {
    let dir = TempDir::new("op-wait");
    let config = write_config(&dir, "");
    let host = Host::start(&config);

    // Online waits for the pending transition, showing it, and brings the
    // dependency first.
    let (ok, text, err) = host.cli(&["online", "app"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.ends_with(needle))
            .unwrap_or_else(|| panic!("{needle:?} missing from\n{text}"))
    };
    assert!(at("web: online pending") < at("web: online"), "{text}");
    // The checkpoints the resource reports, as they come.
    assert!(
        at("web: online pending") < at("web: online pending, checkpoint 1"),
        "{text}"
    );
    assert!(at("web: online") < at("app: online"), "{text}");
    assert!(lines.last().unwrap().starts_with("app: online ("), "{text}");
    let s = host.status().unwrap();
    assert_eq!(
        by_name(&s, "app")["state"],
        "online",
        "done when it says so"
    );

    // Offline takes the dependents first, and waits.
    let (ok, text, err) = host.cli(&["offline", "web"]);
    assert!(ok, "{err}");
    assert!(
        at_in(&text, "app: offline") < at_in(&text, "web: offline"),
        "{text}"
    );
    assert!(
        text.lines().last().unwrap().starts_with("web: offline ("),
        "{text}"
    );
    let s = host.status().unwrap();
    assert!(s.iter().all(|r| r["state"] != "online"), "{s:?}");

    // A failure that is not restarted ends the wait with its reason.
    let (ok, text, err) = host.cli(&["online", "bad"]);
    assert!(!ok, "{text}");
    assert!(text.contains("bad: `online` failed: "), "{text}");
    assert!(
        err.contains("`bad` failed and is not restarted")
            && err.contains("told to fail in online")
            && err.contains("clusterkit cleanup bad"),
        "{err}"
    );

    // --timeout: the exit says it did not finish; --no-wait returns at once.
    let (ok, _, err) = host.cli(&["online", "web", "--timeout", "50ms"]);
    assert!(!ok);
    assert!(err.contains("not online after 50ms"), "{err}");
    host.wait(|s| by_name(s, "web")["state"] == "online");
    let (ok, text, err) = host.cli(&["offline", "web", "--no-wait"]);
    assert!(ok && text.is_empty(), "{text}{err}");
    host.wait(|s| by_name(s, "web")["state"] == "offline");

    // --watch redraws when something happens, not on a timer.
    let mut watch = ck(&config)
        .args(["status", "--watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut state_of_web = move || loop {
        let line = lines.next().expect("a frame").unwrap();
        if line.starts_with("web ") {
            return line.split_whitespace().nth(3).unwrap().to_owned();
        }
    };
    assert_eq!(state_of_web(), "offline");
    assert!(host.cli(&["online", "web", "--no-wait"]).0);
    while state_of_web() != "online" {}
    watch.kill().unwrap();
    watch.wait().unwrap();

    // The console shows the host's first events too.
    let console = host.stop();
    for kind in [
        "host_started",
        "monitor_started",
        "resource_pending",
        "resource_online",
    ] {
        assert!(console.contains(kind), "{kind} missing from {console}");
    }
}

#[test]
fn status_explains_an_isolation_and_cleanup_lifts_it_for_good() {
    let dir = TempDir::new("op-cleanup");
    let config = write_config(&dir, "");
    let faults = dir.path().join("work/app.faults");
    let host = Host::start(&config);
    assert!(host.cli(&["online", "app"]).0);
    let shared = by_name(&host.status().unwrap(), "web")["monitor_pid"].clone();

    // app's is_alive hangs: its monitor is killed, app isolated, restarted.
    std::fs::write(&faults, "hang is_alive\n").unwrap();
    host.wait(|s| !by_name(s, "app")["last_failure"].is_null());
    std::fs::write(&faults, "").unwrap();
    let s = host.wait(|s| {
        let app = by_name(s, "app");
        app["state"] == "online" && app["separate_monitor"] == true
    });
    assert_eq!(by_name(&s, "app")["monitor"], "separate:app");
    assert_eq!(by_name(&s, "app")["restarts_in_period"], 1);

    let one = host.one("app");
    assert!(
        one["last_failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("is_alive"),
        "{one}"
    );
    assert_eq!(one["desired"], "online");
    assert_eq!(one["properties"]["control_file"], faults.to_str().unwrap());
    let (ok, text, _) = host.cli(&["status", "app"]);
    assert!(ok);
    for wanted in [
        "state:         online for ",
        "monitor:       separate:app, pid ",
        "a monitor of its own (isolated",
        "restarts:      1 in the current period, 1 in all",
        "last failure:  ",
        "control_file = ",
    ] {
        assert!(text.contains(wanted), "{wanted:?} missing from\n{text}");
    }
    let (_, table, _) = host.cli(&["status"]);
    assert!(
        table.contains("separate:app") && table.contains("Last failures:"),
        "{table}"
    );

    // cleanup: counters reset, isolation lifted (persisted), an event.
    let (ok, text, err) = host.cli(&["cleanup", "app"]);
    assert!(ok, "{err}");
    assert!(text.starts_with("app: cleaned up"), "{text}");
    // Still running in its own monitor, until its next open.
    let app = host.one("app");
    assert_eq!(app["restarts_in_period"], 0, "{app}");
    assert_eq!(app["separate_monitor"], true, "{app}");
    assert_eq!(app["isolation_lifted_at_next_open"], true, "{app}");
    let (_, text, _) = host.cli(&["status", "app"]);
    assert!(
        text.contains("until its next open (the isolation is lifted)"),
        "{text}"
    );
    let state = std::fs::read_to_string(dir.path().join("state/state.json")).unwrap();
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        state["resources"]["app"]["separate_monitor"], false,
        "{state}"
    );
    let (ok, text, _) = host.cli(&["events", "--json", "--kind", "resource_cleaned_up"]);
    assert!(ok);
    let e: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(
        (e["resource"].clone(), e["isolation_lifted"].clone()),
        ("app".into(), true.into())
    );

    // A control code to the running resource: its workload's start count.
    let (ok, text, err) = host.cli(&["control", "app", "type_specific(1)"]);
    assert!(ok, "{err}");
    assert_eq!(text.trim(), "2", "started, then restarted once");
    let (ok, _, err) = host.cli(&["control", "ghost", "type_specific(1)"]);
    assert!(!ok);
    assert!(err.contains("no resource named `ghost`"), "{err}");
    let (ok, _, err) = host.cli(&["control", "app", "format"]);
    assert!(!ok);
    assert!(err.contains("control code \"format\""), "{err}");
    host.stop();

    // The next host opens app in its group's monitor again.
    let host = Host::start(&config);
    let s = host.wait(|s| {
        s.iter()
            .all(|r| r["name"] == "bad" || r["state"] == "online")
    });
    assert_eq!(by_name(&s, "app")["monitor"], "default");
    assert_eq!(
        by_name(&s, "app")["monitor_pid"],
        by_name(&s, "web")["monitor_pid"]
    );
    assert_ne!(
        by_name(&s, "web")["monitor_pid"],
        shared,
        "a new host, new monitors"
    );
    host.stop();
}

#[test]
fn events_of_a_stopped_host_filtered_rendered_and_rotated() {
    let dir = TempDir::new("op-events");
    // Small files: a few online/offline cycles (each with its pending
    // checkpoints) rotate twice and are all kept.
    let config = write_config(&dir, "[event_log]\nmax_bytes = 1200\nkeep = 2\n");
    let host = Host::start(&config);
    for _ in 0..4 {
        assert!(host.cli(&["online", "web"]).0);
        assert!(host.cli(&["offline", "web"]).0);
    }
    host.stop();
    let state = dir.path().join("state");
    assert!(state.join("events.jsonl.1").exists());
    assert!(state.join("events.jsonl.2").exists());
    assert!(
        !state.join("events.jsonl.3").exists(),
        "keeps 2 rotated files"
    );
    for f in ["events.jsonl", "events.jsonl.1"] {
        let len = std::fs::metadata(state.join(f)).unwrap().len();
        assert!(len < 1200 + 500, "{f}: {len} bytes");
    }

    // No socket: the files, oldest first, across the rotation.
    let (ok, text, err) = out(ck(&config).args(["events", "--json"]));
    assert!(ok, "{err}");
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(text.lines().last().unwrap().contains("host_stopped"));

    // Filters: kind, resource, -n, --since.
    let (ok, text, _) = out(ck(&config).args([
        "events",
        "--utc",
        "-k",
        "resource_online",
        "-r",
        "web",
        "-n",
        "2",
    ]));
    assert!(ok);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].ends_with("resource_online            web: online"),
        "{text}"
    );
    assert!(
        lines[0].contains("Z +  0.000s"),
        "relative to the first shown: {text}"
    );
    let (_, text, _) = out(ck(&config).args(["events", "--since", "10m", "-k", "2"]));
    assert_eq!(text.lines().count(), 4, "{text}");
    let (_, text, _) = out(ck(&config).args(["events", "--since", "2999-01-01T00:00:00Z"]));
    assert!(text.is_empty(), "{text}");
    let (ok, _, err) = out(ck(&config).args(["events", "--kind", "resource_exploded"]));
    assert!(
        !ok && err.contains("no such event kind") && err.contains("resource_online"),
        "{err}"
    );
    let (ok, _, err) = out(ck(&config).args(["events", "--since", "last tuesday"]));
    assert!(!ok && err.contains("--since \"last tuesday\""), "{err}");
    // Following needs a host: said after the log.
    let (ok, text, err) = out(ck(&config).args(["events", "--follow", "-n", "1"]));
    assert!(!ok && text.contains("host_stopped"), "{text}");
    assert!(err.contains("--follow needs a running host"), "{err}");
}

#[test]
fn the_config_is_named_by_flag_or_environment_and_a_missing_one_says_how() {
    let dir = TempDir::new("op-config");
    let config = write_config(&dir, "");
    let (ok, text, err) = out(ck(&config).arg("validate"));
    assert!(ok, "{err}");
    assert_eq!(
        text.trim(),
        format!("{}: ok (3 resources, 2 libraries)", config.display())
    );
    let missing = dir.path().join("missing.toml");
    for args in [&["validate", "-c"][..], &["status", "--config"][..]] {
        let (ok, _, err) = out(ck(&config).args(args).arg(&missing));
        assert!(!ok);
        assert!(
            err.contains(&format!(
                "{}: no such config file (given with -c)",
                missing.display()
            )) && err.contains("-c/--config FILE or $CLUSTERKIT_CONFIG=FILE"),
            "{err}"
        );
    }
    // No host: the commands that need one say so.
    for args in [
        &["online", "web"][..],
        &["status"][..],
        &["cleanup", "web"][..],
    ] {
        let (ok, _, err) = out(ck(&config).args(args));
        assert!(!ok);
        assert!(
            err.contains("is `clusterkit run` running with this config?"),
            "{args:?}: {err}"
        );
    }
    let (ok, _, err) = out(ck(&missing).arg("events"));
    assert!(
        !ok && err.contains("(named by $CLUSTERKIT_CONFIG)"),
        "{err}"
    );

    // One resource, one library: said so.
    let text = std::fs::read_to_string(&config).unwrap();
    let one = text[..text.find("[[resource]]\nname = \"app\"").unwrap()].replace("faults = ", "# ");
    let single = dir.path().join("single.toml");
    std::fs::write(&single, one).unwrap();
    let (ok, text, err) = out(ck(&config).args(["validate", "-c"]).arg(&single));
    assert!(ok, "{err}");
    assert!(text.contains("ok (1 resource, 1 library)"), "{text}");
}

#[test]
fn types_describes_every_type_and_survives_a_damaged_library() {
    let dir = TempDir::new("op-types");
    let dns = cdylib("clusterkit-example-network-name", "clusterkit_network_name");
    let (ok, text, err) = out(Command::new(env!("CARGO_BIN_EXE_clusterkit"))
        .arg("types")
        .arg(&dns));
    assert!(ok, "{err}");
    assert!(
        text.starts_with(&format!("{}: 1 type\n", dns.display())),
        "{text}"
    );
    assert!(text.contains("network-name: "), "{text}");
    let secret = text
        .lines()
        .find(|l| l.trim_start().starts_with("tsig_secret"))
        .unwrap();
    assert!(
        secret.contains("required") && secret.contains("secret"),
        "{secret}"
    );
    let dummy = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    let (ok, text, _) = out(Command::new(env!("CARGO_BIN_EXE_clusterkit"))
        .args(["types", "--json"])
        .arg(&dummy));
    assert!(ok);
    let v: Value = serde_json::from_str(&text).unwrap();
    let t = &v["types"][0];
    assert_eq!(t["name"], "dummy");
    assert_eq!(t["characteristics"], serde_json::json!(["REATTACH"]));
    let delay = t["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "online_delay")
        .unwrap();
    assert_eq!(
        (delay["kind"].clone(), delay["apply"].clone()),
        ("duration".into(), "live".into())
    );
    assert!(!delay["default"].is_null(), "{delay}");

    // A running resource of that type shows its secret as <secret>.
    let config = dir.path().join("dns.toml");
    let secret = "c2VjcmV0c2VjcmV0c2VjcmV0";
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[libraries]\ndns = \"{}\"\n[[resource]]\nname = \"www\"\n\
             library = \"dns\"\ntype = \"network-name\"\nautostart = false\n[resource.properties]\n\
             name = \"www.example.test\"\naddress = \"127.0.0.1\"\nzone = \"example.test\"\n\
             servers = [\"127.0.0.1:1\"]\ntsig_key_name = \"k\"\ntsig_secret = \"{secret}\"\n",
            dir.path().join("state").display(),
            dns.display()
        ),
    )
    .unwrap();
    let host = Host::start(&config);
    let www = host.one("www");
    assert_eq!(www["properties"]["tsig_secret"], "<secret>", "{www}");
    assert_eq!(www["properties"]["tsig_key_name"], "k", "{www}");
    let (ok, text, _) = host.cli(&["status", "www"]);
    assert!(ok && text.contains("tsig_secret = <secret>"), "{text}");
    assert!(!text.contains(secret), "{text}");
    host.stop();

    // A library cut short crashes the reader, not the command.
    let bytes = std::fs::read(&dummy).unwrap();
    let truncated = dir.path().join("libtruncated.so");
    std::fs::write(&truncated, &bytes[..bytes.len() / 20]).unwrap();
    let (ok, _, err) = out(Command::new(env!("CARGO_BIN_EXE_clusterkit"))
        .arg("types")
        .arg(&truncated));
    assert!(!ok);
    assert!(
        err.contains("libtruncated.so") && !err.contains("panicked"),
        "{err}"
    );
}
