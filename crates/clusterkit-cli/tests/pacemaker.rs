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

mod support;

use std::os::unix::fs::PermissionsExt;

use clusterkit_testkit::crm_mon::{attr, unescape};
use clusterkit_testkit::{TempDir, cdylib};
use support::pacemaker::*;

#[test]
fn clusterkit_and_stock_dummy_under_pacemakerd() {
    let tmp = TempDir::new("pacemaker");
    let dir = tmp.path().to_owned();
    let library = cdylib("clusterkit-example-dummy", "clusterkit_dummy");
    // The agents, installed as an administrator would, then copied into
    // the cluster's private resource.d; the wrapper also records each call.
    // The controller runs meta-data as hacluster: anyone may append.
    let calls = dir.join("calls");
    std::fs::write(&calls, "").unwrap();
    std::fs::set_permissions(&calls, std::fs::Permissions::from_mode(0o666)).unwrap();
    let cluster_dir = dir.join("cluster");
    install_dummy_agent(
        &dir,
        &library,
        &cluster_dir,
        &format!(
            "echo \"$1 ${{OCF_CHECK_LEVEL:-0}}\" >> '{}'",
            calls.display()
        ),
    );
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
        s.fail_count(OURS, NODE) == 1
            && s.fail_count(STOCK, NODE) == 1
            && s.started(OURS)
            && s.started(STOCK)
    });
    let failures = s.failures_of(OURS);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        attr(failures[0], "op_key"),
        Some(format!("{OURS}_monitor_3000").as_str()),
        "{}",
        failures[0]
    );
    assert_eq!(attr(failures[0], "exitcode"), Some("1"), "{}", failures[0]);
    let reason = unescape(attr(failures[0], "exitreason").unwrap_or_default());
    assert!(
        reason.contains(&format!("{} names \"someone-else\"", ours_state.display())),
        "the exit reason says what is wrong: {reason:?}"
    );
    let stock_failures = s.failures_of(STOCK);
    assert_eq!(stock_failures.len(), 1, "{stock_failures:?}");
    assert_eq!(attr(stock_failures[0], "exitcode"), Some("7"));
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
            s.fail_count(id, NODE) == 0
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
        .failures_of(OURS)
        .into_iter()
        .find(|f| attr(f, "task") == Some("start"))
        .expect("the failed start is listed");
    assert_eq!(
        attr(start_failure, "exitcode"),
        Some("5"),
        "{start_failure}"
    );
    assert!(
        attr(start_failure, "exitreason").is_some_and(|r| r.contains("is not a directory")),
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
