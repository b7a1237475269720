//! The OCF agents in a real two-node Corosync + Pacemaker cluster, built on
//! this machine by `scripts/cluster` (a network namespace per node, private
//! mounts; `docs/PACEMAKER.md`, "A two-node cluster on one machine").
//!
//! A chain of `ocf:clusterkit:*` resources (a disk on an image file both
//! nodes see, a network name registered with one BIND both nodes reach, a
//! dummy), tied by ordering and colocation constraints, runs beside the
//! same chain of stock `ocf:heartbeat:Dummy` resources, and both go through
//! a controlled move, a node failure (SIGKILL of the active node's
//! corosync) and the failed node rejoining, whose probes must answer "not
//! running" and leave no failed action.
//!
//! Needs root, network namespaces (`ip netns`), `unshare`/`nsenter`, and
//! Debian's `pacemaker`, `corosync`, `pacemaker-cli-utils`,
//! `resource-agents` and `bind9`: a missing one fails the test, naming it.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use clusterkit_bind::{Named, Setup};
use clusterkit_testkit::crm_mon::{CrmMon, attr, unescape};
use clusterkit_testkit::{TempDir, cdylib, require_tool, workspace_root};

/// The switch's address, where BIND listens (`scripts/cluster` gives the
/// bridge of its switch namespace this address).
const SWITCH: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 254);
/// The name the network-name resource registers, and its address.
const ZONE: &str = "example.test";
const SERVICE_NAME: &str = "www.example.test";
const SERVICE_ADDRESS: &str = "10.99.0.100";
const KEY_NAME: &str = "ck-cluster-key";
/// How long any one state change may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(90);
/// The chains: ours (disk → name → app) and the stock one (a → b → c).
const OURS: [&str; 3] = ["ck-disk", "ck-name", "ck-app"];
const STOCK: [&str; 3] = ["stock-a", "stock-b", "stock-c"];
/// Where a node's `clusterkit run` listens, in the node's private /run.
const HOST_SOCKET: &str = "/run/clusterkit/control.sock";

/// A cluster made by `scripts/cluster up`; dropping it runs `down`.
struct Cluster {
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = self.script(&["down"]);
        if !out.status.success() {
            eprintln!(
                "scripts/cluster down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fails, saying what is missing, unless the test can build a cluster.
fn require_cluster_tools() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the cluster test needs root (network namespaces, bind mounts)"
    );
    for (tool, package) in [
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("corosync", "corosync"),
        ("pacemakerd", "pacemaker"),
        ("crm_mon", "pacemaker-cli-utils"),
        ("named", "bind9"),
        ("dig", "bind9-dnsutils"),
    ] {
        require_tool(tool, package);
    }
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        out.status.success(),
        "network namespaces are unavailable (`ip netns list` failed): {}",
        text(&out)
    );
    assert!(
        Path::new("/usr/lib/ocf/resource.d/heartbeat/Dummy").exists(),
        "the stock Dummy agent is missing: run `apt-get install resource-agents`"
    );
}

impl Cluster {
    fn up(dir: &Path, args: &[&str]) -> Cluster {
        require_cluster_tools();
        let cluster = Cluster {
            dir: dir.to_owned(),
        };
        let started = Instant::now();
        let mut up = vec!["up", "--clusterkit", env!("CARGO_BIN_EXE_clusterkit")];
        up.extend_from_slice(args);
        cluster.ok(&up);
        eprintln!("cluster up in {:?}", started.elapsed());
        cluster
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new(workspace_root().join("scripts/cluster"))
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("running scripts/cluster")
    }

    /// Runs `scripts/cluster ARGS`; asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.script(args);
        assert!(
            out.status.success(),
            "scripts/cluster {args:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `args` inside `node`; asserts success; returns stdout.
    fn exec(&self, node: &str, args: &[&str]) -> String {
        let mut all = vec!["exec", node];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    /// `crm_mon`'s XML status as `node` sees it.
    fn status(&self, node: &str) -> CrmMon {
        CrmMon(self.exec(node, &["crm_mon", "-1", "--output-as=xml", "--include=all"]))
    }

    /// Polls `node`'s status until `check` says yes; the last status and
    /// the log's tail are in the failure message.
    fn wait_for(&self, node: &str, what: &str, check: impl Fn(&CrmMon) -> bool) -> CrmMon {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let out = self.script(&[
                "exec",
                node,
                "crm_mon",
                "-1",
                "--output-as=xml",
                "--include=all",
            ]);
            let status = CrmMon(String::from_utf8_lossy(&out.stdout).into_owned());
            if out.status.success() && check(&status) {
                return status;
            }
            // Every step here must go without a failed action: say so at
            // once rather than at the deadline.
            assert_no_failures(&status, &format!("while waiting for {what}"));
            assert!(
                Instant::now() < deadline,
                "waiting for {what}: not within {DEADLINE:?}; last status from {node}:\n{}\n{node}'s pacemaker.log tail:\n{}",
                status.0,
                self.log_tail(node)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `node`'s `clusterkit run` answers on its socket.
    fn wait_for_host(&self, node: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let out = self.script(&[
                "exec",
                node,
                env!("CARGO_BIN_EXE_clusterkit"),
                "status",
                "--socket",
                HOST_SOCKET,
            ]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{node}'s clusterkit run does not answer on {HOST_SOCKET}: {}\n{}",
                text(&out),
                std::fs::read_to_string(self.dir.join(node).join("clusterkit-run.out"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the cluster has nothing left to do, as `node` sees it.
    fn settle(&self, node: &str) {
        self.exec(node, &["crm_resource", "--wait", "--timeout=90s"]);
    }

    fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir.join(node).join("var-log-pacemaker/pacemaker.log"))
            .unwrap_or_default()
    }

    fn log_tail(&self, node: &str) -> String {
        let log = self.log(node);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Starts BIND in the switch's namespace, on [`SWITCH`]: every node
    /// reaches it, as the network name's server.
    fn start_bind(&self, dir: &Path) -> Named {
        let netns = self.ok(&["netns", "switch"]).trim().to_owned();
        let named = require_tool("named", "bind9");
        let keygen = require_tool("tsig-keygen", "bind9");
        let dir = dir.to_owned();
        // setns(2) moves only the calling thread: this one, whose children
        // (named) are born in the switch's namespace.
        std::thread::spawn(move || {
            let file =
                std::fs::File::open(&netns).unwrap_or_else(|e| panic!("opening {netns}: {e}"));
            // SAFETY: setns on an open namespace file; it changes only this
            // thread, which ends after starting named.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {netns}: {}", std::io::Error::last_os_error());
            Named::start_on(
                &Setup {
                    named: &named,
                    tsig_keygen: &keygen,
                    dir: &dir,
                    zone: ZONE,
                    key_name: KEY_NAME,
                    patience: DEADLINE,
                },
                SWITCH,
            )
            .unwrap_or_else(|problem| panic!("{problem}"))
        })
        .join()
        .expect("starting BIND in the switch namespace")
    }

    /// What `node` resolves [`SERVICE_NAME`] to, asking BIND.
    fn resolve(&self, node: &str, server: SocketAddr) -> String {
        self.exec(
            node,
            &[
                "dig",
                &format!("@{}", server.ip()),
                "-p",
                &server.port().to_string(),
                SERVICE_NAME,
                "A",
                "+short",
                "+time=2",
                "+tries=2",
            ],
        )
        .trim()
        .to_owned()
    }
}

/// A primitive with one recurring monitor.
fn primitive(id: &str, agent: &str, params: &[(&str, String)]) -> String {
    let (provider, kind) = agent.split_once(':').expect("provider:type");
    let nvpairs: String = params
        .iter()
        .map(|(name, value)| format!(r#"<nvpair id="{id}-{name}" name="{name}" value="{value}"/>"#))
        .collect();
    format!(
        r#"<primitive id="{id}" class="ocf" provider="{provider}" type="{kind}">
  <instance_attributes id="{id}-ia">{nvpairs}</instance_attributes>
  <operations><op id="{id}-monitor" name="monitor" interval="10s" timeout="20s"/></operations>
</primitive>"#
    )
}

/// Each member starts after, and runs with, the one before it; the first
/// prefers node1 (less than the stickiness `scripts/cluster` sets, so a
/// rejoining node1 pulls nothing back).
fn chain_constraints(chain: [&str; 3]) -> [String; 5] {
    let [a, b, c] = chain;
    [
        format!(r#"<rsc_order id="{a}-then-{b}" first="{a}" then="{b}"/>"#),
        format!(r#"<rsc_order id="{b}-then-{c}" first="{b}" then="{c}"/>"#),
        format!(r#"<rsc_colocation id="{b}-with-{a}" rsc="{b}" with-rsc="{a}" score="INFINITY"/>"#),
        format!(r#"<rsc_colocation id="{c}-with-{b}" rsc="{c}" with-rsc="{b}" score="INFINITY"/>"#),
        format!(r#"<rsc_location id="{a}-prefers-node1" rsc="{a}" node="node1" score="50"/>"#),
    ]
}

/// Every member of both chains started on `node`, and no failed action.
fn all_on(status: &CrmMon, node: &str) -> bool {
    OURS.iter()
        .chain(STOCK.iter())
        .all(|id| status.started(id) && status.running_on(id) == Some(node))
}

fn assert_no_failures(status: &CrmMon, when: &str) {
    let failures: Vec<String> = status
        .failures()
        .into_iter()
        .map(|f| {
            format!(
                "{} on {}: {} ({})",
                attr(f, "op_key").unwrap_or("?"),
                attr(f, "node").unwrap_or("?"),
                attr(f, "exitstatus").unwrap_or("?"),
                unescape(attr(f, "exitreason").unwrap_or_default())
            )
        })
        .collect();
    assert_eq!(failures, Vec::<String>::new(), "failed actions {when}");
    for id in OURS.iter().chain(STOCK.iter()) {
        for node in ["node1", "node2"] {
            assert_eq!(
                status.fail_count(id, node),
                0,
                "{id}'s fail count on {node} {when}"
            );
        }
    }
}

/// A config for each node's `clusterkit run` (`%n` is the node's name):
/// no resources of its own, its socket in the node's private /run.
fn host_config(dir: &Path, dummy: &Path) -> PathBuf {
    for node in ["node1", "node2"] {
        std::fs::write(
            dir.join(format!("{node}.toml")),
            format!(
                "state_dir = \"/run/clusterkit\"\ncontrol_socket = \"{HOST_SOCKET}\"\n\n[libraries]\ndummy = \"{}\"\n",
                dummy.display()
            ),
        )
        .unwrap();
    }
    dir.join("%n.toml")
}

#[test]
fn a_two_node_cluster_moves_fails_over_and_takes_a_node_back() {
    let begun = Instant::now();
    let phase = |what: &str| eprintln!("{:>7.1?} {what}", begun.elapsed());
    let tmp = TempDir::new("cluster");
    let dir = tmp.path().to_owned();
    let dummy = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    let disk = cdylib("clusterkit-example-disk", "clusterkit_disk");
    let network_name = cdylib("clusterkit-example-network-name", "clusterkit_network_name");
    // The disk both nodes see, formatted once before the cluster uses it.
    let image = dir.join("shared.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_clusterkit"))
        .arg("type-control")
        .arg(&disk)
        .args(["disk", "type_specific(1)"])
        .arg(format!("path={}", image.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "FORMAT: {}", text(&out));
    let hosts = host_config(&dir, &dummy);
    let bind_dir = dir.join("bind");
    std::fs::create_dir_all(&bind_dir).unwrap();

    let cluster = Cluster::up(
        &dir.join("cluster"),
        &[
            "--library",
            dummy.to_str().unwrap(),
            "--library",
            disk.to_str().unwrap(),
            "--library",
            network_name.to_str().unwrap(),
            "--hosts",
            hosts.to_str().unwrap(),
        ],
    );
    phase("cluster up");
    let namespaces = cluster_namespaces(&cluster);
    assert_eq!(
        namespaces.len(),
        3,
        "two nodes and the switch: {namespaces:?}"
    );
    let bind = cluster.start_bind(&bind_dir);
    phase("BIND up");

    // The hook for delegation: one `clusterkit run` per node, each with
    // its socket in its own /run, answering there.
    for node in ["node1", "node2"] {
        cluster.wait_for_host(node);
    }

    let ours = [
        primitive(
            OURS[0],
            "clusterkit:disk",
            &[
                ("path", image.display().to_string()),
                // Each node its own owner (the default, `<hostname>/ck-disk`):
                // the on-disk lease keeps them apart, and the survivor of a
                // node failure takes the disk once the dead node's lease has
                // stood still for `lease_timeout`.
                // The machine may be busy: the probe's I/O, not its speed,
                // is under test (the lease wants lease_timeout ≥ 4 × io_timeout).
                ("io_timeout", "2s".to_owned()),
                ("lease_renewal", "1s".to_owned()),
                ("lease_timeout", "8s".to_owned()),
            ],
        ),
        primitive(
            OURS[1],
            "clusterkit:network-name",
            &[
                ("name", SERVICE_NAME.to_owned()),
                ("address", SERVICE_ADDRESS.to_owned()),
                ("zone", ZONE.to_owned()),
                ("servers", bind.addr().to_string()),
                ("tsig_key_name", KEY_NAME.to_owned()),
                ("tsig_secret", bind.secret().to_owned()),
                ("check_interface", "false".to_owned()),
            ],
        ),
        primitive(
            OURS[2],
            "clusterkit:dummy",
            &[("state_dir", "/run/resource-agents".to_owned())],
        ),
    ];
    let stock = STOCK.map(|id| {
        primitive(
            id,
            "heartbeat:Dummy",
            &[("state", format!("/run/resource-agents/{id}.state"))],
        )
    });
    // One update: the chains never start without their constraints.
    let constraints = chain_constraints(OURS)
        .into_iter()
        .chain(chain_constraints(STOCK))
        .collect::<String>();
    let configuration = format!(
        "<configuration><resources>{}</resources><constraints>{constraints}</constraints></configuration>",
        ours.iter().chain(stock.iter()).cloned().collect::<String>()
    );
    cluster.exec(
        "node1",
        &[
            "cibadmin",
            "--modify",
            "-o",
            "configuration",
            "--xml-text",
            &configuration,
        ],
    );
    let s = cluster.wait_for("node2", "both chains started on node1", |s| {
        all_on(s, "node1")
    });
    assert_no_failures(&s, "after the first start");
    phase("both chains started");
    cluster.settle("node1");
    assert_eq!(cluster.resolve("node2", bind.addr()), SERVICE_ADDRESS);

    // A controlled move of each chain by its first member: the rest follow.
    let started = Instant::now();
    for first in [OURS[0], STOCK[0]] {
        cluster.exec(
            "node1",
            &["crm_resource", "--move", "-r", first, "-N", "node2"],
        );
    }
    cluster.wait_for("node1", "both chains moved to node2", |s| {
        all_on(s, "node2")
    });
    phase(&format!("both chains moved in {:?}", started.elapsed()));
    for first in [OURS[0], STOCK[0]] {
        cluster.exec("node1", &["crm_resource", "--clear", "-r", first]);
    }
    cluster.settle("node1");
    let s = cluster.status("node1");
    assert!(all_on(&s, "node2"), "cleared, they stay: {}", s.0);
    assert_no_failures(&s, "after the move");
    assert_eq!(cluster.resolve("node1", bind.addr()), SERVICE_ADDRESS);
    assert!(
        !cluster
            .exec("node1", &["ls", "/run/resource-agents"])
            .contains(".state"),
        "node1 stopped what it ran"
    );

    // node2 fails: every process of it is killed at once (a power loss,
    // or what STONITH does to a node whose corosync died; the tests run
    // without a fence device). Killing its corosync alone would leave its
    // clusterkit host renewing the disk's lease, and node1's start would
    // rightly be refused (`busy: … reserved by node2/ck-disk`) until a
    // fence: the lease keeps the disk from two nodes. node1 takes both
    // chains over, the disk once node2's lease has stood still for
    // `lease_timeout`.
    let started = Instant::now();
    cluster.ok(&["crash", "node2"]);
    cluster.wait_for("node1", "both chains failed over to node1", |s| {
        all_on(s, "node1") && s.online_nodes() == ["node1"]
    });
    phase(&format!(
        "both chains failed over in {:?}",
        started.elapsed()
    ));
    assert_eq!(cluster.resolve("node1", bind.addr()), SERVICE_ADDRESS);

    // node2 comes back as after a reboot (a fresh /run): its probes find
    // nothing running, no action fails, and nothing moves back.
    let log_before = cluster.log("node2").len();
    cluster.ok(&["rejoin", "node2"]);
    phase("node2 back online");
    cluster.settle("node1");
    let s = cluster.status("node2");
    assert_eq!(s.online_nodes(), ["node1", "node2"], "{}", s.0);
    assert!(
        all_on(&s, "node1"),
        "stickiness keeps them on node1: {}",
        s.0
    );
    assert_no_failures(&s, "after node2 rejoined");
    let log = cluster.log("node2");
    let after = log.get(log_before..).unwrap_or_default();
    for id in OURS.iter().chain(STOCK.iter()) {
        let line = format!("Result of probe operation for {id} on node2: not running");
        assert!(
            after.contains(&line),
            "`{line}` in node2's pacemaker.log:\n{after}"
        );
    }
    assert_eq!(cluster.resolve("node2", bind.addr()), SERVICE_ADDRESS);

    // The node-local host survives SIGKILL and a restart (the lead's
    // delegation will put the resources in it).
    cluster.ok(&["host", "node1", "kill"]);
    cluster.ok(&["host", "node1", "start"]);
    cluster.wait_for_host("node1");
    phase("node1's host restarted");
    drop(bind);
    drop(cluster);
    phase("cluster down");
    let left = namespaces
        .iter()
        .filter(|ns| Path::new("/run/netns").join(ns).exists())
        .collect::<Vec<_>>();
    assert_eq!(left, Vec::<&String>::new(), "down deletes every namespace");
}

/// The network namespaces of `cluster` (named after its switch's).
fn cluster_namespaces(cluster: &Cluster) -> Vec<String> {
    let switch = cluster.ok(&["netns", "switch"]);
    let prefix = Path::new(switch.trim())
        .file_name()
        .and_then(|name| name.to_str()?.strip_suffix("switch"))
        .expect("NAME-switch")
        .to_owned();
    std::fs::read_dir("/run/netns")
        .expect("/run/netns")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

#[test]
fn a_failed_up_says_why_and_leaves_nothing_behind() {
    require_cluster_tools();
    let tmp = TempDir::new("cluster-failed-up");
    let dir = tmp.path().join("cluster");
    let missing = tmp.path().join("no-such-library.so");
    let out = Command::new(workspace_root().join("scripts/cluster"))
        .arg("--dir")
        .arg(&dir)
        .args([
            "up",
            "--clusterkit",
            env!("CARGO_BIN_EXE_clusterkit"),
            "--library",
        ])
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains(&missing.display().to_string()),
        "names the library: {stderr}"
    );
    assert!(stderr.contains("up failed; tearing down"), "{stderr}");
    assert!(
        !dir.join("cluster.env").exists(),
        "no cluster left recorded"
    );
    let again = Command::new(workspace_root().join("scripts/cluster"))
        .arg("--dir")
        .arg(&dir)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no cluster in"),
        "{}",
        text(&again)
    );

    // A failure once namespaces exist: node2's is taken (made here under
    // the name the script derives from the directory), so `up` fails after
    // making the switch's and node1's, and removes all of them.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf %s '{}' | md5sum | cut -c1-6",
            dir.display()
        ))
        .output()
        .unwrap();
    let name = format!("ck{}", String::from_utf8_lossy(&out.stdout).trim());
    let node2 = format!("{name}-node2");
    let out = Command::new("ip")
        .args(["netns", "add", &node2])
        .output()
        .unwrap();
    assert!(out.status.success(), "ip netns add {node2}: {}", text(&out));
    let out = Command::new(workspace_root().join("scripts/cluster"))
        .arg("--dir")
        .arg(&dir)
        .args(["up", "--clusterkit", env!("CARGO_BIN_EXE_clusterkit")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains(&format!("/run/netns/{node2}"))
            && stderr.contains("up failed; tearing down"),
        "failed at node2's namespace, then tore down: {stderr}"
    );
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&name))
                .collect()
        })
        .unwrap_or_default();
    for ns in &left {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
    assert_eq!(
        left,
        Vec::<String>::new(),
        "a failed up removes its namespaces"
    );
}

/// Makes the cluster's wrapper of `agent` append `<node> <action>` to a
/// file for every call, and returns that file.
fn record_calls(cluster: &Cluster, agent: &str) -> PathBuf {
    let calls = cluster.dir.join("calls");
    std::fs::write(&calls, "").unwrap();
    // The controller runs meta-data as hacluster: anyone may append.
    std::fs::set_permissions(&calls, std::fs::Permissions::from_mode(0o666)).unwrap();
    let wrapper = cluster.dir.join("resource.d/clusterkit").join(agent);
    let text = std::fs::read_to_string(&wrapper).unwrap();
    assert!(text.contains("\nexec "), "{text}");
    let recording = text.replacen(
        "\nexec ",
        &format!("\necho \"$(hostname) $1\" >> '{}'\nexec ", calls.display()),
        1,
    );
    std::fs::write(&wrapper, recording).unwrap();
    calls
}

/// Delegation across the cluster: the `ocf:clusterkit:*` agents are thin
/// clients of the node-local `clusterkit run` that `scripts/cluster up
/// --hosts` starts (found through `CLUSTERKIT_CONFIG`).
#[test]
fn a_delegated_resource_survives_a_sigkill_of_its_host_without_pacemaker_failures() {
    let tmp = TempDir::new("cluster-delegated");
    let dir = tmp.path().to_owned();
    let dummy = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    let hosts = host_config(&dir, &dummy);
    let cluster = Cluster::up(
        &dir.join("cluster"),
        &[
            "--library",
            dummy.to_str().unwrap(),
            "--hosts",
            hosts.to_str().unwrap(),
        ],
    );
    // Pacemaker logs a recurring monitor's result only when it changes:
    // the wrapper records every call instead.
    let calls = record_calls(&cluster, "dummy");
    let app = "ck-app";
    // Monitors every 2 s: some arrive while the host is down.
    let xml = primitive(
        app,
        "clusterkit:dummy",
        &[("state_dir", "/run/resource-agents".to_owned())],
    )
    .replace(r#"interval="10s""#, r#"interval="2s""#);
    cluster.exec(
        "node1",
        &["cibadmin", "-C", "-o", "resources", "--xml-text", &xml],
    );
    let s = cluster.wait_for("node1", "ck-app started", |s| s.started(app));
    let node = s
        .running_on(app)
        .expect("ck-app runs on one node")
        .to_owned();
    cluster.settle(&node);
    let clusterkit = env!("CARGO_BIN_EXE_clusterkit");
    let host_status = || {
        let out = cluster.script(&["exec", &node, clusterkit, "status", "--socket", HOST_SOCKET]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // The delegation itself: Pacemaker's resource lives in the host.
    let listed = host_status().unwrap_or_default();
    assert!(
        listed.contains(app),
        "the host on {node} holds {app} (delegation): {listed}"
    );
    let state = format!("/run/resource-agents/{app}.state");
    let stat = || cluster.exec(&node, &["stat", "-c", "%i %.9Y", &state]);
    let count = |call: &str| {
        let line = format!("{node} {call}");
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == line)
            .count()
    };
    let state_before = stat();
    let starts = count("start");
    let deadline = Instant::now() + DEADLINE;
    let wait_for_monitor = |what: &str| {
        let monitors = count("monitor");
        while count("monitor") <= monitors {
            assert!(Instant::now() < deadline, "no monitor {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // SIGKILL of the host; a monitor arrives while it is down; it comes back.
    cluster.ok(&["host", &node, "kill"]);
    wait_for_monitor("while the host was down");
    cluster.ok(&["host", &node, "start"]);
    while !host_status().is_some_and(|s| s.contains(app)) {
        assert!(
            Instant::now() < deadline,
            "the host did not re-attach {app}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_monitor("after the host came back");

    // Zero Pacemaker failures, zero restarts of the workload.
    let s = cluster.status(&node);
    assert!(
        s.started(app) && s.running_on(app) == Some(node.as_str()),
        "{}",
        s.0
    );
    assert_eq!(s.failures(), Vec::<&str>::new(), "no failed action");
    assert_eq!(s.fail_count(app, &node), 0);
    assert_eq!(count("start"), starts, "no restart");
    assert_eq!(
        stat(),
        state_before,
        "the workload's state file is untouched"
    );
    drop(cluster);
}
