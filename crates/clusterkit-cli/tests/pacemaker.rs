//! The OCF agents under a real Pacemaker: a single-node Corosync +
//! Pacemaker cluster started by the test, inside namespaces of its own
//! (mount, UTS, network, PID), so nothing on the machine sees it; the stock
//! `ocf:heartbeat:Dummy` runs beside `ocf:clusterkit:dummy` and goes
//! through the same steps. `docs/PACEMAKER.md` walks through the same
//! commands by hand.
//!
//! Needs root (namespaces, bind mounts) and Debian's `pacemaker`,
//! `corosync`, `pacemaker-cli-utils` and `resource-agents`; a missing tool
//! fails the test naming its package (`scripts/test` installs them).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clusterkit_testkit::{TempDir, cdylib, require_tool};

/// The node's name: the namespace's hostname and corosync's nodelist entry.
const NODE: &str = "ck-node1";
/// The clusterkit resource and the stock one beside it.
const OURS: &str = "ck-dummy";
const STOCK: &str = "stock-dummy";
/// How long any one state change may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// Pid 1 of the namespaces runs this: private `/run` and `/dev/shm`, the
/// cluster's directories bind-mounted from the test's, the agents in a
/// private `resource.d`, then corosync and pacemakerd. Killing it kills
/// every process in the PID namespace.
const NODE_SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
D=$1
hostname "$2"
ip link set lo up
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mkdir -p /run/resource-agents
mount --bind "$D/etc-corosync" /etc/corosync
mount --bind "$D/var-lib-corosync" /var/lib/corosync
mount --bind "$D/var-lib-pacemaker" /var/lib/pacemaker
mount --bind "$D/var-log-corosync" /var/log/corosync
mount --bind "$D/var-log-pacemaker" /var/log/pacemaker
mount --bind /usr/lib/ocf/resource.d/heartbeat "$D/resource.d/heartbeat"
mount --rbind "$D/resource.d" /usr/lib/ocf/resource.d
corosync -f >"$D/corosync.out" 2>&1 &
for _ in $(seq 300); do
    corosync-cfgtool -s >/dev/null 2>&1 && break
    sleep 0.1
done
PCMK_logfile=/var/log/pacemaker/pacemaker.log PCMK_logfacility=none \
    pacemakerd >"$D/pacemakerd.out" 2>&1 &
wait
"#;

const COROSYNC_CONF: &str = "totem {
    version: 2
    cluster_name: clusterkit-test
    transport: knet
    crypto_cipher: none
    crypto_hash: none
}
logging {
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_syslog: no
    to_stderr: no
}
quorum {
    provider: corosync_votequorum
}
nodelist {
    node {
        name: ck-node1
        nodeid: 1
        ring0_addr: 127.0.0.1
    }
}
";

/// The first CIB: no fencing, a one-node cluster keeps running, and a
/// 2 s `dc-deadtime` so the node becomes DC in seconds, not 20.
const CIB: &str = r#"<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="opt-dc-deadtime" name="dc-deadtime" value="2s"/>
        <nvpair id="opt-stonith-enabled" name="stonith-enabled" value="false"/>
        <nvpair id="opt-no-quorum-policy" name="no-quorum-policy" value="ignore"/>
        <nvpair id="opt-recheck" name="cluster-recheck-interval" value="30s"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources/>
    <constraints/>
  </configuration>
  <status/>
</cib>
"#;

/// The single-node cluster; dropping it kills every process it started.
struct Cluster {
    unshare: Child,
    /// Pid 1 of the namespaces, as this process sees it.
    init: u32,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGKILL of a PID namespace's init kills everything inside it;
        // the mounts go with the mount namespace.
        // 0 (or a pid that does not fit) would signal far more than ours.
        if let Ok(init) = i32::try_from(self.init)
            && init > 1
        {
            // SAFETY: kill(2) on the namespace's init, which this test started.
            unsafe { libc::kill(init, libc::SIGKILL) };
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

fn chown_hacluster(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "hacluster:haclient"])
        .arg(path)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "chown hacluster:haclient {}",
        path.display()
    );
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the Pacemaker test needs root (namespaces and bind mounts)"
        );
        for (tool, package) in [
            ("corosync", "corosync"),
            ("corosync-cfgtool", "corosync"),
            ("pacemakerd", "pacemaker"),
            ("crm_mon", "pacemaker-cli-utils"),
            ("cibadmin", "pacemaker-cli-utils"),
            ("crm_resource", "pacemaker-cli-utils"),
            ("crm_failcount", "pacemaker-cli-utils"),
            ("unshare", "util-linux"),
            ("nsenter", "util-linux"),
            ("ip", "iproute2"),
        ] {
            require_tool(tool, package);
        }
        assert!(
            Path::new("/usr/lib/ocf/resource.d/heartbeat/Dummy").exists(),
            "the stock Dummy agent is missing: run `apt-get install resource-agents`"
        );
        for sub in [
            "etc-corosync",
            "var-lib-corosync",
            "var-lib-pacemaker/cib",
            "var-lib-pacemaker/pengine",
            "var-lib-pacemaker/blackbox",
            "var-lib-pacemaker/cores",
            "var-log-corosync",
            "var-log-pacemaker",
            "resource.d/heartbeat",
            "resource.d/clusterkit",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("etc-corosync/corosync.conf"), COROSYNC_CONF).unwrap();
        let cib = dir.join("var-lib-pacemaker/cib/cib.xml");
        std::fs::write(&cib, CIB).unwrap();
        std::fs::set_permissions(&cib, std::fs::Permissions::from_mode(0o600)).unwrap();
        chown_hacluster(&dir.join("var-lib-pacemaker"));
        chown_hacluster(&dir.join("var-log-pacemaker"));
        let script = dir.join("node.sh");
        std::fs::write(&script, NODE_SCRIPT).unwrap();

        let unshare = Command::new("unshare")
            .args([
                "--mount",
                "--uts",
                "--net",
                "--pid",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
                "bash",
            ])
            .arg(&script)
            .arg(dir)
            .arg(NODE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running unshare");
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let mut cluster = Cluster {
            unshare,
            init: 0,
            dir: dir.to_owned(),
        };
        cluster.init = poll("unshare to start the namespace's init", || {
            std::fs::read_to_string(&children)
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
        let started = Instant::now();
        poll("the node to become DC", || {
            let out = cluster.run(&["crm_mon", "-1", "--output-as=xml"]);
            String::from_utf8_lossy(&out.stdout)
                .contains("<current_dc present=\"true\"")
                .then_some(())
        });
        eprintln!("DC elected after {:?}", started.elapsed());
        cluster
    }

    /// Runs `args` inside the cluster's namespaces.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg("--target")
            .arg(self.init.to_string())
            .args(["--mount", "--uts", "--net", "--pid", "--"])
            .args(args)
            .output()
            .expect("running nsenter")
    }

    /// Runs `args` inside the namespaces; asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `crm_mon`'s XML status with every section.
    fn status(&self) -> Status {
        Status(self.ok(&["crm_mon", "-1", "--output-as=xml", "--include=all"]))
    }

    /// Polls the status until `check` says yes; the last status is in the
    /// failure message.
    fn wait_for(&self, what: &str, check: impl Fn(&Status) -> bool) -> Status {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let status = self.status();
            if check(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}: not within {DEADLINE:?}; last status:\n{}\npacemaker.log tail:\n{}",
                status.0,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("var-log-pacemaker/pacemaker.log"))
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn create(&self, primitive_xml: &str) {
        let file = self.dir.join("primitive.xml");
        std::fs::write(&file, primitive_xml).unwrap();
        self.ok(&[
            "cibadmin",
            "-C",
            "-o",
            "resources",
            "-x",
            file.to_str().unwrap(),
        ]);
    }
}

/// Polls `f` every 100 ms until it gives a value, up to [`DEADLINE`].
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for {what}: not within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `crm_mon --output-as=xml`, read with just enough XML for its flat elements.
struct Status(String);

/// The value of `name` in one element's text.
fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = element[start..].find('"')?;
    Some(&element[start..start + len])
}

impl Status {
    /// Every `<tag …>` start tag whose attribute `key` is `value`.
    fn elements(&self, tag: &str, key: &str, value: &str) -> Vec<&str> {
        let open = format!("<{tag} ");
        let mut found = Vec::new();
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find(&open) {
            let tail = &rest[at..];
            let end = tail.find('>').map_or(tail.len(), |e| e + 1);
            let element = &tail[..end];
            if attr(element, key) == Some(value) {
                found.push(element);
            }
            rest = &tail[end..];
        }
        found
    }

    fn resource(&self, id: &str) -> Option<&str> {
        self.elements("resource", "id", id).into_iter().next()
    }

    /// Started on the node, not failed, not blocked.
    fn started(&self, id: &str) -> bool {
        self.resource(id).is_some_and(|r| {
            attr(r, "role") == Some("Started")
                && attr(r, "failed") == Some("false")
                && attr(r, "blocked") == Some("false")
        })
    }

    /// Stopped cleanly: not failed, not blocked (a failed stop blocks).
    fn stopped(&self, id: &str) -> bool {
        self.resource(id).is_some_and(|r| {
            attr(r, "role") == Some("Stopped")
                && attr(r, "failed") == Some("false")
                && attr(r, "blocked") == Some("false")
        })
    }

    fn fail_count(&self, id: &str) -> u32 {
        self.elements("resource_history", "id", id)
            .first()
            .and_then(|h| attr(h, "fail-count"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The last result of `task` (with `interval`, for monitors) of `id`.
    fn last_rc(&self, id: &str, task: &str, interval: Option<&str>) -> Option<u32> {
        let start = self.0.find(&format!("<resource_history id=\"{id}\""))?;
        let end = self.0[start..].find("</resource_history>")? + start;
        let history = Status(self.0[start..end].to_owned());
        history
            .elements("operation_history", "task", task)
            .into_iter()
            .filter(|op| attr(op, "interval") == interval)
            .filter_map(|op| attr(op, "rc")?.parse().ok())
            .next_back()
    }

    /// The failures recorded for `id`'s operations.
    fn failures(&self, id: &str) -> Vec<String> {
        let open = "<failure ";
        self.0
            .match_indices(open)
            .map(|(at, _)| {
                let tail = &self.0[at..];
                tail[..tail.find('>').unwrap_or(tail.len())].to_owned()
            })
            .filter(|f| attr(f, "op_key").is_some_and(|k| k.starts_with(&format!("{id}_"))))
            .collect()
    }
}

/// An attribute's text unescaped; crm_mon 2.1.5 escapes exit reasons
/// twice (`&amp;quot;`), so this repeats until nothing changes.
fn unescape(text: &str) -> String {
    let mut text = text.to_owned();
    loop {
        let next = text
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        if next == text {
            return text;
        }
        text = next;
    }
}

/// Lines in which Pacemaker's executor logged output an agent wrote to
/// stderr for `id`'s operations.
fn stderr_lines(log: &str, id: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("(log_op_output)") && l.contains(&format!(" {id}_")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn clusterkit_and_stock_dummy_under_pacemakerd() {
    let tmp = TempDir::new("pacemaker");
    let dir = tmp.path().to_owned();
    let library = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    // The agents, installed as an administrator would, then copied into
    // the cluster's private resource.d; the wrapper also records each call.
    let root = dir.join("install");
    let out = Command::new(env!("CARGO_BIN_EXE_clusterkit"))
        .args(["ocf", "install", "--root"])
        .arg(&root)
        .arg("--library")
        .arg(&library)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The controller runs meta-data as hacluster: anyone may append.
    let calls = dir.join("calls");
    std::fs::write(&calls, "").unwrap();
    std::fs::set_permissions(&calls, std::fs::Permissions::from_mode(0o666)).unwrap();
    let wrapper = std::fs::read_to_string(root.join("usr/lib/ocf/resource.d/clusterkit/dummy"))
        .unwrap()
        .replacen(
            "\nexec ",
            &format!(
                "\necho \"$1 ${{OCF_CHECK_LEVEL:-0}}\" >> '{}'\nexec ",
                calls.display()
            ),
            1,
        );
    let cluster_dir = dir.join("cluster");
    std::fs::create_dir_all(cluster_dir.join("resource.d/clusterkit")).unwrap();
    let agent = cluster_dir.join("resource.d/clusterkit/dummy");
    std::fs::write(&agent, wrapper).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ours_dir = dir.join("ours");
    let stock_dir = dir.join("stock");
    std::fs::create_dir_all(&ours_dir).unwrap();
    std::fs::create_dir_all(&stock_dir).unwrap();
    let ours_state = ours_dir.join(format!("{OURS}.state"));
    let stock_state = stock_dir.join(format!("{STOCK}.state"));

    let cluster = Cluster::start(&cluster_dir);

    // What failed in the field: Pacemaker passes crm_feature_set, and
    // validate-all now runs the type's own checks.
    let state_dir = format!("state_dir={}", ours_dir.display());
    let validate = |option: &str| {
        cluster.run(&[
            "crm_resource",
            "--validate",
            "--class",
            "ocf",
            "--provider",
            "clusterkit",
            "--agent",
            "dummy",
            "--option",
            option,
        ])
    };
    let out = validate(&state_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = validate("state_dir=/nonexistent");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{text}");
    assert!(text.contains("/nonexistent is not a directory"), "{text}");

    // Start, with recurring monitors at depth 0 (every 2 s) and 10 (3 s).
    cluster.create(&format!(
        r#"<primitive id="{OURS}" class="ocf" provider="clusterkit" type="dummy">
  <instance_attributes id="{OURS}-ia">
    <nvpair id="{OURS}-state-dir" name="state_dir" value="{}"/>
  </instance_attributes>
  <operations>
    <op id="{OURS}-monitor-0" name="monitor" interval="2s" timeout="20s"/>
    <op id="{OURS}-monitor-10" name="monitor" interval="3s" timeout="20s">
      <instance_attributes id="{OURS}-monitor-10-ia">
        <nvpair id="{OURS}-monitor-10-level" name="OCF_CHECK_LEVEL" value="10"/>
      </instance_attributes>
    </op>
  </operations>
</primitive>"#,
        ours_dir.display()
    ));
    cluster.create(&format!(
        r#"<primitive id="{STOCK}" class="ocf" provider="heartbeat" type="Dummy">
  <instance_attributes id="{STOCK}-ia">
    <nvpair id="{STOCK}-state" name="state" value="{}"/>
  </instance_attributes>
  <operations>
    <op id="{STOCK}-monitor-0" name="monitor" interval="2s" timeout="20s"/>
  </operations>
</primitive>"#,
        stock_state.display()
    ));
    cluster.wait_for("both resources started and monitored", |s| {
        s.started(OURS)
            && s.started(STOCK)
            && s.last_rc(OURS, "monitor", Some("2000ms")) == Some(0)
            && s.last_rc(OURS, "monitor", Some("3000ms")) == Some(0)
            && s.last_rc(STOCK, "monitor", Some("2000ms")) == Some(0)
    });
    assert!(ours_state.exists() && stock_state.exists());
    // Several monitors at each depth, all silent on stderr.
    poll("monitors at both depths", || {
        let calls = std::fs::read_to_string(&calls).unwrap_or_default();
        let count = |line: &str| calls.lines().filter(|l| *l == line).count();
        (count("monitor 0") >= 5 && count("monitor 10") >= 3).then_some(())
    });
    let log = cluster.log();
    assert_eq!(
        stderr_lines(&log, OURS),
        Vec::<String>::new(),
        "start, probe and monitors write nothing to stderr"
    );
    assert!(
        log.contains(&format!("clusterkit-dummy({OURS})")) && log.contains("info: started"),
        "the agent logs to Pacemaker's HA_logfile"
    );

    // A failure. Ours: the state file names another resource, which only
    // the deep check (depth 10) reads, so exactly one monitor fails; the
    // stock one: its state file is gone. Each is detected, counted once
    // and recovered in place; ours says why.
    std::fs::write(&ours_state, "someone-else").unwrap();
    std::fs::remove_file(&stock_state).unwrap();
    let s = cluster.wait_for("both failures recovered", |s| {
        s.fail_count(OURS) == 1 && s.fail_count(STOCK) == 1 && s.started(OURS) && s.started(STOCK)
    });
    let failures = s.failures(OURS);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        attr(&failures[0], "op_key"),
        Some(format!("{OURS}_monitor_3000").as_str()),
        "{}",
        failures[0]
    );
    assert_eq!(attr(&failures[0], "exitcode"), Some("1"), "{}", failures[0]);
    let reason = unescape(attr(&failures[0], "exitreason").unwrap_or_default());
    assert!(
        reason.contains(&format!("{} names \"someone-else\"", ours_state.display())),
        "the exit reason says what is wrong: {reason:?}"
    );
    let stock_failures = s.failures(STOCK);
    assert_eq!(stock_failures.len(), 1, "{stock_failures:?}");
    assert_eq!(attr(&stock_failures[0], "exitcode"), Some("7"));
    assert_eq!(
        std::fs::read_to_string(&ours_state).unwrap(),
        OURS,
        "recovered"
    );
    assert!(stock_state.exists(), "recovered");
    assert_eq!(
        cluster
            .ok(&["crm_failcount", "-r", OURS, "-G", "-q"])
            .trim(),
        "1"
    );

    // Ban (nowhere else to go: stopped) and clear (started again).
    for id in [OURS, STOCK] {
        cluster.ok(&["crm_resource", "--ban", "-r", id, "-N", NODE]);
    }
    cluster.wait_for("both banned resources stopped", |s| {
        s.stopped(OURS) && s.stopped(STOCK)
    });
    assert!(!ours_state.exists() && !stock_state.exists());
    for id in [OURS, STOCK] {
        cluster.ok(&["crm_resource", "--clear", "-r", id]);
    }
    cluster.wait_for("both cleared resources started", |s| {
        s.started(OURS) && s.started(STOCK)
    });

    // Stop and start through target-role.
    for id in [OURS, STOCK] {
        cluster.ok(&[
            "crm_resource",
            "-r",
            id,
            "--meta",
            "-p",
            "target-role",
            "-v",
            "Stopped",
        ]);
    }
    let s = cluster.wait_for("both stopped", |s| s.stopped(OURS) && s.stopped(STOCK));
    assert_eq!(s.last_rc(OURS, "stop", None), Some(0));
    assert!(!ours_state.exists() && !stock_state.exists());
    for id in [OURS, STOCK] {
        cluster.ok(&[
            "crm_resource",
            "-r",
            id,
            "--meta",
            "-p",
            "target-role",
            "-v",
            "Started",
        ]);
    }
    cluster.wait_for("both started again", |s| {
        s.started(OURS) && s.started(STOCK)
    });

    // A live parameter changes: Pacemaker reloads ours (reload-agent)
    // instead of restarting it.
    let count = |call: &str| {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split(' ').next() == Some(call))
            .count()
    };
    let (stops, starts) = (count("stop"), count("start"));
    cluster.ok(&["crm_resource", "-r", OURS, "-p", "online_delay", "-v", "1s"]);
    poll("reload-agent", || {
        (count("reload-agent") == 1).then_some(())
    });
    cluster.wait_for("ours started after the reload", |s| s.started(OURS));
    assert_eq!(
        (count("stop"), count("start")),
        (stops, starts),
        "no restart"
    );

    // The target itself vanishes (the state directory): monitor says not
    // running (7), the recovery's stop succeeds, and the start that follows
    // fails (nothing to start on), leaving both stopped, never blocked.
    for id in [OURS, STOCK] {
        cluster.ok(&["crm_resource", "--cleanup", "-r", id]);
    }
    // A cleanup re-probes; its recurring monitors reappearing in the wiped
    // history say the probes are over (a probe after the removal below
    // would see a stopped resource, not a failed one).
    cluster.wait_for("fail counts cleared and monitors back", |s| {
        [OURS, STOCK].iter().all(|id| {
            s.fail_count(id) == 0
                && s.started(id)
                && s.last_rc(id, "monitor", Some("2000ms")) == Some(0)
        }) && s.last_rc(OURS, "monitor", Some("3000ms")) == Some(0)
    });
    let before = cluster.log().len();
    std::fs::remove_dir_all(&ours_dir).unwrap();
    std::fs::remove_dir_all(&stock_dir).unwrap();
    let s = cluster.wait_for("both stopped cleanly after their targets vanished", |s| {
        [OURS, STOCK].iter().all(|id| {
            s.stopped(id)
                && s.last_rc(id, "stop", None) == Some(0)
                && s.last_rc(id, "start", None).is_some_and(|rc| rc != 0)
        })
    });
    // The monitor's result is in the log: the status keeps one last
    // failure per resource, here the start's.
    let log = cluster.log();
    let after = log.get(before..).unwrap_or_default();
    for id in [OURS, STOCK] {
        for result in [
            "monitor operation for {id} on {NODE}: not running",
            "stop operation for {id} on {NODE}: ok",
        ] {
            let line = format!(
                "Result of {}",
                result.replace("{id}", id).replace("{NODE}", NODE)
            );
            assert!(after.contains(&line), "`{line}` in pacemaker.log:\n{after}");
        }
    }
    let start_failure = s
        .failures(OURS)
        .into_iter()
        .find(|f| attr(f, "task") == Some("start"))
        .expect("the failed start is listed");
    assert_eq!(
        attr(&start_failure, "exitcode"),
        Some("5"),
        "{start_failure}"
    );
    assert!(
        attr(&start_failure, "exitreason").is_some_and(|r| r.contains("is not a directory")),
        "{start_failure}"
    );

    // Quiet: what ours wrote to stderr is one exit reason per failed action.
    let noisy: Vec<String> = stderr_lines(&cluster.log(), OURS)
        .into_iter()
        .filter(|l| !l.contains("[ ocf-exit-reason:"))
        .collect();
    assert_eq!(noisy, Vec::<String>::new(), "only exit reasons on stderr");
    drop(cluster);
}
