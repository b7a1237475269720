//! A single-node Corosync + Pacemaker cluster started by a test, inside
//! namespaces of its own (mount, UTS, network, PID), and `crm_mon`'s XML
//! read with just enough XML for its flat elements. Shared by the tests
//! that run the OCF agents under a real Pacemaker.
// Each test binary uses only some of these helpers.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clusterkit_testkit::require_tool;

/// The node's name: the namespace's hostname and corosync's nodelist entry.
pub const NODE: &str = "ck-node1";
/// The clusterkit resource and the stock one beside it.
pub const OURS: &str = "ck-dummy";
pub const STOCK: &str = "stock-dummy";
/// How long any one state change may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Pid 1 of the namespaces runs this: private `/run` and `/dev/shm`, the
/// cluster's directories bind-mounted from the test's, the agents in a
/// private `resource.d`, then corosync and pacemakerd. Killing it kills
/// every process in the PID namespace.
pub const NODE_SCRIPT: &str = r#"#!/bin/bash
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

pub const COROSYNC_CONF: &str = "totem {
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
pub const CIB: &str = r#"<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
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
pub struct Cluster {
    unshare: Child,
    /// Pid 1 of the namespaces, as this process sees it.
    pub init: u32,
    pub dir: PathBuf,
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

pub fn chown_hacluster(path: &Path) {
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
    pub fn start(dir: &Path) -> Cluster {
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
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg("--target")
            .arg(self.init.to_string())
            .args(["--mount", "--uts", "--net", "--pid", "--"])
            .args(args)
            .output()
            .expect("running nsenter")
    }

    /// Starts `args` inside the cluster's namespaces, in the background,
    /// its output appended to `log`.
    pub fn spawn(&self, args: &[&str], log: &Path) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Command::new("nsenter")
            .arg("--target")
            .arg(self.init.to_string())
            .args(["--mount", "--uts", "--net", "--pid", "--"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("running nsenter")
    }

    /// Runs `args` inside the namespaces; asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
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
    pub fn status(&self) -> Status {
        Status(self.ok(&["crm_mon", "-1", "--output-as=xml", "--include=all"]))
    }

    /// Polls the status until `check` says yes; the last status is in the
    /// failure message.
    pub fn wait_for(&self, what: &str, check: impl Fn(&Status) -> bool) -> Status {
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("var-log-pacemaker/pacemaker.log"))
            .unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn create(&self, primitive_xml: &str) {
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
pub fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
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

/// `crm_mon --output-as=xml` of the cluster.
pub use clusterkit_testkit::crm_mon::CrmMon as Status;

/// Lines in which Pacemaker's executor logged output an agent wrote to
/// stderr for `id`'s operations.
pub fn stderr_lines(log: &str, id: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("(log_op_output)") && l.contains(&format!(" {id}_")))
        .map(str::to_owned)
        .collect()
}

/// Installs the dummy type's OCF agent as an administrator would
/// (`clusterkit ocf install`), with `prologue` (shell lines) run before it,
/// into `cluster_dir/resource.d/clusterkit/dummy`, where
/// [`Cluster::start`] finds it.
pub fn install_dummy_agent(dir: &Path, library: &Path, cluster_dir: &Path, prologue: &str) {
    let root = dir.join("install");
    let out = Command::new(env!("CARGO_BIN_EXE_clusterkit"))
        .args(["ocf", "install", "--root"])
        .arg(&root)
        .arg("--library")
        .arg(library)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrapper = std::fs::read_to_string(root.join("usr/lib/ocf/resource.d/clusterkit/dummy"))
        .unwrap()
        .replacen("\nexec ", &format!("\n{prologue}\nexec "), 1);
    std::fs::create_dir_all(cluster_dir.join("resource.d/clusterkit")).unwrap();
    let agent = cluster_dir.join("resource.d/clusterkit/dummy");
    std::fs::write(&agent, wrapper).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
}
